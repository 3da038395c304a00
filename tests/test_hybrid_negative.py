"""A negative prompt acts on the final hybrid list, beam candidates included.

The penalty (:func:`text2tracks.candidate_pool.negative_penalty`) is checked against a hand
computation; then on a space whose answer is known (synthetic factors, one axis per genre) and on
the tiny artifact with its tiny diffusion head (``tiny_artifact.add_tiny_diffusion``: "party"
means rock or pop; the seq2seq is untrained, so its beams hold arbitrary genres), a negative
"rock" must take the rock candidates out of the top k, the beam's included, and keep the others.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tiny_artifact import add_tiny_diffusion, build_tiny_artifact, genre_of

from text2tracks.candidate_pool import negative_penalty, pool_candidates
from text2tracks.hybrid import HybridSettings, fuse, load_fusion, save_fusion
from text2tracks.latent import negative_latents, rank_latent_batch
from text2tracks.options import LatentRequest
from text2tracks.rerank import FixedBlendFusion, rerank

# ------------------------------------------------------------------------------------ the penalty


def test_penalty_is_the_positive_part_of_the_similarity_z_scored_over_the_catalogue():
    factors = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [2.0, 0.0]], dtype=np.float32)
    cands = pool_candidates(
        beam_items=np.array([[0, 1, 2], [3, 1, -1]]),
        beam_scores=np.array([[-1.0, -2.0, -3.0], [-1.0, -2.0, np.nan]]),
    )
    negative = np.array([[[1.0, 0.0]], [[np.nan, np.nan]]], dtype=np.float32)
    got = negative_penalty(cands, negative, factors, weight=2.0)
    catalogue = np.array([1.0, 0.0, 0.5, 2.0])  # every track against the negative (1, 0)
    z = (catalogue - catalogue.mean()) / catalogue.std()
    np.testing.assert_allclose(got[0, :3], 2.0 * np.maximum(z[:3], 0.0), rtol=1e-6)
    assert got[0, 0] > 0 and got[0, 1] == 0.0 and got[0, 2] == 0.0  # below the mean: untouched
    np.testing.assert_array_equal(got[1], 0.0)  # no negative for this prompt
    # several samples: their z-scores pooled by max or mean
    two = np.array([[[1.0, 0.0], [0.0, 1.0]], [[np.nan] * 2] * 2], dtype=np.float32)
    z2 = (factors[:, 1] - factors[:, 1].mean()) / factors[:, 1].std()  # against (0, 1)
    np.testing.assert_allclose(
        negative_penalty(cands, two, factors, pool="max")[0, :3],
        np.maximum(np.maximum(z[:3], z2[:3]), 0.0),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        negative_penalty(cands, two, factors, pool="mean")[0, :3],
        np.maximum((z[:3] + z2[:3]) / 2, 0.0),
        rtol=1e-6,
    )
    np.testing.assert_array_equal(negative_penalty(cands, negative, factors, weight=0.0), 0.0)
    with pytest.raises(ValueError, match="negative weight"):
        negative_penalty(cands, negative, factors, weight=-1.0)
    with pytest.raises(ValueError, match="1 rows for 2 prompts"):
        negative_penalty(cands, negative[:1], factors)


def test_a_prompt_reference_charges_only_what_resembles_the_negative_more_than_the_prompt():
    # axis 0: the negative's genre; axis 1: the prompt's; track 2 fits both alike
    factors = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, -1.0]], dtype=np.float32)
    cands = pool_candidates(
        beam_items=np.array([[0, 1, 2]]), beam_scores=np.array([[-1.0, -2.0, -3.0]])
    )
    negative = np.array([[[1.0, 0.0]]], dtype=np.float32)
    prompt = np.array([[[0.0, 1.0]]], dtype=np.float32)

    def z(query):
        sims = factors.astype(np.float64) @ np.asarray(query, np.float64)
        return (sims - sims.mean()) / sims.std()

    plain = negative_penalty(cands, negative, factors, weight=1.0)
    relative = negative_penalty(cands, negative, factors, weight=1.0, prompt_latents=prompt)
    np.testing.assert_allclose(
        relative[0], np.maximum(z([1, 0]) - z([0, 1]), 0)[:3], rtol=1e-6, atol=1e-9
    )
    assert plain[0, 2] > 0 and relative[0, 2] == 0.0  # fits the prompt as well: spared
    assert relative[0, 0] > plain[0, 0] > 0  # the negative's own track: charged, and more
    assert relative[0, 1] == plain[0, 1] == 0.0
    with pytest.raises(ValueError, match="prompt_latents has 2 rows for 1 prompts"):
        negative_penalty(cands, negative, factors, prompt_latents=np.concatenate([prompt] * 2))
    with pytest.raises(ValueError, match="negative_reference must be one of"):
        HybridSettings(negative_reference="playlist")


def test_fuse_and_rerank_check_the_penalty():
    cands = pool_candidates(beam_items=np.array([[0, 1]]), beam_scores=np.array([[-1.0, -2.0]]))
    with pytest.raises(ValueError, match="candidates' shape"):
        fuse(FixedBlendFusion(), cands, 2, penalty=np.zeros((1, 5)))
    factors = np.eye(2, dtype=np.float32)
    with pytest.raises(ValueError, match="mode 'hybrid'"):
        rerank(
            "latent",
            1,
            latents=np.ones((1, 2), np.float32),
            item_factors=factors,
            negative_latents=np.ones((1, 2), np.float32),
        )


def test_settings_carry_the_negative_weight_through_the_fusion_file(tmp_path):
    with pytest.raises(ValueError, match="negative_weight"):
        HybridSettings(negative_weight=-0.5)
    with pytest.raises(ValueError, match="negative_weight"):
        HybridSettings(negative_weight=float("inf"))
    settings = HybridSettings(negative_weight=2.5)
    save_fusion(tmp_path, FixedBlendFusion(0.3), settings)
    assert load_fusion(tmp_path)[1] == settings
    # a file written before the field existed reads with the default
    assert HybridSettings.from_dict({"n_samples": 2}).negative_weight == 1.0


# ------------------------------------------------------------------------------------ known answer

N_GENRES, PER_GENRE, DIM = 8, 20, 8  # a genre is an eighth of the catalogue


def _genre_space(seed: int = 0):
    rng = np.random.default_rng(seed)
    genre = np.repeat(np.arange(N_GENRES), PER_GENRE)
    factors = 3.0 * np.eye(DIM, dtype=np.float32)[genre] + 0.2 * rng.normal(
        size=(genre.size, DIM)
    ).astype(np.float32)
    return genre, factors


def test_negative_demotes_beam_candidates_of_its_genre_and_keeps_the_rest():
    genre, factors = _genre_space()
    rng = np.random.default_rng(1)
    # the beam (alpha 0.9: it dominates) mixes genres 0 and 1; the latent points at genre 0
    beam_items = rng.permutation(np.flatnonzero(genre <= 1))[None, :20]
    beam_scores = -np.arange(20, dtype=np.float32)[None]
    latents = np.eye(DIM, dtype=np.float32)[None, :1] + 0.2 * np.eye(DIM, dtype=np.float32)[1]
    negative = np.eye(DIM, dtype=np.float32)[None, 1:2]  # genre 1's axis
    common = dict(
        beam_items=beam_items,
        beam_scores=beam_scores,
        latents=latents,
        item_factors=factors,
        latent_k=10,
        fusion=FixedBlendFusion(0.9),
    )
    plain, _ = rerank("hybrid", 10, **common)
    steered, _ = rerank("hybrid", 10, negative_latents=negative, **common)
    n_neg_plain, n_neg_steered = (int((genre[r[0]] == 1).sum()) for r in (plain, steered))
    assert n_neg_plain >= 3  # the beam brought genre 1 into the top 10
    assert n_neg_steered == 0
    kept = set(plain[0][genre[plain[0]] != 1].tolist())
    assert kept <= set(steered[0].tolist())  # every other candidate stays
    assert np.all(steered[0] >= 0)
    # weight 0 is the plain ranking
    off, _ = rerank("hybrid", 10, negative_latents=negative, negative_weight=0.0, **common)
    np.testing.assert_array_equal(off, plain)


# ------------------------------------------------------------------------------------ the API path


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def recommender(tmp_path_factory):
    from text2tracks.pipeline import Text2Tracks

    artifact = add_tiny_diffusion(build_tiny_artifact(tmp_path_factory.mktemp("negative")))
    return Text2Tracks.from_pretrained(artifact, device="cpu")


def _request(negatives, n_samples=4, guidance_weight=2.0, seed=0) -> LatentRequest:
    n = len(negatives)
    return LatentRequest(
        negatives=list(negatives),
        seeds=[None] * n,
        sources=[None] * n,
        strength=0.5,
        guidance_weight=guidance_weight,
        n_samples=n_samples,
        seed=seed,
    )


def test_negative_latents_sample_the_negative_prompt(recommender):
    head = recommender.diffusion_head
    assert negative_latents(head, _request([None, None])) is None
    latents = negative_latents(head, _request([None, "rock"]))
    assert latents.shape == (2, 4, head.config.latent_dim)
    assert np.isnan(latents[0]).all() and np.isfinite(latents[1]).all()
    # the negative's latent is the prompt's latent: "rock" sampled as a prompt, same noise
    as_prompt = recommender.sample_latents("rock", n_samples=4, seed=0)
    np.testing.assert_allclose(latents[1], as_prompt, atol=1e-4)
    # its tracks are rock: the same answer the head gives for the prompt itself
    factors = recommender.item_factors
    top = np.argsort(-(latents[1] @ factors.T).max(0))[:10]
    assert [genre_of(recommender.catalog.item_ids[i]) for i in top].count("rock") >= 8


def test_hybrid_negative_removes_the_negative_genre_from_beam_candidates(recommender):
    catalog, k = recommender.catalog, 10
    genre = np.array([genre_of(t) for t in catalog.item_ids])
    # The tiny seq2seq is untrained and its beams rank rock arbitrarily: the beam here is a
    # designed one that leads with rock, alternating with other genres, best first.
    rock, other = np.flatnonzero(genre == "rock")[:15], np.flatnonzero(genre != "rock")[:15]
    beam_items = np.stack([rock, other], axis=1).reshape(1, -1)
    beam = (beam_items, -np.arange(beam_items.shape[1], dtype=np.float32)[None])
    latents = recommender.sample_latents(["party"], negative_prompt="rock", n_samples=4, seed=0)
    factors, index = recommender.latent_index()
    settings = replace(recommender.hybrid_settings, n_samples=4, latent_k=30)
    negative = negative_latents(recommender.diffusion_head, _request(["rock"]))
    fusion = FixedBlendFusion(0.8)  # the beam dominates: rock comes in through it

    def top(neg):
        items, _ = rank_latent_batch(
            "hybrid", k, latents, factors, index, settings, fusion, ["party"], [None], beam, neg
        )
        return items[0]

    plain, steered = top(None), top(negative)
    beam_rock = set(plain.tolist()) & set(rock.tolist())
    assert len(beam_rock) >= 3, "precondition: the beam brings rock tracks into the plain top k"
    n_rock = [int((genre[items] == "rock").sum()) for items in (plain, steered)]
    assert n_rock[1] <= n_rock[0] // 2, n_rock
    assert not beam_rock & set(steered.tolist())
    kept = set(plain[genre[plain] != "rock"].tolist())
    assert kept <= set(steered.tolist())  # the others stay
    assert np.all(steered >= 0)
    # the same call without a negative prompt in the batch row changes nothing
    unchanged, _ = rank_latent_batch(
        "hybrid",
        k,
        latents,
        factors,
        index,
        settings,
        fusion,
        ["party"],
        [None],
        beam,
        np.full_like(negative, np.nan),
    )
    np.testing.assert_array_equal(unchanged[0], plain)
    # measured against the prompt: the same list as fusing with the relative penalty by hand
    from text2tracks.hybrid import fuse, gather_candidates

    relative = replace(settings, negative_reference="prompt")
    got = rank_latent_batch(
        "hybrid", k, latents, factors, index, relative, fusion, ["party"], [None], beam, negative
    )[0][0]
    cands = gather_candidates(
        *beam, latents, factors, index=index, latent_k=settings.latent_k, pool=settings.pool, k=k
    )
    penalty = negative_penalty(cands, negative, factors, 1.0, settings.pool, latents)
    assert not np.allclose(penalty, negative_penalty(cands, negative, factors, 1.0, settings.pool))
    expected = fuse(fusion, cands, k, latents=latents, prompts=["party"], penalty=penalty)[0][0]
    np.testing.assert_array_equal(got, expected)


def test_recommend_in_hybrid_mode_applies_the_negative_prompt_to_the_final_list(recommender):
    # a fusion where the beam dominates, so that a genre can only leave the list through the
    # penalty on candidates (the negative prompt also steers the latent view, which is weak here);
    # the tiny seq2seq is untrained, so the genre to push out is the one its list holds most
    from collections import Counter

    saved = recommender.fusion
    recommender.fusion = FixedBlendFusion(0.95)
    try:

        def genres(**kw):
            recs = recommender.recommend("party", k=10, mode="hybrid", seed=0, **kw)
            return [genre_of(r.track_id) for r in recs]

        genre, plain = Counter(genres()).most_common(1)[0]
        steered = genres(negative_prompt=genre).count(genre)
    finally:
        recommender.fusion = saved
    assert plain >= 2, "precondition: the beam brings several tracks of one genre"
    assert steered <= plain // 2, (genre, plain, steered)


# ------------------------------------------------------------------ the negative guides the beam


def _hybrid(recommender, prompt, contrast, **options):
    saved = recommender.hybrid_settings
    recommender.hybrid_settings = replace(saved, negative_contrast=contrast)
    try:
        return recommender.recommend_arrays(prompt, k=10, mode="hybrid", seed=0, **options)
    finally:
        recommender.hybrid_settings = saved


def test_negative_contrast_demotes_what_the_seq2seq_finds_likely_under_the_negative(
    recommender,
):
    prompt, negative = "party", "sad jazz for a rainy day"
    index = {t: i for i, t in enumerate(recommender.catalog.item_ids)}

    def on_negative(ids):
        items = np.array([[index[t] for t in ids]])
        with recommender._lock:
            return recommender._score_items([negative], items, 0, 1)[0]

    plain, _ = _hybrid(recommender, prompt, 0.0, negative_prompt=negative)
    steered, _ = _hybrid(recommender, prompt, 1e6, negative_prompt=negative)
    assert set(steered) != set(plain)
    # a contrast far above the fused scores' scale keeps out every candidate that the negative
    # makes likelier than the average candidate: what is left is less likely under it
    assert on_negative(steered).max() < on_negative(plain).max()
    assert on_negative(steered).mean() < on_negative(plain).mean()
    # a moderate one moves the list part of the way
    middle, _ = _hybrid(recommender, prompt, 1.0, negative_prompt=negative)
    assert on_negative(steered).mean() <= on_negative(middle).mean() <= on_negative(plain).mean()
    # and without a negative prompt the setting is not used at all
    np.testing.assert_array_equal(
        _hybrid(recommender, prompt, 0.0)[0], _hybrid(recommender, prompt, 1e6)[0]
    )


def test_item_scores_of_the_api_are_the_beams_scores(recommender):
    ids, scores = recommender.recommend_arrays("party", k=5, num_beams=10, diversity=0.0)
    index = {t: i for i, t in enumerate(recommender.catalog.item_ids)}
    items = np.array([[index[t] for t in ids], [-1] * 5])
    with recommender._lock:
        again = recommender._score_items(["party", "party"], items, 0, 1)
    np.testing.assert_allclose(again[0], scores, atol=1e-4)
    assert np.isnan(again[1]).all()  # no item, no score


def test_hybrid_settings_check_the_negative_contrast():
    assert HybridSettings(negative_contrast=2.5).negative_contrast == 2.5
    for bad in (-1.0, float("inf"), True):
        with pytest.raises(ValueError, match="negative_contrast"):
            HybridSettings(negative_contrast=bad)
