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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from text2tracks.options import MODES
from text2tracks.ranking_metrics import per_prompt_metrics

_NORMALISATIONS = ("zscore", "rank")
# what a fusion's weights can be fitted to maximise (mean per-prompt value at k)
FUSION_METRICS = ("hits", "ndcg", "mrr")


# ------------------------------------------------------------------------------------------------
# Latent candidates
# ------------------------------------------------------------------------------------------------


def build_index(item_factors: np.ndarray):
    """A ``faiss.IndexFlatIP`` over item factors ``(n_items, dim)`` (exact inner product)."""
    import faiss

    item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    if item_factors.ndim != 2:
        raise ValueError(f"item_factors must be (n_items, dim), got {item_factors.shape}")
    index = faiss.IndexFlatIP(item_factors.shape[1])
    index.add(item_factors)
    return index


def _as_samples(latents: Any) -> np.ndarray:
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
    latents = _as_samples(latents)
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
    latents = _as_samples(latents)
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


# ------------------------------------------------------------------------------------------------
# Pooled candidates of both views
# ------------------------------------------------------------------------------------------------


@dataclass
class Candidates:
    """Union of both views' candidates per prompt.

    Attributes:
        items: (batch, n) int64 item indices, -1 = padding.
        generative: (batch, n) beam log-probs, NaN where the beam did not return the item.
        latent: (batch, n) pooled latent similarities, NaN where unknown.
        beam_rank / latent_rank: (batch, n) 0-based rank within each view, -1 where absent.
    """

    items: np.ndarray
    generative: np.ndarray
    latent: np.ndarray
    beam_rank: np.ndarray
    latent_rank: np.ndarray

    def __len__(self) -> int:
        return self.items.shape[0]

    def subset(self, rows: np.ndarray) -> Candidates:
        return Candidates(
            self.items[rows],
            self.generative[rows],
            self.latent[rows],
            self.beam_rank[rows],
            self.latent_rank[rows],
        )


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


# ------------------------------------------------------------------------------------------------
# Normalisation and blending
# ------------------------------------------------------------------------------------------------


def normalise_view(scores: np.ndarray, method: str = "zscore") -> np.ndarray:
    """Per-row normalisation of one view's scores ``(batch, n)``; NaN (missing) -> the row's floor.

    ``zscore``: (s - mean) / std over present entries, missing at the row's minimum minus one
    standard unit (strictly below every present item). ``rank``: 1 - rank / n_present, in
    (0, 1], missing at 0. A row with no present entries is all zeros.
    """
    if method not in _NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {_NORMALISATIONS}, got {method!r}")
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
    candidates: Candidates, alpha: np.ndarray | float, normalisation: str = "zscore"
) -> np.ndarray:
    """Fused scores ``(batch, n)``: alpha * norm(generative) + (1 - alpha) * norm(latent).

    ``alpha`` is a scalar or one value per prompt; padding gets -inf. Where alpha is exactly 1
    (or 0) the other view only breaks ties, so the order is exactly that view's order.
    """
    alpha = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (len(candidates),))[:, None]
    if np.any((alpha < 0) | (alpha > 1)):
        raise ValueError("alpha must be in [0, 1]")
    g = normalise_view(candidates.generative, normalisation)
    lt = normalise_view(candidates.latent, normalisation)
    tie = 1e-6
    fused = alpha * g + (1 - alpha) * lt
    fused = fused + tie * np.where(alpha == 1, lt, 0) + tie * np.where(alpha == 0, g, 0)
    return np.where(candidates.items >= 0, fused, -np.inf)


