"""semantic_ids.grouping: ranks within groups, against a brute-force reference, and the tie rule
each caller relies on (catalogue: item id; content IDs: row)."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_ids.catalog import SemanticIDCatalog
from semantic_ids.content_ids import collision_digits
from semantic_ids.grouping import popularity_digits, rank_within_runs


def _brute_digits(groups, popularity, ties):
    digits = np.empty(len(groups), dtype=np.int64)
    for g in set(groups.tolist()):
        members = [i for i in range(len(groups)) if groups[i] == g]
        members.sort(key=lambda i: (-popularity[i], ties[i]))
        for digit, i in enumerate(members):
            digits[i] = digit
    return digits


def test_rank_within_runs():
    assert rank_within_runs(np.array([3, 3, 3, 5, 7, 7])).tolist() == [0, 1, 2, 0, 0, 1]
    assert rank_within_runs(np.array([], dtype=np.int64)).tolist() == []
    assert rank_within_runs(np.array([1])).dtype == np.int64


def test_popularity_digits_against_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 60))
        groups = rng.integers(0, 6, n)
        popularity = rng.integers(0, 4, n)  # many ties
        ties = rng.permutation(n)
        np.testing.assert_array_equal(
            popularity_digits(groups, popularity, ties), _brute_digits(groups, popularity, ties)
        )


def test_popularity_digits_checks_shapes():
    with pytest.raises(ValueError, match="must all be"):
        popularity_digits(np.zeros(3), np.zeros(2), np.arange(3))


def test_catalogue_breaks_popularity_ties_by_item_id_whatever_the_row_order():
    codes = np.zeros((3, 1), dtype=np.int64)  # one shared prefix
    catalog = SemanticIDCatalog.build(["c", "a", "b"], codes, np.array([5, 5, 9]), 1)
    assert catalog.sid_codes[:, -1].tolist() == [2, 1, 0]  # b (9), then a before c


def test_content_ids_break_popularity_ties_by_row():
    group_codes = np.array([[1, 2], [1, 2], [1, 2], [0, 0]])
    assert collision_digits(group_codes, np.array([5, 5, 9, 1])).tolist() == [1, 2, 0, 0]
