"""The built-in demo catalogue: deterministic, readable by the real reader, and learnable."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_ids.demo import (
    ERAS,
    GENRES,
    MOODS,
    demo_intent,
    demo_track_tags,
    make_demo,
    write_demo_jsonl,
)
from semantic_ids.interactions import build_interactions
from semantic_ids.playlists import read_playlists, split_playlists


@pytest.fixture(scope="module")
def demo():
    return make_demo(n_tracks=600, n_playlists=800, seed=1)


def matches(track_id: str, intent: dict[str, str]) -> bool:
    tags = demo_track_tags(track_id)
    return all(tags[kind] == tag for kind, tag in intent.items())


def test_deterministic_for_a_seed(demo):
    again = make_demo(n_tracks=600, n_playlists=800, seed=1)
    assert again.playlists == demo.playlists
    assert again.tracks == demo.tracks
    other = make_demo(n_tracks=600, n_playlists=800, seed=2)
    assert other.playlists != demo.playlists


def test_shapes_and_metadata(demo):
    assert len(demo.playlists) == 800
    assert len(demo.tracks) == 600
    assert len({p.playlist_id for p in demo.playlists}) == 800
    for playlist in demo.playlists:
        assert len(playlist.track_ids) == len(set(playlist.track_ids)) >= 5
        assert all(t in demo.tracks for t in playlist.track_ids)
    for track in demo.tracks.values():
        assert track.name and track.artist and track.album
        tags = demo_track_tags(track.track_id)
        assert tags["genre"] in GENRES and tags["mood"] in MOODS and tags["era"] in ERAS


def test_artist_has_one_genre_and_era(demo):
    seen: dict[str, tuple[str, str]] = {}
    for track in demo.tracks.values():
        tags = demo_track_tags(track.track_id)
        key = (tags["genre"], tags["era"])
        assert seen.setdefault(track.artist, key) == key


def test_titles_determine_tags_and_tracks_follow_them(demo):
    precisions = []
    for playlist in demo.playlists:
        intent = demo_intent(playlist.title)
        assert intent, playlist.title
        share = np.mean([matches(t, intent) for t in playlist.track_ids])
        precisions.append(share)
    assert min(precisions) >= 0.75
    assert np.mean(precisions) >= 0.85


def test_genre_intent_gives_mostly_genre_tracks(demo):
    jazz = [p for p in demo.playlists if demo_intent(p.title).get("genre") == "jazz"]
    assert len(jazz) >= 10
    tracks = [t for p in jazz for t in p.track_ids]
    assert np.mean([demo_track_tags(t)["genre"] == "jazz" for t in tracks]) >= 0.85


def test_titles_are_varied(demo):
    titles = [p.title for p in demo.playlists]
    assert len({t.lower() for t in titles}) > 200
    assert any(t.isupper() for t in titles)
    assert any(not t.isascii() for t in titles)  # emoji
    assert any(" for " in t.lower() for t in titles)


def test_popularity_is_skewed(demo):
    _, vocab = build_interactions(demo, min_count=1)
    counts = np.sort(vocab.counts)[::-1]
    assert counts[: len(counts) // 10].sum() > 3 * counts[-len(counts) // 10 :].sum()


def test_demo_intent_parses_phrasings():
    assert demo_intent("Chill 90s Jazz") == {"mood": "chill", "era": "90s", "genre": "jazz"}
    assert demo_intent("oldies for slow dancing") == {"era": "60s", "mood": "romantic"}
    assert demo_intent("WORKOUT HIP HOP 💪") == {"mood": "energetic", "genre": "hiphop"}
    assert demo_intent("sad songs") == {"mood": "sad"}
    assert demo_intent("throwback 2000s") == {"era": "2000s"}
    with pytest.raises(ValueError, match="not a demo track id"):
        demo_track_tags("spotify:track:abc")


def test_write_demo_jsonl_round_trips_through_the_reader(tmp_path):
    path = write_demo_jsonl(tmp_path / "demo.jsonl", n_tracks=200, n_playlists=100, seed=5)
    read = read_playlists(path)
    made = make_demo(n_tracks=200, n_playlists=100, seed=5)
    assert read.playlists == made.playlists
    assert all(read.tracks[t] == made.tracks[t] for t in read.tracks)
    split = split_playlists(read)
    matrix, vocab = build_interactions(split.train, min_count=2)
    assert matrix.shape[0] == len(split.train) and len(vocab) > 0


def test_bad_sizes():
    with pytest.raises(ValueError, match="n_tracks"):
        make_demo(n_tracks=10)
    with pytest.raises(ValueError, match="n_playlists"):
        make_demo(n_playlists=0)
