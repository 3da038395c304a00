"""Seed tracks in the API: a prompt is a title (possibly empty) plus zero or more seed tracks,
in order (oldest first, as in a playlist).

Decisions (each tested in ``tests/test_seed_tracks.py``):

- ``seed_tracks`` is one collection of track ids for every prompt, or, with a list of prompts,
  one collection (or ``None``) per prompt. Its order is kept; ids the catalogue does not know are
  ignored with one ``UserWarning`` naming a few of them.
- Seeds are never recommended back: they join the prompt's ``exclude``.
- A prompt may be empty when it has known seeds; with neither text nor a known seed it raises
  ``ValueError`` naming the prompt and the fix.
- The model reads the seeds as their semantic-ID tokens after the title
  (:func:`text2tracks.data.seeded_prompt_ids`, the encoding training uses): the title keeps its
  own limit (``max_prompt_length`` tokens, cut with a warning as before) and the seeds theirs
  (the last ``max_seed_tracks``, each ID whole, with a warning naming the prompt when older
  ones are left out), so neither is cut to make room for the other.
- A model trained without seeds (``max_seed_tracks`` 0, the default of an artifact whose
  training had ``seed_prob`` 0) does not read them: they are only excluded, with a warning, and
  a prompt of seeds alone raises ``ValueError``.

``max_seed_tracks`` is stored in ``seq2seq/seed_tracks.json`` (written by
:meth:`Text2Tracks.save_pretrained`), or read from the training run's ``train_config.json``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEED_SETTINGS_NAME = "seed_tracks.json"
TRAIN_CONFIG_NAME = "train_config.json"


def check_max_seed_tracks(value) -> int:
    """``value`` as an int; ``ValueError`` unless an integer >= 0 (0: the model reads no seeds)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(
            f"max_seed_tracks must be an integer >= 0 (0: the model reads no seeds), got {value!r}"
        )
    return int(value)


def _seed_settings(seq2seq_dir: str | Path) -> dict:
    """``seed_tracks.json``, else the seed fields of the training's ``train_config.json`` (when
    ``seed_prob`` > 0), else ``{}``."""
    seq2seq_dir = Path(seq2seq_dir)
    path = seq2seq_dir / SEED_SETTINGS_NAME
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    path = seq2seq_dir / TRAIN_CONFIG_NAME
    if path.is_file():
        with open(path, encoding="utf-8") as f:
            config = json.load(f).get("config", {})
        if config.get("seed_prob", 0) > 0:
            return config
    return {}


def read_max_seed_tracks(seq2seq_dir: str | Path) -> int:
    """How many seeds the model of ``seq2seq_dir`` reads: ``seed_tracks.json``'s
    ``max_seed_tracks``, else its training's (``train_config.json``, when ``seed_prob`` > 0),
    else 0."""
    return check_max_seed_tracks(_seed_settings(seq2seq_dir).get("max_seed_tracks", 0))


def read_seed_encoding(seq2seq_dir: str | Path) -> str:
    """How the model of ``seq2seq_dir`` reads a seed (:mod:`text2tracks.seed_embedding`), from
    the same files as :func:`read_max_seed_tracks`; models from before the choice existed read
    ``"codes"``."""
    from text2tracks.seed_embedding import check_seed_encoding

    return check_seed_encoding(_seed_settings(seq2seq_dir).get("seed_encoding", "codes"))


def write_max_seed_tracks(
    seq2seq_dir: str | Path, max_seed_tracks: int, seed_encoding: str = "codes"
) -> None:
    """Record ``max_seed_tracks`` and ``seed_encoding`` in ``seq2seq_dir/seed_tracks.json``
    (atomically)."""
    from text2tracks.artifacts import write_json_atomic
    from text2tracks.seed_embedding import check_seed_encoding

    write_json_atomic(
        Path(seq2seq_dir) / SEED_SETTINGS_NAME,
        {
            "max_seed_tracks": check_max_seed_tracks(max_seed_tracks),
            "seed_encoding": check_seed_encoding(seed_encoding),
        },
    )


