"""CF-smoothed targets for prompts with seed tracks: per training playlist, the tracks that a
collaborative-filtering fold-in of the whole playlist ranks highest, drawn as targets beside its
own withheld tracks.

A seeded training prompt (:mod:`text2tracks.seed_draw`) asks for "the rest of this playlist"
and its own other tracks answer it, one sampled track at a time: a noisy target, as the title's
own tracks were for title prompts (which the title-kNN teacher of :mod:`text2tracks.teacher`
smooths). The challenge's strongest seed baseline, ALS fold-in, answers from the same CF space
the semantic IDs come from; this module gives the model that smoothed view as a teacher:

    fold_in(p) = argmin_u  sum over p's tracks i of (1 - u . v_i)^2 + reg * |u|^2
               = (V_p^T V_p + reg I)^-1 V_p^T 1            (V_p: p's tracks' item factors)
    list(p)    = the ``top`` items by ``fold_in(p) . v_i``, weighted by that score (kept > 0)

Each epoch, each seeded target is replaced with probability ``weight`` by a draw from its
playlist's list in proportion to the scores; a draw that is one of that epoch's seeds keeps the
own target instead (seeds are never answers). Folding in the whole playlist, not just the seeds,
makes the list a smoothed version of the full playlist's taste, what the held-out rest samples.

Hand-written: implicit's ``recalculate_user`` folds in one user per call with confidence
weights; this is the unweighted ridge fold-in for all playlists at once (one batched 64x64
solve each), then blocked scoring with ``argpartition``. Cost: ``playlists x items x dim``
multiply-adds (5k playlists x 52k items: seconds; the full MPD's 800k x 2.2M: hours, so at that
scale keep ``seed_cf_weight`` at 0 or precompute on a machine with a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from text2tracks.ragged import Ragged, as_ragged

if TYPE_CHECKING:
    import scipy.sparse as sp

__all__ = ["CF_SOURCES", "CFLists", "ItemCosine", "cf_lists", "cooccurrence_lists", "ridge_fold_in"]

# where a seeded target's smoothed list comes from: ALS fold-in (cf_lists) or item co-occurrence
# (cooccurrence_lists)
CF_SOURCES = ("als", "cooccurrence")

DEFAULT_REGULARISATION = 0.1
_BLOCK_ENTRIES = 1 << 24  # playlist x item scores per block (64 MiB of float32)


@dataclass(frozen=True)
class CFLists:
    """Per playlist ``p``: ``items[indptr[p]:indptr[p+1]]`` best first and the cumulative
    normalised weights ``cumulative`` over that segment (the last entry of a non-empty segment
    is ``p + 1``: one unit per playlist, as :class:`text2tracks.data.Seq2SeqPairs` draws)."""

    indptr: np.ndarray
    items: np.ndarray
    cumulative: np.ndarray

    def __len__(self) -> int:
        return self.indptr.size - 1

    def draw(self, playlists: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One item per entry of ``playlists`` in proportion to its list's weights (-1 for a
        playlist whose list is empty)."""
        playlists = np.asarray(playlists, dtype=np.int64)
        lo, hi = self.indptr[playlists], self.indptr[playlists + 1]
        u = playlists + rng.random(playlists.size)
        picked = np.searchsorted(self.cumulative, u, side="right")
        picked = np.clip(picked, lo, np.maximum(hi - 1, lo))
        return np.where(hi > lo, self.items[np.minimum(picked, self.items.size - 1)], -1)

    def mix(
        self,
        playlists: np.ndarray,
        own_items: np.ndarray,
        weight: float,
        seed_keys: np.ndarray,
        n_items: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """``own_items`` (the targets of ``playlists``) with each replaced, with probability
        ``weight``, by a draw from its playlist's list; draws that are a seed of their playlist
        (``playlist * n_items + item`` in ``seed_keys``) or from an empty list keep the own
        target."""
        own_items = np.asarray(own_items, dtype=np.int64)
        swap = rng.random(own_items.size) < weight
        drawn = self.draw(np.asarray(playlists)[swap], rng)
        keys = np.asarray(playlists)[swap].astype(np.int64) * n_items + drawn
        ok = (drawn >= 0) & ~np.isin(keys, seed_keys)
        out = own_items.copy()
        out[np.flatnonzero(swap)[ok]] = drawn[ok]
        return out


def cf_lists(
    own_tracks,
    item_factors: np.ndarray,
    top: int = 100,
    regularisation: float = DEFAULT_REGULARISATION,
) -> CFLists:
    """The fold-in lists (module docstring) of every playlist of ``own_tracks`` (per playlist,
    its catalogue item indices; a sequence of lists or a :class:`Ragged`) over the rows of
    ``item_factors`` ``(n_items, dim)``. A playlist without tracks gets an empty list."""
    own: Ragged = as_ragged(own_tracks)
    factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    if factors.ndim != 2:
        raise ValueError(f"item_factors must be 2-d (n_items, dim), got {factors.shape}")
    if not regularisation > 0:
        raise ValueError(f"regularisation must be > 0, got {regularisation!r}")
    n_items, dim = factors.shape
    _check_own_and_top(own, top, n_items, "item_factors' rows")
    users = ridge_fold_in(own, factors, float(regularisation))
    top = min(int(top), n_items)
    block = max(1, _BLOCK_ENTRIES // max(n_items, 1))
    lists, weights = [], []
    for start in range(0, len(own), block):
        best, best_scores = _top_per_row(users[start : start + block] @ factors.T, top)
        lists.append(best)
        weights.append(np.maximum(best_scores, 0.0))
    items = np.concatenate(lists) if lists else np.zeros((0, top), np.int64)
    w = np.concatenate(weights) if weights else np.zeros((0, top), np.float32)
    w[own.lengths() == 0] = 0.0
    return _as_lists(items.astype(np.int64), w.astype(np.float64))


def cooccurrence_lists(own_tracks, n_items: int, top: int = 100) -> CFLists:
    """Item co-occurrence lists of every playlist of ``own_tracks``, its own vote left out: the
    ``top`` items by ``score(i) = sum over p's tracks j of cos(j, i)``, the cosine over the
    other training playlists (the item-kNN baseline of :mod:`eval.sequential`, fitted without
    ``p``: :class:`ItemCosine`), weighted by that score. With ``X`` the binary playlists x items
    matrix and ``D`` the items' playlist counts, ``x_p D^-1/2 X^T X D^-1/2`` minus ``p``'s own
    row of ``X^T X``: each of ``p``'s items loses ``sum over j in p of 1 / sqrt(n_i n_j)`` and
    the others nothing (the norms keep ``p``'s counts: a small bias, and it keeps one matrix for
    all playlists). Items only ``p`` holds score 0 and are left out, so a list holds what other
    playlists support. Computed a block of playlists at a time (``_BLOCK_ENTRIES`` scores each);
    no item x item matrix is formed."""
    import scipy.sparse as sp

    own: Ragged = as_ragged(own_tracks)
    _check_own_and_top(own, top, n_items, f"the catalogue's {n_items} items")
    lengths = own.lengths()
    rows = np.repeat(np.arange(len(own)), lengths)
    binary = sp.csr_matrix(
        (np.ones(own.values.size, np.float32), (rows, own.values)), shape=(len(own), n_items)
    )
    binary.sum_duplicates()
    binary.data[:] = 1.0
    cosine = ItemCosine(binary)
    top = min(int(top), n_items)
    block = max(1, _BLOCK_ENTRIES // max(n_items, 1))
    lists, weights = [], []
    for start in range(0, len(own), block):
        part = binary[start : start + block]
        scores = cosine.scores(part)  # x_p D^-1/2 X^T X D^-1/2
        # leave the playlist's own vote out: its row of X^T X, scaled, on its own items
        own_mass = np.asarray((part @ sp.diags(cosine.history_scale())).sum(axis=1)).ravel()
        r, c = part.nonzero()
        scores[r, c] -= own_mass[r] * cosine.inv_norms[c]
        best, best_scores = _top_per_row(scores, top)
        lists.append(best)
        weights.append(np.where(best_scores > 1e-6, best_scores, 0.0))  # rounding of a left-out 0
    items = np.concatenate(lists) if lists else np.zeros((0, top), np.int64)
    w = np.concatenate(weights) if weights else np.zeros((0, top), np.float64)
    return _as_lists(items.astype(np.int64), w.astype(np.float64))


class ItemCosine:
    """Item co-occurrence kNN over a users x items training matrix (binary): the item-kNN
    baseline of :mod:`eval.sequential` and :mod:`eval.continuation`, and the scores of
    :func:`cooccurrence_lists`.

    ``scores(rows, history_power)`` gives, per row of weighted history items ``h``,
    ``sum_j h_j * n_j ** (0.5 - history_power) * cos(j, i)`` for every item ``i``, with ``n`` the
    items' user counts and ``cos(j, i) = |U_j & U_i| / sqrt(n_j n_i)``: ``history_power`` 0.5 is
    the plain sum of cosines; 0 does not divide by the history item's count at all
    (``sum_j h_j |U_j & U_i| / sqrt(n_i)``), so a popular history item votes as much as a rare
    one; 1 divides it by ``n_j``. Computed as ``(h D^-p X^T)(X D^-1/2)``: no item x item
    matrix is formed. One instance serves every power.
    """

    def __init__(self, train: sp.csr_matrix, history_power: float = 0.5) -> None:
        import scipy.sparse as sp

        self.history_power = check_history_power(history_power)
        self.counts = np.maximum(train.getnnz(axis=0), 1).astype(np.float64)
        self.inv_norms = (1.0 / np.sqrt(self.counts)).astype(np.float32)
        binary = train.copy()
        binary.data = np.ones_like(binary.data, dtype=np.float32)
        self.binary_t = binary.T.tocsr()
        # items x users, row-major: the sparse x dense product below runs 1.7x faster than on
        # the column-major transpose of the users x items matrix (median of 7 calls, 6k users
        # x 185k items, 128 rows, one thread)
        self.scaled_t = (sp.diags(self.inv_norms) @ self.binary_t).tocsr()

    def history_scale(self, history_power: float | None = None) -> np.ndarray:
        """``n_j ** -p`` per item: the history side's weight (``p``: the instance's default)."""
        p = self.history_power if history_power is None else check_history_power(history_power)
        return (self.counts**-p).astype(np.float32)

    def scores(self, rows: sp.csr_matrix, history_power: float | None = None) -> np.ndarray:
        import scipy.sparse as sp

        left = (rows @ sp.diags(self.history_scale(history_power))).tocsr()
        users = (left @ self.binary_t).toarray()  # rows x users, dense: the next product is dense
        return np.asarray((self.scaled_t @ users.T).T, dtype=np.float32)


def check_history_power(history_power) -> float:
    """``history_power`` as a float, or a ValueError naming it when it is outside [0, 1]."""
    if not 0 <= history_power <= 1:
        raise ValueError(f"history_power must be in [0, 1], got {history_power!r}")
    return float(history_power)


def _check_own_and_top(own: Ragged, top, n_items: int, rows_named: str) -> None:
    """``top`` is a positive integer and every own track indexes one of ``n_items`` rows."""
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top must be a positive integer, got {top!r}")
    if own.values.size and (own.values.min() < 0 or own.values.max() >= n_items):
        raise ValueError(f"an own track index is outside {rows_named}")


def _top_per_row(scores: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``top`` columns by score, best first (ties in column order), and their scores."""
    best = np.argpartition(-scores, top - 1, axis=1)[:, :top]
    best_scores = np.take_along_axis(scores, best, 1)
    order = np.argsort(-best_scores, axis=1, kind="stable")
    return np.take_along_axis(best, order, 1), np.take_along_axis(best_scores, order, 1)


def ridge_fold_in(own: Ragged, factors: np.ndarray, reg: float) -> np.ndarray:
    """The unweighted ridge fold-in of each playlist of ``own`` (its item indices):
    ``(V_p^T V_p + reg I)^-1 V_p^T 1`` per playlist, ``(n_playlists, dim)`` float32 (one
    ``dim x dim`` Gram matrix per playlist, then one batched solve per block)."""
    dim = factors.shape[1]
    users = np.zeros((len(own), dim), dtype=np.float32)
    eye = reg * np.eye(dim)
    block = 4096
    for start in range(0, len(own), block):
        stop = min(start + block, len(own))
        gram = np.empty((stop - start, dim, dim))
        rhs = np.empty((stop - start, dim))
        for p in range(start, stop):
            v = factors[own.values[own.indptr[p] : own.indptr[p + 1]]].astype(np.float64)
            gram[p - start] = v.T @ v + eye
            rhs[p - start] = v.sum(0)
        users[start:stop] = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]
    return users


def _as_lists(items: np.ndarray, weights: np.ndarray) -> CFLists:
    """Rows of positive-weight items (best first) as :class:`CFLists` segments."""
    keep = weights > 0
    lengths = keep.sum(1)
    indptr = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    flat_w = weights[keep]
    owner = np.repeat(np.arange(len(items), dtype=np.int64), lengths)
    totals = np.bincount(owner, weights=flat_w, minlength=len(items))
    within = np.cumsum(flat_w) - np.repeat(np.cumsum(totals) - totals, lengths)
    cumulative = owner + within / np.maximum(totals[owner], 1e-300)
    return CFLists(indptr, items[keep], cumulative)
