"""The ID-only output layer and the frozen-encoder cache (text2tracks.output_head,
text2tracks.training_step.FrozenEncoderCache)."""

import json

import pytest
import torch

from text2tracks.modeling import (
    MODEL_INFO_NAME,
    ModelConfig,
    build_seq2seq,
    load_seq2seq,
    output_token_ids,
    save_seq2seq,
)
from text2tracks.output_head import MASKED_LOGIT, has_id_output_head
from text2tracks.training_step import FrozenEncoderCache, grouped_forward

LEVEL_SIZES = (6, 5, 2)
TINY = dict(d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64, tokenizer="bytes")


def _build(seed=0, **overrides):
    torch.manual_seed(seed)
    return build_seq2seq(ModelConfig(**{**TINY, **overrides}), LEVEL_SIZES)


def _batch(tokenizer, layout, n_prompts=3, per_prompt=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    prompts = ["rock", "chill evening", "x"][:n_prompts]
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    rows = []
    for _ in range(n_prompts * per_prompt):
        codes = [int(torch.randint(s, (1,), generator=g)) for s in layout.level_sizes]
        rows.append(
            [o + c for o, c in zip(layout.offsets, codes, strict=True)] + [tokenizer.eos_token_id]
        )
    labels = torch.tensor(rows)
    labels[0, -1] = -100  # padding is ignored
    index = torch.arange(n_prompts).repeat_interleave(per_prompt)
    return enc["input_ids"], enc["attention_mask"], index, labels


def test_the_head_scores_only_id_tokens_and_eos_with_the_tied_weights():
    model, tokenizer, layout = _build()
    assert has_id_output_head(model)
    allowed = output_token_ids(layout, tokenizer.eos_token_id)
    assert len(allowed) == sum(LEVEL_SIZES) + 1
    assert model.lm_head.weight is model.shared.weight, "the output stays tied to the embeddings"
    ids, mask, index, labels = _batch(tokenizer, layout)
    ids, mask, labels = ids[index], mask[index], labels.clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, labels=labels).logits
    others = torch.ones(logits.shape[-1], dtype=torch.bool)
    others[allowed] = False
    assert torch.all(logits[..., others] == MASKED_LOGIT)
    # the scored columns are the plain projection (T5 scales tied outputs by d_model ** -0.5)
    plain, _, _ = _build(id_only_output=False)
    reference = plain(input_ids=ids, attention_mask=mask, labels=labels).logits
    torch.testing.assert_close(logits[..., allowed], reference[..., allowed])


def test_the_loss_is_the_cross_entropy_over_the_writable_tokens():
    model, tokenizer, layout = _build()
    ids, mask, _, labels = _batch(tokenizer, layout, n_prompts=1, per_prompt=1)
    plain, _, _ = _build(id_only_output=False)
    full = plain(input_ids=ids, attention_mask=mask, labels=labels).logits
    allowed = torch.tensor(output_token_ids(layout, tokenizer.eos_token_id))
    log_probs = full[..., allowed].log_softmax(-1)
    keep = labels.ne(-100)
    column = {int(t): i for i, t in enumerate(allowed)}
    picked = [log_probs[0, j, column[int(t)]] for j, t in enumerate(labels[0]) if keep[0, j]]
    expected = -torch.stack(picked).mean()
    loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    torch.testing.assert_close(loss, expected)
    assert loss < plain(input_ids=ids, attention_mask=mask, labels=labels).loss


def test_grouped_forward_computes_the_same_loss_and_gradients_on_compact_columns():
    model, tokenizer, layout = _build()
    ids, mask, index, labels = _batch(tokenizer, layout)
    grouped = grouped_forward(model, ids, mask, index, labels)
    assert grouped.logits.shape[-1] == sum(LEVEL_SIZES) + 1, "compact columns only"
    grouped.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    full = model(input_ids=ids[index], attention_mask=mask[index], labels=labels)
    assert full.logits.shape[-1] == len(tokenizer), "outside the grouped forward: full logits"
    full.loss.backward()
    torch.testing.assert_close(grouped.loss, full.loss)
    for name, p in model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(grads[name], p.grad, msg=name)


