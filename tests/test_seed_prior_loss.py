"""The seed prior's own list loss (``--seed-prior-list-weight``,
:mod:`text2tracks.seed_prior_loss`): its value against a hand computation, the seeds left out of
the softmax, the items read back from the targets, and the trainer logging and lowering it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_seed_prior import _seeded_model

from text2tracks.code_search import model_eos_token_id
from text2tracks.seed_prior import install_seed_prior, prior_rows
from text2tracks.seed_prior_loss import prior_list_loss, with_prior_list_loss
from text2tracks.training_step import grouped_forward

_OWN = np.array(
    [[1.0, 0, 2], [1, 0, -1], [1, 0, 0.5], [-1, 1, 0], [-1, -1, 1], [-1, 0.5, -2]], np.float32
)


def _labels(model, layout, catalog, items):
    eos = model_eos_token_id(model)
    tokens = layout.codes_to_token_ids(catalog.sid_codes[items])
    tokens = np.concatenate([tokens, np.full((len(items), 1), eos)], axis=1)
    return torch.as_tensor(tokens, dtype=torch.long)


def _prior_model(seed: int):
    model, _, layout, catalog, _, table = _seeded_model(seed)
    weight = torch.tensor([[1.0, 0.5, 0], [-0.5, 2.0, 1], [0, 0.3, -1]])
    prior = install_seed_prior(
        model, weight, layout=layout, prior_factors=_OWN, learn_factors=True, count_scale=True
    )
    with torch.no_grad():
        prior.factor_delta.copy_(torch.linspace(-0.5, 0.5, prior.factor_delta.numel()).view(6, 3))
        prior.count_log_scale.fill_(math.log(2.0))  # two seeds: the context doubled
    return model, layout, catalog, table, prior, weight


def test_the_targets_items_are_read_back_from_their_id_tokens():
    model, layout, catalog, _, prior, _ = _prior_model(0)
    items = np.array([5, 0, 3, 3, 1, 2, 4])
    found = prior.nodes.items_of(_labels(model, layout, catalog, items))
    np.testing.assert_array_equal(found.numpy(), items)


def test_the_loss_is_the_catalogue_softmax_of_the_whole_id_prior_without_the_seeds():
    model, layout, catalog, table, prior, weight = _prior_model(1)
    model.train()
    # two prompts: seeds 1 and 5 after a title; the second has no seeds
    ids = torch.tensor([[5, 6, table[1, 0], table[5, 0]], [5, 6, 7, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    labels = _labels(model, layout, catalog, np.array([2, 4, 3]))  # 2, 4: the first prompt's
    prompt_index = torch.tensor([0, 0, 1])
    grouped_forward(model, ids, mask, prompt_index, labels)  # the trainer's forward
    loss = prior_list_loss(model, prompt_index, labels)
    g = torch.from_numpy(_OWN) + prior.factor_delta.detach()
    m = 2.0 * (g[1] + g[5]) / 2
    s = g @ (m @ weight)
    s[[1, 5]] = float("-inf")  # the prompt's seeds are never the answer
    expected = (
        -(s.log_softmax(0)[2] + s.log_softmax(0)[4]) / 2
    )  # the seedless prompt's target: none
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-5, atol=1e-5)
    loss.backward()
    for grad in (prior.weight.grad, prior.count_log_scale.grad, prior.factor_delta.grad):
        assert grad is not None and float(grad.abs().sum()) > 0
    # without seeds in the batch there is nothing to score
    with prior_rows(model, torch.tensor([0]), labels[:1]):
        model(input_ids=ids[1:, :3], labels=labels[:1])
    assert prior_list_loss(model, None, labels[:1]) is None


def test_the_weighted_loss_joins_the_training_loss_only_when_asked():
    model, layout, catalog, table, _, _ = _prior_model(2)
    ids = torch.tensor([[5, 6, table[0, 0], table[3, 0]]])
    labels = _labels(model, layout, catalog, np.array([1]))
    with prior_rows(model, torch.tensor([0]), labels):
        out = model(input_ids=ids, labels=labels)
    ce = out.loss.detach().clone()
    batch = {"labels": labels}
    assert with_prior_list_loss(model, out, batch, 0.0).loss is out.loss
    out = with_prior_list_loss(model, out, batch, 0.5)
    torch.testing.assert_close(out.loss.detach(), ce + 0.5 * out.prior_list_loss.detach())


def test_the_config_refuses_a_negative_weight_and_a_model_without_the_nodes_prior():
    from training.train_seq2seq import TrainConfig

    with pytest.raises(ValueError, match="seed_prior_list_weight must be >= 0"):
        TrainConfig(artifact="a", playlists="p", seed_prob=0.5, seed_prior_list_weight=-1.0)
    with pytest.raises(ValueError, match="--seed-prior-list-weight"):
        TrainConfig(artifact="a", playlists="p", seed_prior_list_weight=1.0)
    with pytest.raises(ValueError, match="--seed-prior-list-weight"):
        TrainConfig(
            artifact="a",
            playlists="p",
            seed_prob=0.5,
            seed_prior="tokens",
            seed_prior_list_weight=1,
        )


def test_the_trainer_logs_the_priors_list_loss_and_lowers_it(tmp_path):
    from tiny_artifact import train_tiny_on_demo

    _, art = train_tiny_on_demo(
        tmp_path, "--members", "1", "--seed-prob", "1", "--seed-prior-list-weight", "1", "--log-every", "1",
        "--max-steps", "12",
    )  # fmt: skip
    records = [json.loads(line) for line in (art / "seq2seq" / "training_log.jsonl").open()]
    losses = [r["train_prior_list_loss"] for r in records if "train_prior_list_loss" in r]
    assert len(losses) == 12 and all(np.isfinite(losses))
    # W starts at zero: the first step's softmax is uniform over the catalogue less the seeds
    n_items = len(json.loads((art / "semantic_ids" / "catalog" / "item_ids.json").read_text()))
    assert math.log(n_items - 100) - 0.01 < losses[0] <= math.log(n_items) + 1e-4
    assert np.mean(losses[-3:]) < losses[0] - 0.1
