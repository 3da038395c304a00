"""Tests for text2tracks.data: prompt normalisation, example sampling, collation."""

from __future__ import annotations

import numpy as np
import pytest

from text2tracks.data import Seq2SeqCollator, Seq2SeqPairs, encode_prompts, normalize_prompt

RELEVANT = [[0, 1, 2, 3, 4], [5], [], [2, 6, 7]]
N_ITEMS = 8
DEPTH = 3
SID_TOKEN_IDS = 500 + np.arange(N_ITEMS * DEPTH, dtype=np.int64).reshape(N_ITEMS, DEPTH)
EOS = 1
PROMPTS = [
    np.array([10, 11, EOS]),
    np.array([12, EOS]),
    np.array([13, EOS]),
    np.array([14, 15, 16, EOS]),
]


def _pairs(**kwargs):
    return Seq2SeqPairs(PROMPTS, RELEVANT, SID_TOKEN_IDS, EOS, **kwargs)


def _examples(pairs):
    return [pairs[i] for i in range(len(pairs))]


def test_normalize_prompt():
    assert normalize_prompt("  Chill\tVIBES \n") == "chill vibes"
    assert normalize_prompt("ｃｈｉｌｌ") == "chill"  # full-width folded by NFKC
    assert normalize_prompt("𝓬𝓱𝓲𝓵𝓵") == "chill"
    assert normalize_prompt("Straße 🔥") == "strasse 🔥"
    assert normalize_prompt("夏の歌") == "夏の歌"
    assert normalize_prompt("W O R K O U T") == "workout"
    assert normalize_prompt("s t u d y 🔥 music") == "study 🔥 music"
    assert normalize_prompt("a b") == "a b"  # two letters may be words ("a b side")
    assert normalize_prompt("top 5 a day") == "top 5 a day"


def test_encode_prompts_reuses_duplicates():
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    ids = encode_prompts(tokenizer, ["Chill", "chill ", "x" * 100], max_length=16)
    assert ids[0] is ids[1]
    assert len(ids[2]) == 16 and ids[2][-1] == tokenizer.eos_token_id


def test_all_pairs_each_epoch():
    pairs = _pairs(targets_per_playlist=0)
    assert len(pairs) == sum(len(r) for r in RELEVANT)
    for epoch in (0, 1):
        pairs.set_epoch(epoch)
        got = sorted(_examples(pairs))
        assert got == sorted((p, i) for p, r in enumerate(RELEVANT) for i in r)


def test_fixed_targets_per_playlist():
    pairs = _pairs(targets_per_playlist=2, seed=3)
    assert len(pairs) == 2 + 1 + 0 + 2
    seen = set()
    for epoch in range(20):
        pairs.set_epoch(epoch)
        examples = _examples(pairs)
        assert len(examples) == len(pairs)
        by_playlist: dict[int, list[int]] = {}
        for p, item in examples:
            assert item in RELEVANT[p]
            by_playlist.setdefault(p, []).append(item)
        assert {p: len(v) for p, v in by_playlist.items()} == {0: 2, 1: 1, 3: 2}
        assert all(len(set(v)) == len(v) for v in by_playlist.values()), "drawn without replacement"
        seen.update(examples)
    # over epochs every pair comes up
    assert seen == {(p, i) for p, r in enumerate(RELEVANT) for i in r}


def test_deterministic_in_seed_and_epoch():
    a, b = _pairs(targets_per_playlist=2, seed=7), _pairs(targets_per_playlist=2, seed=7)
    a.set_epoch(4)
    b.set_epoch(2)
    b.set_epoch(4)
    assert _examples(a) == _examples(b)
    c = _pairs(targets_per_playlist=2, seed=8)
    c.set_epoch(4)
    epochs = set()
    for e in range(5):
        a.set_epoch(e)
        epochs.add(tuple(_examples(a)))
    assert len(epochs) > 1


def test_popularity_power_tempers_popular_tracks():
    relevant = [[0, 1]] * 400
    counts = np.array([1000, 1] + [1] * (N_ITEMS - 2))
    prompts = [PROMPTS[0]] * 400
    uniform = Seq2SeqPairs(prompts, relevant, SID_TOKEN_IDS, EOS, targets_per_playlist=1, seed=0)
    tempered = Seq2SeqPairs(
        prompts,
        relevant,
        SID_TOKEN_IDS,
        EOS,
        targets_per_playlist=1,
        popularity_power=1.0,
        item_counts=counts,
        seed=0,
    )
    share_uniform = np.mean([i == 0 for _, i in _examples(uniform)])
    share_tempered = np.mean([i == 0 for _, i in _examples(tempered)])
    assert 0.4 < share_uniform < 0.6
    assert share_tempered < 0.02  # weight 1/1000 against 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="one entry per playlist"):
        Seq2SeqPairs(PROMPTS[:2], RELEVANT, SID_TOKEN_IDS, EOS)
    with pytest.raises(ValueError, match="targets_per_playlist"):
        _pairs(targets_per_playlist=-1)
    with pytest.raises(ValueError, match="item_counts"):
        _pairs(targets_per_playlist=1, popularity_power=0.5)
    with pytest.raises(ValueError, match="outside"):
        Seq2SeqPairs(PROMPTS, [[99], [], [], []], SID_TOKEN_IDS, EOS)


