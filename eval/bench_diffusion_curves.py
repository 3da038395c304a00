"""The diffusion benchmark's curves and cost, each measured through the public API.

* :func:`negative_prompt_curve`: per guidance weight, the share of the top k in the negative's
  playlists and Hits@k, without and with ``negative_prompt`` (same starting noise: the same
  ``seed``), for the latent and the hybrid rankings;
* :func:`inversion_curve`: ``recommend(mode="latent", like_tracks=seeds, edit_strength=s,
  exclude=seeds)`` per seed method and strength, scored for closeness to the seeds and relevance
  to the prompt, and for Joint@K (:mod:`eval.bench_diffusion_joint`) against two yardsticks
  measured on the same prompts (the seeds' mean alone, the prompt alone), with the hybrid mode's
  edits beside them;
* :func:`sampling_cost`: the time of each hybrid stage, and of ``recommend(mode="hybrid")``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from eval.bench_diffusion_config import DiffusionBenchConfig, log
from eval.bench_diffusion_joint import joint_sets, joint_target_check, nearest_items
from eval.bench_diffusion_pairs import (
    hits_through_negative,
    negative_share,
    seed_similarity,
    select_negative_pairs,
    select_seed_playlists,
    target_check,
)
from eval.bench_diffusion_views import Gathered, ProductViews
from text2tracks.latent_search import as_samples
from text2tracks.rerank import per_prompt_metric

# ------------------------------------------------------------------------------------ negatives


@dataclass
class _NegativeSet:
    """The test prompts of the negative pairs (``sub``), each one's negative prompt and
    relevant items, and ``share(items)``: the negatives' share of a ranking's top k."""

    sub: Gathered
    negatives: list[str]
    relevant: list[set[int]]
    share: Callable[[np.ndarray], float]


def _negative_row(
    views: ProductViews, prompts: _NegativeSet, w: float, config: DiffusionBenchConfig
) -> dict[str, Any]:
    """One point of the curve: both views' share and Hits@k, without and with the negatives."""
    sub, k = prompts.sub, config.k
    row: dict[str, Any] = {"w": w}
    for label, negative in (("without", None), ("with", prompts.negatives)):
        latents = views.latents(
            sub.prompts,
            negative_prompt=negative,
            guidance_weight=w,
            n_samples=config.n_samples,
            seed=config.seed + 7,
        )
        # hybrid mode also demotes the candidates like the negative prompt's own latent (the
        # negative sampled as a prompt: text2tracks.latent.negative_latents does the same)
        negative_latents = None
        if negative is not None:
            negative_latents = views.latents(
                negative, guidance_weight=w, n_samples=config.n_samples, seed=config.seed + 7
            )
        ranked = {
            "latent": views.latent_ranking(latents, k),
            "hybrid": views.hybrid_ranking(sub, k, latents=latents, negative=negative_latents),
        }
        for view, items in ranked.items():
            items = views.vocab_items(items)
            row[f"{view}_share_{label}"] = prompts.share(items)
            row[f"{view}_hits_{label}"] = float(
                per_prompt_metric(items, prompts.relevant, "hits", k).mean()
            )
    return row


def _pair_summary(pair: dict[str, Any], prompts: list[str]) -> dict[str, Any]:
    return {key: v for key, v in pair.items() if key != "negative_items"} | {
        "n_negative_items": len(pair["negative_items"]),
        "n_prompts": len(pair["prompt_indices"]),
        "prompts": [prompts[i] for i in pair["prompt_indices"][:5]],
    }


