"""Tests for training.train_seq2seq: config, schedule, and the real launcher on a tiny artifact."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_artifact import tiny_t5

from text2tracks.modeling import ModelConfig
from training.train_seq2seq import (
    CHECKPOINTS_NAME,
    STATE_NAME,
    TrainConfig,
    build_parser,
    config_from_args,
    list_checkpoints,
    lr_factor,
)

REPO = Path(__file__).resolve().parents[1]
TINY_FLAGS = [
    "--d-model",
    "32",
    "--num-layers",
    "2",
    "--num-decoder-layers",
    "2",
    "--num-heads",
    "4",
    "--d-ff",
    "64",
    "--batch-size",
    "16",
    "--lr",
    "3e-3",
    "--warmup-steps",
    "2",
    "--eval-prompts",
    "16",
    "--num-beams",
    "10",
    "--log-every",
    "1",
    "--num-threads",
    "1",
    "--no-progress",
]


@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory):
    """A demo JSONL and the artifact build-ids makes of it (2 levels x 8 codes), built once."""
    from semantic_ids.cf import CFConfig
    from semantic_ids.demo import write_demo_jsonl
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids

    root = tmp_path_factory.mktemp("tiny")
    playlists = write_demo_jsonl(root / "demo.jsonl", n_tracks=120, n_playlists=150, seed=0)
    config = BuildIDsConfig(
        n_levels=2, codebook_size=8, kmeans_iterations=5, cf=CFConfig(factors=8, iterations=3)
    )
    run_build_ids(playlists, root / "artifact", config, show_progress=False)
    return playlists, root / "artifact"


@pytest.fixture()
def artifact(tiny_artifact, tmp_path):
    playlists, source = tiny_artifact
    target = tmp_path / "artifact"
    shutil.copytree(source, target)
    return playlists, target


def _env():
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=str(REPO),
    )
    return env


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-4000:]}"
        )
    return result


# ------------------------------------------------------------------------------------ config


def test_flags_map_one_to_one_onto_the_config():
    parser = build_parser()
    flags = {a.dest for a in parser._actions if a.dest != "help"}
    fields = {f.name for f in dataclasses.fields(TrainConfig) if f.name != "model"}
    fields |= {f.name for f in dataclasses.fields(ModelConfig)}
    assert flags == fields
    args = parser.parse_args(
        [
            "--artifact",
            "a",
            "--playlists",
            "p",
            "--d-model",
            "64",
            "--lora-target-modules",
            "q,k,v",
            "--resume",
            "--max-minutes",
            "1.5",
            "--no-normalize-prompts",
        ]
    )
    config = config_from_args(args)
    assert config.model.d_model == 64 and config.model.lora_target_modules == ("q", "k", "v")
    assert config.resume == "latest" and config.max_minutes == 1.5
    assert config.normalize_prompts is False


def test_config_validation():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(artifact="a", playlists="p", batch_size=0)
    with pytest.raises(ValueError, match="mixed_precision"):
        TrainConfig(artifact="a", playlists="p", mixed_precision="fp8")
    with pytest.raises(ValueError, match="num_beams"):
        TrainConfig(artifact="a", playlists="p", num_beams=5, eval_k=10)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--artifact", "a", "--playlists", "p", "--bogus", "1"])


def test_lr_schedule():
    config = TrainConfig(artifact="a", playlists="p", warmup_steps=10)
    assert lr_factor(0, 0.0, config, 110) == pytest.approx(0.1)
    assert lr_factor(9, 0.0, config, 110) == pytest.approx(1.0)
    assert lr_factor(60, 0.0, config, 110) == pytest.approx(0.5)
    assert lr_factor(110, 0.0, config, 110) == pytest.approx(0.0)
    cosine = dataclasses.replace(config, schedule="cosine")
    assert lr_factor(60, 0.0, cosine, 110) == pytest.approx(0.5)
    # a time budget decays by whichever of steps or time is further along
    timed = dataclasses.replace(config, max_minutes=1.0)
    assert lr_factor(20, 45.0, timed, 1010) == pytest.approx(0.25)
    constant = dataclasses.replace(config, schedule="constant")
    assert lr_factor(100, 0.0, constant, 110) == 1.0


# ------------------------------------------------------------------------------------ runs


def _check_written(artifact: Path, steps: int):
    from text2tracks.modeling import load_seq2seq

    seq2seq = artifact / "seq2seq"
    names = {p.name for p in seq2seq.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "sid_layout.json",
        "training_log.jsonl",
        "curve.json",
        "train_config.json",
    } <= names
    assert any(n.startswith("tokenizer") for n in names)
    manifest = json.loads((artifact / "text2tracks.json").read_text())
    assert manifest["components"]["seq2seq"]["steps"] == steps
    from semantic_ids.catalog import SemanticIDCatalog

    catalog = SemanticIDCatalog.load(artifact / "semantic_ids" / "catalog")
    assert manifest["components"]["seq2seq"]["catalog_digest"] == catalog.codes_digest()
    curve = json.loads((seq2seq / "curve.json").read_text())
    assert curve["points"] and curve["points"][-1]["step"] == steps
    for point in curve["points"]:
        assert {"step", "elapsed_s", "val_loss", "val_hits@10"} <= set(point)
        assert 0.0 <= point["val_hits@10"] <= 1.0
    checkpoints = list_checkpoints(artifact / CHECKPOINTS_NAME)
    assert checkpoints and (checkpoints[-1] / "model.safetensors").is_file()
    state = json.loads((checkpoints[-1] / STATE_NAME).read_text())
    assert state["step"] == steps
    model, tokenizer, layout = load_seq2seq(seq2seq)
    return model, tokenizer, layout


@pytest.mark.slow
def test_two_cpu_processes_train_as_one_group(artifact):
    """``accelerate launch --multi_gpu --num_processes 2`` on a machine without CUDA: one gloo
    group (each step takes a batch per process; one log, one summary, one writer), not two
    independent trainings writing the same files."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("this test runs the CPU processes of a machine without CUDA")
    playlists, art = artifact
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "--main_process_port", "29531", "-m"]
    args = ["training.train_seq2seq", "--artifact", str(art), "--playlists", str(playlists)]
    args += ["--max-steps", "4", "--eval-every", "4", "--checkpoint-every", "4", "--members", "1"]
    args += TINY_FLAGS
    result = _run(launch + args)
    summaries = result.stdout.count('"stopped_by"')
    assert summaries == 1, result.stdout
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    batch = int(TINY_FLAGS[TINY_FLAGS.index("--batch-size") + 1])
    assert summary["steps"] == 4 and summary["examples_seen"] == 4 * batch * 2
    assert result.stderr.count("data: ") == 1  # the main process logs
    _check_written(art, 4)


