"""The cost of the hybrid mode: its latency as a ratio to generative-only, at batch 1 and 64.

    python -m eval.bench_hybrid_latency --artifact DIR --playlists PATH [--batch-sizes 1,64]
        [--repeats 7] [--calls 4] [--k 10] [--num-threads 1] [--out bench_out/bench_hybrid_latency.json]

Prompts are the titles of held-out (test split) playlists. Both modes are timed in one run
through the public API (``recommend(prompts, k, mode=..., batch_size=b)``), each at its own
defaults (the generative beam width, the hybrid settings' beam candidates, samples and faiss
neighbours). The repeats interleave the modes, in alternating order (generative first in even
repeats, hybrid first in odd ones), so that drift in the machine's load falls on both alike;
each repeat times ``--calls`` calls per mode and batch size, each on other prompts, after one
untimed warm-up call per mode and batch size. Reports the median seconds per call and per prompt
of each mode, and ``ratio`` = median hybrid / median generative per batch size (also the median
of the per-repeat ratios, a paired estimate). Prints a markdown table and writes ``--out`` (JSON).

``--negative-prompt TEXT`` times a third mode, ``hybrid-negative``: the hybrid mode with that
negative prompt for every prompt and ``hybrid_settings.negative_contrast`` set to
``--negative-contrast`` (default 1; the negative then also guides the beam's view, one more
teacher-forced pass of the seq2seq over the candidates), with its ratio to generative too.
"""

from __future__ import annotations

import argparse
import statistics
import warnings
from typing import Any

from eval.timing import int_list, paired_ratio, time_interleaved

MODES = ("generative", "hybrid")
NEGATIVE = "hybrid-negative"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench_hybrid_latency", description=__doc__
    )
    parser.add_argument("--artifact", required=True, help="an artifact with a diffusion head")
    parser.add_argument("--playlists", required=True, help="the playlists build-ids read")
    parser.add_argument("--batch-sizes", type=int_list, default=[1, 64])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats")
    parser.add_argument("--calls", type=int, default=4, help="timed calls per repeat and cell")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument(
        "--negative-prompt", default=None, help="also time hybrid mode with this negative"
    )
    parser.add_argument(
        "--negative-contrast",
        type=float,
        default=1.0,
        help="hybrid_settings.negative_contrast of the hybrid-negative mode (default 1)",
    )
    parser.add_argument("--out", default="bench_out/bench_hybrid_latency.json")
    return parser


