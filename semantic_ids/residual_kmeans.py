"""Residual k-means: vectors -> ``n_levels`` integer codes, one codebook per level (faiss ``Kmeans``).

Level ``l`` clusters the residuals left by levels ``< l``. Optionally the input is L2-normalised,
and each level's residual too (as in GRID), so that every level sees vectors of one scale; the
norm that normalisation removes is kept per code (``residual_scales_``) so that :meth:`decode`
can put the levels back together.

Two kinds of code assignment
----------------------------
*Catalogue codes* come from :meth:`fit` (also returned by :meth:`fit_encode`, kept in
``codes_``). With ``assignment="nearest"`` every item simply takes its nearest centroid at every
level, which on real CF vectors leaves about half of the items sharing their full code with others
(one 3 x 256 prefix held 950 tracks of the development data). With ``assignment="matching"`` (the
default) the centroids are the same k-means centroids, but the items are placed under capacities:

1. at every level but the last, a child prefix (codes[:l+1]) takes at most ``codebook_size **
   (n_levels - 1 - l)`` items, the number of full codes beneath it (times ``ceil(g / codebook_size
   ** (n_levels - l))`` where its parent's ``g`` items outnumber the parent's full codes, so that
   the unavoidable collisions spread evenly) (and, with ``balance=b``, at
   most ``ceil(b * g / codebook_size)`` of its parent's ``g`` items); items that find their
   nearest code full go to their next nearest code with room, the closer items first;
2. at the last level, the items of each shared prefix get *distinct* codes by a minimum-cost
   matching (``scipy.optimize.linear_sum_assignment``) on their squared distances to the level's
   centroids, so every item goes to the nearest code left free and the total distortion is the
   least possible (for speed, a group of at most ``n_candidates`` items is matched over its
   items' ``n_candidates`` nearest codes); a prefix with more items than codes is matched in
   rounds and only its overflow collides.

Where the nearest code has room (the common case) both kinds agree, so the codes keep their
meaning; the benchmark ``eval/bench_ids.py`` reports artist coherence per level for both.

*Encoding unseen vectors* with :meth:`encode` is always plain nearest-centroid at every level:
capacities belong to the catalogue, which is the one source of valid IDs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from semantic_ids.grouping import rank_within_runs

_ASSIGNMENTS = ("matching", "nearest")
CONFIG_NAME = "config.json"
CODEBOOKS_NAME = "codebooks.npy"
SCALES_NAME = "residual_scales.npy"
_EPS = 1e-12
_MATCH_CHUNK = 2048  # items per sparse matching problem


def _l2_normalize(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(x, axis=1)
    return (x / np.maximum(norms, _EPS)[:, None]).astype(np.float32, copy=False), norms


def _one_thread_blas():
    """A context in which BLAS (numpy's and faiss's own OpenBLAS) runs on one thread.

    faiss computes distances by BLAS matrix products, and a multi-threaded BLAS splits them into
    blocks by thread count, so their rounding, and the nearest centroid of a near-tie, depended
    on the machine's cores: the development data's 51,722 tracks got other codes for 46% of
    tracks on 2 threads than on 1 (level 0 the same, level 1 for 2.2%, the rest from there).
    With BLAS on one thread the codes are the same on 1 or 2 threads (``tests/
    test_residual_kmeans.py``); faiss's own OpenMP loops (k-means updates, search over query
    blocks) do not change them and keep every core."""
    import faiss  # noqa: F401  (loaded first: threadpoolctl limits only the libraries loaded)
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Squared L2 distances ``(n, k)`` between rows of ``x`` and ``centroids``."""
    d = (
        (x * x).sum(axis=1)[:, None]
        - 2.0 * (x @ centroids.T)
        + (centroids * centroids).sum(axis=1)[None, :]
    )
    return np.maximum(d, 0.0)


