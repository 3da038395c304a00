"""eval.bench_build_ids: the real build-ids command per synthetic size, a table, JSON and PNG."""

from __future__ import annotations

import json


def test_two_sizes_give_records_a_table_and_the_growth_plot(tmp_path, capsys):
    from eval.bench_build_ids import STAGES, main

    out = tmp_path / "b"
    assert main(["--sizes", "400,800", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    sizes = result["sizes"]
    assert [r["n_playlists"] for r in sizes] == [400, 800]
    for r in sizes:
        assert r["reader"] == "columnar"  # synthetic Parquet
        assert set(STAGES) <= set(r["timings_s"])
        assert r["seconds"] >= sum(r["timings_s"].values()) * 0.99
        assert r["peak_rss_mb"] >= r["start_rss_mb"] > 0
        assert r["catalogue_items"] >= 256
        assert r["split"]["n_train"] > r["split"]["n_test"] > 0
    # more playlists, more rows and a larger catalogue
    assert sizes[1]["rows"] > sizes[0]["rows"]
    assert sizes[1]["catalogue_items"] > sizes[0]["catalogue_items"]
    assert (out / "growth.png").stat().st_size > 1000
    assert not list(out.glob("artifact_*"))  # removed unless --keep-artifacts
    table = capsys.readouterr().out
    assert "| 800 |" in table and "columnar" in table
