"""Training data at full-MPD scale: ``Ragged`` rows, the columnar loader of
``training.seq2seq_data`` (same data as the object reader) and ``Seq2SeqPairs`` from arrays."""

from __future__ import annotations

import numpy as np
import pytest

from tests.tiny_artifact import build_synthetic_artifact
from text2tracks.ragged import Ragged, as_ragged


def test_ragged_rows_take_filter_and_errors():
    rows = [[4, 2], [], [7, 1, 9], [3]]
    r = as_ragged(rows)
    assert len(r) == 4 and r.tolist() == rows
    assert [x.tolist() for x in r] == rows and r[-1].tolist() == [3]
    assert r.lengths().tolist() == [2, 0, 3, 1]
    assert r.row_of_value().tolist() == [0, 0, 2, 2, 2, 3]
    assert r.take([2, 1, 0, 2]).tolist() == [[7, 1, 9], [], [4, 2], [7, 1, 9]]
    assert r.filter(r.values > 2).tolist() == [[4], [], [7, 9], [3]]
    assert as_ragged(r) is r
    assert as_ragged(r, np.int32).values.dtype == np.int32
    assert as_ragged([]).tolist() == [] and len(as_ragged([[], []]).values) == 0
    with pytest.raises(IndexError):
        r[4]
    with pytest.raises(ValueError, match="indptr ends at 3"):
        Ragged(np.array([0, 3]), np.arange(2))
    with pytest.raises(ValueError, match="must not decrease"):
        Ragged(np.array([0, 2, 1]), np.arange(1))
    with pytest.raises(ValueError, match="one flag per value"):
        r.filter(np.ones(2, bool))


