"""Train the diffusion head (or the plain regressor baseline) on a built artifact.

    python -m training.train_diffusion --artifact ART --playlists PATH [--encoder seq2seq|bytes] [--regressor]
    accelerate launch -m training.train_diffusion --artifact ART --playlists PATH [flags]

Pairs: (prompt of training playlist i, ``ART/cf/playlist_factors[i]``), the ALS query that ranks
that playlist's tracks, standardised with statistics stored beside the head. Training playlists
holding no catalogue track are skipped (their factor carries nothing). They are read by
:mod:`training.diffusion_data`.

Shape (as ``training/train_seq2seq.py``, after accelerate's examples): ``Accelerator`` -> seed ->
data -> model -> optimizer -> ``prepare`` -> loop with ``accumulate`` -> periodic validation ->
checkpoints (``save_state`` into ``ART/.checkpoints-COMPONENT/checkpoint-STEP``; ``--resume``
reloads with ``load_state`` and ``skip_first_batches``) -> unwrap and save on the main process into
``ART/diffusion`` (or ``ART/latent_regressor`` with ``--regressor``).

Validation is latent-only retrieval: validation playlists have no CF factor, so latents are
sampled from their prompts and the items found by faiss around them are scored (Hits@K,
Recall@K against their catalogue tracks).
With ``--ema-decay`` validation scores, and the run saves, a moving average of the weights; with
``--keep-best`` the run ends with its best validation's weights (:mod:`training.final_weights`).

With ``--seed-conditioning`` the head also reads a seed set (MO-DiT), drawn per playlist and
epoch by :mod:`training.diffusion_seeds` (``--seed-prob``, ``--max-seed-tracks``); validation
stays on the prompts alone.

With ``--encoder seq2seq`` the trained seq2seq's encoder (``ART/seq2seq``) is frozen, so the prompt
encodings are computed once up front; ``--encoder bytes`` trains a small byte-level encoder jointly.

The hybrid mode's fusion is fitted after the head is saved (unless ``--no-fit-fusion``, and only
for the head, not ``--regressor``): up to ``--fusion-prompts`` validation prompts (default 300)
get beam candidates from the seq2seq (``--fusion-candidates``) and latent candidates from the new
head (``--fusion-samples`` samples, ``--fusion-latent-k`` neighbours each), gathered exactly as
``Text2Tracks.recommend(mode="hybrid")`` gathers them, and a ``FixedBlendFusion`` (with
``--fusion-kind mixture`` over the two views read as distributions; with ``gated``, a
``GatedFusion``) is fitted to maximise ``--fusion-metric`` at
``--eval-k``. It goes to ``ART/diffusion/fusion.json`` with those settings, which the API then
uses by default. An artifact without ``seq2seq/`` gets no fusion (hybrid mode then blends evenly).
The fit is :mod:`training.diffusion_fusion`.

:func:`train` runs the same thing in-process (for the benchmark).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text2tracks import config_flags as flags
from text2tracks.config_flags import add_config_flags, command_parser
from training.checkpoints import STATE_NAME, list_checkpoints, resolve_resume
from training.diffusion_config import DiffusionTrainConfig, lr_factor  # also importable here
from training.diffusion_data import (
    latent_retrieval_metrics,
    load_pairs,
    prompt_inputs,
    validation_subset,
)
from training.diffusion_fusion import fit_artifact_fusion  # also importable from here
from training.diffusion_seeds import SeedBatches
from training.diffusion_teacher import apply_teacher, teacher_positives
from training.final_weights import BestWeights, WeightAverage, end_weights
from training.launch import force_cpu, print_on_main, run_epochs

CHECKPOINTS_PREFIX = ".checkpoints-"  # + component: diffusion / latent_regressor
LOG_NAME = "training_log.jsonl"


# ------------------------------------------------------------------------------------ helpers


def _checkpoint_root(config: DiffusionTrainConfig) -> Path:
    if config.checkpoint_dir:
        return Path(config.checkpoint_dir)
    return Path(config.artifact) / (CHECKPOINTS_PREFIX + config.component)


def _resolve_resume(config) -> Path | None:
    return resolve_resume(config.resume, _checkpoint_root(config))


# ------------------------------------------------------------------------------------ training


@dataclass
class _Run:
    """What the stages of one training run share, in place of closures over local state.

    Built once by :func:`train`; ``state`` (what a checkpoint stores: ``step``, ``epoch``,
    ``batches_in_epoch``, ``elapsed_s``), ``log_records``, ``last_eval``, the running train loss
    and ``stopped_by`` change as the loop runs.
    """

    config: DiffusionTrainConfig
    accelerator: Any
    log: Callable[[str], None]
    data: dict[str, Any]
    n_train_pairs: int
    val_prompts: list[str]
    val_relevant: list[set[int]]
    val_cond: Any
    frozen: Any
    model: Any
    optimizer: Any
    loader: Any
    total_steps: int
    n_params: int
    index: Any
    item_tensor: Any = None  # CF item factors on the device (contrastive term only)
    seeds: SeedBatches | None = None  # the seed draws (--seed-conditioning only)
    best: BestWeights | None = None  # the best validation's weights (--keep-best only)
    average: WeightAverage | None = None  # the weights' moving average (--ema-decay only)
    state: dict[str, Any] = field(default_factory=dict)
    log_records: list[dict[str, Any]] = field(default_factory=list)
    last_eval: dict[str, float] = field(default_factory=dict)
    start_time: float = 0.0
    stopped_by: str = "epochs"
    running: dict[str, float] = field(default_factory=dict)
    n_running: int = 0

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def _start(config: DiffusionTrainConfig):
    """1. ``Accelerator`` (seedable sampler), CPU threads, seed; and a logger that prints on the
    main process."""
    import torch
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import set_seed

    accelerator = Accelerator(
        cpu=force_cpu(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    if accelerator.device.type == "cpu":
        torch.set_num_threads(
            config.num_threads
            or max(1, len(os.sched_getaffinity(0)) // max(1, accelerator.num_processes))
        )
    set_seed(config.seed)

    def log(message: str) -> None:
        if accelerator.is_main_process:
            print(message, file=sys.stderr, flush=True)

    return accelerator, log


def _build_model(config: DiffusionTrainConfig, latents, cond_dim: int, encoder, item_factors):
    """3. The head (or the regressor) with the training latents' statistics (and, reading seeds,
    the item factors' for the seed means); returns it and the standardised latents it learns
    to produce."""
    from text2tracks.diffusion import DiffusionHead, PromptToLatentRegressor

    if config.regressor:
        model = PromptToLatentRegressor(
            config.regressor_config(latents.shape[1], cond_dim), encoder
        )
    else:
        model = DiffusionHead(config.head_config(latents.shape[1], cond_dim), encoder)
    model.set_latent_stats(latents)
    if config.seed_conditioning:
        model.set_seed_stats(item_factors)
    return model, model.standardise(latents)


def _build_optimizer(model, config: DiffusionTrainConfig):
    """4. AdamW, with no decay on norms, biases and the null condition (1-d parameters)."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )


