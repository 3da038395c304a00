"""Training throughput of the seq2seq model: plain batches vs grouped, length-bucketed batches.

On synthetic data shaped like the MPD (no MPD file is read):

- prompts: titles of 5-25 bytes drawn from a pool of distinct titles with a Zipf-like frequency
  (MPD titles repeat a lot: "chill", "workout"), and a share (default 5%) of prompts carrying a
  description, 26 to 64 bytes; tokenised by the recommended subword tokenizer, learned on them;
- playlists of 5 to 250 tracks (log-normal, mean about 60) over a catalogue of 50k items whose
  semantic IDs are 3 levels of 256 codes plus a collision digit;
- the project's recommended model (:func:`text2tracks.modeling.build_seq2seq` with
  ``ModelConfig()``: T5 d_model 128, 3 + 3 layers, d_ff 512, no dropout); AdamW; batch 128; one
  torch thread.

Measured in one run, windows interleaved round-robin across paths (the CPU may be shared):
examples/s of full training steps (collate, forward, backward, optimizer step), the median over
``--windows`` timed windows of ``--window-batches`` batches each, for

- ``plain``: one encoder row per example, batches in random order (``--targets-per-prompt-group
  1 --length-bucket-window 0``, the old path);
- ``bucketed``: length bucketing only;
- ``grouped``: prompt groups only;
- ``grouped+bucketed``: both (the defaults).

Also reported per path, over the first ``--stat-batches`` batches of an epoch: encoder rows per
example, and the share of encoded prompt positions that are padding.

    python -m eval.bench_train_throughput [--out bench_out/bench_train_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from text2tracks.data import Seq2SeqCollator, Seq2SeqPairs, encode_prompts
from text2tracks.modeling import ModelConfig, build_seq2seq, count_parameters
from text2tracks.training_step import grouped_forward

LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz  "))


def synthetic_text(rng: np.random.Generator, n_bytes: int) -> str:
    return "".join(rng.choice(LETTERS, size=n_bytes)).strip() or "x"


def synthetic_prompts(n_playlists: int, description_share: float, seed: int) -> list[str]:
    """Titles from a Zipf-like pool (5-25 bytes); ``description_share`` of them with a description."""
    rng = np.random.default_rng(seed)
    n_titles = max(1, n_playlists // 10)
    pool = [synthetic_text(rng, int(n)) for n in rng.integers(5, 26, size=n_titles)]
    weight = 1.0 / np.arange(1, n_titles + 1)
    titles = rng.choice(n_titles, size=n_playlists, p=weight / weight.sum())
    prompts = []
    for t in titles:
        text = pool[t]
        if rng.random() < description_share:
            # title + description, 26 to 64 bytes in all (the tokenizer truncates at the limit)
            extra = int(rng.integers(26, 65)) - len(text) - 1
            text = f"{text} {synthetic_text(rng, max(extra, 1))}"
        prompts.append(text)
    return prompts


def synthetic_playlists(n_playlists: int, n_items: int, seed: int) -> list[np.ndarray]:
    """Track lists of 5-250 distinct items, log-normal lengths, popularity-skewed items."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.round(rng.lognormal(3.8, 0.8, size=n_playlists)), 5, 250).astype(int)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    out = []
    for n in lengths:
        picks = np.unique(rng.choice(n_items, size=int(n) * 2, p=pop))
        out.append(rng.permutation(picks)[:n])
    return out


