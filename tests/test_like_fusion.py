"""A second fusion for queries that carry liked tracks (``fusion.with_likes``).

Routing is checked where the answer is known: a beam-only fusion (alpha 1) for plain prompts and
a latent-only one (alpha 0) for liked ones must give, prompt by prompt, what each fusion gives
alone. Fitting runs simulated sessions on the tiny artifact, whose diffusion head knows genres
and whose seq2seq is untrained: once the user has liked pop tracks, the latent finds pop and
the beam does not, so the fit must not leave the latent out.
"""

from __future__ import annotations

import numpy as np
import pytest
from tiny_artifact import add_tiny_diffusion, build_tiny_artifact, genre_of

from text2tracks.candidate_pool import Candidates
from text2tracks.fusion import FixedBlendFusion, fuse, fusion_from_dict
from text2tracks.session import fit_like_fusion, liked_states

K = 5
pytestmark = pytest.mark.usefixtures("one_thread")


def _two_prompts() -> Candidates:
    items = np.array([[0, 1, 2, 3], [0, 1, 2, 3]])
    beam = np.array([[-1.0, -2.0, -3.0, -4.0]] * 2)  # the beam ranks 0, 1, 2, 3
    latent = np.array([[0.1, 0.2, 0.3, 0.4]] * 2)  # the latent ranks 3, 2, 1, 0
    ranks = np.array([[0, 1, 2, 3]] * 2)
    return Candidates(items, beam, latent, ranks, ranks[:, ::-1].copy())


def _beam_then_latent() -> FixedBlendFusion:
    fusion = FixedBlendFusion(1.0)
    fusion.with_likes = FixedBlendFusion(0.0)
    return fusion


def test_liked_prompts_are_fused_by_with_likes_and_the_others_by_the_fusion():
    fusion, candidates = _beam_then_latent(), _two_prompts()
    items, scores = fuse(fusion, candidates, 2, liked=np.array([False, True]))
    assert items.tolist() == [[0, 1], [3, 2]]
    assert np.isfinite(scores).all()
    assert fuse(fusion, candidates, 2)[0].tolist() == [[0, 1], [0, 1]]  # nothing liked
    plain = FixedBlendFusion(1.0)  # no with_likes: liked or not, one fusion
    assert fuse(plain, candidates, 2, liked=np.array([True, True]))[0].tolist() == [[0, 1]] * 2
    with pytest.raises(ValueError, match="one flag per prompt"):
        fuse(fusion, candidates, 2, liked=np.array([True]))


def test_with_likes_survives_json_and_nesting_is_refused():
    fusion = _beam_then_latent()
    payload = fusion.to_dict()
    assert payload["with_likes"]["alpha"] == 0.0
    again = fusion_from_dict(payload)
    assert again.alpha == 1.0 and again.with_likes.alpha == 0.0
    assert again.with_likes.with_likes is None
    liked = np.array([True, False])
    assert (
        fuse(again, _two_prompts(), 3, liked=liked)[0].tolist()
        == fuse(fusion, _two_prompts(), 3, liked=liked)[0].tolist()
    )
    assert "with_likes" not in FixedBlendFusion(0.5).to_dict()
    payload["with_likes"]["with_likes"] = FixedBlendFusion(0.5).to_dict()
    with pytest.raises(ValueError, match="not nested"):
        fusion_from_dict(payload)


@pytest.fixture(scope="module")
def recommender(tmp_path_factory):
    from text2tracks.pipeline import Text2Tracks

    artifact = add_tiny_diffusion(build_tiny_artifact(tmp_path_factory.mktemp("like_fusion")))
    rec = Text2Tracks.from_pretrained(artifact, device="cpu")
    rec.fusion = FixedBlendFusion(0.5)
    return rec


def _pop(rec) -> list[str]:
    return [t for t in rec.catalog.item_ids if genre_of(t) == "pop"]


