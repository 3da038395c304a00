"""Tests for eval.continuation: the RecSys Challenge 2018 categories, metrics and baselines."""

from __future__ import annotations

import numpy as np
import pytest

from eval.continuation import (
    CATEGORIES,
    Category,
    Scorers,
    challenge_metrics,
    evaluate_tasks,
    item_index,
    make_tasks,
    rank,
    run,
)
from eval.continuation_fit import fit_als_factors, fit_knn_power, validation_tasks
from semantic_ids.playlists import Playlist


def test_challenge_metrics_by_hand():
    ranked = [["a", "x", "b", "y"], ["x"] * 0 + [f"n{i}" for i in range(30)]]
    withheld = [["a", "b", "c"], ["zzz"]]
    m = challenge_metrics(ranked, withheld)
    # R-precision: 2 of the first 3 (a, x, b) are relevant, out of 3
    assert m["r_precision"][0] == pytest.approx(2 / 3)
    # NDCG: rel_1 + rel_3 / log2(3) over 1 + 1/log2(2) + 1/log2(3)
    assert m["ndcg"][0] == pytest.approx((1 + 1 / np.log2(3)) / (1 + 1 + 1 / np.log2(3)))
    assert m["clicks"][0] == 0 and m["hits@10"][0] == 1
    assert m["clicks"][1] == 51 and m["r_precision"][1] == 0 and m["hits@10"][1] == 0


def test_make_tasks_cuts_seeds_and_withholds_the_rest():
    p = Playlist("p", "Road Trip", tuple(f"t{i}" for i in range(12)))
    short = Playlist("q", "x", ("t0", "t1"))
    index = {f"t{i}": i for i in range(12)}
    tasks = {t.category.name: t for t in make_tasks([p, short], index)}
    assert set(tasks) == {c.name for c in CATEGORIES}
    assert len(tasks["title_only"].titles) == 2 and tasks["title_only"].seeds[0].size == 0
    first5 = tasks["first5"]
    assert first5.titles == [""]  # the short playlist has too few tracks; no title here
    assert first5.seeds[0].tolist() == [0, 1, 2, 3, 4]
    assert first5.withheld[0] == [f"t{i}" for i in range(5, 12)]
    assert len(tasks["title_first25"].titles) == 0
    random = make_tasks([p], index, categories=[Category("r", True, 5, random=True)])[0]
    assert len(random.seeds[0]) == 5 and not set(random.withheld[0]) & {
        f"t{j}" for j in random.seeds[0]
    }


def test_rank_excludes_seeds_and_breaks_ties_by_popularity():
    scores = np.array([[0.0, 5.0, 5.0, 1.0] + [0.0] * 600])
    ids = [f"i{j}" for j in range(604)]
    top = rank(scores, [np.array([1])], np.arange(604), ids)[0]
    assert top[:3] == ["i2", "i3", "i0"] and "i1" not in top and len(top) == 500


def _worlds(n=240, seed=0):
    rng = np.random.default_rng(seed)
    worlds = {"rock": [f"r{i}" for i in range(40)], "jazz": [f"j{i}" for i in range(40)]}
    out = []
    for u in range(n):
        name = "rock" if u % 3 else "jazz"  # rock is the popular world
        tracks = rng.choice(worlds[name], size=15, replace=False).tolist()
        out.append(Playlist(f"p{u}", f"{name} mix", tuple(tracks)))
    return out


