"""What the API answers: :class:`Recommendation` records, built from rows of item indices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Recommendation:
    """One recommended track.

    Attributes:
        track_id: the catalogue's id of the track.
        score: higher is better; what it is depends on the mode. ``"generative"``: the
            log-probability of the track's semantic ID under constrained beam search.
            ``"latent"``: the inner product of the track's CF factor with the query latents,
            pooled over the samples (max by default). ``"hybrid"``: the fused score,
            ``alpha * z(log-prob) + (1 - alpha) * z(latent similarity)`` with each view
            normalised over the prompt's pooled candidates (a track the beam did not return gets
            that view's floor); comparable within one prompt's answer only. ``"cf-blend"``:
            the log of the blend's probability, ``w * p_model + (1 - w) * p_view``
            (:mod:`text2tracks.seed_blend`), where the blend answers the prompt.
        rank: 1 for the best track, then 2, 3, ...
        name, artist: the track's metadata from the catalogue (None where unknown).
    """

    track_id: str
    score: float
    rank: int
    name: str | None = None
    artist: str | None = None


def to_recommendations(
    items: np.ndarray,
    scores: np.ndarray,
    item_ids: Sequence[str],
    names: Sequence[str | None],
    artists: Sequence[str | None],
) -> list[list[Recommendation]]:
    """Rows of catalogue item indices and scores ``(n_prompts, k)`` -> Recommendations, best
    first (an index of -1 marks "no item" and is skipped)."""
    out = []
    for row_items, row_scores in zip(items, scores, strict=True):
        recs = []
        for item, score in zip(row_items.tolist(), row_scores.tolist(), strict=True):
            if item < 0:  # no item there (cannot happen for k <= what is left to recommend)
                continue
            recs.append(
                Recommendation(
                    track_id=item_ids[item],
                    score=float(score),
                    rank=len(recs) + 1,
                    name=names[item],
                    artist=artists[item],
                )
            )
        out.append(recs)
    return out
