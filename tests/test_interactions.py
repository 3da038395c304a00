"""Interaction matrix and item vocabulary: exact values on a hand-made example."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from semantic_ids.interactions import ItemVocab, build_interactions, catalogue_tracks
from semantic_ids.playlists import Playlist, PlaylistSet

PLAYLISTS = [
    Playlist("p0", "a", ("x", "y", "z")),
    Playlist("p1", "b", ("y", "z", "w")),
    Playlist("p2", "c", ("z", "y", "y")),  # repeated track counts once
    Playlist("p3", "d", ("v",)),
]
# counts: z 3, y 3, x 1, w 1, v 1 -> order by (-count, id): y, z, v, w, x


def dense(matrix: sp.csr_matrix) -> np.ndarray:
    return matrix.toarray()


def test_exact_matrix_min_count_1():
    matrix, vocab = build_interactions(PLAYLISTS, min_count=1)
    assert isinstance(matrix, sp.csr_matrix)
    assert matrix.dtype == np.float32
    assert vocab.item_ids == ("y", "z", "v", "w", "x")
    np.testing.assert_array_equal(vocab.counts, [3, 3, 1, 1, 1])
    assert vocab.counts.dtype == np.int64
    expected = np.array(
        [[1, 1, 0, 0, 1], [1, 1, 0, 1, 0], [1, 1, 0, 0, 0], [0, 0, 1, 0, 0]], dtype=np.float32
    )
    np.testing.assert_array_equal(dense(matrix), expected)
    # counts are the column sums of the binary matrix
    np.testing.assert_array_equal(np.asarray(matrix.sum(axis=0)).ravel(), vocab.counts)


def test_min_count_filters_items_keeps_rows():
    matrix, vocab = build_interactions(PlaylistSet(PLAYLISTS), min_count=2)
    assert vocab.item_ids == ("y", "z")
    assert matrix.shape == (4, 2)
    np.testing.assert_array_equal(dense(matrix), [[1, 1], [1, 1], [1, 1], [0, 0]])
    empty, vocab4 = build_interactions(PLAYLISTS, min_count=4)
    assert len(vocab4) == 0 and empty.shape == (4, 0)


def test_vocab_reuse_drops_unknown_tracks():
    _, vocab = build_interactions(PLAYLISTS, min_count=2)
    held_out = [Playlist("h0", "x", ("q", "z")), Playlist("h1", "y", ("q",))]
    matrix, same = build_interactions(held_out, vocab=vocab)
    assert same is vocab
    np.testing.assert_array_equal(dense(matrix), [[0, 1], [0, 0]])
    assert catalogue_tracks(held_out[0], vocab) == [1]
    assert catalogue_tracks(Playlist("h2", "t", ("z", "q", "y", "z")), vocab) == [1, 0]


def test_order_is_deterministic_ties_by_track_id():
    shuffled = [PLAYLISTS[i] for i in (3, 2, 0, 1)]
    _, a = build_interactions(PLAYLISTS, min_count=1)
    _, b = build_interactions(shuffled, min_count=1)
    assert a == b


def test_matrix_agrees_with_brute_force_on_random_data():
    rng = np.random.default_rng(0)
    playlists = [
        Playlist(str(i), "t", tuple(f"t{j}" for j in rng.integers(0, 60, rng.integers(1, 15))))
        for i in range(200)
    ]
    matrix, vocab = build_interactions(playlists, min_count=3)
    reference = np.zeros((len(playlists), len(vocab)), dtype=np.float32)
    for r, playlist in enumerate(playlists):
        for track in playlist.track_ids:
            if track in vocab:
                reference[r, vocab.index_of(track)] = 1.0
    np.testing.assert_array_equal(dense(matrix), reference)
    counts = {t: sum(t in p.track_ids for p in playlists) for p in playlists for t in p.track_ids}
    expected = sorted((t for t, c in counts.items() if c >= 3), key=lambda t: (-counts[t], t))
    assert list(vocab.item_ids) == expected


def test_bad_min_count():
    with pytest.raises(ValueError, match="min_count"):
        build_interactions(PLAYLISTS, min_count=0)


def test_vocab_lookup_and_errors():
    vocab = ItemVocab(("a", "b", "c"), np.array([5, 3, 3]))
    assert len(vocab) == 3
    assert vocab.index_of("b") == 1
    with pytest.raises(KeyError, match="'zz' is not in the catalogue"):
        vocab.index_of("zz")
    np.testing.assert_array_equal(vocab.indices(["c", "zz", "a"]), [2, 0])
    assert vocab.indices(["c", "a"]).dtype == np.int64
    with pytest.raises(KeyError, match="zz"):
        vocab.indices(["c", "zz"], skip_unknown=False)
    with pytest.raises(ValueError, match="shape"):
        ItemVocab(("a", "b"), np.array([1]))
    with pytest.raises(ValueError, match="unique"):
        ItemVocab(("a", "a"), np.array([1, 1]))


def test_vocab_save_load_round_trip(tmp_path):
    _, vocab = build_interactions(PLAYLISTS + [Playlist("u", "ü", ("🎵", "日本"))], min_count=1)
    vocab.save(tmp_path / "vocab")
    assert sorted(p.name for p in (tmp_path / "vocab").iterdir()) == ["counts.npy", "vocab.json"]
    loaded = ItemVocab.load(tmp_path / "vocab")
    assert loaded == vocab
    assert loaded.item_ids == vocab.item_ids
    assert loaded.counts.dtype == np.int64
    assert loaded.index_of("🎵") == vocab.index_of("🎵")
