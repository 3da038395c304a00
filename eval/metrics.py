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

from collections.abc import Mapping, Sequence

import numpy as np

from text2tracks.ranking_metrics import (
    PER_PROMPT_METRICS,
    as_inputs,
    coverage,
    first_hit_ranks,
    hits_at_ks,
    per_prompt_metrics,
)

__all__ = [
    "PER_PROMPT_METRICS",
    "bootstrap_means",
    "coverage",
    "evaluate_rankings",
    "first_hit_ranks",
    "format_table",
    "hits_at_ks",
    "paired_bootstrap_diff",
    "per_prompt_metrics",
    "relevant_items",
]


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------


def relevant_items(playlists: Sequence, vocab) -> tuple[np.ndarray, list[np.ndarray], int]:
    """The relevant catalogue items of held-out playlists, skipping those with none.

    Args:
        playlists: ``Playlist`` objects (anything with ``track_ids``).
        vocab: the catalogue, an ``ItemVocab`` (its ``indices(track_ids, skip_unknown=True)``).

    Returns:
        ``(kept_indices, relevant_lists, n_skipped)``: ``kept_indices`` int64, the positions in
        ``playlists`` of the playlists with at least one catalogue track; ``relevant_lists[i]``
        the distinct item indices (int64, playlist order) of ``playlists[kept_indices[i]]``;
        ``n_skipped`` how many playlists had no catalogue track and were left out.
    """
    kept: list[int] = []
    lists: list[np.ndarray] = []
    for position, playlist in enumerate(playlists):
        items = vocab.indices(playlist.track_ids, skip_unknown=True)
        if items.size == 0:
            continue
        kept.append(position)
        lists.append(np.fromiter(dict.fromkeys(items.tolist()), dtype=np.int64))
    n_skipped = len(playlists) - len(kept)
    return np.asarray(kept, dtype=np.int64), lists, n_skipped


# ---------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------


def bootstrap_means(
    values: np.ndarray, n_bootstrap: int = 1000, seed: int = 0, chunk_elements: int = 4_000_000
) -> np.ndarray:
    """Means of ``n_bootstrap`` resamples (with replacement) of the last axis of ``values``.

    ``values`` is ``(n,)`` or ``(m, n)`` (m metrics over the same n prompts, resampled together);
    returns ``(n_bootstrap,)`` or ``(m, n_bootstrap)``. Resamples are drawn in chunks so that at
    most about ``chunk_elements`` indices are held at once.
    """
    values = np.asarray(values, dtype=np.float64)
    squeeze = values.ndim == 1
    values = np.atleast_2d(values)
    n = values.shape[1]
    if n == 0:
        raise ValueError("cannot bootstrap zero prompts")
    rng = np.random.default_rng(seed)
    out = np.empty((values.shape[0], n_bootstrap), dtype=np.float64)
    step = max(1, chunk_elements // n)
    for start in range(0, n_bootstrap, step):
        stop = min(n_bootstrap, start + step)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[:, start:stop] = values[:, idx].mean(axis=2)
    return out[0] if squeeze else out


def _interval(samples: np.ndarray, confidence: float) -> np.ndarray:
    alpha = (1.0 - confidence) / 2.0
    return np.quantile(samples, [alpha, 1.0 - alpha], axis=-1)


def evaluate_rankings(
    recommended,
    relevant,
    k: int = 10,
    n_items: int | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    n_skipped: int = 0,
    return_per_prompt: bool = False,
) -> dict:
    """Mean metrics at ``k`` with bootstrap intervals over prompts.

    Prompts whose ``relevant`` is empty are skipped and counted. ``n_skipped`` adds skips made
    earlier (e.g. by :func:`relevant_items`), so the result reports every skip.

    Returns a JSON-ready dict: ``{"k", "n_prompts", "n_skipped", "hits@k", "hits@k_ci",
    "recall@k", "recall@k_ci", "ndcg@k", "ndcg@k_ci", "mrr", "mrr_ci", "coverage@k"}``, each
    ``*_ci`` a ``[low, high]`` list; ``coverage@k`` is None without ``n_items``. With
    ``return_per_prompt`` the per-prompt arrays are added under ``"per_prompt"`` (for
    :func:`paired_bootstrap_diff`; not JSON-ready).
    """
    rec, rel = as_inputs(recommended, relevant, k)
    keep = np.fromiter((r.size > 0 for r in rel), dtype=bool, count=len(rel))
    rel = [r for r, kept in zip(rel, keep, strict=True) if kept]
    rec = rec[keep]
    result: dict = {
        "k": int(k),
        "n_prompts": int(keep.sum()),
        "n_skipped": int(n_skipped) + int((~keep).sum()),
    }
    names = {"hits": f"hits@{k}", "recall": f"recall@{k}", "ndcg": f"ndcg@{k}", "mrr": "mrr"}
    if rec.shape[0] == 0:
        for name in names.values():
            result[name] = None
            result[f"{name}_ci"] = None
        result[f"coverage@{k}"] = None
        return result
    per_prompt = per_prompt_metrics(rec, rel, k)
    stacked = np.stack([per_prompt[m] for m in PER_PROMPT_METRICS])
    lows, highs = _interval(bootstrap_means(stacked, n_bootstrap, seed), confidence)
    for row, metric in enumerate(PER_PROMPT_METRICS):
        name = names[metric]
        result[name] = float(stacked[row].mean())
        result[f"{name}_ci"] = [float(lows[row]), float(highs[row])]
    result[f"coverage@{k}"] = coverage(rec, n_items, k) if n_items is not None else None
    if return_per_prompt:
        result["per_prompt"] = per_prompt
    return result


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
    low, high = _interval(samples, confidence)
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


def _cell(metrics: Mapping, key: str, digits: int) -> str:
    value = metrics.get(key)
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        text = f"{value:.{digits}f}"
        ci = metrics.get(f"{key}_ci")
        if ci is not None:
            text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
        return text
    return str(value)


def format_table(
    results: Mapping[str, Mapping], columns: Sequence[str] | None = None, digits: int = 3
) -> str:
    """A markdown table, one row per system, cells like ``0.123 [0.110, 0.135]``.

    ``columns`` defaults to the metrics of :func:`evaluate_rankings` found in any system (at the
    ``k`` of the first system that has one) followed by ``n_prompts``; other keys of the metric
    dicts (training time, latency) can be named in ``columns``. Missing values show as ``-``.
    """
    if columns is None:
        k = next((m["k"] for m in results.values() if "k" in m), 10)
        wanted = [f"hits@{k}", f"recall@{k}", f"ndcg@{k}", "mrr", f"coverage@{k}", "n_prompts"]
        columns = [c for c in wanted if any(c in m for m in results.values())]
    header = "| system | " + " | ".join(columns) + " |"
    rule = "|---|" + "|".join("---" for _ in columns) + "|"
    lines = [header, rule]
    for name, metrics in results.items():
        cells = [_cell(metrics, column, digits) for column in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
