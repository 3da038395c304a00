"""The diversity re-rank of the beam's candidates (text2tracks.generative.diversify) and its
place in the API: known answers on hand-made candidates, then on a tiny artifact."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_artifact import build_tiny_artifact

from text2tracks.generative import diversify, diversity_penalty

ITEMS = np.array([[10, 11, 12, 13]])
SCORES = np.array([[0.0, -0.1, -0.2, -1.0]])
GROUPS = np.array([[0, 0, 0, 1]])  # three candidates under one first code, one under another


def test_a_pick_is_charged_for_earlier_picks_in_its_group():
    # penalty 0.5: 11 costs -0.1 - 0.5 = -0.6, still above 13's -1.0
    items, scores = diversify(ITEMS, SCORES, GROUPS, k=2, penalty=0.5)
    assert items.tolist() == [[10, 11]] and np.allclose(scores, [[0.0, -0.6]])
    # penalty 1: 11 costs -1.1, 13 (another group) at -1.0 wins; then 11 at -1.1 beats 12's -1.2
    items, scores = diversify(ITEMS, SCORES, GROUPS, k=3, penalty=1.0)
    assert items.tolist() == [[10, 13, 11]] and np.allclose(scores, [[0.0, -1.0, -1.1]])
    # two earlier picks in a group cost twice the penalty
    items, scores = diversify(ITEMS, SCORES, GROUPS, k=4, penalty=1.0)
    assert items.tolist() == [[10, 13, 11, 12]] and np.isclose(scores[0, 3], -0.2 - 2.0)


def test_zero_penalty_keeps_the_beams_order():
    items, scores = diversify(ITEMS, SCORES, GROUPS, k=3, penalty=0.0)
    assert items.tolist() == [[10, 11, 12]] and np.array_equal(scores, SCORES[:, :3])


def _random_beams(seed: int, n: int, width: int, n_items: int, n_groups: int):
    """``n`` rows of ``width`` distinct items with decreasing scores, in ``n_groups`` groups."""
    rng = np.random.default_rng(seed)
    items = np.argsort(rng.random((n, n_items)), axis=1)[:, :width]
    scores = -np.sort(rng.exponential(size=(n, width)).cumsum(axis=1), axis=1)
    return items, scores, rng.integers(0, n_groups, size=(n, width))


def test_picks_are_distinct_non_increasing_and_a_shorter_list_is_the_head_of_a_longer_one():
    width = 20
    items, scores, groups = _random_beams(0, 50, width, 100, 4)
    long_items, long_scores = diversify(items, scores, groups, k=width, penalty=0.7)
    short_items, short_scores = diversify(items, scores, groups, k=5, penalty=0.7)
    assert np.array_equal(short_items, long_items[:, :5])
    assert np.array_equal(short_scores, long_scores[:, :5])
    assert all(len(set(row)) == width for row in long_items.tolist())
    assert (np.diff(long_scores, axis=1) <= 1e-12).all()
    # every row is a permutation of its candidates
    assert (np.sort(long_items, axis=1) == np.sort(items, axis=1)).all()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="at least k=5 candidates"):
        diversify(ITEMS, SCORES, GROUPS, k=5, penalty=0.5)
    with pytest.raises(ValueError, match="must be >= 0"):
        diversify(ITEMS, SCORES, GROUPS, k=2, penalty=-1.0)
    for bad in (-0.1, float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(ValueError, match="diversity must be a finite number >= 0"):
            diversity_penalty(bad, 0.5)
    assert diversity_penalty(None, 0.25) == 0.25 and diversity_penalty(0, 0.25) == 0.0


@pytest.fixture(scope="module")
def recommender(tmp_path_factory):
    from text2tracks import Text2Tracks

    return Text2Tracks.from_pretrained(
        build_tiny_artifact(tmp_path_factory.mktemp("div")), device="cpu"
    )


def _first_codes(recommender, recs):
    index = {t: i for i, t in enumerate(recommender.catalog.item_ids)}
    return [[int(recommender.catalog.sid_codes[index[r.track_id], 0]) for r in row] for row in recs]


def test_the_api_spreads_its_answer_over_first_codes(recommender):
    prompts = ["chill 90s jazz", "sad songs", "workout hip hop"]
    plain = recommender.recommend(prompts, 5, num_beams=24, diversity=0)
    spread = recommender.recommend(prompts, 5, num_beams=24, diversity=100.0)
    beam = recommender.recommend(prompts, 24, num_beams=24, diversity=0)
    for p_row, s_row, b_row, s_codes, b_codes in zip(
        plain,
        spread,
        beam,
        _first_codes(recommender, spread),
        _first_codes(recommender, beam),
        strict=True,
    ):
        # 0 is the beam's own top k; a huge penalty takes the best candidate of each first code
        # first, in score order
        assert [r.track_id for r in p_row] == [r.track_id for r in b_row[:5]]
        best_per_code = {}
        for r, code in zip(b_row, b_codes, strict=True):
            best_per_code.setdefault(code, r.track_id)
        expected = list(best_per_code.values())[:5]
        assert [r.track_id for r in s_row][: len(expected)] == expected
        assert len(set(s_codes)) == min(5, len(best_per_code))


def test_the_default_comes_from_the_constructor_and_bad_values_are_refused(recommender):
    from text2tracks.modeling import DEFAULT_DIVERSITY

    assert recommender.diversity == DEFAULT_DIVERSITY
    explicit = recommender.recommend("night drive", 5, diversity=DEFAULT_DIVERSITY)
    assert [r.track_id for r in recommender.recommend("night drive", 5)] == [
        r.track_id for r in explicit
    ]
    with pytest.raises(ValueError, match="diversity must be a finite number >= 0"):
        recommender.recommend("night drive", 5, diversity=-1)


def test_only_the_first_depth_picks_are_charged_and_the_tail_keeps_the_beams_order():
    n, width = 30, 40
    items, scores, groups = _random_beams(1, n, width, 200, 3)
    full, _ = diversify(items, scores, groups, k=width, penalty=0.7, depth=width)
    cut, cut_scores = diversify(items, scores, groups, k=width, penalty=0.7, depth=6)
    # the head is the fully charged list's head; the rest are the others in the beam's order
    assert np.array_equal(cut[:, :6], full[:, :6])
    for row in range(n):
        head = set(cut[row, :6].tolist())
        assert cut[row, 6:].tolist() == [i for i in items[row].tolist() if i not in head]
    assert not np.array_equal(cut, full)  # charging all 40 picks reorders the tail
    assert (np.diff(cut_scores, axis=1) <= 1e-12).all()
    # the tail's scores keep their differences (one shift per row)
    tail_raw = np.array(
        [
            [s for i, s in zip(items[r], scores[r], strict=True) if i not in set(cut[r, :6])]
            for r in range(n)
        ]
    )
    assert np.allclose(np.diff(cut_scores[:, 6:], axis=1), np.diff(tail_raw, axis=1))
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        diversify(items, scores, groups, k=5, penalty=0.7, depth=0)


def test_candidates_scored_minus_infinity_are_never_picked_twice():
    items = np.array([[1, 2, 3, 4]])
    scores = np.array([[0.0, -np.inf, -np.inf, -np.inf]])
    picked, _ = diversify(items, scores, np.array([[0, 0, 1, 1]]), k=4, penalty=0.5, depth=4)
    assert sorted(picked[0].tolist()) == [1, 2, 3, 4]
