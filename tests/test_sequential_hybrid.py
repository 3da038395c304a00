"""text2tracks-hybrid in TIGER's protocol (eval.sequential --hybrid): the model's answers mixed
with item kNN's list, fitted on the validation targets; text2tracks-rerank (--rerank): the same
after the model has scored each of item kNN's candidates.

Stand-in models of known quality check the fit: one that never answers the target must be
mixed away (the hybrid ranks every user's target exactly where item kNN does), one that always
answers it first must be kept (every target the training index knows is found).
"""

from __future__ import annotations

import numpy as np
import pytest

from eval.sequential import main, run
from eval.sequential_hybrid import HYBRID_SYSTEM
from semantic_ids.sequences import Sequences, leave_last_out


def _walks(n_users=300, n_items=200, seed=1):
    rng = np.random.default_rng(seed)
    return leave_last_out(
        Sequences(
            [f"u{u}" for u in range(n_users)],
            [[f"t{i}" for i in rng.choice(n_items, size=6, replace=False)] for _ in range(n_users)],
        )
    )


class StandIn:
    """``oracle``: each user's target first, then nine other items; else ten items that are
    neither the target nor in the history. Scores fall with the rank."""

    def __init__(self, oracle: bool) -> None:
        self.oracle = oracle

    def rank_and_answer(self, histories, targets):
        answers, ranks = [], []
        for history, target in zip(histories, targets, strict=True):
            others = [f"t{i}" for i in range(200) if f"t{i}" != target and f"t{i}" not in history]
            ids = ([target] if self.oracle else []) + others[: 10 - self.oracle]
            answers.append((ids, [-float(r) for r in range(len(ids))]))
            ranks.append(0 if self.oracle else 10)
        return np.array(ranks), {"unanswered": 0}, answers

    def rank(self, histories, targets):
        return self.rank_and_answer(histories, targets)[:2]


def _run(split, model):
    return run(split, n_bootstrap=100, als_factors=8, log=lambda m: None, model=model, hybrid=True)


def test_a_model_that_never_answers_the_target_is_mixed_away():
    results = _run(_walks(), StandIn(False))
    hybrid = results["systems"][HYBRID_SYSTEM]
    assert hybrid["setting"]["weight"] == 0.0
    ranks = results["per_user"]["test_ranks"]
    ours, knn = np.array(ranks[HYBRID_SYSTEM]), np.minimum(ranks["item_knn"], 10)
    # item kNN's own list, but for items tied on its score, where the mixture's pool puts
    # the model's candidates first: a rank or two apart for a few users at most
    assert np.mean(ours == knn) >= 0.98 and np.abs(ours - knn).max() <= 2
    assert abs(hybrid["paired"]["item_knn"]["recall@10"]["diff"]) <= 0.01
    assert hybrid["setting"]["item_knn"] == results["systems"]["item_knn"]["setting"]


def test_a_model_that_knows_the_target_is_kept():
    split = _walks()
    results = _run(split, StandIn(True))
    hybrid = results["systems"][HYBRID_SYSTEM]
    assert hybrid["setting"]["weight"] > 0
    trained = {t for h in split.train for t in h}
    known = np.mean([t in trained for t in split.test])
    assert hybrid["test"]["recall@10"] == pytest.approx(known)
    assert hybrid["test"]["recall@10"] > results["systems"]["item_knn"]["test"]["recall@10"] + 0.3
    assert hybrid["paired"]["item_knn"]["recall@10"]["p_value"] < 0.05


def test_the_hybrid_needs_a_model_and_its_validation_answers(tmp_path):
    split = _walks(60)
    with pytest.raises(ValueError, match="give a model"):
        run(split, n_bootstrap=10, als_factors=8, log=lambda m: None, hybrid=True)
    with pytest.raises(ValueError, match="no-model-validation"):
        run(
            split,
            n_bootstrap=10,
            als_factors=8,
            log=lambda m: None,
            model=StandIn(True),
            model_stages=("test",),
            hybrid=True,
        )
    with pytest.raises(SystemExit):
        main(["--playlists", "x", "--out", str(tmp_path), "--hybrid"])


class Scorer(StandIn):
    """Answers as ``StandIn(False)`` (never the target); scores candidates: ``knows`` puts the
    user's target far above every other candidate, else seeded noise."""

    def __init__(self, knows: bool) -> None:
        super().__init__(False)
        self.knows, self.target_of = knows, {}

    def rank_and_answer(self, histories, targets):
        self.target_of.update({tuple(h): t for h, t in zip(histories, targets, strict=True)})
        return super().rank_and_answer(histories, targets)

    def score_candidates(self, histories, candidates):
        rng = np.random.default_rng(0)
        out = np.full((len(histories), max(map(len, candidates))), np.nan)
        for i, (history, row) in enumerate(zip(histories, candidates, strict=True)):
            target = self.target_of[tuple(history)]
            out[i, : len(row)] = [
                0.0 if self.knows and t == target else -5.0 - rng.random() for t in row
            ]
        return out


def _rerank(split, model):
    return run(split, n_bootstrap=100, als_factors=8, log=lambda m: None, model=model, rerank=True)


def test_rerank_finds_what_the_model_scores_high_among_knns_candidates():
    from eval.sequential import _Evaluation
    from eval.sequential_core import history_rows
    from eval.sequential_hybrid import CANDIDATES, RERANK_SYSTEM, knn_view
    from text2tracks.cf_targets import ItemCosine

    split = _walks()
    results = _rerank(split, Scorer(True))
    rerank = results["systems"][RERANK_SYSTEM]
    assert rerank["setting"]["weight"] > 0
    # the target comes first wherever item kNN's candidates hold it, though the beam never did
    ev = _Evaluation(split, np.arange(len(split.users)), 10)
    cosine = ItemCosine(history_rows(split.train, ev.index))
    histories, targets = ev.stages["test"]
    items, _ = knn_view(cosine, histories, ev.index, results["systems"]["item_knn"]["setting"])
    held = np.mean([ev.index.get(t, -2) in row for t, row in zip(targets, items, strict=True)])
    assert items.shape[1] == CANDIDATES
    assert rerank["test"]["recall@5"] == pytest.approx(held)
    assert rerank["test"]["recall@10"] > results["systems"]["item_knn"]["test"]["recall@10"] + 0.1


def test_rerank_mixes_a_noisy_scorer_away():
    from eval.sequential_hybrid import RERANK_SYSTEM

    results = _rerank(_walks(), Scorer(False))
    rerank = results["systems"][RERANK_SYSTEM]
    assert rerank["setting"]["weight"] == 0.0
    assert abs(rerank["paired"]["item_knn"]["recall@10"]["diff"]) <= 0.01
