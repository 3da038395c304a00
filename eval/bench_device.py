"""Training and decoding speed of the recommended model on an accelerator, as a ratio to the CPU
of the same machine, measured in one run.

    python -m eval.bench_device [--device cuda] [--cpu-threads 2] [--train-batch-sizes 128,1024]
        [--precisions fp32,bf16] [--decode-batch-sizes 1,64] [--out bench_out/bench_device.json]

The model is the recommended one (``TrainConfig()``'s ``ModelConfig``; ``--encoder`` to pick
another), built from the same seed on the CPU and on ``--device``. The data are the synthetic
MPD-shaped prompts, playlists and semantic IDs of :mod:`eval.bench_train_throughput` (Zipf-like
titles, log-normal playlists over ``--n-items`` items, 3 x 256 codes + a collision digit); no
MPD file is read, and speed does not depend on what the weights hold.

Training: examples/s of training steps as :mod:`training.train_seq2seq` runs them: grouped,
length-bucketed batches (``TrainConfig``'s targets per prompt group and bucket window), the
batch copied to the device, :func:`text2tracks.training_step.grouped_forward` with the encoder
under autocast at the precision (``bf16``: what ``--mixed-precision bf16`` gives), backward, and
training's AdamW (:func:`training.optimizer.build_optimizer`: fused where torch has it, the
encoder's own learning rate), under training's attention kernels
(:func:`text2tracks.training_step.training_attention`; a precision ending in ``+cudnn``, say
``bf16+cudnn``, leaves torch's own choice, cuDNN's attention included). The CPU runs ``TrainConfig``'s batch size in fp32 on
``--cpu-threads`` threads; the device every ``--train-batch-sizes`` x ``--precisions``. Windows of
``--window-batches`` steps are timed round-robin over all of them (the device synchronised at
the end of each window; the loss stays on the device in between, as in training); the table
gives the median examples/s and the median, over windows, of the ratio to the CPU's.

Decoding: :func:`text2tracks.generative.generate_items`, the API's constrained beam search, at
``--k`` with the API's default beam width and diversity, in fp32 as the API runs: per batch size,
the median seconds per call over interleaved repeats (:func:`eval.timing.time_interleaved`),
prompts/s, and the CPU's seconds over the device's (a paired ratio).

Prints markdown tables and writes ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eval.bench_train_throughput import (
    next_batch,
    synthetic_codes,
    synthetic_playlists,
    synthetic_prompts,
)
from eval.timing import int_list, paired_ratio, time_interleaved
from text2tracks.data import Seq2SeqCollator, Seq2SeqPairs, encode_prompts
from text2tracks.generative import beam_width, generate_items
from text2tracks.modeling import DEFAULT_DIVERSITY, ModelConfig, build_seq2seq
from text2tracks.training_step import grouped_forward, training_attention
from text2tracks.trie import FlatTrie
from training.optimizer import build_optimizer
from training.seq2seq_config import TrainConfig

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eval.bench_device", description=__doc__)
    ap.add_argument("--device", default="cuda", help="the accelerator (a torch device name)")
    ap.add_argument("--cpu-threads", type=int, default=2, help="torch threads of the CPU runs")
    ap.add_argument(
        "--encoder", default=None, help="the model's encoder (default: the recommended one)"
    )
    ap.add_argument("--train-batch-sizes", type=int_list, default=[128, 1024])
    ap.add_argument(
        "--precisions",
        default="fp32,bf16",
        help=f"of {', '.join(PRECISIONS)}; +cudnn: with torch's own attention kernels",
    )
    ap.add_argument("--window-batches", type=int, default=4)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--decode-batch-sizes", type=int_list, default=[1, 64])
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved decoding repeats")
    ap.add_argument("--calls", type=int, default=2, help="timed decoding calls per repeat")
    ap.add_argument("--n-playlists", type=int, default=5000)
    ap.add_argument("--n-items", type=int, default=50000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/bench_device.json")
    return ap


def check_args(args) -> torch.device:
    """The device, or a ``SystemExit`` naming what is wrong and the fix."""
    try:
        device = torch.device(args.device)
    except RuntimeError as err:
        raise SystemExit(f"--device {args.device!r}: not a torch device ({err})") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is "
            "False); run on a machine with a GPU, or give --device cpu to time the CPU alone"
        )
    names = [p for p in args.precisions.split(",") if p]
    unknown = [p for p in names if p.removesuffix("+cudnn") not in PRECISIONS]
    if unknown or not names:
        raise SystemExit(
            f"--precisions: unknown {unknown}; choose from {', '.join(PRECISIONS)}, each "
            "optionally with +cudnn"
        )
    sizes = args.train_batch_sizes + args.decode_batch_sizes
    if not args.train_batch_sizes or not args.decode_batch_sizes or min(sizes) < 1:
        raise SystemExit("--train-batch-sizes and --decode-batch-sizes: integers >= 1")
    if min(args.windows, args.window_batches, args.repeats, args.calls, args.k) < 1:
        raise SystemExit("--windows, --window-batches, --repeats, --calls and --k must be >= 1")
    return device


def synthetic_data(args, config: ModelConfig) -> dict[str, Any]:
    """Codes, prompts, playlists, the tokenizer, the layout and the trie (built once)."""
    codes, level_sizes = synthetic_codes(args.n_items, args.seed)
    texts = synthetic_prompts(args.n_playlists, 0.05, args.seed)
    _, tokenizer, layout = build_seq2seq(config, level_sizes, prompt_texts=texts)
    return {
        "codes": codes,
        "level_sizes": level_sizes,
        "texts": texts,
        "relevant": synthetic_playlists(args.n_playlists, args.n_items, args.seed),
        "tokenizer": tokenizer,
        "layout": layout,
        "prompt_ids": encode_prompts(tokenizer, texts, config.max_prompt_length),
        "sid": layout.codes_to_token_ids(codes),
        "trie": FlatTrie.from_codes(codes, level_sizes),
    }


def fresh_model(train: TrainConfig, data: dict, device: torch.device, seed: int):
    """The recommended model from ``seed``, on ``device``."""
    torch.manual_seed(seed)
    model, _, _ = build_seq2seq(train.model, data["level_sizes"], prompt_texts=data["texts"])
    return model.to(device)


def training_run(train: TrainConfig, data, device, batch_size: int, precision: str, seed: int):
    """One timed training setting: its model, optimizer, batches and autocast."""
    model = fresh_model(train, data, device, seed).train()
    tokenizer = data["tokenizer"]
    pairs = Seq2SeqPairs(
        data["prompt_ids"],
        data["relevant"],
        data["sid"],
        tokenizer.eos_token_id,
        seed=seed,
        group_size=train.targets_per_prompt_group,
        bucket_batches=train.length_bucket_window,
        batch_size=batch_size,
    )
    collate = Seq2SeqCollator(
        data["prompt_ids"],
        data["sid"],
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        share_prompts=train.targets_per_prompt_group > 1,
    )
    dtype = PRECISIONS[precision.removesuffix("+cudnn")]

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    return {
        "device": device,
        "batch_size": batch_size,
        "precision": precision,
        "model": model,
        "optimizer": build_optimizer(
            model, train.lr, train.weight_decay, encoder_lr=train.resolved_encoder_lr()
        ),
        "pairs": pairs,
        "collate": collate,
        "autocast": autocast,
        # "+cudnn": torch's own choice of attention kernels, cuDNN's among them (training's
        # before training_attention)
        "attention": contextlib.nullcontext if precision.endswith("+cudnn") else training_attention,
        "cursor": 0,
        "epoch": 0,
        "rates": [],
        "window_losses": [],
    }


def train_steps(run: dict, n: int, train: TrainConfig) -> tuple[int, float]:
    """``n`` training steps (a new epoch when the pairs run out); the examples they saw and
    their mean loss (read once, after the device finished)."""
    loss_sum, seen = torch.zeros((), device=run["device"]), 0
    with run["attention"]():
        for _ in range(n):
            seen += _train_step(run, train, loss_sum)
    return seen, float(loss_sum) / n  # float(): waits for the device


def _train_step(run: dict, train: TrainConfig, loss_sum: torch.Tensor) -> int:
    """One training step (its loss added to ``loss_sum`` on the device); its examples."""
    batch = next_batch(run, run["batch_size"])
    batch = {key: value.to(run["device"], non_blocking=True) for key, value in batch.items()}
    with run["autocast"]():  # the decoder's forward, as accelerate's wrapper does
        out = grouped_forward(
            run["model"],
            batch["input_ids"],
            batch["attention_mask"],
            batch["prompt_index"],
            batch["labels"],
            autocast=run["autocast"],
            list_loss_weight=train.list_loss_weight,
            num_negatives=train.list_loss_negatives,
        )
    out.loss.backward()
    run["optimizer"].step()
    run["optimizer"].zero_grad(set_to_none=True)
    loss_sum += out.loss.detach().float()
    return batch["labels"].shape[0]


def measure_training(args, train: TrainConfig, data, device) -> list[dict]:
    """Every training setting timed in windows, round-robin; one row each, the CPU first."""
    settings = [("cpu", train.batch_size, "fp32")] + [
        (device.type, size, precision)
        for size in args.train_batch_sizes
        for precision in args.precisions.split(",")
        if precision
    ]
    runs = [
        training_run(train, data, torch.device(name if name == "cpu" else args.device), b, p, 0)
        for name, b, p in settings
    ]
    for run in runs:
        if run["device"].type == "cuda":
            torch.cuda.reset_peak_memory_stats(run["device"])
        train_steps(run, 3, train)  # warm-up (kernels chosen, caches filled)
        if run["device"].type == "cuda":
            run["peak_memory_gib"] = torch.cuda.max_memory_allocated(run["device"]) / 2**30
    for _ in range(args.windows):
        for run in runs:
            started = time.perf_counter()
            seen, loss = train_steps(run, args.window_batches, train)
            run["rates"].append(seen / (time.perf_counter() - started))
            run["window_losses"].append(loss)
    cpu = runs[0]["rates"]
    return [
        {
            "device": str(run["device"]),
            "batch_size": run["batch_size"],
            "precision": run["precision"],
            "examples_per_s": statistics.median(run["rates"]),
            "vs_cpu": statistics.median(a / b for a, b in zip(run["rates"], cpu, strict=True)),
            "steps": args.windows * args.window_batches + 3,
            "first_window_loss": run["window_losses"][0],
            "last_window_loss": run["window_losses"][-1],
            "peak_memory_gib": run.get("peak_memory_gib"),
        }
        for run in runs
    ]


def measure_decoding(args, train: TrainConfig, data, device) -> dict[str, Any]:
    """``generate_items`` on the CPU and on ``device`` (same weights), timed interleaved."""
    cpu_model = fresh_model(train, data, torch.device("cpu"), args.seed + 1).eval()
    models = {"cpu": cpu_model, "device": copy.deepcopy(cpu_model).to(device)}
    beams = beam_width(None, None, args.k)
    texts, found = data["texts"], {}

    def run(variant: str, index: int, size: int) -> None:
        start = (index * size) % max(1, len(texts) - size)
        with torch.no_grad():
            items, _ = generate_items(
                models[variant],
                data["tokenizer"],
                data["trie"],
                data["layout"],
                texts[start : start + size],
                [None] * size,
                k=args.k,
                num_beams=beams,
                max_length=train.model.max_prompt_length,
                first_index=0,
                stacklevel=2,
                diversity=DEFAULT_DIVERSITY,
            )
        found[(variant, index, size)] = items

    times = time_interleaved(
        run, ["cpu", "device"], args.decode_batch_sizes, args.repeats, args.calls
    )
    rows = []
    for size, per in times.items():
        seconds = {v: statistics.median(x for rep in per[v] for x in rep) for v in per}
        rows.append(
            {
                "batch_size": size,
                "cpu_s_per_call": seconds["cpu"],
                "device_s_per_call": seconds["device"],
                "cpu_prompts_per_s": size / seconds["cpu"],
                "device_prompts_per_s": size / seconds["device"],
                "speedup": paired_ratio(per["cpu"], per["device"]),
                "same_lists": same_lists(found, size),
            }
        )
    return {"num_beams": beams, "k": args.k, "rows": rows}


def same_lists(found: dict, size: int) -> float:
    """The share of prompts whose top-k list is the same on the CPU and the device (float
    arithmetic differs between them, so near-ties can swap places)."""
    pairs = [
        (found[key], found[("device", *key[1:])])
        for key in found
        if key[0] == "cpu" and key[2] == size and ("device", *key[1:]) in found
    ]
    same = sum(
        int(np.array_equal(a, b)) for cpu, dev in pairs for a, b in zip(cpu, dev, strict=True)
    )
    return same / max(1, sum(len(cpu) for cpu, _ in pairs))


def format_tables(result: dict[str, Any]) -> str:
    lines = [
        "| training | batch | precision | examples/s (median) | vs CPU | peak GiB |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["training"]:
        peak = row["peak_memory_gib"]
        lines.append(
            f"| {row['device']} | {row['batch_size']} | {row['precision']} | "
            f"{row['examples_per_s']:.0f} | {row['vs_cpu']:.2f}x | "
            f"{'-' if peak is None else f'{peak:.2f}'} |"
        )
    decoding = result["decoding"]
    lines += [
        "",
        f"| decoding (k={decoding['k']}, beam {decoding['num_beams']}) | CPU s/call | "
        "device s/call | CPU prompts/s | device prompts/s | speed-up | same lists |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in decoding["rows"]:
        lines.append(
            f"| batch {row['batch_size']} | {row['cpu_s_per_call']:.4f} | "
            f"{row['device_s_per_call']:.4f} | {row['cpu_prompts_per_s']:.1f} | "
            f"{row['device_prompts_per_s']:.1f} | {row['speedup']:.2f}x | {row['same_lists']:.0%} |"
        )
    return "\n".join(lines)


def run(args) -> dict[str, Any]:
    device = check_args(args)
    torch.set_num_threads(args.cpu_threads)
    model_config = ModelConfig() if args.encoder is None else ModelConfig(encoder=args.encoder)
    train = TrainConfig("unused", "unused", model=model_config)
    data = synthetic_data(args, model_config)
    return {
        "settings": {**vars(args), "encoder_resolved": model_config.encoder},
        "machine": {
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
        },
        "training": measure_training(args, train, data, device),
        "decoding": measure_decoding(args, train, data, device),
    }


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    print(format_tables(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
