"""Seed conditioning of the diffusion head (MO-DiT: seeds -> query latent).

A world whose answer is known: four groups, each a cluster of items on its own axis; a playlist
of group g holds tracks of g only and its CF factor points (noisily) at g. A seed-conditioned
head trained briefly on these playlists, with seeds drawn as ``train-diffusion`` draws them
(:class:`training.diffusion_seeds.SeedBatches`) and the title dropped at times, must answer in the
seeds' group when the prompt says nothing, and near chance without seeds. The API part uses the
tiny artifact (genre-clustered factors, frozen tiny-T5 encoder) with a seed-conditioned head.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from tiny_artifact import add_tiny_diffusion, build_tiny_artifact, genre_of

from text2tracks.contrastive import contrastive_targets
from text2tracks.diffusion import CONFIG_NAME, DiffusionHead, DiffusionHeadConfig
from text2tracks.head_seeds import seed_inputs
from text2tracks.pipeline import Text2Tracks
from text2tracks.ragged import Ragged
from training.diffusion_seeds import SeedBatches

N_GROUPS, DIM, PER_GROUP, TRACKS = 4, 8, 30, 10

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(**overrides) -> DiffusionHeadConfig:
    values = dict(
        latent_dim=DIM,
        cond_dim=N_GROUPS,
        hidden=64,
        n_blocks=2,
        time_embed_dim=32,
        cond_drop_prob=0.1,
        guidance_weight=1.0,
        ddim_steps=10,
        prediction_type="sample",
        seed_conditioning=True,
        max_seed_tracks=5,
    )
    return DiffusionHeadConfig(**{**values, **overrides})


def _world(seed: int = 0, n: int = 1500):
    rng = np.random.default_rng(seed)
    centers = np.zeros((N_GROUPS, DIM), np.float32)
    centers[np.arange(N_GROUPS), np.arange(N_GROUPS)] = 3.0
    item_group = np.repeat(np.arange(N_GROUPS), PER_GROUP)
    items = (centers[item_group] + 0.3 * rng.normal(size=(item_group.size, DIM))).astype(np.float32)
    group = rng.integers(0, N_GROUPS, n)
    factors = (centers[group] / 3.0 + 1.0 * rng.normal(size=(n, DIM))).astype(np.float32)
    tracks = [rng.choice(np.flatnonzero(item_group == g), TRACKS, replace=False) for g in group]
    indptr = np.arange(0, n * TRACKS + 1, TRACKS, dtype=np.int64)
    items_in_order = np.concatenate(tracks).astype(np.int64)
    matrix = sp.csr_matrix(
        (np.ones(items_in_order.size, np.float32), items_in_order, indptr),
        shape=(n, item_group.size),
    )
    data = {"item_factors": items, "train_sequences": Ragged(indptr, items_in_order)}
    return data, item_group, group, factors, matrix


@pytest.fixture(scope="module")
def world():
    """The planted world and a seed-conditioned head trained on it (MSE + contrastive, the seeds
    drawn per epoch, the prompt a one-hot of the group, dropped with the drawn title)."""
    data, item_group, group, factors, matrix = _world()
    torch.manual_seed(0)
    head = DiffusionHead(_config(contrastive_weight=1.0))
    head.set_latent_stats(factors)
    head.set_seed_stats(data["item_factors"])
    latents_std = head.standardise(torch.from_numpy(factors))
    cond = torch.eye(N_GROUPS)[torch.from_numpy(group)]
    seeds = SeedBatches(data, prob=0.8, max_seeds=5, seed=0)
    items = torch.from_numpy(data["item_factors"])
    optimizer = torch.optim.AdamW(head.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    head.train()
    for step in range(360):
        seeds.set_epoch(step // 30)
        rows = rng.choice(len(group), 128, replace=False)
        targets = contrastive_targets(seeds.positives(matrix[rows], rows), items, "in_batch", rng)
        loss = head(
            latents_std[rows],
            cond[rows],
            generator=generator,
            contrastive_targets=targets,
            **seeds.inputs(rows, "cpu"),
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    return head, data["item_factors"], item_group


def _group_share(latents: torch.Tensor, items: np.ndarray, item_group, g: int) -> float:
    """Share of each sample's top 10 items (inner product, as faiss ranks) in group ``g``."""
    scores = latents.reshape(-1, DIM).numpy() @ items.T
    top = np.argsort(-scores, axis=1)[:, :10]
    return float((item_group[top] == g).mean())


