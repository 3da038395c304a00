"""The model forward of one training step where several examples share one encoded prompt.

Model code, not a training script: the training loop (``training.train_seq2seq``) and the
throughput benchmark (``eval.bench_train_throughput``) both call it, so it lives below both.
"""

from __future__ import annotations

from typing import Any

from text2tracks.output_head import compact_output
from text2tracks.seed_prior import prior_rows


def sequence_log_probs(logits, labels):
    """Log-probability of each label sequence under its decoder logits.

    Args:
        logits: (n, length, vocab) decoder logits (teacher-forced on ``labels``).
        labels: (n, length) token ids; ``-100`` marks padding and adds nothing.

    Returns:
        (n,) float32: the sum over positions of ``log_softmax(logits)`` at the label ids.
    """
    return (_token_log_probs(logits, labels) * labels.ne(-100)).sum(dim=-1)


def _token_log_probs(logits, labels):
    """(n, length) float32 log-softmax of ``logits`` at ``labels`` (any value at ``-100``)."""
    import torch

    token_ids = torch.where(labels.ne(-100), labels, torch.zeros_like(labels))
    log_probs = logits.float().log_softmax(dim=-1)
    return log_probs.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)


def draw_negatives(prompt_index, labels, num_prompts, num_negatives, generator=None):
    """Pick, for each prompt, up to ``num_negatives`` label sequences of the batch that are not
    one of its own.

    Candidates are the distinct rows of ``labels``; those equal to any positive of prompt ``p``
    are excluded for ``p`` (so a sequence of another prompt that is also ``p``'s own is never a
    negative). Among the rest, a uniform draw without replacement (``torch.rand`` with
    ``generator``, or the global RNG) picks the ``num_negatives`` kept.

    Args:
        prompt_index: (B,) prompt row of each example, in ``[0, num_prompts)``.
        labels: (B, length) the examples' label sequences (``-100`` padding allowed).

    Returns:
        ``(sequences, index, valid)``: the (U, length) distinct label sequences; ``index``
        (P, K), the rows of ``sequences`` drawn for each prompt, K = ``min(num_negatives, U)``;
        ``valid`` (P, K) bool, False where prompt ``p`` had fewer than K candidates (those
        entries hold one of its positives and must be left out).
    """
    import torch

    sequences, inverse = torch.unique(labels, dim=0, return_inverse=True)
    n_unique = sequences.shape[0]
    is_positive = torch.zeros((num_prompts, n_unique), dtype=torch.bool, device=labels.device)
    is_positive[prompt_index, inverse] = True
    k = min(int(num_negatives), n_unique)
    keys = torch.rand(
        (num_prompts, n_unique),
        generator=generator,
        device=generator.device if generator is not None else labels.device,
    )
    keys = keys.to(labels.device).masked_fill(is_positive, -1.0)
    top, index = keys.topk(k, dim=1)
    return sequences, index, top.ge(0)


def list_loss_from_scores(positive_scores, prompt_index, negative_scores, valid):
    """Sampled softmax over sequences: the mean over examples ``e`` of
    ``-log(exp(s_e) / (exp(s_e) + sum_n exp(s_n)))``, ``n`` over the valid negatives of
    ``e``'s prompt.

    Args:
        positive_scores: (B,) sequence log-probabilities of the examples.
        prompt_index: (B,) prompt row of each example.
        negative_scores: (P, K) sequence log-probabilities of each prompt's negatives.
        valid: (P, K) bool; invalid entries are left out of the sum.
    """
    import torch

    negative_scores = negative_scores.masked_fill(~valid, float("-inf"))
    logits = torch.cat(
        [positive_scores.unsqueeze(1), negative_scores.index_select(0, prompt_index)], dim=1
    )
    return (logits.logsumexp(dim=1) - positive_scores).mean()


