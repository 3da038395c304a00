"""Constrained beam search over semantic IDs.

The decoder writes ``decoder_start`` (pad for T5), then ``depth`` SID tokens, then EOS. The trie
(:class:`text2tracks.trie.FlatTrie`) is keyed by SID codes only: the processor skips the first
``decoder_prompt_len`` decoder positions (the start token) and reads the codes after them.

:class:`SIDConstraintProcessor` (:mod:`text2tracks.constraint_processor`, importable from here
too) masks the scores of every beam at once with tensor ops; its module says how.
:func:`constrained_generate` runs ``model.generate`` with it and maps the decoded tokens back to
item indices: k distinct valid items per prompt with their summed log-probabilities.
:func:`prefix_allowed_tokens_fn_from_trie` is the classic per-beam Python callback, kept as the
baseline of the speed benchmark and as a cross-check in the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
from transformers import LogitsProcessorList

from text2tracks.constraint_processor import SIDConstraintProcessor, dense_levels
from text2tracks.decoding_args import check_int, normalise_exclude
from text2tracks.tokens import SIDTokenLayout
from text2tracks.trie import FlatTrie

__all__ = [
    "SIDConstraintProcessor",
    "constrained_generate",
    "dense_levels",
    "prefix_allowed_tokens_fn_from_trie",
]


def prefix_allowed_tokens_fn_from_trie(
    trie: FlatTrie,
    layout: SIDTokenLayout,
    eos_token_id: int,
    pad_token_id: int | None = None,
    decoder_prompt_len: int = 1,
) -> Callable[[int, torch.Tensor], list[int]]:
    """The classic ``prefix_allowed_tokens_fn`` callback (one Python call per beam per step).

    Same rules as :class:`SIDConstraintProcessor` (without exclusions): skip the decoder start,
    level ``t``'s valid codes, then EOS, then padding. Baseline for the benchmark and tests only.
    """
    eos = check_int("eos_token_id", eos_token_id)
    pad = eos if pad_token_id is None else check_int("pad_token_id", pad_token_id)
    offsets = layout.offsets
    depth = trie.depth

    def fn(batch_id: int, sent: torch.Tensor) -> list[int]:
        t = sent.shape[-1] - decoder_prompt_len
        if t > depth:
            return [pad]
        if t == depth:
            return (
                [eos]
                if trie.item_of(
                    [
                        int(x) - offsets[lv]
                        for lv, x in enumerate(sent[decoder_prompt_len:].tolist())
                    ]
                )
                >= 0
                else [pad]
            )
        prefix = [int(x) - offsets[lv] for lv, x in enumerate(sent[decoder_prompt_len:].tolist())]
        nxt = (
            trie.valid_next(prefix)
            if all(0 <= c < trie.level_sizes[lv] for lv, c in enumerate(prefix))
            else ()
        )
        if len(nxt) == 0:  # impossible beam (its score is -inf already): anything non-empty
            return [pad]
        return (np.asarray(nxt) + offsets[t]).tolist()

    return fn


def _gen_token(model, name: str, given):
    if given is not None:
        return given
    for cfg in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        value = getattr(cfg, name, None) if cfg is not None else None
        if value is not None:
            if isinstance(value, (list, tuple)):
                value = value[0]
            return int(value)
    return None


def _check_no_prefix_prior(model) -> None:
    """``ValueError`` for a model whose ``"nodes"`` seed prior (:mod:`text2tracks.seed_prior`)
    reads each beam's prefix: ``generate`` steps the decoder without telling the output layer."""
    from text2tracks.seed_prior import seed_prior_of

    prior = seed_prior_of(model)
    if prior is not None and prior.nodes is not None:
        raise ValueError(
            "this model's nodes seed prior reads each beam's prefix, which transformers' "
            "generate does not pass: decode it with text2tracks.code_search.ensemble_generate "
            "(what the API, the export and the benchmark use)"
        )


