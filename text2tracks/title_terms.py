"""Title-term rows for a joint CF embedding: items that share title words move closer.

Penha et al. (2025) found that semantic IDs built from pure collaborative-filtering embeddings
transfer poorly to text-to-item search, and that an embedding trained on both (query, item) and
(item, item) evidence does better. The 2018 RecSys Challenge winners got the same effect for
title-only playlists by factorising a matrix that stacks playlist x track with title-word x
track. This module builds those extra rows; ``build-ids --title-rows W`` appends them, scaled by
``W``, under the playlist rows before ALS, so the item factors (and the residual k-means IDs
built from them) carry title evidence. The playlist factors returned are those of the real
playlist rows only.

Terms are the words of the normalised title (:func:`text2tracks.data.normalize_prompt`, split on
anything that is not a letter, digit, mark or symbol, so emoji stay terms) and the whole
normalised title itself, kept when at least ``min_playlists`` training playlists use them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from text2tracks.data import normalize_prompt

__all__ = ["title_terms", "title_term_matrix"]

_SPLIT = re.compile(r"[^\w\U0001F000-\U0001FAFF\u2600-\u27BF]+")


def title_terms(title: str) -> list[str]:
    """Distinct terms of a title: its words and, prefixed ``"="``, the whole normalised title."""
    text = normalize_prompt(title or "")
    words = [w for w in _SPLIT.split(text) if w]
    whole = ["=" + " ".join(words)] if words else []
    return list(dict.fromkeys(words + whole))


def title_term_matrix(
    titles: Sequence[str], interactions: sp.csr_matrix, min_playlists: int = 2
) -> tuple[sp.csr_matrix, list[str]]:
    """``(n_terms, n_items)`` track counts under each title term, and the terms.

    Args:
        titles: per row of ``interactions`` (a training playlist), its title.
        interactions: ``(n_playlists, n_items)`` playlist x track matrix.
        min_playlists: terms used by fewer training playlists are dropped.

    Entry ``(t, i)`` counts the playlists whose title has term ``t`` and that hold item ``i``.
    """
    if len(titles) != interactions.shape[0]:
        raise ValueError(f"{len(titles)} titles for {interactions.shape[0]} playlists")
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for p, title in enumerate(titles):
        for term in title_terms(title):
            rows.append(vocab.setdefault(term, len(vocab)))
            cols.append(p)
    terms = list(vocab)
    term_playlist = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(terms), len(titles))
    )
    keep = np.flatnonzero(np.asarray(term_playlist.sum(axis=1)).ravel() >= min_playlists)
    binary = interactions.copy().tocsr()
    binary.data = np.ones_like(binary.data, dtype=np.float32)
    matrix = (term_playlist[keep] @ binary).tocsr()
    return matrix, [terms[i] for i in keep]
