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


def _pooled(beams, beam_scores, latent, latent_scores):
    """Per-prompt rows of both views as one :class:`Candidates` table."""
    return pool_candidates(
        np.array(beams),
        np.array(beam_scores, dtype=np.float32),
        np.array(latent),
        np.array(latent_scores, dtype=np.float32),
    )


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
    return _pooled(beams, beam_scores, latent, latent_scores), relevant


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


def test_the_list_mixture_reads_raw_similarities_over_the_latents_own_list():
    from text2tracks.candidate_pool import Candidates

    # item 0 is the beam's alone, though its latent similarity (exact, 5.0) is the highest
    cands = Candidates(
        items=np.array([[0, 1, 2]]),
        generative=np.log(np.array([[0.6, 0.4, np.nan]])),
        latent=np.array([[5.0, 1.0, 3.0]]),
        beam_rank=np.array([[0, 1, -1]]),
        latent_rank=np.array([[-1, 1, 0]]),
    )
    p_latent = np.exp(0.5 * np.array([1.0, 3.0]))
    p_latent /= p_latent.sum()
    fused = blend(cands, 0.25, "mixture-list", (1.0, 0.5))
    expected = np.log(0.25 * np.array([0.6, 0.4, 0.0]) + 0.75 * np.array([0.0, *p_latent]))
    np.testing.assert_allclose(fused[0], expected, rtol=1e-6)
    # the z-scored mixture reads item 0's similarity: it leads the latent view there
    assert np.argmax(blend(cands, 0.0, "mixture")[0]) == 0


def _sure_and_unsure_latents(n: int = 200):
    """Every beam has the same shape (its top item at probability ~0.5) and every latent list
    the same shape up to scale: 0.01x on the first half of the prompts (the latent is unsure:
    the relevant item is the beam's first), 1x on the second (the latent stands out: the
    relevant item is its first, absent from the beam). Z-scores make the two halves alike; raw
    similarities do not."""
    beams, beam_scores, latent, latent_scores, relevant = [], [], [], [], []
    shape = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    for i in range(n):
        base = 100 * i
        beams.append(base + np.arange(8))
        beam_scores.append(np.log([0.5, 0.2, 0.1, 0.08, 0.05, 0.03, 0.02, 0.02]))
        latent.append(base + np.arange(8, 13))
        sure = i >= n // 2
        latent_scores.append(shape * (1.0 if sure else 0.01))
        relevant.append({base + 8} if sure else {base})
    return _pooled(beams, beam_scores, latent, latent_scores), relevant


def test_the_mixture_fit_picks_the_latent_reading_that_serves_both_halves():
    from text2tracks.candidate_pool import MIXTURE_BEAM_TEMPERATURES, MIXTURE_LIST_SPREADS, MIXTURES

    cands, relevant = _sure_and_unsure_latents()

    def hits(fusion) -> float:
        return per_prompt_metric(fusion.fuse(cands, k=1)[0], relevant, "hits", 1).mean()

    zscored = FixedBlendFusion(normalisation="mixture").fit(cands, relevant, metric="hits", k=1)
    both = FixedBlendFusion(normalisation="mixture").fit(
        cands, relevant, metric="hits", k=1, readings=MIXTURES
    )
    assert hits(zscored) <= 0.5
    assert both.normalisation == "mixture-list" and hits(both) == 1.0
    # each reading's temperatures were scored under its own name
    listed = [key for key in both.temperature_scores_ if key.startswith("mixture-list:")]
    assert len(listed) == len(MIXTURE_BEAM_TEMPERATURES) * len(MIXTURE_LIST_SPREADS)
    assert len(both.temperature_scores_) == len(listed) + len(MIXTURE_TEMPERATURES)
    again = fusion_from_dict(both.to_dict())
    assert again.normalisation == "mixture-list" and again.temperatures == both.temperatures
    np.testing.assert_array_equal(again.fuse(cands, k=3)[0], both.fuse(cands, k=3)[0])
    with pytest.raises(ValueError, match="readings"):
        FixedBlendFusion().fit(cands, relevant, readings=MIXTURES)
    with pytest.raises(ValueError, match="readings"):
        FixedBlendFusion(normalisation="mixture").fit(cands, relevant, readings=("zscore",))