class ResidualKMeans:
    """Multi-level residual k-means on faiss.

    Args:
        n_levels: number of code levels.
        codebook_size: codes per level (centroids of each level's k-means).
        normalize_input: L2-normalise the input vectors first.
        normalize_residuals: L2-normalise each level's residual before the next level.
        n_iter: k-means iterations per level.
        seed: seeds faiss's sampling and initialisation (level ``l`` uses ``seed + l``).
        max_points_per_centroid: faiss trains each level on at most this many points per centroid
            (a seeded subsample), which bounds the fit time on large catalogues.
        assignment: ``"matching"`` (capacity-limited levels, matched last level; the default) or
            ``"nearest"`` (plain residual k-means). Only affects the codes of the fitted items.
        balance: optional extra cap for ``"matching"``: a child prefix takes at most
            ``ceil(balance * g / codebook_size)`` of its parent's ``g`` items. ``None``: no cap
            beyond the number of full codes beneath the prefix.
        n_candidates: nearest codes considered per item before falling back to all codes when
            placing items under capacities.
        n_redo: k-means runs per level (different seeds); the one with the lowest objective wins.
        verbose: let faiss print its progress.

    Attributes (after :meth:`fit`):
        codebooks_: float32 ``(n_levels, codebook_size, dim)``.
        residual_scales_: float32 ``(n_levels, codebook_size)``: mean norm of the residual an item
            with that code leaves for the next level (1 without residual normalisation).
        objective_: per level, faiss's k-means objective at each iteration.
        codes_: int32 ``(n, n_levels)``: the fitted items' codes under ``assignment``.
    """

    def __init__(
        self,
        n_levels: int = 3,
        codebook_size: int = 256,
        normalize_input: bool = True,
        normalize_residuals: bool = True,
        n_iter: int = 20,
        seed: int = 0,
        max_points_per_centroid: int = 256,
        assignment: str = "matching",
        balance: float | None = None,
        n_candidates: int = 32,
        n_redo: int = 1,
        verbose: bool = False,
    ) -> None:
        if int(n_levels) < 1:
            raise ValueError(f"n_levels must be >= 1, got {n_levels}")
        if int(codebook_size) < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        if int(n_iter) < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}")
        if int(max_points_per_centroid) < 1:
            raise ValueError(f"max_points_per_centroid must be >= 1, got {max_points_per_centroid}")
        if assignment not in _ASSIGNMENTS:
            raise ValueError(f"assignment must be one of {_ASSIGNMENTS}, got {assignment!r}")
        if balance is not None and float(balance) < 1.0:
            raise ValueError(f"balance must be None or >= 1.0, got {balance}")
        if int(n_redo) < 1:
            raise ValueError(f"n_redo must be >= 1, got {n_redo}")
        if int(n_candidates) < 1:
            raise ValueError(f"n_candidates must be >= 1, got {n_candidates}")
        self.n_levels = int(n_levels)
        self.codebook_size = int(codebook_size)
        self.normalize_input = bool(normalize_input)
        self.normalize_residuals = bool(normalize_residuals)
        self.n_iter = int(n_iter)
        self.seed = int(seed)
        self.max_points_per_centroid = int(max_points_per_centroid)
        self.assignment = assignment
        self.balance = None if balance is None else float(balance)
        self.n_candidates = int(n_candidates)
        self.n_redo = int(n_redo)
        self.verbose = bool(verbose)

        self.codebooks_: np.ndarray | None = None
        self.residual_scales_: np.ndarray | None = None
        self.objective_: list[list[float]] = []
        self.codes_: np.ndarray | None = None
        self._indexes: list | None = None

    # ------------------------------------------------------------------ config

    def get_config(self) -> dict:
        return {
            "n_levels": self.n_levels,
            "codebook_size": self.codebook_size,
            "normalize_input": self.normalize_input,
            "normalize_residuals": self.normalize_residuals,
            "n_iter": self.n_iter,
            "seed": self.seed,
            "max_points_per_centroid": self.max_points_per_centroid,
            "assignment": self.assignment,
            "balance": self.balance,
            "n_candidates": self.n_candidates,
            "n_redo": self.n_redo,
        }

    @property
    def dim(self) -> int:
        self._check_fitted()
        return int(self.codebooks_.shape[2])

    def _check_fitted(self) -> None:
        if self.codebooks_ is None:
            raise RuntimeError("ResidualKMeans is not fitted; call fit() or load() first")

    def _prepare(self, x: np.ndarray, fitting: bool = False) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"expected a 2-d array (n, dim), got shape {x.shape}")
        if not fitting and x.shape[1] != self.dim:
            raise ValueError(f"expected vectors of width {self.dim}, got {x.shape[1]}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not np.isfinite(x).all():
            raise ValueError("input vectors contain NaN or infinity")
        if self.normalize_input:
            x, _ = _l2_normalize(x)
        return x

    def _index(self, level: int):
        import faiss

        if self._indexes is None:
            self._indexes = []
            for book in self.codebooks_:
                index = faiss.IndexFlatL2(book.shape[1])
                index.add(np.ascontiguousarray(book))
                self._indexes.append(index)
        return self._indexes[level]

    def _next_residual(
        self, residual: np.ndarray, level: int, codes: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        err = residual - self.codebooks_[level][codes]
        if not self.normalize_residuals:
            return err, np.ones(len(err), dtype=np.float32)
        err, norms = _l2_normalize(err)
        return err, norms.astype(np.float32)

    # ------------------------------------------------------------------ fit

    def fit(self, x: np.ndarray) -> ResidualKMeans:
        """Learn one codebook per level from ``x`` float ``(n, dim)`` and place the items.

        The codes are the same for any number of threads: faiss's distance products run on a
        single-threaded BLAS (:func:`_one_thread_blas`), while faiss's own OpenMP loops keep
        every core.

        Raises:
            ValueError: on a non 2-d or non-finite input, or fewer vectors than ``codebook_size``.
        """
        with _one_thread_blas():
            return self._fit(x)

    def _fit(self, x: np.ndarray) -> ResidualKMeans:
        import faiss

        x = self._prepare(x, fitting=True)
        n, dim = x.shape
        k = self.codebook_size
        if n < k:
            raise ValueError(f"need at least codebook_size={k} vectors to fit, got {n}")
        codebooks = np.zeros((self.n_levels, k, dim), dtype=np.float32)
        scales = np.ones((self.n_levels, k), dtype=np.float32)
        codes = np.zeros((n, self.n_levels), dtype=np.int32)
        self.objective_ = []
        self.codebooks_ = codebooks
        self._indexes = None
        residual = x
        prefix = np.zeros(n, dtype=np.int64)  # id of each item's prefix codes[:, :level]
        for level in range(self.n_levels):
            best = None
            for run in range(self.n_redo):  # faiss's own nredo does not say which run won
                km = faiss.Kmeans(
                    dim,
                    k,
                    niter=self.n_iter,
                    seed=self.seed + level + 7919 * run,
                    max_points_per_centroid=self.max_points_per_centroid,
                    min_points_per_centroid=1,
                    verbose=self.verbose,
                )
                km.train(residual)
                obj = [float(v) for v in km.obj]
                if best is None or obj[-1] < best[1][-1]:
                    best = (np.array(km.centroids, dtype=np.float32), obj)
            codebooks[level] = best[0]
            self.objective_.append(best[1])
            index = faiss.IndexFlatL2(dim)
            index.add(codebooks[level])
            level_codes = self._assign(residual, index, codebooks[level], prefix, level)
            codes[:, level] = level_codes
            residual, norms = self._next_residual(residual, level, level_codes)
            if self.normalize_residuals:
                sums = np.bincount(level_codes, weights=norms, minlength=k)
                counts = np.bincount(level_codes, minlength=k)
                fallback = float(norms.mean()) if n else 1.0
                scales[level] = np.where(counts > 0, sums / np.maximum(counts, 1), fallback)
            _, prefix = np.unique(prefix * k + level_codes, return_inverse=True)
            prefix = prefix.reshape(-1).astype(np.int64)
        self.residual_scales_ = scales
        self.codes_ = codes
        self._indexes = None
        return self

    def fit_encode(self, x: np.ndarray) -> np.ndarray:
        """Fit on ``x`` and return its catalogue codes int32 ``(n, n_levels)``."""
        return self.fit(x).codes_.copy()

    def _assign(
        self, residual: np.ndarray, index, centroids: np.ndarray, prefix: np.ndarray, level: int
    ) -> np.ndarray:
        n = residual.shape[0]
        k = self.codebook_size
        if self.assignment == "nearest":
            _, nearest = index.search(residual, 1)
            return nearest[:, 0].astype(np.int32)
        if level == self.n_levels - 1:
            return self._assign_matching(residual, index, centroids, prefix)
        group_sizes = np.bincount(prefix)
        # a child prefix holds the full codes beneath it, times the collisions its parent must
        # accept anyway when it has more items than full codes
        below = float(k ** (self.n_levels - 1 - level))
        caps = below * np.maximum(1.0, np.ceil(group_sizes / (below * k)))
        if self.balance is not None:
            caps = np.minimum(caps, np.ceil(self.balance * group_sizes / k))
        caps = np.maximum(caps, 1).astype(np.int64)
        n_cand = min(self.n_candidates, k)
        dist, cand = index.search(residual, n_cand)
        assigned = np.full(n, -1, dtype=np.int64)
        # round 0 over everyone: each (prefix, code) slot keeps its closest items up to capacity
        self._place_rounds(dist[:, :1], cand[:, :1], np.arange(n), prefix, caps, assigned)
        rest = np.flatnonzero(assigned < 0)
        if rest.size and n_cand > 1:  # the overflow tries its next nearest codes in turn
            self._place_rounds(dist[rest, 1:], cand[rest, 1:], rest, prefix, caps, assigned)
            rest = np.flatnonzero(assigned < 0)
        if rest.size and n_cand < k:  # nearest n_cand codes all full: try every code
            dist_all, cand_all = index.search(residual[rest], k)
            self._place_rounds(dist_all, cand_all, rest, prefix, caps, assigned)
            rest = np.flatnonzero(assigned < 0)
        if rest.size:  # more items than the prefix can hold: they overflow to their nearest
            assigned[rest] = cand[rest, 0]
        return assigned.astype(np.int32)

    def _place_rounds(
        self,
        dist: np.ndarray,
        cand: np.ndarray,
        items: np.ndarray,
        prefix: np.ndarray,
        caps: np.ndarray,
        assigned: np.ndarray,
    ) -> None:
        """Round r: every unplaced item of ``items`` asks for its r-th candidate code; each
        (prefix, code) slot takes the closest askers up to its remaining capacity. Fills
        ``assigned`` in place (-1 = not placed yet)."""
        k = self.codebook_size
        slots_all = prefix[items][:, None] * k + cand.astype(np.int64)
        uniq, slot_idx = np.unique(slots_all, return_inverse=True)
        slot_idx = slot_idx.reshape(slots_all.shape)
        done = np.flatnonzero(assigned >= 0)
        room = caps[uniq // k].copy()
        if done.size:
            used_keys, used_counts = np.unique(
                prefix[done] * k + assigned[done], return_counts=True
            )
            pos = np.clip(np.searchsorted(used_keys, uniq), 0, len(used_keys) - 1)
            room -= np.where(used_keys[pos] == uniq, used_counts[pos], 0)
        pending = np.ones(len(items), dtype=bool)
        for r in range(cand.shape[1]):
            rows = np.flatnonzero(pending)
            if rows.size == 0:
                break
            slot = slot_idx[rows, r]
            order = np.lexsort((dist[rows, r], slot))
            slot_sorted = slot[order]
            accept = rank_within_runs(slot_sorted) < room[slot_sorted]
            taken = rows[order[accept]]
            assigned[items[taken]] = cand[taken, r]
            pending[taken] = False
            np.subtract.at(room, slot_sorted[accept], 1)

    def _assign_matching(
        self, residual: np.ndarray, index, centroids: np.ndarray, prefix: np.ndarray
    ) -> np.ndarray:
        from scipy.optimize import linear_sum_assignment

        k = self.codebook_size
        n_cand = min(self.n_candidates, k)
        dist, cand = index.search(residual, n_cand)
        codes = cand[:, 0].astype(np.int64)
        slots = prefix * k + codes
        order = np.lexsort((slots, prefix))
        # a prefix needs matching only where two of its items want the same code
        slot_sorted = slots[order]
        dup = np.zeros(len(order), dtype=bool)
        dup[1:] = slot_sorted[1:] == slot_sorted[:-1]
        conflicted = np.unique(prefix[order][dup])
        if conflicted.size == 0:
            return codes.astype(np.int32)
        by_prefix = np.argsort(prefix, kind="stable")
        starts = np.searchsorted(prefix[by_prefix], conflicted, side="left")
        ends = np.searchsorted(prefix[by_prefix], conflicted, side="right")
        small = (ends - starts) <= n_cand
        if small.any():
            # small groups go many at a time into one sparse problem: an item's edges go to its
            # candidate (prefix, code) slots, so the groups are independent components; chunks
            # of a few thousand items, as the sparse solver's cost grows faster than linearly
            lengths = (ends - starts)[small]
            offsets = np.repeat(starts[small] - np.cumsum(lengths) + lengths, lengths)
            members_all = by_prefix[np.arange(lengths.sum()) + offsets]
            sizes_all = np.repeat(lengths, lengths)
            bounds = np.concatenate(([0], np.cumsum(lengths)))
            chunk_ends = np.unique(
                np.searchsorted(
                    bounds, np.arange(_MATCH_CHUNK, bounds[-1] + _MATCH_CHUNK, _MATCH_CHUNK)
                ).clip(max=len(bounds) - 1)
            )
            lo = 0
            for hi in bounds[chunk_ends]:
                if hi <= lo:
                    continue
                members = members_all[lo:hi]
                codes[members] = self._match_small_groups(
                    dist[members], cand[members], prefix[members], sizes_all[lo:hi]
                )
                lo = hi
        starts, ends = starts[~small], ends[~small]
        # a few larger problems, on fit's one-thread BLAS (a multi-threaded one only adds
        # overhead here)
        for start, end in zip(starts, ends, strict=True):
            members = by_prefix[start:end]
            codes[members] = self._match_group(
                residual[members],
                dist[members],
                cand[members],
                centroids,
                linear_sum_assignment,
            )
        return codes.astype(np.int32)

    def _match_small_groups(
        self, dist: np.ndarray, cand: np.ndarray, prefix: np.ndarray, group_size: np.ndarray
    ) -> np.ndarray:
        """Minimum-cost distinct codes within each prefix for groups of at most ``n_candidates``
        items, over each item's ``g`` nearest codes in a group of ``g`` (a perfect matching
        exists there, and an item never needs a code beyond its g-th nearest: at most g - 1 of
        its nearer codes can be taken by the others)."""
        from scipy.sparse import csr_matrix
        from scipy.sparse.csgraph import min_weight_full_bipartite_matching

        n, n_cand = cand.shape
        keep = np.arange(n_cand)[None, :] < group_size[:, None]
        rows = np.broadcast_to(np.arange(n)[:, None], cand.shape)[keep]
        slots = prefix[rows] * self.codebook_size + cand[keep].astype(np.int64)
        uniq, col = np.unique(slots, return_inverse=True)
        # +1: every row is matched once, so a constant shift keeps the optimum and keeps
        # zero distances from reading as missing edges
        graph = csr_matrix(
            (dist[keep].astype(np.float64) + 1.0, (rows, col.reshape(-1))), shape=(n, uniq.size)
        )
        _, matched = min_weight_full_bipartite_matching(graph)
        return uniq[matched] % self.codebook_size

    @staticmethod
    def _match_group(
        residual: np.ndarray, dist: np.ndarray, cand: np.ndarray, centroids: np.ndarray, lsa
    ) -> np.ndarray:
        """Distinct codes for one prefix's items by minimum total squared distance.

        A group no larger than the candidate lists is matched over its items' candidate codes
        only (each item has at least as many candidates as the group has items, so a perfect
        matching exists there, and codes outside an item's nearest ones would cost more); a
        larger group is matched over every code, in rounds of at most ``codebook_size`` items,
        so that only its overflow collides.
        """
        g, n_cand = cand.shape
        if g <= n_cand:
            cols, inverse = np.unique(cand, return_inverse=True)
            cost = np.full((g, cols.size), np.inf)
            cost[np.repeat(np.arange(g), n_cand), inverse.reshape(-1)] = dist.reshape(-1)
            rows, picked = lsa(cost)
            out = np.empty(g, dtype=np.int64)
            out[rows] = cols[picked]
            return out
        cost = _squared_distances(residual, centroids)
        out = np.empty(g, dtype=np.int64)
        remaining = np.arange(g)
        while remaining.size:
            rows, picked = lsa(cost[remaining])
            out[remaining[rows]] = picked
            remaining = np.delete(remaining, rows)
        return out

    # ------------------------------------------------------------------ encode / decode

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Nearest-centroid codes int32 ``(n, n_levels)`` of vectors ``x`` float ``(n, dim)``.

        This is plain residual quantisation (no capacities), meant for vectors outside the
        catalogue; the catalogue's own codes are ``codes_`` from :meth:`fit`.
        """
        self._check_fitted()
        residual = self._prepare(x)
        codes = np.zeros((residual.shape[0], self.n_levels), dtype=np.int32)
        with _one_thread_blas():  # the same codes for any number of threads, as in fit
            for level in range(self.n_levels):
                _, nearest = self._index(level).search(residual, 1)
                codes[:, level] = nearest[:, 0]
                if level + 1 < self.n_levels:
                    residual, _ = self._next_residual(residual, level, codes[:, level])
        return codes

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstruct float32 ``(n, dim)`` vectors from codes ``(n, l)``, ``1 <= l <= n_levels``.

        Fewer columns than levels decode a prefix. With ``normalize_input`` the result lives in
        the normalised space; with ``normalize_residuals`` each level's residual is scaled back by
        the mean norm recorded for its parent code.
        """
        self._check_fitted()
        codes = np.asarray(codes)
        if codes.ndim != 2 or not 1 <= codes.shape[1] <= self.n_levels:
            raise ValueError(
                f"codes must be (n, l) with 1 <= l <= {self.n_levels}, got shape {codes.shape}"
            )
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size})")
        codes = codes.astype(np.int64)
        depth = codes.shape[1]
        out = self.codebooks_[depth - 1][codes[:, depth - 1]].copy()
        for level in range(depth - 2, -1, -1):
            scale = self.residual_scales_[level][codes[:, level]][:, None]
            out = self.codebooks_[level][codes[:, level]] + scale * out
        return out.astype(np.float32)

    def reconstruction_error(self, x: np.ndarray, codes: np.ndarray | None = None) -> list[float]:
        """Mean squared error of decoding the first 1, 2, ... levels of ``codes`` against ``x``.

        ``codes`` defaults to :meth:`encode` of ``x``. Errors are measured in the space the codes
        live in (after input normalisation).
        """
        self._check_fitted()
        target = self._prepare(x)
        codes = self.encode(x) if codes is None else np.asarray(codes)
        if codes.shape[0] != target.shape[0]:
            raise ValueError(f"{codes.shape[0]} code rows for {target.shape[0]} vectors")
        return [
            float(((self.decode(codes[:, : level + 1]) - target) ** 2).sum(axis=1).mean())
            for level in range(min(codes.shape[1], self.n_levels))
        ]

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``config.json``, ``codebooks.npy`` and ``residual_scales.npy`` into ``directory``."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"config": self.get_config(), "dim": self.dim, "objective": self.objective_}
        with open(directory / CONFIG_NAME, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
        np.save(directory / CODEBOOKS_NAME, self.codebooks_, allow_pickle=False)
        np.save(directory / SCALES_NAME, self.residual_scales_, allow_pickle=False)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ResidualKMeans:
        """Read a model written by :meth:`save` (``codes_`` is not stored; the catalogue is)."""
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"no residual k-means at {directory}: {config_path} is missing")
        with open(config_path, encoding="utf-8") as f:
            payload = json.load(f)
        model = cls(**payload["config"])
        codebooks = np.load(directory / CODEBOOKS_NAME, allow_pickle=False)
        scales = np.load(directory / SCALES_NAME, allow_pickle=False)
        expected = (model.n_levels, model.codebook_size, int(payload["dim"]))
        if codebooks.shape != expected or scales.shape != expected[:2]:
            raise ValueError(
                f"{directory}: codebooks {codebooks.shape} / scales {scales.shape} do not match "
                f"the config's {expected}"
            )
        model.codebooks_ = np.ascontiguousarray(codebooks, dtype=np.float32)
        model.residual_scales_ = np.ascontiguousarray(scales, dtype=np.float32)
        model.objective_ = [list(map(float, o)) for o in payload.get("objective", [])]
        return model


def codebook_perplexity(codes: np.ndarray, size: int) -> float:
    """exp(entropy) of the code distribution of one level: ``size`` when uniform."""
    counts = np.bincount(np.asarray(codes, dtype=np.int64), minlength=size).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(math.exp(-(p * np.log(p)).sum()))
