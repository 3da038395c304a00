"""How the trainers ask ``accelerate`` for their device under a multi-process launch."""

from __future__ import annotations

import json
import os

__all__ = ["force_cpu", "print_on_main"]


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
