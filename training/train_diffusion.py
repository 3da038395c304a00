"""Train the diffusion head (or the plain regressor baseline) on a built artifact.

    python -m training.train_diffusion --artifact ART --playlists PATH [--encoder seq2seq|bytes] [--regressor]
    accelerate launch -m training.train_diffusion --artifact ART --playlists PATH [flags]

Pairs: (prompt of training playlist i, ``ART/cf/playlist_factors[i]``), the ALS query that ranks
that playlist's tracks, standardised with statistics stored beside the head. Training playlists
holding no catalogue track are skipped (their factor carries nothing).

Shape (as ``training/train_seq2seq.py``, after accelerate's examples): ``Accelerator`` -> seed ->
data -> model -> optimizer -> ``prepare`` -> loop with ``accumulate`` -> periodic validation ->
checkpoints (``save_state`` into ``ART/.checkpoints-COMPONENT/checkpoint-STEP``; ``--resume``
reloads with ``load_state`` and ``skip_first_batches``) -> unwrap and save on the main process into
``ART/diffusion`` (or ``ART/latent_regressor`` with ``--regressor``).

Validation is latent-only retrieval: validation playlists have no CF factor, so latents are
sampled from their prompts and the items found by faiss around them are scored (Hits@K,
Recall@K against their catalogue tracks).

With ``--encoder seq2seq`` the trained seq2seq's encoder (``ART/seq2seq``) is frozen, so the prompt
encodings are computed once up front; ``--encoder bytes`` trains a small byte-level encoder jointly.

The hybrid mode's fusion is fitted after the head is saved (unless ``--no-fit-fusion``, and only
for the head, not ``--regressor``): up to ``--fusion-prompts`` validation prompts (default 300)
get beam candidates from the seq2seq (``--fusion-candidates``) and latent candidates from the new
head (``--fusion-samples`` samples, ``--fusion-latent-k`` neighbours each), gathered exactly as
``Text2Tracks.recommend(mode="hybrid")`` gathers them, and a ``FixedBlendFusion`` (or, with
``--fusion-kind gated``, a ``GatedFusion``) is fitted to maximise ``--fusion-metric`` at
``--eval-k``. It goes to ``ART/diffusion/fusion.json`` with those settings, which the API then
uses by default. An artifact without ``seq2seq/`` gets no fusion (hybrid mode then blends evenly).

:func:`train` runs the same thing in-process (for the benchmark).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from text2tracks import config_flags as flags
from text2tracks.config_flags import add_config_flags, command_parser
from training.checkpoints import STATE_NAME, list_checkpoints, resolve_resume
from training.diffusion_config import DiffusionTrainConfig  # also importable from here

CHECKPOINTS_PREFIX = ".checkpoints-"  # + component: diffusion / latent_regressor
LOG_NAME = "training_log.jsonl"


# ------------------------------------------------------------------------------------ helpers


def lr_factor(step: int, elapsed_s: float, config: DiffusionTrainConfig, total_steps: int) -> float:
    """Linear warmup, then cosine to 0 over the horizon (steps or ``max_minutes``, the larger
    fraction spent). Not transformers' schedulers: they need the step count up front, a time
    budget does not give one."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    if config.max_minutes:
        progress = max(progress, elapsed_s / (60.0 * config.max_minutes))
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def _checkpoint_root(config: DiffusionTrainConfig) -> Path:
    if config.checkpoint_dir:
        return Path(config.checkpoint_dir)
    return Path(config.artifact) / (CHECKPOINTS_PREFIX + config.component)


def _resolve_resume(config) -> Path | None:
    return resolve_resume(config.resume, _checkpoint_root(config))


