"""The end-to-end benchmark: every system on the same split, one table.

    text2tracks evaluate --playlists PATH --test-playlists PATH --out DIR [--max-minutes M]
    python -m eval.benchmark ...     (the same; --train, --test, --budget-minutes still work)

``--playlists`` and ``--test-playlists`` take any supported playlist format (an MPD folder,
JSONL, Parquet). Without ``--test-playlists`` (or with the same path twice) a deterministic 10%
of the training playlists is held out, whole playlists, as the test set. Catalogue, CF vectors,
semantic IDs and every model see training playlists only; validation playlists (a further slice
of ``--playlists``) tune the baselines and drive the model's early validation.

Writes ``DIR/results.json``::

    {"systems": {NAME: {"hits@10", "recall@10", "ndcg@10", "mrr", "*_ci", "coverage@10",
                        "train_seconds", "latency_ms", ...}},
     "comparisons": {...}, "split": {...}, "ids": {...}, "curve": [...], "config": {...}}

and ``DIR/results.md`` (the same as a markdown table) and ``DIR/curve.png`` (validation Hits@10
against training time). The main model is named ``text2tracks``; ID-scheme ablations
(``--ablation-schemes``, default all four) are ``ids-random-short`` (random codes of the same
shape), ``ids-atomic-short`` (one token per track) and ``ids-content-short`` (content IDs: the
bytes of "artist - title", at most ``--content-max-bytes``, written with the byte tokenizer's own
byte tokens under the same trie constraint), trained for ``--ablation-minutes`` each, beside
``ids-semantic-short``, the semantic-ID model under the same short budget. Each reports
``decoding_steps_per_item`` (the fixed decoder steps: depth + EOS) and ``mean_id_tokens`` (the
tokens that carry information: depth + 1 for fixed-depth IDs; for content IDs the real bytes,
END, digit and EOS, what a decoder stopping at END would write). Any flag of
``python -m training.train_seq2seq`` (``--d-model``, ``--lr``, ``--targets-per-playlist``, ...)
is passed through to every model trained here.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval import baselines as baselines_mod
from eval.ablation_artifacts import (
    ABLATION_SCHEMES,
    DEFAULT_CONTENT_MAX_BYTES,
    ablation_artifact,
    ablation_schemes,
    content_stats_of,
    id_token_figures,
    strip_component,
    variant_artifact,
)
from eval.benchmark_flags import (
    BENCHMARK_BASELINES,
    add_ablation_flags,
    add_ids_flags,
    add_run_flags,
    add_scoring_flags,
    add_system_flags,
)
from eval.benchmark_outputs import markdown, per_prompt_json, plot_curves
from eval.hybrid_candidates import hybrid_views
from eval.metrics import evaluate_rankings, first_hit_ranks, paired_bootstrap_diff, relevant_items
from text2tracks.artifacts import (
    CATALOG_COMPONENT,
    CF_COMPONENT,
    SEQ2SEQ_COMPONENT,
    write_text_atomic,
)
from text2tracks.config_flags import command_parser

logger = logging.getLogger("eval.benchmark")

_BASELINE_ORDER = BENCHMARK_BASELINES

__all__ = [
    "ABLATION_SCHEMES",
    "DEFAULT_CONTENT_MAX_BYTES",
    "ablation_schemes",
    "add_parser",
    "build_parser",
    "id_token_figures",
    "main",
    "run",
]

# Kept importable from here under their old names (they moved to eval.ablation_artifacts and
# eval.benchmark_outputs in issue 11; tests/test_cli.py replaces _markdown).
_variant_artifact = variant_artifact
_strip_component = strip_component
_markdown = markdown


def _log(message: str) -> None:
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------ data


def load_split(args) -> dict[str, Any]:
    """Read playlists and split them exactly as build-ids will (same parameters, same hash)."""
    from semantic_ids.playlists import read_playlists, split_playlists

    same = args.test is None or Path(args.test).resolve() == Path(args.train).resolve()
    test_fraction = args.test_fraction if same else 0.0
    train_set = read_playlists(args.train)
    split = split_playlists(
        train_set.playlists,
        validation_fraction=args.validation_fraction,
        test_fraction=test_fraction,
        seed=args.split_seed,
    )
    test = split.test if same else read_playlists(args.test).playlists
    return {
        "train": split.train,
        "validation": split.validation,
        "test": test,
        "tracks": train_set.tracks,
        "test_fraction": test_fraction,
        "held_out_from_train": same,
    }


def _model_rankings(
    artifact: Path,
    prompts: list[str],
    vocab,
    k: int,
    num_beams: int,
    batch_size: int,
    diversity: float | None = None,
    mode: str = "generative",
) -> tuple[np.ndarray, float]:
    """Rank catalogue items with the trained model through the public API (in ``mode``);
    returns seconds."""
    from text2tracks.pipeline import Text2Tracks

    model = Text2Tracks.from_pretrained(artifact)
    started = time.perf_counter()
    recs = model.recommend(
        prompts, k=k, num_beams=num_beams, diversity=diversity, batch_size=batch_size, mode=mode
    )
    elapsed = time.perf_counter() - started
    index = {t: i for i, t in enumerate(vocab.item_ids)}
    ranked = np.array([[index[r.track_id] for r in row] for row in recs], dtype=np.int64)
    return ranked.reshape(len(prompts), k), elapsed


def _latency(
    artifact: Path,
    prompts: list[str],
    k: int,
    num_beams: int,
    repeats: int,
    diversity: float | None = None,
    mode: str = "generative",
) -> dict:
    """Median latency of one prompt (k=10) and prompts per second at batch 64."""
    from text2tracks.pipeline import Text2Tracks

    model = Text2Tracks.from_pretrained(artifact)
    if diversity is not None:
        model.diversity = diversity
    model.recommend(prompts[0], k=k, num_beams=num_beams, mode=mode)  # warm-up
    singles = []
    for prompt in prompts[:repeats]:
        started = time.perf_counter()
        model.recommend(prompt, k=k, num_beams=num_beams, mode=mode)
        singles.append(time.perf_counter() - started)
    batch = (prompts * (64 // max(1, len(prompts)) + 1))[:64]
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        model.recommend(batch, k=k, num_beams=num_beams, batch_size=64, mode=mode)
        rates.append(len(batch) / (time.perf_counter() - started))
    return {
        "latency_ms_one_prompt": 1000 * statistics.median(singles),
        "prompts_per_s_batch64": statistics.median(rates),
    }


# ------------------------------------------------------------------------------------ flags


EPILOG = """examples:
  text2tracks evaluate --playlists path/to/mpd --out runs/bench --max-minutes 60
  text2tracks evaluate --playlists train.jsonl --test-playlists test.jsonl --out runs/bench
  text2tracks evaluate --playlists path/to/mpd --out runs/ablation --skip-main --baselines "" \\
      --ablation-minutes 11 --ablation-schemes semantic,random,atomic,content
  text2tracks evaluate --playlists path/to/mpd --out runs/bench --d-model 256 --lr 1e-3
      (flags of `text2tracks train` go to every model trained here)
