"""Smoke test of eval.bench_scale: a tiny synthetic size through every item-side stage."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_bench_scale_runs_every_stage_on_a_tiny_size(tmp_path):
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "eval.bench_scale",
            "--sizes",
            "1000",
            "--out",
            str(tmp_path),
            "--no-decode",
            "--als-iterations",
            "1",
            "--kmeans-iterations",
            "2",
            "--factors",
            "8",
        ],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    size = json.loads((tmp_path / "size_1000.json").read_text())
    assert size["n_playlists"] == size["P"] == 1000
    for stage in (
        "read_mpd_columnar",
        "read_parquet_columnar",
        "interactions",
        "als",
        "residual_kmeans",
        "catalog",
        "trie",
    ):
        assert size["stages"][stage]["seconds"] >= 0, stage
    # the matrix holds each (playlist, catalogue track) once: at most one entry per row read
    assert 0 < size["nnz"] <= size["R"]
    assert size["stages"]["interactions"]["n_items"] == size["I"] <= size["T"]
    assert size["stages"]["trie"]["bytes_per_item"] > 0
    assert (tmp_path / "results.json").is_file() and (tmp_path / "growth.png").is_file()
