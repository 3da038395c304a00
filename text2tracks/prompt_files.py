"""Reading a file of prompts for ``text2tracks export``: JSONL, CSV, Parquet or plain text.

Every input row becomes an :class:`InputRow` (its 0-based index, id, prompt, the error that makes
it unusable, its optional negative prompt); nothing is dropped but blank lines of JSONL and text
files, which are counted. Without an id of its own (none given, or a line too broken to read one
from), a row's id is ``line:N`` (JSONL and text files: its 1-based line number) or ``row:N``
(CSV and Parquet: its 1-based data row); such an id never collides with one the file gives:
where the file itself uses it, a ``~2`` (``~3``...) suffix is added.

Seed tracks (optional, :meth:`Text2Tracks.recommend`'s ``seed_tracks``): a JSONL field
``"seed_tracks"`` holding a list of track ids; a CSV column ``seed_tracks`` holding the ids
separated by whitespace (track ids contain no spaces; an empty cell is none); a Parquet column
``seed_tracks``, a list of strings (or one string of whitespace-separated ids). Oldest first. A
row with seeds may have an empty or absent prompt (the seeds alone are the prompt); seeds that
are not a list of strings make the row an error.

The file is read as a stream: :func:`scan_input` reads it once for its counts and for the ids it
gives that look like fallback ids (the only ones a fallback id can collide with), and
:meth:`PromptFile.rows` reads it again a row at a time, so memory does not grow with the file.
:func:`read_input` keeps every row in a list, for callers that want them all.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

INPUT_FORMATS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
    ".text": "text",
    "": "text",
}


class ExportError(RuntimeError):
    """A problem with the export job as a whole (bad arguments, unreadable file, old journal)."""


@dataclass(frozen=True)
class InputRow:
    """One input row: its 0-based index, id, prompt, the error that makes it unusable, and its
    optional negative prompt (latent modes)."""

    index: int
    id: str
    prompt: str | None
    error: str | None = None
    negative_prompt: str | None = None
    own_id: bool = True  # False: ``id`` is the fallback line:N / row:N
    seed_tracks: tuple[str, ...] | None = None  # track ids, oldest first


@dataclass
class InputFile:
    rows: list[InputRow]
    n_blank: int = 0


# Ids a fallback id (``line:N`` / ``row:N``, maybe with a ``~n`` suffix) could collide with.
_FALLBACK_LIKE = re.compile(r"(?:line|row):[0-9]+(?:~[0-9]+)?")
# Parquet rows read at a time.
_PARQUET_BATCH = 4096


def format_of(path: Path, table: dict[str, str], what: str) -> str:
    """The format of ``path`` by its extension, from ``table``; ``ExportError`` naming the known ones."""
    suffix = path.suffix.lower()
    if suffix not in table:
        known = ", ".join(s for s in table if s)
        raise ExportError(f"{what} {path}: unknown extension {suffix!r}; use one of {known}")
    return table[suffix]


def _decode(raw: bytes, line_no: int) -> tuple[str | None, str | None]:
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError as err:
        return (
            None,
            f"line {line_no}: undecodable bytes, not UTF-8 ({err.reason} at byte {err.start})",
        )


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(1-based line number, line without its line end)``, streamed; a UTF-8 BOM is dropped,
    and the newline that ends the last line opens no new one."""
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
                if not raw:  # the file is a BOM alone
                    return
            yield line_no, raw.removesuffix(b"\n").rstrip(b"\r")


def _seed_tracks(value: Any, text: bool = False) -> tuple[tuple[str, ...] | None, str | None]:
    """A JSONL / Parquet ``seed_tracks`` value -> ``(track ids or None, error or None)``; with
    ``text`` (a Parquet string column) a string is whitespace-separated ids, as in a CSV cell."""
    if value is None:
        return None, None
    if text and isinstance(value, str):
        value = value.split()
    elif isinstance(value, tuple) or (hasattr(value, "tolist") and not isinstance(value, dict)):
        value = list(value.tolist() if hasattr(value, "tolist") else value)
    if not isinstance(value, list) or not all(isinstance(t, str) and t.strip() for t in value):
        return None, (
            f"seed_tracks must be a list of track ids (non-empty strings), got {value!r:.80}"
        )
    return (tuple(t.strip() for t in value) or None), None


