"""Checks of :class:`text2tracks.data.Seq2SeqPairs`' options and the cumulative target weights
its draw with replacement searches (split from :mod:`text2tracks.data` to keep it short)."""

from __future__ import annotations

import numpy as np

from text2tracks.ragged import Ragged, as_ragged


def check_int(name: str, value, low: int) -> int:
    """``value`` as an int; ``ValueError`` unless an integer (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_draw_options(
    prompt_ids,
    relevant,
    sid_token_ids,
    targets_per_playlist,
    popularity_power,
    item_counts,
    target_weights,
) -> np.ndarray:
    """Check :class:`Seq2SeqPairs`' data and draw options together (some exclude others);
    returns ``sid_token_ids`` as an int64 array."""
    if len(prompt_ids) != len(relevant):
        raise ValueError(
            f"prompt_ids and relevant must have one entry per playlist, got "
            f"{len(prompt_ids)} and {len(relevant)}"
        )
    if (
        isinstance(targets_per_playlist, bool)
        or not isinstance(targets_per_playlist, (int, np.integer))
        or targets_per_playlist < 0
    ):
        raise ValueError(
            f"targets_per_playlist must be an integer >= 0, got {targets_per_playlist!r}"
        )
    sid_token_ids = np.asarray(sid_token_ids, dtype=np.int64)
    if sid_token_ids.ndim != 2:
        raise ValueError(f"sid_token_ids must be (n_items, depth), got shape {sid_token_ids.shape}")
    if popularity_power and item_counts is None:
        raise ValueError("popularity_power != 0 needs item_counts")
    if target_weights is not None:
        if targets_per_playlist == 0:
            raise ValueError(
                "target_weights needs targets_per_playlist > 0 (targets are drawn "
                "from them with replacement)"
            )
        if popularity_power:
            raise ValueError("target_weights and popularity_power exclude each other")
        if len(target_weights) != len(relevant) or not np.array_equal(
            _lengths(target_weights), _lengths(relevant)
        ):
            raise ValueError("target_weights must hold one weight per relevant item")
    if popularity_power and targets_per_playlist == 0:
        raise ValueError(
            "popularity_power needs targets_per_playlist > 0 (with 0 every pair is used)"
        )
    return sid_token_ids


def _lengths(rows) -> np.ndarray:
    """Per row, its length (a :class:`Ragged`'s without a Python loop)."""
    if isinstance(rows, Ragged):
        return rows.lengths()
    return np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))


def cumulative_weights(
    target_weights, indptr: np.ndarray, lengths: np.ndarray, block: int = 1 << 22
) -> np.ndarray:
    """Per (playlist, item) pair, its playlist's cumulative target distribution up to it plus
    the playlist's index, so that one ``searchsorted`` draws every playlist's targets at once.

    One float64 array of the pairs' size is allocated (8 bytes per pair: 1.6 GB for 800k
    teacher lists of 250); the per-pair arithmetic runs in blocks of ``block`` pairs, in place,
    so that no temporary of the full size is made."""
    # a Ragged's weights are read as they are (float32 teacher lists: no float64 copy)
    if not isinstance(target_weights, Ragged):
        target_weights = as_ragged(target_weights, np.float64)
    weights = target_weights.values
    if weights.size and (not np.all(np.isfinite(weights)) or weights.min() < 0):
        raise ValueError("target_weights must be finite and >= 0")
    cum = np.zeros(weights.size + 1, dtype=np.float64)
    np.cumsum(weights, dtype=np.float64, out=cum[1:])
    before = cum[indptr[:-1]]  # per playlist, the weight of earlier playlists
    totals = cum[indptr[1:]] - before
    if np.any(totals[lengths > 0] <= 0):
        raise ValueError("every playlist with targets needs a positive total weight")
    scale = 1.0 / np.where(totals > 0, totals, 1.0)
    within = cum[1:]  # overwritten block by block: a block only reads its own entries
    ends = indptr[1:][lengths > 0] - 1  # each playlist's last entry: exactly 1 (+ its index)
    for start in range(0, within.size, block):
        stop = min(start + block, within.size)
        # each entry's playlist, found from indptr (no per-pair playlist array is kept)
        owner = np.searchsorted(indptr, np.arange(start, stop), side="right") - 1
        part = within[start:stop]
        part -= before[owner]
        part *= scale[owner]
        np.minimum(part, 1.0, out=part)
        lo, hi = np.searchsorted(ends, [start, stop])
        part[ends[lo:hi] - start] = 1.0
        part += owner
    return within
