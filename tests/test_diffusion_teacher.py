"""The diffusion head's title-kNN teacher targets (``train-diffusion --contrastive-targets teacher
--latent-target teacher``): the weighted in-batch draw, the teacher's positives and fold-in
latents on playlists whose right answer is known, and a training run that learns from them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from text2tracks.cf_targets import ridge_fold_in
from text2tracks.contrastive import contrastive_targets
from text2tracks.ragged import Ragged
from training.diffusion_config import DiffusionTrainConfig
from training.diffusion_data import tracks_matrix
from training.diffusion_teacher import FOLD_IN_REGULARISATION, apply_teacher, uses_teacher

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------ the weighted draw


def test_weighted_draw_follows_the_rows_probabilities_and_weights_the_targets():
    # row 0 puts 0.7 / 0.2 / 0.1 on items 3 / 5 / 8; row 1 all of it on item 5
    tracks = sp.csr_matrix(
        (np.array([0.7, 0.2, 0.1, 1.0]), np.array([3, 5, 8, 5]), np.array([0, 3, 4])),
        shape=(2, 10),
    )
    factors = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    rng = np.random.default_rng(1)
    counts = np.zeros(10)
    for _ in range(4000):
        targets = contrastive_targets(tracks, factors, "in_batch", rng, weighted=True)
        drawn = [int(np.flatnonzero((factors == item.numpy()).all(1))[0]) for item in targets.items]
        counts[drawn[0]] += 1
        assert drawn[1] == 5  # the only item of row 1
    np.testing.assert_allclose(counts[[3, 5, 8]] / 4000, [0.7, 0.2, 0.1], atol=0.03)
    assert counts.sum() == counts[[3, 5, 8]].sum()
    # row 0 holds item 5, drawn for row 1, so both drawn items are its positives, weighted
    # by its probabilities, renormalised over what was drawn
    rng = np.random.default_rng(3)
    while True:
        targets = contrastive_targets(tracks, factors, "in_batch", rng, weighted=True)
        if (targets.items[0] == torch.from_numpy(factors[3])).all():
            break
    pairs = {
        (int(r), int(c)): float(w)
        for r, c, w in zip(targets.rows, targets.cols, targets.weights, strict=True)
    }
    assert pairs == pytest.approx({(0, 0): 0.7 / 0.9, (0, 1): 0.2 / 0.9, (1, 1): 1.0})


def test_weighted_full_targets_are_the_rows_probabilities():
    tracks = sp.csr_matrix(np.array([[0.0, 0.6, 0.2, 0.2], [0.5, 0.0, 0.0, 0.5]]))
    factors = np.eye(4, dtype=np.float32)
    targets = contrastive_targets(tracks, factors, "full", np.random.default_rng(0), weighted=True)
    dense = np.zeros((2, 4))
    dense[targets.rows.numpy(), targets.cols.numpy()] = targets.weights.numpy()
    np.testing.assert_allclose(dense, tracks.toarray(), rtol=1e-6)
    even = contrastive_targets(tracks, factors, "full", np.random.default_rng(0))
    assert sorted(even.weights.tolist()) == pytest.approx([1 / 3] * 3 + [0.5] * 2)


def test_weighted_draw_of_equal_weights_matches_the_even_draw():
    rows = [[0, 4, 7], [1, 2], [3, 5, 6, 8, 9]]
    tracks = tracks_matrix(rows, 10)
    factors = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    for seed in range(5):
        even = contrastive_targets(tracks, factors, "in_batch", np.random.default_rng(seed))
        weighted = contrastive_targets(
            tracks * 0.25, factors, "in_batch", np.random.default_rng(seed), weighted=True
        )
        for a, b in zip(even.__dict__.values(), weighted.__dict__.values(), strict=True):
            torch.testing.assert_close(a, b)


def test_weighted_draw_refuses_non_positive_weights():
    tracks = sp.csr_matrix(
        (np.array([0.5, -0.5]), np.array([0, 1]), np.array([0, 2])), shape=(1, 2)
    )
    with pytest.raises(ValueError, match="positive weights"):
        contrastive_targets(tracks, np.eye(2), "in_batch", np.random.default_rng(0), weighted=True)


# ------------------------------------------------------------------------ the teacher's targets


def _grouped_data():
    """Three titles, four playlists each, each playlist holding 3 of its title's 6 tracks
    (titles never share tracks); one playlist with a title nobody else has."""
    rng = np.random.default_rng(0)
    prompts, tracks = [], []
    for g, title in enumerate(["summer", "jazz", "folk"]):
        for _ in range(4):
            prompts.append(title)
            tracks.append(sorted(rng.choice(6, size=3, replace=False) + 6 * g))
    prompts.append("bity")
    tracks.append([18, 19])
    factors = rng.normal(size=(20, 5)).astype(np.float32)
    return {
        "item_factors": factors,
        "train_prompts": prompts,
        "train_latents": rng.normal(size=(len(prompts), 5)).astype(np.float32),
        "train_tracks": tracks_matrix(tracks, 20),
        "train_sequences": Ragged.from_rows(tracks),
    }


def _config(**changes) -> DiffusionTrainConfig:
    return DiffusionTrainConfig(artifact="a", playlists="p", progress=False, **changes)


def test_playlist_targets_leave_the_data_alone():
    data = _grouped_data()
    own = {"contrastive_targets": "playlist", "latent_target": "playlist"}
    assert not uses_teacher(_config(**own))
    assert apply_teacher(_config(**own), data) is data
    assert uses_teacher(_config())  # the default learns from the teacher
    # the regressor has no contrastive term: teacher positives alone do not make it a teacher run
    assert not uses_teacher(_config(regressor=True, latent_target="playlist"))
    assert not uses_teacher(_config(contrastive_weight=0.0, latent_target="playlist"))


def test_teacher_positives_are_the_same_titles_tracks():
    data = _grouped_data()
    out = apply_teacher(_config(latent_target="playlist", teacher_own_weight=0.3), data)
    teacher = out["train_tracks"]
    np.testing.assert_allclose(np.asarray(teacher.sum(1)).ravel(), 1.0, rtol=1e-5)
    for p in range(12):
        group = set(range(6 * (p // 4), 6 * (p // 4) + 6))
        items = set(teacher[p].indices.tolist())
        own = set(data["train_tracks"][p].indices.tolist())
        others = set().union(
            *(
                data["train_tracks"][q].indices.tolist()
                for q in range(12)
                if q // 4 == p // 4 and q != p
            )
        )
        assert items == own | others  # its own tracks and its title-mates', nothing else
        assert items <= group
        own_mass = teacher[p, sorted(own)].sum()
        assert own_mass >= 0.3 - 1e-6  # the own share, plus what its title-mates also hold
    # the playlist whose title nobody else has keeps its own tracks; the data keeps its own
    assert set(teacher[12].indices.tolist()) == {18, 19}
    assert out["own_tracks"] is data["train_tracks"]
    assert out["train_latents"] is data["train_latents"]  # the x_0 target is unchanged


def test_teacher_latent_is_the_fold_in_of_its_best_tracks():
    data = _grouped_data()
    config = _config(contrastive_targets="playlist", teacher_own_weight=0.0, teacher_fold_in_top=4)
    out = apply_teacher(config, data)
    assert out["train_tracks"] is data["train_tracks"]  # positives stay the playlist's own
    p = 1
    probabilities = apply_teacher(_config(latent_target="playlist", teacher_own_weight=0.0), data)[
        "train_tracks"
    ][p]
    best = probabilities.indices[np.argsort(-probabilities.data, kind="stable")[:4]]
    expected = ridge_fold_in(Ragged.from_rows([best]), data["item_factors"], FOLD_IN_REGULARISATION)
    np.testing.assert_allclose(out["train_latents"][p], expected[0], rtol=1e-5)
    # a title like no other's: the teacher's list is the playlist's own tracks, even with no
    # own share
    alone = ridge_fold_in(
        Ragged.from_rows([[18, 19]]), data["item_factors"], FOLD_IN_REGULARISATION
    )
    np.testing.assert_allclose(out["train_latents"][12], alone[0], rtol=1e-5)
    assert not np.allclose(out["train_latents"][:12], data["train_latents"][:12])


def test_a_playlist_carrying_seeds_learns_its_own_tracks_and_fold_in():
    from training.diffusion_seeds import SeedBatches

    data = _grouped_data()
    out = apply_teacher(_config(seed_conditioning=True), data)
    seeds = SeedBatches(out, prob=0.5, max_seeds=2, seed=0)
    seeds.set_epoch(0)
    rows = np.arange(len(data["train_prompts"]))
    seeded = seeds.drawn.has_seeds[rows]
    assert seeded.any() and not seeded.all()
    positives = seeds.positives(out["train_tracks"][rows], rows)
    for r in rows:
        got = set(positives[r].indices.tolist())
        if seeded[r]:  # its own tracks, its seeds left out
            own = set(data["train_tracks"][r].indices.tolist())
            assert got == own - set(seeds.drawn.seeds_of(r).tolist())
        else:  # the teacher's list
            assert got == set(out["train_tracks"][r].indices.tolist())
    # the x_0 target: the fold-in of its own tracks while it carries seeds, else the teacher's
    teacher_target = torch.from_numpy(out["train_latents"])
    assert seeds.target(teacher_target, rows) is teacher_target  # no own targets given yet
    own_target = torch.from_numpy(out["own_fold_in"])
    seeds.use_own_targets(own_target)
    mixed = seeds.target(teacher_target, rows)
    torch.testing.assert_close(mixed[seeded], own_target[seeded])
    torch.testing.assert_close(mixed[~seeded], teacher_target[~seeded])
    expected = ridge_fold_in(Ragged.from_rows([[18, 19]]), data["item_factors"], 0.1)
    np.testing.assert_allclose(out["own_fold_in"][12], expected[0], rtol=1e-5)


def test_teacher_settings_are_checked():
    with pytest.raises(ValueError, match="contrastive_targets"):
        _config(contrastive_targets="kNN")
    with pytest.raises(ValueError, match="teacher_own_weight"):
        _config(teacher_own_weight=1.5)
    with pytest.raises(ValueError, match="teacher_fold_in_top"):
        _config(teacher_fold_in_top=0)


# ------------------------------------------------------------------------ a training run


@pytest.mark.slow
def test_train_script_learns_the_teachers_latents(tmp_path):
    from tiny_artifact import build_tiny_artifact

    from text2tracks.diffusion import DiffusionHead
    from training.diffusion_data import load_pairs
    from training.train_diffusion import main

    art, playlists = build_tiny_artifact(tmp_path), tmp_path / "demo.jsonl"
    own_flags = ["--contrastive-targets", "playlist", "--latent-target", "playlist"]
    tiny = "--hidden 32 --n-blocks 1 --time-embed-dim 16 --byte-dim 16 --byte-layers 1"
    tiny += " --byte-heads 2 --batch-size 32 --eval-prompts 8 --eval-samples 2 --warmup-steps 2"
    tiny += " --num-threads 1 --no-progress --encoder bytes --max-steps 3 --no-fit-fusion"
    base = ["--artifact", str(art), "--playlists", str(playlists), *tiny.split()]
    assert main(base) == 0  # the defaults learn from the teacher
    saved = json.loads((art / "diffusion" / "train_config.json").read_text())
    assert saved["config"]["contrastive_targets"] == saved["config"]["latent_target"] == "teacher"
    config = DiffusionTrainConfig(
        artifact=str(art), playlists=str(playlists), latent_target="teacher", progress=False
    )
    folded = apply_teacher(config, load_pairs(art, playlists))["train_latents"]
    head = DiffusionHead.load(art / "diffusion")
    # the head standardises what it learns to write: the fold-ins, not the playlists' factors
    np.testing.assert_allclose(head.latent_mean.numpy(), folded.mean(0), rtol=1e-4, atol=1e-6)
    assert main([*base, *own_flags]) == 0
    own = load_pairs(art, playlists)["train_latents"]
    head = DiffusionHead.load(art / "diffusion")
    np.testing.assert_allclose(head.latent_mean.numpy(), own.mean(0), rtol=1e-4, atol=1e-6)
    assert not np.allclose(folded.mean(0), own.mean(0), rtol=1e-2)