"""


def build_parser(subparsers=None) -> argparse.ArgumentParser:
    """``text2tracks evaluate`` (``subparsers`` given) or ``python -m eval.benchmark``.

    The ``dest`` names (``train``, ``test``, ``budget_minutes``, ``beams``) are those :func:`run`
    reads and ``results.json`` records; the flags are spelled as every command spells them, the
    old spellings (``--train``, ``--test``, ``--budget-minutes``, ``--beams``) hidden aliases.
    """
    parser = command_parser(
        subparsers,
        "evaluate",
        prog="python -m eval.benchmark",
        help="every system on one split: results.json, results.md, curve.png",
        description="Run the whole pipeline and every baseline on one split; write results.json "
        "and results.md. Unknown flags go to training.train_seq2seq.",
        epilog=EPILOG,
    )
    add_run_flags(parser)
    add_ablation_flags(parser)
    add_system_flags(parser)
    add_ids_flags(parser)
    add_scoring_flags(parser)
    parser.add_argument(
        "--reuse-ids",
        action="store_true",
        help="keep DIR/artifact's IDs if present (skip build-ids)",
    )
    parser.set_defaults(func=_run_from_args)
    return parser


add_parser = build_parser


def _train_config(train_args: list[str], artifact: Path, playlists: str, minutes: float):
    from training.train_seq2seq import build_parser as train_parser
    from training.train_seq2seq import config_from_args

    argv = [
        "--artifact",
        str(artifact),
        "--playlists",
        playlists,
        "--max-minutes",
        str(minutes),
        *train_args,
    ]
    return config_from_args(train_parser().parse_args(argv))


# ------------------------------------------------------------------------------------ run


@dataclass
class _Evaluation:
    """The test prompts every system is scored on, and the scores so far.

    ``results`` is what ``results.json`` holds (rewritten after each system); ``per_prompt``
    and ``rank_depth`` feed ``per_prompt.json``.
    """

    args: argparse.Namespace
    train_args: list[str]
    out: Path
    results: dict[str, Any]
    vocab: Any
    prompts: list[str]
    kept: list[int]
    relevant: list
    n_skipped: int
    per_prompt: dict[str, dict] = field(default_factory=dict)
    rank_depth: dict[str, int] = field(default_factory=dict)
    fitted: dict[str, Any] = field(default_factory=dict)  # the fitted baselines, by name

    @property
    def model_beams(self) -> int:
        """The beam width ``recommend(k=k)`` would search with."""
        from text2tracks.generative import beam_width

        return beam_width(self.args.beams, None, self.args.k)

    def record(self, name: str, ranked: np.ndarray, extra: dict) -> None:
        """Score one system's rankings ``(n_prompts, depth)``; write ``results.json``."""
        k = self.args.k
        metrics = evaluate_rankings(
            ranked,
            self.relevant,
            k=k,
            n_items=len(self.vocab),
            n_bootstrap=self.args.n_bootstrap,
            n_skipped=self.n_skipped,
            return_per_prompt=True,
        )
        self.per_prompt[name] = metrics.pop("per_prompt")
        self.per_prompt[name]["first_hit_rank"] = first_hit_ranks(ranked, self.relevant)
        self.rank_depth[name] = int(ranked.shape[1])
        self.results["systems"][name] = {**metrics, **extra}
        _log(f"{name}: hits@{k} {metrics[f'hits@{k}']:.4f} {extra}")
        self.write_results()

    def write_results(self) -> None:
        write_text_atomic(
            self.out / "results.json", json.dumps(self.results, indent=2, default=str)
        )

    def rankings(
        self, artifact: Path, diversity: float | None, mode: str = "generative"
    ) -> tuple[np.ndarray, float]:
        """The trained model's rankings of the test prompts, as deep as its beam (its top k is
        then the answer at k); in cf-blend mode ``--k`` deep, the blend's answer at k (the
        blend reads a fit per depth, so a deeper answer's head is not it); seconds."""
        beams = self.model_beams
        depth = beams if mode == "generative" else self.args.k
        return _model_rankings(
            artifact,
            self.prompts,
            self.vocab,
            depth,
            beams,
            self.args.eval_batch_size,
            diversity=diversity,
            mode=mode,
        )

    def train_and_score(self, name: str, art: Path, minutes: float, extra_args=()) -> dict:
        """Train a model into ``art`` for ``minutes`` (training flags: the run's, then
        ``extra_args``), score it as ``name``; its summary."""
        from training.train_seq2seq import train

        config = _train_config([*self.train_args, *extra_args], art, self.args.train, minutes)
        summary = train(config)
        extra = {"train_seconds": summary.get("elapsed_s"), "steps": summary.get("steps")}
        if "members" in summary:
            extra["member_steps"] = [m.get("steps") for m in summary["members"]]
        self.score(name, art, extra)
        return summary

    def score(self, name: str, art: Path, extra: dict, mode: str = "generative") -> None:
        """Score the model in ``art`` as ``name`` (in ``mode``): its rankings, ID figures and
        batched latency join ``extra`` in the results."""
        ranked, seconds = self.rankings(art, self.args.diversity, mode)
        extra = {
            **extra,
            **id_token_figures(art),
            "latency_ms_per_prompt_batched": 1000 * seconds / max(1, len(self.prompts)),
        }
        self.record(name, ranked, extra)