def grouped_forward(
    model,
    input_ids,
    attention_mask,
    prompt_index,
    labels,
    encoder=None,
    autocast=None,
    list_loss_weight=0.0,
    num_negatives=16,
    generator=None,
    soft_targets=None,
):
    """Seq2seq forward where several examples share one encoded prompt.

    ``input_ids`` / ``attention_mask`` hold the distinct prompts (P rows); ``prompt_index`` (B,)
    gives the prompt row of each of the B examples whose ``labels`` are given. The encoder runs on
    the P rows; its hidden states and mask are gathered to B rows (``index_select``, the general
    form of ``repeat_interleave``) and passed as ``encoder_outputs`` to ``model``'s forward, which
    runs the decoder and the loss only. With dropout 0 the loss and gradients equal those of
    ``model(input_ids[prompt_index], attention_mask[prompt_index], labels=labels)``. With an ID
    output head (:mod:`text2tracks.output_head`) the loss is computed on its scored columns only
    and ``logits`` holds those columns (same loss value).

    Args:
        model: what the training loop calls (plain, peft-wrapped, or prepared by accelerate,
            DDP included): its forward runs, so DDP's hooks see this step.
        encoder: the encoder module; default ``model.get_encoder()`` after unwrapping ``.module``
            (DDP) layers. Pass ``accelerator.unwrap_model(model).get_encoder()`` under accelerate.
        autocast: a context manager factory for the encoder call (``accelerator.autocast``): the
            mixed-precision wrapper accelerate puts on the model's forward does not cover a
            direct encoder call.
        list_loss_weight: weight w of a sequence-level list loss added to the cross-entropy
            (0 = off). Each prompt's decoder also scores up to ``num_negatives`` label sequences
            of the batch's other prompts (:func:`draw_negatives`) in the same decoder forward,
            the encoder states reused; ``loss`` is ``ce_loss + w * list_loss``, both set on the
            output (:func:`list_loss_from_scores`), ``logits`` the B examples' rows.
        generator: a ``torch.Generator`` for the draw of negatives (default: the global RNG).
        soft_targets: ``(token_ids, probs, w)``, per-position code distributions
            (:class:`text2tracks.soft_targets.SoftCodeTargets`) and their weight in the loss
            (:func:`_compact_forward`). Needs an ID output head; not with the list loss.

    DDP stays correct: the encoder's parameters receive their gradients through the hidden
    states that enter the wrapped forward, so the backward marks every parameter ready and the
    reducer all-reduces them as usual (and ``no_sync`` under accumulation applies to this
    forward as to any other).
    """
    from transformers.modeling_outputs import BaseModelOutput

    _check_losses(list_loss_weight, num_negatives, soft_targets)
    hidden = _encode_prompts(model, encoder, autocast, input_ids, attention_mask)
    # the seed prior (text2tracks.seed_prior) of each example's own prompt
    rows = prior_rows(_unwrapped(model), prompt_index, labels)
    with compact_output(_unwrapped(model)) as head, rows:
        if soft_targets is not None and head is None:
            raise ValueError("soft targets need the ID output head (ModelConfig.id_only_output)")
        if list_loss_weight:
            negatives = draw_negatives(
                prompt_index, labels, input_ids.shape[0], num_negatives, generator
            )
            return _forward_with_list_loss(
                model, hidden, attention_mask, prompt_index, labels, list_loss_weight, negatives,
                head,
            )  # fmt: skip
        if head is None:
            return model(
                encoder_outputs=BaseModelOutput(
                    last_hidden_state=hidden.index_select(0, prompt_index)
                ),
                attention_mask=attention_mask.index_select(0, prompt_index),
                labels=labels,
            )
        return _compact_forward(
            model, head, hidden, attention_mask, prompt_index, labels, soft_targets
        )


def _check_losses(list_loss_weight, num_negatives, soft_targets) -> None:
    if list_loss_weight and num_negatives < 1:
        raise ValueError(f"the list loss needs num_negatives >= 1, got {num_negatives!r}")
    if soft_targets is not None and list_loss_weight:
        raise ValueError("soft targets and the list loss do not combine: use one of them")


