"""Both views' candidates in one table, and the blend of their scores.

:class:`Candidates` holds the union of the beam's and the latent search's candidates per prompt,
each item with its score and rank in either view (:func:`pool_candidates`). Since beam
log-probabilities and inner products live on unrelated scales, each view is normalised per
prompt (:func:`normalise_view`: z-score or rank-based) before :func:`blend` mixes them with a
weight alpha (or, ``"mixture"`` / ``"mixture-list"``, mixes the two views read as
distributions, :func:`view_softmax`);
:func:`top_k` takes the best items by any score. :func:`negative_penalty` is what a negative
prompt takes off the fused scores in hybrid mode.

Arrays use ``-1`` for "no item" and NaN for "no score".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from text2tracks.latent_search import (
    as_samples,
    catalogue_moments_of,
    latent_candidates,
    latent_similarity,
    similarity_spread,
)

VIEW_NORMALISATIONS = ("zscore", "rank")  # one view's scores alone (normalise_view)
# How a mixture reads the latent view: "mixture", its similarities z-scored over all the
# candidates (fit_fusion(kind="mixture")); "mixture-list", its raw similarities over its own
# list only (beam-only items get probability 0 there), so that a prompt whose latent stands out
# keeps a peaked distribution, as text2tracks-hybrid reads title kNN's votes (ScoreMixture). An
# option (FixedBlendFusion(normalisation="mixture-list"), or fit(readings=MIXTURES) to pick on
# validation): on two heads of the MPD benchmark's pair it scored 0.461 and 0.455 on test
# against the z-scores' 0.460 and 0.464 (README, "Diffusion head").
MIXTURES = ("mixture", "mixture-list")
NORMALISATIONS = (*VIEW_NORMALISATIONS, *MIXTURES)  # how blend reads two views
# The beam temperatures a mixture is fitted over (FixedBlendFusion.fit): the beam's
# log-probabilities times these, then softmaxed over the candidates. 0.25 as well was tried on
# two heads of the MPD benchmark's pair: the fits chose it, and on test it scored 0.460 and
# 0.452 against 0.460 and 0.464 without it (README, "Diffusion head"), so it is not searched.
MIXTURE_BEAM_TEMPERATURES = (0.5, 1.0, 2.0)
# The (beam, latent) temperatures a "mixture" blend is fitted over: the latent's z-scores times
# the second, softmaxed over the candidates.
MIXTURE_TEMPERATURES = tuple((b, lt) for b in MIXTURE_BEAM_TEMPERATURES for lt in (1.0, 2.0, 4.0))
# A "mixture-list" blend's latent temperatures, in units of the fitting prompts' typical spread
# of similarities (latent_spread): raw similarities have the CF factors' scale, which varies
# from one artifact to the next, so the grid is made scale-free and the fitted temperature
# (raw units) saved.
MIXTURE_LIST_SPREADS = (0.1, 0.25, 0.5, 1.0, 2.0)
# What negative_penalty measures a candidate's likeness to the negative against: the catalogue
# alone, or the prompt's own latents too (prompt_latents).
NEGATIVE_REFERENCES = ("catalogue", "prompt")


@dataclass
class Candidates:
    """Union of both views' candidates per prompt.

    Attributes:
        items: (batch, n) int64 item indices, -1 = padding.
        generative: (batch, n) beam log-probs, NaN where the beam did not return the item.
        latent: (batch, n) pooled latent similarities, NaN where unknown.
        beam_rank / latent_rank: (batch, n) 0-based rank within each view, -1 where absent.
        groups: (batch, n) int64 first ID code of each candidate (-1 for padding), what a
            fusion's ``diversity`` spreads the list over (:func:`with_groups`); None if unset.
    """

    items: np.ndarray
    generative: np.ndarray
    latent: np.ndarray
    beam_rank: np.ndarray
    latent_rank: np.ndarray
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return self.items.shape[0]

    def subset(self, rows: np.ndarray) -> Candidates:
        return Candidates(
            self.items[rows],
            self.generative[rows],
            self.latent[rows],
            self.beam_rank[rows],
            self.latent_rank[rows],
            None if self.groups is None else self.groups[rows],
        )


def with_groups(candidates: Candidates, item_groups: np.ndarray | None) -> Candidates:
    """``candidates`` with each one's group, ``item_groups[item]`` (a catalogue's first-level
    trie node per item, as :func:`text2tracks.generative.diversify` groups the beam's list);
    ``None`` leaves them as they are."""
    if item_groups is None:
        return candidates
    item_groups = np.asarray(item_groups, dtype=np.int64)
    groups = np.where(candidates.items >= 0, item_groups[np.maximum(candidates.items, 0)], -1)
    return replace(candidates, groups=groups)


def _np(x: Any, dtype) -> np.ndarray | None:
    if x is None:
        return None
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def pool_candidates(
    beam_items: Any = None,
    beam_scores: Any = None,
    latent_items: Any = None,
    latent_scores: Any = None,
    latents: Any = None,
    item_factors: np.ndarray | None = None,
    pool: str = "max",
) -> Candidates:
    """Merge beam candidates ``(batch, kb)`` and latent candidates ``(batch, kl)`` into one
    :class:`Candidates`. With ``latents`` and ``item_factors`` the latent similarity is computed
    exactly for every candidate (beam-only items included)."""
    b_items, b_scores = _np(beam_items, np.int64), _np(beam_scores, np.float32)
    l_items, l_scores = _np(latent_items, np.int64), _np(latent_scores, np.float32)
    if b_items is None and l_items is None:
        raise ValueError("pool_candidates needs beam candidates, latent candidates or both")
    batch = (b_items if b_items is not None else l_items).shape[0]
    if b_items is None:
        b_items, b_scores = np.full((batch, 0), -1, np.int64), np.zeros((batch, 0), np.float32)
    if l_items is None:
        l_items, l_scores = np.full((batch, 0), -1, np.int64), np.zeros((batch, 0), np.float32)
    if b_scores is None or b_scores.shape != b_items.shape:
        raise ValueError(f"beam_scores must match beam_items {b_items.shape}")
    if l_scores is None or l_scores.shape != l_items.shape:
        raise ValueError(f"latent_scores must match latent_items {l_items.shape}")
    if l_items.shape[0] != batch:
        raise ValueError(
            f"beam and latent candidates differ in batch: {batch} vs {l_items.shape[0]}"
        )

    width = b_items.shape[1] + l_items.shape[1]
    items = np.full((batch, width), -1, np.int64)
    gen = np.full((batch, width), np.nan, np.float32)
    lat = np.full((batch, width), np.nan, np.float32)
    brank = np.full((batch, width), -1, np.int64)
    lrank = np.full((batch, width), -1, np.int64)
    for b in range(batch):
        slot: dict[int, int] = {}
        for its, scs, scores, ranks in (
            (b_items[b], b_scores[b], gen, brank),
            (l_items[b], l_scores[b], lat, lrank),
        ):
            order = np.argsort(-np.where(its >= 0, scs, -np.inf), kind="stable")
            rank = 0
            for j in order:
                item = int(its[j])
                if item < 0:
                    continue
                if item not in slot:
                    slot[item] = len(slot)
                    items[b, slot[item]] = item
                s = slot[item]
                if ranks[b, s] < 0:  # keep a view's best score for duplicates
                    scores[b, s], ranks[b, s] = scs[j], rank
                    rank += 1
    n = max(1, int((items >= 0).sum(1).max()))
    items, gen, lat, brank, lrank = (a[:, :n] for a in (items, gen, lat, brank, lrank))
    if latents is not None:
        if item_factors is None:
            raise ValueError("latents given without item_factors")
        lat = latent_similarity(latents, item_factors, items, pool)
        lrank = np.full_like(items, -1)
        for b in range(batch):
            valid = np.flatnonzero(items[b] >= 0)
            order = valid[np.argsort(-lat[b, valid], kind="stable")]
            lrank[b, order] = np.arange(order.size)
    return Candidates(items, gen, lat, brank, lrank)


def gather_candidates(
    beam_items: np.ndarray,
    beam_scores: np.ndarray,
    latents: np.ndarray,
    item_factors: np.ndarray,
    *,
    index=None,
    latent_k: int = 100,
    pool: str = "max",
    k: int = 1,
    exclude: list[set[int]] | None = None,
    item_groups: np.ndarray | None = None,
) -> Candidates:
    """Both views' candidates, pooled: the beam's ``(batch, kb)`` items and log-probs, and faiss
    around the latents ``(batch, n_samples, dim)`` (``max(k, latent_k)`` per sample). The latent
    similarity is computed exactly for every pooled candidate, beam-only items included.
    ``item_groups``: each catalogue item's first-level trie node (``trie.item_nodes[0]``), which
    a fusion's ``diversity`` spreads the list over."""
    lat_items, lat_sims = latent_candidates(
        latents, item_factors, max(int(k), int(latent_k)), index, pool, exclude
    )
    candidates = pool_candidates(
        beam_items, beam_scores, lat_items, lat_sims, latents, item_factors, pool
    )
    return with_groups(candidates, item_groups)


