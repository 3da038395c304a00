"""Train the seq2seq model (prompt -> semantic ID) on an artifact built by ``text2tracks build-ids``.

The same script runs on one CPU and under the launcher::

    python -m training.train_seq2seq --artifact ART --playlists PATH [flags]
    accelerate launch -m training.train_seq2seq --artifact ART --playlists PATH [flags]

Shape (accelerate's ``nlp_example.py`` / ``checkpointing.py``): ``Accelerator`` -> seed -> data ->
model -> optimizer -> ``prepare`` -> loop with ``accumulate`` -> periodic validation (loss, and
Hits@K with constrained beam search, ``gather_for_metrics``: :mod:`training.seq2seq_validation`)
-> ``wait_for_everyone``, unwrap, save on the main process into ``ART/seq2seq``
(:func:`text2tracks.modeling.save_seq2seq`, with ``training_log.jsonl``, ``curve.json`` and
``train_config.json``).

Checkpoints (``accelerator.save_state``: model weights as safetensors; optimizer and RNG states
as accelerate writes them) go to ``ART/.checkpoints/checkpoint-STEP`` (or ``--checkpoint-dir``)
with a ``trainer_state.json``; ``--resume`` picks the latest and skips the batches already seen
in its epoch (``skip_first_batches``).

Batches are cheap to encode: up to ``--targets-per-prompt-group`` (8) examples of a playlist
share one encoder pass (:func:`grouped_forward`), and prompts are sorted by length within windows
of ``--length-bucket-window`` (32) batches (``1`` and ``0``: the plain path).

The playlists are read again and re-split with the parameters stored in ``ART/cf/split.json``;
the training playlist ids must match the ones the artifact was built from. :func:`train` runs
the same thing in-process (for the benchmark).
"""

from __future__ import annotations

import argparse
import json
import math
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
from text2tracks.artifacts import member_component
from text2tracks.config_flags import add_config_flags, command_parser
from text2tracks.seed_prior_loss import with_prior_list_loss
from text2tracks.training_step import grouped_forward, training_encoder
from training.checkpoints import STATE_NAME, list_checkpoints, resolve_resume
from training.final_weights import BestWeights, WeightAverage, end_weights
from training.launch import cpu_bf16, force_cpu, print_on_main, resolve_mixed_precision, run_epochs
from training.optimizer import build_optimizer, schedule_lr
from training.seq2seq_config import (  # noqa: F401  (re-exported: they lived here)
    TARGET_SOURCES,
    TrainConfig,
    lr_factor,
)
from training.seq2seq_data import build_examples, build_loaders, load_training_data
from training.seq2seq_seeds import attach_seed_parts
from training.seq2seq_validation import validate

CHECKPOINTS_NAME = ".checkpoints"
LOG_NAME = "training_log.jsonl"
CURVE_NAME = "curve.json"


def _checkpoint_root(config: TrainConfig) -> Path:
    root = Path(config.checkpoint_dir or Path(config.artifact) / CHECKPOINTS_NAME)
    return root / f"member_{config.member}" if config.member else root


def _resolve_resume(config) -> Path | None:
    return resolve_resume(config.resume, _checkpoint_root(config))


# ------------------------------------------------------------------------------------ training


@dataclass
class _Run:
    """What the stages of one training run share, in place of closures over ``nonlocal`` state.

    Built once by :func:`train`; ``state`` (what a checkpoint stores: ``step``, ``epoch``,
    ``batches_in_epoch``, ``elapsed_s``, ``examples_seen``, ``order``), ``log_records``,
    ``last_eval``, the running train loss and ``stopped_by`` change as the loop runs."""

    config: TrainConfig
    accelerator: Any
    log: Callable[[str], None]
    catalog: Any
    layout: Any
    tokenizer: Any
    model: Any
    optimizer: Any
    train_pairs: Any
    train_dl: Any
    val_loss_dl: Any
    val_prompt_dl: Any
    val_relevant: list[set[int]]
    trie: Any
    train_encoder: Any
    total_steps: int
    n_params: int
    n_val_skipped: int
    state: dict[str, Any] = field(default_factory=dict)
    log_records: list[dict] = field(default_factory=list)
    last_eval: dict[str, float] = field(default_factory=dict)
    start_time: float = 0.0
    stopped_by: str = "epochs"
    cpu_bf16: bool = False
    loss_sum: Any = None
    part_sums: dict = field(default_factory=dict)  # parts of the loss, logged beside it
    loss_n: int = 0
    epochs: Any = None  # training.seq2seq_data.TrainEpochs
    best: BestWeights | None = None  # the best validation's weights (--keep-best only)
    average: WeightAverage | None = None  # the weights' moving average (--ema-decay only)

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process