def constrained_generate(
    model,
    input_ids,
    attention_mask,
    trie: FlatTrie,
    layout: SIDTokenLayout,
    k: int = 10,
    num_beams: int | None = None,
    exclude: Sequence[Iterable[int]] | None = None,
    max_new_tokens: int | None = None,
    **generate_kwargs,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k catalogue items for each prompt by constrained beam search.

    Args:
        model: a Hugging Face encoder-decoder (e.g. ``T5ForConditionalGeneration``).
        input_ids, attention_mask: the tokenised prompts (batch, seq_len), torch or numpy
            (``attention_mask`` may be ``None``).
        trie, layout: the catalogue's semantic-ID trie and the SID token layout.
        k: items per prompt. ``num_beams``: beam width, at least ``k`` and 2 (default ``max(k, 2)``).
        exclude: optional, per prompt a collection of item indices never to return (pruned
            inside decoding, so k items still come back).
        max_new_tokens: default ``depth + 1`` (the ID then EOS).
        generate_kwargs: passed to ``model.generate`` (``eos_token_id``/``pad_token_id`` are
            read from here, else from the model's generation config).

    Returns:
        ``items`` int64 (batch, k): distinct valid item indices, best first;
        ``scores`` float32 (batch, k): each sequence's summed log-probability (length penalty 0).

    Raises ``ValueError`` on bad arguments or if a prompt has fewer than k decodable items.
    """
    k, beams, max_new_tokens = _check_search_args(
        trie, layout, k, num_beams, max_new_tokens, generate_kwargs
    )
    _check_no_prefix_prior(model)
    input_ids, attention_mask = _prompt_tensors(model, input_ids, attention_mask)
    batch = input_ids.shape[0]
    excl = normalise_exclude(exclude, trie)
    _check_enough_items(trie, excl, batch, k)
    eos = _gen_token(model, "eos_token_id", generate_kwargs.pop("eos_token_id", None))
    pad = _gen_token(model, "pad_token_id", generate_kwargs.pop("pad_token_id", None))
    if eos is None:
        raise ValueError("no eos_token_id: pass it or set it in the model's generation config")
    processor = SIDConstraintProcessor(
        trie, layout, eos, pad, exclude=excl, num_beams=beams, decoder_prompt_len=1
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                num_beams=beams,
                num_return_sequences=k,
                logits_processor=LogitsProcessorList([processor]),
                output_scores=True,
                return_dict_in_generate=True,
                length_penalty=0.0,
                do_sample=False,
                early_stopping=True,
                max_new_tokens=max_new_tokens,
                eos_token_id=eos,
                pad_token_id=pad if pad is not None else eos,
                **generate_kwargs,
            )
    finally:
        model.train(was_training)
    return _decoded_items(out, trie, layout, batch, k, excl)


def _check_search_args(trie, layout, k, num_beams, max_new_tokens, generate_kwargs):
    """``(k, beam width, max_new_tokens)`` of :func:`constrained_generate`, checked."""
    if not isinstance(trie, FlatTrie):
        raise ValueError(f"trie must be a FlatTrie, got {type(trie).__name__}")
    if not isinstance(layout, SIDTokenLayout):
        raise ValueError(f"layout must be a SIDTokenLayout, got {type(layout).__name__}")
    k = check_int("k", k, 1)
    beams = k if num_beams is None else max(k, check_int("num_beams", num_beams, 1))
    # One beam makes transformers fall back to greedy search, which returns no sequence scores.
    beams = max(beams, 2)
    depth = trie.depth
    if max_new_tokens is None:
        max_new_tokens = depth + 1
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, 1)
    if max_new_tokens < depth + 1:
        raise ValueError(
            f"max_new_tokens must be at least depth + 1 = {depth + 1}, got {max_new_tokens}"
        )
    for forbidden in (
        "decoder_input_ids",
        "num_return_sequences",
        "logits_processor",
        "prefix_allowed_tokens_fn",
        "do_sample",
    ):
        if forbidden in generate_kwargs:
            raise ValueError(f"constrained_generate sets {forbidden} itself; do not pass it")
    return k, beams, max_new_tokens


def _prompt_tensors(model, input_ids, attention_mask):
    """The prompts' ``(input_ids, attention_mask)`` as long tensors on the model's device."""
    device = next(model.parameters()).device
    input_ids = torch.as_tensor(input_ids, dtype=torch.long).to(device)
    if input_ids.dim() != 2 or input_ids.shape[0] == 0:
        raise ValueError(
            f"input_ids must be (batch, seq_len) with batch >= 1, got {tuple(input_ids.shape)}"
        )
    if attention_mask is not None:
        attention_mask = torch.as_tensor(attention_mask, dtype=torch.long).to(device)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids "
                f"{tuple(input_ids.shape)}"
            )
    return input_ids, attention_mask


def _check_enough_items(trie: FlatTrie, excl, batch: int, k: int) -> None:
    """Every prompt must keep at least ``k`` items after its exclusions (one row per prompt)."""
    if excl is not None and len(excl) != batch:
        raise ValueError(f"exclude has {len(excl)} rows, expected one per prompt ({batch})")
    left = np.array(
        [trie.n_items - (0 if excl is None else len(e)) for e in (excl or [None] * batch)]
    )
    if (left < k).any():
        r = int(np.argmin(left))
        raise ValueError(
            f"prompt {r} has only {int(left[r])} decodable items (catalogue of {trie.n_items} "
            f"minus exclusions), fewer than k={k}: ask for a smaller k"
        )


def _decoded_items(out, trie: FlatTrie, layout: SIDTokenLayout, batch: int, k: int, excl):
    """``(items (batch, k) int64, scores (batch, k) float32)`` of ``generate``'s output, best
    first; ``RuntimeError`` if a row holds an invalid, repeated or excluded item."""
    depth = trie.depth
    seqs = out.sequences.detach().cpu().numpy()
    scores = out.sequences_scores.detach().float().cpu().numpy().reshape(batch, k)
    if seqs.shape[1] < 1 + depth:
        raise RuntimeError(f"generate returned sequences of length {seqs.shape[1]} < 1 + depth")
    codes = seqs[:, 1 : 1 + depth].astype(np.int64) - np.asarray(layout.offsets, dtype=np.int64)
    in_range = ((codes >= 0) & (codes < np.asarray(layout.level_sizes))).all(axis=1)
    items = np.where(in_range, trie.items_of(np.where(in_range[:, None], codes, 0)), -1)
    items = items.reshape(batch, k)
    # beam search returns rows best first; a stable sort keeps that and guards the order
    order = np.argsort(-scores, axis=1, kind="stable")
    items = np.take_along_axis(items, order, axis=1).astype(np.int64)
    scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    bad = (items < 0) | ~np.isfinite(scores)
    for r in range(batch):
        if (
            bad[r].any()
            or len(np.unique(items[r])) != k
            or (excl is not None and np.isin(items[r], excl[r]).any())
        ):
            raise RuntimeError(
                f"constrained beam search returned an invalid, repeated or excluded item for "
                f"prompt {r}: items {items[r].tolist()}, scores {scores[r].tolist()}"
            )
    return items, scores
