"""The Text2Tracks API on a tiny artifact: demo data -> build-ids -> a tiny random T5.

The model is untrained (its answers mean nothing); these tests check the contract: answer
shapes, k distinct catalogue tracks, exclusion inside decoding, determinism, thread safety,
save -> load, every documented bad input, and damaged artifacts.
"""

from __future__ import annotations

import json
import shutil
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from tiny_artifact import build_tiny_artifact

from text2tracks.artifacts import MANIFEST_NAME, ArtifactError
from text2tracks.pipeline import Recommendation, Text2Tracks

PROMPTS = [
    "chill 90s jazz",
    "sad songs",
    "workout hip hop",
    "oldies for slow dancing",
    "happy country 🤠",
    "night drive",
    "Relaxing Folk",
    "rock n roll 70s",
]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    return build_tiny_artifact(tmp_path_factory.mktemp("pipeline"))


@pytest.fixture(scope="module")
def recommender(artifact) -> Text2Tracks:
    return Text2Tracks.from_pretrained(artifact, device="cpu")


def _ids(recs: list[Recommendation]) -> list[str]:
    return [r.track_id for r in recs]


def _copy(artifact: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(artifact, target)
    return target


# ------------------------------------------------------------------------------ answers


def test_one_prompt_gives_a_list_and_a_list_gives_a_list_of_lists(recommender):
    single = recommender.recommend("chill 90s jazz", k=5)
    assert isinstance(single, list) and all(isinstance(r, Recommendation) for r in single)
    batch = recommender.recommend(["chill 90s jazz", "sad songs"], k=5)
    assert len(batch) == 2 and all(isinstance(b, list) and len(b) == 5 for b in batch)
    assert recommender.recommend(["chill 90s jazz"], k=5)[0] == single
    assert recommender.recommend([], k=5) == []
    assert recommender.recommend(("chill 90s jazz",), k=5) == [single]


@pytest.mark.parametrize("k", [1, 10, 25])
def test_k_distinct_catalogue_tracks_ranked_with_metadata(recommender, artifact, k):
    tracks = {
        t["id"]: t
        for t in json.loads((artifact / "semantic_ids" / "tracks.json").read_text(encoding="utf-8"))
    }
    for recs in recommender.recommend(PROMPTS, k=k):
        assert len(recs) == k
        assert len(set(_ids(recs))) == k
        assert [r.rank for r in recs] == list(range(1, k + 1))
        scores = [r.score for r in recs]
        assert scores == sorted(scores, reverse=True)
        for r in recs:
            assert r.track_id in tracks
            assert (r.name, r.artist) == (tracks[r.track_id]["name"], tracks[r.track_id]["artist"])
            assert isinstance(r.score, float) and np.isfinite(r.score)


def test_recommendations_are_frozen(recommender):
    rec = recommender.recommend("sad songs", k=1)[0]
    with pytest.raises(AttributeError):
        rec.score = 0.0


def test_exclude_is_honoured_and_k_answers_still_come_back(recommender):
    first = recommender.recommend("chill 90s jazz", k=10)
    banned = _ids(first[:5])
    again = recommender.recommend("chill 90s jazz", k=10, exclude=banned)
    assert len(again) == 10 and len(set(_ids(again))) == 10
    assert not set(banned) & set(_ids(again))


def test_exclude_per_prompt_and_shared(recommender):
    prompts = ["sad songs", "workout hip hop"]
    base = recommender.recommend(prompts, k=5)
    per_prompt = recommender.recommend(prompts, k=5, exclude=[_ids(base[0])[:2], None])
    assert not set(_ids(base[0])[:2]) & set(_ids(per_prompt[0]))
    assert per_prompt[1] == base[1]
    shared = recommender.recommend(prompts, k=5, exclude=_ids(base[0])[:1])
    assert all(_ids(base[0])[0] not in _ids(recs) for recs in shared)
    with pytest.raises(ValueError, match="one per prompt"):
        recommender.recommend(prompts, k=5, exclude=[["x"], ["y"], ["z"]])


def test_unknown_excluded_ids_are_ignored_with_a_warning(recommender):
    base = recommender.recommend("sad songs", k=5)
    with pytest.warns(UserWarning, match=r"ignored 2 track id\(s\).*'nope:1'"):
        recs = recommender.recommend("sad songs", k=5, exclude=["nope:1", "nope:2"])
    assert recs == base


def test_deterministic_and_batch_matches_single(recommender):
    a = recommender.recommend(PROMPTS, k=10)
    b = recommender.recommend(PROMPTS, k=10)
    assert a == b
    singles = [recommender.recommend(p, k=10) for p in PROMPTS]
    for batch_recs, single_recs in zip(a, singles, strict=True):
        assert _ids(batch_recs) == _ids(single_recs)
        np.testing.assert_allclose(
            [r.score for r in batch_recs], [r.score for r in single_recs], rtol=0, atol=1e-4
        )


def test_batch_size_does_not_change_answers(recommender):
    assert recommender.recommend(PROMPTS, k=5, batch_size=3) == [
        *recommender.recommend(PROMPTS[:3], k=5),
        *recommender.recommend(PROMPTS[3:6], k=5),
        *recommender.recommend(PROMPTS[6:], k=5),
    ]


def test_threads_give_the_same_answers_as_serial_calls(recommender):
    prompts = PROMPTS * 3
    serial = [recommender.recommend(p, k=10) for p in prompts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda p: recommender.recommend(p, k=10), prompts))
    assert threaded == serial
    excludes = [list(recommender.catalog.item_ids[i : i + 3]) for i in (0, 3, 6)]
    serial_batches = [recommender.recommend(PROMPTS, k=5, exclude=e) for e in excludes]
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded_batches = list(
            pool.map(lambda e: recommender.recommend(PROMPTS, k=5, exclude=e), excludes)
        )
    assert threaded_batches == serial_batches