# ------------------------------------------------------------------------------------------------
# Normalisation and blending
# ------------------------------------------------------------------------------------------------


def normalise_view(scores: np.ndarray, method: str = "zscore") -> np.ndarray:
    """Per-row normalisation of one view's scores ``(batch, n)``; NaN (missing) -> the row's floor.

    ``zscore``: (s - mean) / std over present entries, missing at the row's minimum minus one
    standard unit (strictly below every present item). ``rank``: 1 - rank / n_present, in
    (0, 1], missing at 0. A row with no present entries is all zeros.
    """
    if method not in VIEW_NORMALISATIONS:
        raise ValueError(
            f"a view's normalisation must be one of {VIEW_NORMALISATIONS}, got {method!r}"
        )
    scores = np.asarray(scores, dtype=np.float64)
    out = np.zeros_like(scores)
    present = ~np.isnan(scores)
    for b in range(scores.shape[0]):
        idx = np.flatnonzero(present[b])
        if idx.size == 0:
            continue
        vals = scores[b, idx]
        if method == "zscore":
            std = vals.std()
            z = (vals - vals.mean()) / std if std > 0 else np.zeros_like(vals)
            out[b] = z.min() - 1.0
            out[b, idx] = z
        else:
            order = np.argsort(-vals, kind="stable")
            rank = np.empty(idx.size)
            rank[order] = np.arange(idx.size)
            out[b, idx] = 1.0 - rank / idx.size
    return out


