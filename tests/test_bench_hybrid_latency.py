"""eval.bench_hybrid_latency: interleaved timing of both modes, end to end on a tiny artifact.

Nothing here asserts a speed: the timings are checked for shape and sense only.
"""

from __future__ import annotations

import json

import pytest
from tiny_artifact import add_tiny_diffusion, build_tiny_artifact

from eval.bench_hybrid_latency import MODES, NEGATIVE, main, summarise, time_modes

pytestmark = pytest.mark.usefixtures("one_thread")


class _Recorder:
    """A stub recommender that records each call (prompts, mode) and takes no time."""

    def __init__(self):
        self.calls = []

    def recommend(self, prompts, k, mode, batch_size):
        assert batch_size == len(prompts)
        self.calls.append((tuple(prompts), mode))
        return []


def test_repeats_interleave_the_modes_on_the_same_prompts():
    stub = _Recorder()
    prompts = [f"p{i}" for i in range(5)]
    times = time_modes(stub, prompts, [1, 3], repeats=2, calls=2)
    assert set(times) == {1, 3}
    assert all(len(times[b][m]) == 2 and len(times[b][m][0]) == 2 for b in times for m in MODES)
    timed = stub.calls[4:]  # after one warm-up call per batch size and mode
    modes = [m for _, m in timed]
    # repeat 0: generative first, repeat 1: hybrid first; per batch size
    assert (
        modes
        == ["generative"] * 2
        + ["hybrid"] * 2
        + ["generative"] * 2
        + ["hybrid"] * 2
        + ["hybrid"] * 2
        + ["generative"] * 2
        + ["hybrid"] * 2
        + ["generative"] * 2
    )
    by_mode = {m: [p for p, mm in timed if mm == m] for m in MODES}
    assert by_mode["generative"] == by_mode["hybrid"]  # the same prompts for both modes
    assert ("p0", "p1", "p2") in by_mode["hybrid"] and ("p3", "p4", "p0") in by_mode["hybrid"]
    with pytest.raises(ValueError, match="batch sizes"):
        time_modes(stub, prompts, [0], repeats=1, calls=1)


class _SettingsRecorder(_Recorder):
    """Records the negative prompt and the contrast each call ran with."""

    def __init__(self):
        from text2tracks.hybrid import HybridSettings

        super().__init__()
        self.hybrid_settings = HybridSettings()
        self.seen = []

    def recommend(self, prompts, k, mode, batch_size, negative_prompt=None):
        self.seen.append((mode, negative_prompt, self.hybrid_settings.negative_contrast))
        return super().recommend(prompts, k, mode, batch_size)


def test_a_negative_prompt_adds_a_mode_with_the_contrast_set_only_for_it():
    stub = _SettingsRecorder()
    times = time_modes(stub, ["a", "b"], [1], repeats=2, calls=1, negative=("sad", 2.0))
    assert set(times[1]) == {*MODES, NEGATIVE}
    assert set(stub.seen) == {
        ("generative", None, 0.0),
        ("hybrid", None, 0.0),
        ("hybrid", "sad", 2.0),  # the negative mode: hybrid, the negative, the contrast
    }
    assert stub.hybrid_settings.negative_contrast == 0.0  # restored
    (row,) = summarise({1: {"generative": [[1.0]], "hybrid": [[2.0]], NEGATIVE: [[3.0]]}})
    assert row["negative_ratio"] == 3.0 and row["negative_ratio_paired_median"] == 3.0


def test_summary_takes_medians_and_their_ratio():
    times = {2: {"generative": [[1.0, 3.0], [2.0, 2.0]], "hybrid": [[4.0, 4.0], [6.0, 2.0]]}}
    (row,) = summarise(times)
    assert row["generative_s_per_call"] == 2.0 and row["hybrid_s_per_call"] == 4.0
    assert row["ratio"] == 2.0 and row["generative_ms_per_prompt"] == 1000.0
    assert row["ratio_paired_median"] == 2.0  # repeats: 4/2 and 4/2


def test_runs_end_to_end_and_refuses_an_artifact_without_a_head(tmp_path):
    plain = build_tiny_artifact(tmp_path / "a")
    argv = ["--playlists", str(plain.parent / "demo.jsonl"), "--batch-sizes", "1,4"]
    with pytest.raises(ValueError, match="no diffusion head"):
        main(["--artifact", str(plain), *argv, "--out", str(tmp_path / "x.json")])
    artifact = add_tiny_diffusion(build_tiny_artifact(tmp_path / "b"), steps=50)
    out = tmp_path / "latency.json"
    assert (
        main(
            [
                "--artifact",
                str(artifact),
                *argv,
                "--repeats",
                "2",
                "--calls",
                "2",
                "--negative-prompt",
                "rock",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["negative"] == {"prompt": "rock", "negative_contrast": 1.0}
    result = json.loads(out.read_text())
    assert [row["batch_size"] for row in result["rows"]] == [1, 4]
    for row in result["rows"]:
        assert row["ratio"] > 0 and row["generative_n_calls"] == row["hybrid_n_calls"] == 4
        assert row["ratio"] == pytest.approx(
            row["hybrid_s_per_call"] / row["generative_s_per_call"]
        )
    assert len(result["times_s"]["4"]["hybrid"]) == 2
    assert all(
        row[f"{NEGATIVE}_n_calls"] == 4 and row["negative_ratio"] > 0 for row in result["rows"]
    )
