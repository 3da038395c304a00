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


class _Model:
    """``recommend_arrays`` over a catalogue of six tracks "t0".."t5", counting its searches."""

    def __init__(self):
        self.calls = []

    def recommend_arrays(self, prompts, k, batch_size, **options):
        self.calls.append(options)
        ids = np.array([[f"t{(i + j) % 6}" for j in range(k)] for i in range(len(prompts))])
        return ids, -np.arange(k, dtype=float)[None].repeat(len(prompts), 0)


class _Vocab:
    item_ids = [f"t{i}" for i in range(6)]


class _Counted(_Baseline):
    def __init__(self):
        self.runs = 0

    def recommend(self, prompts, k):
        self.runs += 1
        return super().recommend(prompts, k)


def test_fusion_inputs_search_only_what_a_fusion_reads_and_run_the_baseline_once():
    from eval.hybrid_candidates import _fusion_inputs

    prompts = ["0", "1"]
    model, knn = _Model(), _Counted()
    every = _fusion_inputs(model, {"knn": knn}, prompts, _Vocab(), depth=2, batch=8, k=2)
    assert knn.runs == 1 and len(model.calls) == 2  # the beam and the generative answer
    plain = baseline_view(_Baseline(), prompts, depth=2)
    beam = every["candidate_reranker"]["beam"]
    np.testing.assert_array_equal(every["candidate_reranker"]["knn"][0], plain[0])
    np.testing.assert_array_equal(every["candidate_reranker"]["knn"][1], plain[1])
    np.testing.assert_array_equal(every["list_interleave"]["knn"], plain[0])
    mixed = baseline_view(_Baseline(), prompts, depth=2, also=beam[0])
    np.testing.assert_array_equal(every["score_mixture"]["knn"][0], mixed[0])
    np.testing.assert_array_equal(every["score_mixture"]["beam"][0], beam[0])
    # the interleave alone needs no beam search, only the generative answer
    model, knn = _Model(), _Counted()
    only = _fusion_inputs(model, {"knn": knn}, prompts, _Vocab(), 2, 8, 2, only="list_interleave")
    assert list(only) == ["list_interleave"] and len(model.calls) == 1 and knn.runs == 1
    assert "diversity" not in model.calls[0]  # the API's own answer, not the raw beam
    np.testing.assert_array_equal(only["list_interleave"]["knn"], plain[0])