def run(args: argparse.Namespace, train_args: list[str]) -> dict[str, Any]:
    """Every system on one split; writes and returns ``results.json`` (see the module doc)."""
    from semantic_ids.cf import CFModel
    from semantic_ids.interactions import ItemVocab

    args.hybrid_views = hybrid_views(args.hybrid_views, args.baselines)  # checked before training
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / "artifact"
    results: dict[str, Any] = {
        "systems": {},
        "comparisons": {},
        "config": {**{k: v for k, v in vars(args).items()}, "train_args": train_args},
    }
    data = load_split(args)
    results["split"] = {name: len(data[name]) for name in ("train", "validation", "test")}
    results["split"]["held_out_from_train"] = data["held_out_from_train"]
    _log(f"split: {results['split']}")

    _build_ids(args, artifact, data, results)  # 1. semantic IDs from the training playlists only
    vocab = ItemVocab.load(artifact / CF_COMPONENT)
    cf = CFModel.load(artifact / CF_COMPONENT)
    evaluation = _test_prompts(args, train_args, out, results, vocab, data["test"])
    _run_baselines(evaluation, data, cf)  # 2. baselines, same split
    if not args.skip_main:
        _run_main_model(evaluation, artifact)  # 3. the main model under the full budget
        if args.hybrid_views:  # 3b. its beam's candidates re-ranked with the baselines'
            from eval.hybrid_candidates import run_hybrid

            run_hybrid(evaluation, artifact, data["validation"], evaluation.fitted)
    if not args.no_ablations:
        _run_ablation(evaluation, artifact)  # 4. ID schemes under a shorter, equal budget
    _compare_with_best_baseline(evaluation)  # 5. paired comparisons against the best baseline
    _write_outputs(evaluation)
    return results


