"""GDR's objective for the diffusion head: x_0 prediction, MSE plus an InfoNCE term between the
predicted x_0 (as a retrieval query) and the playlist's tracks.

The learning test uses a space whose answer is known: four genres, each a cluster of items on
its own axis; a playlist of genre g has tracks of genre g only, but its CF factor carries large
isotropic noise (as ALS factors of small playlists do), so a head that merely reproduces the
factors' distribution draws many samples that point at the wrong genre. The contrastive term
asks each predicted x_0 to rank its playlist's tracks first.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from text2tracks.contrastive import ContrastiveTargets, contrastive_targets, info_nce
from text2tracks.diffusion import DiffusionHead, DiffusionHeadConfig

N_GENRES, DIM, PER_GENRE, TRACKS_PER_PLAYLIST = 4, 8, 30, 10


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------ the loss


def _log_softmax(row: np.ndarray) -> np.ndarray:
    return row - np.log(np.exp(row).sum())


def test_info_nce_equals_a_hand_computation():
    queries = np.array([[1.0, 0.0], [0.5, 2.0]])
    items = np.array([[2.0, 0.0], [0.0, 1.0], [-1.0, 1.0]])
    tau = 0.5
    # query 0 -> item 0; query 1 -> items 1 and 2, half each
    rows, cols, weights = [0, 1, 1], [0, 1, 2], [1.0, 0.5, 0.5]
    logits = queries @ items.T / tau
    expected = [
        -_log_softmax(logits[0])[0],
        -(0.5 * _log_softmax(logits[1])[1] + 0.5 * _log_softmax(logits[1])[2]),
    ]
    got = info_nce(
        torch.tensor(queries, dtype=torch.float32),
        torch.tensor(items, dtype=torch.float32),
        torch.tensor(rows),
        torch.tensor(cols),
        torch.tensor(weights),
        tau,
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)
    # a query without a positive pair costs nothing; a perfect query costs ~0
    none = info_nce(
        torch.tensor([[100.0, 0.0]]),
        torch.tensor(items, dtype=torch.float32),
        torch.tensor([0]),
        torch.tensor([0]),
        torch.tensor([1.0]),
        tau,
    )
    assert float(none[0]) < 1e-6
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.zeros(1, 2), torch.zeros(3, 2), *(torch.zeros(1),) * 3, 0.0)
    with pytest.raises(ValueError, match="share dim"):
        info_nce(torch.zeros(1, 2), torch.zeros(3, 4), *(torch.zeros(1),) * 3, 1.0)


def test_in_batch_targets_draw_one_track_per_playlist_and_keep_false_negatives_positive():
    # playlist 0 holds tracks {0, 1}; playlist 1 holds {1}; playlist 2 holds {2, 3}
    tracks = sp.csr_matrix((np.ones(5, np.float32), [0, 1, 1, 2, 3], [0, 2, 3, 5]), shape=(3, 4))
    factors = torch.arange(8, dtype=torch.float32).reshape(4, 2)
    for seed in range(20):
        targets = contrastive_targets(tracks, factors, "in_batch", np.random.default_rng(seed))
        drawn = [int(i) for i in (targets.items[:, 0] / 2).long()]  # factor row i is [2i, 2i+1]
        assert drawn[0] in (0, 1) and drawn[1] == 1 and drawn[2] in (2, 3)
        pairs = {
            (int(r), int(c)): float(w)
            for r, c, w in zip(targets.rows, targets.cols, targets.weights, strict=True)
        }
        holds = {0: (0, 1), 1: (1,), 2: (2, 3)}
        expected_rows = {r: [j for j in range(3) if drawn[j] in holds[r]] for r in holds}
        expected = {(r, c): 1.0 / len(cols) for r, cols in expected_rows.items() for c in cols}
        assert pairs == pytest.approx(expected)


def test_full_targets_are_every_track_of_the_playlist_evenly():
    tracks = sp.csr_matrix((np.ones(3, np.float32), [0, 1, 3], [0, 2, 3]), shape=(2, 4))
    factors = torch.randn(4, 2)
    targets = contrastive_targets(tracks, factors, "full", np.random.default_rng(0))
    assert targets.items is factors or torch.equal(targets.items, factors)
    pairs = sorted(
        zip(targets.rows.tolist(), targets.cols.tolist(), targets.weights.tolist(), strict=True)
    )
    assert pairs == [(0, 0, 0.5), (0, 1, 0.5), (1, 3, 1.0)]
    with pytest.raises(ValueError, match="negatives"):
        contrastive_targets(tracks, factors, "hard", np.random.default_rng(0))
    empty = sp.csr_matrix((1, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="at least one track"):
        contrastive_targets(empty, factors, "in_batch", np.random.default_rng(0))


# ------------------------------------------------------------------------------------ the head


def _config(**overrides) -> DiffusionHeadConfig:
    values = dict(
        latent_dim=DIM,
        cond_dim=N_GENRES,
        hidden=64,
        n_blocks=2,
        time_embed_dim=32,
        cond_drop_prob=0.1,
        guidance_weight=1.0,
        ddim_steps=10,
        prediction_type="sample",
    )
    return DiffusionHeadConfig(**{**values, **overrides})


def test_config_checks_the_contrastive_settings():
    with pytest.raises(ValueError, match="prediction_type 'sample'"):
        _config(prediction_type="epsilon", contrastive_weight=1.0)
    with pytest.raises(ValueError, match="contrastive_weight"):
        _config(contrastive_weight=-0.1)
    with pytest.raises(ValueError, match="contrastive_temperature"):
        _config(contrastive_weight=1.0, contrastive_temperature=0.0)
    # epsilon with no contrastive term stays as it was
    assert _config(prediction_type="epsilon").contrastive_weight == 0.0


def test_losses_are_mse_plus_weighted_contrastive_and_targets_are_required():
    torch.manual_seed(0)
    head = DiffusionHead(_config(contrastive_weight=0.7, cond_drop_prob=0.0))
    latents = torch.randn(6, DIM)
    head.set_latent_stats(latents)
    x = head.standardise(latents)
    cond = torch.eye(N_GENRES)[torch.tensor([0, 1, 2, 3, 0, 1])]
    targets = ContrastiveTargets(
        items=torch.randn(6, DIM),
        rows=torch.arange(6),
        cols=torch.arange(6),
        weights=torch.ones(6),
    )
    parts = head.losses(x, cond, torch.Generator().manual_seed(0), targets)
    parts = {name: float(value.detach()) for name, value in parts.items()}
    assert parts["loss"] == pytest.approx(parts["mse"] + 0.7 * parts["contrastive"], rel=1e-6)
    again = head(x, cond, torch.Generator().manual_seed(0), targets)
    assert float(again.detach()) == pytest.approx(parts["loss"])
    with pytest.raises(ValueError, match="contrastive_targets must be given"):
        head(x, cond)
    plain = DiffusionHead(_config())
    plain.set_latent_stats(latents)
    with pytest.raises(ValueError, match="contrastive_targets must be None"):
        plain(x, cond, contrastive_targets=targets)


def test_v_prediction_x0_estimate_is_exact_for_the_true_velocity():
    head = DiffusionHead(_config(prediction_type="v_prediction", contrastive_weight=1.0))
    x_0, noise = torch.randn(5, DIM), torch.randn(5, DIM)
    timesteps = torch.tensor([0, 10, 300, 700, 999])
    x_t = head.noise_scheduler.add_noise(x_0, noise, timesteps)
    v = head.noise_scheduler.get_velocity(x_0, noise, timesteps)
    torch.testing.assert_close(head._predicted_x0(v, x_t, timesteps), x_0, atol=1e-4, rtol=1e-4)


def _genre_world(seed: int = 0, n: int = 2000, noise: float = 1.5):
    rng = np.random.default_rng(seed)
    centers = np.zeros((N_GENRES, DIM), np.float32)
    centers[np.arange(N_GENRES), np.arange(N_GENRES)] = 3.0
    item_genre = np.repeat(np.arange(N_GENRES), PER_GENRE)
    items = (centers[item_genre] + 0.3 * rng.normal(size=(item_genre.size, DIM))).astype(np.float32)
    genre = rng.integers(0, N_GENRES, n)
    factors = (centers[genre] / 3.0 + noise * rng.normal(size=(n, DIM))).astype(np.float32)
    cols = np.concatenate(
        [
            rng.choice(np.flatnonzero(item_genre == g), TRACKS_PER_PLAYLIST, replace=False)
            for g in genre
        ]
    )
    indptr = np.arange(0, n * TRACKS_PER_PLAYLIST + 1, TRACKS_PER_PLAYLIST)
    tracks = sp.csr_matrix(
        (np.ones(cols.size, np.float32), cols, indptr), shape=(n, item_genre.size)
    )
    return items, item_genre, genre, factors, tracks


def _train_and_score(contrastive_weight: float, steps: int = 250) -> float:
    """Share of each sample's top 10 items (by inner product, as faiss ranks) that are of the
    prompt's genre, over 16 samples of each genre's prompt."""
    items, item_genre, genre, factors, tracks = _genre_world()
    torch.manual_seed(0)
    head = DiffusionHead(_config(contrastive_weight=contrastive_weight))
    latents = torch.from_numpy(factors)
    head.set_latent_stats(latents)
    latents_std = head.standardise(latents)
    conds = torch.eye(N_GENRES)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    generator, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    item_tensor = torch.from_numpy(items)
    head.train()
    for _ in range(steps):
        idx = torch.randint(0, len(genre), (128,), generator=generator)
        targets = (
            contrastive_targets(tracks[idx.numpy()], item_tensor, "in_batch", rng)
            if contrastive_weight
            else None
        )
        loss = head(latents_std[idx], conds[genre[idx.numpy()]], generator, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    samples = head.sample(conds, n_samples=16, generator=torch.Generator().manual_seed(1))
    sims = np.einsum("gsd,id->gsi", samples.numpy(), items)
    top = np.argsort(-sims, axis=2)[:, :, :10]
    return float((item_genre[top] == np.arange(N_GENRES)[:, None, None]).mean())


@pytest.mark.slow
def test_contrastive_term_makes_samples_retrieve_the_right_genre():
    mse_only = _train_and_score(0.0)
    gdr = _train_and_score(1.0)
    assert gdr >= 0.9, gdr
    assert gdr > mse_only + 0.2, (mse_only, gdr)


# ------------------------------------------------------------------------------------ training


def test_train_config_validates_and_maps_flags():
    from training.train_diffusion import DiffusionTrainConfig, build_parser

    base = dict(artifact="a", playlists="p")
    with pytest.raises(ValueError, match="contrastive_negatives"):
        DiffusionTrainConfig(**base, contrastive_negatives="hard")
    with pytest.raises(ValueError, match="pool"):
        DiffusionTrainConfig(**base, pool="sum")
    with pytest.raises(ValueError, match="prediction_type"):
        DiffusionTrainConfig(**base, prediction_type="epsilon", contrastive_weight=0.5)
    args = build_parser().parse_args(
        [
            "--artifact",
            "a",
            "--playlists",
            "p",
            "--contrastive-weight",
            "0.5",
            "--contrastive-temperature",
            "0.1",
            "--contrastive-negatives",
            "full",
            "--prediction-type",
            "sample",
            "--pool",
            "mean",
        ]
    )
    assert (args.contrastive_weight, args.contrastive_temperature) == (0.5, 0.1)
    assert (args.contrastive_negatives, args.pool) == ("full", "mean")
    config = DiffusionTrainConfig(**base, contrastive_weight=0.5, prediction_type="sample")
    head_config = config.head_config(4, 3)
    assert (head_config.contrastive_weight, head_config.contrastive_temperature) == (0.5, 0.05)


@pytest.fixture(scope="module")
def demo_artifact(tmp_path_factory):
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


@pytest.mark.slow
@pytest.mark.parametrize("negatives", ["in_batch", "full"])
def test_train_script_logs_and_saves_the_contrastive_head(demo_artifact, negatives):
    from training.train_diffusion import main

    playlists, art = demo_artifact
    flags = ["--hidden", "32", "--n-blocks", "1", "--time-embed-dim", "16", "--byte-dim", "16"]
    flags += ["--byte-layers", "1", "--byte-heads", "2", "--batch-size", "32"]
    flags += ["--eval-prompts", "8", "--eval-samples", "2", "--warmup-steps", "2"]
    flags += ["--log-every", "1", "--num-threads", "1", "--no-progress", "--encoder", "bytes"]
    flags += ["--prediction-type", "sample", "--contrastive-weight", "0.5", "--pool", "mean"]
    flags += ["--contrastive-negatives", negatives, "--max-steps", "3", "--no-fit-fusion"]
    assert main(["--artifact", str(art), "--playlists", str(playlists), *flags]) == 0
    records = [
        json.loads(line)
        for line in (art / "diffusion" / "training_log.jsonl").read_text().splitlines()
    ]
    logged = [r for r in records if "train_loss" in r]
    assert [r["step"] for r in logged] == [1, 2, 3]
    for r in logged:
        assert r["train_contrastive"] > 0 and r["train_mse"] > 0
        # the logged loss is the weighted sum of the logged parts
        assert r["train_loss"] == pytest.approx(r["train_mse"] + 0.5 * r["train_contrastive"])
    head = DiffusionHead.load(art / "diffusion")
    assert head.config.contrastive_weight == 0.5 and head.config.prediction_type == "sample"
    assert head.sample_prompts(["chill vibes"], n_samples=2).shape == (1, 2, 8)


# ------------------------------------------------------------------------------------ the A/B


def test_gdr_bench_config_checks_and_lists_its_poolings():
    from eval.bench_diffusion_gdr import GDRBenchConfig, build_parser

    with pytest.raises(ValueError, match="variants"):
        GDRBenchConfig(variants="mse,nope")
    with pytest.raises(ValueError, match="variants"):
        GDRBenchConfig(variants="gdr,gdr")
    with pytest.raises(ValueError, match="minutes_per_variant"):
        GDRBenchConfig(minutes_per_variant=0)
    config = GDRBenchConfig(n_samples=4, mean_samples=16)
    assert config.poolings() == [
        ("max@4", "max", 4),
        ("mean@4", "mean", 4),
        ("mean@16", "mean", 16),
    ]
    assert [p[0] for p in GDRBenchConfig(mean_samples=0).poolings()] == ["max@4", "mean@4"]
    args = build_parser().parse_args(
        ["--benchmark-dir", "d", "--playlists", "p", "--out", "o", "--variants", "mse,gdr-full"]
    )
    assert args.variants == "mse,gdr-full"


@pytest.mark.slow
def test_gdr_bench_trains_each_variant_on_a_copy_and_scores_the_same_prompts(tmp_path):
    import hashlib

    from tiny_artifact import build_tiny_artifact

    from eval.bench_diffusion_gdr import GDRBenchConfig, run_gdr_benchmark
    from semantic_ids.interactions import ItemVocab, catalogue_tracks
    from semantic_ids.playlists import read_playlists

    artifact = build_tiny_artifact(tmp_path)
    before = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in artifact.rglob("*") if p.is_file()
    }
    vocab = ItemVocab.load(artifact / "cf")
    playlists = read_playlists(tmp_path / "demo.jsonl").playlists[:40]
    pairs = [(p.prompt, catalogue_tracks(p, vocab)) for p in playlists]
    prompts = [prompt for prompt, rel in pairs if rel]
    relevant = [np.asarray(rel) for _, rel in pairs if rel]
    config = GDRBenchConfig(
        variants="mse,gdr",
        minutes_per_variant=0.05,
        hidden=32,
        n_blocks=1,
        batch_size=64,
        n_samples=2,
        mean_samples=4,
        n_bootstrap=50,
        num_threads=1,
    )
    out = tmp_path / "gdr"
    report = run_gdr_benchmark(
        artifact, str(tmp_path / "demo.jsonl"), out, prompts, relevant, config
    )
    assert set(report["systems"]) == {"mse", "gdr"}
    for by_pool in report["systems"].values():
        assert set(by_pool) == {"max@2", "mean@2", "mean@4"}
        for metrics in by_pool.values():
            low, high = metrics["hits@10_ci"]
            assert 0 <= low <= metrics["hits@10"] <= high <= 1
    assert set(report["comparisons"]) == {
        f"gdr vs mse ({n})" for n in ("max@2", "mean@2", "mean@4")
    }
    gdr_head = json.loads((out / "runs" / "gdr" / "config.json").read_text())["config"]
    assert gdr_head["contrastive_weight"] == 1.0 and gdr_head["prediction_type"] == "sample"
    mse_head = json.loads((out / "runs" / "mse" / "config.json").read_text())["config"]
    assert mse_head["contrastive_weight"] == 0.0 and mse_head["prediction_type"] == "epsilon"
    assert "| gdr |" in (out / "gdr.md").read_text()
    assert json.loads((out / "gdr.json").read_text())["n_test_prompts"] == len(prompts)
    after = {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in artifact.rglob("*") if p.is_file()
    }
    assert after == before  # the artifact is only read


@pytest.mark.parametrize("prediction_type", ["sample", "v_prediction"])
def test_inversion_and_edits_of_an_x0_head_are_finite_and_reconstruct(prediction_type):
    # diffusers' inverse DDIM turns x_0_hat into eps with alpha_bar = 1 at the first step (NaN);
    # the head computes eps at the model's timestep instead
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (2000,), generator=generator)
    centers = torch.tensor([[3.0, 5.0, 0.0, 0.0], [-3.0, 5.0, 0.0, 0.0]])
    latents = centers[labels] + 0.3 * torch.randn(2000, 4, generator=generator)
    torch.manual_seed(0)
    head = DiffusionHead(
        DiffusionHeadConfig(
            latent_dim=4,
            cond_dim=2,
            hidden=64,
            n_blocks=2,
            time_embed_dim=32,
            prediction_type=prediction_type,
            ddim_steps=10,
        )
    )
    head.set_latent_stats(latents)
    target = head.standardise(latents)
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    head.train()
    for _ in range(300):
        idx = torch.randint(0, 2000, (256,), generator=generator)
        loss = head(target[idx], torch.eye(2)[labels[idx]], generator)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    seeds, cond = latents[:8], torch.eye(2)[labels[:8]]
    x_T = head.invert(seeds, cond)
    assert torch.isfinite(x_T).all()
    back = head.sample(cond, guidance_weight=1.0, noise=x_T)[:, 0]
    # back on the seed's own cluster, near the seed
    assert torch.equal(torch.sign(back[:, 0]), torch.sign(seeds[:, 0]))
    assert float((back - seeds).norm(dim=1).mean()) < 1.0
    moved = head.edit(seeds, torch.eye(2)[1 - labels[:8]], 1.0, source_cond=cond)
    assert torch.isfinite(moved).all()