def _prompt_error(prompt: Any, has_seeds: bool = False) -> str | None:
    if has_seeds and (prompt is None or (isinstance(prompt, str) and not prompt.strip())):
        return None  # the seeds alone are the prompt
    if prompt is None:
        return "no prompt"
    if not isinstance(prompt, str):
        return f"prompt must be a string, got {type(prompt).__name__}"
    if not prompt.strip():
        return "empty prompt"
    return None


def _negative_error(negative: Any) -> str | None:
    if negative is None:
        return None
    if not isinstance(negative, str):
        return f"negative_prompt must be a string, got {type(negative).__name__}"
    if not negative.strip():
        return "empty negative_prompt (leave it out, or null, for none)"
    return None


# The readers yield every row of a file, in order, as an InputRow with its fallback id not yet
# settled, and None for each blank line.


def _read_text(path: Path) -> Iterator[InputRow | None]:
    index = 0
    for line_no, raw in _lines(path):
        text, error = _decode(raw, line_no)
        if text is not None and not text.strip():
            yield None
            continue
        yield InputRow(index, f"line:{line_no}", text, error, own_id=False)
        index += 1


def _read_jsonl(path: Path) -> Iterator[InputRow | None]:
    index = 0
    for line_no, raw in _lines(path):
        text, error = _decode(raw, line_no)
        if text is not None and not text.strip():
            yield None
            continue
        row_id, prompt, negative, seeds = None, None, None, None
        if error is not None:  # keep the row's own id where the rest of the line is readable
            with contextlib.suppress(json.JSONDecodeError):
                record = json.loads(raw.decode("utf-8", "replace"))
                if isinstance(record, dict) and record.get("id") is not None:
                    row_id = str(record["id"])
        else:
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                error = f"line {line_no}: malformed JSON ({err.msg} at column {err.colno})"
            else:
                if not isinstance(record, dict):
                    error = (
                        f"line {line_no}: expected a JSON object like "
                        f'{{"id": "1", "prompt": "..."}}, got {type(record).__name__}'
                    )
                else:
                    if record.get("id") is not None:
                        row_id = str(record["id"])
                    prompt = record.get("prompt")
                    negative = record.get("negative_prompt")
                    seeds, error = _seed_tracks(record.get("seed_tracks"))
                    error = (
                        error
                        or _prompt_error(prompt, seeds is not None)
                        or _negative_error(negative)
                    )
                    if error is not None:
                        error = f"line {line_no}: {error}"
                        prompt = prompt if isinstance(prompt, str) else None
                        negative = negative if isinstance(negative, str) else None
                    elif prompt is None:
                        prompt = ""
        own_id = row_id is not None
        row_id = row_id if own_id else f"line:{line_no}"
        yield InputRow(index, row_id, prompt, error, negative, own_id, seeds)
        index += 1


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read_csv(path: Path) -> Iterator[InputRow | None]:
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.DictReader(f)
        try:
            fields = reader.fieldnames or []
            if "prompt" not in fields:
                raise ExportError(
                    f"{path}: no 'prompt' column in the header ({', '.join(fields) or 'empty'}); "
                    "a CSV input needs a 'prompt' column and optionally an 'id' column"
                )
            for data_row, record in enumerate(reader, start=1):
                prompt, row_id = record.get("prompt"), record.get("id")
                own_id = row_id is not None and bool(row_id.strip())
                row_id = row_id if own_id else f"row:{data_row}"
                negative = record.get("negative_prompt") or None  # CSV: an empty cell is none
                seeds = tuple((record.get("seed_tracks") or "").split()) or None
                error = _prompt_error(prompt, seeds is not None) or _negative_error(negative)
                if error is None and (
                    _has_surrogates(prompt or "")
                    or _has_surrogates(negative or "")
                    or _has_surrogates(" ".join(seeds or ()))
                ):
                    error, prompt, negative = "undecodable bytes, not UTF-8", None, None
                if _has_surrogates(row_id):
                    row_id = row_id.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                if error is not None:
                    error = f"row {data_row} (line {reader.line_num}): {error}"
                elif prompt is None:  # a short row of seeds alone
                    prompt = ""
                yield InputRow(data_row - 1, row_id, prompt, error, negative, own_id, seeds)
        except csv.Error as err:
            raise ExportError(f"{path}, line {reader.line_num}: malformed CSV ({err})") from err


