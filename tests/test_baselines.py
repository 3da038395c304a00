"""Baselines on a tiny synthetic set with a known answer: "rock" and "jazz" own disjoint tracks."""

from __future__ import annotations

import numpy as np
import pytest

from eval.baselines import (
    BM25Baseline,
    DenseBiEncoderBaseline,
    ExactTitleBaseline,
    PopularityBaseline,
    TitleKNNBaseline,
    normalize_title,
    rank_scores,
)
from semantic_ids.interactions import build_interactions
from semantic_ids.playlists import Playlist, Track

ROCK = [f"r{i}" for i in range(12)]
JAZZ = [f"j{i}" for i in range(12)]
POP = [f"p{i}" for i in range(12)]


def _data():
    rng = np.random.default_rng(0)
    playlists = []
    for block, title in ((ROCK, "Rock"), (JAZZ, "jazz!"), (POP, "summer pop")):
        for i in range(6):
            tracks = tuple(rng.choice(block, size=8, replace=False).tolist())
            playlists.append(Playlist(f"{title}-{i}", title, tracks))
    # pop is the most popular block overall: a few more playlists
    for i in range(4):
        playlists.append(Playlist(f"extra-{i}", "party", tuple(POP[:10])))
    tracks = {t: Track(t, f"song {t}", "Band", "Album") for t in ROCK + JAZZ + POP}
    tracks["j3"] = Track("j3", "Blue Monk", "Thelonious Monk", "Monk")
    matrix, vocab = build_interactions(playlists, min_count=1)
    return playlists, tracks, vocab, matrix


def _block(vocab, ids):
    return set(vocab.indices(ids).tolist())


def _assert_valid(rows: np.ndarray, n_prompts: int, k: int, n_items: int):
    assert rows.dtype == np.int64 and rows.shape == (n_prompts, k)
    for row in rows:
        assert len(set(row.tolist())) == k
        assert row.min() >= 0 and row.max() < n_items


@pytest.fixture(scope="module")
def data():
    return _data()


def test_normalize_title():
    assert normalize_title("  Chill Vibes!! ") == normalize_title("chill-vibes") == "chillvibes"
    assert normalize_title("ＲＯＣＫ") == "rock"  # NFKC full-width
    assert normalize_title("🔥 hits 🔥") == "🔥hits🔥"
    assert normalize_title("Música Латина") == "músicaлатина"
    assert normalize_title("!!!") == "!!!"


def test_rank_scores_ties_to_popularity_and_padding():
    popularity_order = np.array([3, 0, 2, 1])
    scores = np.array([[0.0, 5.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0, 0, 0, 0]])
    out = rank_scores(scores, 3, popularity_order)
    assert out.tolist() == [[1, 3, 0], [3, 0, 2], [3, 0, 2]]
    wide = rank_scores(scores[:1], 6, popularity_order)
    assert wide.tolist() == [[1, 3, 0, 2, -1, -1]]


def test_popularity(data):
    playlists, tracks, vocab, _ = data
    rows = PopularityBaseline().fit(playlists, vocab).recommend(["anything", "else"], k=10)
    _assert_valid(rows, 2, 10, len(vocab))
    assert set(rows[0].tolist()) <= _block(vocab, POP)
    assert (rows[0] == rows[1]).all()


@pytest.mark.parametrize("cls", [ExactTitleBaseline, TitleKNNBaseline])
def test_title_baselines_find_the_block(data, cls):
    playlists, tracks, vocab, _ = data
    model = cls().fit(playlists, vocab)
    rows = model.recommend(["rock", "JAZZ", "unheard of"], k=10)
    _assert_valid(rows, 3, 10, len(vocab))
    assert set(rows[0].tolist()) <= _block(vocab, ROCK)
    assert set(rows[1].tolist()) <= _block(vocab, JAZZ)
    assert set(rows[2].tolist()) <= _block(vocab, POP)  # no match: popularity
    rows = model.recommend(["rock"], k=20)  # 12 rock tracks, then popular ones
    assert set(rows[0, :12].tolist()) == _block(vocab, ROCK)
    _assert_valid(rows, 1, 20, len(vocab))


def test_title_knn_tolerates_typos(data):
    playlists, tracks, vocab, _ = data
    model = TitleKNNBaseline(n_neighbors=5).fit(playlists, vocab)
    rows = model.recommend(["rockk", "jaz"], k=10)
    assert set(rows[0].tolist()) <= _block(vocab, ROCK)
    assert set(rows[1].tolist()) <= _block(vocab, JAZZ)
    assert ExactTitleBaseline().fit(playlists, vocab).recommend(["rockk"], 10)[0].tolist() == (
        PopularityBaseline().fit(playlists, vocab).recommend(["x"], 10)[0].tolist()
    )


@pytest.mark.parametrize("expand", [False, True])
def test_bm25_finds_track_by_name(data, expand):
    playlists, tracks, vocab, _ = data
    model = BM25Baseline(expand_with_titles=expand).fit(playlists, vocab, tracks=tracks)
    rows = model.recommend(["blue monk", "thelonious", "zzz"], k=10)
    _assert_valid(rows, 3, 10, len(vocab))
    j3 = vocab.index_of("j3")
    assert rows[0, 0] == j3 and rows[1, 0] == j3
    if expand:
        assert set(model.recommend(["rock"], 10)[0].tolist()) <= _block(vocab, ROCK)


