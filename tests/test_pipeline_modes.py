"""The latent and hybrid modes of the API, the export and the training script, on a tiny artifact
whose right answer is known.

``add_tiny_diffusion`` gives every demo track a CF factor on its genre's axis and trains a tiny
diffusion head (frozen tiny-T5 encoder) to map a genre's phrases to that axis and the "party"
phrases to the rock axis or the pop axis. So: "jazz" in latent mode must give jazz tracks;
"party" minus "rock" must give fewer rock tracks; tracks like some folk seeds must be folk at
edit strength 0 and follow the prompt at 1. The seq2seq is untrained (its beams are arbitrary),
which is what makes the hybrid's two ends distinguishable.
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from tiny_artifact import PARTY_GENRES, add_tiny_diffusion, build_tiny_artifact, genre_of

from text2tracks.artifacts import MANIFEST_NAME, ArtifactError
from text2tracks.diffusion import seed_latent
from text2tracks.hybrid import FUSION_NAME, HybridSettings, load_fusion, save_fusion
from text2tracks.pipeline import Text2Tracks
from text2tracks.rerank import (
    FixedBlendFusion,
    GatedFusion,
    fusion_from_dict,
    pool_candidates,
    prompt_features,
)

GENRE_PROMPTS = [
    ("jazz", "jazz"),
    ("smooth jazz", "jazz"),
    ("rap", "hiphop"),
    ("country music", "country"),
    ("indie folk", "folk"),
]
PROMPTS = [p for p, _ in GENRE_PROMPTS] + ["party", "sad songs", "night drive"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return add_tiny_diffusion(build_tiny_artifact(tmp_path_factory.mktemp("modes")))


@pytest.fixture(scope="module")
def recommender(artifact) -> Text2Tracks:
    """Shared and never modified; tests that change the fusion load their own."""
    return Text2Tracks.from_pretrained(artifact, device="cpu")


def _fresh(artifact: Path) -> Text2Tracks:
    return Text2Tracks.from_pretrained(artifact, device="cpu")


def _ids(recs) -> list[str]:
    return [r.track_id for r in recs]


def _same(a, b) -> bool:
    """Same tracks in the same order, scores equal up to float rounding (a batch's composition
    changes the rounding of its matrix products, as for the generative mode)."""
    if a and isinstance(a[0], list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return _ids(a) == _ids(b) and np.allclose(
        [r.score for r in a], [r.score for r in b], rtol=1e-5, atol=1e-5
    )


def _genres(recs) -> list[str]:
    return [genre_of(r.track_id) for r in recs]


def _tracks_of(recommender, genre: str) -> list[str]:
    return [t for t in recommender.catalog.item_ids if genre_of(t) == genre]


def _copy(artifact: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(artifact, target)
    return target


# ------------------------------------------------------------------------------ latent mode


def test_latent_mode_gives_k_distinct_tracks_of_the_prompts_cluster(recommender):
    catalogue = set(recommender.catalog.item_ids)
    answers = recommender.recommend([p for p, _ in GENRE_PROMPTS], k=10, mode="latent")
    for (prompt, genre), recs in zip(GENRE_PROMPTS, answers, strict=True):
        assert len(recs) == 10 and len(set(_ids(recs))) == 10
        assert set(_ids(recs)) <= catalogue
        assert [r.rank for r in recs] == list(range(1, 11))
        scores = [r.score for r in recs]
        assert scores == sorted(scores, reverse=True) and np.isfinite(scores).all()
        assert _genres(recs).count(genre) >= 9, (prompt, _genres(recs))
        assert _same(recs, recommender.recommend(prompt, k=10, mode="latent"))  # batch = single


def test_latent_mode_warns_when_the_heads_encoder_truncates_a_prompt(recommender):
    encoder = recommender.diffusion_head.encoder
    long_prompt = "chill jazz " * (encoder.max_length // 4 + 1)
    assert encoder.input_lengths([long_prompt])[0] > encoder.max_length
    with pytest.warns(
        UserWarning,
        match=rf"prompt 1 has \d+ {encoder.length_unit}, more than the "
        rf"diffusion head's encoder takes \({encoder.max_length}\)",
    ) as caught:
        recommender.recommend(["jazz", long_prompt], k=5, mode="latent")
    assert caught[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recommender.recommend("jazz", k=5, mode="latent")


@pytest.mark.parametrize("pool", ["mean", "max"])
def test_latent_scores_are_the_pooled_inner_products_with_the_samples(recommender, pool):
    """faiss + pooling (the default, mean, and max) against a brute-force numpy reference."""
    import dataclasses

    from text2tracks.hybrid import HybridSettings

    assert HybridSettings().pool == "mean"
    default = recommender.hybrid_settings
    recommender.hybrid_settings = dataclasses.replace(default, pool=pool)
    latents = recommender.sample_latents("smooth jazz")
    assert latents.shape == (
        recommender.hybrid_settings.n_samples,
        recommender.diffusion_head.config.latent_dim,
    )
    dots = recommender.item_factors @ latents.T
    pooled = dots.mean(1) if pool == "mean" else dots.max(1)
    top = np.argsort(-pooled, kind="stable")[:10]
    recs = recommender.recommend("smooth jazz", k=10, mode="latent")
    recommender.hybrid_settings = default
    assert _ids(recs) == [recommender.catalog.item_ids[i] for i in top]
    np.testing.assert_allclose([r.score for r in recs], pooled[top], rtol=1e-5)
    assert recommender.sample_latents(["jazz", "rap"], n_samples=3).shape == (
        2,
        3,
        latents.shape[1],
    )


def test_same_seed_same_answer_whatever_the_batching(recommender):
    a = recommender.recommend(PROMPTS, k=8, mode="latent", seed=7)
    assert a == recommender.recommend(PROMPTS, k=8, mode="latent", seed=7)
    assert _same(a, recommender.recommend(PROMPTS, k=8, mode="latent", seed=7, batch_size=3))
    hybrid = recommender.recommend(PROMPTS, k=8, mode="hybrid", num_beams=8, seed=7)
    assert _same(
        hybrid,
        recommender.recommend(PROMPTS, k=8, mode="hybrid", num_beams=8, seed=7, batch_size=1),
    )
    assert not np.allclose(
        recommender.sample_latents("party", seed=0), recommender.sample_latents("party", seed=1)
    )
    fresh = recommender.recommend("party", k=8, mode="latent", seed=None)
    assert len(set(_ids(fresh))) == 8


def test_threads_give_the_same_answers_as_serial_calls(recommender):
    from concurrent.futures import ThreadPoolExecutor

    calls = [(p, m) for p in PROMPTS for m in ("latent", "hybrid")]

    def ask(call):
        return recommender.recommend(
            call[0],
            k=8,
            mode=call[1],
            num_beams=8,
            negative_prompt="rock" if call[0] == "party" else None,
        )

    serial = [ask(c) for c in calls]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(ask, calls)) == serial


def test_negative_prompt_lowers_the_share_of_the_negative_cluster(recommender):
    kw = dict(k=30, mode="latent", n_samples=8, guidance_weight=3.0)
    plain = sum(
        _genres(recommender.recommend("party", seed=s, **kw)).count("rock") for s in range(4)
    )
    away = sum(
        _genres(recommender.recommend("party", seed=s, negative_prompt="rock", **kw)).count("rock")
        for s in range(4)
    )
    assert plain >= 20, plain  # "party" is half rock: something to steer away from
    assert away <= plain / 2, (plain, away)
    # the samples themselves: fewer on the rock axis (axis 0; pop is axis 1)
    rock = PARTY_GENRES.index("rock")
    share = (recommender.sample_latents("party", n_samples=64).argmax(1) == rock).mean()
    share_away = (
        recommender.sample_latents("party", n_samples=64, negative_prompt="rock").argmax(1) == rock
    ).mean()
    assert share_away < share
    # one negative per prompt, None for none: each prompt answers as it would alone
    both = recommender.recommend(["party", "party"], negative_prompt=["rock", None], seed=1, **kw)
    assert _same(both[0], recommender.recommend("party", negative_prompt="rock", seed=1, **kw))
    assert _same(both[1], recommender.recommend("party", seed=1, **kw))


def _catalogue_spread(factors: np.ndarray, query: np.ndarray) -> float:
    """The standard deviation over the catalogue of the items' inner products with ``query``."""
    return float(np.std(np.asarray(factors, np.float64) @ np.asarray(query, np.float64)))