def resolve_seed_tracks(
    value,
    index_of: Callable[[str], int | None],
    n_prompts: int,
    single: bool,
    *,
    stacklevel: int,
) -> list[np.ndarray | None]:
    """``seed_tracks`` -> per prompt, the catalogue indices of its known seeds in the order
    given (int64; ``None`` where a prompt has none). Unknown ids: one ``UserWarning``. The
    same reading as ``exclude`` and ``like_tracks`` (:func:`text2tracks.options.track_indices`),
    the order kept."""
    from text2tracks.options import track_indices

    return track_indices(
        value,
        "seed_tracks",
        index_of,
        n_prompts,
        single,
        required=False,
        stacklevel=stacklevel + 1,
        keep_order=True,
    )


def seeds_alone(prompts: list, seeds: list[np.ndarray | None], reads_seeds: bool) -> list[bool]:
    """Per prompt, whether it is seeds alone (no text, known seeds): such a prompt may be empty
    (``prepare_call``'s ``allow_empty``). ``ValueError`` for a prompt with neither text nor a
    known seed, or with seeds alone for a model that reads none, naming it and the fix."""
    from text2tracks.data import normalize_prompt

    alone = [False] * len(prompts)
    for i, (prompt, found) in enumerate(zip(prompts, seeds, strict=True)):
        if not isinstance(prompt, str) or normalize_prompt(prompt):
            continue  # a non-str prompt gets prepare_call's TypeError
        if found is None:
            raise ValueError(
                f"prompt {i} is empty or only whitespace ({prompt!r}) and has no seed track in "
                "the catalogue; give some text, or seed_tracks with catalogue track ids"
            )
        if not reads_seeds:
            raise ValueError(
                f"prompt {i} has seed tracks but no text, and this model was trained without "
                "seed tracks (max_seed_tracks 0), so it cannot read them; give some text, or "
                "train with --seed-prob > 0"
            )
        alone[i] = True
    return alone


@dataclass(frozen=True)
class SeededCall:
    """:class:`text2tracks.options.PreparedCall` with seeds: normalised texts (``""`` for a
    prompt of seeds alone), per prompt the excluded indices (seeds included) and the seeds in
    order (``None`` where none, and for every prompt when the model reads none)."""

    texts: list[str]
    single: bool
    excluded: list[np.ndarray | None]
    seeds: list[np.ndarray | None]
    request: Any


def prepare_seeded_call(
    prompt_or_prompts,
    k,
    n_items: int,
    index_of: Callable[[str], int | None],
    *,
    seed_tracks,
    max_seed_tracks: int,
    mode: str,
    stacklevel: int,
    head_reads_seeds: bool = False,
    **call_options,
) -> SeededCall:
    """:func:`text2tracks.options.prepare_call` for prompts that may carry seed tracks:
    :func:`resolve_seed_tracks`, then :func:`seeds_alone` (those prompts may be empty); the
    seeds join ``exclude`` and ``k`` must leave enough tracks.

    Who reads the seeds: the seq2seq (``max_seed_tracks`` > 0) and, in the latent and hybrid
    modes, a diffusion head trained with seed conditioning (``head_reads_seeds``). When neither
    does, a warning says they are only excluded and they are not passed on. A prompt of seeds
    alone needs a reader for every view of its mode: latent mode the head, hybrid mode the head
    and the seq2seq. ``mode="cf-blend"`` is generative mode's call whose seeds the blend's
    kNN reads too: they are passed on, without the warning, even when the model reads none."""
    from text2tracks.options import check_k_left, prepare_call, prompt_list

    keep_seeds = mode == "cf-blend"
    mode = "generative" if keep_seeds else mode

    prompts, single = prompt_list(prompt_or_prompts)
    seeds = resolve_seed_tracks(
        seed_tracks, index_of, len(prompts), single, stacklevel=stacklevel + 1
    )
    head_reads = mode != "generative" and bool(head_reads_seeds)
    alone = seeds_alone(prompts, seeds, max_seed_tracks > 0 or head_reads)
    every_view_reads = head_reads and (mode == "latent" or max_seed_tracks > 0)
    if mode != "generative" and any(alone) and not every_view_reads:
        reader = (
            "the seq2seq"
            if head_reads
            else "the diffusion head (train it with --seed-conditioning)"
        )
        raise ValueError(
            f"prompt {alone.index(True)} has seed tracks but no text, and in mode={mode!r} "
            f"{reader} does not read seeds; give some text, or use mode='generative'"
        )
    if not max_seed_tracks and not head_reads and not keep_seeds:
        warn_unread_seeds(seeds, stacklevel=stacklevel + 1)
    call = prepare_call(
        prompts[0] if single else prompts,
        k,
        n_items,
        index_of,
        mode=mode,
        stacklevel=stacklevel + 1,
        allow_empty=alone,
        **call_options,
    )
    excluded = merge_excluded(call.excluded, seeds)
    check_k_left(k, excluded, n_items)
    if not max_seed_tracks and not head_reads and not keep_seeds:
        seeds = [None] * len(call.texts)
    return SeededCall(call.texts, single, excluded, seeds, call.request)


