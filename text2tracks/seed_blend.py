"""Continuations blended with co-listening: ``recommend(..., mode="cf-blend")``.

A prompt is answered by the model (generative mode, its seeds read as its input) and by a
co-listening view of the training playlists (:mod:`text2tracks.seed_views`): item
co-occurrence kNN of the seeds, ALS fold-in of the seeds, either fused with title kNN of the
prompt's text, or title kNN alone for a prompt without seeds. The two lists are read as
distributions over their union and mixed, ``w * p_model + (1 - w) * p_view``
(:class:`~text2tracks.candidate_rerank.ScoreMixture`: the model's scores softmaxed at a
temperature, the view's clipped at 0 over their sum). This is what LIGER and COBRA do with a
generative retriever's candidates, and what ``eval.continuation --cf-hybrid`` measured as
``text2tracks-hybrid``: co-occurrence reads 25-100 seeds better than the model does, and the
model reads the title and a few seeds better than co-occurrence.

The view, weight and temperature are fitted per seed-count bucket (:data:`BLEND_BUCKETS`; a
prompt takes the first bound at or above its seed count, the last for more; prompts without
seeds are :data:`TITLE_BUCKET`) on validation continuations, by NDCG over the answer's length
(:meth:`SeedBlend.fit`; ``Text2Tracks.fit_seed_blend``, ``text2tracks fit-seed-blend``). The
blend is saved as the artifact's ``seed_blend/`` component: the training playlists x
catalogue matrix (``interactions.npz``, scipy's sparse format, read without pickle), the
training titles (``titles.json``), the ALS item factors (``als_item_factors.npy``) and
``config.json``.

Hand-written over :class:`ScoreMixture`: no library mixes a seq2seq's list with a kNN's.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from text2tracks.candidate_rerank import ScoreMixture, filled_lists
from text2tracks.seed_continuations import Continuations, continuations
from text2tracks.seed_views import ALS_FACTORS, BlendView, CFViews, fit_als_factors

SEED_BLEND_COMPONENT = "seed_blend"
BLEND_BUCKETS = (1, 5, 10, 25, 100)
TITLE_BUCKET = 0  # prompts without seeds: the model mixed with title kNN of their text
# w = 1 is the model alone and w = 0 the view alone: the fit may fall back to either
BLEND_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# the model's softmax temperatures: a 500-deep beam wants flatter ones than a top 10
BLEND_TEMPERATURES = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
FIT_DEPTH = 500  # the challenge's list length
# an option (fit_seed_blend(short_k=SHORT_DEPTH)): a short list reads its own fit, at k by
# Hits@k, and an answer of k tracks the fit whose depth is nearer k on a log scale (the short
# one up to sqrt(10 * 500) = 70 tracks). Off by default: on the title-only test prompts at
# k = 10 it moved Hits@10 by -0.017 and +0.009 on two pairs against the 500-deep fit (README)
SHORT_DEPTH = 10
SHORT_SCALE = 4  # the short fit's validation prompts a category, per_category times this


def blend_bucket(n_seeds: int) -> int:
    """The bucket of a prompt with ``n_seeds`` seeds: :data:`TITLE_BUCKET` for none, else the
    first of :data:`BLEND_BUCKETS` at or above it (the last for more)."""
    if n_seeds < 0:
        raise ValueError(f"a prompt has zero or more seeds, got {n_seeds}")
    if n_seeds == 0:
        return TITLE_BUCKET
    return next((b for b in BLEND_BUCKETS if n_seeds <= b), BLEND_BUCKETS[-1])


class SeedBlend:
    """The co-listening views (:class:`~text2tracks.seed_views.CFViews`) and, per bucket, the
    view and mixture that blend it with the model.

    Args:
        interactions: training playlists x catalogue items, nonzero where a playlist holds
            the track (any values; read as binary); or the :class:`CFViews` themselves (then
            ``titles`` and ``item_factors`` are theirs).
        history_power: item kNN's weight of a seed by its popularity, where a bucket has no
            fitted view (:meth:`knn_view`'s default).
        mixtures: per bucket (:data:`BLEND_BUCKETS`, and :data:`TITLE_BUCKET` for prompts
            without seeds), a fitted mixture of ``"model"`` and the bucket's view (none:
            :meth:`fit` first).
        summary: what the fit measured (kept in ``config.json``).
        powers: per bucket, item kNN's ``history_power`` (a blend saved before views were
            fitted: each bucket's view is item kNN at its power).
        titles: the training playlists' texts, row for row: title kNN, alone for prompts
            without seeds and fused into the seed views (none: no title views).
        item_factors: ALS item factors (none: no ALS fold-in view).
        views: per bucket, the fitted :class:`~text2tracks.seed_views.BlendView`.
        short: the fit short lists read (:meth:`fitted`): ``{"k": depth, "views": {bucket:
            BlendView}, "mixtures": {bucket: ScoreMixture}}``.
    """

    def __init__(
        self,
        interactions: sp.spmatrix | CFViews,
        history_power: float = 0.5,
        mixtures: dict[int, ScoreMixture] | None = None,
        summary: dict[str, Any] | None = None,
        powers: dict[int, float] | None = None,
        *,
        titles: Sequence[str] | None = None,
        item_factors: np.ndarray | None = None,
        views: dict[int, BlendView] | None = None,
        short: dict[str, Any] | None = None,
    ) -> None:
        from text2tracks.cf_targets import check_history_power

        self.cf = (
            interactions
            if isinstance(interactions, CFViews)
            else CFViews(interactions, titles, item_factors)
        )
        self.interactions = self.cf.interactions
        self.history_power = check_history_power(history_power)
        self.mixtures = {int(b): m for b, m in (mixtures or {}).items()}
        powers = {int(b): float(p) for b, p in (powers or {}).items()}
        self.views = {int(b): v for b, v in (views or {}).items()}
        for b in self.mixtures:
            if b not in self.views and b != TITLE_BUCKET:
                self.views[b] = BlendView("item_knn", powers.get(b, self.history_power))
        self.summary = dict(summary or {})
        # the short lists' fit: {"k", "views", "mixtures"} (none: every k reads the long one)
        self.short = short

    @property
    def n_items(self) -> int:
        return self.cf.n_items

    @property
    def powers(self) -> dict[int, float]:
        """Per seeded bucket, the history power of its item kNN view (0.5 where it reads ALS)."""
        return {b: v.history_power for b, v in self.views.items() if b != TITLE_BUCKET}

    @classmethod
    def from_playlists(
        cls,
        track_lists: Iterable[Sequence[str]],
        index_of: Callable[[str], int | None],
        n_items,
        *,
        titles: Sequence[str] | None = None,
        als_factors: int = 0,
    ) -> SeedBlend:
        """The views of training playlists given as track-id lists; ids outside the catalogue
        (``index_of`` gives None) are dropped. ``titles``: their texts, row for row (title
        kNN); ``als_factors`` > 0 fits ALS with that many factors (ALS fold-in)."""
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
        factors = fit_als_factors(matrix, als_factors) if als_factors else None
        return cls(matrix, titles=titles, item_factors=factors)

    # --- the views and the blend ---------------------------------------------------------------

    def knn_view(
        self,
        seeds: Sequence[np.ndarray],
        excluded: Sequence[np.ndarray | None],
        depth: int,
        history_power: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per prompt, item kNN's best ``depth`` items and scores, ``excluded`` (and the seeds)
        left out; -1 / 0 where it has fewer."""
        power = self.history_power if history_power is None else history_power
        view = BlendView("item_knn", power)
        return self.cf.top(view, [""] * len(seeds), seeds, excluded, depth)

    def fitted(self, k: int | None = None) -> tuple[dict[int, BlendView], dict[int, ScoreMixture]]:
        """The views and mixtures an answer of ``k`` tracks reads: of the fit whose depth is
        nearer ``k`` on a log scale, the short one (where there is one) up to the geometric
        mean of the two depths."""
        if self.short is not None and k is not None:
            if k * k <= self.short["k"] * self.summary.get("k", FIT_DEPTH):
                return self.short["views"], self.short["mixtures"]
        return self.views, self.mixtures

    def fitted_bucket(self, n_seeds: int, k: int | None = None) -> int | None:
        """The fitted bucket that serves a prompt with ``n_seeds`` seeds (in an answer of ``k``
        tracks, :meth:`fitted`): its own, else the nearest fitted one with seeds; for a prompt
        without seeds, :data:`TITLE_BUCKET` where fitted, else None (the model's answer)."""
        mixtures = self.fitted(k)[1]
        seeded = [b for b in mixtures if b != TITLE_BUCKET]
        if not seeded:
            raise RuntimeError(
                "this seed blend is not fitted: run Text2Tracks.fit_seed_blend (or text2tracks "
                "fit-seed-blend) on validation playlists first"
            )
        if n_seeds == 0:
            return TITLE_BUCKET if TITLE_BUCKET in mixtures else None
        bucket = blend_bucket(n_seeds)
        return min(seeded, key=lambda b: (abs(b - bucket), b))

    def mixture_for(self, n_seeds: int, k: int | None = None) -> ScoreMixture | None:
        """The fitted mixture of a prompt with ``n_seeds`` seeds (:meth:`fitted_bucket`)."""
        bucket = self.fitted_bucket(n_seeds, k)
        return None if bucket is None else self.fitted(k)[1][bucket]

    def blend(
        self,
        model_items: np.ndarray,
        model_scores: np.ndarray,
        seeds: Sequence[np.ndarray | None],
        excluded: Sequence[np.ndarray | None],
        k: int,
        texts: Sequence[str] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The blended ``(items, scores)`` ``(n, k)``: the model's answers ``(n, k)`` (catalogue
        indices, -1 padded, and their scores) mixed with each prompt's bucket's view. A prompt
        without seeds is mixed with title kNN of its text where that was fitted, else keeps the
        model's answer. A short answer reads the short fit's views and mixtures
        (:meth:`fitted`). Scores are the mixture's log-probabilities; tracks that
        neither list scores (filling a short list: the view's order, then the model's)
        follow, each one below the last."""
        fitted_views, mixtures = self.fitted(k)
        items = np.array(model_items, dtype=np.int64)
        scores = np.array(model_scores, dtype=np.float64)
        texts = [""] * len(items) if texts is None else [str(t) for t in texts]
        seeds = [np.zeros(0, np.int64) if s is None else np.asarray(s, np.int64) for s in seeds]
        by_bucket: dict[int, list[int]] = {}
        for r, s in enumerate(seeds):
            bucket = self.fitted_bucket(len(s), k) if len(s) or texts[r].strip() else None
            if bucket is not None:
                by_bucket.setdefault(bucket, []).append(r)
        for bucket, rows in by_bucket.items():
            mixture, view = mixtures[bucket], fitted_views[bucket]
            cf = self.cf.top(
                view, [texts[r] for r in rows], [seeds[r] for r in rows],
                [excluded[r] for r in rows], k,
            )  # fmt: skip
            views = {"model": (items[rows], scores[rows]), mixture.second: cf}
            top, log_p = mixture.rank(views, np.zeros(self.n_items, np.int64), k)
            lists = filled_lists(top, [cf, views["model"]], k)
            for j, r in enumerate(rows):
                ranked = lists[j][:k]
                items[r] = -1
                scores[r] = -np.inf
                items[r, : len(ranked)] = ranked
                scores[r, : len(ranked)] = _scores_with_fill(log_p[j], top[j], ranked)
        return items, scores

    # --- fitting --------------------------------------------------------------------------------

    def fit(
        self,
        answer: Callable[[Continuations, int], tuple[np.ndarray, np.ndarray]],
        data: Continuations,
        k: int = FIT_DEPTH,
        log: Callable[[str], None] | None = None,
        short: Continuations | None = None,
        short_k: int = SHORT_DEPTH,
    ) -> SeedBlend:
        """Fit each bucket's view (of :meth:`CFViews.candidates`), weight and temperature on
        validation continuations: the best NDCG@k of the view's mixture with the model, ties
        to the earlier view. ``answer(part, depth)`` gives the model's ``(items, scores)``
        ``(n, depth)`` for a part of ``data`` (generative mode, the seeds read and excluded).
        Prompts without seeds (and with text) fit :data:`TITLE_BUCKET` where the blend keeps
        titles. With ``short`` continuations, the short lists' fit too: at ``short_k``, by
        Hits@short_k (ties: NDCG)."""
        self.views, self.mixtures, entries = self._fit_depth(answer, data, k, "ndcg", log)
        self.summary = {"k": int(k), "buckets": entries}
        self.short = None
        if short is not None and 0 < short_k < k:
            views, mixtures, entries = self._fit_depth(answer, short, short_k, "hits", log)
            self.short = {"k": int(short_k), "views": views, "mixtures": mixtures}
            self.summary["short"] = {"k": int(short_k), "buckets": entries}
        return self

    def _fit_depth(self, answer, data: Continuations, k: int, metric: str, log):
        """``(views, mixtures, summary entries)`` per bucket, fitted at ``k`` by ``metric``."""
        buckets: dict[int, list[int]] = {}
        for r, s in enumerate(data.seeds):
            if data.relevant[r] and (len(s) or (self.cf.titles and data.texts[r].strip())):
                buckets.setdefault(blend_bucket(len(s)), []).append(r)
        if not any(b != TITLE_BUCKET for b in buckets):
            raise ValueError("no validation continuation has seeds and a track to find")
        chosen, entries = {}, {}
        for b, rows in sorted(buckets.items()):
            part = data.subset(rows)
            if log is not None:  # the model's beam at k is the slow part of the fit
                log(
                    f"seed blend: the model answers {len(rows)} continuations of {b} seeds at k={k}"
                )
            chosen[b] = self._fit_bucket(b, part, answer(part, k), k, metric)
            view, m, by_view = chosen[b]
            entries[str(b)] = entry = {
                "prompts": len(rows),
                "view": view.name,
                "weight": m.weight_,
                "temperature": m.temperature_,
                "metric": f"{metric}@{k}",
                "score": by_view[view.name],
                "model_alone": grid_end(m, 1.0),
                "view_alone": grid_end(m, 0.0),
                "by_view": by_view,
            }
            if log is not None:
                log(
                    f"seed blend, {b} seeds ({len(rows)} prompts): {view.name}, weight "
                    f"{m.weight_:g}, temperature {m.temperature_:g}, {metric}@{k} "
                    f"{entry['score']:.4f} (model alone {entry['model_alone']:.4f}, {view.name} "
                    f"alone {entry['view_alone']:.4f})"
                )
        views = {b: view for b, (view, _, _) in chosen.items()}
        return views, {b: mixture for b, (_, mixture, _) in chosen.items()}, entries

    def _fit_bucket(self, bucket, part, answers, k, metric):
        """``(view, mixture, metric@k per view)`` of one bucket."""
        seeded = bucket != TITLE_BUCKET
        candidates = self.cf.candidates(seeded, any(t.strip() for t in part.texts))
        fits = []
        for view in candidates:
            cf = self.cf.top(view, part.texts, part.seeds, [None] * len(part.seeds), k)
            mixture = ScoreMixture("model", view.name, BLEND_WEIGHTS, BLEND_TEMPERATURES, (0.0,))
            views = {"model": answers, view.name: cf}
            mixture.fit(views, part.relevant, np.zeros(self.n_items, np.int64), k, metric)
            key = f"{mixture.weight_:g},{mixture.temperature_:g},0"
            fits.append((view, mixture, mixture.fit_hits_[key]))
        view, mixture, _ = max(fits, key=lambda f: f[2])  # max keeps the earliest on ties
        return view, mixture, {v.name: s for v, _, s in fits}

    # --- saving ---------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the views' files (:meth:`CFViews.save`) and ``config.json`` into ``directory``."""
        if not self.mixtures:
            raise RuntimeError("fit the seed blend before saving it")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        kept = self.cf.save(directory)
        config = {
            "history_power": self.history_power,
            "views": {str(b): v.to_dict() for b, v in sorted(self.views.items())},
            "mixtures": {str(b): m.to_dict() for b, m in sorted(self.mixtures.items())},
            **kept,
            "summary": self.summary,
        }
        if self.short is not None:
            config["short"] = {
                "k": self.short["k"],
                "views": {str(b): v.to_dict() for b, v in sorted(self.short["views"].items())},
                "mixtures": {
                    str(b): m.to_dict() for b, m in sorted(self.short["mixtures"].items())
                },
            }
        (directory / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path, n_items: int | None = None) -> SeedBlend:
        """Read a saved blend; ``n_items``: the catalogue size it must match."""
        directory = Path(directory)
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        cf = CFViews.load(directory)
        if n_items is not None and cf.n_items != n_items:
            raise ValueError(
                f"{directory}: the seed blend counts {cf.n_items} items but the catalogue "
                f"has {n_items}; fit it again on this artifact (text2tracks fit-seed-blend)"
            )
        mixtures = {int(b): ScoreMixture.from_dict(m) for b, m in config["mixtures"].items()}
        views = {int(b): BlendView.from_dict(v) for b, v in config.get("views", {}).items()}
        short = config.get("short")
        if short is not None:
            short = {
                "k": int(short["k"]),
                "views": {int(b): BlendView.from_dict(v) for b, v in short["views"].items()},
                "mixtures": {
                    int(b): ScoreMixture.from_dict(m) for b, m in short["mixtures"].items()
                },
            }
        return cls(
            cf,
            float(config["history_power"]),
            mixtures,
            config.get("summary"),
            config.get("powers"),
            views=views,
            short=short,
        )


