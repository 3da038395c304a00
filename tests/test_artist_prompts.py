"""Artist prompts (training/artist_prompts.py): one training example per catalogue artist."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest

from tests.tiny_artifact import build_synthetic_artifact
from text2tracks.ragged import Ragged
from training.artist_prompts import append_rows, artist_prompts

ARTISTS = ["Adele", "adele ", "Drake", None, "Yoga", "Drake", "", "Rare One", "ADELE"]
COUNTS = np.array([5, 9, 3, 40, 50, 3, 7, 2, 0])


def test_artists_grouped_weighted_and_filtered():
    out = artist_prompts(ARTISTS, COUNTS, ["yoga", "Chill vibes"], min_count=5, top_items=50)
    # "yoga" is a training title, "Rare One" held twice, None and "" unknown
    assert out.prompts == ["Adele", "Drake"]
    # by count, ties to the lower item index; an item held by no playlist is not a target
    assert out.items.tolist() == [[1, 0], [2, 5]]
    np.testing.assert_allclose(out.weights[0], [9 / 14, 5 / 14], rtol=1e-6)
    np.testing.assert_allclose(out.weights[1], [0.5, 0.5], rtol=1e-6)
    assert out.items.values.dtype == np.int32 and out.weights.values.dtype == np.float32


def test_min_count_and_top_items_cut():
    out = artist_prompts(ARTISTS, COUNTS, [], min_count=2, top_items=1)
    assert out.prompts == ["Adele", "Drake", "Yoga", "Rare One"]
    assert out.items.tolist() == [[1], [2], [4], [7]]
    assert np.allclose(out.weights.values, 1.0)
    assert len(artist_prompts(ARTISTS, COUNTS, [], min_count=100)) == 0


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="one count per catalogue item"):
        artist_prompts(ARTISTS, COUNTS[:3], [])
    with pytest.raises(ValueError, match="min_count and top_items"):
        artist_prompts(ARTISTS, COUNTS, [], min_count=0)


def test_append_rows():
    first = Ragged(np.array([0, 2, 2, 3]), np.array([1, 2, 3], np.int32))
    second = Ragged.from_rows([[7], [], [8, 9]], np.int64)
    joined = append_rows(first, second)
    assert joined.tolist() == [[1, 2], [], [3], [7], [], [8, 9]]
    assert joined.values.dtype == np.int32


def test_config_needs_the_teacher():
    from training.seq2seq_config import TrainConfig

    with pytest.raises(ValueError, match="target_source='teacher'"):
        TrainConfig("a", "p", artist_prompts=True, target_source="playlist")
    assert TrainConfig("a", "p", artist_prompts=True).artist_min_count == 5


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A synthetic MPD-shaped set and an artifact built from it (with tracks.json)."""
    root = tmp_path_factory.mktemp("artist_prompts")
    return root, build_synthetic_artifact(root, ("mpd",), n_playlists=400, seed=5, slice_size=200)


def _examples(root, artifact, **options):
    from text2tracks.modeling import ModelConfig
    from training.seq2seq_config import TrainConfig
    from training.seq2seq_data import build_examples, load_training_data
    from training.train_seq2seq import build_model

    model = ModelConfig(
        encoder="t5", d_model=16, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=32
    )
    config = TrainConfig(
        artifact=str(artifact), playlists=str(root / "mpd"), model=model, **options
    )
    log: list[str] = []
    data = load_training_data(config, log.append)
    _, tokenizer, layout, _ = build_model(
        config, data["catalog"], data["train_prompts"], log.append
    )
    sid = layout.codes_to_token_ids(data["catalog"].sid_codes)
    return data, tokenizer, build_examples(config, data, tokenizer, sid, log.append), log


def test_build_examples_appends_one_row_per_artist(built, tmp_path):
    root, artifact = built
    artifact = shutil.copytree(artifact, tmp_path / "artifact")
    data, tokenizer, plain, _ = _examples(root, artifact)
    data, _, examples, log = _examples(root, artifact, artist_prompts=True, artist_min_count=3)
    with open(artifact / "semantic_ids" / "tracks.json", encoding="utf-8") as f:
        artist_of = {t["id"]: t["artist"] for t in json.load(f)}
    item_artist = [artist_of[t] for t in data["catalog"].item_ids]
    n_train = len(data["train_prompts"])
    expected = artist_prompts(item_artist, data["vocab"].counts, data["train_prompts"], 3)
    assert len(expected) > 5 and any("artist prompts added" in line for line in log)
    pairs = examples["train_pairs"]
    # the playlists' examples come first and are the run without artists' examples
    assert len(pairs) == len(plain["train_pairs"]) + 16 * len(expected)
    drawn = Counter()
    epochs = 20
    for epoch in range(epochs):
        pairs.set_epoch(epoch)
        for i in range(len(pairs)):
            row, item = pairs[i][:2]
            if row >= n_train:
                artist = expected.prompts[row - n_train]
                assert item_artist[item].strip().casefold() == artist.casefold()
                drawn[(row, int(item))] += 1
    # each artist's draws follow its weights: on the skewed artists, the draws are far closer
    # to the weights (total variation) than uniform draws would be
    distances, uniform = [], []
    for a in range(len(expected)):
        items, weights = expected.items[a], expected.weights[a]
        freq = np.array([drawn[(n_train + a, int(i))] for i in items]) / (16 * epochs)
        assert freq.sum() == pytest.approx(1.0)
        if weights[0] > 3 * weights[-1]:
            distances.append(0.5 * np.abs(freq - weights).sum())
            uniform.append(0.5 * np.abs(1 / weights.size - weights).sum())
    assert len(distances) >= 5 and np.mean(distances) < 0.5 * np.mean(uniform)
    # the collator reads the artist's name as the prompt
    batch = examples["collate"]([(n_train, int(expected.items[0][0]))])
    text = tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    assert text.strip().casefold() == expected.prompts[0].casefold()


def test_artifact_without_track_metadata_is_refused(built, tmp_path):
    root, artifact = built
    artifact = shutil.copytree(artifact, tmp_path / "artifact")
    (artifact / "semantic_ids" / "tracks.json").unlink()
    with pytest.raises(ValueError, match="--no-artist-prompts"):
        _examples(root, artifact, artist_prompts=True)