def _read_parquet(path: Path) -> Iterator[InputRow | None]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = parquet.schema_arrow.names
        if "prompt" not in names:
            raise ExportError(
                f"{path}: no 'prompt' column ({', '.join(names)}); a Parquet input needs a "
                "'prompt' column and optionally an 'id' column"
            )
        optional = ("id", "negative_prompt", "seed_tracks")
        columns = ["prompt"] + [c for c in optional if c in names]
        data_row = 0
        with parquet:
            for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH, columns=columns):
                cells = [
                    batch.column(c).to_pylist() if c in columns else [None] * batch.num_rows
                    for c in ("prompt", *optional)
                ]
                for prompt, row_id, negative, seed_value in zip(*cells, strict=True):
                    data_row += 1
                    yield _parquet_row(data_row, prompt, row_id, negative, seed_value)
    except ExportError:
        raise
    except (pa.ArrowException, OSError) as err:
        raise ExportError(f"{path}: not a readable Parquet file ({err})") from err


def _parquet_row(data_row: int, prompt, row_id, negative, seed_value) -> InputRow:
    """The row of a Parquet file's ``data_row`` (1-based) from its cells."""
    seeds, error = _seed_tracks(seed_value, text=True)
    if isinstance(prompt, bytes):
        try:
            prompt = prompt.decode("utf-8")
        except UnicodeDecodeError:
            prompt, error = None, "undecodable bytes, not UTF-8"
    if isinstance(negative, bytes):
        try:
            negative = negative.decode("utf-8")
        except UnicodeDecodeError:
            negative, error = None, error or "undecodable bytes in negative_prompt, not UTF-8"
    error = error or _prompt_error(prompt, seeds is not None) or _negative_error(negative)
    if error is not None:
        error = f"row {data_row}: {error}"
        prompt = prompt if isinstance(prompt, str) else None
        negative = negative if isinstance(negative, str) else None
    elif prompt is None:  # seeds alone
        prompt = ""
    if isinstance(row_id, bytes):
        row_id = row_id.decode("utf-8", "replace")
    return InputRow(
        data_row - 1,
        f"row:{data_row}" if row_id is None else str(row_id),
        prompt,
        error,
        negative,
        own_id=row_id is not None,
        seed_tracks=seeds,
    )


_READERS = {"jsonl": _read_jsonl, "csv": _read_csv, "parquet": _read_parquet, "text": _read_text}


@dataclass(frozen=True)
class PromptFile:
    """A prompt file, scanned once (:func:`scan_input`): its format, its rows and blank lines,
    and the ids it gives that look like a fallback id. :meth:`rows` reads it again."""

    path: Path
    format: str
    n_rows: int
    n_blank: int
    taken_ids: frozenset[str]  # the file's own ids that a fallback id could collide with

    def rows(self) -> Iterator[InputRow]:
        """Every row, in order, a row at a time, fallback ids settled (see the module)."""
        for row in _READERS[self.format](self.path):
            if row is not None:
                yield _settled(row, self.taken_ids)


def scan_input(path: str | os.PathLike) -> PromptFile:
    """Read a prompt file once, a row at a time: ``ExportError`` if it is missing, of an unknown
    format or unreadable as a whole; else its :class:`PromptFile`."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"input {path} does not exist")
    fmt = format_of(path, INPUT_FORMATS, "input")
    n_rows, n_blank, taken = 0, 0, set()
    for row in _READERS[fmt](path):
        if row is None:
            n_blank += 1
            continue
        n_rows += 1
        if row.own_id and _FALLBACK_LIKE.fullmatch(row.id):
            taken.add(row.id)
    return PromptFile(path, fmt, n_rows, n_blank, frozenset(taken))


def read_input(path: str | os.PathLike) -> InputFile:
    """Read every row of a prompt file (see the module docstring for the formats) into a list."""
    source = scan_input(path)
    return InputFile(list(source.rows()), source.n_blank)


def _settled(row: InputRow, taken: frozenset[str]) -> InputRow:
    """``row``, its fallback id (``line:N`` / ``row:N``) made to differ from every id the file
    gives, with a ``~2``, ``~3``... suffix where the file itself uses it."""
    if row.own_id or row.id not in taken:
        return row
    n = 2
    while f"{row.id}~{n}" in taken:
        n += 1
    return replace(row, id=f"{row.id}~{n}")
