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
of each category, validation and test (every system on the same playlists). ``--cf-hybrid N``
adds ``text2tracks-hybrid``: the model's answer mixed with a baseline's list, fitted per
seed-count bucket on N validation playlists a category (:mod:`eval.continuation_hybrid`).
The model rows (``text2tracks``, ``text2tracks-hybrid``) are compared with each category's
best baseline on R-precision and NDCG by paired bootstrap (same playlists). Prints a table and
writes ``OUT/continuation.json``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from eval.continuation_core import (
    ALS_FACTORS,
    CATEGORIES,
    DEPTH,
    METRICS,
    SEED_SYSTEMS,
    Category,
    Scorers,
    Task,
    challenge_metrics,
    fused_scores,
    item_index,
    make_tasks,
    rank,
)
from eval.continuation_fit import (
    fit_als_factors,
    fit_fuse_weights,
    fit_knn_power,
    validation_tasks,
)
from eval.continuation_model import MODEL_MODES
from eval.metrics import bootstrap_interval, bootstrap_means


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
                scores = fused_scores(base[seed_system], base["title_knn"], w)
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
    hybrid=None,
) -> dict:
    """Per category with playlists: ``{"n", "per_prompt": {system: {metric: (n,) values}},
    "depth": {system: ranked ids per playlist}, "notes": {system: {...}}}``. ``model``: an
    :class:`eval.continuation_model.ModelSystem` scored beside the baselines; ``hybrid``: a
    fitted :class:`eval.continuation_hybrid.ContinuationHybrid` mixing its answers with a
    baseline's (``text2tracks-hybrid``)."""
    from eval.continuation_hybrid import HYBRID_SYSTEM
    from eval.continuation_model import MODEL_SYSTEM

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
                ranked, scores, notes[system] = model.rank_scored(system, task)
                per_prompt[system] = challenge_metrics(ranked, task.withheld)
                depths[system] = model.k
                if hybrid is not None and system == MODEL_SYSTEM:
                    mixed = hybrid.rank(task, ranked, scores)
                    per_prompt[HYBRID_SYSTEM] = challenge_metrics(mixed, task.withheld)
                    depths[HYBRID_SYSTEM] = hybrid.depth
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
        paired = paired_against_best(cat["per_prompt"], systems, n_bootstrap)
        if paired:
            categories[name]["paired"] = paired
    overall = {}
    for system, parts in overall_samples.items():
        means = np.mean([p[0] for p in parts], axis=0)
        low, high = bootstrap_interval(np.mean([p[1] for p in parts], axis=0), confidence)
        overall[system] = {"categories": len(parts)}
        for i, m in enumerate(METRICS):
            overall[system][m] = float(means[i])
            overall[system][f"{m}_ci"] = [float(low[i]), float(high[i])]
    return {"categories": categories, "overall": overall}


PAIRED_METRICS = ("r_precision", "ndcg")
OUR_SYSTEMS = ("text2tracks", "text2tracks-hybrid")  # compared with the best baseline
NOT_BASELINES = (*OUR_SYSTEMS, "text2tracks_title_only")


