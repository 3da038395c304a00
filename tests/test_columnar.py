"""Columnar reading and the vectorised matrix agree with the object readers and build_interactions."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semantic_ids.columnar import (
    interactions_from_columns,
    parse_json_bytes,
    read_columnar,
    read_mpd_columnar,
    read_parquet_columnar,
)
from semantic_ids.interactions import build_interactions
from semantic_ids.playlists import PlaylistFormatError, read_playlists, split_playlists
from semantic_ids.synthetic import SyntheticConfig, write_synthetic


def write_slice(path, playlists):
    path.write_text(json.dumps({"info": {}, "playlists": playlists}))
    return path


def playlist(pid, name, uris, **extra):
    return {"pid": pid, "name": name, "tracks": [{"track_uri": u} for u in uris], **extra}


def same_matrix(a, b):
    """Equal as matrices; ``build_interactions`` may leave indices unsorted, so compare sorted."""
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.has_sorted_indices
    a, b = a.copy(), b.copy()
    a.sort_indices()
    b.sort_indices()
    np.testing.assert_array_equal(a.indptr, b.indptr)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.data, b.data)


def check_same_as_objects(path, parser="auto"):
    objects = read_playlists(path)
    columns = read_columnar(path, parser=parser)
    assert columns.playlist_ids == [p.playlist_id for p in objects.playlists]
    assert columns.titles == [p.title for p in objects.playlists]
    assert columns.descriptions == [p.description for p in objects.playlists]
    assert columns.n_empty_skipped == objects.n_empty_skipped
    for row, p in enumerate(objects.playlists):
        assert tuple(columns.tracks_of(row)) == p.track_ids
    for min_count in (1, 2, 3):
        expected, vocab = build_interactions(objects, min_count=min_count)
        matrix, got_vocab = interactions_from_columns(columns, min_count=min_count)
        assert got_vocab == vocab
        same_matrix(matrix, expected)
    return objects, columns


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    write_synthetic(SyntheticConfig(n_playlists=2200, seed=5), out, ("mpd", "parquet"))
    return out


@pytest.mark.parametrize("parser", ["orjson", "json"])
def test_synthetic_mpd_same_matrix_as_object_path(synth, parser):
    check_same_as_objects(synth / "mpd", parser)


def test_synthetic_parquet_same_matrix_as_object_path(synth):
    _, columns = check_same_as_objects(synth / "parquet")
    mpd = read_mpd_columnar(synth / "mpd")
    np.testing.assert_array_equal(columns.indptr, mpd.indptr)
    assert columns.track_codes.dtype == np.int32


def test_split_and_take_match_split_playlists(synth):
    objects = read_playlists(synth / "mpd")
    columns = read_columnar(synth / "mpd")
    expected = split_playlists(objects, validation_fraction=0.2, test_fraction=0.1, seed=4)
    sides = columns.split(validation_fraction=0.2, test_fraction=0.1, seed=4)
    for name in ("train", "validation", "test"):
        part = columns.take(sides[name])
        playlists = getattr(expected, name)
        assert part.playlist_ids == [p.playlist_id for p in playlists]
        assert [tuple(part.tracks_of(r)) for r in range(part.n_playlists)] == [
            p.track_ids for p in playlists
        ]
    train = columns.take(sides["train"])
    matrix, vocab = interactions_from_columns(train, min_count=2)
    want, want_vocab = build_interactions(expected.train, min_count=2)
    assert vocab == want_vocab
    same_matrix(matrix, want)
    with pytest.raises(ValueError, match="validation_fraction"):
        columns.split(validation_fraction=1.5)


def test_held_out_vocab_reuse_matches(synth):
    objects = read_playlists(synth / "mpd")
    split = split_playlists(objects, seed=1)
    _, vocab = build_interactions(split.train, min_count=2)
    columns = read_columnar(synth / "mpd")
    expected, _ = build_interactions(objects, vocab=vocab)
    matrix, same = interactions_from_columns(columns, vocab=vocab)
    assert same is vocab
    same_matrix(matrix, expected)


def test_rules_duplicates_empty_and_titles(tmp_path):
    write_slice(
        tmp_path / "mpd.slice.0-999.json",
        [
            playlist(1, "  chill  ", ["a", "b", "a", "c"], description=" slow "),
            playlist(2, "empty", []),
            playlist(3, "🔥", ["c", "a"]),
        ],
    )
    write_slice(tmp_path / "mpd.slice.1000-1999.json", [playlist(4, "", ["d", "c"])])
    _, columns = check_same_as_objects(tmp_path)
    assert columns.playlist_ids == ["1", "3", "4"] and columns.n_empty_skipped == 1
    assert columns.titles == ["chill", "🔥", ""]
    assert columns.descriptions == ["slow", None, None]
    np.testing.assert_array_equal(columns.indptr, [0, 3, 5, 7])
    assert columns.tracks_of(0) == ["a", "b", "c"]


def test_parquet_groups_and_positions(tmp_path):
    table = pa.table(
        {
            "playlist_id": ["p2", "p1", "p2", "p1", "p1"],
            "title": ["two", "one", "two", "one", "one"],
            "track_id": ["x", "y", "z", "x", "y"],
            "position": [1, 2, 0, 0, 1],
        }
    )
    pq.write_table(table, tmp_path / "a.parquet")
    _, columns = check_same_as_objects(tmp_path / "a.parquet")
    assert columns.playlist_ids == ["p2", "p1"]
    assert columns.tracks_of(0) == ["z", "x"] and columns.tracks_of(1) == ["x", "y"]


def test_errors_name_the_file(tmp_path):
    file = write_slice(tmp_path / "mpd.slice.0-999.json", [{"pid": 1, "tracks": []}])
    with pytest.raises(PlaylistFormatError, match="no title"):
        read_mpd_columnar(file)
    write_slice(file, [{"pid": 1, "name": "a", "tracks": [{"track_name": "x"}]}])
    with pytest.raises(PlaylistFormatError, match="position 0 has no track id"):
        read_mpd_columnar(file)
    write_slice(file, [playlist(1, "a", ["x"]), playlist(1, "b", ["y"])])
    with pytest.raises(PlaylistFormatError, match="used 2 times"):
        read_mpd_columnar(file)
    file.write_text("{not json")
    with pytest.raises(PlaylistFormatError, match="malformed JSON"):
        read_mpd_columnar(file)
    pq.write_table(
        pa.table({"playlist_id": ["p"], "title": ["t"], "track_id": [" "]}), tmp_path / "c.parquet"
    )
    with pytest.raises(PlaylistFormatError, match="empty track_id"):
        read_parquet_columnar(tmp_path / "c.parquet")
    write_slice(file, [playlist(1, "a", ["x", "  "])])
    with pytest.raises(PlaylistFormatError, match="blank"):
        read_mpd_columnar(file)
    pq.write_table(pa.table({"playlist_id": ["p"], "title": ["t"]}), tmp_path / "b.parquet")
    with pytest.raises(PlaylistFormatError, match="missing column"):
        read_parquet_columnar(tmp_path / "b.parquet")


def test_parse_json_bytes_parsers_agree():
    data = json.dumps({"a": [1, "é", None]}).encode()
    assert parse_json_bytes(data, "json") == parse_json_bytes(data, "orjson")
    with pytest.raises(ValueError, match="parser"):
        parse_json_bytes(data, "simdjson")