def test_prompt_normalised_as_in_training(recommender):
    assert recommender.recommend("  CHILL   90s\tJazz ", k=5) == recommender.recommend(
        "chill 90s jazz", k=5
    )


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("bad", ["", "   ", "\t\n"])
def test_empty_prompt_raises_naming_its_index(recommender, bad):
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        recommender.recommend(bad)
    with pytest.raises(ValueError, match="prompt 2 is empty"):
        recommender.recommend(["sad songs", "jazz", bad])


def test_non_string_prompt_raises(recommender):
    with pytest.raises(TypeError, match="prompt 1 must be a str"):
        recommender.recommend(["sad songs", 3])
    with pytest.raises(TypeError):
        recommender.recommend(42)


def test_long_prompt_is_truncated_with_a_warning(recommender):
    long_prompt = "chill jazz " * 20
    limit = recommender.max_prompt_length
    with pytest.warns(
        UserWarning, match=rf"prompt 0 has \d+ tokens, more than the model takes \({limit}\)"
    ):
        recs = recommender.recommend(long_prompt, k=5)
    # byte-level tokenizer: the model sees the first limit - 1 bytes and EOS
    short = long_prompt.strip()[: limit - 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert recs == recommender.recommend(short, k=5)


@pytest.mark.parametrize("k", [0, -3])
def test_k_below_one_raises_with_the_limits(recommender, k):
    with pytest.raises(
        ValueError, match=rf"between 1 and the catalogue size \({len(recommender)} tracks\)"
    ):
        recommender.recommend("sad songs", k=k)


def test_k_above_catalogue_raises_with_the_limits(recommender):
    with pytest.raises(
        ValueError, match=rf"\({len(recommender)} tracks\), got {len(recommender) + 1}"
    ):
        recommender.recommend("sad songs", k=len(recommender) + 1)
    with pytest.raises(TypeError, match="k must be an integer"):
        recommender.recommend("sad songs", k=2.5)


def test_k_larger_than_what_exclude_leaves_raises(recommender):
    everything_but_3 = list(recommender.catalog.item_ids[3:])
    with pytest.raises(ValueError, match="only 3 tracks are left"):
        recommender.recommend("sad songs", k=5, exclude=everything_but_3)
    recs = recommender.recommend("sad songs", k=3, exclude=everything_but_3)
    assert set(_ids(recs)) == set(recommender.catalog.item_ids[:3])


def test_bad_batch_size_and_mode(recommender):
    with pytest.raises(ValueError, match="batch_size"):
        recommender.recommend("sad songs", batch_size=0)
    with pytest.raises(ValueError, match="mode must be one of"):
        recommender.recommend("sad songs", mode="magic")


@pytest.mark.parametrize("mode", ["latent", "hybrid"])
def test_latent_modes_need_a_diffusion_component(recommender, mode):
    with pytest.raises(ValueError, match="no 'diffusion/' component"):
        recommender.recommend("sad songs", mode=mode)


# ------------------------------------------------------------------------------ artifact


def test_save_then_load_gives_the_same_answers(recommender, artifact, tmp_path):
    saved = recommender.save_pretrained(tmp_path / "saved")
    manifest = json.loads((saved / MANIFEST_NAME).read_text())
    assert {"cf", "semantic_ids", "seq2seq"} <= set(manifest["components"])
    assert "torch" in manifest["library_versions"]
    assert (saved / "cf" / "item_factors.npy").is_file()  # components not in memory are kept
    loaded = Text2Tracks.from_pretrained(saved, device="cpu")
    assert loaded.recommend(PROMPTS, k=10) == recommender.recommend(PROMPTS, k=10)
    # saving over the folder it was loaded from works too
    loaded.save_pretrained(saved)
    assert Text2Tracks.from_pretrained(saved).recommend("sad songs", k=3) == recommender.recommend(
        "sad songs", k=3
    )


def test_newer_format_version_is_refused(artifact, tmp_path):
    copy = _copy(artifact, tmp_path)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    manifest["format_version"] = 99
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"format version 99, newer"):
        Text2Tracks.from_pretrained(copy)