def test_the_list_loss_runs_on_compact_columns():
    model, tokenizer, layout = _build()
    plain, _, _ = _build(id_only_output=False)
    ids, mask, index, labels = _batch(tokenizer, layout)
    out = grouped_forward(
        model,
        ids,
        mask,
        index,
        labels,
        list_loss_weight=1.0,
        num_negatives=2,
        generator=torch.Generator().manual_seed(0),
    )
    reference = model(input_ids=ids[index], attention_mask=mask[index], labels=labels).loss
    torch.testing.assert_close(out.ce_loss, reference)
    assert torch.isfinite(out.list_loss) and out.list_loss > 0
    assert plain is not None


def test_labels_outside_the_head_are_refused():
    model, tokenizer, layout = _build()
    ids, mask, index, labels = _batch(tokenizer, layout)
    labels[1, 0] = 5  # a byte token: never written by the decoder
    with pytest.raises(ValueError, match="does not score"):
        grouped_forward(model, ids, mask, index, labels)


def test_save_and_load_keep_the_head_and_old_folders_load_without_it(tmp_path):
    model, tokenizer, layout = _build()
    ids, mask, index, labels = _batch(tokenizer, layout)
    ids, mask, labels = ids[index], mask[index], labels.clamp(min=0)
    model.eval()
    config = ModelConfig(**TINY)
    save_seq2seq(model, tokenizer, layout, tmp_path / "m", config)
    loaded, _, _ = load_seq2seq(tmp_path / "m")
    assert has_id_output_head(loaded)
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask, labels=labels).logits
        after = loaded(input_ids=ids, attention_mask=mask, labels=labels).logits
    torch.testing.assert_close(before, after)
    # a folder written before the setting existed: its info has no id_only_output key
    info_path = tmp_path / "m" / MODEL_INFO_NAME
    info = json.loads(info_path.read_text())
    del info["model_config"]["id_only_output"]
    info_path.write_text(json.dumps(info))
    old, _, _ = load_seq2seq(tmp_path / "m")
    assert not has_id_output_head(old)


def test_frozen_encoder_cache_returns_the_encoders_states_whatever_the_padding():
    model, tokenizer, _ = _build(freeze_encoder=True)
    encoder = model.get_encoder()
    cache = FrozenEncoderCache(encoder)
    alone = tokenizer(["rock"], return_tensors="pt")
    padded = tokenizer(["rock", "a much longer prompt"], return_tensors="pt", padding=True)
    first = cache(alone["input_ids"], alone["attention_mask"]).last_hidden_state
    again = cache(padded["input_ids"], padded["attention_mask"]).last_hidden_state
    assert (cache.misses, cache.hits, len(cache)) == (2, 1, 2)
    n = int(alone["attention_mask"].sum())
    torch.testing.assert_close(again[0, :n], first[0])
    assert torch.all(again[0, n:] == 0)
    encoder.eval()
    with torch.no_grad():
        direct = encoder(**padded).last_hidden_state
    m = int(padded["attention_mask"][1].sum())
    torch.testing.assert_close(again[1, :m], direct[1, :m])


def test_frozen_encoder_cache_refuses_a_trainable_encoder_and_left_padding():
    model, tokenizer, _ = _build()
    with pytest.raises(ValueError, match="frozen encoder"):
        FrozenEncoderCache(model.get_encoder())
    frozen, _, _ = _build(freeze_encoder=True)
    cache = FrozenEncoderCache(frozen.get_encoder())
    with pytest.raises(ValueError, match="right-padded"):
        cache(torch.tensor([[0, 5, 6]]), torch.tensor([[0, 1, 1]]))
