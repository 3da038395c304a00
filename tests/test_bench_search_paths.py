"""eval.bench_search_paths: the five search paths on a small catalogue, one table and JSON."""

from __future__ import annotations

import json


def test_the_five_paths_return_the_same_items_and_a_table(tmp_path, one_thread, capsys):
    from eval.bench_search_paths import main

    out = tmp_path / "paths.json"
    argv = [
        "--prompt-lengths", "5,20", "--batches", "1,3", "--num-beams", "6", "--k", "6",
        "--n-items", "3000", "--repeats", "1", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 5 * 2 * 2
    for row in result["rows"]:
        assert row["s_per_call"] > 0
        if row["path"] == "generate":
            assert row["ratio_to_generate"] == 1.0
        if row["prompt_tokens"] == 5:
            assert row["ratio_to_shortest_prompt"] == 1.0
    # the code-space search (repeated or shared states, compact or full scores, lean or
    # forward steps) finds what generate finds
    paths = ("repeated", "shared", "shared_full_logits", "shared_forward")
    assert set(result["same_items_as_generate"]) == {
        f"code_space_{p}/{n}/{b}" for p in paths for n in (5, 20) for b in (1, 3)
    }
    assert all(v == 1.0 for v in result["same_items_as_generate"].values())
    assert "| code_space_shared | 20 | 3 |" in capsys.readouterr().out