def test_anchored_edits_trade_the_seeds_genre_for_the_prompts_one_monotonically(recommender):
    folk = _tracks_of(recommender, "folk")[:3]
    kw = dict(k=10, mode="latent", like_tracks=folk, seed=3)
    strengths = np.linspace(0, 1, 11)
    counts = [
        (_genres(r).count("folk"), _genres(r).count("jazz"))
        for r in (recommender.recommend("jazz", edit_strength=float(s), **kw) for s in strengths)
    ]
    folk_counts, jazz_counts = zip(*counts, strict=True)
    assert folk_counts[0] >= 9 and jazz_counts[-1] >= 9, counts
    assert all(b <= a for a, b in itertools.pairwise(folk_counts)), counts  # never back
    assert all(b >= a for a, b in itertools.pairwise(jazz_counts)), counts
    assert any(f > 0 and j > 0 for f, j in counts), counts  # a strength in between mixes them
    # strength 1 is the prompt alone, same noise (its samples scaled by one number a prompt)
    alone = recommender.recommend("jazz", k=10, mode="latent", seed=3)
    assert _ids(recommender.recommend("jazz", edit_strength=1.0, **kw)) == _ids(alone)
    # the source prompt is the base the prompt's samples are guided away from
    edited = recommender.sample_latents(
        "jazz", like_tracks=folk, edit_strength=1.0, source_prompt="indie folk", seed=3
    )
    guided = recommender.sample_latents("jazz", negative_prompt="indie folk", seed=3)
    ratio = edited / guided
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-4)
    plain = recommender.sample_latents("jazz", like_tracks=folk, edit_strength=1.0, seed=3)
    assert not np.allclose(plain / guided, ratio.flat[0], rtol=1e-3)
    with pytest.raises(ValueError, match="edit_method must be one of"):
        replace(recommender.hybrid_settings, edit_method="blend")


