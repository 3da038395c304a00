"""The main job on the built-in demo catalogue: no download, a few minutes on 2 CPU cores.

    text2tracks demo [--out runs/demo] [--size tiny|small] [--force]
    python -m training.demo ...          (the same)

Stages, each the real code path of the project:

1. write the demo playlists (:mod:`semantic_ids.demo`: tracks with artists, genres, moods and
   eras; playlists whose titles spell them) to ``OUT/playlists.jsonl``;
2. build the semantic IDs (``text2tracks build-ids``: split, CF, residual k-means) into
   ``OUT/artifact``;
3. train the seq2seq model on the training split (``training.train_seq2seq.train``, a time
   budget);
4. evaluate on the held-out test playlists: Hits@10 (and Recall, NDCG, MRR) of text2tracks
   against popularity, with bootstrap intervals, written to ``OUT/results.json``;
5. export recommendations for a few prompts with ``text2tracks export``
   (``OUT/prompts.txt`` -> ``OUT/recommendations.jsonl``) and print them.

Afterwards the artifact is ready for the API::

    from text2tracks.pipeline import Text2Tracks
    recommender = Text2Tracks.from_pretrained("runs/demo/artifact")
    recommender.recommend("chill 90s jazz", k=5)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from text2tracks.artifacts import CF_COMPONENT
from text2tracks.config_flags import add_flag, add_progress_flag, command_parser
from text2tracks.modeling import DEFAULT_NUM_BEAMS

DEMO_PROMPTS = (
    "chill 90s jazz",
    "sad songs",
    "workout hip hop",
    "oldies for slow dancing",
    "happy country 🤠",
)


@dataclass(frozen=True)
class DemoSize:
    """How big the demo is: data, semantic IDs, model and training budget."""

    n_tracks: int
    n_playlists: int
    n_levels: int
    codebook_size: int
    cf_factors: int
    d_model: int
    num_layers: int
    num_heads: int
    d_ff: int
    batch_size: int
    lr: float
    max_steps: int
    max_minutes: float
    warmup_steps: int
    num_beams: int


SIZES = {
    # for the end-to-end test: half a minute, and just enough steps that the model beats
    # popularity (15 steps did not: Hits@10 0.52 against 0.72; 300 steps: 0.93)
    "tiny": DemoSize(
        n_tracks=200,
        n_playlists=300,
        n_levels=2,
        codebook_size=8,
        cf_factors=16,
        d_model=32,
        num_layers=1,
        num_heads=2,
        d_ff=64,
        batch_size=32,
        lr=3e-3,
        max_steps=300,
        max_minutes=0.0,
        warmup_steps=2,
        num_beams=10,
    ),
    # the default: a few minutes on 2 CPU cores, and a model that beats popularity clearly
    "small": DemoSize(
        n_tracks=1000,
        n_playlists=3000,
        n_levels=2,
        codebook_size=32,
        cf_factors=32,
        d_model=128,
        num_layers=2,
        num_heads=4,
        d_ff=512,
        batch_size=64,
        lr=2e-3,
        max_steps=2500,
        max_minutes=0.0,
        warmup_steps=100,
        num_beams=DEFAULT_NUM_BEAMS,
    ),
}


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def evaluate_demo(
    artifact: Path, playlists: Path, k: int = 10, num_beams: int | None = None, batch_size: int = 64
) -> dict[str, Any]:
    """Hits@k etc. of the trained model and of popularity on the artifact's test playlists."""
    from semantic_ids.interactions import ItemVocab
    from text2tracks.artifacts import artifact_split
    from text2tracks.pipeline import Text2Tracks
    from text2tracks.ranking_metrics import evaluate_rankings, relevant_items

    split = artifact_split(artifact, playlists)
    vocab = ItemVocab.load(artifact / CF_COMPONENT)
    kept, relevant, n_skipped = relevant_items(split.test, vocab)
    test = [split.test[i] for i in kept]
    recommender = Text2Tracks.from_pretrained(artifact, device="cpu")
    if tuple(recommender.catalog.item_ids) != tuple(vocab.item_ids):
        raise ValueError(f"{artifact}: the catalogue and the CF vocabulary list different items")
    started = time.perf_counter()
    answers = recommender.recommend(
        [p.prompt for p in test], k=k, num_beams=num_beams, batch_size=batch_size
    )
    seconds = time.perf_counter() - started
    model_rankings = [[recommender.catalog.index_of(r.track_id) for r in recs] for recs in answers]
    popular = list(range(min(k, len(vocab))))  # ItemVocab is ordered by training count
    results = {
        "text2tracks": evaluate_rankings(
            model_rankings, relevant, k=k, n_items=len(vocab), n_skipped=n_skipped
        ),
        "popularity": evaluate_rankings(
            [popular] * len(test), relevant, k=k, n_items=len(vocab), n_skipped=n_skipped
        ),
    }
    results["text2tracks"]["prompts_per_s"] = len(test) / seconds if seconds else None
    return results


