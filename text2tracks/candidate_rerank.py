"""Learned re-ranking of the candidates of several retrieval views (LIGER, COBRA, SpecGR).

``text2tracks-hybrid`` unions the beam's candidates with those of other views (title kNN, a
dense retriever, ...) and ranks the union by a logistic regression over per-candidate features,
fitted on validation prompts whose relevant tracks are known; the final ``k`` are picked with
the same first-code diversification as the generative list (:func:`text2tracks.generative.
diversify`). It is a separate system from ``text2tracks``, whose ranking uses the seq2seq's own
scores only.

A view is ``(items, scores)``: ``(n_prompts, depth)`` item indices best first (``-1`` for none)
and their scores on any scale. Each view contributes four features per candidate, computed per
prompt so that unrelated score scales do not matter: present in the view, the score as a
z-score among the view's candidates (absent: half a standard deviation below its worst), the
reciprocal rank, and the log rank (absent: ``log(depth + 1)``); then the log popularity of the
item and the number of views that return it.

The fitted model is a few numbers (standardisation, weights, the diversity penalty), saved as
JSON (:meth:`CandidateReranker.to_dict`), and applied with numpy; scikit-learn fits it.

:class:`ListInterleave` is the simpler alternative: the generative system's own top ``n``, then
the other view's list, ``n`` fitted the same way. :class:`ScoreMixture` reads both views as
distributions over their candidates and mixes them (DAR's fixed blend, in probability space).
The benchmark keeps whichever fusion scores best on the validation playlists
(:func:`hybrid_fusion_from_dict` reads any of them back).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from text2tracks.generative import diversify
from text2tracks.ranking_metrics import per_prompt_metrics

View = tuple[np.ndarray, np.ndarray]
FEATURES_PER_VIEW = ("present", "zscore", "reciprocal_rank", "log_rank")
SHARED_FEATURES = ("log_popularity", "n_views")
DEFAULT_PENALTIES = (0.0, 0.5, 1.0, 1.5)
# ScoreMixture's grid: the first view's weight, the temperature of its softmax, the penalty.
# 144 points: on two 60-minute default runs (eval.fusion_headroom) the earlier 60-point grid
# (weights 0.1-0.7, temperatures 0.5-2) fitted 0.472 and 0.441 on test, this one 0.469 and 0.463.
MIX_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
MIX_TEMPERATURES = (0.25, 0.5, 1.0, 2.0)
MIX_PENALTIES = (0.0, 0.25, 0.5, 1.0)


def feature_names(views: Sequence[str]) -> list[str]:
    """The columns of :func:`candidate_features` for these view names, in order."""
    return [f"{v}.{f}" for v in views for f in FEATURES_PER_VIEW] + list(SHARED_FEATURES)


def _check_views(views: Mapping[str, View], names: Sequence[str]) -> int:
    missing = [n for n in names if n not in views]
    if missing:
        raise ValueError(f"missing candidate views {missing}; got {sorted(views)}")
    sizes = {n: np.asarray(views[n][0]).shape for n in names}
    for name, (items, scores) in ((n, views[n]) for n in names):
        if np.asarray(items).ndim != 2 or np.asarray(items).shape != np.asarray(scores).shape:
            raise ValueError(f"view {name!r}: items and scores must be the same (n, depth) shape")
    if len({shape[0] for shape in sizes.values()}) > 1:
        raise ValueError(f"views cover different numbers of prompts: {sizes}")
    return next(iter(sizes.values()))[0]


def candidate_features(
    views: Mapping[str, View], names: Sequence[str], popularity: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per prompt, ``(items, features)``: the union of the views' candidates (each once, in
    view order) and their ``(n_candidates, len(feature_names(names)))`` features."""
    n_prompts = _check_views(views, names)
    popularity = np.asarray(popularity, dtype=np.float64)
    rows = []
    for r in range(n_prompts):
        lists = []
        for name in names:
            items, scores = np.asarray(views[name][0][r]), np.asarray(views[name][1][r], float)
            keep = items >= 0
            lists.append((items[keep], scores[keep], items.shape[0]))
        union = np.asarray(
            list(dict.fromkeys(int(i) for items, _, _ in lists for i in items)), dtype=np.int64
        )
        features = np.zeros((union.size, 4 * len(names) + 2))
        sorter = np.argsort(union)
        for v, (items, scores, depth) in enumerate(lists):
            columns = features[:, 4 * v : 4 * v + 4]
            mean = scores.mean() if scores.size else 0.0
            std = scores.std() + 1e-9 if scores.size else 1.0
            columns[:, 1] = ((scores.min() - mean) / std if scores.size else 0.0) - 0.5
            columns[:, 3] = np.log(depth + 1)
            position = sorter[np.searchsorted(union, items, sorter=sorter)]
            ranks = np.arange(items.size)
            columns[position, 0] = 1.0
            columns[position, 1] = (scores - mean) / std
            columns[position, 2] = 1.0 / (ranks + 1)
            columns[position, 3] = np.log(ranks + 1)
        if union.size:
            features[:, -2] = np.log1p(popularity[union])
            features[:, -1] = features[:, 0 : 4 * len(names) : 4].sum(axis=1)
        rows.append((union, features))
    return rows


