"""``text2tracks export``: recommendations for a file of prompts, batched, resumable, sharded.

Usage::

    text2tracks export --artifact runs/demo/artifact --input prompts.jsonl \\
        --output recs.jsonl --k 10 [--batch-size 32] [--resume]
    text2tracks export ... --mode hybrid [--guidance-weight 3] [--n-samples 8] [--seed 0]
    accelerate launch --num_processes 2 -m text2tracks.commands.export --artifact ... (same flags)

Input, chosen by extension:

- ``.jsonl`` / ``.ndjson``: one JSON object per line, ``{"id": ..., "prompt": "..."}``;
- ``.csv``: a header row with a ``prompt`` column and optionally an ``id`` column;
- ``.parquet``: a ``prompt`` column and optionally an ``id`` column;
- ``.txt`` (or no extension): one prompt per line.

Modes (``--mode``): ``generative`` (constrained beam search, the default), ``latent`` and
``hybrid`` (they need the artifact's diffusion head; see :meth:`Text2Tracks.recommend`). In the
latent modes a row may carry a ``negative_prompt`` (a JSONL field, or a CSV / Parquet column;
null, absent or, in CSV, an empty cell: none) to steer away from, and ``--guidance-weight``,
``--n-samples`` and ``--seed`` set the sampling (the same seed gives the same output, so a
resumed job writes what an uninterrupted one would). A negative prompt that is not a string, or
is empty, makes its row an error record; so does any negative prompt in generative mode.

Without an id of its own (none given, or a line too broken to read one from), a row's id is
``line:N`` (JSONL and text files: its 1-based line number) or ``row:N`` (CSV and Parquet: its
1-based data row). Such an id never collides with one the file gives: where the file itself uses
it, a ``~2`` (``~3``...) suffix is added. Ids are written as strings. Lines that are empty or only whitespace in JSONL and text
files are not rows; they are counted in the summary.

Output, chosen by extension (``.jsonl``, ``.csv``, ``.parquet``): one record per input row, in
input order, with ``id``, ``prompt``, ``track_ids``, ``scores``, ``names``, ``artists`` (lists,
best first) and ``error`` (null, or why the row has no recommendations). CSV cells hold the lists
as JSON.

Nothing is lost: a row without a prompt, with bytes that are not UTF-8, or with malformed JSON
becomes an error record and the job goes on; the summary counts rows done and rows failed.

Crash safety: results go to an append-only journal beside the output (``OUTPUT.partial.jsonl``,
or ``OUTPUT.partial.pR.jsonl`` per process), one fsync per batch, keyed by input row index. The
output itself is written only at the end, to a temporary file renamed into place, so a crash
never leaves a corrupt output. ``--resume`` reads the journals (a line cut by the crash is
dropped), skips the rows done and finishes; batches are fixed slices of the input, so a resumed
run writes exactly what an uninterrupted one would. Without ``--resume`` an existing journal is
an error.

Several processes (``accelerate launch``): process ``p`` of ``P`` takes the rows whose index is
``p`` modulo ``P`` and writes its own journal; the main process merges them in input order.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text2tracks.config_flags import add_flag, add_progress_flag, command_parser
from text2tracks.options import MODES
from text2tracks.prompt_files import (  # noqa: F401 - read_input and the rows are this command's API too
    INPUT_FORMATS,
    ExportError,
    InputFile,
    InputRow,
    format_of,
    read_input,
)

OUTPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
OUTPUT_FIELDS = ("id", "prompt", "track_ids", "scores", "names", "artists", "error")
JOURNAL_VERSION = 1
_SETTINGS_CHECKED = (
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
_SETTINGS_DEFAULTS = {"guidance_weight": None, "n_samples": None, "seed": 0}


@dataclass
class ExportSummary:
    """What :func:`run_export` did. Times in seconds; ``model_s`` is time inside ``recommend``."""

    output: str
    n_rows: int = 0
    n_done: int = 0
    n_failed: int = 0
    n_blank: int = 0
    n_resumed: int = 0
    n_truncated: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    load_s: float = 0.0
    total_s: float = 0.0
    model_s: float = 0.0
    read_s: float = 0.0
    merge_s: float = 0.0
    num_processes: int = 1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ----------------------------------------------------------------------------- journal


def journal_path(output: Path, rank: int = 0, num_processes: int = 1) -> Path:
    """The journal of process ``rank`` beside ``output``."""
    if num_processes == 1:
        return output.with_name(f"{output.name}.partial.jsonl")
    return output.with_name(f"{output.name}.partial.p{rank}.jsonl")


def existing_journals(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f"{_glob_escape(output.name)}.partial*.jsonl"))


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _read_journal(path: Path) -> tuple[dict | None, dict[int, dict], int]:
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


def _write_lines(handle, records: Iterable[dict]) -> None:
    payload = b"".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        for r in records
    )
    if payload:
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())


def _open_journal(path: Path, header: dict, good_end: int | None) -> Any:
    """Open this process's journal for appending: cut a crash's partial line, or start one."""
    if good_end is not None and path.exists():
        with open(path, "r+b") as f:
            f.truncate(good_end)
            f.flush()
            os.fsync(f.fileno())
        handle = open(path, "ab")
        if good_end == 0:
            _write_lines(handle, [header])
        return handle
    handle = open(path, "ab")
    _write_lines(handle, [header])
    return handle


# ----------------------------------------------------------------------------- writing output


def _output_record(record: dict) -> dict:
    return {name: record.get(name) for name in OUTPUT_FIELDS}


def write_output(path: Path, records: list[dict]) -> None:
    """Write the final output atomically (temporary file in the same folder, then rename)."""
    fmt = format_of(path, OUTPUT_FORMATS, "output")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if fmt == "jsonl":
            with open(tmp, "wb") as f:
                for r in records:
                    line = json.dumps(_output_record(r), ensure_ascii=False)
                    f.write(line.encode("utf-8") + b"\n")
                f.flush()
                os.fsync(f.fileno())
        elif fmt == "csv":
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
        else:
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
            columns = {name: [_output_record(r)[name] for r in records] for name in OUTPUT_FIELDS}
            for name in ("track_ids", "scores", "names", "artists"):
                columns[name] = [v or [] for v in columns[name]]
            pq.write_table(pa.table(columns, schema=schema), tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------- the job


def _result_records(rows: list[InputRow], recs: list) -> list[dict]:
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


def _error_record(row: InputRow, error: str) -> dict:
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


def _partial_state():
    """accelerate's process state; on a machine without CUDA, processes started by the launcher
    (``accelerate launch --multi_gpu --num_processes N``, i.e. torchrun) form a gloo CPU group."""
    import torch
    from accelerate import PartialState

    force_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    return PartialState(cpu=force_cpu or not torch.cuda.is_available())


def run_export(
    artifact: str | os.PathLike,
    input: str | os.PathLike,
    output: str | os.PathLike,
    k: int = 10,
    batch_size: int = 32,
    resume: bool = False,
    num_beams: int | None = None,
    mode: str = "generative",
    progress: bool = True,
    recommender=None,
    after_batch: Callable[[int], None] | None = None,
    guidance_weight: float | None = None,
    n_samples: int | None = None,
    seed: int = 0,
) -> ExportSummary:
    """Run the export job (see the module docstring); returns the summary on every process.

    ``recommender`` (a loaded :class:`~text2tracks.pipeline.Text2Tracks`) skips loading
    ``artifact``; ``after_batch`` is called with the number of batches written (tests use it).
    ``guidance_weight`` (None: the head's default), ``n_samples`` (None: the artifact's
    setting) and ``seed`` are the latent modes' sampling settings (they need ``mode`` latent or
    hybrid, except ``seed``, which generative mode ignores).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    input_path, output_path = Path(input), Path(output)
    format_of(output_path, OUTPUT_FORMATS, "output")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ExportError(f"--k must be a positive integer, got {k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ExportError(f"--batch-size must be a positive integer, got {batch_size!r}")
    if mode not in MODES:
        raise ExportError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "generative":
        given = [
            flag
            for flag, value in (("--guidance-weight", guidance_weight), ("--n-samples", n_samples))
            if value is not None
        ]
        if given:
            raise ExportError(
                f"{' and '.join(given)} need --mode latent or hybrid (the diffusion "
                "head); generative mode cannot use them"
            )
    if guidance_weight is not None and (
        isinstance(guidance_weight, bool)
        or not isinstance(guidance_weight, (int, float))
        or not guidance_weight >= 0
        or guidance_weight == float("inf")
    ):
        raise ExportError(
            f"--guidance-weight must be a finite number >= 0, got {guidance_weight!r}"
        )
    if n_samples is not None and (
        isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1
    ):
        raise ExportError(f"--n-samples must be a positive integer, got {n_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ExportError(f"--seed must be a non-negative integer, got {seed!r}")
    sampling = (
        {}
        if mode == "generative"
        else {"guidance_weight": guidance_weight, "n_samples": n_samples, "seed": seed}
    )
    state = _partial_state()
    rank, world = state.process_index, state.num_processes
    summary = ExportSummary(output=str(output_path), num_processes=world)

    t0 = time.perf_counter()
    source = read_input(input_path)
    rows = source.rows
    summary.read_s = time.perf_counter() - t0
    summary.n_rows, summary.n_blank = len(rows), source.n_blank
    settings = {
        "journal": JOURNAL_VERSION,
        "k": k,
        "mode": mode,
        "num_beams": num_beams,
        "n_rows": len(rows),
        "input_size": input_path.stat().st_size,
        "guidance_weight": guidance_weight,
        "n_samples": n_samples,
        "seed": 0 if mode == "generative" else seed,  # generative mode draws no noise
        "input": str(input_path.resolve()),
        "artifact": str(Path(artifact).resolve()),
    }

    # 1. Journals of earlier runs: refuse them without --resume, else collect their rows.
    journals = existing_journals(output_path)
    if journals and not resume:
        raise ExportError(
            f"{journals[0]} exists: an earlier export to {output_path} did not finish. Run again "
            f"with --resume to finish it, or delete {output_path.name}.partial*.jsonl to start over"
        )
    done: dict[int, dict] = {}
    own = journal_path(output_path, rank, world)
    own_end: int | None = None
    for path in journals:
        header, records, good_end = _read_journal(path)
        if header is not None:
            changed = [
                f"{key}={_setting(header, key)!r} (now {settings[key]!r})"
                for key in _SETTINGS_CHECKED
                if _setting(header, key) != settings[key]
            ]
            if changed:
                raise ExportError(
                    f"{path} was written with other settings or another input: "
                    f"{', '.join(changed)}. Resume with the same settings, or delete "
                    f"{output_path.name}.partial*.jsonl to start over"
                )
        for row, record in records.items():
            done.setdefault(row, record)
        if path == own:
            own_end = good_end
    state.wait_for_everyone()  # every process has looked before any writes a journal

    if resume and not journals and output_path.exists():
        if state.is_main_process:
            print(
                f"export: {output_path} is complete (no journal to resume); nothing to do",
                file=sys.stderr,
            )
        return summary

    mine = [row for row in rows if row.index % world == rank]
    summary.n_resumed = sum(1 for row in mine if row.index in done)

    # 2. The model (after the cheap checks, so that a bad job fails fast).
    t0 = time.perf_counter()
    if recommender is None:
        from text2tracks.pipeline import Text2Tracks

        if world > 1 and state.device.type == "cpu":
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // state.num_processes))
        recommender = Text2Tracks.from_pretrained(artifact, device=state.device)
    summary.load_s = time.perf_counter() - t0
    if k > len(recommender):
        raise ExportError(f"--k {k} is larger than the catalogue ({len(recommender)} tracks)")
    if mode != "generative" and not recommender.has_diffusion:
        raise ExportError(
            f"--mode {mode} needs a diffusion head, but {artifact} has no diffusion/ "
            "component; train one (python -m training.train_diffusion) or use "
            "--mode generative"
        )

    # 3. This process's rows: bad rows at once, good rows in fixed batches.
    handle = _open_journal(own, settings, own_end)
    bar = tqdm(
        total=len(mine),
        initial=summary.n_resumed,
        unit="prompt",
        desc="export",
        disable=not (progress and state.is_main_process) or None,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    n_batches = 0
    try:
        bad = [
            _error_record(row, row.error)
            for row in mine
            if row.error is not None and row.index not in done
        ]
        _write_lines(handle, bad)
        bar.update(len(bad))
        good = [row for row in mine if row.error is None]
        for first in range(0, len(good), batch_size):
            batch = good[first : first + batch_size]
            todo = {row.index for row in batch if row.index not in done}
            if not todo:
                continue
            t_model = time.perf_counter()
            records, truncated = _recommend_rows(recommender, batch, k, num_beams, mode, sampling)
            summary.model_s += time.perf_counter() - t_model
            summary.n_truncated += truncated
            _write_lines(handle, [r for r in records if r["row"] in todo])
            bar.update(len(todo))
            n_batches += 1
            if after_batch is not None:
                after_batch(n_batches)
    finally:
        handle.close()
        bar.close()

    # 4. Merge on the main process, in input order; the output appears atomically.
    state.wait_for_everyone()
    if state.is_main_process:
        t0 = time.perf_counter()
        merged: dict[int, dict] = {}
        for path in existing_journals(output_path):
            for row, record in _read_journal(path)[1].items():
                merged.setdefault(row, record)
        missing = [row.index for row in rows if row.index not in merged]
        if missing:
            raise ExportError(
                f"{len(missing)} rows have no result after the run (first: row {missing[0]}); "
                "the journals are kept: run again with --resume"
            )
        ordered = [merged[row.index] for row in rows]
        write_output(output_path, ordered)
        for path in existing_journals(output_path):
            path.unlink()
        summary.merge_s = time.perf_counter() - t0
        summary.n_failed = sum(1 for r in ordered if r.get("error"))
        summary.n_done = len(ordered) - summary.n_failed
        summary.failures = [(r["id"], r["error"]) for r in ordered if r.get("error")][:10]
    state.wait_for_everyone()
    summary.total_s = time.perf_counter() - start
    return summary


def _setting(header: dict, key: str) -> Any:
    """A journal header's setting; journals older than a setting hold its default."""
    return header.get(key, _SETTINGS_DEFAULTS.get(key))


def _recommend_rows(
    recommender, batch: list[InputRow], k, num_beams, mode, sampling: dict | None = None
) -> tuple[list[dict], int]:
    """Records for one batch; a row the model refuses becomes an error record, the rest go on."""
    kwargs = dict(sampling or {})
    negatives = [row.negative_prompt for row in batch]
    if any(n is not None for n in negatives):
        kwargs["negative_prompt"] = negatives
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            answers = recommender.recommend(
                [row.prompt for row in batch],
                k=k,
                num_beams=num_beams,
                batch_size=len(batch),
                mode=mode,
                **kwargs,
            )
            records = _result_records(batch, answers)
        except (ValueError, TypeError):
            if len(batch) == 1:
                raise
            records = []
            for row in batch:
                try:
                    records += _recommend_rows(recommender, [row], k, num_beams, mode, sampling)[0]
                except (ValueError, TypeError) as err:
                    records.append(_error_record(row, str(err)))
    truncated = sum(1 for w in caught if "truncated" in str(w.message))
    for w in caught:
        if "truncated" not in str(w.message):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return records, truncated


# ----------------------------------------------------------------------------- command line


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--artifact", required=True, help="the artifact folder (text2tracks.json)")
    parser.add_argument(
        "--input",
        required=True,
        help='prompts: .jsonl ({"id", "prompt"}), .csv (id,prompt), '
        ".parquet, or .txt (one prompt per line)",
    )
    parser.add_argument("--output", required=True, help="results: .jsonl, .csv or .parquet")
    parser.add_argument("--k", type=int, default=10, help="tracks per prompt (default 10)")
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per batch (default 32)")
    parser.add_argument(
        "--resume", action="store_true", help="finish an interrupted export from its journal"
    )
    add_flag(
        parser,
        "--num-beams",
        type=int,
        default=None,
        help="beam width (default: the decoder's default for k)",
    )
    parser.add_argument(
        "--mode",
        default="generative",
        choices=MODES,
        help="generative (default); latent / hybrid need a diffusion head",
    )
    parser.add_argument(
        "--guidance-weight",
        type=float,
        default=None,
        help="latent / hybrid: classifier-free guidance weight w (default: the "
        "head's stored default)",
    )
    parser.add_argument(
        "--n-samples",
        type=int,
        default=None,
        help="latent / hybrid: latents sampled per prompt (default: the artifact's setting)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="latent / hybrid: noise seed; the same seed gives the same output (default 0)",
    )
    add_progress_flag(parser)


def _run_from_args(args: argparse.Namespace) -> int:
    from text2tracks.artifacts import ArtifactError

    try:
        summary = run_export(
            args.artifact,
            args.input,
            args.output,
            k=args.k,
            batch_size=args.batch_size,
            resume=args.resume,
            num_beams=args.num_beams,
            mode=args.mode,
            progress=args.progress,
            guidance_weight=args.guidance_weight,
            n_samples=args.n_samples,
            seed=args.seed,
        )
    except (ExportError, ArtifactError) as err:
        print(f"text2tracks export: error: {err}", file=sys.stderr)
        return 2
    if _partial_state().is_main_process:
        print(format_summary(summary), file=sys.stderr)
    return 0


def format_summary(summary: ExportSummary) -> str:
    rate = summary.n_rows / summary.total_s if summary.total_s else 0.0
    lines = [
        f"export: {summary.n_rows} rows -> {summary.output}: {summary.n_done} done, "
        f"{summary.n_failed} failed"
        + (f", {summary.n_resumed} taken from the journal" if summary.n_resumed else "")
        + (f", {summary.n_truncated} prompts truncated" if summary.n_truncated else "")
        + (f"; {summary.n_blank} blank lines skipped" if summary.n_blank else ""),
        f"export: {summary.total_s:.1f} s ({rate:.1f} rows/s) on {summary.num_processes} "
        f"process(es)",
    ]
    for row_id, error in summary.failures:
        lines.append(f"  failed: id {row_id}: {error}")
    if summary.n_failed > len(summary.failures):
        lines.append(f"  ... and {summary.n_failed - len(summary.failures)} more (see 'error')")
    return "\n".join(lines)


EPILOG = """examples:
  text2tracks export --artifact runs/demo/artifact --input prompts.jsonl --output recs.jsonl --k 10
  text2tracks export ... --resume                      # after a crash: every row exactly once
  text2tracks export ... --mode hybrid --guidance-weight 3 --n-samples 8
  accelerate launch --num_processes 4 -m text2tracks.commands.export --artifact ... --input ... \\
      --output ...
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``text2tracks export`` (or, ``subparsers=None``, the standalone parser)."""
    parser = command_parser(
        subparsers,
        "export",
        prog="text2tracks export",
        help="recommendations for a file of prompts (batched, resumable)",
        description=__doc__.split("\n\n")[0],
        epilog=EPILOG,
    )
    _add_arguments(parser)
    parser.set_defaults(func=_run_from_args)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m text2tracks.commands.export`` (and ``accelerate launch -m``)."""
    return _run_from_args(add_parser(None).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
