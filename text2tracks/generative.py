"""The generative mode of the API: prompts -> tokenizer -> constrained beam search -> a
diversified top k of catalogue item indices and scores (:func:`generate_items`).

The beam search itself is the code-space search of :func:`text2tracks.code_search.ensemble_generate`
(one member here), which computes cross-attention once per prompt instead of once per beam
(:mod:`text2tracks.shared_cross_attention`) and returns what
:func:`text2tracks.decoding.constrained_generate` (transformers' ``generate``) returns, faster;
this module holds what the API adds around it: truncation with a warning that names the prompt, the beam width
rule, the pick of k answers among the finished beams (:func:`diversify`; :func:`search_items`
is the one ranking of the API, the benchmark and training's validation), and plain numpy out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from text2tracks.modeling import DEFAULT_DIVERSITY, DEFAULT_NUM_BEAMS, DIVERSITY_DEPTH
from text2tracks.options import warn_long_prompts


def beam_width(num_beams: int | None, default: int | None, k: int) -> int:
    """The beam width of a call: ``num_beams``, else the recommender's default, else
    ``max(k, DEFAULT_NUM_BEAMS)``; at least ``k`` and 2 (one beam would be greedy search, which
    reports no sequence scores)."""
    beams = num_beams if num_beams is not None else default
    if beams is None:
        beams = max(k, DEFAULT_NUM_BEAMS)
    return max(beams, k, 2)


def diversity_penalty(value: float | None, default: float) -> float:
    """The diversity penalty of a call: ``value``, else ``default``; a clear error unless a
    finite number >= 0."""
    value = default if value is None else value
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.floating))
        or not np.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"diversity must be a finite number >= 0 (0 keeps the beam's top k), got {value!r}"
        )
    return float(value)


def diversify(
    items: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    k: int,
    penalty: float,
    depth: int = DIVERSITY_DEPTH,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick the first ``min(k, depth)`` of each row's candidates greedily, each time the best of
    ``score - penalty * (picked candidates in the same group)`` (maximal marginal relevance);
    the rest of the ``k`` follow in the candidates' own order.

    Hand-written: it is a few vectorised numpy lines over the beam's own output. The beam's best
    IDs crowd into one branch of the ID tree (near-duplicates for a set metric such as Hits@k);
    charging each pick for the picks already made under the same first code spreads the list
    over branches. Past ``depth`` the charge would keep growing and deal a long list round-robin
    over first codes, far from the model's order (a 500-deep continuation loses a third of its
    R-precision so), so the tail keeps the candidates' order. Ranking still uses only the
    model's own scores and IDs.

    Args:
        items, scores: ``(n, C)`` candidates best first (``C >= k``), e.g. the beam's.
        groups: ``(n, C)`` int, the group of each candidate (its first-level trie node).
        penalty: 0 keeps the first ``k`` as they are.
        depth: how many picks are charged (default :data:`~text2tracks.modeling.DIVERSITY_DEPTH`).

    Returns ``(items, adjusted scores)`` ``(n, k)`` in pick order. The adjusted scores
    (``score - penalty * earlier picks in its group``; in the tail the candidates' scores, all
    of a row's shifted down by one amount where needed to sit below its last charged pick) do
    not increase along a row.
    """
    n, width = items.shape
    if width < k:
        raise ValueError(f"diversify needs at least k={k} candidates per row, got {width}")
    if penalty < 0:
        raise ValueError(f"the diversity penalty must be >= 0, got {penalty}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"the diversity depth must be a positive integer, got {depth!r}")
    if penalty == 0:
        return items[:, :k], scores[:, :k]
    head = min(k, depth)
    adjusted = scores.astype(np.float64, copy=True)
    taken = np.zeros((n, width), dtype=bool)
    rows = np.arange(n)
    picked = np.empty((n, k), dtype=np.int64)
    picked_scores = np.empty((n, k), dtype=np.float64)
    for step in range(head):
        open_ = np.where(taken, -np.inf, adjusted)
        # the first untaken candidate at the row's best (also when all left score -inf)
        best = np.argmax(~taken & (open_ == open_.max(axis=1, keepdims=True)), axis=1)
        picked[:, step] = items[rows, best]
        picked_scores[:, step] = adjusted[rows, best]
        taken[rows, best] = True
        adjusted -= penalty * (groups == groups[rows, best][:, None])
    if head < k:
        rest = k - head
        picked[:, head:] = items[~taken].reshape(n, width - head)[:, :rest]
        tail = scores[~taken].reshape(n, width - head)[:, :rest].astype(np.float64)
        with np.errstate(invalid="ignore"):
            shift = np.maximum(tail[:, 0] - picked_scores[:, head - 1], 0.0)
        picked_scores[:, head:] = tail - np.nan_to_num(shift, nan=0.0)[:, None]
    return picked, picked_scores


def exclude_argument(excluded: Sequence[np.ndarray | None]):
    """Per-prompt exclusions (``None`` where a prompt has none) as the search takes them:
    ``None`` when no prompt excludes anything, else one collection per prompt."""
    if all(e is None for e in excluded):
        return None
    return [() if e is None else e for e in excluded]


def candidate_count(trie, k: int, num_beams: int, diversity: float, exclude) -> int:
    """How many finished beams a search returns: ``k``, or with ``diversity > 0`` every finished
    beam (as far as each prompt has items left), the candidates of :func:`diversify`."""
    if diversity <= 0:
        return k
    most_excluded = max((len(e) for e in exclude), default=0) if exclude else 0
    return max(k, min(num_beams, trie.n_items - most_excluded))


def encode_prompts(tokenizer, texts: list[str], max_length: int, first_index: int, stacklevel: int):
    """Tokenize a batch, truncating (with a warning naming each prompt) those over ``max_length``
    tokens. ``stacklevel`` as ``warnings.warn`` counts it from the caller's frame."""
    lengths = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
    too_long = warn_long_prompts(
        lengths, max_length, "tokens", "the model", first_index, stacklevel + 1
    )
    return tokenizer(
        texts,
        truncation=bool(too_long),
        max_length=max_length if too_long else None,
        padding=True,
        return_tensors="pt",
    )


def generate_items(
    model,
    tokenizer,
    trie,
    layout,
    texts: list[str],
    excluded: Sequence[np.ndarray | None],
    *,
    k: int,
    num_beams: int,
    max_length: int,
    first_index: int,
    stacklevel: int,
    diversity: float = DEFAULT_DIVERSITY,
) -> tuple[np.ndarray, np.ndarray]:
    """Constrained beam search (the caller holds the model lock): catalogue item indices int64
    and scores float64, ``(batch, k)`` each, best first.

    ``excluded``: per prompt, a sorted int64 array of item indices never to return (or None).
    ``diversity``: above 0, every finished beam is a candidate and ``k`` are picked by
    :func:`diversify` (scores are then the adjusted log-probabilities); 0 keeps the beam's top k
    and their log-probabilities.
    """
    exclude_arg = exclude_argument(excluded)
    encoded = encode_prompts(tokenizer, texts, max_length, first_index, stacklevel + 1)
    device = next(model.parameters()).device
    return search_items(
        model,
        encoded["input_ids"].to(device),
        encoded["attention_mask"].to(device),
        trie,
        layout,
        k=k,
        num_beams=num_beams,
        diversity=diversity,
        exclude=exclude_arg,
    )


def search_items(
    model,
    input_ids,
    attention_mask,
    trie,
    layout,
    *,
    k: int,
    num_beams: int,
    diversity: float,
    exclude=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Constrained beam search, then (``diversity > 0``) :func:`diversify` over every finished
    beam: the one ranking of the API, the benchmark and training's validation. Returns item
    indices int64 and scores float64, ``(batch, k)``."""
    import torch

    from text2tracks.code_search import EnsembleMember, ensemble_generate, model_eos_token_id

    candidates = candidate_count(trie, k, num_beams, diversity, exclude)
    member = EnsembleMember(model, input_ids, attention_mask, layout, model_eos_token_id(model))
    with torch.inference_mode():
        items, scores = ensemble_generate(
            [member], trie, k=candidates, num_beams=max(num_beams, candidates), exclude=exclude
        )
    items = np.asarray(items, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    return diversify(items, scores, trie.item_nodes[0][items], k, diversity)


def check_layout(layout, catalog) -> None:
    """The model's semantic-ID tokens must spell the catalogue's IDs (same levels, same scheme);
    ``ValueError`` naming both otherwise."""
    if tuple(layout.level_sizes) != tuple(catalog.level_sizes):
        raise ValueError(
            f"the model's semantic-ID layout {tuple(layout.level_sizes)} does not match the "
            f"catalogue's level sizes {tuple(catalog.level_sizes)}; they come from different "
            "builds"
        )
    layout_scheme, catalog_scheme = (
        getattr(layout, "scheme", "sid"),
        getattr(catalog, "scheme", "sid"),
    )
    if layout_scheme != catalog_scheme:
        raise ValueError(
            f"the model writes {layout_scheme!r} tokens but the catalogue holds "
            f"{catalog_scheme!r} IDs; they come from different builds"
        )
