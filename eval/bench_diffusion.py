"""Diffusion-head benchmark: latent-only, regressor, hybrid re-ranking, negative prompts, inversion.

    python -m eval.bench_diffusion --benchmark-dir DIR --train PATH [--budget-minutes M]

Works on a finished ``python -m eval.benchmark`` output folder (``DIR/artifact`` with ``cf/``,
``semantic_ids/``, ``seq2seq/``; ``DIR/results.json`` with the split parameters). It re-creates
the benchmark's split (same test prompts, same validation playlists), trains the diffusion head
(frozen seq2seq encoder, and the byte encoder when the budget allows; the better on validation is
kept) and the plain prompt -> latent regressor with the chosen encoder into a working copy of the
artifact, ``DIR/diffusion_artifact`` (``DIR/artifact`` is only read), and evaluates that copy
through the public API (``Text2Tracks.from_pretrained``, ``recommend_arrays``,
``sample_latents``). It adds to ``DIR/results.json`` (re-read, keys added, written atomically):

* ``latent-only``: diffusion samples (several per prompt), faiss around each, pooled;
* ``latent-regressor``: the regressor's single latent, faiss;
* ``generative``: top k of the same constrained beam search that feeds the hybrid
  (``--candidates`` items per prompt, no diversity penalty), so that hybrid and generative share
  their decoding;
* ``hybrid``: beam + latent candidates, :class:`~text2tracks.rerank.FixedBlendFusion` fitted on
  validation prompts by the API's fitter; ``hybrid-gated``: :class:`~text2tracks.rerank.GatedFusion`;
  ``hybrid-regressor``: the fixed blend with the regressor's latent instead of the head's;
  ``hybrid-mixture``: the two views read as distributions and mixed (``fit_fusion(kind="mixture")``).

and paired bootstrap comparisons (``hybrid vs generative`` and others). The fitted fixed blend and
its hybrid settings go to ``DIR/fusion.json`` (``text2tracks.hybrid.load_fusion(DIR)`` reads it;
set it as a recommender's ``fusion`` / ``hybrid_settings``); no artifact receives it. It also
writes ``DIR/diffusion.json`` (everything, with the negative-prompt and inversion curves, the
sampling cost and a check that the rankings equal ``recommend_arrays``'s),
``DIR/negative_prompts.png``, ``DIR/inversion.png`` and ``DIR/joint_at_k.png``.

Negative prompts: pairs (positive test prompt, negative word) are chosen from the data: negative
words are frequent training-title words (a preferred list first, e.g. "christmas", "worship"),
each paired with the positive title word whose training playlists hold most tracks of the
negative's playlists (so there is something to steer away from). For each guidance weight, the
share of the top k that occurs in training playlists whose normalised titles match the negative
is measured with and without the negative prompt (same starting noise), beside Hits@k.

Inversion: each test prompt gets seed tracks from another test playlist whose title shares no
word with it; ``recommend(mode="latent", like_tracks=seeds, edit_strength=s, exclude=seeds)``
edits the seed latent (for each of ``--seed-methods``: the API's ``mean`` and the ALS
``fold_in``) towards the prompt at each strength; the top k is scored for similarity to the seeds
(cosine of item factors to the seeds' mean factor; Hits@k against the seed playlist's other
tracks) and relevance to the prompt (Hits@k). Joint@K, as MO-DiT measures pattern-preserving
retrieval (:mod:`eval.bench_diffusion_joint`): the share of the top K (10 and k) that both stays
in the seeds' pattern (shares a training playlist with a seed; or, ``pattern_cf``, is among the
``--joint-neighbours`` tracks nearest their mean factor) and matches the prompt (is in a
training playlist whose title holds one of the prompt's content words), beside Pattern@K and
Attribute@K alone, for each strength, for the hybrid mode's edits (``--joint-hybrid``), and for
two yardsticks on the same prompts: the seeds' mean alone (the catalogue by inner product with
their mean factor) and the prompt alone (``recommend(prompt, mode="latent")``), seeds excluded
throughout. ``inversion.joint.target`` says at which strengths Joint@10 beats both yardsticks,
whether Attribute@10 rises and Pattern@10 falls with the strength, and whether Joint@10 is
unimodal; ``DIR/joint_at_k.png`` draws the curves.

The work is split by job: :mod:`eval.bench_diffusion_config` (settings),
:mod:`eval.bench_diffusion_models` (training into the copy, loading),
:mod:`eval.bench_diffusion_views` (the API's views and rankings),
:mod:`eval.bench_diffusion_systems` (fusions, systems, metrics),
:mod:`eval.bench_diffusion_pairs` (negative pairs, seed playlists, their measures),
:mod:`eval.bench_diffusion_curves` (the two curves, the cost),
:mod:`eval.bench_diffusion_joint` (the edits' Joint@K) and
:mod:`eval.bench_diffusion_report` (JSON, plots, table).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from eval.bench_diffusion_config import DiffusionBenchConfig, add_benchmark_source_flags, log
from eval.bench_diffusion_curves import inversion_curve, negative_prompt_curve, sampling_cost
from eval.bench_diffusion_models import (
    load_recommender,
    load_regressor,
    reuse_models,
    train_models,
)
from eval.bench_diffusion_pairs import (
    negative_share,
    seed_similarity,
    select_negative_pairs,
    select_seed_playlists,
    target_check,
    title_matcher,
    title_words,
)
from eval.bench_diffusion_report import (
    format_report,
    merge_into_results,
    plot_inversion,
    plot_joint,
    plot_negative,
    write_json,
)
from eval.bench_diffusion_systems import (
    beam_width,
    candidate_count,
    compare_systems,
    fit_fusions,
    save_fusion_to_run,
    score_systems,
    system_extras,
    system_rankings,
    validation_prompts,
)
from eval.bench_diffusion_views import ProductViews, api_parity
from eval.metrics import relevant_items
from text2tracks.artifacts import CF_COMPONENT, SEQ2SEQ_COMPONENT
from text2tracks.config_flags import add_config_flags, config_from_args

__all__ = [
    "DiffusionBenchConfig",
    "build_parser",
    "format_report",
    "load_benchmark_split",
    "main",
    "merge_into_results",
    "negative_share",
    "run_diffusion_benchmark",
    "seed_similarity",
    "select_negative_pairs",
    "select_seed_playlists",
    "target_check",
    "title_matcher",
    "title_words",
    "write_json",
]


# ------------------------------------------------------------------------------------ main


def _open_views(artifact: Path, config: DiffusionBenchConfig):
    """``(views, regressor, w)`` of the trained artifact, with the benchmark's hybrid settings
    on the recommender (in memory)."""
    from semantic_ids.interactions import ItemVocab
    from text2tracks.hybrid import HybridSettings

    recommender = load_recommender(artifact)
    views = ProductViews(
        recommender,
        ItemVocab.load(artifact / CF_COMPONENT),
        batch_size=config.batch_size,
        progress=config.progress,
    )
    recommender.hybrid_settings = HybridSettings(
        n_samples=config.n_samples,
        beam_candidates=candidate_count(config, views),
        latent_k=config.latent_k,
        pool=config.pool,
        seed_method=config.seed_method_list[0],
        edit_method=config.edit_method,
        negative_reference=config.negative_reference,
    )
    w = config.guidance_weight or recommender.diffusion_head.config.guidance_weight
    return views, load_regressor(artifact, recommender), float(w)


def _measure_systems(views, regressor, config, prompts, relevant, validation, w, encoder, out_dir):
    """Gather both views, fit the fusions (kept in memory and in ``out_dir/fusion.json``), rank
    and score every system; returns what the report needs."""
    sampling = dict(n_samples=config.n_samples, guidance_weight=w, seed=config.seed)
    n, beams = candidate_count(config, views), beam_width(config, views)
    val_prompts, val_sets = validation_prompts(validation, views, config)
    log(f"beam search ({n} candidates) for {len(prompts)} test, {len(val_prompts)} validation")
    test = views.gather(prompts, candidates=n, num_beams=beams, regressor=regressor, **sampling)
    val = views.gather(val_prompts, candidates=n, num_beams=beams, regressor=regressor, **sampling)
    fusions = fit_fusions(views, val, val_sets, config)
    views.recommender.fusion = fusions.fixed  # what recommend(mode="hybrid") now uses
    path = save_fusion_to_run(
        out_dir, fusions, views.recommender.hybrid_settings, len(val_prompts), config.k
    )
    rankings = system_rankings(views, test, fusions, config, w)
    extras = system_extras(views, test, fusions, config, w, encoder)
    return {
        "test": test,
        "rankings": rankings,
        "extras": extras,
        "fusions": fusions,
        "fusion_path": path,
        "n_validation": len(val_prompts),
        "api_parity": api_parity(views, test, config.k, beams, **sampling),
    }


def run_diffusion_benchmark(
    artifact: str | Path,
    train_path: str | Path,
    out_dir: str | Path,
    prompts: list[str],
    relevant: list[np.ndarray],
    validation: list,
    train_playlists: list | None = None,
    *,
    config: DiffusionBenchConfig | None = None,
    budget_minutes: float | None = None,
    n_skipped: int = 0,
    baselines: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Train and evaluate the diffusion head on the benchmark's split.

    Args:
        artifact: the benchmark's artifact (``cf/``, ``semantic_ids/``, trained ``seq2seq/``);
            only read. The head and regressor train into ``out_dir/diffusion_artifact``.
        train_path: the playlists the artifact was built from (``--train`` of the benchmark).
        out_dir: where ``diffusion.json``, ``fusion.json``, the plots and the working copy go.
        prompts, relevant: the test prompts and their relevant vocab item indices, exactly as
            the benchmark scores them (``relevant_items(test, vocab)``).
        validation: the validation ``Playlist`` objects (fusion weights are fitted on them).
        train_playlists: the training ``Playlist`` objects (titles for the negative prompts);
            None re-splits ``train_path`` with ``artifact/cf/split.json``.
        config: :class:`DiffusionBenchConfig`; ``budget_minutes`` overrides its budget.
        n_skipped: test prompts without catalogue tracks (reported with the metrics).
        baselines: per-prompt Hits of the benchmark's systems on these prompts, by name
            (:func:`benchmark_baselines`), each compared with latent-only.

    Returns ``{"systems", "comparisons", "per_prompt", ...}``: the systems and comparisons are
    in the benchmark's ``results.json`` format; ``per_prompt`` holds per-prompt metric arrays.
    """
    import torch

    config = _checked_config(config, budget_minutes, prompts, relevant)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    artifact, out_dir = Path(artifact), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if train_playlists is None:
        train_playlists = _training_playlists(artifact, train_path)
    started = time.perf_counter()

    # 1. Train the head(s) and the regressor in a copy (or take them from an earlier run).
    trained = (
        reuse_models(artifact, out_dir)
        if config.reuse_models
        else train_models(artifact, str(train_path), config, out_dir)
    )
    # 2. The product as users load it; 3. every system on the test prompts.
    views, regressor, w = _open_views(trained["artifact"], config)
    measured = _measure_systems(
        views, regressor, config, prompts, relevant, validation, w, trained["best"], out_dir
    )
    systems, per_prompt = score_systems(
        measured["rankings"], measured["extras"], relevant, len(views.vocab), config, n_skipped
    )
    comparisons, target = compare_systems(systems, per_prompt, config, baselines)
    report = {
        "systems": systems,
        "comparisons": comparisons,
        "target": target,
        **_training_and_fusion(trained, measured),
        **_curves(views, config, measured["test"], relevant, train_playlists, w),
        "n_test_prompts": len(prompts),
        "n_validation_prompts": measured["n_validation"],
        "config": asdict(config),
        "elapsed_s": time.perf_counter() - started,
    }
    plot_negative(report["negative_prompts"], out_dir / "negative_prompts.png", config.k)
    plot_inversion(report["inversion"], out_dir / "inversion.png", config.k)
    if report["inversion"].get("joint"):
        plot_joint(report["inversion"], out_dir / "joint_at_k.png", 10)
    write_json(out_dir / "diffusion.json", report)
    report["per_prompt"] = per_prompt
    return report