def _start(config: TrainConfig):
    """1. ``Accelerator``, CPU threads, seed, a main-process logger, and ``cpu_bf16``'s answer."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    precision = resolve_mixed_precision(config.mixed_precision)
    own_bf16 = cpu_bf16(config.mixed_precision)  # then accelerate's own precision stays "no"
    accelerator = Accelerator(
        cpu=force_cpu(),
        mixed_precision="no" if own_bf16 else precision,
        gradient_accumulation_steps=config.grad_accum,
    )
    if accelerator.device.type == "cpu":
        share = len(os.sched_getaffinity(0)) // max(1, accelerator.num_processes)
        torch.set_num_threads(config.num_threads or max(1, share))
    set_seed(config.seed)

    prefix = f"[member {config.member}] " if config.members > 1 else ""

    def log(message: str) -> None:
        if accelerator.is_main_process:
            print(prefix + message, file=sys.stderr, flush=True)

    if config.mixed_precision == "auto":
        log(f"precision: {precision} (auto; --mixed-precision no for fp32)")
    return accelerator, log, own_bf16


def build_model(config: TrainConfig, catalog, prompts: list[str], log):
    """3. The model, its tokenizer (a subword one learns from the training prompts) and layout."""
    from text2tracks.data import normalize_prompt
    from text2tracks.modeling import build_seq2seq, count_parameters
    from training.seq2seq_data import init_ids_from_codebooks
    from training.warm_start import warm_start_model

    # the catalogue's scheme says how codes become tokens ("bytes": content IDs); targets are
    # then depth tokens + EOS whatever the scheme, and decoding follows layout / trie depth
    if config.init_from:  # --init-from: another artifact's trained model (warm_start)
        model, tokenizer, layout = warm_start_model(config, catalog, log)
    else:
        model, tokenizer, layout = build_seq2seq(
            config.model,
            catalog.level_sizes,
            scheme=catalog.scheme,
            prompt_texts=[normalize_prompt(t) if config.normalize_prompts else t for t in prompts],
        )
        init_ids_from_codebooks(config, model, layout, catalog, log)
    n_params = count_parameters(model)
    shape = (
        f"level sizes {catalog.level_sizes}"
        if layout.scheme == "sid"
        else f"content IDs of {layout.depth - 1} bytes + {catalog.level_sizes[-1]} digits"
    )
    log(
        f"model: {n_params / 1e6:.2f}M parameters ({count_parameters(model, True) / 1e6:.2f}M "
        f"trainable); catalogue {len(catalog)} items, {shape}"
    )
    if config.model.base is None:
        encoder_lr = config.resolved_encoder_lr() or config.lr
        log(
            f"encoder: {config.model.encoder} (learning rate {encoder_lr:g}; decoder {config.lr:g})"
        )
    return model, tokenizer, layout, n_params


def _record_eval(run: _Run) -> None:
    """Validate (the moving average's weights with ``--ema-decay``) and log; with
    ``--keep-best``, keep the weights validated if they are the best so far."""
    with run.average.swapped_in() if run.average is not None else nullcontext():
        data = (run.val_loss_dl, run.val_prompt_dl, run.val_relevant, run.trie, run.layout)
        run.last_eval = validate(run.config, run.accelerator, run.model, *data)
        if run.best is not None:
            unwrapped = run.accelerator.unwrap_model(run.model)
            run.best.update(unwrapped, run.last_eval, run.state["step"])
    record = {
        "step": run.state["step"],
        "elapsed_s": round(time.perf_counter() - run.start_time, 3),
        "examples_seen": run.state["examples_seen"],
        **run.last_eval,
    }
    run.log_records.append(record)
    run.log(
        f"step {run.state['step']}: " + ", ".join(f"{k} {v:.4g}" for k, v in run.last_eval.items())
    )


def _train_forward(run: _Run, batch):
    import torch

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.cpu_bf16):
        out = _forward_batch(run, batch)
    weight = run.config.seed_prior_list_weight  # the seed prior's own list loss, beside it
    return with_prior_list_loss(run.accelerator.unwrap_model(run.model), out, batch, weight)


def _forward_batch(run: _Run, batch):
    config, soft = run.config, None
    if "soft_token_ids" in batch:
        soft = (batch["soft_token_ids"], batch["soft_probs"], config.soft_target_weight)
    if "prompt_index" in batch:  # always there with soft targets
        return grouped_forward(
            run.model,
            batch["input_ids"],
            batch["attention_mask"],
            batch["prompt_index"],
            batch["labels"],
            encoder=run.train_encoder,
            autocast=run.accelerator.autocast,
            list_loss_weight=config.list_loss_weight,
            num_negatives=config.list_loss_negatives,
            soft_targets=soft,
        )
    if config.list_loss_weight:
        raise ValueError(
            "list_loss_weight > 0 needs the grouped forward (batches with "
            "prompt_index): set targets_per_prompt_group >= 2, or list_loss_weight 0"
        )
    return run.model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
    )


def _resume(run: _Run) -> None:
    """6. A fresh ``run.state``, or the one of the checkpoint ``config.resume`` names (with the
    model, optimizer and RNG states, and the training log so far)."""
    config, accelerator = run.config, run.accelerator
    order = {
        "batch_size": config.batch_size,
        "targets_per_prompt_group": config.targets_per_prompt_group,
        "length_bucket_window": config.length_bucket_window,
        "seed": config.seed,
        "num_processes": accelerator.num_processes,
    }
    run.state = {
        "step": 0,
        "epoch": 0,
        "batches_in_epoch": 0,
        "elapsed_s": 0.0,
        "examples_seen": 0,
        "order": order,
    }
    run.log_records = []
    resume_from = _resolve_resume(config)
    if resume_from is None:
        return
    accelerator.load_state(str(resume_from))
    if run.best is not None:
        run.best.load(resume_from)
    with open(resume_from / STATE_NAME, encoding="utf-8") as f:
        run.state.update(json.load(f))
    log_path = resume_from / LOG_NAME
    if log_path.is_file():
        with open(log_path, encoding="utf-8") as f:
            run.log_records = [json.loads(line) for line in f if line.strip()]
    run.log(f"resumed from {resume_from} at step {run.state['step']} (epoch {run.state['epoch']})")
    saved_order = run.state.get("order")
    if run.state["batches_in_epoch"] and saved_order != order:
        # the skipped batches are those of the saved order: with other settings the rest of
        # this epoch repeats or misses some examples (later epochs are unaffected)
        run.log(
            f"warning: the example order settings changed since the checkpoint "
            f"({saved_order} -> {order}); the rest of epoch {run.state['epoch']} is not the "
            f"exact continuation"
        )
    run.state["order"] = order


def _save_checkpoint(run: _Run) -> Path:
    ckpt_root = _checkpoint_root(run.config)
    path = ckpt_root / f"checkpoint-{run.state['step']:08d}"
    run.accelerator.wait_for_everyone()
    run.accelerator.save_state(str(path), safe_serialization=True)
    if run.main:
        with open(path / STATE_NAME, "w", encoding="utf-8") as f:
            json.dump(run.state, f, indent=2)
        with open(path / LOG_NAME, "w", encoding="utf-8") as f:
            for record in run.log_records:
                f.write(json.dumps(record) + "\n")
        if run.best is not None:
            run.best.save(path)
        for old in list_checkpoints(ckpt_root)[: -run.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
    run.accelerator.wait_for_everyone()
    return path


def _train_batch(run: _Run, batch) -> bool:
    """Forward and backward of one batch; an optimizer step when gradients sync (after
    ``grad_accum`` batches). Returns whether they did."""
    config, accelerator, state, optimizer = run.config, run.accelerator, run.state, run.optimizer
    with accelerator.accumulate(run.model):
        out = _train_forward(run, batch)
        accelerator.backward(out.loss)
        if accelerator.sync_gradients:
            factor = lr_factor(
                state["step"], time.perf_counter() - run.start_time, config, run.total_steps
            )
            schedule_lr(optimizer, factor, config.lr)
            if config.max_grad_norm:
                accelerator.clip_grad_norm_(run.model.parameters(), config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if run.average is not None and accelerator.sync_gradients:
            run.average.step()
    state["batches_in_epoch"] += 1
    state["examples_seen"] += batch["labels"].shape[0] * accelerator.num_processes
    run.loss_sum += out.loss.detach()
    for name in ("list_loss", "prior_list_loss"):  # unweighted, as train_<name>
        if getattr(out, name, None) is not None:  # its mean over the batches that have it
            total, n = run.part_sums.get(name, (0, 0))
            run.part_sums[name] = (total + getattr(out, name).detach(), n + 1)
    run.loss_n += 1
    return accelerator.sync_gradients


def _after_step(run: _Run, bar) -> bool:
    """Count the optimizer step; log, validate and checkpoint when due. Returns whether the run
    is done (steps spent, or ``max_minutes``, decided on the main process for all)."""
    config, accelerator, state = run.config, run.accelerator, run.state
    state["step"] += 1
    bar.update(1)
    elapsed = time.perf_counter() - run.start_time
    state["elapsed_s"] = elapsed
    if state["step"] % config.log_every == 0:
        train_loss = float(accelerator.reduce(run.loss_sum, "mean")) / max(1, run.loss_n)
        record = {
            "step": state["step"],
            "elapsed_s": round(elapsed, 3),
            "examples_seen": state["examples_seen"],
            "train_loss": train_loss,
        }
        for name, (total, n) in run.part_sums.items():  # train_loss is their weighted sum
            record[f"train_{name}"] = float(accelerator.reduce(total, "mean")) / n
        run.loss_sum.zero_()
        run.part_sums.clear()
        run.loss_n = 0
        run.log_records.append({**record, "lr": run.optimizer.param_groups[0]["lr"]})
        bar.set_postfix(loss=f"{train_loss:.3f}", refresh=False)
    if config.eval_every and state["step"] % config.eval_every == 0:
        _record_eval(run)
    if config.checkpoint_every and state["step"] % config.checkpoint_every == 0:
        _save_checkpoint(run)
    if state["step"] >= run.total_steps:
        by_steps = config.max_steps and run.total_steps == config.max_steps
        run.stopped_by = "max_steps" if by_steps else "epochs"
        return True
    if config.max_minutes:
        # the time check must agree across processes: one decides, all stop together
        if run.main and time.perf_counter() - run.start_time >= 60.0 * config.max_minutes:
            accelerator.set_trigger()
        if accelerator.check_trigger():
            run.stopped_by = "max_minutes"
            return True
    return False


def _train_loop(run: _Run) -> None:
    """7. Epochs of batches from where ``run.state`` stands until a limit is reached."""
    import torch
    from tqdm.auto import tqdm

    config, accelerator, state = run.config, run.accelerator, run.state
    run.start_time = time.perf_counter() - state["elapsed_s"]
    bar = tqdm(
        total=run.total_steps,
        initial=state["step"],
        desc="train",
        dynamic_ncols=True,
        disable=not (run.main and config.progress),
    )
    run.stopped_by = "epochs"
    run.loss_sum = torch.zeros((), device=accelerator.device)
    run.loss_n = 0
    run.last_eval = {}
    run.model.train()
    run_epochs(run, run.train_dl, run.epochs.start, _train_batch, _after_step, bar)
    bar.close()
    state["elapsed_s"] = time.perf_counter() - run.start_time


def _summary(run: _Run) -> dict[str, Any]:
    state, seconds = run.state, run.state["elapsed_s"]
    return {
        "steps": state["step"],
        "epochs_done": state["epoch"],
        "elapsed_s": round(seconds, 3),
        "examples_seen": state["examples_seen"],
        "examples_per_s": round(state["examples_seen"] / max(seconds, 1e-9), 2),
        "final_eval": run.last_eval,
        "stopped_by": run.stopped_by,
        "best_step": run.best.step if run.best is not None else None,
        "n_parameters": run.n_params,
        "n_validation_skipped": run.n_val_skipped,
        "seq2seq_dir": str(Path(run.config.artifact) / member_component(run.config.member)),
    }


def _save_model(run: _Run, summary: dict[str, Any]) -> None:
    """8. The unwrapped model, tokenizer and layout into ``ARTIFACT/seq2seq`` (main process),
    with the training log, the validation curve and the config."""
    from text2tracks.artifacts import component_writer
    from text2tracks.modeling import save_seq2seq

    config, state = run.config, run.state
    unwrapped = run.accelerator.unwrap_model(run.model)
    info = {
        "steps": state["step"],
        "elapsed_s": summary["elapsed_s"],
        "level_sizes": list(run.catalog.level_sizes),
        "catalog_digest": run.catalog.codes_digest(),  # checked on load (text2tracks.storage)
        "scheme": run.layout.scheme,
        **run.last_eval,
    }
    if config.members > 1:
        info["member"] = config.member
    with component_writer(config.artifact, member_component(config.member), info) as tmp:
        save_seq2seq(unwrapped, run.tokenizer, run.layout, tmp, config.model)
        with open(tmp / LOG_NAME, "w", encoding="utf-8") as f:
            for record in run.log_records:
                f.write(json.dumps(record) + "\n")
        curve = [r for r in run.log_records if "val_loss" in r]
        with open(tmp / CURVE_NAME, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "eval_k": config.eval_k,
                    "points": curve,
                    "n_validation_skipped": run.n_val_skipped,
                },
                f,
                indent=2,
            )
        with open(tmp / "train_config.json", "w", encoding="utf-8") as f:
            json.dump({"config": config.to_dict(), "summary": summary}, f, indent=2)
    run.log(
        f"saved {summary['seq2seq_dir']} after {state['step']} steps "
        f"({state['elapsed_s']:.0f} s, stopped by {run.stopped_by})"
    )


def _train_encoder(model):
    """The encoder the grouped forward calls: the model's own, or, where it is frozen, a cache
    of each prompt's frozen states (:func:`training_encoder`: they are computed once a prompt)."""
    return training_encoder(model.get_encoder())


def train(config: TrainConfig) -> dict[str, Any]:
    """Train, validate, checkpoint and save into ``config.artifact``/seq2seq (with ``members``
    > 1, the others into ``seq2seq_1/``...: :func:`training.members.train_members`).

    Returns a summary: ``steps``, ``epochs_done``, ``elapsed_s``, ``examples_seen``,
    ``examples_per_s``, ``final_eval`` ({"val_loss", "val_hits@K"}), ``stopped_by``,
    ``seq2seq_dir``, ``n_parameters``, ``n_validation_skipped`` (member 0's; ``members``:
    every member's summary)."""
    from training.members import train_members

    return train_members(config, _train_one)


def _train_one(config: TrainConfig) -> dict[str, Any]:
    """One model (member ``config.member``): the training run itself."""
    from text2tracks.trie import FlatTrie

    accelerator, log, own_bf16 = _start(config)
    data = load_training_data(config, log)  # 2. data
    catalog = data["catalog"]
    model, tokenizer, layout, n_params = build_model(config, catalog, data["train_prompts"], log)
    sid_token_ids = layout.codes_to_token_ids(catalog.sid_codes)
    seed_ids = attach_seed_parts(  # before 4.
        model, config, catalog, layout, sid_token_ids, data["train_relevant"], log
    )
    with accelerator.main_process_first():  # the main process writes the teacher's cache
        examples = build_examples(config, data, tokenizer, sid_token_ids, log, None, seed_ids)
    train_dl, val_loss_dl, val_prompt_dl = build_loaders(config, examples)
    optimizer = build_optimizer(  # 4.
        model, config.lr, config.weight_decay, encoder_lr=config.resolved_encoder_lr()
    )
    model, optimizer, train_dl, val_loss_dl, val_prompt_dl = accelerator.prepare(  # 5.
        model, optimizer, train_dl, val_loss_dl, val_prompt_dl
    )
    total_steps = config.epochs * math.ceil(len(train_dl) / config.grad_accum)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    grouped = config.targets_per_prompt_group > 1
    run = _Run(
        config=config,
        accelerator=accelerator,
        log=log,
        catalog=catalog,
        layout=layout,
        tokenizer=tokenizer,
        model=model,
        optimizer=optimizer,
        train_pairs=examples["train_pairs"],
        train_dl=train_dl,
        val_loss_dl=val_loss_dl,
        val_prompt_dl=val_prompt_dl,
        val_relevant=[set(r) for r in examples["val_relevant"]],
        trie=FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes),
        train_encoder=_train_encoder(accelerator.unwrap_model(model)) if grouped else None,
        total_steps=total_steps,
        n_params=n_params,
        n_val_skipped=examples["n_val_skipped"],
        epochs=examples["epochs"],
        best=BestWeights(f"val_hits@{config.eval_k}") if config.keep_best else None,
        average=WeightAverage.registered(accelerator, model, config.ema_decay),
        cpu_bf16=own_bf16,
    )
    _resume(run)
    _train_loop(run)
    # 8. final validation, checkpoint, save
    last = run.log_records[-1] if run.log_records else {}
    if last.get("step") != run.state["step"] or "val_loss" not in last:
        _record_eval(run)
    _save_checkpoint(run)
    unwrapped = accelerator.unwrap_model(run.model)
    restored = end_weights(run.average, run.best, unwrapped, run.state["step"], run.log)
    run.last_eval = restored or run.last_eval
    accelerator.wait_for_everyone()
    summary = _summary(run)
    if run.main:
        _save_model(run, summary)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return summary