def load_pairs(artifact: str | os.PathLike, playlists: str | os.PathLike) -> dict[str, Any]:
    """Training pairs and validation prompts of an artifact.

    Returns ``item_factors`` (n_items, dim), ``train_prompts`` and ``train_latents``
    (n_train, dim) (training playlists with at least one catalogue track), and
    ``validation_prompts`` / ``validation_relevant`` (validation playlists with at least one
    catalogue track; ``n_validation_skipped`` counts the others).
    """
    import numpy as np

    from semantic_ids.cf import CFModel
    from semantic_ids.interactions import ItemVocab, catalogue_tracks
    from semantic_ids.playlists import read_playlists, split_playlists
    from text2tracks.artifacts import read_json

    artifact = Path(artifact)
    split_info = read_json(artifact / "cf" / "split.json", "split parameters")
    cf = CFModel.load(artifact / "cf")
    vocab = ItemVocab.load(artifact / "cf")
    split = split_playlists(
        read_playlists(playlists).playlists,
        validation_fraction=split_info["validation_fraction"],
        test_fraction=split_info["test_fraction"],
        seed=split_info["seed"],
    )
    train_ids = [p.playlist_id for p in split.train]
    if list(split_info.get("train_playlist_ids", train_ids)) != train_ids:
        raise ValueError(
            f"{playlists} re-split with {artifact}/cf/split.json does not give the "
            f"training playlists {artifact} was built from; pass the same playlists"
        )
    if len(train_ids) != cf.playlist_factors.shape[0]:
        raise ValueError(
            f"{len(train_ids)} training playlists but {cf.playlist_factors.shape[0]} "
            f"rows in {artifact}/cf/playlist_factors.npy"
        )
    keep = [i for i, p in enumerate(split.train) if catalogue_tracks(p, vocab)]
    validation = [(p.prompt, catalogue_tracks(p, vocab)) for p in split.validation]
    validation_kept = [(prompt, rel) for prompt, rel in validation if rel]
    return {
        "item_factors": cf.item_factors,
        "train_prompts": [split.train[i].prompt for i in keep],
        "train_latents": np.ascontiguousarray(cf.playlist_factors[keep]),
        "validation_prompts": [prompt for prompt, _ in validation_kept],
        "validation_relevant": [set(rel) for _, rel in validation_kept],
        "n_validation_skipped": len(validation) - len(validation_kept),
        "n_train_skipped": len(train_ids) - len(keep),
    }


def fit_artifact_fusion(
    config: DiffusionTrainConfig,
    prompts: list[str],
    relevant: list[set[int]],
    device=None,
    log=None,
) -> dict[str, Any]:
    """Fit the hybrid fusion of ``config.artifact`` (with its saved ``diffusion/``) on validation
    prompts and write ``diffusion/fusion.json``; returns the fit's summary (or why it was skipped).

    Args:
        config: the training config (``fusion_*`` fields, ``eval_k``, ``seed``, ``progress``).
        prompts, relevant: validation prompts and their relevant items as ``cf/`` vocabulary
            indices (:func:`load_pairs`'s ``validation_prompts`` / ``validation_relevant``).
        device: where the recommender runs (None: CUDA if available, else the CPU).
        log: a function taking one message (None: silent).
    """
    import numpy as np

    from semantic_ids.interactions import ItemVocab
    from text2tracks.artifacts import read_manifest
    from text2tracks.hybrid import HybridSettings, save_fusion
    from text2tracks.pipeline import Text2Tracks

    log = log or (lambda message: None)
    artifact = Path(config.artifact)
    components = read_manifest(artifact)["components"]
    reason = None
    if "seq2seq" not in components:
        reason = "the artifact has no seq2seq/ component to draw beam candidates from"
    elif "diffusion" not in components:
        reason = "the artifact has no diffusion/ component"
    elif not prompts:
        reason = "no validation prompt holds a catalogue track"
    if reason is not None:
        log(f"fusion not fitted: {reason}; hybrid mode will blend the two views evenly")
        return {"skipped": reason}
    started = time.perf_counter()
    if len(prompts) > config.fusion_prompts:
        pick = np.sort(
            np.random.default_rng(config.seed).choice(
                len(prompts), config.fusion_prompts, replace=False
            )
        )
        prompts, relevant = [prompts[i] for i in pick], [relevant[i] for i in pick]
    vocab = ItemVocab.load(artifact / "cf")
    relevant_ids = [[vocab.item_ids[i] for i in sorted(rel)] for rel in relevant]
    settings = HybridSettings(
        n_samples=config.fusion_samples,
        beam_candidates=config.fusion_candidates,
        latent_k=config.fusion_latent_k,
    )
    recommender = Text2Tracks.from_pretrained(artifact, device=device)
    summary = recommender.fit_fusion(
        prompts,
        relevant_ids,
        settings=settings,
        kind=config.fusion_kind,
        metric=config.fusion_metric,
        k=config.eval_k,
        progress=config.progress,
    )
    summary["elapsed_s"] = round(time.perf_counter() - started, 3)
    save_fusion(artifact / "diffusion", recommender.fusion, settings, summary)
    scores = summary[f"{config.fusion_metric}@{config.eval_k}"]
    weights = (
        f"alpha {summary['alpha']}"
        if "alpha" in summary
        else f"mean alpha {summary['alphas_mean']:.2f}"
    )
    log(
        f"fusion ({config.fusion_kind}, {summary['n_prompts']} validation prompts, "
        f"{summary['elapsed_s']:.0f} s): {weights}; {config.fusion_metric}@{config.eval_k} "
        f"generative {scores['generative']:.4f}, latent {scores['latent']:.4f}, "
        f"fused {scores['fused']:.4f} (in-sample)"
    )
    return summary


