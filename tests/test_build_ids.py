"""build-ids end to end on tiny synthetic playlists (H1's demo generator)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semantic_ids.catalog import SemanticIDCatalog
from semantic_ids.cf import CFModel
from semantic_ids.demo import write_demo_jsonl
from semantic_ids.interactions import ItemVocab
from text2tracks import cli
from text2tracks.artifacts import read_manifest
from text2tracks.commands.build_ids import (
    BuildIDsConfig,
    format_stats_table,
    load_semantic_ids,
    run_build_ids,
)

TINY = [
    "--min-count",
    "2",
    "--factors",
    "8",
    "--iterations",
    "3",
    "--codebook-size",
    "8",
    "--levels",
    "2",
    "--quiet",
]


@pytest.fixture(scope="module")
def playlists(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "demo.jsonl"
    return write_demo_jsonl(path, n_tracks=300, n_playlists=400, seed=0)


def test_cli_writes_the_artifact_and_refuses_to_overwrite(playlists, tmp_path, capsys):
    out = tmp_path / "artifact"
    args = ["build-ids", "--playlists", str(playlists), "--out", str(out), *TINY]
    assert cli.main(args) == 0
    printed = capsys.readouterr()
    assert "in shared prefix" in printed.out and "perplexity" in printed.out
    assert "residual_kmeans" in printed.err  # stage timings

    manifest = read_manifest(out)
    assert set(manifest["components"]) == {"cf", "semantic_ids"}
    assert manifest["format_version"] == 1 and "numpy" in manifest["library_versions"]

    cf = CFModel.load(out / "cf")
    vocab = ItemVocab.load(out / "cf")
    split = json.loads((out / "cf" / "split.json").read_text())
    assert cf.n_items == len(vocab)
    assert cf.n_playlists == split["n_train"] == len(split["train_playlist_ids"])
    assert split["n_train"] + split["n_validation"] + split["n_test"] == 400

    rkm, catalog, tracks = load_semantic_ids(out)
    assert catalog.item_ids == vocab.item_ids
    assert catalog.depth == 3 and catalog.level_sizes[:2] == (8, 8)
    assert len(tracks) == len(catalog) and tracks[0]["id"] == catalog.item_ids[0]
    assert tracks[0]["artist"]
    np.testing.assert_array_equal(
        catalog.items_for_codes(catalog.sid_codes), np.arange(len(catalog))
    )
    # nothing pickled: every array loads with allow_pickle=False
    for path in out.rglob("*.npy"):
        np.load(path, allow_pickle=False)

    # again without --force: a clear error, the artifact untouched
    before = (out / "semantic_ids" / "catalog" / "sid_codes.npy").read_bytes()
    assert cli.main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "semantic_ids" / "catalog" / "sid_codes.npy").read_bytes() == before
    assert cli.main([*args, "--force", "--assignment", "nearest"]) == 0
    assert (
        json.loads((out / "semantic_ids" / "config.json").read_text())["build"]["assignment"]
        == "nearest"
    )
    assert not list(tmp_path.glob(".artifact*"))  # no temporary folders left behind


def test_run_build_ids_is_deterministic(playlists, tmp_path):
    from semantic_ids.cf import CFConfig

    config = BuildIDsConfig(
        cf=CFConfig(factors=8, iterations=3, num_threads=1), n_levels=2, codebook_size=8
    )
    a = run_build_ids(playlists, tmp_path / "a", config, show_progress=False)
    b = run_build_ids(playlists, tmp_path / "b", config, show_progress=False)
    assert a["stats"]["tracks"] == b["stats"]["tracks"] > 8
    np.testing.assert_array_equal(
        SemanticIDCatalog.load(tmp_path / "a" / "semantic_ids" / "catalog").sid_codes,
        SemanticIDCatalog.load(tmp_path / "b" / "semantic_ids" / "catalog").sid_codes,
    )
    assert set(a["timings"]) >= {"read+split", "interactions", "cf", "residual_kmeans"}
    assert "largest group" in format_stats_table(a["stats"])


def test_too_small_catalogue_is_a_clear_error(playlists, tmp_path, capsys):
    args = [
        "build-ids",
        "--playlists",
        str(playlists),
        "--out",
        str(tmp_path / "x"),
        *TINY,
        "--codebook-size",
        "100000",
    ]
    assert cli.main(args) == 2
    assert "codebook_size" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_missing_playlists_is_a_clear_error(tmp_path, capsys):
    args = ["build-ids", "--playlists", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "x")]
    assert cli.main(args) == 2
    assert "nope.jsonl" in capsys.readouterr().err
