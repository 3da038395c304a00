"""Tests for eval.compare_runs: paired comparison of systems across benchmark runs."""

from __future__ import annotations

import json

import pytest

from eval.compare_runs import compare, main


def _run(folder, systems, index=(0, 1, 2, 3)):
    folder.mkdir()
    (folder / "per_prompt.json").write_text(
        json.dumps({"prompt_index": list(index), "systems": systems})
    )
    return folder


def test_paired_difference_across_runs(tmp_path, capsys):
    a = _run(tmp_path / "a", {"model": {"hits": [1, 1, 1, 0], "ndcg": [0.5, 0.2, 0.1, 0.0]}})
    b = _run(tmp_path / "b", {"knn": {"hits": [1, 0, 0, 0], "ndcg": [0.5, 0.0, 0.0, 0.0]}})
    r = compare(f"{a}:model", f"{b}:knn", n_bootstrap=2000)
    assert r["diff"] == pytest.approx(0.5)
    assert r["mean_a"] == pytest.approx(0.75) and r["mean_b"] == pytest.approx(0.25)
    assert r["relative"] == pytest.approx(2.0)
    assert r["ci"][0] >= 0.0  # every resample favours the model or ties
    same = compare(f"{a}:model", f"{a}:model", n_bootstrap=200)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    assert main([f"{a}:model", f"{b}:knn", "--metric", "ndcg", "--n-bootstrap", "200"]) == 0
    assert "ndcg@10: 0.2000 vs 0.1250" in capsys.readouterr().out


def test_refuses_mismatched_prompts_and_bad_specs(tmp_path):
    a = _run(tmp_path / "a", {"m": {"hits": [1, 0, 1, 0]}})
    b = _run(tmp_path / "b", {"m": {"hits": [1, 0, 1]}}, index=(0, 1, 5))
    with pytest.raises(ValueError, match="different test prompts"):
        compare(f"{a}:m", f"{b}:m")
    with pytest.raises(ValueError, match="no system 'x'"):
        compare(f"{a}:x", f"{a}:m")
    with pytest.raises(ValueError, match="RUN_FOLDER:SYSTEM"):
        compare("nofolder", f"{a}:m")
    with pytest.raises(FileNotFoundError, match="per_prompt.json is missing"):
        compare(f"{tmp_path}:m", f"{a}:m")


def test_breakdown_by_seen_and_artist_titles(tmp_path, capsys):
    from semantic_ids.playlists import read_playlists, split_playlists

    titles = ["Adele", "adele", "chill", "Drake", "gym", "Chill", "Kanye", "road trip"] * 12
    lines = [
        json.dumps({"id": f"p{i}", "title": t, "tracks": [f"t{i % 5}"]})
        for i, t in enumerate(titles)
    ]
    data = tmp_path / "playlists.jsonl"
    data.write_text("\n".join(lines) + "\n")
    split = split_playlists(read_playlists(data).playlists, 0.1, 0.3, seed=0)
    a = _run(tmp_path / "a", {"m": {"hits": [1.0] * len(split.test)}}, range(len(split.test)))
    b = _run(tmp_path / "b", {"k": {"hits": [0.0] * len(split.test)}}, range(len(split.test)))
    (a / "artifact" / "cf").mkdir(parents=True)
    (a / "artifact" / "semantic_ids").mkdir()
    split_info = {"validation_fraction": 0.1, "test_fraction": 0.3, "seed": 0}
    (a / "artifact" / "cf" / "split.json").write_text(json.dumps(split_info))
    tracks = [{"id": "t0", "name": "Hello", "artist": "ADELE"}, {"id": "t1", "artist": "Drake"}]
    (a / "artifact" / "semantic_ids" / "tracks.json").write_text(json.dumps(tracks))
    from eval.compare_runs import _test_prompts, artist_title_mask

    mask = artist_title_mask(str(a), _test_prompts(str(a), str(data))[1])
    names = [p.title.casefold() for p in split.test]
    assert mask.tolist() == [n in ("adele", "drake") for n in names] and 0 < mask.sum() < len(names)
    assert main([f"{a}:m", f"{b}:k", "--artist-titles", str(data), "--n-bootstrap", "100"]) == 0
    out = capsys.readouterr().out
    n_artist = int(mask.sum())
    assert f"title names a catalogue artist, seen in training ({n_artist} prompts" in out
    assert "title names a catalogue artist, not seen: no prompts" in out
    assert f"title names no catalogue artist ({len(names) - n_artist} prompts" in out
