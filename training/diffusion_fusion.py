"""The hybrid mode's fusion, fitted once the diffusion head is saved
(:mod:`training.train_diffusion`, unless ``--no-fit-fusion``): beam candidates of the seq2seq and
latent candidates of the head on validation prompts, gathered as ``Text2Tracks.recommend(
mode="hybrid")`` gathers them, and a fusion fitted to them into ``ART/diffusion/fusion.json``;
with ``--fusion-like-rounds R`` also the fusion of queries that carry liked tracks, fitted on
simulated R-round sessions over the same prompts (``fusion.with_likes``), and with
``--fusion-seed-prompts N`` the fusion of prompts that continue seed tracks, fitted on N
continuations cut from them (``fusion.with_seeds``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from text2tracks.artifacts import CF_COMPONENT, DIFFUSION_COMPONENT
from training.diffusion_config import DiffusionTrainConfig


def fit_artifact_fusion(
    config: DiffusionTrainConfig,
    prompts: list[str],
    relevant: list[set[int]],
    device=None,
    log=None,
) -> dict[str, Any]:
    """Fit the hybrid fusion of ``config.artifact`` (with its saved ``diffusion/``) on validation
    prompts and write ``diffusion/fusion.json``; returns the fit's summary (or why it was skipped).

    Args:
        config: the training config (``fusion_*`` fields, ``pool``, ``eval_k``, ``seed``,
            ``progress``).
        prompts, relevant: validation prompts and their relevant items as ``cf/`` vocabulary
            indices (:func:`load_pairs`'s ``validation_prompts`` / ``validation_relevant``).
        device: where the recommender runs (None: CUDA if available, else the CPU).
        log: a function taking one message (None: silent).
    """
    import numpy as np

    from semantic_ids.interactions import ItemVocab
    from text2tracks.artifacts import read_manifest
    from text2tracks.hybrid import HybridSettings, save_fusion
    from text2tracks.pipeline import Text2Tracks

    log = log or (lambda message: None)
    artifact = Path(config.artifact)
    components = read_manifest(artifact)["components"]
    reason = None
    if "seq2seq" not in components:
        reason = "the artifact has no seq2seq/ component to draw beam candidates from"
    elif "diffusion" not in components:
        reason = "the artifact has no diffusion/ component"
    elif not prompts:
        reason = "no validation prompt holds a catalogue track"
    if reason is not None:
        log(f"fusion not fitted: {reason}; hybrid mode will blend the two views evenly")
        return {"skipped": reason}
    started = time.perf_counter()
    if len(prompts) > config.fusion_prompts:
        pick = np.sort(
            np.random.default_rng(config.seed).choice(
                len(prompts), config.fusion_prompts, replace=False
            )
        )
        prompts, relevant = [prompts[i] for i in pick], [relevant[i] for i in pick]
    vocab = ItemVocab.load(artifact / CF_COMPONENT)
    relevant_ids = [[vocab.item_ids[i] for i in sorted(rel)] for rel in relevant]
    settings = HybridSettings(
        n_samples=config.fusion_samples,
        beam_candidates=config.fusion_candidates,
        latent_k=config.fusion_latent_k,
        pool=config.pool,
    )
    recommender = Text2Tracks.from_pretrained(artifact, device=device)
    summary = recommender.fit_fusion(
        prompts,
        relevant_ids,
        settings=settings,
        kind=config.fusion_kind,
        metric=config.fusion_metric,
        k=config.eval_k,
        progress=config.progress,
    )
    if config.fusion_like_rounds:
        summary["with_likes"] = _fit_like_fusion(recommender, prompts, relevant_ids, config, log)
    if config.fusion_seed_prompts:
        summary["with_seeds"] = _fit_seed_fusion(recommender, prompts, relevant_ids, config, log)
    summary["elapsed_s"] = round(time.perf_counter() - started, 3)
    # the settings with the seed strength the fusion of continuations chose
    save_fusion(
        artifact / DIFFUSION_COMPONENT, recommender.fusion, recommender.hybrid_settings, summary
    )
    _log_fusion(summary, config, log)
    return summary


def _log_fusion(summary: dict[str, Any], config: DiffusionTrainConfig, log) -> None:
    scores = summary[f"{config.fusion_metric}@{config.eval_k}"]
    weights = (
        f"alpha {summary['alpha']}"
        if "alpha" in summary
        else f"mean alpha {summary['alphas_mean']:.2f}"
    )
    log(
        f"fusion ({config.fusion_kind}, {summary['n_prompts']} validation prompts, "
        f"{summary['elapsed_s']:.0f} s): {weights}; {config.fusion_metric}@{config.eval_k} "
        f"generative {scores['generative']:.4f}, latent {scores['latent']:.4f}, "
        f"fused {scores['fused']:.4f} (in-sample)"
    )


def _fit_like_fusion(recommender, prompts, relevant_ids, config, log) -> dict[str, Any]:
    """The fusion of queries with liked tracks, on simulated sessions (kept in
    ``recommender.fusion.with_likes``); its summary, or why it was not fitted."""
    return _fit_part(
        "liked tracks",
        lambda: recommender.fit_like_fusion(
            prompts,
            relevant_ids,
            rounds=config.fusion_like_rounds,
            kind=config.fusion_kind,
            metric=config.fusion_metric,
            k=config.eval_k,
        ),
        lambda fitted: f"{fitted['n_prompts']} queries of {fitted['rounds']}-round sessions",
        config,
        log,
    )


def _fit_seed_fusion(recommender, prompts, relevant_ids, config, log) -> dict[str, Any]:
    """The fusion of prompts that continue seed tracks, on continuations cut from the
    validation prompts (kept in ``recommender.fusion.with_seeds``, the seed strength it chose in
    ``recommender.hybrid_settings``); its summary, or why it was not fitted."""
    from text2tracks.seed_fusion import SEED_STRENGTHS, continuation_examples

    texts, seeds, wanted = continuation_examples(
        prompts,
        relevant_ids,
        config.fusion_seed_prompts,
        seed=config.seed,
        title_drop=0.2 if recommender.max_seed_tracks else 0.0,  # seeds alone need the beam's
    )
    return _fit_part(
        "seed tracks",
        lambda: recommender.fit_seed_fusion(
            texts,
            seeds,
            wanted,
            kind=config.fusion_kind,
            metric=config.fusion_metric,
            k=config.eval_k,
            strengths=SEED_STRENGTHS,
        ),
        lambda fitted: (
            f"{fitted['n_prompts']} continuations, seed strength {fitted['seed_strength']}"
        ),
        config,
        log,
    )


def _fit_part(what: str, fit, describe, config, log) -> dict[str, Any]:
    """Run one of the fusion's parts' fits and log it; its summary, or why it was not fitted
    (a ``ValueError`` of the fit: nothing to fit on, so the plain prompts' fusion serves)."""
    try:
        fitted = fit()
    except ValueError as err:
        log(f"fusion for {what} not fitted: {err}")
        return {"skipped": str(err)}
    key = f"{config.fusion_metric}@{config.eval_k}"
    log(
        f"fusion for {what} ({describe(fitted)}): alpha {fitted.get('alpha', '-')}; {key} "
        f"generative {fitted[key]['generative']:.4f}, latent {fitted[key]['latent']:.4f}, "
        f"fused {fitted[key]['fused']:.4f} (in-sample)"
    )
    return fitted
