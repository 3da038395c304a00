"""Ranking metrics at K with bootstrap confidence intervals (pure numpy): what eval code imports.

The per-prompt metrics (``per_prompt_metrics``: Hits, Recall, NDCG, MRR at k; ``first_hit_ranks``
and ``hits_at_ks`` for Hits@K against K; ``coverage``) are implemented once, in
:mod:`text2tracks.ranking_metrics`, whose docstring defines them and their inputs: the product
fits its hybrid fusion with them, and ``text2tracks`` may not import ``eval``. They are
re-exported here beside what only evaluation needs: :func:`relevant_items`, the bootstrap
(:func:`evaluate_rankings`, :func:`paired_bootstrap_diff`) and :func:`format_table`.

A prompt with no relevant item cannot be scored: :func:`evaluate_rankings` skips it and counts it
in ``n_skipped``; :func:`relevant_items` does the same when building the lists from playlists.

Intervals are percentile bootstrap intervals over prompts (``n_bootstrap`` resamples of the
prompts with replacement, the same resamples for every metric), vectorised in chunks of
resamples so memory stays bounded for large test sets.
"""

from __future__ import annotations

import numpy as np

from text2tracks.ranking_metrics import (
    PER_PROMPT_METRICS,
    bootstrap_interval,
    bootstrap_means,
    coverage,
    evaluate_rankings,
    first_hit_ranks,
    format_table,
    hits_at_ks,
    per_prompt_metrics,
    relevant_items,
)

__all__ = [
    "PER_PROMPT_METRICS",
    "bootstrap_means",
    "paired_text",
    "coverage",
    "evaluate_rankings",
    "first_hit_ranks",
    "format_table",
    "hits_at_ks",
    "paired_bootstrap_diff",
    "per_prompt_metrics",
    "relevant_items",
]


def paired_text(comparison: dict) -> str:
    """A :func:`paired_bootstrap_diff` result as table text: ``+0.050 [+0.017, +0.084]``."""
    low, high = comparison["ci"]
    return f"{comparison['diff']:+.3f} [{low:+.3f}, {high:+.3f}]"


def paired_bootstrap_diff(
    a, b, n_bootstrap: int = 1000, seed: int = 0, confidence: float = 0.95
) -> dict:
    """Paired bootstrap of ``mean(a) - mean(b)`` for two systems scored on the same prompts.

    ``a`` and ``b`` are per-prompt values of one metric (e.g. ``per_prompt_metrics(...)["hits"]``
    of each system), aligned by prompt. Prompts are resampled together, so the interval reflects
    the difference between the systems, not the spread of the prompts.

    Returns ``{"diff", "ci": [low, high], "p_value", "n_prompts"}``; ``p_value`` is the two-sided
    bootstrap p-value ``2 * min(P(d <= 0), P(d >= 0))`` (capped at 1).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must score the same prompts, got {a.size} and {b.size} values")
    diff = a - b
    samples = bootstrap_means(diff, n_bootstrap, seed)
    low, high = bootstrap_interval(samples, confidence)
    p_value = min(1.0, 2.0 * min(np.mean(samples <= 0.0), np.mean(samples >= 0.0)))
    return {
        "diff": float(diff.mean()),
        "ci": [float(low), float(high)],
        "p_value": float(p_value),
        "n_prompts": int(a.size),
    }


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
