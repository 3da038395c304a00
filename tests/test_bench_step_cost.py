"""eval.bench_step_cost: every variant trains on the same batches from the same weights."""

import json

import torch

from eval.bench_step_cost import main
from training.train_seq2seq import build_optimizer


def test_each_variant_is_timed_and_reported(tmp_path):
    out = tmp_path / "cost.json"
    argv = ["--encoders", "t5", "--n-playlists", "60", "--n-items", "400", "--batch-size", "16"]
    assert main([*argv, "--windows", "2", "--window-batches", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]["t5"]
    assert list(rows) == ["full", "id_head", "id_head+fused"]
    assert rows["full"]["speedup_vs_full"] == 1.0
    assert all(r["examples_per_s"] > 0 for r in rows.values())


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
