"""Hybrid mode's fusion for prompts that continue a playlist (``seed_tracks``; issue 13).

A prompt with seed tracks is two different queries from a prompt of text alone: the beam reads
the seeds (a model trained with them), and the latent starts from the seeds' own CF latent,
anchored toward the prompt (:class:`~text2tracks.hybrid.HybridSettings`' ``seed_strength``,
:func:`text2tracks.latent.continued_latents`). The blend fitted on text prompts gives each view
the weight it earns there, which is not the weight it earns after seeds (the seeds' latent is
ALS fold-in's kind of query, often as good as the beam). :func:`fit_seed_fusion` fits the
fusion that :func:`text2tracks.fusion.fuse` applies to those prompts (``fusion.with_seeds``)
on validation continuations, their candidates gathered as hybrid mode gathers them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np


def continuation_prompts(
    recommender,
    prompts: Sequence[str],
    seed_tracks: Sequence[Iterable[str] | None],
    relevant: Sequence[Iterable[str]],
) -> tuple[list[int], list[list[str]], list[set[int]]]:
    """The rows :func:`fit_seed_fusion` can fit on: ``(rows, their known seeds, their relevant
    catalogue indices)``; a row needs a catalogue seed and a relevant catalogue track that is
    not one of its seeds (the answer never holds a seed), and text unless the seq2seq reads
    seeds (hybrid mode cannot answer seeds alone without it)."""
    from text2tracks.data import normalize_prompt

    if not len(prompts) == len(seed_tracks) == len(relevant):
        raise ValueError(
            f"need one seed list and one relevant list per prompt, got {len(prompts)} prompts, "
            f"{len(seed_tracks)} seed lists and {len(relevant)} relevant lists"
        )
    catalog = recommender.catalog
    known = set(catalog.item_ids)
    beam_reads_seeds = getattr(recommender, "max_seed_tracks", 0) > 0
    rows, seeds, sets = [], [], []
    for i, (prompt, row_seeds, row_relevant) in enumerate(
        zip(prompts, seed_tracks, relevant, strict=True)
    ):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt {i} must be a str, got {type(prompt).__name__}")
        found = [t for t in (row_seeds or ()) if t in known]
        wanted = {catalog.index_of(t) for t in row_relevant if t in known and t not in found}
        if found and wanted and (beam_reads_seeds or normalize_prompt(prompt)):
            rows.append(i)
            seeds.append(found)
            sets.append(wanted)
    return rows, seeds, sets


# the seed strengths a fit tries by default (train-diffusion, eval.continuation)
SEED_STRENGTHS = (0.0, 0.25, 0.5, 0.75)
# how many seeds a continuation cut from a validation prompt keeps: the challenge's counts
CONTINUATION_SEED_COUNTS = (1, 5, 10, 25, 100)


def continuation_examples(
    prompts: Sequence[str],
    relevant: Sequence[Sequence[str]],
    n: int,
    seed: int = 0,
    title_drop: float = 0.0,
) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """Up to ``n`` continuations cut from validation prompts and their tracks: ``(prompts,
    seeds, the tracks left to find)``. Each takes a prompt with at least two tracks, a seed
    count from :data:`CONTINUATION_SEED_COUNTS` (at most all tracks but one) and that many of
    its tracks, at random, as seeds; its title is dropped (``""``, seeds alone) with
    probability ``title_drop``. Seeded: the same arguments give the same cut."""
    if not 0.0 <= title_drop <= 1.0:
        raise ValueError(f"title_drop must be in [0, 1], got {title_drop!r}")
    rng = np.random.default_rng(seed)
    rows = [i for i, r in enumerate(relevant) if len(r) >= 2]
    rng.shuffle(rows)
    texts, seeds, wanted = [], [], []
    for i in rows[: max(int(n), 0)]:
        tracks = list(relevant[i])
        count = min(int(rng.choice(CONTINUATION_SEED_COUNTS)), len(tracks) - 1)
        chosen = set(rng.choice(len(tracks), size=count, replace=False).tolist())
        texts.append("" if rng.random() < title_drop else prompts[i])
        seeds.append([t for j, t in enumerate(tracks) if j in chosen])
        wanted.append([t for j, t in enumerate(tracks) if j not in chosen])
    return texts, seeds, wanted


def fit_seed_fusion(
    recommender,
    prompts: Sequence[str],
    seed_tracks: Sequence[Iterable[str] | None],
    relevant: Sequence[Iterable[str]],
    *,
    kind: str = "fixed",
    metric: str = "ndcg",
    k: int = 10,
    strengths: Sequence[float] | None = None,
    batch_size: int = 32,
    progress: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Fit hybrid mode's fusion for prompts with seed tracks (validation ones, never test ones).

    ``prompts`` (a title, or ``""`` for seeds alone), ``seed_tracks`` (each prompt's seeds in
    order) and ``relevant`` (the tracks it should find, e.g. the rest of the playlist). Each
    view is queried as hybrid mode queries it at depth ``k``: the beam with the seeds (its width
    ``max(k, beam_candidates)``), the latents anchored at the seeds; then
    :func:`text2tracks.hybrid.fit_fusion` fits the weights (``kind``, ``metric`` at ``k``).
    ``strengths``: the ``seed_strength`` values to try (the beam is queried once), the one
    whose fitted fusion scores best kept; ``None``: the recommender's own. Rows without a
    catalogue seed or a relevant track are skipped (``n_skipped``). The recommender is not
    changed: :meth:`~text2tracks.pipeline.Text2Tracks.fit_seed_fusion` keeps the result.

    Returns:
        ``(fusion, summary)``; the summary adds ``n_skipped``, the ``seed_strength`` kept and,
        per strength tried, the fitted fusion's score (``seed_strength_scores``).
    """
    settings = recommender.hybrid_settings
    grid = [settings.seed_strength] if strengths is None else [float(v) for v in strengths]
    if not grid or any(v is None or not 0.0 <= v <= 1.0 for v in grid):
        raise ValueError(
            f"seed strengths must be numbers in [0, 1], got {grid} (the recommender's "
            "hybrid_settings.seed_strength None: the latents do not start from the seeds)"
        )
    rows, seeds, sets = continuation_prompts(recommender, prompts, seed_tracks, relevant)
    if not rows:
        raise ValueError(
            "no prompt has both a catalogue seed track and a relevant catalogue track: "
            "cannot fit the continuation fusion"
        )
    texts = [prompts[i] for i in rows]
    longest = max(len(row) for row in seeds)  # the seeds are kept out of the beam's answer
    n_beam = min(max(int(k), settings.beam_candidates), len(recommender) - longest)
    fit = _Fit(recommender, texts, seeds, sets, replace(settings, beam_candidates=n_beam))
    beam = fit.beam(batch_size, progress)
    best = None
    tried: dict[str, float] = {}
    for strength in grid:
        latents = fit.latents(strength, batch_size)
        fusion, summary = fit.fusion((*beam, latents), kind, metric, k, batch_size)
        tried[str(strength)] = score = summary[f"{metric}@{k}"]["fused"]
        if best is None or score > best[0]:  # ties: the first strength tried
            best = (score, strength, fusion, summary)
    _, strength, fusion, summary = best
    summary.update(
        n_skipped=len(prompts) - len(rows), seed_strength=strength, seed_strength_scores=tried
    )
    return fusion, summary


