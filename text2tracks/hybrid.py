"""The hybrid path end to end: candidate settings, the fusion file, and fitting the fusion.

:mod:`text2tracks.rerank` holds the pieces (faiss candidates, pooling, normalisation, the two
fusions); this module holds what the API, the training script and the benchmark share:

* :class:`HybridSettings`: how candidates are gathered (samples per prompt, beam candidates,
  faiss neighbours, pooling). A fusion is fitted under some settings; inference uses the same
  ones by default, so the weights see candidates of the kind they were fitted on.
* ``diffusion/fusion.json``: the fitted fusion (``FixedBlendFusion`` or ``GatedFusion``, in the
  plain-JSON form of their ``to_dict``), the settings and a validation summary, written by
  :func:`save_fusion` and read by :func:`load_fusion`. :func:`text2tracks.rerank.fusion_from_dict`
  reads the file's payload directly (it ignores the extra keys).
* :func:`fit_fusion`: gather both views' candidates for validation prompts through two
  callables (beam search, latent sampling), then fit the fusion's weights. The callables keep
  this module free of models: the API passes its own methods, the benchmark its own.
* :func:`catalogue_factors`: CF item factors in catalogue order (``cf/`` stores them in the
  order of its item vocabulary).

Without a ``fusion.json`` the API falls back to :func:`default_fusion`: an even blend
(alpha = :data:`DEFAULT_ALPHA`) of the z-scored views.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from semantic_ids.cf import catalogue_factors
from text2tracks.candidate_pool import NEGATIVE_REFERENCES, gather_candidates
from text2tracks.fusion import fuse
from text2tracks.options import is_number
from text2tracks.rerank import (
    FEATURE_NAMES,
    FUSION_METRICS,
    Candidates,
    FixedBlendFusion,
    GatedFusion,
    blend,
    build_index,
    fusion_from_dict,
    per_prompt_metric,
    prompt_features,
    top_k,
)

FUSION_NAME = "fusion.json"
FUSION_FORMAT_VERSION = 1
DEFAULT_ALPHA = 0.5
# the unfitted blend's first-code diversity penalty (a fit picks its own from DIVERSITY_GRID):
# the middle of the grid, 0.5, already took validation Hits@10 from 0.393 to 0.409 (60-min MPD
# model, alpha 0.85)
DEFAULT_FUSION_DIVERSITY = 0.5
# fixed: FixedBlendFusion on z-scores; mixture: the same over the two views read as
# distributions (normalisation "mixture", temperatures fitted too); gated: GatedFusion
FUSION_KINDS = ("fixed", "gated", "mixture")
_POOLS = ("max", "mean")
SEED_METHODS = ("mean", "fold_in")
EDIT_METHODS = ("anchor", "inversion")

Fusion = FixedBlendFusion | GatedFusion


@dataclass(frozen=True)
class HybridSettings:
    """How the latent and hybrid modes gather candidates.

    Attributes:
        n_samples: diffusion samples per prompt; faiss searches around each, and their
            candidates are pooled (diversity).
        beam_candidates: items the constrained beam search returns per prompt in hybrid mode
            (its beam width too, at least ``k``).
        latent_k: faiss neighbours per sample (at least ``k`` are always searched).
        pool: how an item's inner products with the samples are pooled: ``"mean"`` (the inner
            product with the samples' mean: latent-only Hits@10 0.255 against 0.211 for
            ``"max"`` with 4 samples, ``python -m eval.bench_diffusion_gdr``) or ``"max"``.
        edit_method: how ``like_tracks`` and a prompt make one query (``edit_strength`` s):
            ``"anchor"`` (default) keeps the tracks' seed latent as an anchor and adds the
            prompt's samples, each side divided by the spread of its similarities over the
            catalogue, ``(1 - s) q_seed / sd(q_seed) + s q_prompt / sd(q_prompt)``, so the
            ranking is the z-scored blend of both views; ``"inversion"`` inverts the seed latent
            for ``round(s * ddim_steps)`` DDIM steps and regenerates it under the prompt
            (:meth:`text2tracks.diffusion.DiffusionHead.edit`). Inversion moves little with a
            head whose x_0 prediction follows the prompt more than its noisy input (the
            teacher-trained default: one inverted step of five already lands on the prompt's
            latent), which is why the anchor is the default; see the README's edits section.
        seed_method: how ``like_tracks`` become their seed latent (the anchor, or the latent
            DDIM inversion starts from):
            ``"mean"`` (their mean item factor) or ``"fold_in"`` (the ALS factor of a playlist
            holding exactly them, the kind of latent the head was trained on); see
            :func:`text2tracks.diffusion.seed_latent`.
        negative_weight: how hard a negative prompt demotes candidates in hybrid mode, beam
            candidates included: each loses ``negative_weight`` times the positive part of its
            similarity to the negative prompt's latent, z-scored against the catalogue
            (:func:`text2tracks.candidate_pool.negative_penalty`); 0 = the negative only guides
            the latent view.
        negative_reference: what a candidate's likeness to the negative is measured against:
            ``"catalogue"`` (the penalty is ``negative_weight * max(z_negative, 0)``) or
            ``"prompt"`` (``negative_weight * max(z_negative - z_prompt, 0)``: only what
            resembles the negative more than the prompt pays).
        negative_contrast: the negative prompt also guides the beam's view: each candidate
            loses ``negative_contrast`` times how far its log-probability under the negative
            prompt, as the seq2seq scores the ID (:func:`text2tracks.code_search.
            ensemble_item_scores`), stands above the prompt's other candidates' (z-scored per
            prompt, positive part); 0 = off (no extra model calls).
        seed_strength: how the latent of a prompt continuing ``seed_tracks`` (no liked tracks)
            reads them: the seeds' latent (``seed_method``) anchored toward the prompt's samples
            as ``like_tracks`` are (``"anchor"``), the prompt weighing ``seed_strength`` (0: the
            seeds alone, as a prompt of seeds alone always is); ``None``: only through a
            seed-conditioned head (MO-DiT). The beam reads the seeds either way.
    """

    n_samples: int = 4
    beam_candidates: int = 50
    latent_k: int = 100
    pool: str = "mean"
    seed_method: str = "mean"
    edit_method: str = "anchor"
    negative_weight: float = 1.0
    negative_reference: str = "catalogue"
    negative_contrast: float = 0.0
    seed_strength: float | None = 0.5

    def __post_init__(self) -> None:
        for name in ("n_samples", "beam_candidates", "latent_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"HybridSettings.{name} must be an integer >= 1, got {value!r}")
        if self.pool not in _POOLS:
            raise ValueError(f"HybridSettings.pool must be one of {_POOLS}, got {self.pool!r}")
        for name in ("negative_weight", "negative_contrast"):
            weight = getattr(self, name)
            if (
                isinstance(weight, bool)
                or not isinstance(weight, (int, float, np.floating))
                or not 0 <= weight < np.inf
            ):
                raise ValueError(
                    f"HybridSettings.{name} must be a finite number >= 0, got {weight!r}"
                )
        if self.seed_method not in SEED_METHODS:
            raise ValueError(
                f"HybridSettings.seed_method must be one of {SEED_METHODS}, "
                f"got {self.seed_method!r}"
            )
        if self.negative_reference not in NEGATIVE_REFERENCES:
            raise ValueError(
                f"HybridSettings.negative_reference must be one of {NEGATIVE_REFERENCES}, "
                f"got {self.negative_reference!r}"
            )
        if self.edit_method not in EDIT_METHODS:
            raise ValueError(
                f"HybridSettings.edit_method must be one of {EDIT_METHODS}, "
                f"got {self.edit_method!r}"
            )
        strength = self.seed_strength
        if strength is not None and not (is_number(strength) and 0.0 <= strength <= 1.0):
            raise ValueError(
                f"HybridSettings.seed_strength must be a number in [0, 1] or None, got {strength!r}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HybridSettings:
        """Build from a dict; unknown keys raise ``ValueError``."""
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown HybridSettings keys: {sorted(unknown)}")
        return cls(**values)


def default_fusion() -> FixedBlendFusion:
    """The blend used when an artifact has no fitted fusion: alpha = 0.5 on z-scored views, its
    top spread over first ID codes with :data:`DEFAULT_FUSION_DIVERSITY`."""
    return FixedBlendFusion(DEFAULT_ALPHA, "zscore", DEFAULT_FUSION_DIVERSITY)


# ------------------------------------------------------------------------------------ the file


def save_fusion(
    directory: str | os.PathLike,
    fusion: Fusion,
    settings: HybridSettings,
    validation: dict[str, Any] | None = None,
) -> Path:
    """Write ``directory/fusion.json`` atomically and return its path.

    The payload is ``fusion.to_dict()`` plus ``format_version``, ``settings`` (the
    :class:`HybridSettings` the fusion was fitted under) and ``validation`` (a summary).
    """
    from text2tracks.artifacts import write_json_atomic

    if not isinstance(fusion, (FixedBlendFusion, GatedFusion)):
        raise ValueError(
            f"fusion must be a FixedBlendFusion or GatedFusion, got {type(fusion).__name__}"
        )
    if not isinstance(settings, HybridSettings):
        raise ValueError(f"settings must be HybridSettings, got {type(settings).__name__}")
    payload = {
        **fusion.to_dict(),
        "format_version": FUSION_FORMAT_VERSION,
        "settings": asdict(settings),
        "validation": _plain(validation or {}),
    }
    path = Path(directory) / FUSION_NAME
    write_json_atomic(path, payload)
    return path


def load_fusion(
    directory: str | os.PathLike,
) -> tuple[Fusion | None, HybridSettings, dict[str, Any]]:
    """Read ``directory/fusion.json``: ``(fusion, settings, validation summary)``.

    Without the file: ``(None, HybridSettings(), {})``. A malformed file raises ``ValueError``
    naming it.
    """
    path = Path(directory) / FUSION_NAME
    if not path.is_file():
        return None, HybridSettings(), {}
    try:
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
        if not isinstance(payload, dict):
            raise ValueError("expected a JSON object")
        version = payload.get("format_version", 1)
        if not isinstance(version, int) or version > FUSION_FORMAT_VERSION:
            raise ValueError(
                f"format version {version!r}, this text2tracks reads up to {FUSION_FORMAT_VERSION}"
            )
        if payload.get("kind") == "gated" and list(payload.get("feature_names", [])) != list(
            FEATURE_NAMES
        ):
            raise ValueError(
                f"the gate was fitted on features {payload.get('feature_names')}, "
                f"this text2tracks computes {list(FEATURE_NAMES)}"
            )
        fusion = fusion_from_dict(payload)
        settings = HybridSettings.from_dict(payload.get("settings", {}))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"damaged fusion file {path}: {err}") from err
    return fusion, settings, dict(payload.get("validation") or {})


def _plain(value: Any) -> Any:
    """Numpy scalars and arrays -> JSON-able Python values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