def test_baselines_find_the_world():
    playlists = _worlds()
    train, validation, test = playlists[:160], playlists[160:200], playlists[200:]
    results = run(train, validation, test, log=lambda m: None)
    cats = results["categories"]
    pop = cats["title_only"]["systems"]["popularity"]["r_precision"]
    assert cats["title_only"]["systems"]["title_knn"]["r_precision"] > pop + 0.1
    # within a world tracks are uniform, so R-precision is capped near 10/35; popularity serves
    # only the rock two thirds, the seed systems serve both worlds
    for system in ("item_knn", "als_fold_in"):
        assert (
            cats["first5"]["systems"][system]["r_precision"]
            > cats["first5"]["systems"]["popularity"]["r_precision"] + 0.03
        ), system
        assert cats["first5"]["systems"][system]["hits@10"] >= 0.9, system
    assert "title_knn" not in cats["first5"]["systems"]
    assert "fused_item_knn" in cats["title_first5"]["systems"]
    assert set(results["fuse_weight"]) == {"item_knn", "als_fold_in"}
    assert results["overall"]["popularity"]["categories"] == len(cats)
    # 15-track playlists cannot serve the 25- and 100-seed categories: left out, not NaN
    assert set(results["empty_categories"]) == {
        "title_first25",
        "title_random25",
        "title_first100",
        "title_random100",
    }
    assert all(np.all(np.isfinite(v)) for m in results["overall"].values() for v in m.values())
    for m in results["overall"].values():
        assert m["r_precision_ci"][0] <= m["r_precision"] <= m["r_precision_ci"][1]


def _hub_world(seed=0):
    """Two genres, a small one (A, 40 playlists) and a large one (B, 120), and a hub track in
    nine playlists of ten of both: the two item-kNN powers rank them differently."""
    rng = np.random.default_rng(seed)
    out = []
    for g, n, pool in (("a", 40, 30), ("b", 120, 30)):
        for k in range(n):
            tracks = [f"{g}{t}" for t in rng.choice(pool, 9, replace=False)]
            if rng.random() < 0.9:
                tracks.insert(0, "hub")
            out.append(Playlist(f"{g}{k}", f"mix {k}", tracks))
    return out


def test_the_als_factor_count_is_the_one_that_ranks_validation_best():
    """Eight genres of 12 tracks: one factor cannot tell them apart, eight can."""
    rng = np.random.default_rng(2)
    playlists = [
        Playlist(f"{g}{k}", f"mix {k}", [f"{g}-{t}" for t in rng.choice(12, 9, replace=False)])
        for g in "abcdefgh"
        for k in range(20)
    ]
    rng.shuffle(playlists)
    train, validation = playlists[:120], playlists[120:]
    item_ids, index, popularity = item_index(train)
    order = np.arange(len(item_ids))
    scorers = Scorers(train, index, popularity, als_factors=1)
    tasks = validation_tasks(validation, index)
    assert fit_als_factors(scorers, tasks, item_ids, order, (1, 8)) == 8 == scorers.als_factors
    assert scorers.als.factors == 8
    # one choice: kept without scoring, the model refitted to it
    assert fit_als_factors(scorers, tasks, item_ids, order, (1,)) == 1 == scorers.als_factors
    with pytest.raises(ValueError, match="at least one"):
        fit_als_factors(scorers, tasks, item_ids, order, ())


def test_the_item_knn_power_is_the_one_that_ranks_validation_best():
    playlists = _hub_world()
    rng = np.random.default_rng(1)
    rng.shuffle(playlists)
    train, validation = playlists[:120], playlists[120:]
    item_ids, index, popularity = item_index(train)
    order = np.arange(len(item_ids))
    scorers = Scorers(train, index, popularity)
    tasks = validation_tasks(validation, index)
    by_power = {}
    for power in (0.0, 0.5):
        scorers.knn_power = power
        got = evaluate_tasks(scorers, tasks, item_ids, order)
        by_power[power] = np.mean(
            [c["per_prompt"]["item_knn"]["r_precision"].mean() for c in got.values()]
        )
    best = max(by_power, key=by_power.get)
    assert abs(by_power[0.5] - by_power[0.0]) > 0.01  # the choice matters here
    scorers.knn_power = 0.5 - best  # the other one; the fit must move it
    assert fit_knn_power(scorers, tasks, item_ids, order) == best == scorers.knn_power