def test_like_tracks_strength_moves_from_the_seeds_to_the_prompt(artifact, recommender):
    folk = _tracks_of(recommender, "folk")[:3]
    stay = recommender.recommend("jazz", k=10, mode="latent", like_tracks=folk, edit_strength=0.0)
    follow = recommender.recommend("jazz", k=10, mode="latent", like_tracks=folk, edit_strength=1.0)
    assert _genres(stay).count("folk") >= 9, _genres(stay)
    assert _genres(follow).count("jazz") >= 9, _genres(follow)
    # strength 0 is the seeds' mean factor itself (the anchor divides it by the spread of its
    # similarities over the catalogue, which leaves its ranking alone)
    mean = recommender.item_factors[[recommender.catalog.index_of(t) for t in folk]].mean(0)
    spread = _catalogue_spread(recommender.item_factors, mean)
    np.testing.assert_allclose(
        recommender.sample_latents("jazz", like_tracks=folk, edit_strength=0),
        np.repeat(mean[None] / spread, recommender.hybrid_settings.n_samples, 0),
        rtol=1e-5,
    )
    # ... or their ALS fold-in, when the settings say so; inversion starts from it unscaled
    fold = _fresh(artifact)
    fold.hybrid_settings = replace(
        fold.hybrid_settings, seed_method="fold_in", edit_method="inversion"
    )
    idx = [recommender.catalog.index_of(t) for t in folk]
    np.testing.assert_allclose(
        fold.sample_latents("jazz", like_tracks=folk, edit_strength=0)[0],
        seed_latent(recommender.item_factors, idx, "fold_in"),
        rtol=1e-5,
    )
    assert not np.allclose(seed_latent(recommender.item_factors, idx, "fold_in"), mean, rtol=1e-3)
    with pytest.raises(ValueError, match="seed_method must be one of"):
        replace(fold.hybrid_settings, seed_method="median")
    # one collection per prompt; None samples from the prompt as usual
    per_prompt = recommender.recommend(
        ["jazz", "jazz"], k=10, mode="latent", like_tracks=[folk, None], edit_strength=0.0
    )
    assert _same(per_prompt, [stay, recommender.recommend("jazz", k=10, mode="latent")])
    # unknown ids are ignored with a warning
    with pytest.warns(UserWarning, match=r"like_tracks: ignored 1 track id\(s\).*'nope:1'"):
        again = recommender.recommend(
            "jazz", k=10, mode="latent", like_tracks=[*folk, "nope:1"], edit_strength=0.0
        )
    assert _same(again, stay)
    # inversion under a source prompt, in hybrid mode too
    edited = recommender.recommend(
        "jazz",
        k=10,
        mode="hybrid",
        like_tracks=folk,
        source_prompt="indie folk",
        edit_strength=0.5,
        num_beams=10,
    )
    assert len(set(_ids(edited))) == 10


