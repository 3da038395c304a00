"""The public face: ``from text2tracks import Text2Tracks, Recommendation`` (lazy), keyword-only
options after ``k``, and the array form ``recommend_arrays`` (checked against ``recommend``)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from tiny_artifact import build_tiny_artifact

import text2tracks
from text2tracks.options import track_indices

PROMPTS = ["chill 90s jazz", "sad songs", "workout hip hop", "night drive"]


@pytest.fixture(scope="module")
def recommender(tmp_path_factory):
    from text2tracks import Text2Tracks

    artifact = build_tiny_artifact(tmp_path_factory.mktemp("api"))
    return Text2Tracks.from_pretrained(artifact, device="cpu")


def test_importing_the_package_loads_no_torch():
    code = (
        "import sys, text2tracks; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "from text2tracks import Text2Tracks, Recommendation; "
        "assert 'torch' not in sys.modules, 'the API module must import torch lazily'; "
        "print(Text2Tracks.__module__, Recommendation.__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        check=True,
    )
    assert out.stdout.split() == ["text2tracks.pipeline", "text2tracks.recommendation"]


def test_public_names_are_the_pipelines_and_unknown_names_raise():
    from text2tracks.pipeline import Recommendation, Text2Tracks

    assert text2tracks.Text2Tracks is Text2Tracks
    assert text2tracks.Recommendation is Recommendation
    assert {"Text2Tracks", "Recommendation"} <= set(dir(text2tracks))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        text2tracks.Nope  # noqa: B018


def test_the_old_private_metadata_reader_stays_importable_from_pipeline():
    from text2tracks.metadata import read_track_metadata
    from text2tracks.pipeline import _read_track_metadata

    assert _read_track_metadata is read_track_metadata


def test_options_after_k_are_keyword_only(recommender):
    with pytest.raises(TypeError):
        recommender.recommend("sad songs", 5, ["demo:x"])  # exclude given positionally
    assert len(recommender.recommend("sad songs", 5)) == 5


def test_recommend_arrays_equals_recommend(recommender):
    recs = recommender.recommend(PROMPTS, k=6, batch_size=3)
    ids, scores = recommender.recommend_arrays(PROMPTS, k=6, batch_size=3)
    assert ids.shape == scores.shape == (len(PROMPTS), 6)
    assert scores.dtype == np.float64 and ids.dtype.kind == "U"
    assert ids.tolist() == [[r.track_id for r in row] for row in recs]
    np.testing.assert_array_equal(scores, [[r.score for r in row] for row in recs])
    one_ids, one_scores = recommender.recommend_arrays("sad songs", k=4)
    assert one_ids.shape == one_scores.shape == (4,)
    assert one_ids.tolist() == [r.track_id for r in recommender.recommend("sad songs", k=4)]
    assert np.all(np.diff(one_scores) <= 0)  # best first
    empty_ids, empty_scores = recommender.recommend_arrays([], k=3)
    assert empty_ids.shape == empty_scores.shape == (0, 3)


def test_recommend_arrays_takes_the_same_options_and_checks(recommender):
    first = recommender.recommend_arrays("sad songs", k=5)[0].tolist()
    again = recommender.recommend_arrays("sad songs", k=5, exclude=first[:2])[0].tolist()
    assert not set(first[:2]) & set(again)
    with pytest.raises(ValueError, match="k must be between 1"):
        recommender.recommend_arrays("sad songs", k=0)
    with pytest.raises(TypeError):
        recommender.recommend_arrays("sad songs", k=3, nonsense=1)


# --------------------------------------------------------------- options.track_indices (unit)

CATALOGUE = {"a": 0, "b": 1, "c": 2, "d": 3}


def _index(track_id: str) -> int | None:
    return CATALOGUE.get(track_id)


def _as_lists(arrays):
    return [None if a is None else a.tolist() for a in arrays]


def test_track_indices_spread_one_collection_or_one_per_prompt():
    assert track_indices(None, "exclude", _index, 2, False, required=False, stacklevel=1) == [
        None,
        None,
    ]
    shared = track_indices(
        ["c", "a", "a"], "exclude", _index, 2, False, required=False, stacklevel=1
    )
    assert _as_lists(shared) == [[0, 2], [0, 2]]  # sorted, unique
    per = track_indices([["b"], None], "exclude", _index, 2, False, required=False, stacklevel=1)
    assert _as_lists(per) == [[1], None]
    assert _as_lists(
        track_indices("d", "exclude", _index, 1, True, required=False, stacklevel=1)
    ) == [[3]]
    with pytest.raises(ValueError, match="exclude has 1 collections for 2 prompts"):
        track_indices([["a"]], "exclude", _index, 2, False, required=False, stacklevel=1)
    with pytest.raises(TypeError, match=r"exclude holds track ids \(str\), got int 3"):
        track_indices([3], "exclude", _index, 1, True, required=False, stacklevel=1)
    with pytest.raises(TypeError, match="must be a collection of track ids"):
        track_indices({"a": 1}, "exclude", _index, 1, True, required=False, stacklevel=1)


def test_track_indices_warn_on_unknown_ids_and_required_ones_raise():
    with pytest.warns(UserWarning, match=r"exclude: ignored 1 track id\(s\).*'zz'\); never"):
        out = track_indices(
            ["a", "zz"],
            "exclude",
            _index,
            1,
            True,
            required=False,
            stacklevel=1,
            unknown_note="; never",
        )
    assert _as_lists(out) == [[0]]
    with pytest.warns(UserWarning, match="ignored 1 track id"):  # all unknown: nothing excluded
        assert track_indices(["zz"], "exclude", _index, 1, True, required=False, stacklevel=1) == [
            None
        ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known ids only: no warning
        track_indices(["a"], "exclude", _index, 1, True, required=False, stacklevel=1)
    with pytest.raises(ValueError, match="like_tracks is empty"):
        track_indices([], "like_tracks", _index, 1, True, required=True, stacklevel=1)
    with pytest.raises(ValueError, match="none of the 1 like_tracks of prompt 1"):
        track_indices([["a"], ["zz"]], "like_tracks", _index, 2, False, required=True, stacklevel=1)
    # an empty exclude is "nothing excluded", not an error
    assert track_indices([], "exclude", _index, 2, False, required=False, stacklevel=1) == [
        None,
        None,
    ]


def test_top_k_at_a_fixed_beam_width_is_the_head_of_the_full_beam(recommender):
    """The benchmark ranks as deep as the beam for the report's Hits@K curve: the first 10 of
    k = num_beams must be the k = 10 answer at the same beam width (same items, same scores)."""
    short = recommender.recommend(PROMPTS, 10, num_beams=20)
    deep = recommender.recommend(PROMPTS, 20, num_beams=20)
    for a, b in zip(short, deep, strict=True):
        assert [(r.track_id, r.score) for r in a] == [(r.track_id, r.score) for r in b[:10]]
