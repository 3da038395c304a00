"""Fusion models: how much each view counts when the two are blended, fitted on known answers.

:class:`FixedBlendFusion` (DAR) blends with one alpha found by grid search on validation
prompts; :class:`GatedFusion` (ADaFuSE's idea) picks alpha per prompt from cheap features of the
two candidate sets (:func:`prompt_features`). Both fit to maximise a per-prompt ranking metric
(:func:`per_prompt_metric`, one of :data:`FUSION_METRICS`) and save as plain JSON
(``to_dict`` / :func:`fusion_from_dict`, no pickle).

Either may carry a second fusion, ``with_likes``, for the prompts whose query carries liked
tracks (``like_tracks``, as a multi-turn session sends after each round): the latent then reads
what the user liked, not the text alone, and deserves its own weight (DAR and ADaFuSE fuse anew
each round). :func:`fuse` picks it per prompt (``liked``);
:func:`text2tracks.session.fit_like_fusion` fits it on simulated sessions. Likewise
``with_seeds``, for the prompts that continue a playlist (``seed_tracks``, no liked tracks): the
beam reads the seeds and the latent starts from them (``HybridSettings.seed_strength``);
:func:`text2tracks.seed_fusion.fit_seed_fusion` fits it on validation continuations.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from text2tracks.candidate_pool import (
    MIXTURE_BEAM_TEMPERATURES,
    MIXTURE_LIST_SPREADS,
    MIXTURE_TEMPERATURES,
    MIXTURES,
    NORMALISATIONS,
    VIEW_NORMALISATIONS,
    Candidates,
    blend,
    checked_temperatures,
    latent_spread,
    top_k,
)
from text2tracks.latent_search import as_samples
from text2tracks.ranking_metrics import per_prompt_metrics

# what a fusion's weights can be fitted to maximise (mean per-prompt value at k)
FUSION_METRICS = ("hits", "ndcg", "mrr")
# where fuse sends a prompt: the fusion itself, its fusion of liked queries, of continuations
_ROUTES = ("", "with_likes", "with_seeds")
# The first-code diversity penalties a fit tries (fused scores are z-score blends, so the
# generative list's 0.5 log-probability is not the same unit). Without it hybrid mode's list was
# the beam's crowded order, below generative mode's spread one: on the MPD validation split
# (60-min model) Hits@10 0.393 undiversified, 0.409 at 0.5, 0.423 at 1.0, 0.410 at 1.5.
DIVERSITY_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)


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
    diversity: float = 0.0,
    temperatures: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """Per-prompt metric for each alpha of ``grid``: ``(batch, len(grid))``."""
    if len(relevant) != len(candidates):
        raise ValueError(f"{len(relevant)} relevant sets for {len(candidates)} prompts")

    def ranked(alpha: float) -> np.ndarray:
        fused = blend(candidates, alpha, normalisation, temperatures)
        return top_k(candidates, fused, k, diversity=diversity)[0]

    return np.stack(
        [
            per_prompt_metric(
                ranked(a),
                relevant,
                metric,
                k,
            )
            for a in grid
        ],
        axis=1,
    )


def diversity_curves(
    candidates: Candidates,
    relevant: list[set[int]],
    grid: np.ndarray,
    metric: str,
    k: int,
    normalisation: str,
    diversities: tuple[float, ...] | None,
    temperatures: tuple[float, float] = (1.0, 1.0),
) -> tuple[float, np.ndarray, dict[float, float]]:
    """The diversity penalty (of ``diversities``; default :data:`DIVERSITY_GRID` when the
    candidates carry groups, else 0) whose best alpha scores best (ties: the first listed), its
    :func:`alpha_curves`, and each penalty's best mean alpha score."""
    if diversities is None:
        diversities = DIVERSITY_GRID if candidates.groups is not None else (0.0,)
    curves = [
        alpha_curves(candidates, relevant, grid, metric, k, normalisation, d, temperatures)
        for d in diversities
    ]
    best = [float(c.mean(0).max()) for c in curves]
    pick = int(np.flatnonzero(np.isclose(best, max(best)))[0])
    return (
        float(diversities[pick]),
        curves[pick],
        dict(zip(map(float, diversities), best, strict=True)),
    )