def test_exclude_is_honoured_in_the_latent_modes(recommender):
    for mode in ("latent", "hybrid"):
        first = recommender.recommend("jazz", k=10, mode=mode, num_beams=12)
        banned = _ids(first[:5])
        again = recommender.recommend("jazz", k=10, mode=mode, num_beams=12, exclude=banned)
        assert len(set(_ids(again))) == 10 and not set(banned) & set(_ids(again))
        # exclude a whole cluster: k answers still come back, none of them jazz
        jazz = _tracks_of(recommender, "jazz")
        recs = recommender.recommend("jazz", k=10, mode=mode, num_beams=12, exclude=jazz)
        assert len(recs) == 10 and "jazz" not in _genres(recs)
    everything_but_3 = list(recommender.catalog.item_ids[3:])
    with pytest.raises(ValueError, match="only 3 tracks are left"):
        recommender.recommend("jazz", k=5, mode="latent", exclude=everything_but_3)
    recs = recommender.recommend("jazz", k=3, mode="hybrid", exclude=everything_but_3)
    assert set(_ids(recs)) == set(recommender.catalog.item_ids[:3])


# ------------------------------------------------------------------------------ hybrid mode


def test_hybrid_gives_k_distinct_tracks_and_its_ends_are_the_pure_modes(artifact, caplog):
    fresh = _fresh(artifact)
    assert fresh.fusion is None  # the tiny artifact has no fusion.json
    with caplog.at_level(logging.WARNING, logger="text2tracks.pipeline"):
        answers = fresh.recommend(PROMPTS, k=10, mode="hybrid", num_beams=12)
        fresh.recommend("jazz", k=10, mode="hybrid")
    assert sum("no fitted fusion" in r.getMessage() for r in caplog.records) == 1  # once
    for recs in answers:
        assert len(recs) == 10 and len(set(_ids(recs))) == 10
        assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)

    fresh.fusion = FixedBlendFusion(1.0)  # all weight on the beam: its own order, undiversified
    generative = fresh.recommend(PROMPTS, k=5, num_beams=8, diversity=0)
    assert [_ids(r) for r in fresh.recommend(PROMPTS, k=5, num_beams=8, mode="hybrid")] == [
        _ids(r) for r in generative
    ]
    fresh.fusion = FixedBlendFusion(0.0)  # all weight on the latent view
    latent = fresh.recommend(PROMPTS, k=5, mode="latent")
    assert [_ids(r) for r in fresh.recommend(PROMPTS, k=5, num_beams=8, mode="hybrid")] == [
        _ids(r) for r in latent
    ]


def test_fit_fusion_on_prompts_whose_answer_is_known(artifact, tmp_path):
    first = _fresh(artifact)
    first.fusion = FixedBlendFusion(0.9)  # an artifact with a fusion.json, refitted below
    fresh = Text2Tracks.from_pretrained(first.save_pretrained(tmp_path / "before"), device="cpu")
    assert fresh.fusion.alpha == 0.9
    prompts = [p for p, _ in GENRE_PROMPTS] + ["jazzy", "rnb", "   "]
    relevant = [_tracks_of(fresh, g) for _, g in GENRE_PROMPTS] + [
        _tracks_of(fresh, "jazz"),
        ["nope:1"],
        _tracks_of(fresh, "pop"),
    ]
    settings = HybridSettings(n_samples=2, beam_candidates=10, latent_k=20)
    summary = fresh.fit_fusion(prompts, relevant, settings=settings, metric="ndcg", k=10)
    assert (summary["n_prompts"], summary["n_skipped"]) == (6, 2)
    scores = summary["ndcg@10"]
    # the latent view is right and the untrained beam is not: the fit leans on the latent view
    assert scores["latent"] == pytest.approx(1.0) and scores["fused"] == pytest.approx(1.0)
    assert scores["generative"] < 0.5
    assert isinstance(fresh.fusion, FixedBlendFusion) and fresh.fusion.alpha < 0.5
    assert fresh.hybrid_settings == settings
    recs = fresh.recommend("jazz", k=10, mode="hybrid")
    assert _genres(recs).count("jazz") >= 9
    fusion, saved_settings, validation = load_fusion(
        fresh.save_pretrained(tmp_path / "after") / "diffusion"
    )
    assert (fusion.alpha, saved_settings) == (fresh.fusion.alpha, settings)
    assert validation["n_prompts"] == 6 and "ndcg@10" in validation
    with pytest.raises(ValueError, match="no prompt has a relevant track"):
        fresh.fit_fusion(["jazz"], [["nope:1"]])


