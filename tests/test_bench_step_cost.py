"""eval.bench_step_cost: every variant trains on the same batches from the same weights."""

import json

import pytest
import torch

from eval.bench_step_cost import main
from training.train_seq2seq import build_optimizer, schedule_lr


def test_each_variant_is_timed_and_reported(tmp_path):
    out = tmp_path / "cost.json"
    argv = ["--encoders", "t5", "--n-playlists", "60", "--n-items", "400", "--batch-size", "16"]
    assert main([*argv, "--windows", "2", "--window-batches", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]["t5"]
    assert list(rows) == ["full", "id_head", "id_head+fused"]
    assert rows["full"]["speedup"] == 1.0
    assert all(r["examples_per_s"] > 0 for r in rows.values())


def test_bf16_twins_run_their_forward_in_bf16(tmp_path, monkeypatch):
    import eval.bench_step_cost as bench

    seen, step = {}, bench.train_step

    def spy(run, batch_size):  # the dtype of the loss's logits, per variant
        def record(_module, _inputs, out) -> None:
            seen.setdefault(run["bf16"], out.logits.dtype)

        hook = run["model"].register_forward_hook(record)
        try:
            return step(run, batch_size)
        finally:
            hook.remove()

    monkeypatch.setattr(bench, "train_step", spy)
    out = tmp_path / "cost.json"
    argv = ["--encoders", "t5", "--n-playlists", "40", "--n-items", "300", "--batch-size", "8"]
    argv += ["--precisions", "fp32,bf16", "--windows", "1", "--window-batches", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]["t5"]
    assert list(rows)[:2] == ["full", "full+bf16"] and len(rows) == 6
    assert seen == {False: torch.float32, True: torch.bfloat16}
    with pytest.raises(ValueError, match="--precisions"):
        main([*argv[:-6], "--precisions", "fp16", "--out", str(out)])


def test_the_fine_tuned_minilm_is_timed_against_its_top_layers_alone(tmp_path):
    out = tmp_path / "cost.json"
    argv = ["--encoders", "minilm_tuned", "--trainable-layers", "2", "--n-playlists", "40"]
    argv += ["--n-items", "300", "--batch-size", "8", "--windows", "1", "--window-batches", "1"]
    assert main([*argv, "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]["minilm_tuned"]
    assert list(rows) == ["all", "top2", "top2+cache"]
    assert rows["all"]["speedup"] == 1.0 and all(r["examples_per_s"] > 0 for r in rows.values())
    with pytest.raises(ValueError, match="unknown 'bert'"):
        main(["--encoders", "bert", "--out", str(out)])


def test_the_fused_optimizer_takes_the_same_steps_as_the_default():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    b.load_state_dict(a.state_dict())
    opt_a = build_optimizer(a, lr=0.1, weight_decay=0.01, fused=False)
    opt_b = build_optimizer(b, lr=0.1, weight_decay=0.01)
    assert opt_b.defaults["fused"] and not opt_a.defaults["fused"]
    # weight decay on the matrix only, none on the bias
    assert [g["weight_decay"] for g in opt_a.param_groups] == [0.01, 0.0]
    x = torch.randn(8, 4)
    for _ in range(3):
        for model, opt in ((a, opt_a), (b, opt_b)):
            model(x).pow(2).sum().backward()
            opt.step()
            opt.zero_grad()
    torch.testing.assert_close(a.weight, b.weight)
    torch.testing.assert_close(a.bias, b.bias)


def _tiny_t5():
    from text2tracks.modeling import ModelConfig, build_seq2seq

    config = ModelConfig(
        d_model=16, d_ff=32, num_layers=1, num_decoder_layers=1, num_heads=2, tokenizer="bytes"
    )
    return build_seq2seq(config, [4, 4])[0]


def test_encoder_lr_moves_the_encoder_at_its_own_rate_and_leaves_shared_weights_to_lr():
    torch.manual_seed(0)
    model = _tiny_t5()
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.0, encoder_lr=1e-5, fused=False)
    lr_of = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    encoder_block = model.get_encoder().block[0].layer[0].SelfAttention.q.weight
    decoder_block = model.get_decoder().block[0].layer[0].SelfAttention.q.weight
    shared = model.get_input_embeddings().weight  # T5 ties it across encoder and decoder
    assert lr_of[id(encoder_block)] == 1e-5
    assert lr_of[id(decoder_block)] == lr_of[id(shared)] == 1e-2
    assert len(lr_of) == sum(p.requires_grad for p in model.parameters())
    # the first Adam step moves each weight by about its group's lr
    before = {n: t.detach().clone() for n, t in (("enc", encoder_block), ("dec", decoder_block))}
    ids = torch.randint(3, 10, (2, 5))
    model(input_ids=ids, labels=torch.randint(3, 10, (2, 3))).loss.backward()
    optimizer.step()
    moved = {
        n: (t - before[n]).abs().max().item()
        for n, t in (("enc", encoder_block), ("dec", decoder_block))
    }
    assert 0 < moved["enc"] <= 1.1e-5 and 0.5e-2 < moved["dec"] <= 1.1e-2


def test_encoder_lr_zero_keeps_the_two_groups_of_before_and_negative_is_refused():
    model = _tiny_t5()
    optimizer = build_optimizer(model, lr=1e-3, weight_decay=0.01)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert {g["lr"] for g in optimizer.param_groups} == {1e-3}
    with pytest.raises(ValueError, match="encoder_lr"):
        build_optimizer(model, lr=1e-3, weight_decay=0.01, encoder_lr=-1)


def test_the_schedule_scales_each_group_from_its_own_rate():
    model = _tiny_t5()
    optimizer = build_optimizer(model, lr=1e-2, weight_decay=0.0, encoder_lr=1e-4)
    for factor in (0.5, 0.25):  # twice: from the base rate, not from the last step's
        schedule_lr(optimizer, factor, default_lr=1e-2)
        assert sorted({g["lr"] for g in optimizer.param_groups}) == [1e-4 * factor, 1e-2 * factor]
    # a group from an older checkpoint, without a base rate, takes the run's lr
    del optimizer.param_groups[0]["base_lr"]
    schedule_lr(optimizer, 0.5, default_lr=3e-3)
    assert optimizer.param_groups[0]["lr"] == 1.5e-3
