"""Ranking metrics on hand-computed examples, bootstrap intervals, skipped prompts, the table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from eval.metrics import (
    bootstrap_means,
    coverage,
    evaluate_rankings,
    first_hit_ranks,
    format_table,
    hits_at_ks,
    paired_bootstrap_diff,
    per_prompt_metrics,
    relevant_items,
)
from semantic_ids.interactions import ItemVocab
from semantic_ids.playlists import Playlist


def _d(rank: int) -> float:
    return 1.0 / math.log2(rank + 1)


def test_hand_computed_single_prompt():
    # relevant {2, 5, 9}; hits at ranks 2 and 4 of the top 5
    m = per_prompt_metrics([[1, 2, 3, 5, 7]], [{2, 5, 9}], k=5)
    assert m["hits"].tolist() == [1.0]
    assert m["recall"][0] == pytest.approx(2 / 3)
    assert m["ndcg"][0] == pytest.approx((_d(2) + _d(4)) / (_d(1) + _d(2) + _d(3)))
    assert m["mrr"][0] == pytest.approx(1 / 2)


def test_k_truncates_and_ideal_uses_min_rel_k():
    # 4 relevant items, k=2: ideal DCG over 2 items; the hit at rank 3 is outside the top 2
    m = per_prompt_metrics(np.array([[0, 8, 1]]), [[0, 1, 2, 3]], k=2)
    assert m["hits"][0] == 1.0
    assert m["recall"][0] == pytest.approx(1 / 4)
    assert m["ndcg"][0] == pytest.approx(_d(1) / (_d(1) + _d(2)))
    assert m["mrr"][0] == 1.0
    # a perfect top 2 has ndcg 1 even though recall is 1/2
    perfect = per_prompt_metrics([[3, 2]], [[0, 1, 2, 3]], k=2)
    assert perfect["ndcg"][0] == pytest.approx(1.0)
    assert perfect["recall"][0] == pytest.approx(0.5)


def test_miss_padding_and_repeats():
    rec = np.array([[4, -1, -1], [7, 7, 1], [-1, -1, -1]])
    rel = [[5], [7, 1], [0]]
    m = per_prompt_metrics(rec, rel, k=3)
    assert m["hits"].tolist() == [0.0, 1.0, 0.0]
    assert m["mrr"].tolist() == [0.0, 1.0, 0.0]
    # the repeated 7 earns nothing; 1 is a hit at rank 3
    assert m["recall"][1] == pytest.approx(1.0)
    assert m["ndcg"][1] == pytest.approx((_d(1) + _d(3)) / (_d(1) + _d(2)))
    assert m["ndcg"][0] == 0.0 and m["recall"][2] == 0.0


def test_ragged_lists_and_short_rows():
    m = per_prompt_metrics([[3], [0, 1, 2, 9]], [{9}, {9}], k=10)
    assert m["hits"].tolist() == [0.0, 1.0]
    assert m["mrr"][1] == pytest.approx(0.25)


def test_padding_never_matches_previous_prompt():
    # -1 must not be mistaken for an item of another prompt however items are keyed
    m = per_prompt_metrics(np.array([[0, 1], [-1, -1]]), [[1], [1]], k=2)
    assert m["hits"].tolist() == [1.0, 0.0]


def test_coverage():
    rec = np.array([[0, 1, -1], [1, 2, 3]])
    assert coverage(rec, n_items=10, k=3) == pytest.approx(4 / 10)
    assert coverage(rec, n_items=10, k=1) == pytest.approx(2 / 10)


def test_evaluate_rankings_skips_and_counts_empty_relevant():
    rec = np.array([[0, 1], [2, 3], [4, 5]])
    result = evaluate_rankings(rec, [[0], [], [9]], k=2, n_items=6, n_skipped=3)
    assert result["n_prompts"] == 2
    assert result["n_skipped"] == 4
    assert result["hits@2"] == pytest.approx(0.5)
    assert result["mrr"] == pytest.approx(0.5)
    assert result["coverage@2"] == pytest.approx(4 / 6)  # rows 0 and 2 only
    lo, hi = result["hits@2_ci"]
    assert 0.0 <= lo <= 0.5 <= hi <= 1.0


def test_evaluate_rankings_all_skipped():
    result = evaluate_rankings([[0, 1]], [[]], k=2)
    assert result["n_prompts"] == 0 and result["n_skipped"] == 1 and result["hits@2"] is None


def test_per_prompt_rejects_empty_relevant_and_row_mismatch():
    with pytest.raises(ValueError, match="no relevant"):
        per_prompt_metrics([[0]], [[]], k=1)
    with pytest.raises(ValueError, match="rows"):
        per_prompt_metrics([[0], [1]], [[0]], k=1)


def test_bootstrap_ci_contains_mean_and_shrinks():
    rng = np.random.default_rng(1)
    widths = []
    for n in (50, 5000):
        hits = (rng.random(n) < 0.3).astype(int)
        rec = np.where(hits[:, None] == 1, 0, 1) * np.ones((n, 1), dtype=int)
        result = evaluate_rankings(rec, [[0]] * n, k=1, n_bootstrap=500, seed=0)
        lo, hi = result["hits@1_ci"]
        assert lo <= result["hits@1"] <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 4


def test_bootstrap_is_seeded_and_chunked_consistently():
    values = np.random.default_rng(0).random((2, 300))
    a = bootstrap_means(values, 200, seed=3)
    b = bootstrap_means(values, 200, seed=3, chunk_elements=300 * 7)
    assert a.shape == (2, 200)
    np.testing.assert_allclose(a, b)
    assert bootstrap_means(values[0], 10).shape == (10,)


def test_paired_bootstrap_diff():
    rng = np.random.default_rng(0)
    b = (rng.random(2000) < 0.3).astype(float)
    a = np.maximum(b, (rng.random(2000) < 0.2).astype(float))  # a dominates b
    out = paired_bootstrap_diff(a, b)
    assert out["diff"] == pytest.approx(a.mean() - b.mean())
    assert 0 < out["ci"][0] <= out["diff"] <= out["ci"][1]
    assert out["p_value"] < 0.01
    same = paired_bootstrap_diff(b, b)
    assert same["diff"] == 0.0 and same["ci"] == [0.0, 0.0]
    with pytest.raises(ValueError):
        paired_bootstrap_diff(a, b[:10])


def test_relevant_items_skips_playlists_without_catalogue_tracks():
    vocab = ItemVocab(("t1", "t2", "t3"), np.array([3, 2, 2]))
    playlists = [
        Playlist("p0", "a", ("t3", "x", "t1", "t3")),
        Playlist("p1", "b", ("x", "y")),
        Playlist("p2", "c", ("t2",)),
    ]
    kept, lists, n_skipped = relevant_items(playlists, vocab)
    assert kept.tolist() == [0, 2]
    assert [r.tolist() for r in lists] == [[2, 0], [1]]
    assert n_skipped == 1


def test_format_table():
    result = evaluate_rankings(np.array([[0, 1], [2, 3]]), [[0], [5]], k=2, n_items=6)
    table = format_table({"pop": result, "other": {"hits@2": 0.25, "train_s": 1.5}})
    lines = table.splitlines()
    assert lines[0].startswith("| system | hits@2 | recall@2 | ndcg@2 | mrr | coverage@2")
    lo, hi = result["hits@2_ci"]
    assert f"0.500 [{lo:.3f}, {hi:.3f}]" in lines[2]
    assert lines[3].startswith("| other | 0.250 | - |")
    custom = format_table({"x": {"train_s": 1.5, "n_prompts": 3}}, columns=["train_s", "n_prompts"])
    assert custom.splitlines()[2] == "| x | 1.500 | 3 |"


def test_first_hit_ranks_agree_with_brute_force_and_with_hits_and_mrr():
    rng = np.random.default_rng(3)
    rec = rng.integers(-1, 30, size=(200, 25))  # -1 padding and repeats included
    rel = [rng.choice(30, size=rng.integers(1, 6), replace=False) for _ in range(200)]
    ranks = first_hit_ranks(rec, rel)

    def brute(row, relevant):
        for position, item in enumerate(row, start=1):
            if item >= 0 and item in set(relevant.tolist()):
                return position
        return 0

    assert ranks.dtype == np.int64
    assert ranks.tolist() == [brute(r, s) for r, s in zip(rec, rel, strict=True)]
    for k in (1, 5, 10, 25):
        m = per_prompt_metrics(rec, rel, k=k)
        np.testing.assert_array_equal(hits_at_ks(ranks, [k])[0], m["hits"])
        np.testing.assert_allclose(
            np.where((ranks >= 1) & (ranks <= k), 1.0 / np.maximum(ranks, 1), 0.0), m["mrr"]
        )
    assert first_hit_ranks(rec, rel, depth=5).tolist() == [r if r <= 5 else 0 for r in ranks]
    assert first_hit_ranks([[4, 2], [7]], [[2], [9]]).tolist() == [2, 0]  # ragged lists


def test_hits_at_ks_shape_and_bad_k():
    out = hits_at_ks([0, 1, 3, 10], [1, 3, 10])
    assert out.tolist() == [[0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 1]]
    with pytest.raises(ValueError, match="K must be >= 1"):
        hits_at_ks([1], [0])


def test_paired_text_signs_the_difference_and_both_interval_ends():
    from eval.metrics import paired_text

    assert paired_text({"diff": 0.05, "ci": [-0.0174, 0.0836]}) == "+0.050 [-0.017, +0.084]"
