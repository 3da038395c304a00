"""Continuation prompts cut from playlists as the RecSys Challenge 2018 cut them: the ten
categories (:data:`CATEGORIES`, shared by ``mode="cf-blend"``'s fit and ``eval.continuation``)
and the validation continuations a seed blend is fitted on (:func:`continuations`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Category:
    """One kind of continuation prompt (the RecSys Challenge 2018's ten): with or without the
    title, the first ``n_seeds`` tracks or ``n_seeds`` drawn at random."""

    name: str
    title: bool
    n_seeds: int
    random: bool = False


CATEGORIES = (
    Category("title_only", True, 0),
    Category("title_first1", True, 1),
    Category("title_first5", True, 5),
    Category("first5", False, 5),
    Category("title_first10", True, 10),
    Category("first10", False, 10),
    Category("title_first25", True, 25),
    Category("title_random25", True, 25, random=True),
    Category("title_first100", True, 100),
    Category("title_random100", True, 100, random=True),
)


@dataclass
class Continuations:
    """Validation continuations to fit on: per prompt its text, seed indices (catalogue order)
    and the indices of the tracks to find."""

    texts: list[str]
    seeds: list[np.ndarray]
    relevant: list[set[int]]

    def subset(self, rows: Sequence[int]) -> Continuations:
        return Continuations(
            [self.texts[i] for i in rows],
            [self.seeds[i] for i in rows],
            [self.relevant[i] for i in rows],
        )


def continuations(
    playlists: Iterable,
    index_of: Callable[[str], int | None],
    per_category: int = 50,
    seed: int = 0,
    title_only: bool = False,
) -> Continuations:
    """Cut ``playlists`` (objects with ``prompt`` and ``track_ids``) into the challenge's nine
    seeded categories (:data:`CATEGORIES`), and with ``title_only`` its title-only one last,
    at most ``per_category`` playlists each (a seeded draw), as ``eval.continuation`` cuts its
    validation playlists, except that tracks outside the catalogue are dropped first (no view
    can seed from or find them); a playlist enters a category when it has a track left to
    find (and, for title only, a title)."""
    if isinstance(per_category, bool) or not isinstance(per_category, int) or per_category < 1:
        raise ValueError(f"per_category must be a positive integer, got {per_category!r}")
    rng = np.random.default_rng(seed)
    known = []
    for p in playlists:
        rows = [index_of(t) for t in dict.fromkeys(p.track_ids)]
        known.append((p.prompt, [r for r in rows if r is not None]))
    out = Continuations([], [], [])
    order = [c for c in CATEGORIES if c.n_seeds] + [c for c in CATEGORIES if not c.n_seeds]
    for cat in order[: len(order) if title_only else -1]:
        eligible = [
            i
            for i, (prompt, rows) in enumerate(known)
            if len(rows) > cat.n_seeds and (cat.n_seeds or prompt.strip())
        ]
        if len(eligible) > per_category:
            eligible = sorted(rng.choice(eligible, per_category, replace=False).tolist())
        for i in eligible:
            prompt, rows = known[i]
            picked = (
                set(rng.choice(len(rows), cat.n_seeds, replace=False).tolist())
                if cat.random
                else set(range(cat.n_seeds))
            )
            out.texts.append(prompt if cat.title else "")
            out.seeds.append(np.asarray([r for j, r in enumerate(rows) if j in picked], np.int64))
            out.relevant.append({r for j, r in enumerate(rows) if j not in picked})
    return out
