"""The diffusion head on a toy latent space whose answer is known.

Two prompt classes map to two well-separated Gaussian clusters in 8-D (offset and scaled, so that
the standardisation matters). One small head is trained once per module (a few seconds on CPU).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from text2tracks.diffusion import (
    ByteEncoder,
    ByteEncoderConfig,
    DiffusionHead,
    DiffusionHeadConfig,
    PromptToLatentRegressor,
    RegressorConfig,
    seed_latent,
)

DIM = 8
CENTERS = torch.zeros(2, DIM)
CENTERS[0, 0], CENTERS[1, 0] = 3.0, -3.0
CENTERS[:, 1] = 5.0
SPREAD = 0.3
CONDS = torch.eye(2)


pytestmark = pytest.mark.usefixtures("one_thread")


def _toy_data(n: int, generator: torch.Generator):
    labels = torch.randint(0, 2, (n,), generator=generator)
    return labels, CENTERS[labels] + SPREAD * torch.randn(n, DIM, generator=generator)


def _fit(model, cond_of, latents, steps: int, lr: float = 3e-3, batch: int = 256, seed: int = 0):
    """Plain loop: the accelerate script does the same with checkpoints and validation."""
    g = torch.Generator().manual_seed(seed)
    model.set_latent_stats(latents)
    latents_std = model.standardise(latents)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, latents.shape[0], (batch,), generator=g)
        kwargs = {"generator": g} if isinstance(model, DiffusionHead) else {}
        loss = model(latents_std[idx], cond_of(idx), **kwargs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return model


@pytest.fixture(scope="module")
def head() -> DiffusionHead:
    torch.manual_seed(0)
    labels, latents = _toy_data(4000, torch.Generator().manual_seed(0))
    config = DiffusionHeadConfig(
        latent_dim=DIM,
        cond_dim=2,
        hidden=64,
        n_blocks=2,
        time_embed_dim=32,
        cond_drop_prob=0.2,
        guidance_weight=1.0,
    )
    return _fit(DiffusionHead(config), lambda idx: CONDS[labels[idx]], latents, steps=700)


def _side(samples: torch.Tensor) -> torch.Tensor:
    """+1 for cluster 0 (x > 0), -1 for cluster 1."""
    return torch.sign(samples[..., 0])


def test_samples_land_in_the_prompts_cluster(head):
    samples = head.sample(CONDS, n_samples=200, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (2, 200, DIM)
    assert (_side(samples[0]) > 0).float().mean() > 0.95
    assert (_side(samples[1]) < 0).float().mean() > 0.95
    # Destandardised: the offset dimension is back at 5, the spread near the truth.
    assert torch.allclose(samples[..., 1].mean(), torch.tensor(5.0), atol=0.3)
    assert 0.5 * SPREAD < samples[0, :, 2:].std() < 2 * SPREAD
    # Unconditional samples cover both clusters.
    free = head.sample(
        None, batch_size=1, n_samples=400, generator=torch.Generator().manual_seed(2)
    )
    assert 0.2 < (_side(free[0]) > 0).float().mean() < 0.8


def test_negative_prompt_moves_samples_away(head):
    g = 3
    plain = head.sample(
        CONDS[[0]], guidance_weight=2.0, n_samples=200, generator=torch.Generator().manual_seed(g)
    )
    away = head.sample(
        CONDS[[0]],
        negative_cond=CONDS[[1]],
        guidance_weight=2.0,
        n_samples=200,
        generator=torch.Generator().manual_seed(g),
    )
    dist_plain = (plain[0] - CENTERS[1]).norm(dim=-1).mean()
    dist_away = (away[0] - CENTERS[1]).norm(dim=-1).mean()
    assert dist_away > dist_plain + 0.5


def test_ddim_inversion_reconstructs(head):
    g = torch.Generator().manual_seed(4)
    x0 = CENTERS[[0]] + SPREAD * torch.randn(32, DIM, generator=g)
    cond = CONDS[[0]].expand(32, -1)
    x_T = head.invert(x0, source_cond=cond, steps=20)
    assert x_T.std() > 0.5  # it is noise-like, not the input
    again = head.sample(cond, noise=x_T, guidance_weight=1.0, steps=20)[:, 0]
    err = (again - x0).norm(dim=-1).mean()
    assert err < 0.3, err  # clusters are 6 apart, samples 0.85 apart on average
    # Regenerating under the other prompt goes to the other cluster: inversion is not identity.
    other = head.sample(CONDS[[1]].expand(32, -1), noise=x_T, guidance_weight=1.0, steps=20)[:, 0]
    assert (_side(other) < 0).float().mean() > 0.9


def test_edit_strength_moves_from_seed_to_prompt(head):
    g = torch.Generator().manual_seed(5)
    seeds = CENTERS[[0]] + SPREAD * torch.randn(32, DIM, generator=g)
    target = CONDS[[1]].expand(32, -1)
    strengths = [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]
    edited = [head.edit(seeds, target, strength=s, guidance_weight=2.0) for s in strengths]
    torch.testing.assert_close(edited[0], seeds)
    from_seed = [float((e - seeds).norm(dim=-1).mean()) for e in edited]
    to_prompt = [float((e - CENTERS[1]).norm(dim=-1).mean()) for e in edited]
    assert all(b >= a - 0.05 for a, b in zip(from_seed[:-1], from_seed[1:], strict=True)), from_seed
    assert to_prompt[-1] < 1.5 < to_prompt[0]
    assert to_prompt[2] < to_prompt[0] and to_prompt[-1] < to_prompt[1]
    assert (_side(edited[-1]) < 0).float().mean() > 0.9
    with pytest.raises(ValueError, match="strength"):
        head.edit(seeds, target, strength=1.5)


def test_save_load_gives_identical_samples(head, tmp_path):
    head.save(tmp_path / "diffusion")
    assert sorted(p.name for p in (tmp_path / "diffusion").iterdir()) == [
        "config.json",
        "latent_stats.npy",
        "model.safetensors",
    ]
    again = DiffusionHead.load(tmp_path / "diffusion")
    a = head.sample(
        CONDS, n_samples=5, generator=torch.Generator().manual_seed(6), guidance_weight=3.0
    )
    b = again.sample(
        CONDS, n_samples=5, generator=torch.Generator().manual_seed(6), guidance_weight=3.0
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert again.config == head.config


def test_byte_encoder_head_trains_jointly_and_round_trips(tmp_path):
    torch.manual_seed(0)
    words = [["party", "dance", "club night"], ["sleep", "rainy calm", "lullaby"]]
    labels, latents = _toy_data(2000, torch.Generator().manual_seed(7))
    prompts = [words[int(lab)][i % 3] + f" {i % 7}" for i, lab in enumerate(labels)]
    encoder = ByteEncoder(
        ByteEncoderConfig(dim=32, n_layers=1, n_heads=2, max_length=16, dropout=0.0)
    )
    config = DiffusionHeadConfig(
        latent_dim=DIM, cond_dim=32, hidden=64, n_blocks=2, time_embed_dim=32, guidance_weight=2.0
    )
    head = DiffusionHead(config, encoder)
    tokens = encoder.tokenize(prompts)

    def cond_of(idx):
        return encoder(tokens["input_ids"][idx], tokens["attention_mask"][idx])

    _fit(head, cond_of, latents, steps=250, batch=128)
    samples = head.sample_prompts(
        ["dance 3", "lullaby 5"], n_samples=50, generator=torch.Generator().manual_seed(8)
    )
    assert (_side(samples[0]) > 0).float().mean() > 0.9
    assert (_side(samples[1]) < 0).float().mean() > 0.9

    head.save(tmp_path / "d")
    again = DiffusionHead.load(tmp_path / "d")
    assert isinstance(again.encoder, ByteEncoder)
    kw = dict(n_samples=3, generator=None, negative_prompts=["party 1", "sleep 2"])
    a = head.sample_prompts(
        ["dance 3", "lullaby 5"], **{**kw, "generator": torch.Generator().manual_seed(9)}
    )
    b = again.sample_prompts(
        ["dance 3", "lullaby 5"], **{**kw, "generator": torch.Generator().manual_seed(9)}
    )
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_regressor_baseline_fits_the_cluster_means_and_round_trips(loss, tmp_path):
    torch.manual_seed(0)
    labels, latents = _toy_data(2000, torch.Generator().manual_seed(10))
    model = PromptToLatentRegressor(
        RegressorConfig(latent_dim=DIM, cond_dim=2, hidden=32, dropout=0.0, loss=loss)
    )
    _fit(model, lambda idx: CONDS[labels[idx]], latents, steps=300)
    pred = model.predict(CONDS)
    assert torch.sign(pred[:, 0]).tolist() == [1.0, -1.0]
    if loss == "mse":
        torch.testing.assert_close(pred, CENTERS, atol=0.3, rtol=0)
    assert model.sample(CONDS, n_samples=4).shape == (2, 4, DIM)
    model.save(tmp_path / "r")
    torch.testing.assert_close(
        PromptToLatentRegressor.load(tmp_path / "r").predict(CONDS), pred, rtol=0, atol=0
    )
    with pytest.raises(ValueError, match="latent_regressor"):
        DiffusionHead.load(tmp_path / "r")


def test_seed_latent_fold_in_matches_least_squares():
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(30, 4))
    chosen = [1, 5, 7]
    target = np.zeros(30)
    target[chosen] = 1
    reg = 0.1
    expected = np.linalg.solve(factors.T @ factors + reg * np.eye(4), factors.T @ target)
    np.testing.assert_allclose(seed_latent(factors, chosen, "fold_in", reg), expected, rtol=1e-5)
    np.testing.assert_allclose(seed_latent(factors, chosen), factors[chosen].mean(0), rtol=1e-6)


def test_config_and_input_validation():
    with pytest.raises(ValueError, match="beta_schedule"):
        DiffusionHeadConfig(latent_dim=2, cond_dim=2, beta_schedule="cosine")
    with pytest.raises(ValueError, match="cond_drop_prob"):
        DiffusionHeadConfig(latent_dim=2, cond_dim=2, cond_drop_prob=1.0)
    with pytest.raises(ValueError, match="unknown"):
        DiffusionHeadConfig.from_dict({"latent_dim": 2, "cond_dim": 2, "lr": 1})
    small = DiffusionHead(
        DiffusionHeadConfig(latent_dim=2, cond_dim=2, hidden=8, n_blocks=1, time_embed_dim=8)
    )
    with pytest.raises(ValueError, match="cond"):
        small.sample(torch.zeros(2))
    with pytest.raises(ValueError, match="batch_size"):
        small.sample(None)
    with pytest.raises(ValueError, match="cond_dim"):
        DiffusionHead(
            DiffusionHeadConfig(latent_dim=2, cond_dim=3),
            ByteEncoder(ByteEncoderConfig(dim=8, n_heads=2)),
        )


# ------------------------------------------------------------------------------------ training script


@pytest.fixture(scope="module")
def demo_artifact(tmp_path_factory):
    """A demo JSONL and the artifact build-ids makes of it, built once."""
    from semantic_ids.cf import CFConfig
    from semantic_ids.demo import write_demo_jsonl
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids

    root = tmp_path_factory.mktemp("demo")
    playlists = write_demo_jsonl(root / "demo.jsonl", n_tracks=120, n_playlists=150, seed=0)
    run_build_ids(
        playlists,
        root / "artifact",
        BuildIDsConfig(
            n_levels=2, codebook_size=8, kmeans_iterations=5, cf=CFConfig(factors=8, iterations=3)
        ),
        show_progress=False,
    )
    return playlists, root / "artifact"


TINY = [
    "--hidden",
    "32",
    "--n-blocks",
    "1",
    "--time-embed-dim",
    "16",
    "--byte-dim",
    "16",
    "--byte-layers",
    "1",
    "--byte-heads",
    "2",
    "--batch-size",
    "32",
    "--eval-prompts",
    "8",
    "--eval-samples",
    "2",
    "--warmup-steps",
    "2",
    "--log-every",
    "1",
    "--num-threads",
    "1",
    "--no-progress",
    "--encoder",
    "bytes",
]


@pytest.mark.slow
def test_train_script_checkpoints_resumes_and_saves(demo_artifact):
    from training.train_diffusion import build_parser, main

    playlists, art = demo_artifact
    base = ["--artifact", str(art), "--playlists", str(playlists), *TINY]
    assert main([*base, "--max-steps", "4", "--checkpoint-every", "2", "--eval-every", "2"]) == 0
    assert main([*base, "--max-steps", "6", "--resume"]) == 0
    records = [
        json.loads(line)
        for line in (art / "diffusion" / "training_log.jsonl").read_text().splitlines()
    ]
    assert [r["step"] for r in records if "train_loss" in r] == [5, 6]  # the resumed run's log
    assert "hits@10" in records[-1]
    config = json.loads((art / "diffusion" / "train_config.json").read_text())
    assert config["summary"]["steps"] == 6
    manifest = json.loads((art / "text2tracks.json").read_text())
    assert manifest["components"]["diffusion"]["encoder"] == "bytes"
    head = DiffusionHead.load(art / "diffusion")
    assert head.sample_prompts(["chill vibes"], n_samples=3).shape == (1, 3, 8)
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--no-such-flag"])


@pytest.mark.slow
def test_train_script_regressor_under_accelerate_launch(demo_artifact, tmp_path):
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    playlists, source = demo_artifact
    art = tmp_path / "artifact"
    shutil.copytree(source, art)
    repo = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--cpu",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "training.train_diffusion",
        "--artifact",
        str(art),
        "--playlists",
        str(playlists),
        *TINY,
        "--regressor",
        "--max-steps",
        "3",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONPATH=str(repo))
    result = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in (art / "latent_regressor").iterdir()) == [
        "config.json",
        "latent_stats.npy",
        "model.safetensors",
        "train_config.json",
        "training_log.jsonl",
    ]
    model = PromptToLatentRegressor.load(art / "latent_regressor")
    assert model.predict(model.encode(["road trip"])).shape == (1, 8)


def test_best_weights_keeps_restores_and_round_trips(tmp_path):
    from training.final_weights import BestWeights

    model = torch.nn.Linear(3, 2)
    best = BestWeights("hits@10")
    assert not best.update(model, {}, 1)  # no validation prompts: nothing to compare
    snapshots = {}
    for step, score in ((2, 0.2), (4, 0.5), (6, 0.5), (8, 0.1)):
        with torch.no_grad():
            model.weight.add_(1.0)  # the weights move every "step"
        snapshots[step] = model.weight.detach().clone()
        best.update(model, {"hits@10": score, "recall@10": score / 2}, step)
    assert (best.step, best.score, best.scores["recall@10"]) == (4, 0.5, 0.25)  # ties: earlier
    assert best.restore(model, current_step=8)
    assert torch.equal(model.weight, snapshots[4])
    assert not best.restore(model, current_step=4)  # already the best: nothing to load
    best.save(tmp_path)
    again = BestWeights("hits@10")
    assert again.load(tmp_path) and (again.step, again.scores) == (4, best.scores)
    with torch.no_grad():
        model.weight.zero_()
    assert again.restore(model, current_step=10)
    assert torch.equal(model.weight, snapshots[4])
    assert not BestWeights("hits@5").load(tmp_path)  # another metric: not this run's best
    assert not BestWeights("hits@10").load(tmp_path / "missing")


def _scripted_validation(monkeypatch, scores):
    """Replace the head's validation by scores chosen per step (the run's other code is real);
    a score that is an exception is raised instead (a crash)."""
    import training.train_diffusion as train_diffusion

    def fake(run):
        score = scores[run.state["step"]]
        if isinstance(score, Exception):
            raise score
        return {"hits@10": score, "recall@10": 0.0}

    monkeypatch.setattr(train_diffusion, "_evaluate", fake)


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _six_step_runs(demo_artifact, tmp_path, names):
    """A copy of the demo artifact per name, and the flags of a 6-step run validated every 2."""
    import shutil

    playlists, source = demo_artifact
    arts = {name: tmp_path / name for name in names}
    for path in arts.values():
        shutil.copytree(source, path)
    run = ["--playlists", str(playlists), *TINY, "--eval-every", "2", "--max-steps", "6"]
    return playlists, arts, run


@pytest.mark.slow
def test_train_script_keeps_the_best_validations_weights(demo_artifact, tmp_path, monkeypatch):
    from training.train_diffusion import main

    playlists, arts, run = _six_step_runs(demo_artifact, tmp_path, ("best", "resumed", "last"))
    _scripted_validation(monkeypatch, {2: 0.3, 4: 0.7, 6: 0.2})
    assert main(["--artifact", str(arts["best"]), *run, "--keep-best"]) == 0
    last = ["--artifact", str(arts["last"]), *run, "--checkpoint-every", "2"]  # default: last
    assert main([*last, "--keep-checkpoints", "3"]) == 0
    # a crash after step 4's checkpoint: the resumed run still knows step 4 was the best
    resumed = ["--artifact", str(arts["resumed"]), *run, "--keep-best", "--checkpoint-every", "4"]
    _scripted_validation(monkeypatch, {2: 0.3, 4: 0.7, 6: RuntimeError("crash")})
    with pytest.raises(RuntimeError, match="crash"):
        main(resumed)
    _scripted_validation(monkeypatch, {2: 0.3, 4: 0.7, 6: 0.2})
    assert main([*resumed, "--resume"]) == 0
    at4 = _weights(arts["last"] / ".checkpoints-diffusion" / "checkpoint-4")
    at6 = _weights(arts["last"] / "diffusion")
    assert any(not torch.equal(at4[k], at6[k]) for k in at6)  # the weights did move after 4
    for name in ("best", "resumed"):
        saved = _weights(arts[name] / "diffusion")
        assert all(torch.allclose(saved[k], at4[k]) for k in saved), name
        config = json.loads((arts[name] / "diffusion" / "train_config.json").read_text())
        assert config["summary"]["best_step"] == 4
        assert config["summary"]["final_eval"]["hits@10"] == 0.7
        manifest = json.loads((arts[name] / "text2tracks.json").read_text())
        assert manifest["components"]["diffusion"]["hits@10"] == 0.7
    config = json.loads((arts["last"] / "diffusion" / "train_config.json").read_text())
    assert config["summary"]["best_step"] is None
    assert config["summary"]["final_eval"]["hits@10"] == 0.2


def test_weight_average_tracks_swaps_and_copies():
    from training.final_weights import WeightAverage

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average = WeightAverage(model, decay=0.5)
    average.step()  # the first step copies: decay 0
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.step()  # decay min(0.5, 2/11) = 2/11: 2/11 * 1 + 9/11 * 3
    expected = 2 / 11 * 1.0 + 9 / 11 * 3.0
    with average.swapped_in():
        assert torch.allclose(model.weight, torch.full_like(model.weight, expected))
    assert torch.equal(model.weight, torch.full_like(model.weight, 3.0))  # restored
    state = average.state_dict()
    other = WeightAverage(model, decay=0.5)
    other.load_state_dict(state)
    other.copy_to_model()
    assert torch.allclose(model.weight, torch.full_like(model.weight, expected))


@pytest.mark.slow
def test_train_script_saves_the_weight_average_and_resumes_it(demo_artifact, tmp_path, monkeypatch):
    from training.final_weights import WeightAverage
    from training.train_diffusion import DiffusionTrainConfig, main

    playlists, arts, run = _six_step_runs(demo_artifact, tmp_path, ("raw", "ema", "resumed"))
    run += ["--lr", "0.01"]
    _scripted_validation(monkeypatch, {2: 0.1, 4: 0.1, 6: 0.1})
    assert main(["--artifact", str(arts["raw"]), *run]) == 0
    assert main(["--artifact", str(arts["ema"]), *run, "--ema-decay", "0.9"]) == 0
    raw, ema = _weights(arts["raw"] / "diffusion"), _weights(arts["ema"] / "diffusion")
    assert any(not torch.allclose(raw[k], ema[k]) for k in raw)  # the average was saved
    # a crash after step 4's checkpoint, which holds the average beside the raw weights
    resumed = ["--artifact", str(arts["resumed"]), *run, "--ema-decay", "0.9"]
    resumed += ["--checkpoint-every", "4"]
    _scripted_validation(monkeypatch, {2: 0.1, 4: 0.1, 6: RuntimeError("crash")})
    with pytest.raises(RuntimeError, match="crash"):
        main(resumed)
    checkpoint = arts["resumed"] / ".checkpoints-diffusion" / "checkpoint-4"
    saved = torch.load(checkpoint / "custom_checkpoint_0.pkl", weights_only=False)
    at4 = _weights(checkpoint)
    assert not all(
        torch.equal(a, w) for a, w in zip(saved["shadow_params"], at4.values(), strict=False)
    )
    loaded = []
    real_load = WeightAverage.load_state_dict
    monkeypatch.setattr(
        WeightAverage,
        "load_state_dict",
        lambda self, state: (loaded.append(state), real_load(self, state))[1],
    )
    _scripted_validation(monkeypatch, {2: 0.1, 4: 0.1, 6: 0.1})
    assert main([*resumed, "--resume"]) == 0
    assert len(loaded) == 1 and loaded[0]["optimization_step"] == 4
    assert all(
        torch.equal(a, b)
        for a, b in zip(loaded[0]["shadow_params"], saved["shadow_params"], strict=True)
    )
    with pytest.raises(ValueError, match="ema_decay"):
        DiffusionTrainConfig(artifact="a", playlists="p", ema_decay=1.0)