def _evaluate(run: _Run) -> dict[str, float]:
    """Latent-only retrieval on the validation prompts: latents sampled from each prompt, the
    items faiss finds around them scored (:func:`latent_retrieval_metrics`)."""
    import torch

    config, accelerator, val_prompts = run.config, run.accelerator, run.val_prompts
    if not val_prompts:
        return {}
    unwrapped = accelerator.unwrap_model(run.model)
    unwrapped.eval()
    with torch.no_grad():
        outs = []
        for i in range(0, len(val_prompts), 256):
            cond = (
                run.val_cond[i : i + 256]
                if run.val_cond is not None
                else unwrapped.encode(val_prompts[i : i + 256])
            )
            cond = cond.to(accelerator.device)
            if config.regressor:
                outs.append(unwrapped.sample(cond, n_samples=1).cpu())
            else:
                g = torch.Generator().manual_seed(config.seed + i)
                outs.append(
                    unwrapped.sample(cond, n_samples=config.eval_samples, generator=g).cpu()
                )
    unwrapped.train()
    return latent_retrieval_metrics(
        torch.cat(outs).numpy(),
        run.data["item_factors"],
        run.val_relevant,
        config.eval_k,
        run.index,
        config.pool,
    )


def _validate(run: _Run) -> None:
    """Validate into ``run.last_eval`` (the moving average's weights with ``--ema-decay``); with
    ``--keep-best``, keep the weights validated if they are the best so far."""
    with run.average.swapped_in() if run.average is not None else nullcontext():
        run.last_eval = _evaluate(run)
        if run.best is not None:
            unwrapped = run.accelerator.unwrap_model(run.model)
            run.best.update(unwrapped, run.last_eval, run.state["step"])