def _curves(views, config, test, relevant, train_playlists, w) -> dict[str, Any]:
    """4. Negative prompts; 5. DDIM inversion (with Joint@K); 6. sampling cost."""
    test_sets = [set(map(int, r)) for r in relevant]
    # the training playlists in the vocabulary, once for both curves
    titles = [p.title for p in train_playlists]
    items = [views.vocab.indices(p.track_ids, skip_unknown=True) for p in train_playlists]
    return {
        "negative_prompts": negative_prompt_curve(views, config, test, test_sets, titles, items, w),
        "inversion": inversion_curve(views, config, test.prompts, relevant, titles, items),
        "latency": sampling_cost(views, config, test.prompts, w),
    }


def _checked_config(config, budget_minutes, prompts, relevant) -> DiffusionBenchConfig:
    config = config or DiffusionBenchConfig()
    if budget_minutes is not None:
        config = replace(config, budget_minutes=float(budget_minutes))
    if len(prompts) != len(relevant) or not prompts:
        raise ValueError(
            f"need as many relevant sets as prompts (>= 1), got {len(prompts)} and {len(relevant)}"
        )
    return config


def _training_and_fusion(trained: dict[str, Any], measured: dict[str, Any]) -> dict[str, Any]:
    """The report's ``training``, ``fusion`` and ``api_parity`` entries."""
    fusions = measured["fusions"]
    return {
        "training": {
            "summaries": trained["summaries"],
            "encoders_tried": trained["encoders_tried"],
            "encoder_chosen": trained["best"],
            "artifact": str(trained["artifact"]),
        },
        "fusion": {
            "path": str(measured["fusion_path"]),
            "fixed": fusions.fixed.to_dict(),
            "fixed_regressor": fusions.fixed_regressor.to_dict(),
            "gated": fusions.gated.to_dict(),
            "mixture": fusions.mixture.to_dict(),
            "validation": fusions.summaries,
        },
        "api_parity": measured["api_parity"],
    }