def run_demo(
    out: str | Path = "runs/demo",
    size: str = "small",
    force: bool = False,
    max_minutes: float | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns what ``results.json`` holds."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    spec = SIZES[size]
    out = _fresh_folder(Path(out), force)
    artifact = out / "artifact"
    timings: dict[str, float] = {}
    started = time.perf_counter()

    _log(f"[1/5] demo playlists: {spec.n_tracks} tracks, {spec.n_playlists} playlists")
    with _timed(timings, "data_s"):
        playlists = _write_playlists(spec, out)

    _log(
        f"[2/5] semantic IDs: {spec.n_levels} levels x {spec.codebook_size} codes + collision digit"
    )
    with _timed(timings, "build_ids_s"):
        build = _build_ids(spec, playlists, artifact, progress)

    minutes = spec.max_minutes if max_minutes is None else max_minutes
    budget = f"{minutes:g} min" if minutes else f"{spec.max_steps} steps"
    _log(f"[3/5] training the seq2seq model ({budget})")
    with _timed(timings, "train_s"):
        summary = _train(spec, playlists, artifact, minutes, progress)

    _log("[4/5] evaluating on the held-out test playlists")
    with _timed(timings, "evaluate_s"):
        metrics = evaluate_demo(artifact, playlists, k=10, num_beams=spec.num_beams)

    _log("[5/5] exporting recommendations for a few prompts")
    with _timed(timings, "export_s"):
        recommendations = _export(spec, out, artifact)
    timings["total_s"] = time.perf_counter() - started

    results = {
        "size": size,
        "systems": metrics,
        "build_ids": {"n_items": build["n_items"], "split": build["split"]},
        "training": {
            k: summary.get(k)
            for k in ("steps", "elapsed_s", "stopped_by", "n_parameters", "final_eval")
        },
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }
    with open(out / "results.json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
    _print_report(results, playlists, recommendations, out, timings["total_s"])
    return results


def _fresh_folder(out: Path, force: bool) -> Path:
    """``out``, created empty: an existing one is replaced with ``force``, an error without."""
    if out.exists():
        if not force:
            raise FileExistsError(f"{out} already exists; pass --force to run the demo again there")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


@contextmanager
def _timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Seconds the block took, into ``timings[key]``."""
    t0 = time.perf_counter()
    yield
    timings[key] = time.perf_counter() - t0


def _write_playlists(spec: DemoSize, out: Path) -> Path:
    """1. The demo playlists, as ``OUT/playlists.jsonl``."""
    from semantic_ids.demo import write_demo_jsonl

    return write_demo_jsonl(
        out / "playlists.jsonl", n_tracks=spec.n_tracks, n_playlists=spec.n_playlists, seed=0
    )


def _build_ids(spec: DemoSize, playlists: Path, artifact: Path, progress: bool) -> dict[str, Any]:
    """2. ``text2tracks build-ids`` into ``artifact``; returns its summary."""
    from semantic_ids.cf import CFConfig
    from text2tracks.commands.build_ids import BuildIDsConfig, run_build_ids

    return run_build_ids(
        playlists,
        artifact,
        BuildIDsConfig(
            min_count=1,
            n_levels=spec.n_levels,
            codebook_size=spec.codebook_size,
            cf=CFConfig(factors=spec.cf_factors, iterations=10),
        ),
        show_progress=progress,
        log=_log,
    )


def _train(
    spec: DemoSize, playlists: Path, artifact: Path, minutes: float, progress: bool
) -> dict[str, Any]:
    """3. The seq2seq model, trained into ``artifact``; returns the training summary."""
    from text2tracks.modeling import ModelConfig
    from training.train_seq2seq import TrainConfig, train

    model = ModelConfig(
        # the T5 on every install: the same demo with or without the optional MiniLM package
        # (its 6 pretrained layers would also take most of the demo's small step budget)
        encoder="t5",
        d_model=spec.d_model,
        num_layers=spec.num_layers,
        num_decoder_layers=spec.num_layers,
        num_heads=spec.num_heads,
        d_ff=spec.d_ff,
    )
    return train(
        TrainConfig(
            artifact=str(artifact),
            playlists=str(playlists),
            model=model,
            lr=spec.lr,
            batch_size=spec.batch_size,
            max_steps=spec.max_steps,
            max_minutes=minutes,
            warmup_steps=spec.warmup_steps,
            eval_every=0,
            eval_prompts=200,
            num_beams=spec.num_beams,
            log_every=50,
            progress=progress,
            # A step budget and one thread keep the demo's result the same on a busy machine: a time
            # budget trained for a fraction of the steps there, and two torch threads on two shared
            # cores stall on each small op (measured: 3.5 s a step under load, 0.04 s on one thread).
            num_threads=1,
        )
    )


def _export(spec: DemoSize, out: Path, artifact: Path) -> Path:
    """5. ``text2tracks export`` of :data:`DEMO_PROMPTS` (``OUT/prompts.txt``) into
    ``OUT/recommendations.jsonl``, which it returns."""
    from text2tracks.commands.export import format_summary, run_export

    prompts = out / "prompts.txt"
    prompts.write_text("\n".join(DEMO_PROMPTS) + "\n", encoding="utf-8")
    recommendations = out / "recommendations.jsonl"
    export = run_export(
        artifact, prompts, recommendations, k=5, num_beams=spec.num_beams, progress=False
    )
    _log(format_summary(export))
    return recommendations


def _print_report(
    results: dict[str, Any], playlists: Path, recommendations: Path, out: Path, total_s: float
) -> None:
    """The metrics table, the exported recommendations and where the files are, on stdout."""
    from text2tracks.ranking_metrics import format_table

    print(f"\ntext2tracks demo ({results['size']}): test playlists of {playlists}\n")
    print(format_table(results["systems"]))
    print()
    with open(recommendations, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            print(f"{record['prompt']!r}")
            for rank, (track_id, name, artist, score) in enumerate(
                zip(
                    record["track_ids"],
                    record["names"],
                    record["artists"],
                    record["scores"],
                    strict=True,
                ),
                start=1,
            ):
                print(f"  {rank}. {name} - {artist}  ({track_id}, {score:.2f})")
    print(
        f"\nartifact: {out / 'artifact'}   results: {out / 'results.json'}   total {total_s:.0f} s"
    )


EPILOG = """examples:
  text2tracks demo                                   # build IDs, train, evaluate, export: runs/demo
  text2tracks demo --out runs/demo --force --max-minutes 5
  text2tracks demo --size tiny --out /tmp/demo       # seconds, for a smoke test
"""


def add_parser(subparsers=None) -> argparse.ArgumentParser:
    """``text2tracks demo`` (``subparsers`` given) or ``python -m training.demo``."""
    parser = command_parser(
        subparsers,
        "demo",
        prog="python -m training.demo",
        help="the whole job on the built-in demo catalogue (no download, a few minutes)",
        description="Build IDs, train, evaluate and export on the built-in demo catalogue "
        "(no download).",
        epilog=EPILOG,
    )
    parser.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    parser.add_argument(
        "--size",
        choices=sorted(SIZES),
        default="small",
        help="small (default, a few minutes) or tiny (seconds, for tests)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    add_flag(
        parser,
        "--max-minutes",
        type=float,
        default=None,
        help="training budget in minutes (default: the size's)",
    )
    add_progress_flag(parser)
    parser.set_defaults(func=_run_from_args)
    return parser


def _run_from_args(args: argparse.Namespace) -> int:
    try:
        run_demo(
            args.out,
            args.size,
            force=args.force,
            max_minutes=args.max_minutes,
            progress=args.progress,
        )
    except FileExistsError as err:
        print(f"text2tracks demo: error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    return _run_from_args(add_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
