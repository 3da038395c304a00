"""Benchmark of the item side: CF + semantic IDs on the development MPD, and residual k-means at scale.

1. On ``--data`` (default ``../shared/data/mpd``) at each ``--min-counts``: time of each stage and
   the catalogue stats, plain residual k-means (``assignment="nearest"``) next to the default
   construction (``"matching"``): share of tracks in a shared prefix, largest group, artist
   coherence and reconstruction error per level. Built from all playlists (as the figures in the
   issue are stated) and from the training split (what ``build-ids`` does).
2. Scale: ``--scale-n`` synthetic 64-d vectors (a mixture of 2,000 Gaussian blobs), 3 x 256:
   fit + encode time and peak memory, and the same residual construction with scikit-learn's
   ``KMeans`` on a ``--sklearn-n`` subset in the same run, against faiss on the same subset.

Prints a table and writes JSON to ``--out``. Run: ``python -m eval.bench_ids``.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting are ruinous when other processes share the cores (a
# faiss k-means measured 8x slower with 2 spinning threads than with 1 on a busy 2-core box);
# must be set before faiss / implicit load their OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from semantic_ids.catalog import SemanticIDCatalog  # noqa: E402
from semantic_ids.cf import CFConfig, available_cpus, fit_cf  # noqa: E402
from semantic_ids.interactions import build_interactions  # noqa: E402
from semantic_ids.playlists import read_playlists, split_playlists  # noqa: E402
from semantic_ids.residual_kmeans import ResidualKMeans  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def bench_dev(data: str, min_counts: list[int], variants: list[str], levels: int, size: int):
    rows = []
    started = time.perf_counter()
    playlist_set = read_playlists(data)
    read_s = time.perf_counter() - started
    split = split_playlists(playlist_set.playlists)
    for variant in variants:
        playlists = playlist_set.playlists if variant == "all" else split.train
        for min_count in min_counts:
            t0 = time.perf_counter()
            matrix, vocab = build_interactions(playlists, min_count=min_count)
            t1 = time.perf_counter()
            cf = fit_cf(matrix, CFConfig(), show_progress=False)
            t2 = time.perf_counter()
            artists = [getattr(playlist_set.tracks.get(i), "artist", None) for i in vocab.item_ids]
            for assignment in ("nearest", "matching"):
                t3 = time.perf_counter()
                rkm = ResidualKMeans(n_levels=levels, codebook_size=size, assignment=assignment)
                codes = rkm.fit_encode(cf.item_factors)
                t4 = time.perf_counter()
                catalog = SemanticIDCatalog.build(vocab.item_ids, codes, vocab.counts, size)
                t5 = time.perf_counter()
                stats = catalog.stats(cf.item_factors, rkm, artists)
                rows.append(
                    {
                        "playlists": variant,
                        "n_playlists": len(playlists),
                        "min_count": min_count,
                        "assignment": assignment,
                        "tracks": len(vocab),
                        "seconds": {
                            "read": read_s,
                            "interactions": t1 - t0,
                            "cf": t2 - t1,
                            "residual_kmeans": t4 - t3,
                            "catalogue": t5 - t4,
                        },
                        "stats": stats,
                    }
                )
                _print_dev_row(rows[-1])
    return rows


def _print_dev_row(row):
    s = row["stats"]
    sec = row["seconds"]
    levels = s["levels"]

    def f(v, spec):
        return "-" if v is None else format(v, spec)

    print(
        f"{row['playlists']:>5} mc={row['min_count']} {row['assignment']:>8} tracks={row['tracks']:>6} "
        f"shared={100 * s['shared_prefix_share']:6.2f}% largest={s['largest_group']:>4} "
        f"| cf {sec['cf']:5.1f}s rkm {sec['residual_kmeans']:5.1f}s "
        f"| artist agreement/level "
        + " ".join(f(lv["artist_pair_agreement"], ".3f") for lv in levels)
        + " | mse/level "
        + " ".join(f(lv["reconstruction_mse"], ".3f") for lv in levels)
        + " | nearest-code share "
        + " ".join(f(lv["nearest_code_share"], ".2f") for lv in levels),
        flush=True,
    )


def _sklearn_residual_kmeans(x: np.ndarray, levels: int, size: int, n_iter: int, seed: int):
    """The same construction (normalised input and residuals, nearest codes) on scikit-learn."""
    from sklearn.cluster import KMeans

    r = x / np.linalg.norm(x, axis=1, keepdims=True)
    codes = np.zeros((len(x), levels), dtype=np.int32)
    for level in range(levels):
        km = KMeans(n_clusters=size, n_init=1, max_iter=n_iter, random_state=seed + level)
        codes[:, level] = km.fit_predict(r)
        e = r - km.cluster_centers_[codes[:, level]]
        r = (e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return codes


def synthetic(n: int, dim: int = 64, n_blobs: int = 2000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_blobs, dim)).astype(np.float32)
    x = centers[rng.integers(0, n_blobs, n)]
    x += 0.5 * rng.standard_normal(size=(n, dim), dtype=np.float32)
    return x


def bench_scale(n: int, sklearn_n: int, levels: int, size: int, n_iter: int):
    out = {"n": n, "dim": 64, "levels": levels, "codebook_size": size, "n_iter": n_iter}
    x = synthetic(n)
    rss_before = _peak_rss_mb()
    out["input_mb"] = x.nbytes / 2**20
    for assignment in ("matching", "nearest"):
        tracemalloc.start()
        t0 = time.perf_counter()
        rkm = ResidualKMeans(
            n_levels=levels, codebook_size=size, n_iter=n_iter, assignment=assignment
        )
        codes = rkm.fit_encode(x)
        t1 = time.perf_counter()
        encoded = rkm.encode(x)
        t2 = time.perf_counter()
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        _, counts = np.unique(codes, axis=0, return_counts=True)
        out[assignment] = {
            "fit_s": t1 - t0,
            "encode_s": t2 - t1,
            "fit_plus_encode_s": t2 - t0,
            "numpy_peak_mb": traced_peak / 2**20,
            "process_peak_rss_mb": _peak_rss_mb(),
            "shared_prefix_share": float(counts[counts > 1].sum() / n),
            "largest_group": int(counts.max()),
            "encode_equals_fit_codes_share": float((encoded == codes).all(axis=1).mean()),
        }
        print(
            f"scale {n} x 64, {assignment}: fit {t1 - t0:.1f}s, encode {t2 - t1:.1f}s, "
            f"numpy peak {traced_peak / 2**20:.0f} MB, process peak RSS {_peak_rss_mb():.0f} MB "
            f"(before fitting {rss_before:.0f} MB)",
            flush=True,
        )
    sub = x[:sklearn_n]
    t0 = time.perf_counter()
    ResidualKMeans(
        n_levels=levels,
        codebook_size=size,
        n_iter=n_iter,
        assignment="nearest",
        max_points_per_centroid=10**9,
    ).fit_encode(sub)
    faiss_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _sklearn_residual_kmeans(sub, levels, size, n_iter, seed=0)
    sklearn_s = time.perf_counter() - t0
    out["subset"] = {
        "n": sklearn_n,
        "faiss_all_points_s": faiss_s,
        "sklearn_s": sklearn_s,
        "sklearn_over_faiss": sklearn_s / faiss_s,
    }
    print(
        f"subset {sklearn_n}: faiss (every point, no subsampling) {faiss_s:.1f}s, "
        f"scikit-learn KMeans {sklearn_s:.1f}s, ratio {sklearn_s / faiss_s:.1f}x",
        flush=True,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/mpd")
    parser.add_argument("--out", default="bench_out/bench_ids.json")
    parser.add_argument("--min-counts", type=int, nargs="+", default=[2, 5])
    parser.add_argument("--variants", nargs="+", default=["all", "train"], choices=["all", "train"])
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--codebook-size", type=int, default=256)
    parser.add_argument("--scale-n", type=int, default=1_000_000)
    parser.add_argument("--sklearn-n", type=int, default=100_000)
    parser.add_argument("--scale-iterations", type=int, default=20)
    parser.add_argument("--skip-dev", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    args = parser.parse_args(argv)

    result = {
        "machine": {
            "cpus": available_cpus(),
            "platform": platform.platform(),
            "load_average_start": _load_average(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        }
    }
    if not args.skip_scale:  # first, so that its peak memory is not the MPD run's
        result["scale"] = bench_scale(
            args.scale_n, args.sklearn_n, args.levels, args.codebook_size, args.scale_iterations
        )
    if not args.skip_dev:
        result["dev"] = bench_dev(
            args.data, args.min_counts, args.variants, args.levels, args.codebook_size
        )
    result["machine"]["load_average_end"] = _load_average()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
