"""Next-item recommendation on sequences without titles: TIGER's leave-last-out protocol.

    python -m eval.sequential --playlists ../shared/data/mpd --out bench_out/sequential
    python -m eval.sequential --sequences events.csv --out DIR     # user,item,timestamp

Per user (a playlist counts as a user, its tracks in order) the last item is the test target, the
one before it the validation target, the rest the training history
(:func:`semantic_ids.sequences.leave_last_out`). Every model is fitted on the training histories
only; validation targets pick each baseline's setting; at test time a model sees the history
plus the validation item. Items of the history are never recommended back (a playlist rarely
repeats a track). A target never seen in training is a miss, kept in the denominator.

Metrics (one target per user): Recall@K (= Hits@K) and NDCG@K = 1 / log2(rank + 1) for K in 5,
10, with bootstrap intervals. Baselines, all in this run:

- ``popularity``: most frequent training items;
- ``item_knn``: item co-occurrence kNN, ``score(i) = sum over history items j of
  decay ** age(j) * cos(j, i)`` (cosine of the items' user columns; ``age`` 0 for the last item);
- ``als_fold_in``: implicit ALS on the training histories; a user's factor is recomputed from
  the history (``recommend(..., recalculate_user=True)``), so users need no refit.

The generative model reading seed tracks as semantic-ID tokens (issue 13) is scored against
these numbers. Prints a markdown table and writes ``OUT/sequential.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from eval.metrics import bootstrap_means

KS = (5, 10)


def _index(split) -> tuple[dict[str, int], np.ndarray]:
    """Item index over the training histories; popularity order (most frequent first)."""
    counts: dict[str, int] = {}
    for history in split.train:
        for item in dict.fromkeys(history):
            counts[item] = counts.get(item, 0) + 1
    items = sorted(counts, key=lambda i: (-counts[i], i))
    return {item: j for j, item in enumerate(items)}, np.array([counts[i] for i in items])


def _rows(
    histories: Sequence[Sequence[str]], index: dict[str, int], decay: float = 1.0
) -> sp.csr_matrix:
    """Users x items; the entry of a history item is ``decay ** age`` (last item: age 0)."""
    indptr, cols, vals = [0], [], []
    for history in histories:
        known = [(index[i], age) for age, i in enumerate(reversed(history)) if i in index]
        row: dict[int, float] = {}
        for j, age in known:
            row[j] = max(row.get(j, 0.0), decay**age)
        cols.extend(row)
        vals.extend(row.values())
        indptr.append(len(cols))
    return sp.csr_matrix(
        (np.asarray(vals, np.float32), np.asarray(cols, np.int64), np.asarray(indptr, np.int64)),
        shape=(len(histories), len(index)),
    )


def rank_of_targets(
    scores_fn, histories, targets, index, n_items: int, depth: int = 10, chunk: int = 128
) -> np.ndarray:
    """0-based rank of each target among the non-history items (``depth`` if below it or
    unknown). ``scores_fn(rows)`` gives dense ``(len(rows), n_items)`` scores for user rows."""
    ranks = np.full(len(targets), depth, dtype=np.int64)
    seen = _rows(histories, index)
    for start in range(0, len(targets), chunk):
        stop = min(start + chunk, len(targets))
        scores = np.array(scores_fn(slice(start, stop)), dtype=np.float32)
        block = seen[start:stop]
        scores[block.nonzero()] = -np.inf  # never recommend the history back
        # ties go to the more popular item (lower index): order by -score then index
        top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
        for r, u in enumerate(range(start, stop)):
            j = index.get(targets[u])
            if j is not None:
                where = np.flatnonzero(top[r] == j)
                if where.size:
                    ranks[u] = int(where[0])
    return ranks


def metrics_from_ranks(ranks: np.ndarray, n_bootstrap: int = 1000) -> dict:
    out = {}
    for k in KS:
        for name, per_user in (
            ("recall", (ranks < k).astype(np.float64)),
            ("ndcg", np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)),
        ):
            samples = bootstrap_means(per_user, n_bootstrap, 0)
            out[f"{name}@{k}"] = float(per_user.mean())
            out[f"{name}@{k}_ci"] = [
                float(np.quantile(samples, 0.025)),
                float(np.quantile(samples, 0.975)),
            ]
    return out


class ItemCosine:
    """Item co-occurrence kNN over a users x items training matrix (binary).

    ``scores(rows)`` gives, per row of weighted history items ``h``, ``sum_j h_j * cos(j, i)``
    for every item ``i``, as ``(h D^-1/2 X^T)(X D^-1/2)`` with ``D`` the items' user counts: no
    item x item matrix is formed.
    """

    def __init__(self, train: sp.csr_matrix) -> None:
        self.inv_norms = (1.0 / np.sqrt(np.maximum(train.getnnz(axis=0), 1))).astype(np.float32)
        binary = train.copy()
        binary.data = np.ones_like(binary.data, dtype=np.float32)
        self.scaled = (binary @ sp.diags(self.inv_norms)).tocsr()

    def scores(self, rows: sp.csr_matrix) -> np.ndarray:
        left = (rows @ sp.diags(self.inv_norms)).tocsr()
        return ((left @ self.scaled.T) @ self.scaled).toarray()


def als_fold_in_scores(model, rows: sp.csr_matrix) -> np.ndarray:
    """implicit ALS fold-in: each row's user factor solved from its items (item factors fixed),
    then scored against every item."""
    factors = model.recalculate_user(np.arange(rows.shape[0]), rows)
    return (
        np.asarray(factors, np.float32).reshape(rows.shape[0], -1)
        @ np.asarray(model.item_factors).T
    )


def run(split, n_bootstrap: int = 1000, als_factors: int = 64, log=print) -> dict:
    index, popularity = _index(split)
    n_items = len(index)
    train_rows = _rows(split.train, index)
    cosine = ItemCosine(train_rows)
    stages = {
        "validation": (split.train, split.validation),
        "test": ([split.test_history(u) for u in range(len(split.users))], split.test),
    }
    results: dict = {
        "users": len(split.users),
        "too_short": split.n_too_short,
        "items": n_items,
        "systems": {},
    }

    def score_popularity(histories):
        return lambda rows: np.broadcast_to(
            popularity.astype(np.float64), (len(range(*rows.indices(len(histories)))), n_items)
        )

    def score_knn(histories, decay):
        # sum over history items j of decay**age * cos(j, i)
        weighted = _rows(histories, index, decay)
        return lambda rows: cosine.scores(weighted[rows])

    def score_als(histories, model):
        hist = _rows(histories, index)

        def fn(rows):
            return als_fold_in_scores(model, hist[rows])

        return fn

    def evaluate(name, make_scores, setting):
        started = time.perf_counter()
        out = {"setting": setting}
        for stage, (histories, targets) in stages.items():
            ranks = rank_of_targets(make_scores(histories), histories, targets, index, n_items)
            out[stage] = metrics_from_ranks(ranks, n_bootstrap)
        out["seconds"] = time.perf_counter() - started
        return out

    results["systems"]["popularity"] = evaluate("popularity", score_popularity, {})
    log(f"popularity: test recall@10 {results['systems']['popularity']['test']['recall@10']:.4f}")

    # item kNN: the recency decay is chosen on the validation targets
    best = None
    for decay in (1.0, 0.9, 0.7):
        r = evaluate("item_knn", lambda h, d=decay: score_knn(h, d), {"decay": decay})
        if best is None or r["validation"]["recall@10"] > best["validation"]["recall@10"]:
            best = r
    results["systems"]["item_knn"] = best
    log(f"item_knn: test recall@10 {best['test']['recall@10']:.4f} {best['setting']}")

    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    best = None
    for regularization in (0.01, 0.1):
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=als_factors, regularization=regularization, iterations=15, random_state=0
            )
            model.fit(train_rows, show_progress=False)
        r = evaluate(
            "als_fold_in",
            lambda h, m=model: score_als(h, m),
            {"factors": als_factors, "regularization": regularization},
        )
        if best is None or r["validation"]["recall@10"] > best["validation"]["recall@10"]:
            best = r
    results["systems"]["als_fold_in"] = best
    log(f"als_fold_in: test recall@10 {best['test']['recall@10']:.4f} {best['setting']}")
    return results


def format_table(results: dict) -> str:
    lines = [
        f"{results['users']} users ({results['too_short']} with < 3 items left out), "
        f"{results['items']} training items; test targets",
        "",
        "| system | Recall@5 | NDCG@5 | Recall@10 [95% CI] | NDCG@10 | setting |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["systems"].items():
        t = r["test"]
        ci = t["recall@10_ci"]
        lines.append(
            f"| {name} | {t['recall@5']:.4f} | {t['ndcg@5']:.4f} | {t['recall@10']:.4f} "
            f"[{ci[0]:.4f}, {ci[1]:.4f}] | {t['ndcg@10']:.4f} | {r['setting']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from eval.report import write_table_and_json
    from semantic_ids.playlists import read_playlists
    from semantic_ids.sequences import leave_last_out, read_sequences, sequences_from_playlists

    parser = argparse.ArgumentParser(
        prog="python -m eval.sequential", description=__doc__.split("\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sequences", help="JSONL {user, items} or CSV user,item,timestamp")
    source.add_argument("--playlists", help="playlists (MPD, JSONL, Parquet) used as sequences")
    parser.add_argument("--out", required=True, help="output folder (sequential.json)")
    parser.add_argument("--min-length", type=int, default=3)
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)
    sequences = (
        read_sequences(args.sequences)
        if args.sequences
        else sequences_from_playlists(read_playlists(args.playlists).playlists)
    )
    split = leave_last_out(sequences, min_length=args.min_length)
    results = run(split, n_bootstrap=args.n_bootstrap)
    table = format_table(results)
    print(table)
    write_table_and_json(args.out, "sequential", results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
