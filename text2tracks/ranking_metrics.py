"""Ranking metrics at K (pure numpy): the one implementation of Hits, Recall, NDCG, MRR,
first-hit ranks and coverage, used by the product (fitting the hybrid fusion) and, through
:mod:`eval.metrics`, by every benchmark; and the evaluation built on them that the demo
(``training.demo``) needs as well: :func:`relevant_items`, the bootstrap intervals
(:func:`bootstrap_means`, :func:`evaluate_rankings`) and :func:`format_table`. It sits in
``text2tracks`` rather than ``eval`` because the product and ``training`` need it and imports run
``semantic_ids < text2tracks < training < eval``; :mod:`eval.metrics` re-exports it and adds
the paired bootstrap.

Inputs shared by every function here:

* ``recommended``: the ranked catalogue item indices of each prompt, best first: an int array
  ``(n_prompts, K)`` or a list of lists / arrays. ``-1`` (or any negative index) is padding and
  never counts as a hit. Only the first ``k`` entries of a row are used. A repeated item counts at
  its first position only (a ranking is a list of *distinct* items; a repeat earns nothing).
* ``relevant``: the relevant item indices of each prompt (set, list or array), the catalogue tracks
  of the held-out playlist. A prompt with none cannot be scored: :func:`per_prompt_metrics` raises
  unless told to score it 0 (``allow_empty``); :func:`evaluate_rankings` skips and
  counts it, as :func:`relevant_items` does when building the lists from playlists.

Definitions (per prompt; ``hits`` = number of relevant items among the top ``k``):

* ``hits@k``   1 if at least one relevant item is in the top ``k``, else 0.
* ``recall@k`` ``hits / |relevant|``: the standard recall (not ``/ min(|relevant|, k)``). Long
  playlists therefore have recall@10 far below 1 even for a perfect ranking; hits@k and ndcg@k
  are the scale-free ones.
* ``ndcg@k``   binary gains, ``DCG = sum over relevant ranks r (1-based) of 1 / log2(r + 1)``,
  divided by the ideal DCG of ``min(|relevant|, k)`` relevant items at the top; in [0, 1].
* ``mrr``      ``1 / rank`` of the first relevant item within the top ``k`` (0 when none): MRR@k,
  truncated at the same ``k`` as the other metrics, so that every system is judged on the same
  list it returns.
* ``coverage@k`` (corpus level, no per-prompt value): distinct items recommended in the top ``k``
  over all scored prompts, divided by ``n_items`` (the catalogue size).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

PER_PROMPT_METRICS = ("hits", "recall", "ndcg", "mrr")


def as_rankings(recommended, k: int) -> np.ndarray:
    """Rankings as an int64 ``(n, k)`` matrix, rows cut to ``k`` and padded with -1."""
    if isinstance(recommended, np.ndarray) and recommended.ndim == 2:
        if recommended.size and not np.issubdtype(recommended.dtype, np.integer):
            raise ValueError(f"recommended must hold integer item indices, got {recommended.dtype}")
        out = np.full((recommended.shape[0], k), -1, dtype=np.int64)
        width = min(k, recommended.shape[1])
        out[:, :width] = recommended[:, :width]
    else:
        rows = list(recommended)
        out = np.full((len(rows), k), -1, dtype=np.int64)
        for i, row in enumerate(rows):
            row = np.asarray(row, dtype=np.int64).ravel()[:k]
            out[i, : row.size] = row
    out[out < 0] = -1
    return out


def _first_occurrence(rec: np.ndarray) -> np.ndarray:
    """Mask of entries that are valid (>= 0) and the first occurrence of their item in the row."""
    n, k = rec.shape
    valid = rec >= 0
    if k <= 1:
        return valid
    order = np.argsort(rec, axis=1, kind="stable")
    sorted_items = np.take_along_axis(rec, order, axis=1)
    repeat_sorted = np.zeros_like(valid)
    repeat_sorted[:, 1:] = sorted_items[:, 1:] == sorted_items[:, :-1]
    repeat = np.zeros_like(valid)
    np.put_along_axis(repeat, order, repeat_sorted, axis=1)
    return valid & ~repeat


def _relevance(rec: np.ndarray, relevant: Sequence[np.ndarray]) -> np.ndarray:
    """Boolean ``(n, k)``: entry ``(i, j)`` is a relevant item of prompt ``i`` (first occurrence)."""
    n, _ = rec.shape
    sizes = np.fromiter((r.size for r in relevant), dtype=np.int64, count=n)
    flat = np.concatenate(relevant) if n else np.zeros(0, dtype=np.int64)
    top = max(int(rec.max(initial=-1)), int(flat.max(initial=-1))) + 1
    # one integer key per (prompt, item): membership of every entry at once
    rel_keys = np.repeat(np.arange(n, dtype=np.int64), sizes) * top + flat
    rec_keys = np.arange(n, dtype=np.int64)[:, None] * top + rec
    hit = np.isin(rec_keys, rel_keys) & _first_occurrence(rec)
    return hit


def as_relevant(relevant: Iterable) -> list[np.ndarray]:
    """Relevant items as one sorted, distinct, non-negative int64 array per prompt."""
    out = []
    for r in relevant:
        if isinstance(r, (set, frozenset)):
            r = sorted(r)
        arr = np.unique(np.asarray(r, dtype=np.int64).ravel())
        out.append(arr[arr >= 0])
    return out


def as_inputs(recommended, relevant, k: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(as_rankings(recommended, k), as_relevant(relevant))``, one ranking per prompt or a
    ValueError."""
    rel = as_relevant(relevant)
    rec = as_rankings(recommended, k)
    if rec.shape[0] != len(rel):
        raise ValueError(
            f"recommended has {rec.shape[0]} rows but relevant has {len(rel)} entries; "
            "give one ranking per prompt."
        )
    return rec, rel