def _checked_diversity(value: float) -> float:
    if isinstance(value, bool) or not np.isfinite(value) or value < 0:
        raise ValueError(f"diversity must be a finite number >= 0, got {value!r}")
    return float(value)


# ------------------------------------------------------------------------------------------------
# Fusion models
# ------------------------------------------------------------------------------------------------


class FixedBlendFusion:
    """score = alpha * norm(beam log-prob) + (1 - alpha) * norm(latent similarity) (DAR); with
    ``diversity`` > 0 the top of the fused list is spread over first ID codes as the generative
    list is (:func:`text2tracks.candidate_pool.top_k`). ``normalisation="mixture"`` or
    ``"mixture-list"`` mixes the two views read as distributions instead, at ``temperatures``
    (beam, latent) (:func:`text2tracks.candidate_pool.blend`)."""

    def __init__(
        self,
        alpha: float = 0.5,
        normalisation: str = "zscore",
        diversity: float = 0.0,
        temperatures: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(
                f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}"
            )
        self.alpha = float(alpha)
        self.normalisation = normalisation
        self.diversity = _checked_diversity(diversity)
        self.temperatures = checked_temperatures(temperatures)
        self.temperature_scores_: dict[str, float] | None = None
        self.grid_: np.ndarray | None = None
        self.grid_scores_: np.ndarray | None = None
        self.diversity_scores_: dict[float, float] | None = None
        # the fusions of the prompts whose query carries liked tracks (fuse's liked) and of
        # those continuing seed tracks (fuse's seeded); None: this one
        self.with_likes: FixedBlendFusion | GatedFusion | None = None
        self.with_seeds: FixedBlendFusion | GatedFusion | None = None

    def fit(
        self,
        candidates: Candidates,
        relevant: list[set[int]],
        metric: str = "hits",
        k: int = 10,
        grid: np.ndarray | None = None,
        diversities: tuple[float, ...] | None = None,
        temperatures: tuple[tuple[float, float], ...] | None = None,
        readings: tuple[str, ...] | None = None,
        **_: Any,
    ) -> FixedBlendFusion:
        """Grid-search alpha and the diversity penalty on validation prompts to maximise the
        mean ``metric``@k (ties: the smaller penalty, then the alpha nearest 0.5, then the
        smaller). ``diversities``: default :data:`DIVERSITY_GRID` when the candidates carry
        groups, else 0 alone. A mixture also searches its (beam, latent) ``temperatures``
        (default :data:`~text2tracks.candidate_pool.MIXTURE_TEMPERATURES` for ``"mixture"``;
        for ``"mixture-list"`` the beam's
        :data:`~text2tracks.candidate_pool.MIXTURE_BEAM_TEMPERATURES` with
        :data:`~text2tracks.candidate_pool.MIXTURE_LIST_SPREADS` over these candidates'
        :func:`~text2tracks.candidate_pool.latent_spread`) and, given ``readings`` (mixtures
        among :data:`~text2tracks.candidate_pool.MIXTURES`), how the latent is read: the best
        reading becomes ``normalisation`` (ties: the first listed). The other normalisations
        have no temperatures."""
        grid = np.linspace(0.0, 1.0, 21) if grid is None else np.asarray(grid, dtype=np.float64)
        options = self._fit_options(candidates, temperatures, readings)
        fits = [
            diversity_curves(candidates, relevant, grid, metric, k, reading, diversities, pair)
            for reading, pair in options
        ]
        tops = [max(fit[2].values()) for fit in fits]  # each option's best (penalty, alpha)
        pick = int(np.flatnonzero(np.isclose(tops, max(tops)))[0])
        self.normalisation, self.temperatures = options[pick]
        several = len({reading for reading, _ in options}) > 1
        self.temperature_scores_ = {
            (f"{reading}:" if several else "") + f"{b:g},{t:g}": v
            for (reading, (b, t)), v in zip(options, tops, strict=True)
        }
        self.diversity, curves, self.diversity_scores_ = fits[pick]
        means = curves.mean(0)
        best = np.flatnonzero(np.isclose(means, means.max()))
        self.alpha = float(grid[best[np.argmin(np.abs(grid[best] - 0.5))]])
        self.grid_, self.grid_scores_ = grid, means
        return self

    def _fit_options(self, candidates, temperatures, readings) -> list[tuple[str, tuple]]:
        """The ``(normalisation, temperatures)`` pairs :meth:`fit` searches."""
        if self.normalisation not in MIXTURES:
            if readings is not None and tuple(readings) != (self.normalisation,):
                raise ValueError(
                    f"readings are a mixture's; this blend's normalisation is "
                    f"{self.normalisation!r} (use 'mixture' or 'mixture-list')"
                )
            return [(self.normalisation, self.temperatures)]
        readings = (self.normalisation,) if readings is None else tuple(readings)
        unknown = [r for r in readings if r not in MIXTURES]
        if not readings or unknown:
            raise ValueError(f"readings must be among {MIXTURES}, got {readings!r}")
        options = []
        for reading in readings:
            if temperatures is not None:
                pairs = temperatures
            elif reading == "mixture":
                pairs = MIXTURE_TEMPERATURES
            else:
                spread = latent_spread(candidates)
                pairs = [
                    (b, s / spread) for b in MIXTURE_BEAM_TEMPERATURES for s in MIXTURE_LIST_SPREADS
                ]
            options += [(reading, checked_temperatures(pair)) for pair in pairs]
        return options

    def alphas(self, candidates: Candidates, **_: Any) -> np.ndarray:
        return np.full(len(candidates), self.alpha)

    def scores(self, candidates: Candidates, **_: Any) -> np.ndarray:
        """Fused scores ``(batch, n)`` of the candidates (padding -inf)."""
        return blend(candidates, self.alpha, self.normalisation, self.temperatures)

    def fuse(
        self, candidates: Candidates, k: int = 10, exclude=None, **_: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        return top_k(candidates, self.scores(candidates), k, exclude, self.diversity)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "fixed",
            "alpha": self.alpha,
            "normalisation": self.normalisation,
            "diversity": self.diversity,
            "temperatures": list(self.temperatures),
            **_routes_dict(self),
        }


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
        samples = as_samples(latents)
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
        diversity: float = 0.0,
    ) -> None:
        if normalisation not in VIEW_NORMALISATIONS:  # its alphas blend z-scores or ranks
            raise ValueError(
                f"the gate's normalisation must be one of {VIEW_NORMALISATIONS}, got "
                f"{normalisation!r}; a mixture is a FixedBlendFusion"
            )
        self.grid = (
            np.linspace(0.0, 1.0, 11) if grid is None else np.asarray(grid, dtype=np.float64)
        )
        self.normalisation = normalisation
        self.temperatures = (1.0, 1.0)  # a mixture's; the gate blends z-scores or ranks
        self.l2, self.temperature, self.n_iter, self.seed = (
            float(l2),
            float(temperature),
            int(n_iter),
            int(seed),
        )
        self.diversity = _checked_diversity(diversity)  # as FixedBlendFusion's; fit picks it
        self.diversity_scores_: dict[float, float] | None = None
        self.feature_mean_: np.ndarray | None = None
        self.feature_std_: np.ndarray | None = None
        self.weights_: np.ndarray | None = None  # (n_features, n_grid)
        self.bias_: np.ndarray | None = None  # (n_grid,)
        self.fixed_alpha_: float | None = None  # the best single alpha on the fitting prompts
        # the fusions of the prompts whose query carries liked tracks (fuse's liked) and of
        # those continuing seed tracks (fuse's seeded); None: this one
        self.with_likes: FixedBlendFusion | GatedFusion | None = None
        self.with_seeds: FixedBlendFusion | GatedFusion | None = None

    def fit(
        self,
        candidates: Candidates,
        relevant: list[set[int]],
        features: np.ndarray,
        metric: str = "ndcg",
        k: int = 10,
        diversities: tuple[float, ...] | None = None,
        **_: Any,
    ) -> GatedFusion:
        """Fit on validation prompts; ``features`` from :func:`prompt_features`. The diversity
        penalty is the one whose best fixed alpha scores best (:func:`diversity_curves`), and the
        gate learns alphas under it."""
        import torch

        features = np.asarray(features, dtype=np.float64)
        if features.shape[0] != len(candidates):
            raise ValueError(f"features has {features.shape[0]} rows for {len(candidates)} prompts")
        self.diversity, curves, self.diversity_scores_ = diversity_curves(
            candidates, relevant, self.grid, metric, k, self.normalisation, diversities
        )
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

    def scores(
        self, candidates: Candidates, features: np.ndarray | None = None, **_: Any
    ) -> np.ndarray:
        """Fused scores ``(batch, n)`` with each prompt's alpha (padding -inf)."""
        return blend(candidates, self.alphas(candidates, features), self.normalisation)

    def fuse(
        self,
        candidates: Candidates,
        k: int = 10,
        features: np.ndarray | None = None,
        exclude=None,
        **_: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        return top_k(candidates, self.scores(candidates, features), k, exclude, self.diversity)

    def to_dict(self) -> dict[str, Any]:
        if self.weights_ is None:
            raise ValueError("GatedFusion is not fitted")
        return {
            "kind": "gated",
            "grid": self.grid.tolist(),
            "normalisation": self.normalisation,
            "diversity": self.diversity,
            "feature_names": list(FEATURE_NAMES),
            "feature_mean": self.feature_mean_.tolist(),
            "feature_std": self.feature_std_.tolist(),
            "weights": self.weights_.tolist(),
            "bias": self.bias_.tolist(),
            "fixed_alpha": self.fixed_alpha_,
            **_routes_dict(self),
        }


def fuse(
    fusion: FixedBlendFusion | GatedFusion,
    candidates: Candidates,
    k: int,
    *,
    latents: np.ndarray | None = None,
    prompts: list[str] | None = None,
    exclude: list[set[int]] | None = None,
    penalty: np.ndarray | None = None,
    liked: np.ndarray | None = None,
    seeded: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` candidates by the fused score: ``(items (batch, k), scores (batch, k))``.

    A :class:`GatedFusion` computes its per-prompt features from the candidates, the latents
    and the prompts (the same ones it was fitted with). ``penalty`` ``(batch, n)`` is taken off
    the fused scores first (a negative prompt's :func:`~text2tracks.candidate_pool.negative_penalty`).
    ``liked`` / ``seeded`` ``(batch,)`` bool: the prompts whose query carries liked tracks,
    fused by ``fusion.with_likes``, and those continuing seed tracks (liked ones aside), fused
    by ``fusion.with_seeds``, where the fusion has them (the others by ``fusion`` itself).
    """
    routes = np.zeros(len(candidates), np.int64)  # an index into _ROUTES, 0: the fusion itself
    for route, name, flags in ((2, "seeded", seeded), (1, "liked", liked)):  # liked wins
        flags = np.zeros(len(candidates), bool) if flags is None else np.asarray(flags, bool)
        if flags.shape != (len(candidates),):
            raise ValueError(
                f"{name} must have one flag per prompt ({len(candidates)}), got {flags.shape}"
            )
        if getattr(fusion, _ROUTES[route], None) is not None:
            routes[flags] = route
    if not routes.any():
        return _fuse_one(fusion, candidates, k, latents, prompts, exclude, penalty)
    items = np.full((len(candidates), k), -1, dtype=np.int64)
    scores = np.full((len(candidates), k), -np.inf)
    for route in np.unique(routes):
        rows = np.flatnonzero(routes == route)
        items[rows], scores[rows] = _fuse_one(
            fusion if route == 0 else getattr(fusion, _ROUTES[route]),
            candidates.subset(rows),
            k,
            None if latents is None else np.asarray(latents)[rows],
            None if prompts is None else [prompts[i] for i in rows],
            None if exclude is None else [exclude[i] for i in rows],
            None if penalty is None else np.asarray(penalty)[rows],
        )
    return items, scores


def _fuse_one(fusion, candidates, k, latents, prompts, exclude, penalty):
    """:func:`fuse` by one fusion, every prompt."""
    features = (
        prompt_features(candidates, latents, prompts) if isinstance(fusion, GatedFusion) else None
    )
    if penalty is None:
        return fusion.fuse(candidates, k=k, features=features, exclude=exclude)
    penalty = np.asarray(penalty, dtype=np.float64)
    if penalty.shape != candidates.items.shape:
        raise ValueError(
            f"penalty must have the candidates' shape {candidates.items.shape}, got {penalty.shape}"
        )
    scores = fusion.scores(candidates, features=features) - penalty
    return top_k(candidates, scores, k, exclude, fusion.diversity)


def plain_fusion(fusion: FixedBlendFusion | GatedFusion) -> FixedBlendFusion | GatedFusion:
    """A shallow copy of ``fusion`` that fuses every prompt alike (no ``with_likes`` nor
    ``with_seeds``); ``fusion`` itself is left as it is."""
    plain = copy.copy(fusion)
    for route in _ROUTES[1:]:
        setattr(plain, route, None)
    return plain


def _routes_dict(fusion) -> dict[str, Any]:
    """``to_dict``'s entries for ``fusion.with_likes`` and ``with_seeds`` (those it has)."""
    routes = {name: getattr(fusion, name, None) for name in _ROUTES[1:]}
    return {name: part.to_dict() for name, part in routes.items() if part is not None}


def fusion_from_dict(payload: dict[str, Any]) -> FixedBlendFusion | GatedFusion:
    """Rebuild a fusion saved with ``to_dict`` (plain JSON, no pickle), its ``with_likes`` and
    ``with_seeds`` included."""
    fusion = _one_from_dict(payload)
    for name in _ROUTES[1:]:
        part = payload.get(name)
        if part is None:
            continue
        if not isinstance(part, dict) or any(route in part for route in _ROUTES[1:]):
            raise ValueError(f"{name} must be one fusion's object (not nested)")
        setattr(fusion, name, _one_from_dict(part))
    return fusion


def _one_from_dict(payload: dict[str, Any]) -> FixedBlendFusion | GatedFusion:
    kind = payload.get("kind")
    diversity = float(payload.get("diversity", 0.0))  # absent from files before it existed
    if kind == "fixed":
        temperatures = tuple(payload.get("temperatures", (1.0, 1.0)))  # absent before mixtures
        return FixedBlendFusion(payload["alpha"], payload["normalisation"], diversity, temperatures)
    if kind == "gated":
        gate = GatedFusion(
            np.asarray(payload["grid"]), payload["normalisation"], diversity=diversity
        )
        gate.feature_mean_ = np.asarray(payload["feature_mean"])
        gate.feature_std_ = np.asarray(payload["feature_std"])
        gate.weights_ = np.asarray(payload["weights"])
        gate.bias_ = np.asarray(payload["bias"])
        fixed_alpha = payload.get("fixed_alpha")  # absent from older files
        gate.fixed_alpha_ = None if fixed_alpha is None else float(fixed_alpha)
        return gate
    raise ValueError(f"fusion kind must be 'fixed' or 'gated', got {kind!r}")


__all__ = [
    "FEATURE_NAMES",
    "FUSION_METRICS",
    "DIVERSITY_GRID",
    "FixedBlendFusion",
    "GatedFusion",
    "alpha_curves",
    "diversity_curves",
    "fuse",
    "fusion_from_dict",
    "plain_fusion",
    "per_prompt_metric",
    "prompt_features",
]
