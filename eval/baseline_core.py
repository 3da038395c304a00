"""What every baseline shares: the :class:`Baseline` interface and :func:`rank_scores`.

A baseline's ``fit`` fills the catalogue, the training interactions and the popularity order
(:meth:`Baseline._fit_common`); its ``scores`` answers ``(n_prompts, n_items)``; ``recommend``
turns those into ``k`` distinct items per prompt with :func:`rank_scores`, ties (and prompts
without evidence) going to the more popular item. The baselines themselves are in
:mod:`eval.baselines` and :mod:`eval.dense_biencoder`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from semantic_ids.interactions import ItemVocab, build_interactions


def rank_scores(
    scores, k: int, popularity_order: np.ndarray, chunk_elements: int = 1 << 24
) -> np.ndarray:
    """Top ``k`` items per row of ``scores``, ties (and zero scores) broken by popularity.

    Args:
        scores: ``(n, n_items)`` dense array or scipy sparse matrix; higher is better. Items with
            equal scores are ordered by popularity, so all-zero rows (no evidence) return the
            most popular items and rows with fewer than ``k`` positive scores are padded with them.
        k: how many items per row.
        popularity_order: item indices, most popular first (a permutation of all items).
        chunk_elements: rows are densified in chunks of about this many entries.

    Returns:
        int64 ``(n, k)``; columns beyond the catalogue size are -1.
    """
    n, n_items = scores.shape
    out = np.full((n, k), -1, dtype=np.int64)
    kk = min(k, n_items)
    if n == 0 or kk == 0:
        return out
    popularity_order = np.asarray(popularity_order, dtype=np.int64)
    step = max(1, chunk_elements // max(1, n_items))
    for start in range(0, n, step):
        block = scores[start : start + step]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        # columns in popularity order: among equal scores the lower column wins
        block = block[:, popularity_order].astype(np.float64, copy=False)
        out[start : start + step, :kk] = popularity_order[_top_columns(block, kk)]
    return out


def _top_columns(block: np.ndarray, k: int) -> np.ndarray:
    """Per row, the ``k`` columns of largest value, ties to the lower column, best first."""
    b, n_cols = block.shape
    if k >= n_cols:
        order = np.argsort(-block, axis=1, kind="stable")
        return order[:, :k]
    # k-th largest value per row, then everything above it plus the first ties in column order
    kth = -np.partition(-block, k - 1, axis=1)[:, k - 1]
    above = block > kth[:, None]
    tie = block == kth[:, None]
    need = k - above.sum(axis=1)
    take = above | (tie & (np.cumsum(tie, axis=1) <= need[:, None]))
    rows, cols = np.nonzero(take)
    cols = cols.reshape(b, k)
    values = np.take_along_axis(block, cols, axis=1)
    order = np.lexsort((cols, -values), axis=1)
    return np.take_along_axis(cols, order, axis=1)


class Baseline:
    """Common state: the catalogue, the training interactions and popularity."""

    name = "baseline"

    vocab: ItemVocab
    interactions: sp.csr_matrix
    popularity: np.ndarray
    popularity_order: np.ndarray

    def _fit_common(self, train_playlists: Sequence, vocab: ItemVocab) -> None:
        if len(vocab) == 0:
            raise ValueError("the catalogue is empty: no track is frequent enough in training.")
        self.vocab = vocab
        self.train_playlists = list(train_playlists)
        self.interactions, _ = build_interactions(self.train_playlists, vocab=vocab)
        self.popularity = np.asarray(self.interactions.getnnz(axis=0), dtype=np.int64)
        self.popularity_order = np.argsort(-self.popularity, kind="stable").astype(np.int64)

    def fit(self, train_playlists, vocab, tracks=None, item_factors=None):
        self._fit_common(train_playlists, vocab)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "popularity_order"):
            raise RuntimeError(f"{type(self).__name__}.recommend called before fit().")

    def scores(self, prompts: Sequence[str]):
        """``(n_prompts, n_items)`` scores (dense or sparse); higher is better."""
        raise NotImplementedError

    def recommend(self, prompts: Sequence[str], k: int = 10) -> np.ndarray:
        """int64 ``(n_prompts, k)``: distinct catalogue item indices per prompt, best first."""
        self._check_fitted()
        if isinstance(prompts, str):
            raise TypeError("recommend takes a list of prompts, not one string.")
        prompts = list(prompts)
        if not prompts:
            return np.zeros((0, k), dtype=np.int64)
        return rank_scores(self.scores(prompts), k, self.popularity_order)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