def negative_prompt_curve(
    views: ProductViews,
    config: DiffusionBenchConfig,
    test: Gathered,
    test_sets: list[set[int]],
    train_titles: list[str],
    train_items: list[np.ndarray],
    w_default: float,
) -> dict[str, Any]:
    """The negative-prompt curve on pairs chosen from the training playlists' titles and items
    (vocabulary indices; the hybrid view reuses the test prompts' beam and the recommender's
    fusion)."""
    prompts = test.prompts
    pairs = select_negative_pairs(
        train_titles,
        train_items,
        list(prompts),
        config.n_negative_pairs,
        config.prompts_per_pair,
        config.min_title_playlists,
        config.max_contamination,
        negative_set=config.negative_set,
        min_negative_share=config.min_negative_share,
    )
    if not pairs:
        log("negative prompts: no pair found in the data")
        return {"pairs": [], "curve": [], "target": None}
    idx = np.concatenate([np.asarray(p["prompt_indices"], dtype=np.int64) for p in pairs])
    negatives = [p["negative"] for p in pairs for _ in p["prompt_indices"]]
    sub, relevant = test.rows(idx), [test_sets[i] for i in idx]
    log(
        f"negative prompts: {[(p['positive'], p['negative'], len(p['prompt_indices'])) for p in pairs]}"
    )
    bounds = np.cumsum([0] + [len(p["prompt_indices"]) for p in pairs])

    def share(items: np.ndarray) -> float:
        parts = zip(pairs, bounds[:-1], bounds[1:], strict=True)
        return float(
            np.concatenate(
                [negative_share(items[a:b], p["negative_items"], config.k) for p, a, b in parts]
            ).mean()
        )

    rows = _NegativeSet(sub, negatives, relevant, share)
    curve = []
    for w in config.grid:
        curve.append(_negative_row(views, rows, w, config))
        log(f"negative w={w}: { {key: round(v, 4) for key, v in curve[-1].items()} }")
    weights, contrasts = _negative_weight_curves(views, rows, w_default, config)
    return {
        "pairs": [_pair_summary(p, prompts) for p in pairs],
        "negative_set": config.negative_set,
        "n_prompts": int(len(idx)),
        "curve": curve,
        "negative_weight_curve": weights,
        "negative_contrast_curve": contrasts,
        "generative_share": share(views.vocab_items(sub.beam_items[:, : config.k])),
        "hybrid_hits_through_negative": hits_through_negative(
            views.vocab_items(views.hybrid_ranking(sub, config.k)),
            relevant,
            [p["negative_items"] for p in pairs for _ in p["prompt_indices"]],
            config.k,
        ),
        "default_w": w_default,
        "default_negative_weight": views.recommender.hybrid_settings.negative_weight,
        "target": {
            "latent": target_check(curve, "latent"),
            "hybrid": target_check(curve, "hybrid"),
            "hybrid_by_negative_weight": target_check(weights, "hybrid", "negative_weight"),
            "hybrid_by_negative_contrast": target_check(contrasts, "hybrid", "negative_contrast"),
        },
    }


