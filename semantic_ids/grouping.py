"""Ranks within groups of equal keys: the one implementation behind collision digits
(:mod:`semantic_ids.catalog`, :mod:`semantic_ids.content_ids`) and the capacity check of
balanced assignment (:mod:`semantic_ids.residual_kmeans`). Pure numpy.
"""

from __future__ import annotations

import numpy as np


def rank_within_runs(sorted_keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of ``sorted_keys`` (int64, same length).

    The order inside a run is the caller's: sort by the group key and then by whatever should
    come first (``np.lexsort``) before calling.
    """
    sorted_keys = np.asarray(sorted_keys)
    if sorted_keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    lengths = np.diff(np.append(starts, sorted_keys.size))
    return np.arange(sorted_keys.size, dtype=np.int64) - np.repeat(starts, lengths)


def popularity_digits(
    group_keys: np.ndarray, popularity: np.ndarray, tie_keys: np.ndarray
) -> np.ndarray:
    """Digit of each item within its group of equal ``group_keys``: 0 for the most popular, then
    1, 2, ...; among equal popularity the smaller ``tie_keys`` value first.

    All three are ``(n,)``; ``tie_keys`` must order the items of a group completely (item ids,
    or ``np.arange(n)`` for "the earlier row first"). Returns int64 ``(n,)``.
    """
    group_keys = np.asarray(group_keys)
    n = group_keys.shape[0]
    popularity = np.asarray(popularity, dtype=np.float64)
    tie_keys = np.asarray(tie_keys)
    if popularity.shape != (n,) or tie_keys.shape != (n,):
        raise ValueError(
            f"group_keys, popularity and tie_keys must all be ({n},), got "
            f"{popularity.shape} and {tie_keys.shape}"
        )
    order = np.lexsort((tie_keys, -popularity, group_keys))
    digits = np.empty(n, dtype=np.int64)
    digits[order] = rank_within_runs(group_keys[order])
    return digits
