"""Soft targets per ID level (text2tracks.soft_targets), their loss in grouped_forward, and the
trainer's --soft-target-weight."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_output_head import _build
from test_train_seq2seq import TINY_FLAGS, tiny_artifact  # noqa: F401 (a fixture)

from text2tracks.soft_targets import SoftCodeTargets
from text2tracks.training_step import grouped_forward

EOS = 1
# five items, depth 3 (token ids): items 0-2 share level 0 (10), 0 and 1 share level 1 (20)
TOKENS = np.array(
    [
        [10, 20, 30],
        [10, 20, 31],
        [10, 21, 30],
        [11, 22, 32],
        [12, 23, 33],
    ]
)
# playlist 0: items 0, 1, 2, 3 with weights 0.1, 0.3, 0.2, 0.4; playlist 1: item 4 alone
LISTS = [[0, 1, 2, 3], [4]]
WEIGHTS = [[0.1, 0.3, 0.2, 0.4], [1.0]]


def _as_dicts(token_ids, probs, example, level):
    return {
        int(t): pytest.approx(float(p))
        for t, p in zip(token_ids[example, level], probs[example, level], strict=True)
        if t >= 0
    }


def test_each_level_is_the_lists_distribution_given_the_drawn_prefix():
    soft = SoftCodeTargets(LISTS, WEIGHTS, TOKENS, EOS)
    token_ids, probs = soft(np.array([0, 0, 1]), np.array([1, 3, 4]))
    assert token_ids.shape == probs.shape == (3, 4, 2)  # at most two codes per level
    # level 0 does not depend on the drawn item: the list's mass per first code
    assert _as_dicts(token_ids, probs, 0, 0) == {10: 0.6, 11: 0.4}
    assert _as_dicts(token_ids, probs, 1, 0) == {10: 0.6, 11: 0.4}
    # level 1 given first code 10 (items 0, 1, 2): 20 holds 0.4 of 0.6, 21 holds 0.2
    assert _as_dicts(token_ids, probs, 0, 1) == {20: 2 / 3, 21: 1 / 3}
    # level 2 given (10, 20): items 0 (0.1) and 1 (0.3)
    assert _as_dicts(token_ids, probs, 0, 2) == {30: 0.25, 31: 0.75}
    # item 3 is alone under its prefix: one-hot below level 0
    assert _as_dicts(token_ids, probs, 1, 1) == {22: 1.0}
    assert _as_dicts(token_ids, probs, 1, 2) == {32: 1.0}
    # a one-item list is the hard target everywhere; EOS is always one-hot
    for level, token in enumerate([12, 23, 33, EOS]):
        assert _as_dicts(token_ids, probs, 2, level) == {token: 1.0}
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)


def test_without_weights_the_list_is_uniform_and_max_codes_keeps_the_heaviest():
    uniform = SoftCodeTargets(LISTS, None, TOKENS, EOS)
    token_ids, probs = uniform(np.array([0]), np.array([0]))
    assert _as_dicts(token_ids, probs, 0, 0) == {10: 0.75, 11: 0.25}
    top1 = SoftCodeTargets(LISTS, WEIGHTS, TOKENS, EOS, max_codes=1)
    token_ids, probs = top1(np.array([0]), np.array([0]))
    assert token_ids.shape[-1] == 1
    assert _as_dicts(token_ids, probs, 0, 0) == {10: 1.0}
    assert _as_dicts(token_ids, probs, 0, 2) == {31: 1.0}  # 0.3 outweighs the drawn item's 0.1


def test_examples_not_drawn_from_the_list_keep_their_own_target():
    soft = SoftCodeTargets(LISTS, WEIGHTS, TOKENS, EOS)
    # example 1 (playlist 1) carries seeds: its item 2 came from the playlist's own tracks
    token_ids, probs = soft.batch(np.array([0, 1]), np.array([1, 2]), np.array([True, False]))
    want_ids, want_probs = soft(np.array([0]), np.array([1]))
    np.testing.assert_array_equal(token_ids[:1], want_ids)
    np.testing.assert_array_equal(probs[:1], want_probs)
    for level, token in enumerate([10, 21, 30, EOS]):
        assert _as_dicts(token_ids, probs, 1, level) == {token: 1.0}
    token_ids, probs = soft.batch(np.array([1]), np.array([3]), np.array([False]))
    assert token_ids.shape == (1, 4, 1) and probs.sum() == 4


def test_the_collator_gives_seeded_examples_their_own_target():
    from text2tracks.data import Seq2SeqCollator

    soft = SoftCodeTargets(LISTS, WEIGHTS, TOKENS, EOS)
    collate = Seq2SeqCollator(
        [np.array([5, EOS]), np.array([6, EOS])],
        TOKENS,
        pad_token_id=0,
        eos_token_id=EOS,
        share_prompts=True,
        blank_prompt_ids=np.array([EOS]),
        max_seed_tracks=4,
        soft_targets=soft,
    )
    batch = collate([(0, 3, np.zeros(0, np.int64), True), (1, 0, np.array([4]), True)])
    token_ids, probs = batch["soft_token_ids"].numpy(), batch["soft_probs"].numpy()
    assert _as_dicts(token_ids, probs, 0, 0) == {10: 0.6, 11: 0.4}
    assert _as_dicts(token_ids, probs, 1, 0) == {10: 1.0}  # item 0, not in playlist 1's list
    np.testing.assert_array_equal(token_ids[:, :, 0][:, :-1][1], TOKENS[0])
    # prompts not shared: each example is its own prompt row, for the grouped forward
    collate.share_prompts = False
    batch = collate([(0, 3, np.zeros(0, np.int64), True), (0, 1, np.zeros(0, np.int64), True)])
    assert batch["prompt_index"].tolist() == [0, 1] and batch["input_ids"].shape[0] == 2


def test_bad_input_is_refused():
    soft = SoftCodeTargets(LISTS, WEIGHTS, TOKENS, EOS)
    with pytest.raises(ValueError, match="not in its playlist's target list"):
        soft(np.array([1]), np.array([0]))
    with pytest.raises(ValueError, match="one weight per target"):
        SoftCodeTargets(LISTS, [[1.0], [1.0]], TOKENS, EOS)
    with pytest.raises(ValueError, match="outside sid_token_ids"):
        SoftCodeTargets([[7]], None, TOKENS, EOS)
    with pytest.raises(ValueError, match="max_codes"):
        SoftCodeTargets(LISTS, None, TOKENS, EOS, max_codes=0)


def _tiny_batch():
    """A tiny model, one prompt, and every item of a weighted list as its examples."""
    model, tokenizer, layout = _build()
    codes = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [3, 2, 1]])
    tokens = np.asarray(layout.codes_to_token_ids(codes))
    weights = np.array([0.1, 0.3, 0.2, 0.4])
    soft = SoftCodeTargets([list(range(4))], [weights], tokens, tokenizer.eos_token_id)
    enc = tokenizer(["rock"], return_tensors="pt")
    labels = torch.tensor(np.c_[tokens, np.full(4, tokenizer.eos_token_id)])
    return model, soft, enc, labels, weights


def test_the_soft_loss_is_the_expected_cross_entropy_of_the_draws():
    model, soft, enc, labels, weights = _tiny_batch()
    ids, mask, index = enc["input_ids"], enc["attention_mask"], torch.zeros(4, dtype=torch.long)
    token_ids, probs = map(torch.from_numpy, soft(np.zeros(4, dtype=int), np.arange(4)))
    with torch.no_grad():
        out = grouped_forward(model, ids, mask, index, labels, soft_targets=(token_ids, probs, 1.0))
        # the hard loss of each example alone (one example per forward)
        hard = torch.stack(
            [grouped_forward(model, ids, mask, index[:1], labels[i : i + 1]).loss for i in range(4)]
        )
    assert out.ce_loss == pytest.approx(float(hard.mean()), rel=1e-5)
    # drawing the example in proportion to the list's weights, the expected hard loss at level 0
    # equals the soft loss there; the soft loss is the mean over positions, so compare the
    # whole: soft levels 1-2 condition on each example's own prefix, averaged with the weights
    expected = 0.0
    for i in range(4):
        token_i, probs_i = soft(np.array([0]), np.array([i]))
        with torch.no_grad():
            one = grouped_forward(
                model,
                ids,
                mask,
                index[:1],
                labels[i : i + 1],
                soft_targets=(torch.from_numpy(token_i), torch.from_numpy(probs_i), 1.0),
            )
        expected += weights[i] * float(one.loss)
    weighted_hard = float((torch.from_numpy(weights).float() * hard).sum())
    assert expected == pytest.approx(weighted_hard, rel=1e-5)
    # a mix: (1 - w) hard + w soft
    with torch.no_grad():
        mixed = grouped_forward(
            model, ids, mask, index, labels, soft_targets=(token_ids, probs, 0.25)
        )
    assert float(mixed.loss) == pytest.approx(0.75 * float(out.ce_loss) + 0.25 * float(out.loss))
    # a padded position (label -100) counts in neither loss
    padded = labels.clone()
    padded[0, -1] = -100
    with torch.no_grad():
        masked = grouped_forward(
            model, ids, mask, index, padded, soft_targets=(token_ids, probs, 1.0)
        )
        first = grouped_forward(
            model, ids, mask, index[:1], labels[:1], soft_targets=(token_ids[:1], probs[:1], 1.0)
        )
    n = labels.numel()  # the other positions' soft losses, summed, less example 0's EOS term
    eos = float(first.loss) * labels.shape[1] - float(
        grouped_forward(
            model, ids, mask, index[:1], padded[:1], soft_targets=(token_ids[:1], probs[:1], 1.0)
        ).loss
    ) * (labels.shape[1] - 1)
    assert float(masked.loss) == pytest.approx((float(out.loss) * n - eos) / (n - 1), rel=1e-5)


def test_the_soft_loss_needs_the_id_head_and_refuses_the_list_loss():
    _, soft, enc, labels, _ = _tiny_batch()
    plain, _, _ = _build(id_only_output=False)
    args = (enc["input_ids"], enc["attention_mask"], torch.zeros(4, dtype=torch.long), labels)
    soft_args = (*map(torch.from_numpy, soft(np.zeros(4, dtype=int), np.arange(4))), 1.0)
    with pytest.raises(ValueError, match="ID output head"):
        grouped_forward(plain, *args, soft_targets=soft_args)
    with pytest.raises(ValueError, match="do not combine"):
        grouped_forward(plain, *args, soft_targets=soft_args, list_loss_weight=1.0)


def test_train_config_validates_the_soft_target_weight():
    from training.train_seq2seq import TrainConfig

    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="soft_target_weight"):
            TrainConfig("art", "pl", soft_target_weight=bad)
    with pytest.raises(ValueError, match="do not combine"):
        TrainConfig("art", "pl", soft_target_weight=0.5, list_loss_weight=1.0)
    assert TrainConfig("art", "pl", soft_target_weight=1.0).soft_target_weight == 1.0


@pytest.mark.parametrize(
    "flags",
    [[], ["--seed-prob", "0.5"], ["--targets-per-prompt-group", "1"]],
    ids=["titles", "seeds", "ungrouped"],
)
def test_a_run_with_soft_targets_trains(tiny_artifact, tmp_path, flags):  # noqa: F811
    import shutil

    from training.train_seq2seq import build_parser, config_from_args, train

    playlists, source = tiny_artifact
    art = tmp_path / "artifact"
    shutil.copytree(source, art)
    threads = torch.get_num_threads()
    try:
        args = build_parser().parse_args(
            ["--artifact", str(art), "--playlists", str(playlists), "--epochs", "1"]
            + ["--eval-every", "0", "--soft-target-weight", "0.5", *TINY_FLAGS, *flags]
        )
        summary = train(config_from_args(args))
    finally:
        torch.set_num_threads(threads)
    assert summary["steps"] > 0 and summary["stopped_by"] == "epochs"
    assert np.isfinite(summary["final_eval"]["val_loss"])
