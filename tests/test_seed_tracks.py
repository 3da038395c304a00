"""Prompts with seed tracks: the training draw, the one encoding (title tokens, then each seed's
ID tokens), the API's decisions, and a tiny model that learns to continue from its seeds.

Synthetic catalogue whose right answer is known: 4 groups of 8 tracks, the first ID code is the
group; every playlist holds tracks of one group and every title is the same word, so only the
seeds can tell the group.
"""

import hashlib
import warnings

import numpy as np
import pytest
import torch

from semantic_ids.catalog import SemanticIDCatalog
from text2tracks.data import (
    PromptBatches,
    Seq2SeqCollator,
    Seq2SeqPairs,
    encode_prompts,
    seeded_prompt_ids,
)
from text2tracks.seed_draw import SeedDraw, draw_seeds

N_GROUPS, PER_GROUP = 4, 8
TITLE = "mix"


def _catalog() -> SemanticIDCatalog:
    ids = [f"g{g}:t{i}" for g in range(N_GROUPS) for i in range(PER_GROUP)]
    codes = np.array([[g, i, 0] for g in range(N_GROUPS) for i in range(PER_GROUP)], np.int64)
    return SemanticIDCatalog(ids, codes, (N_GROUPS, PER_GROUP, 1))


def _group(item: int) -> int:
    return item // PER_GROUP


def _model_config():
    from text2tracks.modeling import ModelConfig

    return ModelConfig(
        encoder="t5",
        d_model=32,
        num_layers=1,
        num_decoder_layers=1,
        num_heads=2,
        d_ff=64,
        max_prompt_length=16,
        tokenizer="bytes",
    )


def _model_parts(seed: int = 0):
    from text2tracks.modeling import build_seq2seq

    torch.manual_seed(seed)
    return build_seq2seq(_model_config(), _catalog().level_sizes)


def _recommender(max_seed_tracks: int = 4, model_parts=None):
    from text2tracks import Text2Tracks

    model, tokenizer, layout = model_parts or _model_parts()
    return Text2Tracks(
        model,
        tokenizer,
        layout,
        _catalog(),
        max_seed_tracks=max_seed_tracks,
        num_beams=8,
        model_config=_model_config().to_dict(),
    )


# ------------------------------------------------------------------ the default is unchanged

# sha256 of the examples and collated batches of four option sets over three epochs, computed
# with the code before seed tracks existed (commit c4d383c): the default must stay bit-identical
DEFAULT_DIGEST = "f0c5c0bb18375bb65d92ffd9427e86d6d8f64837d36f7fbeb2dcf8f448c940c5"


def _digest_fixture():
    rng = np.random.default_rng(5)
    n_items, depth = 40, 3
    sid = (rng.integers(0, 8, (n_items, depth)) + 10 + np.arange(depth) * 8).astype(np.int64)
    prompts = [np.r_[rng.integers(3, 9, rng.integers(1, 6)), 1].astype(np.int64) for _ in range(30)]
    relevant = [rng.choice(n_items, rng.integers(0, 12), replace=False).tolist() for _ in range(30)]
    weights = [rng.random(len(r)) + 0.01 for r in relevant]
    counts = rng.integers(1, 50, n_items)
    return prompts, relevant, sid, weights, counts


def test_default_examples_are_bit_identical_to_before_seeds():
    prompts, relevant, sid, weights, counts = _digest_fixture()
    digest = hashlib.sha256()
    configs = [
        dict(targets_per_playlist=0),
        dict(targets_per_playlist=4, popularity_power=0.5, item_counts=counts),
        dict(
            targets_per_playlist=3,
            target_weights=weights,
            group_size=4,
            bucket_batches=2,
            batch_size=5,
        ),
        dict(targets_per_playlist=5, group_size=3),
    ]
    for options in configs:
        pairs = Seq2SeqPairs(prompts, relevant, sid, 1, seed=3, **options)
        collate = Seq2SeqCollator(
            prompts, sid, 0, 1, share_prompts=options.get("group_size", 1) > 1
        )
        for epoch in range(3):
            pairs.set_epoch(epoch)
            batch = [pairs[i] for i in range(len(pairs))]
            digest.update(np.asarray(batch, dtype=np.int64).tobytes())
            out = collate(batch[:7])
            for key in sorted(out):
                digest.update(key.encode())
                digest.update(out[key].numpy().tobytes())
    assert digest.hexdigest() == DEFAULT_DIGEST