def _training_playlists(artifact: Path, train_path: str | Path) -> list:
    from semantic_ids.playlists import read_playlists, split_playlists
    from text2tracks.artifacts import read_json

    info = read_json(artifact / CF_COMPONENT / "split.json", "split parameters")
    return split_playlists(
        read_playlists(train_path).playlists,
        validation_fraction=info["validation_fraction"],
        test_fraction=info["test_fraction"],
        seed=info["seed"],
    ).train


# ------------------------------------------------------------------------------------ CLI


def load_benchmark_split(bench_dir: Path, train_path: str) -> dict[str, Any]:
    """Re-create the benchmark's split and test prompts from ``bench_dir/results.json``."""
    from eval.benchmark import load_split
    from semantic_ids.interactions import ItemVocab

    results = json.loads((bench_dir / "results.json").read_text())
    cfg = results["config"]
    args = SimpleNamespace(
        train=str(train_path),
        test=cfg.get("test"),
        validation_fraction=cfg["validation_fraction"],
        test_fraction=cfg["test_fraction"],
        split_seed=cfg["split_seed"],
    )
    data = load_split(args)
    recorded = results.get("split", {})
    for name in ("train", "validation", "test"):
        if name in recorded and recorded[name] != len(data[name]):
            raise ValueError(
                f"{train_path} split with {bench_dir}/results.json gives {len(data[name])} "
                f"{name} playlists, the benchmark had {recorded[name]}: pass its --train"
            )
    vocab = ItemVocab.load(bench_dir / "artifact" / CF_COMPONENT)
    kept, relevant, n_skipped = relevant_items(data["test"], vocab)
    if cfg.get("max_test_prompts"):
        kept, relevant = kept[: cfg["max_test_prompts"]], relevant[: cfg["max_test_prompts"]]
    prompts = [data["test"][i].prompt for i in kept]
    expected = recorded.get("test_prompts_evaluated")
    if expected is not None and expected != len(prompts):
        raise ValueError(f"{len(prompts)} test prompts re-created, the benchmark scored {expected}")
    return {
        "results": results,
        "kept": kept,
        "prompts": prompts,
        "relevant": relevant,
        "n_skipped": n_skipped,
        "validation": data["validation"],
        "train": data["train"],
    }


