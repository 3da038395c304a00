"""Seq2seq training data at growing size: preparation cost and training throughput (issue 14).

    python -m eval.bench_train_data --sizes 10000,100000,1000000 [--out bench_out/train_data]

Per size, on the synthetic MPD-shaped Parquet set of :func:`eval.bench_scale.ensure_data` (made
once and reused) and an artifact built from it by ``build-ids`` with its defaults (reused from
``--artifact-dir/artifact_N`` when there, as ``eval.bench_build_ids --keep-artifacts`` leaves
them), each size in a fresh process so that its peak RSS is its own, with the recommended
training configuration (``TrainConfig()``: teacher targets, 16 per playlist, groups of 8,
length buckets, the default T5 and subword tokenizer) and ``--threads`` torch threads:

- ``load``: :func:`training.seq2seq_data.load_training_data` (read, re-split, catalogue items
  per playlist as arrays);
- ``targets``: :func:`training.seq2seq_data.playlist_targets` (the title-kNN teacher; marked
  "(cache)" when an earlier run's lists were memory-mapped from ``ARTIFACT/.cache``: delete
  that folder to time the teacher again);
- per prompt tokenizer, the recommended subword one (learned on the training prompts, up to
  8,000 tokens: a larger set fills more of it, so the model's embedding grows) and bytes (the
  same model at every size): ``model`` (tokenizer and model built), ``examples``
  (:func:`training.seq2seq_data.build_examples` from the computed targets: prompts encoded,
  pairs, the epoch's draw) and ``epoch`` (drawing the next epoch: ``set_epoch``, vectorised,
  no Python loop over pairs);
- throughput per tokenizer: examples/s of the data loader alone (indexing + collation) and of
  full training steps (collate, forward, backward, AdamW), each the median of ``--windows``
  windows of ``--window-batches`` batches.

Prints a table, writes ``OUT/results.json`` (``size_N.json`` per size) and ``OUT/growth.png``
(preparation seconds and peak RSS, and training throughput, against training playlists), and
states the issue's check per tokenizer: each size's training throughput against the
``--reference`` size's (default the smallest), both prepared in the same process and timed
round-robin, so that the machine's load falls on both alike (``--real PLAYLISTS ARTIFACT``
adds real playlists as a first row).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import statistics  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from eval.bench_scale import PeakRSS, ensure_data, per_size_main  # noqa: E402
from eval.timing import int_list  # noqa: E402

PREP_STAGES = ("load", "targets", "model (subword)", "examples (subword)", "epoch (subword)")
REAL = 0  # --one-size 0: the --real playlists
TOKENIZERS = ("subword", "bytes")  # the recommended one first


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eval.bench_train_data", description=__doc__)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="playlists per set")
    ap.add_argument("--out", default="bench_out/train_data")
    ap.add_argument("--data-dir", default=None, help="synthetic sets (default OUT/data)")
    ap.add_argument(
        "--artifact-dir", default=None, help="reuse ARTIFACT_DIR/artifact_N (default OUT)"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument(
        "--reference",
        type=int,
        default=None,
        help="time each other size against this one in the same process (default: the "
        "smallest of --sizes; 0: off)",
    )
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--window-batches", type=int, default=4)
    ap.add_argument(
        "--target-source", default=None, help="override TrainConfig's (default: its default)"
    )
    ap.add_argument(
        "--real",
        nargs=2,
        metavar=("PLAYLISTS", "ARTIFACT"),
        default=None,
        help="also measure real playlists with an artifact built from them (first row)",
    )
    ap.add_argument("--one-size", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    return ap


def ensure_artifact(n: int, folder: Path, args) -> Path:
    """``ARTIFACT_DIR/artifact_N``, built by ``build-ids`` with its defaults when missing."""
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids

    artifact = Path(args.artifact_dir) / f"artifact_{n}"
    if not (artifact / "semantic_ids").is_dir():
        run_build_ids(folder, artifact, BuildIDsConfig(), force=True, show_progress=False)
    return artifact


def _dataset(n: int, args) -> tuple:
    """Size ``n``'s (or the ``--real`` set's) playlists path, synthetic summary and config."""
    from training.seq2seq_config import TrainConfig

    if n == REAL:
        playlists, artifact = map(Path, args.real)
        summary = {}
    else:
        folder, summary = ensure_data(n, Path(args.data_dir), args.seed, json_max=0)
        playlists = folder / "parquet"
        artifact = ensure_artifact(n, playlists, args)
    extra = {} if args.target_source is None else {"target_source": args.target_source}
    return (
        playlists,
        summary,
        TrainConfig(artifact=str(artifact), playlists=str(playlists), **extra),
    )


def run_size(n: int, args) -> dict:
    """Prepare the ``n``-playlist set's training data in this process and time training; with
    a ``--reference`` size other than ``n``, that set's training too, interleaved."""
    import torch

    from training.seq2seq_data import load_training_data, playlist_targets

    torch.set_num_threads(args.threads)
    log: list[str] = []
    playlists, summary, config = _dataset(n, args)
    reference = None
    if args.reference and n not in (args.reference, REAL):
        _, _, ref_config = _dataset(args.reference, args)
        ref_data = load_training_data(ref_config, print)
        reference = (ref_config, ref_data, playlist_targets(ref_config, ref_data, print))
    stages: dict[str, dict] = {}
    with PeakRSS() as rss:
        with PeakRSS() as stage:
            data = load_training_data(config, log.append)
        stages["load"] = stage.record()
        with PeakRSS() as stage:
            targets = playlist_targets(config, data, log.append)
        stages["targets"] = stage.record()
        throughput, n_examples = {}, 0
        for tokenizer in TOKENIZERS:  # one at a time, so that the peak is one run's
            run = _prepare(
                _with_tokenizer(config, tokenizer), data, targets, stages, tokenizer, log
            )
            ref_run = None
            if reference is not None:
                ref_config, ref_data, ref_targets = reference
                ref_config = _with_tokenizer(ref_config, tokenizer)
                ref_run = _prepare(ref_config, ref_data, ref_targets, {}, tokenizer, [])
            n_examples = len(run["pairs"])
            throughput[tokenizer] = _throughput(run, ref_run, config.batch_size, args)
            del run, ref_run
    record = {
        "set": "real" if n == REAL else "synthetic",
        "playlists": str(playlists),
        "n_playlists": n if n != REAL else None,
        "rows": summary.get("n_rows"),
        "catalogue_items": len(data["catalog"]),
        "train_playlists": len(data["train_prompts"]),
        "examples_per_epoch": n_examples,
        "target_source": config.target_source,
        "threads": args.threads,
        "batch_size": config.batch_size,
        "reference": None if reference is None else args.reference,
        "stages": stages,
        "prep_seconds": sum(stage["seconds"] for stage in stages.values()),
        "peak_rss_mb": rss.peak / 2**20,
        # the teacher's lists come from ARTIFACT/.cache when an earlier run left them there
        "targets_from_cache": any(line.startswith("teacher: targets for") for line in log),
        "log": log,
    }
    return {**record, **throughput}


