"""text2tracks.hybrid: settings, the fusion file, catalogue-order factors, and fitting the fusion
on a synthetic case whose right answer is known (one view always right, the other always wrong)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from text2tracks.hybrid import (
    DEFAULT_ALPHA,
    FUSION_NAME,
    HybridSettings,
    catalogue_factors,
    default_fusion,
    fit_fusion,
    load_fusion,
    save_fusion,
)
from text2tracks.rerank import FixedBlendFusion

N_ITEMS, DIM, N_PROMPTS = 30, 6, 10


def test_settings_check_their_fields_and_unknown_keys():
    assert HybridSettings.from_dict({"n_samples": 2}) == HybridSettings(n_samples=2)
    with pytest.raises(ValueError, match="unknown HybridSettings keys: \\['colour'\\]"):
        HybridSettings.from_dict({"colour": 1})
    for bad in (
        dict(n_samples=0),
        dict(latent_k=True),
        dict(pool="median"),
        dict(seed_method="random"),
    ):
        with pytest.raises(ValueError, match="HybridSettings"):
            HybridSettings(**bad)


def test_default_fusion_is_an_even_zscore_blend():
    fusion = default_fusion()
    assert (fusion.alpha, fusion.normalisation) == (DEFAULT_ALPHA, "zscore") == (0.5, "zscore")


def test_fusion_file_round_trips_and_names_damage(tmp_path):
    assert load_fusion(tmp_path) == (None, HybridSettings(), {})
    settings = HybridSettings(n_samples=3, beam_candidates=12, latent_k=30, pool="mean")
    save_fusion(tmp_path, FixedBlendFusion(0.3, "rank"), settings, {"hits": np.float32(0.25)})
    fusion, loaded, validation = load_fusion(tmp_path)
    assert (fusion.alpha, fusion.normalisation) == (0.3, "rank")
    assert loaded == settings and validation == {"hits": 0.25}
    payload = json.loads((tmp_path / FUSION_NAME).read_text())
    for change, message in (
        ({"format_version": 99}, "format version 99"),
        ({"settings": {"colour": 1}}, "unknown HybridSettings keys"),
        ({"kind": "gated", "feature_names": ["x"]}, "fitted on features"),
    ):
        (tmp_path / FUSION_NAME).write_text(json.dumps({**payload, **change}))
        with pytest.raises(ValueError, match=f"damaged fusion file .*{FUSION_NAME}: .*{message}"):
            load_fusion(tmp_path)
    with pytest.raises(ValueError, match="fusion must be"):
        save_fusion(tmp_path, "alpha=0.5", settings)


def test_catalogue_factors_are_mapped_by_id():
    factors = np.arange(12, dtype=np.float64).reshape(4, 3)
    out = catalogue_factors(factors, ["a", "b", "c", "d"], ["c", "a"])
    assert out.dtype == np.float32 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, factors[[2, 0]])
    with pytest.raises(ValueError, match="1 catalogue tracks have no CF factor \\(first: 'z'\\)"):
        catalogue_factors(factors, ["a", "b", "c", "d"], ["a", "z"])
    with pytest.raises(ValueError, match="to match the vocabulary"):
        catalogue_factors(factors, ["a", "b"], ["a"])


def _synthetic(beam_right: bool):
    """Prompt j's one relevant item is j. The beam returns it first (or never); the latent
    points exactly at it (or at another item)."""
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(N_ITEMS, DIM))
    factors /= np.linalg.norm(factors, axis=1, keepdims=True)
    prompts = [f"p{j}" for j in range(N_PROMPTS)]

    def beam(batch, n):
        rows = []
        for prompt in batch:
            j = int(prompt[1:])
            first = j if beam_right else j + N_PROMPTS
            rows.append([(first + i) % N_ITEMS for i in range(n)])
        items = np.array(rows)
        return items, -0.1 * np.arange(n)[None, :].repeat(len(batch), 0)

    def sample(batch):
        targets = [int(p[1:]) + (2 * N_PROMPTS if beam_right else 0) for p in batch]
        return 3.0 * factors[np.array(targets) % N_ITEMS][:, None, :]

    return prompts, [{j} for j in range(N_PROMPTS)], beam, sample, factors.astype(np.float32)


@pytest.mark.parametrize("kind", ["fixed", "mixture"])
@pytest.mark.parametrize("beam_right", [True, False])
def test_fit_fusion_finds_the_view_that_is_right(beam_right, kind):
    prompts, relevant, beam, sample, factors = _synthetic(beam_right)
    settings = HybridSettings(n_samples=1, beam_candidates=5, latent_k=5)
    fusion, summary = fit_fusion(
        prompts,
        relevant,
        beam,
        sample,
        factors,
        settings=settings,
        kind=kind,
        metric="hits",
        k=1,
        batch_size=4,
    )
    assert fusion.normalisation == ("mixture" if kind == "mixture" else "zscore")
    assert summary["temperatures"] == list(fusion.temperatures)
    scores = summary["hits@1"]
    assert (scores["generative"], scores["latent"]) == ((1.0, 0.0) if beam_right else (0.0, 1.0))
    assert scores["fused"] == 1.0
    assert fusion.alpha >= 0.5 if beam_right else fusion.alpha <= 0.5
    assert summary["n_prompts"] == N_PROMPTS and summary["alpha"] == fusion.alpha
    assert max(summary["alpha_grid_scores"]) == 1.0 and min(summary["alpha_grid_scores"]) == 0.0


def test_fit_fusion_checks_its_arguments():
    prompts, relevant, beam, sample, factors = _synthetic(True)
    with pytest.raises(ValueError, match="kind must be one of"):
        fit_fusion(prompts, relevant, beam, sample, factors, kind="magic")
    with pytest.raises(ValueError, match="metric must be one of"):
        fit_fusion(prompts, relevant, beam, sample, factors, metric="auc")
    with pytest.raises(ValueError, match="need as many relevant sets as prompts"):
        fit_fusion(prompts, relevant[:3], beam, sample, factors)