def test_train_config_default_draws_no_seeds():
    from text2tracks.modeling import ModelConfig
    from training.seq2seq_config import TrainConfig

    config = TrainConfig(artifact="a", playlists="p")
    assert config.seed_prob == 0 and config.seed_draw() is None
    t5 = ModelConfig(encoder="t5")  # trainable: seeds need their ID tokens' encoder embeddings
    assert TrainConfig(artifact="a", playlists="p", seed_prob=0.5, model=t5).seed_draw().prob == 0.5
    with pytest.raises(ValueError, match="seed_prob"):
        TrainConfig(artifact="a", playlists="p", seed_prob=1.5, model=t5)
    with pytest.raises(ValueError, match="max_seed_tracks"):
        TrainConfig(artifact="a", playlists="p", seed_prob=0.5, max_seed_tracks=0, model=t5)
    frozen = ModelConfig(freeze_encoder=True)
    with pytest.raises(ValueError, match="trainable encoder"):
        TrainConfig(artifact="a", playlists="p", seed_prob=0.5, model=frozen)


# ------------------------------------------------------------------ the encoding


def test_seeded_prompt_ids_title_then_the_most_recent_seed_ids():
    sid = np.array([[10, 20, 30], [11, 21, 31], [12, 22, 32]], np.int64)
    title = np.array([5, 6, 1])
    assert seeded_prompt_ids(title, [2, 0], sid, 5).tolist() == [5, 6, 1, 12, 22, 32, 10, 20, 30]
    assert seeded_prompt_ids(title, [2, 0, 1], sid, 2).tolist() == [5, 6, 1, 10, 20, 30, 11, 21, 31]
    assert seeded_prompt_ids(title, [2, 0], sid, 0).tolist() == [5, 6, 1]
    assert seeded_prompt_ids(title, None, sid, 3).tolist() == [5, 6, 1]


def test_api_and_training_encode_a_seeded_prompt_alike():
    from text2tracks.seed_prompts import seeded_batch

    model, tokenizer, layout = _model_parts()
    sid = layout.codes_to_token_ids(_catalog().sid_codes)
    seeds = np.array([3, 9, 17])
    titles = encode_prompts(tokenizer, [TITLE], 16)
    blank = encode_prompts(tokenizer, [""], 16)[0]
    collate = Seq2SeqCollator(
        titles, sid, tokenizer.pad_token_id, 1, blank_prompt_ids=blank, max_seed_tracks=2
    )
    for text, with_title in ((TITLE, True), ("", False)):
        trained = collate([(0, 0, seeds, with_title)])
        with pytest.warns(UserWarning, match="1 oldest were truncated"):
            api_ids, api_mask = seeded_batch(
                tokenizer,
                [text],
                [seeds],
                sid,
                max_length=16,
                max_seeds=2,
                first_index=0,
                stacklevel=1,
            )
        assert torch.equal(trained["input_ids"], api_ids)
        assert torch.equal(trained["attention_mask"], api_mask)


# ------------------------------------------------------------------ the training draw


def _playlists(n: int = 60, seed: int = 0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, N_GROUPS, n)
    lengths = rng.integers(1, PER_GROUP + 1, n)
    return [
        (g * PER_GROUP + rng.permutation(PER_GROUP)[:length]).tolist()
        for g, length in zip(groups, lengths, strict=True)
    ]