def _with_tokenizer(config, tokenizer: str):
    return replace(config, model=replace(config.model, tokenizer=tokenizer))


def _prepare(config, data, targets, stages: dict, name: str, log) -> dict:
    """The model (tokenizer learned on the training prompts), the examples from the computed
    ``targets`` and the next epoch's draw, timed into ``stages``."""
    import torch

    from training.seq2seq_data import build_examples
    from training.train_seq2seq import build_model

    torch.manual_seed(config.seed)
    with PeakRSS() as stage:
        catalog = data["catalog"]
        model, tokenizer, layout, n_params = build_model(
            config, catalog, data["train_prompts"], lambda *_: None
        )
        sid = layout.codes_to_token_ids(catalog.sid_codes)
    stages[f"model ({name})"] = stage.record()
    with PeakRSS() as stage:
        examples = build_examples(config, data, tokenizer, sid, log.append, targets=targets)
    stages[f"examples ({name})"] = stage.record()
    pairs = examples["train_pairs"]
    with PeakRSS() as stage:
        pairs.set_epoch(1)
    stages[f"epoch ({name})"] = stage.record()
    return {
        "pairs": pairs,
        "collate": examples["collate"],
        "model": model.train(),
        "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-3),
        "cursor": 0,
        "epoch": 1,
        "losses": [],
        "vocab_size": len(tokenizer),
        "n_params": n_params,
    }


def _throughput(run: dict, ref_run: dict | None, batch: int, args) -> dict:
    """Examples/s of the data loader alone (indexing + collation) and of training steps: the
    median over ``--windows`` repeats of ``--window-batches`` batches (the loader: ten times
    as many), timed round-robin with the reference size's run when there is one, and then the
    ratio of the two in the same repeats."""
    from eval.bench_train_throughput import train_step
    from eval.timing import paired_ratio, time_interleaved

    runs = {"this": run} if ref_run is None else {"this": run, "reference": ref_run}

    def load_only(name, index, size) -> None:
        pairs = runs[name]["pairs"]
        at = (index * size) % max(1, len(pairs) - size)
        runs[name]["collate"]([pairs[i] for i in range(at, at + size)])

    def step(name, index, size) -> None:
        train_step(runs[name], size)

    out = {"vocab_size": run["vocab_size"], "n_params": run["n_params"]}
    for key, work, calls in (
        ("loader", load_only, args.window_batches * 10),
        ("train", step, args.window_batches),
    ):
        times = time_interleaved(work, list(runs), [batch], args.windows, calls)[batch]
        per_call = statistics.median(statistics.median(r) for r in times["this"])
        out[f"{key}_examples_per_s"] = batch / per_call
        if ref_run is not None:  # throughput ratio = the reference's time / this one's
            out[f"{key}_ratio_to_reference"] = paired_ratio(times["reference"], times["this"])
    out["loss_finite"] = bool(run["losses"]) and all(x == x for x in run["losses"])
    return out


