"""Training prompts with seed tracks: which playlists carry seeds in an epoch, which of their
tracks are the seeds, whether the title is kept, and which of their other tracks are targets.

A prompt of the API is a title (possibly empty) plus seed tracks in order; the model reads the
seeds as their semantic-ID tokens after the title (:func:`text2tracks.data.seeded_prompt_ids`).
So that one model serves every category of the RecSys Challenge 2018 (title only ... title + 100
tracks, with or without the title, first tracks or a random sample), training draws per playlist
and epoch (:class:`SeedDraw`):

1. with probability ``prob`` the playlist carries seeds this epoch (only playlists with at least
   two tracks: one must be left as a target);
2. the number of seeds ``n`` is log-uniform over ``1 .. min(max_seeds, tracks - 1)``, so that 1,
   5, 25 and 100 seeds are all seen often;
3. with probability ``random_subset`` the seeds are a uniform random subset of its tracks, else
   its first ``n``; either way they keep the playlist's order;
4. with probability ``title_drop`` the title is dropped (the prompt is the seeds alone);
5. its targets are its own tracks that are not seeds (never the title-kNN teacher's list, which
   answers the title only); with ``next_window`` > 0, a prefix's targets are only the tracks
   that follow it within that window (1: TIGER's next item).

Everything is vectorised over playlists (no Python loop) and depends only on the generator the
caller passes (``(seed, epoch)``), so a resumed run sees the same draw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The most seeds read by default: the challenge's longest category is "title + 100 tracks".
DEFAULT_MAX_SEED_TRACKS = 100


@dataclass(frozen=True)
class SeedDraw:
    """How seeds are drawn per playlist and epoch (see the module docstring).

    Attributes:
        prob: share of playlists (with two tracks or more) that carry seeds in an epoch, in
            ``[0, 1]``; 0 is off.
        max_seeds: the most seeds drawn (and read by the model), >= 1.
        title_drop: with seeds, the probability that the title is left out, in ``[0, 1]``.
        random_subset: with seeds, the probability that they are a random subset of the
            playlist's tracks rather than its first tracks, in ``[0, 1]``.
        next_window: when > 0, the targets of a prefix are only the ``next_window`` tracks
            that follow it (1: the next track, TIGER's next-item task); 0: any other track.
            Random subsets keep every other track as a target.
    """

    prob: float
    max_seeds: int = DEFAULT_MAX_SEED_TRACKS
    title_drop: float = 0.3
    random_subset: float = 0.3
    next_window: int = 0

    def __post_init__(self) -> None:
        for name in ("prob", "title_drop", "random_subset"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float, np.floating))
                or not 0 <= value <= 1
            ):
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
        if (
            isinstance(self.max_seeds, bool)
            or not isinstance(self.max_seeds, (int, np.integer))
            or self.max_seeds < 1
        ):
            raise ValueError(f"max_seeds must be an integer >= 1, got {self.max_seeds!r}")
        if (
            isinstance(self.next_window, bool)
            or not isinstance(self.next_window, (int, np.integer))
            or self.next_window < 0
        ):
            raise ValueError(f"next_window must be an integer >= 0, got {self.next_window!r}")


@dataclass(frozen=True)
class EpochSeeds:
    """One epoch's draw over ``P`` playlists whose own tracks are ``items[indptr[p]:indptr[p+1]]``.

    Attributes:
        has_seeds: bool ``(P,)``, the playlist carries seeds this epoch.
        with_title: bool ``(P,)``, its prompt keeps the title (always True without seeds).
        is_seed: bool ``(n_pairs,)`` over the own (playlist, track) pairs in playlist order.
        is_target: bool ``(n_pairs,)``, the pair may be a target (a non-seed track of a
            playlist with seeds, within ``next_window`` of a prefix).
    """

    has_seeds: np.ndarray
    with_title: np.ndarray
    is_seed: np.ndarray
    indptr: np.ndarray
    items: np.ndarray
    is_target: np.ndarray

    def seeds_of(self, playlist: int) -> np.ndarray:
        """The seed items of ``playlist`` in playlist order (int64, empty without seeds)."""
        lo, hi = self.indptr[playlist], self.indptr[playlist + 1]
        return self.items[lo:hi][self.is_seed[lo:hi]]

    def n_seeds(self) -> np.ndarray:
        """Seeds per playlist, int64 ``(P,)``."""
        lengths = np.diff(self.indptr)
        owner = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
        return np.bincount(owner[self.is_seed], minlength=lengths.size).astype(np.int64)


def draw_seeds(
    indptr: np.ndarray, items: np.ndarray, draw: SeedDraw, rng: np.random.Generator
) -> EpochSeeds:
    """Draw one epoch's seeds (steps 1-4 of the module docstring) for the playlists whose own
    tracks, in order, are ``items[indptr[p]:indptr[p + 1]]``."""
    lengths = np.diff(indptr)
    n_playlists = lengths.size
    pair_playlist = np.repeat(np.arange(n_playlists, dtype=np.int64), lengths)
    # 1. who carries seeds
    has_seeds = (rng.random(n_playlists) < draw.prob) & (lengths >= 2)
    # 2. how many: log-uniform over 1 .. cap
    cap = np.clip(np.minimum(lengths - 1, draw.max_seeds), 1, None)
    u = rng.random(n_playlists)
    n_seeds = np.clip(np.floor(np.exp(u * np.log(cap + 1.0))), 1, cap).astype(np.int64)
    n_seeds[~has_seeds] = 0
    # 3. a prefix (key = position) or a random subset (key = uniform noise)
    random_subset = rng.random(n_playlists) < draw.random_subset
    position = np.arange(items.size, dtype=np.float64) - indptr[:-1][pair_playlist]
    noise = rng.random(items.size)
    key = np.where(random_subset[pair_playlist], noise, position)
    order = np.lexsort((key, pair_playlist))
    rank = np.empty(items.size, dtype=np.int64)
    rank[order] = np.arange(items.size) - indptr[:-1][pair_playlist[order]]
    is_seed = rank < n_seeds[pair_playlist]
    # 4. the title dropped or kept
    with_title = ~(has_seeds & (rng.random(n_playlists) < draw.title_drop))
    # 5. which other tracks may be targets: all, or the next_window after a prefix
    is_target = has_seeds[pair_playlist] & ~is_seed
    if draw.next_window:
        near = position < (n_seeds + draw.next_window)[pair_playlist]
        is_target &= random_subset[pair_playlist] | near
    return EpochSeeds(
        has_seeds, with_title, is_seed, np.asarray(indptr), np.asarray(items), is_target
    )


def seeded_targets(
    seeds: EpochSeeds, targets_per_playlist: int, rng: np.random.Generator
) -> np.ndarray:
    """Step 5: the own pairs (indices into ``seeds.items``) that are this epoch's targets of the
    playlists with seeds: ``targets_per_playlist`` of their non-seed tracks (those within
    ``next_window`` of a prefix) drawn uniformly without replacement (all of them when 0 or when
    fewer are left), in playlist order."""
    lengths = np.diff(seeds.indptr)
    pair_playlist = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
    eligible = np.flatnonzero(seeds.is_target)
    if not targets_per_playlist:
        return eligible
    keys = rng.gumbel(size=eligible.size)
    owner = pair_playlist[eligible]
    order = np.lexsort((-keys, owner))
    starts = np.searchsorted(owner[order], owner[order], side="left")
    rank = np.arange(order.size) - starts
    return np.sort(eligible[order[rank < targets_per_playlist]])
