"""``text2tracks build-ids`` end to end on synthetic MPD-shaped sets of growing size (issue 14).

    python -m eval.bench_build_ids --sizes 10000,100000,1000000 [--out bench_out/build_ids]

:mod:`eval.bench_scale` times each item-side stage on its own (with a few ALS iterations,
extrapolated). This benchmark runs the real command, :func:`text2tracks.commands.build_ids.
run_build_ids` with its defaults (``BuildIDsConfig()``: 15 ALS iterations, every core, the
columnar reader for Parquet), on the synthetic Parquet set of each size
(:func:`eval.bench_scale.ensure_data`, generated once and reused), each size in a fresh process
so that its peak RSS (psutil, sampled every 10 ms) is its own. Per size it records the command's
stage timings, total seconds, peak RSS, the catalogue and matrix shape and the reader used;
prints a table, writes ``OUT/results.json`` (``size_N.json`` per size) and ``OUT/growth.png``
(seconds and peak RSS against playlists, log-log), and checks the issue's target at 1M
playlists: under 30 minutes and under 16 GiB.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting are ruinous when other processes share the cores
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from eval.bench_scale import PeakRSS, ensure_data, per_size_main  # noqa: E402
from eval.timing import int_list  # noqa: E402

STAGES = ("read+split", "interactions", "cf", "residual_kmeans", "catalogue", "write")
TARGET_SECONDS, TARGET_RSS_MB = 30 * 60, 16 * 1024


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eval.bench_build_ids", description=__doc__)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="playlists per set")
    ap.add_argument("--out", default="bench_out/build_ids")
    ap.add_argument("--data-dir", default=None, help="synthetic sets (default OUT/data)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=1, help="processes generating the data")
    ap.add_argument("--keep-artifacts", action="store_true", help="keep each size's artifact")
    ap.add_argument("--one-size", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    return ap


def run_size(n: int, args) -> dict:
    """Build IDs for the ``n``-playlist set in this process; its record."""
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids

    out = Path(args.out)
    folder, summary = ensure_data(
        n, Path(args.data_dir), args.seed, json_max=0, workers=args.workers
    )
    artifact = out / f"artifact_{n}"
    log: list[str] = []
    with PeakRSS() as rss:
        result = run_build_ids(
            folder / "parquet",
            artifact,
            BuildIDsConfig(),
            force=True,
            show_progress=False,
            log=log.append,
        )
    if not args.keep_artifacts:
        shutil.rmtree(artifact, ignore_errors=True)
    return {
        "n_playlists": n,
        "rows": summary.get("n_rows"),
        "catalogue_items": result["n_items"],
        "reader": result["reader"],
        "seconds": rss.seconds,
        "peak_rss_mb": rss.peak / 2**20,
        "start_rss_mb": rss.start / 2**20,
        "timings_s": result["timings"],
        "split": result["split"],
        "log": log,
    }


def format_table(records: list[dict]) -> str:
    head = "| playlists | rows | catalogue | reader | " + " | ".join(STAGES)
    lines = [
        head + " | total s | peak RSS MB |",
        "|" + "---|" * (len(STAGES) + 6),
    ]
    for r in records:
        stages = " | ".join(f"{r['timings_s'].get(s, float('nan')):.1f}" for s in STAGES)
        lines.append(
            f"| {r['n_playlists']:,} | {r['rows'] or 0:,} | {r['catalogue_items']:,} | "
            f"{r['reader']} | {stages} | {r['seconds']:.0f} | {r['peak_rss_mb']:,.0f} |"
        )
    big = [r for r in records if r["n_playlists"] >= 1_000_000]
    for r in big:
        ok = r["seconds"] < TARGET_SECONDS and r["peak_rss_mb"] < TARGET_RSS_MB
        lines.append(
            f"target at {r['n_playlists']:,} playlists (< 30 min, < 16 GiB): "
            f"{'met' if ok else 'missed'} ({r['seconds'] / 60:.1f} min, "
            f"{r['peak_rss_mb'] / 1024:.2f} GiB)"
        )
    return "\n".join(lines)


def plot(records: list[dict], path: Path) -> None:
    """Seconds (total and per stage) and peak RSS against playlists, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [r["n_playlists"] for r in records]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.loglog(n, [r["seconds"] for r in records], "o-", label="total", linewidth=2)
    for stage in STAGES:
        left.loglog(
            n, [max(r["timings_s"].get(stage, 0), 1e-3) for r in records], ".--", label=stage
        )
    left.axhline(TARGET_SECONDS, color="red", linewidth=0.8, label="target (30 min)")
    left.set(xlabel="playlists", ylabel="seconds", title="build-ids time")
    left.legend(fontsize=7)
    right.loglog(n, [r["peak_rss_mb"] for r in records], "o-")
    right.axhline(TARGET_RSS_MB, color="red", linewidth=0.8, label="target (16 GiB)")
    right.set(xlabel="playlists", ylabel="peak RSS (MB)", title="build-ids memory")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.data_dir = args.data_dir or str(out / "data")
    return per_size_main(
        args, int_list(args.sizes), argv, "eval.bench_build_ids", run_size, plot, format_table
    )


if __name__ == "__main__":
    sys.exit(main())
