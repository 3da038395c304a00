"""Warm start (``--init-from``, :mod:`training.warm_start`): each member starts from the same
member of another artifact's trained model, and a model of other IDs or another shape is
refused."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from tiny_artifact import tiny_train_config, train_tiny_on_demo

from semantic_ids.catalog import SemanticIDCatalog
from text2tracks.modeling import load_seq2seq
from training.warm_start import warm_start_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny artifact with two trained members (4 steps each)."""
    return train_tiny_on_demo(tmp_path_factory.mktemp("warm"), "--members", "2")


def _catalog(art):
    return SemanticIDCatalog.load(art / "semantic_ids" / "catalog")


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_each_member_starts_from_its_own_member_and_wraps_around(trained):
    playlists, art = trained
    saved = [load_seq2seq(art / name)[0] for name in ("seq2seq", "seq2seq_1")]
    assert not _same_weights(*saved)  # two members, two models
    for member, source in ((0, 0), (1, 1), (2, 0)):
        config = tiny_train_config(
            playlists, art, "--init-from", str(art), "--members", "3", "--member", str(member)
        )
        said = []
        model, tokenizer, layout = warm_start_model(config, _catalog(art), said.append)
        assert model.training and _same_weights(model, saved[source])
        assert tuple(layout.level_sizes) == tuple(_catalog(art).level_sizes)
        assert "warm start" in said[0] and ("seq2seq_1" in said[0]) == (source == 1)


def test_a_run_from_another_artifact_trains_on_from_its_weights(trained, tmp_path):
    playlists, art = trained
    target = tmp_path / "b"
    shutil.copytree(art, target)
    config = tiny_train_config(
        playlists, target, "--init-from", str(art), "--members", "1", "--max-steps", "1",
        "--lr", "1e-7", "--seed-prob", "0.5",
    )  # fmt: skip
    from training.train_seq2seq import train

    threads = torch.get_num_threads()
    try:
        train(config)
    finally:
        torch.set_num_threads(threads)
    after = load_seq2seq(target / "seq2seq")[0].state_dict()
    before = load_seq2seq(art / "seq2seq")[0].state_dict()
    for name, value in before.items():  # one step at 1e-7: where it started, not a fresh model
        torch.testing.assert_close(after[name], value, atol=1e-5, rtol=0)


def test_a_model_of_other_ids_or_another_shape_is_refused(trained, tmp_path):
    playlists, art = trained
    catalog = _catalog(art)

    def start(init_from, *flags):
        config = tiny_train_config(playlists, art, "--init-from", str(init_from), *flags)
        return warm_start_model(config, catalog, lambda _: None)

    with pytest.raises(ValueError, match="d_model 32 .run: 64"):
        start(art, "--d-model", "64")
    with pytest.raises(ValueError, match="no artifact folder"):
        start(tmp_path / "missing")
    other = tmp_path / "other"
    shutil.copytree(art, other)
    manifest = json.loads((other / "text2tracks.json").read_text())
    manifest["components"]["seq2seq"]["catalog_digest"] = "0000"
    (other / "text2tracks.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="other semantic IDs"):
        start(other)
    for name in ("seq2seq", "seq2seq_1"):
        del manifest["components"][name]
    (other / "text2tracks.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no trained seq2seq"):
        start(other)
