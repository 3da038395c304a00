"""The continuation protocol's parts shared by its runner and its validation fits
(:mod:`eval.continuation`, :mod:`eval.continuation_fit`): the ten categories and how held-out
playlists are cut into them (the categories themselves are the library's,
:data:`text2tracks.seed_continuations.CATEGORIES`, which fits ``mode="cf-blend"`` on them), the challenge's metrics, the baselines' scorers and the ranking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from text2tracks.cf_targets import ItemCosine
from text2tracks.seed_continuations import CATEGORIES, Category  # the challenge's ten, one table
from text2tracks.seed_views import als_fold_in_scores, fit_als, fused, seed_rows

DEPTH = 500
METRICS = ("r_precision", "ndcg", "clicks", "hits@10")
SEED_SYSTEMS = ("item_knn", "als_fold_in")
# ALS fold-in's factor counts, the best on the validation playlists kept (--als-factors)
ALS_FACTORS = (64,)


@dataclass
class Task:
    """Prompts of one category, one entry per playlist in each list."""

    category: Category
    titles: list[str]  # the prompt's text: the playlist's title, or "" where the category hides it
    seeds: list[np.ndarray]  # seed indices in the baselines' item index (unknown ones dropped)
    withheld: list[list[str]]  # the track ids to find
    seed_ids: list[list[str]]  # the seed track ids, in playlist order, all of them
    playlist_titles: list[str]  # the playlist's title, also where the category hides it

    def subset(self, rows: np.ndarray) -> Task:
        """The playlists at ``rows`` (in that order)."""
        pick = [int(r) for r in rows]
        return Task(
            self.category,
            *([getattr(self, name)[r] for r in pick] for name in _TASK_LISTS),
        )


_TASK_LISTS = ("titles", "seeds", "withheld", "seed_ids", "playlist_titles")


def make_tasks(
    playlists: Sequence,
    index: dict[str, int],
    seed: int = 0,
    categories: Sequence[Category] = CATEGORIES,
    max_per_category: int | None = None,
) -> list[Task]:
    """Cut held-out playlists into the categories; seeds unknown to ``index`` are dropped from
    ``Task.seeds`` (the baselines' view) and kept in ``Task.seed_ids``. ``max_per_category``:
    at most this many playlists per category, a seeded random subset in playlist order (drawn
    apart from the random seeds, which stay those of the full run)."""
    if max_per_category is not None and max_per_category < 1:
        raise ValueError(f"max_per_category must be a positive integer, got {max_per_category}")
    rng = np.random.default_rng(seed)
    tasks = []
    for c, cat in enumerate(categories):
        lists: dict[str, list] = {name: [] for name in _TASK_LISTS}
        for p in playlists:
            tracks = list(dict.fromkeys(p.track_ids))
            if len(tracks) <= cat.n_seeds:
                continue
            if cat.random:
                chosen = set(rng.choice(len(tracks), size=cat.n_seeds, replace=False).tolist())
            else:
                chosen = set(range(cat.n_seeds))
            seed_ids = [t for i, t in enumerate(tracks) if i in chosen]
            lists["titles"].append(p.prompt if cat.title else "")
            lists["seeds"].append(
                np.array([index[t] for t in seed_ids if t in index], dtype=np.int64)
            )
            lists["withheld"].append([t for i, t in enumerate(tracks) if i not in chosen])
            lists["seed_ids"].append(seed_ids)
            lists["playlist_titles"].append(p.prompt)
        task = Task(cat, *(lists[name] for name in _TASK_LISTS))
        n = len(task.titles)
        if max_per_category is not None and n > max_per_category:
            pick = np.random.default_rng([seed, c]).choice(n, max_per_category, replace=False)
            task = task.subset(np.sort(pick))
        tasks.append(task)
    return tasks


def challenge_metrics(
    ranked_ids: Sequence[Sequence[str]], withheld: Sequence[Sequence[str]]
) -> dict[str, np.ndarray]:
    """Per prompt: ``r_precision``, ``ndcg``, ``clicks`` (over the ranked ids, 500 in the
    challenge), ``hits@10``. A shorter list scores the missing ranks as misses: its R-precision
    (when shorter than the withheld tracks) and NDCG are lower bounds of the 500-deep values,
    and clicks count 51 when no hit is within it."""
    n = len(withheld)
    out = {m: np.zeros(n) for m in ("r_precision", "ndcg", "clicks", "hits@10")}
    for u, (ranked, truth) in enumerate(zip(ranked_ids, withheld, strict=True)):
        truth = set(truth)
        rel = np.array([t in truth for t in ranked], dtype=np.float64)
        g = len(truth)
        out["r_precision"][u] = rel[:g].sum() / g
        discounts = np.r_[1.0, 1.0 / np.log2(np.arange(2, max(len(rel), g) + 1))]
        dcg = float((rel * discounts[: len(rel)]).sum())
        idcg = float(discounts[: min(g, len(discounts))].sum())
        out["ndcg"][u] = dcg / idcg
        hits = np.flatnonzero(rel)
        out["clicks"][u] = hits[0] // 10 if hits.size else 51
        out["hits@10"][u] = float(rel[:10].any())
    return out


class Scorers:
    """The baselines' scores over the item index, fitted on the training playlists."""

    def __init__(
        self,
        train_playlists: Sequence,
        index: dict[str, int],
        popularity: np.ndarray,
        als_factors: int = ALS_FACTORS[0],
    ) -> None:
        from text2tracks.teacher import TitleNeighbors

        self.n_items = len(index)
        self.popularity = popularity.astype(np.float32)
        rows, cols = [], []
        for r, p in enumerate(train_playlists):
            for t in dict.fromkeys(p.track_ids):
                if t in index:
                    rows.append(r)
                    cols.append(index[t])
        self.train = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)),
            shape=(len(train_playlists), self.n_items),
        )
        self.cosine = ItemCosine(self.train)
        self.knn_power = 0.5  # the plain cosine until :func:`fit_knn_power` chooses
        self.neighbors = TitleNeighbors().fit([p.prompt for p in train_playlists])
        self.fit_als(als_factors)

    def fit_als(self, factors: int) -> None:
        """(Re)fit ALS fold-in's model with ``factors`` factors (``self.als_factors``), as the
        API's blend fits its ALS view (:func:`text2tracks.seed_views.fit_als`)."""
        self.als = fit_als(self.train, factors)
        self.als_factors = int(factors)

    def score(self, name: str, titles: list[str], seeds: Sequence[np.ndarray]) -> np.ndarray:
        if name == "popularity":
            return np.broadcast_to(self.popularity, (len(titles), self.n_items)).copy()
        if name == "title_knn":
            return (self.neighbors.weights(titles) @ self.train).toarray()
        rows = seed_rows(seeds, self.n_items)
        if name == "item_knn":
            return self.cosine.scores(rows, self.knn_power)
        if name == "als_fold_in":
            return als_fold_in_scores(self.als, rows)
        raise ValueError(f"unknown system {name!r}")


