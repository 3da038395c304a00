"""Soft targets per ID level: the target list's exact distribution over each level's code,
given the drawn target's prefix (a Rao-Blackwellised cross-entropy).

Training draws each example's target item ``i`` from its playlist's target list (the title-kNN
teacher's, :mod:`text2tracks.teacher`, or the playlist's own tracks) in proportion to the list's
weights ``w``, and the cross-entropy teaches the decoder ``i``'s code at every level. Averaged
over draws, the gradient at level ``l`` is that of the cross-entropy against the list's
conditional distribution of the level-``l`` code given the prefix ``i[:l]``::

    q_l(c | i[:l]) = sum of w_j over list items j with j[:l] == i[:l] and j[l] == c
                     / sum of w_j over list items j with j[:l] == i[:l]

This module computes ``q_l`` for a batch, so that the loss can use it directly: the same
expected gradient (the same optimum) with less variance, as if every prompt's list were drawn
many times per step (after DGR's distillation of a ranker's list into the generative retriever,
and ListGR's list-level targets). The drawn item still picks the prefix each level is
conditioned on. The EOS position keeps its one-hot target.

Hand-written: it reads the training loop's own target lists and semantic IDs; no library
computes prefix-conditional code distributions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from text2tracks.ragged import Ragged, as_ragged

DEFAULT_MAX_CODES = 64  # codes kept per level and example (the largest; the rest renormalised)


class SoftCodeTargets:
    """The per-level code distributions of a batch's examples (see the module docstring).

    Args:
        targets: per playlist, the catalogue item indices of its target list.
        weights: per playlist, the list's weights (``None``: uniform over the list), as
            :class:`text2tracks.data.Seq2SeqPairs` draws them.
        sid_token_ids: int ``(n_items, depth)``, each item's semantic-ID token ids.
        eos_token_id: the target of the last position.
        max_codes: at most this many codes per level and example (the most probable).
    """

    def __init__(
        self,
        targets: Sequence[Sequence[int]] | Ragged,
        weights: Sequence[Sequence[float]] | Ragged | None,
        sid_token_ids: np.ndarray,
        eos_token_id: int,
        max_codes: int = DEFAULT_MAX_CODES,
    ) -> None:
        self.targets = targets if isinstance(targets, Ragged) else as_ragged(targets, np.int64)
        self.tokens = np.asarray(sid_token_ids, dtype=np.int64)
        if self.tokens.ndim != 2 or self.tokens.shape[1] < 1:
            raise ValueError(f"sid_token_ids must be (n_items, depth), got {self.tokens.shape}")
        if weights is None:
            self.weights = None
        else:
            self.weights = (
                weights if isinstance(weights, Ragged) else as_ragged(weights, np.float64)
            )
            if not np.array_equal(self.weights.indptr, self.targets.indptr):
                raise ValueError("weights must have one weight per target, row by row")
            if self.weights.values.size and self.weights.values.min() < 0:
                raise ValueError("target weights must be >= 0")
        values = self.targets.values
        if values.size and (values.min() < 0 or values.max() >= len(self.tokens)):
            raise ValueError("a target item index is outside sid_token_ids")
        if isinstance(max_codes, bool) or not isinstance(max_codes, int) or max_codes < 1:
            raise ValueError(f"max_codes must be a positive integer, got {max_codes!r}")
        self.eos_token_id = int(eos_token_id)
        self.max_codes = max_codes

    @property
    def depth(self) -> int:
        return int(self.tokens.shape[1])

    def __call__(self, playlists: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(token_ids, probs)``, each ``(B, depth + 1, K)``: per example and position, the
        codes' token ids (``-100`` past the last) and their probabilities (summing to 1).

        Raises ``ValueError`` when an example's item is not in its playlist's list (the draw
        always takes it from there)."""
        playlists = np.asarray(playlists, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        example, entry = self._entries(playlists)
        listed = self.targets.values[entry]
        weight = (
            np.ones(entry.size) if self.weights is None else self.weights.values[entry]
        ).astype(np.float64)
        own = self.tokens[items]  # (B, depth)
        codes = self.tokens[listed]  # (N, depth)
        same = codes == own[example]
        if not np.all(np.bincount(example[same.all(1)], minlength=len(items))):
            raise ValueError("an example's target item is not in its playlist's target list")
        prefix = np.concatenate([np.ones((entry.size, 1), bool), same.cumprod(1)[:, :-1] > 0], 1)
        levels = [
            _level_distribution(example[rows], codes[rows, level], weight[rows])
            for level, rows in enumerate(prefix.T)
        ]
        width = min(self.max_codes, max(int(rank.max(initial=0)) + 1 for _, _, _, rank in levels))
        token_ids = np.full((len(items), self.depth + 1, width), -100, dtype=np.int64)
        probs = np.zeros((len(items), self.depth + 1, width), dtype=np.float32)
        for level, (owner, code, mass, rank) in enumerate(levels):
            keep = rank < width
            owner, code, mass, rank = owner[keep], code[keep], mass[keep], rank[keep]
            total = np.bincount(owner, weights=mass, minlength=len(items))
            if np.any(total[owner] <= 0):
                raise ValueError("a target list gives an example's drawn prefix no weight")
            token_ids[owner, level, rank] = code
            probs[owner, level, rank] = mass / total[owner]
        token_ids[:, -1, 0] = self.eos_token_id
        probs[:, -1, 0] = 1.0
        return token_ids, probs

    def batch(
        self, playlists: np.ndarray, items: np.ndarray, from_list: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`__call__` for the examples where ``from_list`` is true; the others (a
        seeded example's target, drawn from the playlist's own tracks, not from the list) get
        their own item's tokens, one-hot: their plain cross-entropy."""
        playlists = np.asarray(playlists, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        from_list = np.asarray(from_list, dtype=bool)
        soft = self(playlists[from_list], items[from_list]) if from_list.any() else None
        width = 1 if soft is None else soft[0].shape[2]
        token_ids = np.full((items.size, self.depth + 1, width), -100, dtype=np.int64)
        probs = np.zeros(token_ids.shape, dtype=np.float32)
        if soft is not None:
            token_ids[from_list], probs[from_list] = soft
        hard = ~from_list
        token_ids[hard, :-1, 0] = self.tokens[items[hard]]
        token_ids[hard, -1, 0] = self.eos_token_id
        probs[hard, :, 0] = 1.0
        return token_ids, probs

    def _entries(self, playlists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per list entry of the batch's playlists: its example and its index in ``targets``."""
        start = self.targets.indptr[playlists]
        lengths = self.targets.indptr[playlists + 1] - start
        example = np.repeat(np.arange(playlists.size), lengths)
        offset = np.arange(example.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        return example, np.repeat(start, lengths) + offset


def _level_distribution(example: np.ndarray, code: np.ndarray, weight: np.ndarray):
    """``(example, code, mass, rank)`` of one level: the weight of each (example, code) pair,
    sorted by example and then by decreasing mass, ``rank`` the place within its example."""
    base = int(code.max(initial=0)) + 1
    keys, inverse = np.unique(example * base + code, return_inverse=True)
    mass = np.bincount(inverse.reshape(-1), weights=weight, minlength=keys.size)
    owner, key_code = keys // base, keys % base
    order = np.lexsort((-mass, owner))
    owner, key_code, mass = owner[order], key_code[order], mass[order]
    rank = np.arange(owner.size) - np.searchsorted(owner, owner, side="left")
    return owner, key_code, mass, rank
