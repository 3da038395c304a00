"""``text2tracks serve``: an HTTP service answering prompts from one artifact.

Examples::

    pip install "text2tracks[serve]"
    text2tracks serve --artifact runs/demo/artifact                  # http://127.0.0.1:8000/docs
    text2tracks serve --artifact runs/demo/artifact --host 0.0.0.0 --port 8080 --max-k 50

See :mod:`text2tracks.serve` for the endpoints, the batching and the error answers.
"""

from __future__ import annotations

import argparse

from text2tracks.config_flags import add_config_flags, command_parser, config_from_args

_EPILOG = """examples:
  text2tracks serve --artifact runs/demo/artifact
  text2tracks serve --artifact runs/demo/artifact --host 0.0.0.0 --port 8080 --max-k 50
  curl -s localhost:8000/recommend -H 'content-type: application/json' \\
       -d '{"prompt": "chill 90s jazz", "k": 5}'
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``text2tracks serve``."""
    from text2tracks.batching import ServeLimits

    parser = command_parser(
        subparsers,
        "serve",
        prog="text2tracks serve",
        help="serve an artifact over HTTP (POST /recommend, GET /health, /docs)",
        description=__doc__.split("\n\n")[0],
        epilog=_EPILOG,
    )
    parser.add_argument("--artifact", required=True, help="the artifact folder to serve")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    parser.add_argument("--device", default=None, help="torch device (default: CUDA if available)")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's own choice); on a shared "
        "machine 1 can be many times faster than oversubscribed cores",
    )
    parser.add_argument(
        "--log-level", default="info", choices=("critical", "error", "warning", "info", "debug")
    )
    add_config_flags(parser, ServeLimits)
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    from text2tracks.artifacts import ArtifactError
    from text2tracks.batching import ServeLimits

    try:
        from text2tracks.serve import serve
    except ImportError as err:
        raise SystemExit(
            f"text2tracks serve needs the 'serve' extra ({err.name} is missing): "
            'pip install "text2tracks[serve]"'
        ) from err
    try:
        limits = config_from_args(ServeLimits, args)
    except ValueError as err:
        raise SystemExit(f"text2tracks serve: {err}") from err
    try:
        serve(
            args.artifact,
            host=args.host,
            port=args.port,
            device=args.device,
            limits=limits,
            log_level=args.log_level,
            torch_threads=args.torch_threads,
        )
    except ArtifactError as err:
        raise SystemExit(f"text2tracks serve: {err}") from err
    return 0
