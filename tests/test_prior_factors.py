"""The seed prior's own CF factors (``--seed-prior-dim``, :mod:`text2tracks.prior_factors`): the
fit over the training playlists, the prior reading them, and the trainer saving them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_seed_prior import _FACTORS, _plain_model, _recommender, _seeded_model, _whole_id_priors

from semantic_ids.cf import CFConfig
from text2tracks.prior_factors import fit_prior_factors, training_matrix
from text2tracks.ragged import Ragged
from text2tracks.seed_factors import SEED_FACTORS_NAME
from text2tracks.seed_prior import install_seed_prior, seed_prior_of

# a third dimension the seeds' own two-dimensional factors (_FACTORS) do not have
_OWN = np.array(
    [[1.0, 0, 2], [1, 0, -1], [1, 0, 0.5], [-1, 1, 0], [-1, -1, 1], [-1, 0.5, -2]], np.float32
)


def _cf_artifact(tmp_path, **config):
    (tmp_path / "cf").mkdir()
    payload = {"config": CFConfig(**config).__dict__}
    (tmp_path / "cf" / "config.json").write_text(json.dumps(payload), encoding="utf-8")
    return tmp_path


def _two_blocks(n_playlists: int = 60):
    """Playlists that each hold four of items 0-9 or four of items 10-19, never both."""
    rng = np.random.default_rng(0)
    rows = []
    for p in range(n_playlists):
        block = 10 * (p % 2)
        rows.append((block + rng.choice(10, size=4, replace=False)).tolist())
    return Ragged.from_rows(rows)


def test_the_training_matrix_is_binary_one_row_per_playlist():
    matrix = training_matrix(Ragged.from_rows([[0, 2, 2], [1], []]), n_items=4)
    assert matrix.shape == (3, 4)
    np.testing.assert_array_equal(matrix.toarray(), [[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]])


def test_the_fit_uses_the_artifacts_settings_at_the_asked_rank_and_keeps_the_blocks_apart(
    tmp_path,
):
    art = _cf_artifact(tmp_path, factors=2, iterations=10, weighting="none", seed=3)
    relevant = _two_blocks()
    factors = fit_prior_factors(art, relevant, n_items=20, dim=6, num_threads=1)
    assert factors.shape == (20, 6) and factors.dtype == np.float32
    assert np.isfinite(factors).all()
    np.testing.assert_array_equal(
        factors, fit_prior_factors(art, relevant, n_items=20, dim=6, num_threads=1)
    )
    # block 0's mean factor (a fold-in's query) scores its own block's items above the other's
    scores = factors @ factors[:10].mean(axis=0)
    assert scores[:10].min() > scores[10:].max()
    with pytest.raises(ValueError, match="at least 1"):
        fit_prior_factors(art, relevant, n_items=20, dim=0)


def test_the_fit_refuses_an_artifact_whose_cf_is_not_als(tmp_path):
    art = _cf_artifact(tmp_path, model="bpr")
    with pytest.raises(ValueError, match="bpr"):
        fit_prior_factors(art, _two_blocks(), n_items=20, dim=4)


def test_the_prior_reads_its_own_factors_for_the_seeds_and_the_ids_and_saves_them(tmp_path):
    """A whole ID's prior is ``m^T W g_i`` over the prior's own factors ``g`` (three
    dimensions, where the seeds' input reads two), with learned factors on top, and the factors
    save and load with the same answers."""
    from text2tracks import Text2Tracks

    model, tokenizer, layout, catalog, config, table = _seeded_model(4)
    weight = torch.tensor([[1.0, 0.5, 0], [-0.5, 2.0, 1], [0, 0.3, -1]])
    prior = install_seed_prior(
        model, weight, layout=layout, prior_factors=_OWN, learn_factors=True, count_scale=True
    )
    assert prior.factor_delta.shape == (len(catalog), 3)
    model.eval()
    ids = torch.tensor([[5, 6, table[1, 0], table[5, 0]]])
    g = torch.from_numpy(_OWN)
    total = _whole_id_priors(model, prior, layout, catalog, ids)
    torch.testing.assert_close(total, g @ ((g[1] + g[5]) / 2 @ weight))
    # not what the seeds' own factors would give
    f = model.get_encoder().get_input_embeddings().factors
    assert f.shape[1] == 2 and not torch.allclose(total, f @ ((f[1] + f[5]) / 2 @ weight[:2, :2]))

    rec = _recommender(model, tokenizer, layout, catalog, config)
    ask = dict(k=4, seed_tracks=["g0:t1", "g1:t2"], diversity=0, num_beams=6)
    before = rec.recommend_arrays(["mix"], **ask)
    rec.save_pretrained(tmp_path / "art")
    loaded = Text2Tracks.from_pretrained(tmp_path / "art", device="cpu")
    torch.testing.assert_close(seed_prior_of(loaded.model).own_factors, g)
    after = loaded.recommend_arrays(["mix"], **ask)
    assert np.array_equal(after[0], before[0]) and np.allclose(after[1], before[1], atol=1e-5)


def test_own_factors_must_cover_the_catalogue_and_need_seeds_that_read_factors():
    from training.train_seq2seq import TrainConfig

    model, _, layout, _, _, _ = _seeded_model(5)
    with pytest.raises(ValueError, match="one row per catalogue item"):
        install_seed_prior(model, layout=layout, prior_factors=_OWN[:4])
    plain = _plain_model(5)[0]
    with pytest.raises(ValueError, match="seed prior reads CF factors"):
        install_seed_prior(plain, layout=layout, prior_factors=_OWN)
    with pytest.raises(ValueError, match="--seed-prior-dim"):
        TrainConfig(artifact="a", playlists="p", seed_prior_dim=16)
    with pytest.raises(ValueError, match="seed_prior_dim must be >= 0"):
        TrainConfig(artifact="a", playlists="p", seed_prob=0.5, seed_prior_dim=-1)
    assert _FACTORS.shape[1] == 2  # the seeds' input keeps the artifact's factors


def test_the_trainer_fits_the_priors_factors_and_the_model_loads_with_them(tmp_path):
    from safetensors import safe_open
    from tiny_artifact import train_tiny_on_demo

    from text2tracks import Text2Tracks

    _, art = train_tiny_on_demo(
        tmp_path, "--members", "1", "--seed-prob", "0.5", "--seed-prior-dim", "12"
    )
    with safe_open(str(art / "seq2seq" / SEED_FACTORS_NAME), "pt") as f:
        own = f.get_tensor("prior_item_factors")
        assert f.get_tensor("prior_weight").shape == (12, 12)
        assert f.get_tensor("weight").shape[1] == 8  # the seeds' input: the artifact's 8
    rec = Text2Tracks.from_pretrained(art, device="cpu")
    assert own.shape == (len(rec.catalog.item_ids), 12)
    torch.testing.assert_close(own.mean(0), torch.zeros(12), atol=1e-4, rtol=0)  # standardised
    seeds = list(rec.catalog.item_ids[:3])
    answer = rec.recommend("road trip", k=5, seed_tracks=seeds)
    assert len(answer) == 5 and not set(seeds) & {a.track_id for a in answer}


def test_the_foldin_start_is_a_scaled_ridge_inverse_that_spreads_scores_as_asked():
    from text2tracks.seed_prior import foldin_weight

    rng = np.random.default_rng(1)
    f = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5))  # correlated dimensions
    f = (f - f.mean(0)) / f.std(0)
    w = foldin_weight(f, spread=2.0).astype(np.float64)
    np.testing.assert_allclose(w, w.T, rtol=1e-5, atol=1e-6)
    inverse = np.linalg.inv(f.T @ f / 200 + 0.1 * np.eye(5))
    scale = w[0, 0] / inverse[0, 0]
    np.testing.assert_allclose(w, scale * inverse, rtol=1e-4, atol=1e-6)
    assert scale > 0
    # half the spread asked, half the weight
    np.testing.assert_allclose(foldin_weight(f, spread=1.0), w / 2, rtol=1e-5, atol=1e-7)


def test_the_prior_can_start_as_a_foldin_over_its_own_factors():
    from text2tracks.seed_prior import foldin_weight
    from training.train_seq2seq import TrainConfig

    model, _, layout, _, _, _ = _seeded_model(6)
    prior = install_seed_prior(model, layout=layout, prior_factors=_OWN, weight_init="foldin")
    np.testing.assert_allclose(prior.weight.detach().numpy(), foldin_weight(_OWN), rtol=1e-6)
    zero = install_seed_prior(_seeded_model(6)[0], layout=layout)
    assert float(zero.weight.detach().abs().sum()) == 0
    with pytest.raises(ValueError, match="weight_init must be"):
        install_seed_prior(_seeded_model(6)[0], layout=layout, weight_init="random")
    with pytest.raises(ValueError, match="seed_prior_init must be one of"):
        TrainConfig(artifact="a", playlists="p", seed_prob=0.5, seed_prior_init="random")
    with pytest.raises(ValueError, match="--seed-prior-init"):
        TrainConfig(artifact="a", playlists="p", seed_prior_init="foldin")


def test_a_frozen_foldin_weight_stays_while_the_count_scale_trains():
    from text2tracks.code_search import model_eos_token_id
    from text2tracks.seed_prior import foldin_weight, prior_rows
    from training.train_seq2seq import TrainConfig

    model, _, layout, catalog, _, table = _seeded_model(7)
    prior = install_seed_prior(
        model,
        layout=layout,
        prior_factors=_OWN,
        weight_init="foldin",
        train_weight=False,
        count_scale=True,
    )
    assert not prior.weight.requires_grad
    model.train()
    ids = torch.tensor([[5, 6, table[1, 0], table[5, 0]]])
    eos = model_eos_token_id(model)
    labels = np.concatenate([layout.codes_to_token_ids(catalog.sid_codes[[2]]), [[eos]]], 1)
    labels = torch.as_tensor(labels, dtype=torch.long)
    with prior_rows(model, torch.zeros(1, dtype=torch.long), labels):
        model(input_ids=ids, labels=labels).loss.backward()
    assert prior.weight.grad is None
    assert float(prior.count_log_scale.grad.abs().sum()) > 0
    np.testing.assert_allclose(prior.weight.detach().numpy(), foldin_weight(_OWN), rtol=1e-6)
    with pytest.raises(ValueError, match="--seed-prior-init foldin"):
        TrainConfig(artifact="a", playlists="p", seed_prob=0.5, seed_prior_freeze_weight=True)
