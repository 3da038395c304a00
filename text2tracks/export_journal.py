"""The crash-safety journal of ``text2tracks export``: one append-only JSONL file per process.

A journal sits beside the output (``OUTPUT.partial.jsonl``, or ``OUTPUT.partial.pR.jsonl`` for
process ``R`` of several). Its first line is a header holding the job's settings; every other
line is one finished row's record, keyed by its input row index, and each batch is fsynced. A
line cut by a crash is dropped on reading (and cut off before appending again), so a resumed
job takes exactly the rows that were written. A header whose settings differ from the job's
makes the resume an error: the rows it holds were made another way.

The journals hold the model's records; a row that is bad in the input needs no model, and the
merge makes its record from the input again (journals of earlier versions hold those records
too, and the merge passes over them). Nothing here holds every record: a resume keeps one bit
per input row (:class:`DoneRows`), and the merge (:func:`merged_records`) streams the
journals' ascending runs of rows through a k-way merge, in input order.
"""

from __future__ import annotations

import heapq
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from text2tracks.export_output import error_record
from text2tracks.options import LATENT_MODES
from text2tracks.prompt_files import ExportError, InputRow

JOURNAL_VERSION = 1
SETTINGS_CHECKED = (
    "k",
    "mode",
    "num_beams",
    "n_rows",
    "input_size",
    "guidance_weight",
    "n_samples",
    "seed",
)
# Settings that journals written before they existed lack: read as these values.
SETTINGS_DEFAULTS = {"guidance_weight": None, "n_samples": None, "seed": 0}


def journal_path(output: Path, rank: int = 0, num_processes: int = 1) -> Path:
    """The journal of process ``rank`` beside ``output``."""
    if num_processes == 1:
        return output.with_name(f"{output.name}.partial.jsonl")
    return output.with_name(f"{output.name}.partial.p{rank}.jsonl")


def existing_journals(output: Path) -> list[Path]:
    """The journals beside ``output`` of every process, sorted by path."""
    return sorted(output.parent.glob(f"{_glob_escape(output.name)}.partial*.jsonl"))


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def journal_header(
    *,
    k: int,
    mode: str,
    num_beams: int | None,
    n_rows: int,
    input_path: Path,
    artifact,
    guidance_weight: float | None,
    n_samples: int | None,
    seed: int,
) -> dict[str, Any]:
    """The header line of a job's journals: its settings and what it reads."""
    return {
        "journal": JOURNAL_VERSION,
        "k": k,
        "mode": mode,
        "num_beams": num_beams,
        "n_rows": n_rows,
        "input_size": input_path.stat().st_size,
        "guidance_weight": guidance_weight,
        "n_samples": n_samples,
        "seed": seed if mode in LATENT_MODES else 0,  # only the latent modes draw noise
        "input": str(input_path.resolve()),
        "artifact": str(Path(artifact).resolve()),
    }


def header_setting(header: dict, key: str) -> Any:
    """A journal header's setting; journals older than a setting hold its default."""
    return header.get(key, SETTINGS_DEFAULTS.get(key))


