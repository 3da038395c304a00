"""build-ids through the columnar reader writes the same artifact as through the object reader."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from semantic_ids.cf import CFConfig
from semantic_ids.columnar import columnar_readable, read_columnar
from semantic_ids.demo import write_demo_jsonl
from semantic_ids.playlists import PlaylistFormatError, read_playlists
from text2tracks import cli
from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids

N_TRACKS = 40


def tiny_playlists(n_playlists: int = 120, seed: int = 0) -> list[dict]:
    """MPD-shaped playlists with the reader rules' edge cases: repeated tracks, empty playlists
    (with and without a 'tracks' key), padded titles, and metadata that differs between a
    track's occurrences (the first one seen wins) or is missing / blank."""
    rng = np.random.default_rng(seed)
    playlists = []
    for pid in range(n_playlists):
        tracks = []
        for track in rng.integers(0, N_TRACKS, size=int(rng.integers(3, 10))).tolist():
            record = {"track_uri": f"spotify:track:{track:03d}", "track_name": f"song {pid % 3}"}
            if track % 5:
                record["artist_name"] = f"artist {track % 7}"
            record["album_name"] = "  " if track % 4 == 0 else f"album {track % 11}"
            tracks.append(record)
        raw = {"pid": pid, "name": f"  mix {pid % 6} ", "tracks": tracks}
        if pid % 4 == 0:
            raw["description"] = f"for day {pid % 5}"
        playlists.append(raw)
    playlists[7]["tracks"] = []
    del playlists[50]["tracks"]
    return playlists


def write_mpd(folder, playlists) -> None:
    folder.mkdir()
    half = len(playlists) // 2
    for start, part in ((0, playlists[:half]), (half, playlists[half:])):
        name = f"mpd.slice.{start}-{start + len(part) - 1}.json"
        (folder / name).write_text(json.dumps({"info": {}, "playlists": part}))


def write_parquet(folder, playlists) -> None:
    """The same playlists, one row per playlist-track, in two files; rows are stored in reverse
    position order so that both readers must order them by ``position``."""
    folder.mkdir()
    half = len(playlists) // 2
    for name, part in (("a.parquet", playlists[:half]), ("b.parquet", playlists[half:])):
        rows = []
        for raw in part:
            for position, track in reversed(list(enumerate(raw.get("tracks") or []))):
                rows.append(
                    {
                        "playlist_id": str(raw["pid"]),
                        "title": raw["name"],
                        "description": raw.get("description"),
                        "track_id": track["track_uri"],
                        "position": position,
                        "track_name": track.get("track_name"),
                        "artist_name": track.get("artist_name"),
                        "album_name": track.get("album_name"),
                    }
                )
        pq.write_table(pa.Table.from_pylist(rows), folder / name)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("columnar_build")
    playlists = tiny_playlists()
    write_mpd(root / "mpd", playlists)
    write_parquet(root / "parquet", playlists)
    write_demo_jsonl(root / "demo.jsonl", n_tracks=120, n_playlists=150, seed=0)
    return root


def tiny_config(**overrides) -> BuildIDsConfig:
    cf = CFConfig(factors=8, iterations=3, num_threads=1)
    return BuildIDsConfig(cf=cf, n_levels=2, codebook_size=8, kmeans_iterations=5, **overrides)


