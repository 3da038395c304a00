"""Candidate pooling and score fusion on synthetic candidates whose right answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from text2tracks.rerank import (
    FixedBlendFusion,
    GatedFusion,
    blend,
    fusion_from_dict,
    latent_candidates,
    normalise_view,
    per_prompt_metric,
    pool_candidates,
    prompt_features,
    rerank,
    top_k,
)


def _random_views(seed: int = 0, batch: int = 6, n_items: int = 50, kb: int = 8, dim: int = 4):
    rng = np.random.default_rng(seed)
    item_factors = rng.normal(size=(n_items, dim)).astype(np.float32)
    beam_items = np.stack([rng.choice(n_items, kb, replace=False) for _ in range(batch)])
    beam_scores = -np.sort(rng.exponential(size=(batch, kb)), axis=1)  # sorted log-probs
    latents = rng.normal(size=(batch, 3, dim)).astype(np.float32)
    return item_factors, beam_items, beam_scores.astype(np.float32), latents


def test_latent_candidates_match_brute_force_max_and_mean():
    item_factors, _, _, latents = _random_views()
    for pool in ("max", "mean"):
        items, sims = latent_candidates(latents, item_factors, k=5, pool=pool)
        dots = np.einsum("nd,bsd->bns", item_factors, latents)
        pooled = dots.max(-1) if pool == "max" else dots.mean(-1)
        for b in range(latents.shape[0]):
            # faiss finds the top 5 of each sample; the pooled top 5 of the union must be the
            # brute-force top 5 among those items, in order.
            union = np.unique(np.argsort(-dots[b], axis=0)[:5].ravel())
            expected = union[np.argsort(-pooled[b, union], kind="stable")][:5]
            np.testing.assert_array_equal(items[b], expected)
            np.testing.assert_allclose(sims[b], pooled[b, expected], rtol=1e-5)


def test_latent_candidates_exclude_and_single_sample_shape():
    item_factors, _, _, latents = _random_views()
    items, _ = latent_candidates(latents[:, 0], item_factors, k=5)
    best = items[:, 0]
    excluded, _ = latent_candidates(
        latents[:, 0], item_factors, k=5, exclude=[{int(b)} for b in best]
    )
    assert not np.any(excluded == best[:, None])
    np.testing.assert_array_equal(excluded[:, :4], items[:, 1:5])


def test_alpha_one_is_generative_order_and_alpha_zero_is_latent_order():
    item_factors, beam_items, beam_scores, latents = _random_views()
    lat_items, lat_sims = latent_candidates(latents, item_factors, k=10)
    cands = pool_candidates(beam_items, beam_scores, lat_items, lat_sims, latents, item_factors)
    kb = beam_items.shape[1]
    gen_items, _ = top_k(cands, blend(cands, 1.0), kb)
    np.testing.assert_array_equal(gen_items, beam_items)  # beams were given sorted
    lat_order, _ = top_k(cands, blend(cands, 0.0), 10)
    for b in range(len(cands)):
        valid = cands.items[b] >= 0
        expected = cands.items[b][valid][np.argsort(-cands.latent[b][valid], kind="stable")][:10]
        np.testing.assert_array_equal(lat_order[b], expected)
    # rerank's pure modes agree with the views.
    np.testing.assert_array_equal(
        rerank("generative", kb, beam_items=beam_items, beam_scores=beam_scores)[0], beam_items
    )
    np.testing.assert_array_equal(
        rerank("latent", 10, latents=latents, item_factors=item_factors)[0], lat_items
    )
    hybrid = rerank(
        "hybrid",
        10,
        beam_items=beam_items,
        beam_scores=beam_scores,
        latents=latents,
        item_factors=item_factors,
        fusion=FixedBlendFusion(1.0),
    )[0]
    np.testing.assert_array_equal(hybrid[:, :kb], beam_items)


def test_pool_computes_latent_similarity_for_beam_only_items():
    item_factors, beam_items, beam_scores, latents = _random_views()
    cands = pool_candidates(beam_items, beam_scores, latents=latents, item_factors=item_factors)
    expected = np.einsum("bnd,bsd->bns", item_factors[beam_items], latents).max(-1)
    np.testing.assert_allclose(cands.latent[:, : beam_items.shape[1]], expected, rtol=1e-5)


@pytest.mark.parametrize("method", ["zscore", "rank"])
def test_missing_view_goes_to_the_floor(method):
    scores = np.array([[3.0, 1.0, np.nan, 2.0]])
    norm = normalise_view(scores, method)
    assert norm[0, 2] < norm[0, [0, 1, 3]].min()
    assert np.argsort(-norm[0])[:3].tolist() == [0, 3, 1]


def _middle_example(n_prompts: int = 4):
    """Relevant item B is second in both views: only a middle alpha brings it to the top."""
    items = np.array([[0, 1, 2]] * n_prompts)  # A, B, C
    beam_scores = np.array([[0.0, -0.1, -5.0]] * n_prompts, dtype=np.float32)
    lat_items = np.array([[2, 1, 0]] * n_prompts)
    lat_sims = np.array([[1.0, 0.95, 0.0]] * n_prompts, dtype=np.float32)
    cands = pool_candidates(items, beam_scores, lat_items, lat_sims)
    return cands, [{1}] * n_prompts


def test_grid_search_picks_the_alpha_that_is_right():
    cands, relevant = _middle_example()
    grid = np.linspace(0, 1, 21)
    fusion = FixedBlendFusion().fit(cands, relevant, metric="hits", k=1, grid=grid)
    hits_at = {
        a: per_prompt_metric(top_k(cands, blend(cands, a), 1)[0], relevant, "hits", 1).mean()
        for a in grid
    }
    assert hits_at[0.0] == 0 and hits_at[1.0] == 0
    assert hits_at[fusion.alpha] == 1.0
    assert 0.0 < fusion.alpha < 1.0
    assert fusion.grid_scores_.max() == 1.0
    assert fusion_from_dict(fusion.to_dict()).alpha == fusion.alpha


def _two_regime_set(n: int = 200, seed: int = 0):
    """The right view depends on the beam's margin.

    Confident prompts (big margin): the beam's top item is relevant, the latent view buries it.
    Unsure prompts (flat beam): the relevant item is missing from the beam, the latent view has
    it first and the beam's favourite second.
    """
    rng = np.random.default_rng(seed)
    confident = rng.random(n) < 0.5
    beam_items, beam_scores, lat_items, lat_sims, relevant = [], [], [], [], []
    for i in range(n):
        base = 100 * i
        beams = base + np.arange(8)  # items base..base+7
        if confident[i]:
            scores = np.array([0.0] + list(-4.0 - 0.1 * np.arange(7)))
            lat = np.array([base + 8, base + 1, base + 2, base + 3, base + 0])
            sims = np.array([1.0, 0.9, 0.8, 0.7, 0.0])
            rel = base + 0
        else:
            scores = -0.05 * np.arange(8.0)
            lat = np.array([base + 9, base + 0, base + 1, base + 2, base + 3])
            sims = np.array([1.0, 0.97, 0.5, 0.4, 0.3])
            rel = base + 9
        beam_items.append(beams)
        beam_scores.append(scores)
        lat_items.append(lat)
        lat_sims.append(sims)
        relevant.append({int(rel)})
    cands = pool_candidates(
        np.array(beam_items),
        np.array(beam_scores, dtype=np.float32),
        np.array(lat_items),
        np.array(lat_sims, dtype=np.float32),
    )
    return cands, relevant


def test_gated_fusion_picks_the_informative_view():
    cands, relevant = _two_regime_set(seed=0)
    feats = prompt_features(cands)
    fixed = FixedBlendFusion().fit(cands, relevant, metric="hits", k=1)
    gate = GatedFusion().fit(cands, relevant, features=feats, metric="hits", k=1)

    test_cands, test_relevant = _two_regime_set(seed=1)
    test_feats = prompt_features(test_cands)
    fixed_hits = per_prompt_metric(fixed.fuse(test_cands, k=1)[0], test_relevant, "hits", 1).mean()
    gated_hits = per_prompt_metric(
        gate.fuse(test_cands, k=1, features=test_feats)[0], test_relevant, "hits", 1
    ).mean()
    assert fixed_hits < 0.75  # no single alpha serves both regimes
    assert gated_hits > 0.95
    # The gate round-trips through plain JSON-able data.
    again = fusion_from_dict(gate.to_dict())
    np.testing.assert_array_equal(
        again.alphas(test_cands, test_feats), gate.alphas(test_cands, test_feats)
    )
    assert again.fixed_alpha_ == gate.fixed_alpha_ is not None


def test_bad_input_raises():
    with pytest.raises(ValueError, match="mode"):
        rerank("both", beam_items=np.zeros((1, 1)), beam_scores=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="needs latents"):
        rerank("latent")
    with pytest.raises(ValueError, match="alpha"):
        FixedBlendFusion(1.5)
    with pytest.raises(ValueError, match="not fitted"):
        GatedFusion().alphas(_middle_example()[0], np.zeros((4, 6)))


def _per_prompt_metric_before(items, relevant, metric, k):
    """The loop per_prompt_metric ran before it used text2tracks.ranking_metrics (reference)."""
    out = np.zeros(items.shape[0])
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for b, rel in enumerate(relevant):
        hits = np.array([int(i) in rel for i in items[b, :k]], dtype=np.float64)
        if metric == "hits":
            out[b] = hits.max(initial=0.0)
        elif metric == "mrr":
            nz = np.flatnonzero(hits)
            out[b] = 1.0 / (nz[0] + 1) if nz.size else 0.0
        else:
            ideal = discounts[: min(len(rel), k)].sum()
            out[b] = (hits * discounts[: hits.size]).sum() / ideal if ideal > 0 else 0.0
    return out


@pytest.mark.parametrize("metric", ["hits", "ndcg", "mrr"])
def test_per_prompt_metric_is_unchanged_on_distinct_rankings(metric):
    rng = np.random.default_rng(7)
    # distinct items per row (what top_k returns), -1 padding, some prompts with no relevant item
    items = np.stack([rng.permutation(40)[:12] for _ in range(150)])
    items[::7, 9:] = -1
    relevant = [
        set(rng.choice(40, size=rng.integers(0, 8), replace=False).tolist()) for _ in range(150)
    ]
    assert any(not r for r in relevant)
    for k in (1, 5, 10, 12):
        np.testing.assert_allclose(
            per_prompt_metric(items, relevant, metric, k),
            _per_prompt_metric_before(items, relevant, metric, k),
        )
    with pytest.raises(ValueError, match="metric must be one of"):
        per_prompt_metric(items, relevant, "recall", 10)
