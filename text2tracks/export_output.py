"""The records and the output file of ``text2tracks export``.

One record per input row: ``id``, ``prompt``, ``track_ids``, ``scores``, ``names``, ``artists``
(lists, best first) and ``error`` (null, or why the row has no recommendations); journal
records also carry ``row``, the input row index. :func:`write_output` writes them as JSONL, CSV
(lists as JSON in their cells) or Parquet, chosen by the output's extension, atomically, from
any iterable of records, a record at a time (Parquet: a row group of ``PARQUET_ROW_GROUP``
records at a time), so that memory does not grow with the output.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import tempfile
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

from text2tracks.prompt_files import InputRow, format_of

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
OUTPUT_FIELDS = ("id", "prompt", "track_ids", "scores", "names", "artists", "error")
PARQUET_ROW_GROUP = 4096


def result_records(rows: list[InputRow], recs: list) -> list[dict]:
    """The records of ``rows`` from their recommendations ``recs`` (one list per row)."""
    return [
        {
            "row": row.index,
            "id": row.id,
            "prompt": row.prompt,
            "track_ids": [r.track_id for r in answer],
            "scores": [r.score for r in answer],
            "names": [r.name for r in answer],
            "artists": [r.artist for r in answer],
            "error": None,
        }
        for row, answer in zip(rows, recs, strict=True)
    ]


def error_record(row: InputRow, error: str) -> dict:
    """The record of a row without recommendations, saying why."""
    return {
        "row": row.index,
        "id": row.id,
        "prompt": row.prompt,
        "track_ids": [],
        "scores": [],
        "names": [],
        "artists": [],
        "error": error,
    }


def _output_record(record: dict) -> dict:
    return {name: record.get(name) for name in OUTPUT_FIELDS}


def write_output(path: Path, records: Iterable[dict]) -> None:
    """Write the final output atomically (temporary file in the same folder, then rename),
    consuming ``records`` as it goes; if they raise, no output appears."""
    fmt = format_of(path, OUTPUT_FORMATS, "output")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        {"jsonl": _write_jsonl, "csv": _write_csv, "parquet": _write_parquet}[fmt](tmp, records)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_jsonl(tmp: str, records: Iterable[dict]) -> None:
    with open(tmp, "wb") as f:
        for r in records:
            line = json.dumps(_output_record(r), ensure_ascii=False)
            f.write(line.encode("utf-8") + b"\n")
        f.flush()
        os.fsync(f.fileno())


def _write_csv(tmp: str, records: Iterable[dict]) -> None:
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(OUTPUT_FIELDS)
        for r in records:
            rec = _output_record(r)
            writer.writerow(
                [
                    rec["id"],
                    rec["prompt"] if rec["prompt"] is not None else "",
                    *(
                        json.dumps(rec[c] or [], ensure_ascii=False)
                        for c in ("track_ids", "scores", "names", "artists")
                    ),
                    rec["error"] or "",
                ]
            )
        f.flush()
        os.fsync(f.fileno())


def _write_parquet(tmp: str, records: Iterable[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("prompt", pa.string()),
            ("track_ids", pa.list_(pa.string())),
            ("scores", pa.list_(pa.float64())),
            ("names", pa.list_(pa.string())),
            ("artists", pa.list_(pa.string())),
            ("error", pa.string()),
        ]
    )
    records = iter(records)
    with pq.ParquetWriter(tmp, schema) as writer:
        while group := [_output_record(r) for r in islice(records, PARQUET_ROW_GROUP)]:
            columns = {name: [r[name] for r in group] for name in OUTPUT_FIELDS}
            for name in ("track_ids", "scores", "names", "artists"):
                columns[name] = [v or [] for v in columns[name]]
            writer.write_table(pa.table(columns, schema=schema))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
