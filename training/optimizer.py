"""The seq2seq trainer's optimizer: AdamW with no decay on norms and biases, the encoder's own
learning rate as an option, and the schedule applied to each parameter group's own base rate.
``training.train_seq2seq`` uses (and so still exports) both functions."""

from __future__ import annotations

# the key of an optimizer group's unscheduled learning rate (the training loop sets "lr" to it
# times the schedule's factor every step)
BASE_LR = "base_lr"


def build_optimizer(
    model, lr: float, weight_decay: float, fused: bool | None = None, encoder_lr: float = 0.0
):
    """AdamW over the trainable parameters, with no decay on norms and biases (1-d ones).

    ``encoder_lr`` > 0 gives the encoder's own parameters (not those it shares with the decoder,
    such as T5's tied embeddings) that learning rate instead of ``lr``: a pretrained encoder
    (``--encoder minilm``) fine-tuned at the decoder's 2e-3 forgets what it knew. The schedule
    scales every group alike. ``fused`` (default: where torch has it, CPU and CUDA) uses torch's
    fused AdamW, one kernel over all tensors: 3x faster than the default per-tensor loop on one
    CPU thread (``python -m eval.bench_step_cost``); at the default model's 2M parameters the
    optimizer step was about a third of a training step."""
    import torch

    if encoder_lr < 0:
        raise ValueError(f"encoder_lr must be >= 0 (0: the same as lr), got {encoder_lr}")
    own = _encoder_only_parameters(model) if encoder_lr else set()
    groups: dict[tuple[bool, bool], list] = {}
    for p in model.parameters():
        if p.requires_grad:
            groups.setdefault((id(p) in own, p.ndim >= 2), []).append(p)
    params = [p for group in groups.values() for p in group]
    if fused is None:
        devices = {p.device.type for p in params}
        fused = devices <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)
    return torch.optim.AdamW(
        [
            {
                "params": group,
                "weight_decay": weight_decay if decays else 0.0,
                "lr": encoder_lr if in_encoder else lr,
                BASE_LR: encoder_lr if in_encoder else lr,  # what the schedule scales
            }
            # decayed before not decayed, as before encoder_lr existed (resumed optimizer states)
            for (in_encoder, decays), group in sorted(
                groups.items(), key=lambda kv: (kv[0][0], not kv[0][1])
            )
        ],
        lr=lr,
        fused=fused or None,
    )


def schedule_lr(optimizer, factor: float, default_lr: float) -> None:
    """Set each group's learning rate to its own base rate (:func:`build_optimizer`'s; a group
    without one, from an older checkpoint, takes ``default_lr``) times the schedule's
    ``factor``."""
    for group in optimizer.param_groups:
        group["lr"] = group.get(BASE_LR, default_lr) * factor


def _encoder_only_parameters(model) -> set[int]:
    """ids of the parameters of ``model``'s encoder that its decoder does not also use, less
    those of new layers marked ``trains_at_decoder_lr``."""
    if not (hasattr(model, "get_encoder") and hasattr(model, "get_decoder")):
        raise ValueError("encoder_lr needs an encoder-decoder model (get_encoder / get_decoder)")
    shared = {id(p) for p in model.get_decoder().parameters()}
    fresh = {  # new layers inside the encoder (seed factors' projection) learn at the decoder's rate
        id(p)
        for m in model.get_encoder().modules()
        if getattr(m, "trains_at_decoder_lr", False)
        for p in m.parameters()
    }
    return {id(p) for p in model.get_encoder().parameters()} - shared - fresh
