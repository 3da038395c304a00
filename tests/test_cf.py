"""CF embeddings on a block-structured matrix whose answer is known (implicit's test style)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from semantic_ids.cf import CFConfig, CFModel, fit_cf


def block_matrix(n_blocks=4, items_per_block=25, playlists=200, per_playlist=10, seed=0):
    rng = np.random.default_rng(seed)
    rows, cols = [], []
    for p in range(playlists):
        block = p % n_blocks
        items = rng.choice(
            np.arange(block * items_per_block, (block + 1) * items_per_block),
            per_playlist,
            replace=False,
        )
        rows += [p] * per_playlist
        cols += items.tolist()
    shape = (playlists, n_blocks * items_per_block)
    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    return matrix, np.arange(shape[1]) // items_per_block


def cosine(f):
    f = f / np.linalg.norm(f, axis=1, keepdims=True)
    return f @ f.T


@pytest.mark.parametrize(
    "config",
    [
        CFConfig(factors=8, iterations=10),
        CFConfig(factors=8, iterations=10, weighting="none"),
        CFConfig(factors=8, iterations=10, weighting="tfidf"),
        CFConfig(model="bpr", factors=8, iterations=60, learning_rate=0.05),
    ],
    ids=["als-bm25", "als-none", "als-tfidf", "bpr"],
)
def test_same_block_items_are_closer(config):
    matrix, blocks = block_matrix()
    model = fit_cf(matrix, config, show_progress=False)
    assert model.item_factors.dtype == np.float32
    assert model.item_factors.shape[0] == 100 and model.playlist_factors.shape[0] == 200
    sim = cosine(model.item_factors)
    same = blocks[:, None] == blocks[None, :]
    np.fill_diagonal(same, False)
    other = blocks[:, None] != blocks[None, :]
    assert sim[same].mean() > sim[other].mean() + 0.3
    # a playlist's factor ranks its own block first
    top, scores = model.recommend_for_factor(model.playlist_factors[0], k=10)
    assert (blocks[top] == blocks[0]).mean() >= 0.8
    assert np.all(np.diff(scores) <= 0)


def test_fit_is_seeded():
    matrix, _ = block_matrix()
    a = fit_cf(
        matrix, CFConfig(factors=8, iterations=5, seed=1, num_threads=1), show_progress=False
    )
    b = fit_cf(
        matrix, CFConfig(factors=8, iterations=5, seed=1, num_threads=1), show_progress=False
    )
    np.testing.assert_allclose(a.item_factors, b.item_factors, rtol=1e-5, atol=1e-6)


def test_recommend_batch_equals_single():
    matrix, _ = block_matrix()
    model = fit_cf(matrix, CFConfig(factors=8, iterations=5), show_progress=False)
    batch_items, batch_scores = model.recommend_for_factor(model.playlist_factors[:3], k=5)
    for row in range(3):
        items, scores = model.recommend_for_factor(model.playlist_factors[row], k=5)
        np.testing.assert_array_equal(items, batch_items[row])
        np.testing.assert_allclose(scores, batch_scores[row], rtol=1e-5)
    items, _ = model.recommend_for_factor(
        model.playlist_factors[0], k=5, exclude=batch_items[0][:2]
    )
    assert not set(items) & set(batch_items[0][:2].tolist())


def test_save_load_round_trip(tmp_path):
    matrix, _ = block_matrix()
    model = fit_cf(matrix, CFConfig(factors=8, iterations=3), show_progress=False)
    model.save(tmp_path / "cf")
    loaded = CFModel.load(tmp_path / "cf")
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    np.testing.assert_array_equal(loaded.playlist_factors, model.playlist_factors)


def test_bad_input_and_config_raise():
    with pytest.raises(ValueError, match="model"):
        CFConfig(model="svd")
    with pytest.raises(ValueError, match="weighting"):
        CFConfig(weighting="log")
    with pytest.raises(ValueError, match="unknown CFConfig keys"):
        CFConfig.from_dict({"factor": 3})
    with pytest.raises(ValueError, match="empty"):
        fit_cf(sp.csr_matrix((3, 4), dtype=np.float32), show_progress=False)
    with pytest.raises(ValueError, match="sparse"):
        fit_cf(np.ones((3, 4)), show_progress=False)


def test_non_finite_factors_are_reported(monkeypatch):
    matrix, _ = block_matrix()
    import implicit.cpu.als

    original = implicit.cpu.als.AlternatingLeastSquares.fit

    def poisoned(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.item_factors[3, 0] = np.nan

    monkeypatch.setattr(implicit.cpu.als.AlternatingLeastSquares, "fit", poisoned)
    with pytest.raises(ValueError, match="non-finite item factors in 1 rows"):
        fit_cf(matrix, CFConfig(factors=8, iterations=2), show_progress=False)