def test_hybrid_mode_fuses_each_prompt_by_whether_its_query_carries_liked_tracks(recommender):
    rec, liked = recommender, _pop(recommender)[:3]
    keep = rec.fusion
    try:
        rec.fusion = _beam_then_latent()
        both = rec.recommend_arrays(
            ["party", "party"], k=K, mode="hybrid", like_tracks=[liked, None]
        )[0]
        rec.fusion = FixedBlendFusion(0.0)
        latent_only = rec.recommend_arrays("party", k=K, mode="hybrid", like_tracks=liked)[0]
        rec.fusion = FixedBlendFusion(1.0)
        beam_only = rec.recommend_arrays("party", k=K, mode="hybrid")[0]
        beam_liked = rec.recommend_arrays("party", k=K, mode="hybrid", like_tracks=liked)[0]
    finally:
        rec.fusion = keep
    assert both[0].tolist() == latent_only.tolist()
    assert both[1].tolist() == beam_only.tolist()
    assert latent_only.tolist() != beam_liked.tolist()  # the two fusions answer differently


def test_liked_states_are_the_queries_sessions_ask_after_a_like(recommender):
    pop = set(_pop(recommender))
    states = liked_states(
        recommender, ["party", "party mix", "sad songs"], [pop] * 3, rounds=2, k=K
    )
    assert states
    for state in states:
        assert state["liked"] and set(state["liked"]) <= pop
        assert set(state["liked"]) <= set(state["shown"])
        assert state["relevant"] and not state["relevant"] & set(state["shown"])
    with pytest.raises(ValueError, match="rounds"):
        liked_states(recommender, ["party"], [pop], rounds=0)


def test_fit_like_fusion_uses_the_latent_once_pop_is_liked(recommender, tmp_path):
    from text2tracks.pipeline import Text2Tracks

    rec, pop = recommender, _pop(recommender)
    prompts = ["party", "party mix", "party time", "dance"] * 2
    fusion, summary = fit_like_fusion(rec, prompts, [pop] * len(prompts), rounds=2, k=K)
    assert summary["n_prompts"] > 0 and summary["rounds"] == 2
    scores = summary[f"hits@{K}"]
    assert scores["latent"] > scores["generative"]  # the untrained beam knows no genre
    assert scores["fused"] >= scores["latent"] and fusion.alpha < 1.0
    grid = dict(zip(summary["alpha_grid"], summary["alpha_grid_scores"], strict=True))
    assert grid[fusion.alpha] > grid[1.0]  # the beam alone is not what it picked
    assert fusion.with_likes is None
    assert rec.fusion.with_likes is None  # the function keeps nothing

    keep = rec.fusion
    try:
        method_summary = rec.fit_like_fusion(prompts, [pop] * len(prompts), rounds=2, k=K)
        assert method_summary[f"hits@{K}"] == scores  # the same sessions, the same fit
        assert rec.fusion is not keep and keep.with_likes is None  # the user's object kept
        assert rec.fusion.alpha == keep.alpha and rec.fusion.with_likes.alpha == fusion.alpha
        rec.save_pretrained(tmp_path / "saved")
    finally:
        rec.fusion = keep
    loaded = Text2Tracks.from_pretrained(tmp_path / "saved", device="cpu")
    assert loaded.fusion.with_likes.alpha == fusion.alpha
    with pytest.raises(ValueError, match="no simulated session liked a track"):
        fit_like_fusion(rec, ["party"], [[]], rounds=1, k=K)


def test_given_views_no_prompt_may_be_skipped(recommender):
    from text2tracks.hybrid import fit_recommender_fusion

    pop = _pop(recommender)
    views = (np.zeros((2, 5), np.int64), np.zeros((2, 5), np.float32), np.zeros((2, 1, 4)))
    with pytest.raises(ValueError, match="with views every prompt"):  # the second has no track
        fit_recommender_fusion(recommender, ["party", "dance"], [pop, ["nope"]], views=views)