def _build_ids(args, artifact: Path, data: dict, results: dict) -> None:
    """build-ids into ``artifact`` (unless ``--reuse-ids`` finds IDs there); its figures and
    time go into ``results``."""
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids

    started = time.perf_counter()
    if not (args.reuse_ids and (artifact / CATALOG_COMPONENT).is_dir()):
        ids_config = BuildIDsConfig(
            min_count=args.min_count,
            n_levels=args.levels,
            codebook_size=args.codebook_size,
            title_rows=args.title_rows,
            validation_fraction=args.validation_fraction,
            test_fraction=data["test_fraction"],
            split_seed=args.split_seed,
        )
        built = run_build_ids(args.train, artifact, ids_config, force=True, log=_log)
        results["ids"] = {"stats": built.get("stats"), "timings": built.get("timings")}
    results["ids_seconds"] = time.perf_counter() - started


def _test_prompts(args, train_args, out: Path, results: dict, vocab, test) -> _Evaluation:
    """The test playlists with a catalogue track (at most ``--max-test-prompts``), counted in
    ``results["split"]``."""
    kept, relevant, n_skipped = relevant_items(test, vocab)
    if args.max_test_prompts:
        kept, relevant = kept[: args.max_test_prompts], relevant[: args.max_test_prompts]
    prompts = [test[i].prompt for i in kept]
    results["split"]["test_prompts_evaluated"] = len(prompts)
    results["split"]["test_prompts_skipped_no_catalogue_track"] = n_skipped
    _log(f"catalogue {len(vocab)} items; {len(prompts)} test prompts ({n_skipped} skipped)")
    return _Evaluation(args, train_args, out, results, vocab, prompts, kept, relevant, n_skipped)


def _run_baselines(evaluation: _Evaluation, data: dict, cf) -> None:
    """Fit and score each of ``--baselines`` (title kNN tuned on the validation playlists)."""
    args, prompts, vocab = evaluation.args, evaluation.prompts, evaluation.vocab
    # Rankings deeper than k feed Hits@K against K (report.html); the metrics at k read the first
    # k columns, which are the k-deep answer (tests: test_top_k_is_the_head_of_a_deeper_ranking,
    # test_top_k_at_a_fixed_beam_width_is_the_head_of_the_full_beam).
    depth = max(args.k, getattr(args, "hits_curve_k", args.k))
    for name in [b for b in args.baselines.split(",") if b]:
        started = time.perf_counter()
        if name == "title_knn":
            params, _ = baselines_mod.tune_title_knn(
                data["train"], data["validation"], vocab, k=args.k
            )
            model = baselines_mod.make_baseline(name, **params)
        else:
            params, model = {}, baselines_mod.make_baseline(name)
        model.fit(data["train"], vocab, tracks=data["tracks"], item_factors=cf.item_factors)
        evaluation.fitted[name] = model
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        ranked = model.recommend(prompts, k=depth)
        rec_s = time.perf_counter() - started
        evaluation.record(
            name,
            ranked,
            {
                "train_seconds": fit_s,
                "params": params,
                "latency_ms_per_prompt_batched": 1000 * rec_s / max(1, len(prompts)),
            },
        )


def _run_main_model(evaluation: _Evaluation, artifact: Path) -> None:
    """Train and score ``text2tracks``, its latency, and (unless the diversity is 0) its beam's
    own order as ``text2tracks-beam-order``; its curve and summary go into the results."""
    args, results = evaluation.args, evaluation.results
    if args.reuse_model:
        evaluation.score("text2tracks", artifact, {"reused": True, "mode": args.mode}, args.mode)
        summary = {"reused": str(artifact)}
    else:
        summary = evaluation.train_and_score("text2tracks", artifact, args.budget_minutes)
    results["systems"]["text2tracks"].update(
        _latency(
            artifact,
            evaluation.prompts,
            args.k,
            args.beams,
            args.latency_repeats,
            args.diversity,
            args.mode,
        )
    )
    if args.diversity != 0:  # the same model, its beam's own order: what diversity adds
        ranked, _ = evaluation.rankings(artifact, diversity=0.0)
        evaluation.record("text2tracks-beam-order", ranked, {"diversity": 0.0})
    results["curve"] = _read_curve(artifact / SEQ2SEQ_COMPONENT)
    results["training_summary"] = summary