# ------------------------------------------------------------------------------ errors


def test_clear_errors(recommender):
    r = recommender
    folk = _tracks_of(r, "folk")[:2]
    for kwargs in (
        {"negative_prompt": "rock"},
        {"like_tracks": folk},
        {"guidance_weight": 2.0},
        {"n_samples": 4},
        {"source_prompt": "folk"},
    ):
        name = next(iter(kwargs))
        with pytest.raises(ValueError, match=rf"{name} need mode='latent' or mode='hybrid'"):
            r.recommend("jazz", k=5, **kwargs)
    with pytest.raises(ValueError, match="mode must be one of"):
        r.recommend("jazz", mode="diffusion")
    for bad in (1.5, -0.1, True, "half", float("nan")):
        with pytest.raises(ValueError, match=r"edit_strength must be a number in \[0, 1\]"):
            r.recommend("jazz", mode="latent", like_tracks=folk, edit_strength=bad)
    with pytest.raises(ValueError, match="guidance_weight"):
        r.recommend("jazz", mode="latent", guidance_weight=-1)
    with pytest.raises(ValueError, match="n_samples"):
        r.recommend("jazz", mode="hybrid", n_samples=0)
    with pytest.raises(ValueError, match="seed"):
        r.recommend("jazz", mode="latent", seed=-1)
    with pytest.raises(ValueError, match="only applies with like_tracks"):
        r.recommend("jazz", mode="latent", source_prompt="folk")
    with pytest.raises(ValueError, match="negative_prompt 0 is empty"):
        r.recommend("jazz", mode="latent", negative_prompt="  ")
    with pytest.raises(ValueError, match="negative_prompt has 1 entries for 2 prompts"):
        r.recommend(["jazz", "rap"], mode="latent", negative_prompt=["rock"])
    with pytest.raises(TypeError, match="negative_prompt must be a str or None for one prompt"):
        r.recommend("jazz", mode="latent", negative_prompt=["rock"])
    with pytest.raises(TypeError, match="negative_prompt 1 must be a str or None"):
        r.recommend(["jazz", "rap"], mode="latent", negative_prompt=["rock", 3])
    with pytest.raises(ValueError, match="like_tracks is empty"):
        r.recommend("jazz", mode="latent", like_tracks=[])
    with pytest.raises(
        ValueError, match="none of the 2 like_tracks of the prompts is in the catalogue"
    ):
        r.recommend("jazz", mode="latent", like_tracks=["nope:1", "nope:2"])
    with pytest.raises(ValueError, match="like_tracks has 1 collections for 2 prompts"):
        r.recommend(["jazz", "rap"], mode="latent", like_tracks=[folk])


def test_artifact_without_diffusion_refuses_the_latent_modes(artifact, tmp_path):
    from text2tracks.commands.export import ExportError, run_export

    copy = _copy(artifact, tmp_path)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    del manifest["components"]["diffusion"]
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    shutil.rmtree(copy / "diffusion")
    plain = Text2Tracks.from_pretrained(copy, device="cpu")
    assert not plain.has_diffusion
    for mode in ("latent", "hybrid"):
        with pytest.raises(ValueError, match="no 'diffusion/' component"):
            plain.recommend("jazz", mode=mode, negative_prompt="rock")
    with pytest.raises(ValueError, match="no 'diffusion/' component"):
        plain.sample_latents("jazz")
    (tmp_path / "in.txt").write_text("jazz\n")
    with pytest.raises(ExportError, match="needs a diffusion head"):
        run_export(
            copy,
            tmp_path / "in.txt",
            tmp_path / "out.jsonl",
            mode="hybrid",
            progress=False,
            recommender=plain,
        )


