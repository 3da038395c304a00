"""ResidualKMeans: properties on synthetic vectors whose answer is known (faiss's test style)."""

from __future__ import annotations

import numpy as np
import pytest

from semantic_ids.residual_kmeans import ResidualKMeans


def clustered(n_clusters=8, per_cluster=150, dim=16, spread=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    x = centers[labels] + spread * rng.normal(size=(len(labels), dim))
    return x.astype(np.float32), labels


def brute_force_encode(rkm: ResidualKMeans, x: np.ndarray) -> np.ndarray:
    """Reference nearest-centroid residual encoder in plain numpy."""
    r = x.astype(np.float64)
    if rkm.normalize_input:
        r = r / np.linalg.norm(r, axis=1, keepdims=True)
    codes = np.zeros((len(x), rkm.n_levels), dtype=np.int64)
    for level, book in enumerate(rkm.codebooks_.astype(np.float64)):
        d = ((r[:, None, :] - book[None, :, :]) ** 2).sum(-1)
        codes[:, level] = d.argmin(1)
        r = r - book[codes[:, level]]
        if rkm.normalize_residuals:
            r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    return codes


@pytest.mark.parametrize("assignment", ["matching", "nearest"])
def test_clusters_come_back_as_code_prefixes(assignment):
    x, labels = clustered(n_clusters=8, per_cluster=150)
    # more codes than clusters: k-means may split a cluster but never mixes two
    codes = ResidualKMeans(n_levels=3, codebook_size=16, assignment=assignment).fit_encode(x)
    label_of_code = {}
    for label, code in zip(labels.tolist(), codes[:, 0].tolist(), strict=True):
        assert label_of_code.setdefault(code, label) == label
    assert set(label_of_code.values()) == set(range(8))


def test_clusters_come_back_as_level0_codes_up_to_relabelling():
    rng = np.random.default_rng(0)
    centers = np.eye(6, dtype=np.float32) * 4  # well separated: k-means finds them
    labels = np.repeat(np.arange(6), 100)
    x = centers[labels] + 0.1 * rng.normal(size=(600, 6)).astype(np.float32)
    codes = ResidualKMeans(n_levels=2, codebook_size=6, normalize_input=False, n_redo=5).fit_encode(
        x
    )
    pairs = set(zip(labels.tolist(), codes[:, 0].tolist(), strict=True))
    assert len(pairs) == 6 and len({c for _, c in pairs}) == 6


@pytest.mark.parametrize("assignment", ["matching", "nearest"])
def test_objective_falls_across_iterations(assignment):
    x, _ = clustered(n_clusters=20, spread=0.3)
    rkm = ResidualKMeans(n_levels=3, codebook_size=16, n_iter=15, assignment=assignment).fit(x)
    assert len(rkm.objective_) == 3
    for obj in rkm.objective_:
        assert 2 <= len(obj) <= 15
        assert obj[-1] < obj[0]
        assert all(b <= a * (1 + 1e-5) for a, b in zip(obj, obj[1:], strict=False))


@pytest.mark.parametrize("normalize_residuals", [False, True])
def test_more_levels_reconstruct_better(normalize_residuals):
    x, _ = clustered(n_clusters=30, spread=0.4, dim=12)
    rkm = ResidualKMeans(n_levels=4, codebook_size=16, normalize_residuals=normalize_residuals)
    rkm.fit(x)
    errors = rkm.reconstruction_error(x)
    assert all(b < a for a, b in zip(errors, errors[1:], strict=False)), errors
    catalogue_errors = rkm.reconstruction_error(x, rkm.codes_)
    assert catalogue_errors[-1] < catalogue_errors[0]


def test_adding_a_level_keeps_the_earlier_codes():
    x, _ = clustered(n_clusters=30, spread=0.4)
    two = ResidualKMeans(n_levels=2, codebook_size=16, assignment="nearest").fit(x)
    three = ResidualKMeans(n_levels=3, codebook_size=16, assignment="nearest").fit(x)
    np.testing.assert_array_equal(three.encode(x)[:, :2], two.encode(x))
    np.testing.assert_allclose(three.codebooks_[:2], two.codebooks_)


@pytest.mark.parametrize("normalize_input", [False, True])
def test_encode_agrees_with_brute_force_numpy(normalize_input):
    x, _ = clustered(n_clusters=12, spread=0.3)
    rkm = ResidualKMeans(n_levels=3, codebook_size=16, normalize_input=normalize_input).fit(x)
    rng = np.random.default_rng(1)
    fresh = rng.normal(size=(200, x.shape[1])).astype(np.float32)
    for data in (x, fresh):
        np.testing.assert_array_equal(rkm.encode(data), brute_force_encode(rkm, data))


def test_nearest_assignment_equals_encode():
    x, _ = clustered(n_clusters=12, spread=0.3)
    rkm = ResidualKMeans(n_levels=3, codebook_size=16, assignment="nearest").fit(x)
    np.testing.assert_array_equal(rkm.codes_, rkm.encode(x))


def test_matching_gives_every_item_its_own_codes_when_groups_fit():
    # 2 levels x 64 codes = 4096 slots for 1200 items in 8 tight clusters: plain nearest codes
    # collide a lot, matching must not
    x, _ = clustered(n_clusters=8, per_cluster=150, spread=0.2)
    near = ResidualKMeans(n_levels=2, codebook_size=64, assignment="nearest").fit_encode(x)
    assert len(np.unique(near, axis=0)) < len(x)
    rkm = ResidualKMeans(n_levels=2, codebook_size=64, assignment="matching")
    codes = rkm.fit_encode(x)
    assert len(np.unique(codes, axis=0)) == len(x)
    # level 0 untouched (its capacity, 64 per code, is never reached... or barely)
    groups = np.bincount(codes[:, 0])
    assert groups.max() <= 64
    # the matching costs little: at most a modest rise of the last level's error
    err_near = rkm.reconstruction_error(x, rkm.encode(x))[-1]
    err_match = rkm.reconstruction_error(x, codes)[-1]
    assert err_match >= err_near - 1e-6
    assert err_match < err_near * 2


def test_matching_is_the_minimum_cost_assignment_in_a_group():
    x, _ = clustered(n_clusters=4, per_cluster=40, spread=0.3, dim=6)
    rkm = ResidualKMeans(
        n_levels=1, codebook_size=160, assignment="matching", max_points_per_centroid=10
    )
    codes = rkm.fit_encode(x)[:, 0]
    assert len(np.unique(codes)) == len(x)  # one group (empty prefix), all codes distinct
    from scipy.optimize import linear_sum_assignment

    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cost = ((xn[:, None, :] - rkm.codebooks_[0][None]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    assert cost[np.arange(len(x)), codes].sum() == pytest.approx(cost[rows, cols].sum(), rel=1e-4)


def test_groups_larger_than_the_codebook_only_collide_by_their_overflow():
    x, _ = clustered(n_clusters=2, per_cluster=100, spread=0.5)
    codes = ResidualKMeans(n_levels=1, codebook_size=16, assignment="matching").fit_encode(x)
    counts = np.bincount(codes[:, 0], minlength=16)
    assert counts.max() <= int(np.ceil(200 / 16))


def test_fit_is_deterministic_and_save_load_round_trips(tmp_path):
    x, _ = clustered(n_clusters=12, spread=0.3)
    a = ResidualKMeans(n_levels=3, codebook_size=16, seed=3).fit(x)
    b = ResidualKMeans(n_levels=3, codebook_size=16, seed=3).fit(x)
    np.testing.assert_array_equal(a.codes_, b.codes_)
    a.save(tmp_path / "rkm")
    loaded = ResidualKMeans.load(tmp_path / "rkm")
    assert loaded.get_config() == a.get_config()
    np.testing.assert_array_equal(loaded.encode(x), a.encode(x))
    np.testing.assert_allclose(loaded.decode(a.codes_), a.decode(a.codes_))
    assert loaded.objective_ == a.objective_


def test_decode_of_a_prefix_and_shapes():
    x, _ = clustered()
    rkm = ResidualKMeans(n_levels=3, codebook_size=8).fit(x)
    codes = rkm.encode(x[:5])
    assert codes.dtype == np.int32 and codes.shape == (5, 3)
    assert rkm.decode(codes[:, :1]).shape == (5, x.shape[1])
    assert rkm.decode(codes).dtype == np.float32


def test_bad_input_raises():
    x, _ = clustered()
    with pytest.raises(ValueError, match="assignment"):
        ResidualKMeans(assignment="greedy")
    with pytest.raises(ValueError, match="at least codebook_size"):
        ResidualKMeans(codebook_size=256).fit(x[:10])
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ResidualKMeans(codebook_size=8).fit(bad)
    rkm = ResidualKMeans(codebook_size=8).fit(x)
    with pytest.raises(ValueError, match="width"):
        rkm.encode(x[:, :3])
    with pytest.raises(ValueError, match=r"codes must lie"):
        rkm.decode(np.full((1, 3), 8))
    with pytest.raises(RuntimeError, match="not fitted"):
        ResidualKMeans().encode(x)


def test_matching_of_many_small_groups_is_minimum_cost_per_group():
    from scipy.optimize import linear_sum_assignment

    x, _ = clustered(n_clusters=40, per_cluster=30, spread=0.3)
    rkm = ResidualKMeans(n_levels=2, codebook_size=64, assignment="matching")
    codes = rkm.fit_encode(x)
    assert len(np.unique(codes, axis=0)) == len(x)
    # the last level's input: the normalised residual after level 0
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    r = xn - rkm.codebooks_[0][codes[:, 0]]
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    cost = ((r[:, None, :] - rkm.codebooks_[1][None]) ** 2).sum(-1)
    for prefix in np.unique(codes[:, 0]):
        members = np.flatnonzero(codes[:, 0] == prefix)
        rows, cols = linear_sum_assignment(cost[members])
        got = cost[members, codes[members, 1]].sum()
        assert got == pytest.approx(cost[members][rows, cols].sum(), rel=1e-4, abs=1e-5)


def _tied_vectors() -> np.ndarray:
    """1,500 random vectors, each 8 times: exact ties everywhere, as CF gives tracks held by
    the same playlists."""
    rng = np.random.default_rng(0)
    return np.repeat(rng.standard_normal((1500, 64)).astype(np.float32), 8, axis=0)


# In a process of its own without torch (torch loaded first keeps faiss's BLAS from threading):
# a multi-threaded BLAS rounds distances by its thread blocks, and before the fix 94% of these
# codes changed between 1 and 2 BLAS threads (the development data's tracks: 46%).
_THREADS_SCRIPT = """
import sys
import numpy as np
import faiss
from threadpoolctl import threadpool_limits
from semantic_ids.residual_kmeans import ResidualKMeans
from tests.test_residual_kmeans import _tied_vectors
x = _tied_vectors()
codes, encoded = [], []
for threads in (1, 2):
    with threadpool_limits(limits=threads, user_api="blas"):
        rk = ResidualKMeans(n_levels=3, codebook_size=64, assignment=sys.argv[1]).fit(x)
        codes.append(rk.codes_)
        encoded.append(rk.encode(x[::7]))
print(float((codes[0] == codes[1]).all(1).mean()), float((encoded[0] == encoded[1]).all(1).mean()))
"""


@pytest.mark.parametrize("assignment", ["matching", "nearest"])
def test_codes_do_not_depend_on_the_number_of_blas_threads(assignment):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT, assignment],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1.0", "1.0"]


def test_fit_runs_faiss_on_a_one_thread_blas(monkeypatch):
    """Whatever the machine's cores: every k-means inside fit sees one BLAS thread (faiss
    loaded first, so that the limit reaches its own OpenBLAS)."""
    import faiss
    from threadpoolctl import threadpool_info

    seen = []

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    train = faiss.Kmeans.train

    def recording_train(self, *args, **kwargs):
        seen.append(blas_threads())
        return train(self, *args, **kwargs)

    monkeypatch.setattr(faiss.Kmeans, "train", recording_train)
    ResidualKMeans(n_levels=2, codebook_size=16).fit(_tied_vectors()[:2000])
    assert len(seen) == 2 and all(s == {1} for s in seen)
