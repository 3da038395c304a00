"""CandidateReranker (text2tracks-hybrid) on synthetic views whose right answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from text2tracks.candidate_rerank import (
    CandidateReranker,
    ListInterleave,
    ScoreMixture,
    candidate_features,
    feature_names,
    hybrid_fusion_from_dict,
)
from text2tracks.ranking_metrics import per_prompt_metrics

N_ITEMS = 400


def _views(seed: int, n_prompts: int = 120, depth: int = 20):
    """Two views of 20 candidates each. The one relevant item of a prompt is the only item both
    views return, at a random rank in each (never first): each view alone rarely ranks it
    first, but agreement gives it away."""
    rng = np.random.default_rng(seed)
    beam, other, relevant = [], [], []
    for _ in range(n_prompts):
        pool = rng.choice(N_ITEMS, 2 * depth - 1, replace=False)
        target, rest = pool[0], pool[1:]
        a, b = list(rest[: depth - 1]), list(rest[depth - 1 :])
        a.insert(int(rng.integers(1, depth)), target)
        b.insert(int(rng.integers(1, depth)), target)
        beam.append(a), other.append(b), relevant.append({int(target)})
    scores = -np.sort(rng.exponential(size=(n_prompts, depth)), axis=1)  # best first
    views = {
        "beam": (np.asarray(beam), scores),
        "knn": (np.asarray(other), 10.0 * scores + 3.0),  # another scale entirely
    }
    return views, relevant


POPULARITY = np.ones(N_ITEMS)
GROUPS = np.arange(N_ITEMS) % 7


def test_features_mark_each_view_and_count_agreement():
    views, relevant = _views(0, n_prompts=3, depth=5)
    rows = candidate_features(views, ("beam", "knn"), POPULARITY)
    names = feature_names(("beam", "knn"))
    for r, (items, features) in enumerate(rows):
        assert len(items) == len(set(items.tolist())) == 9  # 5 + 5, one shared
        assert items[:5].tolist() == views["beam"][0][r].tolist()  # union in view order
        target = next(iter(relevant[r]))
        row = features[items.tolist().index(target)]
        assert row[names.index("n_views")] == 2
        assert row[names.index("beam.present")] == row[names.index("knn.present")] == 1
        rank = views["beam"][0][r].tolist().index(target)
        assert row[names.index("beam.reciprocal_rank")] == pytest.approx(1 / (rank + 1))
        first_knn_only = items[5]
        other = features[5]
        assert first_knn_only == views["knn"][0][r][0] and other[names.index("beam.present")] == 0
        assert other[names.index("beam.reciprocal_rank")] == 0
        assert other[names.index("beam.zscore")] < features[:5, names.index("beam.zscore")].min()


def test_reranker_learns_that_agreement_predicts_relevance():
    views, relevant = _views(0)
    reranker = CandidateReranker(("beam", "knn"), penalties=(0.0,)).fit(
        views, relevant, POPULARITY, GROUPS, k=1
    )
    test_views, test_relevant = _views(1)
    ranked, scores = reranker.rank(test_views, POPULARITY, GROUPS, k=1)
    assert per_prompt_metrics(ranked, test_relevant, 1)["hits"].mean() >= 0.95
    for name in ("beam", "knn"):  # neither view alone puts it first
        alone = per_prompt_metrics(test_views[name][0][:, :1], test_relevant, 1)["hits"]
        assert alone.mean() == 0.0
    assert np.isfinite(scores).all()


def test_the_diversity_penalty_spreads_the_list_over_first_codes():
    views, relevant = _views(2)
    groups = np.zeros(N_ITEMS, dtype=np.int64)
    groups[::2] = 1  # two groups
    plain = CandidateReranker(("beam", "knn"), penalties=(0.0,)).fit(
        views, relevant, POPULARITY, groups
    )
    spread = CandidateReranker(("beam", "knn"), penalties=(5.0,)).fit(
        views, relevant, POPULARITY, groups
    )
    a, _ = plain.rank(views, POPULARITY, groups, k=4)
    b, _ = spread.rank(views, POPULARITY, groups, k=4)
    assert np.array_equal(a[:, 0], b[:, 0])  # the best candidate still comes first
    assert all(sorted(np.bincount(groups[row], minlength=2)) == [2, 2] for row in b)
    assert any(sorted(np.bincount(groups[row], minlength=2)) != [2, 2] for row in a)


def test_the_penalty_is_chosen_on_the_fitting_prompts_and_saved_as_json():
    views, relevant = _views(3)
    reranker = CandidateReranker(("beam", "knn"), penalties=(0.0, 1.0)).fit(
        views, relevant, POPULARITY, GROUPS
    )
    assert set(reranker.fit_hits_) == {0.0, 1.0}
    assert reranker.fit_hits_[reranker.penalty_] == max(reranker.fit_hits_.values())
    loaded = CandidateReranker.from_dict(json.loads(json.dumps(reranker.to_dict())))
    test_views, _ = _views(4)
    ours, theirs = (
        reranker.rank(test_views, POPULARITY, GROUPS),
        loaded.rank(test_views, POPULARITY, GROUPS),
    )
    assert np.array_equal(ours[0], theirs[0]) and np.array_equal(ours[1], theirs[1])


def test_bad_input_is_refused_with_the_reason():
    views, relevant = _views(0, n_prompts=4)
    with pytest.raises(ValueError, match="missing candidate views"):
        CandidateReranker(("beam", "dense")).fit(views, relevant, POPULARITY, GROUPS)
    with pytest.raises(ValueError, match="distinct"):
        CandidateReranker(("beam", "beam"))
    with pytest.raises(ValueError, match="different numbers of prompts"):
        short = {"beam": views["beam"], "knn": (views["knn"][0][:2], views["knn"][1][:2])}
        CandidateReranker(("beam", "knn")).fit(short, relevant, POPULARITY, GROUPS)
    with pytest.raises(ValueError, match="all irrelevant"):
        CandidateReranker(("beam", "knn")).fit(views, [set()] * 4, POPULARITY, GROUPS)
    with pytest.raises(RuntimeError, match="before fit"):
        CandidateReranker(("beam",)).rank(views, POPULARITY, GROUPS)
    with pytest.raises(ValueError, match="not a saved CandidateReranker"):
        CandidateReranker.from_dict({"type": "fixed_blend"})


def test_padding_and_short_lists_leave_empty_slots():
    views, relevant = _views(0, n_prompts=6, depth=5)
    # a fitting prompt without a relevant item counts as a miss, not an error
    reranker = CandidateReranker(("beam", "knn"), penalties=(0.0,)).fit(
        views, [set(), *relevant[1:]], POPULARITY, GROUPS
    )
    items, scores = views["beam"][0].copy(), views["beam"][1].copy()
    items[0, 2:] = -1  # a prompt the beam answered with two items only
    empty = {"beam": (items, scores), "knn": (np.full((6, 5), -1), views["knn"][1])}
    ranked, ranked_scores = reranker.rank(empty, POPULARITY, GROUPS, k=4)
    assert set(ranked[0, :2].tolist()) == set(items[0, :2].tolist())
    assert (ranked[0, 2:] == -1).all() and np.isneginf(ranked_scores[0, 2:]).all()


def test_interleave_keeps_each_lists_best_guesses_and_fits_n():
    rng = np.random.default_rng(0)
    n_prompts, k = 40, 10
    first = np.stack([rng.choice(100, k, replace=False) for _ in range(n_prompts)])
    second = np.stack([rng.choice(np.arange(100, 200), k, replace=False) for _ in range(n_prompts)])
    # the first list's top item is relevant for even prompts, the second's for odd ones
    relevant = [{int(first[r, 0])} if r % 2 == 0 else {int(second[r, 0])} for r in range(n_prompts)]
    lists = {"text2tracks": first, "title_knn": second}
    fusion = ListInterleave("text2tracks", "title_knn").fit(lists, relevant, k)
    assert fusion.fit_hits_[0] == fusion.fit_hits_[k] == 0.5  # either list alone
    assert fusion.fit_hits_[fusion.n_] == 1.0 and fusion.n_ == k - 1  # ties: more of the first
    merged = fusion.rank(lists, k)
    np.testing.assert_array_equal(merged[:, : k - 1], first[:, : k - 1])
    np.testing.assert_array_equal(merged[:, k - 1], second[:, 0])
    # shared items appear once; a list that runs out is filled from the other
    shared = {"text2tracks": np.array([[1, 2, 3, -1]]), "title_knn": np.array([[2, 5, 1, 6]])}
    fusion.n_ = 2
    assert fusion.rank(shared, 4).tolist() == [[1, 2, 5, 6]]
    assert fusion.rank(shared, 6).tolist() == [[1, 2, 5, 6, 3, -1]]
    loaded = hybrid_fusion_from_dict(json.loads(json.dumps(fusion.to_dict())))
    assert isinstance(loaded, ListInterleave) and loaded.n_ == 2
    assert loaded.fit_hits_ == fusion.fit_hits_
    with pytest.raises(ValueError, match="missing ranked lists"):
        fusion.rank({"text2tracks": first}, k)
    with pytest.raises(ValueError, match="twice"):
        ListInterleave("a", "a")
    with pytest.raises(ValueError, match="unknown hybrid fusion type"):
        hybrid_fusion_from_dict({"type": "gated"})


def test_score_mixture_mixes_the_views_distributions_with_its_temperature():
    groups = np.arange(10)  # every item its own first code: no diversification effect
    views = {
        "beam": (np.array([[1, 2]]), np.log(np.array([[0.75, 0.25]]))),
        "knn": (np.array([[2, 3, 4]]), np.array([[3.0, 1.0, -2.0]])),  # negative: clipped to 0
    }
    fusion = ScoreMixture("beam", "knn")
    fusion.weight_, fusion.temperature_, fusion.penalty_ = 0.5, 1.0, 0.0
    items, scores = fusion.rank(views, groups, k=4)
    # p_beam = {1: .75, 2: .25}, p_knn = {2: .75, 3: .25, 4: 0}: item 2 gains from both
    assert items.tolist() == [[2, 1, 3, -1]]
    np.testing.assert_allclose(np.exp(scores[0, :3]), [0.5, 0.375, 0.125], rtol=1e-6)
    assert np.isneginf(scores[0, 3])
    # temperature 2 sharpens the beam's distribution to {1: .9, 2: .1}: item 1 goes first
    fusion.temperature_ = 2.0
    items, scores = fusion.rank(views, groups, k=3)
    assert items.tolist() == [[1, 2, 3]]
    np.testing.assert_allclose(np.exp(scores[0]), [0.45, 0.425, 0.125], rtol=1e-6)
    # weight 1 is the beam alone
    fusion.weight_ = 1.0
    assert fusion.rank(views, groups, k=2)[0].tolist() == [[1, 2]]


def test_score_mixture_fit_finds_what_both_views_agree_on_and_round_trips():
    views, relevant = _views(seed=3)
    # flat scores: each view alone is a uniform guess, and only agreement singles the target out
    flat = {name: (items, np.zeros(items.shape) + 1.0) for name, (items, _) in views.items()}
    groups = np.arange(N_ITEMS)
    fusion = ScoreMixture("beam", "knn").fit(flat, relevant, groups, k=1)
    assert 0 < fusion.weight_ < 1
    assert max(fusion.fit_hits_.values()) == 1.0
    ranked, _ = fusion.rank(flat, groups, k=1)
    assert per_prompt_metrics(ranked, relevant, 1)["hits"].mean() == 1.0
    for name in ("beam", "knn"):  # either view alone never ranks the target first
        assert per_prompt_metrics(flat[name][0][:, :1], relevant, 1)["hits"].mean() == 0.0
    assert len(fusion.fit_hits_) == 9 * 4 * 4  # the whole grid was tried
    loaded = hybrid_fusion_from_dict(json.loads(json.dumps(fusion.to_dict())))
    assert isinstance(loaded, ScoreMixture)
    assert (loaded.weight_, loaded.temperature_, loaded.penalty_) == (
        fusion.weight_,
        fusion.temperature_,
        fusion.penalty_,
    )
    np.testing.assert_array_equal(
        loaded.rank(flat, groups, k=3)[0], fusion.rank(flat, groups, 3)[0]
    )


def test_score_mixture_rejects_bad_settings():
    with pytest.raises(ValueError, match="twice"):
        ScoreMixture("beam", "beam")
    with pytest.raises(ValueError, match=r"weights must lie in \[0, 1\]"):
        ScoreMixture("beam", "knn", weights=(1.5,))
    with pytest.raises(ValueError, match="temperatures must be > 0"):
        ScoreMixture("beam", "knn", temperatures=(0.0,))
    with pytest.raises(ValueError, match="penalties must not be empty"):
        ScoreMixture("beam", "knn", penalties=())
    with pytest.raises(RuntimeError, match="before fit"):
        ScoreMixture("beam", "knn").rank({}, np.arange(3))
    with pytest.raises(ValueError, match="missing candidate views"):
        fusion = ScoreMixture("beam", "knn")
        fusion.weight_, fusion.temperature_, fusion.penalty_ = 0.5, 1.0, 0.0
        fusion.rank({"beam": (np.zeros((1, 2), int), np.zeros((1, 2)))}, np.arange(3))