def test_seeds_alone_steer_the_latent_to_their_group(world):
    head, items, item_group = world
    generator = torch.Generator().manual_seed(1)
    seeded_share, plain_share = [], []
    for g in range(N_GROUPS):
        chosen = np.flatnonzero(item_group == g)[:3]
        seed_latents, seed_counts = seed_inputs(items, [chosen], head.config.max_seed_tracks)
        seeded = head.sample(
            None,
            batch_size=1,
            n_samples=16,
            generator=generator,
            seed_latents=torch.from_numpy(seed_latents),
            seed_counts=torch.from_numpy(seed_counts),
        )
        plain = head.sample(None, batch_size=1, n_samples=16, generator=generator)
        seeded_share.append(_group_share(seeded, items, item_group, g))
        plain_share.append(_group_share(plain, items, item_group, g))
    assert min(seeded_share) >= 0.8
    # Without seeds nothing says which group is meant: the answer's share in "the seeds' group",
    # averaged over the groups, is chance (0.25).
    assert np.mean(plain_share) <= 0.4


def test_guidance_base_is_the_null_prompt_without_seeds(world):
    head = world[0]
    x_t, t = torch.randn(3, DIM), torch.tensor(500)
    cond = torch.eye(N_GROUPS)[:3]
    seeds = (torch.randn(3, DIM), torch.tensor([1.0, 2.0, 3.0]))
    timesteps = t.expand(3)
    with torch.no_grad():
        guided = head._guided(x_t, t, cond, None, 2.5, seeds)
        conditional = head.denoiser(x_t, timesteps, cond, None, *seeds)
        base = head.denoiser(x_t, timesteps, None)  # null prompt, no seeds
        torch.testing.assert_close(guided, base + 2.5 * (conditional - base))
        # a negative prompt replaces the null prompt; the base still reads no seeds
        negative = torch.eye(N_GROUPS)[[3, 3, 3]]
        guided = head._guided(x_t, t, cond, negative, 2.5, seeds)
        base = head.denoiser(x_t, timesteps, negative)
        torch.testing.assert_close(guided, base + 2.5 * (conditional - base))
        # count 0 reads as no seeds
        none = (seeds[0], torch.zeros(3))
        torch.testing.assert_close(
            head.denoiser(x_t, timesteps, cond, None, *none), head.denoiser(x_t, timesteps, cond)
        )


def test_seed_batches_draw_by_epoch_and_leave_seeds_out_of_the_positives():
    data, _, _, _, matrix = _world(n=200)
    batches = SeedBatches(data, prob=1.0, max_seeds=5, seed=3)
    batches.set_epoch(0)
    rows = np.arange(0, 200, 7)
    inputs = batches.inputs(rows, "cpu")
    drawn = [batches.drawn.seeds_of(int(r)) for r in rows]
    assert all(1 <= len(s) <= 5 for s in drawn)
    expected_latents, expected_counts = seed_inputs(data["item_factors"], drawn, 5)
    np.testing.assert_allclose(inputs["seed_latents"].numpy(), expected_latents, rtol=1e-5)
    np.testing.assert_array_equal(inputs["seed_counts"].numpy(), expected_counts)
    assert inputs["prompt_kept"].dtype == torch.bool
    positives = batches.positives(matrix[rows], rows)
    for i, r in enumerate(rows):
        own = set(matrix[r].indices.tolist())
        assert set(positives[i].indices.tolist()) == own - set(drawn[i].tolist())
    again = SeedBatches(data, prob=1.0, max_seeds=5, seed=3)
    again.set_epoch(0)
    np.testing.assert_array_equal(again.drawn.is_seed, batches.drawn.is_seed)
    again.set_epoch(1)
    assert not np.array_equal(again.drawn.is_seed, batches.drawn.is_seed)


def test_old_configs_load_with_conditioning_off_and_seeded_heads_round_trip(world, tmp_path):
    plain = DiffusionHead(_config(seed_conditioning=False))
    plain.set_latent_stats(torch.randn(10, DIM))
    plain.save(tmp_path / "old")
    path = tmp_path / "old" / CONFIG_NAME
    payload = json.loads(path.read_text())
    for key in ("seed_conditioning", "max_seed_tracks"):
        del payload["config"][key]
    path.write_text(json.dumps(payload))
    loaded = DiffusionHead.load(tmp_path / "old")
    assert loaded.config.seed_conditioning is False and not loaded.reads_seeds
    with pytest.raises(ValueError, match="without seed_conditioning"):
        loaded.sample(
            None, batch_size=1, seed_latents=torch.zeros(1, DIM), seed_counts=torch.ones(1)
        )

    head = world[0]
    head.save(tmp_path / "seeded")
    again = DiffusionHead.load(tmp_path / "seeded")
    assert again.reads_seeds
    torch.testing.assert_close(again.denoiser.seed_shift, head.denoiser.seed_shift)
    kwargs = dict(seed_latents=torch.randn(2, DIM), seed_counts=torch.tensor([2.0, 4.0]))
    noise = torch.randn(2, DIM)
    torch.testing.assert_close(
        again.sample(None, batch_size=2, noise=noise, **kwargs),
        head.sample(None, batch_size=2, noise=noise, **kwargs),
    )
    with pytest.raises(ValueError, match="seed_conditioning must be a bool"):
        _config(seed_conditioning=1)


