"""Tests for text2tracks.modeling: tiny models built from configs, nothing downloaded."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from text2tracks.modeling import (
    SID_LAYOUT_NAME,
    ModelConfig,
    build_seq2seq,
    load_seq2seq,
    save_seq2seq,
    sid_token_indices,
)

LEVEL_SIZES = (4, 4, 3)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from threads, and lose a lot on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY = ModelConfig(
    d_model=32,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
    d_ff=64,
    dropout=0.0,
    tokenizer="bytes",
)
TINY_SUBWORD = dataclasses.replace(TINY, tokenizer="subword", subword_vocab_size=300)
TITLES = ["chill vibes", "chill", "workout", "workout hits", "rap caviar", "rap"] * 3


def _batch(tokenizer, layout):
    enc = tokenizer(["chill vibes 🔥", "Лето 2019"], padding=True, return_tensors="pt")
    codes = torch.tensor([[1, 2, 0], [3, 0, 2]])
    sid = codes + torch.tensor(layout.offsets)
    labels = torch.cat([sid, torch.full((2, 1), tokenizer.eos_token_id)], dim=1)
    return enc["input_ids"], enc["attention_mask"], labels


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        ModelConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="pretrained base"):
        ModelConfig(lora=True)
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(dropout=1.5)
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({"d_model": 32, "bogus": 1})
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
    assert ModelConfig(lora_target_modules="q, v,o").lora_target_modules == ("q", "v", "o")


def test_build_adds_contiguous_blocks_and_resizes():
    model, tokenizer, layout = build_seq2seq(TINY, LEVEL_SIZES)
    assert layout.level_sizes == LEVEL_SIZES
    # each level a contiguous block right after the previous one, all inside the embedding matrix
    for level in range(1, len(LEVEL_SIZES)):
        assert layout.offsets[level] == layout.offsets[level - 1] + LEVEL_SIZES[level - 1]
    assert layout.end_id == len(tokenizer)
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    assert model.get_output_embeddings().out_features == len(tokenizer)
    for level, size in enumerate(LEVEL_SIZES):
        for code in range(size):
            token_id = tokenizer.convert_tokens_to_ids(f"<sid_{level}_{code}>")
            assert token_id == layout.offsets[level] + code
    gen = model.generation_config
    assert gen.max_new_tokens == len(LEVEL_SIZES) + 1
    assert gen.eos_token_id == tokenizer.eos_token_id
    assert gen.decoder_start_token_id == tokenizer.pad_token_id


def test_byte_tokenizer_reads_any_title():
    _, tokenizer, _ = build_seq2seq(TINY, LEVEL_SIZES)
    for title in ("🔥🔥🔥", "夏の歌", "Лето", "café  del mar"):
        ids = tokenizer(title)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == title


def test_save_load_identical_logits(tmp_path):
    torch.manual_seed(0)
    model, tokenizer, layout = build_seq2seq(TINY, LEVEL_SIZES)
    model.eval()
    input_ids, attention_mask, labels = _batch(tokenizer, layout)
    with torch.no_grad():
        before = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    save_seq2seq(model, tokenizer, layout, tmp_path / "m", TINY)
    names = {p.name for p in (tmp_path / "m").iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", SID_LAYOUT_NAME} <= names
    assert not any(n.endswith((".bin", ".pkl", ".pt")) for n in names)
    loaded, tok2, layout2 = load_seq2seq(tmp_path / "m")
    assert layout2 == layout
    assert tok2(["chill vibes 🔥"])["input_ids"] == tokenizer(["chill vibes 🔥"])["input_ids"]
    with torch.no_grad():
        after = loaded(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    torch.testing.assert_close(before, after)
    assert loaded.generation_config.max_new_tokens == len(LEVEL_SIZES) + 1
    info = json.loads((tmp_path / "m" / "text2tracks_seq2seq.json").read_text())
    assert ModelConfig.from_dict(info["model_config"]) == TINY


@pytest.fixture()
def pretrained_base(tmp_path):
    """A tiny T5 built from a config and saved locally: stands in for a hub model."""
    from transformers import ByT5Tokenizer, T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        decoder_start_token_id=0,
        dropout_rate=0.0,
    )
    path = tmp_path / "base"
    T5ForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_pretrained_base_full_finetune_roundtrip(pretrained_base, tmp_path):
    config = ModelConfig(base=pretrained_base)
    model, tokenizer, layout = build_seq2seq(config, LEVEL_SIZES)
    assert model.get_input_embeddings().num_embeddings >= layout.end_id
    save_seq2seq(model.eval(), tokenizer, layout, tmp_path / "full", config)
    loaded, _, layout2 = load_seq2seq(tmp_path / "full")
    assert layout2 == layout


def test_lora_trains_new_token_rows_and_roundtrips(pretrained_base, tmp_path):
    config = ModelConfig(base=pretrained_base, lora=True, lora_r=4, lora_alpha=8, lora_dropout=0.0)
    model, tokenizer, layout = build_seq2seq(config, LEVEL_SIZES)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trainable)
    assert any("trainable_tokens" in n for n in trainable)
    # only adapters and the token rows train: the base's dense weights are frozen
    assert not any(
        n.endswith("shared.weight") or ".q.weight" in n and "lora" not in n for n in trainable
    )
    input_ids, attention_mask, labels = _batch(tokenizer, layout)
    sid_rows = torch.tensor(sid_token_indices(layout))
    before_rows = model.get_base_model().get_input_embeddings()(sid_rows).detach().clone()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    first = None
    for _ in range(40):
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        first = first if first is not None else loss.item()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < first
    after_rows = model.get_base_model().get_input_embeddings()(sid_rows).detach()
    assert not torch.allclose(before_rows, after_rows), "the new token rows did not train"
    model.eval()
    with torch.no_grad():
        before = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    save_seq2seq(model, tokenizer, layout, tmp_path / "lora", config)
    names = {p.name for p in (tmp_path / "lora").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", SID_LAYOUT_NAME} <= names
    loaded, _, layout2 = load_seq2seq(tmp_path / "lora")
    assert layout2 == layout
    assert not hasattr(loaded, "peft_config"), "load_seq2seq returns the merged plain model"
    with torch.no_grad():
        after = loaded(input_ids=input_ids, attention_mask=attention_mask, labels=labels).logits
    torch.testing.assert_close(before, after, atol=1e-4, rtol=1e-4)


def test_subword_tokenizer_learns_words_and_reads_any_title(tmp_path):
    model, tokenizer, layout = build_seq2seq(TINY_SUBWORD, LEVEL_SIZES, prompt_texts=TITLES)
    ids = tokenizer("chill workout")["input_ids"]
    byte_ids = build_seq2seq(TINY, LEVEL_SIZES)[1]("chill workout")["input_ids"]
    assert ids[-1] == tokenizer.eos_token_id
    assert len(ids) < len(byte_ids) / 2  # frequent words became single tokens
    for text in ("Лето 2019 🔥", "夏の歌", "never seen before"):
        enc = tokenizer(text)["input_ids"]
        assert tokenizer.unk_token_id not in enc
        assert tokenizer.decode(enc, skip_special_tokens=True).strip() == text
    # the ID tokens follow the learned vocabulary in contiguous blocks, and survive a round trip
    assert layout.offsets[0] == len(tokenizer) - sum(LEVEL_SIZES)
    save_seq2seq(model, tokenizer, layout, tmp_path, TINY_SUBWORD)
    _, loaded, loaded_layout = load_seq2seq(tmp_path)
    assert loaded_layout == layout
    assert loaded("chill workout")["input_ids"] == ids


def test_subword_needs_training_prompts_and_content_ids_keep_bytes():
    with pytest.raises(ValueError, match="prompt_texts"):
        build_seq2seq(TINY_SUBWORD, LEVEL_SIZES)
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        ModelConfig(tokenizer="words")
    _, tokenizer, layout = build_seq2seq(TINY_SUBWORD, (257, 257, 2), scheme="bytes")
    assert layout.scheme == "bytes" and tokenizer("a")["input_ids"][0] == ord("a") + 3