class DoneRows:
    """The set of input rows a journal holds, as a bitmap: ``n_rows / 8`` bytes."""

    def __init__(self, n_rows: int):
        self.n_rows = n_rows
        self._bits = bytearray((n_rows + 7) // 8)
        self.any = False

    def add(self, row: int) -> None:
        if 0 <= row < self.n_rows:
            self._bits[row >> 3] |= 1 << (row & 7)
            self.any = True

    def __contains__(self, row: int) -> bool:
        return 0 <= row < self.n_rows and bool(self._bits[row >> 3] >> (row & 7) & 1)

    def count(self, rank: int = 0, num_processes: int = 1) -> int:
        """How many of the rows ``rank``, ``rank + num_processes``... are in the set."""
        if not self.any:
            return 0
        return sum(1 for row in range(rank, self.n_rows, num_processes) if row in self)


def _journal_lines(path: Path) -> Iterator[tuple[bytes, int]]:
    """Each complete line of a journal, with the byte offset just past it; a last line cut by a
    crash (no newline yet) ends it."""
    end = 0
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                return
            end += len(line)
            yield line, end


def _parsed(line: bytes) -> dict | None:
    """A journal line's JSON object: ``None`` for a line that is not one."""
    try:
        record = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _is_record(record: dict | None) -> bool:
    return record is not None and "journal" not in record and isinstance(record.get("row"), int)


def resumed_rows(
    journals: list[Path], header: dict, own: Path, output: Path
) -> tuple[DoneRows, int | None]:
    """``(the rows every journal holds, byte length of the complete lines of ``own``)``;
    ``None`` where ``own`` is not among them. ``ExportError`` if a journal's settings differ
    from ``header``'s."""
    done = DoneRows(header["n_rows"])
    own_end: int | None = None
    for path in journals:
        found, good_end = None, 0
        for line, good_end in _journal_lines(path):  # noqa: B007 - the last one is wanted
            record = _parsed(line)
            if found is None and record is not None and "journal" in record:
                found = record
                _check_settings(found, header, path, output)
            elif _is_record(record):
                done.add(record["row"])
        if path == own:
            own_end = good_end
    return done, own_end


def _check_settings(found: dict, header: dict, path: Path, output: Path) -> None:
    changed = [
        f"{key}={header_setting(found, key)!r} (now {header[key]!r})"
        for key in SETTINGS_CHECKED
        if header_setting(found, key) != header[key]
    ]
    if changed:
        raise ExportError(
            f"{path} was written with other settings or another input: "
            f"{', '.join(changed)}. Resume with the same settings, or delete "
            f"{output.name}.partial*.jsonl to start over"
        )


# A record line as append_records writes it starts with its row: read without parsing the line.
_ROW_FIRST = re.compile(rb'\{"row":([0-9]+)[,}]')


def _line_row(line: bytes) -> int | None:
    match = _ROW_FIRST.match(line)
    if match:
        return int(match.group(1))
    record = _parsed(line)
    return record["row"] if _is_record(record) else None


def _ascending_runs(path: Path) -> list[tuple[int, int]]:
    """The byte ranges ``(start, end)`` of a journal's ascending runs of rows. A journal is one
    run, plus one for each resume that took over another process's rows."""
    runs, start, last, pos = [], 0, -1, 0
    for line, end in _journal_lines(path):
        row = _line_row(line)
        if row is not None:
            if row < last:
                runs.append((start, pos))
                start = pos
            last = row
        pos = end
    if pos > start:
        runs.append((start, pos))
    return runs


def _run_records(path: Path, start: int, end: int) -> Iterator[dict]:
    """The records of the journal's bytes ``start:end``, read a line at a time."""
    with open(path, "rb") as f:
        f.seek(start)
        pos = start
        while pos < end:
            line = f.readline()
            pos += len(line)
            record = _parsed(line)
            if _is_record(record):
                yield record


def merged_records(output: Path, rows: Iterable[InputRow]) -> Iterator[dict]:
    """Every row's record, in input order, streamed: a bad input row's made from the row, the
    others the first of the journals beside ``output`` (a k-way merge of their ascending runs).
    ``ExportError`` (the journals kept) at the end if a row has none, and then none is yielded
    after the first such row."""
    runs = [
        _run_records(path, start, end)
        for path in existing_journals(output)
        for start, end in _ascending_runs(path)
    ]
    stream = heapq.merge(*runs, key=lambda record: record["row"])
    record = next(stream, None)
    n_missing, first_missing = 0, None
    for row in rows:
        if row.error is not None:
            if not n_missing:
                yield error_record(row, row.error)
            continue
        while record is not None and record["row"] < row.index:  # a duplicate, or a bad row's
            record = next(stream, None)
        if record is not None and record["row"] == row.index:
            if not n_missing:
                yield record
            record = next(stream, None)
        else:
            n_missing += 1
            first_missing = row.index if first_missing is None else first_missing
    if n_missing:
        raise ExportError(
            f"{n_missing} rows have no result after the run (first: row {first_missing}); "
            "the journals are kept: run again with --resume"
        )


def append_records(handle, records: Iterable[dict]) -> None:
    """Append ``records`` as JSON lines to the open binary ``handle`` and fsync (if any)."""
    payload = b"".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        for r in records
    )
    if payload:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def open_journal(path: Path, header: dict, good_end: int | None) -> Any:
    """Open this process's journal for appending: cut a crash's partial line, or start one."""
    if good_end is not None and path.exists():
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
        handle = open(path, "ab")
        if good_end == 0:
            append_records(handle, [header])
        return handle
    handle = open(path, "ab")
    append_records(handle, [header])
    return handle