def time_modes(
    recommender,
    prompts: list[str],
    batch_sizes: list[int],
    repeats: int,
    calls: int,
    k: int = 10,
    negative: tuple[str, float] | None = None,
) -> dict[int, dict[str, list[list[float]]]]:
    """Seconds per call, ``{batch size: {mode: [[per call] per repeat]}}``, timed interleaved
    (:func:`eval.timing.time_interleaved`).

    Call ``c`` of repeat ``r`` at batch size ``b`` takes ``b`` prompts starting at
    ``(r * calls + c) * b`` (cycling through ``prompts``), the same prompts for every mode.
    ``negative``: ``(negative prompt, negative_contrast)`` of the ``hybrid-negative`` mode.
    """
    from dataclasses import replace

    plain = None if negative is None else recommender.hybrid_settings
    contrasted = None if negative is None else replace(plain, negative_contrast=negative[1])

    def run(mode: str, index: int, size: int) -> None:
        texts = [prompts[(index * size + j) % len(prompts)] for j in range(size)]
        if mode != NEGATIVE:
            recommender.recommend(texts, k=k, mode=mode, batch_size=size)
            return
        recommender.hybrid_settings = contrasted
        try:
            recommender.recommend(
                texts, k=k, mode="hybrid", batch_size=size, negative_prompt=negative[0]
            )
        finally:
            recommender.hybrid_settings = plain

    modes = MODES if negative is None else (*MODES, NEGATIVE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # over-long prompts, default fusion
        # warm-up included: lazy faiss index, first allocations
        return time_interleaved(run, modes, batch_sizes, repeats, calls)


def summarise(times: dict[int, dict[str, list[list[float]]]]) -> list[dict[str, Any]]:
    """One row per batch size: medians per mode, the ratio of medians, the median paired ratio
    (per repeat: median hybrid / median generative)."""
    rows = []
    for size, by_mode in times.items():
        row: dict[str, Any] = {"batch_size": size}
        for mode in by_mode:
            flat = [t for rep in by_mode[mode] for t in rep]
            row[f"{mode}_s_per_call"] = statistics.median(flat)
            row[f"{mode}_ms_per_prompt"] = 1000 * row[f"{mode}_s_per_call"] / size
            row[f"{mode}_n_calls"] = len(flat)
        row["ratio"] = row["hybrid_s_per_call"] / row["generative_s_per_call"]
        row["ratio_paired_median"] = paired_ratio(by_mode["hybrid"], by_mode["generative"])
        if NEGATIVE in by_mode:
            row["negative_ratio"] = row[f"{NEGATIVE}_s_per_call"] / row["generative_s_per_call"]
            row["negative_ratio_paired_median"] = paired_ratio(
                by_mode[NEGATIVE], by_mode["generative"]
            )
        rows.append(row)
    return rows


def run(args) -> dict[str, Any]:
    import torch

    from text2tracks.artifacts import artifact_split
    from text2tracks.pipeline import Text2Tracks

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    recommender = Text2Tracks.from_pretrained(args.artifact)
    if not recommender.has_diffusion:
        raise ValueError(
            f"{args.artifact} has no diffusion head: the hybrid mode cannot run "
            "(train one with python -m training.train_diffusion)"
        )
    prompts = [p.prompt for p in artifact_split(args.artifact, args.playlists).test]
    prompts = [p for p in prompts if p.strip()]
    if not prompts:
        raise ValueError(f"{args.playlists}: no test playlist has a title")
    if args.negative_contrast < 0:
        raise ValueError(f"--negative-contrast must be >= 0, got {args.negative_contrast}")
    negative = (
        None if args.negative_prompt is None else (args.negative_prompt, args.negative_contrast)
    )
    times = time_modes(
        recommender, prompts, args.batch_sizes, args.repeats, args.calls, args.k, negative
    )
    settings = recommender.hybrid_settings
    return {
        "artifact": str(args.artifact),
        "device": str(recommender.device),
        "num_threads": torch.get_num_threads(),
        "k": args.k,
        "repeats": args.repeats,
        "calls_per_repeat": args.calls,
        "generative_num_beams": "default (max(k, DEFAULT_NUM_BEAMS))"
        if recommender.num_beams is None
        else recommender.num_beams,
        "hybrid_settings": {
            "n_samples": settings.n_samples,
            "beam_candidates": settings.beam_candidates,
            "latent_k": settings.latent_k,
            "pool": settings.pool,
        },
        "fusion": type(recommender.fusion).__name__ if recommender.fusion else "default",
        "negative": None
        if negative is None
        else {"prompt": negative[0], "negative_contrast": negative[1]},
        "rows": summarise(times),
        "times_s": {str(size): by_mode for size, by_mode in times.items()},
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [
        "| batch | generative ms/prompt | hybrid ms/prompt | ratio (medians) | ratio (paired) |",
        "|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['batch_size']} | {row['generative_ms_per_prompt']:.1f} | "
            f"{row['hybrid_ms_per_prompt']:.1f} | {row['ratio']:.2f}x | "
            f"{row['ratio_paired_median']:.2f}x |"
        )
    if result.get("negative"):
        lines += [
            "",
            f"hybrid with the negative prompt {result['negative']['prompt']!r}, "
            f"negative_contrast {result['negative']['negative_contrast']:g}:",
            "| batch | ms/prompt | vs generative (medians) | (paired) |",
            "|---|---|---|---|",
        ]
        for row in result["rows"]:
            lines.append(
                f"| {row['batch_size']} | {row[f'{NEGATIVE}_ms_per_prompt']:.1f} | "
                f"{row['negative_ratio']:.2f}x | {row['negative_ratio_paired_median']:.2f}x |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    from eval.benchmark_outputs import table_main

    return table_main(argv, build_parser, run, format_table)


if __name__ == "__main__":
    raise SystemExit(main())
