"""Draws of the synthetic MPD (:mod:`semantic_ids.synthetic`), one slice at a time: the
config, the Zipf-Mandelbrot sampling, :func:`generate_slice` and the hashed track metadata
(:class:`TrackTable`).

The shape, and the real MPD figures it is anchored to (1,000,000 playlists, 66,346,428 rows,
2,262,292 distinct tracks, 295,860 artists, 734,684 albums, 92,944 distinct titles; lengths
5-250, mean 66.35, median 49; the most common track in 4.7% of playlists, title in ~1%):

- Playlist length: log-normal with median 49 and mean 66, clipped to [5, 250].
- Track popularity: Zipf-Mandelbrot, ``p(rank) ~ 1 / (rank + q)^a`` over a universe of ``U``
  tracks, sampled by its continuous inverse CDF (no table, so constant memory). ``U`` grows with
  the number of playlists so that the expected number of distinct tracks follows a Heaps curve
  through the real anchor: ``2.26M * (n_playlists / 1M) ** 0.54`` (which gives ~190k at 10k
  playlists, as in the 6,362-playlist development sample).
- Topics: a playlist's title fixes one of ``n_topics`` topics, and about half of its tracks are
  drawn from that topic's own Zipf over its share of the universe, so titles, tracks and artists
  co-occur as they do in real playlists (CF and title kNN have structure to find).
- Artists and albums: consecutive tracks of a topic share an artist (~8 tracks each) and an
  album (~3 tracks each), so popular artists have popular tracks; half the rows follow
  the previous row's artist, so a playlist names fewer artists than tracks (real: ~0.6).
- Titles: a Zipf over a title universe (single common words first, then two- or three-word
  titles), written with realistic surface variation (case, trailing emoji or punctuation), so
  there are more distinct raw titles than normalised ones; ~2% of playlists have a description.
- Track URIs, names and durations are hash functions of the track index, so a track looks the
  same in every slice without any per-track state.

Slice ``s`` depends only on ``(seed, s)``; writing the slices as files is
:mod:`semantic_ids.synthetic`'s job.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

SLICE_SIZE = 1000
REAL_MPD_PLAYLISTS = 1_000_000
REAL_MPD_TRACKS = 2_262_292
HEAPS_EXPONENT = 0.54
ARTIST_TRACKS = 8  # tracks per artist (real MPD: 2.26M tracks / 296k artists)

_WORDS = (
    "chill country rap workout party summer oldies throwback worship vibes christmas rock "
    "love jams road trip sleep dance study gym feels lit sad happy morning night drive "
    "classics hits indie pop jazz blues soul funk disco house techno edm hip hop rnb "
    "acoustic piano relax focus coffee rain beach sunshine winter fall spring wedding "
    "running cardio yoga throwbacks country roadtrip old school new music favorites mix "
    "songs playlist tunes bangers slow fast good best my the of and for with in on"
).split()
_NAME_WORDS = (
    "river stone blue golden wild young little big black white silver night day fire ice "
    "moon sun star city lake crystal velvet electric neon paper glass iron royal broken "
    "midnight echo shadow thunder ocean desert mountain valley garden ghost angel "
    "heart soul dream light dark sweet bitter honey sugar summer winter northern southern"
).split()
_SURFACE = ("", "", "", "", "", " 🔥", "!", " 2.0", " ☀️", " <3")


@dataclass(frozen=True)
class SyntheticConfig:
    """How a synthetic MPD is drawn.

    Attributes:
        n_playlists: playlists in the set (``pid`` 0 .. n_playlists - 1).
        seed: every draw depends on ``(seed, slice index)`` only.
        n_tracks: size of the track universe ``U``; ``None`` picks it from the Heaps curve.
        track_exponent, track_offset: ``a`` and ``q`` of the track Zipf-Mandelbrot.
        n_topics: topics (a title fixes one); ``topic_share`` of tracks come from the topic.
        n_titles: size of the title universe; ``title_exponent``, ``title_offset`` its Zipf.
        length_median, length_mean, min_length, max_length: playlist lengths.
        description_share: share of playlists with a description.
        artist_share: share of rows that take another track by the previous row's artist.
        slice_size: playlists per MPD slice file and per Parquet row group.
    """

    n_playlists: int
    seed: int = 0
    n_tracks: int | None = None
    track_exponent: float = 1.0
    track_offset: float = 150.0
    n_topics: int = 200
    topic_share: float = 0.5
    n_titles: int = 200_000
    title_exponent: float = 1.0
    title_offset: float = 8.0
    length_median: float = 49.0
    length_mean: float = 66.35
    min_length: int = 5
    max_length: int = 250
    description_share: float = 0.019
    artist_share: float = 0.6
    slice_size: int = SLICE_SIZE
    universe: int = field(init=False)

    def __post_init__(self) -> None:
        if int(self.n_playlists) < 1:
            raise ValueError(f"n_playlists must be >= 1, got {self.n_playlists}")
        if not all(
            0.0 <= v <= 1.0 for v in (self.topic_share, self.description_share, self.artist_share)
        ):
            raise ValueError("topic_share, description_share and artist_share must be in [0, 1]")
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(
                f"need 1 <= min_length <= max_length, got {self.min_length}, {self.max_length}"
            )
        if self.length_mean <= self.length_median or self.length_median <= 0:
            raise ValueError("need 0 < length_median < length_mean (a right-skewed log-normal)")
        if int(self.n_topics) < 1 or int(self.slice_size) < 1 or int(self.n_titles) < 1:
            raise ValueError("n_topics, n_titles and slice_size must be >= 1")
        if self.n_tracks is not None and int(self.n_tracks) < self.n_topics:
            raise ValueError(f"n_tracks must be >= n_topics ({self.n_topics}), got {self.n_tracks}")
        universe = int(self.n_tracks) if self.n_tracks is not None else self._heaps_universe()
        # a multiple of n_topics, so that topic-local index r * n_topics + topic stays < universe
        universe = max(self.n_topics, universe - universe % self.n_topics)
        object.__setattr__(self, "universe", universe)

    @property
    def n_slices(self) -> int:
        return -(-self.n_playlists // self.slice_size)

    def target_distinct_tracks(self) -> float:
        """Distinct tracks the real MPD's Heaps curve predicts for this many playlists."""
        return REAL_MPD_TRACKS * (self.n_playlists / REAL_MPD_PLAYLISTS) ** HEAPS_EXPONENT

    def _heaps_universe(self) -> int:
        """The universe ``U`` whose expected distinct count after all draws hits the target."""
        target = self.target_distinct_tracks()
        rows = self.n_playlists * self.length_mean
        lo, hi = target, target * 64.0
        for _ in range(40):  # bisection on U: expected distinct grows with U
            mid = math.sqrt(lo * hi)
            if _expected_distinct(int(mid), rows, self.track_exponent, self.track_offset) < target:
                lo = mid
            else:
                hi = mid
        return int(math.ceil(hi))


