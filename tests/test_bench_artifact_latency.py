"""eval.bench_artifact_latency: two artifacts timed side by side, one table and JSON."""

from __future__ import annotations

import json

import pytest

from tests.tiny_artifact import build_tiny_artifact


def test_two_artifacts_are_timed_in_one_run_with_ratios_to_the_first(tmp_path, one_thread):
    from eval.bench_artifact_latency import main

    artifact = build_tiny_artifact(tmp_path / "a")
    out = tmp_path / "latency.json"
    argv = [
        "--artifacts", f"{artifact},{artifact}", "--repeats", "1", "--single-prompts", "2",
        "--k", "3", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    first, second = result["rows"]
    assert first["ratio_batch1"] == first["ratio_batch64"] == 1.0
    assert second["members"] == first["members"] >= 1
    for row in result["rows"]:
        assert row["ms_per_prompt_batch1"] > 0 and row["ms_per_prompt_batch64"] > 0
        assert row["ratio_batch64"] > 0


def test_no_artifact_is_refused(tmp_path):
    from eval.bench_artifact_latency import main

    with pytest.raises(SystemExit, match="at least one artifact"):
        main(["--artifacts", ",", "--out", str(tmp_path / "x.json")])