@pytest.mark.slow
def test_accelerate_launch_smoke(artifact):
    playlists, art = artifact
    cmd = [
        "accelerate",
        "launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--cpu",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--num_cpu_threads_per_process",
        "1",
        "-m",
        "training.train_seq2seq",
        "--artifact",
        str(art),
        "--playlists",
        str(playlists),
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--checkpoint-every",
        "3",
        *TINY_FLAGS,
    ]
    if shutil.which("accelerate") is None:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", *cmd[2:]]
    result = _run(cmd)
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["steps"] == 6 and summary["stopped_by"] == "max_steps"
    model, tokenizer, layout = _check_written(art, 6)

    # what was written decodes to catalogue items only
    from semantic_ids.catalog import SemanticIDCatalog
    from text2tracks.decoding import constrained_generate
    from text2tracks.trie import FlatTrie

    catalog = SemanticIDCatalog.load(art / "semantic_ids" / "catalog")
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    enc = tokenizer(["chill vibes", "90s rock 🔥"], padding=True, return_tensors="pt")
    items, scores = constrained_generate(
        model, enc["input_ids"], enc["attention_mask"], trie, layout, k=5, num_beams=8
    )
    assert items.shape == (2, 5)
    assert ((items >= 0) & (items < len(catalog))).all()


