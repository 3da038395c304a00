"""``text2tracks-hybrid`` in the benchmark (issue 10, direction 6; LIGER, COBRA, SpecGR).

The beam's candidates (the trained model's top ``depth`` IDs, its own scores) are unioned with
those of baselines fitted on the same training playlists (``--hybrid-views``, default the tuned
title kNN) and ranked by a :class:`text2tracks.candidate_rerank.CandidateReranker`, fitted on the
validation playlists (never the test ones). It is scored beside ``text2tracks``, which ranks
with the seq2seq alone. Two more fusions are fitted on the same validation playlists:
``text2tracks``'s own top ``n``, then the first baseline's list
(:class:`text2tracks.candidate_rerank.ListInterleave`), and the beam's and the first baseline's
candidates read as distributions and mixed
(:class:`text2tracks.candidate_rerank.ScoreMixture`). Whichever has the best validation Hits@k
(ties: NDCG@k) is the system's ranking, written to ``OUT/hybrid_reranker.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from text2tracks.candidate_rerank import CandidateReranker, ListInterleave, ScoreMixture, View

HYBRID_SYSTEM = "text2tracks-hybrid"
GENERATIVE = "text2tracks"  # the generative system's own answer, one list of ListInterleave
DEFAULT_HYBRID_VIEWS = ("title_knn",)
DEFAULT_HYBRID_DEPTH = 50


def hybrid_views(requested: str | None, baselines: str) -> str:
    """The views of ``text2tracks-hybrid`` as ``--hybrid-views`` gives them (``None``: the
    default, title kNN when it runs as a baseline, else none), checked against ``--baselines``
    before anything is trained; ``""`` turns the system off."""
    running = [b for b in baselines.split(",") if b]
    if requested is None:
        return ",".join(v for v in DEFAULT_HYBRID_VIEWS if v in running)
    views = [v for v in requested.split(",") if v]
    missing = [v for v in views if v not in running]
    if missing:
        raise ValueError(
            f"--hybrid-views {missing} are not run as baselines: add them to --baselines "
            f"(now {running}), or pass --hybrid-views '' for no text2tracks-hybrid"
        )
    return ",".join(views)


def item_groups(catalog, vocab) -> np.ndarray:
    """Each vocabulary item's first semantic-ID code (``-1`` for an item without an ID)."""
    codes = np.asarray(catalog.sid_codes)
    index = {track: i for i, track in enumerate(catalog.item_ids)}
    rows = np.asarray([index.get(track, -1) for track in vocab.item_ids], dtype=np.int64)
    return np.where(rows >= 0, codes[np.maximum(rows, 0), 0], -1)


def model_view(model, prompts: Sequence[str], vocab, depth: int, batch_size: int) -> View:
    """The beam's top ``depth`` items (vocabulary indices) and log-probabilities, beam order."""
    return _recommended(model, prompts, vocab, depth, batch_size, num_beams=depth, diversity=0.0)


def answer_view(model, prompts: Sequence[str], vocab, k: int, batch_size: int) -> View:
    """``text2tracks``'s own answer (the API's defaults: its beam, its diversification)."""
    return _recommended(model, prompts, vocab, k, batch_size)


def _recommended(model, prompts, vocab, k: int, batch_size: int, **options) -> View:
    ids, scores = model.recommend_arrays(list(prompts), k=k, batch_size=batch_size, **options)
    index = {track: i for i, track in enumerate(vocab.item_ids)}
    items = np.asarray([[index.get(t, -1) for t in row] for row in ids], dtype=np.int64)
    return items.reshape(len(prompts), k), np.asarray(scores, dtype=np.float64)


def baseline_view(
    baseline, prompts: Sequence[str], depth: int, block: int = 64, also: np.ndarray | None = None
) -> View:
    """A fitted baseline's top ``depth`` items and their scores; ``also`` ``(n_prompts, m)``:
    more items (``-1`` for none) appended with the baseline's scores for them, so that a
    fusion knows what the baseline thinks of another view's candidates."""
    items = baseline.recommend(list(prompts), k=depth)
    if also is not None:
        items = np.concatenate([items, np.asarray(also, dtype=np.int64)], axis=1)
    scores = np.zeros(items.shape)
    for start in range(0, len(prompts), block):
        rows = baseline.scores(list(prompts[start : start + block]))
        rows = rows.toarray() if sp.issparse(rows) else np.asarray(rows)
        chunk = items[start : start + block]
        scores[start : start + block] = np.take_along_axis(rows, np.maximum(chunk, 0), axis=1)
    return items, np.where(items >= 0, scores, -np.inf)


