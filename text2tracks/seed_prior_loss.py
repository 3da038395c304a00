"""The seed prior's own list loss (``--seed-prior-list-weight``): the prior, read alone as a
retriever, ranks each training target above the rest of the catalogue.

The nodes prior (:mod:`text2tracks.seed_prior`) adds ``m^T W f_i`` to an ID, level by level,
and trains only through the decoder's per-level cross-entropy, where the decoder's own scores
share every gradient with it. Measured so, the trained ``W`` ranks a playlist's tracks worse
than a fixed ALS fold-in would (the README's "Seed tracks"). This loss asks the prior for what
fold-in does: over the whole catalogue, the softmax of ``s_i = m^T W f_i`` (the prompt's seeds
left out) should put its mass on the example's target,
``-log softmax(s)[target]``, averaged over the examples whose prompt has seeds. The full (unsampled)
softmax over the catalogue's items is one ``(prompts, dim) x (dim, items)`` product a step
(51,722 items here; two million at full-MPD scale is 8 GB at 1,000 prompts a step, so batch
accordingly). Hand-written: the scores are the prior's own, which no library computes.
"""

from __future__ import annotations

from text2tracks.seed_prior import seed_prior_of


def prior_list_loss(model, prompt_index, labels):
    """The prior's catalogue-wide softmax loss at each example's target, or ``None`` where the
    model has no ``"nodes"`` prior or no prompt of the last encoder pass has seeds.

    Args:
        model: the seq2seq (unwrapped), right after a forward whose encoder pass set its
            prior's context.
        prompt_index: ``(B,)`` the prompt row of each example (grouped batches), or ``None``
            for one example per prompt.
        labels: ``(B, depth + 1)`` each example's target ID tokens, then EOS.

    Returns a float32 scalar tensor (differentiable in ``W``, the count scale and the learned
    factors), or ``None``.
    """
    import torch

    prior = seed_prior_of(model)
    if prior is None or prior.nodes is None or prior.seed_items is None:
        return None
    seeds = prior.seed_items  # (P, L) catalogue indices, -1 where no seed
    prompts = seeds.shape[0]
    if prompt_index is None:
        prompt_index = torch.arange(prompts, device=seeds.device)
    keep = seeds.ge(0).any(dim=1)[prompt_index]
    if not bool(keep.any()):
        return None
    with torch.autocast(seeds.device.type, enabled=False):
        factors = prior.catalog_factors.float()
        if prior.factor_delta is not None:  # --seed-prior-learn-factors
            factors = factors + prior.factor_delta.float()
        scores = (prior.context.float() @ prior.weight.float()) @ factors.T  # (P, n_items)
        valid = seeds.ge(0)
        rows = torch.arange(prompts, device=seeds.device)[:, None].expand_as(seeds)
        is_seed = torch.zeros_like(scores, dtype=torch.bool)
        is_seed[rows[valid], seeds[valid]] = True
        log_probs = scores.masked_fill(is_seed, float("-inf")).log_softmax(dim=1)
        items = prior.nodes.items_of(labels.to(seeds.device))
        picked = log_probs[prompt_index[keep], items[keep]]
    return -picked.mean()


def with_prior_list_loss(model, out, batch, weight: float):
    """The training step's output ``out`` with ``weight`` times :func:`prior_list_loss` added
    to its loss (and set, unweighted, as ``out.prior_list_loss``); ``out`` as it was where
    ``weight`` is 0 or no prompt of ``batch`` has seeds."""
    if not weight:
        return out
    part = prior_list_loss(model, batch.get("prompt_index"), batch["labels"])
    if part is not None:
        out.loss = out.loss + weight * part
        out.prior_list_loss = part
    return out


__all__ = ["prior_list_loss", "with_prior_list_loss"]
