"""Continue a playlist: the RecSys Challenge 2018 protocol on held-out playlists.

    python -m eval.continuation --playlists ../shared/data/mpd --out bench_out/continuation
    python -m eval.continuation --playlists ../shared/data/mpd --artifact ART --k 50 \\
        --max-per-category 200 --out DIR          # the text2tracks rows too, on ART's split

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
co-occurrence cosine summed over the seeds, each seed's vote scaled by its count to the power
chosen on validation: :class:`text2tracks.cf_targets.ItemCosine`) and ``als_fold_in``
(implicit ALS, ``recalculate_user`` on the seeds; 64 factors, or the best of
``--als-factors`` on validation), for categories with seeds; ``fused`` (the better seed
system on validation, blended with title kNN: ``seed / max(seed) + w * title / max(title)``,
``w`` chosen on the validation playlists) where both apply.

With ``--artifact``, the generative model with seed tracks (issue 13) is scored on the same
playlists through its public API, with its own title-only answer as a reference row in the
categories with seeds (:mod:`eval.continuation_model`, which says what its shallower depth,
``--k``, means for each metric). Every row has percentile bootstrap intervals over playlists;
overall rows resample each category alike. ``--max-per-category`` keeps a seeded random subset
of each category, validation and test (every system on the same playlists). Prints a table and writes
``OUT/continuation.json``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from eval.metrics import bootstrap_interval, bootstrap_means
from eval.sequential import als_fold_in_scores
from text2tracks.cf_targets import ItemCosine

DEPTH = 500
METRICS = ("r_precision", "ndcg", "clicks", "hits@10")
SEED_SYSTEMS = ("item_knn", "als_fold_in")
# ALS fold-in's factor counts, the best on the validation playlists kept (--als-factors)
ALS_FACTORS = (64,)


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
        als_factors: int = 64,
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
        """(Re)fit ALS fold-in's model with ``factors`` factors (``self.als_factors``)."""
        from implicit.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            self.als = AlternatingLeastSquares(
                factors=factors, regularization=0.05, iterations=15, random_state=0
            )
            self.als.fit(self.train, show_progress=False)
        self.als_factors = int(factors)

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
            return self.cosine.scores(rows, self.knn_power)
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


def baseline_systems(cat: Category, fused: bool) -> list[str]:
    """The baselines that apply to a category (``fused``: with the fused rows)."""
    systems = ["popularity"]
    if cat.title:
        systems.append("title_knn")
    if cat.n_seeds:
        systems += ["item_knn", "als_fold_in"]
    if cat.title and cat.n_seeds and fused:
        systems += [f"fused_{s}" for s in SEED_SYSTEMS]
    return systems


def score_baselines(
    scorers: Scorers,
    task: Task,
    item_ids,
    popularity_order,
    fuse_weight: dict[str, float] | None,
    chunk: int = 64,
) -> dict[str, dict[str, np.ndarray]]:
    """Per baseline of the task's category, per metric, the values per playlist."""
    systems = baseline_systems(task.category, fuse_weight is not None)
    values: dict[str, dict[str, list]] = {s: {m: [] for m in METRICS} for s in systems}
    for start in range(0, len(task.titles), chunk):
        titles = task.titles[start : start + chunk]
        seeds = task.seeds[start : start + chunk]
        withheld = task.withheld[start : start + chunk]
        base = {s: scorers.score(s, titles, seeds) for s in systems if not s.startswith("fused")}
        for s in systems:
            if s.startswith("fused_"):
                seed_system = s[len("fused_") :]
                w = fuse_weight.get(seed_system, 0.5)
                scores = _normalise(base[seed_system]) + w * _normalise(base["title_knn"])
            else:
                scores = base[s]
            m = challenge_metrics(rank(scores, seeds, popularity_order, item_ids), withheld)
            for name, v in m.items():
                values[s][name].extend(v.tolist())
    return {s: {m: np.asarray(v) for m, v in ms.items()} for s, ms in values.items()}


