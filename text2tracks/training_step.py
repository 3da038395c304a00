"""The model forward of one training step where several examples share one encoded prompt.

Model code, not a training script: the training loop (``training.train_seq2seq``) and the
throughput benchmark (``eval.bench_train_throughput``) both call it, so it lives below both.
"""

from __future__ import annotations


def grouped_forward(model, input_ids, attention_mask, prompt_index, labels, encoder=None,
                    autocast=None):
    """Seq2seq forward where several examples share one encoded prompt.

    ``input_ids`` / ``attention_mask`` hold the distinct prompts (P rows); ``prompt_index`` (B,)
    gives the prompt row of each of the B examples whose ``labels`` are given. The encoder runs on
    the P rows; its hidden states and mask are gathered to B rows (``index_select``, the general
    form of ``repeat_interleave``) and passed as ``encoder_outputs`` to ``model``'s forward, which
    runs the decoder and the loss only. With dropout 0 the loss and gradients equal those of
    ``model(input_ids[prompt_index], attention_mask[prompt_index], labels=labels)``.

    Args:
        model: what the training loop calls (plain, peft-wrapped, or prepared by accelerate,
            DDP included): its forward runs, so DDP's hooks see this step.
        encoder: the encoder module; default ``model.get_encoder()`` after unwrapping ``.module``
            (DDP) layers. Pass ``accelerator.unwrap_model(model).get_encoder()`` under accelerate.
        autocast: a context manager factory for the encoder call (``accelerator.autocast``): the
            mixed-precision wrapper accelerate puts on the model's forward does not cover a
            direct encoder call.

    DDP stays correct: the encoder's parameters receive their gradients through the hidden
    states that enter the wrapped forward, so the backward marks every parameter ready and the
    reducer all-reduces them as usual (and ``no_sync`` under accumulation applies to this
    forward as to any other).
    """
    import contextlib

    from transformers.modeling_outputs import BaseModelOutput

    if encoder is None:
        inner = model
        while hasattr(inner, "module"):
            inner = inner.module
        encoder = inner.get_encoder()
    with (autocast() if autocast is not None else contextlib.nullcontext()):
        hidden = encoder(input_ids=input_ids, attention_mask=attention_mask,
                         return_dict=True).last_hidden_state
    hidden = hidden.index_select(0, prompt_index)
    return model(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                 attention_mask=attention_mask.index_select(0, prompt_index), labels=labels)