def synthetic_codes(n_items: int, seed: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """(n_items, 4) codes: 3 skewed levels of 256 and a collision digit (rank in its prefix)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 257) ** 0.6
    p /= p.sum()
    base = np.stack(
        [
            rng.choice(256, size=n_items, p=p),
            rng.choice(256, size=n_items, p=p),
            rng.integers(0, 256, size=n_items),
        ],
        axis=1,
    )
    key = (base[:, 0] * 256 + base[:, 1]) * 256 + base[:, 2]
    order = np.argsort(key, kind="stable")
    sk = key[order]
    start = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1]
    digit = np.empty(n_items, dtype=np.int64)
    digit[order] = np.arange(n_items) - np.repeat(start, np.diff(np.r_[start, n_items]))
    return np.concatenate([base, digit[:, None]], axis=1), (256, 256, 256, int(digit.max()) + 1)


PATHS = {"plain": (1, 0), "bucketed": (1, 32), "grouped": (8, 0), "grouped+bucketed": (8, 32)}


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m eval.bench_train_throughput``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_out/bench_train_throughput.json")
    ap.add_argument("--n-playlists", type=int, default=20000)
    ap.add_argument("--n-items", type=int, default=50000)
    ap.add_argument("--description-share", type=float, default=0.05)
    ap.add_argument(
        "--targets-per-playlist",
        type=int,
        default=0,
        help="0: every (prompt, track) pair, as in the paper (default)",
    )
    ap.add_argument("--group", type=int, default=8, help="targets per prompt group (new path)")
    ap.add_argument("--bucket-window", type=int, default=32, help="batches (new path)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--window-batches", type=int, default=6)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--stat-batches", type=int, default=300)
    ap.add_argument("--paths", default=",".join(PATHS), help=f"subset of {','.join(PATHS)}")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    return ap


@dataclass
class Workload:
    """The synthetic data and the initial model every path trains from."""

    config: ModelConfig
    level_sizes: tuple[int, ...]
    model0: torch.nn.Module
    tokenizer: Any
    init_state: dict
    sid: Any
    texts: list[str]
    prompt_ids: list
    relevant: list[np.ndarray]
    lengths: np.ndarray


def build_workload(args: argparse.Namespace) -> Workload:
    """Codes, prompts, playlists and the project's model at the benchmark's size."""
    codes, level_sizes = synthetic_codes(args.n_items, args.seed)
    texts = synthetic_prompts(args.n_playlists, args.description_share, args.seed)
    # the recommended model (ModelConfig's defaults), its subword tokenizer learned on the prompts
    config = ModelConfig()
    model0, tokenizer, layout = build_seq2seq(config, level_sizes, prompt_texts=texts)
    init_state = {k: v.clone() for k, v in model0.state_dict().items()}
    sid = layout.codes_to_token_ids(codes)
    prompt_ids = encode_prompts(tokenizer, texts, config.max_prompt_length)
    relevant = synthetic_playlists(args.n_playlists, args.n_items, args.seed)
    lengths = np.array([len(p) for p in prompt_ids])
    return Workload(
        config,
        level_sizes,
        model0,
        tokenizer,
        init_state,
        sid,
        texts,
        prompt_ids,
        relevant,
        lengths,
    )


def prepare_path(work: Workload, group: int, window: int, args: argparse.Namespace) -> dict:
    """One path's pairs, collator, fresh model (the shared initial weights) and optimizer, with
    its batch statistics over the first ``--stat-batches`` batches."""
    tokenizer = work.tokenizer
    pairs = Seq2SeqPairs(
        work.prompt_ids,
        work.relevant,
        work.sid,
        tokenizer.eos_token_id,
        targets_per_playlist=args.targets_per_playlist,
        seed=args.seed,
        group_size=group,
        bucket_batches=window,
        batch_size=args.batch_size,
    )
    collate = Seq2SeqCollator(
        work.prompt_ids,
        work.sid,
        tokenizer.pad_token_id,
        tokenizer.eos_token_id,
        share_prompts=group > 1,
    )
    # per-batch statistics (collate only)
    rows = tokens = useful = 0
    n_stat = min(args.stat_batches, len(pairs) // args.batch_size)
    for b in range(n_stat):
        batch = collate([pairs[i] for i in range(b * args.batch_size, (b + 1) * args.batch_size)])
        rows += batch["input_ids"].shape[0]
        tokens += batch["input_ids"].numel()
        useful += int(batch["attention_mask"].sum())
    model, _, _ = build_seq2seq(work.config, work.level_sizes, prompt_texts=work.texts)
    model.load_state_dict(work.init_state)
    model.train()
    return {
        "group": group,
        "window": window,
        "pairs": pairs,
        "collate": collate,
        "model": model,
        "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-3),
        "cursor": 0,
        "epoch": 0,
        "rates": [],
        "losses": [],
        "encoder_rows_per_example": rows / max(1, n_stat * args.batch_size),
        "padding_share": 1.0 - useful / max(1, tokens),
    }


def next_batch(run: dict, batch_size: int) -> dict:
    """A path's next batch of pairs, collated (a new epoch when its pairs run out)."""
    pairs = run["pairs"]
    if run["cursor"] + batch_size > len(pairs):
        run["epoch"] += 1
        pairs.set_epoch(run["epoch"])
        run["cursor"] = 0
    batch = run["collate"]([pairs[i] for i in range(run["cursor"], run["cursor"] + batch_size)])
    run["cursor"] += batch_size
    return batch


def train_step(run: dict, batch_size: int) -> int:
    """One full training step of a path (a new epoch when its pairs run out); its examples."""
    batch = next_batch(run, batch_size)
    model = run["model"]
    # run["bf16"]: the forward under the CPU bf16 autocast of the trainer's mixed_precision auto
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=run.get("bf16", False)):
        if "prompt_index" in batch:
            out = grouped_forward(
                model,
                batch["input_ids"],
                batch["attention_mask"],
                batch["prompt_index"],
                batch["labels"],
                encoder=run.get("encoder"),  # None: the model's own (bench_step_cost: a cache)
            )
        else:
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                labels=batch["labels"],
            )
    out.loss.backward()
    run["optimizer"].step()
    run["optimizer"].zero_grad(set_to_none=True)
    run["losses"].append(out.loss.item())
    return batch["labels"].shape[0]