def _expected_distinct(universe: int, draws: float, a: float, q: float) -> float:
    """E[#distinct] after ``draws`` Zipf-Mandelbrot draws over ``universe`` (chunked, O(1) memory)."""
    total = 0.0
    norm = _zm_mass(universe, a, q)
    for start in range(0, universe, 1 << 20):
        r = np.arange(start, min(universe, start + (1 << 20)), dtype=np.float64)
        p = (_zm_cdf(r + 1, a, q) - _zm_cdf(r, a, q)) / norm
        total += float(np.sum(-np.expm1(-draws * p)))
    return total


def _zm_cdf(x: np.ndarray | float, a: float, q: float):
    """Unnormalised continuous CDF of (x + q)^-a from 0 to x."""
    if abs(a - 1.0) < 1e-9:
        return np.log((x + q) / q)
    return ((x + q) ** (1.0 - a) - q ** (1.0 - a)) / (1.0 - a)


def _zm_mass(universe: int, a: float, q: float) -> float:
    return float(_zm_cdf(float(universe), a, q))


def zipf_ranks(
    rng: np.random.Generator, size: int, universe: int, a: float, q: float
) -> np.ndarray:
    """``size`` int64 ranks in ``[0, universe)`` with ``p(rank) ~ (rank + q)^-a`` (inverse CDF)."""
    u = rng.random(size) * _zm_mass(universe, a, q)
    if abs(a - 1.0) < 1e-9:
        x = q * np.exp(u) - q
    else:
        x = (u * (1.0 - a) + q ** (1.0 - a)) ** (1.0 / (1.0 - a)) - q
    return np.minimum(x.astype(np.int64), universe - 1)


