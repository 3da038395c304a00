"""How the trainers ask ``accelerate`` for their device under a multi-process launch, print
their summary, and run their epochs."""

from __future__ import annotations

import json
import os

__all__ = ["force_cpu", "print_on_main", "run_epochs"]


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