def test_collate_labels_and_padding():
    collate = Seq2SeqCollator(PROMPTS, SID_TOKEN_IDS, pad_token_id=0, eos_token_id=EOS)
    batch = collate([(0, 4), (1, 5), (3, 7)])
    assert batch["input_ids"].tolist() == [[10, 11, EOS, 0], [12, EOS, 0, 0], [14, 15, 16, EOS]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    expected = [list(SID_TOKEN_IDS[i]) + [EOS] for i in (4, 5, 7)]
    assert batch["labels"].tolist() == expected
    assert batch["playlist_index"].tolist() == [0, 1, 3]
    pairs = _pairs()
    assert pairs.labels(4).tolist() == expected[0]


# ------------------------------------------------------------------------------------ grouping


def _random_relevant(n_playlists, n_items, seed):
    rng = np.random.default_rng(seed)
    return [
        sorted(rng.choice(n_items, size=rng.integers(0, 20), replace=False).tolist())
        for _ in range(n_playlists)
    ]


def _random_prompts(n_playlists, seed):
    rng = np.random.default_rng(seed)
    titles = [np.append(rng.integers(3, 200, size=n), EOS) for n in rng.integers(2, 40, size=30)]
    return [titles[i] for i in rng.integers(0, len(titles), size=n_playlists)]


@pytest.mark.parametrize("targets_per_playlist", [0, 3])
@pytest.mark.parametrize("group_size,bucket_batches", [(1, 0), (4, 0), (1, 3), (4, 3), (50, 2)])
def test_grouping_and_bucketing_keep_the_drawn_examples(
    targets_per_playlist, group_size, bucket_batches
):
    relevant = _random_relevant(60, 40, seed=1)
    prompts = _random_prompts(60, seed=2)
    sid = 500 + np.arange(40 * DEPTH, dtype=np.int64).reshape(40, DEPTH)
    kwargs = dict(targets_per_playlist=targets_per_playlist, seed=5)
    plain = Seq2SeqPairs(prompts, relevant, sid, EOS, **kwargs)
    ordered = Seq2SeqPairs(
        prompts,
        relevant,
        sid,
        EOS,
        group_size=group_size,
        bucket_batches=bucket_batches,
        batch_size=16,
        **kwargs,
    )
    assert len(plain) == len(ordered)
    for epoch in range(3):
        plain.set_epoch(epoch)
        ordered.set_epoch(epoch)
        got = _examples(ordered)
        # the same draw as without grouping (same targets per playlist), only reordered
        assert sorted(got) == sorted(_examples(plain))
        counts = {}
        for p, item in got:
            assert item in relevant[p]
            counts[p] = counts.get(p, 0) + 1
        expected = {
            p: (min(len(r), targets_per_playlist) if targets_per_playlist else len(r))
            for p, r in enumerate(relevant)
            if r
        }
        assert counts == expected
    again = Seq2SeqPairs(
        prompts,
        relevant,
        sid,
        EOS,
        group_size=group_size,
        bucket_batches=bucket_batches,
        batch_size=16,
        **kwargs,
    )
    again.set_epoch(2)
    assert _examples(again) == got, "deterministic in (seed, epoch)"


def test_groups_are_contiguous():
    relevant = [list(range(10)), list(range(3)), list(range(7))] * 5
    prompts = _random_prompts(len(relevant), seed=0)
    sid = 500 + np.arange(10 * DEPTH, dtype=np.int64).reshape(10, DEPTH)
    pairs = Seq2SeqPairs(prompts, relevant, sid, EOS, targets_per_playlist=0, group_size=4, seed=1)
    playlists = [p for p, _ in _examples(pairs)]
    runs = 1 + sum(a != b for a, b in zip(playlists[:-1], playlists[1:], strict=True))
    # each playlist of n tracks comes in ceil(n / 4) groups (adjacent groups of one playlist merge)
    assert sum(len(r) for r in relevant) == len(playlists)
    assert runs <= sum(-(-len(r) // 4) for r in relevant)
    assert runs > len(relevant), "groups of one playlist are spread over the epoch"


def test_bucketing_reduces_padding():
    relevant = _random_relevant(400, 40, seed=3)
    prompts = _random_prompts(400, seed=4)
    sid = 500 + np.arange(40 * DEPTH, dtype=np.int64).reshape(40, DEPTH)

    def padded(pairs):
        ex = _examples(pairs)
        total = 0
        for start in range(0, len(ex), 32):
            lengths = [len(prompts[p]) for p, _ in ex[start : start + 32]]
            total += max(lengths) * len(lengths) - sum(lengths)
        return total

    plain = Seq2SeqPairs(prompts, relevant, sid, EOS, targets_per_playlist=0, seed=0)
    bucketed = Seq2SeqPairs(
        prompts, relevant, sid, EOS, targets_per_playlist=0, seed=0, bucket_batches=8, batch_size=32
    )
    assert padded(bucketed) < 0.3 * padded(plain)


def test_ordering_arguments():
    with pytest.raises(ValueError, match="group_size"):
        _pairs(group_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        _pairs(bucket_batches=2)
    with pytest.raises(ValueError, match="bucket_batches"):
        _pairs(bucket_batches=-1, batch_size=4)


def test_collate_shared_prompts():
    prompts = [*PROMPTS, np.array([12, EOS])]  # playlist 4 has playlist 1's prompt
    collate = Seq2SeqCollator(
        prompts, SID_TOKEN_IDS, pad_token_id=0, eos_token_id=EOS, share_prompts=True
    )
    batch = collate([(3, 2), (3, 6), (1, 5), (4, 0), (0, 1), (3, 7)])
    assert batch["input_ids"].tolist() == [[14, 15, 16, EOS], [12, EOS, 0, 0], [10, 11, EOS, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]]
    assert batch["prompt_index"].tolist() == [0, 0, 1, 1, 2, 0]
    assert batch["labels"].tolist() == [list(SID_TOKEN_IDS[i]) + [EOS] for i in (2, 6, 5, 0, 1, 7)]
    assert batch["playlist_index"].tolist() == [3, 3, 1, 4, 0, 3]
    # expanded, it is the unshared batch
    plain = Seq2SeqCollator(prompts, SID_TOKEN_IDS, pad_token_id=0, eos_token_id=EOS)(
        [(3, 2), (3, 6), (1, 5), (4, 0), (0, 1), (3, 7)]
    )
    assert batch["input_ids"][batch["prompt_index"]].tolist() == plain["input_ids"].tolist()


def test_target_weights_draw_with_replacement_in_proportion():
    weights = [[0.7, 0.2, 0.1, 0.0, 0.0], [1.0], [], [0.0, 0.5, 0.5]]
    pairs = _pairs(targets_per_playlist=4000, target_weights=weights, seed=3)
    assert len(pairs) == 3 * 4000  # the empty playlist gives nothing
    examples = np.array(_examples(pairs))
    for playlist, items in enumerate(RELEVANT):
        drawn = examples[examples[:, 0] == playlist, 1]
        if not items:
            assert drawn.size == 0
            continue
        assert drawn.size == 4000
        shares = np.array([(drawn == i).mean() for i in items])
        np.testing.assert_allclose(
            shares, np.array(weights[playlist]) / sum(weights[playlist]), atol=0.03
        )
    # zero-weight targets are never drawn
    assert not np.isin(examples[examples[:, 0] == 0, 1], [3, 4]).any()
    assert not (examples[examples[:, 0] == 3, 1] == 2).any()
    # deterministic in (seed, epoch), different across epochs
    again = _pairs(targets_per_playlist=4000, target_weights=weights, seed=3)
    assert _examples(again) == _examples(pairs)
    pairs.set_epoch(1)
    assert _examples(pairs) != _examples(again)


def test_target_weights_bad_arguments():
    weights = [[1.0] * len(r) for r in RELEVANT]
    with pytest.raises(ValueError, match="targets_per_playlist > 0"):
        _pairs(target_weights=weights)
    with pytest.raises(ValueError, match="one weight per relevant item"):
        _pairs(targets_per_playlist=2, target_weights=[[1.0], [1.0], [], [1.0]])
    with pytest.raises(ValueError, match="positive total"):
        _pairs(targets_per_playlist=2, target_weights=[[0.0] * 5, [1.0], [], [1.0] * 3])
    with pytest.raises(ValueError, match=">= 0"):
        _pairs(targets_per_playlist=2, target_weights=[[-1.0] * 5, [1.0], [], [1.0] * 3])