def test_seed_draw_prefix_or_ordered_subset_and_other_tracks_as_targets():
    own = _playlists()
    sid = _catalog().sid_codes + 10
    draw = SeedDraw(prob=0.7, max_seeds=5, title_drop=0.5, random_subset=0.5)
    prompts = [np.array([7, 1])] * len(own)
    pairs = Seq2SeqPairs(
        prompts, own, sid, 1, targets_per_playlist=2, seeds=draw, blank_prompt_ids=np.array([1])
    )
    seen_prefix = seen_subset = seen_untitled = 0
    for epoch in range(4):
        pairs.set_epoch(epoch)
        seeds = pairs.epoch_seeds
        for p, tracks in enumerate(own):
            chosen = pairs.seeds_of(p).tolist()
            if not seeds.has_seeds[p]:
                assert chosen == [] and seeds.with_title[p]
                continue
            assert 1 <= len(chosen) <= min(5, len(tracks) - 1)
            positions = [tracks.index(t) for t in chosen]
            assert positions == sorted(positions)  # playlist order kept
            seen_prefix += positions == list(range(len(chosen)))
            seen_subset += positions != list(range(len(chosen)))
            seen_untitled += not seeds.with_title[p]
        for i in range(len(pairs)):
            playlist, item, chosen, _ = pairs[i]
            assert item in own[playlist] and item not in chosen.tolist()
    assert seen_prefix and seen_subset and seen_untitled
    assert not np.any(seeds.has_seeds[[len(t) < 2 for t in own]])


def _targets_by_playlist(pairs, own) -> dict[int, list[int]]:
    targets: dict[int, list[int]] = {}
    for i in range(len(pairs)):
        playlist, item, _, _ = pairs[i]
        targets.setdefault(playlist, []).append(own[playlist].index(item))
    return {p: sorted(t) for p, t in targets.items()}


@pytest.mark.parametrize("window", [1, 3])
def test_seed_draw_next_window_targets_follow_a_prefix(window):
    """With next_window, a prefix's targets are the tracks right after it (TIGER's next item
    for 1); a random subset's are any other track."""
    own = _playlists()
    sid = _catalog().sid_codes + 10
    prompts = [np.array([7, 1])] * len(own)
    far = 0
    for subset in (0.0, 1.0):
        draw = SeedDraw(prob=1.0, max_seeds=5, random_subset=subset, next_window=window)
        pairs = Seq2SeqPairs(
            prompts, own, sid, 1, targets_per_playlist=0, seeds=draw, blank_prompt_ids=np.array([1])
        )
        for epoch in range(3):
            pairs.set_epoch(epoch)
            targets = _targets_by_playlist(pairs, own)
            for p, tracks in enumerate(own):
                positions = [tracks.index(t) for t in pairs.seeds_of(p).tolist()]
                if not positions:  # too short for seeds: the usual targets
                    assert targets[p] == list(range(len(tracks)))
                elif subset == 0.0:  # a prefix: exactly the next `window` tracks
                    n = len(positions)
                    assert positions == list(range(n))
                    assert targets[p] == list(range(n, min(n + window, len(tracks))))
                else:  # a random subset: every other track
                    assert targets[p] == sorted(set(range(len(tracks))) - set(positions))
                    far += targets[p][-1] >= len(positions) + window
    assert far  # some subset targets lie beyond the window a prefix would allow
    with pytest.raises(ValueError, match="next_window"):
        SeedDraw(prob=0.5, next_window=-1)


def test_seed_draw_is_deterministic_and_teacher_playlists_use_own_tracks():
    own = _playlists()
    teacher = [[0, 1, 2]] * len(own)  # a teacher list unrelated to the playlists
    sid = _catalog().sid_codes + 10
    kwargs = dict(
        targets_per_playlist=2,
        target_weights=[[1.0, 1.0, 1.0]] * len(own),
        seeds=SeedDraw(prob=0.5, max_seeds=3),
        own_tracks=own,
        blank_prompt_ids=np.array([1]),
        seed=4,
        group_size=2,
        bucket_batches=2,
        batch_size=4,
    )
    prompts = [np.array([7, 1])] * len(own)
    a = Seq2SeqPairs(prompts, teacher, sid, 1, **kwargs)
    b = Seq2SeqPairs(prompts, teacher, sid, 1, **kwargs)
    b.set_epoch(1)
    b.set_epoch(0)
    items_a = [(p, i, s.tolist(), t) for p, i, s, t in (a[j] for j in range(len(a)))]
    items_b = [(p, i, s.tolist(), t) for p, i, s, t in (b[j] for j in range(len(b)))]
    assert items_a == items_b
    for playlist, item, chosen, _ in items_a:
        if chosen:
            assert item in own[playlist] and item not in chosen
        else:
            assert item in teacher[playlist]


