"""Could a CF-smoothed teacher lift the seq2seq past title kNN? Its candidate lists, scored.

    python -m eval.teacher_views --artifact DIR --playlists PATH [--out FILE]

The seq2seq learns its teacher's distribution (:mod:`text2tracks.teacher`: title-kNN votes), so
its top 10 can only beat title kNN's by as much as the teacher's list does, plus what it
generalises. The generative issue's direction 2 names CF-smoothed votes as a candidate teacher.
This scores such lists as retrieval systems on the artifact's validation and test playlists
(its recorded split), against the title kNN they start from (the teacher's neighbours,
:class:`text2tracks.teacher.TitleNeighbors` at its defaults, over the training playlists):

- ``title_knn``: the neighbours' votes, the teacher's list (and the benchmark's best baseline);
- ``neighbour_factors``: the neighbours' ALS playlist factors pooled with the same weights,
  scored against the item factors (the kNN read in CF space);
- ``fold_in_N``: the ridge fold-in (:func:`text2tracks.cf_targets.ridge_fold_in`, the seeded
  CF teacher's) of the kNN's top N tracks, scored against the item factors;
- ``title_knn + w * view``: each prompt's kNN scores and a view's, each divided by its row
  maximum, summed with weight ``w``; ``w`` is chosen on the validation playlists, the test
  playlists only score it.

Hits@10 per side, and on the test side the paired bootstrap against ``title_knn``. Prints a
markdown table and writes ``--out``. On the MPD development data (the 60-minute benchmark's
artifact) no view alone comes near the kNN (0.26-0.31 against 0.40 on test) and the blends chosen
on validation land within 0.005 of it on test, so the teacher stays plain title kNN (see the
README's recommended configuration).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from eval.baseline_core import rank_scores
from eval.benchmark_outputs import write_json
from text2tracks.cf_targets import ridge_fold_in
from text2tracks.ragged import as_ragged

DEFAULT_WEIGHTS = (0.05, 0.1, 0.2, 0.4)
DEFAULT_FOLD_IN_TOP = (20, 100)
FOLD_IN_REGULARISATION = 0.1
K = 10


def pooled_factor_scores(
    weights: sp.csr_matrix, playlist_factors: np.ndarray, item_factors: np.ndarray
) -> np.ndarray:
    """``(weights @ playlist_factors) @ item_factors.T``: each prompt's neighbours' CF queries,
    pooled with their kNN weights, scored against every item ``(n_prompts, n_items)``."""
    queries = np.asarray(weights @ playlist_factors, dtype=np.float32)
    return queries @ item_factors.T


def fold_in_scores(
    scores: np.ndarray, item_factors: np.ndarray, top: int, reg: float = FOLD_IN_REGULARISATION
) -> np.ndarray:
    """The ridge fold-in of each row's ``top`` best-scored items (items with score <= 0 left
    out), scored against every item; a row with no positive score scores 0 everywhere."""
    if top < 1:
        raise ValueError(f"top must be >= 1, got {top}")
    top = min(int(top), scores.shape[1])
    best = np.argpartition(-scores, top - 1, axis=1)[:, :top]
    kept = as_ragged([row[scores[i, row] > 0] for i, row in enumerate(best)])
    return ridge_fold_in(kept, item_factors, reg) @ item_factors.T


def max_blend(base: np.ndarray, view: np.ndarray, weight: float) -> np.ndarray:
    """``base / rowmax(base) + weight * view / rowmax(view)`` (a row whose maximum is <= 0 is
    left unscaled, so an empty kNN row does not divide by zero)."""

    def scaled(m: np.ndarray) -> np.ndarray:
        top = m.max(axis=1, keepdims=True)
        return m / np.where(top > 0, top, 1.0)

    return scaled(base) + weight * scaled(view)


def hits_at_k(
    scores: np.ndarray, relevant: Sequence[np.ndarray], popularity_order: np.ndarray, k: int = K
) -> np.ndarray:
    """Per prompt, 1.0 when one of its ``k`` best-scored items is relevant, ranked as the
    baselines rank (:func:`eval.baseline_core.rank_scores`: ties, and rows with fewer than ``k``
    positive scores, filled in ``popularity_order``)."""
    from text2tracks.ranking_metrics import per_prompt_metrics

    return per_prompt_metrics(rank_scores(scores, k, popularity_order), relevant, k)["hits"]


def view_scores(
    knn_scores: np.ndarray,
    weights: sp.csr_matrix,
    playlist_factors: np.ndarray,
    item_factors: np.ndarray,
    fold_in_top: Sequence[int] = DEFAULT_FOLD_IN_TOP,
) -> dict[str, np.ndarray]:
    """Every CF view of the module docstring for one side's prompts, by name."""
    views = {"neighbour_factors": pooled_factor_scores(weights, playlist_factors, item_factors)}
    for top in fold_in_top:
        views[f"fold_in_{top}"] = fold_in_scores(knn_scores, item_factors, top)
    return views


