"""eval.fusion_headroom: the mixture fitted on validation, its ceiling on test, the union."""

from __future__ import annotations

import numpy as np
import pytest

from eval.fusion_headroom import either_hits, main, mixture_headroom

N_ITEMS, DEPTH = 60, 12


def _views(n_prompts: int, beam_right, other_right, seed: int = 0) -> dict:
    """Per prompt ``i`` the relevant item is ``i``. Where ``beam_right``, the beam is sure of it
    (log-probability 0, the rest -8) and the other view spreads its votes evenly over items
    that are not it; where ``other_right``, the other view puts almost all its votes on it and
    the beam is flat over others. Elsewhere both are flat over wrong items."""
    rng = np.random.default_rng(seed)
    beam_items = np.zeros((n_prompts, DEPTH), dtype=np.int64)
    other_items = np.zeros_like(beam_items)
    beam_scores = np.full((n_prompts, DEPTH), -3.0)
    other_scores = np.ones((n_prompts, DEPTH))
    for i in range(n_prompts):
        wrong = rng.permutation([j for j in range(N_ITEMS) if j != i])
        beam_items[i], other_items[i] = wrong[:DEPTH], wrong[DEPTH : 2 * DEPTH]
        if beam_right[i]:
            beam_items[i, 0], beam_scores[i] = i, np.r_[0.0, np.full(DEPTH - 1, -8.0)]
        if other_right[i]:
            other_items[i, 0], other_scores[i, 0] = i, 50.0
    views = {"beam": (beam_items, beam_scores), "other": (other_items, other_scores)}
    return {"views": views, "relevant": [np.asarray([i]) for i in range(n_prompts)]}


def _halves(n: int, seed: int) -> dict:
    """The beam right on the first 40%, the other view on the next 40%, neither on the rest."""
    idx = np.arange(n)
    return _views(n, idx < 0.4 * n, (idx >= 0.4 * n) & (idx < 0.8 * n), seed)


def test_a_mixture_of_two_complementary_views_hits_where_either_does():
    groups = np.arange(N_ITEMS)  # every item its own first code: no diversification effect
    validation, test = _halves(50, seed=1), _halves(50, seed=2)
    grid = ((0.1, 0.5, 0.9), (0.5, 1.0), (0.0,))
    found = mixture_headroom(validation, test, groups, grid)
    # each view alone hits 40%, the fitted mixture 80%: every prompt either view is sure of
    assert found["fitted_hits"].mean() == pytest.approx(0.8)
    assert found["ceiling_hits"].mean() == pytest.approx(0.8)
    assert set(found["fitted_point"]) == {"weight", "temperature", "penalty"}
    either = either_hits(test["views"]["beam"][0], test["views"]["other"][0], test["relevant"])
    assert either.mean() == pytest.approx(0.8)
    assert either[:20].all() and either[20:40].all() and not either[40:].any()


def test_the_ceiling_is_picked_on_test_and_bounds_a_misled_fit():
    groups = np.arange(N_ITEMS)
    n = 50
    idx = np.arange(n)
    # validation: only the other view is ever right, so the fit leans on it (beam weight 0.01);
    # test: only the beam is, which the ceiling (picked on test) follows and the fit misses:
    # at weight 0.01 the beam's sure item gets 0.01, each of the other view's even votes 0.99/12
    validation = _views(n, np.zeros(n, bool), idx < 40, seed=3)
    test = _views(n, idx < 40, np.zeros(n, bool), seed=4)
    grid = ((0.01, 0.9), (1.0,), (0.0,))
    found = mixture_headroom(validation, test, groups, grid)
    assert found["fitted_point"]["weight"] == pytest.approx(0.01)
    assert found["ceiling_point"]["weight"] == pytest.approx(0.9)
    assert found["ceiling_hits"].mean() == pytest.approx(0.8)
    assert found["fitted_hits"].mean() == pytest.approx(0.0)


def test_main_names_a_folder_that_is_not_a_benchmark_output(tmp_path, capsys):
    assert main(["--benchmark-dir", str(tmp_path), "--playlists", "x.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "not an eval.benchmark output folder" in err and "python -m eval.benchmark" in err


def test_the_exact_beam_view_appends_the_models_scores_of_the_other_views_candidates():
    from types import SimpleNamespace

    from eval.fusion_headroom import exact_beam_view

    class Model:
        catalog = SimpleNamespace(item_ids=["a", "b", "c", "d"])

        def score_tracks(self, prompts, rows):  # NaN-padded, as Text2Tracks returns them
            out = np.full((len(rows), max(map(len, rows))), np.nan)
            for i, (p, row) in enumerate(zip(prompts, rows, strict=True)):
                out[i, : len(row)] = [-float(ord(t) - 96) - len(p) for t in row]
            return out

    vocab = SimpleNamespace(item_ids=["a", "b", "c", "d", "unknown"])
    beam = (np.array([[0, 1], [2, -1]]), np.array([[-0.5, -0.7], [-0.2, np.nan]]))
    others = np.array([[2, 4, 3], [0, -1, -1]])
    items, scores = exact_beam_view(Model(), ["x", "yy"], vocab, beam, others)
    np.testing.assert_array_equal(items, [[0, 1, 2, 4, 3], [2, -1, 0, -1, -1]])
    # c = -3 - 1, d = -4 - 1 for prompt "x"; a = -1 - 2 for "yy"; outside the catalogue: NaN
    np.testing.assert_array_equal(
        scores, [[-0.5, -0.7, -4.0, np.nan, -5.0], [-0.2, np.nan, -3.0, np.nan, np.nan]]
    )
