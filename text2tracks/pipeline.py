"""The inference API: :class:`Text2Tracks` loads an artifact folder and answers prompts.

Example (after ``python -m training.demo --out runs/demo``, which writes ``runs/demo/artifact``)::

    from text2tracks import Text2Tracks

    recommender = Text2Tracks.from_pretrained("runs/demo/artifact")
    for rec in recommender.recommend("chill 90s jazz", k=5):
        print(rec.rank, rec.track_id, f"{rec.score:.3f}", rec.name, "-", rec.artist)

    # several prompts at once, each without the tracks already in its playlist
    answers = recommender.recommend(
        ["sad songs", "workout hip hop"], k=10, exclude=[["demo:pop:sad:90s:00012"], []]
    )

    # the same ranking as numpy arrays, as implicit returns it: track ids and scores (2, 10)
    track_ids, scores = recommender.recommend_arrays(["sad songs", "workout hip hop"], k=10)

    # the score the search gives any tracks, without searching (re-rank your own candidates)
    scores = recommender.score_tracks("sad songs", ["demo:pop:sad:90s:00012"])

Everything after ``k`` is keyword-only. The class is the facade; each job lives in the module
that names it: :mod:`text2tracks.options` (checking the options and spreading them over the
prompts), :mod:`text2tracks.generative` (beam search), :mod:`text2tracks.latent` (the diffusion
head and its latents), :mod:`text2tracks.latent_modes` (the class's latent and hybrid modes),
:mod:`text2tracks.storage` (reading and writing the artifact folder), :mod:`text2tracks.metadata`
(track names), :mod:`text2tracks.recommendation` (the answers).

Decisions on input (each tested in ``tests/test_pipeline.py``; the latent and hybrid modes in
``tests/test_pipeline_modes.py``):

- ``prompt_or_prompts``: one ``str`` gives a ``list[Recommendation]``; a list (or any non-string
  sequence) of ``str`` gives a ``list[list[Recommendation]]`` in the same order; an empty list
  gives ``[]``. A prompt that is empty or only whitespace (after the same normalisation as in
  training) raises ``ValueError`` naming its index, unless it has seed tracks. A prompt longer than the model takes is
  truncated to ``max_prompt_length`` tokens with a ``UserWarning`` naming its index.
- ``k`` must be an integer in ``[1, catalogue size]``, else ``ValueError`` stating the limits;
  with ``exclude`` it must also leave ``k`` tracks to recommend.
- ``exclude``: track ids removed inside decoding, so ``k`` answers still come back. One
  collection of ids applies to every prompt; for a list of prompts, a list of as many
  collections gives each prompt its own. Ids that are not in the catalogue cannot be
  recommended anyway: they are ignored with a ``UserWarning`` that names a few of them.
- ``num_beams``: the beam width (``None``: the constructor's, else ``max(k, DEFAULT_NUM_BEAMS)``);
  in hybrid mode, the beam's candidates (``None``: ``hybrid_settings.beam_candidates``).
- ``diversity`` (generative mode): the penalty of :func:`~text2tracks.generative.diversify`
  (``None``: the constructor's, else ``DEFAULT_DIVERSITY``). The ``k`` tracks are picked from
  all the beam's finished IDs, each charged this much log-probability per earlier pick under
  the same first code, and ``score`` is that adjusted log-probability; 0 gives the beam's top k.
  Only the first ``DIVERSITY_DEPTH`` (10) picks are charged; a longer list goes on in the
  beam's order. Hybrid mode spreads its fused list with its fusion's own fitted penalty
  (``fusion.diversity``) instead.
- ``mode``: ``"generative"`` (constrained beam search, the default); ``"latent"`` (query latents
  sampled from the diffusion head, faiss search around each over the catalogue's CF item
  factors, candidates pooled); ``"hybrid"`` (beam candidates and latent candidates pooled, their
  scores fused by the artifact's fitted fusion, ``diffusion/fusion.json``). The latent modes need
  the artifact's ``diffusion/`` component and raise ``ValueError`` when it has none.
- Options of the latent modes only (each raises ``ValueError`` in generative mode):
  ``negative_prompt`` (str, or one str-or-None per prompt) guides away from it:
  eps = eps(negative) + w * (eps(prompt) - eps(negative)); ``guidance_weight`` is w (None: the
  head's stored default); ``like_tracks`` (track ids, or one collection per prompt) starts from
  the tracks' mean CF factor, inverts it by DDIM under ``source_prompt`` (None: the null
  condition) for ``edit_strength`` of the steps and regenerates it under the prompt: 0 keeps the
  seed (tracks like these), 1 follows the prompt. Unknown ids are ignored with a warning; a
  prompt left with none raises ``ValueError``. ``n_samples`` (None: the stored setting) latents
  per prompt give diversity; an edit is deterministic, so it gives one.
- ``seed_tracks``: per prompt, track ids the prompt continues (a playlist's tracks, oldest
  first), read by the model after the text as their semantic-ID tokens; a prompt may then be
  empty. Never recommended back; unknown ids are ignored with a warning. See
  :mod:`text2tracks.seed_prompts` for every decision.
- ``seed``: every prompt starts from the same ``n_samples`` noise vectors drawn from ``seed``,
  so the same call gives the same answer and a prompt's answer does not depend on the batch it
  is in; ``seed=None`` draws fresh noise each call.

Answers are deterministic: the model runs in eval mode without sampling, the latent modes start
from seeded noise and run DDIM with eta = 0, and the same prompts in the same batches give the
same recommendations. Calls are thread-safe: one lock serialises the tokenizer, ``generate`` and
the diffusion head (the model is not re-entrant on every backend), and everything else is
per-call state, so threads get the same answers as serial calls.

Example of the latent modes (an artifact with a ``diffusion/`` component)::

    recommender.recommend("summer party", k=10, mode="hybrid", negative_prompt="country")
    recommender.recommend("rainy morning", k=10, mode="latent",
                          like_tracks=["spotify:track:..."], edit_strength=0.6)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from text2tracks.artifacts import (
    CATALOG_COMPONENT,
    CF_COMPONENT,
    DIFFUSION_COMPONENT,
    SEQ2SEQ_COMPONENT,
    ArtifactError,
)
from text2tracks.ensemble import EnsembleMixin, prepare_members
from text2tracks.generative import beam_width, check_layout, diversity_penalty, generate_items
from text2tracks.latent import (
    CATALOGUE_FACTORS_NAME,
    CatalogueFactors,
)
from text2tracks.latent_modes import LatentModesMixin
from text2tracks.metadata import CATALOG_SUBDIR, TRACKS_NAME, names_and_artists, read_track_metadata
from text2tracks.modeling import DEFAULT_DIVERSITY
from text2tracks.options import DEFAULT_EDIT_STRENGTH, LATENT_MODES, MODES, RECOMMEND_MODES
from text2tracks.recommendation import Recommendation, to_recommendations
from text2tracks.seed_blend import SeedBlendMixin
from text2tracks.seed_prompts import (
    SeedTracksMixin,
    prepare_seeded_call,
    read_max_seed_tracks,
)
from text2tracks.storage import (
    DEFAULT_MAX_PROMPT_LENGTH,
    ArtifactOrigin,
    load_recommender,
    write_artifact,
)

# Kept importable from here (the names moved in the split; eval.benchmark reads the first).
_read_track_metadata = read_track_metadata

__all__ = [
    "ArtifactError",
    "CATALOGUE_FACTORS_NAME",
    "CATALOG_COMPONENT",
    "CATALOG_SUBDIR",
    "CF_COMPONENT",
    "DEFAULT_EDIT_STRENGTH",
    "DEFAULT_MAX_PROMPT_LENGTH",
    "DIFFUSION_COMPONENT",
    "MODES",
    "Recommendation",
    "SEQ2SEQ_COMPONENT",
    "TRACKS_NAME",
    "Text2Tracks",
]


class Text2Tracks(LatentModesMixin, SeedTracksMixin, SeedBlendMixin, EnsembleMixin):
    """A trained recommender: prompt -> ranked catalogue tracks.

    Build it with :meth:`from_pretrained` (the usual way) or from its parts. Example::

        >>> from text2tracks import Text2Tracks
        >>> recommender = Text2Tracks.from_pretrained("runs/demo/artifact")  # doctest: +SKIP
        >>> recs = recommender.recommend("chill 90s jazz", k=3)  # doctest: +SKIP
        >>> [(r.rank, r.track_id) for r in recs]  # doctest: +SKIP
        [(1, 'demo:jazz:chill:90s:00113'), (2, ...), (3, ...)]

    Args:
        model: a Hugging Face seq2seq model whose vocabulary holds the semantic-ID tokens.
        tokenizer: its tokenizer.
        layout: the :class:`~text2tracks.tokens.SIDTokenLayout` of the semantic-ID tokens.
        catalog: the :class:`~semantic_ids.catalog.SemanticIDCatalog` (which IDs exist).
        track_metadata: track id -> ``(name, artist)`` (or a ``Track``), for display.
        max_prompt_length: prompts are truncated to this many tokens, as in training.
        num_beams: default beam width (``None``: the decoder's default for ``k``).
        diversity: default diversity penalty of the generative mode (``None``:
            ``DEFAULT_DIVERSITY``; see :meth:`recommend`).
        device: torch device to run on (``None``: the model's current device).
        model_config: the ``ModelConfig`` dict the model was built from (kept on save).
        diffusion_head: a :class:`~text2tracks.diffusion.DiffusionHead` with a prompt encoder,
            for the ``"latent"`` and ``"hybrid"`` modes (``None``: generative only).
        item_factors: with a head: the CF item factors ``(n_items, latent_dim)`` in catalogue
            order, or a function returning them (called once, on first use).
        fusion: with a head: the fitted ``FixedBlendFusion`` / ``GatedFusion`` of the hybrid
            mode (``None``: :func:`text2tracks.hybrid.default_fusion`, with a warning).
        hybrid_settings: with a head: :class:`~text2tracks.hybrid.HybridSettings` (samples per
            prompt, beam candidates, faiss neighbours, pooling; ``None``: the defaults).
        origin: the artifact folder it was read from (:meth:`from_pretrained` sets it), whose
            other components :meth:`save_pretrained` copies.
        max_seed_tracks: the most seed tracks the model reads per prompt, the most recent kept
            (0: trained without seeds, it reads none; :meth:`from_pretrained` reads the value
            its training recorded).
        members: more ``MemberModel``s (``seq2seq_1/``...), decoded with ``model`` as one.

    Attributes ``diffusion_head``, ``fusion`` and ``hybrid_settings`` may be replaced after
    construction (e.g. a fusion refitted with :meth:`fit_fusion`); :meth:`save_pretrained`
    writes them.
    """

    def __init__(
        self,
        model,
        tokenizer,
        layout,
        catalog,
        track_metadata: Mapping[str, Any] | None = None,
        *,
        max_prompt_length: int = DEFAULT_MAX_PROMPT_LENGTH,
        num_beams: int | None = None,
        diversity: float | None = None,
        device=None,
        model_config: dict | None = None,
        diffusion_head=None,
        item_factors: np.ndarray | Callable[[], np.ndarray] | None = None,
        fusion=None,
        hybrid_settings=None,
        origin: ArtifactOrigin | None = None,
        max_seed_tracks: int = 0,
        members: Sequence | None = None,
    ) -> None:
        from text2tracks.trie import FlatTrie

        check_layout(layout, catalog)
        if isinstance(max_prompt_length, bool) or int(max_prompt_length) < 1:
            raise ValueError(
                f"max_prompt_length must be a positive integer, got {max_prompt_length!r}"
            )
        self.model = model
        if device is not None:
            self.model.to(device)
        self.model.eval()
        self.tokenizer = tokenizer
        self.layout = layout
        self.catalog = catalog
        self.max_prompt_length = int(max_prompt_length)
        self.num_beams = num_beams
        self.diversity = diversity_penalty(diversity, DEFAULT_DIVERSITY)
        self.model_config = dict(model_config) if model_config else None
        self.trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
        self.max_seed_tracks = max_seed_tracks
        self.members = prepare_members(members, catalog, device, max_seed_tracks)
        self._names, self._artists = names_and_artists(catalog.item_ids, track_metadata)
        self._id_array: np.ndarray | None = None  # catalogue ids as a numpy str array, on first use
        self._lock = threading.Lock()  # the tokenizer, generate and the head are not re-entrant
        self._source_dir = None if origin is None else origin.directory
        self._components = {} if origin is None else dict(origin.components)
        # the diffusion side (see _attach_diffusion)
        self.diffusion_head = None
        self.fusion = None
        self.hybrid_settings = None
        self._factors: CatalogueFactors | None = None  # item factors + faiss index, lazily
        self._warned_default_fusion = False
        # (fusion, settings) of the source's fusion.json; (fusion, its validation summary)
        self._fusion_on_disk = (None, None) if origin is None else (origin.fusion, origin.settings)
        self._fusion_summary = (None, {}) if origin is None else (origin.fusion, origin.validation)
        if diffusion_head is not None:
            self._attach_diffusion(diffusion_head, item_factors, fusion, hybrid_settings)
        elif item_factors is not None or fusion is not None or hybrid_settings is not None:
            raise ValueError(
                "item_factors, fusion and hybrid_settings belong to a diffusion head; "
                "pass diffusion_head too"
            )

    # -------------------------------------------------------------------------- loading, saving

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device=None) -> Text2Tracks:
        """Load an artifact folder (``text2tracks.json`` + components).

        Args:
            path: the artifact folder, e.g. ``runs/demo/artifact``.
            device: torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``...); ``None`` picks CUDA
                when available, else the CPU.

        Raises:
            ArtifactError: the folder, its manifest or a component is missing or damaged (the
                message names the file), or the manifest's format version is newer than this
                text2tracks reads.
        """
        recommender = load_recommender(cls, path, device)
        recommender.max_seed_tracks = read_max_seed_tracks(Path(path) / SEQ2SEQ_COMPONENT)
        return recommender

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write this recommender as an artifact folder at ``path`` (atomically; replaces it).

        The catalogue, the seq2seq model, the diffusion head (with its fusion) and a seed blend
        fitted in memory are written from memory; other components of the folder it was loaded from (``cf/``, training logs
        in ``diffusion/``...) are copied as they are.
        """
        return write_artifact(
            Path(path),
            source=self._source_dir,
            components=self._components,
            catalog=self.catalog,
            names=self._names,
            artists=self._artists,
            model=self.model,
            tokenizer=self.tokenizer,
            layout=self.layout,
            model_config=self.model_config,
            diffusion=self._diffusion_to_save(),
            max_seed_tracks=self.max_seed_tracks,
            seed_blend=self._seed_blend if self._seed_blend_changed else None,
        )

    # -------------------------------------------------------------------------- properties

    def __len__(self) -> int:
        """Number of tracks in the catalogue."""
        return len(self.catalog)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def __repr__(self) -> str:
        return (
            f"Text2Tracks(tracks={len(self)}, levels={tuple(self.catalog.level_sizes)}, "
            f"device={self.device}, source={self._source_dir})"
        )

    # -------------------------------------------------------------------------- inference

    def recommend(
        self,
        prompt_or_prompts: str | Sequence[str],
        k: int = 10,
        *,
        exclude: Iterable[str] | Sequence[Iterable[str]] | None = None,
        num_beams: int | None = None,
        diversity: float | None = None,
        batch_size: int = 32,
        mode: str = "generative",
        negative_prompt: str | Sequence[str | None] | None = None,
        guidance_weight: float | None = None,
        like_tracks: Iterable[str] | Sequence[Iterable[str] | None] | None = None,
        edit_strength: float = DEFAULT_EDIT_STRENGTH,
        source_prompt: str | Sequence[str | None] | None = None,
        n_samples: int | None = None,
        seed: int | None = 0,
        seed_tracks: Iterable[str] | Sequence[Iterable[str] | None] | None = None,
    ) -> list[Recommendation] | list[list[Recommendation]]:
        """Recommend ``k`` tracks for one prompt or for each of a list of prompts.

        The module docstring gives each decision on input in full, and examples. Options marked
        "per prompt" take one value for every prompt or (with a list of prompts) a list of one
        value (or ``None``) per prompt.

        Args:
            prompt_or_prompts: a prompt (``str``) or a list of prompts.
            k: tracks per prompt, in ``[1, catalogue size]``.
            exclude: per prompt, track ids never to recommend (unknown ids: a warning).
            num_beams: beam width (``None``: the constructor's, else ``max(k, DEFAULT_NUM_BEAMS)``;
                in hybrid mode the beam's candidates).
            diversity: generative mode: the diversity penalty (``None``: the constructor's, else
                ``DEFAULT_DIVERSITY``; 0: the beam's top k).
            batch_size: prompts per ``generate`` call (and per diffusion batch).
            mode: ``"generative"`` (constrained beam search), ``"latent"`` (faiss around
                diffusion samples) or ``"hybrid"`` (both, fused); the last two need a
                ``diffusion/`` component. ``"cf-blend"``: generative mode's answer mixed with
                co-listening views of the seeds and title (:mod:`text2tracks.seed_blend`).
                :class:`Recommendation` says what ``score`` is in each.
            negative_prompt: latent modes, per prompt: guide away from it,
                eps = eps(negative) + w * (eps(prompt) - eps(negative)).
            guidance_weight: latent modes: w >= 0 (``None``: the head's stored default).
            like_tracks: latent modes, per prompt: track ids moved towards the prompt by
                ``hybrid_settings.edit_method`` (unknown ids: a warning; none known raises).
            edit_strength: with ``like_tracks``, in ``[0, 1]``: 0 = the tracks, 1 = the prompt.
            source_prompt: with ``like_tracks``, per prompt: what to move away from (the
                anchor's guidance base, the inversion's condition; ``None``: the null one).
            n_samples: latent modes: latents per prompt (``None``: ``hybrid_settings``).
            seed: latent modes: the noise seed (the same noise for every prompt, so answers do
                not depend on batching); ``None`` draws fresh noise each call.
            seed_tracks: per prompt, track ids it continues, oldest first; never recommended.

        Returns:
            ``list[Recommendation]`` (best first) for a ``str``; a list of those for a list.

        Raises:
            ValueError: bad ``k``, prompts, mode or options; a latent-mode option in generative
                mode; a latent mode without a diffusion head; a prompt without text or seeds.
        """
        single, items, scores = self._rank(
            prompt_or_prompts,
            k,
            exclude=exclude,
            num_beams=num_beams,
            diversity=diversity,
            batch_size=batch_size,
            mode=mode,
            negative_prompt=negative_prompt,
            guidance_weight=guidance_weight,
            like_tracks=like_tracks,
            edit_strength=edit_strength,
            source_prompt=source_prompt,
            n_samples=n_samples,
            seed=seed,
            seed_tracks=seed_tracks,
        )
        answers = to_recommendations(
            items, scores, self.catalog.item_ids, self._names, self._artists
        )
        return answers[0] if single else answers

    def recommend_arrays(
        self, prompt_or_prompts: str | Sequence[str], k: int = 10, **options: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`recommend` as numpy arrays, as ``implicit`` returns them: ``(track_ids,
        scores)``, best first.

        Takes the keyword options of :meth:`recommend` (same meaning, same checks, the same
        ranking). ``track_ids`` is a numpy ``str`` array and ``scores`` float64, each ``(k,)``
        for a ``str`` and ``(n_prompts, k)`` for a list (``(0, k)`` for an empty list).

        Example::

            >>> ids, scores = recommender.recommend_arrays(["sad songs", "jazz"], k=5)  # doctest: +SKIP
            >>> ids.shape, scores.dtype  # doctest: +SKIP
            ((2, 5), dtype('float64'))
        """
        single, items, scores = self._rank(prompt_or_prompts, k, **options)
        if self._id_array is None:
            self._id_array = np.asarray(self.catalog.item_ids, dtype=str)
        ids = self._id_array[np.maximum(items, 0)]
        ids[items < 0] = ""  # no item there (cannot happen for k <= what is left to recommend)
        return (ids[0], scores[0]) if single else (ids, scores)

    def _rank(
        self,
        prompt_or_prompts,
        k,
        *,
        exclude=None,
        num_beams=None,
        diversity=None,
        batch_size=32,
        mode="generative",
        negative_prompt=None,
        guidance_weight=None,
        like_tracks=None,
        edit_strength=DEFAULT_EDIT_STRENGTH,
        source_prompt=None,
        n_samples=None,
        seed=0,
        seed_tracks=None,
    ) -> tuple[bool, np.ndarray, np.ndarray]:
        """``(single, item indices (n, k) int64, scores (n, k) float64)`` of a call."""
        blend = mode == "cf-blend" and self._check_blend() is not None
        call = prepare_seeded_call(  # stacklevel 3: _rank -> recommend -> the user's line
            prompt_or_prompts,
            k,
            len(self),
            self._catalogue_index,
            seed_tracks=seed_tracks,
            max_seed_tracks=self.max_seed_tracks,
            head_reads_seeds=self.latent_reads_seeds,
            check_mode=self._check_mode,
            mode=mode,
            batch_size=batch_size,
            exclude=exclude,
            edit_strength=edit_strength,
            seed=seed,
            latent_defaults=self._latent_defaults,
            stacklevel=3,
            options=dict(
                negative_prompt=negative_prompt,
                like_tracks=like_tracks,
                source_prompt=source_prompt,
                guidance_weight=guidance_weight,
                n_samples=n_samples,
            ),
        )
        texts, excluded, seeds, request = call.texts, call.excluded, call.seeds, call.request
        beams = beam_width(num_beams, self.num_beams, k)
        diversity = diversity_penalty(diversity, self.diversity)
        rows = [(np.zeros((0, k), np.int64), np.zeros((0, k), np.float64))]
        for start in range(0, len(texts), int(batch_size)):
            stop = start + int(batch_size)
            if mode in ("generative", "cf-blend"):
                batch = self._blend_batch if blend else self._generative_batch
                rows.append(
                    batch(
                        texts[start:stop],
                        excluded[start:stop],
                        k,
                        beams,
                        start,
                        diversity,
                        seeds[start:stop],
                    )
                )
            else:
                rows.append(
                    self._latent_batch(
                        mode,
                        texts[start:stop],
                        excluded[start:stop],
                        k,
                        num_beams,
                        start,
                        request.rows(start, stop),
                        seeds[start:stop],
                    )
                )
        items, scores = (np.concatenate(column) for column in zip(*rows, strict=True))
        return call.single, items.astype(np.int64), scores.astype(np.float64)

    # -------------------------------------------------------------------------- helpers

    def _check_mode(self, mode: str) -> None:
        if mode not in RECOMMEND_MODES:
            raise ValueError(f"mode must be one of {RECOMMEND_MODES}, got {mode!r}")
        if mode in LATENT_MODES and not self.has_diffusion:
            where = self._source_dir or "this recommender"
            raise ValueError(
                f"mode={mode!r} needs a diffusion head, but {where} has no '{DIFFUSION_COMPONENT}/' "
                "component; train one (python -m training.train_diffusion) or use "
                "mode='generative'"
            )

    def _catalogue_index(self, track_id: str) -> int | None:
        try:
            return self.catalog.index_of(track_id)
        except KeyError:
            return None

    def _generate(
        self, texts, excluded, k, num_beams, first_index, stacklevel, diversity=0.0, seeds=None
    ):
        """Beam search over one batch (the caller holds the lock); ``stacklevel`` counts from
        the caller, as ``warnings.warn`` does. ``seeds``: per prompt, the catalogue indices of
        its seed tracks in order (or None)."""
        args = (texts, excluded, k, num_beams, first_index, stacklevel + 1, diversity, seeds)
        if self.members:
            return self._generate_ensemble(*args)
        if seeds is not None and any(s is not None for s in seeds):
            return self._generate_seeded(*args)
        return generate_items(
            self.model,
            self.tokenizer,
            self.trie,
            self.layout,
            texts,
            excluded,
            k=k,
            num_beams=num_beams,
            max_length=self.max_prompt_length,
            first_index=first_index,
            stacklevel=stacklevel + 1,
            diversity=diversity,
        )

    def _generative_batch(self, texts, excluded, k, num_beams, first_index, diversity, seeds):
        with self._lock:  # stacklevel 4: here -> _rank -> recommend -> the user's line
            return self._generate(texts, excluded, k, num_beams, first_index, 4, diversity, seeds)