def test_seed_draw_checks_its_options():
    with pytest.raises(ValueError, match="prob"):
        SeedDraw(prob=-0.1)
    with pytest.raises(ValueError, match="title_drop"):
        SeedDraw(prob=0.5, title_drop=2)
    with pytest.raises(ValueError, match="blank_prompt_ids"):
        Seq2SeqPairs([np.array([1])], [[0, 1]], np.zeros((2, 2), np.int64), 1, seeds=SeedDraw(1))
    indptr, items = np.array([0, 3, 3, 5]), np.array([0, 1, 2, 3, 4])
    draw = draw_seeds(indptr, items, SeedDraw(1.0, max_seeds=2), np.random.default_rng(0))
    assert draw.n_seeds().tolist() == [len(draw.seeds_of(p)) for p in range(3)]


def test_collator_shares_equal_seeded_prompts_only():
    sid = np.array([[10, 20], [11, 21], [12, 22]], np.int64)
    prompts = [np.array([5, 1]), np.array([5, 1])]
    collate = Seq2SeqCollator(
        prompts, sid, 0, 1, share_prompts=True, blank_prompt_ids=np.array([1]), max_seed_tracks=3
    )
    batch = [
        (0, 2, np.array([0]), True),
        (0, 1, np.array([0]), True),
        (1, 2, np.array([0]), True),  # same title and seeds: the same prompt row
        (1, 0, np.array([1]), False),
    ]
    out = collate(batch)
    assert out["prompt_index"].tolist() == [0, 0, 0, 1]
    assert out["input_ids"].tolist() == [[5, 1, 10, 20], [1, 11, 21, 0]]


def test_validation_prompt_batches_carry_the_pairs_seeds():
    own = _playlists(20)
    sid = _catalog().sid_codes + 10
    pairs = Seq2SeqPairs(
        [np.array([7, 1])] * len(own),
        own,
        sid,
        1,
        targets_per_playlist=1,
        shuffle=False,
        seeds=SeedDraw(prob=1.0, max_seeds=3),
        blank_prompt_ids=np.array([1]),
    )
    batches = PromptBatches(len(own), pairs)
    for p in range(len(own)):
        assert batches[p][2].tolist() == pairs.seeds_of(p).tolist()
    assert PromptBatches(3)[1] == (1, 0)


# ------------------------------------------------------------------ the API's decisions


def test_seeds_are_never_recommended_back():
    rec = _recommender(max_seed_tracks=8)
    seeds = [f"g0:t{i}" for i in range(6)]
    for answer in (
        rec.recommend(TITLE, k=20, seed_tracks=seeds, diversity=0),
        rec.recommend("", k=20, seed_tracks=seeds),
    ):
        assert len(answer) == 20
        assert not {r.track_id for r in answer} & set(seeds)
    ids, _ = rec.recommend_arrays([TITLE, TITLE], k=26, seed_tracks=[seeds, None])
    assert not set(ids[0]) & set(seeds) and len(set(ids[1])) == 26
    with pytest.raises(ValueError, match="left"):
        rec.recommend(TITLE, k=30, seed_tracks=seeds)


def test_unknown_seeds_warn_and_are_ignored():
    rec = _recommender()
    with pytest.warns(UserWarning, match="not-a-track"):
        with_unknown = rec.recommend(TITLE, k=3, seed_tracks=["g1:t0", "not-a-track"])
    assert with_unknown == rec.recommend(TITLE, k=3, seed_tracks=["g1:t0"])