# ------------------------------------------------------------------------------------ the API


@pytest.fixture(scope="module")
def recommenders(tmp_path_factory):
    """``(with a seed-conditioned head, with the tiny artifact's plain head)``: the seeded head is
    trained on genre-clustered factors, its prompt a genre phrase (or null) and its seeds 1-5
    tracks of the genre (or none)."""
    from semantic_ids.demo import GENRE_PHRASES, GENRES

    artifact = add_tiny_diffusion(build_tiny_artifact(tmp_path_factory.mktemp("seeds")))
    plain = Text2Tracks.from_pretrained(artifact, device="cpu")
    seeded = Text2Tracks.from_pretrained(artifact, device="cpu")
    factors = seeded.item_factors
    genre = np.array([GENRES.index(genre_of(t)) for t in seeded.catalog.item_ids])
    phrases = [(p, GENRES.index(g)) for g in GENRES for p in GENRE_PHRASES[g]]
    encoder = seeded.diffusion_head.encoder
    with torch.no_grad():
        conds = encoder.encode([p for p, _ in phrases])
    rng = np.random.default_rng(0)
    n = 3000
    pick = rng.integers(0, len(phrases), n)
    label = np.array([phrases[i][1] for i in pick])
    centers = np.stack([factors[genre == g].mean(0) for g in range(len(GENRES))])
    latents = centers[label] + 0.3 * rng.normal(size=(n, factors.shape[1]))
    seeds = [
        rng.choice(np.flatnonzero(genre == g), rng.integers(1, 6)) if rng.random() < 0.7 else None
        for g in label
    ]
    seed_latents, seed_counts = (torch.from_numpy(a) for a in seed_inputs(factors, seeds, 5))
    kept = torch.from_numpy((rng.random(n) < 0.6) | (seed_counts.numpy() == 0))
    config = _config(latent_dim=factors.shape[1], cond_dim=encoder.out_dim, guidance_weight=2.0)
    torch.manual_seed(0)
    head = DiffusionHead(config, encoder)
    head.set_latent_stats(latents)
    head.set_seed_stats(factors)
    target = head.standardise(torch.tensor(latents, dtype=torch.float32))
    cond = conds[torch.from_numpy(pick)]
    optimizer = torch.optim.AdamW(
        [p for name, p in head.named_parameters() if not name.startswith("encoder.")], lr=3e-3
    )
    generator = torch.Generator().manual_seed(0)
    head.train()
    for _ in range(300):
        b = torch.randint(0, n, (256,), generator=generator)
        loss = head(
            target[b],
            cond[b],
            generator=generator,
            seed_latents=seed_latents[b],
            seed_counts=seed_counts[b],
            prompt_kept=kept[b],
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    seeded.diffusion_head = head
    seeded.max_seed_tracks = 5  # the seq2seq passes seeds on (its own reading is not tested here)
    return seeded, plain, artifact


def _ids_of(recommender, genre: str, n: int) -> list[str]:
    return [t for t in recommender.catalog.item_ids if genre_of(t) == genre][:n]


def _top_genres(recommender, latents: np.ndarray) -> list[str]:
    scores = latents.reshape(-1, latents.shape[-1]) @ recommender.item_factors.T
    top = np.argsort(-scores, axis=1)[:, :10].ravel()
    return [genre_of(recommender.catalog.item_ids[i]) for i in top]


def test_empty_text_with_seeds_samples_in_their_genre(recommenders):
    seeded = recommenders[0]
    for genre in ("folk", "jazz"):
        latents = seeded.sample_latents("", seed_tracks=_ids_of(seeded, genre, 3), n_samples=8)
        genres = _top_genres(seeded, latents)
        assert genres.count(genre) / len(genres) >= 0.8
    with pytest.raises(ValueError, match="no seed track"):
        seeded.sample_latents("   ")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no seed track"):
        seeded.sample_latents("", seed_tracks=["not-a-track"])


def test_seeds_are_never_returned_in_the_latent_modes(recommenders):
    seeded = recommenders[0]
    jazz = _ids_of(seeded, "jazz", 4)
    for mode in ("latent", "hybrid"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the hybrid's default-fusion notice
            recs = seeded.recommend("smooth jazz", k=10, mode=mode, seed_tracks=jazz)
        ids = [r.track_id for r in recs]
        assert len(set(ids)) == 10 and not set(ids) & set(jazz)
    latents = seeded.sample_latents(["smooth jazz", "smooth jazz"], seed_tracks=[jazz, None])
    assert not np.allclose(latents[0], latents[1])  # the seeds are read


def test_a_head_without_conditioning_warns_and_ignores_seeds(recommenders):
    plain = recommenders[1]
    folk = _ids_of(plain, "folk", 3)
    settings = plain.hybrid_settings
    plain.hybrid_settings = replace(settings, seed_strength=None)  # the head alone reads seeds
    try:
        with pytest.warns(UserWarning, match="without seed conditioning"):
            with_seeds = plain.sample_latents("jazz", seed_tracks=folk)
        np.testing.assert_array_equal(with_seeds, plain.sample_latents("jazz"))
        with pytest.raises(ValueError, match="without seed conditioning"):
            plain.sample_latents("", seed_tracks=folk)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the seq2seq reads no seeds either: it warns too
            recs = plain.recommend("jazz", k=10, mode="latent", seed_tracks=folk)
        assert not {r.track_id for r in recs} & set(folk)
    finally:
        plain.hybrid_settings = settings


def test_train_diffusion_with_seed_conditioning_writes_a_head_that_reads_seeds(
    recommenders, tmp_path
):
    from text2tracks.config_flags import config_from_args
    from training.train_diffusion import DiffusionTrainConfig, build_parser, train

    artifact = recommenders[2]
    copy = tmp_path / "artifact"
    shutil.copytree(artifact, copy, ignore=shutil.ignore_patterns("diffusion", ".checkpoints*"))
    args = build_parser().parse_args(
        ["--artifact", str(copy), "--playlists", str(artifact.parent / "demo.jsonl")]
        + ["--seed-conditioning", "--seed-prob", "0.9", "--max-seed-tracks", "7"]
        + ["--hidden", "32", "--n-blocks", "1", "--time-embed-dim", "16", "--max-steps", "3"]
        + ["--batch-size", "64", "--eval-prompts", "4", "--eval-samples", "1", "--ddim-steps"]
        + ["5", "--num-threads", "1", "--no-progress", "--no-fit-fusion", "--warmup-steps", "1"]
    )
    config = config_from_args(DiffusionTrainConfig, args)
    assert (config.seed_conditioning, config.seed_prob, config.max_seed_tracks) == (True, 0.9, 7)
    summary = train(config)
    assert summary["steps"] == 3
    saved = json.loads((copy / "diffusion" / CONFIG_NAME).read_text())["config"]
    assert saved["seed_conditioning"] is True and saved["max_seed_tracks"] == 7
    loaded = Text2Tracks.from_pretrained(copy, device="cpu")
    assert loaded.head_reads_seeds
    latents = loaded.sample_latents("", seed_tracks=_ids_of(loaded, "folk", 2), n_samples=2)
    assert latents.shape == (2, loaded.item_factors.shape[1]) and np.isfinite(latents).all()
    with pytest.raises(ValueError, match="regressor"):
        DiffusionTrainConfig(artifact="a", playlists="p", regressor=True, seed_conditioning=True)
    with pytest.raises(ValueError, match="seed_prob"):
        DiffusionTrainConfig(artifact="a", playlists="p", seed_prob=1.5)


def test_recommend_passes_seeds_to_the_head_when_the_seq2seq_reads_none(recommenders):
    """A head with seed conditioning reads the seeds in latent mode even when the seq2seq reads
    none: a prompt of seeds alone is answered from them, without the "only excluded" warning;
    hybrid mode still needs the seq2seq to read them for a prompt of seeds alone."""
    seeded = recommenders[0]
    saved = seeded.max_seed_tracks
    seeded.max_seed_tracks = 0
    try:
        for genre in ("folk", "jazz"):
            seeds = _ids_of(seeded, genre, 3)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                recs = seeded.recommend("", k=10, mode="latent", seed_tracks=seeds)
            genres = [genre_of(r.track_id) for r in recs]
            assert genres.count(genre) >= 8 and not {r.track_id for r in recs} & set(seeds)
        with pytest.raises(ValueError, match="the seq2seq does not read seeds"):
            seeded.recommend("", k=10, mode="hybrid", seed_tracks=seeds)
        with pytest.warns(UserWarning, match="only kept out of the answer"):
            seeded.recommend("jazz", k=10, mode="generative", seed_tracks=seeds)
    finally:
        seeded.max_seed_tracks = saved
    plain, folk = recommenders[1], _ids_of(recommenders[1], "folk", 3)
    recs = plain.recommend("", k=10, mode="latent", seed_tracks=folk)  # the seeds' own latent
    assert [genre_of(r.track_id) for r in recs].count("folk") >= 8
    settings = plain.hybrid_settings
    plain.hybrid_settings = replace(settings, seed_strength=None)  # the head alone reads seeds
    try:
        with pytest.raises(ValueError, match="seed tracks but no text"):  # nothing reads them
            plain.recommend("", k=10, mode="latent", seed_tracks=folk)
    finally:
        plain.hybrid_settings = settings
