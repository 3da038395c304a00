"""Latent candidates: faiss search around sampled query latents in the CF space.

Each prompt comes with one or more query latents ``(batch, n_samples, dim)``; the items nearest
to each sample (exact inner product, ``faiss.IndexFlatIP``) are pooled per prompt and ranked by
their pooled similarity (max or mean over the samples). Arrays use ``-1`` for "no item" and NaN
for "no score".
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import numpy as np


def build_index(item_factors: np.ndarray):
    """A ``faiss.IndexFlatIP`` over item factors ``(n_items, dim)`` (exact inner product)."""
    import faiss

    item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    if item_factors.ndim != 2:
        raise ValueError(f"item_factors must be (n_items, dim), got {item_factors.shape}")
    index = faiss.IndexFlatIP(item_factors.shape[1])
    index.add(item_factors)
    return index


def as_samples(latents: Any) -> np.ndarray:
    """Query latents as float32 ``(batch, n_samples, dim)``; ``(batch, dim)`` is one sample each."""
    latents = np.asarray(
        latents.detach().cpu() if hasattr(latents, "detach") else latents, dtype=np.float32
    )
    if latents.ndim == 2:
        latents = latents[:, None, :]
    if latents.ndim != 3:
        raise ValueError(
            f"latents must be (batch, dim) or (batch, n_samples, dim), got {latents.shape}"
        )
    return latents


def latent_similarity(
    latents: np.ndarray, item_factors: np.ndarray, item_indices: np.ndarray, pool: str = "max"
) -> np.ndarray:
    """Pooled inner products ``(batch, n)`` of items ``(batch, n)`` (-1 = none -> NaN) with the
    samples ``(batch, n_samples, dim)``; ``pool`` is ``"max"`` or ``"mean"`` over samples."""
    if pool not in ("max", "mean"):
        raise ValueError(f"pool must be 'max' or 'mean', got {pool!r}")
    latents = as_samples(latents)
    items = np.asarray(item_indices, dtype=np.int64)
    factors = np.asarray(item_factors, dtype=np.float32)[np.clip(items, 0, None)]  # (b, n, dim)
    sims = np.einsum("bnd,bsd->bns", factors, latents)
    pooled = sims.max(-1) if pool == "max" else sims.mean(-1)
    return np.where(items >= 0, pooled, np.nan).astype(np.float32)


def latent_candidates(
    latents: Any,
    item_factors: np.ndarray,
    k: int = 100,
    index=None,
    pool: str = "max",
    exclude: list[set[int]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Faiss search around each sample, candidates pooled per prompt.

    Args:
        latents: (batch, dim) or (batch, n_samples, dim) query latents in the CF space.
        item_factors: (n_items, dim).
        k: neighbours per sample; the pool holds up to ``k * n_samples`` items, and the best
            ``k`` by pooled similarity are returned.
        index: a prebuilt :func:`build_index` (built here when None).
        exclude: per prompt, item indices never to return (e.g. seed tracks).

    Returns:
        ``(item_indices (batch, k), sims (batch, k))`` sorted by pooled similarity, -1 / NaN padded.
    """
    latents = as_samples(latents)
    batch, n_samples, dim = latents.shape
    index = build_index(item_factors) if index is None else index
    n_extra = max((len(e) for e in exclude), default=0) if exclude else 0
    search_k = min(int(k) + n_extra, index.ntotal)
    _, found = index.search(np.ascontiguousarray(latents.reshape(-1, dim)), search_k)
    found = found.reshape(batch, n_samples * search_k)
    out_items = np.full((batch, k), -1, dtype=np.int64)
    out_sims = np.full((batch, k), np.nan, dtype=np.float32)
    for b in range(batch):
        pool_items = np.unique(found[b][found[b] >= 0])
        if exclude and exclude[b]:
            pool_items = pool_items[~np.isin(pool_items, list(exclude[b]))]
        if pool_items.size == 0:
            continue
        sims = latent_similarity(latents[b : b + 1], item_factors, pool_items[None], pool)[0]
        order = np.argsort(-sims, kind="stable")[:k]
        out_items[b, : order.size] = pool_items[order]
        out_sims[b, : order.size] = sims[order]
    return out_items, out_sims


def catalogue_moments(item_factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (dim,), covariance (dim, dim))`` of the item factors, in float64: the catalogue's
    similarities to a query ``q`` have mean ``mean . q`` and variance ``q^T cov q``."""
    factors = np.asarray(item_factors, dtype=np.float64)
    if factors.ndim != 2 or factors.shape[0] == 0:
        raise ValueError(f"item_factors must be (n_items >= 1, dim), got {factors.shape}")
    dim = factors.shape[1]
    return factors.mean(0), np.cov(factors, rowvar=False, bias=True).reshape(dim, dim)


# catalogue_moments_of's cache, per factor array (held weakly): the moments cost n_items * dim^2,
# and the recommender passes the same catalogue factor array with every batch.
_MOMENTS: dict[int, tuple[weakref.ref, tuple[np.ndarray, np.ndarray]]] = {}
_MOMENTS_LOCK = threading.Lock()


def catalogue_moments_of(factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`catalogue_moments` of ``factors``, computed once per array (kept while the array
    lives; pass the array itself, not a converted copy, for the cache to hold)."""
    with _MOMENTS_LOCK:
        held = _MOMENTS.get(id(factors))
        if held is not None and held[0]() is factors:
            return held[1]
        moments = catalogue_moments(factors)
        for key in [k for k, (ref, _) in _MOMENTS.items() if ref() is None]:
            del _MOMENTS[key]
        _MOMENTS[id(factors)] = (weakref.ref(factors), moments)
        return moments


def similarity_spread(queries: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """The standard deviation over the catalogue of each query's similarities,
    ``sqrt(q^T cov q)`` for queries ``(..., dim)`` (floored at 1e-12), with ``cov`` from
    :func:`catalogue_moments`."""
    queries = np.asarray(queries, dtype=np.float64)
    return np.sqrt(np.maximum(np.einsum("...d,de,...e->...", queries, cov, queries), 1e-24))


__all__ = [
    "as_samples",
    "build_index",
    "catalogue_moments",
    "catalogue_moments_of",
    "latent_candidates",
    "latent_similarity",
    "similarity_spread",
]
