"""Joint@K of the inversion edits, as MO-DiT measures pattern-preserving retrieval (numpy and
scipy, no model).

An edit ``recommend(prompt, like_tracks=seeds, edit_strength=s)`` should keep the seeds' pattern
and take on the prompt's attribute. For one prompt and its seeds, a track of the top K

* stays in the **pattern** when it co-occurs with at least one seed in some training playlist
  (``pattern``), or, as a second definition, when it is among the ``n_neighbours`` catalogue
  tracks of highest cosine between item factor and the seeds' mean factor, seeds left out
  (``pattern_cf``);
* matches the **attribute** when it occurs in a training playlist whose title matches the
  prompt: the normalised title holds at least one of the prompt's content words
  (:func:`~eval.bench_diffusion_pairs.title_words`: 3+ characters, not only digits, not a
  stopword), each matched as :func:`~eval.bench_diffusion_pairs.title_matcher` matches the
  negative prompts' words. One shared word is enough: requiring every word of a multi-word
  prompt leaves most prompts with no titled playlist at all.

``Pattern@K``, ``Attribute@K`` and ``Joint@K`` (both at once, with either pattern) are the shares
of the top K (K slots; a missing answer counts as neither) that meet them, averaged over the
prompts that have at least one content word (the others have no attribute to match).

Both sets are found through one sparse track x training-playlist matrix, built once: a top-K
track co-occurs with the seeds when its row shares a nonzero with the seeds' playlists, computed
for the top-K tracks only, never for the whole catalogue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np
import scipy.sparse as sp

from eval.bench_diffusion_pairs import title_words
from training.diffusion_data import tracks_matrix

# The per-point keys, for K = 10: "pattern@10", "pattern_cf@10", "attribute@10", "joint@10",
# "joint_cf@10" (pattern by co-occurrence / by CF neighbourhood).
PATTERNS = {"": "co-occurs with a seed in a training playlist", "_cf": "CF neighbourhood"}


# ------------------------------------------------------------------------------------ sets


def track_playlist_matrix(train_items: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """``(n_items, n_playlists)`` float32 CSR, 1 where the track is in the training playlist
    (repeats within a playlist count once)."""
    indices = np.concatenate([np.zeros(0, np.int64), *map(np.ravel, train_items)])
    if indices.size and (indices.min() < 0 or indices.max() >= n_items):
        raise ValueError(f"training items must lie in [0, {n_items}), got {indices.min()}..")
    by_playlist = tracks_matrix(train_items, n_items)  # int32 indices where they fit (scipy)
    by_playlist.data[:] = 1.0
    return by_playlist.T.tocsr()


def prompt_title_playlists(
    prompts: Sequence[str], train_titles: Sequence[str]
) -> tuple[sp.csr_matrix, list[list[str]]]:
    """``(matrix (n_prompts, n_playlists), content words per prompt)``: 1 where the training
    playlist's normalised title holds one of the prompt's content words.

    A title's :func:`title_words` hold every ``\\w+`` token of the normalised title that could
    be a content word, so ``word in title_words(title)`` is ``title_matcher(word)`` matching it,
    for one pass over the titles instead of one per word."""
    words = [title_words(p) for p in prompts]
    wanted = {w for ws in words for w in ws}
    rows_of: dict[str, list[int]] = {w: [] for w in wanted}
    found: dict[str, set[str]] = {}  # titles repeat a lot ("chill", "country")
    for row, title in enumerate(train_titles):
        if title not in found:
            found[title] = wanted.intersection(title_words(title))
        for word in found[title]:
            rows_of[word].append(row)
    cols = [np.unique(np.asarray([r for w in ws for r in rows_of[w]], np.int64)) for ws in words]
    return tracks_matrix(cols, len(train_titles)), words


def seed_playlist_matrix(
    track_playlists: sp.csr_matrix, seeds: Sequence[np.ndarray]
) -> sp.csr_matrix:
    """``(n_prompts, n_playlists)``: 1 where the training playlist holds one of the prompt's seeds
    (the seeds' rows of ``track_playlists``, summed)."""
    seed_rows = tracks_matrix(
        [np.unique(np.asarray(s, np.int64)) for s in seeds], track_playlists.shape[0]
    )
    out = (seed_rows @ track_playlists).tocsr()
    out.data[:] = 1.0
    return out


def nearest_items(
    item_factors: np.ndarray,
    queries: np.ndarray,
    n: int,
    exclude: Sequence[np.ndarray],
    *,
    cosine: bool,
    chunk: int = 16,
) -> np.ndarray:
    """``(n_queries, n)`` item indices, best first, by cosine (or inner product) of the item
    factors ``(n_items, dim)`` to each query ``(n_queries, dim)``; a query's ``exclude`` and items
    with an all-zero factor (outside the catalogue) are left out, -1 pads when too few remain."""
    factors = np.asarray(item_factors, dtype=np.float32)
    norms = np.linalg.norm(factors, axis=1)
    valid = norms > 0
    if cosine:
        factors = factors / np.where(valid, norms, 1.0)[:, None]
    queries = np.asarray(queries, dtype=np.float32)
    out = np.full((len(queries), n), -1, dtype=np.int64)
    width = min(n, factors.shape[0])
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        if cosine:
            q = q / (np.linalg.norm(q, axis=1, keepdims=True) + 1e-12)
        scores = q @ factors.T
        scores[:, ~valid] = -np.inf
        for row, ex in enumerate(exclude[start : start + chunk]):
            scores[row, np.asarray(ex, dtype=np.int64)] = -np.inf
        part = np.argpartition(-scores, width - 1, axis=1)[:, :width]
        best = np.take_along_axis(scores, part, 1)
        order = np.argsort(-best, axis=1, kind="stable")
        top, best = np.take_along_axis(part, order, 1), np.take_along_axis(best, order, 1)
        out[start : start + len(q), :width] = np.where(np.isfinite(best), top, -1)
    return out


# ------------------------------------------------------------------------------------ measures


@dataclass
class JointSets:
    """What the top K of each prompt is judged against (item indices of one vocabulary).

    Attributes:
        track_playlists: ``(n_items, n_playlists)`` training playlists of each track.
        seed_playlists: ``(n_prompts, n_playlists)`` playlists holding a seed of the prompt.
        title_playlists: ``(n_prompts, n_playlists)`` playlists titled with a prompt word.
        neighbourhood: ``(n_prompts, n_neighbours)`` the seeds' CF neighbourhood (-1 pads).
        words: each prompt's content words; prompts without one are not averaged.
    """

    track_playlists: sp.csr_matrix
    seed_playlists: sp.csr_matrix
    title_playlists: sp.csr_matrix
    neighbourhood: np.ndarray
    words: list[list[str]]

    @property
    def measured(self) -> np.ndarray:
        """Indices of the prompts that have a content word (the ones averaged)."""
        return np.flatnonzero([bool(w) for w in self.words])

    def flags(self, items: np.ndarray) -> dict[str, np.ndarray]:
        """Per prompt and rank, bool ``(n_prompts, K)`` of the ranked ``items`` (-1 = none):
        ``pattern``, ``pattern_cf`` and ``attribute``."""
        items = np.asarray(items, dtype=np.int64)
        if len(items) != self.seed_playlists.shape[0]:
            raise ValueError(f"{len(items)} rankings for {self.seed_playlists.shape[0]} prompts")
        pattern = np.zeros(items.shape, dtype=bool)
        attribute = np.zeros(items.shape, dtype=bool)
        for b, row in enumerate(items):
            given = np.flatnonzero(row >= 0)
            candidates = self.track_playlists[row[given]]  # the top K only
            pattern[b, given] = _shares_a_playlist(candidates, self.seed_playlists[b])
            attribute[b, given] = _shares_a_playlist(candidates, self.title_playlists[b])
        in_cf = np.array(
            [
                np.isin(row, hood[hood >= 0])
                for row, hood in zip(items, self.neighbourhood, strict=True)
            ]
        ).reshape(items.shape)
        return {"pattern": pattern, "pattern_cf": in_cf & (items >= 0), "attribute": attribute}

    def measure(self, items: np.ndarray, ks: Sequence[int]) -> dict[str, float | None]:
        """``{"pattern@K", "pattern_cf@K", "attribute@K", "joint@K", "joint_cf@K"}`` for each K
        of ``ks``: shares of the top K, averaged over :attr:`measured` (None if none is)."""
        items = np.asarray(items, dtype=np.int64)
        if items.shape[1] < max(ks):
            raise ValueError(f"rankings of {items.shape[1]} items cannot give K = {max(ks)}")
        flags = self.flags(items[:, : max(ks)])
        flags["joint"] = flags["pattern"] & flags["attribute"]
        flags["joint_cf"] = flags["pattern_cf"] & flags["attribute"]
        rows = self.measured
        out: dict[str, float | None] = {}
        for k in ks:
            for name in ("joint", "joint_cf", "pattern", "pattern_cf", "attribute"):
                shares = flags[name][rows, :k].sum(1) / float(k)
                out[f"{name}@{k}"] = float(shares.mean()) if rows.size else None
        return out


def _shares_a_playlist(candidates: sp.csr_matrix, playlists: sp.csr_matrix) -> np.ndarray:
    """Per candidate row, whether it has a nonzero where the ``(1, n_playlists)`` row has one."""
    if candidates.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    return np.asarray((candidates @ playlists.T).todense()).ravel() > 0


def joint_sets(
    train_titles: Sequence[str],
    train_items: Sequence[np.ndarray],
    prompts: Sequence[str],
    seeds: Sequence[np.ndarray],
    item_factors: np.ndarray,
    n_neighbours: int = 200,
    track_playlists: sp.csr_matrix | None = None,
) -> JointSets:
    """The :class:`JointSets` of ``prompts`` and their ``seeds`` (item indices), from the training
    playlists' titles and items (indices into ``item_factors``'s rows); ``track_playlists`` reuses
    a :func:`track_playlist_matrix` built before."""
    if len(prompts) != len(seeds) or len(train_titles) != len(train_items):
        raise ValueError(
            f"need one seed set per prompt ({len(prompts)} prompts, {len(seeds)} seed sets) and "
            f"one title per training playlist ({len(train_titles)} titles, {len(train_items)})"
        )
    if track_playlists is None:
        track_playlists = track_playlist_matrix(train_items, len(item_factors))
    title_rows, words = prompt_title_playlists(prompts, train_titles)
    means = np.stack([np.asarray(item_factors)[np.asarray(s, np.int64)].mean(0) for s in seeds])
    return JointSets(
        track_playlists=track_playlists,
        seed_playlists=seed_playlist_matrix(track_playlists, seeds),
        title_playlists=title_rows,
        neighbourhood=nearest_items(item_factors, means, n_neighbours, seeds, cosine=True),
        words=words,
    )


# ------------------------------------------------------------------------------------ target


# Shares equal but for float rounding (the same items averaged in another order) count as equal.
_TOLERANCE = 1e-12


def _rises(values: list[float]) -> bool:
    return all(b >= a - _TOLERANCE for a, b in pairwise(values))


def joint_target_check(
    curve: list[dict[str, Any]],
    yardsticks: dict[str, dict[str, Any]],
    k: int = 10,
    pattern: str = "",
) -> dict[str, Any]:
    """MO-DiT's targets on one edit curve (points with ``strength`` and the measures of
    :meth:`JointSets.measure`), for the pattern definition ``pattern`` (``""`` or ``"_cf"``):

    * ``joint_above_yardsticks_at``: the strengths whose Joint@k is above every yardstick's
      (e.g. the seeds' mean alone and the prompt alone);
    * ``monotone``: Attribute@k never falls and Pattern@k never rises as the strength grows
      (``attribute_rises``, ``pattern_falls``; equal neighbours allowed);
    * ``joint_unimodal``: Joint@k never falls before its peak and never rises after it.
    """
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {sorted(PATTERNS)}, got {pattern!r}")
    joint_key, pattern_key, attribute_key = (
        f"joint{pattern}@{k}",
        f"pattern{pattern}@{k}",
        f"attribute@{k}",
    )
    points = sorted(curve, key=lambda r: r["strength"])
    bars = {name: y.get(joint_key) for name, y in yardsticks.items()}
    values = [(r.get(joint_key), r.get(pattern_key), r.get(attribute_key)) for r in points]
    out: dict[str, Any] = {"k": k, "pattern": PATTERNS[pattern], "yardsticks": bars}
    if not points or any(v is None for r in values for v in r) or None in bars.values():
        return out | {"evaluable": False}
    joint, pattern_share, attribute = ([r[i] for r in values] for i in range(3))
    above = [
        r["strength"]
        for r, j in zip(points, joint, strict=True)
        if all(j > b + _TOLERANCE for b in bars.values())
    ]
    peak = int(np.argmax(joint))
    rises, falls = _rises(attribute), _rises([-p for p in pattern_share])
    return out | {
        "evaluable": True,
        "joint_above_yardsticks_at": above,
        "joint_above_yardsticks": bool(above),
        "attribute_rises": rises,
        "pattern_falls": falls,
        "monotone": rises and falls,
        "joint_peak_strength": points[peak]["strength"],
        "joint_unimodal": _rises(joint[: peak + 1]) and _rises([-j for j in joint[peak:]]),
    }