def _compact_forward(model, head, hidden, attention_mask, prompt_index, labels, soft=None):
    """The model's forward and cross-entropy on the scored columns of an ID output head (the
    same loss as the model's own on full logits, without writing them).

    With ``soft = (token_ids, probs, w)`` the loss is ``(1 - w) * ce + w * soft_ce``,
    ``soft_ce`` the mean over the labelled positions of the cross-entropy against ``probs`` over
    ``token_ids`` (``out.ce_loss`` keeps ``ce``)."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    out = model(
        encoder_outputs=BaseModelOutput(last_hidden_state=hidden.index_select(0, prompt_index)),
        attention_mask=attention_mask.index_select(0, prompt_index),
        decoder_input_ids=_unwrapped(model).prepare_decoder_input_ids_from_labels(labels=labels),
    )
    columns = head.compact_labels(labels)
    out.loss = torch.nn.functional.cross_entropy(
        out.logits.float().flatten(0, -2), columns.flatten(), ignore_index=-100
    )
    if soft is not None:
        token_ids, probs, weight = soft
        if not 0 < weight <= 1:
            raise ValueError(f"the soft target weight must be in (0, 1], got {weight!r}")
        log_probs = torch.log_softmax(out.logits.float(), dim=-1)
        soft_columns = head.compact_labels(token_ids).clamp(min=0)  # padding: probability 0
        soft_ce = -(probs * log_probs.gather(-1, soft_columns)).sum(-1)
        out.ce_loss = out.loss
        out.loss = (1 - weight) * out.loss + weight * soft_ce[labels.ne(-100)].mean()
    return out


def _unwrapped(model):
    """``model`` without its ``.module`` wrappers (DDP, accelerate)."""
    while hasattr(model, "module"):
        model = model.module
    return model


def _encode_prompts(model, encoder, autocast, input_ids, attention_mask):
    """(P, length, d_model) encoder states of the distinct prompts, under ``autocast``."""
    import contextlib

    if encoder is None:
        encoder = _unwrapped(model).get_encoder()
    with autocast() if autocast is not None else contextlib.nullcontext():
        return encoder(
            input_ids=input_ids, attention_mask=attention_mask, return_dict=True
        ).last_hidden_state


def _forward_with_list_loss(
    model, hidden, attention_mask, prompt_index, labels, list_loss_weight, negatives, head=None
):
    """The forward of :func:`grouped_forward` with the list loss; ``negatives`` is
    :func:`draw_negatives`' ``(sequences, index, valid)``; ``head`` the model's ID output head
    in compact mode (its columns are scored), or None."""
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    # one decoder pass over the B examples and the P * K (prompt, negative) pairs together,
    # through the wrapped forward (DDP sees one forward, as without it), and one log-softmax
    # over the vocabulary that serves both the cross-entropy and the sequence scores: the
    # vocabulary projection and its softmax are most of a small model's decoder cost
    sequences, index, valid = negatives
    num_prompts, batch = hidden.shape[0], labels.shape[0]
    pair_prompt = torch.arange(num_prompts, device=index.device).repeat_interleave(index.shape[1])
    rows = torch.cat([prompt_index, pair_prompt])
    all_labels = torch.cat([labels, sequences.index_select(0, index.reshape(-1))])
    with prior_rows(_unwrapped(model), rows, all_labels):
        out = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden.index_select(0, rows)),
            attention_mask=attention_mask.index_select(0, rows),
            decoder_input_ids=_unwrapped(model).prepare_decoder_input_ids_from_labels(
                labels=all_labels
            ),
        )
    keep = all_labels.ne(-100)
    if head is not None:
        all_labels = head.compact_labels(all_labels)
    token_log_probs = _token_log_probs(out.logits, all_labels) * keep
    scores = token_log_probs.sum(dim=-1)
    # the model's own loss: the mean over the examples' non-padding tokens
    ce_loss = -token_log_probs[:batch].sum() / keep[:batch].sum()
    list_loss = list_loss_from_scores(
        scores[:batch], prompt_index, scores[batch:].view(index.shape), valid
    )
    out.logits = out.logits[:batch]
    out.loss = ce_loss + list_loss_weight * list_loss
    out.ce_loss = ce_loss
    out.list_loss = list_loss
    return out


class FrozenEncoderCache:
    """The encoder states of each distinct prompt, computed once and reused on every step.

    For an encoder whose weights are frozen (``ModelConfig(freeze_encoder=True)``), a prompt's
    states never change, so rerunning the encoder each time the prompt is drawn (every epoch,
    every target group) is wasted work: with the 6-layer MiniLM encoder it is most of a step
    once the output layer is restricted to ID tokens. Call it as the ``encoder`` of
    :func:`grouped_forward`. States are computed in eval mode (no dropout) without gradients and
    kept per prompt for its real positions only, so a prompt's states do not depend on the
    padding of the batch it came in; rows are padded back with zeros, which the attention mask
    hides. The cache grows by one ``length x hidden`` array per distinct prompt (about 15 KB
    for an MPD title under MiniLM).

    With ``trainable_layers`` > 0 (a BERT encoder whose top layers train,
    ``ModelConfig(encoder_trainable_layers=N)``) it caches the states below those layers and
    runs them on every call, with gradients: the same answer as the whole encoder at the real
    positions, without the frozen layers' forward.

    Args:
        encoder: the encoder module (``model.get_encoder()``), frozen but for its top
            ``trainable_layers`` layers.
        trainable_layers: how many of its top layers train (0: all of it is frozen).
    """

    def __init__(self, encoder, trainable_layers: int = 0) -> None:
        layers = list(getattr(getattr(encoder, "encoder", None), "layer", None) or [])
        if trainable_layers and not 0 < trainable_layers <= len(layers):
            raise ValueError(
                f"trainable_layers={trainable_layers}: the encoder has {len(layers)} BERT layers "
                "(encoder.encoder.layer); pass at most that many, or 0 for a frozen encoder"
            )
        self.top = layers[-trainable_layers:] if trainable_layers else []
        training = {id(p) for layer in self.top for p in layer.parameters()}
        if any(p.requires_grad for p in encoder.parameters() if id(p) not in training):
            raise ValueError(
                "FrozenEncoderCache needs a frozen encoder (no parameter with requires_grad "
                "below its top trainable_layers layers); train with freeze_encoder=True or "
                "encoder_trainable_layers, or do not cache"
            )
        self.encoder = encoder
        self.trainable_layers = trainable_layers
        self._states: dict[bytes, Any] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._states)

    def __call__(self, input_ids, attention_mask, return_dict: bool = True):
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        counts = attention_mask.sum(dim=1, keepdim=True)
        lengths = counts.squeeze(1).tolist()
        positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
        if not torch.equal(attention_mask.bool(), positions < counts):
            raise ValueError("FrozenEncoderCache expects right-padded prompts (mask 1...1 0...0)")
        keys = [row[:n].cpu().numpy().tobytes() for row, n in zip(input_ids, lengths, strict=True)]
        missing = sorted({i for i, key in enumerate(keys) if key not in self._states})
        self.misses += len(missing)
        self.hits += len(keys) - len(missing)
        if missing:
            self._encode(input_ids, attention_mask, missing, keys, lengths)
        rows = [self._states[key] for key in keys]
        hidden = rows[0].new_zeros((len(rows), attention_mask.shape[1], rows[0].shape[-1]))
        for i, (states, n) in enumerate(zip(rows, lengths, strict=True)):
            hidden[i, :n] = states
        if self.top:  # BertModel's additive mask; BertLayer returns a tensor or a tuple
            mask = attention_mask[:, None, None, :].to(hidden.dtype)
            mask = (1.0 - mask) * torch.finfo(hidden.dtype).min
            for layer in self.top:
                out = layer(hidden, attention_mask=mask)
                hidden = out[0] if isinstance(out, tuple) else out
        return BaseModelOutput(last_hidden_state=hidden)

    def _encode(self, input_ids, attention_mask, missing, keys, lengths) -> None:
        import torch

        index = torch.as_tensor(missing, device=input_ids.device)
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                out = self.encoder(
                    input_ids=input_ids.index_select(0, index),
                    attention_mask=attention_mask.index_select(0, index),
                    output_hidden_states=bool(self.top),
                    return_dict=True,
                )
            states = out.hidden_states[-1 - len(self.top)] if self.top else out.last_hidden_state
        finally:
            self.encoder.train(was_training)
        for row, i in enumerate(missing):
            self._states[keys[i]] = states[row, : lengths[i]].clone()


def training_encoder(encoder):
    """What the training step calls as the encoder: the encoder itself while its embeddings
    train, else a :class:`FrozenEncoderCache` of its frozen part (all of it, or all but the top
    layers of a BERT encoder built with ``encoder_trainable_layers``)."""
    if not any(p.requires_grad for p in encoder.parameters()):
        return FrozenEncoderCache(encoder)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    trains = [any(p.requires_grad for p in layer.parameters()) for layer in layers or []]
    if True not in trains:
        return encoder
    top = len(trains) - trains.index(True)
    if all(trains[-top:]):
        try:
            return FrozenEncoderCache(encoder, top)
        except ValueError:  # something below the top layers trains (the embeddings)
            pass
    return encoder


def training_attention():
    """The attention kernels of a training step (a context manager): torch's scaled-dot-product
    attention without its cuDNN backend.

    Under bf16 / fp16 autocast on a GPU torch picks cuDNN's attention, which builds a plan on
    the CPU for every new shape (about 10 ms a call on an H200); length-bucketed batches change
    shape almost every step, so a bf16 step ran 3.9-6.6x slower than without it
    (``python -m eval.bench_device --precisions bf16,bf16+cudnn``). The flash, memory-efficient
    and math kernels remain, so nothing else changes (CPUs have no cuDNN). A no-op where torch
    has no ``sdpa_kernel``."""
    import contextlib

    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # torch < 2.3
        return contextlib.nullcontext()
    return sdpa_kernel(
        [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    )