def format_table(records: list[dict]) -> str:
    """The preparation table, the throughput table (per tokenizer) and the throughput ratios."""
    head = "| set | train playlists | rows | catalogue | examples/epoch | "
    lines = [
        head + " | ".join(PREP_STAGES) + " | prep s | peak RSS MB |",
        "|" + "---|" * (len(PREP_STAGES) + 7),
    ]
    for r in records:
        stages = " | ".join(
            f"{r['stages'][s]['seconds']:.1f}"
            + (" (cache)" if s == "targets" and r.get("targets_from_cache") else "")
            for s in PREP_STAGES
        )
        rows = f"{r['rows']:,}" if r["rows"] else "-"
        lines.append(
            f"| {r['set']} | {r['train_playlists']:,} | {rows} | {r['catalogue_items']:,} | "
            f"{r['examples_per_epoch']:,} | {stages} | {r['prep_seconds']:.0f} | "
            f"{r['peak_rss_mb']:,.0f} |"
        )
    lines += [
        "",
        "| set | train playlists | tokenizer | vocabulary | parameters | loader ex/s | "
        "train ex/s | loader vs reference | train vs reference |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        for name in TOKENIZERS:
            t = r[name]
            ratios = " | ".join(
                f"{t[f'{key}_ratio_to_reference']:.2f}x" if r.get("reference") else "-"
                for key in ("loader", "train")
            )
            lines.append(
                f"| {r['set']} | {r['train_playlists']:,} | {name} | {t['vocab_size']:,} | "
                f"{t['n_params']:,} | {t['loader_examples_per_s']:,.0f} | "
                f"{t['train_examples_per_s']:,.0f} | {ratios} |"
            )
    for r in records:
        if r.get("reference"):
            lines.append(
                f"training throughput at {r['train_playlists']:,} training playlists / at the "
                f"{r['reference']:,}-playlist set, timed round-robin in one process: "
                + ", ".join(
                    f"{name} {r[name]['train_ratio_to_reference']:.2f}x" for name in TOKENIZERS
                )
            )
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    """Preparation seconds per stage and peak RSS against training playlists (log-log), and
    per tokenizer the training throughput against the reference size's, timed in one process
    (the reference itself at 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["train_playlists"] for r in records]
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(14, 4))
    left.loglog(n, [r["prep_seconds"] for r in records], "o-", label="total", linewidth=2)
    for stage in PREP_STAGES:
        left.loglog(
            n, [max(r["stages"][stage]["seconds"], 1e-3) for r in records], ".--", label=stage
        )
    left.set(xlabel="training playlists", ylabel="seconds", title="training data preparation")
    left.legend(fontsize=7)
    mid.loglog(n, [r["peak_rss_mb"] for r in records], "o-")
    mid.set(xlabel="training playlists", ylabel="peak RSS (MB)", title="preparation memory")
    # the same-run ratio: absolute rates of separate processes carry the machine's load
    for name, style in zip(TOKENIZERS, ("o-", "s--"), strict=True):
        synthetic = [r for r in records if r["set"] == "synthetic"]
        right.semilogx(
            [r["train_playlists"] for r in synthetic],
            [r[name].get("train_ratio_to_reference", 1.0) for r in synthetic],
            style,
            label=f"{name} prompts",
        )
    right.axhline(1.0, color="grey", linewidth=0.8)
    right.set_ylim(0, 1.5)
    right.set(
        xlabel="training playlists",
        ylabel="throughput / reference size's",
        title="training throughput (same process, round-robin)",
    )
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.data_dir = args.data_dir or str(out / "data")
    args.artifact_dir = args.artifact_dir or str(out)
    sizes = int_list(args.sizes)
    if args.reference is None:
        args.reference = min(sizes) if len(sizes) > 1 else 0
    return per_size_main(
        args,
        ([REAL] if args.real else []) + sizes,
        argv,
        "eval.bench_train_data",
        run_size,
        plot,
        format_table,
    )


if __name__ == "__main__":
    raise SystemExit(main())
