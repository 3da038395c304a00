"""Seed tracks as the diffusion head reads them, in the CF space.

- :func:`seed_latent`: one CF-space latent for a set of tracks, the starting point of an edit
  (``like_tracks``, DDIM inversion).
- :func:`seed_inputs`: the seed sets of a batch of prompts as a seed-conditioned head reads them
  (MO-DiT: seeds -> query latent): per prompt the mean CF item factor of its seeds (the most
  recent ``max_seeds``) and their count, 0 where a prompt has none. The head standardises the
  means itself (:meth:`~text2tracks.diffusion.DiffusionHead.set_seed_stats`).

numpy only: the training data (:mod:`training.diffusion_seeds`) and the API
(:mod:`text2tracks.latent`) compute the same summaries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def seed_latent(
    item_factors: np.ndarray,
    item_indices: list[int] | np.ndarray,
    method: str = "mean",
    regularization: float = 0.01,
) -> np.ndarray:
    """One CF-space seed latent ``(dim,)`` for a set of tracks.

    ``"mean"`` is their mean item factor. ``"fold_in"`` solves the ALS user step for a playlist
    holding exactly these tracks, ``(Y^T Y + lambda I)^{-1} Y_S^T 1`` (implicit's
    ``recalculate_user`` with unit confidence), which lives in the same space as the playlist
    factors the head was trained on.
    """
    item_factors = np.asarray(item_factors, dtype=np.float64)
    idx = np.asarray(item_indices, dtype=np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= item_factors.shape[0]:
        raise ValueError(
            f"item_indices must be non-empty and in [0, {item_factors.shape[0]}), got {idx}"
        )
    if method == "mean":
        return item_factors[idx].mean(0).astype(np.float32)
    if method == "fold_in":
        gram = item_factors.T @ item_factors + regularization * np.eye(item_factors.shape[1])
        return np.linalg.solve(gram, item_factors[idx].sum(0)).astype(np.float32)
    raise ValueError(f"method must be 'mean' or 'fold_in', got {method!r}")


def seed_inputs(
    item_factors: np.ndarray, seeds: Sequence[np.ndarray | None], max_seeds: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(seed_latents (n, dim) float32, seed_counts (n,) float32)`` of ``n`` prompts' seeds.

    ``seeds[i]``: the item indices (rows of ``item_factors``) of prompt ``i``'s seeds in order,
    oldest first, or None / empty for none. The most recent ``max_seeds`` are read, as the
    seq2seq reads them; their mean factor and count are returned (zeros for a prompt without
    seeds: count 0 is what the head reads as "no seeds")."""
    item_factors = np.asarray(item_factors)
    if item_factors.ndim != 2:
        raise ValueError(f"item_factors must be (n_items, dim), got {item_factors.shape}")
    if isinstance(max_seeds, bool) or not isinstance(max_seeds, (int, np.integer)) or max_seeds < 1:
        raise ValueError(f"max_seeds must be an integer >= 1, got {max_seeds!r}")
    latents = np.zeros((len(seeds), item_factors.shape[1]), dtype=np.float32)
    counts = np.zeros(len(seeds), dtype=np.float32)
    for i, found in enumerate(seeds):
        if found is None or len(found) == 0:
            continue
        idx = np.asarray(found, dtype=np.int64)[-int(max_seeds) :]
        if idx.min() < 0 or idx.max() >= item_factors.shape[0]:
            raise ValueError(
                f"seeds of prompt {i} must be item indices in [0, {item_factors.shape[0]}), "
                f"got {idx}"
            )
        latents[i] = item_factors[idx].astype(np.float64).mean(0)
        counts[i] = idx.size
    return latents, counts


__all__ = ["seed_inputs", "seed_latent"]
