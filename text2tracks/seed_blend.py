"""Continuations blended with co-listening: ``recommend(..., mode="cf-blend")``.

A prompt with seed tracks is answered by the model (generative mode, the seeds read as its
input) and by item co-occurrence kNN of the seeds over the training playlists
(:class:`~text2tracks.cf_targets.ItemCosine`); the two lists are read as distributions over
their union and mixed, ``w * p_model + (1 - w) * p_knn``
(:class:`~text2tracks.candidate_rerank.ScoreMixture`, the model's scores softmaxed at a
temperature, kNN's clipped at 0 over their sum). This is what LIGER and COBRA do with a
generative retriever's candidates, and what ``eval.continuation --cf-hybrid`` measured as
``text2tracks-hybrid``: co-occurrence reads 25-100 seeds better than the model does, and the
model reads the title and a few seeds better than co-occurrence.

The weight and temperature are fitted per seed-count bucket (:data:`BLEND_BUCKETS`; a prompt
takes the first bound at or above its seed count, the last for more) on validation
continuations, by NDCG over the answer's length (:meth:`SeedBlend.fit`;
``Text2Tracks.fit_seed_blend``, ``text2tracks fit-seed-blend``). A prompt without seeds gets
the model's own answer. The blend is saved as the artifact's ``seed_blend/`` component: the
training playlists x catalogue matrix (``interactions.npz``, scipy's sparse format, read
without pickle) and ``config.json``.

Hand-written over :class:`ScoreMixture`: no library mixes a seq2seq's list with a kNN's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from text2tracks.candidate_rerank import ScoreMixture, filled_lists, top_view

SEED_BLEND_COMPONENT = "seed_blend"
BLEND_BUCKETS = (1, 5, 10, 25, 100)
# w = 1 is the model alone and w = 0 kNN alone: the fit may fall back to either
BLEND_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# the model's softmax temperatures: a 500-deep beam wants flatter ones than a top 10
BLEND_TEMPERATURES = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
# item kNN's history_power choices (0: a popular seed votes as much as a rare one)
HISTORY_POWERS = (0.0, 0.5)
FIT_DEPTH = 500  # the challenge's list length
KNN_BLOCK = 16  # prompts per dense kNN block


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


def blend_bucket(n_seeds: int) -> int:
    """The bucket of a prompt with ``n_seeds >= 1`` seeds: the first of :data:`BLEND_BUCKETS`
    at or above it (the last for more)."""
    if n_seeds < 1:
        raise ValueError(f"a blended prompt has at least one seed, got {n_seeds}")
    return next((b for b in BLEND_BUCKETS if n_seeds <= b), BLEND_BUCKETS[-1])


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
) -> Continuations:
    """Cut ``playlists`` (objects with ``prompt`` and ``track_ids``) into the challenge's nine
    seeded categories (:data:`CATEGORIES`), at most ``per_category`` playlists each (a seeded
    draw), as ``eval.continuation`` cuts its validation playlists, except that tracks outside
    the catalogue are dropped first (neither view can seed from or find them); a playlist
    enters a category when it has a track left to find."""
    if isinstance(per_category, bool) or not isinstance(per_category, int) or per_category < 1:
        raise ValueError(f"per_category must be a positive integer, got {per_category!r}")
    rng = np.random.default_rng(seed)
    known = []
    for p in playlists:
        rows = [index_of(t) for t in dict.fromkeys(p.track_ids)]
        known.append((p.prompt, [r for r in rows if r is not None]))
    out = Continuations([], [], [])
    for cat in (c for c in CATEGORIES if c.n_seeds):
        eligible = [i for i, (_, rows) in enumerate(known) if len(rows) > cat.n_seeds]
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
            out.seeds.append(np.asarray([r for j, r in enumerate(rows) if j in picked]))
            out.relevant.append({r for j, r in enumerate(rows) if j not in picked})
    return out


class SeedBlend:
    """Item co-occurrence kNN of the seeds and the mixtures that blend it with the model.

    Args:
        interactions: training playlists x catalogue items, nonzero where a playlist holds
            the track (any values; read as binary).
        history_power: item kNN's weight of a seed by its popularity
            (:class:`~text2tracks.cf_targets.ItemCosine`), where ``powers`` has none.
        mixtures: per bucket of :data:`BLEND_BUCKETS`, a fitted mixture of ``"model"`` and
            ``"item_knn"`` (none: :meth:`fit` first).
        powers: per bucket, kNN's fitted ``history_power``.
        summary: what the fit measured (kept in ``config.json``).
    """

    def __init__(
        self,
        interactions: sp.spmatrix,
        history_power: float = 0.5,
        mixtures: dict[int, ScoreMixture] | None = None,
        summary: dict[str, Any] | None = None,
        powers: dict[int, float] | None = None,
    ) -> None:
        from text2tracks.cf_targets import ItemCosine

        self.interactions = sp.csr_matrix(interactions, dtype=np.float32)
        self.cosine = ItemCosine(self.interactions, history_power)
        self.history_power = self.cosine.history_power
        self.mixtures = dict(mixtures or {})
        self.powers = {int(b): float(p) for b, p in (powers or {}).items()}
        self.summary = dict(summary or {})

    @property
    def n_items(self) -> int:
        return self.interactions.shape[1]

    @classmethod
    def from_playlists(
        cls, track_lists: Iterable[Sequence[str]], index_of: Callable[[str], int | None], n_items
    ) -> SeedBlend:
        """The kNN of training playlists given as track-id lists; ids outside the catalogue
        (``index_of`` gives None) are dropped."""
        rows, cols = [], []
        n = 0
        for n, tracks in enumerate(track_lists, start=1):
            for t in dict.fromkeys(tracks):
                i = index_of(t)
                if i is not None:
                    rows.append(n - 1)
                    cols.append(i)
        if not cols:
            raise ValueError("no training playlist holds a catalogue track: nothing to count")
        matrix = sp.csr_matrix(
            (np.ones(len(rows), np.float32), (rows, cols)), shape=(n, int(n_items))
        )
        return cls(matrix)

    # --- the kNN view and the blend ------------------------------------------------------------

    def knn_view(
        self,
        seeds: Sequence[np.ndarray],
        excluded: Sequence[np.ndarray | None],
        depth: int,
        history_power: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per prompt, kNN's best ``depth`` items and scores, ``excluded`` (and the seeds)
        left out; -1 / 0 where it has fewer. Scored :data:`KNN_BLOCK` prompts at a time: a
        dense row is the catalogue's size (2M tracks at full-MPD scale)."""
        parts = []
        for start in range(0, len(seeds), KNN_BLOCK):
            block = [np.asarray(s, np.int64) for s in seeds[start : start + KNN_BLOCK]]
            indptr = np.r_[0, np.cumsum([len(s) for s in block])]
            cols = np.concatenate(block) if indptr[-1] else np.zeros(0, np.int64)
            rows = sp.csr_matrix(
                (np.ones(len(cols), np.float32), cols, indptr), shape=(len(block), self.n_items)
            )
            dense = np.asarray(self.cosine.scores(rows, history_power), dtype=np.float64)
            for r, (s, e) in enumerate(
                zip(block, excluded[start : start + KNN_BLOCK], strict=True)
            ):
                dense[r, s] = -np.inf
                if e is not None:
                    dense[r, np.asarray(e, np.int64)] = -np.inf
            parts.append(top_view(dense, depth))
        if not parts:
            return np.zeros((0, depth), np.int64), np.zeros((0, depth))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def fitted_bucket(self, n_seeds: int) -> int:
        """The fitted bucket that serves a prompt with ``n_seeds`` seeds: its own, else the
        nearest fitted one."""
        if not self.mixtures:
            raise RuntimeError(
                "this seed blend is not fitted: run Text2Tracks.fit_seed_blend (or text2tracks "
                "fit-seed-blend) on validation playlists first"
            )
        bucket = blend_bucket(n_seeds)
        return min(self.mixtures, key=lambda b: (abs(b - bucket), b))

    def mixture_for(self, n_seeds: int) -> ScoreMixture:
        """The fitted mixture of a prompt with ``n_seeds`` seeds (:meth:`fitted_bucket`)."""
        return self.mixtures[self.fitted_bucket(n_seeds)]

    def blend(
        self,
        model_items: np.ndarray,
        model_scores: np.ndarray,
        seeds: Sequence[np.ndarray | None],
        excluded: Sequence[np.ndarray | None],
        k: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The blended ``(items, scores)`` ``(n, k)``: the model's answers ``(n, k)`` (catalogue
        indices, -1 padded, and their scores) mixed with kNN of each prompt's seeds; a prompt
        without seeds keeps the model's answer. Scores are the mixture's log-probabilities;
        tracks that neither list scores (filling a short list: kNN's order, then the model's)
        follow, each one below the last."""
        items = np.array(model_items, dtype=np.int64)
        scores = np.array(model_scores, dtype=np.float64)
        by_bucket: dict[int, list[int]] = {}
        for r, s in enumerate(seeds):
            if s is not None and len(s):
                by_bucket.setdefault(self.fitted_bucket(len(s)), []).append(r)
        for bucket, rows in by_bucket.items():
            mixture = self.mixtures[bucket]
            power = self.powers.get(bucket, self.history_power)
            knn = self.knn_view([seeds[r] for r in rows], [excluded[r] for r in rows], k, power)
            views = {"model": (items[rows], scores[rows]), "item_knn": knn}
            top, log_p = mixture.rank(views, np.zeros(self.n_items, np.int64), k)
            lists = filled_lists(top, [knn, views["model"]], k)
            for j, r in enumerate(rows):
                ranked = lists[j][:k]
                row_scores = _scores_with_fill(log_p[j], top[j], ranked)
                items[r] = -1
                scores[r] = -np.inf
                items[r, : len(ranked)] = ranked
                scores[r, : len(ranked)] = row_scores
        return items, scores

    # --- fitting --------------------------------------------------------------------------------

    def fit(
        self,
        answer: Callable[[Continuations], tuple[np.ndarray, np.ndarray]],
        data: Continuations,
        k: int = FIT_DEPTH,
        log: Callable[[str], None] | None = None,
    ) -> SeedBlend:
        """Fit each bucket's weight, temperature and kNN ``history_power`` (of
        :data:`HISTORY_POWERS`; the best NDCG@k of the bucket's mixture, ties to the first) on
        validation continuations; ``answer(part)`` gives the model's ``(items, scores)``
        ``(n, k)`` for a part of ``data`` (generative mode, the seeds read and excluded)."""
        buckets: dict[int, list[int]] = {}
        for r, s in enumerate(data.seeds):
            if len(s) and data.relevant[r]:
                buckets.setdefault(blend_bucket(len(s)), []).append(r)
        if not buckets:
            raise ValueError("no validation continuation has seeds and a track to find")
        answers = {}
        for b, rows in sorted(buckets.items()):
            if log is not None:  # the model's beam at k is the slow part of the fit
                log(
                    f"seed blend: the model answers {len(rows)} continuations of {b} seeds at k={k}"
                )
            answers[b] = answer(data.subset(rows))
        fits = {p: self._fit_power(p, data, buckets, answers, k) for p in HISTORY_POWERS}
        self.powers = {
            b: max(HISTORY_POWERS, key=lambda p, b=b: (fits[p][b][1], -HISTORY_POWERS.index(p)))
            for b in buckets
        }
        chosen = {b: fits[p][b] for b, p in self.powers.items()}
        self.mixtures = {b: mixture for b, (mixture, _) in chosen.items()}
        self.summary = {
            "k": int(k),
            "buckets": {
                str(b): {
                    "prompts": len(buckets[b]),
                    "history_power": self.powers[b],
                    "weight": m.weight_,
                    "temperature": m.temperature_,
                    "ndcg": s,
                    "model_alone": grid_end(m, 1.0),
                    "knn_alone": grid_end(m, 0.0),
                }
                for b, (m, s) in sorted(chosen.items())
            },
        }
        if log is not None:
            for b, entry in self.summary["buckets"].items():
                log(
                    f"seed blend, {b} seeds ({entry['prompts']} prompts): kNN history power "
                    f"{entry['history_power']:g}, weight "
                    f"{entry['weight']:g}, temperature {entry['temperature']:g}, NDCG@{k} "
                    f"{entry['ndcg']:.4f} (model alone {entry['model_alone']:.4f}, kNN alone "
                    f"{entry['knn_alone']:.4f})"
                )
        return self

    def _fit_power(self, power, data, buckets, answers, k) -> dict[int, tuple[ScoreMixture, float]]:
        out = {}
        for b, rows in sorted(buckets.items()):
            part = data.subset(rows)
            knn = self.knn_view(part.seeds, [None] * len(rows), k, history_power=power)
            mixture = ScoreMixture("model", "item_knn", BLEND_WEIGHTS, BLEND_TEMPERATURES, (0.0,))
            views = {"model": answers[b], "item_knn": knn}
            mixture.fit(views, part.relevant, np.zeros(self.n_items, np.int64), k, "ndcg")
            key = f"{mixture.weight_:g},{mixture.temperature_:g},0"
            out[b] = (mixture, mixture.fit_hits_[key])
        return out

    # --- saving ---------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``interactions.npz`` and ``config.json`` into ``directory``."""
        if not self.mixtures:
            raise RuntimeError("fit the seed blend before saving it")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        sp.save_npz(directory / "interactions.npz", self.interactions, compressed=True)
        config = {
            "history_power": self.history_power,
            "powers": {str(b): p for b, p in sorted(self.powers.items())},
            "mixtures": {str(b): m.to_dict() for b, m in sorted(self.mixtures.items())},
            "summary": self.summary,
        }
        (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path, n_items: int | None = None) -> SeedBlend:
        """Read a saved blend; ``n_items``: the catalogue size it must match."""
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        matrix = sp.load_npz(directory / "interactions.npz")  # plain arrays, no pickle
        if n_items is not None and matrix.shape[1] != n_items:
            raise ValueError(
                f"{directory}: the seed blend counts {matrix.shape[1]} items but the catalogue "
                f"has {n_items}; fit it again on this artifact (text2tracks fit-seed-blend)"
            )
        mixtures = {int(b): ScoreMixture.from_dict(m) for b, m in config["mixtures"].items()}
        powers = {int(b): float(p) for b, p in config.get("powers", {}).items()}
        return cls(matrix, float(config["history_power"]), mixtures, config.get("summary"), powers)


