"""Continue a playlist: the RecSys Challenge 2018 protocol on held-out playlists.

    python -m eval.continuation --playlists ../shared/data/mpd --out bench_out/continuation

Held-out playlists (the benchmark's split: a hash of the playlist id, 10% test, 10% validation)
are cut into the challenge's ten categories of seeds:

| category | title | seeds |
|---|---|---|
| title_only | yes | 0 |
| title_first1 | yes | first 1 |
| title_first5 | yes | first 5 |
| first5 | no | first 5 |
| title_first10 | yes | first 10 |
| first10 | no | first 10 |
| title_first25 | yes | first 25 |
| title_random25 | yes | random 25 |
| title_first100 | yes | first 100 |
| title_random100 | yes | random 100 |

A playlist enters every category it has enough tracks for (more tracks than seeds); the
withheld tracks are the rest. Every system returns 500 tracks, seeds excluded, and is scored by
the challenge's metrics on track ids (the challenge also credited artist matches in R-precision;
that part is left out here): R-precision, NDCG (``rel_1 + sum_{i>=2} rel_i / log2 i``, over the
ideal), clicks (``floor(rank of the first hit / 10)``, 51 when none), and Hits@10; per category
and overall (mean over categories, as the challenge ranked).

Baselines, fitted on the training playlists only: ``popularity``; ``title_knn`` (the title
kNN baseline's neighbours voting their tracks; categories with a title); ``item_knn`` (item
co-occurrence cosine summed over the seeds) and ``als_fold_in`` (implicit ALS,
``recalculate_user`` on the seeds), for categories with seeds; ``fused`` (the better seed
system on validation, blended with title kNN: ``seed / max(seed) + w * title / max(title)``,
``w`` chosen on the validation playlists) where both apply. The generative model with seed
tracks (issue 13) is scored against these. Prints a table and writes ``OUT/continuation.json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from eval.sequential import ItemCosine, als_fold_in_scores

DEPTH = 500


@dataclass(frozen=True)
class Category:
    name: str
    title: bool
    n_seeds: int
    random: bool = False


CATEGORIES = (
    Category("title_only", True, 0),
    Category("title_first1", True, 1),
    Category("title_first5", True, 5),
    Category("first5", False, 5),
    Category("title_first10", True, 10),
    Category("first10", False, 10),
    Category("title_first25", True, 25),
    Category("title_random25", True, 25, random=True),
    Category("title_first100", True, 100),
    Category("title_random100", True, 100, random=True),
)


@dataclass
class Task:
    """Prompts of one category: title (or ""), seed item indices, withheld track ids."""

    category: Category
    titles: list[str]
    seeds: list[np.ndarray]
    withheld: list[list[str]]


def make_tasks(
    playlists: Sequence,
    index: dict[str, int],
    seed: int = 0,
    categories: Sequence[Category] = CATEGORIES,
) -> list[Task]:
    """Cut held-out playlists into the categories; seeds unknown to ``index`` are dropped."""
    rng = np.random.default_rng(seed)
    tasks = []
    for cat in categories:
        titles, seeds, withheld = [], [], []
        for p in playlists:
            tracks = list(dict.fromkeys(p.track_ids))
            if len(tracks) <= cat.n_seeds:
                continue
            if cat.random:
                chosen = set(rng.choice(len(tracks), size=cat.n_seeds, replace=False).tolist())
            else:
                chosen = set(range(cat.n_seeds))
            seed_ids = [t for i, t in enumerate(tracks) if i in chosen]
            titles.append(p.prompt if cat.title else "")
            seeds.append(np.array([index[t] for t in seed_ids if t in index], dtype=np.int64))
            withheld.append([t for i, t in enumerate(tracks) if i not in chosen])
        tasks.append(Task(cat, titles, seeds, withheld))
    return tasks


def challenge_metrics(
    ranked_ids: Sequence[Sequence[str]], withheld: Sequence[Sequence[str]]
) -> dict[str, np.ndarray]:
    """Per prompt: ``r_precision``, ``ndcg``, ``clicks`` (over the 500 ranked ids), ``hits@10``."""
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
        als_factors: int = 64,
    ) -> None:
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

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
        self.neighbors = TitleNeighbors().fit([p.prompt for p in train_playlists])
        with threadpool_limits(limits=1, user_api="blas"):
            self.als = AlternatingLeastSquares(
                factors=als_factors, regularization=0.05, iterations=15, random_state=0
            )
            self.als.fit(self.train, show_progress=False)

    def _seed_rows(self, seeds: Sequence[np.ndarray]) -> sp.csr_matrix:
        indptr = np.r_[0, np.cumsum([len(s) for s in seeds])]
        cols = np.concatenate(seeds) if len(seeds) and indptr[-1] else np.zeros(0, np.int64)
        return sp.csr_matrix(
            (np.ones(len(cols), np.float32), cols, indptr), shape=(len(seeds), self.n_items)
        )

    def score(self, name: str, titles: list[str], seeds: Sequence[np.ndarray]) -> np.ndarray:
        if name == "popularity":
            return np.broadcast_to(self.popularity, (len(titles), self.n_items)).copy()
        if name == "title_knn":
            return (self.neighbors.weights(titles) @ self.train).toarray()
        rows = self._seed_rows(seeds)
        if name == "item_knn":
            return self.cosine.scores(rows)
        if name == "als_fold_in":
            return als_fold_in_scores(self.als, rows)
        raise ValueError(f"unknown system {name!r}")


def _normalise(scores: np.ndarray) -> np.ndarray:
    top = np.abs(scores).max(axis=1, keepdims=True)
    return scores / np.where(top > 0, top, 1.0)


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


def evaluate_tasks(
    scorers: Scorers,
    tasks: list[Task],
    item_ids,
    popularity_order,
    fuse_weight: dict[str, float] | None = None,
    chunk: int = 64,
) -> dict:
    """Per category and system, the mean challenge metrics."""
    results: dict = {}
    for task in tasks:
        cat = task.category
        if not task.titles:  # no playlist long enough for this category
            continue
        systems = ["popularity"]
        if cat.title:
            systems.append("title_knn")
        if cat.n_seeds:
            systems += ["item_knn", "als_fold_in"]
        if cat.title and cat.n_seeds and fuse_weight is not None:
            systems += [f"fused_{s}" for s in ("item_knn", "als_fold_in")]
        per_system = {
            s: {m: [] for m in ("r_precision", "ndcg", "clicks", "hits@10")} for s in systems
        }
        for start in range(0, len(task.titles), chunk):
            titles = task.titles[start : start + chunk]
            seeds = task.seeds[start : start + chunk]
            withheld = task.withheld[start : start + chunk]
            base = {
                s: scorers.score(s, titles, seeds) for s in systems if not s.startswith("fused")
            }
            for s in systems:
                if s.startswith("fused_"):
                    seed_system = s[len("fused_") :]
                    w = fuse_weight.get(seed_system, 0.5)
                    scores = _normalise(base[seed_system]) + w * _normalise(base["title_knn"])
                else:
                    scores = base[s]
                m = challenge_metrics(rank(scores, seeds, popularity_order, item_ids), withheld)
                for name, values in m.items():
                    per_system[s][name].extend(values.tolist())
        results[cat.name] = {
            "n": len(task.titles),
            "systems": {
                s: {m: float(np.mean(v)) if v else float("nan") for m, v in ms.items()}
                for s, ms in per_system.items()
            },
        }
    return results


def run(train, validation, test, log=print) -> dict:
    counts: dict[str, int] = {}
    for p in train:
        for t in dict.fromkeys(p.track_ids):
            counts[t] = counts.get(t, 0) + 1
    item_ids = sorted(counts, key=lambda t: (-counts[t], t))
    index = {t: i for i, t in enumerate(item_ids)}
    popularity = np.array([counts[t] for t in item_ids], dtype=np.float64)
    popularity_order = np.arange(len(item_ids))  # items are already in popularity order
    scorers = Scorers(train, index, popularity)
    log(f"{len(train)} training playlists, {len(item_ids)} tracks")

    # fusion weight per seed system, chosen on the validation playlists (R-precision, all
    # categories with a title and seeds)
    val_tasks = [
        t for t in make_tasks(validation, index, seed=1) if t.category.title and t.category.n_seeds
    ]
    fuse_weight, best = {"item_knn": 0.5, "als_fold_in": 0.5}, {}
    for w in (0.1, 0.3, 1.0, 3.0):
        r = evaluate_tasks(
            scorers, val_tasks, item_ids, popularity_order, {"item_knn": w, "als_fold_in": w}
        )
        for seed_system in fuse_weight:
            score = float(
                np.mean([c["systems"][f"fused_{seed_system}"]["r_precision"] for c in r.values()])
            )
            if score > best.get(seed_system, -1.0):
                fuse_weight[seed_system], best[seed_system] = w, score
    log(f"fusion weights (validation): {fuse_weight}")
    results = evaluate_tasks(
        scorers, make_tasks(test, index, seed=0), item_ids, popularity_order, fuse_weight
    )
    overall: dict = {}
    for cat in results.values():
        for s, m in cat["systems"].items():
            overall.setdefault(s, []).append(m)
    empty = [c.name for c in CATEGORIES if c.name not in results]
    if empty:
        log(f"categories without a playlist long enough: {empty}")
    return {
        "categories": results,
        "empty_categories": empty,
        "fuse_weight": fuse_weight,
        "overall": {
            s: {m: float(np.mean([x[m] for x in ms])) for m in ms[0]} | {"categories": len(ms)}
            for s, ms in overall.items()
        },
    }


def format_table(results: dict) -> str:
    lines = [
        "| category | n | system | R-precision | NDCG | clicks | Hits@10 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, cat in results["categories"].items():
        for s, m in cat["systems"].items():
            lines.append(
                f"| {name} | {cat['n']} | {s} | {m['r_precision']:.4f} | "
                f"{m['ndcg']:.4f} | {m['clicks']:.2f} | {m['hits@10']:.3f} |"
            )
    lines += [
        "",
        "| overall (mean over the categories it serves) | categories | R-precision | "
        "NDCG | clicks | Hits@10 |",
        "|---|---|---|---|---|---|",
    ]
    for s, m in results["overall"].items():
        lines.append(
            f"| {s} | {m['categories']} | {m['r_precision']:.4f} | {m['ndcg']:.4f} | "
            f"{m['clicks']:.2f} | {m['hits@10']:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from eval.report import write_table_and_json
    from semantic_ids.playlists import read_playlists, split_playlists

    parser = argparse.ArgumentParser(
        prog="python -m eval.continuation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--playlists", required=True, help="playlists (MPD, JSONL, Parquet)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, default=0)
    args = parser.parse_args(argv)
    split = split_playlists(
        read_playlists(args.playlists).playlists,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        seed=args.split_seed,
    )
    results = run(split.train, split.validation, split.test)
    table = format_table(results)
    print(table)
    write_table_and_json(args.out, "continuation", results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
