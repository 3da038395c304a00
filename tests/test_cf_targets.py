"""CF-smoothed targets for seeded prompts (text2tracks.cf_targets): the fold-in lists on factors
whose answer is known, the draw, and their place in the training examples."""

from __future__ import annotations

import numpy as np
import pytest

from text2tracks.cf_targets import cf_lists, cooccurrence_lists
from text2tracks.data import Seq2SeqPairs
from text2tracks.seed_draw import SeedDraw

N_CLUSTERS, PER_CLUSTER, DIM = 4, 12, 4


def _factors(seed: int = 0) -> np.ndarray:
    """Items of cluster c point along axis c (plus a little noise)."""
    rng = np.random.default_rng(seed)
    base = np.repeat(np.eye(DIM, dtype=np.float32), PER_CLUSTER, axis=0)
    return base + 0.05 * rng.normal(size=base.shape).astype(np.float32)


def _cluster(item: int) -> int:
    return item // PER_CLUSTER


def _own(n: int = 40, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    clusters = rng.integers(0, N_CLUSTERS, n)
    return [
        (c * PER_CLUSTER + rng.permutation(PER_CLUSTER)[: rng.integers(2, 7)]).tolist()
        for c in clusters
    ]


def test_a_playlists_list_is_its_cluster_and_the_draw_follows_the_weights():
    own = _own() + [[]]  # and a playlist without tracks
    lists = cf_lists(own, _factors(), top=8)
    assert len(lists) == len(own)
    for p, tracks in enumerate(own[:-1]):
        items = lists.items[lists.indptr[p] : lists.indptr[p + 1]]
        assert items.size and {_cluster(i) for i in items.tolist()} == {_cluster(tracks[0])}
        # one unit of cumulative weight per playlist, increasing within it
        cum = lists.cumulative[lists.indptr[p] : lists.indptr[p + 1]]
        assert np.all(np.diff(cum) >= 0) and cum[-1] == pytest.approx(p + 1)
    assert lists.indptr[-1] == lists.indptr[-2]  # the empty playlist has an empty list
    rng = np.random.default_rng(1)
    drawn = lists.draw(np.zeros(4000, dtype=np.int64), rng)
    first = lists.items[lists.indptr[0] : lists.indptr[1]]
    assert set(drawn.tolist()) <= set(first.tolist())
    # in proportion to the weights: the empirical shares match them
    weights = np.diff(np.r_[0.0, lists.cumulative[: lists.indptr[1]]])
    shares = np.array([(drawn == i).mean() for i in first])
    assert np.abs(shares - weights).max() < 0.04
    assert lists.draw(np.array([len(own) - 1]), rng).tolist() == [-1]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="top must be a positive integer"):
        cf_lists([[0]], _factors(), top=0)
    with pytest.raises(ValueError, match="outside item_factors"):
        cf_lists([[10_000]], _factors())
    with pytest.raises(ValueError, match="2-d"):
        cf_lists([[0]], np.zeros(5))


def _brute_cooccurrence(own, n_items, p):
    """score(i) for playlist p: cosine over the OTHER playlists' co-occurrence, with the norms
    of all playlists (cooccurrence_lists' definition), computed pair by pair."""
    counts = np.zeros(n_items)
    for tracks in own:
        counts[list(set(tracks))] += 1
    scores = np.zeros(n_items)
    for q, tracks in enumerate(own):
        if q == p:
            continue
        q_items = set(tracks)
        for j in set(own[p]) & q_items:
            for i in q_items:
                scores[i] += 1.0 / np.sqrt(counts[i] * counts[j])
    return scores


def test_cooccurrence_lists_match_a_pair_by_pair_count_with_the_own_vote_left_out():
    own = [[0, 1, 2], [1, 2, 3], [2, 3], [4, 5], [0, 1, 1], [6]]
    lists = cooccurrence_lists(own, 8, top=8)
    for p in range(len(own)):
        expected = _brute_cooccurrence(own, 8, p)
        items = lists.items[lists.indptr[p] : lists.indptr[p + 1]]
        cum = lists.cumulative[lists.indptr[p] : lists.indptr[p + 1]]
        support = np.flatnonzero(expected > 0)
        assert sorted(items.tolist()) == support.tolist()
        if items.size:
            assert expected[items].tolist() == sorted(expected[items].tolist(), reverse=True)
            shares = np.diff(np.r_[p, cum])
            assert shares == pytest.approx(expected[items] / expected[items].sum())
    # [4, 5] and [6]: nobody else holds their tracks, so their lists are empty; item 7 is in
    # no playlist and in no list
    for p in (3, 5):
        assert lists.indptr[p + 1] == lists.indptr[p]
    assert 7 not in lists.items.tolist()


