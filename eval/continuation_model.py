"""The text2tracks rows of the continuation evaluation (:mod:`eval.continuation`): a trained
artifact's model, asked through the public API, ``Text2Tracks.recommend(prompt,
seed_tracks=...)``, as a user would.

Two systems, on the same playlists and withheld tracks as the baselines:

- ``text2tracks``: the category's prompt, its title (or ``""`` where the category hides it)
  with its seed tracks in playlist order; the API never recommends a seed back.
- ``text2tracks_title_only`` (categories with seeds): the reference, the same model given the
  playlist's title alone, the seeds excluded (in ``first5`` / ``first10`` it reads the title
  those categories hide: "what would the title alone have given"). Seeds beating it is what
  reading them adds.

Depth. Beam search is slow at the challenge's 500: the model returns ``k`` tracks (beam width
``num_beams``, default ``k``). Hits@10 is exact for ``k >= 10``; R-precision is exact for a
playlist with at most ``k`` withheld tracks and a lower bound otherwise; NDCG is a lower bound
(the ranks past ``k`` count as misses); clicks count 51 when no hit is in the first ``k`` (the
challenge's value for no hit in 500), so they are an upper bound. The table's ``depth`` column
says which depth a row has; a model row that beats a 500-deep baseline beats it at 500 too on
R-precision and NDCG.

A prompt the model cannot read (no text after normalisation, and no seed in its catalogue, or
seeds alone for a model trained without them) gets an empty answer, scored as a miss and
counted under ``unanswered``; seeds outside its catalogue are dropped before the call and
counted under ``unknown_seeds``.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MODEL_SYSTEM = "text2tracks"
MODEL_MODES = ("generative", "hybrid", "cf-blend")  # recommend's modes a model row may take
TITLE_ONLY_SYSTEM = "text2tracks_title_only"
_WARNINGS_SHOWN = 3


def load_model(artifact, device: str | None = None, num_threads: int = 0):
    """``Text2Tracks.from_pretrained(artifact, device)``, torch limited to ``num_threads``
    (0: torch's default)."""
    import torch

    from text2tracks.pipeline import Text2Tracks

    if num_threads < 0:
        raise ValueError(f"num_threads must be >= 0 (0: torch's default), got {num_threads}")
    if num_threads:
        torch.set_num_threads(num_threads)
    return Text2Tracks.from_pretrained(artifact, device=device)


@dataclass
class ModelSystem:
    """A recommender scored in the continuation evaluation.

    Attributes:
        recommender: a :class:`~text2tracks.pipeline.Text2Tracks` (or anything with its
            ``recommend``, ``catalog.item_ids`` and ``max_seed_tracks``).
        k: tracks per prompt (the rows' depth).
        num_beams: beam width (``None``: ``k``).
        batch_size: prompts per ``recommend`` call.
        log: where the API's warnings are summarised, one line per call.
        mode: ``recommend``'s mode: ``"generative"`` (the beam) or ``"hybrid"`` (the beam fused
            with the diffusion head's latents, which start from the seeds where a prompt has
            them; the recommender's ``fusion.with_seeds`` fuses those, where it has one) or
            ``"cf-blend"`` (the beam's answer blended with the co-listening view its bucket
            fitted, title kNN for title-only prompts, the artifact's ``seed_blend/``:
            :mod:`text2tracks.seed_blend`).
    """

    recommender: Any
    k: int = 50
    num_beams: int | None = None
    batch_size: int = 32
    log: Callable[[str], None] = print
    mode: str = "generative"
    _known: set[str] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("k", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.k < 10:
            raise ValueError(f"k must be at least 10 (Hits@10 is scored), got {self.k}")
        if self.num_beams is not None and self.num_beams < self.k:
            raise ValueError(f"num_beams must be at least k ({self.k}), got {self.num_beams}")
        if self.mode not in MODEL_MODES:
            raise ValueError(f"mode must be one of {MODEL_MODES}, got {self.mode!r}")

    @property
    def beams(self) -> int:
        return self.k if self.num_beams is None else self.num_beams

    def describe(self) -> dict:
        """The settings a results file records."""
        return {
            "k": self.k,
            "num_beams": self.beams,
            "mode": self.mode,
            "max_seed_tracks": int(getattr(self.recommender, "max_seed_tracks", 0)),
            "catalogue": len(self.known),
        }

    @property
    def known(self) -> set[str]:
        """The track ids of the model's catalogue."""
        if self._known is None:
            self._known = set(self.recommender.catalog.item_ids)
        return self._known

    def systems(self, category) -> list[str]:
        """The model's rows in a category: itself, and its title-only answer where seeds are."""
        return [MODEL_SYSTEM] + ([TITLE_ONLY_SYSTEM] if category.n_seeds else [])

    def rank(self, system: str, task) -> tuple[list[list[str]], dict]:
        """``(ranked track ids per playlist, notes)`` of one of :meth:`systems` on a task
        (:class:`eval.continuation.Task`)."""
        ranked, _, notes = self.rank_scored(system, task)
        return ranked, notes

    def rank_scored(self, system: str, task) -> tuple[list[list[str]], list[list[float]], dict]:
        """:meth:`rank` with each track's score in the mode
        (:class:`~text2tracks.recommendation.Recommendation`): ``(ids, scores, notes)``."""
        from text2tracks.data import normalize_prompt

        known_seeds = [[t for t in ids if t in self.known] for ids in task.seed_ids]
        unknown = sum(len(ids) for ids in task.seed_ids) - sum(len(s) for s in known_seeds)
        if system == MODEL_SYSTEM:
            texts, seeds, exclude = task.titles, known_seeds, None
        elif system == TITLE_ONLY_SYSTEM:
            texts, seeds, exclude = task.playlist_titles, None, known_seeds
        else:
            raise ValueError(
                f"unknown system {system!r}; expected one of {self.systems(task.category)}"
            )
        reads_seeds = int(getattr(self.recommender, "max_seed_tracks", 0)) > 0
        if self.mode == "hybrid":  # a prompt of seeds alone needs both views to read them
            reads_seeds = reads_seeds and bool(getattr(self.recommender, "latent_reads_seeds", 0))
        answerable = [
            bool(normalize_prompt(text)) or (seeds is not None and reads_seeds and bool(seeds[i]))
            for i, text in enumerate(texts)
        ]
        rows = [i for i, ok in enumerate(answerable) if ok]
        ranked: list[list[str]] = [[] for _ in texts]
        scores: list[list[float]] = [[] for _ in texts]
        said: Counter = Counter()
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            answers = self._recommend(
                [texts[i] for i in batch],
                said,
                seed_tracks=None if seeds is None else [seeds[i] or None for i in batch],
                exclude=None if exclude is None else [exclude[i] or None for i in batch],
            )
            for i, answer in zip(batch, answers, strict=True):
                ranked[i] = [r.track_id for r in answer]
                scores[i] = [float(r.score) for r in answer]
        if said:
            shown = "; ".join(f"{n}x {m}" for m, n in said.most_common(_WARNINGS_SHOWN))
            self.log(f"{system} on {task.category.name}: API warnings: {shown}")
        notes = {"unanswered": len(texts) - len(rows)}
        if system == MODEL_SYSTEM:
            notes["unknown_seeds"] = unknown
        return ranked, scores, notes

    def _recommend(self, texts: list[str], said: Counter, **options) -> list:
        """One API call; its warnings (seeds truncated, seeds unread) counted in ``said`` by
        kind (numbers blanked), for one summary line per category."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            answers = self.recommender.recommend(
                texts,
                k=self.k,
                num_beams=self.beams,
                batch_size=self.batch_size,
                mode=self.mode,
                **options,
            )
        said.update(re.sub(r"\d+", "N", str(w.message).split(";")[0]) for w in caught)
        return answers
