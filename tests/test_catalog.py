"""SemanticIDCatalog: collision digits, lookups, stats, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_ids.catalog import SemanticIDCatalog
from semantic_ids.residual_kmeans import ResidualKMeans


def small_catalog():
    item_ids = ["a", "b", "c", "d", "e", "f"]
    codes = np.array([[0, 1], [0, 1], [0, 1], [2, 3], [2, 3], [1, 0]])
    popularity = np.array([5, 9, 5, 1, 7, 3])
    return SemanticIDCatalog.build(item_ids, codes, popularity, codebook_sizes=4)


def test_collision_digit_orders_by_popularity_then_id():
    cat = small_catalog()
    assert cat.depth == 3 and cat.level_sizes == (4, 4, 3)
    digits = dict(zip(cat.item_ids, cat.sid_codes[:, -1].tolist(), strict=True))
    # group (0,1): b (9) first, then a and c (5, tie broken by id)
    assert (digits["b"], digits["a"], digits["c"]) == (0, 1, 2)
    assert (digits["e"], digits["d"]) == (0, 1)
    assert digits["f"] == 0  # alone: still gets a digit (fixed depth)
    assert cat.sid_codes.dtype == np.int64


def test_lookup_round_trip_and_absent_ids():
    cat = small_catalog()
    for index in range(len(cat)):
        assert cat.lookup(cat.codes_of(index)) == index
    assert cat.codes_of("e") == (2, 3, 0)
    np.testing.assert_array_equal(cat.items_for_codes(cat.sid_codes), np.arange(len(cat)))
    probe = np.array([[0, 1, 2], [1, 0, 1], [3, 3, 0], [9, 0, 0], [-1, 0, 0]])
    np.testing.assert_array_equal(cat.items_for_codes(probe), [2, -1, -1, -1, -1])
    with pytest.raises(KeyError):
        cat.lookup((1, 0, 1))
    with pytest.raises(KeyError):
        cat.lookup((1, 0))
    with pytest.raises(ValueError):
        cat.items_for_codes(np.zeros((2, 2)))


def test_save_load(tmp_path):
    cat = small_catalog()
    cat.save(tmp_path / "cat")
    loaded = SemanticIDCatalog.load(tmp_path / "cat")
    assert loaded.item_ids == cat.item_ids and loaded.level_sizes == cat.level_sizes
    np.testing.assert_array_equal(loaded.sid_codes, cat.sid_codes)
    with pytest.raises(FileNotFoundError):
        SemanticIDCatalog.load(tmp_path / "nothing")


def test_duplicate_full_ids_are_refused():
    with pytest.raises(ValueError, match="share a full semantic ID"):
        SemanticIDCatalog(["a", "b"], np.array([[0, 0], [0, 0]]), (1, 1))


def test_stats_collisions_and_coherence():
    cat = small_catalog()
    artists = ["x", "x", "x", "y", "z", None]
    stats = cat.stats(artists=artists)
    assert stats["tracks"] == 6 and stats["unique_prefixes"] == 3
    assert stats["shared_prefix_share"] == pytest.approx(5 / 6)
    assert stats["largest_group"] == 3
    level0, level1 = stats["levels"]
    assert level0["codes_used_share"] == pytest.approx(3 / 4)
    # level 1 prefixes: {a,b,c} (3 pairs, all artist x) and {d,e} (1 pair, different artists)
    assert level1["same_prefix_pairs"] == 4
    assert level1["artist_pair_agreement"] == pytest.approx(3 / 4)
    assert stats["artist_pair_random"] == pytest.approx(3 / 10)


def test_stats_with_vectors_reports_reconstruction_per_level():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    rkm = ResidualKMeans(n_levels=2, codebook_size=16)
    codes = rkm.fit_encode(x)
    cat = SemanticIDCatalog.build([str(i) for i in range(600)], codes, np.ones(600), 16)
    stats = cat.stats(x, rkm)
    errors = [row["reconstruction_mse"] for row in stats["levels"]]
    assert errors[1] < errors[0]
    # brute force: the share of items whose codes[:l+1] are plain nearest-centroid codes; a
    # longer prefix can only match less often
    nearest = rkm.encode(x)
    shares = [row["nearest_code_share"] for row in stats["levels"]]
    assert shares == pytest.approx(
        [
            float((nearest[:, : level + 1] == cat.sid_codes[:, : level + 1]).all(axis=1).mean())
            for level in range(2)
        ]
    )
    assert shares[1] <= shares[0]
    # 600 items for 16 x 16 full codes: matching spreads them, ceil(600 / 256) at most per code
    assert stats["largest_group"] == 3
