"""The product's two views of a prompt, gathered once through the public API and ranked by the
API's own functions, so that every system of the diffusion benchmark measures the product.

:class:`ProductViews` wraps a :class:`~text2tracks.pipeline.Text2Tracks`:

* the beam's candidates come from ``recommend_arrays(..., diversity=0)`` (the constrained beam
  search the hybrid mode runs), the query latents from ``sample_latents`` (the latents the latent
  and hybrid modes search around);
* rankings come from :func:`text2tracks.latent.rank_latent_batch`, the function
  ``recommend(mode="latent" | "hybrid")`` ranks with, under the recommender's ``hybrid_settings``.

Gathering each view once lets one beam search serve the generative system, every fusion and the
negative-prompt curve. :func:`api_parity` checks on a batch of prompts that the rankings equal
what ``recommend_arrays`` answers in each mode. Item indices are catalogue indices until
:meth:`ProductViews.vocab_items` maps them to the benchmark's item vocabulary (``cf/``), in which
the relevant sets are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _in_chunks(fn: Callable, prompts: list, size: int, desc: str, progress: bool) -> list:
    from tqdm.auto import tqdm

    starts = range(0, len(prompts), size)
    return [
        fn(prompts[i : i + size])
        for i in tqdm(starts, desc=desc, disable=not progress, leave=False)
    ]


@dataclass
class Gathered:
    """Both views of a list of prompts.

    Attributes:
        prompts: as given; texts: normalised, as the API's fusion features see them.
        beam_items, beam_scores: ``(n, candidates)`` catalogue indices and log-probabilities.
        latents: ``(n, n_samples, dim)`` the head's query latents.
        regressor: ``(n, dim)`` the regressor's latents (None when not asked for).
    """

    prompts: list[str]
    texts: list[str]
    beam_items: np.ndarray
    beam_scores: np.ndarray
    latents: np.ndarray
    regressor: np.ndarray | None = None

    def rows(self, index: np.ndarray) -> Gathered:
        """The same views for the prompts at ``index``."""
        return Gathered(
            [self.prompts[i] for i in index],
            [self.texts[i] for i in index],
            self.beam_items[index],
            self.beam_scores[index],
            self.latents[index],
            None if self.regressor is None else self.regressor[index],
        )


class ProductViews:
    """Beam candidates, query latents and rankings of one recommender (see the module docstring).

    Args:
        recommender: a ``Text2Tracks`` with a diffusion head; its ``fusion`` and
            ``hybrid_settings`` are what the hybrid rankings use.
        vocab: the benchmark's ``ItemVocab`` (``cf/``); relevant sets are in its index space.
        batch_size: prompts per API call; progress: tqdm bars.
    """

    def __init__(self, recommender, vocab, *, batch_size: int = 32, progress: bool = False):
        self.recommender = recommender
        self.vocab = vocab
        self.batch_size = int(batch_size)
        self.progress = progress
        catalogue_ids = list(recommender.catalog.item_ids)
        self._position = {t: i for i, t in enumerate(catalogue_ids)}
        self.to_vocab = np.asarray(vocab.indices(catalogue_ids, skip_unknown=False), np.int64)
        self.to_catalogue = np.full(len(vocab), -1, dtype=np.int64)
        self.to_catalogue[self.to_vocab] = np.arange(len(catalogue_ids))
        self.factors, self.index = recommender.latent_index()

    # -------------------------------------------------------------------------- index spaces

    def catalogue_items(self, track_ids: np.ndarray) -> np.ndarray:
        """Track ids (any shape; "" = none) -> catalogue indices (-1 = none)."""
        flat = [self._position.get(t, -1) for t in np.asarray(track_ids).ravel().tolist()]
        return np.asarray(flat, dtype=np.int64).reshape(np.shape(track_ids))

    def vocab_items(self, items: np.ndarray) -> np.ndarray:
        """Catalogue indices (-1 = none) -> vocabulary indices (-1 = none)."""
        items = np.asarray(items, dtype=np.int64)
        return np.where(items >= 0, self.to_vocab[np.maximum(items, 0)], -1)

    def catalogue_sets(self, relevant: Sequence[np.ndarray]) -> list[set[int]]:
        """Vocabulary relevant items -> sets of catalogue indices (tracks outside it dropped)."""
        out = []
        for r in relevant:
            cat = self.to_catalogue[np.asarray(r, dtype=np.int64)]
            out.append(set(map(int, cat[cat >= 0])))
        return out

    def track_ids(self, vocab_items: np.ndarray) -> list[str]:
        """Vocabulary indices (in the catalogue) -> track ids, for ``like_tracks`` / ``exclude``."""
        cat = self.to_catalogue[np.asarray(vocab_items, dtype=np.int64)]
        ids = self.recommender.catalog.item_ids
        return [ids[i] for i in cat if i >= 0]

    @property
    def vocab_factors(self) -> np.ndarray:
        """The API's item factors in vocabulary order ``(n_vocab, dim)`` (zeros off-catalogue)."""
        out = np.zeros((len(self.vocab), self.factors.shape[1]), dtype=np.float32)
        out[self.to_vocab] = self.factors
        return out

    # -------------------------------------------------------------------------- the two views

    def beam(
        self, prompts: list[str], n: int, num_beams: int, batch_size: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The constrained beam search's top ``n``, undiversified, as hybrid mode draws it:
        ``(catalogue indices (b, n) int64, log-probs (b, n) float64)``."""
        size = batch_size or self.batch_size

        def call(batch: list[str]) -> tuple[np.ndarray, np.ndarray]:
            ids, scores = self.recommender.recommend_arrays(
                batch, k=n, num_beams=num_beams, diversity=0.0, batch_size=size
            )
            return self.catalogue_items(ids), scores

        outs = _in_chunks(call, prompts, size, "beam", self.progress)
        return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])

    def latents(self, prompts: list[str], batch_size: int | None = None, **options) -> np.ndarray:
        """``sample_latents(prompts, **options)``: ``(b, n_samples, dim)`` float32 (one call:
        per-prompt options such as a list of negative prompts go through whole)."""
        return self.recommender.sample_latents(
            list(prompts), batch_size=batch_size or self.batch_size, **options
        )

    def regressor_latents(self, regressor, prompts: list[str]) -> np.ndarray:
        """The regressor's one latent per prompt ``(b, dim)`` float32, from normalised prompts."""
        import torch

        from text2tracks.data import normalize_prompt

        def call(batch: list[str]) -> np.ndarray:
            with torch.inference_mode():
                cond = regressor.encode([normalize_prompt(p) for p in batch])
                return regressor.predict(cond).float().cpu().numpy()

        return np.concatenate(_in_chunks(call, prompts, 256, "regressor", self.progress))

    def gather(
        self, prompts: list[str], *, candidates: int, num_beams: int, regressor=None, **sampling
    ) -> Gathered:
        """Both views (and the regressor's latents) of ``prompts``; ``sampling``: options of
        ``sample_latents``."""
        from text2tracks.data import normalize_prompt

        items, scores = self.beam(prompts, candidates, num_beams)
        return Gathered(
            list(prompts),
            [normalize_prompt(p) for p in prompts],
            items,
            scores,
            self.latents(prompts, **sampling),
            None if regressor is None else self.regressor_latents(regressor, prompts),
        )

    # -------------------------------------------------------------------------- rankings

    def latent_ranking(self, latents: np.ndarray, k: int) -> np.ndarray:
        """Latent mode's top ``k`` around ``latents``: catalogue indices ``(b, k)``."""
        from text2tracks.latent import rank_latent_batch

        settings = self.recommender.hybrid_settings
        n = len(latents)
        return rank_latent_batch(
            "latent", k, latents, self.factors, self.index, settings, None, [""] * n, [None] * n
        )[0]

    def hybrid_ranking(
        self, views: Gathered, k: int, fusion=None, latents=None, negative=None, contrast=None
    ) -> np.ndarray:
        """Hybrid mode's top ``k`` from the gathered views: catalogue indices ``(b, k)``.

        ``fusion`` (None: the recommender's) and ``latents`` (None: the head's) may be swapped
        for another fitted fusion or another model's latents; ``negative`` (the negative
        prompts' own latents, NaN rows for none) demotes the candidates that resemble them,
        the beam's included (``hybrid_settings.negative_weight``); ``contrast``: the
        negative prompts' guidance of the beam's view (``Text2Tracks._negative_contrast``)."""
        from text2tracks.latent import rank_latent_batch

        fusion = self.recommender.fusion if fusion is None else fusion
        latents = views.latents if latents is None else latents
        return rank_latent_batch(
            "hybrid",
            k,
            latents,
            self.factors,
            self.index,
            self.recommender.hybrid_settings,
            fusion,
            views.texts,
            [None] * len(views.texts),
            (views.beam_items, views.beam_scores),
            negative,
            contrast,
            self.recommender.trie.item_nodes[0],
        )[0]

    def candidates(self, views: Gathered, k: int, latents=None):
        """The pooled candidates hybrid mode fuses (for the gate's per-prompt alphas)."""
        from text2tracks.hybrid import gather_candidates

        settings = self.recommender.hybrid_settings
        return gather_candidates(
            views.beam_items,
            views.beam_scores,
            views.latents if latents is None else latents,
            self.factors,
            index=self.index,
            latent_k=settings.latent_k,
            pool=settings.pool,
            k=k,
            item_groups=self.recommender.trie.item_nodes[0],
        )


def api_parity(
    views: ProductViews, test: Gathered, k: int, num_beams: int, **sampling: Any
) -> dict[str, Any]:
    """Whether the benchmark's generative, latent and hybrid rankings of the first batch of test
    prompts equal ``recommend_arrays`` in each mode (same batch, same options).

    The hybrid mode searches with as many beams as candidates, so it is compared only when
    ``num_beams`` equals the gathered candidates (``None`` otherwise)."""
    n = min(len(test.prompts), views.batch_size)
    batch, first = test.prompts[:n], test.rows(np.arange(n))
    api = views.recommender.recommend_arrays
    size = views.batch_size
    generative = api(batch, k=k, num_beams=num_beams, diversity=0.0, batch_size=size)[0]
    latent = api(batch, k=k, mode="latent", batch_size=size, **sampling)[0]
    out: dict[str, Any] = {
        "n_prompts": n,
        "generative": bool(
            np.array_equal(views.catalogue_items(generative), first.beam_items[:, :k])
        ),
        "latent-only": bool(
            np.array_equal(views.catalogue_items(latent), views.latent_ranking(first.latents, k))
        ),
        "hybrid": None,
    }
    if num_beams == test.beam_items.shape[1]:
        hybrid = api(batch, k=k, mode="hybrid", batch_size=size, **sampling)[0]
        out["hybrid"] = bool(
            np.array_equal(views.catalogue_items(hybrid), views.hybrid_ranking(first, k))
        )
    return out
