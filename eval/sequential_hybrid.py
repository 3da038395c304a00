"""``text2tracks-hybrid`` in TIGER's protocol (:mod:`eval.sequential`, ``--hybrid``): the
model's answers mixed with item kNN's list (LIGER, COBRA: a generative retriever's candidates
unioned with another view's and re-ranked), as :mod:`eval.continuation_hybrid` does for the
challenge's categories.

The model's answers to a history (its ``k`` tracks with their beam scores) and item kNN's best
:data:`CANDIDATES` (at the decay and history power chosen for the ``item_knn`` row), the
history left out of both, are read as two distributions over the union of their candidates and
mixed, ``w * p_model + (1 - w) * p_knn``
(:class:`text2tracks.candidate_rerank.ScoreMixture`); ``w`` and the model's temperature are the
grid point with the best Recall@10 on the validation targets (the model's answers to the
training histories), never the test ones. ``w = 0`` is item kNN's own list and ``w = 1`` the
model's, so the fit may fall back to either. The ``text2tracks`` row stays the model alone.

``text2tracks-rerank`` (``--rerank``) gives the model's view every one of item kNN's candidates:
each is scored by the model itself (teacher-forced, :meth:`text2tracks.Text2Tracks.score_tracks`,
the history as its seeds), so the mixture can reorder kNN's list by what the model thinks of
each item, not only where its beam found one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from eval.sequential_core import history_rows, metrics_from_ranks, paired_tests
from text2tracks.candidate_rerank import (
    MIX_TEMPERATURES,
    ScoreMixture,
    filled_lists,
    id_view,
    top_view,
)
from text2tracks.cf_targets import ItemCosine

HYBRID_SYSTEM = "text2tracks-hybrid"
RERANK_SYSTEM = "text2tracks-rerank"
CANDIDATES = 100  # item kNN's candidates per user
DEPTH = 10  # the protocol's deepest K
# item kNN's shares spread over its 100 candidates, so small model weights reorder its top 10
# already: the grid is finer near 0
WEIGHTS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def knn_view(
    cosine: ItemCosine,
    histories: Sequence[Sequence[str]],
    index: dict[str, int],
    setting: dict,
    depth: int = CANDIDATES,
    chunk: int = 128,
) -> tuple[np.ndarray, np.ndarray]:
    """Item kNN's best ``depth`` items and scores per history (best first, ties to the more
    popular item), the history's own items left out."""
    weighted = history_rows(histories, index, setting["decay"])
    seen = history_rows(histories, index)  # a far item's decayed weight may underflow to 0
    items, scores = [], []
    for start in range(0, len(histories), chunk):
        rows = slice(start, min(start + chunk, len(histories)))
        dense = np.array(cosine.scores(weighted[rows], setting["history_power"]), np.float64)
        dense[seen[rows].nonzero()] = -np.inf
        part_items, part_scores = top_view(dense, depth)
        items.append(part_items)
        scores.append(part_scores)
    return np.concatenate(items), np.concatenate(scores)


def target_ranks(lists: Sequence[Sequence[int]], targets: Sequence[str], index, depth: int):
    """0-based rank of each target in its list (``depth`` when absent or unknown)."""
    ranks = np.full(len(targets), depth, dtype=np.int64)
    for u, (row, target) in enumerate(zip(lists, targets, strict=True)):
        j = index.get(target)
        if j is not None and j in row[:depth]:
            ranks[u] = list(row).index(j)
    return ranks


def hybrid_row(ev, knn_setting: dict, n_bootstrap: int, log=print) -> dict:
    """The ``text2tracks-hybrid`` row: fitted on the validation stage, scored on the test stage
    (``ev``: :class:`eval.sequential._Evaluation` holding the model's answers on both and item
    kNN's cosine over the training histories), its test
    ranks added to ``ev.test_ranks`` and compared by paired bootstrap."""
    _check_answers(ev, HYBRID_SYSTEM)
    views = {
        stage: {
            "model": id_view(ev.answers[stage], ev.index),
            "item_knn": knn_view(ev.cosine, ev.stages[stage][0], ev.index, knn_setting),
        }
        for stage in ("validation", "test")
    }
    return _mixture_row(ev, views, HYBRID_SYSTEM, knn_setting, n_bootstrap, log)


