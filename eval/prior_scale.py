"""How strongly should a seeded model's prior weigh? Rescale the trained seed prior's ``W``
(:mod:`text2tracks.seed_prior`) at inference and score the continuation categories again.

A diagnostic, not a mode: each scale multiplies ``W`` (every ensemble member's) by ``s`` for
the whole run of that scale, then restores it. If the best ``s`` grows with the seed count, a
prior whose weight is the same for one seed as for a hundred is leaving score on the table
(what ``--seed-prior-count-scale`` learns instead). The model's own rows only, at the
challenge's depth, on the same held-out playlists and random seeds as
:mod:`eval.continuation` (the split the artifact was built with)::

    python -m eval.prior_scale --artifact A --playlists PATH --scales 1,2,4 \\
        --categories title_first1,title_first25,title_random100 --max-per-category 50 --out DIR

prints a table (R-precision / NDCG / Hits@10 per category and scale) and writes
``DIR/prior_scale.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import numpy as np


def _priors(recommender) -> list:
    """The seed priors of the recommender's model and its ensemble members; ``ValueError``
    where there is none."""
    from text2tracks.seed_prior import seed_prior_of

    models = [recommender.model] + [m.model for m in (recommender.members or [])]
    priors = [p for p in (seed_prior_of(m) for m in models) if p is not None]
    if not priors:
        raise ValueError(
            "the artifact's model has no seed prior to rescale: train it with seeds "
            "(--seed-prob > 0) and --seed-prior nodes or tokens"
        )
    return priors


@contextlib.contextmanager
def scaled_prior(recommender, scale: float):
    """Within the block every seed prior's ``W`` of ``recommender`` is ``scale`` times the
    trained one; restored after, whatever happens."""
    import torch

    priors = _priors(recommender)
    saved = [p.weight.detach().clone() for p in priors]
    try:
        with torch.no_grad():
            for p in priors:
                p.weight.mul_(float(scale))
        yield
    finally:
        with torch.no_grad():
            for p, w in zip(priors, saved, strict=True):
                p.weight.copy_(w)


def score_scales(system, tasks, scales) -> dict:
    """``{category: {scale: {metric: mean}}}`` of the model's own rows (``system``: an
    :class:`eval.continuation_model.ModelSystem`) on ``tasks`` at each prior scale."""
    from eval.continuation import challenge_metrics
    from eval.continuation_model import MODEL_SYSTEM

    out: dict = {t.category.name: {} for t in tasks}
    for scale in scales:
        with scaled_prior(system.recommender, scale):
            for task in tasks:
                ranked, _ = system.rank(MODEL_SYSTEM, task)
                metrics = challenge_metrics(ranked, task.withheld)
                out[task.category.name][str(scale)] = {
                    k: float(np.mean(v)) for k, v in metrics.items()
                }
    return out


def format_table(results: dict, scales) -> str:
    head = "| category | " + " | ".join(f"W x {s}" for s in scales) + " |"
    lines = [head, "|---|" + "---|" * len(scales)]
    for category, by_scale in results.items():
        cells = [
            "{r_precision:.3f} / {ndcg:.3f} / {hits@10:.2f}".format(**by_scale[str(s)])
            for s in scales
        ]
        lines.append(f"| {category} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nR-precision / NDCG / Hits@10, the model's own rows."


def build_parser() -> argparse.ArgumentParser:
    from eval.continuation import CATEGORIES, DEPTH

    parser = argparse.ArgumentParser(
        prog="python -m eval.prior_scale", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--artifact", required=True, help="a trained seeded artifact")
    parser.add_argument("--playlists", required=True, help="playlists (MPD, JSONL, Parquet)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--scales", default="1,2,4", help="comma-separated factors of W")
    parser.add_argument(
        "--categories",
        default=",".join(c.name for c in CATEGORIES if c.n_seeds),
        help="comma-separated continuation categories (default: every seeded one)",
    )
    parser.add_argument("--k", type=int, default=DEPTH, help="recommendations (beam width)")
    parser.add_argument("--max-per-category", type=int, default=50)
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads (0: default)")
    parser.add_argument("--device", help="torch device (default: CUDA when available)")
    return parser


def _tasks(split, names: list[str], max_per_category: int):
    """The chosen categories' tasks, drawn as :mod:`eval.continuation` draws them."""
    from eval.continuation import CATEGORIES, item_index, make_tasks

    unknown = sorted(set(names) - {c.name for c in CATEGORIES})
    if unknown:
        raise SystemExit(
            f"unknown categories {unknown}; choose from {[c.name for c in CATEGORIES]}"
        )
    _, index, _ = item_index(split.train)
    tasks = make_tasks(split.test, index, seed=0, max_per_category=max_per_category)
    return [t for t in tasks if t.category.name in names and t.titles]


def main(argv: list[str] | None = None) -> int:
    from eval.continuation_model import ModelSystem, load_model
    from eval.report import write_table_and_json
    from text2tracks.artifacts import artifact_split

    args = build_parser().parse_args(argv)
    try:
        scales = [float(s) for s in args.scales.split(",") if s.strip()]
    except ValueError as err:
        raise SystemExit(f"--scales must be comma-separated numbers, got {args.scales!r}") from err
    if not scales or min(scales) < 0:
        raise SystemExit(f"--scales must be non-negative numbers, got {args.scales!r}")
    split = artifact_split(args.artifact, args.playlists)
    tasks = _tasks(split, args.categories.split(","), args.max_per_category)
    recommender = load_model(args.artifact, args.device, args.num_threads)
    system = ModelSystem(recommender, args.k, None, 32)
    results = score_scales(system, tasks, scales)
    table = format_table(results, scales)
    print(table)
    payload = {"artifact": str(args.artifact), "k": args.k, "categories": results}
    write_table_and_json(args.out, "prior_scale", payload | {"scales": scales}, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
