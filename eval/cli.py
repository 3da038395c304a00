"""The ``text2tracks`` command: one subcommand per stage, in the order a run goes through them.

    text2tracks build-ids        playlists -> CF embeddings -> semantic IDs   text2tracks.commands.build_ids
    text2tracks train            the prompt -> semantic-ID seq2seq            training.train_seq2seq
    text2tracks train-diffusion  the optional diffusion head                  training.train_diffusion
    text2tracks fit-seed-blend   continuations blended with co-occurrence     text2tracks.commands.fit_seed_blend
    text2tracks evaluate         every system on one split, one report        eval.benchmark
    text2tracks export           recommendations for a file of prompts        text2tracks.commands.export
    text2tracks serve            the HTTP service                             text2tracks.commands.serve
    text2tracks demo             all of it on the built-in demo catalogue     training.demo

Why the dispatcher lives here, in ``eval``: imports run one way, ``semantic_ids`` <
``text2tracks`` < ``training`` < ``eval`` (``tests/test_layers.py``), and a command that reaches
every stage must import every layer, so it belongs to the top one. ``text2tracks.cli`` keeps the
commands of its own layer (``python -m text2tracks.cli``) and knows nothing of training or
evaluation; nothing is imported by name from a string. Each stage keeps its parser beside its
code (``add_parser(subparsers)``, the same function that builds its ``python -m`` parser), so
``python -m training.train_seq2seq``, ``accelerate launch -m training.train_seq2seq`` /
``-m training.train_diffusion`` / ``-m text2tracks.commands.export``, ``python -m
eval.benchmark`` and ``python -m training.demo`` take the same flags as the subcommands.

Flags are spelled one way across all of them; the table of canonical spellings and their old,
still accepted aliases is in :mod:`text2tracks.config_flags`. Building the parser imports no
heavy library (each stage imports torch, faiss ... when it runs), so ``--help`` is quick.
"""

from __future__ import annotations

import argparse
import sys

from eval import benchmark
from text2tracks.commands import build_ids, export, fit_seed_blend, serve
from training import demo, train_diffusion, train_seq2seq

# (subcommand, the function that registers it), in pipeline order
STAGES = (
    ("build-ids", build_ids.add_parser),
    ("train", train_seq2seq.add_parser),
    ("train-diffusion", train_diffusion.add_parser),
    ("fit-seed-blend", fit_seed_blend.add_parser),
    ("evaluate", benchmark.add_parser),
    ("export", export.add_parser),
    ("serve", serve.add_parser),
    ("demo", demo.add_parser),
)
# subcommands that hand the flags they do not know on (to the models they train)
PASS_THROUGH = ("evaluate",)

EPILOG = """examples:
  text2tracks demo
  text2tracks build-ids --playlists path/to/mpd --artifact artifacts/mpd
  text2tracks train --artifact artifacts/mpd --playlists path/to/mpd --max-minutes 60
  text2tracks evaluate --playlists path/to/mpd --out runs/bench --max-minutes 60
  text2tracks COMMAND --help      (each command's flags, with examples)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="text2tracks",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Prompt-based music recommendation by generative retrieval.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, add_parser in STAGES:
        sub = add_parser(subparsers)
        if sub.prog.split()[-1] != name:
            raise RuntimeError(f"{add_parser.__module__} registered {sub.prog!r}, not {name!r}")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    command = args.command
    if extra and command not in PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # the namespace holds the flags only (evaluate records them in results.json)
    handler = vars(args).pop("func")
    vars(args).pop("command")
    if command in PASS_THROUGH:
        return int(handler(args, extra) or 0)
    return int(handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
