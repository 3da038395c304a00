"""CF-smoothed teacher views (eval.teacher_views): each view on data whose answer is known, and
the command on the tiny demo artifact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from eval.teacher_views import (
    fold_in_scores,
    hits_at_k,
    main,
    max_blend,
    pooled_factor_scores,
)

# six items in two clusters: 0-2 along the first axis, 3-5 along the second
ITEMS = np.array(
    [[1.0, 0.0], [0.9, 0.1], [0.8, 0.0], [0.0, 1.0], [0.1, 0.9], [0.0, 0.8]], dtype=np.float32
)


def test_pooled_factors_score_the_neighbours_cluster_first():
    playlists = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    # prompt 0's neighbours are playlist 0 (weight 1) and playlist 1 (weight 0.2)
    weights = sp.csr_matrix(np.array([[1.0, 0.2, 0.0], [0.0, 0.5, 0.5]], dtype=np.float32))
    scores = pooled_factor_scores(weights, playlists, ITEMS)
    np.testing.assert_allclose(scores, (weights.toarray() @ playlists) @ ITEMS.T, rtol=1e-6)
    assert set(np.argsort(-scores[0])[:3]) == {0, 1, 2}
    assert set(np.argsort(-scores[1])[:3]) == {3, 4, 5}


def test_fold_in_smooths_a_list_towards_its_cluster_and_leaves_empty_rows_at_zero():
    knn = np.array(
        [[5.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 2.0, 1.0], np.zeros(6)],
        dtype=np.float32,
    )
    scores = fold_in_scores(knn, ITEMS, top=2)
    # row 0 votes item 0 only (item 1's zero vote is left out): its whole cluster comes first
    assert set(np.argsort(-scores[0])[:3]) == {0, 1, 2}
    assert scores[0, 1] > 0  # an item nobody voted for now scores
    assert set(np.argsort(-scores[1])[:3]) == {3, 4, 5}
    np.testing.assert_array_equal(scores[2], np.zeros(6))
    with pytest.raises(ValueError, match="top must be >= 1"):
        fold_in_scores(knn, ITEMS, top=0)


def test_max_blend_scales_each_row_to_its_maximum():
    base = np.array([[4.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    view = np.array([[0.0, 1.0, 10.0], [1.0, 3.0, 2.0]])
    np.testing.assert_allclose(max_blend(base, view, 0.0), [[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(max_blend(base, view, 1.0)[0], [1.0, 0.6, 1.0])
    # an empty kNN row is not divided by zero, and the view alone orders it
    blended = max_blend(base, view, 0.5)
    assert np.isfinite(blended).all()
    assert list(np.argsort(-blended[1])) == [1, 2, 0]


def test_hits_at_k_counts_a_relevant_item_in_the_top_k_with_ties_by_popularity():
    scores = np.array([[0.0, 3.0, 2.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    relevant = [np.array([2]), np.array([2])]
    by_index = np.arange(4)  # a popularity order that breaks ties by index
    np.testing.assert_array_equal(hits_at_k(scores, relevant, by_index, k=2), [1.0, 0.0])
    np.testing.assert_array_equal(hits_at_k(scores, relevant, by_index, k=3), [1.0, 1.0])
    # ties go to the more popular item, as the baselines rank
    np.testing.assert_array_equal(
        hits_at_k(scores, relevant, np.array([2, 0, 1, 3]), k=2), [1.0, 1.0]
    )


def test_the_command_scores_every_view_and_chooses_weights_on_validation(tmp_path, capsys):
    from tiny_artifact import build_tiny_artifact

    art = build_tiny_artifact(tmp_path)
    out = tmp_path / "views.json"
    argv = ["--artifact", str(art), "--playlists", str(tmp_path / "demo.jsonl")]
    assert main([*argv, "--weights", "0.1,0.5", "--fold-in-top", "5", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {row["system"]: row for row in result["rows"]}
    views = ("neighbour_factors", "fold_in_5")
    assert set(rows) == {
        "title_knn",
        *views,
        *(f"title_knn + {w} * {v}" for w in (0.1, 0.5) for v in views),
    }
    # the demo's titles name their genre: the kNN finds the playlists' tracks
    assert rows["title_knn"]["validation"] > 0.5
    assert rows["title_knn"]["test_vs_title_knn"]["diff"] == 0.0
    for view, chosen in result["chosen_on_validation"].items():
        blends = [r for name, r in rows.items() if name.endswith(f"* {view}")]
        assert rows[chosen]["validation"] == max(r["validation"] for r in blends)
    assert "| title_knn |" in capsys.readouterr().out
    assert main([*argv, "--weights", "a,b"]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
