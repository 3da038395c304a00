"""Cross-attention once per prompt in the code-space beam search
(text2tracks.shared_cross_attention): the same decoder outputs as repeating the encoder states per
beam, one cached copy of the keys per prompt, T5 and BERT decoders, and the model left as found."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from transformers.modeling_outputs import BaseModelOutput


def _t5():
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(
        vocab_size=120, d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        d_kv=8, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )  # fmt: skip
    return T5ForConditionalGeneration(config).eval()


def _bert():
    """A BERT encoder and a BERT decoder of another width (EncoderDecoderModel projects the
    states between them, as for --encoder minilm)."""
    from transformers import BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel

    torch.manual_seed(0)
    small = dict(
        vocab_size=120, num_hidden_layers=2, num_attention_heads=2, hidden_dropout_prob=0.0
    )
    encoder = BertModel(BertConfig(hidden_size=48, intermediate_size=64, **small))
    decoder = BertLMHeadModel(
        BertConfig(
            hidden_size=32,
            intermediate_size=64,
            is_decoder=True,
            add_cross_attention=True,
            attention_probs_dropout_prob=0.0,
            **small,
        )  # fmt: skip
    )
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    model.config.decoder_start_token_id = 2
    model.config.pad_token_id = 0
    return model.eval()


def _steps(model, hidden, mask, tokens):
    """Decoder logits of each step of ``tokens`` (rows, steps), fed one token at a time."""
    cache, logits = None, []
    arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    for t in range(tokens.shape[1]):
        out = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
            attention_mask=mask,
            decoder_input_ids=tokens[:, t : t + 1],
            use_cache=True,
            **{arg: cache},
        )
        cache = out[arg]
        logits.append(out.logits[:, -1])
    return torch.stack(logits, 1), cache


@pytest.mark.parametrize("build", [_t5, _bert], ids=["t5", "bert"])
def test_shared_states_give_the_expanded_outputs_with_one_copy_per_prompt(build):
    from text2tracks.shared_cross_attention import additive_mask, shared_cross_attention

    model = build()
    before = model.config._attn_implementation
    prompts, length, beams = 3, 11, 5
    ids = torch.randint(3, 120, (prompts, length))
    mask = torch.ones(prompts, length, dtype=torch.long)
    mask[1, 7:] = 0  # padding must stay masked in the shared computation
    mask[2, 3:] = 0
    tokens = torch.randint(3, 120, (prompts * beams, 4))
    with torch.no_grad():
        hidden = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        ref, ref_cache = _steps(
            model,
            hidden.repeat_interleave(beams, 0),
            mask.repeat_interleave(beams, 0),
            tokens,
        )
        with shared_cross_attention(model) as shared:
            assert shared
            out, cache = _steps(model, hidden, additive_mask(mask, hidden.dtype), tokens)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # one copy of each prompt's cross-attention keys, not one per beam
    assert cache.cross_attention_cache.layers[0].keys.shape[0] == prompts
    assert ref_cache.cross_attention_cache.layers[0].keys.shape[0] == prompts * beams
    assert model.config._attn_implementation == before


def test_the_attention_implementation_is_restored_after_an_error():
    from text2tracks.shared_cross_attention import shared_cross_attention

    model = _t5()
    before = model.config._attn_implementation
    with pytest.raises(KeyError), shared_cross_attention(model):
        assert model.config._attn_implementation != before
        raise KeyError("boom")
    assert model.config._attn_implementation == before


def test_beam_rows_that_do_not_divide_into_prompts_are_refused():
    from text2tracks.shared_cross_attention import additive_mask, shared_cross_attention

    model = _t5()
    hidden = torch.randn(2, 5, 32)
    mask = additive_mask(torch.ones(2, 5, dtype=torch.long), hidden.dtype)
    with torch.no_grad(), shared_cross_attention(model), pytest.raises(RuntimeError, match="rows"):
        _steps(model, hidden, mask, torch.randint(3, 120, (3, 1)))


def test_ensemble_search_is_the_same_with_and_without_sharing(monkeypatch):
    """The search's answer does not depend on the cross-attention path (the fallback for a model
    that cannot switch its attention repeats the states per beam)."""
    import text2tracks.shared_cross_attention as sca
    from text2tracks.code_search import EnsembleMember, ensemble_generate
    from text2tracks.tokens import SIDTokenLayout
    from text2tracks.trie import FlatTrie

    rng = np.random.default_rng(0)
    codes = np.unique(rng.integers(0, 4, size=(40, 3)), axis=0)  # distinct 3-code IDs
    trie = FlatTrie.from_codes(codes, (4, 4, 4))
    layout = SIDTokenLayout(level_sizes=(4, 4, 4), offsets=(10, 14, 18))  # tokens 10..21
    model = _t5()
    ids = torch.randint(3, 10, (2, 6))
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[0, 4:] = 0
    member = EnsembleMember(model, ids, mask, layout, eos_token_id=1)
    shared = ensemble_generate([member], trie, k=5, num_beams=8, exclude=[[0, 1], []])
    monkeypatch.setattr(sca, "_supported", lambda model: False)
    expanded = ensemble_generate([member], trie, k=5, num_beams=8, exclude=[[0, 1], []])
    np.testing.assert_array_equal(shared[0], expanded[0])
    np.testing.assert_allclose(shared[1], expanded[1], atol=1e-5)
