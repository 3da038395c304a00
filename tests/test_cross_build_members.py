"""eval.cross_build_members: item-level fusion of members on different semantic-ID builds."""

from __future__ import annotations

import numpy as np
import pytest

from eval.cross_build_members import _named, fuse_items, measure, same_build, union_candidates
from text2tracks.modeling import DEFAULT_NUM_BEAMS

pytestmark = pytest.mark.usefixtures("one_thread")


def test_union_keeps_first_seen_order_and_drops_empty_slots():
    first = np.array([["a", "b", "c"], ["x", "", ""]])
    second = np.array([["c", "d", "a"], ["y", "x", "z"]])
    assert union_candidates([first, second]) == [["a", "b", "c", "d"], ["x", "y", "z"]]


def test_fusion_ranks_by_the_members_mean_and_spreads_over_groups():
    candidates = [[10, 11, 12], [20, 21]]
    scores = np.array(
        [
            [[-1.0, -2.0, -0.5], [-3.0, -0.1, np.nan]],
            [[-1.0, -0.5, -0.9], [-0.2, -0.5, np.nan]],
        ]
    )  # means: row 0 -> 10: -1.0, 11: -1.25, 12: -0.7; row 1 -> 20: -1.6, 21: -0.3
    groups = np.zeros(30, dtype=np.int64)
    groups[[10, 12]] = 1  # 10 and 12 share a first code, 11 has its own
    top = fuse_items(candidates, scores, groups, k=2, penalty=0.0)
    assert top.tolist() == [[12, 10], [21, 20]]
    # charged 1 for sharing 12's group, 10 (-2.0) falls below 11 (-1.25)
    spread = fuse_items(candidates, scores, groups, k=2, penalty=1.0)
    assert spread[0].tolist() == [12, 11]
    with pytest.raises(ValueError, match="fewer than k=5"):
        fuse_items(candidates, scores, groups, k=5, penalty=0.0)


def test_names_are_checked():
    assert set(_named(["a=x", "b=y"])) == {"a", "b"}
    for bad, message in (
        (["a=x"], "at least two"),
        (["a=x", "a=y"], "twice"),
        (["ax", "b=y"], "NAME=DIR"),
    ):
        with pytest.raises(ValueError, match=message):
            _named(bad)


def _second_build(root, seed: int):
    """The tiny artifact's demo playlists built again with ``seed`` (its own IDs) and its own
    untrained T5."""
    import torch

    from semantic_ids.catalog import SemanticIDCatalog
    from semantic_ids.cf import CFConfig
    from tests.tiny_artifact import tiny_model_config
    from text2tracks.artifacts import component_writer
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids
    from text2tracks.modeling import build_seq2seq, save_seq2seq

    artifact = root / f"artifact_{seed}"
    config = BuildIDsConfig(
        min_count=1, n_levels=2, codebook_size=8, cf=CFConfig(factors=16, iterations=3), seed=seed
    )
    run_build_ids(root / "demo.jsonl", artifact, config, show_progress=False)
    catalog = SemanticIDCatalog.load(artifact / "semantic_ids" / "catalog")
    torch.manual_seed(seed)
    model, tokenizer, layout = build_seq2seq(tiny_model_config(), catalog.level_sizes)
    with component_writer(artifact, "seq2seq", {"steps": 0}) as tmp:
        save_seq2seq(model, tokenizer, layout, tmp, tiny_model_config())
    return artifact


@pytest.fixture(scope="module")
def recommenders(tmp_path_factory):
    from tests.tiny_artifact import build_tiny_artifact
    from text2tracks.pipeline import Text2Tracks

    root = tmp_path_factory.mktemp("cross_build")
    first = build_tiny_artifact(root)
    second = _second_build(root, seed=1)
    load = Text2Tracks.from_pretrained
    return {
        "A": load(first, device="cpu"),
        "A_again": load(first, device="cpu"),
        "B": load(second, device="cpu"),
    }


PROMPTS = ["rock party", "chill jazz", "sad pop songs", "90s hip hop"]


def test_exact_scores_are_the_beams_own(recommenders):
    rec = recommenders["A"]
    ids, scores = rec.recommend_arrays(PROMPTS, k=8, num_beams=8, diversity=0.0)
    exact = rec.score_tracks(PROMPTS, [list(row) for row in ids], batch_size=3)
    np.testing.assert_allclose(exact, scores, atol=1e-4)


def test_a_member_fused_with_itself_answers_as_it_does_alone(recommenders):
    a, b = recommenders["A"], recommenders["B"]
    assert same_build(a, recommenders["A_again"]) and not same_build(a, b)
    answers = a.recommend_arrays(PROMPTS, k=3)[0]
    # each prompt's relevant set: A's own third answer, so A hits every prompt
    relevant = [{row[2]} for row in answers]
    both = {"A": a, "A_again": recommenders["A_again"], "B": b}
    systems = measure(both, PROMPTS, relevant, k=3, depth=DEFAULT_NUM_BEAMS)
    assert systems["A"] == [1.0] * 4 and systems["A_again"] == [1.0] * 4
    assert systems["A+A_again"] == [1.0] * 4  # the same scores, the same candidates
    assert systems["A+A_again product"] == [1.0] * 4
    assert "A+B product" not in systems and len(systems["A+B"]) == 4
