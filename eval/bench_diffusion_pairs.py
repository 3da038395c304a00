"""What the diffusion benchmark's two curves are measured on, chosen from the data, and their
measures (pure numpy, no model).

* Negative prompts: :func:`select_negative_pairs` picks (positive word, negative word) pairs from
  training titles; :func:`negative_share` is the share of a ranking that falls in the negative's
  playlists; :func:`target_check` says at which guidance weights the target is met.
* Inversion: :func:`select_seed_playlists` pairs each test prompt with a seed playlist that
  shares nothing with it; :func:`seed_similarity` measures how close a ranking stays to the seeds.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

PREFERRED_NEGATIVES = (
    "christmas",
    "worship",
    "sleep",
    "country",
    "gospel",
    "halloween",
    "kids",
    "disney",
    "classical",
    "metal",
)
PREFERRED_POSITIVES = (
    "party",
    "workout",
    "summer",
    "chill",
    "gym",
    "running",
    "road",
    "pop",
    "rap",
    "throwback",
    "vibes",
    "dance",
)
# Words that say nothing about the music: never a positive or negative word.
STOPWORDS = frozenset(
    "the and for with you your my our this that from are was not all new old best good one "
    "songs song music playlist playlists mix list tracks track stuff time day days vol volume "
    "de la el en le les los las del".split()
)
_WORD = re.compile(r"\w+")
# What the negative's share of a ranking counts (select_negative_pairs).
NEGATIVE_SETS = ("union", "characteristic")


# ------------------------------------------------------------------------------------ titles


def title_words(title: str) -> list[str]:
    """Distinct words (``\\w+``, 3+ characters, not only digits, not in :data:`STOPWORDS`) of a
    normalised title."""
    from text2tracks.data import normalize_prompt

    words = [
        w
        for w in _WORD.findall(normalize_prompt(title))
        if len(w) >= 3 and not w.isdigit() and w not in STOPWORDS
    ]
    return list(dict.fromkeys(words))


def title_matcher(word: str) -> re.Pattern:
    """The regex a normalised title must match to count as a ``word`` playlist."""
    return re.compile(rf"(?<!\w){re.escape(word)}(?!\w)")


def _title_matches(words: list[str], titles: list[str]) -> dict[str, np.ndarray]:
    """Per word, which of the (normalised) ``titles`` match it: a bool array."""
    out = {}
    for word in words:
        pattern = title_matcher(word)
        out[word] = np.array([bool(pattern.search(t)) for t in titles], dtype=bool)
    return out


# ------------------------------------------------------------------------------------ pairs


def _candidate_words(
    train_titles: list[str],
    test_titles: list[str],
    n_pairs: int,
    min_playlists: int,
    preferred_negatives: tuple[str, ...],
    preferred_positives: tuple[str, ...],
) -> tuple[list[str], list[str]]:
    """``(negatives, positives)`` to try, best first: the preferred negatives that title at least
    ``min_playlists`` training playlists, then the most frequent words; positives are frequent
    training words that title some test prompt, the preferred ones first."""
    df = Counter(w for t in train_titles for w in title_words(t))
    frequent = [w for w, c in df.most_common() if c >= min_playlists]
    negatives = [w for w in preferred_negatives if df.get(w, 0) >= min_playlists]
    negatives += [w for w in frequent if w not in negatives]
    test_df = Counter(w for t in test_titles for w in title_words(t))
    positives = [w for w in frequent if test_df.get(w, 0) > 0]
    positives.sort(key=lambda w: (w not in preferred_positives, -df[w]))
    return negatives[: max(4 * n_pairs, 20)], positives[:60]


def _best_positive(
    negative: str,
    positives: list[str],
    used: set[str],
    share: np.ndarray,
    train_match: dict[str, np.ndarray],
    test_match: dict[str, np.ndarray],
    max_contamination: float,
    preferred_positives: tuple[str, ...],
) -> tuple[float, str, np.ndarray] | None:
    """``(contamination, positive word, its test prompt indices)`` of the most contaminated
    positive for ``negative`` (preferred words win ties), or None. ``share``: per training
    playlist, the share of its items among the negative's items."""
    best = None
    for pos in positives:
        if pos in used or negative in pos or pos in negative:  # "00s" / "2000s" are one idea
            continue
        prompts = np.flatnonzero(test_match[pos] & ~test_match[negative])
        mask = train_match[pos] & ~train_match[negative]
        if prompts.size == 0 or not mask.any():
            continue
        key = (float(share[mask].mean()), pos in preferred_positives)
        if key[0] > max_contamination:
            continue
        if best is None or key > best[0]:
            best = (key, pos, prompts)
    if best is None:
        return None
    (contamination, _), pos, prompts = best
    return contamination, pos, prompts


