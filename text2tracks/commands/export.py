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

Seed tracks (the prompt continues them; never recommended back): a JSONL field
``"seed_tracks": ["id", ...]``, a CSV column ``seed_tracks`` with the ids separated by spaces,
or a Parquet column ``seed_tracks`` (a list of strings), oldest first. A row with seeds may leave
its prompt empty. Seeds that are not a list of strings, or a row with neither text nor a seed in
the catalogue, make an error record; unknown seed ids are ignored with a warning.

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

Crash safety: the model's results go to an append-only journal beside the output
(``OUTPUT.partial.jsonl``, or ``OUTPUT.partial.pR.jsonl`` per process), one fsync per batch,
keyed by input row index (a bad row needs no model: its record is made from the input at the
merge, and "taken from the journal" counts the model's rows only). The output itself is written
only at the end, to a temporary file renamed into place, so a crash never leaves a corrupt
output. ``--resume`` reads the journals (a line cut by the crash is dropped), skips the rows
done and finishes; batches are fixed slices of the input, so a resumed run writes exactly what
an uninterrupted one would. Without ``--resume`` an existing journal is an error.

Several processes (``accelerate launch``): process ``p`` of ``P`` takes the rows whose index is
``p`` modulo ``P`` and writes its own journal; the main process merges them in input order.

Memory does not grow with the number of prompts: the input is read a row at a time (once to
count it, once to run it, once more to merge), the journals are merged as streams, and the
output is written as the merge goes. What remains per prompt is one bit, the set of rows an
earlier run finished (:class:`~text2tracks.export_journal.DoneRows`).

The journals are :mod:`text2tracks.export_journal`'s job, the records and the output file
:mod:`text2tracks.export_output`'s, reading the input :mod:`text2tracks.prompt_files`'; this
module runs the job and holds the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

from text2tracks.config_flags import add_flag, add_progress_flag, command_parser
from text2tracks.export_journal import (  # noqa: F401 - the journal's names are this command's API too
    JOURNAL_VERSION,
    DoneRows,
    append_records,
    existing_journals,
    journal_header,
    journal_path,
    merged_records,
    open_journal,
    resumed_rows,
)
from text2tracks.export_output import (  # noqa: F401 - as are the output's
    OUTPUT_FIELDS,
    OUTPUT_FORMATS,
    error_record,
    result_records,
    write_output,
)
from text2tracks.options import LATENT_MODES, RECOMMEND_MODES
from text2tracks.prompt_files import (  # noqa: F401 - read_input and the rows are this command's API too
    INPUT_FORMATS,
    ExportError,
    InputFile,
    InputRow,
    PromptFile,
    format_of,
    read_input,
    scan_input,
)


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
    start = time.perf_counter()
    input_path, output_path = Path(input), Path(output)
    format_of(output_path, OUTPUT_FORMATS, "output")
    sampling = _checked_sampling(k, batch_size, mode, guidance_weight, n_samples, seed)
    state = _partial_state()
    rank, world = state.process_index, state.num_processes
    summary = ExportSummary(output=str(output_path), num_processes=world)
    source = _scan_input(input_path, summary)
    settings = journal_header(
        k=k,
        mode=mode,
        num_beams=num_beams,
        n_rows=source.n_rows,
        input_path=input_path,
        artifact=artifact,
        guidance_weight=guidance_weight,
        n_samples=n_samples,
        seed=seed,
    )

    # 1. Journals of earlier runs: refuse them without --resume, else collect their rows.
    journals = existing_journals(output_path)
    own = journal_path(output_path, rank, world)
    done, own_end = _earlier_rows(journals, resume, settings, own, output_path)
    state.wait_for_everyone()  # every process has looked before any writes a journal
    if resume and not journals and output_path.exists():
        _tell(state, f"export: {output_path} is complete (no journal to resume); nothing to do")
        return summary
    summary.n_resumed = done.count(rank, world)

    # 2. The model (after the cheap checks, so that a bad job fails fast).
    t0 = time.perf_counter()
    recommender = _load_recommender(recommender, artifact, state)
    summary.load_s = time.perf_counter() - t0
    _check_recommender(recommender, artifact, k, mode)

    # 3. This process's rows: bad rows at once, good rows in fixed batches.
    with open_journal(own, settings, own_end) as handle:
        _export_rows(
            recommender,
            (row for row in source.rows() if row.index % world == rank),
            len(range(rank, source.n_rows, world)),
            done,
            handle,
            summary,
            batch_size=batch_size,
            recommend_options=(k, num_beams, mode, sampling),
            show_progress=progress and state.is_main_process,
            after_batch=after_batch,
        )

    # 4. Merge on the main process, in input order; the output appears atomically.
    _merge_on_main(state, output_path, source, summary)
    summary.total_s = time.perf_counter() - start
    return summary


def _tell(state, message: str) -> None:
    """Print ``message`` to stderr, once: on the main process."""
    if state.is_main_process:
        print(message, file=sys.stderr)


def _scan_input(input_path: Path, summary: ExportSummary) -> PromptFile:
    """The input, scanned; the time taken and the counts go into ``summary``."""
    t0 = time.perf_counter()
    source = scan_input(input_path)
    summary.read_s = time.perf_counter() - t0
    summary.n_rows, summary.n_blank = source.n_rows, source.n_blank
    return source


def _earlier_rows(
    journals: list[Path], resume: bool, settings: dict, own: Path, output: Path
) -> tuple[DoneRows, int | None]:
    """:func:`~text2tracks.export_journal.resumed_rows` of the earlier runs' ``journals``;
    ``ExportError`` if there are any and ``resume`` is off."""
    if journals and not resume:
        raise ExportError(
            f"{journals[0]} exists: an earlier export to {output} did not finish. Run again "
            f"with --resume to finish it, or delete {output.name}.partial*.jsonl to start over"
        )
    return resumed_rows(journals, settings, own, output)


def _checked_sampling(k, batch_size, mode, guidance_weight, n_samples, seed) -> dict[str, Any]:
    """The latent modes' sampling options for ``recommend`` (none in generative mode), after
    checking every option: ``ExportError`` names the flag of a bad one."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ExportError(f"--k must be a positive integer, got {k!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ExportError(f"--batch-size must be a positive integer, got {batch_size!r}")
    if mode not in RECOMMEND_MODES:
        raise ExportError(f"--mode must be one of {', '.join(RECOMMEND_MODES)}, got {mode!r}")
    if mode not in LATENT_MODES:
        given = [
            flag
            for flag, value in (("--guidance-weight", guidance_weight), ("--n-samples", n_samples))
            if value is not None
        ]
        if given:
            raise ExportError(
                f"{' and '.join(given)} need --mode latent or hybrid (the diffusion "
                f"head); {mode} mode cannot use them"
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
    if mode not in LATENT_MODES:
        return {}
    return {"guidance_weight": guidance_weight, "n_samples": n_samples, "seed": seed}


def _load_recommender(recommender, artifact, state):
    """``recommender``, or else ``artifact`` loaded onto this process's device (sharing the CPU
    cores among the processes that run on it)."""
    if recommender is not None:
        return recommender
    from text2tracks.pipeline import Text2Tracks

    if state.num_processes > 1 and state.device.type == "cpu":
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // state.num_processes))
    return Text2Tracks.from_pretrained(artifact, device=state.device)


def _check_recommender(recommender, artifact, k: int, mode: str) -> None:
    """``ExportError`` if the catalogue is smaller than ``k`` or ``mode`` needs a missing head."""
    if k > len(recommender):
        raise ExportError(f"--k {k} is larger than the catalogue ({len(recommender)} tracks)")
    if mode in LATENT_MODES and not recommender.has_diffusion:
        raise ExportError(
            f"--mode {mode} needs a diffusion head, but {artifact} has no diffusion/ "
            "component; train one (python -m training.train_diffusion) or use "
            "--mode generative"
        )
    if mode == "cf-blend" and recommender.seed_blend is None:
        raise ExportError(
            f"--mode cf-blend needs a fitted seed blend, but {artifact} has no seed_blend/ "
            "component; fit one (text2tracks fit-seed-blend) or use --mode generative"
        )


def _export_rows(
    recommender,
    mine: Iterable[InputRow],
    n_mine: int,
    done: DoneRows,
    handle,
    summary: ExportSummary,
    *,
    batch_size: int,
    recommend_options: tuple,
    show_progress: bool,
    after_batch: Callable[[int], None] | None,
) -> None:
    """Journal this process's rows (``mine``, ``n_mine`` of them, streamed) not ``done`` yet,
    in fixed batches of ``batch_size`` good rows (fixed slices of them, so a resumed run batches
    the same). Bad rows need no model: the merge makes their records from the input."""
    from tqdm.auto import tqdm

    bar = tqdm(
        total=n_mine,
        initial=summary.n_resumed,
        unit="prompt",
        desc="export",
        disable=not show_progress or None,
        dynamic_ncols=True,
        smoothing=0.1,
    )
    n_batches, n_bad, batch = 0, 0, []
    with bar:
        for row in chain(mine, [None]):  # None: the end, which closes the last batch
            if row is not None and row.error is not None:
                n_bad += row.index not in done
                continue
            if row is not None:
                batch.append(row)
                if len(batch) < batch_size:
                    continue
            n_written = _journal_batch(recommender, batch, done, handle, summary, recommend_options)
            bar.update(n_written + n_bad)
            n_bad, batch = 0, []
            if n_written:
                n_batches += 1
                if after_batch is not None:
                    after_batch(n_batches)


def _journal_batch(recommender, batch, done: DoneRows, handle, summary, recommend_options) -> int:
    """Journal the records of ``batch``'s rows not ``done`` yet (the model runs on the whole
    batch, if any); the number journaled."""
    todo = {row.index for row in batch if row.index not in done}
    if not todo:
        return 0
    t_model = time.perf_counter()
    records, truncated = _recommend_rows(recommender, batch, *recommend_options)
    summary.model_s += time.perf_counter() - t_model
    summary.n_truncated += truncated
    append_records(handle, [r for r in records if r["row"] in todo])
    return len(todo)


def _merge_on_main(state, output: Path, source: PromptFile, summary: ExportSummary) -> None:
    """On the main process, once every process is done: write the journals' records in input
    order as the output, remove the journals, and count the rows done and failed into
    ``summary``."""
    state.wait_for_everyone()
    if state.is_main_process:
        _merge_output(output, source, summary)
    state.wait_for_everyone()


def _merge_output(output: Path, source: PromptFile, summary: ExportSummary) -> None:
    t0 = time.perf_counter()
    write_output(output, _counted(merged_records(output, source.rows()), summary))
    for path in existing_journals(output):
        path.unlink()
    summary.merge_s = time.perf_counter() - t0


def _counted(records: Iterable[dict], summary: ExportSummary) -> Iterator[dict]:
    """``records``, passed on as they come, counted into ``summary`` (the first 10 failures)."""
    for record in records:
        if record.get("error"):
            summary.n_failed += 1
            if len(summary.failures) < 10:
                summary.failures.append((record["id"], record["error"]))
        else:
            summary.n_done += 1
        yield record


def _recommend_rows(
    recommender, batch: list[InputRow], k, num_beams, mode, sampling: dict | None = None
) -> tuple[list[dict], int]:
    """Records for one batch; a row the model refuses becomes an error record, the rest go on."""
    kwargs = dict(sampling or {})
    negatives = [row.negative_prompt for row in batch]
    if any(n is not None for n in negatives):
        kwargs["negative_prompt"] = negatives
    seeds = [None if row.seed_tracks is None else list(row.seed_tracks) for row in batch]
    if any(s is not None for s in seeds):
        kwargs["seed_tracks"] = seeds
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
            records = result_records(batch, answers)
        except (ValueError, TypeError):
            if len(batch) == 1:
                raise
            records = []
            for row in batch:
                try:
                    records += _recommend_rows(recommender, [row], k, num_beams, mode, sampling)[0]
                except (ValueError, TypeError) as err:
                    records.append(error_record(row, str(err)))
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
        help='prompts: .jsonl ({"id", "prompt", "seed_tracks"}), .csv (id,prompt,seed_tracks), '
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
        choices=RECOMMEND_MODES,
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