@pytest.mark.parametrize(
    ("relative", "match"),
    [
        ("diffusion/latent_stats.npy", "latent_stats"),
        ("diffusion/model.safetensors", "model.safetensors"),
        ("cf/item_factors.npy", "item_factors"),
    ],
)
def test_missing_diffusion_files_are_named(artifact, tmp_path, relative, match):
    copy = _copy(artifact, tmp_path)
    (copy / relative).unlink()
    with pytest.raises(ArtifactError, match=match):
        Text2Tracks.from_pretrained(copy, device="cpu")


def test_damaged_fusion_file_is_named(artifact, tmp_path):
    copy = _copy(artifact, tmp_path)
    (copy / "diffusion" / FUSION_NAME).write_text('{"kind": "fixed"', encoding="utf-8")
    with pytest.raises(ArtifactError, match="damaged file .*fusion.json"):
        Text2Tracks.from_pretrained(copy, device="cpu")
    (copy / "diffusion" / FUSION_NAME).write_text('{"kind": "magic"}', encoding="utf-8")
    with pytest.raises(ArtifactError, match="fusion kind must be"):
        Text2Tracks.from_pretrained(copy, device="cpu")


# ------------------------------------------------------------------------------ artifact


def test_save_pretrained_carries_the_diffusion_component(artifact, recommender, tmp_path):
    fresh = _fresh(artifact)
    fresh.fusion = FixedBlendFusion(0.3, "rank")
    fresh.hybrid_settings = HybridSettings(n_samples=3, beam_candidates=12, latent_k=30)
    saved = fresh.save_pretrained(tmp_path / "saved")
    manifest = json.loads((saved / MANIFEST_NAME).read_text())
    assert {"cf", "diffusion", "semantic_ids", "seq2seq"} <= set(manifest["components"])
    loaded = Text2Tracks.from_pretrained(saved, device="cpu")
    assert (loaded.fusion.alpha, loaded.fusion.normalisation) == (0.3, "rank")
    assert loaded.hybrid_settings == fresh.hybrid_settings
    for mode in ("latent", "hybrid"):
        assert _same(
            loaded.recommend(PROMPTS, k=10, mode=mode), fresh.recommend(PROMPTS, k=10, mode=mode)
        )
    assert _same(loaded.recommend(PROMPTS, k=10), recommender.recommend(PROMPTS, k=10))

    # built from its parts (no cf/ to copy): the item factors travel in diffusion/
    parts = Text2Tracks(
        recommender.model,
        recommender.tokenizer,
        recommender.layout,
        recommender.catalog,
        diffusion_head=recommender.diffusion_head,
        item_factors=recommender.item_factors,
    )
    again = Text2Tracks.from_pretrained(parts.save_pretrained(tmp_path / "parts"), device="cpu")
    assert (tmp_path / "parts" / "diffusion" / "item_factors.npy").is_file()
    assert not (tmp_path / "parts" / "diffusion" / FUSION_NAME).exists()
    assert [_ids(r) for r in again.recommend(PROMPTS, k=10, mode="latent")] == [
        _ids(r) for r in recommender.recommend(PROMPTS, k=10, mode="latent")
    ]
    with pytest.raises(ValueError, match="item_factors must have shape"):
        Text2Tracks(
            recommender.model,
            recommender.tokenizer,
            recommender.layout,
            recommender.catalog,
            diffusion_head=recommender.diffusion_head,
            item_factors=np.zeros((3, 3)),
        )
    with pytest.raises(ValueError, match="pass diffusion_head too"):
        Text2Tracks(
            recommender.model,
            recommender.tokenizer,
            recommender.layout,
            recommender.catalog,
            fusion=FixedBlendFusion(),
        )


def _gate() -> tuple[GatedFusion, object, np.ndarray]:
    """A gate fitted on random candidates (its weights only need to round-trip)."""
    rng = np.random.default_rng(0)
    n = 40
    beam_items = np.stack([rng.choice(100, 8, replace=False) for _ in range(n)])
    beam_scores = -np.sort(rng.exponential(size=(n, 8)), axis=1).astype(np.float32)
    lat_items = np.stack([rng.choice(100, 8, replace=False) for _ in range(n)])
    lat_sims = np.sort(rng.normal(size=(n, 8)), axis=1)[:, ::-1].astype(np.float32)
    cands = pool_candidates(beam_items, beam_scores, lat_items, lat_sims)
    relevant = [{int(beam_items[i, 0]) if i % 2 else int(lat_items[i, 0])} for i in range(n)]
    gate = GatedFusion(n_iter=20).fit(cands, relevant, prompt_features(cands), metric="hits", k=3)
    return gate, cands, prompt_features(cands)