def test_a_prompt_needs_text_or_a_known_seed():
    rec = _recommender()
    with pytest.raises(ValueError, match="prompt 0 is empty .* no seed track"):
        rec.recommend("  ", k=3)
    with pytest.warns(UserWarning, match="nope"):
        with pytest.raises(ValueError, match="prompt 1 is empty"):
            rec.recommend([TITLE, ""], k=3, seed_tracks=[None, ["nope"]])
    assert len(rec.recommend("", k=3, seed_tracks=["g2:t1"])) == 3


def test_batch_equals_single_with_seeds():
    rec = _recommender()
    seeds = [["g0:t1", "g0:t2"], None, ["g3:t4"]]
    prompts = [TITLE, "other", ""]
    batch = rec.recommend(prompts, k=4, seed_tracks=seeds)
    for prompt, seed_tracks, answer in zip(prompts, seeds, batch, strict=True):
        single = rec.recommend(prompt, k=4, seed_tracks=seed_tracks)
        assert [r.track_id for r in single] == [r.track_id for r in answer]
        np.testing.assert_allclose([r.score for r in single], [r.score for r in answer], rtol=1e-5)


def test_only_the_most_recent_seeds_are_read():
    rec = _recommender(max_seed_tracks=2)
    old, recent = ["g0:t1", "g1:t1", "g2:t1"], ["g3:t1", "g3:t2"]
    with pytest.warns(UserWarning, match="3 oldest were truncated"):
        cut = rec.recommend_arrays(TITLE, k=5, seed_tracks=old + recent)
    plain = rec.recommend_arrays(TITLE, k=5, seed_tracks=recent, exclude=old)
    assert cut[0].tolist() == plain[0].tolist()
    np.testing.assert_allclose(cut[1], plain[1], rtol=1e-5)


def test_a_model_trained_without_seeds_only_excludes_them(tmp_path):
    rec = _recommender(max_seed_tracks=0)
    with pytest.warns(UserWarning, match="trained without seed tracks"):
        answer = rec.recommend(TITLE, k=5, seed_tracks=["g0:t0"])
    assert answer == rec.recommend(TITLE, k=5, exclude=["g0:t0"])
    with pytest.raises(ValueError, match="cannot read them"):
        rec.recommend("", k=5, seed_tracks=["g0:t0"])
    with pytest.raises(ValueError, match="max_seed_tracks"):
        rec.max_seed_tracks = -1


def test_max_seed_tracks_survives_save_and_load(tmp_path):
    from text2tracks import Text2Tracks

    rec = _recommender(max_seed_tracks=3)
    rec.save_pretrained(tmp_path / "artifact")
    loaded = Text2Tracks.from_pretrained(tmp_path / "artifact", device="cpu")
    assert loaded.max_seed_tracks == 3
    seeds = ["g0:t1", "g2:t3"]
    loaded.num_beams = rec.num_beams
    assert loaded.recommend("", k=4, seed_tracks=seeds) == rec.recommend("", k=4, seed_tracks=seeds)


def test_max_seed_tracks_from_the_training_config(tmp_path):
    import json

    from text2tracks.seed_prompts import read_max_seed_tracks

    (tmp_path / "train_config.json").write_text(
        json.dumps({"config": {"seed_prob": 0.0, "max_seed_tracks": 50}})
    )
    assert read_max_seed_tracks(tmp_path) == 0
    (tmp_path / "train_config.json").write_text(
        json.dumps({"config": {"seed_prob": 0.5, "max_seed_tracks": 50}})
    )
    assert read_max_seed_tracks(tmp_path) == 50


# ------------------------------------------------------------------ a tiny model learns seeds


