"""Tests for semantic_ids.sequences (readers, leave-last-out) and eval.sequential (baselines)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval.sequential import format_table, metrics_from_ranks, rank_of_targets, run
from semantic_ids.playlists import Playlist
from semantic_ids.sequences import (
    SequenceFormatError,
    Sequences,
    k_core,
    leave_last_out,
    read_sequences,
    sequences_from_playlists,
)
from text2tracks.cf_targets import ItemCosine


def test_readers_keep_time_order(tmp_path):
    jsonl = tmp_path / "s.jsonl"
    jsonl.write_text(
        json.dumps({"user": "u1", "items": ["a", "b", "c"]})
        + "\n\n"
        + json.dumps({"user": 2, "items": [1, 2]})
        + "\n"
    )
    seqs = read_sequences(jsonl)
    assert seqs.users == ["u1", "2"] and seqs.items == [["a", "b", "c"], ["1", "2"]]
    csv = tmp_path / "s.csv"
    csv.write_text("item,user,timestamp\nb,u1,20\na,u1,10\nc,u2,5\nd,u1,20\n")
    seqs = read_sequences(csv)
    # sorted by timestamp; equal timestamps keep file order
    assert dict(zip(seqs.users, seqs.items, strict=True)) == {"u1": ["a", "b", "d"], "u2": ["c"]}


def test_reader_errors_name_the_problem(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user": "u", "items": ["a"]}\n{nope\n')
    with pytest.raises(SequenceFormatError, match="bad.jsonl:2: not JSON"):
        read_sequences(bad)
    bad.write_text('{"user": "u"}\n')
    with pytest.raises(SequenceFormatError, match=r"bad.jsonl:1: expected"):
        read_sequences(bad)
    csv = tmp_path / "bad.csv"
    csv.write_text("user,item\nu,a\n")
    with pytest.raises(SequenceFormatError, match="missing \\['timestamp'\\]"):
        read_sequences(csv)
    csv.write_text("user,item,timestamp\nu,a,yesterday\n")
    with pytest.raises(SequenceFormatError, match="bad.csv:2: timestamp 'yesterday'"):
        read_sequences(csv)
    with pytest.raises(SequenceFormatError, match="expected a .jsonl or .csv"):
        (tmp_path / "x.txt").write_text("")
        read_sequences(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError):
        read_sequences(tmp_path / "missing.csv")


def test_leave_last_out():
    seqs = sequences_from_playlists(
        [
            Playlist("p1", "t", ("a", "b", "c", "d")),
            Playlist("p2", "t", ("a", "b")),
            Playlist("p3", "t", ("x", "y", "z")),
        ]
    )
    split = leave_last_out(seqs)
    assert split.users == ["p1", "p3"] and split.n_too_short == 1
    assert split.train == [["a", "b"], ["x"]]
    assert split.validation == ["c", "y"] and split.test == ["d", "z"]
    assert split.test_history(0) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="min_length"):
        leave_last_out(seqs, min_length=2)


def test_k_core_drops_rare_items_then_short_users_until_both_hold():
    seqs = Sequences(
        ["u1", "u2", "u3", "u4"],
        [["a", "b", "c"], ["a", "b", "d"], ["a", "c", "b", "e"], ["e", "d"]],
        n_skipped=1,
    )
    core = k_core(seqs, 2)
    # d and e (2 users each) survive the first pass; u4 keeps 2 items; nothing changes after
    assert core.users == ["u1", "u2", "u3", "u4"]
    assert core.items == [["a", "b", "c"], ["a", "b", "d"], ["a", "c", "b", "e"], ["e", "d"]]
    core = k_core(seqs, 3)
    # c, d, e are in fewer than 3 sequences; then u4 is empty and u1-u3 hold a, b (< 3 items):
    # everyone goes, and the next pass has nothing left
    assert core.users == [] and core.n_skipped == 5
    core = k_core(Sequences(["u1", "u2", "u3"], [["a", "b", "x"], ["a", "b"], ["a", "b", "y"]]), 2)
    assert core.items == [["a", "b"], ["a", "b"], ["a", "b"]] and core.n_skipped == 0
    with pytest.raises(ValueError, match="positive integer"):
        k_core(seqs, 0)
    from eval.sequential import main

    with pytest.raises(SystemExit):  # refused before any file is read
        main(["--playlists", "missing", "--out", "x", "--core", "-1"])


def test_metrics_from_ranks():
    m = metrics_from_ranks(np.array([0, 4, 9, 10]), n_bootstrap=100)
    assert m["recall@5"] == pytest.approx(0.5) and m["recall@10"] == pytest.approx(0.75)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / np.log2(6)) / 4)


def _clustered(n_users=300, seed=0):
    """Two item worlds with their own popular items; a user stays in one world. The global
    popularity favours world A; item kNN and ALS must find each user's world."""
    rng = np.random.default_rng(seed)
    a = [f"a{i}" for i in range(30)]
    b = [f"b{i}" for i in range(30)]
    users, items = [], []
    for u in range(n_users):
        world = a if u % 3 else b  # two thirds in A
        weights = np.linspace(2, 1, len(world))
        seq = rng.choice(world, size=8, replace=False, p=weights / weights.sum()).tolist()
        users.append(f"u{u}")
        items.append(seq)
    return Sequences(users, items)