def per_prompt_metrics(
    recommended, relevant, k: int = 10, *, allow_empty: bool = False
) -> dict[str, np.ndarray]:
    """Per-prompt ``hits``, ``recall``, ``ndcg`` and ``mrr`` at ``k`` (float64 arrays, length n).

    Every prompt must have at least one relevant item (skip the others first, see
    :func:`relevant_items`); a ValueError names the first that has none. With
    ``allow_empty=True`` such a prompt scores 0 on every metric instead (fitting code that
    averages over a fixed set of prompts wants that).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rec, rel = as_inputs(recommended, relevant, k)
    sizes = np.fromiter((r.size for r in rel), dtype=np.int64, count=len(rel))
    if allow_empty and np.any(sizes == 0):
        scored = np.flatnonzero(sizes > 0)
        out = {name: np.zeros(len(rel), dtype=np.float64) for name in PER_PROMPT_METRICS}
        if scored.size:
            part = per_prompt_metrics(rec[scored], [rel[i] for i in scored], k)
            for name in PER_PROMPT_METRICS:
                out[name][scored] = part[name]
        return out
    if np.any(sizes == 0):
        first = int(np.flatnonzero(sizes == 0)[0])
        raise ValueError(
            f"prompt {first} has no relevant item; skip such prompts (relevant_items does) "
            "before scoring."
        )
    hit = _relevance(rec, rel)
    n_hits = hit.sum(axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))
    dcg = (hit * discounts).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(sizes, k) - 1]
    any_hit = n_hits > 0
    first_rank = np.where(any_hit, hit.argmax(axis=1) + 1, 0)
    mrr = np.zeros(len(rel), dtype=np.float64)
    mrr[any_hit] = 1.0 / first_rank[any_hit]
    return {
        "hits": any_hit.astype(np.float64),
        "recall": n_hits / sizes,
        "ndcg": dcg / ideal,
        "mrr": mrr,
    }


def first_hit_ranks(recommended, relevant, depth: int | None = None) -> np.ndarray:
    """1-based rank of the first relevant item in each ranking's first ``depth`` entries.

    int64 ``(n_prompts,)``; 0 where none of them is relevant. ``depth`` defaults to the widest
    ranking. Hits@K of every ``K <= depth`` follows from it (:func:`hits_at_ks`), so saving
    these ranks once is enough to draw Hits@K against K.
    """
    if depth is None:
        if isinstance(recommended, np.ndarray) and recommended.ndim == 2:
            depth = recommended.shape[1]
        else:
            recommended = [np.asarray(r).ravel() for r in recommended]
            depth = max((r.size for r in recommended), default=1)
    rec, rel = as_inputs(recommended, relevant, max(1, int(depth)))
    hit = _relevance(rec, rel)
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 0).astype(np.int64)


def hits_at_ks(first_ranks, ks: Sequence[int]) -> np.ndarray:
    """Per-prompt Hits@K for each ``K`` of ``ks`` from :func:`first_hit_ranks`: float64
    ``(len(ks), n_prompts)``; row ``j`` is 1 where the first relevant item ranks within ``ks[j]``."""
    ranks = np.asarray(first_ranks, dtype=np.int64).ravel()
    ks = np.asarray(ks, dtype=np.int64).ravel()
    if ks.size and ks.min() < 1:
        raise ValueError(f"every K must be >= 1, got {ks.min()}")
    return ((ranks[None, :] >= 1) & (ranks[None, :] <= ks[:, None])).astype(np.float64)


def coverage(recommended, n_items: int, k: int = 10) -> float:
    """Distinct valid items in the top ``k`` of all rankings, over the catalogue size."""
    if n_items < 1:
        raise ValueError(f"n_items must be >= 1, got {n_items}")
    rec = as_rankings(recommended, k)
    items = np.unique(rec[rec >= 0])
    return float(np.count_nonzero(items < n_items)) / float(n_items)


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


def bootstrap_interval(samples: np.ndarray, confidence: float) -> np.ndarray:
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
    lows, highs = bootstrap_interval(bootstrap_means(stacked, n_bootstrap, seed), confidence)
    for row, metric in enumerate(PER_PROMPT_METRICS):
        name = names[metric]
        result[name] = float(stacked[row].mean())
        result[f"{name}_ci"] = [float(lows[row]), float(highs[row])]
    result[f"coverage@{k}"] = coverage(rec, n_items, k) if n_items is not None else None
    if return_per_prompt:
        result["per_prompt"] = per_prompt
    return result


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
