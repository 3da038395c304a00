"""Hybrid re-ranking: pool beam-search and latent (faiss) candidates, fuse their scores.

Views of a candidate item for one prompt:

* generative: the constrained beam search's sequence log-probability (only for items the beam
  returned; a missing item gets the view's floor for that prompt);
* latent: the inner product of the item's CF factor with the sampled query latent(s), pooled
  over the samples by max or mean. It is computed exactly for every pooled candidate, so an item
  the beam found but faiss did not still gets its true similarity.

Each view is normalised per prompt (z-score or rank-based) before the blend, since log-probs and
inner products live on unrelated scales. :class:`FixedBlendFusion` (DAR) blends with one alpha
fitted on validation prompts; :class:`GatedFusion` (ADaFuSE's idea) predicts alpha per prompt
from cheap features of the two candidate sets.

Arrays use ``-1`` for "no item" and NaN for "no score".

The pieces live in modules with one job each, and every public name stays importable from here:
:mod:`text2tracks.latent_search` (faiss candidates around the latents),
:mod:`text2tracks.candidate_pool` (the pooled :class:`Candidates`, normalisation, blend, top k)
and :mod:`text2tracks.fusion` (the two fusions, their features and fitting metric). This module
holds :func:`rerank`, the entry point that runs them for one mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from text2tracks.candidate_pool import (
    NEGATIVE_REFERENCES,
    Candidates,
    blend,
    gather_candidates,
    negative_penalty,
    normalise_view,
    pool_candidates,
    top_k,
    with_groups,
)
from text2tracks.fusion import (
    FEATURE_NAMES,
    FUSION_METRICS,
    FixedBlendFusion,
    GatedFusion,
    alpha_curves,
    fuse,
    fusion_from_dict,
    per_prompt_metric,
    prompt_features,
)
from text2tracks.latent_search import build_index, latent_candidates, latent_similarity
from text2tracks.options import MODES

# ------------------------------------------------------------------------------------------------
# The entry point
# ------------------------------------------------------------------------------------------------


def _check_inputs(mode: str, beam: tuple, latent: tuple, negative_latents: Any) -> None:
    """What :func:`rerank` needs in each mode: ``beam`` = (items, scores), ``latent`` =
    (latents, item factors)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode in ("generative", "hybrid") and any(x is None for x in beam):
        raise ValueError(f"mode {mode!r} needs beam_items and beam_scores")
    if mode in ("latent", "hybrid") and any(x is None for x in latent):
        raise ValueError(f"mode {mode!r} needs latents and item_factors")
    if negative_latents is not None and mode != "hybrid":
        raise ValueError(
            f"negative_latents act on the fused list of mode 'hybrid', got mode {mode!r} "
            "(in latent mode the negative prompt guides the sampling)"
        )


def _reference_latents(negative_reference: str, latents: Any) -> Any:
    """What the negative penalty measures candidates against besides the catalogue."""
    if negative_reference not in NEGATIVE_REFERENCES:
        raise ValueError(
            f"negative_reference must be one of {NEGATIVE_REFERENCES}, got {negative_reference!r}"
        )
    return latents if negative_reference == "prompt" else None


def rerank(
    mode: str,
    k: int = 10,
    *,
    beam_items: Any = None,
    beam_scores: Any = None,
    latents: Any = None,
    item_factors: np.ndarray | None = None,
    index=None,
    latent_k: int = 100,
    pool: str = "max",
    fusion: FixedBlendFusion | GatedFusion | None = None,
    prompts: list[str] | None = None,
    exclude: list[set[int]] | None = None,
    negative_latents: Any = None,
    negative_weight: float = 1.0,
    item_groups: np.ndarray | None = None,
    negative_reference: str = "catalogue",
) -> tuple[np.ndarray, np.ndarray]:
    """Rank items per prompt: ``(item_indices (batch, k), scores (batch, k))``, -1 padded.

    Args:
        mode: ``"generative"`` (beam order and log-probs), ``"latent"`` (faiss around the
            sampled latents, pooled over samples) or ``"hybrid"`` (both pooled, fused).
        beam_items, beam_scores: (batch, kb) from ``constrained_generate`` (generative, hybrid).
        latents: (batch, dim) or (batch, n_samples, dim) CF-space query latents (latent, hybrid).
        item_factors: (n_items, dim) CF item factors (latent, hybrid); ``index`` reuses a faiss index.
        latent_k: faiss neighbours per sample.
        fusion: a fitted fusion for hybrid (default ``FixedBlendFusion(0.5)``).
        prompts: only used for the gate's prompt-length feature.
        exclude: per prompt, items never to return.
        negative_latents: hybrid only: (batch, [n_samples,] dim) latents of each prompt's
            negative prompt (NaN rows: none). Every pooled candidate, the beam's too, loses
            ``negative_weight`` times its :func:`negative_penalty` before the top k is taken.
        item_groups: hybrid only: each item's first ID code (``trie.item_nodes[0]``), needed by
            a fusion whose ``diversity`` is above 0.
        negative_reference: ``"prompt"``: charge only what resembles the negative more than
            ``latents`` (:func:`negative_penalty`).
    """
    _check_inputs(mode, (beam_items, beam_scores), (latents, item_factors), negative_latents)
    if mode == "generative":
        cands = pool_candidates(beam_items, beam_scores)
        return top_k(cands, np.where(cands.items >= 0, cands.generative, -np.inf), k, exclude)
    if mode == "latent":
        lat_items, lat_sims = latent_candidates(
            latents, item_factors, max(k, latent_k), index, pool, exclude
        )
        cands = pool_candidates(latent_items=lat_items, latent_scores=lat_sims)
        return top_k(cands, np.where(cands.items >= 0, cands.latent, -np.inf), k, exclude)
    cands = gather_candidates(
        beam_items,
        beam_scores,
        latents,
        item_factors,
        index=index,
        latent_k=latent_k,
        pool=pool,
        k=k,
        exclude=exclude,
        item_groups=item_groups,
    )
    penalty = None
    if negative_latents is not None:
        relative = _reference_latents(negative_reference, latents)
        penalty = negative_penalty(
            cands, negative_latents, item_factors, negative_weight, pool, relative
        )
    return fuse(
        fusion or FixedBlendFusion(0.5),
        cands,
        k,
        latents=latents,
        prompts=prompts,
        exclude=exclude,
        penalty=penalty,
    )


__all__ = [
    "Candidates",
    "FEATURE_NAMES",
    "FUSION_METRICS",
    "FixedBlendFusion",
    "GatedFusion",
    "MODES",
    "alpha_curves",
    "blend",
    "build_index",
    "fusion_from_dict",
    "latent_candidates",
    "latent_similarity",
    "negative_penalty",
    "normalise_view",
    "per_prompt_metric",
    "pool_candidates",
    "prompt_features",
    "rerank",
    "top_k",
    "with_groups",
]
