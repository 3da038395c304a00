"""Argument checks shared by the constrained decoder and its logits processor.

:func:`check_int` checks one integer argument and :func:`normalise_exclude` turns the
per-prompt exclusions into sorted unique arrays of item indices; both raise ``ValueError``
saying what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from text2tracks.trie import FlatTrie


def check_int(name: str, value, minimum: int = 0) -> int:
    """``value`` as an ``int``; ``ValueError`` unless it is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def normalise_exclude(exclude, trie: FlatTrie) -> list[np.ndarray] | None:
    """``exclude`` (one collection of item indices per prompt row, or None) -> sorted unique arrays."""
    if exclude is None:
        return None
    if isinstance(exclude, (str, bytes)) or not isinstance(exclude, Iterable):
        raise ValueError(
            f"exclude must be one collection of item indices per prompt, got {type(exclude).__name__}"
        )
    rows = []
    for r, items in enumerate(exclude):
        if items is None:
            items = ()
        arr = np.asarray(list(items) if not isinstance(items, np.ndarray) else items).reshape(-1)
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"exclude[{r}] must hold integer item indices, got dtype {arr.dtype}")
        arr = np.unique(arr.astype(np.int64))
        if arr.size and (arr[0] < 0 or arr[-1] >= trie.n_items):
            raise ValueError(
                f"exclude[{r}] holds item indices outside [0, {trie.n_items}): "
                f"{int(arr[0])}..{int(arr[-1])}"
            )
        rows.append(arr)
    return rows
