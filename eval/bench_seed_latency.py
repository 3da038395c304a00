"""The cost of seed tracks: decoding latency with N seeds as a ratio to none, at batch 1 and 64.

    python -m eval.bench_seed_latency --artifact DIR --playlists PATH [--seed-counts 0,1,10,25,100]
        [--batch-sizes 1,64] [--repeats 5] [--calls 2] [--k 10] [--num-threads 1]
        [--out bench_out/bench_seed_latency.json]

The artifact's model must read seeds (``max_seed_tracks`` > 0: trained with ``--seed-prob``).
Prompts are held-out playlists (test split; validation too when fewer test playlists than one
call per repeat needs) with a title and at least ``max(--seed-counts)`` catalogue tracks (those
of ``cf/``); a prompt with N seeds is the playlist's title plus its first N catalogue tracks, in
order. Every seed count is timed in one run through the public API
(``recommend(titles, k, seed_tracks=..., batch_size=b)``, the generative mode at its defaults),
on the same playlists. The repeats interleave the seed counts, in alternating order (ascending
in even repeats, descending in odd ones), so that drift in the machine's load falls on all
alike; each repeat times ``--calls`` calls per seed count and batch size, each on other
playlists, after one untimed warm-up call per seed count and batch size. Reports the median
seconds per call and per prompt of each seed count, and, against 0 seeds (always timed),
``ratio`` = median with N seeds / median with none per batch size (also the median of the
per-repeat ratios, a paired estimate). Prints a markdown table and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from pathlib import Path
from typing import Any

from eval.timing import int_list, paired_ratio, time_interleaved

DEFAULT_SEED_COUNTS = (0, 1, 10, 25, 100)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_seed_latency", description=__doc__)
    parser.add_argument("--artifact", required=True, help="an artifact whose model reads seeds")
    parser.add_argument("--playlists", required=True, help="the playlists build-ids read")
    parser.add_argument(
        "--seed-counts",
        type=int_list,
        default=list(DEFAULT_SEED_COUNTS),
        help="seeds per prompt (0 is always timed: the ratios' reference)",
    )
    parser.add_argument("--batch-sizes", type=int_list, default=[1, 64])
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--calls", type=int, default=2, help="timed calls per repeat and cell")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument(
        "--mode",
        choices=("generative", "hybrid", "cf-blend"),
        default="generative",
        help="recommend's mode (hybrid needs the artifact's diffusion head, cf-blend its "
        "seed_blend/)",
    )
    parser.add_argument("--out", default="bench_out/bench_seed_latency.json")
    return parser


def check_seed_counts(seed_counts: list[int]) -> list[int]:
    """The seed counts, sorted, without repeats, 0 first (added if missing); ``ValueError`` for a
    negative one."""
    bad = [n for n in seed_counts if n < 0]
    if bad:
        raise ValueError(f"seed counts must be integers >= 0, got {seed_counts}")
    return sorted({0, *seed_counts})


def seeded_playlists(split, vocab, min_tracks: int, needed: int) -> tuple[list[Any], list[str]]:
    """Held-out playlists with a title and at least ``min_tracks`` catalogue tracks:
    ``(titles and catalogue track ids per playlist, the splits they came from)``.

    The test split first; the validation split too when the test split has fewer than ``needed``.
    Each entry is ``(title, [catalogue track ids in playlist order])``.
    """
    chosen: list[tuple[str, list[str]]] = []
    used: list[str] = []
    for name in ("test", "validation"):
        if name != "test" and len(chosen) >= needed:
            break
        used.append(name)
        for playlist in getattr(split, name):
            title = playlist.prompt
            tracks = [t for t in playlist.track_ids if t in vocab]
            if title.strip() and len(tracks) >= min_tracks:
                chosen.append((title, tracks))
    if not chosen:
        raise ValueError(
            f"no held-out playlist ({' or '.join(used)} split) has a title and at least "
            f"{min_tracks} catalogue tracks; lower --seed-counts"
        )
    return chosen, used


def time_seed_counts(
    recommender,
    playlists: list[tuple[str, list[str]]],
    seed_counts: list[int],
    batch_sizes: list[int],
    repeats: int,
    calls: int,
    k: int = 10,
    mode: str = "generative",
) -> dict[int, dict[int, list[list[float]]]]:
    """Seconds per call, ``{batch size: {seed count: [[per call] per repeat]}}``, interleaved.

    ``playlists`` holds ``(title, catalogue track ids)``; call ``c`` of repeat ``r`` at batch size
    ``b`` takes ``b`` playlists starting at ``(r * calls + c) * b`` (cycling through them), the
    same playlists for every seed count, each prompt with its playlist's first N tracks as seeds;
    ``mode``: ``recommend``'s (hybrid: the seeds' latent and the blend of continuations too).
    """
    seed_counts = check_seed_counts(seed_counts)
    short = [t for t, tracks in playlists if len(tracks) < seed_counts[-1]]
    if not playlists or short:
        raise ValueError(
            f"every playlist needs at least {seed_counts[-1]} tracks; "
            f"{len(short)} of {len(playlists)} have fewer"
        )

    def run(n_seeds: int, index: int, size: int) -> None:
        chosen = [playlists[(index * size + j) % len(playlists)] for j in range(size)]
        titles = [title for title, _ in chosen]
        seeds = [tracks[:n_seeds] for _, tracks in chosen]
        recommender.recommend(titles, k=k, seed_tracks=seeds, batch_size=size, mode=mode)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # over-long titles, seeds over the model's
        # warm-up included: first allocations
        return time_interleaved(run, seed_counts, batch_sizes, repeats, calls)


def summarise(times: dict[int, dict[int, list[list[float]]]]) -> list[dict[str, Any]]:
    """One row per batch size and seed count: the median seconds per call and ms per prompt, the
    ratio of its median to the median with 0 seeds, and the median paired ratio (per repeat:
    median with N seeds / median with none)."""
    rows = []
    for size, by_count in times.items():
        if 0 not in by_count:
            raise ValueError(f"batch size {size}: no timings with 0 seeds, the ratios' reference")
        zero = by_count[0]
        zero_median = statistics.median(t for rep in zero for t in rep)
        for n, reps in by_count.items():
            flat = [t for rep in reps for t in rep]
            median = statistics.median(flat)
            rows.append(
                {
                    "batch_size": size,
                    "seed_count": n,
                    "s_per_call": median,
                    "ms_per_prompt": 1000 * median / size,
                    "n_calls": len(flat),
                    "ratio": median / zero_median,
                    "ratio_paired_median": paired_ratio(reps, zero),
                }
            )
    return rows


def run(args) -> dict[str, Any]:
    import torch

    from semantic_ids.interactions import ItemVocab
    from text2tracks.artifacts import CF_COMPONENT, artifact_split
    from text2tracks.pipeline import Text2Tracks

    seed_counts = check_seed_counts(args.seed_counts)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    recommender = Text2Tracks.from_pretrained(args.artifact)
    if recommender.max_seed_tracks <= 0:
        raise ValueError(
            f"{args.artifact}: its model reads no seed tracks (max_seed_tracks = 0): seeds would "
            "only be excluded; train one with --seed-prob > 0 (README, 'Seed tracks')"
        )
    vocab = ItemVocab.load(Path(args.artifact) / CF_COMPONENT)
    split = artifact_split(args.artifact, args.playlists)
    needed = max(args.batch_sizes, default=1) * max(args.calls, 1)
    playlists, splits = seeded_playlists(split, vocab, seed_counts[-1], needed)
    times = time_seed_counts(
        recommender,
        playlists,
        seed_counts,
        args.batch_sizes,
        args.repeats,
        args.calls,
        k=args.k,
        mode=args.mode,
    )
    return {
        "artifact": str(args.artifact),
        "device": str(recommender.device),
        "num_threads": torch.get_num_threads(),
        "k": args.k,
        "mode": args.mode,
        "repeats": args.repeats,
        "calls_per_repeat": args.calls,
        "seed_counts": seed_counts,
        "max_seed_tracks": recommender.max_seed_tracks,
        "seeds_read_per_count": {str(n): min(n, recommender.max_seed_tracks) for n in seed_counts},
        "num_beams": "default (max(k, DEFAULT_NUM_BEAMS))"
        if recommender.num_beams is None
        else recommender.num_beams,
        "n_playlists": len(playlists),
        "splits": splits,
        "rows": summarise(times),
        "times_s": {
            str(size): {str(n): reps for n, reps in by_count.items()}
            for size, by_count in times.items()
        },
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        "| batch | seeds | ms/prompt | ratio to 0 seeds (medians) | ratio (paired) |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['batch_size']} | {row['seed_count']} | {row['ms_per_prompt']:.1f} | "
            f"{row['ratio']:.2f}x | {row['ratio_paired_median']:.2f}x |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    from eval.benchmark_outputs import table_main

    return table_main(argv, build_parser, run, format_table)


if __name__ == "__main__":
    raise SystemExit(main())