@pytest.mark.slow
def test_plain_python_and_resume_continue_the_step_count(artifact):
    playlists, art = artifact
    base = [
        sys.executable,
        "-m",
        "training.train_seq2seq",
        "--artifact",
        str(art),
        "--playlists",
        str(playlists),
        "--eval-every",
        "0",
        *TINY_FLAGS,
    ]
    _run([*base, "--max-steps", "4", "--checkpoint-every", "2"])
    first_log = (art / "seq2seq" / "training_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in first_log if "train_loss" in json.loads(line)] == [
        1,
        2,
        3,
        4,
    ]

    result = _run([*base, "--max-steps", "7", "--resume"])
    assert "resumed from" in result.stderr
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["steps"] == 7
    _check_written(art, 7)
    records = [
        json.loads(line)
        for line in (art / "seq2seq" / "training_log.jsonl").read_text().splitlines()
    ]
    train_steps = [r["step"] for r in records if "train_loss" in r]
    assert train_steps == [1, 2, 3, 4, 5, 6, 7]
    # elapsed time carries over: the resumed run's clock starts where the checkpoint's stopped
    elapsed = [r["elapsed_s"] for r in records if "train_loss" in r]
    assert elapsed == sorted(elapsed)


def test_in_process_train_and_mismatched_playlists(artifact, tmp_path, monkeypatch):
    import torch

    import training.train_seq2seq as train_module
    from training.train_seq2seq import train

    cudnn_attention, train_batch = [], train_module._train_batch

    def spy(run, batch):  # training steps run without cuDNN's attention (training_attention)
        cudnn_attention.append(torch.backends.cuda.cudnn_sdp_enabled())
        return train_batch(run, batch)

    monkeypatch.setattr(train_module, "_train_batch", spy)
    playlists, art = artifact
    threads = torch.get_num_threads()
    args = build_parser().parse_args(
        [
            "--artifact",
            str(art),
            "--playlists",
            str(playlists),
            "--max-steps",
            "3",
            "--eval-every",
            "0",
            "--targets-per-playlist",
            "2",
            "--subword-dropout",  # BPE-dropout on the way (tests/test_subword_dropout.py)
            "0.2",
            *TINY_FLAGS,
        ]
    )
    try:
        summary = train(config_from_args(args))
    finally:
        torch.set_num_threads(threads)
    assert summary["steps"] == 3 and summary["examples_seen"] == 3 * 16
    assert "val_hits@10" in summary["final_eval"]
    assert cudnn_attention == [False] * 3 and torch.backends.cuda.cudnn_sdp_enabled()

    # other playlists than the artifact's: refused
    from semantic_ids.demo import write_demo_jsonl

    other = write_demo_jsonl(tmp_path / "other.jsonl", n_tracks=120, n_playlists=100, seed=1)
    bad = dataclasses.replace(config_from_args(args), playlists=str(other))
    with pytest.raises(ValueError, match="not those"):
        train(bad)


def test_max_grad_norm_clips_the_gradients_of_every_step(tiny_artifact, tmp_path, monkeypatch):
    """``--max-grad-norm N``: before each optimizer step the gradients' global norm is clipped
    to N (measured on the gradients the step then reads); 0, the default, does not clip."""
    import torch
    from accelerate import Accelerator

    from training.train_seq2seq import train

    norms, clip = [], Accelerator.clip_grad_norm_

    def spy(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        before = clip(self, parameters, max_norm, norm_type)
        grads = [p.grad.norm() for p in parameters if p.grad is not None]
        norms.append((float(before), float(torch.stack(grads).norm())))
        return before

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", spy)
    playlists, source = tiny_artifact
    threads = torch.get_num_threads()
    try:
        for name, flags in (("plain", []), ("clipped", ["--max-grad-norm", "0.01"])):
            art = tmp_path / name
            shutil.copytree(source, art)
            args = ["--artifact", str(art), "--playlists", str(playlists), "--max-steps", "2"]
            args += ["--eval-every", "0", "--members", "1", "--targets-per-playlist", "2"]
            train(config_from_args(build_parser().parse_args([*args, *TINY_FLAGS, *flags])))
            if name == "plain":
                assert norms == []
    finally:
        torch.set_num_threads(threads)
    assert len(norms) == 2
    assert all(before > 0.01 and after <= 0.01 * 1.001 for before, after in norms)
    with pytest.raises(ValueError, match="max_grad_norm"):
        TrainConfig(artifact="a", playlists="p", max_grad_norm=-1.0)


# ------------------------------------------------------------------------------------ grouped forward


def _tiny_t5(seed=0):
    return tiny_t5(seed)


def _grouped_batch():
    import numpy as np

    from text2tracks.data import Seq2SeqCollator

    prompts = [
        np.array([5, 6, 7, 1]),
        np.array([8, 1]),
        np.array([9, 10, 11, 12, 13, 1]),
        np.array([8, 1]),
    ]
    sid = 30 + np.arange(6 * 3, dtype=np.int64).reshape(6, 3)
    examples = [(0, 1), (0, 4), (0, 5), (2, 0), (1, 3), (3, 2), (2, 5)]
    shared = Seq2SeqCollator(prompts, sid, 0, 1, share_prompts=True)(examples)
    plain = Seq2SeqCollator(prompts, sid, 0, 1)(examples)
    assert shared["input_ids"].shape[0] == 3 < plain["input_ids"].shape[0]
    return shared, plain


def _loss_and_grads(model, out):
    model.zero_grad(set_to_none=True)
    out.loss.backward()
    return out.loss.detach().item(), {
        n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None
    }


def _assert_same(a, b):
    import torch

    assert abs(a[0] - b[0]) < 1e-5
    assert a[1].keys() == b[1].keys()
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], atol=1e-5, rtol=1e-4, msg=name)


