"""Ensemble members: several seq2seq models trained side by side for
:mod:`text2tracks.ensemble` (``train_seq2seq --members N``), and the cleanup of members an
earlier, larger ensemble left in the artifact."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from text2tracks.artifacts import member_component
from training.seq2seq_config import TrainConfig


def remove_stale_members(config: TrainConfig) -> None:
    """Drop ``seq2seq_M/`` components with ``M >= members`` (left by an earlier, larger
    ensemble): the API decodes every member it finds."""
    from text2tracks.artifacts import MANIFEST_NAME, member_indices, read_json, remove_components

    manifest = Path(config.artifact) / MANIFEST_NAME
    if manifest.is_file():
        found = member_indices(read_json(manifest, "manifest")["components"])
        stale = [member_component(m) for m in found if m >= config.members]
        if stale:
            remove_components(config.artifact, stale)


def train_members(config: TrainConfig, train_one: Callable[[TrainConfig], dict]) -> dict[str, Any]:
    """Train ``config.members`` models, member ``i`` with seed ``seed + i`` (one model when
    ``members`` is 1, or only member ``config.member`` when it is not 0, with the same seed
    ``seed + member`` as when all train, so that training or resuming it alone gives the same
    member).

    On one machine they run at the same time, members 1.. in spawned processes and member 0 in
    this one, each on ``num_threads`` CPU threads (default: this process's CPUs divided among
    them), for the same budget: a small model gains little from a second thread, so two models
    side by side use two cores better than one model on both. Under a multi-process launch
    (``accelerate launch``, ``WORLD_SIZE`` > 1) every process already holds a device, so they
    train one after the other. Returns member 0's summary with ``members``: all summaries.
    """
    import dataclasses
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if config.member == 0:
        remove_stale_members(config)
    if config.members == 1:
        return train_one(config)
    if config.member != 0:  # one member by itself: the seed it draws with in the full run
        return train_one(dataclasses.replace(config, seed=config.seed + config.member))
    n = config.members
    threads = config.num_threads or max(1, len(os.sched_getaffinity(0)) // n)
    configs = [
        dataclasses.replace(
            config,
            member=i,
            seed=config.seed + i,
            num_threads=threads,
            progress=config.progress and i == 0,
        )
        for i in range(n)
    ]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        summaries = [train_one(c) for c in configs]
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n - 1, mp_context=context) as pool:
            futures = [pool.submit(train_one, c) for c in configs[1:]]
            first = train_one(configs[0])
            summaries = [first]
            for i, future in enumerate(futures, start=1):
                try:
                    summaries.append(future.result())
                except Exception as err:
                    raise RuntimeError(
                        f"ensemble member {i} failed ({err}); member 0 is saved. Train it by "
                        f"itself with --members {n} --member {i} (add --resume to continue "
                        "from its last checkpoint)"
                    ) from err
    return {**summaries[0], "members": summaries}
