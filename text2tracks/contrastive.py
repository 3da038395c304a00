"""GDR's contrastive term: a predicted latent, read as a retrieval query, must rank its
playlist's tracks above other tracks.

The similarity is the one retrieval uses (:mod:`text2tracks.latent_search`): the inner product
of a CF-space query (the head's destandardised x_0) with the CF item factors. For a head that
works on standardised latents ``x = (q - mean) / std`` this is ``x . (std * v) + mean . v``: the
item vectors ``std * v`` in the head's standardised space, plus a per-item bias, so ranking is
unchanged whichever space it is written in.

Targets are sparse: ``(rows, cols, weights)`` say that query ``rows[n]`` should find item
``cols[n]`` with weight ``weights[n]`` (each row's weights sum to 1 for a soft cross-entropy).
With in-batch negatives the items are the tracks sampled for the batch's playlists, one each,
and a playlist's targets are the sampled tracks it holds (its own, and any other playlist's
that it also holds, which would otherwise be a false negative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NEGATIVES = ("in_batch", "full")


def info_nce(
    queries: torch.Tensor,
    items: torch.Tensor,
    target_rows: torch.Tensor,
    target_cols: torch.Tensor,
    target_weights: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Per-query InfoNCE losses ``(batch,)``: ``-sum_j w_ij log softmax_j(q_i . v_j / tau)``.

    Args:
        queries: ``(batch, dim)`` CF-space queries.
        items: ``(n_items, dim)`` the candidate items' CF factors (positives and negatives).
        target_rows, target_cols, target_weights: ``(n_targets,)`` each: query, item, weight of
            every positive pair (a query without one gets a loss of 0).
        temperature: tau > 0.
    """
    if queries.ndim != 2 or items.ndim != 2 or queries.shape[1] != items.shape[1]:
        raise ValueError(
            f"queries (batch, dim) and items (n_items, dim) must share dim, got "
            f"{tuple(queries.shape)} and {tuple(items.shape)}"
        )
    if not target_rows.shape == target_cols.shape == target_weights.shape:
        raise ValueError(
            f"target rows, cols and weights must have one shape, got {tuple(target_rows.shape)}, "
            f"{tuple(target_cols.shape)}, {tuple(target_weights.shape)}"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    log_probs = torch.log_softmax((queries.float() @ items.float().T) / temperature, dim=1)
    rows, cols = target_rows.long(), target_cols.long()
    picked = log_probs[rows, cols] * target_weights.to(log_probs.dtype)
    return torch.zeros(queries.shape[0], device=queries.device).index_add(0, rows, -picked)


@dataclass(frozen=True)
class ContrastiveTargets:
    """What one batch's contrastive term compares against.

    Attributes:
        items: ``(n_items, dim)`` CF factors of the candidate items.
        rows, cols, weights: ``(n_targets,)`` each, the positive pairs of :func:`info_nce`.
    """

    items: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    weights: torch.Tensor

    def losses(self, queries: torch.Tensor, temperature: float) -> torch.Tensor:
        """Per-query InfoNCE losses ``(batch,)`` of CF-space ``queries`` ``(batch, dim)``."""
        return info_nce(queries, self.items, self.rows, self.cols, self.weights, temperature)

    def to(self, device) -> ContrastiveTargets:
        return ContrastiveTargets(
            *(t.to(device) for t in (self.items, self.rows, self.cols, self.weights))
        )


def contrastive_targets(
    tracks,
    item_factors: np.ndarray | torch.Tensor,
    negatives: str,
    rng: np.random.Generator,
    weighted: bool = False,
) -> ContrastiveTargets:
    """The targets of a batch of playlists.

    Args:
        tracks: scipy CSR ``(batch, n_items)``, the catalogue tracks of each playlist of the batch
            (every row non-empty).
        item_factors: ``(n_items, dim)`` CF item factors (a tensor stays where it lives).
        negatives: ``"in_batch"``: the items are one track drawn per playlist (uniformly, with
            ``rng``), and each playlist's targets are the drawn tracks it holds, weighted
            evenly; ``"full"``: the items are the whole catalogue and each playlist's targets
            are all its tracks, weighted evenly (the dense bi-encoder's loss).
        weighted: read ``tracks``' values as each row's probabilities over items (a teacher's
            list, :mod:`training.diffusion_teacher`): the in-batch track is drawn in proportion
            to them, and the targets are weighted by them (normalised per row) instead of
            evenly.
    """
    import scipy.sparse as sp

    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    tracks = sp.csr_matrix(tracks)
    lengths = np.diff(tracks.indptr)
    if lengths.size == 0 or (lengths == 0).any():
        raise ValueError("every playlist of a contrastive batch needs at least one track")
    factors = torch.as_tensor(item_factors)
    if negatives == "full":
        chosen = tracks
        items = factors
    else:
        if weighted:
            drawn = tracks.indices[_weighted_draw(tracks, rng)].astype(np.int64)
        else:
            offsets = (rng.random(lengths.size) * lengths).astype(np.int64)
            drawn = tracks.indices[tracks.indptr[:-1] + offsets].astype(np.int64)
        chosen = tracks[:, drawn]  # (batch, batch): playlist i holds the track drawn for j
        items = factors[torch.from_numpy(drawn).to(factors.device)]
    chosen = sp.coo_matrix(chosen)
    mass = chosen.data.astype(np.float64) if weighted else np.ones(chosen.nnz)
    per_row = np.bincount(chosen.row, weights=mass, minlength=lengths.size)
    device = factors.device
    return ContrastiveTargets(
        items=items,
        rows=torch.from_numpy(chosen.row.astype(np.int64)).to(device),
        cols=torch.from_numpy(chosen.col.astype(np.int64)).to(device),
        weights=torch.from_numpy((mass / per_row[chosen.row]).astype(np.float32)).to(device),
    )


def _weighted_draw(tracks, rng: np.random.Generator) -> np.ndarray:
    """One entry of each row of CSR ``tracks`` drawn in proportion to its (positive) values:
    the positions in ``tracks.indices``. One uniform number a row, as the even draw takes."""
    values = np.asarray(tracks.data, dtype=np.float64)
    if (values <= 0).any():
        raise ValueError("weighted contrastive targets need positive weights")
    cumulative = np.cumsum(values)
    before = np.concatenate([[0.0], cumulative])[tracks.indptr[:-1]]
    totals = cumulative[tracks.indptr[1:] - 1] - before
    picked = np.searchsorted(cumulative, before + rng.random(totals.size) * totals, side="right")
    return np.clip(picked, tracks.indptr[:-1], tracks.indptr[1:] - 1)


__all__ = ["NEGATIVES", "ContrastiveTargets", "contrastive_targets", "info_nce"]
