"""Seed tracks in the plumbing around the API: the service's batcher spreads and counts them like
the other per-prompt track ids, ``prepare_call`` lets a prompt of seeds alone be empty when told
so (and only then), and an artifact's ``seq2seq/seed_tracks.json`` is written before the folder
is renamed into place."""

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import pytest

from text2tracks.batching import RequestError, ServeLimits, make_job
from text2tracks.options import normalise_prompts, prepare_call

# ------------------------------------------------------------------ the service's batcher


def _body(prompt, **options):
    fields = dict(
        k=3,
        exclude=None,
        num_beams=None,
        diversity=None,
        mode="generative",
        negative_prompt=None,
        guidance_weight=None,
        like_tracks=None,
        edit_strength=0.5,
        source_prompt=None,
        n_samples=None,
        seed=0,
        seed_tracks=None,
    )
    fields.update(options)
    return SimpleNamespace(prompt=prompt, **fields)


def test_make_job_spreads_seed_tracks_over_the_prompts():
    limits = ServeLimits()
    one = make_job(_body(["a", "b"], seed_tracks=["x", "y"]), limits, 100)
    assert one.per_prompt["seed_tracks"] == [["x", "y"], ["x", "y"]]
    each = make_job(_body(["a", "b"], seed_tracks=[["x"], None]), limits, 100)
    assert each.per_prompt["seed_tracks"] == [["x"], None]
    single = make_job(_body("", seed_tracks=["x"]), limits, 100)
    assert single.per_prompt["seed_tracks"] == [["x"]]
    assert make_job(_body("a"), limits, 100).per_prompt["seed_tracks"] == [None]
    with pytest.raises(RequestError, match="seed_tracks has 1 lists for 2 prompts") as err:
        make_job(_body(["a", "b"], seed_tracks=[["x"]]), limits, 100)
    assert err.value.status == 422


def test_seed_tracks_count_towards_max_track_ids():
    limits = ServeLimits(max_track_ids=4)
    make_job(_body("a", seed_tracks=["x", "y"], exclude=["z", "w"]), limits, 100)
    with pytest.raises(RequestError, match="5 track ids in exclude, like_tracks, seed_tracks"):
        make_job(_body("a", seed_tracks=["x", "y", "v"], exclude=["z", "w"]), limits, 100)
    with pytest.raises(RequestError, match="5 track ids") as err:
        make_job(_body(["a", "b"], seed_tracks=[["x", "y", "v"], ["u", "t"]]), limits, 100)
    assert err.value.status == 413


def test_the_service_decodes_with_the_plain_micro_batcher():
    pytest.importorskip("fastapi")
    from text2tracks.batching import MicroBatcher
    from text2tracks.serve import create_app

    class Recorder:
        has_diffusion = False

        def __len__(self):
            return 10

    app = create_app(Recorder())
    assert type(app.state.batcher) is MicroBatcher


def test_the_batcher_passes_each_prompts_seeds_to_recommend():
    import asyncio

    from text2tracks.batching import MicroBatcher

    calls = []

    class Recorder:
        def recommend(self, prompts, **options):
            calls.append((list(prompts), options["seed_tracks"], options["exclude"]))
            return [[p] for p in prompts]

    limits = ServeLimits(max_wait_ms=100)
    jobs = [
        make_job(_body(["a", ""], seed_tracks=[None, ["x"]]), limits, 100),
        make_job(_body("b"), limits, 100),
        make_job(_body("", seed_tracks=["y", "z"]), limits, 100),
    ]

    async def go():
        batcher = MicroBatcher(Recorder(), limits)
        try:
            return await asyncio.gather(*(batcher.submit(job) for job in jobs))
        finally:
            await batcher.close()

    answers = asyncio.run(go())
    assert answers == [[["a"], [""]], ["b"], [""]]
    assert calls == [(["a", "", "b", ""], [None, ["x"], None, ["y", "z"]], None)]


