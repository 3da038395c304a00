"""The diffusion benchmark's systems: the fusions fitted on validation prompts, every system's
ranking of the test prompts, their metrics and the paired comparisons.

The fusions are fitted by :func:`text2tracks.hybrid.fit_fusion`, the fitter behind
``Text2Tracks.fit_fusion``, on candidates gathered through the API (:mod:`eval.bench_diffusion_views`).
The fixed blend becomes the recommender's ``fusion`` in memory, and
:func:`save_fusion_to_run` writes it to the run folder, never into an artifact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from eval.bench_diffusion_config import DiffusionBenchConfig, log
from eval.bench_diffusion_views import Gathered, ProductViews
from eval.metrics import evaluate_rankings, paired_bootstrap_diff, relevant_items

COMPARISONS = (
    ("hybrid", "generative"),
    ("generative", "generative-beam-order"),
    ("hybrid-gated", "hybrid"),
    ("latent-only", "latent-regressor"),
    ("hybrid", "hybrid-regressor"),
    ("hybrid-gated", "generative"),
    ("hybrid-mixture", "generative"),
    ("hybrid-mixture", "hybrid"),
)


@dataclass
class Fusions:
    """The four fitted fusions and :func:`~text2tracks.hybrid.fit_fusion`'s summaries."""

    fixed: Any
    gated: Any
    fixed_regressor: Any
    mixture: Any
    summaries: dict[str, dict[str, Any]]


def validation_prompts(
    validation: list, views: ProductViews, config: DiffusionBenchConfig
) -> tuple[list[str], list[set[int]]]:
    """Validation prompts (at most ``max_validation_prompts``, drawn with ``seed``) and their
    relevant catalogue indices; prompts empty after normalisation or without a catalogue track
    are left out, as ``Text2Tracks.fit_fusion`` leaves them out."""
    from text2tracks.data import normalize_prompt

    kept, relevant, _ = relevant_items(validation, views.vocab)
    prompts = [validation[i].prompt for i in kept]
    if config.max_validation_prompts and len(prompts) > config.max_validation_prompts:
        rng = np.random.default_rng(config.seed)
        pick = np.sort(rng.choice(len(prompts), config.max_validation_prompts, replace=False))
        prompts, relevant = [prompts[i] for i in pick], [relevant[i] for i in pick]
    sets = views.catalogue_sets(relevant)
    keep = [i for i, p in enumerate(prompts) if sets[i] and normalize_prompt(p)]
    if not keep:
        raise ValueError("no validation prompt holds a catalogue track: cannot fit the fusion")
    return [prompts[i] for i in keep], [sets[i] for i in keep]


