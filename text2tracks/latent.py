"""The latent side of the API: the diffusion head, the CF item factors it searches, and the query
latents it samples for the ``"latent"`` and ``"hybrid"`` modes of
:meth:`~text2tracks.pipeline.Text2Tracks.recommend`.

- :func:`load_head` reads ``diffusion/`` (sharing the recommender's seq2seq as its frozen
  encoder); :func:`catalogue_factor_loader` reads the item factors in catalogue order on first use.
- :func:`query_latents` turns prompts and a :class:`~text2tracks.options.LatentRequest` into CF-space
  latents ``(batch, n_samples, latent_dim)``: DDIM sampling from seeded noise, or (with
  ``like_tracks``) an edit of the tracks' seed latent towards the prompt (anchored by default,
  :func:`anchored_latents`; or DDIM inversion); a seed-conditioned head also reads
  each prompt's seed tracks (MO-DiT), and a prompt of seeds alone gets the null prompt.
- :func:`warn_unread_head_seeds`: a head without seed conditioning ignores seed tracks, once
  said.
- :func:`negative_latents` samples the latents of the negative prompts themselves, which hybrid
  mode uses to demote every candidate (the beam's too) that resembles the negative.
- :func:`rank_latent_batch` ranks the catalogue around those latents (latent mode) or fuses them
  with the beam's candidates (hybrid mode).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from text2tracks.artifacts import CF_COMPONENT, DIFFUSION_COMPONENT, ArtifactError
from text2tracks.options import LatentRequest

CATALOGUE_FACTORS_NAME = "item_factors.npy"  # diffusion/item_factors.npy: only when there is no cf/

# The default-fusion warning keeps the logger name users configured before the split.
logger = logging.getLogger("text2tracks.pipeline")


def load_head(diffusion_dir: Path, model, tokenizer, device):
    """The :class:`~text2tracks.diffusion.DiffusionHead` of ``diffusion/``.

    A head conditioned on the seq2seq's frozen encoder shares the recommender's loaded model
    (as in training, where it wraps the same weights) instead of loading ``seq2seq/`` again.
    """
    from text2tracks.diffusion import CONFIG_NAME, DiffusionHead, FrozenSeq2SeqEncoder

    with open(diffusion_dir / CONFIG_NAME, encoding="utf-8") as f:
        payload = json.load(f)
    if payload.get("kind") != DiffusionHead.component_kind:
        raise ArtifactError(
            f"{diffusion_dir / CONFIG_NAME} holds a {payload.get('kind')!r}, not a diffusion head"
        )
    encoder_payload = payload.get("encoder") or {}
    encoder = None
    if encoder_payload.get("kind") == "seq2seq":
        encoder = FrozenSeq2SeqEncoder(
            model,
            tokenizer,
            max_length=int(encoder_payload.get("max_length", 128)),
            normalize=bool(encoder_payload.get("normalize", True)),
        )
    elif encoder_payload.get("kind") == "none":
        raise ArtifactError(
            f"the diffusion head in {diffusion_dir} has no prompt encoder (it was trained on given "
            "condition vectors), so it cannot be conditioned on prompts"
        )
    return DiffusionHead.load(diffusion_dir, encoder=encoder, map_location=str(device))


def catalogue_factor_loader(
    artifact_dir: Path, catalog, latent_dim: int
) -> Callable[[], np.ndarray]:
    """A function that reads the CF item factors in catalogue order (called on first use).

    They come from ``cf/`` (``item_factors.npy`` in the order of ``cf/vocab.json``, the item
    vocabulary the catalogue and the diffusion training were built from), mapped by track id;
    ``diffusion/item_factors.npy`` (catalogue order) takes precedence where an artifact was
    saved without ``cf/``.
    """

    def load() -> np.ndarray:
        from semantic_ids.cf import load_catalogue_factors

        own = artifact_dir / DIFFUSION_COMPONENT / CATALOGUE_FACTORS_NAME
        try:
            if own.is_file():
                factors = np.ascontiguousarray(np.load(own, allow_pickle=False), dtype=np.float32)
            else:
                factors = load_catalogue_factors(artifact_dir / CF_COMPONENT, catalog.item_ids)
        except (OSError, ValueError, KeyError) as err:
            raise ArtifactError(
                f"cannot read the CF item factors of {artifact_dir}: {err}"
            ) from err
        if factors.shape != (len(catalog), latent_dim):
            raise ArtifactError(
                f"the CF item factors of {artifact_dir} have shape {factors.shape}; the catalogue "
                f"and the diffusion head need ({len(catalog)}, {latent_dim})"
            )
        return factors

    return load


def checked_factors(factors, n_items: int, latent_dim: int) -> np.ndarray:
    """``factors`` as C-contiguous float32 ``(n_items, latent_dim)``; ``ValueError`` otherwise."""
    factors = np.ascontiguousarray(factors, dtype=np.float32)
    expected = (n_items, latent_dim)
    if factors.shape != expected:
        raise ValueError(
            f"item_factors must have shape {expected} (catalogue size, the head's "
            f"latent_dim), got {factors.shape}"
        )
    if not np.isfinite(factors).all():
        raise ValueError("item_factors hold NaN or infinite values")
    return factors


def check_diffusion_parts(head, item_factors, fusion, settings):
    """Check what a recommender's latent modes are built from; the settings (``None``: the
    default :class:`~text2tracks.hybrid.HybridSettings`). ``ValueError`` on a wrong part."""
    from text2tracks.diffusion import DiffusionHead
    from text2tracks.hybrid import HybridSettings
    from text2tracks.rerank import FixedBlendFusion, GatedFusion

    if not isinstance(head, DiffusionHead):
        raise ValueError(f"diffusion_head must be a DiffusionHead, got {type(head).__name__}")
    if head.encoder is None:
        raise ValueError("diffusion_head has no prompt encoder; the API conditions it on prompts")
    if item_factors is None:
        raise ValueError(
            "diffusion_head needs item_factors: (n_items, latent_dim) CF item "
            "factors in catalogue order, or a function that returns them"
        )
    if fusion is not None and not isinstance(fusion, (FixedBlendFusion, GatedFusion)):
        raise ValueError(
            f"fusion must be a FixedBlendFusion or GatedFusion, got {type(fusion).__name__}"
        )
    settings = HybridSettings() if settings is None else settings
    if not isinstance(settings, HybridSettings):
        raise ValueError(f"hybrid_settings must be HybridSettings, got {type(settings).__name__}")
    return settings


class CatalogueFactors:
    """The CF item factors ``(n_items, latent_dim)`` float32 in catalogue order, given or read on
    first use (``factors`` may be a function returning them), and the faiss index over them,
    built on first use. Thread-safe."""

    def __init__(self, factors, n_items: int, latent_dim: int) -> None:
        self._shape = (n_items, latent_dim)
        self._loader = factors if callable(factors) else None
        self._array = None if callable(factors) else checked_factors(factors, *self._shape)
        self._index = None
        self._lock = threading.Lock()

    def array(self) -> np.ndarray:
        with self._lock:
            if self._array is None:
                self._array = checked_factors(self._loader(), *self._shape)
            return self._array

    def index(self):
        from text2tracks.rerank import build_index

        factors = self.array()
        with self._lock:
            if self._index is None:
                self._index = build_index(factors)
            return self._index


def conditions(head, texts: Sequence[str | None]):
    """Prompt encodings ``(batch, cond_dim)``; ``None`` rows get the head's null condition,
    which is what the head itself uses for "no prompt" (so that every row takes the same
    computation whatever its neighbours in the batch)."""
    import torch

    null = head.denoiser.null_cond.detach()
    out = null.expand(len(texts), -1).clone()
    given = [i for i, t in enumerate(texts) if t is not None]
    if given:
        encoded = head.encode([texts[i] for i in given])
        out[torch.as_tensor(given, device=out.device)] = encoded.to(out.dtype)
    return out


def anchored_latents(
    seed_latents: np.ndarray, prompt_latents: np.ndarray, strength: float, cov: np.ndarray
) -> np.ndarray:
    """The anchored edit: ``(batch, n_samples, dim)`` float32 query latents.

    ``seed_latents`` ``(batch, dim)``: the liked tracks' latents; ``prompt_latents``
    ``(batch, n_samples, dim)``: the prompt's samples; ``cov``: the catalogue factors'
    covariance. Each side is divided by the standard deviation of its similarities over the
    catalogue (the prompt's by that of its samples' mean), so that the inner product with an
    item is ``(1 - s) z_seed + s z_prompt`` up to a per-prompt constant, the z-scored blend of
    the two views, and the pooled ranking is the seeds' at ``s = 0`` and the prompt's alone at
    ``s = 1``. Written here rather than taken from a library: it is a blend of two retrieval
    queries in the CF space, which no diffusion or search library provides.
    """
    from text2tracks.latent_search import similarity_spread

    if not 0.0 <= float(strength) <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    seed_latents = np.asarray(seed_latents, dtype=np.float64)
    prompt_latents = np.asarray(prompt_latents, dtype=np.float64)
    if prompt_latents.ndim != 3 or seed_latents.shape != (
        prompt_latents.shape[0],
        prompt_latents.shape[2],
    ):
        raise ValueError(
            f"need seed_latents (batch, dim) and prompt_latents (batch, n_samples, dim), got "
            f"{seed_latents.shape} and {prompt_latents.shape}"
        )
    seed_part = seed_latents / similarity_spread(seed_latents, cov)[:, None]
    prompt_part = prompt_latents / similarity_spread(prompt_latents.mean(1), cov)[:, None, None]
    s = float(strength)
    return ((1.0 - s) * seed_part[:, None, :] + s * prompt_part).astype(np.float32)


def _seed_rows(head, item_factors: Callable[[], np.ndarray], seed_tracks) -> Callable:
    """``rows_of(indices)``: the seed-conditioning arguments of those prompts for
    :meth:`DiffusionHead.sample` / ``edit`` (none when no prompt has seed tracks)."""
    import torch

    from text2tracks.head_seeds import seed_inputs

    if seed_tracks is None or all(s is None for s in seed_tracks):
        return lambda indices: {}
    latents, counts = (
        torch.from_numpy(a)
        for a in seed_inputs(item_factors(), seed_tracks, head.config.max_seed_tracks)
    )
    return lambda indices: {"seed_latents": latents[indices], "seed_counts": counts[indices]}


def _request_noise(request: LatentRequest, dim: int, n_prompts: int):
    """The request's seeded x_T, the same for every prompt (answers do not depend on
    batching): ``(n_prompts * n_samples, dim)``; None draws fresh noise."""
    import torch

    if request.seed is None:
        return None
    generator = torch.Generator().manual_seed(request.seed)
    noise = torch.randn((request.n_samples, dim), generator=generator)
    return noise.repeat(n_prompts, 1)


def query_latents(
    head,
    texts: list[str],
    request: LatentRequest,
    item_factors: Callable[[], np.ndarray],
    seed_method: str,
    seed_tracks: Sequence[np.ndarray | None] | None = None,
    edit_method: str = "anchor",
) -> np.ndarray:
    """CF-space query latents ``(batch, n_samples, latent_dim)`` (the caller holds the model lock).

    Prompts without ``like_tracks`` are sampled (DDIM, eta = 0) from the request's seeded
    noise, guided by their negative prompt or the null condition. Prompts with ``like_tracks``
    are edits of the tracks' seed latent (``seed_method``) towards the prompt, by
    ``edit_method`` (:class:`~text2tracks.hybrid.HybridSettings`): ``"anchor"`` blends the seed
    latent with the prompt's samples (:func:`anchored_latents`; the samples guided by the
    negative prompt, else the source prompt, else the null condition); ``"inversion"`` is
    :meth:`DiffusionHead.edit`, deterministic, so its one latent is repeated ``n_samples`` times
    (pooling is unchanged by repeats). ``item_factors`` returns the catalogue's factors (only
    called when a prompt has ``like_tracks`` or seed tracks).

    ``seed_tracks``: per prompt, the catalogue indices of its seed tracks in order (or None),
    read by a seed-conditioned head (:func:`text2tracks.head_seeds.seed_inputs`) in sampling
    and editing alike; a prompt whose text is ``""`` (seeds alone) gets the null prompt. A head
    without seed conditioning must be given none (the caller warns and drops them).
    """
    import torch

    from text2tracks.head_seeds import seed_latent
    from text2tracks.hybrid import EDIT_METHODS
    from text2tracks.latent_search import catalogue_moments_of

    if edit_method not in EDIT_METHODS:
        raise ValueError(f"edit_method must be one of {EDIT_METHODS}, got {edit_method!r}")
    n, n_samples, dim = len(texts), request.n_samples, head.config.latent_dim
    out = torch.zeros(n, n_samples, dim)
    with torch.inference_mode():
        cond = conditions(head, [t if t else None for t in texts])
        negative = conditions(head, request.negatives)
        rows_of = _seed_rows(head, item_factors, seed_tracks)
        plain = [i for i, s in enumerate(request.seeds) if s is None]
        edited = [i for i, s in enumerate(request.seeds) if s is not None]

        def sampled(indices: list[int], base) -> torch.Tensor:
            return head.sample(
                cond[torch.as_tensor(indices, device=cond.device)],
                negative_cond=base,
                guidance_weight=request.guidance_weight,
                n_samples=n_samples,
                noise=_request_noise(request, dim, len(indices)),
                **rows_of(indices),
            ).float()

        if plain:
            out[plain] = sampled(plain, negative[torch.as_tensor(plain, device=cond.device)]).cpu()
        if edited:
            factors = item_factors()
            start = np.stack([seed_latent(factors, request.seeds[i], seed_method) for i in edited])
        if edited and edit_method == "anchor":
            # the prompt's samples, guided away from the negative (else the source) prompt
            bases = [request.negatives[i] or request.sources[i] for i in edited]
            prompt = sampled(edited, conditions(head, bases)).cpu().numpy()
            _, cov = catalogue_moments_of(factors)  # cached: the same array every batch
            out[edited] = torch.from_numpy(anchored_latents(start, prompt, request.strength, cov))
        elif edited:
            rows = torch.as_tensor(edited, device=cond.device)
            sources = conditions(head, [request.sources[i] for i in edited])
            moved = head.edit(
                torch.from_numpy(start),
                cond[rows],
                request.strength,
                source_cond=sources,
                negative_cond=negative[rows],
                guidance_weight=request.guidance_weight,
                **rows_of(edited),
            )
            out[edited] = moved.float().cpu()[:, None, :].expand(-1, n_samples, -1)
    return out.numpy()


def continued_latents(
    latents: np.ndarray,
    texts: Sequence[str],
    request: LatentRequest,
    seed_tracks: Sequence[np.ndarray | None] | None,
    item_factors: Callable[[], np.ndarray],
    settings,
) -> np.ndarray:
    """``latents`` ``(batch, n_samples, dim)`` with each prompt that continues seed tracks (and
    has no ``like_tracks``) anchored at them (``settings``:
    :class:`~text2tracks.hybrid.HybridSettings`): :func:`anchored_latents` of the seeds'
    ``seed_method`` latent (all of them) and the prompt's samples, the prompt weighing
    ``seed_strength``, or nothing where the prompt is seeds alone. Unchanged when
    ``seed_strength`` is None (a seed-conditioned head then reads the seeds by itself)."""
    from text2tracks.head_seeds import seed_latent
    from text2tracks.latent_search import catalogue_moments_of

    if settings.seed_strength is None or seed_tracks is None:
        return latents
    rows = [
        i
        for i, seeds in enumerate(seed_tracks)
        if seeds is not None and len(seeds) and request.seeds[i] is None
    ]
    if not rows:
        return latents
    factors = item_factors()
    _, cov = catalogue_moments_of(factors)  # cached: the same array every batch
    out = np.array(latents, dtype=np.float32)
    strength_of = {i: float(settings.seed_strength) if texts[i] else 0.0 for i in rows}
    for strength in set(strength_of.values()):  # seeds alone: the seeds' latent only
        group = [i for i in rows if strength_of[i] == strength]
        start = np.stack(
            [seed_latent(factors, seed_tracks[i], settings.seed_method) for i in group]
        )
        out[group] = anchored_latents(start, out[group], strength, cov)
    return out


def negative_latents(head, request: LatentRequest) -> np.ndarray | None:
    """CF-space latents ``(batch, n_samples, latent_dim)`` of each prompt's negative prompt,
    sampled as :func:`query_latents` samples the prompts (the request's guidance weight and seeded
    noise, relative to the null condition); NaN rows for prompts without one, and None when no
    prompt has one. The caller holds the model lock."""
    import torch

    given = [i for i, t in enumerate(request.negatives) if t is not None]
    if not given:
        return None
    n, n_samples, dim = len(request.negatives), request.n_samples, head.config.latent_dim
    out = np.full((n, n_samples, dim), np.nan, dtype=np.float32)
    with torch.inference_mode():
        cond = head.encode([request.negatives[i] for i in given])
        noise = _request_noise(request, dim, len(given))
        sampled = head.sample(
            cond, guidance_weight=request.guidance_weight, n_samples=n_samples, noise=noise
        )
    out[given] = sampled.float().cpu().numpy()
    return out


def hybrid_beam_width(
    k: int,
    num_beams: int | None,
    beam_candidates: int,
    excluded: Sequence[np.ndarray | None],
    n_items: int,
) -> int:
    """How many beam candidates hybrid mode gathers: at least ``k`` (and 2), at most what is
    left after exclusion."""
    left = min(n_items - (0 if e is None else len(e)) for e in excluded)
    wanted = beam_candidates if num_beams is None else int(num_beams)
    return min(max(k, wanted, 2), left) if left >= 2 else left


def rank_latent_batch(
    mode: str,
    k: int,
    latents: np.ndarray,
    factors: np.ndarray,
    index,
    settings,
    fusion,
    texts: list[str],
    excluded: Sequence[np.ndarray | None],
    beam: tuple[np.ndarray, np.ndarray] | None = None,
    negative: np.ndarray | None = None,
    contrast=None,
    item_groups: np.ndarray | None = None,
    liked: Sequence[bool] | None = None,
    seeded: Sequence[bool] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Item indices and scores ``(batch, k)`` of the latent mode (faiss around ``latents``) or
    the hybrid mode (``beam``'s candidates and the latents' pooled, fused by ``fusion``). Hybrid
    only: ``negative`` (:func:`negative_latents`) demotes every pooled candidate by its
    similarity to the negative prompt's latent (``settings.negative_weight``,
    :func:`text2tracks.candidate_pool.negative_penalty`); ``contrast`` maps the pooled items
    ``(batch, n)`` to a further penalty (``settings.negative_contrast``); ``item_groups``: each
    item's first ID code, which the fusion's ``diversity`` spreads over; ``liked`` /
    ``seeded``: per prompt, whether its query carries liked / seed tracks, for the fusion's
    ``with_likes`` / ``with_seeds`` (:func:`text2tracks.fusion.fuse`)."""
    from text2tracks.candidate_pool import negative_penalty
    from text2tracks.hybrid import fuse, gather_candidates
    from text2tracks.rerank import rerank

    exclude_sets = [set() if e is None else set(e.tolist()) for e in excluded]
    if mode == "latent":
        return rerank(
            "latent",
            k,
            latents=latents,
            item_factors=factors,
            index=index,
            latent_k=settings.latent_k,
            pool=settings.pool,
            exclude=exclude_sets,
        )
    beam_items, beam_scores = beam
    candidates = gather_candidates(
        beam_items,
        beam_scores,
        latents,
        factors,
        index=index,
        latent_k=settings.latent_k,
        pool=settings.pool,
        k=k,
        exclude=exclude_sets,
        item_groups=item_groups,
    )
    penalty = None
    if negative is not None:
        penalty = negative_penalty(
            candidates,
            negative,
            factors,
            settings.negative_weight,
            settings.pool,
            latents if settings.negative_reference == "prompt" else None,
        )
    if contrast is not None:
        extra = contrast(candidates.items)
        penalty = extra if penalty is None else penalty + extra
    return fuse(
        fusion,
        candidates,
        k,
        latents=latents,
        prompts=texts,
        exclude=exclude_sets,
        penalty=penalty,
        liked=liked,
        seeded=seeded,
    )


def warn_unread_head_seeds(seed_tracks, stacklevel: int) -> None:
    """A head without seed conditioning: say that its latents read the text only."""
    import warnings

    if seed_tracks is not None and any(s is not None for s in seed_tracks):
        warnings.warn(
            "seed_tracks: the diffusion head was trained without seed conditioning, so its "
            "latents read the text only; the seeds are only kept out of the answer (train the "
            "head with --seed-conditioning for latents that continue from them)",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def warn_default_fusion(where) -> None:
    """Log once per recommender that hybrid mode runs on the default blend."""
    from text2tracks.hybrid import DEFAULT_ALPHA

    logger.warning(
        "%s has no fitted fusion (diffusion/fusion.json): hybrid mode blends the z-scored "
        "beam log-probabilities and latent similarities with alpha=%s; fit one with "
        "python -m training.train_diffusion (or Text2Tracks.fit_fusion)",
        where,
        DEFAULT_ALPHA,
    )
