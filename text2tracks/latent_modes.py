"""The latent and hybrid modes of :class:`text2tracks.pipeline.Text2Tracks`.

:class:`LatentModesMixin` is the diffusion side of the recommender: attaching a diffusion head
with its CF item factors and fusion, sampling the query latents (:meth:`sample_latents`),
ranking one batch around them (latent mode) or fusing them with beam candidates (hybrid mode),
fitting the hybrid fusion, and what :meth:`save_pretrained` writes of all this. The
computations live in :mod:`text2tracks.latent`; this class keeps their per-recommender state.

It is a part of ``Text2Tracks``, not a class of its own: it reads the recommender's
``catalog``, ``device``, ``_lock``, ``_source_dir``, ``_check_mode``, ``_catalogue_index`` and
``_generate``, and sets ``diffusion_head``, ``fusion``, ``hybrid_settings``, ``_factors``,
``_warned_default_fusion``, ``_fusion_on_disk`` and ``_fusion_summary``.

Seed tracks (MO-DiT): a head trained with ``seed_conditioning`` reads each prompt's seeds (their
mean CF factor and count) in :meth:`sample_latents` and in the latent modes of ``recommend``; a
prompt of seeds alone (empty text) gets the null prompt. Any head's latent of a prompt with seeds
then starts from the seeds themselves (``hybrid_settings.seed_strength``,
:func:`~text2tracks.latent.continued_latents`), and hybrid mode fuses such prompts by
``fusion.with_seeds`` where there is one (:meth:`fit_seed_fusion`). With ``seed_strength``
None a head without seed conditioning ignores them with one warning
(:func:`~text2tracks.latent.warn_unread_head_seeds`); seeds are never recommended back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from text2tracks.latent import (
    CatalogueFactors,
    check_diffusion_parts,
    continued_latents,
    hybrid_beam_width,
    negative_latents,
    query_latents,
    rank_latent_batch,
    warn_default_fusion,
    warn_unread_head_seeds,
)
from text2tracks.options import (
    DEFAULT_EDIT_STRENGTH,
    check_batch_size,
    latent_request,
    normalise_prompts,
    warn_long_prompts,
)
from text2tracks.storage import DiffusionToSave


class LatentModesMixin:
    """The ``"latent"`` and ``"hybrid"`` modes of :class:`~text2tracks.pipeline.Text2Tracks`
    (see this module's docstring for what it expects of the class)."""

    def _attach_diffusion(self, head, item_factors, fusion, settings) -> None:
        settings = check_diffusion_parts(head, item_factors, fusion, settings)
        head.to(self.device)
        head.eval()
        self.diffusion_head, self.fusion, self.hybrid_settings = head, fusion, settings
        self._factors = CatalogueFactors(item_factors, len(self.catalog), head.config.latent_dim)

    def _diffusion_to_save(self) -> DiffusionToSave | None:
        """What :meth:`save_pretrained` writes of the diffusion side (``None``: no head)."""
        if self.diffusion_head is None:
            return None
        fitted, summary = self._fusion_summary
        changed = self.fusion is not None and (
            (self.fusion, self.hybrid_settings) != self._fusion_on_disk
        )
        return DiffusionToSave(
            self.diffusion_head,
            self.fusion,
            self.hybrid_settings,
            fusion_changed=changed,
            summary=summary if fitted is self.fusion else {},
            item_factors=lambda: self.item_factors,
        )

    @property
    def has_diffusion(self) -> bool:
        """Whether the ``"latent"`` and ``"hybrid"`` modes are available."""
        return self.diffusion_head is not None

    @property
    def head_reads_seeds(self) -> bool:
        """Whether the diffusion head conditions on seed tracks (``seed_conditioning``)."""
        return self.diffusion_head is not None and self.diffusion_head.reads_seeds

    @property
    def latent_reads_seeds(self) -> bool:
        """Whether the latent view reads seed tracks: a seed-conditioned head, or the seeds'
        latent as an anchor (``hybrid_settings.seed_strength`` not None)."""
        return self.has_diffusion and (
            self.head_reads_seeds or self.hybrid_settings.seed_strength is not None
        )

    @property
    def item_factors(self) -> np.ndarray:
        """CF item factors ``(n_items, latent_dim)`` float32 in catalogue order (read on first use)."""
        if self.diffusion_head is None:
            raise ValueError("this recommender has no diffusion head, so no item factors")
        return self._factors.array()

    def latent_index(self):
        """``(item_factors, faiss index over them)`` of the latent modes, built on first use."""
        if self.diffusion_head is None:
            raise ValueError("this recommender has no diffusion head, so no latent index")
        return self._factors.array(), self._factors.index()

    def sample_latents(
        self,
        prompt_or_prompts: str | Sequence[str],
        *,
        negative_prompt: str | Sequence[str | None] | None = None,
        guidance_weight: float | None = None,
        like_tracks: Iterable[str] | Sequence[Iterable[str] | None] | None = None,
        edit_strength: float = DEFAULT_EDIT_STRENGTH,
        source_prompt: str | Sequence[str | None] | None = None,
        n_samples: int | None = None,
        seed: int | None = 0,
        batch_size: int = 32,
        seed_tracks: Iterable[str] | Sequence[Iterable[str] | None] | None = None,
    ) -> np.ndarray:
        """The query latents that the latent and hybrid modes search around.

        Takes the options of :meth:`recommend` (same meaning, same defaults, same checks), so
        ``recommend(..., mode="latent")`` ranks the tracks by their pooled inner product with
        exactly these latents. ``seed_tracks`` (per prompt, track ids it continues, oldest
        first; unknown ids ignored with a warning) are read by a seed-conditioned head, and the
        latent starts from them (``hybrid_settings.seed_strength``); a prompt may then be
        empty. With ``seed_strength`` None a head without seed conditioning ignores them with a
        warning (and refuses a prompt of seeds alone). A prompt with neither text nor a known
        seed raises ``ValueError``.

        Returns:
            float32 CF-space latents ``(n_samples, latent_dim)`` for a ``str``,
            ``(n_prompts, n_samples, latent_dim)`` for a list.
        """
        single = isinstance(prompt_or_prompts, str)
        prompts = [prompt_or_prompts] if single else list(prompt_or_prompts)
        self._check_mode("latent")
        check_batch_size(batch_size)
        seeds, alone = self._latent_seeds(prompts, seed_tracks, single)
        texts = normalise_prompts(prompts, allow_empty=alone)
        request = latent_request(
            len(prompts),
            single,
            self._catalogue_index,
            negative_prompt=negative_prompt,
            like_tracks=like_tracks,
            source_prompt=source_prompt,
            guidance_weight=guidance_weight,
            n_samples=n_samples,
            edit_strength=edit_strength,
            seed=seed,
            stacklevel=2,
            **self._latent_defaults(),
        )
        dim = self.diffusion_head.config.latent_dim
        out = [np.zeros((0, request.n_samples, dim), dtype=np.float32)]
        for start in range(0, len(texts), int(batch_size)):
            stop = start + int(batch_size)
            with self._lock:
                out.append(
                    self._query_latents(
                        texts[start:stop], request.rows(start, stop), seeds[start:stop]
                    )
                )
        latents = np.concatenate(out)
        return latents[0] if single else latents

    def fit_fusion(
        self,
        prompts: Sequence[str],
        relevant: Sequence[Iterable[str]],
        *,
        settings=None,
        kind: str = "fixed",
        metric: str = "hits",
        k: int = 10,
        batch_size: int = 32,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Fit the hybrid mode's fusion on validation prompts and keep it (``self.fusion``).

        Candidates are gathered exactly as :meth:`recommend` gathers them in hybrid mode (the
        same beam width, samples, seed 0 and faiss search), then
        :func:`text2tracks.hybrid.fit_fusion` fits the weights (``kind`` ``"fixed"``,
        ``"mixture"`` or ``"gated"``, maximising ``metric`` at ``k``); :meth:`save_pretrained` writes the result.
        ``relevant`` holds each prompt's right track ids; ids outside the catalogue are ignored
        and prompts left with none (or empty) are skipped and counted. ``settings``
        (:class:`~text2tracks.hybrid.HybridSettings`, ``None``: ``self.hybrid_settings``)
        become ``self.hybrid_settings``.

        Returns:
            The fit's summary (``n_prompts``, ``n_skipped``, the metric of the beam order, the
            latent order and the fused order on these prompts, the alpha grid).
        """
        from text2tracks.hybrid import fit_recommender_fusion

        self._check_mode("hybrid")
        fusion, settings, summary = fit_recommender_fusion(
            self,
            prompts,
            relevant,
            settings=settings,
            kind=kind,
            metric=metric,
            k=k,
            batch_size=batch_size,
            progress=progress,
        )
        self.fusion, self.hybrid_settings = fusion, settings
        self._fusion_summary = (fusion, summary)
        return summary

    def fit_like_fusion(
        self, prompts: Sequence[str], relevant: Sequence[Iterable[str]], **options: Any
    ) -> dict[str, Any]:
        """Fit hybrid mode's fusion for queries with ``like_tracks`` and keep it, as
        ``self.fusion.with_likes`` (:func:`text2tracks.session.fit_like_fusion`: hybrid-mode
        sessions simulated on validation prompts, ``rounds`` rounds of ``k`` tracks, the user
        liking those in ``relevant``; the fusion of plain prompts is kept as it is, or the
        default blend without one). ``options``: that function's (``rounds``, ``kind``,
        ``metric``, ``k``, ``edit_strength``, ``batch_size``). :meth:`save_pretrained` writes
        both.

        Returns:
            The fit's summary (also under ``"with_likes"`` in the fusion's saved summary).
        """
        from text2tracks.fusion import plain_fusion
        from text2tracks.session import fit_like_fusion

        self._check_mode("hybrid")
        base = plain_fusion(self._hybrid_fusion())  # sessions as plain hybrid mode runs them
        previous, self.fusion = self.fusion, base
        try:
            likes, summary = fit_like_fusion(self, prompts, relevant, **options)
        except BaseException:
            self.fusion = previous
            raise
        base.with_likes = likes
        base.with_seeds = getattr(previous, "with_seeds", None)
        fitted, old_summary = self._fusion_summary
        kept = dict(old_summary) if fitted is previous else {}
        self._fusion_summary = (base, {**kept, "with_likes": summary})
        return summary

    def fit_seed_fusion(
        self,
        prompts: Sequence[str],
        seed_tracks: Sequence[Iterable[str] | None],
        relevant: Sequence[Iterable[str]],
        **options: Any,
    ) -> dict[str, Any]:
        """Fit hybrid mode's fusion for prompts that continue seed tracks and keep it, as
        ``self.fusion.with_seeds`` (:func:`text2tracks.seed_fusion.fit_seed_fusion`: validation
        prompts, their seeds and the tracks each should find; the fusion of other prompts is
        kept as it is, or the default blend without one). ``options``: that function's
        (``kind``, ``metric``, ``k``, ``strengths``, ``batch_size``, ``progress``); the
        ``seed_strength`` it keeps becomes ``self.hybrid_settings``'. :meth:`save_pretrained`
        writes both.

        Returns:
            The fit's summary (also under ``"with_seeds"`` in the fusion's saved summary).
        """
        import copy

        from text2tracks.seed_fusion import fit_seed_fusion

        self._check_mode("hybrid")
        fitted, summary = fit_seed_fusion(self, prompts, seed_tracks, relevant, **options)
        previous = self._hybrid_fusion()
        base = copy.copy(previous)
        base.with_seeds = fitted
        old_fusion, old_summary = self._fusion_summary
        kept = dict(old_summary) if old_fusion is previous else {}
        self.fusion = base
        self.hybrid_settings = replace(self.hybrid_settings, seed_strength=summary["seed_strength"])
        self._fusion_summary = (base, {**kept, "with_seeds": summary})
        return summary

    def _latent_seeds(self, prompts, seed_tracks, single) -> tuple[list, list[bool]]:
        """``(per prompt its seeds' catalogue indices or None, whether it is seeds alone)`` of
        :meth:`sample_latents` (stacklevel: the user's line); the seeds are None for a head
        without seed conditioning, which warns."""
        from text2tracks.seed_prompts import resolve_seed_tracks, seeds_alone

        seeds = resolve_seed_tracks(
            seed_tracks, self._catalogue_index, len(prompts), single, stacklevel=3
        )
        alone = seeds_alone(prompts, seeds, reads_seeds=True)
        if self.latent_reads_seeds:
            return seeds, alone
        if any(alone):
            raise ValueError(
                f"prompt {alone.index(True)} has seed tracks but no text, and the diffusion head "
                "was trained without seed conditioning, so it cannot read them; give some "
                "text, or train the head with --seed-conditioning"
            )
        warn_unread_head_seeds(seeds, stacklevel=3)
        return [None] * len(prompts), alone

    def _latent_defaults(self) -> dict[str, Any]:
        return dict(
            default_guidance_weight=self.diffusion_head.config.guidance_weight,
            default_n_samples=self.hybrid_settings.n_samples,
        )

    def _query_latents(self, texts, request, seeds=None) -> np.ndarray:
        """The head's latents, those of prompts continuing seeds anchored at them."""
        latents = query_latents(
            self.diffusion_head,
            texts,
            request,
            lambda: self.item_factors,
            self.hybrid_settings.seed_method,
            seeds if self.head_reads_seeds else None,
            self.hybrid_settings.edit_method,
        )
        return continued_latents(
            latents, texts, request, seeds, lambda: self.item_factors, self.hybrid_settings
        )

    def _hybrid_fusion(self):
        if self.fusion is not None:
            return self.fusion
        from text2tracks.hybrid import default_fusion

        if not self._warned_default_fusion:
            self._warned_default_fusion = True
            warn_default_fusion(self._source_dir or "this recommender")
        return default_fusion()

    def _latent_batch(self, mode, texts, excluded, k, num_beams, first_index, request, seeds=None):
        settings = self.hybrid_settings
        factors, index = self.latent_index()
        encoder = self.diffusion_head.encoder
        if mode == "latent" and encoder is not None:  # in hybrid mode the beam's encoding warns
            warn_long_prompts(
                encoder.input_lengths(texts),
                encoder.max_length,
                encoder.length_unit,
                "the diffusion head's encoder",
                first_index,
                stacklevel=4,
            )
        if not self.latent_reads_seeds:  # stacklevel 4: here -> _rank -> recommend -> the user's
            warn_unread_head_seeds(seeds, stacklevel=4)
        beam = negative = None
        with self._lock:
            latents = self._query_latents(texts, request, seeds)
            if mode == "hybrid":  # a negative prompt demotes every fused candidate, the beam's too
                negative = negative_latents(self.diffusion_head, request)
                n_beam = hybrid_beam_width(
                    k, num_beams, settings.beam_candidates, excluded, len(self)
                )
                beam_seeds = seeds if self.max_seed_tracks else None  # a model reading none
                beam = self._generate(
                    texts, excluded, n_beam, n_beam, first_index, stacklevel=4, seeds=beam_seeds
                )
        fusion = self._hybrid_fusion() if mode == "hybrid" else None
        contrast = None
        if mode == "hybrid" and settings.negative_contrast > 0:
            contrast = self._negative_contrast(texts, request.negatives, first_index)
        return rank_latent_batch(
            mode,
            k,
            latents,
            factors,
            index,
            settings,
            fusion,
            texts,
            excluded,
            beam,
            negative,
            contrast,
            self.trie.item_nodes[0],
            [row is not None and len(row) > 0 for row in request.seeds],
            [row is not None and len(row) > 0 for row in seeds] if seeds is not None else None,
        )

    def _negative_contrast(self, texts, negatives, first_index):
        """Hybrid mode's guidance of the beam's view by the negative prompts (``None`` when no
        prompt has one): a function from the pooled candidates ``(batch, n)`` to their penalty,
        ``negative_contrast`` times how far each ID's log-probability under the negative prompt
        stands above the prompt's other candidates' (z-scored per prompt, the positive part;
        the seq2seq's own scores, every member's). The candidates' log-probabilities under the
        prompt itself would not do: they were chosen for being high, so hardly any candidate is
        likelier under the negative than under the prompt."""
        import warnings

        from text2tracks.candidate_pool import normalise_view

        rows = [i for i, t in enumerate(negatives) if t is not None]
        if not rows:
            return None
        weight = self.hybrid_settings.negative_contrast

        def contrast(items: np.ndarray) -> np.ndarray:
            penalty = np.zeros(items.shape, dtype=np.float64)
            sub = items[rows]
            with self._lock, warnings.catch_warnings():
                warnings.simplefilter("ignore")  # truncation: the head's encoding warned
                scores = self._score_items([negatives[i] for i in rows], sub, first_index, 1)
            z = normalise_view(scores, "zscore")  # per prompt, over its candidates (NaN: none)
            penalty[rows] = np.where(sub >= 0, weight * np.maximum(z, 0.0), 0.0)
            return penalty

        return contrast