def assert_same_artifact(a, b) -> None:
    """Every file of artifact ``a`` is in ``b`` with the same content (float arrays allclose,
    the manifest's components equal)."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for name in files:
        left, right = a / name, b / name
        if name.suffix == ".npy":
            x, y = np.load(left, allow_pickle=False), np.load(right, allow_pickle=False)
            assert x.dtype == y.dtype and x.shape == y.shape, name
            if np.issubdtype(x.dtype, np.floating):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=str(name))
            else:
                np.testing.assert_array_equal(x, y, err_msg=str(name))
        elif name.name == "text2tracks.json":
            assert (
                json.loads(left.read_text())["components"]
                == json.loads(right.read_text())["components"]
            )
        else:
            assert left.read_bytes() == right.read_bytes(), name


@pytest.mark.parametrize(
    ("fmt", "title_rows", "n_empty"), [("mpd", 0.0, 2), ("parquet", 0.0, 0), ("mpd", 0.5, 2)]
)
def test_columnar_and_object_readers_write_the_same_artifact(
    data, tmp_path, fmt, title_rows, n_empty
):
    config = tiny_config(title_rows=title_rows)
    logs: list[str] = []
    results = {
        reader: run_build_ids(
            data / fmt,
            tmp_path / reader,
            config,
            show_progress=False,
            log=logs.append,
            reader=reader,
        )
        for reader in ("columnar", "objects")
    }
    assert results["columnar"]["reader"] == "columnar" and results["objects"]["reader"] == "objects"
    assert any("(columnar reader)" in m for m in logs) and any(
        "(objects reader)" in m for m in logs
    )
    for result in results.values():
        assert set(result["timings"]) >= {"read+split", "interactions", "cf", "residual_kmeans"}
    assert results["columnar"]["split"] == results["objects"]["split"]
    assert results["columnar"]["split"]["n_empty_skipped"] == n_empty
    assert results["columnar"]["stats"] == results["objects"]["stats"]
    assert_same_artifact(tmp_path / "columnar", tmp_path / "objects")

    tracks = json.loads((tmp_path / "columnar" / "semantic_ids" / "tracks.json").read_text())
    assert len(tracks) >= 8 and all(t["name"] in ("song 0", "song 1", "song 2") for t in tracks)
    assert any(t["artist"] is None for t in tracks) and any(t["album"] is None for t in tracks)
    split = json.loads((tmp_path / "columnar" / "cf" / "split.json").read_text())
    assert split["n_train"] == len(split["train_playlist_ids"])
    # 120 playlists written, 2 of them empty (Parquet has no rows for those)
    assert split["n_train"] + split["n_validation"] + split["n_test"] == 118
    if not title_rows:  # auto picks the columnar reader for MPD slices and Parquet
        auto = run_build_ids(data / fmt, tmp_path / "auto", config, show_progress=False)
        assert auto["reader"] == "columnar"


@pytest.mark.parametrize("fmt", ["mpd", "parquet"])
def test_columnar_track_metadata_is_read_playlists_tracks(data, fmt):
    objects = read_playlists(data / fmt)
    columns = read_columnar(data / fmt, track_metadata=True)
    assert len(columns.track_metadata["name"]) == columns.track_ids.size == N_TRACKS
    assert columns.tracks_for(list(objects.tracks)) == objects.tracks
    assert columns.tracks_for(["spotify:track:999", "spotify:track:001"]) == {
        "spotify:track:001": objects.tracks["spotify:track:001"]
    }
    # without track_metadata nothing is kept, and a view from take shares what is
    assert read_columnar(data / fmt).tracks_for(list(objects.tracks)) == {}
    part = columns.take(np.arange(3))
    assert part.tracks_for(["spotify:track:001"]) == columns.tracks_for(["spotify:track:001"])


def test_jsonl_goes_through_the_object_reader(data, tmp_path, capsys):
    logs: list[str] = []
    result = run_build_ids(
        data / "demo.jsonl", tmp_path / "a", tiny_config(), show_progress=False, log=logs.append
    )
    assert result["reader"] == "objects" and any("(objects reader)" in m for m in logs)
    assert (tmp_path / "a" / "semantic_ids" / "tracks.json").is_file()
    with pytest.raises(ValueError, match="columnar reader reads MPD slices and Parquet"):
        run_build_ids(data / "demo.jsonl", tmp_path / "b", tiny_config(), reader="columnar")
    with pytest.raises(ValueError, match="reader must be one of"):
        run_build_ids(data / "demo.jsonl", tmp_path / "b", tiny_config(), reader="arrow")
    # the command line's --reader
    args = ["build-ids", "--playlists", str(data / "mpd"), "--out", str(tmp_path / "c")]
    tiny = ["--factors", "8", "--iterations", "2", "--codebook-size", "8", "--levels", "2"]
    assert cli.main([*args, *tiny, "--quiet", "--reader", "objects"]) == 0
    assert "(objects reader)" in capsys.readouterr().err


def test_columnar_readable(data, tmp_path):
    assert columnar_readable(data / "mpd") and columnar_readable(data / "parquet")
    assert columnar_readable(next((data / "mpd").glob("*.json")))
    assert columnar_readable(data / "parquet" / "a.parquet")
    assert not columnar_readable(data / "demo.jsonl")
    assert not columnar_readable(tmp_path / "missing")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.jsonl").write_text("")
    (mixed / "b.parquet").write_bytes((data / "parquet" / "a.parquet").read_bytes())
    assert not columnar_readable(mixed)  # read_playlists reads such a folder as JSONL


def test_auto_falls_back_to_objects_for_playlists_that_span_row_groups(data, tmp_path):
    """A Parquet file whose playlists' rows cross row-group boundaries: the columnar reader
    refuses it, "auto" reads it as objects and writes what "objects" writes."""
    table = pq.read_table(data / "parquet" / "a.parquet")
    folder = tmp_path / "spanning"
    folder.mkdir()
    pq.write_table(table, folder / "a.parquet", row_group_size=7)  # cuts playlists apart
    logs: list[str] = []
    auto = run_build_ids(
        folder, tmp_path / "auto", tiny_config(), show_progress=False, log=logs.append
    )
    assert auto["reader"] == "objects"
    assert any("columnar reader refused" in m for m in logs)
    run_build_ids(
        folder, tmp_path / "objects", tiny_config(), show_progress=False, reader="objects"
    )
    assert_same_artifact(tmp_path / "auto", tmp_path / "objects")
    with pytest.raises(PlaylistFormatError, match="row group"):
        run_build_ids(folder, tmp_path / "columnar", tiny_config(), reader="columnar")
