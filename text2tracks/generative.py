"""The generative mode of the API: prompts -> tokenizer -> constrained beam search -> catalogue
item indices and log-probabilities (:func:`generate_items`).

The beam search itself is :func:`text2tracks.decoding.constrained_generate`; this module holds
what the API adds around it: truncation with a warning that names the prompt, the beam width
rule, and plain numpy out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from text2tracks.modeling import DEFAULT_NUM_BEAMS
from text2tracks.options import warn_long_prompts


def beam_width(num_beams: int | None, default: int | None, k: int) -> int:
    """The beam width of a call: ``num_beams``, else the recommender's default, else
    ``max(k, DEFAULT_NUM_BEAMS)``; at least ``k`` and 2 (one beam would be greedy search, which
    reports no sequence scores)."""
    beams = num_beams if num_beams is not None else default
    if beams is None:
        beams = max(k, DEFAULT_NUM_BEAMS)
    return max(beams, k, 2)


def encode_prompts(tokenizer, texts: list[str], max_length: int, first_index: int, stacklevel: int):
    """Tokenize a batch, truncating (with a warning naming each prompt) those over ``max_length``
    tokens. ``stacklevel`` as ``warnings.warn`` counts it from the caller's frame."""
    lengths = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    too_long = warn_long_prompts(lengths, max_length, "tokens", "the model", first_index,
                                 stacklevel + 1)
    return tokenizer(
        texts,
        truncation=bool(too_long),
        max_length=max_length if too_long else None,
        padding=True,
        return_tensors="pt",
    )


def generate_items(
    model, tokenizer, trie, layout, texts: list[str], excluded: Sequence[np.ndarray | None], *,
    k: int, num_beams: int, max_length: int, first_index: int, stacklevel: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Constrained beam search (the caller holds the model lock): catalogue item indices int64
    and log-probs float64, ``(batch, k)`` each, best first.

    ``excluded``: per prompt, a sorted int64 array of item indices never to return (or None).
    """
    import torch

    from text2tracks.decoding import constrained_generate

    exclude_arg = None if all(e is None for e in excluded) else [
        () if e is None else e for e in excluded
    ]
    encoded = encode_prompts(tokenizer, texts, max_length, first_index, stacklevel + 1)
    device = next(model.parameters()).device
    with torch.inference_mode():
        items, scores = constrained_generate(
            model,
            encoded["input_ids"].to(device),
            encoded["attention_mask"].to(device),
            trie,
            layout,
            k=k,
            num_beams=num_beams,
            exclude=exclude_arg,
        )
    items = np.asarray(items.cpu() if hasattr(items, "cpu") else items, dtype=np.int64)
    scores = np.asarray(scores.cpu() if hasattr(scores, "cpu") else scores, dtype=np.float64)
    return items, scores


def check_layout(layout, catalog) -> None:
    """The model's semantic-ID tokens must spell the catalogue's IDs (same levels, same scheme);
    ``ValueError`` naming both otherwise."""
    if tuple(layout.level_sizes) != tuple(catalog.level_sizes):
        raise ValueError(
            f"the model's semantic-ID layout {tuple(layout.level_sizes)} does not match the "
            f"catalogue's level sizes {tuple(catalog.level_sizes)}; they come from different "
            "builds"
        )
    layout_scheme, catalog_scheme = getattr(layout, "scheme", "sid"), getattr(catalog, "scheme", "sid")
    if layout_scheme != catalog_scheme:
        raise ValueError(
            f"the model writes {layout_scheme!r} tokens but the catalogue holds "
            f"{catalog_scheme!r} IDs; they come from different builds"
        )
