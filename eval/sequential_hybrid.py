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
    missing = {"validation", "test"} - set(ev.answers)
    if missing:
        raise ValueError(
            f"text2tracks-hybrid is fitted on the model's validation answers and scored on its "
            f"test ones; missing: {sorted(missing)} (drop --no-model-validation)"
        )
    groups = np.zeros(ev.n_items, np.int64)  # no first-code spreading
    views, stage_targets = {}, {}
    for stage in ("validation", "test"):
        histories, targets = ev.stages[stage]
        views[stage] = {
            "model": id_view(ev.answers[stage], ev.index),
            "item_knn": knn_view(ev.cosine, histories, ev.index, knn_setting),
        }
        stage_targets[stage] = targets
    relevant = [{ev.index[t]} if t in ev.index else set() for t in stage_targets["validation"]]
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
        ranks = target_ranks(lists, stage_targets[stage], ev.index, DEPTH)
        out[stage] = metrics_from_ranks(ranks, n_bootstrap)
    ev.test_ranks[HYBRID_SYSTEM] = ranks
    out["paired"] = paired_tests(ev.test_ranks, HYBRID_SYSTEM, n_bootstrap)
    log(
        f"{HYBRID_SYSTEM}: weight {mixture.weight_:g}, temperature {mixture.temperature_:g}; "
        f"test recall@10 {out['test']['recall@10']:.4f}"
    )
    return out
