"""The sparse, blocked title-kNN teacher against a dense brute-force reference on random data."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from text2tracks.ragged import Ragged
from text2tracks.teacher import TitleNeighbors, keep_top_per_row, prompt_text, teacher_targets

WORDS = ["chill", "rock", "vibes", "party", "summer", "hits", "love", "Rock"]


def random_data(seed: int, n: int = 90, n_items: int = 70):
    """Repeated titles (some permutations of each other, one empty, one unlike any other),
    playlists of 0-12 items (an occasional repeated item)."""
    rng = np.random.default_rng(seed)
    titles = [" ".join(rng.choice(WORDS, size=rng.integers(1, 3))) for _ in range(14)]
    titles += ["chill rock", "rock chill", "", "zzqx"]
    prompts = [titles[i] for i in rng.zipf(1.6, size=n) % len(titles)]
    relevant = []
    for _ in range(n):
        items = rng.choice(n_items, size=rng.integers(0, 13), replace=False).tolist()
        if items and rng.random() < 0.1:
            items.append(items[0])
        relevant.append(items)
    return prompts, relevant, n_items


def reference_scores(prompts, relevant, n_items, n_neighbors, power, leave_out):
    """Dense ``(n, n_items)`` teacher scores per playlist, one playlist at a time."""
    vec = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 4),
        preprocessor=prompt_text,
        sublinear_tf=True,
        dtype=np.float32,
    ).fit(prompts)
    x = vec.transform(prompts).tocsr()
    sims = (x @ x.T).toarray()
    n = len(prompts)
    weights = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        order = np.argsort(-sims[i], kind="stable")[:n_neighbors]  # ties to the lower column
        order = order[sims[i, order] > 0]
        weights[i, order] = np.power(sims[i, order], power).astype(np.float32)
    held = np.zeros((n, n_items))
    for p, items in enumerate(relevant):
        np.add.at(held[p], np.asarray(items, dtype=np.int64), 1.0)
    scores = weights @ held
    if leave_out:
        scores -= np.diag(weights)[:, None] * held
    return np.maximum(scores, 0.0)


def check_against_reference(out, scores, relevant, top_items, own_weight):
    """Items and probabilities as the reference's, where the teacher's cut may fall anywhere
    among (near-)tied scores."""
    assert len(out) == len(relevant)
    for p, mine in enumerate(relevant):
        s, m = scores[p], len(mine)
        mult = np.bincount(np.asarray(mine, dtype=np.int64), minlength=s.size).astype(float)
        pos = np.flatnonzero(s > 1e-9)
        k = min(top_items, pos.size)
        has_teacher, has_own = k > 0, m > 0
        t_share = (1 - own_weight) if has_teacher and has_own else float(has_teacher)
        o_share = own_weight if has_teacher and has_own else float(has_own)
        own_part = o_share * mult / max(m, 1)
        items, weights = out.items[p], out.weights[p].astype(np.float64)
        assert np.all(np.diff(items) > 0), p  # sorted and distinct
        teacher_part = weights - own_part[items]
        kept = items[teacher_part > 1e-6] if t_share > 0 else np.zeros(0, np.int64)
        if k and t_share > 0:
            floor = np.sort(s[pos])[::-1][k - 1]
            tol = 1e-5 * s.max()
            assert kept.size == k, p
            assert np.all(s[kept] >= floor - tol), p
            assert np.all(np.isin(np.flatnonzero(s > floor + tol), kept)), p
        expected = np.zeros(s.size)
        if t_share > 0:
            expected[kept] += t_share * s[kept] / s[kept].sum()
        expected += own_part
        np.testing.assert_array_equal(items, np.flatnonzero(expected > 0), err_msg=str(p))
        np.testing.assert_allclose(weights, expected[items], rtol=1e-5, atol=1e-6)
        if items.size:
            assert weights.sum() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("leave_out", [True, False])
@pytest.mark.parametrize("own_weight", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("top_items", [4, 1000])
def test_matches_dense_reference(leave_out, own_weight, top_items):
    prompts, relevant, n_items = random_data(seed=int(own_weight * 10) + top_items)
    assert any(len(r) == 0 for r in relevant)
    n_neighbors, power = 6, 1.5
    out = teacher_targets(
        prompts,
        relevant,
        n_items,
        top_items=top_items,
        own_weight=own_weight,
        leave_out=leave_out,
        n_neighbors=n_neighbors,
        similarity_power=power,
    )
    scores = reference_scores(prompts, relevant, n_items, n_neighbors, power, leave_out)
    check_against_reference(out, scores, relevant, top_items, own_weight)


def test_tiny_block_budget_gives_the_one_block_result():
    prompts, relevant, n_items = random_data(seed=3, n=120)
    kwargs = dict(top_items=5, own_weight=0.2, n_neighbors=9)
    one = teacher_targets(prompts, relevant, n_items, **kwargs)
    many = teacher_targets(prompts, relevant, n_items, max_block_bytes=1, progress=True, **kwargs)
    np.testing.assert_array_equal(one.items.indptr, many.items.indptr)
    np.testing.assert_array_equal(one.items.values, many.items.values)
    # same items, same weights to float32 rounding: numpy (2.4 and later) vectorises a sum by the
    # shape of its block, so a row's normalising sum may differ in the last bit between blocks
    np.testing.assert_allclose(one.weights.values, many.weights.values, rtol=1e-6, atol=0)


def test_ragged_input_equals_list_input_and_output_types():
    prompts, relevant, n_items = random_data(seed=4)
    listed = teacher_targets(prompts, relevant, n_items, top_items=6, own_weight=0.5)
    ragged = teacher_targets(
        prompts, Ragged.from_rows(relevant), n_items, top_items=6, own_weight=0.5
    )
    assert isinstance(ragged.items, Ragged) and isinstance(ragged.weights, Ragged)
    assert ragged.items.indptr is ragged.weights.indptr
    assert ragged.items.values.dtype == np.int32 and ragged.weights.values.dtype == np.float32
    np.testing.assert_array_equal(listed.items.values, ragged.items.values)
    np.testing.assert_array_equal(listed.weights.values, ragged.weights.values)
    sums = np.add.reduceat(ragged.weights.values, ragged.weights.indptr[:-1])
    lengths = ragged.weights.lengths()
    np.testing.assert_allclose(sums[lengths > 0], 1.0, atol=1e-5)


@pytest.mark.parametrize("max_block_bytes", [1, 1 << 20])
def test_neighbors_match_keep_top_per_row_over_all_playlists(max_block_bytes):
    # many equal titles, so the n-th neighbour cuts through a title's playlists
    prompts, _, _ = random_data(seed=5, n=150)
    nb = TitleNeighbors(n_neighbors=11, max_block_bytes=max_block_bytes).fit(prompts)
    queries = ["chill", "rock vibes", "summer hits party", "", "qq"]
    x = nb.vectorizer_.transform(prompts).tocsr()
    q = nb.vectorizer_.transform(queries).tocsr()
    expected = keep_top_per_row(q @ x.T, 11, 1.5).toarray()
    got = nb.weights(queries).toarray()
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(
        nb.weights(queries, n_neighbors=3).toarray()[0] > 0,
        keep_top_per_row(q @ x.T, 3, 1.5).toarray()[0] > 0,
    )


def test_scale_arguments_raise():
    with pytest.raises(ValueError, match="top_items"):
        teacher_targets(["a"], [[0]], 3, top_items=0)
    with pytest.raises(ValueError, match="max_block_bytes"):
        teacher_targets(["a"], [[0]], 3, max_block_bytes=0)
    with pytest.raises(ValueError, match="n_neighbors"):
        teacher_targets(["a"], [[0]], 3, n_neighbors=0)
    with pytest.raises(ValueError, match="outside the catalogue"):
        teacher_targets(["a", "b"], Ragged.from_rows([[0], [-1]]), 3)
    assert len(teacher_targets([], [], 3)) == 0
