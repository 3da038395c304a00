"""The crash-safety journal of ``text2tracks export``: one append-only JSONL file per process.

A journal sits beside the output (``OUTPUT.partial.jsonl``, or ``OUTPUT.partial.pR.jsonl`` for
process ``R`` of several). Its first line is a header holding the job's settings; every other
line is one finished row's record, keyed by its input row index, and each batch is fsynced. A
line cut by a crash is dropped on reading (and cut off before appending again), so a resumed
job takes exactly the rows that were written. A header whose settings differ from the job's
makes the resume an error: the rows it holds were made another way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
        "seed": 0 if mode == "generative" else seed,  # generative mode draws no noise
        "input": str(input_path.resolve()),
        "artifact": str(Path(artifact).resolve()),
    }


def header_setting(header: dict, key: str) -> Any:
    """A journal header's setting; journals older than a setting hold its default."""
    return header.get(key, SETTINGS_DEFAULTS.get(key))


def read_journal(path: Path) -> tuple[dict | None, dict[int, dict], int]:
    """``(header, records by row, byte length of the complete lines)``; cut lines are dropped."""
    with open(path, "rb") as f:
        data = f.read()
    header, records, good_end, pos = None, {}, 0, 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:  # a line cut by a crash: no newline yet
            break
        try:
            record = json.loads(data[pos:end])
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if isinstance(record, dict):
            if "journal" in record and header is None:
                header = record
            elif isinstance(record.get("row"), int):
                records.setdefault(record["row"], record)
        pos = end + 1
        good_end = pos
    return header, records, good_end


def resumed_records(
    journals: list[Path], header: dict, own: Path, output: Path
) -> tuple[dict[int, dict], int | None]:
    """``(records by row of every journal, byte length of the complete lines of ``own``)``;
    ``None`` where ``own`` is not among them. ``ExportError`` if a journal's settings differ
    from ``header``'s."""
    done: dict[int, dict] = {}
    own_end: int | None = None
    for path in journals:
        found, records, good_end = read_journal(path)
        if found is not None:
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
        for row, record in records.items():
            done.setdefault(row, record)
        if path == own:
            own_end = good_end
    return done, own_end


def merged_records(output: Path, rows: list[InputRow]) -> list[dict]:
    """Every row's record from the journals beside ``output``, in input order; ``ExportError``
    (the journals kept) if a row has none."""
    merged: dict[int, dict] = {}
    for path in existing_journals(output):
        for row, record in read_journal(path)[1].items():
            merged.setdefault(row, record)
    missing = [row.index for row in rows if row.index not in merged]
    if missing:
        raise ExportError(
            f"{len(missing)} rows have no result after the run (first: row {missing[0]}); "
            "the journals are kept: run again with --resume"
        )
    return [merged[row.index] for row in rows]


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