def paired_against_best(per_prompt: dict, systems: dict, n_bootstrap: int = 1000) -> dict:
    """Per system of :data:`OUR_SYSTEMS` in a category, per metric of :data:`PAIRED_METRICS`:
    the paired bootstrap difference to the baseline with the best mean on that metric in the
    category (same playlists), ``{"against", "diff", "ci", "p_value", "n_prompts"}``."""
    from eval.metrics import paired_bootstrap_diff

    baselines = [s for s in systems if s not in NOT_BASELINES]
    out: dict = {}
    for ours in (s for s in OUR_SYSTEMS if s in per_prompt and baselines):
        out[ours] = {}
        for m in PAIRED_METRICS:
            best = max(baselines, key=lambda s: systems[s][m])
            test = paired_bootstrap_diff(per_prompt[ours][m], per_prompt[best][m], n_bootstrap)
            out[ours][m] = {"against": best, **test}
    return out


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
    cf_hybrid: int = 0,
) -> dict:
    """The whole protocol: baselines fitted on ``train``, fusion weights on ``validation``,
    every system scored on ``test``'s categories (``model``: a
    :class:`eval.continuation_model.ModelSystem`, or ``None`` for the baselines alone).
    ``cf_hybrid``: also ``text2tracks-hybrid``, fitted on that many validation playlists per
    category (:mod:`eval.continuation_hybrid`; needs ``model``)."""
    item_ids, index, popularity = item_index(train)
    popularity_order = np.arange(len(item_ids))  # items are already in popularity order
    scorers = Scorers(train, index, popularity, als_factors=als_factors[0])
    log(f"{len(train)} training playlists, {len(item_ids)} tracks")
    val_tasks = validation_tasks(validation, index, max_per_category)
    knn_power = fit_knn_power(scorers, val_tasks, item_ids, popularity_order)
    log(f"item kNN history_power (validation): {knn_power}")
    als_factors = fit_als_factors(scorers, val_tasks, item_ids, popularity_order, als_factors)
    log(f"ALS fold-in factors (validation): {als_factors}")
    fuse_weight = fit_fuse_weights(scorers, val_tasks, item_ids, popularity_order)
    log(f"fusion weights (validation): {fuse_weight}")
    hybrid = _fit_cf_hybrid(
        model, scorers, item_ids, fuse_weight, validation, index, cf_hybrid, log
    )
    tasks = make_tasks(test, index, seed=0, max_per_category=max_per_category)
    evaluated = evaluate_tasks(
        scorers, tasks, item_ids, popularity_order, fuse_weight, model=model, hybrid=hybrid
    )
    empty = [c.name for c in CATEGORIES if c.name not in evaluated]
    if empty:
        log(f"categories without a playlist long enough: {empty}")
    return (
        summarise(evaluated, n_bootstrap)
        | {
            "empty_categories": empty,
            "fuse_weight": fuse_weight,
            "item_knn_history_power": knn_power,
            "als_factors": als_factors,
            "max_per_category": max_per_category,
        }
        | ({"cf_hybrid": hybrid.describe()} if hybrid is not None else {})
    )


def _fit_cf_hybrid(model, scorers, item_ids, fuse_weight, validation, index, per_category, log):
    """``text2tracks-hybrid`` fitted on ``per_category`` validation playlists of each category
    (cut as the test ones, their own random seeds), or ``None`` when ``per_category`` is 0."""
    from eval.continuation_hybrid import ContinuationHybrid
    from eval.continuation_model import MODEL_SYSTEM

    if not per_category:
        return None
    if model is None:
        raise ValueError("text2tracks-hybrid (cf_hybrid) mixes the model's answers: give a model")
    if per_category < 0:
        raise ValueError(f"cf_hybrid must be >= 0 playlists per category, got {per_category}")
    tasks = make_tasks(validation, index, seed=1, max_per_category=per_category)
    hybrid = ContinuationHybrid(scorers, item_ids, fuse_weight)
    return hybrid.fit(lambda task: model.rank_scored(MODEL_SYSTEM, task)[:2], tasks, log)


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
    paired = [(n, c["paired"]) for n, c in results["categories"].items() if c.get("paired")]
    if paired:
        lines += ["", "| category | system | against the best baseline (paired bootstrap) |"]
        lines.append("|---|---|---|")
    for name, by_system in paired:
        for s, tests in by_system.items():
            cells = "; ".join(
                f"{m} vs {t['against']} {t['diff']:+.4f} [{t['ci'][0]:+.4f}, {t['ci'][1]:+.4f}]"
                f" p = {t['p_value']:.3f}"
                for m, t in tests.items()
            )
            lines.append(f"| {name} | {s} | {cells} |")
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
    parser.add_argument(
        "--mode",
        choices=MODEL_MODES,
        default="generative",
        help="the model's mode: hybrid fuses the beam with the diffusion head's latents, which "
        "start from the seeds (the artifact needs a head); cf-blend blends the beam's answer "
        "with the fitted co-listening view (the artifact needs text2tracks fit-seed-blend)",
    )
    parser.add_argument(
        "--seed-strength",
        type=float,
        help="hybrid: the prompt's weight in the latents of prompts with seeds (0: the seeds "
        "alone; default: the artifact's hybrid settings)",
    )
    parser.add_argument(
        "--fit-seed-fusion",
        type=int,
        default=0,
        metavar="N",
        help="hybrid: first fit the blend of prompts with seeds (and the seed strength, unless "
        "--seed-strength) on N validation playlists of each seeded category (0: the "
        "artifact's own, or its plain blend)",
    )
    parser.add_argument(
        "--fusion-k", type=int, default=100, help="the depth at which that blend's NDCG is fitted"
    )
    parser.add_argument(
        "--fusion-kind",
        choices=("fixed", "gated"),
        default="fixed",
        help="that blend: one alpha, or a gate picking alpha per prompt",
    )
    parser.add_argument(
        "--cf-hybrid",
        type=int,
        default=0,
        metavar="N",
        help="also score text2tracks-hybrid, the model's answer mixed with a baseline's list "
        "(eval/continuation_hybrid.py), fitted on N validation playlists of each category "
        "(0: not scored)",
    )
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


