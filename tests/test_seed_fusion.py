"""Hybrid mode continuing seed tracks (issue 13): latents anchored at the seeds
(``HybridSettings.seed_strength``) and a fusion of their own (``fusion.with_seeds``).

The tiny artifact's diffusion head knows genres and its seq2seq is untrained, so for a prompt
continuing folk seeds the seeds' latent finds folk and the beam does not: the anchored latent
must rank folk first, and a fusion fitted on such prompts must not leave the latent out.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
from test_like_fusion import _two_prompts
from tiny_artifact import add_tiny_diffusion, build_tiny_artifact, genre_of

from text2tracks.fusion import FixedBlendFusion, fuse, fusion_from_dict, plain_fusion
from text2tracks.hybrid import HybridSettings
from text2tracks.seed_fusion import continuation_prompts, fit_seed_fusion

K = 5
pytestmark = pytest.mark.usefixtures("one_thread")


def _three_ways() -> FixedBlendFusion:
    fusion = FixedBlendFusion(1.0)  # plain prompts: the beam's order 0, 1, 2, 3
    fusion.with_seeds = FixedBlendFusion(0.0)  # continuations: the latent's 3, 2, 1, 0
    fusion.with_likes = FixedBlendFusion(1.0, diversity=0.0)
    return fusion


def test_seeded_prompts_are_fused_by_with_seeds_and_liked_ones_by_with_likes():
    fusion, candidates = _three_ways(), _two_prompts()
    seeded = np.array([True, False])
    assert fuse(fusion, candidates, 2, seeded=seeded)[0].tolist() == [[3, 2], [0, 1]]
    both = np.array([True, True])  # a liked query that also has seeds is a liked query
    assert fuse(fusion, candidates, 2, liked=both, seeded=both)[0].tolist() == [[0, 1]] * 2
    plain = plain_fusion(fusion)
    assert plain.with_seeds is None and fusion.with_seeds is not None
    assert fuse(plain, candidates, 2, seeded=both)[0].tolist() == [[0, 1]] * 2
    with pytest.raises(ValueError, match="seeded must have one flag per prompt"):
        fuse(fusion, candidates, 2, seeded=np.array([True]))


def test_with_seeds_survives_json_and_nesting_is_refused():
    payload = _three_ways().to_dict()
    again = fusion_from_dict(payload)
    assert (again.alpha, again.with_seeds.alpha, again.with_likes.alpha) == (1.0, 0.0, 1.0)
    assert again.with_seeds.with_seeds is None
    payload["with_seeds"]["with_likes"] = FixedBlendFusion(0.5).to_dict()
    with pytest.raises(ValueError, match="with_seeds must be one fusion's object"):
        fusion_from_dict(payload)


def test_seed_strength_is_checked():
    assert HybridSettings(seed_strength=None).seed_strength is None
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(ValueError, match="seed_strength"):
            HybridSettings(seed_strength=bad)


@pytest.fixture(scope="module")
def recommender(tmp_path_factory):
    from text2tracks.pipeline import Text2Tracks

    artifact = add_tiny_diffusion(build_tiny_artifact(tmp_path_factory.mktemp("seed_fusion")))
    rec = Text2Tracks.from_pretrained(artifact, device="cpu")
    rec.fusion = FixedBlendFusion(1.0)  # the beam alone for plain prompts
    return rec


def _genre(rec, genre: str) -> list[str]:
    return [t for t in rec.catalog.item_ids if genre_of(t) == genre]


def _share(rec, latents: np.ndarray, genre: str, k: int = 10) -> float:
    """The share of ``genre`` in the top ``k`` tracks by inner product with the mean latent."""
    top = np.argsort(-(rec.item_factors @ latents.mean(0)))[:k]
    return float(np.mean([genre_of(rec.catalog.item_ids[i]) == genre for i in top]))


def test_latents_start_from_the_seeds_as_far_as_seed_strength_says(recommender):
    rec, folk = recommender, _genre(recommender, "folk")[:4]
    settings = rec.hybrid_settings
    try:
        rec.hybrid_settings = replace(settings, seed_strength=0.0)
        anchored = rec.sample_latents(["jazz", "jazz"], seed_tracks=[folk, None])
        assert _share(rec, anchored[0], "folk") > 0.8  # the seeds' neighbourhood
        assert _share(rec, anchored[1], "jazz") > _share(rec, anchored[1], "folk")  # untouched
        liked = rec.sample_latents("jazz", seed_tracks=folk, like_tracks=_genre(rec, "pop")[:3])
        assert _share(rec, liked, "folk") < 0.5  # a liked query is the likes' edit, not this
        rec.hybrid_settings = replace(settings, seed_strength=1.0)  # the prompt's side only
        assert _share(rec, rec.sample_latents("jazz", seed_tracks=folk), "jazz") > 0.5
        alone = rec.sample_latents("", seed_tracks=folk)  # seeds alone: the seeds' latent
        rec.hybrid_settings = replace(settings, seed_strength=0.0)
        np.testing.assert_allclose(alone, rec.sample_latents("", seed_tracks=folk), rtol=1e-5)
        rec.hybrid_settings = replace(settings, seed_strength=None)  # an unconditioned head
        with pytest.warns(UserWarning, match="without seed conditioning"):
            unread = rec.sample_latents("jazz", seed_tracks=folk)
        np.testing.assert_array_equal(unread, rec.sample_latents("jazz"))
    finally:
        rec.hybrid_settings = settings


def test_hybrid_mode_fuses_continuations_by_with_seeds(recommender):
    rec, folk = recommender, _genre(recommender, "folk")[:4]
    keep, settings = rec.fusion, rec.hybrid_settings
    try:
        rec.hybrid_settings = replace(settings, seed_strength=0.0)
        rec.fusion = FixedBlendFusion(1.0)
        rec.fusion.with_seeds = FixedBlendFusion(0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tiny seq2seq reads no seeds: it says so
            both = rec.recommend_arrays(
                ["jazz", "jazz"], k=K, mode="hybrid", seed_tracks=[folk, None]
            )[0]
            latent = rec.recommend_arrays("jazz", k=K, mode="latent", seed_tracks=folk)[0]
    finally:
        rec.fusion, rec.hybrid_settings = keep, settings
    assert all(genre_of(t) == "folk" for t in both[0]) and not set(both[0]) & set(folk)
    assert set(both[0]) == set(latent)  # the latent's answer, by the latent-only blend
    assert sum(genre_of(t) == "folk" for t in both[1]) < K  # the plain prompt: the beam's


def test_fit_seed_fusion_uses_the_latent_where_the_seeds_say_the_genre(recommender, tmp_path):
    from text2tracks.pipeline import Text2Tracks

    rec = recommender
    rows = [(g, i) for g in ("folk", "pop", "rock") for i in range(4)]
    prompts = ["my playlist"] * len(rows)
    seeds = [_genre(rec, g)[3 * i : 3 * i + 3] for g, i in rows]
    relevant = [_genre(rec, g) for g, _ in rows]
    settings = rec.hybrid_settings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fusion, summary = fit_seed_fusion(rec, prompts, seeds, relevant, metric="hits", k=K)
        assert summary["n_prompts"] == len(rows) and summary["n_skipped"] == 0
        scores = summary[f"hits@{K}"]
        assert scores["latent"] > scores["generative"]  # the untrained beam knows no genre
        assert scores["fused"] >= scores["latent"] and fusion.alpha < 1.0
        assert rec.fusion.with_seeds is None  # the function keeps nothing
        keep = rec.fusion
        try:
            method = rec.fit_seed_fusion(prompts, seeds, relevant, metric="hits", k=K)
            assert method[f"hits@{K}"] == scores
            assert rec.fusion is not keep and keep.with_seeds is None  # the user's object kept
            assert rec.fusion.with_seeds.alpha == fusion.alpha
            rec.save_pretrained(tmp_path / "saved")
        finally:
            rec.fusion = keep
    loaded = Text2Tracks.from_pretrained(tmp_path / "saved", device="cpu")
    assert loaded.fusion.with_seeds.alpha == fusion.alpha
    assert rec.hybrid_settings == settings


def test_the_fit_picks_the_seed_strength_where_the_seeds_carry_the_answer(recommender):
    rec = recommender
    rows = [(g, i) for g in ("folk", "pop", "rock") for i in range(4)]
    seeds = [_genre(rec, g)[3 * i : 3 * i + 3] for g, i in rows]
    relevant = [_genre(rec, g) for g, _ in rows]
    settings, keep = rec.hybrid_settings, rec.fusion
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            summary = rec.fit_seed_fusion(
                ["jazz"] * len(rows), seeds, relevant, metric="hits", k=K, strengths=(1.0, 0.0)
            )
        scores = summary["seed_strength_scores"]
        assert summary["seed_strength"] == 0.0 and scores["0.0"] > scores["1.0"]  # not "jazz"
        assert rec.hybrid_settings.seed_strength == 0.0  # the method keeps what it chose
        with pytest.raises(ValueError, match="seed strengths must be numbers in"):
            fit_seed_fusion(rec, ["a"], [seeds[0]], [relevant[0]], strengths=(1.5,))
    finally:
        rec.hybrid_settings, rec.fusion = settings, keep


def test_fit_seed_fusion_refuses_what_it_cannot_fit(recommender):
    rec, folk = recommender, _genre(recommender, "folk")
    assert continuation_prompts(rec, ["a", "b"], [folk[:2], ["nope"]], [folk, folk])[0] == [0]
    assert continuation_prompts(rec, ["a"], [folk[:2]], [folk[:2]])[0] == []  # seeds only
    assert continuation_prompts(rec, [" "], [folk[:2]], [folk])[0] == []  # the beam reads none
    with pytest.raises(ValueError, match="one seed list and one relevant list per prompt"):
        fit_seed_fusion(rec, ["a"], [], [folk])
    with pytest.raises(ValueError, match="no prompt has both"):
        fit_seed_fusion(rec, ["a"], [["nope"]], [folk])
    settings = rec.hybrid_settings
    try:
        rec.hybrid_settings = replace(settings, seed_strength=None)
        with pytest.raises(ValueError, match="the latents do not start from the seeds"):
            fit_seed_fusion(rec, ["a"], [folk[:2]], [folk])
    finally:
        rec.hybrid_settings = settings


def test_the_continuation_benchmark_scores_hybrid_mode_with_its_own_fusion(recommender, tmp_path):
    import json
    from pathlib import Path

    from eval.continuation import main

    artifact = Path(recommender._source_dir)
    base = ["--playlists", str(artifact.parent / "demo.jsonl"), "--artifact", str(artifact)]
    base += ["--k", "10", "--max-per-category", "3", "--n-bootstrap", "10", "--num-threads", "1"]
    with pytest.raises(SystemExit, match="need --mode hybrid"):
        main(base + ["--out", str(tmp_path / "g"), "--seed-strength", "0.2"])
    assert (
        main(
            base
            + ["--out", str(tmp_path / "h"), "--mode", "hybrid", "--seed-strength", "0"]
            + ["--fit-seed-fusion", "2", "--fusion-k", "10"]
        )
        == 0
    )
    results = json.loads((tmp_path / "h" / "continuation.json").read_text())
    model = results["model"]
    assert model["mode"] == "hybrid" and model["seed_strength"] == 0.0
    assert model["seed_fusion"]["n_prompts"] > 0 and "ndcg@10" in model["seed_fusion"]
    seeded = results["categories"]["title_first5"]["systems"]
    assert {"text2tracks", "text2tracks_title_only"} <= set(seeded)


def test_continuations_cut_from_validation_prompts():
    from text2tracks.seed_fusion import CONTINUATION_SEED_COUNTS, continuation_examples

    prompts = [f"p{i}" for i in range(40)]
    relevant = [[f"t{i}-{j}" for j in range(2 + i * 3)] for i in range(40)]
    relevant[0] = ["only-one"]  # a prompt with one track cannot be cut
    texts, seeds, wanted = continuation_examples(prompts, relevant, 30, seed=3, title_drop=0.5)
    assert len(texts) == 30 and (texts, seeds, wanted) == continuation_examples(
        prompts, relevant, 30, seed=3, title_drop=0.5
    )
    assert 0 < texts.count("") < 30  # some titles dropped, not all
    for text, row_seeds, row_wanted in zip(texts, seeds, wanted, strict=True):
        i = int(row_seeds[0].split("-")[0][1:])
        assert text in ("", prompts[i]) and i != 0
        assert set(row_seeds) | set(row_wanted) == set(relevant[i]) and row_wanted
        assert not set(row_seeds) & set(row_wanted)
        assert len(row_seeds) in CONTINUATION_SEED_COUNTS or len(row_wanted) == 1
    assert "" not in continuation_examples(prompts, relevant, 39)[0]  # no title dropped
    assert len(continuation_examples(prompts, relevant, 100)[0]) == 39  # all that can be cut
    with pytest.raises(ValueError, match="title_drop"):
        continuation_examples(prompts, relevant, 5, title_drop=2.0)