def test_fusion_json_round_trip(tmp_path):
    settings = HybridSettings(n_samples=2, beam_candidates=20, latent_k=40, pool="mean")
    path = save_fusion(tmp_path, FixedBlendFusion(0.35), settings, {"hits@10": np.float64(0.5)})
    fusion, loaded_settings, validation = load_fusion(tmp_path)
    assert (fusion.alpha, loaded_settings, validation) == (0.35, settings, {"hits@10": 0.5})
    assert fusion_from_dict(json.loads(path.read_text())).alpha == 0.35  # rerank reads it as is

    gate, cands, features = _gate()
    save_fusion(tmp_path, gate, settings)
    again, _, _ = load_fusion(tmp_path)
    assert isinstance(again, GatedFusion)
    np.testing.assert_array_equal(again.alphas(cands, features), gate.alphas(cands, features))
    np.testing.assert_array_equal(
        again.fuse(cands, k=3, features=features)[0], gate.fuse(cands, k=3, features=features)[0]
    )

    assert load_fusion(tmp_path / "nowhere") == (None, HybridSettings(), {})
    payload = json.loads(path.read_text())
    for key, value, match in (
        ("feature_names", ["x"], "features"),
        ("format_version", 99, "format version 99"),
        ("settings", {"n_samples": 0}, "n_samples"),
        ("settings", {"beams": 3}, "unknown HybridSettings keys"),
    ):
        path.write_text(json.dumps({**payload, key: value}))
        with pytest.raises(ValueError, match=rf"damaged fusion file .*{match}"):
            load_fusion(tmp_path)
    with pytest.raises(ValueError, match="pool"):
        HybridSettings(pool="sum")


# ------------------------------------------------------------------------------ training


def test_train_diffusion_fits_and_writes_the_fusion(artifact, tmp_path):
    from text2tracks.seed_fusion import SEED_STRENGTHS
    from training.train_diffusion import DiffusionTrainConfig, build_parser, train

    copy = _copy(artifact, tmp_path)
    playlists = artifact.parent / "demo.jsonl"
    tiny = dict(
        encoder="seq2seq",
        hidden=32,
        n_blocks=1,
        time_embed_dim=16,
        batch_size=64,
        max_steps=2,
        eval_prompts=8,
        eval_samples=2,
        warmup_steps=1,
        ddim_steps=5,
        num_threads=1,
        progress=False,
        fusion_prompts=10,
        fusion_candidates=10,
        fusion_latent_k=20,
        fusion_samples=2,
    )
    summary = train(DiffusionTrainConfig(artifact=str(copy), playlists=str(playlists), **tiny))
    assert summary["fusion"]["n_prompts"] == 10 and "alpha" in summary["fusion"]
    seeds = summary["fusion"]["with_seeds"]  # the fusion of continuations, by default
    assert 0 < seeds["n_prompts"] <= 10 and seeds["seed_strength"] in SEED_STRENGTHS, seeds
    assert set(seeds["seed_strength_scores"]) == {str(v) for v in SEED_STRENGTHS}
    fusion, settings, validation = load_fusion(copy / "diffusion")
    assert isinstance(fusion, FixedBlendFusion) and fusion.alpha == summary["fusion"]["alpha"]
    assert fusion.with_seeds.alpha == seeds["alpha"]
    assert settings == HybridSettings(
        n_samples=2, beam_candidates=10, latent_k=20, seed_strength=seeds["seed_strength"]
    )
    assert validation["n_prompts"] == 10
    loaded = Text2Tracks.from_pretrained(copy, device="cpu")
    assert loaded.fusion.alpha == fusion.alpha and loaded.hybrid_settings == settings
    assert len(set(_ids(loaded.recommend("jazz", k=10, mode="hybrid")))) == 10

    shutil.rmtree(copy / "diffusion")  # again, with the fusion of liked tracks' queries
    summary = train(
        DiffusionTrainConfig(
            artifact=str(copy), playlists=str(playlists), **{**tiny, "fusion_like_rounds": 2}
        )
    )
    likes = summary["fusion"]["with_likes"]
    assert likes["rounds"] == 2 and likes["n_prompts"] > 0, likes
    fusion, _, validation = load_fusion(copy / "diffusion")
    assert fusion.with_likes is not None and fusion.with_likes.alpha == likes["alpha"]
    assert validation["with_likes"]["n_prompts"] == likes["n_prompts"]

    shutil.rmtree(copy / "diffusion")
    summary = train(
        DiffusionTrainConfig(
            artifact=str(copy), playlists=str(playlists), **{**tiny, "fit_fusion": False}
        )
    )
    assert "fusion" not in summary and not (copy / "diffusion" / FUSION_NAME).exists()
    args = build_parser().parse_args(
        [
            "--artifact",
            "a",
            "--playlists",
            "p",
            "--no-fit-fusion",
            "--fusion-prompts",
            "50",
            "--fusion-kind",
            "gated",
        ]
    )
    assert (args.fit_fusion, args.fusion_prompts, args.fusion_kind) == (False, 50, "gated")
    bad_values = (
        {"fusion_prompts": 0},
        {"fusion_kind": "mlp"},
        {"fusion_metric": "recall"},
        {"fusion_like_rounds": -1},
        {"fusion_seed_prompts": -1},
    )
    for bad in bad_values:
        with pytest.raises(ValueError, match="fusion"):
            DiffusionTrainConfig(artifact="a", playlists="p", **bad)


