"""The ``text2tracks`` command line: one subcommand per module in ``text2tracks.commands``.

Each command module defines ``add_parser(subparsers)``, which registers its flags and sets
``func`` (called with the parsed arguments, returning an exit code). Command modules import
their heavy dependencies inside ``func`` so that ``text2tracks --help`` stays fast.

Training is not a subcommand: it runs as ``accelerate launch -m training.train_seq2seq``
(``training`` uses this package, never the reverse). ``serve`` needs the ``serve`` extra
(``pip install "text2tracks[serve]"``) only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

_COMMAND_MODULES = ("build_ids", "export", "serve")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="text2tracks",
        description="Prompt-based music recommendation by generative retrieval.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(f"text2tracks.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
