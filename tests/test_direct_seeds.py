"""Seeds written straight into the encoder's output (``seed_encoding="direct"``): the encoder's
layers read the title alone, each seed's position holds its item vector (plus its position
embedding) through the encoder's last norm, gradients reach the ID tokens, and the artifact
keeps the choice."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from semantic_ids.catalog import SemanticIDCatalog
from text2tracks.modeling import ModelConfig, build_seq2seq
from text2tracks.seed_embedding import attach_seed_items, seed_encoding_of

LEVELS = (4, 4, 1)
CODES = np.array([[a, b, 0] for a, b in itertools.product(range(4), range(4))])
CONFIG = ModelConfig(encoder="minilm", d_model=32, num_decoder_layers=2, num_heads=2, d_ff=64)


def _catalog() -> SemanticIDCatalog:
    return SemanticIDCatalog([f"t{i}" for i in range(len(CODES))], CODES, LEVELS)


@pytest.fixture(scope="module")
def direct_model():
    torch.manual_seed(0)
    model, tokenizer, layout = build_seq2seq(CONFIG, LEVELS)
    table = attach_seed_items(model, layout.codes_to_token_ids(CODES), "direct")
    model.eval()
    return model, tokenizer, layout, table


def _batch(tokenizer, table, titles, seeds):
    from text2tracks.seed_prompts import seeded_batch

    items = [None if s is None else np.asarray(s) for s in seeds]
    return seeded_batch(
        tokenizer, titles, items, table, max_length=16, max_seeds=10, first_index=0, stacklevel=1
    )


def test_the_layers_read_the_title_alone_and_each_seed_its_own_vector(direct_model):
    model, tokenizer, _, table = direct_model
    assert seed_encoding_of(model) == "direct" and table.shape == (len(CODES), 1)
    encoder = model.get_encoder()
    titles = ["smooth jazz for a rainy evening", "gym", ""]
    ids, mask = _batch(tokenizer, table, titles, [[3, 1], [5, 6, 7, 2], [9]])
    with torch.no_grad():
        states = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    assert states.shape == (*ids.shape, encoder.config.hidden_size)
    embedding = encoder.get_input_embeddings()
    positions = encoder.embeddings.position_embeddings.weight
    for row, title in enumerate(titles):
        alone = tokenizer([title], return_tensors="pt")
        with torch.no_grad():
            ref = encoder(**alone).last_hidden_state[0]
        n = ref.shape[0]
        torch.testing.assert_close(states[row, :n], ref, atol=1e-5, rtol=1e-5)
        seeds = (ids[row] >= embedding.vocab_rows).nonzero().ravel()
        assert seeds.tolist() == list(range(n, int(mask[row].sum())))
        with torch.no_grad():
            vectors = embedding(ids[row, seeds][None])[0] + positions[seeds]
            expected = encoder.encoder.layer[-1].output.LayerNorm(vectors)
        torch.testing.assert_close(states[row, seeds], expected)
    # another seed changes its own position only: the title's states never see it
    other = ids.clone()
    other[1, int(mask[1].sum()) - 1] = embedding.vocab_rows + 11
    with torch.no_grad():
        changed = encoder(input_ids=other, attention_mask=mask).last_hidden_state
    differs = (changed - states).abs().sum(dim=-1) > 0
    assert differs.nonzero().tolist() == [[1, int(mask[1].sum()) - 1]]


def test_training_reaches_the_seeds_id_tokens_through_the_whole_model(direct_model):
    model, tokenizer, layout, table = direct_model
    ids, mask = _batch(tokenizer, table, ["gym"], [[3, 12]])
    labels = torch.from_numpy(layout.codes_to_token_ids(CODES[[5]])).long()
    eos = torch.full((1, 1), model.generation_config.eos_token_id)
    model.zero_grad()
    model(input_ids=ids, attention_mask=mask, labels=torch.cat([labels, eos], 1)).loss.backward()
    grad = model.get_encoder().get_input_embeddings().weight.grad
    seed_rows = layout.codes_to_token_ids(CODES[[3, 12]]).ravel()
    assert bool((grad[torch.from_numpy(seed_rows)].abs().sum(dim=1) > 0).all())
    model.zero_grad()


def test_the_search_and_the_artifact_keep_direct_seeds(direct_model, tmp_path):
    """The lean beam search answers as forward does on direct-seed prompts; save + load keeps
    the encoding and the answers; seeds are never recommended back."""
    from text2tracks import Text2Tracks
    from text2tracks.ensemble import EnsembleMember, ensemble_generate
    from text2tracks.trie import FlatTrie

    model, tokenizer, layout, table = direct_model
    ids, mask = _batch(tokenizer, table, ["rainy evening", "gym"], [[3, 1, 2], [7]])
    eos = model.generation_config.eos_token_id
    member = [EnsembleMember(model, ids, mask, layout, eos)]
    trie = FlatTrie.from_codes(CODES, LEVELS)
    ref = ensemble_generate(member, trie, k=5, num_beams=8, lean_steps=False)
    got = ensemble_generate(member, trie, k=5, num_beams=8, lean_steps=True)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_allclose(got[1], ref[1], atol=1e-5)

    rec = Text2Tracks(
        model, tokenizer, layout, _catalog(), max_seed_tracks=10, num_beams=8,
        model_config=CONFIG.to_dict(),
    )  # fmt: skip
    seeds = ["t3", "t1", "t2"]
    before = rec.recommend("rainy evening", k=5, seed_tracks=seeds, diversity=0, num_beams=8)
    assert not {r.track_id for r in before} & set(seeds)
    rec.save_pretrained(tmp_path / "art")
    saved = json.loads((tmp_path / "art" / "seq2seq" / "seed_tracks.json").read_text())
    assert saved["seed_encoding"] == "direct"
    loaded = Text2Tracks.from_pretrained(tmp_path / "art", device="cpu")
    assert seed_encoding_of(loaded.model) == "direct"
    after = loaded.recommend("rainy evening", k=5, seed_tracks=seeds, diversity=0, num_beams=8)
    assert [r.track_id for r in after] == [r.track_id for r in before]


def test_reinstalling_replaces_the_hooks():
    torch.manual_seed(1)
    model, tokenizer, layout = build_seq2seq(CONFIG, LEVELS)
    tokens = layout.codes_to_token_ids(CODES)
    attach_seed_items(model, tokens, "direct")
    attach_seed_items(model, tokens, "direct")
    encoder = model.get_encoder()
    assert len(encoder._forward_pre_hooks) == 1 and len(encoder._forward_hooks) == 1
    attach_seed_items(model, tokens, "item")
    assert seed_encoding_of(model) == "item" and not encoder._forward_pre_hooks


def test_a_t5_encoder_reads_direct_seeds_through_its_final_norm():
    from tests.tiny_artifact import tiny_model_config

    torch.manual_seed(2)
    model, tokenizer, layout = build_seq2seq(tiny_model_config(), LEVELS)
    table = attach_seed_items(model, layout.codes_to_token_ids(CODES), "direct")
    model.eval()
    encoder = model.get_encoder()
    ids, mask = _batch(tokenizer, table, ["gym", "night drive"], [[4, 2], [9]])
    with torch.no_grad():
        states = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        embedding = encoder.get_input_embeddings()
        for row, title in enumerate(["gym", "night drive"]):
            ref = encoder(**tokenizer([title], return_tensors="pt")).last_hidden_state[0]
            torch.testing.assert_close(states[row, : ref.shape[0]], ref, atol=1e-5, rtol=1e-5)
            seeds = (ids[row] >= embedding.vocab_rows).nonzero().ravel()
            expected = encoder.final_layer_norm(embedding(ids[row, seeds][None])[0])
            torch.testing.assert_close(states[row, seeds], expected)


def test_auto_trains_direct_seeds_under_minilm_and_item_seeds_under_the_t5():
    from training.seq2seq_config import TrainConfig

    def encoding(**kw):
        return TrainConfig(artifact="a", playlists="p", seed_prob=0.5, **kw).seed_encoding

    assert encoding(model=ModelConfig(encoder="minilm")) == "direct"
    assert encoding(model=ModelConfig(encoder="t5")) == "item"
    assert encoding(model=ModelConfig(encoder="minilm"), seed_encoding="item") == "item"
    with pytest.raises(ValueError, match="seed_encoding must be one of"):
        encoding(seed_encoding="tokens")
