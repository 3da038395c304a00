"""The co-listening views that ``mode="cf-blend"`` mixes with the model
(:mod:`text2tracks.seed_blend`): the baselines of ``eval.continuation``, kept in the artifact.

- ``item_knn``: item co-occurrence kNN of the seeds (:class:`~text2tracks.cf_targets.ItemCosine`,
  at a history power);
- ``als_fold_in``: implicit ALS fitted on the training playlists, the seeds folded in as a new
  user (``recalculate_user``, the item factors fixed) and scored against every item;
- ``title_knn``: the training playlists whose titles are nearest the prompt's text
  (:class:`~text2tracks.teacher.TitleNeighbors`, TF-IDF character n-grams) vote their tracks;
- a seed view *fused* with title kNN: each over its row maximum, ``seed + w * title``, as the
  challenge's teams fused them.

A :class:`BlendView` names one of them; :class:`CFViews` holds what they read (the training
playlists x catalogue matrix, the training titles, the ALS item factors) and answers a view's
best items per prompt. Each bucket of the blend picks its view on validation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from text2tracks.candidate_rerank import top_view

# item kNN's history_power choices (0: a popular seed votes as much as a rare one)
HISTORY_POWERS = (0.0, 0.5)
# the title weights of the fused views (each side over its row maximum)
TITLE_WEIGHTS = (0.1, 0.3, 1.0)
# ALS as eval.continuation fits its fold-in baseline (128 factors: that run's choice on the
# validation playlists of the development data, among 64, 128 and 256)
ALS_FACTORS = 128
ALS_REGULARIZATION = 0.05
ALS_ITERATIONS = 15
KNN_BLOCK = 16  # prompts per dense block: a dense row is the catalogue's size
SYSTEMS = ("item_knn", "als_fold_in", "title_knn")


@dataclass(frozen=True)
class BlendView:
    """One co-listening view: a ``system`` of :data:`SYSTEMS`, item kNN's ``history_power``
    and, for a seed system, the ``title_weight`` of title kNN fused into it (0: none)."""

    system: str
    history_power: float = 0.5
    title_weight: float = 0.0

    def __post_init__(self) -> None:
        if self.system not in SYSTEMS:
            raise ValueError(f"unknown view system {self.system!r}; expected one of {SYSTEMS}")
        if self.title_weight < 0 or (self.system == "title_knn" and self.title_weight):
            raise ValueError(f"a title weight is >= 0 and for a seed system, got {self}")

    @property
    def name(self) -> str:
        """A readable key: ``item_knn(p=0)``, ``als_fold_in+title*0.3``, ``title_knn``."""
        name = self.system
        if self.system == "item_knn":
            name += f"(p={self.history_power:g})"
        return name + (f"+title*{self.title_weight:g}" if self.title_weight else "")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, payload: dict) -> BlendView:
        return cls(
            str(payload["system"]),
            float(payload.get("history_power", 0.5)),
            float(payload.get("title_weight", 0.0)),
        )


def fit_als(interactions: sp.csr_matrix, factors: int = ALS_FACTORS):
    """implicit ALS of a playlists x items matrix (binary), fitted as ``eval.continuation``'s
    fold-in baseline and the blend's ALS view are (seeded, one BLAS thread)."""
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    if isinstance(factors, bool) or not isinstance(factors, int) or factors < 1:
        raise ValueError(f"als factors must be a positive integer, got {factors!r}")
    with threadpool_limits(limits=1, user_api="blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            regularization=ALS_REGULARIZATION,
            iterations=ALS_ITERATIONS,
            random_state=0,
        )
        model.fit(sp.csr_matrix(interactions, dtype=np.float32), show_progress=False)
    return model


def fit_als_factors(interactions: sp.csr_matrix, factors: int = ALS_FACTORS) -> np.ndarray:
    """:func:`fit_als`'s item factors ``(n_items, factors)``, float32."""
    return np.ascontiguousarray(fit_als(interactions, factors).item_factors, dtype=np.float32)


def als_fold_in_scores(model, rows: sp.csr_matrix) -> np.ndarray:
    """implicit ALS fold-in: each row's user factor solved from its items (item factors fixed),
    then scored against every item."""
    factors = model.recalculate_user(np.arange(rows.shape[0]), rows)
    return (
        np.asarray(factors, np.float32).reshape(rows.shape[0], -1)
        @ np.asarray(model.item_factors).T
    )


