"""eval.bench_train_data: training-data preparation and throughput per synthetic size."""

from __future__ import annotations

import json


def test_sizes_give_records_same_run_ratios_a_table_and_the_plot(tmp_path, capsys):
    from eval.bench_train_data import PREP_STAGES, TOKENIZERS, main

    out = tmp_path / "t"
    argv = ["--sizes", "300,400", "--out", str(out), "--windows", "1", "--window-batches", "1"]
    assert main(argv) == 0
    small, record = json.loads((out / "results.json").read_text())["sizes"]
    # the larger size is timed against the smallest in its own process; the smallest is not
    assert small["reference"] is None and record["reference"] == 300
    for name in TOKENIZERS:
        assert "train_ratio_to_reference" not in small[name]
        assert record[name]["train_ratio_to_reference"] > 0
        assert record[name]["loader_ratio_to_reference"] > 0
    assert record["n_playlists"] == 400 and record["target_source"] == "teacher"
    assert set(PREP_STAGES) < set(record["stages"])
    assert {"model (bytes)", "examples (bytes)", "epoch (bytes)"} < set(record["stages"])
    assert record["prep_seconds"] >= sum(s["seconds"] for s in record["stages"].values()) * 0.99
    # 16 teacher targets per training playlist with at least one catalogue track
    assert record["examples_per_epoch"] % 16 == 0
    assert 0 < record["examples_per_epoch"] <= 16 * record["train_playlists"]
    assert any(line.startswith("teacher: title-kNN targets for") for line in record["log"])
    assert not record["targets_from_cache"]
    for name in TOKENIZERS:
        run = record[name]
        assert run["train_examples_per_s"] > 0 and run["loader_examples_per_s"] > 0
        assert run["loss_finite"] and run["n_params"] > 0
    # bytes: ByT5's 256 bytes and specials plus the ID tokens; subword learned from the prompts
    assert record["bytes"]["vocab_size"] != record["subword"]["vocab_size"]
    assert (out / "artifact_400" / "semantic_ids").is_dir()  # built once, then reused
    assert (out / "growth.png").stat().st_size > 1000
    table = capsys.readouterr().out
    assert "| synthetic |" in table and "at the 300-playlist set" in table
