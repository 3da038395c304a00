import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from text2tracks.trie import FlatTrie

CODES = np.array(
    [
        [0, 0, 0],  # item 0
        [0, 0, 1],  # item 1
        [0, 2, 0],  # item 2
        [1, 1, 0],  # item 3
        [1, 1, 1],  # item 4
        [1, 2, 1],  # item 5
    ]
)
SIZES = (2, 3, 2)


def shuffled():
    perm = np.array([4, 0, 5, 2, 1, 3])
    return CODES[perm], perm


def test_structure_of_a_small_trie():
    codes, perm = shuffled()
    trie = FlatTrie.from_codes(codes, SIZES)
    assert trie.depth == 3 and trie.n_items == 6 and len(trie) == 6
    assert [trie.n_nodes(lv) for lv in range(3)] == [2, 4, 6]
    assert trie.node_code[0].tolist() == [0, 1]
    assert trie.node_code[1].tolist() == [0, 2, 1, 2]
    assert trie.node_parent[1].tolist() == [0, 0, 1, 1]
    assert trie.child_start[0].tolist() == [0, 2] and trie.child_end[0].tolist() == [2, 4]
    assert trie.child_start[1].tolist() == [0, 2, 3, 5]
    assert trie.child_end[1].tolist() == [2, 3, 5, 6]
    assert trie.subtree_count[0].tolist() == [3, 3]
    assert trie.subtree_count[1].tolist() == [2, 1, 2, 1]
    assert trie.subtree_count[2].tolist() == [1] * 6
    # leaves are in lexicographic order of the IDs; leaf_item maps back to input rows
    assert np.array_equal(codes[trie.leaf_item], CODES)
    assert trie.max_children == [2, 2, 2]


def test_lookups():
    codes, perm = shuffled()
    trie = FlatTrie.from_codes(codes, SIZES)
    for row, c in enumerate(codes):
        assert trie.item_of(c) == row
        assert tuple(c) in trie
    assert trie.item_of([0, 1, 0]) == -1
    assert trie.item_of([0, 0]) == -1  # a prefix is not an item
    assert [0, 0] not in trie and "x" not in trie and (5, 0, 0) not in trie
    assert trie.valid_next([]).tolist() == [0, 1]
    assert trie.valid_next([0]).tolist() == [0, 2]
    assert trie.valid_next([1]).tolist() == [1, 2]
    assert trie.valid_next([0, 0]).tolist() == [0, 1]
    assert trie.valid_next([1, 2]).tolist() == [1]
    assert trie.valid_next([0, 1]).tolist() == []
    assert trie.valid_next([0, 0, 1]).tolist() == []
    assert trie.valid_next([7]).tolist() == []
    with pytest.raises(ValueError):
        trie.valid_next([0, 0, 0, 0])
    assert trie.count_under([]) == 6 and trie.count_under([0]) == 3
    assert trie.count_under([1, 1]) == 2 and trie.count_under([0, 1]) == 0
    assert trie.find_nodes(np.array([[0, 0], [0, 1], [1, 2], [9, 0]])).tolist() == [0, -1, 3, -1]
    assert trie.items_of(codes).tolist() == list(range(6))
    assert np.array_equal(trie.codes_of(np.arange(6)), codes)


def test_excluded_nodes_prunes_whole_subtrees():
    trie = FlatTrie.from_codes(CODES, SIZES)
    ex = trie.excluded_nodes([3, 4, 5])  # everything under code 1
    assert ex[0].tolist() == [1] and ex[1].tolist() == [2, 3] and ex[2].tolist() == [3, 4, 5]
    ex = trie.excluded_nodes([0])  # one leaf of (0, 0): the prefix stays
    assert ex[0].tolist() == [] and ex[1].tolist() == [] and ex[2].tolist() == [0]
    ex = trie.excluded_nodes([2])  # the only leaf of (0, 2)
    assert ex[1].tolist() == [1]
    with pytest.raises(ValueError, match="excluded item"):
        trie.excluded_nodes([6])


def test_errors():
    with pytest.raises(ValueError, match="duplicate"):
        FlatTrie.from_codes(np.array([[0, 1, 0], [1, 0, 0], [0, 1, 0]]), SIZES)
    with pytest.raises(ValueError, match="out of range"):
        FlatTrie.from_codes(np.array([[0, 3, 0]]), SIZES)
    with pytest.raises(ValueError, match="out of range"):
        FlatTrie.from_codes(np.array([[0, -1, 0]]), SIZES)
    with pytest.raises(ValueError, match="shape"):
        FlatTrie.from_codes(np.array([[0, 1]]), SIZES)
    with pytest.raises(ValueError, match="empty"):
        FlatTrie.from_codes(np.zeros((0, 3), dtype=int), SIZES)
    with pytest.raises(ValueError, match="integers"):
        FlatTrie.from_codes(np.array([[0.5, 1, 0]]), SIZES)
    with pytest.raises(ValueError, match="level_sizes"):
        FlatTrie.from_codes(CODES, (2, 0, 2))


@st.composite
def catalogues(draw):
    sizes = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    universe = list(itertools.product(*[range(s) for s in sizes]))
    chosen = draw(
        st.lists(st.sampled_from(universe), min_size=1, max_size=len(universe), unique=True)
    )
    return np.array(chosen, dtype=np.int64).reshape(len(chosen), len(sizes)), sizes


@settings(max_examples=60, deadline=None)
@given(catalogues(), st.data())
def test_matches_brute_force(cat, data):
    codes, sizes = cat
    trie = FlatTrie.from_codes(codes, sizes)
    ids = [tuple(c) for c in codes.tolist()]
    assert trie.items_of(codes).tolist() == list(range(len(ids)))
    for t in range(len(sizes)):
        prefixes = {i[:t] for i in ids}
        for p in prefixes:
            expected = sorted({i[t] for i in ids if i[:t] == p})
            assert trie.valid_next(p).tolist() == expected
            assert trie.count_under(p) == sum(i[:t] == p for i in ids)
    for t in range(1, len(sizes) + 1):
        n_prefixes = len({i[:t] for i in ids})
        assert trie.n_nodes(t - 1) == n_prefixes
        assert trie.subtree_count[t - 1].sum() == len(ids)
    excluded = data.draw(st.lists(st.integers(0, len(ids) - 1), unique=True))
    ex = trie.excluded_nodes(excluded)
    for t in range(1, len(sizes) + 1):
        prefixes = sorted({i[:t] for i in ids})  # node order = lexicographic prefix order
        full = [
            n
            for n, p in enumerate(prefixes)
            if all(j in excluded for j, i in enumerate(ids) if i[:t] == p)
        ]
        assert ex[t - 1].tolist() == full


def test_nbytes_counts_every_array_and_grows_with_the_catalogue():
    codes, _ = shuffled()
    small = FlatTrie.from_codes(codes[: len(codes) // 2], SIZES)
    full = FlatTrie.from_codes(codes, SIZES)
    arrays = [
        a
        for v in vars(full).values()
        for a in (v if isinstance(v, (list, tuple)) else [v])
        if isinstance(a, np.ndarray)
    ]
    assert full.nbytes == sum(a.nbytes for a in arrays) > 0
    assert full.nbytes > small.nbytes
