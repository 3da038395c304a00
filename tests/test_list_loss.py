"""Tests for the sequence-level list loss of text2tracks.training_step (grouped_forward's option)."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_artifact import tiny_t5

from text2tracks.training_step import (
    draw_negatives,
    grouped_forward,
    list_loss_from_scores,
    sequence_log_probs,
)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_t5(seed=0):
    return tiny_t5(seed, vocab_size=48, d_model=16, num_layers=1).eval()


# three prompts; sequences A..E of depth 3 + EOS. Prompt 0 owns A, B; prompt 1 owns B (shared
# with prompt 0), C; prompt 2 owns D twice and E.
A, B, C, D, E = (
    [20, 30, 40, 1],
    [21, 30, 40, 1],
    [22, 31, 41, 1],
    [23, 32, 42, 1],
    [24, 33, 43, 1],
)


def _batch():
    input_ids = torch.tensor([[5, 6, 7, 1], [8, 1, 0, 0], [9, 10, 11, 1]])
    attention_mask = input_ids.ne(0).long()
    prompt_index = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    labels = torch.tensor([A, B, B, C, D, D, E])
    return input_ids, attention_mask, prompt_index, labels


def _positives(prompt_index, labels):
    own = {}
    for p, row in zip(prompt_index.tolist(), labels.tolist(), strict=True):
        own.setdefault(p, set()).add(tuple(row))
    return own


def _plain_sequence_log_prob(model, input_ids, attention_mask, sequence):
    """One prompt, one sequence, plain forward, log-softmax by hand in float64."""
    labels = torch.tensor([sequence])
    with torch.no_grad():
        logits = (
            model(input_ids=input_ids[None], attention_mask=attention_mask[None], labels=labels)
            .logits[0]
            .double()
        )
    total = 0.0
    for t, token in enumerate(sequence):
        if token == -100:
            continue
        row = logits[t]
        total += (
            float(row[token]) - math.log(float(torch.exp(row - row.max()).sum())) - float(row.max())
        )
    return total


def test_sequence_log_probs_equal_a_manual_sum():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 7, generator=gen)
    labels = torch.tensor([[1, 2, 3, 4], [6, 0, -100, -100], [-100, -100, -100, -100]])
    got = sequence_log_probs(logits, labels)
    want = []
    for i in range(3):
        s = 0.0
        for t in range(4):
            if labels[i, t] != -100:
                row = logits[i, t].double()
                s += float(row[labels[i, t]] - torch.log(torch.exp(row).sum()))
        want.append(s)
    assert got.dtype == torch.float32
    torch.testing.assert_close(
        got.double(), torch.tensor(want, dtype=torch.float64), atol=1e-5, rtol=0
    )
    assert float(got[2]) == 0.0


def test_list_loss_from_scores_by_hand():
    positive = torch.tensor([-1.0, -2.0, -0.5])
    prompt_index = torch.tensor([0, 0, 1])
    negative = torch.tensor([[-3.0, -1.5], [-0.2, 7.0]])
    valid = torch.tensor([[True, True], [True, False]])  # 7.0 is left out
    want = [
        -math.log(math.exp(-1.0) / (math.exp(-1.0) + math.exp(-3.0) + math.exp(-1.5))),
        -math.log(math.exp(-2.0) / (math.exp(-2.0) + math.exp(-3.0) + math.exp(-1.5))),
        -math.log(math.exp(-0.5) / (math.exp(-0.5) + math.exp(-0.2))),
    ]
    got = list_loss_from_scores(positive, prompt_index, negative, valid)
    assert abs(float(got) - sum(want) / 3) < 1e-6


def test_grouped_list_loss_equals_a_hand_computation_with_the_same_negatives():
    model = _tiny_t5()
    input_ids, attention_mask, prompt_index, labels = _batch()
    out = grouped_forward(
        model,
        input_ids,
        attention_mask,
        prompt_index,
        labels,
        list_loss_weight=0.5,
        num_negatives=2,
        generator=torch.Generator().manual_seed(3),
    )
    sequences, index, valid = draw_negatives(
        prompt_index, labels, 3, 2, torch.Generator().manual_seed(3)
    )
    assert valid.all()  # every prompt has >= 2 candidates here
    negatives = {p: [sequences[j].tolist() for j in index[p].tolist()] for p in range(3)}

    def score(p, seq):
        return _plain_sequence_log_prob(model, input_ids[p], attention_mask[p], seq)

    per_example = []
    for p, seq in zip(prompt_index.tolist(), labels.tolist(), strict=True):
        s_pos = score(p, seq)
        s_neg = [score(p, n) for n in negatives[p]]
        per_example.append(-s_pos + math.log(math.exp(s_pos) + sum(math.exp(s) for s in s_neg)))
    want = sum(per_example) / len(per_example)
    assert abs(out.list_loss.item() - want) < 1e-4
    assert abs(out.loss.item() - (out.ce_loss.item() + 0.5 * want)) < 1e-4
    ref = model(
        input_ids=input_ids[prompt_index],
        attention_mask=attention_mask[prompt_index],
        labels=labels,
    )
    assert abs(out.ce_loss.item() - ref.loss.item()) < 1e-5


def test_weight_zero_is_the_old_forward_bit_for_bit():
    from transformers.modeling_outputs import BaseModelOutput

    model = _tiny_t5()
    input_ids, attention_mask, prompt_index, labels = _batch()
    hidden = model.get_encoder()(
        input_ids=input_ids, attention_mask=attention_mask, return_dict=True
    ).last_hidden_state
    old = model(
        encoder_outputs=BaseModelOutput(last_hidden_state=hidden.index_select(0, prompt_index)),
        attention_mask=attention_mask.index_select(0, prompt_index),
        labels=labels,
    )
    rng = torch.get_rng_state()
    for out in (
        grouped_forward(model, input_ids, attention_mask, prompt_index, labels),
        grouped_forward(
            model,
            input_ids,
            attention_mask,
            prompt_index,
            labels,
            list_loss_weight=0.0,
            num_negatives=4,
        ),
    ):
        assert torch.equal(out.loss, old.loss)
        assert torch.equal(out.logits, old.logits)
        assert not hasattr(out, "list_loss")
    assert torch.equal(torch.get_rng_state(), rng), "weight 0 draws no negatives"


def test_the_list_loss_trains_encoder_and_decoder():
    model = _tiny_t5().train()
    input_ids, attention_mask, prompt_index, labels = _batch()
    out = grouped_forward(
        model,
        input_ids,
        attention_mask,
        prompt_index,
        labels,
        list_loss_weight=1.0,
        num_negatives=3,
        generator=torch.Generator().manual_seed(0),
    )
    assert out.list_loss.item() > 0
    out.list_loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    for part in ("encoder.", "decoder.", "shared."):
        assert any(n.startswith(part) and g.abs().sum() > 0 for n, g in grads.items()), part

    # the total is CE + weight * list, so its gradient differs from the CE one
    model.zero_grad(set_to_none=True)
    out = grouped_forward(
        model,
        input_ids,
        attention_mask,
        prompt_index,
        labels,
        list_loss_weight=1.0,
        num_negatives=3,
        generator=torch.Generator().manual_seed(0),
    )
    out.loss.backward()
    total = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    grouped_forward(model, input_ids, attention_mask, prompt_index, labels).loss.backward()
    name = "encoder.block.0.layer.0.SelfAttention.q.weight"
    assert not torch.allclose(total[name], model.get_parameter(name).grad)


def test_list_loss_under_ddp_matches_the_plain_model(tmp_path):
    import torch.distributed as dist

    input_ids, attention_mask, prompt_index, labels = _batch()

    def grads(m, wrapped):
        m.zero_grad(set_to_none=True)
        out = grouped_forward(
            wrapped,
            input_ids,
            attention_mask,
            prompt_index,
            labels,
            list_loss_weight=1.0,
            num_negatives=3,
            generator=torch.Generator().manual_seed(1),
        )
        out.loss.backward()
        return out.loss.item(), {
            n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None
        }

    model = _tiny_t5()
    ref = grads(model, model)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        for _ in range(2):  # one forward with the pairs' rows, one backward, step after step
            got = grads(model, ddp)
            assert abs(got[0] - ref[0]) < 1e-6
            assert got[1].keys() == ref[1].keys()
            for n in ref[1]:
                torch.testing.assert_close(got[1][n], ref[1][n], atol=1e-6, rtol=1e-5)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("seed", range(20))
def test_negatives_are_never_a_positive_of_the_same_prompt(seed):
    _, _, prompt_index, labels = _batch()
    own = _positives(prompt_index, labels)
    every = {tuple(r) for r in labels.tolist()}
    gen = torch.Generator().manual_seed(seed)
    sequences, index, valid = draw_negatives(prompt_index, labels, 3, 2 + seed % 4, gen)
    assert len({tuple(r) for r in sequences.tolist()}) == sequences.shape[0] == len(every)
    for p in range(3):
        drawn = [
            tuple(sequences[j].tolist())
            for j, ok in zip(index[p].tolist(), valid[p].tolist(), strict=True)
            if ok
        ]
        assert len(drawn) == len(set(drawn)) == min(index.shape[1], len(every - own[p]))
        assert not set(drawn) & own[p], (p, drawn)
    # B is a positive of prompts 0 and 1: it may only be a negative of prompt 2
    b_rows = [j for j, r in enumerate(sequences.tolist()) if r == B]
    assert not (index[:2][valid[:2]] == b_rows[0]).any()


def test_negatives_with_padding_and_all_candidates():
    prompt_index = torch.tensor([0, 1, 1])
    labels = torch.tensor([[3, 4, 1, -100], [3, 4, 1, -100], [3, 4, 5, 1]])
    sequences, index, valid = draw_negatives(prompt_index, labels, 2, 8)
    assert sequences.shape[0] == 2 and index.shape == (2, 2)
    # prompt 0 has one negative (the longer sequence), prompt 1 none: both of its sequences are own
    assert valid.tolist() == [[True, False], [False, False]]
    assert sequences[index[0, 0]].tolist() == [3, 4, 5, 1]
    model = _tiny_t5()
    out = grouped_forward(
        model,
        torch.tensor([[5, 1], [6, 1]]),
        torch.ones(2, 2, dtype=torch.long),
        prompt_index,
        labels,
        list_loss_weight=1.0,
        num_negatives=8,
    )
    assert math.isfinite(out.loss.item()) and out.list_loss.item() > 0
    with pytest.raises(ValueError, match="num_negatives"):
        grouped_forward(
            model,
            torch.tensor([[5, 1], [6, 1]]),
            torch.ones(2, 2, dtype=torch.long),
            prompt_index,
            labels,
            list_loss_weight=1.0,
            num_negatives=0,
        )


def test_train_config_validates_the_list_loss_fields():
    from training.seq2seq_config import TrainConfig

    base = {"artifact": "a", "playlists": "p"}
    assert TrainConfig(**base).list_loss_weight == 0.0
    assert TrainConfig(**base, list_loss_weight=0.5, list_loss_negatives=4).list_loss_negatives == 4
    with pytest.raises(ValueError, match="list_loss_weight must be >= 0"):
        TrainConfig(**base, list_loss_weight=-1.0)
    with pytest.raises(ValueError, match="list_loss_weight"):
        TrainConfig(**base, list_loss_weight=float("nan"))
    with pytest.raises(ValueError, match="list_loss_negatives"):
        TrainConfig(**base, list_loss_negatives=0)
    with pytest.raises(ValueError, match="targets_per_prompt_group >= 2"):
        TrainConfig(**base, list_loss_weight=1.0, targets_per_prompt_group=1)