def _mix(values: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of ``values`` (uint64) xor a salt: a fixed pseudo-random function of an index."""
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (salt + 1)) % 2**64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


_B62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", np.uint8)


def _base62(keys: np.ndarray, salt: int, width: int = 22) -> list[str]:
    """A ``width``-character base-62 string per key, like Spotify's 22-character ids."""
    h1, h2 = _mix(keys, salt), _mix(keys, salt + 7)
    digits = np.empty((keys.size, width), dtype=np.uint8)
    for j in range(width):
        h = h1 if j < 11 else h2
        digits[:, j] = _B62[(h % np.uint64(62)).astype(np.intp)]
        if j < 11:
            h1 = h1 // np.uint64(62)
        else:
            h2 = h2 // np.uint64(62)
    return digits.view(f"S{width}").ravel().astype(str).tolist()


def _words(
    keys: np.ndarray,
    salt: int,
    vocab: tuple[str, ...],
    n_min: int,
    n_max: int,
    title_case: bool = True,
) -> list[str]:
    """A short deterministic phrase per key, drawn from ``vocab``."""
    h = _mix(keys, salt)
    n_words = (n_min + (h % np.uint64(n_max - n_min + 1))).astype(np.intp)
    picks = [
        (_mix(keys, salt + 1 + j) % np.uint64(len(vocab))).astype(np.intp) for j in range(n_max)
    ]
    words = [w.capitalize() for w in vocab] if title_case else list(vocab)
    cols = [[words[i] for i in p.tolist()] for p in picks]
    return [" ".join(col[k] for col in cols[:n]) for k, n in enumerate(n_words.tolist())]


def title_text(title_ranks: np.ndarray) -> list[str]:
    """Normalised title of each title rank: common single words first, then word pairs/triples."""
    out = []
    n_single = len(_WORDS)
    multi = _words(title_ranks, 11, _WORDS, 2, 3, title_case=False)
    for k, rank in enumerate(title_ranks.tolist()):
        out.append(_WORDS[rank] if rank < n_single else multi[k])
    return out


@dataclass
class SyntheticSlice:
    """One slice of playlists as arrays: rows of playlist ``p`` are ``indptr[p]:indptr[p+1]``."""

    pids: np.ndarray  # int64 (n,)
    titles: list[str]
    descriptions: list[str | None]
    indptr: np.ndarray  # int64 (n + 1,)
    tracks: np.ndarray  # int64 (rows,) track indices in the universe
    followers: np.ndarray
    edits: np.ndarray
    modified_at: np.ndarray
    collaborative: np.ndarray


def generate_slice(config: SyntheticConfig, index: int) -> SyntheticSlice:
    """Draw slice ``index`` (playlists ``index * slice_size`` ...); depends on (seed, index) only."""
    if not 0 <= index < config.n_slices:
        raise ValueError(f"slice index must be in [0, {config.n_slices}), got {index}")
    rng = np.random.default_rng([config.seed, index])
    start = index * config.slice_size
    n = min(config.slice_size, config.n_playlists - start)
    pids = np.arange(start, start + n, dtype=np.int64)

    # 1. lengths: log-normal with the real median and mean, clipped to the real range
    sigma = math.sqrt(2.0 * math.log(config.length_mean / config.length_median))
    # drawn 5% long: clipping at max_length and removing repeated tracks take about that back
    lengths = rng.lognormal(math.log(1.05 * config.length_median), sigma, n)
    lengths = np.clip(np.rint(lengths), config.min_length, config.max_length).astype(np.int64)

    # 2. titles: Zipf over the title universe; the title fixes the topic
    title_ranks = zipf_ranks(rng, n, config.n_titles, config.title_exponent, config.title_offset)
    topics = _mix(title_ranks, 3) % np.uint64(config.n_topics)
    surface = rng.random(n)
    titles = []
    for k, base in enumerate(title_text(title_ranks)):
        s = surface[k]
        if s < 0.25:
            base = base.title()
        elif s < 0.30:
            base = base.upper()
        titles.append(base + _SURFACE[int(s * 1000) % len(_SURFACE)])
    has_desc = rng.random(n) < config.description_share
    desc_text = _words(pids[has_desc], 17, _WORDS, 3, 8, title_case=False)
    descriptions: list[str | None] = [None] * n
    for k, text in zip(np.flatnonzero(has_desc).tolist(), desc_text, strict=True):
        descriptions[k] = text

    # 3. tracks: half from the global Zipf, half from the topic's own Zipf over its share of U
    rows = int(lengths.sum())
    row_playlist = np.repeat(np.arange(n, dtype=np.int64), lengths)
    tracks = zipf_ranks(rng, rows, config.universe, config.track_exponent, config.track_offset)
    local = rng.random(rows) < config.topic_share
    per_topic = config.universe // config.n_topics
    local_rank = zipf_ranks(
        rng, int(local.sum()), per_topic, config.track_exponent, config.track_offset
    )
    tracks[local] = local_rank * config.n_topics + topics[row_playlist[local]].astype(np.int64)

    # 3b. artist runs: some rows take another track by the previous row's artist (tracks of one
    # artist are ARTIST_TRACKS consecutive local ranks of one topic), as real playlists repeat
    # artists (real MPD: ~0.6 artists per track in a playlist)
    follow = rng.random(rows) < config.artist_share
    follow[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = False  # not a playlist's first row
    prev = tracks[np.flatnonzero(follow) - 1]
    block = (prev // config.n_topics) // ARTIST_TRACKS * ARTIST_TRACKS
    offset = (prev // config.n_topics) % ARTIST_TRACKS  # another track of the artist, never prev
    local = block + (offset + rng.integers(1, ARTIST_TRACKS, prev.size)) % ARTIST_TRACKS
    new = local * config.n_topics + prev % config.n_topics
    tracks[follow] = np.where(new < config.universe, new, prev)

    # 4. a track once per playlist (first occurrence kept, order kept)
    key = row_playlist * config.universe + tracks
    _, first = np.unique(key, return_index=True)
    keep = np.zeros(rows, dtype=bool)
    keep[first] = True
    tracks = tracks[keep]
    counts = np.bincount(row_playlist[keep], minlength=n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])

    followers = np.maximum(1, rng.zipf(2.0, n)).astype(np.int64)
    edits = 1 + rng.geometric(0.05, n).astype(np.int64)
    modified_at = 1_262_304_000 + rng.integers(0, 7 * 365 * 86400, n)
    collaborative = rng.random(n) < 0.02
    return SyntheticSlice(
        pids, titles, descriptions, indptr, tracks, followers, edits, modified_at, collaborative
    )


class TrackTable:
    """Metadata of the tracks of one slice, as functions of their universe index."""

    def __init__(self, config: SyntheticConfig, tracks: np.ndarray) -> None:
        self.unique, self.inverse = np.unique(tracks, return_inverse=True)
        u = self.unique.astype(np.uint64)
        topic = self.unique % config.n_topics
        local = self.unique // config.n_topics
        self.artist = (local // ARTIST_TRACKS) * config.n_topics + topic
        self.album = (local // 3) * config.n_topics + topic
        seed = config.seed
        self.track_uri = ["spotify:track:" + s for s in _base62(u, 100 + seed)]
        self.artist_uri = [
            "spotify:artist:" + s for s in _base62(self.artist.astype(np.uint64), 200 + seed)
        ]
        self.album_uri = [
            "spotify:album:" + s for s in _base62(self.album.astype(np.uint64), 300 + seed)
        ]
        self.track_name = _words(u, 400 + seed, _NAME_WORDS, 1, 4)
        self.artist_name = _words(self.artist.astype(np.uint64), 500 + seed, _NAME_WORDS, 1, 3)
        self.album_name = _words(self.album.astype(np.uint64), 600 + seed, _NAME_WORDS, 1, 4)
        self.duration_ms = (90_000 + _mix(u, 700 + seed) % np.uint64(270_000)).astype(np.int64)


def iter_slices(config: SyntheticConfig) -> Iterator[SyntheticSlice]:
    """Slices in order; only one is alive at a time."""
    for index in range(config.n_slices):
        yield generate_slice(config, index)
