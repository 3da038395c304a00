"""eval.bench_device: the CPU and the device (here the CPU again) train and decode the same
model; rows, ratios and errors."""

import json

import pytest
import torch

from eval.bench_device import main
from text2tracks.training_step import training_attention

TINY = ["--encoder", "t5", "--n-playlists", "80", "--n-items", "500", "--cpu-threads", "1"]


def test_training_and_decoding_rows_on_two_devices(tmp_path):
    out = tmp_path / "device.json"
    argv = [*TINY, "--device", "cpu", "--train-batch-sizes", "32", "--precisions", "fp32,bf16"]
    argv += ["--windows", "3", "--window-batches", "4", "--decode-batch-sizes", "1,3"]
    assert main([*argv, "--repeats", "2", "--calls", "1", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["training"]
    assert [(r["batch_size"], r["precision"]) for r in rows] == [
        (128, "fp32"),  # the CPU at TrainConfig's batch size
        (32, "fp32"),
        (32, "bf16"),
    ]
    assert rows[0]["vs_cpu"] == 1.0 and all(r["examples_per_s"] > 0 for r in rows)
    for row in rows:  # the optimizer steps: the loss falls from the first window to the last
        assert row["last_window_loss"] < row["first_window_loss"]
    decoding = result["decoding"]
    assert decoding["num_beams"] == 50 and [r["batch_size"] for r in decoding["rows"]] == [1, 3]
    for row in decoding["rows"]:  # same weights, same arithmetic: the same lists
        assert row["same_lists"] == 1.0 and row["speedup"] > 0
        assert row["device_prompts_per_s"] == pytest.approx(
            row["batch_size"] / row["device_s_per_call"]
        )


def test_bad_arguments_name_the_fix(tmp_path):
    out = str(tmp_path / "x.json")
    with pytest.raises(SystemExit, match="unknown \\['fp8'\\]"):
        main([*TINY, "--device", "cpu", "--precisions", "fp32,fp8", "--out", out])
    with pytest.raises(SystemExit, match=">= 1"):
        main([*TINY, "--device", "cpu", "--decode-batch-sizes", "0", "--out", out])
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="--device cpu"):
            main([*TINY, "--device", "cuda", "--out", out])


def test_training_attention_turns_off_cudnn_attention_alone():
    backends = torch.backends.cuda
    before = [backends.flash_sdp_enabled(), backends.mem_efficient_sdp_enabled()]
    with training_attention():
        assert not backends.cudnn_sdp_enabled()
        assert [backends.flash_sdp_enabled(), backends.mem_efficient_sdp_enabled()] == before
        assert backends.math_sdp_enabled()
    assert backends.cudnn_sdp_enabled()
