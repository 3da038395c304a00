"""``text2tracks export`` in bounded memory: the input read a row at a time, the journals merged
as streams (a k-way merge of their ascending runs), the output written as the merge goes.

The reference for the merge is the one it replaced (every journal record in a dict, then a list
in input order), kept here in :func:`_merged_as_before`.
"""

from __future__ import annotations

import json
import random
import types
from pathlib import Path

import pytest
from test_export import PROMPTS, export, read_output, write_jsonl
from tiny_artifact import build_tiny_artifact

from text2tracks import export_journal, export_output
from text2tracks.commands import export as export_command
from text2tracks.export_journal import (
    DoneRows,
    _ascending_runs,
    existing_journals,
    journal_path,
    merged_records,
)
from text2tracks.export_output import error_record, write_output
from text2tracks.pipeline import Text2Tracks
from text2tracks.prompt_files import ExportError, read_input, scan_input

# 40 rows: bad ones (empty prompts) spread among them, so that batches and bad rows interleave
ROWS = [p if i % 7 != 3 else "" for i, p in enumerate(PROMPTS * 3)][:40]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return build_tiny_artifact(tmp_path_factory.mktemp("export_streaming"))


@pytest.fixture(scope="module")
def recommender(artifact) -> Text2Tracks:
    return Text2Tracks.from_pretrained(artifact, device="cpu")


@pytest.fixture()
def reference(recommender, artifact, tmp_path) -> tuple[Path, Path]:
    """``(input, its uninterrupted export)``: 40 rows, 6 bad, batches of 4."""
    source = write_jsonl(tmp_path / "in.jsonl", ROWS)
    out = tmp_path / "reference.jsonl"
    summary = export(recommender, artifact, source, out)
    assert (summary.n_rows, summary.n_failed) == (40, 6)
    return source, out


def _merged_as_before(output: Path, source: Path) -> list[dict]:
    """The merge this module replaced: every journal record in memory, then in input order."""
    merged: dict[int, dict] = {}
    for path in existing_journals(output):
        for line in path.read_bytes().splitlines():
            record = json.loads(line)
            if "journal" not in record:
                merged.setdefault(record["row"], record)
    rows = read_input(source).rows
    return [
        error_record(row, row.error) if row.error is not None else merged[row.index] for row in rows
    ]


def _write_journal(path: Path, records: list[dict]) -> None:
    lines = [{"journal": 1}] + records
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in lines))


def _journal_records(reference: Path, source: Path) -> list[dict]:
    """The reference export's good rows as the journal records that made them."""
    rows = read_input(source).rows
    return [
        {"row": row.index, **record}
        for row, record in zip(rows, read_output(reference), strict=True)
        if row.error is None
    ]


def test_merge_of_shuffled_multi_run_journals_equals_the_old_merge(reference, tmp_path):
    source, ref = reference
    records = _journal_records(ref, source)
    out = tmp_path / "out.jsonl"
    # process 0 of 2: a first session, then a resume taking over rows (a second run), with a
    # duplicate; process 1: an old-format journal, bad rows first, then its rows out of order
    p0 = [r for r in records if r["row"] % 2 == 0]
    p1 = [r for r in records if r["row"] % 2 == 1]
    run_a, run_b = p0[:8], p0[5:] + [r for r in p1 if r["row"] > 30]
    bad = [
        error_record(row, row.error) | {"row": row.index}
        for row in read_input(source).rows
        if row.error is not None and row.index % 2
    ]
    tail = [r for r in p1 if r["row"] <= 30]
    random.Random(0).shuffle(tail)
    _write_journal(journal_path(out, 0, 2), run_a + sorted(run_b, key=lambda r: r["row"]))
    _write_journal(journal_path(out, 1, 2), bad + tail)
    assert len(_ascending_runs(journal_path(out, 0, 2))) == 2
    assert len(_ascending_runs(journal_path(out, 1, 2))) > 3

    merged = merged_records(out, scan_input(source).rows())
    assert isinstance(merged, types.GeneratorType)
    assert list(merged) == _merged_as_before(out, source)
    write_output(out, merged_records(out, scan_input(source).rows()))
    assert out.read_bytes() == ref.read_bytes()


def test_the_merge_holds_one_record_per_run(reference, tmp_path, monkeypatch):
    source, ref = reference
    records = _journal_records(ref, source)
    out = tmp_path / "out.jsonl"
    _write_journal(journal_path(out, 0, 2), [r for r in records if r["row"] % 2 == 0])
    _write_journal(journal_path(out, 1, 2), [r for r in records if r["row"] % 2 == 1])
    pulled = []
    real = export_journal._run_records

    def counted(path, start, end):
        for record in real(path, start, end):
            pulled.append(record["row"])
            yield record

    monkeypatch.setattr(export_journal, "_run_records", counted)
    taken = []

    def rows():
        for row in scan_input(source).rows():
            taken.append(row.index)
            yield row

    merged = merged_records(out, rows())
    assert pulled == [] and taken == []  # nothing read before it is asked for
    first = next(merged)
    assert first["row"] == 0
    assert len(pulled) <= 3 and len(taken) == 1  # a record per journal run, and the next one
    for _ in range(9):
        next(merged)
    assert len(pulled) <= 10 + 2 and len(taken) == 10
    assert len(list(merged)) == 30


