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
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from eval import baselines as baselines_mod
from eval.metrics import (
    evaluate_rankings,
    first_hit_ranks,
    format_table,
    paired_bootstrap_diff,
    relevant_items,
)
from text2tracks.artifacts import write_text_atomic
from text2tracks.config_flags import add_flag, command_parser

logger = logging.getLogger("eval.benchmark")

_BASELINE_ORDER = ("popularity", "exact_title", "title_knn", "bm25", "dense_biencoder")
ABLATION_SCHEMES = ("semantic", "random", "atomic", "content")
DEFAULT_CONTENT_MAX_BYTES = 48


def _log(message: str) -> None:
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ------------------------------------------------------------------------------------ data


def _load_split(args) -> dict[str, Any]:
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
) -> tuple[np.ndarray, float]:
    """Rank catalogue items with the trained model through the public API; returns seconds."""
    from text2tracks.pipeline import Text2Tracks

    model = Text2Tracks.from_pretrained(artifact)
    started = time.perf_counter()
    recs = model.recommend(
        prompts, k=k, num_beams=num_beams, diversity=diversity, batch_size=batch_size
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
) -> dict:
    """Median latency of one prompt (k=10) and prompts per second at batch 64."""
    from text2tracks.pipeline import Text2Tracks

    model = Text2Tracks.from_pretrained(artifact)
    if diversity is not None:
        model.diversity = diversity
    model.recommend(prompts[0], k=k, num_beams=num_beams)  # warm-up
    singles = []
    for prompt in prompts[:repeats]:
        started = time.perf_counter()
        model.recommend(prompt, k=k, num_beams=num_beams)
        singles.append(time.perf_counter() - started)
    batch = (prompts * (64 // max(1, len(prompts)) + 1))[:64]
    rates = []
    for _ in range(3):
        started = time.perf_counter()
        model.recommend(batch, k=k, num_beams=num_beams, batch_size=64)
        rates.append(len(batch) / (time.perf_counter() - started))
    return {
        "latency_ms_one_prompt": 1000 * statistics.median(singles),
        "prompts_per_s_batch64": statistics.median(rates),
    }


# ------------------------------------------------------------------------------------ ablations


def ablation_schemes(value) -> tuple[str, ...]:
    """``"semantic,random,..."`` (or a sequence) -> validated tuple of ID schemes, in order."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    names = list(dict.fromkeys(n for n in names if n))
    unknown = [n for n in names if n not in ABLATION_SCHEMES]
    if unknown:
        raise ValueError(f"unknown ID scheme(s) {unknown}; choose from {list(ABLATION_SCHEMES)}")
    return tuple(names)


def _argparse_schemes(value: str) -> tuple[str, ...]:
    try:
        return ablation_schemes(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _variant_artifact(
    base: Path,
    out: Path,
    scheme: str,
    seed: int,
    content_max_bytes: int = DEFAULT_CONTENT_MAX_BYTES,
) -> Path:
    """A copy of ``base`` whose catalogue uses another ID scheme (same items, same CF).

    ``scheme``: ``"random"`` (random codes of the same shape), ``"atomic"`` (one token per
    track) or ``"content"`` (content IDs from the artifact's ``semantic_ids/tracks.json``:
    "artist - title" cut to ``content_max_bytes`` UTF-8 bytes; their figures go into the
    manifest's ``semantic_ids`` entry as ``content_stats``).
    """
    from semantic_ids.catalog import SemanticIDCatalog
    from text2tracks.artifacts import read_json, write_json_atomic

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(
        base, out, ignore=shutil.ignore_patterns("seq2seq", "diffusion", ".checkpoints")
    )
    catalog_dir = out / "semantic_ids" / "catalog"
    catalog = SemanticIDCatalog.load(catalog_dir)
    n_items = len(catalog.item_ids)
    if scheme == "random":
        # Same shape as the semantic IDs: one code per residual level, drawn uniformly, then the
        # collision digit ordered by popularity like the real catalogue.
        rng = np.random.default_rng(seed)
        n_levels = catalog.depth - 1
        sizes = catalog.level_sizes[:n_levels]
        codes = np.stack([rng.integers(0, s, n_items) for s in sizes], axis=1)
        popularity = np.arange(n_items, 0, -1)  # catalogue items are ordered by count
        variant = SemanticIDCatalog.build(catalog.item_ids, codes, popularity, list(sizes))
    elif scheme == "atomic":
        variant = SemanticIDCatalog(catalog.item_ids, np.arange(n_items)[:, None], (n_items,))
    elif scheme == "content":
        from semantic_ids.content_ids import content_catalog
        from semantic_ids.interactions import ItemVocab
        from text2tracks.pipeline import _read_track_metadata

        metadata = _read_track_metadata(out / "semantic_ids")
        meta = [metadata.get(t, (None, None)) for t in catalog.item_ids]
        vocab = ItemVocab.load(out / "cf")
        if tuple(vocab.item_ids) != tuple(catalog.item_ids):
            raise ValueError(f"{base}: the catalogue and the CF vocabulary list different items")
        variant, content_stats = content_catalog(
            catalog.item_ids,
            [m[0] for m in meta],
            [m[1] for m in meta],
            vocab.counts,
            max_bytes=content_max_bytes,
        )
        content_stats["share_without_metadata"] = float(
            np.mean([m[0] is None and m[1] is None for m in meta])
        )
    else:
        raise ValueError(f"unknown ID scheme {scheme!r}; expected 'random', 'atomic' or 'content'")
    shutil.rmtree(catalog_dir)
    variant.save(catalog_dir)
    manifest_path = out / "text2tracks.json"
    manifest = read_json(manifest_path, "manifest")
    manifest["components"].pop("seq2seq", None)
    manifest["components"].pop("diffusion", None)
    entry = manifest["components"].setdefault("semantic_ids", {})
    entry.update(
        scheme=scheme,
        depth=variant.depth,
        level_sizes=list(variant.level_sizes),
        n_items=len(variant),
    )
    if scheme == "content":
        entry["content_stats"] = content_stats
    write_json_atomic(manifest_path, manifest)
    return out


def id_token_figures(art: Path) -> dict:
    """``decoding_steps_per_item`` (depth + EOS) and ``mean_id_tokens`` of an artifact's IDs."""
    from semantic_ids.catalog import SemanticIDCatalog
    from semantic_ids.content_ids import id_token_counts

    catalog = SemanticIDCatalog.load(art / "semantic_ids" / "catalog")
    steps = catalog.depth + 1
    mean = (
        float(id_token_counts(catalog.sid_codes).mean())
        if catalog.scheme == "bytes"
        else float(steps)
    )
    return {
        "decoding_steps_per_item": steps,
        "mean_id_tokens": mean,
        "token_scheme": catalog.scheme,
    }


# ------------------------------------------------------------------------------------ main


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
    add_flag(
        parser,
        "--playlists",
        dest="train",
        aliases=("--train",),
        required=True,
        help="training playlists (MPD folder, JSONL, Parquet)",
    )
    add_flag(
        parser,
        "--test-playlists",
        dest="test",
        aliases=("--test",),
        default=None,
        help="test playlists; omitted: a deterministic --test-fraction of --playlists",
    )
    parser.add_argument("--out", required=True, help="run folder (results.json, results.md)")
    add_flag(
        parser,
        "--max-minutes",
        dest="budget_minutes",
        type=float,
        default=60.0,
        help="training time of the main model (default 60)",
    )
    parser.add_argument(
        "--ablation-minutes",
        type=float,
        default=None,
        help="training time of each ID-scheme ablation (default budget / 6)",
    )
    parser.add_argument("--no-ablations", action="store_true", help="skip the ID-scheme ablation")
    parser.add_argument(
        "--ablation-schemes",
        type=_argparse_schemes,
        default=",".join(ABLATION_SCHEMES),
        help="comma-separated ID schemes of the ablation, trained in this order "
        f"(default {','.join(ABLATION_SCHEMES)})",
    )
    parser.add_argument(
        "--content-max-bytes",
        type=int,
        default=DEFAULT_CONTENT_MAX_BYTES,
        help="content IDs: UTF-8 bytes of 'artist - title' kept "
        f"(default {DEFAULT_CONTENT_MAX_BYTES})",
    )
    parser.add_argument(
        "--skip-main",
        action="store_true",
        help="do not train the main model (e.g. run the ablation in a second "
        "process, one core each)",
    )
    parser.add_argument(
        "--baselines",
        default=",".join(_BASELINE_ORDER),
        help="comma-separated baselines to run (empty for none)",
    )
    parser.add_argument(
        "--min-count", type=int, default=2, help="catalogue: min playlists per track"
    )
    parser.add_argument("--levels", type=int, default=3, help="residual k-means levels")
    parser.add_argument("--codebook-size", type=int, default=256, help="codes per level")
    parser.add_argument(
        "--title-rows",
        type=float,
        default=0.0,
        help="build-ids: weight of title-term rows in a joint CF embedding",
    )
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    add_flag(
        parser,
        "--num-beams",
        dest="beams",
        type=int,
        default=None,
        help="beam width at test time (default: the API's, text2tracks.modeling.DEFAULT_NUM_BEAMS)",
    )
    parser.add_argument(
        "--diversity",
        type=float,
        default=None,
        help="diversity penalty at test time (default: the API's, "
        "text2tracks.modeling.DEFAULT_DIVERSITY); unless 0 the beam's own "
        "order is scored too, as text2tracks-beam-order",
    )
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--max-test-prompts", type=int, default=0, help="0 = all test prompts")
    parser.add_argument("--latency-repeats", type=int, default=20)
    parser.add_argument("--n-bootstrap", type=int, default=1000)
    parser.add_argument(
        "--hits-curve-k",
        type=int,
        default=100,
        help="rank the baselines this deep (the model: as deep as its beam) for "
        "Hits@K against K in report.html; metrics at --k use the first k",
    )
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


def run(args: argparse.Namespace, train_args: list[str]) -> dict[str, Any]:
    from semantic_ids.cf import CFModel
    from semantic_ids.interactions import ItemVocab
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids
    from training.train_seq2seq import train

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    artifact = out / "artifact"
    results: dict[str, Any] = {
        "systems": {},
        "comparisons": {},
        "config": {**{k: v for k, v in vars(args).items()}, "train_args": train_args},
    }
    k = args.k

    data = _load_split(args)
    results["split"] = {name: len(data[name]) for name in ("train", "validation", "test")}
    results["split"]["held_out_from_train"] = data["held_out_from_train"]
    _log(f"split: {results['split']}")

    # 1. Semantic IDs from the training playlists only.
    started = time.perf_counter()
    if not (args.reuse_ids and (artifact / "semantic_ids").is_dir()):
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
    vocab = ItemVocab.load(artifact / "cf")
    cf = CFModel.load(artifact / "cf")

    kept, relevant, n_skipped = relevant_items(data["test"], vocab)
    if args.max_test_prompts:
        kept, relevant = kept[: args.max_test_prompts], relevant[: args.max_test_prompts]
    prompts = [data["test"][i].prompt for i in kept]
    results["split"]["test_prompts_evaluated"] = len(prompts)
    results["split"]["test_prompts_skipped_no_catalogue_track"] = n_skipped
    _log(f"catalogue {len(vocab)} items; {len(prompts)} test prompts ({n_skipped} skipped)")
    per_prompt: dict[str, dict] = {}
    rank_depth: dict[str, int] = {}
    # Rankings deeper than k feed Hits@K against K (report.html); the metrics at k read the first
    # k columns, which are the k-deep answer (tests: test_top_k_is_the_head_of_a_deeper_ranking,
    # test_top_k_at_a_fixed_beam_width_is_the_head_of_the_full_beam).
    baseline_depth = max(k, getattr(args, "hits_curve_k", k))
    from text2tracks.generative import beam_width

    model_beams = beam_width(args.beams, None, k)  # what recommend(k=k) would search with

    def record(name: str, ranked: np.ndarray, extra: dict) -> None:
        metrics = evaluate_rankings(
            ranked,
            relevant,
            k=k,
            n_items=len(vocab),
            n_bootstrap=args.n_bootstrap,
            n_skipped=n_skipped,
            return_per_prompt=True,
        )
        per_prompt[name] = metrics.pop("per_prompt")
        per_prompt[name]["first_hit_rank"] = first_hit_ranks(ranked, relevant)
        rank_depth[name] = int(ranked.shape[1])
        results["systems"][name] = {**metrics, **extra}
        _log(f"{name}: hits@{k} {metrics[f'hits@{k}']:.4f} {extra}")
        write_text_atomic(out / "results.json", json.dumps(results, indent=2, default=str))

    # 2. Baselines, same split.
    for name in [b for b in args.baselines.split(",") if b]:
        started = time.perf_counter()
        if name == "title_knn":
            params, _ = baselines_mod.tune_title_knn(data["train"], data["validation"], vocab, k=k)
            model = baselines_mod.make_baseline(name, **params)
        else:
            params, model = {}, baselines_mod.make_baseline(name)
        model.fit(data["train"], vocab, tracks=data["tracks"], item_factors=cf.item_factors)
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        ranked = model.recommend(prompts, k=baseline_depth)
        rec_s = time.perf_counter() - started
        record(
            name,
            ranked,
            {
                "train_seconds": fit_s,
                "params": params,
                "latency_ms_per_prompt_batched": 1000 * rec_s / max(1, len(prompts)),
            },
        )

    # 3. The main model under the full budget.
    def train_and_score(name: str, art: Path, minutes: float) -> dict:
        config = _train_config(train_args, art, args.train, minutes)
        summary = train(config)
        ranked, seconds = _model_rankings(
            art, prompts, vocab, model_beams, model_beams, args.eval_batch_size, args.diversity
        )
        extra = {
            "train_seconds": summary.get("elapsed_s"),
            "steps": summary.get("steps"),
            **id_token_figures(art),
            "latency_ms_per_prompt_batched": 1000 * seconds / max(1, len(prompts)),
        }
        record(name, ranked, extra)
        return summary

    if not args.skip_main:
        summary = train_and_score("text2tracks", artifact, args.budget_minutes)
        results["systems"]["text2tracks"].update(
            _latency(artifact, prompts, k, args.beams, args.latency_repeats, args.diversity)
        )
        if args.diversity != 0:  # the same model, its beam's own order: what diversity adds
            ranked, _ = _model_rankings(
                artifact,
                prompts,
                vocab,
                model_beams,
                model_beams,
                args.eval_batch_size,
                diversity=0.0,
            )
            record("text2tracks-beam-order", ranked, {"diversity": 0.0})
        results["curve"] = _read_curve(artifact / "seq2seq")
        results["training_summary"] = summary

    # 4. ID-scheme ablation under a shorter, equal budget.
    if not args.no_ablations:
        minutes = args.ablation_minutes or args.budget_minutes / 6
        for scheme in ablation_schemes(getattr(args, "ablation_schemes", ABLATION_SCHEMES)):
            art = out / f"artifact-{scheme}"
            if scheme == "semantic":
                if art.exists():
                    shutil.rmtree(art)
                shutil.copytree(
                    artifact,
                    art,
                    ignore=shutil.ignore_patterns("seq2seq", "diffusion", ".checkpoints"),
                )
                _strip_component(art, "seq2seq")
            else:
                _variant_artifact(
                    artifact,
                    art,
                    scheme,
                    seed=args.split_seed,
                    content_max_bytes=getattr(args, "content_max_bytes", DEFAULT_CONTENT_MAX_BYTES),
                )
            train_and_score(f"ids-{scheme}-short", art, minutes)
            system = results["systems"][f"ids-{scheme}-short"]
            system["curve"] = _read_curve(art / "seq2seq")
            if scheme == "content":
                from text2tracks.artifacts import read_json

                manifest = read_json(art / "text2tracks.json", "manifest")
                system["content_stats"] = manifest["components"]["semantic_ids"].get(
                    "content_stats"
                )

    # 5. Paired comparisons against the best baseline.
    base_names = [n for n in results["systems"] if n in _BASELINE_ORDER]
    if base_names:
        best = max(base_names, key=lambda n: results["systems"][n][f"hits@{k}"])
        for name in results["systems"]:
            if name in base_names:
                continue
            diff = paired_bootstrap_diff(
                per_prompt[name]["hits"], per_prompt[best]["hits"], n_bootstrap=args.n_bootstrap
            )
            best_hits = results["systems"][best][f"hits@{k}"]
            diff["relative"] = (
                results["systems"][name][f"hits@{k}"] / best_hits - 1 if best_hits else None
            )
            results["comparisons"][f"{name} vs {best}"] = diff

    write_text_atomic(out / "results.json", json.dumps(results, indent=2, default=str))
    # per-prompt hits and NDCG of every system, so that runs on the same split can be compared
    # pairwise later (eval.metrics.paired_bootstrap_diff)
    write_text_atomic(
        out / "per_prompt.json",
        json.dumps(
            {
                "prompt_index": [int(i) for i in kept],
                "rank_depth": rank_depth,
                "systems": {
                    name: {
                        **{
                            m: [float(x) for x in v]
                            for m, v in values.items()
                            if m in ("hits", "ndcg")
                        },
                        "first_hit_rank": [int(x) for x in values["first_hit_rank"]],
                    }
                    for name, values in per_prompt.items()
                },
            }
        ),
    )
    write_text_atomic(out / "results.md", _markdown(results, k))
    _plot_curves(results, out / "curve.png")
    from eval.report import write_report

    write_report(out)
    return results


def _strip_component(art: Path, name: str) -> None:
    from text2tracks.artifacts import read_json, write_json_atomic

    manifest = read_json(art / "text2tracks.json", "manifest")
    manifest["components"].pop(name, None)
    write_json_atomic(art / "text2tracks.json", manifest)


def _read_curve(seq2seq_dir: Path) -> list[dict]:
    for name in ("curve.json", "training_log.json"):
        path = seq2seq_dir / name
        if path.is_file():
            data = json.loads(path.read_text())
            return data if isinstance(data, list) else data.get("points", [])
    return []


def _markdown(results: dict, k: int) -> str:
    columns = [f"hits@{k}", f"recall@{k}", f"ndcg@{k}", "mrr", f"coverage@{k}"]
    lines = [
        "# Benchmark",
        "",
        f"split: {results['split']}",
        "",
        format_table(results["systems"], columns=columns),
        "",
        "| system | train s | decoding steps/item | mean ID tokens | latency ms/prompt (batched) |",
        "|---|---|---|---|---|",
    ]
    for name, m in results["systems"].items():
        mean_tokens = m.get("mean_id_tokens")
        lines.append(
            f"| {name} | {m.get('train_seconds') or 0:.0f} | "
            f"{m.get('decoding_steps_per_item', '-')} | "
            f"{'-' if mean_tokens is None else f'{mean_tokens:.1f}'} | "
            f"{m.get('latency_ms_per_prompt_batched', 0):.2f} |"
        )
    main = results["systems"].get("text2tracks", {})
    if "latency_ms_one_prompt" in main:
        lines += [
            "",
            f"text2tracks: one prompt (k={k}) {main['latency_ms_one_prompt']:.1f} ms; "
            f"{main['prompts_per_s_batch64']:.1f} prompts/s at batch 64",
        ]
    if results["comparisons"]:
        lines += ["", "| comparison | Hits diff | 95% CI | relative | p |", "|---|---|---|---|---|"]
        for name, c in results["comparisons"].items():
            rel = f"{100 * c['relative']:+.1f}%" if c.get("relative") is not None else "-"
            lines.append(
                f"| {name} | {c['diff']:+.4f} | [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}] "
                f"| {rel} | {c['p_value']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def _plot_curves(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    curves = {"text2tracks": results.get("curve", [])}
    curves.update({n: m.get("curve", []) for n, m in results["systems"].items() if "curve" in m})
    for name, curve in curves.items():
        key = "val_hits@10"
        points = [
            (r["elapsed_s"] / 60, r[key])
            for r in curve
            if r.get(key) is not None and r.get("elapsed_s") is not None
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=name)
    for name in _BASELINE_ORDER:
        if name in results["systems"]:
            ax.axhline(results["systems"][name]["hits@10"], linestyle=":", linewidth=1)
            ax.text(
                0.99,
                results["systems"][name]["hits@10"],
                name,
                fontsize=7,
                va="bottom",
                ha="right",
                transform=ax.get_yaxis_transform(),
            )
    ax.set_xlabel("training minutes")
    ax.set_ylabel("validation Hits@10 (baselines: test)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _run_from_args(args: argparse.Namespace, train_args: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
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