def test_grouped_forward_equals_the_plain_forward():
    from training.train_seq2seq import grouped_forward

    model = _tiny_t5()
    shared, plain = _grouped_batch()
    ref = _loss_and_grads(
        model,
        model(
            input_ids=plain["input_ids"],
            attention_mask=plain["attention_mask"],
            labels=plain["labels"],
        ),
    )
    got = _loss_and_grads(
        model,
        grouped_forward(
            model,
            shared["input_ids"],
            shared["attention_mask"],
            shared["prompt_index"],
            shared["labels"],
        ),
    )
    _assert_same(got, ref)
    assert any(n.startswith("encoder.") for n in got[1]), "the encoder gets gradients"


def test_grouped_forward_under_ddp_and_peft(tmp_path):
    import torch
    import torch.distributed as dist

    from training.train_seq2seq import grouped_forward

    shared, plain = _grouped_batch()
    # DDP (one gloo process): the forward through the wrapper with encoder_outputs computed outside
    # it must leave no parameter unreduced, step after step
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        model = _tiny_t5()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        ref = _loss_and_grads(
            model,
            model(
                input_ids=plain["input_ids"],
                attention_mask=plain["attention_mask"],
                labels=plain["labels"],
            ),
        )
        for _ in range(2):
            got = _loss_and_grads(
                model,
                grouped_forward(
                    ddp,
                    shared["input_ids"],
                    shared["attention_mask"],
                    shared["prompt_index"],
                    shared["labels"],
                ),
            )
            _assert_same(got, ref)
    finally:
        dist.destroy_process_group()

    # peft (LoRA on q, v; lora_dropout 0)
    from peft import LoraConfig, TaskType, get_peft_model

    peft_model = get_peft_model(
        _tiny_t5(),
        LoraConfig(
            task_type=TaskType.SEQ_2_SEQ_LM,
            r=4,
            lora_alpha=8,
            lora_dropout=0.0,
            target_modules=["q", "v"],
            init_lora_weights=False,
        ),
    )
    ref = _loss_and_grads(
        peft_model,
        peft_model(
            input_ids=plain["input_ids"],
            attention_mask=plain["attention_mask"],
            labels=plain["labels"],
        ),
    )
    got = _loss_and_grads(
        peft_model,
        grouped_forward(
            peft_model,
            shared["input_ids"],
            shared["attention_mask"],
            shared["prompt_index"],
            shared["labels"],
            encoder=peft_model.get_encoder(),
        ),
    )
    _assert_same(got, ref)
    assert any("encoder" in n and "lora" in n for n in got[1])


