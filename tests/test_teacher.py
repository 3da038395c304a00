"""Tests for text2tracks.teacher (title-kNN targets) and text2tracks.title_terms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from text2tracks.teacher import TitleNeighbors, keep_top_per_row, teacher_targets
from text2tracks.title_terms import title_term_matrix, title_terms

# two title families with disjoint tracks: "chill*" playlists hold items 0-4, "rock*" 5-9
PROMPTS = ["chill", "chill", "chill vibes", "rock", "rock anthem", "rock"]
RELEVANT = [[0, 1, 2], [1, 2, 3], [2, 3, 4], [5, 6], [6, 7, 8], [8, 9]]
N_ITEMS = 10


def test_keep_top_per_row_keeps_largest_and_powers():
    m = sp.csr_matrix(np.array([[0.1, 0.9, 0.5, 0.0], [0.2, 0.2, 0.2, 0.3]], dtype=np.float32))
    kept = keep_top_per_row(m, 2, 2.0).toarray()
    np.testing.assert_allclose(kept[0], [0, 0.81, 0.25, 0], rtol=1e-6)
    # ties go to the lower column
    np.testing.assert_allclose(kept[1], [0.04, 0, 0, 0.09], rtol=1e-6)


def test_neighbors_rank_similar_titles_first():
    nb = TitleNeighbors(n_neighbors=2).fit(PROMPTS)
    w = nb.weights(["chill vibes"]).toarray()[0]
    assert set(np.flatnonzero(w)) <= {0, 1, 2}
    assert w[2] == w.max()
    with pytest.raises(RuntimeError, match="before fit"):
        TitleNeighbors().weights(["x"])


def test_teacher_targets_are_distributions_over_the_title_family():
    t = teacher_targets(PROMPTS, RELEVANT, N_ITEMS)
    assert len(t) == len(PROMPTS)
    for p, (items, weights) in enumerate(zip(t.items, t.weights, strict=True)):
        assert items.shape == weights.shape
        assert weights.sum() == pytest.approx(1.0)
        family = set(range(5)) if p < 3 else set(range(5, 10))
        assert set(items.tolist()) <= family, p
    # leave-out: playlist 0's own-only evidence is replaced by its neighbours' votes; item 3 is
    # not in playlist 0 but in both other chill playlists, so it carries weight
    items, weights = t.items[0], t.weights[0]
    assert 3 in items.tolist()
    # item 2 is in all three chill playlists, so it is the teacher's favourite for every one
    assert items[np.argmax(weights)] == 2


def test_leave_out_removes_own_vote_and_own_weight_blends():
    kept = teacher_targets(PROMPTS, RELEVANT, N_ITEMS, leave_out=False)
    left = teacher_targets(PROMPTS, RELEVANT, N_ITEMS, leave_out=True)
    # playlist 3 ("rock") without its own vote: item 5 (only in playlist 3) disappears
    assert 5 in kept.items[3].tolist()
    assert 5 not in left.items[3].tolist()
    blended = teacher_targets(PROMPTS, RELEVANT, N_ITEMS, own_weight=0.5)
    share = dict(zip(blended.items[3].tolist(), blended.weights[3].tolist(), strict=True))
    assert share[5] == pytest.approx(0.25)  # half the mass, uniform over its 2 own tracks
    only_own = teacher_targets(PROMPTS, RELEVANT, N_ITEMS, own_weight=1.0)
    assert sorted(only_own.items[4].tolist()) == RELEVANT[4]


def test_teacher_falls_back_to_own_tracks_without_neighbours():
    t = teacher_targets(["alpha", "zzzz"], [[0, 1], [2]], 3)
    # each title's only neighbour is itself; left out, the playlist keeps its own tracks
    assert t.items[1].tolist() == [2] and t.weights[1].tolist() == [1.0]


def test_teacher_bad_arguments():
    with pytest.raises(ValueError, match="differ in length"):
        teacher_targets(["a"], [], 3)
    with pytest.raises(ValueError, match="own_weight"):
        teacher_targets(["a"], [[0]], 3, own_weight=1.5)
    with pytest.raises(ValueError, match="outside the catalogue"):
        teacher_targets(["a"], [[5]], 3)


def test_title_terms_and_matrix():
    assert title_terms("Chill Vibes 🔥!!") == ["chill", "vibes", "🔥", "=chill vibes 🔥"]
    assert title_terms("") == []
    interactions = sp.csr_matrix(
        (np.ones(5, dtype=np.float32), ([0, 0, 1, 2, 2], [0, 1, 1, 2, 3])), shape=(3, 4)
    )
    matrix, terms = title_term_matrix(["chill", "Chill vibes", "rock"], interactions)
    assert terms == ["chill"]  # the only term of >= 2 playlists
    np.testing.assert_array_equal(matrix.toarray(), [[1, 2, 0, 0]])
    with pytest.raises(ValueError, match="titles for"):
        title_term_matrix(["a"], interactions)