@pytest.mark.parametrize("encoding", ["codes", "item"])
def test_a_tiny_model_continues_from_its_seeds(encoding):
    """Titles say nothing, seeds say the group: after a few hundred steps the answers to a
    prompt of seeds are tracks of the seeds' group (chance: 1 in 4), never the seeds; with the
    seeds read as their ID tokens and as one token each."""
    from text2tracks.seed_embedding import attach_seed_items

    model, tokenizer, layout = _model_parts(seed=1)
    catalog = _catalog()
    sid = layout.codes_to_token_ids(catalog.sid_codes)
    seed_ids = attach_seed_items(model, sid, encoding)
    assert seed_ids.shape == ((len(catalog), 1) if encoding == "item" else sid.shape)
    own = _playlists(400, seed=2)
    titles = encode_prompts(tokenizer, [TITLE] * len(own), 16)
    blank = encode_prompts(tokenizer, [""], 16)[0]
    draw = SeedDraw(prob=1.0, max_seeds=4, title_drop=0.5, random_subset=0.5)
    pairs = Seq2SeqPairs(
        titles,
        own,
        sid,
        1,
        targets_per_playlist=3,
        seeds=draw,
        blank_prompt_ids=blank,
        seed_width=seed_ids.shape[1],
    )
    collate = Seq2SeqCollator(
        titles,
        sid,
        tokenizer.pad_token_id,
        1,
        blank_prompt_ids=blank,
        max_seed_tracks=4,
        seed_token_ids=seed_ids,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    torch.set_num_threads(1)
    for epoch in range(12):
        pairs.set_epoch(epoch)
        order = np.arange(len(pairs))
        for start in range(0, len(order), 64):
            batch = collate([pairs[i] for i in order[start : start + 64]])
            loss = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                labels=batch["labels"],
            ).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    rec = _recommender(max_seed_tracks=4, model_parts=(model, tokenizer, layout))
    prompts, seeds, groups = [], [], []
    for g in range(N_GROUPS):
        for text, chosen in ((TITLE, [0, 1]), ("", [2, 5, 6]), (TITLE, [7])):
            prompts.append(text)
            seeds.append([f"g{g}:t{i}" for i in chosen])
            groups.append(g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        answers = rec.recommend(prompts, k=3, seed_tracks=seeds, diversity=0)
    in_group = [
        int(r.track_id.split(":")[0][1:]) == g
        for a, g in zip(answers, groups, strict=True)
        for r in a
    ]
    assert np.mean(in_group) >= 0.9
    for answer, chosen in zip(answers, seeds, strict=True):
        assert not {r.track_id for r in answer} & set(chosen)


# ------------------------------------------------------------------ the real training entry point


def test_training_with_seeds_writes_a_model_that_reads_them(tmp_path):
    """``train`` with ``--seed-prob``: a few steps through the grouped forward and the seeded
    validation; the artifact then reads seeds (max_seed_tracks from train_config.json)."""
    from semantic_ids.cf import CFConfig
    from semantic_ids.demo import write_demo_jsonl
    from text2tracks import Text2Tracks
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids
    from text2tracks.seed_embedding import seed_encoding_of
    from training.train_seq2seq import build_parser, config_from_args, train

    playlists = write_demo_jsonl(tmp_path / "demo.jsonl", n_tracks=120, n_playlists=150, seed=0)
    build = BuildIDsConfig(
        n_levels=2, codebook_size=8, kmeans_iterations=5, cf=CFConfig(factors=8, iterations=3)
    )
    run_build_ids(playlists, tmp_path / "artifact", build, show_progress=False)
    flags = "--d-model 32 --num-layers 1 --num-decoder-layers 1 --num-heads 4 --d-ff 64 "
    flags += "--batch-size 16 --eval-prompts 16 --num-beams 10 --num-threads 1 --no-progress "
    flags += "--max-steps 3 --eval-every 0 --seed-prob 0.8 --max-seed-tracks 5 --encoder t5"
    args = build_parser().parse_args(
        ["--artifact", str(tmp_path / "artifact"), "--playlists", str(playlists), *flags.split()]
    )
    threads = torch.get_num_threads()
    try:
        summary = train(config_from_args(args))
    finally:
        torch.set_num_threads(threads)
    assert summary["steps"] == 3 and np.isfinite(summary["final_eval"]["val_loss"])
    recommender = Text2Tracks.from_pretrained(tmp_path / "artifact", device="cpu")
    assert recommender.max_seed_tracks == 5
    assert seed_encoding_of(recommender.model) == "item"  # the default: one token per seed
    seeds = list(recommender.catalog.item_ids[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        answer = recommender.recommend("", k=5, seed_tracks=seeds)
    assert len(answer) == 5 and not {r.track_id for r in answer} & set(seeds)


# ------------------------------------------------------------------ export


def _export(recommender, source, out, **kwargs):
    from text2tracks.commands.export import run_export

    return run_export(
        "in-memory",
        source,
        out,
        k=4,
        batch_size=2,
        progress=False,
        recommender=recommender,
        **kwargs,
    )


def _records(path):
    import json

    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_reads_seed_tracks_and_reports_bad_rows(tmp_path):
    import json

    rec = _recommender()
    rows = [
        {"id": "a", "prompt": TITLE, "seed_tracks": ["g0:t1", "g0:t2"]},
        {"id": "b", "seed_tracks": ["g1:t3"]},  # seeds alone
        {"id": "c", "prompt": TITLE, "seed_tracks": "g0:t1"},  # not a list: bad row
        {"id": "d", "prompt": "", "seed_tracks": ["not-a-track"]},  # nothing known: bad row
        {"id": "e", "prompt": TITLE},
        {"id": "f", "prompt": "", "seed_tracks": []},  # empty: bad row
    ]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.warns(UserWarning, match="not-a-track"):
        summary = _export(rec, source, tmp_path / "out.jsonl")
    records = {r["id"]: r for r in _records(tmp_path / "out.jsonl")}
    assert (summary.n_done, summary.n_failed) == (3, 3)
    assert "seed_tracks must be a list" in records["c"]["error"]
    assert "prompt" in records["d"]["error"] and "empty prompt" in records["f"]["error"]
    for row in rows[:2] + rows[4:5]:
        record = records[row["id"]]
        assert record["error"] is None and len(record["track_ids"]) == 4
        assert not set(record["track_ids"]) & set(row.get("seed_tracks", []))
        expected = rec.recommend(row.get("prompt", ""), k=4, seed_tracks=row.get("seed_tracks"))
        assert record["track_ids"] == [r.track_id for r in expected]


def test_export_csv_seed_tracks_column_and_resume(tmp_path):
    import csv

    from text2tracks.commands.export import existing_journals

    rec = _recommender()
    source = tmp_path / "in.csv"
    with open(source, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "prompt", "seed_tracks"])
        writer.writerows(
            [
                ["a", TITLE, "g0:t1 g0:t2"],
                ["b", "", "g2:t0"],
                ["c", TITLE, ""],
                ["d", "", ""],  # neither: bad row
                ["e", "", "g3:t1  g3:t2 g3:t3"],
            ]
        )
    reference = tmp_path / "reference.jsonl"
    _export(rec, source, reference)
    records = {r["id"]: r for r in _records(reference)}
    assert [records[i]["error"] is None for i in "abcde"] == [True, True, True, False, True]
    assert not {"g3:t1", "g3:t2", "g3:t3"} & set(records["e"]["track_ids"])
    seeded = rec.recommend("", k=4, seed_tracks=["g3:t1", "g3:t2", "g3:t3"])
    assert records["e"]["track_ids"] == [r.track_id for r in seeded]

    class Crash(Exception):
        pass

    def crash(n_batches):
        if n_batches == 1:
            raise Crash

    out = tmp_path / "out.jsonl"
    with pytest.raises(Crash):
        _export(rec, source, out, after_batch=crash)
    summary = _export(rec, source, out, resume=True)
    assert summary.n_resumed > 0 and not existing_journals(out)
    assert out.read_bytes() == reference.read_bytes()


def test_read_input_seed_tracks_from_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from text2tracks.prompt_files import read_input

    table = pa.table(
        {
            "prompt": [TITLE, None, "x", None],
            "seed_tracks": [["g0:t1", "g0:t2"], ["g1:t1"], None, None],
        }
    )
    pq.write_table(table, tmp_path / "in.parquet")
    rows = read_input(tmp_path / "in.parquet").rows
    assert [r.seed_tracks for r in rows] == [("g0:t1", "g0:t2"), ("g1:t1",), None, None]
    assert [r.prompt for r in rows[:3]] == [TITLE, "", "x"]
    assert [r.error is None for r in rows] == [True, True, True, False]


# ------------------------------------------------------------------ the HTTP service


def test_the_service_takes_seed_tracks():
    import asyncio

    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    from text2tracks.batching import ServeLimits
    from text2tracks.serve import create_app

    rec = _recommender()
    app = create_app(rec, ServeLimits(max_wait_ms=200, max_track_ids=6))
    bodies = [
        {"prompt": "", "k": 4, "seed_tracks": ["g0:t1", "g0:t2"]},
        {"prompt": [TITLE, ""], "k": 4, "seed_tracks": [None, ["g2:t2"]]},
        {"prompt": TITLE, "k": 4},  # batched with the seeded ones
        {"prompt": "", "k": 4},  # neither text nor seeds
        {"prompt": [TITLE, TITLE], "k": 4, "seed_tracks": [["g0:t1"]]},  # 1 list, 2 prompts
        {"prompt": TITLE, "k": 4, "seed_tracks": ["g0:t1"] * 4, "exclude": ["g1:t1"] * 3},
    ]

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(*(client.post("/recommend", json=b) for b in bodies))

    answers = asyncio.run(go())
    assert [a.status_code for a in answers] == [200, 200, 200, 422, 422, 413]
    assert "seed track" in answers[3].json()["detail"]
    assert "seed_tracks has 1 lists for 2 prompts" in answers[4].json()["detail"]

    def ids(recs):
        return [r["track_id"] if isinstance(r, dict) else r.track_id for r in recs]

    got = answers[0].json()["recommendations"]
    assert ids(got) == ids(rec.recommend("", k=4, seed_tracks=["g0:t1", "g0:t2"]))
    got = answers[1].json()["recommendations"]
    want = rec.recommend([TITLE, ""], k=4, seed_tracks=[None, ["g2:t2"]])
    assert [ids(g) for g in got] == [ids(w) for w in want]
    assert ids(answers[2].json()["recommendations"]) == ids(rec.recommend(TITLE, k=4))


# ------------------------------------------------------------------ latent and hybrid modes


def test_hybrid_beam_reads_seeds_and_latent_modes_exclude_them(tmp_path):
    from tiny_artifact import add_tiny_diffusion, build_tiny_artifact

    from text2tracks import Text2Tracks
    from text2tracks.fusion import FixedBlendFusion

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        artifact = add_tiny_diffusion(build_tiny_artifact(tmp_path), steps=50)
        rec = Text2Tracks.from_pretrained(artifact, device="cpu")
    finally:
        torch.set_num_threads(threads)
    rec.max_seed_tracks = 4  # an untrained model: what matters is what it is given to read
    rec.fusion = FixedBlendFusion(1.0)  # all weight on the beam: its own order
    seeds = list(rec.catalog.item_ids[:3])

    def ids(answers):
        return [[r.track_id for r in a] for a in answers]

    prompts = ["jazz", "party"]
    generative = rec.recommend(prompts, k=5, num_beams=8, diversity=0, seed_tracks=seeds)
    hybrid = rec.recommend(prompts, k=5, num_beams=8, mode="hybrid", seed_tracks=seeds)
    assert ids(hybrid) == ids(generative)
    assert ids(generative) != ids(rec.recommend(prompts, k=5, num_beams=8, diversity=0))
    latent = rec.recommend(prompts, k=20, mode="latent", seed_tracks=seeds)
    assert not {t for a in ids(latent) for t in a} & set(seeds)
    alone = rec.recommend(["", ""], k=5, mode="latent", seed_tracks=[seeds, seeds[:1]])
    assert ids(alone)[0] != ids(alone)[1]  # the seeds' own latents (seed_strength)
    from dataclasses import replace

    rec.hybrid_settings = replace(rec.hybrid_settings, seed_strength=None)  # the head alone
    with pytest.raises(ValueError, match="does not read seeds"):
        rec.recommend("", k=5, mode="latent", seed_tracks=seeds)
