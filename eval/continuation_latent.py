"""Latent-only continuation: does a seed-conditioned diffusion head (MO-DiT) continue a playlist?

    python -m eval.continuation_latent --playlists ../shared/data/mpd \\
        --seeded ART_SEEDED --plain ART_PLAIN --out DIR [--categories title_first5,first10]

Both artifacts share their split, catalogue and CF factors and differ in ``diffusion/`` only: a
head trained with ``--seed-conditioning`` and one without. Held-out (test) playlists are cut into
the RecSys Challenge 2018 categories of :mod:`eval.continuation` (its ``make_tasks``, seeds
unknown to the catalogue dropped), and every row ranks the catalogue by the latent mode's
search (:func:`text2tracks.latent_search.latent_candidates`: faiss around each latent, pooled
as ``hybrid_settings.pool``), seeds excluded, ``--k`` deep:

- ``latent_seeded``: the seeded head's latents for the category's prompt (its title, or ``""``
  where the category hides it) and its seeds (``Text2Tracks.sample_latents(...,
  seed_tracks=...)``);
- ``latent_seeded_text``: the same head given the text alone (categories with a title): what
  the seeds add, and whether training with seeds cost the title-only answer anything;
- ``latent_plain``: the head without seed conditioning given the playlist's title (also where
  the category hides it, as :mod:`eval.continuation_model`'s title-only reference), the seeds
  excluded;
- ``seed_mean``: the seeds' mean CF item factor as the one query (MO-DiT's "pattern only"
  yardstick); ``seed_fold_in``: the ALS fold-in of the seeds
  (:func:`text2tracks.head_seeds.seed_latent`).

A prompt a row cannot answer (no text, or no seed in the catalogue, as the row needs) gets an
empty list, scored as a miss and counted under ``unanswered``.

Metrics are the challenge's (:func:`eval.continuation.challenge_metrics`) with bootstrap
intervals (:func:`eval.continuation.summarise`); a ``--k``-deep list makes R-precision and NDCG
lower bounds of the 500-deep values, as in :mod:`eval.continuation_model`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np

from eval.continuation import CATEGORIES, challenge_metrics, format_table, make_tasks, summarise

SYSTEMS = ("latent_seeded", "latent_seeded_text", "latent_plain", "seed_mean", "seed_fold_in")


def rank_latents(recommender, latents: np.ndarray, seeds: list[np.ndarray], k: int) -> list:
    """Track ids ``k`` deep per prompt: the latent mode's search around ``latents`` (batch,
    n_samples, dim) over the recommender's CF factors, each prompt's seeds excluded."""
    from text2tracks.latent_search import latent_candidates

    factors, index = recommender.latent_index()
    items, _ = latent_candidates(
        latents,
        factors,
        k=k,
        index=index,
        pool=recommender.hybrid_settings.pool,
        exclude=[set(s.tolist()) for s in seeds],
    )
    ids = recommender.catalog.item_ids
    return [[ids[i] for i in row if i >= 0] for row in items]


def answerable(system: str, task, seeds: list[np.ndarray]) -> np.ndarray:
    """Which prompts a system can answer (bool ``(n,)``): a text that normalises to something,
    or (the seeded head, the seed rows) at least one seed in the catalogue."""
    from text2tracks.data import normalize_prompt

    has_seeds = np.array([len(s) > 0 for s in seeds], dtype=bool)
    if system in ("seed_mean", "seed_fold_in"):
        return has_seeds
    texts = task.playlist_titles if system == "latent_plain" else task.titles
    has_text = np.array([bool(normalize_prompt(t)) for t in texts], dtype=bool)
    return has_text | has_seeds if system == "latent_seeded" else has_text


def system_latents(system: str, seeded, plain, task, seeds: list[np.ndarray], rows, batch: int):
    """Query latents ``(len(rows), n_samples, dim)`` of one system for the prompts ``rows``."""
    from text2tracks.head_seeds import seed_latent

    if system in ("seed_mean", "seed_fold_in"):
        method = "mean" if system == "seed_mean" else "fold_in"
        factors = seeded.item_factors
        return np.stack([seed_latent(factors, seeds[r], method) for r in rows])[:, None, :]
    if system == "latent_seeded":
        ids = seeded.catalog.item_ids
        seed_ids = [[ids[i] for i in seeds[r]] or None for r in rows]
        texts = [task.titles[r] for r in rows]
        return seeded.sample_latents(texts, seed_tracks=seed_ids, batch_size=batch)
    if system == "latent_seeded_text":
        return seeded.sample_latents([task.titles[r] for r in rows], batch_size=batch)
    return plain.sample_latents([task.playlist_titles[r] for r in rows], batch_size=batch)


def evaluate(seeded, plain, tasks, k: int, batch: int, log: Callable[[str], None] = print):
    """Per category ``{"n", "per_prompt", "depth", "notes"}`` as :func:`summarise` reads it; a
    prompt a system cannot answer gets an empty list (a miss), counted under ``unanswered``."""
    evaluated = {}
    for task in tasks:
        if not task.titles:
            continue
        known = [np.asarray(s, dtype=np.int64) for s in task.seeds]
        per_prompt, depths, notes = {}, {}, {}
        for system in SYSTEMS:
            if not task.category.n_seeds and system != "latent_seeded_text":
                continue
            if not task.category.title and system == "latent_seeded_text":
                continue
            rows = np.flatnonzero(answerable(system, task, known))
            ranked: list[list[str]] = [[] for _ in task.titles]
            if rows.size:
                latents = system_latents(system, seeded, plain, task, known, rows, batch)
                for r, answer in zip(
                    rows, rank_latents(seeded, latents, [known[r] for r in rows], k), strict=True
                ):
                    ranked[r] = answer
            per_prompt[system] = challenge_metrics(ranked, task.withheld)
            depths[system] = k
            notes[system] = {"unanswered": int(len(task.titles) - rows.size)}
        name = task.category.name
        evaluated[name] = {
            "n": len(task.titles),
            "per_prompt": per_prompt,
            "depth": depths,
            "notes": notes,
        }
        log(f"{name}: {len(task.titles)} playlists, {notes}")
    return evaluated


def run(args) -> dict:
    import torch

    from eval.continuation_model import load_model
    from text2tracks.artifacts import artifact_split

    torch.manual_seed(0)
    split = artifact_split(args.seeded, args.playlists)
    seeded = load_model(args.seeded, args.device, args.num_threads)
    plain = load_model(args.plain, args.device, args.num_threads)
    if not seeded.head_reads_seeds or plain.head_reads_seeds:
        raise ValueError("--seeded needs a seed-conditioned head and --plain one without")
    index = {t: i for i, t in enumerate(seeded.catalog.item_ids)}
    wanted = set(args.categories.split(","))
    categories = [c for c in CATEGORIES if c.name in wanted]
    if len(categories) != len(wanted):
        raise ValueError(f"unknown categories in {sorted(wanted)}")
    tasks = make_tasks(split.test, index, 0, categories, args.max_per_category or None)
    evaluated = evaluate(seeded, plain, tasks, args.k, args.batch_size)
    results = summarise(evaluated, args.n_bootstrap)
    results["settings"] = {
        "seeded": str(args.seeded),
        "plain": str(args.plain),
        "k": args.k,
        "n_samples": seeded.hybrid_settings.n_samples,
        "pool": seeded.hybrid_settings.pool,
    }
    return results


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.continuation_latent", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--playlists", required=True)
    parser.add_argument("--seeded", required=True, help="artifact with a seed-conditioned head")
    parser.add_argument("--plain", required=True, help="the same artifact, head without seeds")
    parser.add_argument("--out", required=True)
    parser.add_argument("--categories", default="title_first1,title_first5,first5,first10")
    parser.add_argument("--k", type=int, default=100, help="tracks ranked per prompt")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-per-category", type=int, default=0, help="0: all")
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-threads", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    from eval.report import write_table_and_json

    args = build_parser().parse_args(argv)
    results = run(args)
    table = format_table(results)
    print(table)
    write_table_and_json(args.out, "continuation_latent", results, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
