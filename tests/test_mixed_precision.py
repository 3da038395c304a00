"""``mixed_precision="auto"``: bf16 autocast on a CPU with native bf16, fp32 elsewhere."""

from __future__ import annotations

import pytest
import torch
from tiny_artifact import tiny_model_config

from training.launch import resolve_mixed_precision
from training.seq2seq_config import TrainConfig


@pytest.fixture
def no_launcher(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)


def _cpu_bf16(monkeypatch, avx512_bf16: bool, amx: bool) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [(True, False, "bf16"), (False, True, "bf16"), (False, False, "no")],
)
def test_auto_on_a_cpu_follows_its_native_bf16(
    monkeypatch, no_launcher, avx512_bf16, amx, expected
):
    _cpu_bf16(monkeypatch, avx512_bf16, amx)
    assert resolve_mixed_precision("auto", cpu=True) == expected


def test_auto_keeps_fp32_on_a_gpu_and_explicit_values_pass(monkeypatch, no_launcher):
    _cpu_bf16(monkeypatch, True, True)
    assert resolve_mixed_precision("auto", cpu=False) == "no"
    for value in ("no", "fp16", "bf16"):
        assert resolve_mixed_precision(value, cpu=True) == value


def test_auto_takes_the_launchers_choice(monkeypatch):
    _cpu_bf16(monkeypatch, True, False)
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert resolve_mixed_precision("auto", cpu=True) == "no"
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp16")
    assert resolve_mixed_precision("auto", cpu=True) == "fp16"


def test_auto_trains_in_bf16_on_a_bf16_cpu_and_saves_fp32(monkeypatch, no_launcher, tmp_path):
    """A short run under the default: its linear layers compute in bf16, the weights and the
    saved model stay fp32, and accelerate's state stays "no", so that a trainer asking for
    fp32 later in the same process (the diffusion head's) is not refused."""
    from accelerate import Accelerator
    from tiny_artifact import build_tiny_artifact

    import training.train_seq2seq as train_module
    from text2tracks.modeling import load_seq2seq

    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _cpu_bf16(monkeypatch, True, False)
    artifact = build_tiny_artifact(tmp_path)
    dtypes, forward = [], train_module._forward_batch

    def spy(run, batch):
        handles = [
            m.register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
            for m in run.model.modules()
            if isinstance(m, torch.nn.Linear)
        ]
        try:
            return forward(run, batch)
        finally:
            for h in handles:
                h.remove()

    monkeypatch.setattr(train_module, "_forward_batch", spy)
    config = TrainConfig(
        artifact=str(artifact),
        playlists=str(tmp_path / "demo.jsonl"),
        model=tiny_model_config(encoder="t5"),
        max_steps=2,
        eval_every=0,
        eval_prompts=8,
        num_beams=10,
        batch_size=16,
        num_threads=1,
        progress=False,
    )
    threads = torch.get_num_threads()
    try:
        train_module.train(config)
    finally:
        torch.set_num_threads(threads)
    assert dtypes and set(dtypes) == {torch.bfloat16}
    model, _, _ = load_seq2seq(artifact / "seq2seq")
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert Accelerator(cpu=True, mixed_precision="no").mixed_precision == "no"
