"""The bare BERT decoder step (text2tracks.lean_decoder): the beam search through it finds the
same IDs with the same scores as through the model's forward, without calling forward."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from text2tracks.modeling import ModelConfig, build_seq2seq
from text2tracks.trie import FlatTrie

LEVELS = (4, 4)
CODES = np.array(list(itertools.product(range(4), range(4))))  # 16 items, every ID
# prompts of different lengths: the shorter is padded, so the cross-attention mask matters
TEXTS = ["smooth jazz for a rainy evening by the fire", "gym"]
# MiniLM (width 384) under a narrower decoder: its states go through enc_to_dec_proj
CONFIG = ModelConfig(encoder="minilm", d_model=32, num_decoder_layers=2, num_heads=2, d_ff=64)


@pytest.fixture(scope="module")
def members():
    from text2tracks.ensemble import EnsembleMember

    out = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model, tokenizer, layout = build_seq2seq(CONFIG, LEVELS)
        model.eval()
        enc = tokenizer(TEXTS, padding=True, return_tensors="pt")
        assert not bool(enc["attention_mask"].all())
        eos = model.generation_config.eos_token_id
        out.append(EnsembleMember(model, enc["input_ids"], enc["attention_mask"], layout, eos))
    return out


def test_only_a_plain_bert_decoder_in_eval_mode_takes_the_lean_step(members):
    from tests.tiny_artifact import tiny_model_config
    from text2tracks.lean_decoder import lean_supported

    model = members[0].model
    assert lean_supported(model)
    model.train()
    try:
        assert not lean_supported(model)
    finally:
        model.eval()
    t5, _, _ = build_seq2seq(tiny_model_config(), LEVELS)
    assert not lean_supported(t5.eval())


def test_the_search_finds_what_forward_finds_without_calling_forward(members, monkeypatch):
    from text2tracks.ensemble import ensemble_generate

    trie = FlatTrie.from_codes(CODES, LEVELS)
    exclude = [[0, 5], []]

    def search(lean):
        return ensemble_generate(
            members, trie, k=5, num_beams=8, exclude=exclude, weights=[0.4, 0.6], lean_steps=lean
        )

    ref_items, ref_scores = search(False)
    for m in members:

        def refuse(*args, **kwargs):
            raise AssertionError("the lean search called the model's forward")

        monkeypatch.setattr(m.model, "forward", refuse)
    items, scores = search(True)
    np.testing.assert_array_equal(items, ref_items)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    assert not np.isin(items[0], exclude[0]).any()
    # the two prompts get different answers: the mask and per-prompt states line up
    assert not np.array_equal(scores[0], scores[1])


def test_item_scores_through_the_lean_step_are_the_teacher_forced_sums(members):
    from text2tracks.code_search import ensemble_item_scores

    some = np.array([[0, 7, 15], [3, 3, 12]])
    lean = ensemble_item_scores(members, CODES[some])
    # every ID of one prompt teacher-forced through forward, by hand
    for row, text_index in ((0, 0), (1, 1)):
        expected = []
        for m in members:
            tokens = torch.as_tensor(m.layout.codes_to_token_ids(CODES[some[row]]))
            labels = torch.cat([tokens, torch.full((len(tokens), 1), m.eos_token_id)], dim=1)
            start = torch.full((len(tokens), 1), m.model.config.decoder_start_token_id)
            n = len(tokens)
            with torch.no_grad():
                logits = m.model(
                    input_ids=m.input_ids[text_index : text_index + 1].expand(n, -1),
                    attention_mask=m.attention_mask[text_index : text_index + 1].expand(n, -1),
                    decoder_input_ids=torch.cat([start, labels[:, :-1]], dim=1),
                ).logits
            logp = torch.log_softmax(logits.float(), dim=-1)
            expected.append(logp.gather(2, labels[:, :, None]).squeeze(2).sum(1).numpy())
        np.testing.assert_allclose(lean[row], np.mean(expected, axis=0), atol=1e-4)
