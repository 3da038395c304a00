"""How each prompt's context ``m`` of the seed prior (:mod:`text2tracks.seed_prior`) is made:
the encoder's hooks and the learned parts they read.

- :func:`set_context` (a forward pre-hook): the mean of the prompt's seeds' standardised CF
  factors (the prior's own, ``--seed-prior-dim``, where it has them; plus their learned
  change, ``--seed-prior-learn-factors``), zero without seeds;
  with ``--seed-prior-count-scale`` scaled by a learned factor for its seed count's bucket
  (:func:`count_scale`);
- :func:`add_prompt_context` (a forward hook, ``--seed-prior-prompt``): plus ``P h``, the
  projection of the prompt's mean encoder state.

Hand-written for the same reason as the prior: no library sets a prompt-conditioned bias of a
seq2seq's output layer from its encoder's input.
"""

from __future__ import annotations

# --seed-prior-count-scale: one learned log-scale per bucket floor(log2(seed count)), the last
# bucket taking every count from 2**(COUNT_BUCKETS - 1) up (1, 2-3, 4-7, ..., 128+)
COUNT_BUCKETS = 8


def set_context(prior, embedding):
    """The encoder's forward pre-hook: ``prior.context`` = each prompt's mean seed factors."""

    def hook(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        prior.context = None
        prior.seed_items = None  # (batch, length) the seeds' catalogue indices, -1 elsewhere
        # the whole prompt's mask, before DirectSeeds cuts the input to the title
        prior.prompt_mask = kwargs.get("attention_mask")
        if input_ids is None or embedding is None:  # no seeds (a prompt-only prior)
            return None
        is_seed = input_ids >= embedding.vocab_rows
        if not bool(is_seed.any()):
            return None
        if prior.own_factors is not None:  # --seed-prior-dim: the prior's own factors
            prior.own_factors = prior.own_factors.to(input_ids.device)  # moved once
            factors = prior.own_factors
        else:
            factors = embedding.factors_on(input_ids.device)
        items = (input_ids - embedding.vocab_rows).clamp(min=0)
        rows = factors[items]
        if prior.factor_delta is not None:  # --seed-prior-learn-factors
            rows = rows + prior.factor_delta[items]
        rows = rows * is_seed.unsqueeze(-1).to(factors.dtype)
        count = is_seed.sum(dim=1, keepdim=True).clamp(min=1).to(factors.dtype)
        prior.context = rows.sum(dim=1) / count
        prior.seed_items = items.masked_fill(~is_seed, -1)  # for the prior's list loss
        prior.catalog_factors = factors
        if prior.count_log_scale is not None:
            prior.context = prior.context * count_scale(prior.count_log_scale, count)
        return None

    return hook


def count_scale(log_scale, count):
    """``(batch, 1)`` scale of each prompt's mean seed factors: ``exp(log_scale[b])`` for its
    seed ``count``'s bucket ``b = floor(log2(count))`` (the last bucket takes the rest).

    The mean of 100 seeds is a surer query than one seed's factors, and ALS fold-in's sum over
    the seeds grows with their number; with the mean alone the prior weighs the same against
    the decoder for one seed as for a hundred."""
    import torch

    bucket = torch.log2(count.float()).floor().long().clamp(0, log_scale.shape[0] - 1)
    return log_scale.exp()[bucket.squeeze(1)].unsqueeze(1).to(count.dtype)


def count_log_scale_parameter(count_log_scale):
    """The ``(COUNT_BUCKETS,)`` log-scale parameter: ``count_log_scale`` checked, or zeros (the
    prior starts as without it)."""
    import torch

    return _parameter(
        count_log_scale, (COUNT_BUCKETS,), "count scale", lambda: torch.zeros(COUNT_BUCKETS)
    )


def factor_delta_parameter(shape, factor_delta):
    """The ``(n_items, dim)`` learned change of the prior's item factors: ``factor_delta``
    checked, or zeros (the prior starts as without it)."""
    import torch

    shape = tuple(int(n) for n in shape)
    return _parameter(factor_delta, shape, "factor delta", lambda: torch.zeros(shape))


def _parameter(saved, shape: tuple, what: str, start):
    """A trainable copy of ``saved`` (checked to be ``shape``: ``ValueError`` naming ``what``),
    or of ``start()`` where nothing was saved."""
    import torch

    if saved is None:
        return torch.nn.Parameter(start())
    saved = torch.as_tensor(saved, dtype=torch.float32)
    if tuple(saved.shape) != shape:
        raise ValueError(f"the seed prior's {what} must be {shape}, got {tuple(saved.shape)}")
    return torch.nn.Parameter(saved.clone())


def add_prompt_context(prior):
    """The encoder's forward hook for ``--seed-prior-prompt``: ``prior.context`` += the
    projection of each prompt's mean encoder state over its unmasked positions (zero seed
    context for prompts without seeds)."""
    from text2tracks.prompt_encoders import masked_mean

    def hook(module, args, kwargs, output):
        states = output[0] if isinstance(output, tuple) else output.last_hidden_state
        states = states.float()
        mask = prior.prompt_mask  # DirectSeeds widens the states back to the whole prompt
        prior.prompt_mask = None
        if mask is None or mask.shape[1] != states.shape[1]:
            mask = kwargs.get("attention_mask")
        pooled = states.mean(dim=1) if mask is None else masked_mean(states, mask)
        text = pooled @ prior.prompt_weight.T.to(pooled.dtype)
        prior.context = text if prior.context is None else prior.context + text
        return None

    return hook


def prompt_weight_parameter(encoder, dim: int, prompt_weight):
    """``(dim, encoder width)``: ``prompt_weight`` checked, or a small random start (the
    prior's ``W`` starts at zero, so one of the two factors must not)."""
    import torch

    config = encoder.config
    width = int(getattr(config, "hidden_size", None) or config.d_model)
    generator = torch.Generator().manual_seed(0)
    return _parameter(
        prompt_weight,
        (dim, width),
        "prompt projection",
        lambda: torch.randn(dim, width, generator=generator) * 0.02,
    )


__all__ = [
    "COUNT_BUCKETS",
    "add_prompt_context",
    "count_log_scale_parameter",
    "count_scale",
    "factor_delta_parameter",
    "prompt_weight_parameter",
    "set_context",
]
