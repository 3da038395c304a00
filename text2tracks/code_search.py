"""The constrained beam search in code space, over one model or the mean of several.

The beam lives in the catalogue's code space (``(rows, t)`` codes) and each model reads it
through its own ``offset + code`` tokens, so models with different tokenizers can be searched
together (:mod:`text2tracks.ensemble`), and one model is searched the same way
(:func:`text2tracks.generative.search_items`). Each ID is scored by the weighted mean of the
models' log-probabilities (a product of experts; one model: its own score).

Hand-written: transformers' ``generate`` runs one model and repeats each prompt's encoder
states per beam. The IDs have a fixed depth (every beam ends with EOS at step ``depth``), so the
search is ``depth + 1`` steps of "score, mask with the trie, keep the best ``num_beams``", with
no finished-hypothesis bookkeeping. The masks (and exclusions) come from
:meth:`text2tracks.constraint_processor.SIDConstraintProcessor.next_code_mask`, in code space;
cross-attention is computed once per prompt (:mod:`text2tracks.shared_cross_attention`) and only
the decoder's self-attention cache follows the beams. The scores are the unrenormalised sums
that :func:`text2tracks.decoding.constrained_generate` returns (the log-softmax is taken over each
model's vocabulary before the trie mask), so one model returns what ``constrained_generate``
returns.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from text2tracks.decoding_args import check_int, normalise_exclude
from text2tracks.lean_decoder import LeanBertDecoder, lean_supported
from text2tracks.output_head import compact_output, has_id_output_head
from text2tracks.seed_prior import prior_prefix
from text2tracks.shared_cross_attention import additive_mask, shared_cross_attention
from text2tracks.tokens import SIDTokenLayout
from text2tracks.trie import FlatTrie

if TYPE_CHECKING:  # torch is imported lazily: importing text2tracks loads no torch
    import torch

__all__ = ["EnsembleMember", "ensemble_generate", "ensemble_item_scores", "model_eos_token_id"]


@dataclass
class EnsembleMember:
    """One model of an ensemble and its tokenised prompts.

    ``input_ids``/``attention_mask``: ``(batch, seq_len)`` torch tensors in the model's own
    vocabulary (same prompts, same order for every member). ``layout``: where the model's
    semantic-ID tokens sit; ``eos_token_id``: its end-of-ID token.
    """

    model: object
    input_ids: torch.Tensor
    attention_mask: torch.Tensor | None
    layout: SIDTokenLayout
    eos_token_id: int


def model_eos_token_id(model) -> int:
    """A seq2seq's end-of-ID token: its generation config's, else its config's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = model.config.eos_token_id
    if eos is None:
        raise ValueError("the model has no eos_token_id in its config or generation config")
    return int(eos[0] if isinstance(eos, (list, tuple)) else eos)


