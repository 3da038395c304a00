"""The synthetic MPD: shape statistics, both formats readable, deterministic, streaming."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from semantic_ids.playlists import read_playlists
from semantic_ids.synthetic import (
    SyntheticConfig,
    generate_slice,
    main,
    write_synthetic,
    zipf_ranks,
)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    config = SyntheticConfig(n_playlists=2500, seed=3)
    summary = write_synthetic(config, out, ("mpd", "parquet"))
    return config, out, summary


def test_writes_full_mpd_slices(synth):
    config, out, summary = synth
    files = sorted((out / "mpd").glob("mpd.slice.*.json"))
    assert [f.name for f in files] == [
        "mpd.slice.0-999.json",
        "mpd.slice.1000-1999.json",
        "mpd.slice.2000-2999.json",
    ]
    data = json.loads(files[0].read_text())
    assert set(data) == {"info", "playlists"} and len(data["playlists"]) == 1000
    # laid out as the real files are: json.dump(..., indent=4)
    assert files[0].read_text() == json.dumps(data, indent=4)
    playlist = data["playlists"][0]
    assert {
        "name",
        "collaborative",
        "pid",
        "modified_at",
        "num_tracks",
        "num_albums",
        "num_followers",
        "num_edits",
        "duration_ms",
        "num_artists",
        "tracks",
    } <= set(playlist)
    assert playlist["num_tracks"] == len(playlist["tracks"])
    track = playlist["tracks"][0]
    assert set(track) == {
        "pos",
        "artist_name",
        "track_uri",
        "artist_uri",
        "track_name",
        "album_uri",
        "duration_ms",
        "album_name",
    }
    assert track["track_uri"].startswith("spotify:track:") and len(track["track_uri"]) == 36
    assert [t["pos"] for t in playlist["tracks"]] == list(range(playlist["num_tracks"]))
    assert len(json.loads(files[-1].read_text())["playlists"]) == 500
    # playlists repeat artists (real MPD: ~0.6 artists per track)
    ratio = np.mean([p["num_artists"] / p["num_tracks"] for p in data["playlists"]])
    assert 0.4 < ratio < 0.85
    assert summary["n_playlists"] == 2500


def test_both_formats_read_the_same(synth):
    _, out, summary = synth
    mpd = read_playlists(out / "mpd")
    parquet = read_playlists(out / "parquet")
    assert len(mpd.playlists) == 2500 and mpd.n_empty_skipped == 0
    assert mpd.playlists == parquet.playlists
    assert mpd.tracks == parquet.tracks
    assert sum(len(p.track_ids) for p in mpd.playlists) == summary["n_rows"]


def test_shape_statistics(synth):
    config, out, _ = synth
    playlists = read_playlists(out / "parquet").playlists
    lengths = np.array([len(p.track_ids) for p in playlists])
    assert lengths.min() >= config.min_length - 1 and lengths.max() <= config.max_length
    assert 60 <= lengths.mean() <= 72  # real MPD: 66.35
    assert 40 <= np.median(lengths) <= 56  # real MPD: 49
    counts = Counter(t for p in playlists for t in p.track_ids)
    # Zipf: the head is far above the mean, and many tracks are seen once
    freq = np.array(sorted(counts.values(), reverse=True))
    assert freq[0] > 20 * freq.mean()
    assert (freq == 1).mean() > 0.4
    # titles repeat: a few common titles, more raw spellings than normalised titles
    raw = Counter(p.title for p in playlists)
    normalised = Counter(p.title.lower().strip(" !🔥☀️<3") for p in playlists)
    assert len(normalised) < len(raw) < len(playlists)
    assert normalised.most_common(1)[0][1] >= 0.005 * len(playlists)
    # a few descriptions, as in the MPD (~2%)
    share = np.mean([p.description is not None for p in playlists])
    assert 0.005 < share < 0.05


def test_deterministic_and_seeded(tmp_path):
    a = generate_slice(SyntheticConfig(n_playlists=1500, seed=1), 1)
    b = generate_slice(SyntheticConfig(n_playlists=1500, seed=1), 1)
    c = generate_slice(SyntheticConfig(n_playlists=1500, seed=2), 1)
    assert np.array_equal(a.tracks, b.tracks) and a.titles == b.titles
    assert not np.array_equal(a.tracks[:100], c.tracks[:100])
    # a slice does not depend on how many playlists follow it
    d = generate_slice(SyntheticConfig(n_playlists=5000, seed=1, n_tracks=a.tracks.max() + 1), 0)
    e = generate_slice(SyntheticConfig(n_playlists=9000, seed=1, n_tracks=a.tracks.max() + 1), 0)
    assert np.array_equal(d.tracks, e.tracks)
    main(["--playlists", "1200", "--out", str(tmp_path / "x"), "--no-progress"])
    main(["--playlists", "1200", "--out", str(tmp_path / "y"), "--no-progress", "--workers", "2"])
    for name in ("mpd.slice.0-999.json", "mpd.slice.1000-1999.json"):
        assert (tmp_path / "x" / "mpd" / name).read_bytes() == (
            tmp_path / "y" / "mpd" / name
        ).read_bytes()


def test_catalogue_grows_along_the_heaps_curve():
    small, large = SyntheticConfig(n_playlists=10_000), SyntheticConfig(n_playlists=1_000_000)
    assert small.target_distinct_tracks() == pytest.approx(188_000, rel=0.05)
    assert large.target_distinct_tracks() == pytest.approx(2_262_292, rel=1e-6)
    assert small.universe < large.universe


def test_zipf_ranks_follow_the_law():
    rng = np.random.default_rng(0)
    ranks = zipf_ranks(rng, 200_000, 10_000, 1.0, 10.0)
    assert ranks.min() >= 0 and ranks.max() < 10_000
    counts = np.bincount(ranks, minlength=10_000)
    # p(r) ~ 1 / (r + q): rank 0 is about (100 + 10) / (0 + 10) = 11x as common as rank 100
    ratio = counts[:5].sum() / counts[100:105].sum()
    assert 7 < ratio < 15


def test_bad_config_raises():
    with pytest.raises(ValueError, match="n_playlists"):
        SyntheticConfig(n_playlists=0)
    with pytest.raises(ValueError, match="formats"):
        write_synthetic(SyntheticConfig(n_playlists=10), "/nonexistent", ("csv",))