# ------------------------------------------------------------------ empty prompts


def _prepare(prompts, **options):
    return prepare_call(
        prompts,
        2,
        10,
        lambda track_id: None,
        check_mode=lambda mode: None,
        mode="generative",
        batch_size=8,
        exclude=None,
        edit_strength=0.5,
        seed=0,
        latent_defaults=dict,
        options=dict.fromkeys(
            ("negative_prompt", "like_tracks", "source_prompt", "guidance_weight", "n_samples")
        ),
        stacklevel=1,
        **options,
    )


def test_prepare_call_refuses_empty_prompts_unless_allowed():
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        _prepare(["jazz", "  "])
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        _prepare(["jazz", "  "], allow_empty=[True, False])
    assert _prepare(["jazz", "  "], allow_empty=[False, True]).texts == ["jazz", ""]
    assert _prepare("", allow_empty=True).texts == [""]
    assert normalise_prompts(["  Jazz ", ""], allow_empty=True) == ["jazz", ""]
    with pytest.raises(ValueError, match="one bool per prompt"):
        _prepare(["jazz", ""], allow_empty=[True])
    with pytest.raises(TypeError, match="allow_empty"):
        _prepare(["jazz"], allow_empty="yes")
    with pytest.raises(TypeError, match="prompt 0 must be a str"):
        _prepare([None], allow_empty=True)


# ------------------------------------------------------------------ the artifact's seed settings


def _tiny_recommender(max_seed_tracks: int):
    import torch

    from semantic_ids.catalog import SemanticIDCatalog
    from text2tracks import Text2Tracks
    from text2tracks.modeling import ModelConfig, build_seq2seq

    ids = [f"t{i}" for i in range(8)]
    codes = np.array([[i // 4, i % 4] for i in range(8)], np.int64)
    catalog = SemanticIDCatalog(ids, codes, (2, 4))
    config = ModelConfig(
        encoder="t5",
        d_model=16,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        d_ff=32,
        max_prompt_length=8,
        tokenizer="bytes",
    )
    torch.manual_seed(0)
    model, tokenizer, layout = build_seq2seq(config, catalog.level_sizes)
    return Text2Tracks(
        model,
        tokenizer,
        layout,
        catalog,
        max_seed_tracks=max_seed_tracks,
        model_config=config.to_dict(),
    )


def test_write_artifact_writes_seed_settings_before_the_rename(tmp_path, monkeypatch):
    from text2tracks import storage
    from text2tracks.artifacts import new_artifact
    from text2tracks.seed_prompts import read_max_seed_tracks

    seen = []

    @contextmanager
    def watched(path, force=False):
        with new_artifact(path, force=force) as tmp:
            yield tmp
            seen.append(read_max_seed_tracks(tmp / "seq2seq"))  # what is renamed into place

    monkeypatch.setattr(storage, "new_artifact", watched)
    rec = _tiny_recommender(max_seed_tracks=3)
    target = tmp_path / "artifact"
    storage.write_artifact(
        target,
        source=None,
        components={},
        catalog=rec.catalog,
        names=[None] * len(rec),
        artists=[None] * len(rec),
        model=rec.model,
        tokenizer=rec.tokenizer,
        layout=rec.layout,
        model_config=rec.model_config,
        diffusion=None,
        max_seed_tracks=5,
    )
    assert seen == [5]
    assert read_max_seed_tracks(target / "seq2seq") == 5
    with pytest.raises(ValueError, match="max_seed_tracks"):
        storage.write_artifact(
            tmp_path / "other",
            source=None,
            components={},
            catalog=rec.catalog,
            names=[None] * len(rec),
            artists=[None] * len(rec),
            model=rec.model,
            tokenizer=rec.tokenizer,
            layout=rec.layout,
            model_config=rec.model_config,
            diffusion=None,
            max_seed_tracks=-1,
        )
    assert not (tmp_path / "other").exists()
