"""text2tracks-hybrid in the continuation evaluation (eval.continuation --cf-hybrid): the model's
answer mixed with a baseline's list, fitted per seed-count bucket on validation playlists.

Stand-in models with known quality check the fit: a model that only answers irrelevant tracks
must be mixed away (the hybrid ranks exactly as the baseline it chose), and a model that knows
the withheld tracks must be kept (the hybrid beats every baseline).
"""

from __future__ import annotations

import numpy as np
import pytest

from eval.continuation import format_table, run
from eval.continuation_hybrid import HYBRID_SYSTEM, SEED_BUCKETS, seed_bucket
from eval.continuation_model import MODEL_SYSTEM
from semantic_ids.playlists import Playlist
from text2tracks.candidate_rerank import ScoreMixture


def _worlds(n=300, seed=0):
    rng = np.random.default_rng(seed)
    worlds = {"rock": [f"r{i}" for i in range(40)], "jazz": [f"j{i}" for i in range(40)]}
    out = []
    for u in range(n):
        name = "rock" if u % 3 else "jazz"
        tracks = rng.choice(worlds[name], size=15, replace=False).tolist()
        out.append(Playlist(f"p{u}", f"{name} mix", tuple(tracks)))
    return out


class StandIn:
    """A model row for eval.continuation: ``oracle`` answers the withheld tracks first, else the
    other world's tracks (never relevant), best first by a falling score."""

    def __init__(self, oracle: bool, k: int = 20) -> None:
        self.oracle, self.k = oracle, k
        self.calls = 0

    def systems(self, category):
        return [MODEL_SYSTEM]

    def rank_scored(self, system, task):
        self.calls += 1
        ranked = []
        for withheld, title in zip(task.withheld, task.playlist_titles, strict=True):
            other = "j" if title.startswith("rock") else "r"
            junk = [f"{other}{i}" for i in range(40)]
            ranked.append((list(withheld) if self.oracle else [])[: self.k] + junk)
        ranked = [
            [t for t in row if t not in set(s)][: self.k]
            for row, s in zip(ranked, task.seed_ids, strict=True)
        ]
        scores = [list(-np.arange(len(row), dtype=float)) for row in ranked]
        return ranked, scores, {"unanswered": 0}


def _run(model):
    playlists = _worlds()
    train, validation, test = playlists[:200], playlists[200:250], playlists[250:]
    return run(
        train, validation, test, log=lambda m: None, model=model, n_bootstrap=20, cf_hybrid=20
    )


def test_seed_buckets():
    assert [seed_bucket(n) for n in (0, 1, 2, 5, 6, 10, 11, 25, 26, 100, 500)] == [
        0,
        1,
        5,
        5,
        10,
        10,
        25,
        25,
        100,
        100,
        100,
    ]
    assert SEED_BUCKETS[0] == 0
    with pytest.raises(ValueError, match="n_seeds"):
        seed_bucket(-1)


def test_a_useless_model_is_mixed_away_and_the_hybrid_ranks_as_its_baseline():
    results = _run(StandIn(oracle=False))
    fitted = results["cf_hybrid"]
    assert set(fitted) == {"0", "1", "5", "10"}  # 15-track playlists: no 25 or 100 seeds
    for name, cat in results["categories"].items():
        systems = cat["systems"]
        assert HYBRID_SYSTEM in systems and systems[HYBRID_SYSTEM]["depth"] == 79
        n_seeds = int("".join(c for c in name if c.isdigit()) or 0)
        chosen = fitted[str(seed_bucket(n_seeds))]
        assert chosen["weight"] == 0.0, name
        view = chosen["view"]
        if not name.startswith("title"):  # without a title a fused view ranks as its system
            view = view.removeprefix("fused_")
        for metric in ("r_precision", "ndcg", "hits@10", "clicks"):
            assert systems[HYBRID_SYSTEM][metric] == pytest.approx(systems[view][metric]), (
                name,
                metric,
            )
        assert systems[MODEL_SYSTEM]["r_precision"] == 0.0


def test_a_model_that_knows_the_answer_is_kept_and_beats_every_baseline():
    model = StandIn(oracle=True)
    results = _run(model)
    # validation then test, each category with playlists (six: 15 tracks a playlist) once
    assert model.calls == 2 * len(results["categories"]) == 12
    for name, cat in results["categories"].items():
        systems = cat["systems"]
        best = max(
            m["r_precision"] for s, m in systems.items() if s not in (HYBRID_SYSTEM, MODEL_SYSTEM)
        )
        assert systems[HYBRID_SYSTEM]["r_precision"] > best + 0.1, name
        assert systems[HYBRID_SYSTEM]["r_precision"] == pytest.approx(
            systems[MODEL_SYSTEM]["r_precision"]
        )
        paired = cat["paired"][HYBRID_SYSTEM]["r_precision"]  # against the best baseline
        best_name = max(
            (s for s in systems if s not in (HYBRID_SYSTEM, MODEL_SYSTEM)),
            key=lambda s: systems[s]["r_precision"],
        )
        assert paired["against"] == best_name and paired["n_prompts"] == cat["n"]
        assert paired["diff"] == pytest.approx(systems[HYBRID_SYSTEM]["r_precision"] - best)
        assert paired["ci"][0] > 0 and paired["p_value"] < 0.05
    assert "against the best baseline (paired bootstrap)" in format_table(results)
    assert all(b["weight"] > 0 for b in results["cf_hybrid"].values())
    assert {"validation_ndcg", "view", "temperature"} <= set(results["cf_hybrid"]["5"])


def test_the_hybrid_needs_a_model():
    playlists = _worlds(60)
    with pytest.raises(ValueError, match="give a model"):
        run(playlists[:40], playlists[40:50], playlists[50:], log=lambda m: None, cf_hybrid=5)
    from eval.continuation import main

    with pytest.raises(SystemExit, match="--artifact"):
        main(["--playlists", "x", "--out", "y", "--cf-hybrid", "5"])


def test_a_mixture_fitted_by_ndcg_can_prefer_fewer_hits_ranked_higher():
    """View a finds all three tracks of prompt 0 and nothing of prompt 1 (Hits@3 0.5, NDCG@3
    0.5); view b finds one track of each, third (Hits@3 1, NDCG@3 0.37)."""
    scores = np.array([[3.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
    views = {
        "a": (np.array([[1, 2, 3], [4, 5, 6]]), scores),
        "b": (np.array([[4, 5, 1], [7, 8, 9]]), scores),
    }
    relevant = [{1, 2, 3}, {9}]
    groups = np.zeros(10, np.int64)
    grid = ((1.0, 0.0), (1.0,), (0.0,))
    by_hits = ScoreMixture("a", "b", *grid).fit(views, relevant, groups, k=3)
    assert by_hits.weight_ == 0.0 and by_hits.fit_hits_["0,1,0"] == pytest.approx(1.0)
    by_ndcg = ScoreMixture("a", "b", *grid).fit(views, relevant, groups, k=3, metric="ndcg")
    assert by_ndcg.weight_ == 1.0 and by_ndcg.fit_hits_["1,1,0"] == pytest.approx(0.5)
    restored = ScoreMixture.from_dict(by_ndcg.to_dict())
    assert restored.fit_metric_ == "ndcg" and restored.weight_ == 1.0
    with pytest.raises(ValueError, match="metric"):
        ScoreMixture("a", "b").fit(views, relevant, groups, metric="recall")