def _playlist_counts(distinct: list[np.ndarray], rows: np.ndarray, n_items: int) -> np.ndarray:
    """Per item, in how many of the playlists where ``rows`` is true it occurs (``distinct``:
    each playlist's distinct items)."""
    chosen = [d for d, keep in zip(distinct, rows, strict=True) if keep]
    if not chosen:
        return np.zeros(n_items, np.int64)
    return np.bincount(np.concatenate(chosen), minlength=n_items)


def _union_and_share(
    train_items: list[np.ndarray], distinct: list[np.ndarray], titled: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(the items of the titled playlists, sorted; per playlist, the share of its items among
    them)``."""
    rows = np.flatnonzero(titled)
    union = np.unique(np.concatenate([np.zeros(0, np.int64)] + [distinct[i] for i in rows]))
    share = np.array([np.isin(items, union).mean() if len(items) else 0.0 for items in train_items])
    return union, share


def _characteristic(distinct: list[np.ndarray], titled: np.ndarray, min_share: float) -> np.ndarray:
    """The items at least ``min_share`` of whose playlists (``distinct``: each playlist's
    distinct items) are ``titled``, and one at least."""
    n_items = 1 + max((int(d[-1]) for d in distinct if d.size), default=-1)
    every = _playlist_counts(distinct, np.ones(len(distinct), bool), n_items)
    in_titled = _playlist_counts(distinct, titled, n_items)
    share = np.divide(in_titled, every, out=np.zeros(n_items), where=every > 0)
    return np.flatnonzero((in_titled > 0) & (share >= min_share))


def _check_negative_set(negative_set: str, min_share: float) -> None:
    if negative_set not in NEGATIVE_SETS or not 0 < min_share <= 1:
        raise ValueError(
            f"negative_set must be one of {NEGATIVE_SETS} and min_negative_share in (0, 1], "
            f"got {negative_set!r} and {min_share}"
        )


def select_negative_pairs(
    train_titles: list[str],
    train_items: list[np.ndarray],
    test_titles: list[str],
    n_pairs: int = 6,
    prompts_per_pair: int = 30,
    min_playlists: int = 5,
    max_contamination: float = 0.6,
    preferred_negatives: tuple[str, ...] = PREFERRED_NEGATIVES,
    preferred_positives: tuple[str, ...] = PREFERRED_POSITIVES,
    negative_set: str = "union",
    min_negative_share: float = 0.5,
) -> list[dict[str, Any]]:
    """Choose (positive word, negative word) pairs and their positive test prompts, from the data.

    Negative candidates: the preferred words that title at least ``min_playlists`` training
    playlists, then the most frequent training-title words. For each negative N, the positive
    word P (titling at least ``min_playlists`` training playlists and some test prompt that does
    not match N) is the one whose training playlists (not matching N) hold the largest mean share
    of items of N's playlists ("contamination": something to steer away from; preferred positives
    win ties), among those with at most ``max_contamination`` (above it the words are near-synonyms,
    e.g. "rap" / "hip"). Each word is used once; pairs with no contamination are dropped.

    ``negative_items``, what the negative's share of a ranking counts, is by ``negative_set``:

    * ``"union"`` (default): every track of any of N's training playlists (what contamination
      counts);
    * ``"characteristic"``: the tracks at least ``min_negative_share`` of whose training
      playlists are titled with N (the negative's own tracks: a Christmas song, not a hit that
      some Christmas playlist also holds).

    Returns ``[{"positive", "negative", "prompt_indices" (into test_titles), "contamination",
    "negative_items" (a sorted int64 array), "n_union_items"}]``.
    """
    _check_negative_set(negative_set, min_negative_share)
    from text2tracks.data import normalize_prompt

    negatives, positives = _candidate_words(
        train_titles, test_titles, n_pairs, min_playlists, preferred_negatives, preferred_positives
    )
    words = list(dict.fromkeys(negatives + positives))
    train_match = _title_matches(words, [normalize_prompt(t) for t in train_titles])
    test_match = _title_matches(words, [normalize_prompt(t) for t in test_titles])
    distinct = [np.unique(np.asarray(items, np.int64)) for items in train_items]
    pairs: list[dict[str, Any]] = []
    used: set[str] = set()
    for neg in negatives:
        if len(pairs) >= n_pairs:
            break
        if neg in used:
            continue
        neg_items, share = _union_and_share(train_items, distinct, train_match[neg])
        best = _best_positive(
            neg,
            positives,
            used,
            share,
            train_match,
            test_match,
            max_contamination,
            preferred_positives,
        )
        if best is None or best[0] <= 0:
            continue
        contamination, pos, prompts = best
        used.update((pos, neg))
        counted = neg_items
        if negative_set == "characteristic":
            counted = _characteristic(distinct, train_match[neg], min_negative_share)
        pairs.append(
            {
                "positive": pos,
                "negative": neg,
                "prompt_indices": [int(i) for i in prompts[:prompts_per_pair]],
                "contamination": contamination,
                "negative_items": counted.astype(np.int64),
                "n_union_items": int(neg_items.size),
            }
        )
    return pairs


def select_seed_playlists(
    titles: list[str],
    relevant: list[np.ndarray],
    n_seed_tracks: int,
    max_prompts: int,
    seed: int = 0,
) -> list[tuple[int, int]]:
    """Pairs ``(prompt index, seed playlist index)`` of test playlists: the seed playlist shares no
    title word and no relevant track with the prompt's and holds more than ``n_seed_tracks``
    catalogue tracks (the rest measure closeness to it)."""
    rng = np.random.default_rng(seed)
    words = [set(title_words(t)) for t in titles]
    sets = [set(map(int, r)) for r in relevant]
    donors = [j for j, r in enumerate(relevant) if len(r) > n_seed_tracks]
    order = rng.permutation(len(titles))
    pairs = []
    for i in order:
        if max_prompts and len(pairs) >= max_prompts:
            break
        for j in rng.permutation(donors)[:50]:
            if j != i and not (words[i] & words[j]) and not (sets[i] & sets[j]):
                pairs.append((int(i), int(j)))
                break
    return pairs


# ------------------------------------------------------------------------------------ measures


def negative_share(items: np.ndarray, negative_items: np.ndarray, k: int) -> np.ndarray:
    """Per prompt, the share of the top ``k`` (-1 = none) that lies in ``negative_items``."""
    top = np.asarray(items)[:, :k]
    return np.isin(top, np.asarray(negative_items, dtype=np.int64)).sum(1) / float(k)


def hits_through_negative(
    items: np.ndarray, relevant: list[set[int]], negative_items: list[np.ndarray], k: int
) -> float:
    """Of the prompts whose top ``k`` holds a relevant item, the share whose every relevant item
    there lies in that prompt's ``negative_items``: the hits that removing the negative's
    tracks from the list would lose (before refilling it), so the floor that any control
    halving the negative's share works against."""
    hit = through = 0
    for row, rel, neg in zip(np.asarray(items)[:, :k], relevant, negative_items, strict=True):
        found = [int(i) for i in row if int(i) in rel]
        if found:
            hit += 1
            through += bool(np.isin(found, neg).all())
    return through / hit if hit else 0.0


