"""The options of one :meth:`Text2Tracks.recommend` call: checked, then spread over its prompts.

Each option may be given once for every prompt or once per prompt; the functions here turn what
the caller gave into one plain value per prompt (normalised texts, sorted int64 arrays of
catalogue indices, a :class:`LatentRequest`), and raise ``ValueError`` / ``TypeError`` with a
message that says what was expected and what came. Warnings name the user's line: each function
that warns takes ``stacklevel`` as ``warnings.warn`` counts it from the frame that calls it.

No torch here: the options are checked before any model runs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MODES = ("generative", "latent", "hybrid")  # the modes text2tracks.rerank ranks
LATENT_MODES = ("latent", "hybrid")  # the modes that need a diffusion head
# recommend's modes: MODES, and "cf-blend": generative mode blended with co-listening views of
# the seed tracks (text2tracks.seed_blend); its options are generative mode's
RECOMMEND_MODES = (*MODES, "cf-blend")
# like_tracks + prompt: where the anchored edit's Joint@10 peaked on the development data (0.8:
# 0.297 against 0.280 for the prompt alone; README, "Edits"); 0 = the tracks, 1 = the prompt.
DEFAULT_EDIT_STRENGTH = 0.8
LATENT_ONLY = ("negative_prompt", "like_tracks", "source_prompt", "guidance_weight", "n_samples")
_UNKNOWN_SHOWN = 5


def is_number(value) -> bool:
    """A real number (int or float, numpy's too), not a bool."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def is_integer(value) -> bool:
    """An int (numpy's too), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_integer_fields(config, positive: Sequence[str], non_negative: Sequence[str]) -> None:
    """Each named field of ``config`` is a plain int, >= 1 (``positive``) or >= 0; else a
    ``ValueError`` naming the field, the bound and the value."""
    for name in (*positive, *non_negative):
        value, low = getattr(config, name), 1 if name in positive else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def prompt_list(prompt_or_prompts) -> tuple[list, bool]:
    """``(prompts, single)``: one ``str`` -> ``([it], True)``; any other iterable (not bytes or
    a mapping) -> ``(list(it), False)``; anything else raises ``TypeError``."""
    if isinstance(prompt_or_prompts, str):
        return [prompt_or_prompts], True
    if isinstance(prompt_or_prompts, Iterable) and not isinstance(
        prompt_or_prompts, (bytes, Mapping)
    ):
        return list(prompt_or_prompts), False
    raise TypeError(
        f"prompt_or_prompts must be a str or a list of str, got {type(prompt_or_prompts).__name__}"
    )


def normalise_prompts(prompts: Sequence, allow_empty: bool | Sequence[bool] = False) -> list[str]:
    """The prompts normalised as in training; ``TypeError`` / ``ValueError`` naming the index of a
    prompt that is not a ``str`` or is empty.

    ``allow_empty``: ``True`` for every prompt, or one bool per prompt: such a prompt may be
    empty (it normalises to ``""``), because something else says what it is about (seed tracks).
    """
    from text2tracks.data import normalize_prompt

    allowed = empty_allowed(allow_empty, len(prompts))
    texts = []
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(f"prompt {i} must be a str, got {type(prompt).__name__} {prompt!r}")
        text = normalize_prompt(prompt)
        if not text.strip():
            if not allowed[i]:
                raise ValueError(
                    f"prompt {i} is empty or only whitespace ({prompt!r}); give some text"
                )
            text = ""
        texts.append(text)
    return texts


def empty_allowed(allow_empty: bool | Sequence[bool], n_prompts: int) -> list[bool]:
    """``allow_empty`` (one bool, or one per prompt) -> one bool per prompt."""
    if isinstance(allow_empty, (bool, np.bool_)):
        return [bool(allow_empty)] * n_prompts
    if isinstance(allow_empty, (str, bytes, Mapping)) or not isinstance(allow_empty, Iterable):
        raise TypeError(
            f"allow_empty must be a bool or one bool per prompt, got {type(allow_empty).__name__}"
        )
    allowed = list(allow_empty)
    if len(allowed) != n_prompts or not all(isinstance(a, (bool, np.bool_)) for a in allowed):
        raise ValueError(
            f"allow_empty must hold one bool per prompt ({n_prompts}), got {allowed!r}"
        )
    return [bool(a) for a in allowed]


def check_k(k, n_items: int) -> None:
    """``k`` must be an integer in ``[1, n_items]``."""
    if not is_integer(k):
        raise TypeError(f"k must be an integer, got {type(k).__name__} {k!r}")
    if not 1 <= k <= n_items:
        raise ValueError(f"k must be between 1 and the catalogue size ({n_items} tracks), got {k}")


def check_batch_size(batch_size) -> None:
    if not is_integer(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")


def check_k_left(k: int, excluded: Sequence[np.ndarray | None], n_items: int) -> None:
    """With ``exclude``, ``k`` tracks must be left for every prompt."""
    for i, items in enumerate(excluded):
        left = n_items - (0 if items is None else len(items))
        if k > left:
            raise ValueError(
                f"k={k} but only {left} tracks are left for prompt {i} after excluding "
                f"{n_items - left} of the {n_items} in the catalogue; lower k"
            )


def warn_long_prompts(
    lengths: list[int], limit: int, unit: str, taker: str, first_index: int, stacklevel: int
) -> list[int]:
    """Warn, naming each prompt, about those longer than ``limit``; their batch positions."""
    too_long = [i for i, n in enumerate(lengths) if n > limit]
    for i in too_long:
        warnings.warn(
            f"prompt {first_index + i} has {lengths[i]} {unit}, more than {taker} takes ({limit}); "
            "it was truncated",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
    return too_long


def per_prompt_texts(value, name: str, n_prompts: int, single: bool) -> list[str | None]:
    """``None`` / one ``str`` for every prompt / one ``str`` or ``None`` per prompt ->
    normalised texts, one per prompt."""
    from text2tracks.data import normalize_prompt

    if value is None:
        return [None] * n_prompts
    if isinstance(value, str):
        values = [value] * n_prompts
    elif single:
        raise TypeError(f"{name} must be a str or None for one prompt, got {type(value).__name__}")
    elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
        values = list(value)
        if len(values) != n_prompts:
            raise ValueError(
                f"{name} has {len(values)} entries for {n_prompts} prompts; give "
                "one (str or None) per prompt, or a single str for all of them"
            )
    else:
        raise TypeError(
            f"{name} must be a str, or a list of str / None (one per prompt), got "
            f"{type(value).__name__}"
        )
    out: list[str | None] = []
    for i, text in enumerate(values):
        if text is None:
            out.append(None)
            continue
        if not isinstance(text, str):
            raise TypeError(f"{name} {i} must be a str or None, got {type(text).__name__} {text!r}")
        text = normalize_prompt(text)
        if not text:
            raise ValueError(f"{name} {i} is empty or only whitespace; give some text or None")
        out.append(text)
    return out


def track_indices(
    value,
    name: str,
    index_of: Callable[[str], int | None],
    n_prompts: int,
    single: bool,
    *,
    required: bool,
    stacklevel: int,
    unknown_note: str = "",
    keep_order: bool = False,
) -> list[np.ndarray | None]:
    """Track ids given for every prompt or per prompt -> one sorted int64 array of catalogue
    indices per prompt (``None``: no tracks for that prompt); with ``keep_order`` (seed
    tracks, whose order the model reads) the known ids in the order given instead.

    ``value`` is ``None``, one collection of track ids for every prompt, or (with a list of
    prompts) one collection or ``None`` per prompt. Ids that ``index_of`` does not know are
    ignored with one ``UserWarning`` naming a few of them (``unknown_note`` appended).
    ``required``: the tracks are what the prompt is about (``like_tracks``), so an empty
    collection, or a prompt whose ids are all unknown, raises ``ValueError``; otherwise
    (``exclude``) such a prompt simply gets ``None``.
    """
    if value is None:
        return [None] * n_prompts
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name} must be a collection of track ids (or one per prompt), got "
            f"{type(value).__name__}"
        )
    value = list(value)
    per_prompt = (
        not single
        and len(value) > 0
        and all(e is None or (isinstance(e, Iterable) and not isinstance(e, str)) for e in value)
    )
    if per_prompt:
        if len(value) != n_prompts:
            raise ValueError(
                f"{name} has {len(value)} collections for {n_prompts} prompts; give "
                "one per prompt, or a single collection of track ids for all of them"
            )
        groups = [[] if e is None else list(e) for e in value]
    else:
        if required and not value:
            raise ValueError(f"{name} is empty; give some track ids, or None")
        groups = [value]
    unknown: list[str] = []
    arrays: list[np.ndarray | None] = []
    for i, group in enumerate(groups):
        found = []
        for track_id in group:
            if not isinstance(track_id, str):
                raise TypeError(
                    f"{name} holds track ids (str), got {type(track_id).__name__} {track_id!r}"
                )
            index = index_of(track_id)
            if index is None:
                unknown.append(track_id)
            else:
                found.append(index)
        if required and group and not found:
            which = f"prompt {i}" if per_prompt else "the prompts"
            raise ValueError(
                f"none of the {len(group)} {name} of {which} is in the "
                f"catalogue (e.g. {group[0]!r}); give catalogue track ids"
            )
        found = np.asarray(found, dtype=np.int64)
        arrays.append((found if keep_order else np.unique(found)) if found.size else None)
    if unknown:
        _warn_unknown(name, unknown, unknown_note, stacklevel + 1)
    return arrays if per_prompt else arrays * n_prompts


def _warn_unknown(name: str, unknown: list[str], note: str, stacklevel: int) -> None:
    """One ``UserWarning`` naming a few of the track ids ``name`` gave that are not known."""
    shown = ", ".join(repr(t) for t in list(dict.fromkeys(unknown))[:_UNKNOWN_SHOWN])
    more = len(set(unknown)) - _UNKNOWN_SHOWN
    warnings.warn(
        f"{name}: ignored {len(set(unknown))} track id(s) that are not in the catalogue "
        f"({shown}{f' and {more} more' if more > 0 else ''}){note}",
        UserWarning,
        stacklevel=stacklevel + 1,
    )


@dataclass(frozen=True)
class LatentRequest:
    """The latent-mode options of one call, one entry per prompt where they vary."""

    negatives: list[str | None]
    seeds: list[np.ndarray | None]  # catalogue indices of each prompt's like_tracks
    sources: list[str | None]
    strength: float
    guidance_weight: float
    n_samples: int
    seed: int | None

    def rows(self, start: int, stop: int) -> LatentRequest:
        return LatentRequest(
            self.negatives[start:stop],
            self.seeds[start:stop],
            self.sources[start:stop],
            self.strength,
            self.guidance_weight,
            self.n_samples,
            self.seed,
        )


def latent_request(
    n_prompts: int,
    single: bool,
    index_of: Callable[[str], int | None],
    *,
    default_guidance_weight: float,
    default_n_samples: int,
    negative_prompt,
    like_tracks,
    source_prompt,
    guidance_weight,
    n_samples,
    edit_strength,
    seed,
    stacklevel: int,
) -> LatentRequest:
    """Check the latent-mode options and spread them over the prompts (the defaults fill the
    ``None`` of ``guidance_weight`` and ``n_samples``)."""
    if guidance_weight is None:
        guidance_weight = default_guidance_weight
    elif not is_number(guidance_weight) or not np.isfinite(guidance_weight) or guidance_weight < 0:
        raise ValueError(
            f"guidance_weight must be a finite number >= 0 (1 = plain conditional, "
            f"> 1 = stronger prompt), got {guidance_weight!r}"
        )
    if n_samples is None:
        n_samples = default_n_samples
    elif not is_integer(n_samples) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not is_number(edit_strength) or not 0.0 <= float(edit_strength) <= 1.0:
        raise ValueError(
            f"edit_strength must be a number in [0, 1] (0 = stay at like_tracks, "
            f"1 = follow the prompt), got {edit_strength!r}"
        )
    if seed is not None and (not is_integer(seed) or not 0 <= seed < 2**63):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    seeds = track_indices(
        like_tracks,
        "like_tracks",
        index_of,
        n_prompts,
        single,
        required=True,
        stacklevel=stacklevel + 1,
    )
    sources = per_prompt_texts(source_prompt, "source_prompt", n_prompts, single)
    if any(s is not None for s in sources) and all(s is None for s in seeds):
        raise ValueError(
            "source_prompt is the prompt DDIM inversion runs under; it only "
            "applies with like_tracks"
        )
    return LatentRequest(
        negatives=per_prompt_texts(negative_prompt, "negative_prompt", n_prompts, single),
        seeds=seeds,
        sources=sources,
        strength=float(edit_strength),
        guidance_weight=float(guidance_weight),
        n_samples=int(n_samples),
        seed=None if seed is None else int(seed),
    )


@dataclass(frozen=True)
class PreparedCall:
    """A :meth:`Text2Tracks.recommend` call, checked: normalised texts, per-prompt excluded
    catalogue indices, and the latent request (``None`` in generative mode)."""

    texts: list[str]
    single: bool
    excluded: list[np.ndarray | None]
    request: LatentRequest | None


def prepare_call(
    prompt_or_prompts,
    k,
    n_items: int,
    index_of: Callable[[str], int | None],
    *,
    check_mode: Callable[[str], None],
    mode: str,
    batch_size,
    exclude,
    edit_strength,
    seed,
    latent_defaults: Callable[[], dict],
    options: dict,
    stacklevel: int,
    allow_empty: bool | Sequence[bool] = False,
) -> PreparedCall:
    """Check every argument of a call (in the order the API documents) and spread the options
    over its prompts. ``options`` holds the latent-only ones (:data:`LATENT_ONLY`);
    ``latent_defaults()`` gives ``latent_request``'s defaults (called in the latent modes only).
    ``allow_empty`` (one bool, or one per prompt): which prompts may be empty (their text is
    ``""``), e.g. a prompt of seed tracks alone; by default an empty prompt raises ``ValueError``."""
    prompts, single = prompt_list(prompt_or_prompts)
    check_mode(mode)
    check_k(k, n_items)
    check_batch_size(batch_size)
    if mode == "generative":
        given = [name for name in LATENT_ONLY if options[name] is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} need mode='latent' or mode='hybrid' (the diffusion head); "
                "mode='generative' cannot use them"
            )
    texts = normalise_prompts(prompts, allow_empty)
    request = None
    if mode != "generative":
        request = latent_request(
            len(prompts),
            single,
            index_of,
            stacklevel=stacklevel + 1,
            edit_strength=edit_strength,
            seed=seed,
            **latent_defaults(),
            **options,
        )
    excluded = track_indices(
        exclude,
        "exclude",
        index_of,
        len(prompts),
        single,
        required=False,
        stacklevel=stacklevel + 1,
        unknown_note="; they are never recommended",
    )
    check_k_left(k, excluded, n_items)
    return PreparedCall(texts, single, excluded, request)


def labelled_prompts(
    prompts: Sequence, relevant: Sequence[Iterable[str]], index_of: Callable[[str], int | None]
) -> tuple[list[str], list[set[int]]]:
    """Validation prompts and their relevant track ids -> (normalised texts, sets of catalogue
    indices), leaving out prompts that are not text, empty, or without a catalogue track."""
    from text2tracks.data import normalize_prompt

    prompts, relevant = list(prompts), list(relevant)
    if len(prompts) != len(relevant):
        raise ValueError(f"{len(prompts)} prompts but {len(relevant)} relevant collections")
    texts, sets = [], []
    for prompt, tracks in zip(prompts, relevant, strict=True):
        if not isinstance(prompt, str) or not normalize_prompt(prompt):
            continue
        found = {i for i in map(index_of, tracks) if i is not None}
        if found:
            texts.append(normalize_prompt(prompt))
            sets.append(found)
    return texts, sets