def seed_rows(seeds: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Prompts x items, 1 where a prompt holds a seed (item indices per prompt)."""
    from text2tracks.ragged import Ragged

    ragged = Ragged.from_rows(seeds)
    return sp.csr_matrix(
        (np.ones(len(ragged.values), np.float32), ragged.values, ragged.indptr),
        shape=(len(ragged), n_items),
    )


class CFViews:
    """What the views read, and each view's best items per prompt.

    Args:
        interactions: training playlists x catalogue items (read as binary).
        titles: the training playlists' texts, row for row (none: no title views).
        item_factors: ALS item factors ``(n_items, f)`` (none: no ALS fold-in view).
    """

    def __init__(
        self,
        interactions: sp.spmatrix,
        titles: Sequence[str] | None = None,
        item_factors: np.ndarray | None = None,
    ) -> None:
        from text2tracks.cf_targets import ItemCosine

        self.interactions = sp.csr_matrix(interactions, dtype=np.float32, copy=True)
        self.interactions.data[:] = 1.0  # read as binary
        self.cosine = ItemCosine(self.interactions)
        n_rows, n_items = self.interactions.shape
        self.titles = None if titles is None else [str(t) for t in titles]
        if self.titles is not None and len(self.titles) != n_rows:
            raise ValueError(
                f"{len(self.titles)} titles for {n_rows} training playlists: give one per row"
            )
        self.item_factors = None
        if item_factors is not None:
            self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
            if self.item_factors.ndim != 2 or self.item_factors.shape[0] != n_items:
                raise ValueError(
                    f"ALS item factors of shape {self.item_factors.shape} for {n_items} items"
                )
        self._neighbors = None
        self._als = None

    @property
    def n_items(self) -> int:
        return self.interactions.shape[1]

    def candidates(self, seeded: bool, with_text: bool) -> list[BlendView]:
        """The views a bucket may pick: title kNN for prompts without seeds; for seeded ones
        item kNN at each history power, ALS fold-in, and (``with_text``) each fused with title
        kNN at each weight of :data:`TITLE_WEIGHTS`."""
        if not seeded:
            return [BlendView("title_knn")] if self.titles is not None else []
        seeds = [BlendView("item_knn", p) for p in HISTORY_POWERS]
        if self.item_factors is not None:
            seeds.append(BlendView("als_fold_in"))
        fused = [
            BlendView(v.system, v.history_power, w)
            for v in seeds
            for w in (TITLE_WEIGHTS if with_text and self.titles is not None else ())
        ]
        return seeds + fused

    # --- scores ---------------------------------------------------------------------------------

    def _title_scores(self, texts: Sequence[str]) -> np.ndarray:
        if self.titles is None:
            raise ValueError("this blend keeps no training titles: it has no title kNN view")
        if self._neighbors is None:
            from text2tracks.teacher import TitleNeighbors

            self._neighbors = TitleNeighbors().fit(self.titles)
        return (self._neighbors.weights(list(texts)) @ self.interactions).toarray()

    def _als_scores(self, rows: sp.csr_matrix) -> np.ndarray:
        if self.item_factors is None:
            raise ValueError("this blend keeps no ALS factors: it has no ALS fold-in view")
        if self._als is None:
            from implicit.als import AlternatingLeastSquares
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):  # implicit warns otherwise
                self._als = AlternatingLeastSquares(
                    factors=self.item_factors.shape[1], regularization=ALS_REGULARIZATION
                )
            self._als.item_factors = self.item_factors
        return als_fold_in_scores(self._als, rows)

    def scores(
        self, view: BlendView, texts: Sequence[str], seeds: Sequence[np.ndarray]
    ) -> np.ndarray:
        """Dense ``(n, n_items)`` float64 scores of ``view`` for prompts (texts and seeds)."""
        if view.system == "title_knn":
            return self._title_scores(texts).astype(np.float64)
        rows = seed_rows(seeds, self.n_items)
        if view.system == "item_knn":
            seed = self.cosine.scores(rows, view.history_power)
        else:
            seed = self._als_scores(rows)
        seed = np.asarray(seed, np.float64)
        if not view.title_weight:
            return seed
        return fused(seed, self._title_scores(texts), view.title_weight)

    def top(
        self,
        view: BlendView,
        texts: Sequence[str],
        seeds: Sequence[np.ndarray],
        excluded: Sequence[np.ndarray | None],
        depth: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per prompt, ``view``'s best ``depth`` items and scores, the seeds and ``excluded``
        left out; -1 / 0 where it has fewer. Scored :data:`KNN_BLOCK` prompts at a time (a
        dense row is the catalogue's size: 2M tracks at full-MPD scale)."""
        parts = []
        for start in range(0, len(seeds), KNN_BLOCK):
            stop = start + KNN_BLOCK
            dense = self.scores(view, texts[start:stop], seeds[start:stop])
            for r, (s, e) in enumerate(zip(seeds[start:stop], excluded[start:stop], strict=True)):
                dense[r, np.asarray(s, np.int64)] = -np.inf
                if e is not None:
                    dense[r, np.asarray(e, np.int64)] = -np.inf
            parts.append(top_view(dense, depth))
        if not parts:
            return np.zeros((0, depth), np.int64), np.zeros((0, depth))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    # --- saving ---------------------------------------------------------------------------------

    def save(self, directory: Path) -> dict:
        """Write ``interactions.npz``, and ``titles.json`` / ``als_item_factors.npy`` where
        kept; returns what the config records of them."""
        sp.save_npz(directory / "interactions.npz", self.interactions, compressed=True)
        if self.titles is not None:
            (directory / "titles.json").write_text(json.dumps(self.titles), encoding="utf-8")
        if self.item_factors is not None:
            np.save(directory / "als_item_factors.npy", self.item_factors, allow_pickle=False)
        return {
            "titles": self.titles is not None,
            "als_factors": 0 if self.item_factors is None else int(self.item_factors.shape[1]),
        }

    @classmethod
    def load(cls, directory: Path) -> CFViews:
        matrix = sp.load_npz(directory / "interactions.npz")  # plain arrays, no pickle
        titles_path = directory / "titles.json"
        titles = (
            json.loads(titles_path.read_text(encoding="utf-8")) if titles_path.is_file() else None
        )
        factors_path = directory / "als_item_factors.npy"
        factors = np.load(factors_path, allow_pickle=False) if factors_path.is_file() else None
        return cls(matrix, titles, factors)


def over_max(scores: np.ndarray) -> np.ndarray:
    """Each row over its largest absolute value (a row of zeros stays zero)."""
    top = np.abs(scores).max(axis=1, keepdims=True)
    return scores / np.where(top > 0, top, 1.0)


def fused(seed: np.ndarray, title: np.ndarray, weight: float) -> np.ndarray:
    """A seed view fused with title kNN: each over its row maximum, ``seed + weight * title``
    (the fused baselines of ``eval.continuation`` too)."""
    return over_max(seed) + weight * over_max(title)
