"""The anchored edit (``HybridSettings.edit_method="anchor"``): the liked tracks' latent and the
prompt's samples, each divided by the spread of its similarities over the catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from text2tracks.latent import anchored_latents
from text2tracks.latent_search import catalogue_moments, catalogue_moments_of, similarity_spread


def _catalogue(seed: int = 0, n: int = 300, dim: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # unequal axes, so that the spread of a query's similarities depends on its direction
    return (rng.normal(size=(n, dim)) * np.linspace(0.2, 2.0, dim)).astype(np.float32)


def _z(factors: np.ndarray, query: np.ndarray) -> np.ndarray:
    sims = factors.astype(np.float64) @ query.astype(np.float64)
    return (sims - sims.mean()) / sims.std()


def test_moments_and_spread_are_the_catalogues_own():
    factors = _catalogue()
    mean, cov = catalogue_moments(factors)
    np.testing.assert_allclose(mean, factors.mean(0), rtol=1e-6)
    queries = np.random.default_rng(1).normal(size=(2, 3, factors.shape[1]))
    spread = similarity_spread(queries, cov)
    assert spread.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            expected = (factors.astype(np.float64) @ queries[i, j]).std()
            assert spread[i, j] == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="n_items >= 1"):
        catalogue_moments(np.zeros((0, 4)))


def test_moments_are_computed_once_per_array():
    factors = _catalogue()
    first = catalogue_moments_of(factors)
    assert catalogue_moments_of(factors) is first
    other = factors.copy()
    other[0] += 10
    assert catalogue_moments_of(other) is not first
    assert not np.allclose(catalogue_moments_of(other)[1], first[1])


def test_the_blend_ranks_by_the_weighted_sum_of_the_two_views_z_scores():
    factors = _catalogue()
    rng = np.random.default_rng(2)
    seeds = rng.normal(size=(2, factors.shape[1]))
    prompt = rng.normal(size=(2, 4, factors.shape[1])) * 3.0  # another scale than the seeds
    _, cov = catalogue_moments(factors)
    for strength in (0.0, 0.3, 0.7, 1.0):
        latents = anchored_latents(seeds, prompt, strength, cov)
        assert latents.shape == prompt.shape and latents.dtype == np.float32
        for row in range(2):
            pooled = factors.astype(np.float64) @ latents[row].astype(np.float64).mean(0)
            wanted = (1 - strength) * _z(factors, seeds[row]) + strength * _z(
                factors, prompt[row].mean(0)
            )
            # equal up to one constant per prompt: the same ranking, the same gaps
            np.testing.assert_allclose(pooled - wanted, (pooled - wanted).mean(), atol=1e-4)
    # the two ends are each view's own ranking
    end0 = factors @ anchored_latents(seeds, prompt, 0.0, cov)[0].mean(0)
    end1 = factors @ anchored_latents(seeds, prompt, 1.0, cov)[0].mean(0)
    np.testing.assert_array_equal(np.argsort(-end0), np.argsort(-(factors @ seeds[0])))
    np.testing.assert_array_equal(np.argsort(-end1), np.argsort(-(factors @ prompt[0].mean(0))))


def test_bad_strength_or_shapes_are_refused():
    cov = np.eye(3)
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\]"):
        anchored_latents(np.ones((1, 3)), np.ones((1, 2, 3)), 1.5, cov)
    with pytest.raises(ValueError, match="need seed_latents"):
        anchored_latents(np.ones((2, 3)), np.ones((1, 2, 3)), 0.5, cov)
    with pytest.raises(ValueError, match="need seed_latents"):
        anchored_latents(np.ones((1, 3)), np.ones((1, 3)), 0.5, cov)
