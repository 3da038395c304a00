"""eval.bench_catalogue_size: decoding cost per catalogue size with one model, table and JSON."""

from __future__ import annotations

import json


def test_sizes_give_rows_ratios_and_a_table(tmp_path, one_thread, capsys):
    from eval.bench_catalogue_size import main

    out = tmp_path / "c.json"
    argv = ["--items", "3000,12000", "--repeats", "2", "--batch", "3", "--out", str(out)]
    assert main(argv) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["requested_items"] for r in rows] == [3000, 12000]
    small, large = rows
    assert 0 < small["items"] <= 3000 < large["items"] <= 12000
    assert large["trie_mb"] > small["trie_mb"] > 0  # the tables grow with the catalogue
    assert small["one_prompt_ratio_to_smallest"] == 1.0
    for r in rows:
        assert r["one_prompt_ms"] > 0 and r["batch_ms_per_prompt"] > 0
        assert len(r["times_one_s"]) == len(r["times_batch_s"]) == 2
    assert f"| {large['items']:,} |" in capsys.readouterr().out
