"""text2tracks.artifacts: atomic writes, the manifest, and the byte-by-byte file checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from text2tracks.artifacts import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    ArtifactError,
    atomic_file,
    check_npy,
    check_safetensors,
    component_dir,
    component_writer,
    new_artifact,
    read_json,
    read_manifest,
    write_json_atomic,
    write_manifest,
    write_text_atomic,
)


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_write_json_atomic_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"b": 1, "a": [1, 2]})
    write_json_atomic(path, {"c": "é"})
    assert json.loads(path.read_text(encoding="utf-8")) == {"c": "é"}
    assert _leftovers(tmp_path) == []
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})  # fails midway: the old file stays whole
    assert json.loads(path.read_text(encoding="utf-8")) == {"c": "é"}
    assert _leftovers(tmp_path) == []


def test_write_json_atomic_bytes_order_and_default(tmp_path):
    path = tmp_path / "a.json"
    write_json_atomic(path, {"b": 1, "a": [1, 2]})
    assert path.read_text(encoding="utf-8") == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    write_json_atomic(path, {"b": np.int64(3), "a": 1}, sort_keys=False, default=int)
    assert path.read_text(encoding="utf-8") == '{\n  "b": 3,\n  "a": 1\n}\n'


def test_atomic_file_renames_on_success_only_and_makes_the_file_0644(tmp_path):
    path = tmp_path / "out.bin"
    with atomic_file(path) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.bin.")
        tmp.write_bytes(b"first")
        assert not path.exists()  # nothing at the target until the block ends
    assert path.read_bytes() == b"first"
    assert path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError, match="midway"), atomic_file(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("midway")
    assert path.read_bytes() == b"first"
    assert _leftovers(tmp_path) == []
    write_text_atomic(path, "é\n")
    assert path.read_bytes() == "é\n".encode()
    assert _leftovers(tmp_path) == []


def test_read_json_names_a_missing_or_malformed_file(tmp_path):
    with pytest.raises(ArtifactError, match="missing manifest"):
        read_json(tmp_path / "nope.json", what="manifest")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(ArtifactError, match="bad.json is not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_read_manifest_checks_version_components_and_folders(tmp_path):
    with pytest.raises(ArtifactError, match="no artifact folder"):
        read_manifest(tmp_path / "none")
    (tmp_path / "cf").mkdir()
    write_manifest(tmp_path, {"cf": {"factors": 8}})
    manifest = read_manifest(tmp_path)
    assert manifest["format_version"] == FORMAT_VERSION and manifest["components"] == {
        "cf": {"factors": 8}
    }
    assert "numpy" in manifest["library_versions"]
    write_manifest(tmp_path, {"cf": {}, "seq2seq": {}})
    with pytest.raises(ArtifactError, match="lists component 'seq2seq'"):
        read_manifest(tmp_path)
    for payload, message in (
        ({"components": {}}, "no integer format_version"),
        ({"format_version": FORMAT_VERSION + 1, "components": {}}, "newer"),
        ({"format_version": 1}, "no 'components' table"),
    ):
        write_json_atomic(tmp_path / MANIFEST_NAME, payload)
        with pytest.raises(ArtifactError, match=message):
            read_manifest(tmp_path)


def test_new_artifact_is_all_or_nothing(tmp_path):
    target = tmp_path / "art"
    with pytest.raises(RuntimeError), new_artifact(target) as tmp:
        (tmp / "half.txt").write_text("x")
        raise RuntimeError("crash while writing")
    assert not target.exists() and _leftovers(tmp_path) == []
    with new_artifact(target) as tmp:
        (tmp / "one.txt").write_text("1")
    assert (target / "one.txt").read_text() == "1"
    with pytest.raises(FileExistsError, match="--force"), new_artifact(target):
        pass
    with new_artifact(target, force=True) as tmp:
        (tmp / "two.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["two.txt"]
    assert _leftovers(tmp_path) == []


def test_component_writer_adds_replaces_and_keeps_the_old_on_failure(tmp_path):
    with component_writer(tmp_path, "cf", {"v": 1}) as tmp:
        (tmp / "a.txt").write_text("old")
    assert read_manifest(tmp_path)["components"] == {"cf": {"v": 1}}
    with pytest.raises(RuntimeError), component_writer(tmp_path, "cf", {"v": 2}) as tmp:
        (tmp / "a.txt").write_text("new")
        raise RuntimeError("crash")
    assert (tmp_path / "cf" / "a.txt").read_text() == "old"
    assert read_manifest(tmp_path)["components"] == {"cf": {"v": 1}}
    with component_writer(tmp_path, "cf", {"v": 3}) as tmp:
        (tmp / "b.txt").write_text("new")
    assert sorted(p.name for p in (tmp_path / "cf").iterdir()) == ["b.txt"]
    assert read_manifest(tmp_path)["components"] == {"cf": {"v": 3}}
    with pytest.raises(FileExistsError), component_writer(tmp_path, "cf", force=False):
        pass
    assert [p for p in _leftovers(tmp_path)] == []


def test_check_npy_accepts_whole_arrays_and_names_damage(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.arange(100, dtype=np.float32).reshape(10, 10))
    check_npy(path)
    data = path.read_bytes()
    path.write_bytes(data[:-4])
    with pytest.raises(ArtifactError, match="x.npy: .* bytes, its header .* needs"):
        check_npy(path)
    path.write_bytes(b"not an array")
    with pytest.raises(ArtifactError, match="damaged array file"):
        check_npy(path)
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ArtifactError, match="Python objects"):
        check_npy(path)


def test_check_safetensors_accepts_whole_files_and_names_damage(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(4, 4), "b": torch.zeros(3)}, str(path))
    check_safetensors(path)
    data = path.read_bytes()
    path.write_bytes(data[:-1])
    with pytest.raises(ArtifactError, match="truncated or overwritten"):
        check_safetensors(path)
    path.write_bytes((10**6).to_bytes(8, "little") + b"{}")
    with pytest.raises(ArtifactError, match="runs past the end"):
        check_safetensors(path)


def test_component_dir_checks_listing_required_files_and_contents(tmp_path):
    (tmp_path / "cf").mkdir()
    write_manifest(tmp_path, {"cf": {}})
    manifest = read_manifest(tmp_path)
    with pytest.raises(ArtifactError, match="lists no 'seq2seq' component; train it"):
        component_dir(tmp_path, manifest, "seq2seq", "train it")
    with pytest.raises(ArtifactError, match="item_factors.npy is missing"):
        component_dir(tmp_path, manifest, "cf", "")
    np.save(tmp_path / "cf" / "item_factors.npy", np.ones((3, 2), dtype=np.float32))
    (tmp_path / "cf" / "vocab.json").write_text("[", encoding="utf-8")
    with pytest.raises(ArtifactError, match="vocab.json: not valid JSON"):
        component_dir(tmp_path, manifest, "cf", "")
    (tmp_path / "cf" / "vocab.json").write_text("[]", encoding="utf-8")
    assert component_dir(tmp_path, manifest, "cf", "") == tmp_path / "cf"


def test_artifact_split_gives_the_build_split_and_refuses_other_playlists(tmp_path):
    import json

    from tiny_artifact import build_tiny_artifact

    from text2tracks.artifacts import artifact_split

    artifact = build_tiny_artifact(tmp_path)
    info = json.loads((artifact / "cf" / "split.json").read_text())
    split = artifact_split(artifact, tmp_path / "demo.jsonl")
    assert [p.playlist_id for p in split.train] == info["train_playlist_ids"]
    fewer = tmp_path / "fewer.jsonl"
    fewer.write_text("".join((tmp_path / "demo.jsonl").read_text().splitlines(True)[:250]))
    with pytest.raises(ValueError, match="are not those .* was built from"):
        artifact_split(artifact, fewer)