def test_ragged_take_matches_python_on_random_rows():
    rng = np.random.default_rng(0)
    rows = [rng.integers(0, 50, rng.integers(0, 6)).tolist() for _ in range(40)]
    r = as_ragged(rows)
    pick = rng.integers(0, 40, 100)
    assert r.take(pick).tolist() == [rows[i] for i in pick]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A synthetic MPD-shaped set (with descriptions), as MPD slices and Parquet, and an
    artifact built from the slices."""
    root = tmp_path_factory.mktemp("train_data")
    options = dict(n_playlists=600, seed=3, description_share=0.2, slice_size=200)
    return root, build_synthetic_artifact(root, **options)


def _index(artifact):
    from semantic_ids.catalog import SemanticIDCatalog

    catalog = SemanticIDCatalog.load(artifact / "semantic_ids" / "catalog")
    return {t: i for i, t in enumerate(catalog.item_ids)}


@pytest.mark.parametrize("form", ["mpd", "parquet"])
def test_columnar_loader_gives_the_object_readers_data(built, form):
    from training.seq2seq_data import _columnar_sides, _object_sides

    root, artifact = built
    index = _index(artifact)
    columnar = _columnar_sides(artifact, root / form, index)
    objects = _object_sides(artifact, root / "mpd", index)
    for side in ("train", "validation"):
        assert columnar[f"{side}_prompts"] == objects[f"{side}_prompts"]
        assert columnar[f"{side}_relevant"].tolist() == objects[f"{side}_relevant"].tolist()
    # the data is not trivial: descriptions in prompts, tracks outside the catalogue dropped
    assert any(". " in p for p in columnar["train_prompts"])
    n_rows = sum(len(r) for r in columnar["train_relevant"])
    assert 0 < n_rows and columnar["train_relevant"].values.max() < len(index)
    assert columnar["validation_relevant"].lengths().min() >= 0


def test_loader_refuses_other_playlists(built, tmp_path):
    from semantic_ids.synthetic import SyntheticConfig, write_synthetic
    from training.seq2seq_data import _columnar_sides

    root, artifact = built
    write_synthetic(SyntheticConfig(n_playlists=300, seed=4, slice_size=100), tmp_path, ("mpd",))
    with pytest.raises(ValueError, match="not those .* was built from"):
        _columnar_sides(artifact, tmp_path / "mpd", _index(artifact))


def test_pairs_from_ragged_equal_pairs_from_lists():
    from text2tracks.data import Seq2SeqPairs

    rng = np.random.default_rng(1)
    n_items, n = 30, 25
    relevant = [rng.choice(n_items, rng.integers(0, 7), replace=False).tolist() for _ in range(n)]
    weights = [rng.random(len(r)) + 0.1 for r in relevant]
    prompts = [np.array([1 + i % 4, 9]) for i in range(n)]
    sid = rng.integers(3, 40, (n_items, 3))
    common = dict(sid_token_ids=sid, eos_token_id=1, seed=7, group_size=2)
    for extra in ({}, {"targets_per_playlist": 3, "popularity_power": 0.5}):
        extra = dict(extra, item_counts=rng.integers(1, 9, n_items)) if extra else extra
        a = Seq2SeqPairs(prompts, relevant, **common, **extra)
        b = Seq2SeqPairs(prompts, as_ragged(relevant, np.int32), **common, **extra)
        for epoch in (0, 1):
            a.set_epoch(epoch)
            b.set_epoch(epoch)
            assert [a[i] for i in range(len(a))] == [b[i] for i in range(len(b))]
    a = Seq2SeqPairs(prompts, relevant, target_weights=weights, targets_per_playlist=4, **common)
    b = Seq2SeqPairs(
        prompts,
        as_ragged(relevant),
        target_weights=as_ragged(weights, np.float32),
        targets_per_playlist=4,
        **common,
    )
    assert len(a) == len(b) == 4 * sum(1 for r in relevant if r)
    drawn = [b[i] for i in range(len(b))]
    assert all(item in relevant[p] for p, item in drawn)
    # float32 weights draw the same targets as float64 ones on this data
    assert [a[i] for i in range(len(a))] == drawn
    with pytest.raises(ValueError, match="one weight per relevant item"):
        Seq2SeqPairs(
            prompts,
            as_ragged(relevant),
            target_weights=as_ragged([w[:-1] if len(w) else w for w in weights]),
            targets_per_playlist=4,
            **common,
        )


def test_cumulative_weights_blocks_give_one_result():
    from text2tracks.pair_options import cumulative_weights

    rng = np.random.default_rng(2)
    weights = as_ragged([rng.random(rng.integers(0, 6)) + 0.01 for _ in range(30)], np.float32)
    lengths = weights.lengths()
    whole = cumulative_weights(weights, weights.indptr, lengths)
    blocked = cumulative_weights(weights, weights.indptr, lengths, block=4)
    np.testing.assert_array_equal(whole, blocked)
    # per playlist: increasing, ends at its index + 1, first step its first weight's share
    for p in np.flatnonzero(lengths):
        row = whole[weights.indptr[p] : weights.indptr[p + 1]] - p
        assert np.all(np.diff(row) > 0) and row[-1] == 1.0
        w = weights[p].astype(np.float64)
        np.testing.assert_allclose(row, np.cumsum(w) / w.sum(), rtol=1e-9)


def test_teacher_targets_are_cached_memory_mapped_and_keyed(built, tmp_path):
    import shutil

    from training.seq2seq_config import TrainConfig
    from training.seq2seq_data import TEACHER_CACHE, load_training_data, playlist_targets

    root, artifact = built
    artifact = shutil.copytree(artifact, tmp_path / "artifact")
    config = TrainConfig(artifact=str(artifact), playlists=str(root / "parquet"))
    data = load_training_data(config, lambda *_: None)
    log: list[str] = []
    items, weights = playlist_targets(config, data, log.append)
    again_items, again_weights = playlist_targets(config, data, log.append)
    assert "title-kNN targets for" in log[0] and "from" in log[1]
    caches = list((artifact / TEACHER_CACHE).iterdir())
    assert len(caches) == 1 and sorted(p.name for p in caches[0].iterdir()) == [
        "indptr.npy",
        "items.npy",
        "weights.npy",
    ]
    assert isinstance(again_items.values, np.memmap)
    assert again_items.tolist() == items.tolist()
    np.testing.assert_array_equal(again_weights.values, weights.values)
    # one probability distribution per playlist with catalogue tracks
    sums = np.add.reduceat(np.asarray(weights.values, np.float64), weights.indptr[:-1])
    assert np.allclose(sums[weights.lengths() > 0], 1.0, atol=1e-5)
    # other settings or other data: another key, computed afresh
    fewer = TrainConfig(
        artifact=str(artifact), playlists=str(root / "parquet"), teacher_top_items=5
    )
    playlist_targets(fewer, data, log.append)
    data["train_prompts"] = [p + "!" for p in data["train_prompts"]]
    playlist_targets(config, data, log.append)
    assert len(list((artifact / TEACHER_CACHE).iterdir())) == 3
    assert all("title-kNN targets for" in line for line in log[2:])


def test_training_refuses_ids_copied_without_their_manifest(built, tmp_path):
    """Folders copied without text2tracks.json would train for an hour, then never load."""
    import json
    import shutil

    from text2tracks.artifacts import ArtifactError
    from training.seq2seq_config import TrainConfig
    from training.seq2seq_data import load_training_data

    root, artifact = built
    bare = tmp_path / "bare"
    for name in ("cf", "semantic_ids"):
        shutil.copytree(artifact / name, bare / name)
    config = TrainConfig(artifact=str(bare), playlists=str(root / "parquet"))
    with pytest.raises(ArtifactError, match="has no text2tracks.json: build the semantic IDs"):
        load_training_data(config, lambda *_: None)
    # a manifest that lists only another component: named, with the fix
    manifest = json.loads((artifact / "text2tracks.json").read_text())
    manifest["components"] = {"cf": manifest["components"]["cf"]}
    (bare / "text2tracks.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="lists no 'semantic_ids' component; build the"):
        load_training_data(config, lambda *_: None)