def fit_fusions(
    views: ProductViews, val: Gathered, sets: list[set[int]], config: DiffusionBenchConfig
) -> Fusions:
    """Fit the fixed blend (Hits), the gate (nDCG), the mixture (Hits) and the regressor's fixed
    blend on the validation views, with the recommender's hybrid settings."""
    from text2tracks.hybrid import fit_fusion

    settings = views.recommender.hybrid_settings
    width = val.beam_items.shape[1]
    settings = replace(settings, beam_candidates=width)

    def beam(batch: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(batch) != len(val.texts) or n != width:  # one call over every prompt
            raise RuntimeError(f"fit_fusion asked for {len(batch)} x {n}, gathered {width}")
        return val.beam_items, val.beam_scores

    def fit(latents: np.ndarray, kind: str, metric: str) -> tuple[Any, dict[str, Any]]:
        return fit_fusion(
            val.texts,
            sets,
            beam,
            lambda batch: latents,
            views.factors,
            settings=settings,
            index=views.index,
            kind=kind,
            metric=metric,
            k=config.k,
            batch_size=len(val.texts),
            seed=config.seed,
            item_groups=views.recommender.trie.item_nodes[0],
        )

    fixed, fixed_summary = fit(val.latents, "fixed", "hits")
    gated, gated_summary = fit(val.latents, "gated", "ndcg")
    fixed_reg, reg_summary = fit(val.regressor, "fixed", "hits")
    mixture, mixture_summary = fit(val.latents, "mixture", "hits")
    log(
        f"fixed alpha {fixed.alpha} (regressor {fixed_reg.alpha}); gate fitted; mixture "
        f"({mixture.normalisation}) alpha {mixture.alpha} at temperatures {mixture.temperatures}"
    )
    summaries = {
        "fixed": fixed_summary,
        "gated": gated_summary,
        "fixed_regressor": reg_summary,
        "mixture": mixture_summary,
    }
    return Fusions(fixed, gated, fixed_reg, mixture, summaries)


def save_fusion_to_run(out_dir: Path, fusions: Fusions, settings, n_prompts: int, k: int) -> Path:
    """Write the fixed blend and its settings to ``out_dir/fusion.json`` (the API's format:
    ``text2tracks.hybrid.load_fusion(out_dir)`` reads it back)."""
    from text2tracks.hybrid import save_fusion

    validation = {
        "prompts": n_prompts,
        "metric": "hits",
        "k": k,
        "alpha": fusions.fixed.alpha,
        "source": "eval.bench_diffusion",
        "summary": fusions.summaries["fixed"],
    }
    return save_fusion(out_dir, fusions.fixed, settings, validation=validation)


def system_rankings(
    views: ProductViews, test: Gathered, fusions: Fusions, config: DiffusionBenchConfig, w: float
) -> dict[str, np.ndarray]:
    """Each system's top k of the test prompts, in vocabulary indices ``(n, k)``.

    ``generative`` is what the API's generative mode answers (the beam's candidates spread over
    first codes with the recommender's ``diversity``, :func:`text2tracks.generative.diversify`),
    ``generative-beam-order`` the beam's own top k, the list hybrid mode starts from."""
    from text2tracks.generative import diversify

    k = config.k
    groups = views.recommender.trie.item_nodes[0]
    spread, _ = diversify(
        test.beam_items,
        test.beam_scores,
        groups[test.beam_items],
        k,
        views.recommender.diversity,
    )
    rankings = {
        "generative": spread,
        "generative-beam-order": test.beam_items[:, :k],
        "latent-only": views.latent_ranking(test.latents, k),
        "latent-regressor": views.latent_ranking(test.regressor, k),
        "hybrid": views.hybrid_ranking(test, k, fusions.fixed),
        "hybrid-gated": views.hybrid_ranking(test, k, fusions.gated),
        "hybrid-mixture": views.hybrid_ranking(test, k, fusions.mixture),
        "hybrid-regressor": views.hybrid_ranking(
            test, k, fusions.fixed_regressor, latents=test.regressor
        ),
    }
    if config.mean_samples:
        mean_lat = views.latents(
            test.prompts, n_samples=config.mean_samples, guidance_weight=w, seed=config.seed + 3
        )
        rankings["latent-only-mean"] = views.latent_ranking(mean_lat.mean(axis=1, keepdims=True), k)
    return {name: views.vocab_items(items) for name, items in rankings.items()}


def system_extras(
    views: ProductViews,
    test: Gathered,
    fusions: Fusions,
    config: DiffusionBenchConfig,
    w: float,
    encoder: str,
) -> dict[str, dict[str, Any]]:
    """What each system was run with, reported beside its metrics."""
    from text2tracks.rerank import prompt_features

    fixed, gate = fusions.fixed, fusions.gated
    candidates = views.candidates(test, config.k)
    alphas = gate.alphas(candidates, prompt_features(candidates, test.latents, test.texts))
    head_config = views.recommender.diffusion_head.config
    return {
        "generative": {
            "candidates": test.beam_items.shape[1],
            "beams": beam_width(config, views),
            "diversity": views.recommender.diversity,
        },
        "generative-beam-order": {"candidates": test.beam_items.shape[1], "diversity": 0.0},
        "latent-only": {
            "encoder": encoder,
            "n_samples": config.n_samples,
            "guidance_weight": w,
            "ddim_steps": head_config.ddim_steps,
        },
        "latent-regressor": {"encoder": encoder},
        "hybrid": {
            "alpha": fixed.alpha,
            "diversity": fixed.diversity,
            "diversity_validation": {str(d): v for d, v in fixed.diversity_scores_.items()},
            "alpha_grid_validation": dict(
                zip(map(float, fixed.grid_), map(float, fixed.grid_scores_), strict=True)
            ),
        },
        "hybrid-gated": {
            "alphas_test_mean": float(alphas.mean()),
            "fixed_alpha": gate.fixed_alpha_,
            "diversity": gate.diversity,
        },
        "hybrid-regressor": {"alpha": fusions.fixed_regressor.alpha},
        "hybrid-mixture": {
            "alpha": fusions.mixture.alpha,
            "temperatures": list(fusions.mixture.temperatures),
            "diversity": fusions.mixture.diversity,
            "temperature_validation": dict(fusions.mixture.temperature_scores_),
        },
        "latent-only-mean": {
            "n_samples": config.mean_samples,
            "pool": "mean of samples",
            "guidance_weight": w,
        },
    }


def candidate_count(config: DiffusionBenchConfig, views: ProductViews) -> int:
    """Beam candidates per prompt: ``candidates``, at most the catalogue."""
    return min(config.candidates, len(views.recommender))


def beam_width(config: DiffusionBenchConfig, views: ProductViews) -> int:
    """The beam width: ``beams``, at least the candidates."""
    return max(candidate_count(config, views), config.beams)


def score_systems(
    rankings: dict[str, np.ndarray],
    extras: dict[str, dict[str, Any]],
    relevant: list[np.ndarray],
    n_items: int,
    config: DiffusionBenchConfig,
    n_skipped: int,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(systems, per_prompt)``: each ranking's metrics (with bootstrap intervals) and extras,
    and its per-prompt metric arrays."""
    k = config.k
    systems, per_prompt = {}, {}
    for name, ranked in rankings.items():
        metrics = evaluate_rankings(
            ranked,
            relevant,
            k=k,
            n_items=n_items,
            n_bootstrap=config.n_bootstrap,
            n_skipped=n_skipped,
            return_per_prompt=True,
        )
        per_prompt[name] = metrics.pop("per_prompt")
        systems[name] = {**metrics, **extras[name]}
        log(f"{name}: hits@{k} {metrics[f'hits@{k}']:.4f}")
    return systems, per_prompt


def compare_systems(
    systems: dict[str, Any],
    per_prompt: dict[str, Any],
    config: DiffusionBenchConfig,
    baselines: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(comparisons, target)``: paired bootstrap Hits differences of :data:`COMPARISONS`, and
    whether hybrid beats generative by 5% and the gate beats the fixed blend.

    ``baselines``: per-prompt Hits of benchmark systems on the same test prompts (the
    benchmark's ``per_prompt.json``, e.g. the dense bi-encoder, the latent's yardstick); each
    is compared with ``latent-only`` as ``"latent-only vs NAME"``."""
    key = f"hits@{config.k}"
    comparisons = {}
    pairs = [
        (a, b, per_prompt[a]["hits"], per_prompt[b]["hits"], systems[b][key])
        for a, b in COMPARISONS
    ]
    for name, hits in (baselines or {}).items():
        latent = per_prompt["latent-only"]["hits"]
        if len(hits) != len(latent):
            raise ValueError(f"{name}: {len(hits)} per-prompt values for {len(latent)} prompts")
        pairs.append(("latent-only", name, latent, hits, float(np.mean(hits))))
    for a, b, hits_a, hits_b, base in pairs:
        diff = paired_bootstrap_diff(hits_a, hits_b, n_bootstrap=config.n_bootstrap)
        diff["relative"] = systems[a][key] / base - 1 if base else None
        comparisons[f"{a} vs {b}"] = diff
    rel = comparisons["hybrid vs generative"]["relative"]
    target = {
        "hybrid_relative_gain": rel,
        "meets_5pct": bool(rel is not None and rel >= 0.05),
        "gate_pays": bool(systems["hybrid-gated"][key] > systems["hybrid"][key]),
    }
    return comparisons, target
