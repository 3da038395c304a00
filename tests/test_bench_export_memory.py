"""eval.bench_export_memory: the real export per synthetic size in a fresh process, RSS sampled,
a table and JSON."""

from __future__ import annotations

import json
import random

import pytest
from tiny_artifact import build_tiny_artifact


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return build_tiny_artifact(tmp_path_factory.mktemp("bench_export_memory"))


def test_synthetic_prompts_are_deterministic(tmp_path):
    from eval.bench_export_memory import synthetic_title, write_prompts

    a = write_prompts(tmp_path / "a.jsonl", 50, seed=3).read_bytes()
    assert a == write_prompts(tmp_path / "b.jsonl", 50, seed=3).read_bytes()
    records = [json.loads(line) for line in a.decode().splitlines()]
    assert [r["id"] for r in records] == [f"p{i}" for i in range(50)]
    assert len({r["prompt"] for r in records}) > 10
    assert synthetic_title(random.Random(0)) == synthetic_title(random.Random(0))


def test_two_sizes_give_records_and_a_table(artifact, tmp_path, capsys):
    from eval.bench_export_memory import main

    out = tmp_path / "b" / "results.json"
    argv = ["--artifact", str(artifact), "--sizes", "400,200", "--out", str(out)]
    assert main(argv + ["--k", "5", "--num-beams", "5", "--batch-size", "64"]) == 0
    result = json.loads(out.read_text())
    assert result["settings"]["k"] == 5 and result["settings"]["batch_size"] == 64
    sizes = result["sizes"]
    assert [r["n_prompts"] for r in sizes] == [200, 400]  # smallest first
    for r in sizes:
        assert r["output_lines"] == r["n_prompts"]
        assert r["seconds"] > 0 and r["prompts_per_s"] > 0
        assert r["peak_rss_mb"] > 50 and r["n_samples"] >= 1
        assert set(r["rss_at_progress_mb"]) == {"10%", "50%", "90%"}
        assert all(v is None or 0 < v <= r["peak_rss_mb"] for v in r["rss_at_progress_mb"].values())
        assert r["timeline"] and all(len(s) == 3 for s in r["timeline"])
        assert any("200 done" in line or "400 done" in line for line in r["summary"])
    assert sizes[0]["peak_over_smallest"] == 1.0
    table = capsys.readouterr().out
    assert "| prompts | seconds | prompts/s | peak RSS MB |" in table
    assert "| 200 |" in table and "| 400 |" in table
    assert not list((tmp_path / "b" / "work").glob("*.jsonl"))  # removed unless --keep-files