def merge_excluded(
    excluded: Sequence[np.ndarray | None], seeds: Sequence[np.ndarray | None]
) -> list[np.ndarray | None]:
    """Each prompt's excluded indices joined with its seeds (sorted unique int64)."""
    out = []
    for e, s in zip(excluded, seeds, strict=True):
        if s is None:
            out.append(e)
        else:
            out.append(np.union1d(s, e) if e is not None else np.unique(s))
    return out


def warn_unread_seeds(seeds: Sequence[np.ndarray | None], stacklevel: int) -> None:
    """A model that reads no seeds: say that they only keep their tracks out of the answer."""
    if any(s is not None for s in seeds):
        warnings.warn(
            "seed_tracks: this model was trained without seed tracks (max_seed_tracks 0), so "
            "it reads the text only; the seeds are only kept out of the answer (train with "
            "--seed-prob > 0 for a model that continues from them)",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def seeded_batch(
    tokenizer,
    texts: list[str],
    seeds: Sequence[np.ndarray | None],
    sid_token_ids: np.ndarray,
    *,
    max_length: int,
    max_seeds: int,
    first_index: int,
    stacklevel: int,
):
    """``(input_ids, attention_mask)`` int64 tensors of a batch of prompts with seeds, each
    :func:`text2tracks.data.seeded_prompt_ids` of its title and seeds, right-padded; a warning
    names each prompt whose title or seeds were cut."""
    import torch

    from text2tracks.data import encode_prompts, pad_prompts, seeded_prompt_ids
    from text2tracks.options import warn_long_prompts

    lengths = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    warn_long_prompts(lengths, max_length, "tokens", "the model", first_index, stacklevel + 1)
    for i, found in enumerate(seeds):
        if found is not None and len(found) > max_seeds:
            warnings.warn(
                f"prompt {first_index + i} has {len(found)} seed tracks, more than the model "
                f"reads ({max_seeds}); the {len(found) - max_seeds} oldest were truncated",
                UserWarning,
                stacklevel=stacklevel + 1,
            )
    titles = encode_prompts(tokenizer, texts, max_length, normalize=False)
    prompts = [
        seeded_prompt_ids(title, found, sid_token_ids, max_seeds)
        for title, found in zip(titles, seeds, strict=True)
    ]
    input_ids, attention_mask = pad_prompts(prompts, tokenizer.pad_token_id)
    return torch.from_numpy(input_ids), torch.from_numpy(attention_mask)


def check_seed_room(model, max_prompt_length: int, max_seed_tracks: int, depth: int) -> None:
    """An encoder with absolute positions (MiniLM / BERT) must hold the longest prompt:
    ``max_prompt_length`` title tokens and ``max_seed_tracks`` seeds of ``depth`` tokens each
    (of one token when the model reads one per seed)."""
    from text2tracks.seed_embedding import seed_encoding_of

    config = getattr(model, "config", None)
    encoder_config = getattr(config, "encoder", None)
    limit = getattr(encoder_config, "max_position_embeddings", None)
    if isinstance(limit, int) and seed_encoding_of(model) != "codes":
        depth = 1
    longest = max_prompt_length + max_seed_tracks * depth
    if isinstance(limit, int) and max_seed_tracks and longest > limit:
        raise ValueError(
            f"prompts with seeds take up to {longest} tokens ({max_prompt_length} for the title "
            f"+ {max_seed_tracks} seeds x {depth}), more than the encoder's {limit} positions; "
            "lower max_seed_tracks"
        )


def generate_seeded(
    model,
    tokenizer,
    trie,
    layout,
    sid_token_ids: np.ndarray,
    texts: list[str],
    excluded: Sequence[np.ndarray | None],
    seeds: Sequence[np.ndarray | None],
    *,
    k: int,
    num_beams: int,
    max_length: int,
    max_seeds: int,
    first_index: int,
    stacklevel: int,
    diversity: float,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`text2tracks.generative.generate_items` for a batch with seeds (the caller holds
    the model lock): the encoder reads :func:`seeded_batch`, then the API's one ranking
    (:func:`text2tracks.generative.search_items`). Item indices int64 and scores float64,
    ``(batch, k)``."""
    from text2tracks.generative import exclude_argument, search_items

    input_ids, attention_mask = seeded_batch(
        tokenizer,
        texts,
        seeds,
        sid_token_ids,
        max_length=max_length,
        max_seeds=max_seeds,
        first_index=first_index,
        stacklevel=stacklevel + 1,
    )
    device = next(model.parameters()).device
    exclude = exclude_argument(excluded)
    return search_items(
        model,
        input_ids.to(device),
        attention_mask.to(device),
        trie,
        layout,
        k=k,
        num_beams=num_beams,
        diversity=diversity,
        exclude=exclude,
    )


class SeedTracksMixin:
    """What :class:`~text2tracks.pipeline.Text2Tracks` adds for seed tracks: the checked
    ``max_seed_tracks`` and beam search over prompts with seeds. The class provides ``model``,
    ``tokenizer``, ``trie``, ``layout``, ``catalog`` and ``max_prompt_length``."""

    @property
    def max_seed_tracks(self) -> int:
        """The most seed tracks the model reads per prompt, the most recent kept (0: none);
        settable, checked against the encoder's positions."""
        return self._max_seed_tracks

    @max_seed_tracks.setter
    def max_seed_tracks(self, value: int) -> None:
        value = check_max_seed_tracks(value)
        check_seed_room(self.model, self.max_prompt_length, value, self.layout.depth)
        self._max_seed_tracks = value

    def _seed_token_ids(self) -> np.ndarray:
        """``(n_items, width)`` what the encoder reads for each catalogue item as a seed (its ID
        tokens, or its one seed token: :func:`text2tracks.seed_embedding.seed_token_table`);
        computed on first use and kept."""
        if getattr(self, "_seed_tokens", None) is None:
            from text2tracks.seed_embedding import catalogue_seed_tokens

            self._seed_tokens = catalogue_seed_tokens(
                self.model, self.layout, self.catalog.sid_codes
            )
        return self._seed_tokens

    def _generate_seeded(
        self, texts, excluded, k, num_beams, first_index, stacklevel, diversity, seeds
    ):
        """``_generate`` for a batch with seeds (the caller holds the lock)."""
        return generate_seeded(
            self.model,
            self.tokenizer,
            self.trie,
            self.layout,
            self._seed_token_ids(),
            texts,
            excluded,
            seeds,
            k=k,
            num_beams=num_beams,
            max_length=self.max_prompt_length,
            max_seeds=self.max_seed_tracks,
            first_index=first_index,
            stacklevel=stacklevel + 1,
            diversity=diversity,
        )
