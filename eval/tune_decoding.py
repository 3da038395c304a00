"""Choose the beam width and diversity penalty on the VALIDATION split (never the test split).

    python -m eval.tune_decoding --artifact DIR --playlists PATH \
        [--num-beams 20,50,100] [--diversity 0,0.3,0.5,0.75] [--prompts 0]

The validation playlists are re-split from ``PATH`` with the artifact's own split parameters
(:func:`text2tracks.artifacts.artifact_split`, which checks that they are the build's). Each cell
decodes the validation prompts through the public API (``recommend(num_beams=...,
diversity=...)``). Prints Hits@k with a bootstrap interval and NDCG@k per cell and
writes ``--out`` (JSON). This is how ``DEFAULT_NUM_BEAMS`` and ``DEFAULT_DIVERSITY`` in
:mod:`text2tracks.modeling` are chosen.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from eval.timing import int_list


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.tune_decoding", description=__doc__)
    parser.add_argument("--artifact", required=True, help="a trained artifact (with seq2seq/)")
    parser.add_argument("--playlists", required=True, help="the playlists build-ids read")
    parser.add_argument("--num-beams", type=int_list, default=[20, 50, 100])
    parser.add_argument("--diversity", type=_floats, default=[0.0, 0.3, 0.5, 0.75])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=0, help="0 = every validation prompt")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--out", default="bench_out/tune_decoding.json")
    return parser


def tune(args) -> dict:
    import torch

    from semantic_ids.interactions import ItemVocab
    from text2tracks.artifacts import CF_COMPONENT, artifact_split
    from text2tracks.pipeline import Text2Tracks
    from text2tracks.ranking_metrics import evaluate_rankings, relevant_items

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    validation = artifact_split(args.artifact, args.playlists).validation
    vocab = ItemVocab.load(Path(args.artifact) / CF_COMPONENT)
    kept, relevant, n_skipped = relevant_items(validation, vocab)
    if args.prompts:
        kept, relevant = kept[: args.prompts], relevant[: args.prompts]
    if len(kept) == 0:
        raise ValueError(f"{args.playlists}: no validation playlist has a catalogue track")
    prompts = [validation[i].prompt for i in kept]
    index = {t: i for i, t in enumerate(vocab.item_ids)}
    model = Text2Tracks.from_pretrained(args.artifact)
    rows = []
    for beams in args.num_beams:
        for diversity in args.diversity:
            started = time.perf_counter()
            recs = model.recommend(
                prompts, k=args.k, num_beams=beams, diversity=diversity, batch_size=args.batch_size
            )
            seconds = time.perf_counter() - started
            ranked = np.array([[index[r.track_id] for r in row] for row in recs], dtype=np.int64)
            metrics = evaluate_rankings(ranked, relevant, k=args.k)
            rows.append(
                {
                    "num_beams": beams,
                    "diversity": diversity,
                    f"hits@{args.k}": metrics[f"hits@{args.k}"],
                    "ci": metrics[f"hits@{args.k}_ci"],
                    f"ndcg@{args.k}": metrics[f"ndcg@{args.k}"],
                    "ms_per_prompt_batched": 1000 * seconds / len(prompts),
                }
            )
            print(_row(rows[-1], args.k), flush=True)
    return {
        "artifact": str(args.artifact),
        "prompts": len(prompts),
        "skipped_no_catalogue_track": n_skipped,
        "k": args.k,
        "rows": rows,
    }


def _row(row: dict, k: int) -> str:
    low, high = row["ci"]
    return (
        f"| {row['num_beams']} | {row['diversity']:g} | {row[f'hits@{k}']:.3f} "
        f"[{low:.3f}, {high:.3f}] | {row[f'ndcg@{k}']:.3f} | {row['ms_per_prompt_batched']:.1f} |"
    )


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    print(f"| beams | diversity | Hits@{args.k} [95% CI] | NDCG@{args.k} | ms/prompt (batched) |")
    print("|---|---|---|---|---|")
    from eval.benchmark_outputs import write_json

    print(f"wrote {write_json(args.out, tune(args))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