def test_dense_biencoder_learns_titles(data):
    playlists, tracks, vocab, matrix = data
    # item factors: one direction per block plus noise (a stand-in for CF factors)
    rng = np.random.default_rng(0)
    factors = rng.normal(scale=0.1, size=(len(vocab), 8)).astype(np.float32)
    for axis, block in enumerate((ROCK, JAZZ, POP)):
        factors[vocab.indices(block), axis] += 1.0
    model = DenseBiEncoderBaseline(epochs=15, hidden=32, batch_size=32, lr=1e-2, verbose=False)
    model.fit(playlists, vocab, item_factors=factors)
    assert model.train_seconds > 0
    rows = model.recommend(["Rock", "jazz!"], k=10)
    _assert_valid(rows, 2, 10, len(vocab))
    assert set(rows[0].tolist()) <= _block(vocab, ROCK)
    assert set(rows[1].tolist()) <= _block(vocab, JAZZ)
    again = DenseBiEncoderBaseline(epochs=15, hidden=32, batch_size=32, lr=1e-2, verbose=False)
    again.fit(playlists, vocab, item_factors=factors)
    np.testing.assert_allclose(again.encode(["Rock"]), model.encode(["Rock"]), rtol=1e-5)


def test_dense_biencoder_in_batch_negatives(data):
    playlists, tracks, vocab, _ = data
    rng = np.random.default_rng(1)
    factors = rng.normal(scale=0.1, size=(len(vocab), 8)).astype(np.float32)
    for axis, block in enumerate((ROCK, JAZZ, POP)):
        factors[vocab.indices(block), axis] += 1.0
    model = DenseBiEncoderBaseline(
        negatives="in_batch", epochs=15, hidden=32, batch_size=16, lr=1e-2, verbose=False
    ).fit(playlists, vocab, item_factors=factors)
    rows = model.recommend(["Rock"], k=10)
    assert set(rows[0].tolist()) <= _block(vocab, ROCK)


def test_dense_biencoder_needs_factors(data):
    playlists, tracks, vocab, _ = data
    with pytest.raises(ValueError, match="item_factors"):
        DenseBiEncoderBaseline().fit(playlists, vocab)
    with pytest.raises(ValueError, match="shape"):
        DenseBiEncoderBaseline().fit(playlists, vocab, item_factors=np.zeros((3, 4)))


def test_small_catalogue_pads_with_minus_one():
    playlists = [Playlist("a", "x", ("t1", "t2")), Playlist("b", "y", ("t2",))]
    _, vocab = build_interactions(playlists, min_count=1)
    for model in (PopularityBaseline(), ExactTitleBaseline(), TitleKNNBaseline()):
        rows = model.fit(playlists, vocab).recommend(["x"], k=4)
        assert rows[0, 2:].tolist() == [-1, -1] and sorted(rows[0, :2].tolist()) == [0, 1]


def test_recommend_before_fit_and_string_prompt(data):
    with pytest.raises(RuntimeError):
        TitleKNNBaseline().recommend(["x"])
    playlists, tracks, vocab, _ = data
    with pytest.raises(TypeError):
        TitleKNNBaseline().fit(playlists, vocab).recommend("rock")


def test_title_knn_settings_changed_after_fit_take_effect(data):
    """tune_title_knn sets n_neighbors / similarity_power on one fitted model per vectoriser;
    the neighbour weights must follow them (a stale copy once made that grid a no-op)."""
    playlists, _, vocab, _ = data
    model = TitleKNNBaseline(n_neighbors=1000).fit(playlists, vocab)
    prompts = ["rock", "jazz", "summer"]
    wide = model.neighbor_weights(prompts)
    model.n_neighbors, model.similarity_power = 1, 2.0
    narrow = model.neighbor_weights(prompts)
    assert np.diff(narrow.indptr).max() == 1 < np.diff(wide.indptr).max()
    # the one neighbour kept is the most similar, its similarity squared instead of ** 1.5
    row = wide.getrow(1).toarray()[0]
    j = int(np.argmax(row))
    assert narrow[1, j] == pytest.approx((row[j] ** (1 / 1.5)) ** 2.0, rel=1e-4)


@pytest.mark.parametrize(
    "cls",
    [
        PopularityBaseline,
        ExactTitleBaseline,
        TitleKNNBaseline,
        BM25Baseline,
        DenseBiEncoderBaseline,
    ],
)
def test_top_k_is_the_head_of_a_deeper_ranking(data, cls):
    """Ranking 100 deep for the report's Hits@K curve must not move the figures at K = 10."""
    playlists, tracks, vocab, _ = data
    rng = np.random.default_rng(0)
    factors = rng.normal(size=(len(vocab), 8)).astype(np.float32)
    model = (
        cls(epochs=2, hidden=16, batch_size=32, verbose=False)
        if cls is DenseBiEncoderBaseline
        else cls()
    )
    model.fit(playlists, vocab, tracks=tracks, item_factors=factors)
    prompts = ["Rock", "jazz!", "summer pop", "party", "monk", "nothing like it"]
    deep = model.recommend(prompts, k=30)
    np.testing.assert_array_equal(model.recommend(prompts, k=5), deep[:, :5])