class _Fit:
    """:func:`fit_seed_fusion`'s continuations, their views and the fit of one strength."""

    def __init__(self, recommender, texts, seeds, sets, settings) -> None:
        self.recommender, self.texts, self.seeds, self.sets = recommender, texts, seeds, sets
        self.settings = settings
        # the same for every strength tried: the seeds kept out, the faiss index
        self.exclude = [{recommender.catalog.index_of(t) for t in row} for row in seeds]
        self.factors, self.index = recommender.latent_index()

    def _batches(self, batch_size: int, desc: str, progress: bool = False):
        from tqdm.auto import tqdm

        for start in tqdm(
            range(0, len(self.texts), int(batch_size)), desc=desc, disable=not progress
        ):
            stop = start + int(batch_size)
            yield self.texts[start:stop], self.seeds[start:stop]

    def beam(self, batch_size: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
        """The beam's candidates ``(items, log-probs)``, as hybrid mode draws them."""
        import warnings

        rec, n = self.recommender, self.settings.beam_candidates
        items, scores = [], []
        with warnings.catch_warnings():  # what the model reads of the seeds: known to the caller
            warnings.filterwarnings("ignore", r"seed_tracks: |prompt \d+ has \d+ seed tracks")
            for texts, seeds in self._batches(batch_size, "continuation beams", progress):
                ids, batch_scores = rec.recommend_arrays(
                    texts,
                    k=n,
                    num_beams=n,
                    diversity=0.0,  # undiversified, as hybrid mode draws the beam
                    seed_tracks=seeds,
                    batch_size=len(texts),
                )
                rows = [[rec.catalog.index_of(t) for t in row] for row in ids]
                items.append(np.array(rows, dtype=np.int64).reshape(len(texts), n))
                scores.append(np.asarray(batch_scores).reshape(len(texts), n))
        return np.concatenate(items), np.concatenate(scores)

    def latents(self, strength: float, batch_size: int) -> np.ndarray:
        """The latents at ``seed_strength`` ``strength`` (the recommender's settings restored)."""
        rec, kept = self.recommender, self.recommender.hybrid_settings
        rec.hybrid_settings = replace(kept, seed_strength=strength)
        try:
            return np.concatenate(
                [
                    rec.sample_latents(
                        texts,
                        seed_tracks=seeds,
                        n_samples=self.settings.n_samples,
                        batch_size=len(texts),
                    )
                    for texts, seeds in self._batches(batch_size, "continuation latents")
                ]
            )
        finally:
            rec.hybrid_settings = kept

    def fusion(self, views, kind, metric, k, batch_size) -> tuple[Any, dict[str, Any]]:
        from text2tracks.hybrid import fit_fusion

        return fit_fusion(
            self.texts,
            self.sets,
            None,
            None,
            self.factors,
            settings=self.settings,
            index=self.index,
            kind=kind,
            metric=metric,
            k=k,
            batch_size=batch_size,
            item_groups=self.recommender.trie.item_nodes[0],
            views=views,
            exclude=self.exclude,
        )


__all__ = [
    "CONTINUATION_SEED_COUNTS",
    "SEED_STRENGTHS",
    "continuation_examples",
    "continuation_prompts",
    "fit_seed_fusion",
]
