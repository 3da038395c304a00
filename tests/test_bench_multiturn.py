"""eval.bench_multiturn: the simulated user's rounds, end to end on tiny artifacts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_artifact import add_tiny_diffusion, build_tiny_artifact

from eval.bench_multiturn import (
    FIXED,
    GATE,
    LIKES,
    SEEDS,
    TEXT,
    main,
    round_metrics,
    simulate,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def plain_artifact(tmp_path_factory):
    return build_tiny_artifact(tmp_path_factory.mktemp("multiturn_plain"))


@pytest.fixture(scope="module")
def diffusion_artifact(tmp_path_factory):
    return add_tiny_diffusion(build_tiny_artifact(tmp_path_factory.mktemp("multiturn_diffusion")))


def _argv(artifact, out, *extra):
    playlists = artifact.parent / "demo.jsonl"
    return [
        "--artifact",
        str(artifact),
        "--playlists",
        str(playlists),
        "--prompts",
        "12",
        "--rounds",
        "3",
        "--k",
        "5",
        "--batch-size",
        "5",
        "--out",
        str(out),
        *extra,
    ]


def _check_rounds(system: dict, rounds: int) -> None:
    rows = system["rounds"]
    assert [row["round"] for row in rows] == list(range(rounds + 1))
    recall = [row["cumulative_recall"] for row in rows]
    assert all(0.0 <= r <= 1.0 for r in recall)
    assert all(b >= a for a, b in zip(recall, recall[1:], strict=False))  # by construction
    for row in rows:
        assert 0.0 <= row["hits_new"] <= 1.0
        for name in ("hits_new", "cumulative_recall"):
            low, high = row[f"{name}_ci"]
            assert low <= row[name] + 1e-12 and row[name] <= high + 1e-12


def test_round_metrics_count_new_relevant_tracks_per_round():
    found = np.array([[1, 0, 2], [0, 0, 0], [0, 3, 0]])
    metrics = round_metrics(found, np.array([4, 2, 3]))
    np.testing.assert_array_equal(metrics["hits_new"], [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    np.testing.assert_allclose(
        metrics["cumulative_recall"], [[0.25, 0.25, 0.75], [0, 0, 0], [0, 1, 1]]
    )


class _InOrder:
    """A stub recommender: each prompt gets the first k catalogue tracks it does not exclude."""

    max_seed_tracks = 0

    def __init__(self, n_items: int):
        self.ids = [f"t{i}" for i in range(n_items)]

    def recommend(self, prompts, k, exclude, **_):
        return [[_Rec(t) for t in self.ids if t not in set(ex)][:k] for ex in exclude]


class _Rec:
    def __init__(self, track_id):
        self.track_id = track_id


def test_simulated_user_finds_exactly_the_relevant_tracks_each_round_shows():
    stub = _InOrder(40)  # round r shows t{5r}..t{5r+4}: shown tracks are excluded
    relevant = [{"t3", "t4", "t5", "t6", "t7"}, {"t0", "t20", "t21"}, set(), {"t39"}]
    found = simulate(
        stub,
        ["a", "b", "c", "d"],
        relevant,
        mode="generative",
        pull=False,
        rounds=4,
        k=5,
        batch_size=3,
    )
    np.testing.assert_array_equal(
        found, [[2, 3, 0, 0, 0], [1, 0, 0, 0, 2], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    )


def test_generative_only_artifact_runs_text_and_skips_the_hybrid_systems(plain_artifact, tmp_path):
    out = tmp_path / "multiturn.json"
    assert main(_argv(plain_artifact, out)) == 0
    result = json.loads(out.read_text())
    assert result["split"] == "test" and 0 < result["prompts"] <= 12
    assert list(result["systems"]) == [TEXT]
    assert set(result["skipped_systems"]) == {SEEDS, FIXED, GATE, LIKES}
    assert "diffusion head" in result["skipped_systems"][FIXED]
    assert result["edit_method"] is None  # no head: no edits, and --edit-method changes nothing
    _check_rounds(result["systems"][TEXT], 3)


def test_diffusion_artifact_runs_the_fixed_blend_and_a_fitted_gate(diffusion_artifact, tmp_path):
    out = tmp_path / "multiturn.json"
    assert main(_argv(diffusion_artifact, out)) == 0  # no fusion.json: no gate
    result = json.loads(out.read_text())
    assert list(result["systems"]) == [TEXT, FIXED]
    assert "no fitted gate" in result["skipped_systems"][GATE]
    assert "--fit-fusion" in result["skipped_systems"][LIKES]
    assert result["systems"][FIXED]["fusion"] == {"kind": "FixedBlendFusion", "alpha": 0.5}
    assert result["systems"][FIXED]["mode"] == "hybrid" and result["systems"][FIXED]["pull"]
    assert result["edit_method"] == "anchor"  # the API's default
    inverted = tmp_path / "inversion.json"
    assert main(_argv(diffusion_artifact, inverted, "--edit-method", "inversion")) == 0
    inverted = json.loads(inverted.read_text())
    assert inverted["edit_method"] == "inversion"
    assert inverted["systems"][TEXT]["rounds"] == result["systems"][TEXT]["rounds"]
    _check_rounds(inverted["systems"][FIXED], 3)

    out2 = tmp_path / "fitted.json"
    assert main(_argv(diffusion_artifact, out2, "--fit-fusion", "10")) == 0
    fitted = json.loads(out2.read_text())
    assert list(fitted["systems"]) == [TEXT, FIXED, LIKES, GATE]
    likes = fitted["systems"][LIKES]["fusion"]
    assert likes["with_likes"]["kind"] == "FixedBlendFusion"
    assert likes["alpha"] == fitted["systems"][FIXED]["fusion"]["alpha"]  # plain rounds alike
    assert "with_likes" not in fitted["systems"][FIXED]["fusion"]
    # round 0 asks no liked tracks: the two blends answer it alike
    assert fitted["systems"][LIKES]["rounds"][0] == fitted["systems"][FIXED]["rounds"][0]
    diff = fitted["systems"][LIKES]["vs_fixed_final_round"]["cumulative_recall"]
    assert diff["ci"][0] <= diff["diff"] <= diff["ci"][1]
    assert fitted["fit_fusion_prompts"] == 10
    assert fitted["systems"][GATE]["fusion"]["kind"] == "GatedFusion"
    for name, system in fitted["systems"].items():
        _check_rounds(system, 3)
        if name != TEXT:
            diff = system["vs_text_final_round"]["cumulative_recall"]
            assert diff["ci"][0] <= diff["diff"] <= diff["ci"][1]
            assert 0.0 <= diff["p_value"] <= 1.0
    # text re-query is the same system in both runs: the same numbers
    assert fitted["systems"][TEXT]["rounds"] == result["systems"][TEXT]["rounds"]