@functools.cache
def _cache_arg(model_class: type) -> str:
    """transformers 5 calls the decoder cache ``cache``, 4.x ``past_key_values`` (argument and
    output); looked up once per model class."""
    params = inspect.signature(model_class.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class _MemberState:
    """A member's encoder states and its decoder start token.

    ``shared``: the model computes cross-attention once per prompt
    (:mod:`text2tracks.shared_cross_attention` is active), so the states stay ``(batch, L, d)``;
    otherwise they are repeated per beam. ``compact``: score only the columns of an ID-only output
    layer (:func:`_scored_columns`). ``lean``: the decoder steps through
    :class:`~text2tracks.lean_decoder.LeanBertDecoder` (its own shared cross-attention), not
    through the model's ``forward`` (the caller checked ``lean_supported``; see
    :func:`_member_states`)."""

    def __init__(
        self,
        member: EnsembleMember,
        beams: int,
        shared: bool = False,
        compact: bool = True,
        lean: bool = False,
    ) -> None:
        model = member.model
        self.model = model
        self.layout = member.layout
        self.eos = int(member.eos_token_id)
        start = getattr(model.config, "decoder_start_token_id", None)
        if start is None:
            start = getattr(
                getattr(model, "generation_config", None), "decoder_start_token_id", None
            )
        if start is None:
            raise ValueError("an ensemble member has no decoder_start_token_id in its config")
        self.start = int(start)
        device = next(model.parameters()).device
        ids = member.input_ids.to(device)
        mask = None if member.attention_mask is None else member.attention_mask.to(device)
        hidden = model.get_encoder()(
            input_ids=ids, attention_mask=mask, return_dict=True
        ).last_hidden_state
        self.lean = None  # a BERT decoder's bare step (text2tracks.lean_decoder)
        if lean:
            self.lean = LeanBertDecoder(model, hidden, mask)
        elif shared:
            self.hidden, self.mask = hidden, additive_mask(mask, hidden.dtype)
        else:
            self.hidden = hidden.repeat_interleave(beams, dim=0)
            self.mask = None if mask is None else mask.repeat_interleave(beams, dim=0)
        self.device = device
        self.cache = None  # the decoder's key/value cache, reordered with the beams
        self.cache_arg = _cache_arg(type(model))
        self.columns = _scored_columns(model, self.layout, self.eos, device) if compact else None

    def reorder(self, parent: torch.Tensor) -> None:
        """Follow the beams: row ``i`` of the cache becomes the old row ``parent[i]``.

        Only the decoder's self-attention cache moves: a beam's parent is a beam of the same
        prompt, whose cross-attention keys and values (over the same encoder states) are the
        same rows already; copying them would move ``beams x prompt length`` rows per layer and
        step for nothing."""
        parent = parent.to(self.device)
        if self.lean is not None:
            self.lean.reorder(parent)
            return
        inner = getattr(self.cache, "self_attention_cache", None)
        (inner if inner is not None else self.cache).reorder_cache(parent)

    def step_logprobs(self, codes: torch.Tensor, level: int | None) -> torch.Tensor:
        """Log-probabilities of level ``level``'s codes (rows, level size) after each row's
        ``codes`` prefix, or of EOS (rows, 1) when ``level`` is None."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        rows, t = codes.shape
        if t == 0:  # the first step: the decoder start token alone
            tokens = torch.full((rows, 1), self.start, dtype=torch.long, device=self.device)
        else:  # later steps: the last code, the cache holds the rest
            off = self.layout.offsets[t - 1]
            tokens = codes[:, -1:].to(self.device) + off
        # an ID-only output layer scores its own columns only: the log-softmax over them equals
        # the one over the masked full vocabulary, without a (rows, vocab) tensor per step
        # (MiniLM's 31k-token vocabulary made that most of a search step)
        compact = contextlib.nullcontext() if self.columns is None else compact_output(self.model)
        with compact, prior_prefix(self.model, codes):  # a "nodes" seed prior reads the prefix
            if self.lean is not None:
                return self._scores(self.lean.step(tokens[:, 0]), level)
            out = self.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=self.hidden),
                attention_mask=self.mask,
                decoder_input_ids=tokens,
                use_cache=True,
                return_dict=True,
                **{self.cache_arg: self.cache},
            )
        self.cache = out[self.cache_arg]
        return self._scores(out.logits[:, -1, :], level)

    def _scores(self, logits: torch.Tensor, level: int | None) -> torch.Tensor:
        """The level's (or EOS's) log-probabilities from one step's output-layer scores."""
        import torch

        logp = torch.log_softmax(logits.float(), dim=-1)
        if self.columns is not None:
            return logp.index_select(1, self.columns[-1 if level is None else level])
        if level is None:
            return logp[:, self.eos : self.eos + 1]
        off = self.layout.offsets[level]
        return logp[:, off : off + self.layout.level_sizes[level]]


def _scored_columns(model, layout: SIDTokenLayout, eos: int, device):
    """Per level, the columns of ``model``'s ID-only output layer (compact mode) that score its
    codes, then EOS's (a list of long tensors); ``None`` for a model without such a layer, or one
    whose layer does not score every code and EOS (the full logits are used then)."""
    import torch

    if not has_id_output_head(model):
        return None
    position = model.get_output_embeddings().position
    columns = [
        position[off : off + size]
        for off, size in zip(layout.offsets, layout.level_sizes, strict=True)
    ]
    columns.append(position[eos : eos + 1])
    if any(bool(c.lt(0).any()) for c in columns):
        return None
    return [c.to(device=device, dtype=torch.long) for c in columns]