def _save_checkpoint(run: _Run) -> None:
    root = _checkpoint_root(run.config)
    path = root / f"checkpoint-{run.state['step']}"
    run.accelerator.save_state(str(path))
    if run.main:
        with open(path / STATE_NAME, "w", encoding="utf-8") as f:
            json.dump({**run.state, "config": dataclasses.asdict(run.config)}, f, indent=2)
        if run.best is not None:
            run.best.save(path)
        for old in list_checkpoints(root)[: -run.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    run.accelerator.wait_for_everyone()


def _resume(run: _Run) -> None:
    """6. A fresh ``run.state``, or the one of the checkpoint ``config.resume`` names (with the
    model, optimizer and RNG states)."""
    run.state = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "elapsed_s": 0.0}
    run.log_records = []
    resume = _resolve_resume(run.config)
    if resume is None:
        return
    run.accelerator.load_state(str(resume))
    with open(resume / STATE_NAME, encoding="utf-8") as f:
        saved = json.load(f)
    run.state.update({k: saved[k] for k in ("step", "epoch", "batches_in_epoch", "elapsed_s")})
    if run.best is not None:
        run.best.load(resume)
    run.log(f"resumed from {resume} at step {run.state['step']}")


def _contrastive_targets(run: _Run, rows):
    """The batch's :class:`~text2tracks.contrastive.ContrastiveTargets` (None without the
    contrastive term). The tracks are drawn from a generator seeded by (seed, step, process,
    batch in epoch), so a resumed run draws what the uninterrupted one would have."""
    import numpy as np

    from text2tracks.contrastive import contrastive_targets

    config = run.config
    if config.regressor or config.contrastive_weight == 0:
        return None
    rng = np.random.default_rng(
        (
            config.seed,
            run.state["step"],
            run.accelerator.process_index,
            run.state["batches_in_epoch"],
        )
    )
    tracks = run.data["train_tracks"][rows.cpu().numpy()]
    if run.seeds is not None:  # the seeds are never recommended back: not positives either
        tracks = run.seeds.positives(tracks, rows.cpu().numpy())
    return contrastive_targets(
        tracks,
        run.item_tensor,
        config.contrastive_negatives,
        rng,
        weighted=teacher_positives(config),
    )


def _train_batch(run: _Run, batch) -> bool:
    """Forward and backward of one batch; an optimizer step (clipped gradients, scheduled
    learning rate) when gradients sync, after ``grad_accum`` batches. Returns whether they did."""
    config, accelerator, model, optimizer = run.config, run.accelerator, run.model, run.optimizer
    *inputs, target, rows = batch
    with accelerator.accumulate(model):
        if config.encoder == "seq2seq":
            model_inputs = {"cond": inputs[0]}
        else:
            model_inputs = {"input_ids": inputs[0], "attention_mask": inputs[1]}
        if run.seeds is not None:
            model_inputs.update(run.seeds.inputs(rows.cpu().numpy(), target.device))
            target = run.seeds.target(target, rows.cpu().numpy())
        if config.regressor:
            parts = {"loss": model(target, **model_inputs)}
        else:
            targets = _contrastive_targets(run, rows)
            parts = model(target, contrastive_targets=targets, return_losses=True, **model_inputs)
        loss = parts["loss"]
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            for group in optimizer.param_groups:
                group["lr"] = config.lr * lr_factor(
                    run.state["step"], time.perf_counter() - run.start_time, config, run.total_steps
                )
        optimizer.step()
        optimizer.zero_grad()
        if accelerator.sync_gradients and run.average is not None:
            run.average.step()
    run.state["batches_in_epoch"] += 1
    for name, value in parts.items():
        run.running[name] = run.running.get(name, 0.0) + value.detach().float().item()
    run.n_running += 1
    return accelerator.sync_gradients