def test_in_process_grouped_and_plain_paths_cover_one_epoch(artifact):
    """Grouping and bucketing on, then off: same examples per epoch, both train."""
    import torch

    from training.train_seq2seq import train

    playlists, art = artifact
    threads = torch.get_num_threads()
    summaries = {}
    try:
        for name, flags in {
            "grouped": ["--targets-per-prompt-group", "4", "--length-bucket-window", "2"],
            "plain": ["--targets-per-prompt-group", "1", "--length-bucket-window", "0"],
        }.items():
            args = build_parser().parse_args(
                [
                    "--artifact",
                    str(art),
                    "--playlists",
                    str(playlists),
                    "--epochs",
                    "1",
                    "--eval-every",
                    "0",
                    "--targets-per-playlist",
                    "3",
                    *TINY_FLAGS,
                    *flags,
                ]
            )
            summaries[name] = train(config_from_args(args))
    finally:
        torch.set_num_threads(threads)
    assert summaries["grouped"]["examples_seen"] == summaries["plain"]["examples_seen"] > 0
    assert summaries["grouped"]["steps"] == summaries["plain"]["steps"]
    for summary in summaries.values():
        assert summary["stopped_by"] == "epochs"
        assert summary["final_eval"]["val_loss"] == summary["final_eval"]["val_loss"]  # not NaN


# ------------------------------------------------------------------------------------ final weights


def _scripted_run(art, playlists, monkeypatch, scores, *flags):
    """A 6-step in-process run validated every 2 steps by ``scores`` (step -> Hits@10) instead
    of the real validation; returns the weights each validation saw and the saved model's."""
    import torch

    import training.train_seq2seq as trainer
    from text2tracks.modeling import load_seq2seq

    seen = []

    def fake_validate(config, accelerator, model, *data):
        seen.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return {"val_loss": 1.0, "val_hits@10": scores[len(seen) * 2], "val_prompts": 16}

    monkeypatch.setattr(trainer, "validate", fake_validate)
    args = ["--artifact", str(art), "--playlists", str(playlists), "--max-steps", "6"]
    args += ["--eval-every", "2", "--members", "1", "--targets-per-playlist", "2", *TINY_FLAGS]
    threads = torch.get_num_threads()
    try:
        summary = trainer.train(config_from_args(build_parser().parse_args([*args, *flags])))
    finally:
        torch.set_num_threads(threads)
    saved = load_seq2seq(art / "seq2seq")[0].state_dict()
    return summary, seen, saved


def _same_weights(a, b) -> bool:
    import torch

    return all(torch.allclose(a[k], b[k], atol=1e-6) for k in a if k in b)


def test_keep_best_and_the_weight_average_decide_the_saved_weights(
    tiny_artifact, tmp_path, monkeypatch
):
    """``--keep-best`` saves the weights of the best validation (not the last); ``--ema-decay``
    validates and saves the moving average, which differs from the raw weights; with both, the
    best average is saved."""
    playlists, source = tiny_artifact
    arts = {}
    for name in ("raw", "best", "ema", "both"):
        arts[name] = tmp_path / name
        shutil.copytree(source, arts[name])
    scores = {2: 0.1, 4: 0.5, 6: 0.2}
    _, raw_seen, raw = _scripted_run(arts["raw"], playlists, monkeypatch, scores)
    assert _same_weights(raw, raw_seen[-1])  # no flag: the last step's weights
    summary, seen, best = _scripted_run(arts["best"], playlists, monkeypatch, scores, "--keep-best")
    assert summary["best_step"] == 4 and summary["final_eval"]["val_hits@10"] == 0.5
    assert _same_weights(best, seen[1]) and not _same_weights(best, seen[2])
    _, ema_seen, ema = _scripted_run(
        arts["ema"], playlists, monkeypatch, scores, "--ema-decay", "0.9"
    )
    assert _same_weights(ema, ema_seen[-1]) and not _same_weights(ema, raw)
    summary, both_seen, both = _scripted_run(
        arts["both"], playlists, monkeypatch, scores, "--ema-decay", "0.9", "--keep-best"
    )
    assert summary["best_step"] == 4 and _same_weights(both, both_seen[1])
    assert _same_weights(both_seen[2], ema_seen[2])  # the same run's averages
    assert not _same_weights(both, ema)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(artifact="a", playlists="p", ema_decay=1.0)