def _side(split, side: str, vocab, knn, factors, fold_in_top, weights) -> dict[str, np.ndarray]:
    """One side's per-prompt Hits@10 of every system (the kNN, each view alone, each blend)."""
    from text2tracks.ranking_metrics import relevant_items

    playlists = getattr(split, side)
    kept, relevant, _ = relevant_items(playlists, vocab)
    prompts = [playlists[i].prompt for i in kept]
    neighbours = knn.neighbor_weights(prompts)
    base = np.asarray((neighbours @ knn.interactions).todense(), dtype=np.float32)
    order = knn.popularity_order
    hits = {"title_knn": hits_at_k(base, relevant, order)}
    views = view_scores(base, neighbours, factors["playlist"], factors["item"], fold_in_top)
    for name, view in views.items():
        hits[name] = hits_at_k(view, relevant, order)
        for w in weights:
            hits[f"title_knn + {w} * {name}"] = hits_at_k(max_blend(base, view, w), relevant, order)
    return hits


def measure(artifact, playlists, weights=DEFAULT_WEIGHTS, fold_in_top=DEFAULT_FOLD_IN_TOP) -> dict:
    """The table of the module docstring as a dict (see :func:`main` for its layout)."""
    from eval.baselines import TitleKNNBaseline
    from eval.metrics import paired_bootstrap_diff
    from semantic_ids.interactions import ItemVocab
    from text2tracks.artifacts import CF_COMPONENT, artifact_split

    art = Path(artifact)
    split = artifact_split(art, playlists)
    vocab = ItemVocab.load(art / CF_COMPONENT)
    factors = {
        side: np.load(art / CF_COMPONENT / f"{side}_factors.npy", allow_pickle=False)
        for side in ("item", "playlist")
    }
    knn = TitleKNNBaseline().fit(split.train, vocab)
    per_side = {
        side: _side(split, side, vocab, knn, factors, fold_in_top, weights)
        for side in ("validation", "test")
    }
    rows = []
    for name in per_side["validation"]:
        row = {side: float(per_side[side][name].mean()) for side in per_side}
        row["system"] = name
        row["test_vs_title_knn"] = paired_bootstrap_diff(
            per_side["test"][name], per_side["test"]["title_knn"], n_bootstrap=10000
        )
        rows.append(row)
    chosen = {}
    views = [r["system"] for r in rows if r["system"] != "title_knn" and " * " not in r["system"]]
    for name in views:  # the blend weight each view would get, chosen on validation
        blends = [r for r in rows if r["system"].endswith(f"* {name}")]
        chosen[name] = max(blends, key=lambda r: r["validation"])["system"]
    return {
        "artifact": str(art),
        "n_prompts": {side: int(per_side[side]["title_knn"].size) for side in per_side},
        "rows": rows,
        "chosen_on_validation": chosen,
    }


def format_markdown(result: dict) -> str:
    from eval.metrics import paired_text

    lines = [
        "| system | validation Hits@10 | test Hits@10 | test vs title kNN [95% CI] | p |",
        "|---|---|---|---|---|",
    ]
    chosen = set(result["chosen_on_validation"].values())
    for row in result["rows"]:
        c = row["test_vs_title_knn"]
        name = row["system"] + (" (chosen)" if row["system"] in chosen else "")
        lines.append(
            f"| {name} | {row['validation']:.3f} | {row['test']:.3f} | {paired_text(c)} "
            f"| {c['p_value']:.2f} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m eval.teacher_views", description=__doc__.split("\n\n")[0]
    )
    ap.add_argument("--artifact", required=True, help="an artifact with cf/ (its split is used)")
    ap.add_argument("--playlists", required=True, help="the playlists the artifact was built from")
    ap.add_argument(
        "--weights", default=",".join(map(str, DEFAULT_WEIGHTS)), help="blend weights to try"
    )
    ap.add_argument(
        "--fold-in-top",
        default=",".join(map(str, DEFAULT_FOLD_IN_TOP)),
        help="kNN tracks folded in (comma-separated)",
    )
    ap.add_argument("--out", default="bench_out/teacher_views.json")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        weights = tuple(float(w) for w in args.weights.split(",") if w)
        tops = tuple(int(t) for t in args.fold_in_top.split(",") if t)
    except ValueError as err:
        print(
            f"error: --weights / --fold-in-top must be comma-separated numbers ({err})",
            file=sys.stderr,
        )
        return 2
    result = measure(args.artifact, args.playlists, weights, tops)
    print(format_markdown(result))
    print(f"wrote {write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