# ------------------------------------------------------------------------------------ CLI

EPILOG = """examples:
  text2tracks train --artifact artifacts/mpd --playlists path/to/mpd --max-minutes 60
  accelerate launch -m training.train_seq2seq --artifact artifacts/mpd --playlists path/to/mpd \\
      --batch-size 512   # GPUs: fp32 (this model trains slower in bf16 there)
  text2tracks train --artifact artifacts/mpd --playlists path/to/mpd --resume   # after a crash
  text2tracks train ... --d-model 256 --num-layers 4 --lr 1e-3   # any TrainConfig / ModelConfig field
"""


def build_parser(subparsers=None) -> argparse.ArgumentParser:
    """``text2tracks train`` (``subparsers`` given) or ``python -m training.train_seq2seq``: one
    flag per field of :class:`TrainConfig` and :class:`ModelConfig`
    (:func:`text2tracks.config_flags.add_config_flags`)."""
    from text2tracks.modeling import PROMPT_TOKENIZERS

    parser = command_parser(
        subparsers,
        "train",
        prog="python -m training.train_seq2seq",
        help="train the prompt -> semantic-ID seq2seq model on a build-ids artifact",
        description="Train the prompt -> semantic-ID seq2seq model on a build-ids artifact "
        "(also under `accelerate launch -m training.train_seq2seq`).",
        epilog=EPILOG,
    )
    add_config_flags(parser, TrainConfig, choices={"tokenizer": PROMPT_TOKENIZERS})
    parser.set_defaults(func=_run_from_args)
    return parser


add_parser = build_parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` (with its :class:`ModelConfig`) that parsed flags describe."""
    return flags.config_from_args(TrainConfig, args)


def _run_from_args(args: argparse.Namespace) -> int:
    config = flags.build_config("text2tracks train", lambda: config_from_args(args))
    print_on_main(train(config))
    return 0


def main(argv: list[str] | None = None) -> int:
    return _run_from_args(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
