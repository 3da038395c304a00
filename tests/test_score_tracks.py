"""``Text2Tracks.score_tracks``: the generative search's score of given tracks without searching
(teacher-forced), for text prompts, prompts with seeds and ensembles; what it refuses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.test_seed_tracks import _model_parts, _recommender


@pytest.fixture(scope="module")
def seeded():
    return _recommender(max_seed_tracks=4)


def _answers(rec, prompts, seeds=None):
    got = rec.recommend(prompts, k=6, num_beams=12, diversity=0, seed_tracks=seeds)
    return [[r.track_id for r in a] for a in got], np.array([[r.score for r in a] for a in got])


def test_the_scores_are_the_searchs_own_for_its_answers_with_and_without_seeds(seeded):
    prompts = ["rainy evening", "gym", ""]
    seeds = [None, ["g1:t0", "g1:t3"], ["g2:t5", "g0:t1", "g2:t2"]]
    ids, scores = _answers(seeded, prompts, seeds)
    got = seeded.score_tracks(prompts, ids, seed_tracks=seeds)
    np.testing.assert_allclose(got, scores, atol=1e-4)
    # the seeds change the scores: the same tracks without them score otherwise
    plain = seeded.score_tracks(prompts[:2], ids[:2])
    np.testing.assert_allclose(plain[0], scores[0], atol=1e-4)
    assert np.abs(plain[1] - scores[1]).max() > 1e-3
    # any track, not only the beam's: with a beam as wide as the catalogue the search's top 6
    # are the top 6 of every track's score
    every = [t for t in seeded.catalog.item_ids if t not in seeds[2]]  # seeds never answer
    full = seeded.score_tracks("", every, seed_tracks=seeds[2])
    wide = seeded.recommend("", k=6, num_beams=32, diversity=0, seed_tracks=seeds[2])
    assert [r.track_id for r in wide] == [every[i] for i in np.argsort(-full, kind="stable")[:6]]


def test_rows_may_differ_in_length_and_unknown_ids_are_nan_with_a_warning(seeded):
    rows = [["g0:t0", "g3:t7", "g0:t0"], ["g2:t1"]]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = seeded.score_tracks(["a", "b"], [rows[0], [*rows[1], "nope"]], batch_size=1)
    assert got.shape == (2, 3)
    assert got[0, 0] == got[0, 2] and np.isfinite(got[0]).all()
    assert np.isfinite(got[1, 0]) and np.isnan(got[1, 1:]).all()
    assert any("'nope'" in str(w.message) and "NaN" in str(w.message) for w in caught)
    single = seeded.score_tracks("a", rows[0])
    assert single.shape == (3,)
    np.testing.assert_allclose(single, got[0], atol=1e-6)  # batching does not change a score


def test_bad_calls_are_refused_with_the_fix(seeded):
    with pytest.raises(TypeError, match="one list per prompt"):
        seeded.score_tracks(["a", "b"], ["g0:t0", "g0:t1"])
    with pytest.raises(ValueError, match="2 lists for 3 prompts"):
        seeded.score_tracks(["a", "b", "c"], [["g0:t0"], ["g0:t1"]])
    with pytest.raises(ValueError, match="no seed track"):
        seeded.score_tracks("", ["g0:t0"])
    with pytest.raises(ValueError, match="batch_size"):
        seeded.score_tracks("a", ["g0:t0"], batch_size=0)
    unseeded = _recommender(max_seed_tracks=0)
    with pytest.warns(UserWarning, match="reads the text only|trained without seed"):
        got = unseeded.score_tracks("a", ["g0:t0"], seed_tracks=["g1:t1"])
    np.testing.assert_allclose(got, unseeded.score_tracks("a", ["g0:t0"]), atol=1e-6)


def test_an_ensemble_scores_the_members_mean(seeded):
    from text2tracks.ensemble import MemberModel

    second = _recommender(max_seed_tracks=4, model_parts=_model_parts(seed=3))
    ensemble = _recommender(max_seed_tracks=4)
    ensemble.members = [
        MemberModel(second.model, second.tokenizer, second.layout, 16, 4),
    ]
    ids, scores = _answers(ensemble, ["rock party"], [["g1:t2"]])
    got = ensemble.score_tracks(["rock party"], ids, seed_tracks=[["g1:t2"]])
    np.testing.assert_allclose(got, scores, atol=1e-4)
    each = [r.score_tracks("rock party", ids[0], seed_tracks=["g1:t2"]) for r in (seeded, second)]
    np.testing.assert_allclose(got[0], np.mean(each, axis=0), atol=1e-4)
