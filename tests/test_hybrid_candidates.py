"""eval.hybrid_candidates.baseline_view: a baseline's list, and its scores for other candidates."""

from __future__ import annotations

import numpy as np

from eval.hybrid_candidates import baseline_view

SCORES = np.array([[0.0, 3.0, 1.0, 0.5, 2.0, 0.2], [4.0, 0.0, 0.1, 2.0, 0.0, 1.0]])


class _Baseline:
    """Fixed scores per prompt (by position in the list given)."""

    def scores(self, prompts):
        return SCORES[[int(p) for p in prompts]]

    def recommend(self, prompts, k):
        return np.argsort(-self.scores(prompts), axis=1, kind="stable")[:, :k]


def test_baseline_view_appends_other_candidates_with_the_baselines_scores():
    items, scores = baseline_view(_Baseline(), ["0", "1"], depth=2, block=1)
    assert items.tolist() == [[1, 4], [0, 3]]
    assert scores.tolist() == [[3.0, 2.0], [4.0, 2.0]]
    also = np.array([[5, -1, 1], [2, 4, -1]])
    items, scores = baseline_view(_Baseline(), ["0", "1"], depth=2, block=1, also=also)
    assert items.tolist() == [[1, 4, 5, -1, 1], [0, 3, 2, 4, -1]]
    np.testing.assert_array_equal(scores[0], [3.0, 2.0, 0.2, -np.inf, 3.0])
    np.testing.assert_array_equal(scores[1], [4.0, 2.0, 0.1, 0.0, -np.inf])