def test_baselines_on_clustered_sequences():
    split = leave_last_out(_clustered())
    results = run(split, n_bootstrap=100, als_factors=8, log=lambda m: None)
    test = {name: r["test"] for name, r in results["systems"].items()}
    assert set(test) == {"popularity", "item_knn", "als_fold_in"}
    # world B users get world-A items from popularity: the personalised ones must beat it
    assert test["item_knn"]["recall@10"] > test["popularity"]["recall@10"] + 0.05
    assert test["als_fold_in"]["recall@10"] > test["popularity"]["recall@10"] + 0.05
    for r in test.values():
        assert r["recall@5"] <= r["recall@10"] and r["ndcg@5"] <= r["ndcg@10"]
    setting = results["systems"]["item_knn"]["setting"]
    assert setting["decay"] in (1.0, 0.9, 0.7, 0.5) and setting["history_power"] in (0.0, 0.5)
    assert "| item_knn |" in format_table(results)


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_item_cosine_is_the_documented_sum_over_history_items(power):
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((30, 12)) < 0.3).astype(np.float32))
    train[0, 11] = 0  # item 11 may have no user: its count is taken as 1, its scores are 0
    train.eliminate_zeros()
    history = sp.csr_matrix(rng.random((4, 12)) * (rng.random((4, 12)) < 0.4))
    got = ItemCosine(train, history_power=power).scores(history)
    # one instance serves every power: the same scores when the power is given per call
    np.testing.assert_array_equal(ItemCosine(train).scores(history, power), got)
    x = train.toarray() > 0
    n = np.maximum(x.sum(axis=0), 1)
    expected = np.zeros((4, 12))
    for u in range(4):
        for j in np.flatnonzero(history[u].toarray()[0]):
            for i in range(12):
                cos = (x[:, j] & x[:, i]).sum() / np.sqrt(n[j] * n[i])
                expected[u, i] += history[u, j] * n[j] ** (0.5 - power) * cos
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_item_cosine_refuses_a_power_outside_0_1():
    import scipy.sparse as sp

    with pytest.raises(ValueError, match="history_power"):
        ItemCosine(sp.csr_matrix(np.eye(3, dtype=np.float32)), history_power=2)


def test_rank_of_targets_is_the_place_in_a_stable_sort_with_history_left_out():
    rng = np.random.default_rng(3)
    n_items, n_users = 40, 30
    index = {f"i{j}": j for j in range(n_items)}
    scores = rng.integers(0, 5, (n_users, n_items)).astype(np.float32)  # many ties
    histories = [[f"i{j}" for j in rng.choice(n_items, 4, replace=False)] for _ in range(n_users)]
    targets = [f"i{rng.integers(n_items)}" for _ in range(n_users - 1)] + ["unknown"]
    got = rank_of_targets(lambda rows: scores[rows], histories, targets, index, n_items, 10, 7)
    for u in range(n_users):
        row = scores[u].copy()
        row[[index[i] for i in histories[u]]] = -np.inf
        order = list(np.argsort(-row, kind="stable")[:10])
        j = index.get(targets[u])
        assert got[u] == (order.index(j) if j in order else 10), u
    assert got[-1] == 10
