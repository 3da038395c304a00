"""``eval.prior_scale``: the seed prior rescaled at inference, restored after, scored on the
continuation categories; and ``--seed-prior-count-scale`` through the trainer."""

from __future__ import annotations

import json

import pytest
import torch


def test_prior_scale_rescales_every_members_prior_restores_it_and_scores_each_scale(tmp_path):
    from tiny_artifact import train_tiny_on_demo

    from eval.prior_scale import main, scaled_prior
    from text2tracks import Text2Tracks
    from text2tracks.seed_prior import seed_prior_of

    seeds = ("--seed-prob", "1", "--seed-prior", "nodes", "--seed-prior-count-scale")
    playlists, art = train_tiny_on_demo(tmp_path, *seeds, "--members", "2")
    rec = Text2Tracks.from_pretrained(art, device="cpu")
    priors = [seed_prior_of(rec.model), seed_prior_of(rec.members[0].model)]
    # the count scale trained from 1 and came back with the model
    assert all(float(p.count_log_scale.detach().abs().sum()) > 0 for p in priors)
    before = [p.weight.detach().clone() for p in priors]
    ask = dict(k=5, seed_tracks=[rec.catalog.item_ids[:3]], diversity=0)
    plain = rec.recommend_arrays(["mix"], **ask)
    with scaled_prior(rec, 3.0):
        for p, w in zip(priors, before, strict=True):
            torch.testing.assert_close(p.weight, 3 * w)
        louder = rec.recommend_arrays(["mix"], **ask)
    assert not torch.allclose(torch.as_tensor(louder[1]), torch.as_tensor(plain[1]))
    with pytest.raises(RuntimeError, match="boom"), scaled_prior(rec, 0.0):
        raise RuntimeError("boom")
    for p, w in zip(priors, before, strict=True):
        torch.testing.assert_close(p.weight, w)  # restored, also after an error

    out = tmp_path / "scale"
    argv = ["--artifact", str(art), "--playlists", str(playlists), "--out", str(out)]
    argv += ["--scales", "0,1", "--categories", "title_first1,first5", "--k", "10"]
    assert main([*argv, "--max-per-category", "4"]) == 0
    results = json.loads((out / "prior_scale.json").read_text())
    assert results["scales"] == [0.0, 1.0]
    for category in ("title_first1", "first5"):
        rows = results["categories"][category]
        assert set(rows) == {"0.0", "1.0"}
        assert 0 <= rows["1.0"]["hits@10"] <= 1
    assert "| first5 |" in (out / "prior_scale.md").read_text()
    with pytest.raises(SystemExit, match="unknown categories"):
        main([*argv[:-4], "--categories", "title_first3"])

    for model in (rec.model, rec.members[0].model):
        model.get_output_embeddings().seed_prior = None
    with pytest.raises(ValueError, match="no seed prior"), scaled_prior(rec, 2.0):
        pass