_ABLATION_TRAIN_ARGS = ("--no-seed-prior-prompt",)


def _run_ablation(evaluation: _Evaluation, artifact: Path) -> None:
    """Train and score ``ids-SCHEME-short`` for each ID scheme, each for the ablation budget."""
    args = evaluation.args
    minutes = args.ablation_minutes or args.budget_minutes / 6
    for scheme in ablation_schemes(getattr(args, "ablation_schemes", ABLATION_SCHEMES)):
        art = ablation_artifact(
            artifact,
            evaluation.out / f"artifact-{scheme}",
            scheme,
            seed=args.split_seed,
            content_max_bytes=getattr(args, "content_max_bytes", DEFAULT_CONTENT_MAX_BYTES),
        )
        # the IDs alone: no prompt prior, whose dense CF score would reach any ID scheme
        evaluation.train_and_score(f"ids-{scheme}-short", art, minutes, _ABLATION_TRAIN_ARGS)
        system = evaluation.results["systems"][f"ids-{scheme}-short"]
        system["curve"] = _read_curve(art / SEQ2SEQ_COMPONENT)
        if scheme == "content":
            system["content_stats"] = content_stats_of(art)


def _compare_with_best_baseline(evaluation: _Evaluation) -> None:
    """``results["comparisons"]``: each other system against the baseline with the best Hits@k
    (paired bootstrap over the test prompts)."""
    systems, k = evaluation.results["systems"], evaluation.args.k
    base_names = [n for n in systems if n in _BASELINE_ORDER]
    if not base_names:
        return
    best = max(base_names, key=lambda n: systems[n][f"hits@{k}"])
    per_prompt = evaluation.per_prompt
    for name in systems:
        if name in base_names:
            continue
        diff = paired_bootstrap_diff(
            per_prompt[name]["hits"],
            per_prompt[best]["hits"],
            n_bootstrap=evaluation.args.n_bootstrap,
        )
        best_hits = systems[best][f"hits@{k}"]
        diff["relative"] = systems[name][f"hits@{k}"] / best_hits - 1 if best_hits else None
        evaluation.results["comparisons"][f"{name} vs {best}"] = diff


def _write_outputs(evaluation: _Evaluation) -> None:
    """results.json, per_prompt.json, results.md, curve.png and report.html."""
    from eval.report import write_report

    out = evaluation.out
    evaluation.write_results()
    # per-prompt hits and NDCG of every system, so that runs on the same split can be compared
    # pairwise later (eval.metrics.paired_bootstrap_diff)
    write_text_atomic(
        out / "per_prompt.json",
        per_prompt_json(evaluation.kept, evaluation.rank_depth, evaluation.per_prompt),
    )
    write_text_atomic(out / "results.md", _markdown(evaluation.results, evaluation.args.k))
    plot_curves(evaluation.results, out / "curve.png", _BASELINE_ORDER)
    write_report(out)


def _read_curve(seq2seq_dir: Path) -> list[dict]:
    for name in ("curve.json", "training_log.json"):
        path = seq2seq_dir / name
        if path.is_file():
            data = json.loads(path.read_text())
            return data if isinstance(data, list) else data.get("points", [])
    return []


def _plot_curves(results: dict, path: Path) -> None:
    plot_curves(results, path, _BASELINE_ORDER)


def _run_from_args(args: argparse.Namespace, train_args: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.mode != "generative" and not args.reuse_model:
        print(
            f"evaluate: error: --mode {args.mode} scores a fitted artifact: pass --reuse-model "
            "(a model trained here has no seed blend; fit one with text2tracks fit-seed-blend)",
            file=sys.stderr,
        )
        return 2
    results = run(args, list(train_args or []))
    print(_markdown(results, args.k))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, train_args = parser.parse_known_args(argv)
    vars(args).pop("func", None)  # results.json records the flags, not the handler
    return _run_from_args(args, train_args)


if __name__ == "__main__":
    sys.exit(main())
