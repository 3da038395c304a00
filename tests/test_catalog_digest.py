"""A model is refused with a catalogue of other semantic IDs (SemanticIDCatalog.codes_digest)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The tiny artifact, saved again through the API (which records the catalogue digest)."""
    from tests.tiny_artifact import build_tiny_artifact
    from text2tracks.pipeline import Text2Tracks

    root = tmp_path_factory.mktemp("digest")
    artifact = build_tiny_artifact(root)
    Text2Tracks.from_pretrained(artifact, device="cpu").save_pretrained(root / "saved")
    return root / "saved"


def _manifest(artifact):
    return json.loads((artifact / "text2tracks.json").read_text())


def test_the_digest_follows_tracks_and_codes():
    from semantic_ids.catalog import SemanticIDCatalog

    codes = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 0]])
    first = SemanticIDCatalog(["a", "b", "c"], codes, (2, 2, 1))
    assert (
        first.codes_digest() == SemanticIDCatalog(["a", "b", "c"], codes, (2, 2, 1)).codes_digest()
    )
    swapped = SemanticIDCatalog(["a", "b", "c"], codes[[1, 0, 2]], (2, 2, 1))
    renamed = SemanticIDCatalog(["a", "b", "d"], codes, (2, 2, 1))
    assert len({first.codes_digest(), swapped.codes_digest(), renamed.codes_digest()}) == 3


def test_a_saved_model_records_its_catalogue_and_loads(saved):
    from semantic_ids.catalog import SemanticIDCatalog
    from text2tracks.pipeline import Text2Tracks

    catalog = SemanticIDCatalog.load(saved / "semantic_ids" / "catalog")
    assert _manifest(saved)["components"]["seq2seq"]["catalog_digest"] == catalog.codes_digest()
    assert len(Text2Tracks.from_pretrained(saved, device="cpu").recommend("rock", k=3)) == 3


def test_a_model_with_another_builds_codes_is_refused(saved, tmp_path):
    from text2tracks.artifacts import ArtifactError
    from text2tracks.pipeline import Text2Tracks

    other = tmp_path / "other"
    shutil.copytree(saved, other)
    codes_path = other / "semantic_ids" / "catalog" / "sid_codes.npy"
    codes = np.load(codes_path, allow_pickle=False)
    np.save(codes_path, codes[np.roll(np.arange(len(codes)), 1)])  # same shape, other tracks'
    with pytest.raises(ArtifactError, match="trained on other semantic IDs"):
        Text2Tracks.from_pretrained(other, device="cpu")


def test_an_ensemble_member_with_another_digest_is_refused(saved, tmp_path):
    from text2tracks.artifacts import ArtifactError
    from text2tracks.pipeline import Text2Tracks

    other = tmp_path / "member"
    shutil.copytree(saved, other)
    shutil.copytree(other / "seq2seq", other / "seq2seq_1")
    manifest = _manifest(other)
    manifest["components"]["seq2seq_1"] = {"member": 1, "catalog_digest": "0123456789abcdef"}
    (other / "text2tracks.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="seq2seq_1 was trained on other semantic IDs"):
        Text2Tracks.from_pretrained(other, device="cpu")
    # without a recorded digest (a model saved before digests) the member loads
    del manifest["components"]["seq2seq_1"]["catalog_digest"]
    (other / "text2tracks.json").write_text(json.dumps(manifest))
    assert len(Text2Tracks.from_pretrained(other, device="cpu").members) == 1
