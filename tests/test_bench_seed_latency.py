"""eval.bench_seed_latency: interleaved timing of seed counts, end to end on a tiny artifact.

Nothing here asserts a speed: the timings are checked for shape and sense only.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from tiny_artifact import build_tiny_artifact

from eval.bench_seed_latency import (
    check_seed_counts,
    main,
    seeded_playlists,
    summarise,
    time_seed_counts,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """A tiny artifact whose model reads no seeds, and one whose model reads up to 4."""
    from text2tracks.seed_prompts import write_max_seed_tracks

    root = tmp_path_factory.mktemp("seed_latency")
    plain = build_tiny_artifact(root / "plain")
    seeded = build_tiny_artifact(root / "seeded")
    write_max_seed_tracks(seeded / "seq2seq", 4)  # untrained: what is timed is what it reads
    return plain, seeded


class _Recorder:
    """A stub recommender that records each call (titles, seed counts) and takes no time."""

    def __init__(self):
        self.calls = []
        self.modes = set()

    def recommend(self, prompts, k, seed_tracks, batch_size, mode):
        assert batch_size == len(prompts) == len(seed_tracks)
        self.calls.append((tuple(prompts), tuple(len(s) for s in seed_tracks)))
        self.modes.add(mode)
        return []


def _playlists(n: int, length: int):
    return [(f"p{i}", [f"p{i}:t{j}" for j in range(length)]) for i in range(n)]


def test_repeats_interleave_the_seed_counts_on_the_same_playlists():
    stub = _Recorder()
    playlists = _playlists(5, 3)
    times = time_seed_counts(stub, playlists, [3, 1], [1, 3], repeats=2, calls=2)
    assert set(times) == {1, 3} and all(list(times[b]) == [0, 1, 3] for b in times)
    assert all(len(reps) == 2 and len(reps[0]) == 2 for b in times for reps in times[b].values())
    timed = stub.calls[6:]  # after one warm-up call per batch size and seed count
    counts = [seeds[0] for _, seeds in timed]
    # repeat 0: ascending, repeat 1: descending; per batch size, two calls each
    ascending = [0, 0, 1, 1, 3, 3]
    assert counts == ascending * 2 + ascending[::-1] * 2
    assert all(len(set(seeds)) == 1 for _, seeds in timed)  # every prompt of a call: N seeds
    by_count = {n: [p for p, seeds in timed if seeds[0] == n] for n in (0, 1, 3)}
    assert by_count[0] == by_count[1] == by_count[3]  # the same playlists for every count
    assert ("p0", "p1", "p2") in by_count[3] and ("p3", "p4", "p0") in by_count[3]
    assert stub.modes == {"generative"}
    time_seed_counts(stub, playlists, [1], [1], repeats=1, calls=1, mode="hybrid")
    assert stub.modes == {"generative", "hybrid"}  # the mode is passed on to every call
    with pytest.raises(ValueError, match="batch sizes"):
        time_seed_counts(stub, playlists, [1], [0], repeats=1, calls=1)
    with pytest.raises(ValueError, match="at least 4 tracks"):
        time_seed_counts(stub, playlists, [4], [1], repeats=1, calls=1)
    with pytest.raises(ValueError, match=">= 0"):
        check_seed_counts([-1])
    assert check_seed_counts([10, 1, 10]) == [0, 1, 10]


def test_summary_takes_medians_and_their_ratios_to_no_seeds():
    times = {
        2: {
            0: [[1.0, 3.0], [2.0, 2.0]],  # median 2; per repeat 2 and 2
            5: [[4.0, 4.0], [6.0, 2.0]],  # median 4; per repeat 4 and 4
            9: [[2.0, 2.0], [10.0, 10.0]],  # median 6; per repeat 2 and 10
        }
    }
    rows = {row["seed_count"]: row for row in summarise(times)}
    assert rows[0]["ratio"] == rows[0]["ratio_paired_median"] == 1.0
    assert rows[0]["s_per_call"] == 2.0 and rows[0]["ms_per_prompt"] == 1000.0
    assert rows[5]["s_per_call"] == 4.0 and rows[5]["ratio"] == 2.0
    assert rows[5]["ratio_paired_median"] == 2.0  # repeats: 4/2 and 4/2
    assert rows[9]["ratio"] == 3.0  # median 6 / median 2
    assert rows[9]["ratio_paired_median"] == 3.0  # median of 2/2 and 10/2
    assert all(row["n_calls"] == 4 and row["batch_size"] == 2 for row in rows.values())
    with pytest.raises(ValueError, match="0 seeds"):
        summarise({1: {5: [[1.0]]}})


def test_playlists_come_from_test_then_validation_with_enough_catalogue_tracks():
    from types import SimpleNamespace

    from semantic_ids.playlists import Playlist

    def playlist(i, title, tracks):
        return Playlist(str(i), title, tuple(tracks))

    vocab = {"a", "b", "c"}
    split = SimpleNamespace(
        test=[
            playlist(0, "x", ["a", "zz", "b"]),  # 2 catalogue tracks
            playlist(1, " ", ["a", "b", "c"]),  # no title
            playlist(2, "y", ["c", "b", "a"]),
        ],
        validation=[playlist(3, "v", ["b", "c"])],
    )
    chosen, used = seeded_playlists(split, vocab, min_tracks=2, needed=2)
    assert used == ["test"] and chosen == [("x", ["a", "b"]), ("y", ["c", "b", "a"])]
    chosen, used = seeded_playlists(split, vocab, min_tracks=2, needed=3)
    assert used == ["test", "validation"] and chosen[-1] == ("v", ["b", "c"])
    with pytest.raises(ValueError, match="at least 4 catalogue tracks"):
        seeded_playlists(split, vocab, min_tracks=4, needed=1)


def test_runs_end_to_end_with_the_requested_seeds(artifacts, tmp_path, monkeypatch):
    from text2tracks.pipeline import Text2Tracks

    plain, seeded = artifacts
    argv = [
        "--playlists",
        str(plain.parent / "demo.jsonl"),
        "--batch-sizes",
        "1,3",
        "--seed-counts",
        "2,6",
        "--repeats",
        "2",
        "--calls",
        "1",
    ]
    with pytest.raises(ValueError, match="reads no seed tracks"):
        main(["--artifact", str(plain), *argv, "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()

    seen = Counter()  # (batch size, seeds per prompt) -> calls
    original = Text2Tracks.recommend

    def spy(self, prompts, *args, seed_tracks=None, **kwargs):
        lengths = {len(s) for s in seed_tracks}
        assert len(lengths) == 1 and len(seed_tracks) == len(prompts)
        seen[len(prompts), lengths.pop()] += 1
        return original(self, prompts, *args, seed_tracks=seed_tracks, **kwargs)

    monkeypatch.setattr(Text2Tracks, "recommend", spy)
    out = tmp_path / "latency.json"
    assert main(["--artifact", str(seeded), *argv, "--out", str(out)]) == 0
    # one warm-up call + 2 repeats x 1 call per batch size and seed count
    assert seen == {(b, n): 3 for b in (1, 3) for n in (0, 2, 6)}

    result = json.loads(out.read_text())
    expected_keys = {
        "artifact",
        "device",
        "num_threads",
        "k",
        "mode",
        "repeats",
        "calls_per_repeat",
        "seed_counts",
        "max_seed_tracks",
        "seeds_read_per_count",
        "num_beams",
        "n_playlists",
        "splits",
        "rows",
        "times_s",
    }
    assert set(result) == expected_keys
    assert result["seed_counts"] == [0, 2, 6] and result["max_seed_tracks"] == 4
    assert result["seeds_read_per_count"] == {"0": 0, "2": 2, "6": 4}
    assert result["splits"][0] == "test" and result["n_playlists"] >= 1
    assert [(r["batch_size"], r["seed_count"]) for r in result["rows"]] == [
        (b, n) for b in (1, 3) for n in (0, 2, 6)
    ]
    for row in result["rows"]:
        assert row["n_calls"] == 2 and row["s_per_call"] > 0 and row["ratio"] > 0
        zero = next(
            r
            for r in result["rows"]
            if r["batch_size"] == row["batch_size"] and r["seed_count"] == 0
        )
        assert row["ratio"] == pytest.approx(row["s_per_call"] / zero["s_per_call"])
        assert row["ms_per_prompt"] == pytest.approx(1000 * row["s_per_call"] / row["batch_size"])
    assert len(result["times_s"]["3"]["6"]) == 2 and len(result["times_s"]["3"]["6"][0]) == 1