def run_hybrid(evaluation, artifact: Path, validation: Sequence, fitted: Mapping[str, Any]) -> None:
    """Fit the fusions on the ``validation`` playlists, score the best one there as
    ``text2tracks-hybrid`` on the test prompts into ``evaluation`` (its latency: what that
    fusion needs, the model's search included), and write ``OUT/hybrid_reranker.json``."""
    from eval.metrics import relevant_items
    from text2tracks.pipeline import Text2Tracks

    args, vocab = evaluation.args, evaluation.vocab
    names = [n for n in args.hybrid_views.split(",") if n]
    baselines = {n: fitted[n] for n in names}  # hybrid_views checked they run
    depth, batch, k = args.hybrid_depth, args.eval_batch_size, args.k
    model = Text2Tracks.from_pretrained(artifact)
    popularity = np.asarray(vocab.counts, dtype=np.float64)
    groups = item_groups(model.catalog, vocab)
    kept, relevant, _ = relevant_items(validation, vocab)
    fit_prompts = [validation[i].prompt for i in kept]
    started = time.perf_counter()
    fit_inputs = _fusion_inputs(model, baselines, fit_prompts, vocab, depth, batch, k)
    fusions = {
        "candidate_reranker": CandidateReranker(("beam", *names)).fit(
            fit_inputs["candidate_reranker"], relevant, popularity, groups, k
        ),
        "list_interleave": ListInterleave(GENERATIVE, names[0]).fit(
            fit_inputs["list_interleave"], relevant, k
        ),
        "score_mixture": ScoreMixture("beam", names[0]).fit(
            fit_inputs["score_mixture"], relevant, groups, k
        ),
    }
    fit_scores = {
        name: _validation_scores(_rank(f, fit_inputs[name], popularity, groups, k), relevant, k)
        for name, f in fusions.items()
    }
    chosen = max(fit_scores, key=lambda name: fit_scores[name])
    fusion = fusions[chosen]
    fit_s = time.perf_counter() - started
    started = time.perf_counter()
    prompts = evaluation.prompts
    inputs = _fusion_inputs(model, baselines, prompts, vocab, depth, batch, k, only=chosen)
    ranked = _rank(fusion, inputs[chosen], popularity, groups, k)
    seconds = time.perf_counter() - started
    (evaluation.out / "hybrid_reranker.json").write_text(
        json.dumps(fusion.to_dict(), indent=2), encoding="utf-8"
    )
    reranker, interleave, mixture = fusions.values()
    evaluation.record(
        HYBRID_SYSTEM,
        ranked,
        {
            "views": ["beam", *names],
            "depth": depth,
            "fusion": chosen,
            "validation_hits": {name: h for name, (h, _) in fit_scores.items()},
            "validation_ndcg": {name: n for name, (_, n) in fit_scores.items()},
            "penalty": reranker.penalty_,
            "interleave_n": interleave.n_,
            "mixture": {
                "weight": mixture.weight_,
                "temperature": mixture.temperature_,
                "penalty": mixture.penalty_,
            },
            "fit_prompts": len(fit_prompts),
            "fit_hits": reranker.fit_hits_,
            "train_seconds": fit_s,
            "latency_ms_per_prompt_batched": 1000 * seconds / max(1, len(evaluation.prompts)),
        },
    )


def _fusion_inputs(
    model, baselines, prompts, vocab, depth: int, batch: int, k: int, only: str | None = None
) -> dict[str, Any]:
    """What each fusion reads for ``prompts`` (``only``: just that fusion's): the reranker the
    views, the interleave the generative answer and the first baseline's list, the mixture the
    beam and the first baseline's list with the beam's candidates appended (all scored by it).
    The beam is searched only for a fusion that reads it, and the first baseline runs once."""
    name, first = next(iter(baselines.items()))
    beam = None
    if only in (None, "candidate_reranker", "score_mixture"):
        beam = model_view(model, prompts, vocab, depth, batch)
    also = beam[0] if only in (None, "score_mixture") else None
    listed = baseline_view(first, prompts, depth, also=also)
    width = listed[0].shape[1] - (0 if also is None else also.shape[1])
    own = (listed[0][:, :width], listed[1][:, :width])  # the baseline's own top depth
    inputs: dict[str, Any] = {}
    if only in (None, "candidate_reranker"):
        inputs["candidate_reranker"] = {"beam": beam, name: own}
        for other, baseline in list(baselines.items())[1:]:
            inputs["candidate_reranker"][other] = baseline_view(baseline, prompts, depth)
    if only in (None, "list_interleave"):
        inputs["list_interleave"] = {
            GENERATIVE: answer_view(model, prompts, vocab, k, batch)[0],
            name: own[0],
        }
    if only in (None, "score_mixture"):
        inputs["score_mixture"] = {"beam": beam, name: listed}
    return inputs


def _rank(fusion, inputs, popularity, groups, k: int) -> np.ndarray:
    """``fusion``'s top ``k`` items from ``inputs`` (:func:`_fusion_inputs`), whichever kind."""
    if isinstance(fusion, ListInterleave):
        return fusion.rank(inputs, k)
    if isinstance(fusion, ScoreMixture):
        return fusion.rank(inputs, groups, k)[0]
    return fusion.rank(inputs, popularity, groups, k)[0]


def _validation_scores(ranked: np.ndarray, relevant, k: int) -> tuple[float, float]:
    """Mean Hits@k and NDCG@k, what picks the fusion."""
    from text2tracks.ranking_metrics import per_prompt_metrics

    m = per_prompt_metrics(ranked, relevant, k, allow_empty=True)
    return float(m["hits"].mean()), float(m["ndcg"].mean())
