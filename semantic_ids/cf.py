"""Collaborative-filtering embeddings of tracks (and playlists) with ``implicit``.

``fit_cf`` takes the playlist x track matrix built from training playlists only and returns a
:class:`CFModel` holding both sides of the factorisation:

* ``item_factors`` float32 ``(n_items, dim)``: the tracks' embeddings, from which the semantic IDs
  are built;
* ``playlist_factors`` float32 ``(n_playlists, dim)``: implicit's ``user_factors``, kept because the
  diffusion head learns to write them (a playlist factor is the query whose dot product with the
  item factors ranks that playlist's tracks).

One on-disk format whatever the backend: a GPU model is saved through its CPU form, as
``config.json`` + ``item_factors.npy`` + ``playlist_factors.npy`` (no pickle).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import scipy.sparse as sp

_MODELS = ("als", "bpr")
_WEIGHTINGS = ("bm25", "tfidf", "none")
CONFIG_NAME = "config.json"
ITEM_FACTORS_NAME = "item_factors.npy"
PLAYLIST_FACTORS_NAME = "playlist_factors.npy"


@dataclass(frozen=True)
class CFConfig:
    """Hyperparameters of the CF model.

    Attributes:
        model: ``"als"`` (implicit ALS, the default) or ``"bpr"`` (Bayesian personalised ranking).
        factors: embedding width ``dim``. implicit's BPR adds one bias column, and its GPU ALS
            may pad the width; ``CFModel.dim`` is the width actually learned.
        regularization: L2 penalty.
        iterations: ALS sweeps (or BPR epochs).
        alpha: ALS confidence scale, confidence = 1 + alpha * weight.
        learning_rate: BPR's SGD learning rate (unused by ALS).
        weighting: how the 0/1 playlist x track matrix is weighted before ALS: ``"bm25"``,
            ``"tfidf"`` or ``"none"``. BPR always sees the unweighted matrix.
        bm25_k1, bm25_b: BM25 parameters (implicit's defaults for music data).
        use_gpu: fit on the GPU (needs implicit built with CUDA).
        seed: seeds implicit's factor initialisation.
        num_threads: CPU threads for fitting; 0 means every core this process may use.
    """

    model: str = "als"
    factors: int = 64
    regularization: float = 0.01
    iterations: int = 15
    alpha: float = 1.0
    learning_rate: float = 0.01
    weighting: str = "bm25"
    bm25_k1: float = 100.0
    bm25_b: float = 0.8
    use_gpu: bool = False
    seed: int = 0
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.model not in _MODELS:
            raise ValueError(f"CFConfig.model must be one of {_MODELS}, got {self.model!r}")
        if self.weighting not in _WEIGHTINGS:
            raise ValueError(
                f"CFConfig.weighting must be one of {_WEIGHTINGS}, got {self.weighting!r}"
            )
        if int(self.factors) < 1:
            raise ValueError(f"CFConfig.factors must be >= 1, got {self.factors}")
        if int(self.iterations) < 1:
            raise ValueError(f"CFConfig.iterations must be >= 1, got {self.iterations}")
        if self.regularization < 0 or self.alpha <= 0 or self.learning_rate <= 0:
            raise ValueError(
                "CFConfig needs regularization >= 0, alpha > 0 and learning_rate > 0, got "
                f"{self.regularization}, {self.alpha}, {self.learning_rate}"
            )
        if not 0.0 <= self.bm25_b <= 1.0 or self.bm25_k1 <= 0:
            raise ValueError(
                f"CFConfig needs bm25_k1 > 0 and 0 <= bm25_b <= 1, got {self.bm25_k1}, {self.bm25_b}"
            )
        if int(self.num_threads) < 0:
            raise ValueError(f"CFConfig.num_threads must be >= 0, got {self.num_threads}")

    @classmethod
    def from_dict(cls, values: dict) -> CFConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown CFConfig keys: {sorted(unknown)}")
        return cls(**values)


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask where the platform has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def weight_matrix(matrix: sp.csr_matrix, config: CFConfig) -> sp.csr_matrix:
    """Apply ``config.weighting`` to a playlist x track matrix, returning float32 CSR.

    implicit's ``bm25_weight`` / ``tfidf_weight`` treat rows as documents and columns as terms,
    and implicit's own examples call them on the item x user matrix; we do the same (transpose,
    weight, transpose back), so that a track's row is normalised by its number of playlists.
    """
    from implicit.nearest_neighbours import bm25_weight, tfidf_weight

    if config.weighting == "none":
        return matrix.astype(np.float32).tocsr()
    item_user = matrix.T.tocoo()
    if config.weighting == "bm25":
        weighted = bm25_weight(item_user, K1=config.bm25_k1, B=config.bm25_b)
    else:
        weighted = tfidf_weight(item_user)
    return weighted.T.tocsr().astype(np.float32)


class CFModel:
    """Learned CF factors: ``item_factors`` (n_items, dim) and ``playlist_factors`` (n_playlists, dim).

    Scores are dot products: ``playlist_factors[p] @ item_factors[i]`` ranks playlist ``p``'s tracks.
    """

    def __init__(
        self, item_factors: np.ndarray, playlist_factors: np.ndarray, config: CFConfig
    ) -> None:
        item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        playlist_factors = np.ascontiguousarray(playlist_factors, dtype=np.float32)
        if item_factors.ndim != 2 or playlist_factors.ndim != 2:
            raise ValueError(
                f"factors must be 2-d, got item {item_factors.shape} and playlist {playlist_factors.shape}"
            )
        if item_factors.shape[1] != playlist_factors.shape[1]:
            raise ValueError(
                f"item and playlist factors differ in width: {item_factors.shape[1]} vs "
                f"{playlist_factors.shape[1]}"
            )
        self.item_factors = item_factors
        self.playlist_factors = playlist_factors
        self.config = config

    @property
    def n_items(self) -> int:
        return self.item_factors.shape[0]

    @property
    def n_playlists(self) -> int:
        return self.playlist_factors.shape[0]

    @property
    def dim(self) -> int:
        return self.item_factors.shape[1]

    def recommend_for_factor(
        self, query: np.ndarray, k: int = 10, exclude: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items by dot product with ``query``.

        Args:
            query: float ``(dim,)`` or ``(n, dim)``.
            k: number of items to return (at most ``n_items``).
            exclude: optional item indices never returned.

        Returns:
            ``(item_indices int64, scores float32)``, each ``(k,)`` for one query or ``(n, k)`` for
            a batch, best first.
        """
        query = np.asarray(query, dtype=np.float32)
        single = query.ndim == 1
        queries = query[None, :] if single else query
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"query must be ({self.dim},) or (n, {self.dim}), got {query.shape}")
        k = int(k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        scores = queries @ self.item_factors.T
        if exclude is not None and len(exclude):
            scores[:, np.asarray(exclude, dtype=np.int64)] = -np.inf
        k = min(k, self.n_items)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1).astype(np.int64)
        top_scores = np.take_along_axis(top_scores, order, axis=1).astype(np.float32)
        return (top[0], top_scores[0]) if single else (top, top_scores)

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``config.json``, ``item_factors.npy`` and ``playlist_factors.npy`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "config": asdict(self.config),
            "n_items": self.n_items,
            "n_playlists": self.n_playlists,
            "dim": self.dim,
        }
        with open(directory / CONFIG_NAME, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
        np.save(directory / ITEM_FACTORS_NAME, self.item_factors, allow_pickle=False)
        np.save(directory / PLAYLIST_FACTORS_NAME, self.playlist_factors, allow_pickle=False)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> CFModel:
        """Read a model written by :meth:`save`."""
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"no CF model at {directory}: {config_path} is missing")
        with open(config_path, encoding="utf-8") as f:
            payload = json.load(f)
        config = CFConfig.from_dict(payload["config"])
        item_factors = np.load(directory / ITEM_FACTORS_NAME, allow_pickle=False)
        playlist_factors = np.load(directory / PLAYLIST_FACTORS_NAME, allow_pickle=False)
        if item_factors.shape != (payload["n_items"], payload["dim"]):
            raise ValueError(
                f"{directory / ITEM_FACTORS_NAME} has shape {item_factors.shape}, config says "
                f"({payload['n_items']}, {payload['dim']})"
            )
        if playlist_factors.shape != (payload["n_playlists"], payload["dim"]):
            raise ValueError(
                f"{directory / PLAYLIST_FACTORS_NAME} has shape {playlist_factors.shape}, config "
                f"says ({payload['n_playlists']}, {payload['dim']})"
            )
        return cls(item_factors, playlist_factors, config)


def _make_model(config: CFConfig, num_threads: int):
    if config.model == "als":
        from implicit.als import AlternatingLeastSquares

        kwargs = dict(
            factors=config.factors,
            regularization=config.regularization,
            alpha=config.alpha,
            iterations=config.iterations,
            random_state=config.seed,
            use_gpu=config.use_gpu,
        )
        if not config.use_gpu:
            kwargs["num_threads"] = num_threads
        return AlternatingLeastSquares(**kwargs)
    from implicit.bpr import BayesianPersonalizedRanking

    kwargs = dict(
        factors=config.factors,
        learning_rate=config.learning_rate,
        regularization=config.regularization,
        iterations=config.iterations,
        random_state=config.seed,
        use_gpu=config.use_gpu,
    )
    if not config.use_gpu:
        kwargs["num_threads"] = num_threads
    return BayesianPersonalizedRanking(**kwargs)


def fit_cf(
    matrix: sp.spmatrix, config: CFConfig | None = None, show_progress: bool = True
) -> CFModel:
    """Fit ALS (or BPR) on a playlist x track matrix.

    Args:
        matrix: ``(n_playlists, n_items)`` sparse interactions of the training playlists
            (``semantic_ids.interactions.build_interactions``).
        config: hyperparameters; defaults to ``CFConfig()``.
        show_progress: show implicit's progress bar.

    Returns:
        A :class:`CFModel` with float32 ``item_factors`` (n_items, dim) and ``playlist_factors``
        (n_playlists, dim).

    Raises:
        ValueError: on an empty matrix, negative weights, a GPU request without CUDA, or factors
            that came back non-finite (try a larger ``regularization`` or ``weighting="none"``).
    """
    config = config or CFConfig()
    if not sp.issparse(matrix):
        raise ValueError(f"matrix must be a scipy sparse matrix, got {type(matrix).__name__}")
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    n_playlists, n_items = matrix.shape
    if n_playlists == 0 or n_items == 0 or matrix.nnz == 0:
        raise ValueError(f"cannot fit CF on an empty matrix of shape {matrix.shape}")
    if matrix.data.min() < 0:
        raise ValueError("interaction weights must be non-negative")
    if config.use_gpu:
        import implicit.gpu

        if not implicit.gpu.HAS_CUDA:
            raise ValueError("use_gpu=True but this implicit build has no CUDA support")

    weighted = weight_matrix(matrix, config) if config.model == "als" else matrix
    num_threads = int(config.num_threads) or available_cpus()
    # implicit runs its own thread pool; a multi-threaded BLAS underneath it oversubscribes the
    # cores (implicit warns about exactly this when the model is built), so pin BLAS to one thread.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        model = _make_model(config, num_threads)
        model.fit(weighted, show_progress=show_progress)
    if config.use_gpu:
        model = model.to_cpu()

    item_factors = np.asarray(model.item_factors, dtype=np.float32)
    playlist_factors = np.asarray(model.user_factors, dtype=np.float32)
    for name, factors in (("item", item_factors), ("playlist", playlist_factors)):
        if not np.isfinite(factors).all():
            bad = int((~np.isfinite(factors).all(axis=1)).sum())
            raise ValueError(
                f"CF fit produced non-finite {name} factors in {bad} rows "
                f"(model={config.model}, weighting={config.weighting}, "
                f"regularization={config.regularization}); try a larger regularization, "
                "fewer factors or weighting='none'"
            )
    return CFModel(item_factors, playlist_factors, config)


def catalogue_factors(
    item_factors: np.ndarray, vocab_item_ids: Sequence[str], catalog_item_ids: Sequence[str]
) -> np.ndarray:
    """CF item factors ``(n_catalogue, dim)`` float32 in catalogue order.

    ``item_factors[i]`` belongs to ``vocab_item_ids[i]`` (``cf/``'s order). ``build-ids`` makes
    the catalogue from that vocabulary in the same order, but the mapping is done by id so that
    a catalogue in another order (or a subset) still lines up. A catalogue track without a
    factor raises ``ValueError``.
    """
    item_factors = np.asarray(item_factors)
    if item_factors.ndim != 2 or item_factors.shape[0] != len(vocab_item_ids):
        raise ValueError(
            f"item_factors must be ({len(vocab_item_ids)}, dim) to match the vocabulary, "
            f"got {item_factors.shape}"
        )
    position = {t: i for i, t in enumerate(vocab_item_ids)}
    missing = [t for t in catalog_item_ids if t not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} catalogue tracks have no CF factor (first: {missing[0]!r}); "
            "the catalogue and cf/ come from different builds"
        )
    rows = np.fromiter(
        (position[t] for t in catalog_item_ids), dtype=np.int64, count=len(catalog_item_ids)
    )
    return np.ascontiguousarray(item_factors[rows], dtype=np.float32)


def load_catalogue_factors(cf_dir: str | os.PathLike, item_ids: Sequence[str]) -> np.ndarray:
    """The item factors saved in ``cf_dir`` (``item_factors.npy`` in the order of its
    ``vocab.json``) for the tracks ``item_ids``, in that order (:func:`catalogue_factors`)."""
    from semantic_ids.interactions import ItemVocab

    vocab = ItemVocab.load(cf_dir)
    raw = np.load(Path(cf_dir) / "item_factors.npy", allow_pickle=False, mmap_mode="r")
    return catalogue_factors(raw, vocab.item_ids, item_ids)