def evaluate_tasks(
    scorers: Scorers,
    tasks: list[Task],
    item_ids,
    popularity_order,
    fuse_weight: dict[str, float] | None = None,
    chunk: int = 64,
    model=None,
) -> dict:
    """Per category with playlists: ``{"n", "per_prompt": {system: {metric: (n,) values}},
    "depth": {system: ranked ids per playlist}, "notes": {system: {...}}}``. ``model``: an
    :class:`eval.continuation_model.ModelSystem` scored beside the baselines."""
    results: dict = {}
    depth = min(DEPTH, len(item_ids) - 1)
    for task in tasks:
        if not task.titles:  # no playlist long enough for this category
            continue
        per_prompt = score_baselines(scorers, task, item_ids, popularity_order, fuse_weight, chunk)
        depths = dict.fromkeys(per_prompt, depth)
        notes: dict[str, dict] = {}
        if model is not None:
            for system in model.systems(task.category):
                ranked, notes[system] = model.rank(system, task)
                per_prompt[system] = challenge_metrics(ranked, task.withheld)
                depths[system] = model.k
        results[task.category.name] = {
            "n": len(task.titles),
            "per_prompt": per_prompt,
            "depth": depths,
            "notes": notes,
        }
    return results


def summarise(evaluated: dict, n_bootstrap: int = 1000, confidence: float = 0.95) -> dict:
    """Means and percentile bootstrap intervals per category and system, and overall: the mean
    over the categories a system serves, its interval from the same resamples of each category
    (one seed per category, so systems are resampled alike)."""
    categories, overall_samples = {}, {}
    for c, (name, cat) in enumerate(evaluated.items()):
        systems = {}
        for system, values in cat["per_prompt"].items():
            stacked = np.stack([values[m] for m in METRICS])
            samples = bootstrap_means(stacked, n_bootstrap, seed=c)
            low, high = bootstrap_interval(samples, confidence)
            row: dict = {"depth": cat["depth"][system]}
            for i, m in enumerate(METRICS):
                row[m] = float(stacked[i].mean())
                row[f"{m}_ci"] = [float(low[i]), float(high[i])]
            row.update(cat["notes"].get(system, {}))
            systems[system] = row
            overall_samples.setdefault(system, []).append((stacked.mean(axis=1), samples))
        categories[name] = {"n": cat["n"], "systems": systems}
    overall = {}
    for system, parts in overall_samples.items():
        means = np.mean([p[0] for p in parts], axis=0)
        low, high = bootstrap_interval(np.mean([p[1] for p in parts], axis=0), confidence)
        overall[system] = {"categories": len(parts)}
        for i, m in enumerate(METRICS):
            overall[system][m] = float(means[i])
            overall[system][f"{m}_ci"] = [float(low[i]), float(high[i])]
    return {"categories": categories, "overall": overall}


def item_index(train) -> tuple[list[str], dict[str, int], np.ndarray]:
    """``(item_ids, index, popularity)`` over the training playlists, most popular first."""
    counts: dict[str, int] = {}
    for p in train:
        for t in dict.fromkeys(p.track_ids):
            counts[t] = counts.get(t, 0) + 1
    item_ids = sorted(counts, key=lambda t: (-counts[t], t))
    index = {t: i for i, t in enumerate(item_ids)}
    return item_ids, index, np.array([counts[t] for t in item_ids], dtype=np.float64)


def run(
    train,
    validation,
    test,
    log=print,
    *,
    model=None,
    n_bootstrap: int = 1000,
    max_per_category: int | None = None,
    als_factors: tuple[int, ...] = ALS_FACTORS,
) -> dict:
    """The whole protocol: baselines fitted on ``train``, fusion weights on ``validation``,
    every system scored on ``test``'s categories (``model``: a
    :class:`eval.continuation_model.ModelSystem`, or ``None`` for the baselines alone)."""
    from eval.continuation_fit import (
        fit_als_factors,
        fit_fuse_weights,
        fit_knn_power,
        validation_tasks,
    )

    item_ids, index, popularity = item_index(train)
    popularity_order = np.arange(len(item_ids))  # items are already in popularity order
    scorers = Scorers(train, index, popularity)
    log(f"{len(train)} training playlists, {len(item_ids)} tracks")
    val_tasks = validation_tasks(validation, index, max_per_category)
    knn_power = fit_knn_power(scorers, val_tasks, item_ids, popularity_order)
    log(f"item kNN history_power (validation): {knn_power}")
    als_factors = fit_als_factors(scorers, val_tasks, item_ids, popularity_order, als_factors)
    log(f"ALS fold-in factors (validation): {als_factors}")
    fuse_weight = fit_fuse_weights(scorers, val_tasks, item_ids, popularity_order)
    log(f"fusion weights (validation): {fuse_weight}")
    tasks = make_tasks(test, index, seed=0, max_per_category=max_per_category)
    evaluated = evaluate_tasks(scorers, tasks, item_ids, popularity_order, fuse_weight, model=model)
    empty = [c.name for c in CATEGORIES if c.name not in evaluated]
    if empty:
        log(f"categories without a playlist long enough: {empty}")
    return summarise(evaluated, n_bootstrap) | {
        "empty_categories": empty,
        "fuse_weight": fuse_weight,
        "item_knn_history_power": knn_power,
        "als_factors": als_factors,
        "max_per_category": max_per_category,
    }