def top_k(
    candidates: Candidates, scores: np.ndarray, k: int, exclude: list[set[int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` candidates by ``scores``: ``(items (batch, k), scores (batch, k))``, -1 / -inf padded."""
    scores = np.array(scores, dtype=np.float64)
    if exclude:
        for b, ex in enumerate(exclude):
            if ex:
                scores[b, np.isin(candidates.items[b], list(ex))] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    items = np.take_along_axis(candidates.items, order, 1)
    top = np.take_along_axis(scores, order, 1)
    items = np.where(np.isfinite(top), items, -1)
    if items.shape[1] < k:
        pad = k - items.shape[1]
        items = np.pad(items, ((0, 0), (0, pad)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, pad)), constant_values=-np.inf)
    return items, top


# ------------------------------------------------------------------------------------------------
# Per-prompt metrics for fitting
# ------------------------------------------------------------------------------------------------


def per_prompt_metric(
    items: np.ndarray, relevant: list[set[int]], metric: str = "hits", k: int = 10
) -> np.ndarray:
    """Per-prompt Hits@k, NDCG@k or MRR@k of ranked items ``(batch, >= k)``; a prompt with no
    relevant item scores 0. One of :func:`text2tracks.ranking_metrics.per_prompt_metrics`."""
    if metric not in FUSION_METRICS:
        raise ValueError(f"metric must be one of {FUSION_METRICS}, got {metric!r}")
    return per_prompt_metrics(items, relevant, k, allow_empty=True)[metric]


def alpha_curves(
    candidates: Candidates,
    relevant: list[set[int]],
    grid: np.ndarray,
    metric: str,
    k: int,
    normalisation: str,
) -> np.ndarray:
    """Per-prompt metric for each alpha of ``grid``: ``(batch, len(grid))``."""
    if len(relevant) != len(candidates):
        raise ValueError(f"{len(relevant)} relevant sets for {len(candidates)} prompts")
    return np.stack(
        [
            per_prompt_metric(
                top_k(candidates, blend(candidates, a, normalisation), k)[0], relevant, metric, k
            )
            for a in grid
        ],
        axis=1,
    )


# ------------------------------------------------------------------------------------------------
# Fusion models
# ------------------------------------------------------------------------------------------------


class FixedBlendFusion:
    """score = alpha * norm(beam log-prob) + (1 - alpha) * norm(latent similarity) (DAR)."""

    def __init__(self, alpha: float = 0.5, normalisation: str = "zscore") -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if normalisation not in _NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {_NORMALISATIONS}, got {normalisation!r}"
            )
        self.alpha = float(alpha)
        self.normalisation = normalisation
        self.grid_: np.ndarray | None = None
        self.grid_scores_: np.ndarray | None = None

    def fit(
        self,
        candidates: Candidates,
        relevant: list[set[int]],
        metric: str = "hits",
        k: int = 10,
        grid: np.ndarray | None = None,
        **_: Any,
    ) -> FixedBlendFusion:
        """Grid-search alpha on validation prompts to maximise the mean ``metric``@k (ties: the
        alpha nearest 0.5, then the smaller)."""
        grid = np.linspace(0.0, 1.0, 21) if grid is None else np.asarray(grid, dtype=np.float64)
        curves = alpha_curves(candidates, relevant, grid, metric, k, self.normalisation)
        means = curves.mean(0)
        best = np.flatnonzero(np.isclose(means, means.max()))
        self.alpha = float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])
        self.grid_, self.grid_scores_ = grid, means
        return self

    def alphas(self, candidates: Candidates, **_: Any) -> np.ndarray:
        return np.full(len(candidates), self.alpha)

    def fuse(
        self, candidates: Candidates, k: int = 10, exclude=None, **_: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        return top_k(candidates, blend(candidates, self.alpha, self.normalisation), k, exclude)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "fixed", "alpha": self.alpha, "normalisation": self.normalisation}


FEATURE_NAMES = (
    "beam_entropy",
    "beam_margin",
    "latent_margin",
    "latent_spread",
    "overlap",
    "prompt_length",
)


def prompt_features(
    candidates: Candidates, latents: Any = None, prompts: list[str] | None = None, top: int = 10
) -> np.ndarray:
    """Per-prompt features ``(batch, len(FEATURE_NAMES))`` for the gate.

    beam_entropy: entropy of the softmax over the beam's log-probs (0 when it has no beams);
    beam_margin: top-1 minus top-2 beam log-prob; latent_margin: the same for latent similarity;
    latent_spread: mean per-dimension std of the samples (0 for one sample) over the mean
    sample norm; overlap: Jaccard of the two views' top-``top`` sets; prompt_length: log(1 + chars).
    """
    batch = len(candidates)
    feats = np.zeros((batch, len(FEATURE_NAMES)))
    for b in range(batch):
        g = candidates.generative[b][~np.isnan(candidates.generative[b])]
        if g.size:
            p = np.exp(g - g.max())
            p /= p.sum()
            feats[b, 0] = -(p * np.log(p + 1e-12)).sum()
            gs = np.sort(g)[::-1]
            feats[b, 1] = gs[0] - gs[1] if gs.size > 1 else 0.0
        lt = candidates.latent[b][~np.isnan(candidates.latent[b])]
        if lt.size > 1:
            ls = np.sort(lt)[::-1]
            feats[b, 2] = (ls[0] - ls[1]) / (np.abs(ls).mean() + 1e-12)
        beam_top = set(
            candidates.items[b][
                (candidates.beam_rank[b] >= 0) & (candidates.beam_rank[b] < top)
            ].tolist()
        )
        lat_top = set(
            candidates.items[b][
                (candidates.latent_rank[b] >= 0) & (candidates.latent_rank[b] < top)
            ].tolist()
        )
        union = beam_top | lat_top
        feats[b, 4] = len(beam_top & lat_top) / len(union) if union else 0.0
        if prompts is not None:
            feats[b, 5] = np.log1p(len(prompts[b]))
    if latents is not None:
        samples = _as_samples(latents)
        if samples.shape[1] > 1:
            spread = samples.std(1).mean(-1)
            norm = np.linalg.norm(samples, axis=-1).mean(-1) + 1e-12
            feats[:, 3] = spread / norm
    return feats


class GatedFusion:
    """A learned per-prompt gate over a grid of alphas (ADaFuSE's idea).

    A linear softmax policy over the alpha grid, from standardised :func:`prompt_features`,
    trained to maximise the expected per-prompt metric on validation prompts (so it needs no
    per-prompt "right alpha" label), with L2 on the weights. At inference it takes the most
    likely alpha. Falls back to the best fixed alpha when features carry no signal.
    """

    def __init__(
        self,
        grid: np.ndarray | None = None,
        normalisation: str = "zscore",
        l2: float = 1e-3,
        temperature: float = 1.0,
        n_iter: int = 300,
        seed: int = 0,
    ) -> None:
        if normalisation not in _NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {_NORMALISATIONS}, got {normalisation!r}"
            )
        self.grid = (
            np.linspace(0.0, 1.0, 11) if grid is None else np.asarray(grid, dtype=np.float64)
        )
        self.normalisation = normalisation
        self.l2, self.temperature, self.n_iter, self.seed = (
            float(l2),
            float(temperature),
            int(n_iter),
            int(seed),
        )
        self.feature_mean_: np.ndarray | None = None
        self.feature_std_: np.ndarray | None = None
        self.weights_: np.ndarray | None = None  # (n_features, n_grid)
        self.bias_: np.ndarray | None = None  # (n_grid,)
        self.fixed_alpha_: float | None = None  # the best single alpha on the fitting prompts

    def fit(
        self,
        candidates: Candidates,
        relevant: list[set[int]],
        features: np.ndarray,
        metric: str = "ndcg",
        k: int = 10,
        **_: Any,
    ) -> GatedFusion:
        """Fit on validation prompts; ``features`` from :func:`prompt_features`."""
        import torch

        features = np.asarray(features, dtype=np.float64)
        if features.shape[0] != len(candidates):
            raise ValueError(f"features has {features.shape[0]} rows for {len(candidates)} prompts")
        curves = alpha_curves(candidates, relevant, self.grid, metric, k, self.normalisation)
        self.feature_mean_ = features.mean(0)
        self.feature_std_ = features.std(0) + 1e-8
        x = torch.tensor((features - self.feature_mean_) / self.feature_std_, dtype=torch.float64)
        reward = torch.tensor(curves, dtype=torch.float64)
        torch.manual_seed(self.seed)
        weights = torch.zeros(x.shape[1], self.grid.size, dtype=torch.float64, requires_grad=True)
        # Start from the best fixed alpha so that the gate only moves away from it where it pays.
        bias0 = torch.zeros(self.grid.size, dtype=torch.float64)
        bias0[int(np.argmax(curves.mean(0)))] = 2.0
        bias = bias0.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS(
            [weights, bias], max_iter=self.n_iter, line_search_fn="strong_wolfe"
        )

        def closure():
            optimizer.zero_grad()
            policy = torch.softmax((x @ weights + bias) / self.temperature, dim=1)
            loss = -(policy * reward).sum(1).mean() + self.l2 * (weights**2).sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        self.weights_ = weights.detach().numpy()
        self.bias_ = bias.detach().numpy()
        self.fixed_alpha_ = float(self.grid[int(np.argmax(curves.mean(0)))])
        self.train_curves_ = curves
        return self

    def alphas(
        self, candidates: Candidates, features: np.ndarray | None = None, **_: Any
    ) -> np.ndarray:
        if self.weights_ is None:
            raise ValueError("GatedFusion is not fitted; call fit first")
        if features is None:
            raise ValueError("GatedFusion needs per-prompt features (prompt_features(...))")
        x = (np.asarray(features, dtype=np.float64) - self.feature_mean_) / self.feature_std_
        return self.grid[np.argmax(x @ self.weights_ + self.bias_, axis=1)]

    def fuse(
        self,
        candidates: Candidates,
        k: int = 10,
        features: np.ndarray | None = None,
        exclude=None,
        **_: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        alphas = self.alphas(candidates, features)
        return top_k(candidates, blend(candidates, alphas, self.normalisation), k, exclude)

    def to_dict(self) -> dict[str, Any]:
        if self.weights_ is None:
            raise ValueError("GatedFusion is not fitted")
        return {
            "kind": "gated",
            "grid": self.grid.tolist(),
            "normalisation": self.normalisation,
            "feature_names": list(FEATURE_NAMES),
            "feature_mean": self.feature_mean_.tolist(),
            "feature_std": self.feature_std_.tolist(),
            "weights": self.weights_.tolist(),
            "bias": self.bias_.tolist(),
            "fixed_alpha": self.fixed_alpha_,
        }


def fusion_from_dict(payload: dict[str, Any]) -> FixedBlendFusion | GatedFusion:
    """Rebuild a fusion saved with ``to_dict`` (plain JSON, no pickle)."""
    kind = payload.get("kind")
    if kind == "fixed":
        return FixedBlendFusion(payload["alpha"], payload["normalisation"])
    if kind == "gated":
        gate = GatedFusion(np.asarray(payload["grid"]), payload["normalisation"])
        gate.feature_mean_ = np.asarray(payload["feature_mean"])
        gate.feature_std_ = np.asarray(payload["feature_std"])
        gate.weights_ = np.asarray(payload["weights"])
        gate.bias_ = np.asarray(payload["bias"])
        fixed_alpha = payload.get("fixed_alpha")  # absent from older files
        gate.fixed_alpha_ = None if fixed_alpha is None else float(fixed_alpha)
        return gate
    raise ValueError(f"fusion kind must be 'fixed' or 'gated', got {kind!r}")


# ------------------------------------------------------------------------------------------------
# The entry point
# ------------------------------------------------------------------------------------------------


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
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode in ("generative", "hybrid") and (beam_items is None or beam_scores is None):
        raise ValueError(f"mode {mode!r} needs beam_items and beam_scores")
    if mode in ("latent", "hybrid") and (latents is None or item_factors is None):
        raise ValueError(f"mode {mode!r} needs latents and item_factors")
    if mode == "generative":
        cands = pool_candidates(beam_items, beam_scores)
        return top_k(cands, np.where(cands.items >= 0, cands.generative, -np.inf), k, exclude)
    lat_items, lat_sims = latent_candidates(
        latents, item_factors, max(k, latent_k), index, pool, exclude
    )
    if mode == "latent":
        cands = pool_candidates(latent_items=lat_items, latent_scores=lat_sims)
        return top_k(cands, np.where(cands.items >= 0, cands.latent, -np.inf), k, exclude)
    cands = pool_candidates(
        beam_items, beam_scores, lat_items, lat_sims, latents, item_factors, pool
    )
    fusion = fusion or FixedBlendFusion(0.5)
    features = prompt_features(cands, latents, prompts) if isinstance(fusion, GatedFusion) else None
    return fusion.fuse(cands, k=k, features=features, exclude=exclude)


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
    "normalise_view",
    "per_prompt_metric",
    "pool_candidates",
    "prompt_features",
    "rerank",
    "top_k",
]
