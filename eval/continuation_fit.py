"""The continuation baselines' settings, chosen on the validation playlists
(:mod:`eval.continuation`): item kNN's history power, ALS fold-in's factor count and the
title-kNN weight of the fused rows. Each picks the best mean R-precision over the seeded
validation categories, every category counting alike. Also the model's hybrid blend of
continuations on the same validation cut (:func:`fit_seed_fusion_on_validation`)."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from eval.continuation_core import (
    SEED_SYSTEMS,
    Scorers,
    Task,
    challenge_metrics,
    make_tasks,
    rank,
)
from eval.sequential import KNN_HISTORY_POWERS
from text2tracks.seed_views import over_max

FUSE_WEIGHTS = (0.1, 0.3, 1.0, 3.0)


def validation_tasks(validation, index, max_per_category: int | None = None) -> list[Task]:
    """The categories with seeds, cut from the validation playlists (seeded apart from test's)."""
    return [
        t
        for t in make_tasks(validation, index, seed=1, max_per_category=max_per_category)
        if t.category.n_seeds and t.titles
    ]


def _mean_r_precision(
    scorers: Scorers, system: str, val_tasks: list[Task], item_ids, popularity_order, chunk: int
) -> float:
    """``system``'s R-precision over the validation tasks, each category counting alike."""
    per_task = []
    for task in val_tasks:
        values = []
        for start in range(0, len(task.titles), chunk):
            seeds = task.seeds[start : start + chunk]
            scores = scorers.score(system, task.titles[start : start + chunk], seeds)
            ranked = rank(scores, seeds, popularity_order, item_ids)
            withheld = task.withheld[start : start + chunk]
            values.extend(challenge_metrics(ranked, withheld)["r_precision"])
        per_task.append(float(np.mean(values)))
    return float(np.mean(per_task)) if per_task else 0.0


def fit_knn_power(
    scorers: Scorers, val_tasks: list[Task], item_ids, popularity_order, chunk: int = 64
) -> float:
    """Item kNN's ``history_power`` (of :data:`eval.sequential.KNN_HISTORY_POWERS`) with the
    best mean R-precision over the seeded validation categories; set on ``scorers``."""
    by_power = {}
    for power in KNN_HISTORY_POWERS:
        scorers.knn_power = power
        by_power[power] = _mean_r_precision(
            scorers, "item_knn", val_tasks, item_ids, popularity_order, chunk
        )
    scorers.knn_power = max(KNN_HISTORY_POWERS, key=lambda p: by_power[p])
    return scorers.knn_power


def fit_fuse_weights(
    scorers: Scorers, val_tasks: list[Task], item_ids, popularity_order, chunk: int = 64
) -> dict:
    """Per seed system, the title-kNN weight (of :data:`FUSE_WEIGHTS`) of its fused row with the
    best mean R-precision on the validation tasks (:func:`validation_tasks`) with a title and
    seeds. Each system's scores are computed once per chunk and blended with every weight."""
    val_tasks = [t for t in val_tasks if t.category.title and t.category.n_seeds]
    r_precision = {(s, w): [] for s in SEED_SYSTEMS for w in FUSE_WEIGHTS}
    for task in val_tasks:
        per_weight = {key: [] for key in r_precision}
        for start in range(0, len(task.titles), chunk):
            titles = task.titles[start : start + chunk]
            seeds = task.seeds[start : start + chunk]
            withheld = task.withheld[start : start + chunk]
            title = over_max(scorers.score("title_knn", titles, seeds))
            for s in SEED_SYSTEMS:
                base = over_max(scorers.score(s, titles, seeds))
                for w in FUSE_WEIGHTS:
                    ranked = rank(base + w * title, seeds, popularity_order, item_ids)
                    per_weight[s, w].extend(challenge_metrics(ranked, withheld)["r_precision"])
        for key, values in per_weight.items():
            r_precision[key].append(float(np.mean(values)))  # categories count alike
    fuse_weight = dict.fromkeys(SEED_SYSTEMS, 0.5)
    if val_tasks:
        for s in SEED_SYSTEMS:
            fuse_weight[s] = max(FUSE_WEIGHTS, key=lambda w: np.mean(r_precision[s, w]))
    return fuse_weight


def fit_als_factors(
    scorers: Scorers, val_tasks: list[Task], item_ids, popularity_order, choices, chunk: int = 64
) -> int:
    """ALS fold-in's factor count (of ``choices``) with the best mean R-precision over the
    seeded validation categories; ``scorers`` keeps that model. One choice: that one, unscored."""
    choices = tuple(int(n) for n in choices)
    if not choices:
        raise ValueError("choices must hold at least one factor count")
    by_count = {}
    for factors in choices if len(choices) > 1 else ():
        if scorers.als_factors != factors:  # the model it holds already is not fitted again
            scorers.fit_als(factors)
        by_count[factors] = _mean_r_precision(
            scorers, "als_fold_in", val_tasks, item_ids, popularity_order, chunk
        )
    best = max(choices, key=lambda n: by_count.get(n, 0.0))
    if scorers.als_factors != best:
        scorers.fit_als(best)
    return best


def fit_seed_fusion_on_validation(
    recommender,
    validation,
    per_category: int,
    k: int,
    strengths=None,
    kind: str = "fixed",
    log: Callable[[str], None] = print,
) -> dict:
    """Fit the recommender's ``fusion.with_seeds`` (hybrid mode's blend for prompts with seeds,
    :meth:`~text2tracks.pipeline.Text2Tracks.fit_seed_fusion`, NDCG at ``k``) on up to
    ``per_category`` validation playlists of each seeded category, cut as the test ones are
    (their own random seeds): the title (or none) and seeds as the prompt, the withheld tracks
    as its answer (``kind``: a fixed blend or a gate); the seed strength too, among
    ``strengths`` (default :data:`text2tracks.seed_fusion.SEED_STRENGTHS`). Returns the fit's
    summary."""
    from text2tracks.seed_fusion import SEED_STRENGTHS

    tasks = validation_tasks(validation, {}, max_per_category=per_category)
    prompts = [title for t in tasks for title in t.titles]
    seeds = [row for t in tasks for row in t.seed_ids]
    withheld = [row for t in tasks for row in t.withheld]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seeds past max_seed_tracks: the test rows say so
        summary = recommender.fit_seed_fusion(
            prompts,
            seeds,
            withheld,
            kind=kind,
            metric="ndcg",
            k=k,
            strengths=strengths or SEED_STRENGTHS,
        )
    views = summary[f"ndcg@{k}"]
    log(
        f"continuation fusion: {summary['n_prompts']} validation prompts ({len(tasks)} "
        f"categories), NDCG@{k}: beam {views['generative']:.4f}, latent {views['latent']:.4f}, "
        f"fused {views['fused']:.4f} (alpha {summary.get('alpha')}, seed strength "
        f"{summary['seed_strength']} of {summary['seed_strength_scores']})"
    )
    return summary
