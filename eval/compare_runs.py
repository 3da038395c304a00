"""Paired comparison of systems from two benchmark runs on the same split.

    python -m eval.compare_runs RUN_A:SYSTEM RUN_B:SYSTEM [--metric hits]
        [--seen-titles PLAYLISTS] [--artist-titles PLAYLISTS]

Each run folder is an ``eval.benchmark --out`` folder with ``per_prompt.json`` (written by every
run). The two systems must have been scored on the same test prompts (same data, split and
seed); the prompt indices are checked. Prints the paired bootstrap difference A - B with its 95%
interval and p-value (:func:`eval.metrics.paired_bootstrap_diff`) and the relative change.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from eval.metrics import paired_bootstrap_diff
from text2tracks.artifacts import CF_COMPONENT


def load_per_prompt(spec: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``RUN:SYSTEM`` -> ``(prompt_index, values)`` of that system's per-prompt ``metric``."""
    run, sep, system = spec.rpartition(":")
    if not sep or not run or not system:
        raise ValueError(f"expected RUN_FOLDER:SYSTEM, got {spec!r}")
    path = Path(run) / "per_prompt.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run eval.benchmark into {run} first")
    data = json.loads(path.read_text())
    if system not in data["systems"]:
        raise ValueError(f"{run} has no system {system!r}; it has {sorted(data['systems'])}")
    values = data["systems"][system].get(metric)
    if values is None:
        raise ValueError(f"{run}:{system} has no per-prompt {metric!r}")
    return np.asarray(data["prompt_index"], dtype=np.int64), np.asarray(values, dtype=np.float64)


def compare(a: str, b: str, metric: str = "hits", n_bootstrap: int = 10000) -> dict:
    index_a, values_a = load_per_prompt(a, metric)
    index_b, values_b = load_per_prompt(b, metric)
    if not np.array_equal(index_a, index_b):
        raise ValueError(f"{a} and {b} were scored on different test prompts")
    diff = paired_bootstrap_diff(values_a, values_b, n_bootstrap=n_bootstrap)
    mean_b = float(values_b.mean())
    return {
        "a": a,
        "b": b,
        "metric": metric,
        "mean_a": float(values_a.mean()),
        "mean_b": mean_b,
        "relative": float(values_a.mean() / mean_b - 1) if mean_b else None,
        **diff,
    }


def _test_prompts(run: str, playlists: str) -> tuple[list, list]:
    """The training playlists and the evaluated test playlists of ``run`` (in its
    ``per_prompt.json`` order), re-split as recorded in ``RUN/artifact/cf/split.json``."""
    from semantic_ids.playlists import read_playlists, split_playlists

    info = json.loads((Path(run) / "artifact" / CF_COMPONENT / "split.json").read_text())
    split = split_playlists(
        read_playlists(playlists).playlists,
        validation_fraction=info["validation_fraction"],
        test_fraction=info["test_fraction"],
        seed=info["seed"],
    )
    index = json.loads((Path(run) / "per_prompt.json").read_text())["prompt_index"]
    return split.train, [split.test[i] for i in index]


def seen_title_mask(train: list, test: list) -> np.ndarray:
    """Per test playlist, whether its normalised title is also the title of a training
    playlist (``train`` and ``test`` as :func:`_test_prompts` gives them)."""
    from eval.baselines import normalize_title

    train_titles = {normalize_title(p.title) for p in train}
    return np.array([normalize_title(p.title) in train_titles for p in test])


def artist_title_mask(run: str, test: list) -> np.ndarray:
    """Per test playlist, whether its prompt is the name of an artist of ``run``'s catalogue
    (``RUN/artifact/semantic_ids/tracks.json``; compared as the artist prompts of
    :mod:`training.artist_prompts` compare names)."""
    from text2tracks.metadata import read_track_metadata
    from training.artist_prompts import artist_key

    meta = read_track_metadata(Path(run) / "artifact" / "semantic_ids")
    artists = {artist_key(artist) for _, artist in meta.values()} - {""}
    return np.array([artist_key(p.prompt) in artists for p in test])


def _print_groups(args) -> None:
    """Per group of prompts (``--seen-titles``, ``--artist-titles``), the paired difference."""
    _, a = load_per_prompt(args.a, args.metric)
    _, b = load_per_prompt(args.b, args.metric)
    run = args.a.rpartition(":")[0]
    if args.metric == "hits":
        print(f"either system hits: {float(np.mean((a > 0) | (b > 0))):.4f}")
    # the playlists are read and split once, whichever flags name them
    train, test = _test_prompts(run, args.seen_titles or args.artist_titles)
    seen = seen_title_mask(train, test)
    groups = []
    if args.seen_titles:
        groups += [("title seen in training", seen), ("title not seen", ~seen)]
    if args.artist_titles:
        artist = artist_title_mask(run, test)
        groups += [
            ("title names a catalogue artist, seen in training", artist & seen),
            ("title names a catalogue artist, not seen", artist & ~seen),
            ("title names no catalogue artist", ~artist),
        ]
    for name, mask in groups:
        if not mask.any():
            print(f"{name}: no prompts")
            continue
        d = paired_bootstrap_diff(a[mask], b[mask], n_bootstrap=args.n_bootstrap)
        print(
            f"{name} ({mask.sum()} prompts, {mask.mean():.0%}): {a[mask].mean():.4f} vs "
            f"{b[mask].mean():.4f}; diff {d['diff']:+.4f} [{d['ci'][0]:+.4f}, "
            f"{d['ci'][1]:+.4f}], p = {d['p_value']:.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.compare_runs", description=__doc__.split("\n")[0]
    )
    parser.add_argument("a", help="RUN_FOLDER:SYSTEM")
    parser.add_argument("b", help="RUN_FOLDER:SYSTEM")
    parser.add_argument("--metric", default="hits", choices=("hits", "ndcg"))
    parser.add_argument("--n-bootstrap", type=int, default=10000)
    parser.add_argument(
        "--seen-titles",
        metavar="PLAYLISTS",
        default=None,
        help="also split the prompts by whether their title occurs in training "
        "(reads the playlists the first run was built from)",
    )
    parser.add_argument(
        "--artist-titles",
        metavar="PLAYLISTS",
        default=None,
        help="also split the prompts by whether they name an artist of the first run's "
        "catalogue, seen in training or not (reads the playlists the first run was built from)",
    )
    args = parser.parse_args(argv)
    r = compare(args.a, args.b, args.metric, args.n_bootstrap)
    rel = f"{100 * r['relative']:+.1f}%" if r["relative"] is not None else "-"
    print(
        f"{r['metric']}@10: {r['mean_a']:.4f} vs {r['mean_b']:.4f}; diff {r['diff']:+.4f} "
        f"[{r['ci'][0]:+.4f}, {r['ci'][1]:+.4f}], {rel}, p = {r['p_value']:.4f}"
    )
    if args.seen_titles or args.artist_titles:
        _print_groups(args)
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