def _after_step(run: _Run, bar) -> bool:
    """Count the optimizer step; log, validate and checkpoint when due. Returns whether the run
    is done (steps spent, or ``max_minutes``)."""
    config, state = run.config, run.state
    state["step"] += 1
    state["elapsed_s"] = time.perf_counter() - run.start_time
    bar.update(1)
    record: dict[str, Any] = {}
    if state["step"] % config.log_every == 0:
        means = {name: total / max(1, run.n_running) for name, total in run.running.items()}
        record = {
            "step": state["step"],
            "train_loss": means.pop("loss", 0.0),
            **{f"train_{name}": value for name, value in means.items()},
            "lr": run.optimizer.param_groups[0]["lr"],
            "elapsed_s": round(state["elapsed_s"], 2),
        }
        run.running, run.n_running = {}, 0
    if config.eval_every and state["step"] % config.eval_every == 0:
        _validate(run)
        record = {**record, "step": state["step"], **run.last_eval}
        run.log(f"step {state['step']}: {run.last_eval}")
    if record:
        run.log_records.append(record)
    if config.checkpoint_every and state["step"] % config.checkpoint_every == 0:
        _save_checkpoint(run)
    if state["step"] >= run.total_steps:
        run.stopped_by = "max_steps" if config.max_steps else "epochs"
        return True
    if config.max_minutes and state["elapsed_s"] >= 60 * config.max_minutes:
        run.stopped_by = "max_minutes"
        return True
    return False


def _train_loop(run: _Run) -> None:
    """7. Epochs of batches from where ``run.state`` stands until a limit is reached."""
    from tqdm.auto import tqdm

    config, state = run.config, run.state
    run.model.train()
    run.start_time = time.perf_counter() - state["elapsed_s"]
    run.stopped_by = "epochs"
    run.last_eval = {}
    run.running, run.n_running = {}, 0
    bar = tqdm(
        total=run.total_steps, initial=state["step"], disable=not (run.main and config.progress)
    )

    def start_epoch(epoch: int) -> None:
        run.loader.set_epoch(epoch)
        if run.seeds is not None:
            run.seeds.set_epoch(epoch)

    run_epochs(run, run.loader, start_epoch, _train_batch, _after_step, bar)
    bar.close()


def _summary(run: _Run) -> dict[str, Any]:
    state = run.state
    return {
        "steps": state["step"],
        "elapsed_s": round(state["elapsed_s"], 3),
        "final_eval": run.last_eval,
        "stopped_by": run.stopped_by,
        "best_step": run.best.step if run.best is not None else None,
        "n_parameters": run.n_params,
        "n_train_pairs": run.n_train_pairs,
        "n_validation": len(run.val_prompts),
        "n_validation_skipped": run.data["n_validation_skipped"],
        "component_dir": str(Path(run.config.artifact) / run.config.component),
    }


def _save_component(run: _Run, summary: dict[str, Any]) -> None:
    """8. The unwrapped model into ``ART/COMPONENT`` (main process), with the training log and
    the config; a frozen seq2seq encoder is recorded, its weights stay in ``seq2seq/``."""
    from text2tracks.artifacts import component_writer

    config, state = run.config, run.state
    unwrapped = run.accelerator.unwrap_model(run.model)
    if run.frozen is not None:
        unwrapped.encoder = run.frozen  # recorded as kind "seq2seq"; its weights stay in seq2seq/
    info = {
        "kind": unwrapped.component_kind,
        "encoder": config.encoder,
        "steps": state["step"],
        **run.last_eval,
    }
    with component_writer(config.artifact, config.component, info) as tmp:
        unwrapped.save(tmp)
        with open(tmp / LOG_NAME, "w", encoding="utf-8") as f:
            for record in run.log_records:
                f.write(json.dumps(record) + "\n")
        with open(tmp / "train_config.json", "w", encoding="utf-8") as f:
            json.dump({"config": dataclasses.asdict(config), "summary": summary}, f, indent=2)
    run.log(
        f"saved {summary['component_dir']} after {state['step']} steps ({state['elapsed_s']:.0f} s)"
    )


def _finish(run: _Run) -> None:
    """8. A final validation unless the last step had one, and a last checkpoint."""
    last = run.log_records[-1] if run.log_records else {}
    if last.get("step") != run.state["step"] or not run.last_eval:
        _validate(run)
        run.log_records.append({"step": run.state["step"], **run.last_eval})
    if run.config.checkpoint_every:
        _save_checkpoint(run)
    unwrapped = run.accelerator.unwrap_model(run.model)
    restored = end_weights(run.average, run.best, unwrapped, run.state["step"], run.log)
    run.last_eval = restored or run.last_eval
    run.accelerator.wait_for_everyone()