def latent_retrieval_metrics(
    latents, item_factors, relevant: list[set[int]], k: int, index=None
) -> dict[str, float]:
    """Hits@k and Recall@k of faiss search around latents (batch, [n_samples,] dim)."""
    import numpy as np

    from text2tracks.rerank import latent_candidates, per_prompt_metric

    items, _ = latent_candidates(latents, item_factors, k=k, index=index)
    hits = per_prompt_metric(items, relevant, "hits", k)
    recall = np.array(
        [len(set(items[b].tolist()) & rel) / min(len(rel), k) for b, rel in enumerate(relevant)]
    )
    return {f"hits@{k}": float(hits.mean()), f"recall@{k}": float(recall.mean())}


# ------------------------------------------------------------------------------------ training


def train(config: DiffusionTrainConfig) -> dict[str, Any]:
    """Train, validate, checkpoint and save into ``ART/diffusion`` (or ``ART/latent_regressor``).

    Returns a summary: ``steps``, ``elapsed_s``, ``final_eval``, ``stopped_by``,
    ``component_dir``, ``n_parameters``, ``n_train_pairs``, ``n_validation`` and (on the main
    process, when the fusion is fitted) ``fusion``: :func:`fit_artifact_fusion`'s summary.
    """
    import numpy as np
    import torch
    from accelerate import Accelerator, DataLoaderConfiguration
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader, TensorDataset
    from tqdm.auto import tqdm

    from text2tracks.artifacts import component_writer
    from text2tracks.diffusion import (
        ByteEncoder,
        DiffusionHead,
        FrozenSeq2SeqEncoder,
        PromptToLatentRegressor,
        count_parameters,
    )
    from text2tracks.rerank import build_index

    # 1. Accelerator, threads, seed
    accelerator = Accelerator(
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
    main = accelerator.is_main_process

    def log(message: str) -> None:
        if main:
            print(message, file=sys.stderr, flush=True)

    # 2. Data
    data = load_pairs(config.artifact, config.playlists)
    item_factors = data["item_factors"]
    latents = torch.from_numpy(data["train_latents"])
    if latents.shape[0] < 2:
        raise ValueError("fewer than two training playlists hold a catalogue track")
    val_prompts, val_relevant = data["validation_prompts"], data["validation_relevant"]
    if config.eval_prompts and len(val_prompts) > config.eval_prompts:
        pick = np.sort(
            np.random.default_rng(config.seed).choice(
                len(val_prompts), config.eval_prompts, replace=False
            )
        )
        val_prompts, val_relevant = [val_prompts[i] for i in pick], [val_relevant[i] for i in pick]

    # 3. Encoder and model
    frozen = None
    if config.encoder == "seq2seq":
        from text2tracks.modeling import load_seq2seq

        seq2seq, tokenizer, _ = load_seq2seq(Path(config.artifact) / "seq2seq")
        frozen = FrozenSeq2SeqEncoder(seq2seq, tokenizer).to(accelerator.device)
        cond_dim = frozen.out_dim

        def encode_all(prompts: list[str], batch: int = 512) -> torch.Tensor:
            return torch.cat(
                [frozen.encode(prompts[i : i + batch]).cpu() for i in range(0, len(prompts), batch)]
            )

        train_inputs = (encode_all(data["train_prompts"]),)
        val_cond = encode_all(val_prompts) if val_prompts else None
        encoder = None
    else:
        encoder = ByteEncoder(config.byte_config())
        cond_dim = encoder.out_dim
        tokens = encoder.tokenize(data["train_prompts"])
        train_inputs = (tokens["input_ids"], tokens["attention_mask"])
        val_cond = None
    if config.regressor:
        model = PromptToLatentRegressor(
            config.regressor_config(latents.shape[1], cond_dim), encoder
        )
    else:
        model = DiffusionHead(config.head_config(latents.shape[1], cond_dim), encoder)
    model.set_latent_stats(latents)
    latents_std = model.standardise(latents)
    n_params = count_parameters(model)
    log(
        f"{config.component}: {n_params / 1e6:.2f}M trainable parameters, encoder {config.encoder}, "
        f"{latents.shape[0]} training pairs ({data['n_train_skipped']} playlists without catalogue "
        f"tracks skipped), {len(val_prompts)} validation prompts"
    )

    loader = DataLoader(
        TensorDataset(*train_inputs, latents_std),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=latents.shape[0] > config.batch_size,
    )

    # 4. Optimizer (no decay on norms, biases and the null condition)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
    )

    # 5. prepare
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = max(1, len(loader) // config.grad_accum)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)

    state = {"step": 0, "epoch": 0, "batches_in_epoch": 0, "elapsed_s": 0.0}
    log_records: list[dict[str, Any]] = []
    index = build_index(item_factors)

    def evaluate() -> dict[str, float]:
        if not val_prompts:
            return {}
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.eval()
        with torch.no_grad():
            outs = []
            for i in range(0, len(val_prompts), 256):
                cond = (
                    val_cond[i : i + 256]
                    if val_cond is not None
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
            torch.cat(outs).numpy(), item_factors, val_relevant, config.eval_k, index
        )

    root = _checkpoint_root(config)

    def save_checkpoint() -> None:
        path = root / f"checkpoint-{state['step']}"
        accelerator.save_state(str(path))
        if main:
            with open(path / STATE_NAME, "w", encoding="utf-8") as f:
                json.dump({**state, "config": dataclasses.asdict(config)}, f, indent=2)
            for old in list_checkpoints(root)[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()

    resume = _resolve_resume(config)
    if resume is not None:
        accelerator.load_state(str(resume))
        with open(resume / STATE_NAME, encoding="utf-8") as f:
            saved = json.load(f)
        state.update({k: saved[k] for k in ("step", "epoch", "batches_in_epoch", "elapsed_s")})
        log(f"resumed from {resume} at step {state['step']}")

    # 6. Loop
    model.train()
    start = time.perf_counter() - state["elapsed_s"]
    stopped_by = "epochs"
    last_eval: dict[str, float] = {}
    running, n_running = 0.0, 0
    bar = tqdm(total=total_steps, initial=state["step"], disable=not (main and config.progress))
    done = state["step"] >= total_steps
    while not done and state["epoch"] < config.epochs:
        loader.set_epoch(state["epoch"])
        epoch_loader = loader
        if state["batches_in_epoch"]:
            epoch_loader = accelerator.skip_first_batches(loader, state["batches_in_epoch"])
        for batch in epoch_loader:
            *inputs, target = batch
            with accelerator.accumulate(model):
                if config.encoder == "seq2seq":
                    loss = model(target, cond=inputs[0])
                else:
                    loss = model(target, input_ids=inputs[0], attention_mask=inputs[1])
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                    for group in optimizer.param_groups:
                        group["lr"] = config.lr * lr_factor(
                            state["step"], time.perf_counter() - start, config, total_steps
                        )
                optimizer.step()
                optimizer.zero_grad()
            state["batches_in_epoch"] += 1
            running += loss.detach().float().item()
            n_running += 1
            if not accelerator.sync_gradients:
                continue
            state["step"] += 1
            state["elapsed_s"] = time.perf_counter() - start
            bar.update(1)
            record: dict[str, Any] = {}
            if state["step"] % config.log_every == 0:
                record = {
                    "step": state["step"],
                    "train_loss": running / max(1, n_running),
                    "lr": optimizer.param_groups[0]["lr"],
                    "elapsed_s": round(state["elapsed_s"], 2),
                }
                running, n_running = 0.0, 0
            if config.eval_every and state["step"] % config.eval_every == 0:
                last_eval = evaluate()
                record = {**record, "step": state["step"], **last_eval}
                log(f"step {state['step']}: {last_eval}")
            if record:
                log_records.append(record)
            if config.checkpoint_every and state["step"] % config.checkpoint_every == 0:
                save_checkpoint()
            if state["step"] >= total_steps:
                stopped_by, done = "max_steps" if config.max_steps else "epochs", True
            elif config.max_minutes and state["elapsed_s"] >= 60 * config.max_minutes:
                stopped_by, done = "max_minutes", True
            if done:
                break
        else:
            state["epoch"] += 1
            state["batches_in_epoch"] = 0
    bar.close()

    # 7. Final validation, checkpoint, save on the main process
    if not log_records or log_records[-1].get("step") != state["step"] or not last_eval:
        last_eval = evaluate()
        log_records.append({"step": state["step"], **last_eval})
    if config.checkpoint_every:
        save_checkpoint()
    accelerator.wait_for_everyone()
    component_dir = Path(config.artifact) / config.component
    summary = {
        "steps": state["step"],
        "elapsed_s": round(state["elapsed_s"], 3),
        "final_eval": last_eval,
        "stopped_by": stopped_by,
        "n_parameters": n_params,
        "n_train_pairs": int(latents.shape[0]),
        "n_validation": len(val_prompts),
        "n_validation_skipped": data["n_validation_skipped"],
        "component_dir": str(component_dir),
    }
    if main:
        unwrapped = accelerator.unwrap_model(model)
        if frozen is not None:
            unwrapped.encoder = frozen  # recorded as kind "seq2seq"; its weights stay in seq2seq/
        info = {
            "kind": unwrapped.component_kind,
            "encoder": config.encoder,
            "steps": state["step"],
            **last_eval,
        }
        with component_writer(config.artifact, config.component, info) as tmp:
            unwrapped.save(tmp)
            with open(tmp / LOG_NAME, "w", encoding="utf-8") as f:
                for record in log_records:
                    f.write(json.dumps(record) + "\n")
            with open(tmp / "train_config.json", "w", encoding="utf-8") as f:
                json.dump({"config": dataclasses.asdict(config), "summary": summary}, f, indent=2)
        log(f"saved {component_dir} after {state['step']} steps ({state['elapsed_s']:.0f} s)")
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
    print(json.dumps(train(config), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    return _run_from_args(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
