"""The diffusion benchmark's curves and cost, each measured through the public API.

* :func:`negative_prompt_curve`: per guidance weight, the share of the top k in the negative's
  playlists and Hits@k, without and with ``negative_prompt`` (same starting noise: the same
  ``seed``), for the latent and the hybrid rankings;
* :func:`inversion_curve`: ``recommend(mode="latent", like_tracks=seeds, edit_strength=s,
  exclude=seeds)`` per seed method and strength, scored for closeness to the seeds and relevance
  to the prompt;
* :func:`sampling_cost`: the time of each hybrid stage, and of ``recommend(mode="hybrid")``.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any

import numpy as np

from eval.bench_diffusion_config import DiffusionBenchConfig, log
from eval.bench_diffusion_pairs import (
    negative_share,
    seed_similarity,
    select_negative_pairs,
    select_seed_playlists,
    target_check,
)
from eval.bench_diffusion_views import Gathered, ProductViews
from text2tracks.rerank import per_prompt_metric

# ------------------------------------------------------------------------------------ negatives


def _negative_row(
    views: ProductViews,
    sub: Gathered,
    negatives: list[str],
    relevant: list[set[int]],
    share,
    w: float,
    config: DiffusionBenchConfig,
) -> dict[str, Any]:
    """One point of the curve: both views' share and Hits@k, without and with the negatives."""
    k = config.k
    row: dict[str, Any] = {"w": w}
    for label, negative in (("without", None), ("with", negatives)):
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
            row[f"{view}_share_{label}"] = share(items)
            row[f"{view}_hits_{label}"] = float(
                per_prompt_metric(items, relevant, "hits", k).mean()
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
    train_playlists: list,
    w_default: float,
) -> dict[str, Any]:
    """The negative-prompt curve on pairs chosen from the training titles (vocabulary indices;
    the hybrid view reuses the test prompts' beam and the recommender's fusion)."""
    vocab = views.vocab
    prompts = test.prompts
    pairs = select_negative_pairs(
        [p.title for p in train_playlists],
        [vocab.indices(p.track_ids, skip_unknown=True) for p in train_playlists],
        list(prompts),
        config.n_negative_pairs,
        config.prompts_per_pair,
        config.min_title_playlists,
        config.max_contamination,
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

    curve = []
    for w in config.grid:
        curve.append(_negative_row(views, sub, negatives, relevant, share, w, config))
        log(f"negative w={w}: { {key: round(v, 4) for key, v in curve[-1].items()} }")
    return {
        "pairs": [_pair_summary(p, prompts) for p in pairs],
        "n_prompts": int(len(idx)),
        "curve": curve,
        "generative_share": share(views.vocab_items(sub.beam_items[:, : config.k])),
        "default_w": w_default,
        "target": {
            "latent": target_check(curve, "latent"),
            "hybrid": target_check(curve, "hybrid"),
        },
    }


# ------------------------------------------------------------------------------------ inversion


def _inversion_point(items: np.ndarray, measure: dict[str, Any], k: int) -> dict[str, float]:
    return {
        "seed_cosine": float(
            np.nanmean(seed_similarity(items, measure["factors"], measure["seed_means"], k))
        ),
        "seed_hits": float(per_prompt_metric(items, measure["seed_rest"], "hits", k).mean()),
        "prompt_hits": float(per_prompt_metric(items, measure["prompt_rel"], "hits", k).mean()),
    }


def inversion_curve(
    views: ProductViews,
    config: DiffusionBenchConfig,
    prompts: list[str],
    relevant: list[np.ndarray],
) -> dict[str, Any]:
    """Seed tracks from another test playlist, edited towards each prompt by the API's
    ``like_tracks`` path, per seed method and strength (seeds excluded from the answers)."""
    recommender, k = views.recommender, config.k
    in_catalogue = [r[views.to_catalogue[r] >= 0] for r in relevant]
    pairs = select_seed_playlists(
        prompts, in_catalogue, config.n_seed_tracks, config.max_inversion_prompts, config.seed
    )
    if not pairs:
        log("inversion: no seed playlist pairs found")
        return {"curve": [], "curves": {}, "n_prompts": 0}
    sub = [prompts[i] for i, _ in pairs]
    seeds = [in_catalogue[j][: config.n_seed_tracks] for _, j in pairs]
    seed_ids = [views.track_ids(s) for s in seeds]
    factors = views.vocab_factors
    measure = {
        "factors": factors,
        "seed_means": np.stack([factors[s].mean(0) for s in seeds]),
        "seed_rest": [set(map(int, in_catalogue[j][config.n_seed_tracks :])) for _, j in pairs],
        "prompt_rel": [set(map(int, relevant[i])) for i, _ in pairs],
    }

    def ranked(**options) -> np.ndarray:
        ids = recommender.recommend_arrays(
            sub, k=k, mode="latent", exclude=seed_ids, batch_size=views.batch_size, **options
        )[0]
        return views.vocab_items(views.catalogue_items(ids))

    settings, curves = recommender.hybrid_settings, {}
    try:
        for method in config.seed_method_list:
            recommender.hybrid_settings = replace(settings, seed_method=method)
            curves[method] = []
            for strength in config.strength_list:
                items = ranked(like_tracks=seed_ids, edit_strength=strength, n_samples=1)
                curves[method].append({"strength": strength, **_inversion_point(items, measure, k)})
                log(f"inversion ({method}) strength {strength}: {curves[method][-1]}")
    finally:
        recommender.hybrid_settings = settings
    # Reference: plain samples from the prompt (no seed), one per prompt.
    reference = _inversion_point(ranked(n_samples=1, seed=config.seed + 11), measure, k)
    method = config.seed_method_list[0]
    first, last = curves[method][0], curves[method][-1]
    return {
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