def train(config: DiffusionTrainConfig) -> dict[str, Any]:
    """Train, validate, checkpoint and save into ``ART/diffusion`` (or ``ART/latent_regressor``).

    Returns a summary: ``steps``, ``elapsed_s``, ``final_eval``, ``stopped_by``,
    ``component_dir``, ``n_parameters``, ``n_train_pairs``, ``n_validation`` and (on the main
    process, when the fusion is fitted) ``fusion``: :func:`fit_artifact_fusion`'s summary.
    """
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from text2tracks.diffusion import count_parameters
    from text2tracks.rerank import build_index

    accelerator, log = _start(config)
    # 2. data
    data = apply_teacher(config, load_pairs(config.artifact, config.playlists), log)
    latents = torch.from_numpy(data["train_latents"])
    val_prompts, val_relevant = validation_subset(config, data)
    inputs = prompt_inputs(config, data["train_prompts"], val_prompts, accelerator.device)
    model, latents_std = _build_model(
        config, latents, inputs["cond_dim"], inputs["encoder"], data["item_factors"]
    )
    n_params = count_parameters(model)
    log(
        f"{config.component}: {n_params / 1e6:.2f}M trainable parameters, encoder {config.encoder}, "
        f"{latents.shape[0]} training pairs ({data['n_train_skipped']} playlists without catalogue "
        f"tracks skipped), {len(val_prompts)} validation prompts"
    )
    rows = torch.arange(latents.shape[0])  # each example's row of data["train_tracks"]
    loader = DataLoader(
        TensorDataset(*inputs["train_inputs"], latents_std, rows),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=latents.shape[0] > config.batch_size,
    )
    optimizer = _build_optimizer(model, config)
    # 5. prepare
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    total_steps = config.epochs * max(1, len(loader) // config.grad_accum)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    run = _Run(
        config=config,
        accelerator=accelerator,
        log=log,
        data=data,
        n_train_pairs=int(latents.shape[0]),
        val_prompts=val_prompts,
        val_relevant=val_relevant,
        val_cond=inputs["val_cond"],
        frozen=inputs["frozen"],
        model=model,
        optimizer=optimizer,
        loader=loader,
        total_steps=total_steps,
        n_params=n_params,
        index=build_index(data["item_factors"]),
        item_tensor=torch.from_numpy(data["item_factors"]).float().to(accelerator.device),
        seeds=SeedBatches.of_run(config, data, model),
        best=BestWeights(f"hits@{config.eval_k}") if config.keep_best else None,
        average=WeightAverage.registered(accelerator, model, config.ema_decay),
    )
    _resume(run)
    _train_loop(run)
    _finish(run)
    summary = _summary(run)
    if run.main:
        _save_component(run, summary)
        if config.fit_fusion and not config.regressor:
            summary["fusion"] = fit_artifact_fusion(
                config,
                data["validation_prompts"],
                data["validation_relevant"],
                device=accelerator.device,
                log=log,
            )
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


# ------------------------------------------------------------------------------------ CLI


EPILOG = """examples:
  text2tracks train-diffusion --artifact artifacts/mpd --playlists path/to/mpd --encoder seq2seq
  accelerate launch -m training.train_diffusion --artifact artifacts/mpd --playlists path/to/mpd \\
      --max-minutes 10
  text2tracks train-diffusion --artifact artifacts/mpd --playlists path/to/mpd --regressor
"""


def build_parser(subparsers=None) -> argparse.ArgumentParser:
    """``text2tracks train-diffusion`` (``subparsers`` given) or ``python -m
    training.train_diffusion``: one flag per field of :class:`DiffusionTrainConfig`."""
    parser = command_parser(
        subparsers,
        "train-diffusion",
        prog="python -m training.train_diffusion",
        help="train the optional diffusion head (or the plain regressor) on an artifact",
        description="Train the diffusion head (prompt -> CF query latent) or the plain regressor "
        "baseline on a build-ids artifact (also under `accelerate launch`).",
        epilog=EPILOG,
    )
    add_config_flags(parser, DiffusionTrainConfig)
    parser.set_defaults(func=_run_from_args)
    return parser


add_parser = build_parser


def _run_from_args(args: argparse.Namespace) -> int:
    config = flags.build_config(
        "text2tracks train-diffusion", lambda: flags.config_from_args(DiffusionTrainConfig, args)
    )
    print_on_main(train(config))
    return 0


def main(argv: list[str] | None = None) -> int:
    return _run_from_args(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