# ------------------------------------------------------------------------------------ factors


# ------------------------------------------------------------------------------------ fitting


def fit_fusion(
    prompts: Sequence[str],
    relevant: Sequence[set[int]],
    beam: Callable[[list[str], int], tuple[np.ndarray, np.ndarray]],
    sample: Callable[[list[str]], np.ndarray],
    item_factors: np.ndarray,
    *,
    settings: HybridSettings | None = None,
    index=None,
    kind: str = "fixed",
    metric: str = "hits",
    k: int = 10,
    batch_size: int = 32,
    grid: np.ndarray | None = None,
    progress: bool = False,
    seed: int = 0,
    item_groups: np.ndarray | None = None,
    views: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    exclude: Sequence[set[int]] | None = None,
) -> tuple[Fusion, dict[str, Any]]:
    """Fit a fusion's weights on validation prompts whose relevant items are known.

    Args:
        prompts: validation prompts.
        relevant: per prompt, the relevant item indices (the same index space as ``beam``'s
            items and the rows of ``item_factors``).
        beam: ``beam(prompts, n) -> (items (b, n) int, log-probs (b, n))``, the constrained beam
            search's candidates, best first (``n`` is ``settings.beam_candidates``).
        sample: ``sample(prompts) -> latents (b, n_samples, dim)`` (or ``(b, dim)``), query
            latents in the CF space, as the inference path draws them.
        item_factors: ``(n_items, dim)`` CF item factors; ``index`` reuses a faiss index.
        settings: how candidates are gathered (:class:`HybridSettings`; its defaults if None).
        kind: ``"fixed"`` (:class:`FixedBlendFusion`, alpha by grid search), ``"mixture"`` (the
            same over the views read as distributions, temperatures searched too) or
            ``"gated"`` (:class:`GatedFusion`, alpha per prompt from features).
        metric, k: what the weights maximise (mean per-prompt ``hits``, ``ndcg`` or ``mrr`` at k).
        batch_size: prompts per call of ``beam`` and ``sample``.
        grid: alphas to search (default: the fusion's own grid).
        seed: the gate's seed.
        item_groups: each item's first ID code (e.g. ``trie.item_nodes[0]``); given, the fit
            also picks the fusion's first-code diversity penalty from
            :data:`~text2tracks.fusion.DIVERSITY_GRID` (else it stays 0).
        views, exclude: both views already queried, ``(beam items, beam log-probs, latents)``
            (``beam`` and ``sample`` then unused), and per prompt the items its query kept out.

    Returns:
        ``(fusion, summary)``: the summary holds ``n_prompts``, the metric at k of the beam's
        order (alpha 1), of the latent order (alpha 0) and of the fitted fusion on the same
        prompts (in-sample), and the fixed blend's alpha grid with its scores.
    """
    settings = settings or HybridSettings()
    prompts, relevant = _checked_fit_inputs(prompts, relevant, kind, metric, k, batch_size)

    # 1. Both views for every prompt, in batches (the beam is the costly part).
    if views is None:
        views = _query_both_views(
            prompts, beam, sample, settings.beam_candidates, int(batch_size), progress
        )
    latents = views[2]
    candidates = _pooled(views, item_factors, index, settings, k, exclude, item_groups)

    # 2. The weights.
    fusion = _fit_weights(kind, candidates, relevant, latents, prompts, metric, k, grid, seed)

    # 3. What it buys on these prompts (in-sample: an upper bound, not a test figure).
    summary: dict[str, Any] = {
        "kind": kind,
        "metric": metric,
        "k": int(k),
        "n_prompts": len(prompts),
        "settings": asdict(settings),
        **_in_sample_scores(fusion, candidates, relevant, latents, prompts, metric, k),
    }
    return fusion, summary