def ensemble_generate(
    members: Sequence[EnsembleMember],
    trie: FlatTrie,
    k: int = 10,
    num_beams: int | None = None,
    exclude: Sequence[Iterable[int]] | None = None,
    weights: Sequence[float] | None = None,
    share_cross_attention: bool = True,
    compact_scores: bool = True,
    lean_steps: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k catalogue items per prompt under the members' mean log-probability.

    Args:
        members: one or more :class:`EnsembleMember`, the same prompts each.
        trie: the catalogue's trie (every member's layout must have its level sizes).
        k: items per prompt; ``num_beams``: beam width (at least ``k``; default ``k``).
        exclude: optional, per prompt the item indices never to return.
        weights: optional, one weight per member (normalised to sum 1; default equal).
        share_cross_attention: compute each prompt's cross-attention once, not once per beam
            (:mod:`text2tracks.shared_cross_attention`; same results); False repeats the
            encoder states per beam, as ``generate`` does (for comparison).
        compact_scores: a member with an ID-only output layer scores only its columns (same
            results); False writes its masked vocabulary-wide logits each step (for comparison).
        lean_steps: a member with a BERT decoder steps through
            :class:`~text2tracks.lean_decoder.LeanBertDecoder` (same results); False through
            the model's ``forward`` (for comparison).

    Returns ``items`` int64 and ``scores`` float32, ``(batch, k)``, best first: the weighted mean
    over members of each ID's summed log-probability (EOS included).
    """
    import torch

    from text2tracks.constraint_processor import SIDConstraintProcessor

    if not members:
        raise ValueError("an ensemble needs at least one member")
    k = check_int("k", k, 1)
    beams = k if num_beams is None else max(k, check_int("num_beams", num_beams, 1))
    batch = members[0].input_ids.shape[0]
    for i, m in enumerate(members):
        if tuple(m.layout.level_sizes) != tuple(trie.level_sizes):
            raise ValueError(
                f"ensemble member {i} writes IDs of level sizes {tuple(m.layout.level_sizes)}, "
                f"but the catalogue's are {tuple(trie.level_sizes)}: members must spell one "
                "catalogue"
            )
        if m.input_ids.shape[0] != batch:
            raise ValueError(f"member {i} has {m.input_ids.shape[0]} prompts, member 0 {batch}")
    w = _member_weights(weights, len(members))
    excl = normalise_exclude(exclude, trie)
    left = trie.n_items - (0 if excl is None else max(len(e) for e in excl))
    if left < k:
        raise ValueError(
            f"a prompt has only {left} decodable items (catalogue minus exclusions), fewer than "
            f"k={k}: ask for a smaller k"
        )
    first = members[0]
    processor = SIDConstraintProcessor(
        trie, first.layout, first.eos_token_id, exclude=excl, num_beams=beams, decoder_prompt_len=0
    )
    with _eval_mode(members), torch.no_grad(), contextlib.ExitStack() as stack:
        states = _member_states(
            members, beams, stack, share_cross_attention, compact_scores, lean_steps
        )
        items, scores = _search(states, w, processor, trie, batch, beams)
    return _best_k(items, scores, k, excl)


def ensemble_item_scores(
    members: Sequence[EnsembleMember],
    codes: np.ndarray,
    weights: Sequence[float] | None = None,
) -> np.ndarray:
    """The score the search gives each of the given IDs, without searching: the members'
    weighted mean of the ID's summed log-probability, EOS included (teacher-forced, the same
    unrenormalised sum as :func:`ensemble_generate`'s).

    Args:
        members: the prompts, tokenised by each member (as for :func:`ensemble_generate`).
        codes: int ``(batch, n, depth)``, per prompt the catalogue codes of ``n`` IDs to score
            (e.g. ``catalog.sid_codes[items]``).
        weights: optional, one weight per member (normalised to sum 1; default equal).

    Returns float64 ``(batch, n)``.
    """
    import torch

    if not members:
        raise ValueError("scoring needs at least one model")
    codes = np.asarray(codes, dtype=np.int64)
    batch = members[0].input_ids.shape[0]
    if codes.ndim != 3 or codes.shape[0] != batch:
        raise ValueError(f"codes must be (batch={batch}, n, depth), got shape {codes.shape}")
    _, n, depth = codes.shape
    w = _member_weights(weights, len(members))
    flat = torch.from_numpy(codes.reshape(batch * n, depth))
    total = torch.zeros(batch * n, dtype=torch.float64)
    if n == 0:
        return total.numpy().reshape(batch, 0)
    with _eval_mode(members), torch.no_grad(), contextlib.ExitStack() as stack:
        # n rows per prompt play the beams: the cache never reorders, each row keeps its ID
        states = _member_states(members, n, stack)
        for t in range(depth + 1):
            level = t if t < depth else None
            for wi, state in zip(w, states, strict=True):
                step = state.step_logprobs(flat[:, :t], level).cpu().double()
                picked = step[:, 0] if level is None else step.gather(1, flat[:, t : t + 1])[:, 0]
                total += float(wi) * picked
    return total.numpy().reshape(batch, n)


def _member_states(
    members: Sequence[EnsembleMember],
    beams: int,
    stack: contextlib.ExitStack,
    share: bool = True,
    compact: bool = True,
    lean: bool = True,
) -> list[_MemberState]:
    """Each member's state for a search of ``beams`` rows per prompt (inside the caller's eval
    mode and ``no_grad``): a member whose decoder the lean step serves steps through it (with
    ``lean``); any other computes cross-attention once per prompt (with ``share``, while
    ``stack`` is open) when its model can switch, else over states repeated per beam."""
    states = []
    for m in members:
        bare = lean and lean_supported(m.model)
        shared = share and not bare and stack.enter_context(shared_cross_attention(m.model))
        states.append(_MemberState(m, beams, shared, compact, bare))
    return states


def _member_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    """``weights`` (default equal) checked and normalised to sum 1."""
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, float)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {n} finite numbers >= 0, not all 0: {weights}")
    return w / w.sum()


@contextlib.contextmanager
def _eval_mode(members: Sequence[EnsembleMember]):
    """The members' models in eval mode for the block, each submodule's training flag restored
    after. A model already in eval mode throughout is left alone (switching walks every
    submodule twice, a few percent of a one-prompt search)."""
    switched = []
    for m in members:
        flags = [(mod, mod.training) for mod in m.model.modules()]
        if any(flag for _, flag in flags):
            switched.append(flags)
            m.model.eval()
    try:
        yield
    finally:
        for flags in switched:
            for mod, flag in flags:
                mod.training = flag


def _search(states, w, processor, trie: FlatTrie, batch: int, beams: int):
    """The beam search in code space: ``(items (batch, beams), scores (batch, beams))``."""
    import torch

    depth = trie.depth
    rows = batch * beams
    codes = torch.zeros((rows, 0), dtype=torch.long)
    # one live beam per prompt at the start (the others would repeat it)
    total = torch.full((batch, beams), float("-inf"))
    total[:, 0] = 0.0
    total = total.reshape(-1)
    for t in range(depth + 1):
        level = t if t < depth else None
        step = sum(
            float(wi) * s.step_logprobs(codes, level).cpu() for wi, s in zip(w, states, strict=True)
        )
        # the trie mask (and exclusions), in code space
        step = step.masked_fill(~processor.next_code_mask(codes), float("-inf"))
        cand = (total[:, None] + step).reshape(batch, -1)  # (batch, beams * width)
        width = step.shape[1]
        best, flat = torch.topk(cand, beams, dim=1)
        parent = (flat // width) + torch.arange(batch)[:, None] * beams
        parent = parent.reshape(-1)
        total = best.reshape(-1)
        if level is not None:
            for s in states:
                s.reorder(parent)
        if level is not None:
            codes = torch.cat([codes[parent], (flat % width).reshape(-1, 1)], dim=1)
        else:
            codes = codes[parent]
    valid = torch.isfinite(total)
    items = np.full(rows, -1, dtype=np.int64)
    if bool(valid.any()):
        items[valid.numpy()] = trie.items_of(codes[valid].numpy())
    return items.reshape(batch, beams), total.numpy().reshape(batch, beams).astype(np.float32)


def _best_k(items: np.ndarray, scores: np.ndarray, k: int, excl):
    """The ``k`` best finished beams per prompt; ``RuntimeError`` if fewer are valid."""
    order = np.argsort(-scores, axis=1, kind="stable")
    items = np.take_along_axis(items, order, axis=1)[:, :k]
    scores = np.take_along_axis(scores, order, axis=1)[:, :k]
    for r in range(len(items)):
        if (
            (items[r] < 0).any()
            or not np.isfinite(scores[r]).all()
            or len(np.unique(items[r])) != k
            or (excl is not None and np.isin(items[r], excl[r]).any())
        ):
            raise RuntimeError(
                f"ensemble beam search returned an invalid, repeated or excluded item for prompt "
                f"{r}: items {items[r].tolist()}; widen num_beams"
            )
    return items.astype(np.int64), scores.astype(np.float32)
