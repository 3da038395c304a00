"""text2tracks.ranking_metrics' evaluation (relevant items, bootstrap, table), which the demo uses
below ``eval``: known answers, and :mod:`eval.metrics` serving the very same functions (one
implementation, no twins)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from eval import metrics
from semantic_ids.interactions import ItemVocab
from text2tracks import ranking_metrics


def test_eval_metrics_reexports_the_one_implementation():
    for name in ("relevant_items", "bootstrap_means", "evaluate_rankings", "format_table"):
        assert getattr(metrics, name) is getattr(ranking_metrics, name), name


def test_evaluate_rankings_on_a_known_answer():
    recommended = [[0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 1, 2]]
    relevant = [{2}, {9}, {6, 7}, set()]  # hit at rank 3, miss, hit at rank 1, no relevant item
    out = ranking_metrics.evaluate_rankings(
        recommended, relevant, k=3, n_items=10, n_bootstrap=200, seed=3, n_skipped=2
    )
    assert out["n_prompts"] == 3 and out["n_skipped"] == 3  # 2 given + the empty one
    assert out["hits@3"] == pytest.approx(2 / 3)
    assert out["mrr"] == pytest.approx((1 / 3 + 0 + 1) / 3)
    low, high = out["hits@3_ci"]
    assert 0 <= low <= out["hits@3"] <= high <= 1 and low < high


def test_bootstrap_means_are_seeded_and_centred():
    values = np.random.default_rng(1).random((3, 500))
    a = ranking_metrics.bootstrap_means(values, 200, seed=5)
    assert a.shape == (3, 200)  # (rows of values, resamples)
    np.testing.assert_array_equal(a, ranking_metrics.bootstrap_means(values, 200, seed=5))
    assert not np.array_equal(a, ranking_metrics.bootstrap_means(values, 200, seed=6))
    np.testing.assert_allclose(a.mean(axis=1), values.mean(axis=1), atol=0.01)


def test_relevant_items_and_format_table_on_known_answers():
    vocab = ItemVocab(("a", "b", "c"), np.array([5, 3, 1]))
    playlists = [SimpleNamespace(track_ids=t) for t in (["b", "x", "b", "a"], ["x"], ["c"])]
    kept, lists, n_skipped = ranking_metrics.relevant_items(playlists, vocab)
    assert kept.tolist() == [0, 2] and n_skipped == 1
    assert [r.tolist() for r in lists] == [[1, 0], [2]]  # distinct, playlist order
    table = ranking_metrics.format_table({"b": {"hits@10": 0.5, "n_prompts": 7}})
    assert table.splitlines() == [
        "| system | hits@10 | n_prompts |",
        "|---|---|---|",
        "| b | 0.500 | 7 |",
    ]