LATENT_YARDSTICKS = ("dense_biencoder",)  # the yardstick of the latent, when it ran


def benchmark_baselines(bench_dir: Path, kept: list[int]) -> dict[str, np.ndarray]:
    """Per-prompt Hits of :data:`LATENT_YARDSTICKS` from ``bench_dir/per_prompt.json``, whose
    prompts must be ``kept`` (the test playlists this run scores, in order); a system the
    benchmark did not run, or a file of other prompts, is left out with a log line."""
    path = bench_dir / "per_prompt.json"
    if not path.is_file():
        log(f"no {path}: latent-only is not compared with the benchmark's baselines")
        return {}
    data = json.loads(path.read_text())
    if [int(i) for i in data["prompt_index"]] != [int(i) for i in kept]:
        log(f"{path} scored other test prompts than this run: baselines left out")
        return {}
    return {
        name: np.asarray(data["systems"][name]["hits"], dtype=np.float64)
        for name in LATENT_YARDSTICKS
        if name in data["systems"]
    }


def build_parser() -> argparse.ArgumentParser:
    """``--benchmark-dir``, ``--train``, then one flag per field of :class:`DiffusionBenchConfig`."""
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench_diffusion",
        description="Train the diffusion head on a finished eval.benchmark folder (into "
        "DIR/diffusion_artifact, a copy of DIR/artifact) and add the latent, regressor and "
        "hybrid systems, negative-prompt and inversion curves; the fitted fusion goes to "
        "DIR/fusion.json.",
    )
    add_benchmark_source_flags(parser)
    # one flag per DiffusionBenchConfig field (text2tracks.config_flags, as every command)
    add_config_flags(parser, DiffusionBenchConfig, names={"budget_minutes": "--max-minutes"})
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    bench_dir, train_path = Path(args.pop("benchmark_dir")), args.pop("train")
    try:
        config = config_from_args(DiffusionBenchConfig, args)
    except ValueError as err:
        parser.error(str(err))
    if (
        not (bench_dir / "results.json").is_file()
        or not (bench_dir / "artifact" / SEQ2SEQ_COMPONENT).is_dir()
    ):
        parser.error(
            f"{bench_dir} is not a finished eval.benchmark folder (results.json, artifact/seq2seq)"
        )
    split = load_benchmark_split(bench_dir, train_path)
    baselines = benchmark_baselines(bench_dir, split["kept"])
    if split["results"]["config"].get("k", config.k) != config.k:
        log(f"note: the benchmark used k={split['results']['config']['k']}, this run k={config.k}")
    report = run_diffusion_benchmark(
        bench_dir / "artifact",
        train_path,
        bench_dir,
        split["prompts"],
        split["relevant"],
        split["validation"],
        split["train"],
        config=config,
        n_skipped=split["n_skipped"],
        baselines=baselines,
    )
    results = merge_into_results(bench_dir / "results.json", report)
    try:
        from eval.benchmark_outputs import markdown

        (bench_dir / "results.md").write_text(markdown(results, config.k))
    except (ImportError, KeyError) as err:  # the table is a convenience; results.json is the record
        log(f"results.md not rewritten: {err}")
    print(format_report(report, config.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
