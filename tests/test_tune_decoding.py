"""eval.tune_decoding: the beam x diversity grid on the validation split."""

import json

import pytest
from tiny_artifact import build_tiny_artifact

from eval.tune_decoding import main


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return build_tiny_artifact(tmp_path_factory.mktemp("tune"))


def test_every_cell_of_the_grid_is_scored_on_the_validation_split(artifact, tmp_path):
    out = tmp_path / "tune.json"
    playlists = artifact.parent / "demo.jsonl"
    argv = ["--artifact", str(artifact), "--playlists", str(playlists), "--num-beams", "4,8"]
    assert main([*argv, "--diversity", "0,0.5", "--k", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    cells = [(r["num_beams"], r["diversity"]) for r in result["rows"]]
    assert cells == [(4, 0.0), (4, 0.5), (8, 0.0), (8, 0.5)]
    assert result["prompts"] > 0
    for row in result["rows"]:
        low, high = row["ci"]
        assert 0 <= low <= row["hits@3"] <= high <= 1


def test_playlists_that_are_not_the_builds_are_refused(artifact, tmp_path):
    from semantic_ids.demo import write_demo_jsonl

    other = write_demo_jsonl(tmp_path / "other.jsonl", n_tracks=50, n_playlists=40, seed=3)
    with pytest.raises(ValueError, match="not those"):
        main(["--artifact", str(artifact), "--playlists", str(other), "--out", str(tmp_path / "x")])