def blend(
    candidates: Candidates,
    alpha: np.ndarray | float,
    normalisation: str = "zscore",
    temperatures: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Fused scores ``(batch, n)``: alpha * norm(generative) + (1 - alpha) * norm(latent).

    ``alpha`` is a scalar or one value per prompt; padding gets -inf. Where alpha is exactly 1
    (or 0) the other view only breaks ties, so the order is exactly that view's order.

    ``normalisation="mixture"`` reads the views as two distributions over the candidates and
    mixes those (as ``text2tracks-hybrid``'s ``ScoreMixture`` does with title kNN): the beam's
    softmax of ``temperatures[0] * log-prob`` (its own confidence kept: a peaked beam outweighs a
    flat latent list) and the softmax of ``temperatures[1] *`` the latent's z-scores; the fused
    score is the log of ``alpha * p_beam + (1 - alpha) * p_latent``, an item missing from a view
    having probability 0 there. ``"mixture-list"`` reads the latent as the softmax of
    ``temperatures[1] *`` its raw similarities over its own candidates (``latent_rank >= 0``):
    z-scores over every candidate make each prompt's latent list equally confident, raw
    similarities keep how far a prompt's latent stands out.
    """
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (len(candidates),))[:, None]
    if np.any((alpha < 0) | (alpha > 1)):
        raise ValueError("alpha must be in [0, 1]")
    tie = 1e-6
    if normalisation in MIXTURES:
        t_beam, t_latent = checked_temperatures(temperatures)
        lt = normalise_view(candidates.latent, "zscore")
        # the beam's z-scores only break the ties of prompts whose alpha is 0
        g = normalise_view(candidates.generative, "zscore") if np.any(alpha == 0) else 0.0
        valid = candidates.items >= 0
        p_beam = view_softmax(candidates.generative, t_beam, valid)
        if normalisation == "mixture":
            p_latent = view_softmax(lt, t_latent, valid & ~np.isnan(candidates.latent))
        else:
            own = valid & (candidates.latent_rank >= 0)
            p_latent = view_softmax(candidates.latent, t_latent, own)
        mixed = alpha * p_beam + (1 - alpha) * p_latent
        with np.errstate(divide="ignore"):
            fused = np.log(np.maximum(mixed, 1e-300))
    else:
        g = normalise_view(candidates.generative, normalisation)
        lt = normalise_view(candidates.latent, normalisation)
        fused = alpha * g + (1 - alpha) * lt
    fused = fused + tie * np.where(alpha == 1, lt, 0) + tie * np.where(alpha == 0, g, 0)
    return np.where(candidates.items >= 0, fused, -np.inf)


def checked_temperatures(temperatures) -> tuple[float, float]:
    """A mixture's (beam, latent) temperatures as two floats > 0, or a ValueError saying so."""
    pair = tuple(float(t) for t in temperatures)
    if len(pair) != 2 or not all(np.isfinite(t) and t > 0 for t in pair):
        raise ValueError(
            f"temperatures must be two finite numbers > 0 (beam, latent), got {temperatures!r}"
        )
    return pair


def latent_spread(candidates: Candidates) -> float:
    """The typical spread of the latent's similarities: the median over prompts of their
    standard deviation over the candidates (1.0 when none has two); the unit of
    :data:`MIXTURE_LIST_SPREADS`."""
    sims = np.where(candidates.items >= 0, candidates.latent.astype(np.float64), np.nan)
    counts = (~np.isnan(sims)).sum(axis=1)
    rows = sims[counts >= 2]
    if not len(rows):
        return 1.0
    spread = float(np.median(np.nanstd(rows, axis=1)))
    return spread if np.isfinite(spread) and spread > 0 else 1.0


def view_softmax(scores: np.ndarray, temperature: float, present: np.ndarray) -> np.ndarray:
    """Per-row softmax of ``temperature * scores`` over the ``present`` entries that are not NaN
    (probability 0 elsewhere; a row with none is all 0): one view read as a distribution over
    the candidates, as the ``"mixture"`` blend and ``text2tracks-hybrid``'s ``ScoreMixture``
    read it."""
    present = present & ~np.isnan(scores)
    z = np.where(present, temperature * np.nan_to_num(scores.astype(np.float64)), -np.inf)
    top = z.max(axis=1, keepdims=True)
    p = np.exp(z - np.where(np.isfinite(top), top, 0.0))
    return p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)


def top_k(
    candidates: Candidates,
    scores: np.ndarray,
    k: int,
    exclude: list[set[int]] | None = None,
    diversity: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` candidates by ``scores``: ``(items (batch, k), scores (batch, k))``, -1 / -inf
    padded. ``diversity`` > 0 picks the first answers as the generative list does
    (:func:`text2tracks.generative.diversify` over ``candidates.groups``; the scores returned are
    then the adjusted ones)."""
    scores = np.array(scores, dtype=np.float64)
    if exclude:
        for b, ex in enumerate(exclude):
            if ex:
                scores[b, np.isin(candidates.items[b], list(ex))] = -np.inf
    width = k if diversity <= 0 else scores.shape[1]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :width]
    items = np.take_along_axis(candidates.items, order, 1)
    top = np.take_along_axis(scores, order, 1)
    if items.shape[1] < k:
        pad = k - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf)
        order = np.pad(order, ((0, 0), (0, pad)), constant_values=-1)
    if diversity > 0:
        if candidates.groups is None:
            raise ValueError(
                f"this fusion spreads its list over first ID codes (diversity={diversity}) but "
                "the candidates carry no groups; gather them with item_groups (the catalogue's "
                "first-level trie nodes, e.g. Text2Tracks.trie.item_nodes[0])"
            )
        from text2tracks.generative import diversify

        groups = np.where(
            order >= 0, np.take_along_axis(candidates.groups, np.maximum(order, 0), 1), -1
        )
        items, top = diversify(items, top, groups, k, diversity)
    items = np.where(np.isfinite(top), items, -1)
    return items, top


def negative_penalty(
    candidates: Candidates,
    negative_latents: Any,
    item_factors: np.ndarray,
    weight: float = 1.0,
    pool: str = "max",
    prompt_latents: Any = None,
) -> np.ndarray:
    """What a negative prompt takes off each candidate's fused score: ``(batch, n)``.

    A candidate's similarity to each of the negative prompt's latents ``(batch, n_samples,
    dim)`` is the retrieval similarity (inner product with its CF factor), z-scored against the
    whole catalogue's similarities to that latent (their mean ``mu . q`` and variance
    ``q^T Sigma q`` from the item factors' mean and covariance), then pooled over the samples by
    ``pool``. Only the part above the catalogue's mean counts: the penalty is
    ``weight * max(z, 0)``. So a track far more like the negative than the average track loses
    several units of the (z-scored) fused score, whichever view brought it; one no more like
    it than the average keeps its score; and the verdict does not depend on how many of the
    other candidates resemble the negative. A prompt without a negative (NaN rows of
    ``negative_latents``) and padding get 0.

    With ``prompt_latents`` (the prompt's own latents, same shape) a candidate is charged only
    for how much more it resembles the negative than the prompt: ``weight * max(z_negative -
    z_prompt, 0)``, each z pooled over its samples. A track that fits the prompt at least as
    well as the negative (a hit that a Christmas playlist also holds) keeps its score.
    """
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"negative weight must be a finite number >= 0, got {weight!r}")
    if pool not in ("max", "mean"):
        raise ValueError(f"pool must be 'max' or 'mean', got {pool!r}")
    negative_latents = as_samples(negative_latents)
    if negative_latents.shape[0] != len(candidates):
        raise ValueError(
            f"negative_latents has {negative_latents.shape[0]} rows for {len(candidates)} prompts"
        )
    penalty = np.zeros(candidates.items.shape, dtype=np.float64)
    given = np.flatnonzero(np.isfinite(negative_latents).all(axis=(1, 2)))
    if weight == 0 or given.size == 0:
        return penalty
    item_factors = np.asarray(item_factors)  # the same array when it is one: cached moments
    moments = catalogue_moments_of(item_factors)
    factors = item_factors.astype(np.float64, copy=False)
    items = candidates.items[given]
    pooled = _pooled_z(factors, items, negative_latents[given], moments, pool)
    if prompt_latents is not None:
        prompt_latents = as_samples(prompt_latents)
        if prompt_latents.shape[0] != len(candidates):
            raise ValueError(
                f"prompt_latents has {prompt_latents.shape[0]} rows for {len(candidates)} prompts"
            )
        pooled = pooled - _pooled_z(factors, items, prompt_latents[given], moments, pool)
    penalty[given] = np.where(items >= 0, weight * np.maximum(pooled, 0.0), 0.0)
    return penalty


def _pooled_z(factors, items, queries, moments, pool: str) -> np.ndarray:
    """``(g, n)``: each candidate's similarity to each query ``(g, s, dim)``, z-scored against
    the catalogue's similarities to it, pooled over the samples."""
    mean, cov = moments
    queries = np.asarray(queries, dtype=np.float64)
    centre = queries @ mean  # (g, s)
    spread = similarity_spread(queries, cov)  # (g, s)
    sims = np.einsum("gnd,gsd->gns", factors[np.clip(items, 0, None)], queries)
    z = (sims - centre[:, None, :]) / spread[:, None, :]
    return z.max(-1) if pool == "max" else z.mean(-1)


__all__ = [
    "NEGATIVE_REFERENCES",
    "MIXTURE_TEMPERATURES",
    "NORMALISATIONS",
    "VIEW_NORMALISATIONS",
    "Candidates",
    "blend",
    "checked_temperatures",
    "gather_candidates",
    "negative_penalty",
    "normalise_view",
    "pool_candidates",
    "top_k",
    "view_softmax",
    "with_groups",
]
