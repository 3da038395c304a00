"""Seeds that also read their CF item factors (``--seed-factors``, :mod:`text2tracks.seed_factors`):
the vector each seed gets, the checks, the learning rate of the new projection, training, and
the round trip through an artifact with and without ``cf/``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from semantic_ids.catalog import SemanticIDCatalog
from text2tracks.seed_embedding import SeedItemEmbedding, attach_seed_items
from text2tracks.seed_factors import (
    SEED_FACTORS_NAME,
    SEED_ITEM_FACTORS_NAME,
    install_seed_factors,
    seed_factor_projection,
)


def _standardised(f):
    f = np.asarray(f, dtype=np.float64)
    return (f - f.mean(0)) / f.std(0)


def test_a_seed_reads_its_id_tokens_plus_the_projected_standardised_factors():
    embedding = torch.nn.Embedding(20, 4)
    layer = SeedItemEmbedding(embedding, np.array([[3, 7], [4, 11], [5, 5]]))
    factors = np.array([[1.0, 10.0], [3.0, 30.0], [5.0, 20.0]])
    ids = torch.tensor([[2, 20, 22, 21]])
    plain = layer(ids)
    layer.set_factors(factors)  # a zero projection: the seeds read as before
    assert layer.factor_proj.weight.shape == (4, 2)
    torch.testing.assert_close(layer(ids), plain)
    weight = torch.arange(8, dtype=torch.float32).reshape(4, 2) / 8
    layer.set_factors(factors, weight)
    out = layer(ids)
    f = torch.as_tensor(_standardised(factors), dtype=torch.float32)
    torch.testing.assert_close(out[0, 0], plain[0, 0])  # an ordinary token is untouched
    for col, item in ((1, 0), (2, 2), (3, 1)):
        torch.testing.assert_close(out[0, col], plain[0, col] + weight @ f[item])


def test_bad_factors_and_models_without_seed_tokens_are_refused():
    layer = SeedItemEmbedding(torch.nn.Embedding(20, 4), np.array([[3, 7], [4, 11]]))
    with pytest.raises(ValueError, match=r"must be \(2, dim\), one row per catalogue item"):
        layer.set_factors(np.ones((3, 2)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        layer.set_factors(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ValueError, match=r"projection must be \(4, 2\)"):
        layer.set_factors(np.ones((2, 2)), torch.zeros(2, 4))
    model = _model()
    with pytest.raises(ValueError, match="one token per seed"):
        install_seed_factors(model, np.ones((6, 2)))
    assert seed_factor_projection(model) is None


def test_seed_factors_need_seeds_read_as_one_token():
    from text2tracks.modeling import ModelConfig
    from training.train_seq2seq import TrainConfig

    t5 = ModelConfig(encoder="t5")
    config = TrainConfig(artifact="a", playlists="p", model=t5, seed_prob=0.5, seed_factors=True)
    assert config.seed_encoding == "item"
    # the default: on wherever seeds are read as one token each
    assert TrainConfig(artifact="a", playlists="p", model=t5, seed_prob=0.5).seed_factors is True
    assert TrainConfig(artifact="a", playlists="p", model=t5).seed_factors is False
    codes = TrainConfig(artifact="a", playlists="p", model=t5, seed_prob=0.5, seed_encoding="codes")
    assert codes.seed_factors is False
    off = TrainConfig(artifact="a", playlists="p", model=t5, seed_prob=0.5, seed_factors=False)
    assert off.seed_factors is False
    with pytest.raises(ValueError, match="--seed-prob > 0"):
        TrainConfig(artifact="a", playlists="p", model=t5, seed_factors=True)
    with pytest.raises(ValueError, match="not codes"):
        TrainConfig(
            artifact="a", playlists="p", model=t5, seed_prob=0.5, seed_encoding="codes",
            seed_factors=True,
        )  # fmt: skip


def _catalog() -> SemanticIDCatalog:
    codes = np.array([[g, i, 0] for g in range(2) for i in range(3)], np.int64)
    return SemanticIDCatalog([f"g{g}:t{i}" for g in range(2) for i in range(3)], codes, (2, 3, 1))


def _model(seed: int = 0):
    from text2tracks.modeling import ModelConfig, build_seq2seq

    torch.manual_seed(seed)
    config = ModelConfig(
        encoder="t5", d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64,
        max_prompt_length=16, tokenizer="bytes",
    )  # fmt: skip
    model, _, _ = build_seq2seq(config, _catalog().level_sizes)
    return model


@pytest.mark.parametrize("encoding", ["item", "direct"])
def test_the_projection_trains_at_the_decoders_rate_and_gets_gradients(encoding):
    from training.optimizer import build_optimizer

    model = _model()
    tokens = np.array([[1, 2, 3]] * 6)  # any rows of the embedding: the factors are under test
    table = attach_seed_items(model, tokens, encoding)
    install_seed_factors(model, np.random.default_rng(0).normal(size=(6, 5)))
    proj = seed_factor_projection(model)
    optimizer = build_optimizer(model, lr=2e-3, weight_decay=0.0, encoder_lr=1e-4)
    rates = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert rates[id(proj)] == 2e-3
    own = model.get_encoder().block[0].layer[0].SelfAttention.q.weight
    assert rates[id(own)] == 1e-4  # the encoder's own weights keep theirs
    ids = torch.tensor([[5, 6, *table[[2, 4], 0].tolist()]])
    states = model.get_encoder()(input_ids=ids).last_hidden_state
    states[0, -1].sum().backward()
    assert proj.grad is not None and float(proj.grad.abs().sum()) > 0
    assert proj.grad.abs().sum(dim=0).gt(0).all()  # every factor dimension reaches it


def test_save_and_load_through_an_artifact_without_cf(tmp_path):
    """Saved by the API: the projection beside the model (not in model.safetensors), the
    factors in the model's folder since there is no cf/, and the loaded recommender answers
    exactly as the one in memory; the factors change the answer."""
    from safetensors import safe_open

    from text2tracks import Text2Tracks
    from text2tracks.modeling import ModelConfig, build_seq2seq

    torch.manual_seed(3)
    catalog = _catalog()
    config = ModelConfig(
        encoder="t5", d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64,
        max_prompt_length=16, tokenizer="bytes",
    )  # fmt: skip
    model, tokenizer, layout = build_seq2seq(config, catalog.level_sizes)
    attach_seed_items(model, layout.codes_to_token_ids(catalog.sid_codes), "item")
    rec = Text2Tracks(
        model, tokenizer, layout, catalog, max_seed_tracks=10, num_beams=6,
        model_config=config.to_dict(),
    )  # fmt: skip
    ask = dict(k=4, seed_tracks=["g0:t0", "g1:t2"], diversity=0, num_beams=6)
    without = rec.recommend_arrays(["mix"], **ask)
    factors = np.random.default_rng(1).normal(size=(len(catalog), 4)) * 3
    install_seed_factors(model, factors, torch.randn(32, 4) * 2)
    before = rec.recommend_arrays(["mix"], **ask)
    assert not np.array_equal(before[1], without[1])  # the factors are read
    rec.save_pretrained(tmp_path / "art")
    seq2seq = tmp_path / "art" / "seq2seq"
    assert (seq2seq / SEED_FACTORS_NAME).is_file() and (seq2seq / SEED_ITEM_FACTORS_NAME).is_file()
    with safe_open(str(seq2seq / "model.safetensors"), "pt") as f:
        assert not [k for k in f.keys() if "factor_proj" in k]
    loaded = Text2Tracks.from_pretrained(tmp_path / "art", device="cpu")
    torch.testing.assert_close(
        seed_factor_projection(loaded.model), seed_factor_projection(model), check_device=False
    )
    after = loaded.recommend_arrays(["mix"], **ask)
    assert np.array_equal(after[0], before[0])
    np.testing.assert_allclose(after[1], before[1], rtol=1e-5, atol=1e-5)
    # saved again without factors, the stale files go
    model.get_encoder().get_input_embeddings().factor_proj = None
    rec.save_pretrained(tmp_path / "art")
    assert not (seq2seq / SEED_FACTORS_NAME).exists()
    assert not (seq2seq / SEED_ITEM_FACTORS_NAME).exists()


def test_training_with_seed_factors_reads_cf_and_loads_back(tmp_path, monkeypatch):
    """``--seed-factors`` (with ``--seed-prior``) through the trainer: the projection and the
    prior train (they start at zero), are saved beside the model, and the artifact's loader
    re-installs them from ``cf/``."""
    from tiny_artifact import train_tiny_on_demo

    from text2tracks import Text2Tracks

    seeds = ("--seed-prob", "1", "--seed-factors", "--seed-prior", "nodes", "--members", "2")
    _, art = train_tiny_on_demo(tmp_path, *seeds)
    seq2seq = art / "seq2seq"
    assert (seq2seq / SEED_FACTORS_NAME).is_file()
    assert not (seq2seq / SEED_ITEM_FACTORS_NAME).exists()  # the artifact's cf/ holds them
    assert json.loads((seq2seq / "train_config.json").read_text())["config"]["seed_factors"]
    import text2tracks.storage as storage

    reads = []
    read = storage.catalogue_cf_factors
    monkeypatch.setattr(
        storage, "catalogue_cf_factors", lambda *a: reads.append(a) or read(*a)
    )  # fmt: skip
    rec = Text2Tracks.from_pretrained(art, device="cpu")
    assert len(reads) == 1  # cf/ read once for the model and its member
    member = rec.members[0].model
    torch.testing.assert_close(
        member.get_encoder().get_input_embeddings().factors,
        rec.model.get_encoder().get_input_embeddings().factors,
    )
    assert float(seed_factor_projection(member).detach().abs().sum()) > 0
    proj = seed_factor_projection(rec.model)
    assert proj is not None and proj.shape == (32, 8) and float(proj.detach().abs().sum()) > 0
    # --seed-prior: its weight trained from zero and came back with the model and the member
    from text2tracks.seed_prior import seed_prior_of

    for m in (rec.model, member):
        assert float(seed_prior_of(m).weight.detach().abs().sum()) > 0
    from text2tracks.seed_factors import catalogue_cf_factors

    layer = rec.model.get_encoder().get_input_embeddings()
    expected = _standardised(catalogue_cf_factors(art, rec.catalog))
    np.testing.assert_allclose(layer.factors.numpy(), expected, rtol=1e-4, atol=1e-4)
    # an artifact whose CF factors are gone cannot give the model its seeds': a clear error
    (art / "cf" / "item_factors.npy").unlink()
    from text2tracks.artifacts import ArtifactError

    with pytest.raises(ArtifactError, match="CF item factors"):
        Text2Tracks.from_pretrained(art, device="cpu")
