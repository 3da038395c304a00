"""``text2tracks fit-seed-blend``: fit ``mode="cf-blend"`` into an artifact.

    text2tracks fit-seed-blend --artifact artifacts/mpd --playlists path/to/mpd [--k 500]

Reads ``--playlists`` and splits them as ``build-ids`` did (``cf/split.json``; another file or
other split parameters are refused), counts co-occurrences, fits ALS (``--als-factors``) and
indexes the titles (unless ``--no-titles``) of the training playlists, cuts the validation
playlists into the RecSys Challenge 2018's categories (``--per-category`` each) and fits, per
seed-count bucket, which co-listening view to mix with the model's answer and how much each
counts (:mod:`text2tracks.seed_blend`). The artifact is rewritten in place with its new
``seed_blend/`` component; ``recommend(..., mode="cf-blend")`` and ``text2tracks export --mode
cf-blend`` then use it.
"""

from __future__ import annotations

import argparse
import sys

from text2tracks.config_flags import add_flag, command_parser
from text2tracks.seed_blend import SHORT_DEPTH, SHORT_SCALE
from text2tracks.seed_views import ALS_FACTORS

EPILOG = """examples:
  text2tracks fit-seed-blend --artifact artifacts/mpd --playlists path/to/mpd
  text2tracks fit-seed-blend --artifact artifacts/mpd --playlists path/to/mpd --k 100 --per-category 100
"""


def add_parser(subparsers=None) -> argparse.ArgumentParser:
    """Register ``fit-seed-blend`` (or build the ``python -m`` parser when ``subparsers`` is None)."""
    parser = command_parser(
        subparsers,
        "fit-seed-blend",
        prog="text2tracks fit-seed-blend",
        help="fit the blend of the model's continuations with co-listening views (mode cf-blend)",
        description=(
            "Split --playlists as build-ids did, count co-occurrences, fit ALS and index the "
            "titles of the training playlists, cut the validation playlists into the RecSys "
            "Challenge 2018's categories and fit, per seed-count bucket, which co-listening "
            "view (item kNN or ALS fold-in of the seeds, either fused with title kNN; title "
            "kNN without seeds) to mix with the model's answer and how much each counts; the "
            "artifact gets a seed_blend/ component that recommend(..., mode='cf-blend') and "
            "export --mode cf-blend use."
        ),
        epilog=EPILOG,
    )
    add_flag(parser, "--artifact", required=True, help="the trained artifact folder (rewritten)")
    add_flag(parser, "--playlists", required=True, help="the playlists it was built from")
    parser.add_argument(
        "--k", type=int, default=500, help="answer length the blend is fitted at (default: 500)"
    )
    parser.add_argument(
        "--per-category",
        type=int,
        default=50,
        help="validation playlists per category (default: 50)",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="prompts per beam search")
    parser.add_argument(
        "--als-factors",
        type=int,
        default=ALS_FACTORS,
        help=f"ALS fold-in's factors; 0: no ALS view (default: {ALS_FACTORS})",
    )
    parser.add_argument(
        "--short-k",
        type=int,
        default=0,
        help=f"also fit short answers apart, at this k (e.g. {SHORT_DEPTH}) by Hits@k on "
        f"{SHORT_SCALE}x --per-category playlists (an answer reads the fit whose k is nearer "
        "its own on a log scale); 0: every k reads the --k fit (default: 0)",
    )
    parser.add_argument(
        "--no-titles",
        action="store_true",
        help="keep no training titles: no title kNN views, prompts without seeds keep the "
        "model's answer",
    )
    parser.set_defaults(func=_main)
    return parser


def run_fit_seed_blend(
    artifact,
    playlists,
    k: int = 500,
    per_category: int = 50,
    batch_size: int = 32,
    log=print,
    als_factors: int = ALS_FACTORS,
    titles: bool = True,
    short_k: int = 0,
) -> dict:
    """Fit and save; returns the fit's summary."""
    from text2tracks.artifacts import artifact_split
    from text2tracks.pipeline import Text2Tracks

    for name, value in (("--k", k), ("--per-category", per_category), ("--batch-size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in (("--als-factors", als_factors), ("--short-k", short_k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be 0 or a positive integer, got {value!r}")
    split = artifact_split(artifact, playlists)
    if not split.validation:
        raise ValueError(
            f"{artifact} was built without validation playlists (cf/split.json); the blend is "
            "fitted on them: rebuild with --validation-fraction > 0"
        )
    recommender = Text2Tracks.from_pretrained(artifact)
    if k > len(recommender):
        raise ValueError(f"--k {k} is larger than the catalogue ({len(recommender)} tracks)")
    summary = recommender.fit_seed_blend(
        split.train,
        split.validation,
        k=k,
        per_category=per_category,
        batch_size=batch_size,
        als_factors=als_factors,
        titles=titles,
        short_k=short_k,
        log=log,
    )
    recommender.save_pretrained(artifact)
    return summary


def _main(args: argparse.Namespace) -> int:
    from semantic_ids.playlists import PlaylistFormatError
    from text2tracks.artifacts import ArtifactError

    try:
        run_fit_seed_blend(
            args.artifact,
            args.playlists,
            k=args.k,
            per_category=args.per_category,
            batch_size=args.batch_size,
            log=lambda m: print(m, file=sys.stderr, flush=True),
            als_factors=args.als_factors,
            titles=not args.no_titles,
            short_k=args.short_k,
        )
    except (ArtifactError, FileNotFoundError, PlaylistFormatError, ValueError) as err:
        print(f"text2tracks fit-seed-blend: error: {err}", file=sys.stderr)
        return 2
    print(f"seed blend written to {args.artifact}/seed_blend")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = add_parser().parse_args(argv)
    return _main(args)


if __name__ == "__main__":
    raise SystemExit(main())
