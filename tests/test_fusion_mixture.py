"""The mixture blend: beam and latent read as two distributions over the candidates and mixed."""

from __future__ import annotations

import numpy as np
import pytest

from text2tracks.candidate_pool import MIXTURE_TEMPERATURES
from text2tracks.rerank import (
    FixedBlendFusion,
    GatedFusion,
    blend,
    fusion_from_dict,
    per_prompt_metric,
    pool_candidates,
    top_k,
)


def _two_items_and_a_latent_only_one():
    """Beam: items 0 and 1 at probabilities 0.6 / 0.4; latent: items 1 and 2."""
    cands = pool_candidates(
        np.array([[0, 1]]),
        np.log(np.array([[0.6, 0.4]], dtype=np.float32)),
        np.array([[2, 1]]),
        np.array([[3.0, 1.0]], dtype=np.float32),
    )
    return cands


def test_the_mixture_is_the_log_of_the_two_softmaxes_mixed():
    cands = _two_items_and_a_latent_only_one()
    np.testing.assert_array_equal(cands.items[0], [0, 1, 2])
    # the latent's z-scores over its two items are -1 (item 1) and +1 (item 2); item 0 has none
    p_latent = np.exp([0.0, -2.0, 2.0]) * [0, 1, 1]
    p_latent /= p_latent.sum()
    p_beam = np.array([0.6, 0.4, 0.0])
    fused = blend(cands, 0.25, "mixture", (1.0, 2.0))
    np.testing.assert_allclose(fused[0], np.log(0.25 * p_beam + 0.75 * p_latent), rtol=1e-6)
    # a beam temperature of 2 sharpens the beam: 0.6^2 / (0.6^2 + 0.4^2)
    sharp = blend(cands, 1.0, "mixture", (2.0, 1.0))
    np.testing.assert_allclose(np.exp(sharp[0, :2]), [0.36 / 0.52, 0.16 / 0.52], rtol=1e-5)


def test_pure_alphas_keep_each_views_order():
    cands = _two_items_and_a_latent_only_one()
    beam_first, _ = top_k(cands, blend(cands, 1.0, "mixture"), 3)
    latent_first, _ = top_k(cands, blend(cands, 0.0, "mixture"), 3)
    # alpha 1: the beam's order, the latent-only item last (its latent score breaks no tie)
    assert beam_first[0].tolist() == [0, 1, 2]
    # alpha 0: the latent's order, the beam-only item last, ordered by the beam
    assert latent_first[0].tolist() == [2, 1, 0]


def _confident_and_unsure(n: int = 200, seed: int = 0):
    """Confident prompts: the beam puts nearly all its mass on the relevant item, the latent list
    misses it. Unsure prompts: the beam is flat and misses the relevant item, the latent list has
    it first. Per prompt, both views rank the same way in either regime, so a blend of scores
    normalised per prompt cannot tell the two apart; the beam's own probabilities can."""
    rng = np.random.default_rng(seed)
    confident = rng.random(n) < 0.5
    beams, beam_scores, latent, latent_scores, relevant = [], [], [], [], []
    for i in range(n):
        base = 100 * i
        beams.append(base + np.arange(8))
        latent.append(base + np.array([8, 9, 10, 11, 12]))
        latent_scores.append(np.sort([1.0, 0.8, 0.6, 0.4, 0.2] + rng.normal(0, 0.01, 5))[::-1])
        if confident[i]:
            beam_scores.append([-0.05, *(-5.0 - 0.1 * np.arange(7))])
            relevant.append({base})
        else:
            beam_scores.append(-2.0 - 0.02 * np.arange(8.0))
            relevant.append({base + 8})
    cands = pool_candidates(
        np.array(beams),
        np.array(beam_scores, dtype=np.float32),
        np.array(latent),
        np.array(latent_scores, dtype=np.float32),
    )
    return cands, relevant


def test_a_fitted_mixture_serves_confident_and_unsure_prompts_where_zscores_cannot():
    cands, relevant = _confident_and_unsure(seed=0)
    test_cands, test_relevant = _confident_and_unsure(seed=1)

    def hits(fusion) -> float:
        return per_prompt_metric(fusion.fuse(test_cands, k=1)[0], test_relevant, "hits", 1).mean()

    zscore = FixedBlendFusion().fit(cands, relevant, metric="hits", k=1)
    mixture = FixedBlendFusion(normalisation="mixture").fit(cands, relevant, metric="hits", k=1)
    assert hits(zscore) <= 0.6
    assert hits(mixture) == 1.0
    assert 0 < mixture.alpha < 1
    # every temperature pair of the grid was scored, the kept one among the best
    assert len(mixture.temperature_scores_) == len(MIXTURE_TEMPERATURES)
    kept = "{:g},{:g}".format(*mixture.temperatures)
    assert mixture.temperature_scores_[kept] == max(mixture.temperature_scores_.values())
    # saved and read back as plain data, it ranks the same
    again = fusion_from_dict(mixture.to_dict())
    assert again.temperatures == mixture.temperatures and again.normalisation == "mixture"
    np.testing.assert_array_equal(again.fuse(test_cands, k=3)[0], mixture.fuse(test_cands, k=3)[0])


def test_an_old_fusion_file_reads_with_unit_temperatures():
    payload = {"kind": "fixed", "alpha": 0.7, "normalisation": "zscore", "diversity": 0.5}
    fusion = fusion_from_dict(payload)
    assert fusion.temperatures == (1.0, 1.0) and fusion.alpha == 0.7


def test_bad_mixture_settings_are_named():
    with pytest.raises(ValueError, match="temperatures"):
        FixedBlendFusion(normalisation="mixture", temperatures=(1.0, 0.0))
    with pytest.raises(ValueError, match="temperatures"):
        blend(_two_items_and_a_latent_only_one(), 0.5, "mixture", (1.0,))
    with pytest.raises(ValueError, match="a mixture is a FixedBlendFusion"):
        GatedFusion(normalisation="mixture")