def test_the_export_never_lists_its_input_or_its_output(
    recommender, artifact, tmp_path, monkeypatch
):
    source = write_jsonl(tmp_path / "in.jsonl", ROWS)
    kinds = []
    real_write = export_command.write_output

    def write(path, records):
        kinds.append(type(records))
        return real_write(path, records)

    def no_list(path):
        raise AssertionError("the export read its whole input into a list")

    monkeypatch.setattr(export_command, "write_output", write)
    monkeypatch.setattr(export_command, "read_input", no_list)
    summary = export(recommender, artifact, source, tmp_path / "out.jsonl", batch_size=3)
    assert kinds and not issubclass(kinds[0], (list, tuple))
    assert (summary.n_rows, summary.n_done, summary.n_failed) == (40, 34, 6)
    assert [f[0] for f in summary.failures] == [f"q{i}" for i in range(40) if ROWS[i] == ""]


class Crash(RuntimeError):
    pass


def test_a_crashed_journal_is_one_ascending_run_and_resumes(
    reference, recommender, artifact, tmp_path
):
    source, ref = reference
    out = tmp_path / "out.jsonl"

    def crash_after(n_batches):
        def hook(n):
            if n >= n_batches:
                raise Crash

        return hook

    with pytest.raises(Crash):
        export(recommender, artifact, source, out, after_batch=crash_after(3))
    journal = journal_path(out)
    rows = [json.loads(line)["row"] for line in journal.read_text().splitlines()[1:]]
    assert rows == sorted(rows) and len(rows) == 12  # the good rows of 3 batches, no bad rows
    with pytest.raises(Crash):
        export(recommender, artifact, source, out, resume=True, after_batch=crash_after(2))
    assert len(_ascending_runs(journal)) == 1  # the resume appended in input order
    summary = export(recommender, artifact, source, out, resume=True)
    assert summary.n_resumed == 20 and out.read_bytes() == ref.read_bytes()
    assert not journal.exists()


def test_a_missing_row_fails_the_merge_and_keeps_the_journals(reference, tmp_path):
    source, ref = reference
    records = _journal_records(ref, source)
    out = tmp_path / "out.jsonl"
    _write_journal(journal_path(out), [r for r in records if r["row"] not in (5, 20)])
    with pytest.raises(ExportError, match="2 rows have no result.*first: row 5"):
        write_output(out, merged_records(out, scan_input(source).rows()))
    assert not out.exists() and existing_journals(out)
    assert not list(tmp_path.glob(".out.jsonl.*.tmp"))


def test_parquet_output_is_written_a_row_group_at_a_time(reference, tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    source, ref = reference
    monkeypatch.setattr(export_output, "PARQUET_ROW_GROUP", 7)
    records = read_output(ref)
    out = tmp_path / "out.parquet"
    write_output(out, iter(records))
    assert pq.ParquetFile(out).num_row_groups == 6  # 40 rows, 7 a group
    assert read_output(out) == records
    write_output(out, iter([]))
    assert pq.read_table(out).num_rows == 0


def test_done_rows_is_a_bitmap():
    done = DoneRows(20)
    assert done.count() == 0 and 3 not in done
    for row in (0, 3, 7, 8, 19, 20, -1):  # 20 and -1 are not rows: ignored
        done.add(row)
    assert [r for r in range(-2, 22) if r in done] == [0, 3, 7, 8, 19]
    assert done.count() == 5 and done.count(1, 2) == 3 and done.count(0, 2) == 2
    assert len(done._bits) == 3


def test_scan_then_rows_equals_reading_every_row(tmp_path):
    (tmp_path / "in.jsonl").write_bytes(
        b'\xef\xbb\xbf{"id": "line:3", "prompt": "x"}\n\n{"prompt": \n{"id": "line:3~2"}\r\n'
        b'{"prompt": "last, no newline"}'
    )
    source = scan_input(tmp_path / "in.jsonl")
    assert (source.n_rows, source.n_blank) == (4, 1)
    assert source.taken_ids == frozenset({"line:3", "line:3~2"})
    rows = list(source.rows())
    assert [r.id for r in rows] == ["line:3", "line:3~3", "line:3~2", "line:5"]
    assert rows == read_input(tmp_path / "in.jsonl").rows
    assert rows[-1].prompt == "last, no newline"
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf")
    assert (scan_input(tmp_path / "bom.txt").n_rows, scan_input(tmp_path / "bom.txt").n_blank) == (
        0,
        0,
    )
