"""The flags of ``text2tracks evaluate`` (``python -m eval.benchmark``), group by group.

:func:`eval.benchmark.build_parser` adds the groups in this order (the order of ``--help``):
the run (playlists, folder, budget), the ID-scheme ablation, which systems run, build-ids and
the split, and how the test prompts are scored. The ``dest`` names are those
:func:`eval.benchmark.run` reads and ``results.json`` records.
"""

from __future__ import annotations

import argparse

from eval.ablation_artifacts import ABLATION_SCHEMES, DEFAULT_CONTENT_MAX_BYTES, ablation_schemes
from text2tracks.config_flags import add_flag

# the baselines the benchmark knows, in the order it runs them and ranks them against the models
BENCHMARK_BASELINES = ("popularity", "exact_title", "title_knn", "bm25", "dense_biencoder")


def argparse_schemes(value: str) -> tuple[str, ...]:
    """:func:`~eval.ablation_artifacts.ablation_schemes` as an argparse ``type``."""
    try:
        return ablation_schemes(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    """The playlists, the run folder and the main model's training time."""
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


def add_ablation_flags(parser: argparse.ArgumentParser) -> None:
    """The ID-scheme ablation: its budget, its schemes, the content IDs' length."""
    parser.add_argument(
        "--ablation-minutes",
        type=float,
        default=None,
        help="training time of each ID-scheme ablation (default budget / 6)",
    )
    parser.add_argument("--no-ablations", action="store_true", help="skip the ID-scheme ablation")
    parser.add_argument(
        "--ablation-schemes",
        type=argparse_schemes,
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


def add_system_flags(parser: argparse.ArgumentParser) -> None:
    """Which systems run: the main model, the baselines."""
    parser.add_argument(
        "--skip-main",
        action="store_true",
        help="do not train the main model (e.g. run the ablation in a second "
        "process, one core each)",
    )
    parser.add_argument(
        "--baselines",
        default=",".join(BENCHMARK_BASELINES),
        help="comma-separated baselines to run (empty for none)",
    )
    parser.add_argument(
        "--reuse-model",
        action="store_true",
        help="score the model already in DIR/artifact instead of training one "
        "(re-evaluate a run, e.g. with new systems)",
    )
    parser.add_argument(
        "--hybrid-views",
        default=None,
        help="baselines whose candidates text2tracks-hybrid re-ranks with the beam's, fitted "
        "on the validation playlists (comma-separated, each also in --baselines; empty: no "
        "text2tracks-hybrid; default: title_knn when it runs as a baseline)",
    )
    parser.add_argument(
        "--hybrid-depth",
        type=int,
        default=50,
        help="candidates per view for text2tracks-hybrid (default 50)",
    )


def add_ids_flags(parser: argparse.ArgumentParser) -> None:
    """build-ids: catalogue, codebooks, CF embedding, and the split it shares."""
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


def add_scoring_flags(parser: argparse.ArgumentParser) -> None:
    """How the test prompts are ranked and scored."""
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
    parser.add_argument(
        "--mode",
        choices=("generative", "cf-blend"),
        default="generative",
        help="recommend's mode for the text2tracks row: generative (the model alone) or "
        "cf-blend (blended with title kNN, after text2tracks fit-seed-blend; "
        "text2tracks.seed_blend) (default: generative)",
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