def _cell(m: dict, name: str, digits: int) -> str:
    low, high = m[f"{name}_ci"]
    return f"{m[name]:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _cells(m: dict) -> str:
    return " | ".join(
        _cell(m, name, digits) for name, digits in zip(METRICS, (4, 4, 2, 3), strict=True)
    )


def format_table(results: dict) -> str:
    """Markdown: per category and system, then overall, each metric with its interval."""
    lines = [
        "| category | n | system | depth | R-precision | NDCG | clicks | Hits@10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, cat in results["categories"].items():
        for s, m in cat["systems"].items():
            lines.append(f"| {name} | {cat['n']} | {s} | {m['depth']} | {_cells(m)} |")
    lines += [
        "",
        "| overall (mean over the categories it serves) | categories | R-precision | "
        "NDCG | clicks | Hits@10 |",
        "|---|---|---|---|---|---|",
    ]
    for s, m in results["overall"].items():
        lines.append(f"| {s} | {m['categories']} | {_cells(m)} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.continuation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--playlists", required=True, help="playlists (MPD, JSONL, Parquet)")
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--artifact",
        help="score this artifact's model too (text2tracks rows), on the split it was built "
        "with (its cf/split.json; the split flags are then ignored)",
    )
    parser.add_argument(
        "--k",
        type=int,
        default=DEPTH,
        help=f"the model's recommendations (default {DEPTH}, as deep as the challenge scores "
        "and the baselines rank; fewer decode faster but lower R-precision and NDCG)",
    )
    parser.add_argument("--num-beams", type=int, help="the model's beam width (default: --k)")
    parser.add_argument("--batch-size", type=int, default=32, help="the model's prompts per call")
    parser.add_argument("--device", help="torch device (default: CUDA when available)")
    parser.add_argument("--num-threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument(
        "--max-per-category", type=int, default=0, help="test playlists per category (0: all)"
    )
    parser.add_argument(
        "--als-factors",
        default=",".join(str(n) for n in ALS_FACTORS),
        help="ALS fold-in's factor counts, comma-separated; with several, the best on the "
        "validation playlists is kept (default: %(default)s, the artifact's CF width)",
    )
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, default=0)
    return parser


def _factor_counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(n) for n in text.split(",") if n.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise SystemExit(f"--als-factors must be positive integers, comma-separated: {text!r}")
    return counts


def main(argv: list[str] | None = None) -> int:
    from eval.continuation_model import ModelSystem, load_model
    from eval.report import write_table_and_json
    from semantic_ids.playlists import read_playlists, split_playlists
    from text2tracks.artifacts import artifact_split

    args = build_parser().parse_args(argv)
    model = None
    if args.artifact:
        split = artifact_split(args.artifact, args.playlists)
        recommender = load_model(args.artifact, args.device, args.num_threads)
        model = ModelSystem(recommender, args.k, args.num_beams, args.batch_size)
    else:
        split = split_playlists(
            read_playlists(args.playlists).playlists,
            validation_fraction=args.validation_fraction,
            test_fraction=args.test_fraction,
            seed=args.split_seed,
        )
    results = run(
        split.train,
        split.validation,
        split.test,
        model=model,
        n_bootstrap=args.n_bootstrap,
        max_per_category=args.max_per_category or None,
        als_factors=_factor_counts(args.als_factors),
    )
    if model is not None:
        results["model"] = model.describe() | {"artifact": str(args.artifact)}
    table = format_table(results)
    print(table)
    write_table_and_json(args.out, "continuation", results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