def grid_end(mixture: ScoreMixture, weight: float) -> float:
    """The fit's best score at one end of the weight grid (1: the model alone, 0: kNN)."""
    return max(v for key, v in mixture.fit_hits_.items() if float(key.split(",")[0]) == weight)


def _scores_with_fill(log_p: np.ndarray, top: np.ndarray, ranked: list[int]) -> np.ndarray:
    """``ranked``'s scores: the mixture's log-probability where it ranked the item, then one
    below the previous for each item filled in."""
    known = {int(i): float(s) for i, s in zip(top, log_p, strict=True) if i >= 0 and np.isfinite(s)}
    out = np.empty(len(ranked))
    last = 0.0
    for j, item in enumerate(ranked):
        last = known.get(item, last - 1.0)
        out[j] = last
    return out


class SeedBlendMixin:
    """:class:`~text2tracks.pipeline.Text2Tracks`' ``mode="cf-blend"``: its seed blend (read
    from the artifact's ``seed_blend/`` on first use, or fitted by :meth:`fit_seed_blend`)."""

    _seed_blend: SeedBlend | None = None
    _seed_blend_changed: bool = False  # fitted in memory since it was loaded

    @property
    def seed_blend(self) -> SeedBlend | None:
        """The fitted :class:`SeedBlend` (``None``: the artifact has none and none was fitted)."""
        source = getattr(self, "_source_dir", None)
        if self._seed_blend is None and source is not None:
            directory = Path(source) / SEED_BLEND_COMPONENT
            if SEED_BLEND_COMPONENT in self._components and directory.is_dir():
                self._seed_blend = SeedBlend.load(directory, len(self))
        return self._seed_blend

    def fit_seed_blend(
        self,
        train_playlists: Iterable,
        validation_playlists: Iterable,
        *,
        k: int = FIT_DEPTH,
        per_category: int = 50,
        batch_size: int = 32,
        log: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Fit ``mode="cf-blend"`` and keep it (:meth:`save_pretrained` writes it).

        Args:
            train_playlists: the playlists the model was trained on (objects with
                ``track_ids``): kNN counts their co-occurrences.
            validation_playlists: held-out playlists (``prompt``, ``track_ids``), cut into the
                challenge's seeded categories (:func:`continuations`, ``per_category`` each);
                without a model that reads seeds, the categories without a title are left out.
            k: the answers' length the mixtures are fitted at (NDCG@k; the challenge's 500).

        Returns:
            The fit's summary (per bucket: prompts, weight, temperature, NDCG@k of the blend,
            the model alone and kNN alone; kNN's history power).
        """
        blend = SeedBlend.from_playlists(
            (p.track_ids for p in train_playlists), self._catalogue_index, len(self)
        )
        data = continuations(validation_playlists, self._catalogue_index, per_category)
        if not self.max_seed_tracks:  # a prompt of seeds alone needs a model that reads them
            data = data.subset([i for i, text in enumerate(data.texts) if text.strip()])
        ids = self.catalog.item_ids

        def answer(part: Continuations) -> tuple[np.ndarray, np.ndarray]:
            import warnings

            seeds = [[ids[i] for i in s] for s in part.seeds]
            read = {"seed_tracks": seeds} if self.max_seed_tracks else {"exclude": seeds}
            with warnings.catch_warnings():  # the 25-100 seed prompts are cut, as expected
                warnings.filterwarnings("ignore", "prompt .* more than the model reads")
                _, items, scores = self._rank(part.texts, k, batch_size=batch_size, **read)
            return items, scores

        self._seed_blend = blend.fit(answer, data, k, log)
        self._seed_blend_changed = True
        return blend.summary

    def _check_blend(self) -> SeedBlend:
        blend = self.seed_blend
        if blend is None:
            where = getattr(self, "_source_dir", None) or "this recommender"
            raise ValueError(
                f"mode='cf-blend' needs a fitted seed blend, but {where} has no "
                f"'{SEED_BLEND_COMPONENT}/' component; fit one (text2tracks fit-seed-blend, or "
                "Text2Tracks.fit_seed_blend) or use mode='generative'"
            )
        return blend

    def _blend_batch(self, texts, excluded, k, num_beams, first_index, diversity, seeds):
        """One batch of ``mode="cf-blend"`` (its blend checked by the call, ``_check_blend``):
        generative mode's answer (the seeds read by a model that reads them), then blended with
        kNN of the seeds."""
        read = seeds if self.max_seed_tracks else [None] * len(texts)
        items, scores = self._generative_batch(
            texts, excluded, k, num_beams, first_index, diversity, read
        )
        return self.seed_blend.blend(items, scores, seeds, excluded, k)
