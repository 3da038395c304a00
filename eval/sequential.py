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
  decay ** age(j) * n_j ** (0.5 - p) * cos(j, i)`` (cosine of the items' user columns, ``n_j``
  the history item's user count; ``age`` 0 for the last item; the decay and ``p``, 0 or 0.5,
  chosen on validation: :class:`ItemCosine`);
- ``als_fold_in``: implicit ALS on the training histories; a user's factor is recomputed from
  the history (``recommend(..., recalculate_user=True)``), so users need no refit.

The generative model (issue 13), the ``text2tracks`` row: a seq2seq model trained on the
training histories as title-less playlists, asked ``recommend("", seed_tracks=history, k=10,
num_beams=10)`` (:mod:`eval.sequential_model`, which says how it is built and trained)::

    python -m eval.sequential --playlists ../shared/data/mpd --out DIR --train-minutes 20
    python -m eval.sequential --playlists ../shared/data/mpd --out DIR --model-artifact ART

``--train-minutes`` builds ``OUT/artifact`` (or ``--model-artifact``) from the training
histories and trains it; ``--model-artifact`` alone scores an artifact built so, refused when its
recorded split is not this one. The row is compared with item kNN and ALS fold-in by a paired
bootstrap on the same users (Recall@10 and NDCG@10: difference, interval, p-value).
``--hybrid`` adds ``text2tracks-hybrid``, the model's answers mixed with item kNN's list and
fitted on the validation targets (:mod:`eval.sequential_hybrid`); ``--rerank`` adds
``text2tracks-rerank``, the same mixture after the model has scored each of item kNN's
candidates itself.
``--max-users N`` scores every system on a seeded subset of N users (fitting still reads every
training history). Prints a markdown table and writes ``OUT/sequential.json`` (with each
system's per-user test ranks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

import numpy as np

from eval.sequential_core import history_rows as _rows
from eval.sequential_core import metrics_from_ranks, paired_tests
from text2tracks.cf_targets import ItemCosine
from text2tracks.seed_views import als_fold_in_scores

MODEL_SYSTEM = "text2tracks"
# item kNN's settings, chosen on the validation targets: recency decay and the history side's
# count normalisation (:class:`ItemCosine`)
KNN_DECAYS = (1.0, 0.9, 0.7, 0.5)
KNN_HISTORY_POWERS = (0.0, 0.5)


def _index(split) -> tuple[dict[str, int], np.ndarray]:
    """Item index over the training histories; popularity order (most frequent first)."""
    counts: dict[str, int] = {}
    for history in split.train:
        for item in dict.fromkeys(history):
            counts[item] = counts.get(item, 0) + 1
    items = sorted(counts, key=lambda i: (-counts[i], i))
    return {item: j for j, item in enumerate(items)}, np.array([counts[i] for i in items])


def rank_of_targets(
    scores_fn, histories, targets, index, n_items: int, depth: int = 10, chunk: int = 128
) -> np.ndarray:
    """0-based rank of each target among the non-history items (``depth`` if below it or
    unknown). ``scores_fn(rows)`` gives dense ``(len(rows), n_items)`` scores for user rows.

    The rank is the target's place in a stable sort by descending score (ties go to the more
    popular item, the lower index), counted instead of sorted: the items scoring above it
    plus those tied with it at a lower index. One pass over each row, not a sort of the
    catalogue."""
    ranks = np.full(len(targets), depth, dtype=np.int64)
    seen = _rows(histories, index)
    columns = np.arange(n_items)
    for start in range(0, len(targets), chunk):
        stop = min(start + chunk, len(targets))
        rows, cols = [], []
        for u in range(start, stop):
            j = index.get(targets[u])
            if j is not None:
                rows.append(u - start)
                cols.append(j)
        if not rows:
            continue
        scores = np.array(scores_fn(slice(start, stop)), dtype=np.float32)
        scores[seen[start:stop].nonzero()] = -np.inf  # never recommend the history back
        rows, cols = np.asarray(rows), np.asarray(cols)
        block = scores[rows]
        own = block[np.arange(len(rows)), cols][:, None]
        place = (block > own).sum(axis=1) + ((block == own) & (columns < cols[:, None])).sum(axis=1)
        ranks[start + rows] = np.minimum(place, depth)
    return ranks


def scored_users(n_users: int, max_users: int | None = None, seed: int = 0) -> np.ndarray:
    """The rows of the users every system is scored on: all of them, or a seeded random subset
    of ``max_users`` (sorted). Models are fitted on every user's training history either way."""
    if max_users is not None and (
        isinstance(max_users, bool) or not isinstance(max_users, int) or max_users < 1
    ):
        raise ValueError(f"max_users must be a positive integer or None, got {max_users!r}")
    if max_users is None or max_users >= n_users:
        return np.arange(n_users)
    return np.sort(np.random.default_rng(seed).choice(n_users, size=max_users, replace=False))


class _Evaluation:
    """The stages (validation, test) of the scored users and the training item index that
    every system is scored with; the test ranks of each system, for the paired tests."""

    def __init__(self, split, rows: np.ndarray, n_bootstrap: int) -> None:
        self.index, self.popularity = _index(split)
        self.n_items = len(self.index)
        self.n_bootstrap = n_bootstrap
        self.stages = {
            "validation": ([split.train[u] for u in rows], [split.validation[u] for u in rows]),
            "test": ([split.test_history(u) for u in rows], [split.test[u] for u in rows]),
        }
        self.test_ranks: dict[str, np.ndarray] = {}
        self.answers: dict[str, list] = {}  # the model's (ids, scores) per user, per stage
        self.cosine: ItemCosine | None = None  # item kNN's, once the baselines are fitted

    def baseline(self, make_scores, setting: dict) -> tuple[dict, np.ndarray]:
        """Score a baseline (``make_scores(histories)`` -> ``scores_fn`` of
        :func:`rank_of_targets`) on both stages: ``(result, test ranks)``."""
        started = time.perf_counter()
        out: dict = {"setting": setting}
        for stage, (histories, targets) in self.stages.items():
            ranks = rank_of_targets(
                make_scores(histories), histories, targets, self.index, self.n_items
            )
            out[stage] = metrics_from_ranks(ranks, self.n_bootstrap)
        out["seconds"] = time.perf_counter() - started
        return out, ranks

    def model(self, model, setting: dict, stages: Sequence[str]) -> dict:
        """Score a model with ``rank(histories, targets) -> (ranks, notes)`` (such as
        :class:`eval.sequential_model.SequentialModel`) on ``stages``."""
        started = time.perf_counter()
        out: dict = {"setting": setting, "notes": {}}
        for stage in stages:
            if hasattr(model, "rank_and_answer"):  # the answers, for text2tracks-hybrid
                ranks, notes, self.answers[stage] = model.rank_and_answer(*self.stages[stage])
            else:
                ranks, notes = model.rank(*self.stages[stage])
            out[stage] = metrics_from_ranks(ranks, self.n_bootstrap)
            out["notes"][stage] = notes
            if stage == "test":
                self.test_ranks[MODEL_SYSTEM] = np.asarray(ranks)
        out["seconds"] = time.perf_counter() - started
        return out


def _fit_baselines(split, ev: _Evaluation, als_factors: int, log) -> dict:
    """popularity, item kNN (recency decay chosen on validation) and ALS fold-in
    (regularisation chosen on validation), fitted on every training history."""
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    index, n_items = ev.index, ev.n_items
    train_rows = _rows(split.train, index)
    cosine = ev.cosine = ItemCosine(train_rows)  # text2tracks-hybrid mixes its lists too
    popularity = ev.popularity.astype(np.float64)

    def score_popularity(histories):
        return lambda rows: np.broadcast_to(
            popularity, (len(range(*rows.indices(len(histories)))), n_items)
        )

    def score_knn(histories, decay, power):
        # sum over history items j of decay**age * n_j**(0.5 - power) * cos(j, i)
        weighted = _rows(histories, index, decay)
        return lambda rows: cosine.scores(weighted[rows], power)

    def score_als(histories, model):
        hist = _rows(histories, index)
        return lambda rows: als_fold_in_scores(model, hist[rows])

    def best_of(candidates):
        best = None
        for result, ranks in candidates:
            if (
                best is None
                or result["validation"]["recall@10"] > best[0]["validation"]["recall@10"]
            ):
                best = (result, ranks)
        return best

    def als_candidates():
        for regularization in (0.01, 0.1):
            with threadpool_limits(limits=1, user_api="blas"):
                model = AlternatingLeastSquares(
                    factors=als_factors,
                    regularization=regularization,
                    iterations=15,
                    random_state=0,
                )
                model.fit(train_rows, show_progress=False)
            setting = {"factors": als_factors, "regularization": regularization}
            yield ev.baseline(lambda h, m=model: score_als(h, m), setting)

    systems = {}
    chosen = {
        "popularity": (ev.baseline(score_popularity, {}),),
        "item_knn": (
            ev.baseline(
                lambda h, d=decay, p=power: score_knn(h, d, p),
                {"decay": decay, "history_power": power},
            )
            for power in KNN_HISTORY_POWERS
            for decay in KNN_DECAYS
        ),
        "als_fold_in": als_candidates(),
    }
    for name, candidates in chosen.items():
        systems[name], ev.test_ranks[name] = best_of(candidates)
        r = systems[name]
        log(f"{name}: test recall@10 {r['test']['recall@10']:.4f} {r['setting']}")
    return systems


def run(
    split,
    n_bootstrap: int = 1000,
    als_factors: int = 64,
    log=print,
    model=None,
    model_setting: dict | None = None,
    model_stages: Sequence[str] = ("validation", "test"),
    max_users: int | None = None,
    sample_seed: int = 0,
    hybrid: bool = False,
    rerank: bool = False,
) -> dict:
    """The baselines (and ``model``, the ``text2tracks`` row, when given: anything with
    ``rank(histories, targets) -> (ranks, notes)``, scored on ``model_stages`` and compared with
    item kNN and ALS fold-in by paired bootstrap) on the scored users (:func:`scored_users`).
    ``hybrid``: also ``text2tracks-hybrid``, the model's answers mixed with item kNN's
    (:mod:`eval.sequential_hybrid`; needs a model with ``rank_and_answer``, on both stages).
    ``rerank``: also ``text2tracks-rerank``, item kNN's candidates scored by the model too (it
    needs ``score_candidates`` as well)."""
    for flag, name in ((hybrid, "text2tracks-hybrid"), (rerank, "text2tracks-rerank")):
        if flag and model is None:
            raise ValueError(f"{name} mixes the model's answers: give a model")
    if "test" not in model_stages or not set(model_stages) <= {"validation", "test"}:
        raise ValueError(
            f"model_stages must hold 'test' and maybe 'validation', got {list(model_stages)}"
        )
    rows = scored_users(len(split.users), max_users, sample_seed)
    ev = _Evaluation(split, rows, n_bootstrap)
    results: dict = {
        "users": len(split.users),
        "scored_users": int(rows.size),
        "sample_seed": sample_seed if rows.size < len(split.users) else None,
        "too_short": split.n_too_short,
        "items": ev.n_items,
        "systems": _fit_baselines(split, ev, als_factors, log),
    }
    if model is not None:
        r = ev.model(model, dict(model_setting or {}), model_stages)
        r["paired"] = paired_tests(ev.test_ranks, MODEL_SYSTEM, n_bootstrap)
        results["systems"][MODEL_SYSTEM] = r
        log(f"{MODEL_SYSTEM}: test recall@10 {r['test']['recall@10']:.4f} {r['notes']['test']}")
        if hybrid:
            from eval.sequential_hybrid import HYBRID_SYSTEM, hybrid_row

            knn = results["systems"]["item_knn"]["setting"]
            results["systems"][HYBRID_SYSTEM] = hybrid_row(ev, knn, n_bootstrap, log)
        if rerank:
            from eval.sequential_hybrid import RERANK_SYSTEM, rerank_row

            knn = results["systems"]["item_knn"]["setting"]
            results["systems"][RERANK_SYSTEM] = rerank_row(ev, model, knn, n_bootstrap, log)
    results["per_user"] = {
        "rows": rows.tolist(),
        "test_ranks": {name: ranks.tolist() for name, ranks in ev.test_ranks.items()},
    }
    return results


def format_table(results: dict) -> str:
    scored = results.get("scored_users", results["users"])
    lines = [
        f"{results['users']} users ({results['too_short']} with < 3 items left out), "
        f"{results['items']} training items; test targets of {scored} users",
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
    paired = [(name, r["paired"]) for name, r in results["systems"].items() if r.get("paired")]
    if paired:
        lines.append("")
    for name, tests_by_other in paired:
        for other, tests in tests_by_other.items():
            cells = [
                f"{metric} {d['diff']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}] "
                f"p = {d['p_value']:.4f}"
                for metric, d in tests.items()
            ]
            lines.append(f"- {name} - {other} (paired bootstrap): " + "; ".join(cells))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.sequential", description=__doc__.split("\n")[0]
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--sequences", help="JSONL {user, items} or CSV user,item,timestamp")
    source.add_argument("--playlists", help="playlists (MPD, JSONL, Parquet) used as sequences")
    parser.add_argument("--out", required=True, help="output folder (sequential.json)")
    parser.add_argument("--min-length", type=int, default=3)
    parser.add_argument(
        "--core",
        type=int,
        default=0,
        help="keep the k-core first, as TIGER's Amazon datasets (5-core): items in at least "
        "this many sequences, users with at least this many items (default 0: every item)",
    )
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument(
        "--max-users",
        type=int,
        default=None,
        help="score every system on a seeded random subset of this many users (all "
        "training histories still fit the models)",
    )
    parser.add_argument("--sample-seed", type=int, default=0, help="seeds --max-users")
    model = parser.add_argument_group("the text2tracks row (eval.sequential_model)")
    model.add_argument(
        "--model-artifact",
        metavar="DIR",
        help="score this artifact, built on this split's training histories (its recorded "
        "split is checked); with --train-minutes: build and train it here",
    )
    model.add_argument(
        "--train-minutes",
        type=float,
        default=None,
        help="build an artifact from the training histories (OUT/artifact unless "
        "--model-artifact) and train its model this long, then score it",
    )
    model.add_argument(
        "--history-window",
        type=int,
        default=0,
        help="with --train-minutes: train on windows of this many consecutive history items "
        "(every half window) instead of whole histories (default 0: whole)",
    )
    model.add_argument("--build-flags", default="", help='more build-ids flags, "--levels 3 ..."')
    model.add_argument("--train-flags", default="", help='more trainer flags, "--d-model 256 ..."')
    model.add_argument("--force", action="store_true", help="overwrite an existing artifact")
    model.add_argument("--num-beams", type=int, default=10, help="beam width (default 10)")
    model.add_argument("--batch-size", type=int, default=64, help="users per recommend call")
    model.add_argument("--num-threads", type=int, default=0, help="torch threads (0: default)")
    model.add_argument("--device", default=None, help="torch device (default: CUDA if any)")
    model.add_argument(
        "--hybrid",
        action="store_true",
        help="also score text2tracks-hybrid, the model's answers mixed with item kNN's list, "
        "fitted on the validation targets (eval/sequential_hybrid.py)",
    )
    model.add_argument(
        "--rerank",
        action="store_true",
        help="also score text2tracks-rerank: item kNN's 100 candidates each scored by the "
        "model (teacher-forced), mixed with item kNN's list as --hybrid mixes them",
    )
    model.add_argument(
        "--no-model-validation",
        action="store_true",
        help="score the model on the test targets only (half the beam searches)",
    )
    return parser


def prepare_model(args: argparse.Namespace, split, log=print):
    """``(SequentialModel, setting)`` of the command line's model flags: the artifact built
    and trained with ``--train-minutes``, or the ``--model-artifact`` given, checked against
    the split."""
    from pathlib import Path

    from eval.sequential_model import (
        HISTORIES_FILE,
        SPLIT_FILE,
        build_artifact,
        load_sequential_model,
        split_flags,
        train_artifact,
    )

    artifact = Path(args.model_artifact or Path(args.out) / "artifact")
    setting: dict = {"artifact": str(artifact)}
    if args.train_minutes is not None:
        if not args.train_minutes > 0:
            raise ValueError(f"--train-minutes must be > 0, got {args.train_minutes}")
        histories = Path(args.out) / HISTORIES_FILE
        build_artifact(
            split,
            artifact,
            histories,
            split_flags(args.build_flags),
            force=args.force,
            log=log,
            window=args.history_window,
        )
        summary = train_artifact(
            artifact,
            histories,
            args.train_minutes,
            split_flags(args.train_flags),
            num_threads=args.num_threads,
            log=log,
        )
        setting.update(
            train_minutes=args.train_minutes,
            steps=summary.get("steps"),
            stopped_by=summary.get("stopped_by"),
        )
    model = load_sequential_model(
        artifact,
        split,
        device=args.device,
        num_threads=args.num_threads,
        num_beams=args.num_beams,
        batch_size=args.batch_size,
        log=log,
    )
    recorded = json.loads((artifact / SPLIT_FILE).read_text(encoding="utf-8"))  # checked above
    setting.update(model.describe(), history_window=recorded.get("history_window", 0))
    return model, setting


def main(argv: list[str] | None = None) -> int:
    from eval.report import write_table_and_json
    from semantic_ids.playlists import read_playlists
    from semantic_ids.sequences import (
        k_core,
        leave_last_out,
        read_sequences,
        sequences_from_playlists,
    )

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.core < 0:
        parser.error(f"--core must be >= 0, got {args.core}")
    if args.max_users is not None and args.max_users < 1:
        parser.error(f"--max-users must be >= 1, got {args.max_users}")
    if args.history_window and args.train_minutes is None:
        parser.error("--history-window shapes the training data: it needs --train-minutes")
    if (args.hybrid or args.rerank) and (
        args.no_model_validation or not (args.model_artifact or args.train_minutes)
    ):
        parser.error(
            "--hybrid and --rerank mix the model's answers, fitted on its validation answers: "
            "they need --model-artifact or --train-minutes, without --no-model-validation"
        )
    sequences = (
        read_sequences(args.sequences)
        if args.sequences
        else sequences_from_playlists(read_playlists(args.playlists).playlists)
    )
    if args.core:
        sequences = k_core(sequences, args.core)
    split = leave_last_out(sequences, min_length=args.min_length)
    model, setting = None, None
    if args.model_artifact or args.train_minutes is not None:
        model, setting = prepare_model(args, split)
    results = run(
        split,
        n_bootstrap=args.n_bootstrap,
        model=model,
        model_setting=setting,
        model_stages=("test",) if args.no_model_validation else ("validation", "test"),
        max_users=args.max_users,
        sample_seed=args.sample_seed,
        hybrid=args.hybrid,
        rerank=args.rerank,
    )
    table = format_table(results)
    print(table)
    write_table_and_json(args.out, "sequential", results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
