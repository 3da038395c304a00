"""Cross-attention computed once per prompt, not once per beam, in the code-space beam search.

A beam search over ``B`` prompts and ``beams`` beams runs the decoder on ``B * beams`` rows.
The usual way (transformers' ``generate``) repeats each prompt's encoder states ``beams`` times,
so every decoder layer projects the same keys and values ``beams`` times and caches ``beams``
copies of them. With a long prompt (a title plus 100 seed tracks is ~400 tokens) that projection
and its memory dominate decoding: at 50 beams it is 50x the work that one copy needs.

Here the encoder states stay ``(B, L, d)``: each cross-attention layer projects and caches them
once per prompt, and the ``beams`` query rows of a prompt attend to that one copy, folded into
the query-length axis (cross-attention has no causal mask and no relative position bias, so
``beams`` queries of one step are ``beams`` query positions of one row). Self-attention is
unchanged. The results equal the expanded computation up to float rounding.

It is an attention function registered with transformers' ``AttentionInterface`` (the hook the
library offers for custom attention; T5 and BERT route every attention call through it), under
one name per underlying implementation (``t2t_beam_shared_sdpa``, ``..._eager``); the function
tells the two cases apart by shape (a cross-attention call has fewer key rows than query rows)
and hands every other call to the implementation it wraps. :func:`shared_cross_attention`
switches a model to it for the duration of a search.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

__all__ = ["additive_mask", "shared_cross_attention"]

_PREFIX = "t2t_beam_shared_"


def _wrapped_name(name: str) -> str:
    return name[len(_PREFIX) :] if name.startswith(_PREFIX) else name


def _make_attention(inner: str):
    """The attention function registered as ``t2t_beam_shared_<inner>``."""
    from transformers import AttentionInterface

    # the wrapped implementation, looked up once: the registered one, else (eager) the model
    # module's own eager_attention_forward, once per attention class
    registered = AttentionInterface._global_mapping.get(inner) if inner != "eager" else None
    eager_of: dict[type, object] = {}

    def delegate(module):
        if registered is not None:
            return registered
        kind = type(module)
        if kind not in eager_of:
            fn = getattr(sys.modules[kind.__module__], "eager_attention_forward", None)
            if fn is None:
                raise RuntimeError(f"no {inner!r} attention for {kind.__name__}")
            eager_of[kind] = fn
        return eager_of[kind]

    def attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
        rows, kv_rows = query.shape[0], key.shape[0]
        if rows == kv_rows:  # self-attention, or cross-attention over expanded states
            return delegate(module)(
                module,
                query,
                key,
                value,
                attention_mask,
                scaling=scaling,
                dropout=dropout,
                **kwargs,
            )
        if rows % kv_rows:
            raise RuntimeError(
                f"shared cross-attention: {rows} query rows for {kv_rows} prompts; the beam rows "
                "of each prompt must be consecutive"
            )
        beams = rows // kv_rows
        _, heads, q_len, head_dim = query.shape
        # (prompts * beams, H, q, dh) -> (prompts, H, beams * q, dh): the beams become positions
        q = query.reshape(kv_rows, beams, heads, q_len, head_dim).transpose(1, 2)
        q = q.reshape(kv_rows, heads, beams * q_len, head_dim)
        weights = q @ key.transpose(2, 3)
        if scaling is not None:
            weights = weights * scaling
        bias = kwargs.get("position_bias")  # T5: zeros (1, H, q, L) for cross-attention
        if bias is not None:
            weights = weights + (bias if q_len == 1 else bias.repeat(1, 1, beams, 1))
        if attention_mask is not None:  # additive (prompts, 1, 1, L), see additive_mask
            weights = weights + attention_mask
        out = weights.softmax(dim=-1) @ value  # (prompts, H, beams * q, dh)
        out = out.reshape(kv_rows, heads, beams, q_len, head_dim).permute(0, 2, 3, 1, 4)
        return out.reshape(rows, q_len, heads, head_dim), None

    return attention


def _register(inner: str) -> str:
    """Register the wrapper of ``inner`` (once) and return its name."""
    from transformers import AttentionInterface, AttentionMaskInterface

    name = _PREFIX + inner
    if name not in AttentionInterface._global_mapping:
        masks = AttentionMaskInterface._global_mapping
        AttentionInterface.register(name, _make_attention(inner))
        # the decoder's causal self-attention mask is built as for the wrapped implementation
        AttentionMaskInterface.register(name, masks.get(inner, masks["sdpa"]))
    return name


def _supported(model) -> bool:
    """The model routes its attention through ``AttentionInterface`` and can switch it."""
    can = getattr(model, "_can_set_attn_implementation", None)
    try:
        return bool(can()) if callable(can) else False
    except Exception:  # noqa: BLE001 - an unknown model: keep the expanded path
        return False


@contextlib.contextmanager
def shared_cross_attention(model) -> Iterator[bool]:
    """While open, ``model`` computes cross-attention once per prompt when its decoder gets
    ``(B, L, d)`` encoder states for ``B * beams`` rows. Yields False (and changes nothing) for
    a model that cannot switch its attention; the caller then repeats the states per beam."""
    if not _supported(model):
        yield False
        return
    before = model.config._attn_implementation
    try:
        model.set_attn_implementation(_register(_wrapped_name(before)))
    except (ValueError, TypeError, AttributeError, ImportError):
        yield False
        return
    try:
        yield True
    finally:
        model.set_attn_implementation(before)


def additive_mask(attention_mask, dtype):
    """``(B, L)`` 0/1 padding mask -> ``(B, 1, 1, L)`` additive mask (0 or the dtype's minimum),
    the prepared 4-D form that transformers passes to the attention function as it is."""
    import torch

    if attention_mask is None:
        return None
    mask = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - mask) * torch.finfo(dtype).min
