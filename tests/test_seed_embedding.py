"""One token per seed (``seed_encoding="item"``): the embedding, the encoder input it gives, and
its round trip through an artifact."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from semantic_ids.catalog import SemanticIDCatalog
from text2tracks.seed_embedding import (
    SeedItemEmbedding,
    attach_seed_items,
    check_seed_encoding,
    install_seed_items,
    seed_encoding_of,
    seed_token_table,
)


def _catalog(n_groups: int = 4, per_group: int = 6) -> SemanticIDCatalog:
    ids = [f"g{g}:t{i}" for g in range(n_groups) for i in range(per_group)]
    codes = np.array([[g, i, 0] for g in range(n_groups) for i in range(per_group)], np.int64)
    return SemanticIDCatalog(ids, codes, (n_groups, per_group, 1))


def _parts(seed: int = 0):
    from text2tracks.modeling import ModelConfig, build_seq2seq

    torch.manual_seed(seed)
    config = ModelConfig(
        encoder="t5",
        d_model=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        d_ff=64,
        max_prompt_length=16,
        tokenizer="bytes",
    )
    model, tokenizer, layout = build_seq2seq(config, _catalog().level_sizes)
    return model, tokenizer, layout, config


def test_seed_ids_read_as_the_scaled_sum_of_their_id_tokens():
    embedding = torch.nn.Embedding(20, 4, padding_idx=0)
    tokens = np.array([[3, 7, 9], [4, 4, 11]])
    layer = SeedItemEmbedding(embedding, tokens)
    ids = torch.tensor([[5, 20, 0, 21], [21, 2, 20, 20]])
    out = layer(ids)
    w = embedding.weight
    assert torch.equal(out[0, 0], w[5]) and torch.equal(out[1, 1], w[2])
    assert torch.equal(out[0, 2], w[0])
    torch.testing.assert_close(out[0, 1], (w[3] + w[7] + w[9]) / 3**0.5)
    torch.testing.assert_close(out[0, 3], (2 * w[4] + w[11]) / 3**0.5)
    torch.testing.assert_close(out[1, 0], out[0, 3])
    out[0, 1].sum().backward()  # the gradient reaches the ID tokens' rows, and only them
    touched = (w.grad.abs().sum(dim=1) > 0).nonzero().ravel().tolist()
    assert touched == [3, 7, 9]
    assert torch.equal(layer(torch.tensor([[1, 2]])), embedding(torch.tensor([[1, 2]])))


def test_bad_item_tables_and_ids_are_refused():
    embedding = torch.nn.Embedding(10, 4)
    with pytest.raises(ValueError, match="n_items, depth"):
        SeedItemEmbedding(embedding, np.array([1, 2]))
    with pytest.raises(ValueError, match="outside the embedding"):
        SeedItemEmbedding(embedding, np.array([[1, 10]]))
    layer = SeedItemEmbedding(embedding, np.array([[1, 2]]))
    with pytest.raises(IndexError, match="seed item 1 is outside the 1 items"):
        layer(torch.tensor([[11]]))
    with pytest.raises(ValueError, match="seed_encoding must be one of"):
        check_seed_encoding("tokens")


def test_installed_layer_shares_the_weight_and_the_saved_files_are_unchanged(tmp_path):
    from text2tracks.modeling import load_seq2seq, save_seq2seq

    model, tokenizer, layout, config = _parts()
    keys = sorted(model.state_dict())
    sid = layout.codes_to_token_ids(_catalog().sid_codes)
    assert seed_encoding_of(model) == "codes"
    assert np.array_equal(seed_token_table(model, sid), sid)
    layer = install_seed_items(model, sid)
    assert layer.weight is model.get_input_embeddings().weight  # tied, not copied
    assert seed_encoding_of(model) == "item" and sorted(model.state_dict()) == keys
    rows = model.get_input_embeddings().weight.shape[0]
    assert np.array_equal(seed_token_table(model, sid)[:, 0], rows + np.arange(len(sid)))
    install_seed_items(model, sid[:3])  # a second call re-tables, keeping the same weight
    assert seed_token_table(model, sid).shape == (3, 1)
    assert model.get_encoder().get_input_embeddings().weight is layer.weight
    save_seq2seq(model, tokenizer, layout, tmp_path, config)
    loaded, _, _ = load_seq2seq(tmp_path)
    assert seed_encoding_of(loaded) == "codes"  # the files say nothing: the artifact records it
    attach_seed_items(loaded, sid[:3], "item")
    ids = torch.tensor([[5, 6, rows + 2, 1]])
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.get_encoder()(input_ids=ids).last_hidden_state,
            model.get_encoder()(input_ids=ids).last_hidden_state,
        )


def test_a_seed_is_one_encoder_position_and_survives_save_and_load(tmp_path):
    """The API builds title + one token per seed; the artifact records the encoding, loads it
    back, and the loaded recommender answers exactly as the one in memory."""
    from text2tracks import Text2Tracks

    model, tokenizer, layout, config = _parts(seed=3)
    catalog = _catalog()
    attach_seed_items(model, layout.codes_to_token_ids(catalog.sid_codes), "item")
    rec = Text2Tracks(
        model,
        tokenizer,
        layout,
        catalog,
        max_seed_tracks=10,
        num_beams=8,
        model_config=config.to_dict(),
    )
    seeds = [f"g1:t{i}" for i in range(5)]
    from text2tracks.seed_prompts import seeded_batch

    seed_items = np.array([catalog.item_ids.index(s) for s in seeds])
    ids, mask = seeded_batch(
        tokenizer,
        ["mix", ""],
        [seed_items, seed_items[:2]],
        rec._seed_token_ids(),
        max_length=16,
        max_seeds=10,
        first_index=0,
        stacklevel=1,
    )
    title_len = len(tokenizer("mix")["input_ids"])
    assert mask.sum(dim=1).tolist() == [title_len + 5, len(tokenizer("")["input_ids"]) + 2]
    rows = model.get_input_embeddings().weight.shape[0]
    assert ids[0, title_len : title_len + 5].tolist() == (rows + seed_items).tolist()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        before = rec.recommend(
            ["mix", ""], k=5, seed_tracks=[seeds, seeds[:2]], diversity=0, num_beams=8
        )
    rec.save_pretrained(tmp_path / "art")
    saved = json.loads((tmp_path / "art" / "seq2seq" / "seed_tracks.json").read_text())
    assert saved == {"max_seed_tracks": 10, "seed_encoding": "item"}
    loaded = Text2Tracks.from_pretrained(tmp_path / "art", device="cpu")
    assert seed_encoding_of(loaded.model) == "item"
    after = loaded.recommend(
        ["mix", ""], k=5, seed_tracks=[seeds, seeds[:2]], diversity=0, num_beams=8
    )
    assert [[r.track_id for r in a] for a in after] == [[r.track_id for r in a] for a in before]
    assert not {r.track_id for r in after[0]} & set(seeds)


def test_models_from_before_the_choice_read_codes(tmp_path):
    from text2tracks.seed_prompts import read_seed_encoding

    (tmp_path / "train_config.json").write_text(
        json.dumps({"config": {"seed_prob": 0.5, "max_seed_tracks": 50}})
    )
    assert read_seed_encoding(tmp_path) == "codes"
    (tmp_path / "train_config.json").write_text(
        json.dumps({"config": {"seed_prob": 0.5, "max_seed_tracks": 5, "seed_encoding": "item"}})
    )
    assert read_seed_encoding(tmp_path) == "item"
    (tmp_path / "seed_tracks.json").write_text(json.dumps({"max_seed_tracks": 5}))
    assert read_seed_encoding(tmp_path) == "codes"
