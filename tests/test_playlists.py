"""Readers (MPD in both shapes, JSONL, Parquet), their errors, and the playlist-level split."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semantic_ids.playlists import (
    Playlist,
    PlaylistFormatError,
    PlaylistSet,
    PlaylistSplit,
    Track,
    read_jsonl,
    read_mpd,
    read_parquet,
    read_playlists,
    split_playlists,
)

# --- synthetic files ------------------------------------------------------------------------


def full_track(uri: str, pos: int) -> dict:
    return {
        "pos": pos,
        "artist_name": f"Artist {uri}",
        "track_uri": f"spotify:track:{uri}",
        "artist_uri": f"spotify:artist:{uri}",
        "track_name": f"Song {uri}",
        "album_uri": f"spotify:album:{uri}",
        "duration_ms": 200000,
        "album_name": f"Album {uri}",
    }


def reduced_track(uri: str) -> dict:
    return {
        "artist_name": f"Artist {uri}",
        "track_uri": f"spotify:track:{uri}",
        "track_name": f"Song {uri}",
    }


def full_playlist(pid: int, name: str, uris: list[str], **extra) -> dict:
    return {
        "name": name,
        "collaborative": "false",
        "pid": pid,
        "modified_at": 1493424000,
        "num_tracks": len(uris),
        "num_albums": len(uris),
        "num_followers": 1,
        "tracks": [full_track(u, i) for i, u in enumerate(uris)],
        "num_edits": 1,
        "duration_ms": 1,
        "num_artists": len(uris),
        **extra,
    }


def reduced_playlist(pid: int, name: str, uris: list[str], **extra) -> dict:
    return {
        "name": name,
        "pid": pid,
        "num_tracks": len(uris),
        "num_followers": 10,
        "tracks": [reduced_track(u) for u in uris],
        "num_edits": 1,
        "duration_ms": 1,
        "num_artists": 1,
        **extra,
    }


def write_slice(path: Path, playlists: list[dict]) -> Path:
    info = {"generated_on": "2017-12-03 08:41:42", "slice": "0-999", "version": "v1"}
    path.write_text(json.dumps({"info": info, "playlists": playlists}, indent=4), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- MPD --------------------------------------------------------------------------------------


def test_read_mpd_full_schema_keeps_tracks_and_metadata(tmp_path):
    file = write_slice(
        tmp_path / "mpd.slice.0-999.json",
        [
            full_playlist(7, "Throwbacks", ["a", "b", "c"], description="old stuff"),
            full_playlist(3, "  gym  ", ["b", "d"]),
        ],
    )
    result = read_mpd(file)
    assert isinstance(result, PlaylistSet)
    assert [p.playlist_id for p in result.playlists] == ["7", "3"]
    first = result.playlists[0]
    assert first.title == "Throwbacks"
    assert first.description == "old stuff"
    assert first.track_ids == ("spotify:track:a", "spotify:track:b", "spotify:track:c")
    assert result.playlists[1].title == "gym"  # whitespace stripped
    assert result.playlists[1].description is None
    assert result.tracks["spotify:track:a"] == Track(
        "spotify:track:a", "Song a", "Artist a", "Album a"
    )
    assert set(result.tracks) == {f"spotify:track:{u}" for u in "abcd"}
    assert result.n_empty_skipped == 0


def test_read_mpd_reduced_schema_folder_in_name_order(tmp_path):
    write_slice(tmp_path / "mpd.slice.1000-1999.json", [reduced_playlist(5, "second", ["x"])])
    write_slice(tmp_path / "mpd.slice.0-999.json", [reduced_playlist(9, "first", ["y", "x"])])
    (tmp_path / "notes.txt").write_text("not a slice")
    result = read_mpd(tmp_path)
    # sorted by file name: "mpd.slice.0-999" < "mpd.slice.1000-1999"
    assert [p.title for p in result.playlists] == ["first", "second"]
    assert result.tracks["spotify:track:x"].album is None
    assert result.tracks["spotify:track:x"].artist == "Artist x"
    assert read_playlists(tmp_path).playlists == result.playlists


def test_read_mpd_full_download_layout_with_data_folder(tmp_path):
    (tmp_path / "data").mkdir()
    write_slice(tmp_path / "data" / "mpd.slice.0-999.json", [reduced_playlist(1, "a", ["x"])])
    assert [p.playlist_id for p in read_playlists(tmp_path).playlists] == ["1"]


def test_titles_kept_verbatim_emoji_non_latin_and_empty(tmp_path):
    names = ["🔥🔥", "Música Latina", "日本の歌", "MiXeD CaSe!!", "   "]
    file = write_slice(
        tmp_path / "mpd.slice.0-999.json",
        [reduced_playlist(i, n, ["t"]) for i, n in enumerate(names)],
    )
    titles = [p.title for p in read_mpd(file).playlists]
    assert titles == ["🔥🔥", "Música Latina", "日本の歌", "MiXeD CaSe!!", ""]


def test_duplicate_tracks_keep_first_occurrence(tmp_path):
    file = write_slice(
        tmp_path / "mpd.slice.0-999.json", [reduced_playlist(1, "a", list("abab c"))]
    )
    ids = read_mpd(file).playlists[0].track_ids
    assert ids == tuple(f"spotify:track:{u}" for u in ["a", "b", " ", "c"])


def test_empty_playlists_skipped_counted_and_logged(tmp_path, caplog):
    file = write_slice(
        tmp_path / "mpd.slice.0-999.json",
        [
            reduced_playlist(1, "a", []),
            reduced_playlist(2, "b", ["x"]),
            reduced_playlist(3, "c", []),
        ],
    )
    with caplog.at_level(logging.INFO, logger="semantic_ids.playlists"):
        result = read_mpd(file)
    assert [p.playlist_id for p in result.playlists] == ["2"]
    assert result.n_empty_skipped == 2
    assert "skipped 2 empty playlist" in caplog.text


def test_mpd_malformed_json_names_file_and_line(tmp_path):
    file = tmp_path / "mpd.slice.0-999.json"
    file.write_text('{\n  "playlists": [\n    {"name": "a",, "pid": 1}\n  ]\n}\n')
    with pytest.raises(
        PlaylistFormatError, match=r"mpd\.slice\.0-999\.json, line 3.*malformed JSON"
    ):
        read_mpd(file)


def test_mpd_missing_title_names_file_and_playlist(tmp_path):
    raw = reduced_playlist(42, "x", ["a"])
    del raw["name"]
    file = write_slice(tmp_path / "mpd.slice.0-999.json", [reduced_playlist(1, "ok", ["a"]), raw])
    with pytest.raises(
        PlaylistFormatError, match=r"mpd\.slice\.0-999\.json, playlist index 1.*'42' has no title"
    ):
        read_mpd(file)


def test_mpd_missing_track_id_names_file_and_playlist(tmp_path):
    raw = reduced_playlist(42, "x", ["a", "b"])
    del raw["tracks"][1]["track_uri"]
    file = write_slice(tmp_path / "mpd.slice.0-999.json", [raw])
    with pytest.raises(
        PlaylistFormatError, match=r"mpd\.slice\.0-999\.json.*'42'.*position 1.*no track id"
    ):
        read_mpd(file)


def test_mpd_not_a_slice_object(tmp_path):
    file = tmp_path / "mpd.slice.0-999.json"
    file.write_text("[1, 2, 3]")
    with pytest.raises(PlaylistFormatError, match="'playlists' list"):
        read_mpd(file)


def test_duplicate_playlist_id_across_files(tmp_path):
    write_slice(tmp_path / "mpd.slice.0-999.json", [reduced_playlist(1, "a", ["x"])])
    write_slice(tmp_path / "mpd.slice.1000-1999.json", [reduced_playlist(1, "b", ["y"])])
    with pytest.raises(
        PlaylistFormatError, match=r"mpd\.slice\.1000-1999\.json.*'1' was already used"
    ):
        read_mpd(tmp_path)


def test_missing_path_and_empty_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_playlists(tmp_path / "nope")
    with pytest.raises(PlaylistFormatError, match="no mpd.slice"):
        read_mpd(tmp_path)
    with pytest.raises(PlaylistFormatError, match="Supported: MPD slices"):
        read_playlists(tmp_path)


def test_unknown_extension_lists_supported_formats(tmp_path):
    file = tmp_path / "playlists.csv"
    file.write_text("a,b\n")
    with pytest.raises(
        PlaylistFormatError, match=r"unknown playlist format '\.csv'.*JSONL.*Parquet"
    ):
        read_playlists(file)


# --- JSONL ------------------------------------------------------------------------------------


def test_read_jsonl_ids_and_objects_blank_lines(tmp_path):
    file = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {
                "id": "p1",
                "title": "chill 90s jazz",
                "description": "for sundays",
                "tracks": ["t1", "t2"],
            },
            "",
            "   ",
            {
                "id": 2,
                "title": "早上好",
                "tracks": [{"id": "t2", "name": "Two", "artist": "B", "album": "X"}, {"id": "t3"}],
            },
        ],
    )
    result = read_playlists(file)
    assert result.playlists == [
        Playlist("p1", "chill 90s jazz", ("t1", "t2"), "for sundays"),
        Playlist("2", "早上好", ("t2", "t3")),
    ]
    assert result.tracks == {"t2": Track("t2", "Two", "B", "X"), "t3": Track("t3")}
    assert result.playlists[0].prompt == "chill 90s jazz. for sundays"


def test_read_jsonl_folder_and_ndjson(tmp_path):
    write_jsonl(tmp_path / "b.ndjson", [{"id": "b", "title": "B", "tracks": ["t"]}])
    write_jsonl(tmp_path / "a.jsonl", [{"id": "a", "title": "A", "tracks": ["t"]}])
    assert [p.playlist_id for p in read_playlists(tmp_path).playlists] == ["a", "b"]


def test_read_jsonl_empty_playlists_counted(tmp_path):
    file = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": "a", "title": "A", "tracks": []},
            {"id": "b", "title": "B"},
            {"id": "c", "title": "C", "tracks": ["t"]},
        ],
    )
    result = read_jsonl(file)
    assert [p.playlist_id for p in result.playlists] == ["c"]
    assert result.n_empty_skipped == 2


@pytest.mark.parametrize(
    ("line", "pattern"),
    [
        ('{"id": "p", "title": "x", "tracks": ["a"', r"p\.jsonl, line 2.*malformed JSON"),
        ('{"id": "p", "tracks": ["a"]}', r"p\.jsonl, line 2.*'p' has no title"),
        ('{"id": "p", "title": null, "tracks": ["a"]}', r"p\.jsonl, line 2.*'p' has no title"),
        ('{"id": "p", "title": 5, "tracks": ["a"]}', r"p\.jsonl, line 2.*title of type int"),
        (
            '{"id": "p", "title": "x", "tracks": [{"name": "no id"}]}',
            r"p\.jsonl, line 2.*'p'.*position 0.*no track id",
        ),
        ('{"id": "p", "title": "x", "tracks": [null]}', r"p\.jsonl, line 2.*'p'.*position 0"),
        ('{"id": "p", "title": "x", "tracks": "a"}', r"p\.jsonl, line 2.*'tracks' must be a list"),
        ('{"title": "x", "tracks": ["a"]}', r"p\.jsonl, line 2.*no id"),
        ('["not", "an", "object"]', r"p\.jsonl, line 2.*expected a JSON object"),
    ],
)
def test_read_jsonl_errors_name_file_and_line(tmp_path, line, pattern):
    file = write_jsonl(tmp_path / "p.jsonl", [{"id": "ok", "title": "fine", "tracks": ["a"]}, line])
    with pytest.raises(PlaylistFormatError, match=pattern):
        read_jsonl(file)


# --- Parquet ----------------------------------------------------------------------------------


def test_read_parquet_groups_rows_and_orders_by_position(tmp_path):
    table = pa.table(
        {
            "playlist_id": [10, 10, 20, 10, 20],
            "title": ["rock", "rock", "🎸", "rock", "🎸"],
            "track_id": ["a", "b", "c", "d", "a"],
            "description": ["loud", "loud", None, "loud", None],
            "track_name": ["A", "B", "C", "D", "A"],
            "artist_name": ["x", "y", "z", "w", "x"],
            "position": [2, 0, 0, 1, 1],
        }
    )
    pq.write_table(table, tmp_path / "p.parquet")
    result = read_playlists(tmp_path / "p.parquet")
    assert result.playlists == [
        Playlist("10", "rock", ("b", "d", "a"), "loud"),
        Playlist("20", "🎸", ("c", "a")),
    ]
    assert result.tracks["a"] == Track("a", "A", "x", None)
    assert read_playlists(tmp_path).playlists == result.playlists  # folder of parquet


def test_read_parquet_row_order_without_position(tmp_path):
    table = pa.table(
        {"playlist_id": ["p", "q", "p"], "title": ["P", "Q", "P"], "track_id": ["b", "x", "a"]}
    )
    pq.write_table(table, tmp_path / "p.parquet")
    result = read_parquet(tmp_path / "p.parquet")
    assert [p.track_ids for p in result.playlists] == [("b", "a"), ("x",)]


def test_read_parquet_missing_column_and_nulls(tmp_path):
    pq.write_table(pa.table({"playlist_id": ["p"], "track_id": ["a"]}), tmp_path / "a.parquet")
    with pytest.raises(PlaylistFormatError, match=r"a\.parquet: missing column\(s\) title"):
        read_parquet(tmp_path / "a.parquet")
    pq.write_table(
        pa.table({"playlist_id": ["p"], "title": pa.array([None], pa.string()), "track_id": ["a"]}),
        tmp_path / "b.parquet",
    )
    with pytest.raises(PlaylistFormatError, match=r"b\.parquet, row 0.*'p' has no title"):
        read_parquet(tmp_path / "b.parquet")
    pq.write_table(
        pa.table({"playlist_id": ["p", "p"], "title": ["t", "t"], "track_id": ["a", None]}),
        tmp_path / "c.parquet",
    )
    with pytest.raises(PlaylistFormatError, match=r"c\.parquet.*'p'.*position 1.*no track id"):
        read_parquet(tmp_path / "c.parquet")


def test_read_parquet_corrupt_file(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(PlaylistFormatError, match=r"bad\.parquet: not a readable Parquet file"):
        read_parquet(tmp_path / "bad.parquet")


# --- split ------------------------------------------------------------------------------------


def make_playlists(ids) -> list[Playlist]:
    return [Playlist(str(i), f"title {i}", ("t",)) for i in ids]


def sides(split: PlaylistSplit) -> dict[str, str]:
    out = {}
    for name in ("train", "validation", "test"):
        out.update({p.playlist_id: name for p in getattr(split, name)})
    return out


def test_split_deterministic_and_fractions_roughly_right():
    playlists = make_playlists(range(10_000))
    split = split_playlists(playlists, validation_fraction=0.1, test_fraction=0.2, seed=3)
    assert sides(split) == sides(split_playlists(playlists, 0.1, 0.2, seed=3))
    assert len(split.train) + len(split.validation) + len(split.test) == 10_000
    assert abs(len(split.validation) - 1000) < 150
    assert abs(len(split.test) - 2000) < 200
    # input order is kept on each side
    assert [int(p.playlist_id) for p in split.train] == sorted(
        int(p.playlist_id) for p in split.train
    )
    # a different seed gives a different split
    assert sides(split) != sides(split_playlists(playlists, 0.1, 0.2, seed=4))


def test_split_stable_when_playlists_are_added():
    before = sides(split_playlists(make_playlists(range(2_000))))
    after = sides(
        split_playlists(make_playlists(range(5_000, 8_000)) + make_playlists(range(2_000)))
    )
    assert {pid: after[pid] for pid in before} == before


def test_split_accepts_playlist_set_and_zero_fractions():
    playlist_set = PlaylistSet(make_playlists(range(100)))
    split = split_playlists(playlist_set, validation_fraction=0.0, test_fraction=0.0)
    assert len(split.train) == 100 and not split.validation and not split.test


@pytest.mark.parametrize(
    ("validation", "test"), [(-0.1, 0.1), (0.1, 1.0), (0.5, 0.5), (0.7, 0.4), ("0.1", 0.1)]
)
def test_split_rejects_bad_fractions(validation, test):
    with pytest.raises(ValueError, match="fraction"):
        split_playlists(make_playlists(range(3)), validation, test)
