"""``text2tracks-hybrid`` in the continuation evaluation (:mod:`eval.continuation`,
``--cf-hybrid N``): the model's answer mixed with a CF baseline's list (LIGER, COBRA: a
generative retriever's candidates unioned with another view's and re-ranked).

The model's 500 tracks (in its ``--mode``, with their scores) and the 500 best of one
baseline, both without the seeds, are read as two distributions over the union of their
candidates and mixed, ``w * p_model + (1 - w) * p_cf``
(:class:`text2tracks.candidate_rerank.ScoreMixture`: the model's scores softmaxed at
temperature ``t``, the baseline's clipped at 0 over their sum). The baseline (item kNN, ALS
fold-in, or either fused with title kNN; title kNN for prompts without seeds), ``w`` and ``t``
are fitted per seed-count bucket (:data:`SEED_BUCKETS`; a prompt's bucket is the first bound at
or above its seed count) by NDCG at 500 on validation playlists cut as the test ones are, never
on the test playlists. Like issue 10's ``text2tracks-hybrid`` it is a separate, reported
system: the ``text2tracks`` row stays the model alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from eval.continuation_core import DEPTH, SEED_SYSTEMS, Scorers, Task, fused_scores
from text2tracks.candidate_rerank import ScoreMixture, filled_lists, id_view, top_view
from text2tracks.seed_blend import BLEND_BUCKETS, BLEND_TEMPERATURES, BLEND_WEIGHTS, grid_end

HYBRID_SYSTEM = "text2tracks-hybrid"
# the API's blend's buckets (text2tracks.seed_blend), and 0 for title-only prompts
SEED_BUCKETS = (0, *BLEND_BUCKETS)
# the API's blend's grid: w = 1 is the model alone and w = 0 the baseline alone; the model's
# temperatures reach down to 0.05, as a 500-deep beam wants flatter ones than a top 10
HYBRID_WEIGHTS = BLEND_WEIGHTS
HYBRID_TEMPERATURES = BLEND_TEMPERATURES
TITLE_VIEWS = ("title_knn",)
SEED_VIEWS = (*SEED_SYSTEMS, *(f"fused_{s}" for s in SEED_SYSTEMS))


def seed_bucket(n_seeds: int) -> int:
    """The bucket of a prompt with ``n_seeds`` seeds: the first of :data:`SEED_BUCKETS` at or
    above it (the last for more)."""
    if n_seeds < 0:
        raise ValueError(f"n_seeds must be >= 0, got {n_seeds}")
    return next((b for b in SEED_BUCKETS if n_seeds <= b), SEED_BUCKETS[-1])


class ContinuationHybrid:
    """The mixture, one per seed-count bucket, fitted on validation tasks (:meth:`fit`) and
    applied to the model's answers on test tasks (:meth:`rank`).

    Args:
        scorers: the baselines' scorers, fitted on the training playlists (their settings, the
            fused rows' ``fuse_weight`` included, chosen on validation before this is fitted).
        item_ids: the baselines' item index, ``item_ids[i]`` the id of item ``i``.
        fuse_weight: the fused rows' title-kNN weight per seed system.
        depth: the list length of each view and of the answer.
    """

    def __init__(
        self,
        scorers: Scorers,
        item_ids: Sequence[str],
        fuse_weight: dict[str, float],
        depth: int = DEPTH,
    ) -> None:
        self.scorers = scorers
        self.item_ids = list(item_ids)
        self.index = {t: i for i, t in enumerate(self.item_ids)}
        self.fuse_weight = dict(fuse_weight)
        self.depth = min(depth, len(self.item_ids) - 1)
        self.groups = np.zeros(len(self.item_ids), np.int64)  # no first-code spreading at 500
        self.mixtures: dict[int, ScoreMixture] = {}
        self.fit_scores: dict[int, dict[str, float]] = {}

    def _cf_scores(self, view: str, task: Task) -> np.ndarray:
        """A baseline's dense scores over the item index, one row per playlist of ``task``."""
        if not view.startswith("fused_"):
            return self.scorers.score(view, task.titles, task.seeds)
        system = view[len("fused_") :]
        seed = self.scorers.score(system, task.titles, task.seeds)
        title = self.scorers.score("title_knn", task.titles, task.seeds)
        return fused_scores(seed, title, self.fuse_weight.get(system, 0.5))

    def _cf_view(self, view: str, task: Task) -> tuple[np.ndarray, np.ndarray]:
        """The baseline's best ``depth`` items and scores per playlist, the seeds left out."""
        items, scores = [], []
        for start in range(0, len(task.titles), 64):
            part = task.subset(np.arange(start, min(start + 64, len(task.titles))))
            dense = np.array(self._cf_scores(view, part), dtype=np.float64)
            for r, seeds in enumerate(part.seeds):
                dense[r, seeds] = -np.inf
            part_items, part_scores = top_view(dense, self.depth)
            items.append(part_items)
            scores.append(part_scores)
        return np.concatenate(items), np.concatenate(scores)

    def _model_view(self, ranked, scores) -> tuple[np.ndarray, np.ndarray]:
        """The model's answers in the baselines' item index (the model's catalogue is drawn
        from the same training playlists, so every track it answers is there)."""
        return id_view(list(zip(ranked, scores, strict=True)), self.index)

    def _views(self, task: Task, ranked, scores) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        # without a title a fused view ranks as its seed system does (title kNN scores 0)
        names = SEED_VIEWS if task.category.n_seeds else TITLE_VIEWS
        return {"model": self._model_view(ranked, scores)} | {
            v: self._cf_view(v, task) for v in names
        }

    def fit(
        self,
        answer: Callable[[Task], tuple[list, list]],
        tasks: Sequence[Task],
        log: Callable[[str], None] = print,
    ) -> ContinuationHybrid:
        """Fit each bucket's mixture on validation ``tasks``; ``answer(task)`` gives the model's
        ``(ranked ids, scores)`` per playlist. Per bucket, every baseline applicable to all its
        tasks is mixed at every grid point and the best by mean NDCG@``depth`` is kept."""
        by_bucket: dict[int, list[tuple[Task, dict]]] = {}
        for task in tasks:
            if task.titles:
                views = self._views(task, *answer(task))
                by_bucket.setdefault(seed_bucket(task.category.n_seeds), []).append((task, views))
        for bucket, parts in sorted(by_bucket.items()):
            names = [v for v in parts[0][1] if v != "model"]  # a bucket's tasks share views
            relevant = [
                {self.index[t] for t in row if t in self.index}
                for task, _ in parts
                for row in task.withheld
            ]
            scored = {}
            for name in names:
                views = {
                    key: (_stack(parts, key, 0), _stack(parts, key, 1)) for key in ("model", name)
                }
                mixture = ScoreMixture("model", name, HYBRID_WEIGHTS, HYBRID_TEMPERATURES, (0.0,))
                mixture.fit(views, relevant, self.groups, k=self.depth, metric="ndcg")
                key = f"{mixture.weight_:g},{mixture.temperature_:g},0"
                scored[name] = (mixture.fit_hits_[key], mixture)
            best = max(sorted(scored), key=lambda n: scored[n][0])
            self.mixtures[bucket] = scored[best][1]
            self.fit_scores[bucket] = {n: s for n, (s, _) in scored.items()}
            chosen = self.mixtures[bucket]
            # the grid's ends: w = 1 the model alone (best temperature), w = 0 the view
            alone = {w: grid_end(chosen, w) for w in (0.0, 1.0)}
            log(
                f"text2tracks-hybrid, {bucket} seeds: {best} at weight {chosen.weight_:g}, "
                f"temperature {chosen.temperature_:g} (validation NDCG@{self.depth}, "
                f"{len(relevant)} playlists: the model alone {alone[1.0]:.4f}, {best} alone "
                f"{alone[0.0]:.4f}; mixed with each view "
                + ", ".join(f"{n} {s:.4f}" for n, s in sorted(self.fit_scores[bucket].items()))
                + ")"
            )
        return self

    def rank(self, task: Task, ranked, scores) -> list[list[str]]:
        """The hybrid's track ids per playlist of a test ``task``, from the model's answers."""
        mixture = self.mixtures.get(seed_bucket(task.category.n_seeds))
        if mixture is None:
            raise RuntimeError(
                f"no text2tracks-hybrid mixture was fitted for {task.category.name}: fit() "
                "needs validation playlists of a category with as many seeds"
            )
        views = {
            "model": self._model_view(ranked, scores),
            mixture.second: self._cf_view(mixture.second, task),
        }
        items, _ = mixture.rank(views, self.groups, k=self.depth)
        # the baseline's, then the model's, remaining order fills the list to its depth
        lists = filled_lists(items, [views[mixture.second], views["model"]], self.depth)
        return [[self.item_ids[i] for i in row] for row in lists]

    def describe(self) -> dict:
        """What a results file records: per bucket, the chosen view, weight and temperature,
        and every view's validation NDCG."""
        return {
            str(b): {
                "view": m.second,
                "weight": m.weight_,
                "temperature": m.temperature_,
                "validation_ndcg": self.fit_scores[b],
            }
            for b, m in self.mixtures.items()
        }


def _stack(parts, key: str, which: int) -> np.ndarray:
    """One view's items (``which`` 0) or scores (1) of every task, padded to one width."""
    arrays = [views[key][which] for _, views in parts]
    width = max(a.shape[1] for a in arrays)
    fill = -1 if which == 0 else 0.0
    return np.concatenate(
        [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=fill) for a in arrays]
    )
