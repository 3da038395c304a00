"""What the scale benchmark (:mod:`eval.bench_scale`) shows of its sizes: a table per size,
``growth.png`` and the log-log growth of each stage's time between consecutive sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# the stages of eval.bench_scale, in the order they run and are shown
STAGES = (
    "parse_json",
    "parse_orjson",
    "read_mpd_columnar",
    "read_parquet_columnar",
    "interactions",
    "als",
    "residual_kmeans",
    "catalog",
    "trie",
    "decode",
    "object_reader",
)


def print_table(record: dict) -> None:
    """One size: its shape and peak RSS, then a row per stage (time, memory, model, detail)."""
    n = record["n_playlists"]
    print(
        f"\n== {n:,} playlists: {record['R']:,} rows, {record['T']:,} tracks, "
        f"{record['I']:,} catalogue items, {record['nnz']:,} nnz; peak RSS of the build "
        f"{record['build_peak_rss_mb']:,.0f} MB (with the object reader "
        f"{record['process_peak_rss_mb']:,.0f} MB); build-ids est. {record['build_ids_s']:,.0f} s "
        "(read Parquet + matrix + 15 ALS iterations + k-means + catalogue + trie)"
    )
    print(
        f"{'stage':<22}{'seconds':>10}{'peak MB':>10}{'+peak MB':>10}{'kept MB':>10}"
        f"{'model +MB':>10}  detail"
    )
    for name in STAGES:
        s = record["stages"].get(name)
        if s is None:
            continue
        model = s.get("model_peak_mb", s.get("model_mb", ""))
        detail = ", ".join(
            f"{k}={v}"
            for k, v in s.items()
            if k not in ("seconds", "peak_rss_mb", "delta_peak_mb", "kept_mb", "model_peak_mb")
        )
        print(
            f"{name:<22}{s['seconds']:>10.2f}{s['peak_rss_mb']:>10.0f}{s['delta_peak_mb']:>10.0f}"
            f"{s['kept_mb']:>10.0f}{model!s:>10}  {detail}"
        )


def plot(records: list[dict], path: Path) -> None:
    """``growth.png``: time and peak RSS increase per stage against playlists, log-log."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.8))
    sizes = [r["n_playlists"] for r in records]
    for name in STAGES:
        points = [(r["n_playlists"], r["stages"][name]) for r in records if name in r["stages"]]
        if len(points) < 1 or name.startswith("parse_") or name == "decode":
            continue
        xs = [p[0] for p in points]
        ax_t.plot(xs, [max(p[1]["seconds"], 1e-3) for p in points], "o-", label=name)
        ax_m.plot(xs, [max(p[1]["delta_peak_mb"], 0.1) for p in points], "o-", label=name)
    ax_m.plot(sizes, [r["build_peak_rss_mb"] for r in records], "k--", label="build peak RSS")
    for ax, label in ((ax_t, "seconds"), (ax_m, "peak RSS increase of the stage (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("playlists")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_title("time per stage")
    ax_m.set_title("memory per stage")
    ax_m.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def growth(records: list[dict]) -> dict:
    """Log-log slope of each stage's time and peak between consecutive sizes."""
    out = {}
    for a, b in zip(records, records[1:], strict=False):
        ratio = np.log(b["n_playlists"] / a["n_playlists"])
        key = f"{a['n_playlists']}->{b['n_playlists']}"
        out[key] = {
            name: {
                "time_slope": round(
                    float(
                        np.log(
                            max(b["stages"][name]["seconds"], 1e-3)
                            / max(a["stages"][name]["seconds"], 1e-3)
                        )
                        / ratio
                    ),
                    2,
                )
            }
            for name in STAGES
            if name in a["stages"] and name in b["stages"]
        }
    return out