def _pooled(views, item_factors, index, settings, k, exclude, item_groups) -> Candidates:
    """:func:`fit_fusion`'s candidates: both views pooled as hybrid mode pools them."""
    item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
    beam_items, beam_scores, latents = views
    return gather_candidates(
        beam_items,
        beam_scores,
        latents,
        item_factors,
        index=build_index(item_factors) if index is None else index,
        latent_k=settings.latent_k,
        pool=settings.pool,
        k=k,
        exclude=None if exclude is None else [set(e) for e in exclude],
        item_groups=item_groups,
    )


def _checked_fit_inputs(
    prompts: Sequence[str],
    relevant: Sequence[set[int]],
    kind: str,
    metric: str,
    k: int,
    batch_size: int,
) -> tuple[list[str], list[set[int]]]:
    """:func:`fit_fusion`'s arguments checked (``ValueError`` naming the bad one); the prompts
    as a list and the relevant sets as sets of ints."""
    if kind not in FUSION_KINDS:
        raise ValueError(f"kind must be one of {FUSION_KINDS}, got {kind!r}")
    if metric not in FUSION_METRICS:
        raise ValueError(f"metric must be one of {FUSION_METRICS}, got {metric!r}")
    prompts = list(prompts)
    relevant = [set(map(int, r)) for r in relevant]
    if not prompts or len(prompts) != len(relevant):
        raise ValueError(
            f"need as many relevant sets as prompts (>= 1), got {len(prompts)} prompts "
            f"and {len(relevant)} sets"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size < 1
    ):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return prompts, relevant


