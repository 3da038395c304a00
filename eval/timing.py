"""What the latency benchmarks share: comma-separated integer flags, and interleaved timing.

The machines are shared and noisy, so a benchmark that compares variants (modes, seed counts,
search paths, catalogue sizes) times them in the same run, round-robin, in an order that
alternates between repeats, so that drift in the machine's load falls on all of them alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Sequence

__all__ = ["int_list", "paired_ratio", "time_interleaved"]


def int_list(text: str) -> list[int]:
    """``"1,64"`` -> ``[1, 64]`` (an argparse ``type``; empty items are skipped)."""
    return [int(v) for v in text.split(",") if v.strip()]


def time_interleaved(
    run: Callable[[Hashable, int, int], object],
    variants: Sequence[Hashable],
    batch_sizes: Sequence[int],
    repeats: int,
    calls: int,
    warm_up: bool = True,
) -> dict[int, dict[Hashable, list[list[float]]]]:
    """Seconds per call, ``{batch size: {variant: [[per call] per repeat]}}``.

    ``run(variant, index, batch_size)`` does one call's work; call ``c`` of repeat ``r`` gets
    ``index = r * calls + c`` (so that callers can hand every variant the same inputs per call).
    With ``warm_up``, each (batch size, variant) runs once untimed first, with index 0. Repeat
    ``r`` visits the variants in order when ``r`` is even and in reverse when odd."""
    if repeats < 1 or calls < 1:
        raise ValueError(f"repeats and calls must be >= 1, got {repeats} and {calls}")
    bad = [b for b in batch_sizes if b < 1]
    if not batch_sizes or bad:
        raise ValueError(f"batch sizes must be integers >= 1, got {list(batch_sizes)}")

    def timed(variant, index: int, size: int) -> float:
        started = time.perf_counter()
        run(variant, index, size)
        return time.perf_counter() - started

    times: dict[int, dict[Hashable, list[list[float]]]] = {
        b: {v: [] for v in variants} for b in batch_sizes
    }
    if warm_up:
        for size in batch_sizes:
            for variant in variants:
                run(variant, 0, size)
    for r in range(repeats):
        order = list(variants) if r % 2 == 0 else list(variants)[::-1]
        for size in batch_sizes:
            for variant in order:
                times[size][variant].append(
                    [timed(variant, r * calls + c, size) for c in range(calls)]
                )
    return times


def paired_ratio(reps: list[list[float]], reference: list[list[float]]) -> float:
    """The median over repeats of (median of ``reps[r]`` / median of ``reference[r]``): a ratio
    of two variants timed in the same repeats (:func:`time_interleaved`), robust to drift."""
    return statistics.median(
        statistics.median(a) / statistics.median(b) for a, b in zip(reps, reference, strict=True)
    )