# ------------------------------------------------------------------------------ export


def test_export_hybrid_runs_end_to_end_and_resumes(artifact, recommender, tmp_path):
    from text2tracks.commands.export import (
        ExportError,
        existing_journals,
        journal_path,
        main,
        run_export,
    )

    rows = [{"id": f"q{i}", "prompt": p} for i, p in enumerate(PROMPTS)]
    rows[5]["negative_prompt"] = "rock"  # "party"
    rows += [
        {"id": "badneg", "prompt": "jazz", "negative_prompt": 7},
        {"id": "emptyneg", "prompt": "jazz", "negative_prompt": " "},
        {"id": "nullneg", "prompt": "rap", "negative_prompt": None},
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    kw = dict(
        k=6,
        batch_size=3,
        mode="hybrid",
        num_beams=8,
        progress=False,
        recommender=recommender,
        seed=3,
        n_samples=2,
    )
    reference = tmp_path / "reference.jsonl"
    summary = run_export(artifact, source, reference, **kw)
    assert (summary.n_rows, summary.n_done, summary.n_failed) == (len(rows), len(rows) - 2, 2)
    records = [json.loads(line) for line in reference.read_text().splitlines()]
    errors = {r["id"]: r["error"] for r in records}
    assert "negative_prompt must be a string" in errors["badneg"]
    assert "empty negative_prompt" in errors["emptyneg"]
    party = recommender.recommend(
        "party", k=6, mode="hybrid", num_beams=8, seed=3, n_samples=2, negative_prompt="rock"
    )
    assert records[5]["track_ids"] == _ids(party)

    class Crash(RuntimeError):
        pass

    def crash(done):
        if done >= 1:
            raise Crash

    out = tmp_path / "out.jsonl"
    with pytest.raises(Crash):
        run_export(artifact, source, out, after_batch=crash, **kw)
    assert journal_path(out).exists()
    with pytest.raises(ExportError, match="guidance_weight=None.*now 4.0"):
        run_export(artifact, source, out, resume=True, guidance_weight=4.0, **kw)
    with pytest.raises(ExportError, match="seed=3.*now 4"):
        run_export(artifact, source, out, resume=True, **{**kw, "seed": 4})
    resumed = run_export(artifact, source, out, resume=True, **kw)
    assert resumed.n_resumed > 0 and out.read_bytes() == reference.read_bytes()
    assert not existing_journals(out)

    # the command line, loading the artifact itself
    cli_out = tmp_path / "cli.csv"
    assert (
        main(
            [
                "--artifact",
                str(artifact),
                "--input",
                str(source),
                "--output",
                str(cli_out),
                "--k",
                "6",
                "--batch-size",
                "4",
                "--mode",
                "latent",
                "--guidance-weight",
                "3",
                "--n-samples",
                "2",
                "--seed",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert cli_out.read_text(encoding="utf-8").count("\n") == len(rows) + 1
    with pytest.raises(ExportError, match="--guidance-weight and --n-samples need --mode latent"):
        run_export(
            artifact,
            source,
            tmp_path / "gen.jsonl",
            guidance_weight=2.0,
            n_samples=2,
            progress=False,
            recommender=recommender,
        )