def _negative_weight_curves(
    views: ProductViews, prompts: _NegativeSet, w: float, config: DiffusionBenchConfig
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hybrid mode's share, Hits@k and mean similarity of the list to the negative's latent (an
    inner product with its CF factors) at guidance weight ``w``, per ``negative_weight``
    (``config.negative_weight_list``, no contrast) and per ``negative_contrast``
    (``config.negative_contrast_list``, at the default ``negative_weight``). The same latents
    for every point: only the demotion of the fused candidates changes (the recommender's
    settings are restored afterwards)."""
    k, recommender = config.k, views.recommender
    sub, negatives = prompts.sub, prompts.negatives
    options = {"guidance_weight": w, "n_samples": config.n_samples, "seed": config.seed + 7}
    plain = views.latents(sub.prompts, **options)
    guided = views.latents(sub.prompts, negative_prompt=negatives, **options)
    negative_latents = views.latents(negatives, **options)

    # what the demotion acts on: the list's mean similarity to the negative's mean latent
    negative_mean = as_samples(negative_latents).mean(axis=1)

    def measure(latents, negative, contrast=None) -> tuple[float, float, float]:
        ranked = views.hybrid_ranking(sub, k, latents=latents, negative=negative, contrast=contrast)
        items = views.vocab_items(ranked)
        hits = per_prompt_metric(items, prompts.relevant, "hits", k)
        sims = np.einsum("bkd,bd->bk", views.factors[np.maximum(ranked, 0)], negative_mean)
        similarity = float(np.nanmean(np.where(ranked >= 0, sims, np.nan)))
        return prompts.share(items), float(hits.mean()), similarity

    without = measure(plain, None)
    settings = recommender.hybrid_settings
    curves: tuple[list, list] = ([], [])
    points = [
        (0, "negative_weight", {"negative_weight": x, "negative_contrast": 0.0})
        for x in config.negative_weight_list
    ]
    points += [
        (1, "negative_contrast", {"negative_contrast": x}) for x in config.negative_contrast_list
    ]
    try:
        for curve, key, change in points:
            recommender.hybrid_settings = replace(settings, **change)
            contrast = None
            if recommender.hybrid_settings.negative_contrast > 0:
                contrast = recommender._negative_contrast(sub.texts, negatives, 0)
            share_with, hits_with, similarity_with = measure(guided, negative_latents, contrast)
            row = {
                key: change[key],
                "hybrid_share_without": without[0],
                "hybrid_share_with": share_with,
                "hybrid_hits_without": without[1],
                "hybrid_hits_with": hits_with,
                "hybrid_negative_similarity_without": without[2],
                "hybrid_negative_similarity_with": similarity_with,
            }
            curves[curve].append(row)
            log(f"hybrid {key} {change[key]}: { {n: round(v, 4) for n, v in row.items()} }")
    finally:
        recommender.hybrid_settings = settings
    return curves


# ------------------------------------------------------------------------------------ inversion


def _inversion_point(items: np.ndarray, measure: dict[str, Any], k: int) -> dict[str, float]:
    """Closeness to the seeds and relevance to the prompt of the top ``k``, and the Joint@K
    measures when ``measure["joint"]`` holds the :class:`~eval.bench_diffusion_joint.JointSets`."""
    top = items[:, :k]
    point = {
        "seed_cosine": float(
            np.nanmean(seed_similarity(top, measure["factors"], measure["seed_means"], k))
        ),
        "seed_hits": float(per_prompt_metric(top, measure["seed_rest"], "hits", k).mean()),
        "prompt_hits": float(per_prompt_metric(top, measure["prompt_rel"], "hits", k).mean()),
    }
    if measure.get("joint") is not None:
        point |= measure["joint"].measure(items, measure["ks"])
    return point


def joint_ks(k: int) -> list[int]:
    """The K of Joint@K: 10 (MO-DiT's) and the benchmark's ``k``."""
    return sorted({10, int(k)})


def inversion_curve(
    views: ProductViews,
    config: DiffusionBenchConfig,
    prompts: list[str],
    relevant: list[np.ndarray],
    train_titles: list[str] | None = None,
    train_items: list[np.ndarray] | None = None,
) -> dict[str, Any]:
    """Seed tracks from another test playlist, edited towards each prompt by the API's
    ``like_tracks`` path, per seed method and strength (seeds excluded from the answers).

    With the training playlists' titles and items (vocabulary indices), every point also gets
    Joint@K, Pattern@K and Attribute@K (:mod:`eval.bench_diffusion_joint`), and ``"joint"``
    holds the yardsticks, the hybrid mode's edits and the targets (:func:`_joint_summary`)."""
    in_catalogue = [r[views.to_catalogue[r] >= 0] for r in relevant]
    pairs = select_seed_playlists(
        prompts, in_catalogue, config.n_seed_tracks, config.max_inversion_prompts, config.seed
    )
    if not pairs:
        log("inversion: no seed playlist pairs found")
        return {"curve": [], "curves": {}, "n_prompts": 0}
    sub = [prompts[i] for i, _ in pairs]
    seeds = [in_catalogue[j][: config.n_seed_tracks] for _, j in pairs]
    factors = views.vocab_factors
    measure = {
        "factors": factors,
        "seed_means": np.stack([factors[s].mean(0) for s in seeds]),
        "seed_rest": [set(map(int, in_catalogue[j][config.n_seed_tracks :])) for _, j in pairs],
        "prompt_rel": [set(map(int, relevant[i])) for i, _ in pairs],
        "ks": joint_ks(config.k),
        "joint": None,
    }
    if train_titles is not None and train_items is not None:
        measure["joint"] = joint_sets(
            train_titles, train_items, sub, seeds, factors, config.joint_neighbours
        )
    depth = max(measure["ks"]) if measure["joint"] is not None else config.k
    ranked = _ranker(views, sub, [views.track_ids(s) for s in seeds], depth)
    curves = _edit_curves(views.recommender, config, ranked, measure, config.seed_method_list)
    # Reference: plain samples from the prompt (no seed), one per prompt.
    reference = _inversion_point(ranked(n_samples=1, seed=config.seed + 11), measure, config.k)
    method = config.seed_method_list[0]
    first, last = curves[method][0], curves[method][-1]
    out = {
        "n_prompts": len(pairs),
        "n_seed_tracks": config.n_seed_tracks,
        "seed_method": method,
        "curve": curves[method],
        "curves": curves,
        "prompt_only_reference": reference,
        "similarity_falls": bool(last["seed_cosine"] < first["seed_cosine"]),
        "relevance_rises": bool(last["prompt_hits"] > first["prompt_hits"]),
        "examples": [{"prompt": prompts[i], "seed_playlist": prompts[j]} for i, j in pairs[:5]],
    }
    if measure["joint"] is not None:
        out["joint"] = _joint_summary(views, config, ranked, measure, seeds, curves)
    return out


def _ranker(views: ProductViews, prompts: list[str], seed_ids: list[list[str]], k: int):
    """``ranked(mode="latent", like_tracks=False, **options)``: the API's top ``k`` of each
    prompt (vocabulary indices), seeds excluded; ``like_tracks=True`` edits from the seeds."""

    def ranked(mode: str = "latent", like_tracks: bool = False, **options) -> np.ndarray:
        if like_tracks:
            options["like_tracks"] = seed_ids
        ids = views.recommender.recommend_arrays(
            prompts, k=k, mode=mode, exclude=seed_ids, batch_size=views.batch_size, **options
        )[0]
        return views.vocab_items(views.catalogue_items(ids))

    return ranked


def _edit_curves(
    recommender,
    config: DiffusionBenchConfig,
    ranked,
    measure,
    methods: list[str],
    mode="latent",
    seed: int | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Per seed method, one point per strength of ``ranked(mode, like_tracks=True, ...)``.

    The prompt's samples use the noise seed ``seed`` and the benchmark's ``n_samples``, as its
    prompt-alone yardstick does, so that an anchored edit at strength 1 is that yardstick's
    ranking (an inversion edit is deterministic: its one latent is every sample)."""
    settings, curves = recommender.hybrid_settings, {}
    sampling = {"n_samples": config.n_samples, "seed": config.seed + 11 if seed is None else seed}
    try:
        for method in methods:
            recommender.hybrid_settings = replace(settings, seed_method=method)
            curves[method] = []
            for strength in config.strength_list:
                items = ranked(mode, like_tracks=True, edit_strength=strength, **sampling)
                point = {"strength": strength, **_inversion_point(items, measure, config.k)}
                curves[method].append(point)
                log(f"inversion ({mode}, {method}) strength {strength}: {point}")
    finally:
        recommender.hybrid_settings = settings
    return curves


def _joint_summary(views, config, ranked, measure, seeds, curves) -> dict[str, Any]:
    """Joint@K's yardsticks (the seeds' mean alone: the catalogue by inner product with their
    mean factor; the prompt alone: ``recommend(prompt, mode="latent")``, and in hybrid mode),
    the hybrid mode's edit curve (first seed method) and :func:`joint_target_check`."""
    joint, ks, depth = measure["joint"], measure["ks"], max(measure["ks"])
    by_mean = nearest_items(measure["factors"], measure["seed_means"], depth, seeds, cosine=False)
    yardsticks = {
        "seed_mean": joint.measure(by_mean, ks),
        "prompt_only": joint.measure(ranked(seed=config.seed + 11), ks),
    }
    hybrid = None
    if config.joint_hybrid:
        yardsticks["hybrid_prompt_only"] = joint.measure(ranked("hybrid", seed=config.seed), ks)
        method = config.seed_method_list[0]
        hybrid = _edit_curves(
            views.recommender, config, ranked, measure, [method], "hybrid", seed=config.seed
        )
        hybrid = hybrid[method]
    return {
        "ks": ks,
        "n_prompts": int(joint.measured.size),
        "n_neighbours": config.joint_neighbours,
        "definitions": _JOINT_DEFINITIONS,
        "yardsticks": yardsticks,
        "seed_mean_matches_strength_0": _seed_mean_match(views, config, ranked, by_mean),
        "hybrid_curve": hybrid,
        "target": _joint_targets(curves, hybrid, yardsticks),
    }


_JOINT_DEFINITIONS = {
    "pattern": "the track shares a training playlist with at least one seed",
    "pattern_cf": "the track is among the n_neighbours of highest cosine to the seeds' mean "
    "factor (seeds left out)",
    "attribute": "the track is in a training playlist whose normalised title holds one of the "
    "prompt's content words (title_words; prompts without one are not averaged)",
    "joint": "pattern and attribute at once (joint_cf: pattern_cf and attribute)",
}


def _joint_targets(curves, hybrid, yardsticks) -> dict[str, Any]:
    """Per pattern definition, the target check of each seed method's curve and of hybrid's."""
    latent_bars = {name: yardsticks[name] for name in ("seed_mean", "prompt_only")}
    out = {}
    for pattern, name in (("", "pattern"), ("_cf", "pattern_cf")):
        out[name] = {
            method: joint_target_check(curve, latent_bars, 10, pattern)
            for method, curve in curves.items()
        }
        if hybrid is not None:
            out[name]["hybrid"] = joint_target_check(hybrid, yardsticks, 10, pattern)
    return out


def _seed_mean_match(views, config, ranked, by_mean: np.ndarray) -> float | None:
    """Share of prompts whose top k at strength 0 from the ``mean`` seed latent is, as a set, the
    seeds'-mean yardstick's (faiss may be approximate; None without the ``mean`` method)."""
    if "mean" not in config.seed_method_list:
        return None
    recommender, settings = views.recommender, views.recommender.hybrid_settings
    try:
        recommender.hybrid_settings = replace(settings, seed_method="mean")
        items = ranked(like_tracks=True, edit_strength=0.0, n_samples=1)
    finally:
        recommender.hybrid_settings = settings
    k = config.k
    same = [set(a[:k].tolist()) == set(b[:k].tolist()) for a, b in zip(items, by_mean, strict=True)]
    return float(np.mean(same))


# ------------------------------------------------------------------------------------ cost


def _stage_times(
    views: ProductViews, batch: list[str], config: DiffusionBenchConfig, w: float
) -> dict[str, float]:
    """Seconds of each hybrid stage for one batch, and of the API's hybrid call end to end."""
    from text2tracks.data import normalize_prompt
    from text2tracks.hybrid import fuse

    k, n = config.k, views.recommender.hybrid_settings.beam_candidates
    size, t = len(batch), {}
    t0 = time.perf_counter()
    items, scores = views.beam(batch, n, max(n, config.beams), batch_size=size)
    t["beam"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    latents = views.latents(
        batch, n_samples=config.n_samples, guidance_weight=w, seed=config.seed, batch_size=size
    )
    t["head"] = time.perf_counter() - t0
    texts = [normalize_prompt(p) for p in batch]
    gathered = Gathered(list(batch), texts, items, scores, latents)
    t0 = time.perf_counter()
    candidates = views.candidates(gathered, k)
    t["faiss"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fuse(views.recommender.fusion, candidates, k, latents=latents, prompts=texts)
    t["fusion"] = time.perf_counter() - t0
    t["total"] = t["beam"] + t["head"] + t["faiss"] + t["fusion"]
    t0 = time.perf_counter()
    views.recommender.recommend_arrays(
        batch,
        k=k,
        mode="hybrid",
        n_samples=config.n_samples,
        guidance_weight=w,
        seed=config.seed,
        batch_size=size,
    )
    t["api_hybrid"] = time.perf_counter() - t0
    return t


def sampling_cost(
    views: ProductViews, config: DiffusionBenchConfig, prompts: list[str], w: float
) -> dict[str, Any]:
    """Median per-prompt cost of each hybrid stage at batch 1, and per prompt at batch 64."""
    import torch

    timed = (prompts * (config.latency_prompts // len(prompts) + 1))[: config.latency_prompts]
    _stage_times(views, timed[:1], config, w)  # warm-up
    singles = [_stage_times(views, [p], config, w) for p in timed]
    one = {f"{name}_ms": 1000 * statistics.median(s[name] for s in singles) for name in singles[0]}
    batch = (prompts * (64 // len(prompts) + 1))[:64]
    per = {
        f"{name}_ms": 1000 * v / len(batch)
        for name, v in _stage_times(views, batch, config, w).items()
    }
    return {
        "ddim_steps": views.recommender.diffusion_head.config.ddim_steps,
        "n_samples": config.n_samples,
        "guidance_weight": w,
        "candidates": views.recommender.hybrid_settings.beam_candidates,
        "batch1": one,
        "batch64_per_prompt": per,
        "head_share_batch1": one["head_ms"] / one["total_ms"],
        "head_share_batch64": per["head_ms"] / per["total_ms"],
        "threads": torch.get_num_threads(),
        "device": str(views.recommender.device),
    }