def grid_end(mixture: ScoreMixture, weight: float) -> float:
    """The fit's best score at one end of the weight grid (1: the model alone, 0: the view)."""
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
        als_factors: int = ALS_FACTORS,
        titles: bool = True,
        short_k: int = 0,
        log: Callable[[str], None] | None = None,
    ) -> dict[str, Any]:
        """Fit ``mode="cf-blend"`` and keep it (:meth:`save_pretrained` writes it).

        Args:
            train_playlists: the playlists the model was trained on (objects with
                ``prompt`` and ``track_ids``): the views count their co-occurrences, fit ALS
                on them and find their nearest titles.
            validation_playlists: held-out playlists (``prompt``, ``track_ids``), cut into the
                challenge's categories (:func:`continuations`, ``per_category`` each, title
                only included with ``titles``); without a model that reads seeds, the
                categories without a title are left out.
            k: the answers' length the mixtures are fitted at (NDCG@k; the challenge's 500).
            als_factors: ALS fold-in's factors (0: no ALS fold-in view).
            titles: keep the training titles: title kNN for prompts without seeds and the
                fused views (False: prompts without seeds keep the model's answer).
            short_k: a fit for short lists (:meth:`SeedBlend.fitted`) at this depth, by
                Hits@short_k on ``per_category`` x :data:`SHORT_SCALE` validation playlists a
                category (the beams are short); 0 (default): every k reads the fit at ``k``.

        Returns:
            The fit's summary (per bucket: prompts, the chosen view, weight, temperature,
            NDCG@k of the blend, of the model alone, of the view alone, and of each view; the
            same at ``short_k`` under ``"short"``).
        """
        train = list(train_playlists)
        blend = SeedBlend.from_playlists(
            (p.track_ids for p in train),
            self._catalogue_index,
            len(self),
            titles=[p.prompt for p in train] if titles else None,
            als_factors=als_factors,
        )
        validation = list(validation_playlists)

        def cut(n: int) -> Continuations:
            data = continuations(validation, self._catalogue_index, n, title_only=titles)
            if self.max_seed_tracks:
                return data
            # a prompt of seeds alone needs a model that reads them
            return data.subset([i for i, text in enumerate(data.texts) if text.strip()])

        ids = self.catalog.item_ids

        def answer(part: Continuations, depth: int) -> tuple[np.ndarray, np.ndarray]:
            import warnings

            seeds = [[ids[i] for i in s] for s in part.seeds]
            read = {"seed_tracks": seeds} if self.max_seed_tracks else {"exclude": seeds}
            with warnings.catch_warnings():  # the 25-100 seed prompts are cut, as expected
                warnings.filterwarnings("ignore", "prompt .* more than the model reads")
                _, items, scores = self._rank(part.texts, depth, batch_size=batch_size, **read)
            return items, scores

        short = cut(per_category * SHORT_SCALE) if 0 < short_k < k else None
        self._seed_blend = blend.fit(answer, cut(per_category), k, log, short, short_k)
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
        its bucket's co-listening view."""
        read = seeds if self.max_seed_tracks else [None] * len(texts)
        items, scores = self._generative_batch(
            texts, excluded, k, num_beams, first_index, diversity, read
        )
        return self.seed_blend.blend(items, scores, seeds, excluded, k, texts)