def _hybrid_setup(recommender, args, validation) -> dict:
    """Hybrid mode's settings for this run (``--seed-strength``, ``--fit-seed-fusion``): what
    the results file records of them."""
    from dataclasses import replace

    from eval.continuation_fit import fit_seed_fusion_on_validation

    if args.mode != "hybrid":
        if args.seed_strength is not None or args.fit_seed_fusion:
            raise SystemExit("--seed-strength and --fit-seed-fusion need --mode hybrid")
        return {}
    if args.seed_strength is not None:
        recommender.hybrid_settings = replace(
            recommender.hybrid_settings, seed_strength=args.seed_strength
        )
    if args.fit_seed_fusion:  # the strength too, unless --seed-strength fixes it
        fixed = None if args.seed_strength is None else [args.seed_strength]
        summary = fit_seed_fusion_on_validation(
            recommender, validation, args.fit_seed_fusion, args.fusion_k, fixed, args.fusion_kind
        )
        return {"seed_strength": summary["seed_strength"], "seed_fusion": summary}
    return {"seed_strength": recommender.hybrid_settings.seed_strength}


def main(argv: list[str] | None = None) -> int:
    from eval.continuation_model import ModelSystem, load_model
    from eval.report import write_table_and_json
    from semantic_ids.playlists import read_playlists, split_playlists
    from text2tracks.artifacts import artifact_split

    args = build_parser().parse_args(argv)
    if args.cf_hybrid and not args.artifact:
        raise SystemExit("--cf-hybrid mixes a model's answers with a baseline's: give --artifact")
    model = None
    if args.artifact:
        split = artifact_split(args.artifact, args.playlists)
        recommender = load_model(args.artifact, args.device, args.num_threads)
        fitted = _hybrid_setup(recommender, args, split.validation)
        model = ModelSystem(recommender, args.k, args.num_beams, args.batch_size, mode=args.mode)
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
        cf_hybrid=args.cf_hybrid,
    )
    if model is not None:
        results["model"] = model.describe() | {"artifact": str(args.artifact), **fitted}
    table = format_table(results)
    print(table)
    write_table_and_json(args.out, "continuation", results, table)
    return 0


__all__ = [
    "CATEGORIES",
    "DEPTH",
    "Category",
    "Scorers",
    "Task",
    "baseline_systems",
    "challenge_metrics",
    "evaluate_tasks",
    "format_table",
    "item_index",
    "main",
    "make_tasks",
    "rank",
    "run",
    "summarise",
]


if __name__ == "__main__":
    sys.exit(main())
