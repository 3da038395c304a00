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
- ``model``: the tokenizer learned on the training prompts and the model built;
- ``examples``: :func:`training.seq2seq_data.build_examples` (prompts encoded, the title-kNN
  teacher, the epoch's draw), with the teacher's own seconds from its log line;
- ``epoch``: drawing the next epoch (``set_epoch``: vectorised, no Python loop over pairs);
- throughput: examples/s of the data loader alone (indexing + collation) and of full training
  steps (collate, forward, backward, AdamW), each the median of ``--windows`` windows of
  ``--window-batches`` batches.

Prints a table, writes ``OUT/results.json`` (``size_N.json`` per size) and ``OUT/growth.png``
(preparation seconds and peak RSS against playlists, and throughput against playlists), and
states the issue's check: training throughput at the largest size against the smallest.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from eval.bench_scale import PeakRSS, ensure_data, run_child  # noqa: E402
from eval.timing import int_list  # noqa: E402

PREP_STAGES = ("load", "model", "examples", "epoch")
REAL = 0  # --one-size 0: the --real playlists


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


def _windows(step, n_windows: int, n_batches: int, batch_size: int) -> float:
    """Median examples/s over ``n_windows`` windows of ``n_batches`` calls of ``step()`` (after
    one untimed warm-up call)."""
    step()
    rates = []
    for _ in range(n_windows):
        started, seen = time.perf_counter(), 0
        for _ in range(n_batches):
            seen += step()
        rates.append(seen / (time.perf_counter() - started))
    return statistics.median(rates)


def run_size(n: int, args) -> dict:
    """Prepare the ``n``-playlist set's training data in this process and time training."""
    import torch

    from eval.bench_train_throughput import train_step
    from text2tracks.data import normalize_prompt
    from text2tracks.modeling import build_seq2seq
    from training.seq2seq_config import TrainConfig
    from training.seq2seq_data import build_examples, load_training_data

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if n == REAL:
        playlists, artifact = map(Path, args.real)
        summary = {}
    else:
        folder, summary = ensure_data(n, Path(args.data_dir), args.seed, json_max=0)
        playlists = folder / "parquet"
        artifact = ensure_artifact(n, playlists, args)
    extra = {} if args.target_source is None else {"target_source": args.target_source}
    config = TrainConfig(artifact=str(artifact), playlists=str(playlists), **extra)
    log: list[str] = []
    stages: dict[str, dict] = {}
    with PeakRSS() as rss:
        with PeakRSS() as stage:
            data = load_training_data(config, log.append)
        stages["load"] = stage.record()
        with PeakRSS() as stage:
            catalog = data["catalog"]
            texts = data["train_prompts"]
            model, tokenizer, layout = build_seq2seq(
                config.model,
                catalog.level_sizes,
                scheme=catalog.scheme,
                prompt_texts=[normalize_prompt(t) for t in texts],
            )
            sid = layout.codes_to_token_ids(catalog.sid_codes)
        stages["model"] = stage.record()
        with PeakRSS() as stage:
            examples = build_examples(config, data, tokenizer, sid, log.append)
        stages["examples"] = stage.record()
        pairs = examples["train_pairs"]
        with PeakRSS() as stage:
            pairs.set_epoch(1)
        stages["epoch"] = stage.record()
    teacher = [line for line in log if line.startswith("teacher:")]
    run = {
        "pairs": pairs,
        "collate": examples["collate"],
        "model": model.train(),
        "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-3),
        "cursor": 0,
        "epoch": 1,
        "losses": [],
    }
    batch = config.batch_size
    cursor = {"at": 0}

    def load_only() -> int:
        at = cursor["at"] % max(1, len(pairs) - batch)
        cursor["at"] += batch
        return examples["collate"]([pairs[i] for i in range(at, at + batch)])["labels"].shape[0]

    loader_rate = _windows(load_only, args.windows, args.window_batches * 10, batch)
    train_rate = _windows(lambda: train_step(run, batch), args.windows, args.window_batches, batch)
    return {
        "set": "real" if n == REAL else "synthetic",
        "playlists": str(playlists),
        "n_playlists": n if n != REAL else None,
        "rows": summary.get("n_rows"),
        "catalogue_items": len(catalog),
        "train_playlists": len(data["train_prompts"]),
        "examples_per_epoch": len(pairs),
        "target_source": config.target_source,
        "threads": args.threads,
        "batch_size": batch,
        "stages": stages,
        "prep_seconds": rss.seconds,
        "peak_rss_mb": rss.peak / 2**20,
        "teacher_log": teacher[0] if teacher else None,
        "loader_examples_per_s": loader_rate,
        "train_examples_per_s": train_rate,
        "loss_finite": all(map(lambda x: x == x, run["losses"])),
        "log": log,
    }


def format_table(records: list[dict]) -> str:
    head = "| set | train playlists | rows | catalogue | examples/epoch | " + " | ".join(
        PREP_STAGES
    )
    lines = [
        head + " | prep s | peak RSS MB | loader ex/s | train ex/s |",
        "|" + "---|" * (len(PREP_STAGES) + 9),
    ]
    for r in records:
        stages = " | ".join(f"{r['stages'][s]['seconds']:.1f}" for s in PREP_STAGES)
        rows = f"{r['rows']:,}" if r["rows"] else "-"
        lines.append(
            f"| {r['set']} | {r['train_playlists']:,} | {rows} | {r['catalogue_items']:,} | "
            f"{r['examples_per_epoch']:,} | {stages} | {r['prep_seconds']:.0f} | "
            f"{r['peak_rss_mb']:,.0f} | {r['loader_examples_per_s']:,.0f} | "
            f"{r['train_examples_per_s']:,.0f} |"
        )
    if len(records) > 1:
        small, big = records[0], records[-1]
        lines.append(
            f"training throughput at {big['train_playlists']:,} training playlists / at "
            f"{small['train_playlists']:,}: "
            f"{big['train_examples_per_s'] / small['train_examples_per_s']:.2f}x "
            f"(data loader alone: "
            f"{big['loader_examples_per_s'] / small['loader_examples_per_s']:.2f}x)"
        )
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    """Preparation seconds per stage and peak RSS against playlists (log-log), and training
    and loader throughput against playlists."""
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
    right.semilogx(n, [r["train_examples_per_s"] for r in records], "o-", label="training step")
    right.semilogx(
        n, [r["loader_examples_per_s"] / 10 for r in records], "s--", label="loader / 10"
    )
    right.set_ylim(bottom=0)
    right.set(xlabel="training playlists", ylabel="examples / s", title="throughput")
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
    if args.one_size is not None:  # the child: one size, one process
        record = run_size(args.one_size, args)
        Path(args.result_file).write_text(json.dumps(record, indent=2) + "\n")
        return 0
    records = []
    for n in ([REAL] if args.real else []) + int_list(args.sizes):
        record = run_child(n, out, argv, module="eval.bench_train_data")
        if record is None:
            break
        records.append(record)
    if not records:
        return 1
    payload = {"host": platform.node(), "load_average": list(os.getloadavg()), "sizes": records}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(records, out / "growth.png")
    print(format_table(records))
    print(f"wrote {out / 'results.json'} and {out / 'growth.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