def test_missing_manifest_or_folder(artifact, tmp_path):
    with pytest.raises(ArtifactError, match="no artifact folder"):
        Text2Tracks.from_pretrained(tmp_path / "nowhere")
    copy = _copy(artifact, tmp_path)
    (copy / MANIFEST_NAME).unlink()
    with pytest.raises(ArtifactError, match=f"missing manifest: .*{MANIFEST_NAME}"):
        Text2Tracks.from_pretrained(copy)


def test_missing_component_folder_is_named(artifact, tmp_path):
    copy = _copy(artifact, tmp_path)
    shutil.rmtree(copy / "seq2seq")
    with pytest.raises(ArtifactError, match="seq2seq.* is missing"):
        Text2Tracks.from_pretrained(copy)


def test_component_not_in_manifest(artifact, tmp_path):
    copy = _copy(artifact, tmp_path)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    del manifest["components"]["seq2seq"]
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="no 'seq2seq' component; train the model first"):
        Text2Tracks.from_pretrained(copy)


@pytest.mark.parametrize(
    "relative",
    [
        "seq2seq/model.safetensors",
        "seq2seq/config.json",
        "seq2seq/sid_layout.json",
        "semantic_ids/catalog/sid_codes.npy",
        "semantic_ids/catalog/item_ids.json",
    ],
)
def test_missing_file_is_named(artifact, tmp_path, relative):
    copy = _copy(artifact, tmp_path)
    (copy / relative).unlink()
    with pytest.raises(ArtifactError, match=Path(relative).name.replace(".", r"\.")):
        Text2Tracks.from_pretrained(copy)


@pytest.mark.parametrize(
    "relative", ["seq2seq/model.safetensors", "semantic_ids/catalog/sid_codes.npy"]
)
def test_truncated_file_is_named(artifact, tmp_path, relative):
    copy = _copy(artifact, tmp_path)
    path = copy / relative
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(
        ArtifactError, match=rf"damaged .*{Path(relative).name.replace('.', '[.]')}"
    ):
        Text2Tracks.from_pretrained(copy)


@pytest.mark.parametrize(
    "relative",
    ["seq2seq/config.json", "semantic_ids/catalog/config.json", "semantic_ids/tracks.json"],
)
def test_garbled_json_is_named(artifact, tmp_path, relative):
    copy = _copy(artifact, tmp_path)
    (copy / relative).write_text('{"oops": ', encoding="utf-8")
    with pytest.raises(ArtifactError, match=rf"damaged file .*{relative.replace('.', '[.]')}"):
        Text2Tracks.from_pretrained(copy)


def test_catalogue_that_does_not_match_the_model(artifact, tmp_path):
    copy = _copy(artifact, tmp_path)
    config_path = copy / "seq2seq" / "sid_layout.json"
    layout = json.loads(config_path.read_text())
    layout["level_sizes"][0] += 1
    config_path.write_text(json.dumps(layout))
    with pytest.raises(ArtifactError):
        Text2Tracks.from_pretrained(copy)


def test_model_and_catalogue_of_different_token_schemes_are_refused(recommender):
    from semantic_ids.catalog import SemanticIDCatalog
    from text2tracks.tokens import SIDTokenLayout

    # one byte level and a collision digit: level sizes a plain SID layout can have too
    items = list(recommender.catalog.item_ids)[:200]
    codes = np.stack([np.arange(len(items)), np.zeros(len(items), dtype=np.int64)], axis=1)
    content = SemanticIDCatalog(items, codes, (257, 1), scheme="bytes")
    sid_layout = SIDTokenLayout(
        (257, 1), (recommender.layout.first_id, recommender.layout.first_id + 257)
    )
    with pytest.raises(ValueError, match="'sid' tokens but the catalogue holds 'bytes'"):
        Text2Tracks(recommender.model, recommender.tokenizer, sid_layout, content)