def time_windows(runs: dict[str, dict], args: argparse.Namespace) -> None:
    """Two warm-up steps per path, then ``--windows`` timed windows, round-robin across paths;
    each window's examples/s goes to the path's ``rates``."""
    for run in runs.values():  # warm-up
        for _ in range(2):
            train_step(run, args.batch_size)
    for w in range(args.windows):
        for run in runs.values():
            t0 = time.perf_counter()
            n = sum(train_step(run, args.batch_size) for _ in range(args.window_batches))
            run["rates"].append(n / (time.perf_counter() - t0))
        print(
            f"window {w + 1}/{args.windows}: "
            + ", ".join(f"{name} {run['rates'][-1]:.0f}" for name, run in runs.items()),
            flush=True,
        )


def path_table(runs: dict[str, dict]) -> dict[str, dict]:
    """Per path: its settings, median examples/s (and speed-up over ``plain`` when it ran),
    batch statistics and mean training loss."""
    table = {
        name: {
            "targets_per_prompt_group": run["group"],
            "length_bucket_window": run["window"],
            "examples_per_s": float(statistics.median(run["rates"])),
            "examples_per_s_windows": [round(r, 2) for r in run["rates"]],
            "encoder_rows_per_example": round(run["encoder_rows_per_example"], 4),
            "padding_share": round(run["padding_share"], 4),
            "mean_train_loss": float(np.mean(run["losses"])),
        }
        for name, run in runs.items()
    }
    if "plain" in table:
        for name in table:
            ratios = [
                a / b for a, b in zip(runs[name]["rates"], runs["plain"]["rates"], strict=True)
            ]
            table[name]["speedup_vs_plain"] = round(float(statistics.median(ratios)), 3)
    return table


def describe(work: Workload, runs: dict, table: dict, args: argparse.Namespace) -> dict:
    """The JSON report: model, data, settings, the path table and the machine."""
    return {
        "benchmark": "bench_train_throughput",
        "model": {
            **work.config.to_dict(),
            "n_parameters": count_parameters(work.model0),
            "vocab_size": len(work.tokenizer),
        },
        "data": {
            "n_playlists": args.n_playlists,
            "n_items": args.n_items,
            "level_sizes": list(work.level_sizes),
            "examples_per_epoch": len(next(iter(runs.values()))["pairs"]),
            "targets_per_playlist": args.targets_per_playlist,
            "description_share": args.description_share,
            "prompt_length_tokens": {
                q: float(np.percentile(work.lengths, p))
                for q, p in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100))
            },
            "distinct_prompts": len({t for t in work.texts}),
        },
        "batch_size": args.batch_size,
        "window_batches": args.window_batches,
        "windows": args.windows,
        "threads": args.threads,
        "paths": table,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
        },
    }


def print_summary(result: dict, args: argparse.Namespace) -> None:
    """The model size, the prompt lengths and one line per path."""
    print(
        f"\n{result['model']['n_parameters'] / 1e6:.2f}M parameters, batch {args.batch_size}, "
        f"{args.threads} thread(s), prompts p50/p95/max "
        f"{result['data']['prompt_length_tokens']['p50']:.0f}/"
        f"{result['data']['prompt_length_tokens']['p95']:.0f}/"
        f"{result['data']['prompt_length_tokens']['max']:.0f} tokens"
    )
    print(
        f"{'path':<18} {'group':>5} {'window':>6} {'ex/s':>8} {'x plain':>8} {'enc rows/ex':>11} {'padding':>8}"
    )
    for name, row in result["paths"].items():
        print(
            f"{name:<18} {row['targets_per_prompt_group']:>5} {row['length_bucket_window']:>6} "
            f"{row['examples_per_s']:>8.1f} {row.get('speedup_vs_plain', float('nan')):>8.2f} "
            f"{row['encoder_rows_per_example']:>11.3f} {row['padding_share']:>8.1%}"
        )


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = {name: PATHS[name] for name in args.paths.split(",")}
    paths = {
        name: ((args.group if g > 1 else 1), (args.bucket_window if w else 0))
        for name, (g, w) in paths.items()
    }
    work = build_workload(args)
    runs = {
        name: prepare_path(work, group, window, args) for name, (group, window) in paths.items()
    }
    time_windows(runs, args)
    result = describe(work, runs, path_table(runs), args)
    print_summary(result, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
