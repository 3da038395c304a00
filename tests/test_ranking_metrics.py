"""text2tracks.ranking_metrics' evaluation (relevant items, bootstrap, table), which the demo uses
below ``eval``, gives what :mod:`eval.metrics` gives."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from eval import metrics
from semantic_ids.interactions import ItemVocab
from text2tracks import ranking_metrics


def _rankings(seed: int = 0, n: int = 40, n_items: int = 30, k: int = 10):
    rng = np.random.default_rng(seed)
    recommended = [rng.choice(n_items, size=k, replace=False) for _ in range(n)]
    relevant = [set(rng.choice(n_items, size=rng.integers(0, 6), replace=False)) for _ in range(n)]
    return recommended, relevant


def test_evaluate_rankings_agrees_with_eval_metrics():
    recommended, relevant = _rankings()
    args = dict(k=10, n_items=30, n_bootstrap=200, seed=3, n_skipped=2)
    ours = ranking_metrics.evaluate_rankings(recommended, relevant, **args)
    assert ours == metrics.evaluate_rankings(recommended, relevant, **args)
    assert ours["n_skipped"] >= 2 and ours["n_prompts"] + ours["n_skipped"] == len(relevant) + 2
    low, high = ours["hits@10_ci"]
    assert low <= ours["hits@10"] <= high


def test_bootstrap_means_agree_with_eval_metrics():
    values = np.random.default_rng(1).random((3, 50))
    ours = ranking_metrics.bootstrap_means(values, 100, seed=5)
    np.testing.assert_array_equal(ours, metrics.bootstrap_means(values, 100, seed=5))


def test_relevant_items_and_format_table_agree_with_eval_metrics():
    vocab = ItemVocab(("a", "b", "c"), np.array([5, 3, 1]))
    playlists = [SimpleNamespace(track_ids=t) for t in (["b", "x", "b", "a"], ["x"], ["c"])]
    kept, lists, n_skipped = ranking_metrics.relevant_items(playlists, vocab)
    kept_e, lists_e, n_skipped_e = metrics.relevant_items(playlists, vocab)
    np.testing.assert_array_equal(kept, kept_e)
    assert [r.tolist() for r in lists] == [r.tolist() for r in lists_e] == [[1, 0], [2]]
    assert n_skipped == n_skipped_e == 1
    recommended, relevant = _rankings(seed=2)
    results = {
        "a": ranking_metrics.evaluate_rankings(recommended, relevant, n_items=30, n_bootstrap=50),
        "b": {"hits@10": 0.5, "n_prompts": 7},
    }
    table = ranking_metrics.format_table(results)
    assert table == metrics.format_table(results)
    assert table.splitlines()[3] == "| b | 0.500 | - | - | - | - | 7 |"
