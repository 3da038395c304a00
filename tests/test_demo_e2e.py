"""The built-in demo end to end at its tiny size: build IDs, train, evaluate, export, print."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch  # noqa: F401  (a hard dependency: a broken install fails here, not skips)

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_runs_end_to_end_at_tiny_size(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "training.demo",
            "--out",
            str(out),
            "--size",
            "tiny",
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    # what it prints: the metrics table and the recommendations of the demo prompts
    assert "| text2tracks |" in done.stdout and "| popularity |" in done.stdout
    assert "'chill 90s jazz'" in done.stdout and "  5. " in done.stdout
    # what it writes
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    systems = results["systems"]
    assert systems["text2tracks"]["n_prompts"] == systems["popularity"]["n_prompts"] > 0
    # the point of the demo: the trained model ranks the test playlists' tracks better than
    # recommending the most popular tracks to everyone
    assert systems["text2tracks"]["hits@10"] > systems["popularity"]["hits@10"]
    assert results["training"]["steps"] > 0
    records = [
        json.loads(line)
        for line in (out / "recommendations.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    assert len(records) == 5 and all(
        len(r["track_ids"]) == 5 and r["error"] is None for r in records
    )
    assert (out / "artifact" / "text2tracks.json").is_file()
    from text2tracks.pipeline import Text2Tracks

    recs = Text2Tracks.from_pretrained(out / "artifact", device="cpu").recommend("sad songs", k=3)
    assert [r.rank for r in recs] == [1, 2, 3]

    again = subprocess.run(
        [sys.executable, "-m", "training.demo", "--out", str(out), "--size", "tiny"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 2 and "--force" in again.stderr