def rerank_row(ev, model, knn_setting: dict, n_bootstrap: int, log=print) -> dict:
    """The ``text2tracks-rerank`` row (LIGER: a generative model scoring another retriever's
    candidates): item kNN's :data:`CANDIDATES` per user, each scored by the model
    (``model.score_candidates``, teacher-forced: the score its search would give that item),
    joined with the model's own answers, then mixed with item kNN's list as
    :func:`hybrid_row` mixes them. Unlike the hybrid, the model's view covers every kNN
    candidate, not only the ones its beam found."""
    _check_answers(ev, RERANK_SYSTEM)
    names = np.empty(ev.n_items, dtype=object)
    for item, j in ev.index.items():
        names[j] = item
    views = {}
    for stage in ("validation", "test"):
        histories = ev.stages[stage][0]
        knn_items, knn_scores = knn_view(ev.cosine, histories, ev.index, knn_setting)
        ids = [[names[j] for j in row if j >= 0] for row in knn_items]
        exact = np.asarray(model.score_candidates(histories, ids), dtype=np.float64)
        scored = np.full(knn_items.shape, np.nan)
        scored[:, : exact.shape[1]] = exact
        scored[knn_items < 0] = np.nan
        answer_items, answer_scores = id_view(ev.answers[stage], ev.index)
        views[stage] = {
            "model": (
                np.concatenate([answer_items, knn_items], axis=1),
                np.concatenate([answer_scores, scored], axis=1),
            ),
            "item_knn": (knn_items, knn_scores),
        }
        log(f"{RERANK_SYSTEM}: {stage}: {len(histories)} users' kNN candidates scored")
    return _mixture_row(ev, views, RERANK_SYSTEM, knn_setting, n_bootstrap, log)


def _check_answers(ev, system: str) -> None:
    missing = {"validation", "test"} - set(ev.answers)
    if missing:
        raise ValueError(
            f"{system} is fitted on the model's validation answers and scored on its "
            f"test ones; missing: {sorted(missing)} (drop --no-model-validation)"
        )


def _mixture_row(ev, views, system: str, knn_setting: dict, n_bootstrap: int, log) -> dict:
    """Fit the mixture of ``views[stage]["model"]`` and ``["item_knn"]`` on the validation
    targets, rank both stages, and compare the test ranks by paired bootstrap."""
    groups = np.zeros(ev.n_items, np.int64)  # no first-code spreading
    targets = {stage: ev.stages[stage][1] for stage in ("validation", "test")}
    relevant = [{ev.index[t]} if t in ev.index else set() for t in targets["validation"]]
    mixture = ScoreMixture("model", "item_knn", WEIGHTS, MIX_TEMPERATURES, (0.0,))
    mixture.fit(views["validation"], relevant, groups, k=DEPTH)
    out: dict = {
        "setting": {
            "views": ["model", "item_knn"],
            "item_knn": dict(knn_setting),
            "weight": mixture.weight_,
            "temperature": mixture.temperature_,
            "candidates": CANDIDATES,
        },
        "validation_fit": dict(mixture.fit_hits_),  # Recall@10 per "weight,temperature,0"
    }
    for stage in ("validation", "test"):
        items, _ = mixture.rank(views[stage], groups, k=DEPTH)
        lists = filled_lists(items, [views[stage]["item_knn"], views[stage]["model"]], DEPTH)
        ranks = target_ranks(lists, targets[stage], ev.index, DEPTH)
        out[stage] = metrics_from_ranks(ranks, n_bootstrap)
    ev.test_ranks[system] = ranks
    out["paired"] = paired_tests(ev.test_ranks, system, n_bootstrap)
    log(
        f"{system}: weight {mixture.weight_:g}, temperature {mixture.temperature_:g}; "
        f"test recall@10 {out['test']['recall@10']:.4f}"
    )
    return out