def test_cooccurrence_lists_stay_in_the_cluster_and_check_their_input():
    own = _own(n=80)
    lists = cooccurrence_lists(own, len(_factors()), top=6)
    for p, tracks in enumerate(own):
        items = lists.items[lists.indptr[p] : lists.indptr[p + 1]]
        assert 0 < items.size <= 6
        assert {_cluster(i) for i in items.tolist()} == {_cluster(tracks[0])}
    with pytest.raises(ValueError, match="top must be a positive integer"):
        cooccurrence_lists(own, 48, top=0)
    with pytest.raises(ValueError, match="outside the catalogue's 48 items"):
        cooccurrence_lists([[48]], 48)


def _pairs(own, weight, lists=None):
    sid = np.arange(len(_factors()))[:, None] + 10
    return Seq2SeqPairs(
        [np.array([7, 1])] * len(own),
        own,
        sid,
        1,
        targets_per_playlist=3,
        seeds=SeedDraw(prob=1.0, max_seeds=3, title_drop=0.0),
        blank_prompt_ids=np.array([1]),
        seed_cf=lists,
        seed_cf_weight=weight,
    )


def test_seeded_targets_come_from_the_cf_list_and_never_a_seed():
    own = _own()
    lists = cf_lists(own, _factors(), top=PER_CLUSTER)
    plain, mixed = _pairs(own, 0.0, lists), _pairs(own, 1.0, lists)
    outside = 0
    for epoch in range(3):
        plain.set_epoch(epoch)
        mixed.set_epoch(epoch)
        # the same seeds and the same examples' playlists: only the items differ
        assert np.array_equal(plain.epoch_seeds.is_seed, mixed.epoch_seeds.is_seed)
        for i in range(len(mixed)):
            playlist, item, chosen, _ = mixed[i]
            assert item not in chosen.tolist()
            assert _cluster(item) == _cluster(own[playlist][0])
            outside += item not in own[playlist]
        assert [plain[i][1] in own[plain[i][0]] for i in range(len(plain))] == [True] * len(plain)
    assert outside > 0  # the list brings tracks the playlist itself does not hold
    # weight 0 draws exactly what a run without lists draws
    bare = _pairs(own, 0.0)
    bare.set_epoch(2)
    assert [bare[i][1] for i in range(len(bare))] == [plain[i][1] for i in range(len(plain))]
    with pytest.raises(ValueError, match="seed_cf_weight > 0 needs seeds and seed_cf"):
        _pairs(own, 0.5)
    with pytest.raises(ValueError, match="seed_cf_weight must be in"):
        _pairs(own, 1.5, lists)


def test_the_training_config_checks_the_cf_options():
    from training.seq2seq_config import TrainConfig

    with pytest.raises(ValueError, match="seed_cf_weight must be in"):
        TrainConfig(artifact="a", playlists="p", seed_cf_weight=2.0)
    with pytest.raises(ValueError, match="seed_cf_top must be a positive integer"):
        TrainConfig(artifact="a", playlists="p", seed_cf_top=0)
    with pytest.raises(ValueError, match="seed_cf_source must be one of"):
        TrainConfig(artifact="a", playlists="p", seed_cf_source="svd")


def test_the_trainer_builds_the_list_its_source_names(tmp_path):
    from types import SimpleNamespace

    from training.seq2seq_config import TrainConfig
    from training.seq2seq_data import seed_cf_lists

    own = _own(n=60)
    data = {
        "vocab": SimpleNamespace(item_ids=[f"t{i}" for i in range(len(_factors()))]),
        "train_relevant": own,
    }
    config = TrainConfig(
        artifact=str(tmp_path), playlists="p", seed_cf_source="cooccurrence", seed_cf_top=5
    )
    logged = []
    lists = seed_cf_lists(config, data, logged.append)
    expected = cooccurrence_lists(own, len(_factors()), top=5)
    assert np.array_equal(lists.items, expected.items)
    assert np.array_equal(lists.indptr, expected.indptr)
    assert "item co-occurrence lists for 60 playlists" in logged[0]
    # the ALS source reads the artifact's item factors
    (tmp_path / "cf").mkdir()
    np.save(tmp_path / "cf" / "item_factors.npy", _factors())
    als = seed_cf_lists(TrainConfig(artifact=str(tmp_path), playlists="p"), data, logged.append)
    assert np.array_equal(als.items, cf_lists(own, _factors(), top=100).items)
    assert "CF fold-in lists" in logged[1]