def fused_scores(seed: np.ndarray, title: np.ndarray, weight: float) -> np.ndarray:
    """A fused row's scores: a seed system's and title kNN's, each over its row maximum,
    ``seed + weight * title`` (the API's fused views compute the same:
    :func:`text2tracks.seed_views.fused`)."""
    return fused(seed, title, weight)


def rank(
    scores: np.ndarray,
    seeds: Sequence[np.ndarray],
    popularity_order: np.ndarray,
    item_ids: Sequence[str],
) -> list[list[str]]:
    """Top ``DEPTH`` track ids per row, seeds excluded, ties to the more popular item."""
    scores = np.array(scores, dtype=np.float64)[:, popularity_order]  # stable tie order
    position = np.empty_like(popularity_order)
    position[popularity_order] = np.arange(len(popularity_order))
    out = []
    for r, s in enumerate(seeds):
        row = scores[r]
        row[position[s]] = -np.inf
        depth = min(DEPTH, len(row) - 1)
        top = np.argpartition(-row, depth)[:depth]
        top = top[np.lexsort((top, -row[top]))]
        out.append([item_ids[popularity_order[j]] for j in top])
    return out


def item_index(train) -> tuple[list[str], dict[str, int], np.ndarray]:
    """``(item_ids, index, popularity)`` over the training playlists, most popular first."""
    counts: dict[str, int] = {}
    for p in train:
        for t in dict.fromkeys(p.track_ids):
            counts[t] = counts.get(t, 0) + 1
    item_ids = sorted(counts, key=lambda t: (-counts[t], t))
    index = {t: i for i, t in enumerate(item_ids)}
    return item_ids, index, np.array([counts[t] for t in item_ids], dtype=np.float64)