def _query_both_views(
    prompts: list[str],
    beam: Callable[[list[str], int], tuple[np.ndarray, np.ndarray]],
    sample: Callable[[list[str]], np.ndarray],
    n_beam: int,
    batch_size: int,
    progress: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``beam`` and ``sample`` over all prompts in batches: ``(beam items (n, kb), beam
    log-probs (n, kb), latents (n, n_samples, dim))``, the beam padded with -1 / NaN to the
    widest batch."""
    from tqdm.auto import tqdm

    beam_items, beam_scores, latents = [], [], []
    starts = range(0, len(prompts), batch_size)
    for start in tqdm(starts, desc="fusion candidates", disable=not progress, leave=False):
        batch = prompts[start : start + batch_size]
        items, scores = beam(batch, n_beam)
        beam_items.append(np.asarray(items, dtype=np.int64))
        beam_scores.append(np.asarray(scores, dtype=np.float32))
        lat = np.asarray(sample(batch), dtype=np.float32)
        latents.append(lat[:, None, :] if lat.ndim == 2 else lat)
    width = max(b.shape[1] for b in beam_items)
    return (
        _stack_padded(beam_items, width, -1),
        _stack_padded(beam_scores, width, np.nan),
        np.concatenate(latents),
    )


def _stack_padded(blocks: list[np.ndarray], width: int, fill: float) -> np.ndarray:
    """Row blocks ``(b_i, <= width)`` padded on the right with ``fill`` and stacked."""
    return np.concatenate(
        [np.pad(b, ((0, 0), (0, width - b.shape[1])), constant_values=fill) for b in blocks]
    )


def _fit_weights(
    kind: str,
    candidates: Candidates,
    relevant: list[set[int]],
    latents: np.ndarray,
    prompts: list[str],
    metric: str,
    k: int,
    grid: np.ndarray | None,
    seed: int,
) -> Fusion:
    """A :class:`FixedBlendFusion` (``kind="fixed"`` or ``"mixture"``) or :class:`GatedFusion`
    fitted to these candidates; the gate's features come from the candidates, latents and prompts."""
    if kind == "fixed":
        return FixedBlendFusion().fit(candidates, relevant, metric=metric, k=k, grid=grid)
    if kind == "mixture":
        return FixedBlendFusion(normalisation="mixture").fit(
            candidates, relevant, metric=metric, k=k, grid=grid
        )
    features = prompt_features(candidates, latents, prompts)
    return GatedFusion(grid=grid, seed=seed).fit(candidates, relevant, features, metric=metric, k=k)


def _in_sample_scores(
    fusion: Fusion,
    candidates: Candidates,
    relevant: list[set[int]],
    latents: np.ndarray,
    prompts: list[str],
    metric: str,
    k: int,
) -> dict[str, Any]:
    """The mean ``metric``@k of the beam's order (alpha 1), the latent order (alpha 0) and the
    fitted fusion on the fitting prompts, then the fixed blend's alpha grid with its scores or
    the gate's mean alpha and fallback alpha."""

    def score(items: np.ndarray) -> float:
        return float(per_prompt_metric(items, relevant, metric, k).mean())

    def pure_view(alpha: float) -> float:
        fused = blend(candidates, alpha, fusion.normalisation, fusion.temperatures)
        return score(top_k(candidates, fused, k, diversity=fusion.diversity)[0])

    scores: dict[str, Any] = {
        f"{metric}@{k}": {
            "generative": pure_view(1.0),
            "latent": pure_view(0.0),
            "fused": score(fuse(fusion, candidates, k, latents=latents, prompts=prompts)[0]),
        },
    }
    scores["diversity"] = fusion.diversity
    if fusion.diversity_scores_ is not None:
        scores["diversity_scores"] = {str(d): v for d, v in fusion.diversity_scores_.items()}
    if isinstance(fusion, FixedBlendFusion):
        scores["alpha"] = fusion.alpha
        scores["temperatures"] = list(fusion.temperatures)
        if fusion.temperature_scores_ is not None:
            scores["temperature_scores"] = dict(fusion.temperature_scores_)
        scores["alpha_grid"] = [float(a) for a in fusion.grid_]
        scores["alpha_grid_scores"] = [float(s) for s in fusion.grid_scores_]
    else:
        alphas = fusion.alphas(candidates, prompt_features(candidates, latents, prompts))
        scores["alphas_mean"] = float(alphas.mean())
        scores["fixed_alpha"] = float(fusion.fixed_alpha_)
    return scores


def fit_recommender_fusion(
    recommender,
    prompts: Sequence[str],
    relevant: Sequence[Iterable[str]],
    *,
    settings: HybridSettings | None = None,
    kind: str = "fixed",
    metric: str = "hits",
    k: int = 10,
    batch_size: int = 32,
    progress: bool = False,
    views: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    exclude: Sequence[Iterable[str]] | None = None,
) -> tuple[Fusion, HybridSettings, dict[str, Any]]:
    """:func:`fit_fusion` on a :class:`~text2tracks.pipeline.Text2Tracks`'s own candidates.

    The candidates come through the recommender's public API as its hybrid mode gathers them
    (the same beam width, samples, seed 0 and faiss search). ``relevant``: each prompt's right
    track ids (others ignored); prompts left with none, or empty, are skipped (``n_skipped``).
    ``views`` and ``exclude`` (track ids) as :func:`fit_fusion` takes them, for queries asked
    with options (:func:`text2tracks.session.fit_like_fusion`): no prompt may then be skipped.

    Returns:
        ``(fusion, settings, summary)``; ``settings`` is ``settings`` or the recommender's.
    """
    from text2tracks.options import labelled_prompts

    prompts = list(prompts)
    settings = recommender.hybrid_settings if settings is None else settings
    if not isinstance(settings, HybridSettings):
        raise ValueError(f"settings must be HybridSettings, got {type(settings).__name__}")
    catalog, n_items = recommender.catalog, len(recommender)

    def index_of(track_id: str) -> int | None:
        try:
            return catalog.index_of(track_id)
        except KeyError:
            return None

    texts, sets = labelled_prompts(prompts, relevant, index_of)
    if not texts:
        raise ValueError("no prompt has a relevant track in the catalogue: cannot fit the fusion")
    if views is not None and len(texts) != len(prompts):  # the views' rows are the prompts'
        raise ValueError("with views every prompt needs text and a relevant catalogue track")

    def beam(batch: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
        n = max(min(n, n_items), min(k, n_items))
        ids, scores = recommender.recommend_arrays(  # undiversified, as hybrid mode draws it
            batch, k=n, num_beams=n, diversity=0.0, batch_size=len(batch)
        )
        items = np.array([[catalog.index_of(t) for t in row] for row in ids], dtype=np.int64)
        return items.reshape(len(batch), n), scores

    def sample(batch: list[str]) -> np.ndarray:
        return recommender.sample_latents(
            batch, n_samples=settings.n_samples, batch_size=len(batch)
        )

    factors, index = recommender.latent_index()
    n_beam = min(settings.beam_candidates, n_items)
    fusion, summary = fit_fusion(
        texts,
        sets,
        beam,
        sample,
        factors,
        settings=replace(settings, beam_candidates=n_beam),
        index=index,
        kind=kind,
        metric=metric,
        k=k,
        batch_size=batch_size,
        progress=progress,
        item_groups=recommender.trie.item_nodes[0],
        views=views,
        exclude=None if exclude is None else [set(map(catalog.index_of, e)) for e in exclude],
    )
    summary["n_skipped"] = len(prompts) - len(texts)
    summary["settings"] = asdict(settings)
    return fusion, settings, summary


__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_FUSION_DIVERSITY",
    "FUSION_KINDS",
    "FUSION_NAME",
    "HybridSettings",
    "EDIT_METHODS",
    "NEGATIVE_REFERENCES",
    "SEED_METHODS",
    "catalogue_factors",
    "default_fusion",
    "fit_fusion",
    "fit_recommender_fusion",
    "fuse",
    "gather_candidates",
    "load_fusion",
    "save_fusion",
]