def seed_similarity(
    items: np.ndarray, item_factors: np.ndarray, seed_means: np.ndarray, k: int
) -> np.ndarray:
    """Per prompt, mean cosine of the top-k items' factors to the seed tracks' mean factor."""
    top = np.asarray(items)[:, :k]
    f = item_factors[np.clip(top, 0, None)]
    f = f / (np.linalg.norm(f, axis=-1, keepdims=True) + 1e-12)
    s = seed_means / (np.linalg.norm(seed_means, axis=-1, keepdims=True) + 1e-12)
    cos = np.einsum("bkd,bd->bk", f, s).astype(np.float64)
    return np.nanmean(np.where(top >= 0, cos, np.nan), axis=1)


# the negative-prompt target (issue 12): the negative's share at most half, Hits@k at least 95%
MAX_SHARE_RATIO, MIN_HITS_RATIO = 0.5, 0.95


def target_check(
    curve: list[dict[str, Any]], view: str = "latent", key: str = "w"
) -> dict[str, Any]:
    """The negative-prompt target per point of ``curve`` (``key`` names its x: the guidance
    weight ``w`` or the hybrid ``negative_weight``): the negative's share falls by at least
    half and Hits@k by at most 5%."""
    rows = []
    for point in curve:
        without, with_neg = point[f"{view}_share_without"], point[f"{view}_share_with"]
        h0, h1 = point[f"{view}_hits_without"], point[f"{view}_hits_with"]
        share_ratio = with_neg / without if without > 0 else None
        hits_ratio = h1 / h0 if h0 > 0 else None
        ok = (
            share_ratio is not None
            and share_ratio <= MAX_SHARE_RATIO
            and (hits_ratio is None or hits_ratio >= MIN_HITS_RATIO)
            and (h0 > 0 or h1 >= h0)
        )
        rows.append(
            {key: point[key], "share_ratio": share_ratio, "hits_ratio": hits_ratio, "meets": ok}
        )
    return {"per_weight": rows, "met_at": [r[key] for r in rows if r["meets"]]}
