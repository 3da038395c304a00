"""How the trainers ask ``accelerate`` for their device under a multi-process launch, print
their summary, and run their epochs."""

from __future__ import annotations

import json
import os

__all__ = ["cpu_bf16", "force_cpu", "print_on_main", "resolve_mixed_precision", "run_epochs"]


def force_cpu() -> bool:
    """True where ``Accelerator(cpu=...)`` must be set: ``ACCELERATE_USE_CPU`` is on, or a
    multi-process launch (``WORLD_SIZE`` > 1) runs on a machine without CUDA.

    Without it, ``accelerate launch --multi_gpu --num_processes N`` on CPUs starts N processes
    that each build a single-process ``Accelerator`` (no process group): N independent trainings
    that all write the same checkpoints. With it they form one gloo group, each process taking
    its share of every batch, as on N GPUs. A single process keeps accelerate's own choice (CUDA,
    Apple MPS or CPU)."""
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()


def resolve_mixed_precision(requested: str, cpu: bool | None = None) -> str:
    """The ``Accelerator`` precision for a trainer's ``mixed_precision`` setting.

    ``"auto"`` is bf16 autocast where training runs on a CPU with native bf16 arithmetic
    (AVX512-BF16 or AMX tiles), else full precision ("no"). On such a CPU (AMD Zen 5, one
    thread) the default MiniLM model trained 1.21-1.23x the steps of fp32 in 20 minutes and
    scored the same test Hits@10 (the README); the weights and the saved model stay fp32
    (autocast runs matmuls in bf16, losses and optimizer in fp32). On a GPU
    this model trains slower under bf16 than in fp32 (0.72-0.83x, the README's GPU table), and
    a CPU without native bf16 emulates it, so both keep fp32. Any other value is returned as
    given, and under ``accelerate launch`` (which sets ``ACCELERATE_MIXED_PRECISION`` from its
    ``--mixed_precision`` flag or config) ``"auto"`` takes the launcher's choice. ``cpu``:
    whether training runs on the CPU (default: no CUDA device, or :func:`force_cpu`)."""
    import torch

    if requested != "auto":
        return requested
    if launcher := _launcher_precision():
        return launcher
    if cpu is None:
        cpu = force_cpu() or not torch.cuda.is_available()
    if not cpu:
        return "no"
    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return "bf16" if native else "no"


def cpu_bf16(requested: str) -> bool:
    """Whether a trainer set to ``requested`` runs its steps under torch's CPU bf16 autocast
    itself: ``"auto"`` resolving to bf16 by its own choice, not a launcher's. The trainer then
    asks ``Accelerator`` for "no": accelerate's state is process-wide and refuses a second
    precision, and other trainers in the same process (the diffusion head's) ask for "no"."""
    return (
        requested == "auto"
        and not _launcher_precision()
        and resolve_mixed_precision(requested) == "bf16"
    )


def _launcher_precision() -> str | None:
    """The precision ``accelerate launch`` set for this process (its ``--mixed_precision``)."""
    return os.environ.get("ACCELERATE_MIXED_PRECISION") or None


def print_on_main(summary: dict) -> None:
    """Print a training run's summary (JSON) once: from the main process of a launch."""
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))


def run_epochs(run, loader, start_epoch, train_batch, after_step, bar) -> None:
    """Epochs of ``loader``'s batches from where ``run.state`` stands (its step, epoch and
    batches into the epoch, skipped on resume) until ``after_step(run, bar)`` says done or
    ``run.config.epochs`` are over; the loop the seq2seq and the diffusion trainers share.

    ``start_epoch(epoch)`` is called before each epoch; ``train_batch(run, batch)`` returns
    False for a batch that took no optimizer step (gradient accumulation). The steps run under
    :func:`text2tracks.training_step.training_attention` (no cuDNN attention: a plan per batch
    shape under bf16)."""
    from text2tracks.training_step import training_attention

    state = run.state
    done = state["step"] >= run.total_steps
    with training_attention():
        while not done and state["epoch"] < run.config.epochs:
            start_epoch(state["epoch"])
            batches = loader
            if state["batches_in_epoch"]:
                batches = run.accelerator.skip_first_batches(loader, state["batches_in_epoch"])
            for batch in batches:
                if not train_batch(run, batch):
                    continue
                done = after_step(run, bar)
                if done:
                    break
            else:
                state["epoch"] += 1
                state["batches_in_epoch"] = 0