class CandidateReranker:
    """Logistic regression over :func:`candidate_features`, then first-code diversification.

    Args:
        views: the names of the views it reads, in order (e.g. ``("beam", "title_knn")``).
        C: inverse L2 strength of the logistic regression.
        penalties: the diversity penalties tried on the fitting prompts; the one with the best
            mean Hits@k there is kept (0 keeps the regression's order).
    """

    def __init__(
        self,
        views: Sequence[str],
        C: float = 0.1,
        penalties: Sequence[float] = DEFAULT_PENALTIES,
    ) -> None:
        if not views:
            raise ValueError("a CandidateReranker needs at least one view")
        if len(set(views)) != len(views):
            raise ValueError(f"view names must be distinct, got {list(views)}")
        if C <= 0:
            raise ValueError(f"C must be > 0, got {C}")
        if not penalties or min(penalties) < 0:
            raise ValueError(f"penalties must be non-empty and >= 0, got {list(penalties)}")
        self.views = tuple(views)
        self.C = float(C)
        self.penalties = tuple(float(p) for p in penalties)

    def fit(
        self,
        views: Mapping[str, View],
        relevant: Sequence[set[int]],
        popularity: np.ndarray,
        groups: np.ndarray,
        k: int = 10,
    ) -> CandidateReranker:
        """Fit on prompts whose ``relevant`` item sets are known; ``groups[i]`` is item ``i``'s
        first ID code (what diversification spreads over). Sets ``fit_hits_`` per penalty."""
        from sklearn.linear_model import LogisticRegression

        rows = candidate_features(views, self.views, popularity)
        if len(relevant) != len(rows):
            raise ValueError(f"{len(relevant)} relevant sets for {len(rows)} prompts")
        features = np.vstack([f for _, f in rows])
        labels = np.concatenate(
            [np.isin(items, list(rel)) for (items, _), rel in zip(rows, relevant, strict=True)]
        )
        if labels.all() or not labels.any():
            raise ValueError(
                "the fitting prompts' candidates are all relevant or all irrelevant; fit on "
                "more prompts (validation playlists whose tracks the views sometimes miss)"
            )
        self.mean_ = features.mean(axis=0)
        self.scale_ = np.where(features.std(axis=0) > 0, features.std(axis=0), 1.0)
        model = LogisticRegression(C=self.C, max_iter=2000)
        model.fit((features - self.mean_) / self.scale_, labels)
        self.coef_ = model.coef_.ravel().astype(np.float64)
        self.intercept_ = float(model.intercept_[0])
        self.penalty_ = 0.0
        self.fit_hits_ = {}
        for penalty in self.penalties:
            self.penalty_ = penalty
            ranked, _ = self._rank_rows(rows, groups, k)
            self.fit_hits_[penalty] = float(
                per_prompt_metrics(ranked, relevant, k, allow_empty=True)["hits"].mean()
            )
        self.penalty_ = max(self.fit_hits_, key=lambda p: (self.fit_hits_[p], -p))
        return self

    def rank(
        self, views: Mapping[str, View], popularity: np.ndarray, groups: np.ndarray, k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(items, scores)`` ``(n_prompts, k)``, best first; ``-1`` / ``-inf`` where a prompt
        has fewer than ``k`` candidates."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("CandidateReranker.rank called before fit() or from_dict()")
        return self._rank_rows(candidate_features(views, self.views, popularity), groups, k)

    def _rank_rows(self, rows, groups: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        groups = np.asarray(groups)
        out_items = np.full((len(rows), k), -1, dtype=np.int64)
        out_scores = np.full((len(rows), k), -np.inf)
        for r, (items, features) in enumerate(rows):
            if not items.size:
                continue
            scores = ((features - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
            order = np.argsort(-scores, kind="stable")
            width = min(k, items.size)
            picked, picked_scores = diversify(
                items[order][None],
                scores[order][None],
                groups[items[order]][None],
                width,
                self.penalty_,
            )
            out_items[r, :width], out_scores[r, :width] = picked[0], picked_scores[0]
        return out_items, out_scores

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the views, the feature names, the standardisation, weights and penalty."""
        if not hasattr(self, "coef_"):
            raise RuntimeError("CandidateReranker.to_dict called before fit()")
        return {
            "type": "candidate_reranker",
            "views": list(self.views),
            "features": feature_names(self.views),
            "C": self.C,
            "penalties": list(self.penalties),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "penalty": self.penalty_,
            "fit_hits": {str(p): h for p, h in self.fit_hits_.items()},
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> CandidateReranker:
        """The reranker :meth:`to_dict` wrote; ``ValueError`` if it is not one."""
        if payload.get("type") != "candidate_reranker":
            raise ValueError(f"not a saved CandidateReranker (type {payload.get('type')!r})")
        reranker = cls(payload["views"], payload["C"], payload["penalties"])
        if payload.get("features") != feature_names(reranker.views):
            raise ValueError("the saved reranker's features are not this version's; refit it")
        reranker.mean_ = np.asarray(payload["mean"], dtype=np.float64)
        reranker.scale_ = np.asarray(payload["scale"], dtype=np.float64)
        reranker.coef_ = np.asarray(payload["coef"], dtype=np.float64)
        reranker.intercept_ = float(payload["intercept"])
        reranker.penalty_ = float(payload["penalty"])
        reranker.fit_hits_ = {float(p): h for p, h in payload.get("fit_hits", {}).items()}
        return reranker


class ListInterleave:
    """The first ranked list's top ``n`` in its own order, then the second list's items that are
    not in it yet, up to ``k``; ``n`` (0 .. ``k``) is the one with the best mean Hits@k on the
    fitting prompts.

    For a set metric such as Hits@k this keeps each view's own best guesses, where a pointwise
    score tends to pick the items both views agree on, which add little to either's hits.

    Args:
        first, second: the names of the two lists it reads (e.g. ``"text2tracks"``, the
            generative system's own diversified answer, and ``"title_knn"``).
    """

    def __init__(self, first: str, second: str) -> None:
        if first == second:
            raise ValueError(f"interleave two different lists, got {first!r} twice")
        self.first, self.second = first, second

    def fit(
        self, lists: Mapping[str, np.ndarray], relevant: Sequence[set[int]], k: int = 10
    ) -> ListInterleave:
        """Pick ``n_`` on prompts whose ``relevant`` sets are known; ``fit_hits_`` per ``n``."""
        self.fit_hits_ = {
            n: float(
                per_prompt_metrics(self._merge(lists, n, k), relevant, k, allow_empty=True)[
                    "hits"
                ].mean()
            )
            for n in range(k + 1)
        }
        self.n_ = max(self.fit_hits_, key=lambda n: (self.fit_hits_[n], n))
        return self

    def rank(self, lists: Mapping[str, np.ndarray], k: int = 10) -> np.ndarray:
        """Item indices ``(n_prompts, k)``, ``-1`` where both lists run out."""
        if not hasattr(self, "n_"):
            raise RuntimeError("ListInterleave.rank called before fit() or from_dict()")
        return self._merge(lists, min(self.n_, k), k)

    def _merge(self, lists: Mapping[str, np.ndarray], n: int, k: int) -> np.ndarray:
        missing = [v for v in (self.first, self.second) if v not in lists]
        if missing:
            raise ValueError(f"missing ranked lists {missing}; got {sorted(lists)}")
        first, second = np.asarray(lists[self.first]), np.asarray(lists[self.second])
        if first.ndim != 2 or second.ndim != 2 or len(first) != len(second):
            raise ValueError(
                f"the lists must be (n_prompts, depth) for the same prompts, got {first.shape} "
                f"and {second.shape}"
            )
        out = np.full((len(first), k), -1, dtype=np.int64)
        for r in range(len(first)):
            head = [int(i) for i in first[r, :n] if i >= 0]
            merged = list(dict.fromkeys([*head, *(int(i) for i in second[r] if i >= 0)]))
            merged = list(dict.fromkeys([*merged, *(int(i) for i in first[r, n:] if i >= 0)]))
            out[r, : min(k, len(merged))] = merged[:k]
        return out

    def to_dict(self) -> dict[str, Any]:
        if not hasattr(self, "n_"):
            raise RuntimeError("ListInterleave.to_dict called before fit()")
        return {
            "type": "list_interleave",
            "first": self.first,
            "second": self.second,
            "n": self.n_,
            "fit_hits": {str(n): h for n, h in self.fit_hits_.items()},
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> ListInterleave:
        if payload.get("type") != "list_interleave":
            raise ValueError(f"not a saved ListInterleave (type {payload.get('type')!r})")
        fusion = cls(payload["first"], payload["second"])
        fusion.n_ = int(payload["n"])
        fusion.fit_hits_ = {int(n): h for n, h in payload.get("fit_hits", {}).items()}
        return fusion


class ScoreMixture:
    """Two views read as distributions over their candidates and mixed:
    ``weight * p_first + (1 - weight) * p_second``, ranked by that probability with first-code
    diversification (:func:`text2tracks.generative.diversify`).

    ``p_first`` is the softmax of ``temperature * score`` over the first view's candidates
    (beam log-probabilities: temperature 1 is the model's own distribution renormalised on its
    beam); ``p_second`` is the second view's scores, clipped at 0, over their sum (title kNN's
    neighbour votes). A candidate that a view does not return has probability 0 in it, so an
    item both views return gains from both. ``weight``, ``temperature`` and the diversity
    ``penalty`` are the grid point with the best mean Hits@k on the fitting prompts (ties: the
    better NDCG@k, then the earlier grid point).

    Hand-written: a few numpy lines over :func:`text2tracks.candidate_pool.pool_candidates`;
    fusion libraries (ranx) combine normalised scores, not two distributions over a union of
    candidates followed by this diversification.

    Args:
        first, second: the names of the views it reads (e.g. ``"beam"``, ``"title_knn"``).
        weights, temperatures, penalties: the grid searched by :meth:`fit`.
    """

    def __init__(
        self,
        first: str,
        second: str,
        weights: Sequence[float] = MIX_WEIGHTS,
        temperatures: Sequence[float] = MIX_TEMPERATURES,
        penalties: Sequence[float] = MIX_PENALTIES,
    ) -> None:
        if first == second:
            raise ValueError(f"mix two different views, got {first!r} twice")
        grids = {"weights": weights, "temperatures": temperatures, "penalties": penalties}
        for name, grid in grids.items():
            if not len(grid):
                raise ValueError(f"{name} must not be empty")
        if not all(0 <= w <= 1 for w in weights):
            raise ValueError(f"weights must lie in [0, 1], got {list(weights)}")
        if not all(t > 0 for t in temperatures) or min(penalties) < 0:
            raise ValueError(
                f"temperatures must be > 0 and penalties >= 0, got {list(temperatures)} and "
                f"{list(penalties)}"
            )
        self.first, self.second = first, second
        self.weights = tuple(float(w) for w in weights)
        self.temperatures = tuple(float(t) for t in temperatures)
        self.penalties = tuple(float(p) for p in penalties)

    def fit(
        self,
        views: Mapping[str, View],
        relevant: Sequence[set[int]],
        groups: np.ndarray,
        k: int = 10,
        metric: str = "hits",
    ) -> ScoreMixture:
        """Pick ``weight_``, ``temperature_`` and ``penalty_`` on prompts whose ``relevant`` sets
        are known; ``groups[i]`` is item ``i``'s first ID code. The best grid point has the best
        mean ``metric`` at ``k`` (``"hits"``, or ``"ndcg"`` for long lists such as the
        challenge's 500), ties to the other, then the earlier point. ``fit_hits_``: per grid
        point ``"weight,temperature,penalty"``, the mean ``metric``."""
        if metric not in ("hits", "ndcg"):
            raise ValueError(f"metric must be 'hits' or 'ndcg', got {metric!r}")
        other = "ndcg" if metric == "hits" else "hits"
        candidates = self._pool(views, groups)
        self.fit_hits_, ranked_by = {}, {}
        for w in self.weights:
            for t in self.temperatures:
                log_p = self._log_mixture(candidates, w, t)
                for p in self.penalties:
                    ranked = _top(candidates, log_p, k, p)[0]
                    m = per_prompt_metrics(ranked, relevant, k, allow_empty=True)
                    key = f"{w:g},{t:g},{p:g}"
                    self.fit_hits_[key] = float(m[metric].mean())
                    ranked_by[key] = (self.fit_hits_[key], float(m[other].mean()))
        best = max(ranked_by, key=lambda key: ranked_by[key])  # max keeps the earliest on ties
        self.weight_, self.temperature_, self.penalty_ = (float(x) for x in best.split(","))
        self.fit_metric_ = metric
        return self

    def rank(
        self, views: Mapping[str, View], groups: np.ndarray, k: int = 10
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(items, log-probabilities)`` ``(n_prompts, k)``, best first (the scores are the
        diversification's adjusted ones when the penalty is not 0); ``-1`` / ``-inf`` where a
        prompt has fewer than ``k`` candidates."""
        if not hasattr(self, "weight_"):
            raise RuntimeError("ScoreMixture.rank called before fit() or from_dict()")
        candidates = self._pool(views, groups)
        log_p = self._log_mixture(candidates, self.weight_, self.temperature_)
        return _top(candidates, log_p, k, self.penalty_)

    def _pool(self, views: Mapping[str, View], groups: np.ndarray):
        from text2tracks.candidate_pool import pool_candidates, with_groups

        _check_views(views, (self.first, self.second))
        (a_items, a_scores), (b_items, b_scores) = views[self.first], views[self.second]
        return with_groups(pool_candidates(a_items, a_scores, b_items, b_scores), groups)

    @staticmethod
    def _log_mixture(candidates, weight: float, temperature: float) -> np.ndarray:
        from text2tracks.candidate_pool import view_softmax

        valid = candidates.items >= 0
        p_first = view_softmax(candidates.generative, temperature, valid)
        second = np.where(valid, np.nan_to_num(candidates.latent.astype(np.float64), nan=0.0), 0.0)
        second = np.maximum(second, 0.0)
        p_second = second / np.maximum(second.sum(axis=1, keepdims=True), 1e-300)
        mixed = weight * p_first + (1.0 - weight) * p_second
        with np.errstate(divide="ignore"):
            return np.where(valid & (mixed > 0), np.log(mixed), -np.inf)

    def to_dict(self) -> dict[str, Any]:
        if not hasattr(self, "weight_"):
            raise RuntimeError("ScoreMixture.to_dict called before fit()")
        return {
            "type": "score_mixture",
            "first": self.first,
            "second": self.second,
            "grid": {
                "weights": list(self.weights),
                "temperatures": list(self.temperatures),
                "penalties": list(self.penalties),
            },
            "weight": self.weight_,
            "temperature": self.temperature_,
            "penalty": self.penalty_,
            "fit_hits": dict(self.fit_hits_),
            "fit_metric": getattr(self, "fit_metric_", "hits"),
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> ScoreMixture:
        if payload.get("type") != "score_mixture":
            raise ValueError(f"not a saved ScoreMixture (type {payload.get('type')!r})")
        grid = payload["grid"]
        fusion = cls(
            payload["first"],
            payload["second"],
            grid["weights"],
            grid["temperatures"],
            grid["penalties"],
        )
        fusion.weight_ = float(payload["weight"])
        fusion.temperature_ = float(payload["temperature"])
        fusion.penalty_ = float(payload["penalty"])
        fusion.fit_hits_ = dict(payload.get("fit_hits", {}))
        fusion.fit_metric_ = str(payload.get("fit_metric", "hits"))
        return fusion


def _top(candidates, log_p: np.ndarray, k: int, penalty: float):
    from text2tracks.candidate_pool import top_k

    return top_k(candidates, log_p, k, diversity=penalty)


def top_view(scores: np.ndarray, depth: int) -> View:
    """A view from dense scores ``(n, n_items)``: each row's best ``depth`` items and their
    scores, best first, ties to the lower index (the more popular item where items are in
    popularity order); ``-inf`` entries (items kept out, such as seeds) are no candidates
    (item -1, score 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    width = min(depth, scores.shape[1] - 1)
    top = np.argpartition(-scores, width, axis=1)[:, :width]
    top_scores = np.take_along_axis(scores, top, 1)
    order = np.lexsort((top, -top_scores), axis=1)
    top, top_scores = (np.take_along_axis(a, order, 1) for a in (top, top_scores))
    finite = np.isfinite(top_scores)
    return np.where(finite, top, -1), np.where(finite, top_scores, 0.0)


def id_view(answers: Sequence[tuple[Sequence[str], Sequence[float]]], index: Mapping) -> View:
    """A view from ranked answers, ``(ids, scores)`` per row: item indices by ``index`` and
    their scores, -1 padded; an id outside ``index`` is dropped."""
    width = max(1, max((len(ids) for ids, _ in answers), default=0))
    items = np.full((len(answers), width), -1, np.int64)
    values = np.zeros((len(answers), width), np.float64)
    for r, (ids, row) in enumerate(answers):
        known = [(index[t], s) for t, s in zip(ids, row, strict=True) if t in index]
        if known:
            items[r, : len(known)] = [i for i, _ in known]
            values[r, : len(known)] = [s for _, s in known]
    return items, values


def filled_lists(ranked: np.ndarray, views: Sequence[View], depth: int) -> list[list[int]]:
    """Each row of ``ranked`` (item indices, -1 padded) without repeats, then filled to
    ``depth`` by the candidates of ``views`` it lacks, each view's in its given order (rows as
    views come, best first). A mixture drops a candidate with probability 0 in both of its views
    (such as a baseline's zero scores); this puts them back where a fixed-depth list needs them."""
    out = []
    for r, row in enumerate(ranked):
        items = list(dict.fromkeys(int(i) for i in row if i >= 0))[:depth]
        seen = set(items)
        for view_items, _ in views:
            for i in view_items[r]:
                if len(items) >= depth:
                    break
                if i >= 0 and int(i) not in seen:
                    items.append(int(i))
                    seen.add(int(i))
        out.append(items)
    return out


Fusion = CandidateReranker | ListInterleave | ScoreMixture


def hybrid_fusion_from_dict(payload: Mapping[str, Any]) -> Fusion:
    """The fusion ``text2tracks-hybrid`` saved (``OUT/hybrid_reranker.json``), of any kind."""
    kinds = {
        "candidate_reranker": CandidateReranker,
        "list_interleave": ListInterleave,
        "score_mixture": ScoreMixture,
    }
    kind = payload.get("type")
    if kind not in kinds:
        raise ValueError(f"unknown hybrid fusion type {kind!r}; expected one of {sorted(kinds)}")
    return kinds[kind].from_dict(payload)
