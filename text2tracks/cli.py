"""The commands of the ``text2tracks`` package's own layer: ``build-ids``, ``export``, ``serve``.

    python -m text2tracks.cli build-ids | export | serve ...

The ``text2tracks`` console command (all stages: ``train``, ``train-diffusion``, ``evaluate``,
``demo`` too) is :mod:`eval.cli`: imports run one way (``semantic_ids`` < ``text2tracks`` <
``training`` < ``eval``), so a command that reaches training and evaluation must live in the top
layer, and this package knows nothing of them. Both build their subcommands with the same
``add_parser(subparsers)`` of each command module, which registers its flags and sets ``func``
(called with the parsed arguments, returning an exit code). Command modules import their heavy
dependencies inside ``func`` so that ``--help`` stays fast. ``serve`` needs the ``serve`` extra
(``pip install "text2tracks[serve]"``) only when it runs.
"""

from __future__ import annotations

import argparse
import sys

from text2tracks.commands import build_ids, export, fit_seed_blend, serve

COMMANDS = (
    ("build-ids", build_ids.add_parser),
    ("fit-seed-blend", fit_seed_blend.add_parser),
    ("export", export.add_parser),
    ("serve", serve.add_parser),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="text2tracks",
        description="Prompt-based music recommendation by generative retrieval "
        "(this layer's commands; `text2tracks --help` lists every stage).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _, add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
