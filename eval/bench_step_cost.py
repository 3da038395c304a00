"""What a training step costs with and without the ID-only output layer, the fused optimizer
and the frozen-encoder cache, for the T5 and the frozen MiniLM encoder.

    python -m eval.bench_step_cost [--encoders t5,minilm] [--out bench_out/bench_step_cost.json]

On the synthetic MPD-shaped data of :mod:`eval.bench_train_throughput` (Zipf-like titles,
log-normal playlists over 50k items, 3 x 256 codes + collision digit), grouped and
length-bucketed batches of 128 examples as in training. Per encoder, variants built from the
same seed (the output layer holds no weights of its own, so every variant starts from the same
model):

- ``full``: softmax over the whole vocabulary, torch's default AdamW loop (the old path);
- ``id_head``: the ID-only output layer (:mod:`text2tracks.output_head`), loss on its columns;
- ``id_head+fused``: and the fused AdamW of training (:func:`training.train_seq2seq.build_optimizer`);
- ``id_head+fused+cache`` (frozen encoders only): and :class:`FrozenEncoderCache`.

``minilm_tuned`` is the fine-tuned MiniLM of training (ID-only output layer, fused AdamW, the
encoder at ``MINILM_ENCODER_LR``): ``all`` trains every weight; ``topN`` only the top N layers
(``--encoder-trainable-layers N``, per ``--trainable-layers``), ``topN+cache`` with the frozen
states cached (:func:`text2tracks.training_step.training_encoder`).

``--precisions fp32,bf16`` adds a ``+bf16`` twin of every variant whose forward runs under
torch's CPU bf16 autocast, as ``mixed_precision="auto"`` trains on a CPU with native bf16
(:func:`training.launch.resolve_mixed_precision`); its ratio to the fp32 variant beside it is
what the trainer's default gains there.

A cache is filled with every prompt before timing, as it is after training's first epoch.
Windows of ``--window-batches`` steps are timed round-robin across variants, so that a busy
machine slows all of them alike; the table gives the median examples/s and the median ratio
to the encoder's first variant (``full``, or ``all``) over windows. Prints a markdown table
and writes ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from eval.bench_train_throughput import (
    synthetic_codes,
    synthetic_playlists,
    synthetic_prompts,
    train_step,
)
from eval.timing import int_list
from text2tracks.data import Seq2SeqCollator, Seq2SeqPairs, encode_prompts
from text2tracks.modeling import ModelConfig, build_seq2seq
from text2tracks.training_step import training_encoder
from training.seq2seq_config import MINILM_ENCODER_LR
from training.train_seq2seq import build_optimizer

VARIANTS = ("full", "id_head", "id_head+fused", "id_head+fused+cache")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eval.bench_step_cost", description=__doc__)
    ap.add_argument(
        "--encoders", default="t5,minilm,minilm_tuned", help="t5, minilm (frozen), minilm_tuned"
    )
    ap.add_argument(
        "--trainable-layers",
        type=int_list,
        default=[6, 3, 1],
        help="minilm_tuned: top layers trained",
    )
    ap.add_argument(
        "--precisions",
        default="fp32",
        help="fp32 and/or bf16 (a +bf16 twin of each variant, under CPU bf16 autocast)",
    )
    ap.add_argument("--n-playlists", type=int, default=5000)
    ap.add_argument("--n-items", type=int, default=50000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--group", type=int, default=8, help="targets per prompt group")
    ap.add_argument("--window-batches", type=int, default=4)
    ap.add_argument("--windows", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/bench_step_cost.json")
    return ap


def variant_names(encoder: str, trainable_layers: list[int], precisions: str = "fp32") -> list[str]:
    """The variants timed for ``encoder``, the baseline first; with ``precisions`` "fp32,bf16"
    each followed by its ``+bf16`` twin (bf16 alone: the twins only)."""
    if encoder == "minilm_tuned":
        names = ["all"] + [f"top{n}{cache}" for n in trainable_layers for cache in ("", "+cache")]
    elif encoder in ("t5", "minilm"):
        names = list(VARIANTS if encoder == "minilm" else VARIANTS[:3])
    else:
        raise ValueError(f"--encoders: unknown {encoder!r} (t5, minilm, minilm_tuned)")
    kinds = [k for k in precisions.split(",") if k]
    if not kinds or set(kinds) - {"fp32", "bf16"}:
        raise ValueError(f"--precisions: fp32 and/or bf16, got {precisions!r}")
    suffixes = [""] * ("fp32" in kinds) + ["+bf16"] * ("bf16" in kinds)
    return [name + suffix for name in names for suffix in suffixes]


def _variant(encoder: str, name: str, data: dict, args) -> dict:
    """A fresh model, optimizer, batches and encoder call for one variant."""
    bf16 = name.endswith("+bf16")
    name = name.removesuffix("+bf16")
    tuned = encoder == "minilm_tuned"
    config = ModelConfig(
        encoder="minilm" if tuned else encoder,
        freeze_encoder=encoder == "minilm",
        encoder_trainable_layers=int(name[3:].split("+")[0]) if name.startswith("top") else None,
        id_only_output=name != "full",
    )
    torch.manual_seed(args.seed)
    model, tokenizer, layout = build_seq2seq(
        config, data["level_sizes"], prompt_texts=data["texts"]
    )
    prompt_ids = encode_prompts(tokenizer, data["texts"], config.max_prompt_length)
    sid = layout.codes_to_token_ids(data["codes"])
    pairs = Seq2SeqPairs(
        prompt_ids,
        data["relevant"],
        sid,
        tokenizer.eos_token_id,
        seed=args.seed,
        group_size=args.group,
        bucket_batches=32,
        batch_size=args.batch_size,
    )
    collate = Seq2SeqCollator(
        prompt_ids, sid, tokenizer.pad_token_id, tokenizer.eos_token_id, share_prompts=True
    )
    fused = "fused" in name or tuned
    encoder_lr = MINILM_ENCODER_LR if tuned else 0.0
    optimizer = build_optimizer(
        model, lr=1e-3, weight_decay=0.01, fused=fused, encoder_lr=encoder_lr
    )
    encoder_call = model.get_encoder()
    if name.endswith("cache"):
        encoder_call = training_encoder(encoder_call)
        _fill(encoder_call, prompt_ids, tokenizer.pad_token_id)
    model.train()
    return {
        "model": model,
        "optimizer": optimizer,
        "pairs": pairs,
        "collate": collate,
        "encoder": encoder_call,
        "cursor": 0,
        "epoch": 0,
        "losses": [],
        "rates": [],
        "vocab": len(tokenizer),
        "bf16": bf16,
    }


def _fill(cache, prompt_ids, pad_id: int, chunk: int = 256) -> None:
    """Every prompt's states into ``cache`` (right-padded chunks)."""
    from torch.nn.utils.rnn import pad_sequence

    for start in range(0, len(prompt_ids), chunk):
        rows = [torch.as_tensor(ids) for ids in prompt_ids[start : start + chunk]]
        masks = [torch.ones(len(ids), dtype=torch.long) for ids in rows]
        cache(pad_sequence(rows, True, pad_id), pad_sequence(masks, True, 0))


def _steps(run: dict, n: int, batch_size: int) -> int:
    """``n`` training steps of a variant (``eval.bench_train_throughput.train_step``, with the
    variant's encoder call); the examples they saw."""
    return sum(train_step(run, batch_size) for _ in range(n))


def measure(args) -> dict:
    torch.set_num_threads(args.threads)
    codes, level_sizes = synthetic_codes(args.n_items, args.seed)
    data = {
        "codes": codes,
        "level_sizes": level_sizes,
        "texts": synthetic_prompts(args.n_playlists, 0.05, args.seed),
        "relevant": synthetic_playlists(args.n_playlists, args.n_items, args.seed),
    }
    result = {}
    for encoder in [e for e in args.encoders.split(",") if e]:
        names = variant_names(encoder, args.trainable_layers, args.precisions)
        runs = {name: _variant(encoder, name, data, args) for name in names}
        for run in runs.values():
            _steps(run, 2, args.batch_size)  # warm-up
        for _ in range(args.windows):
            for run in runs.values():
                started = time.perf_counter()
                n = _steps(run, args.window_batches, args.batch_size)
                run["rates"].append(n / (time.perf_counter() - started))
        base = runs[names[0]]["rates"]
        result[encoder] = {
            name: {
                "examples_per_s": statistics.median(run["rates"]),
                "speedup": statistics.median(
                    [a / b for a, b in zip(run["rates"], base, strict=True)]
                ),
                "vocab_size": run["vocab"],
            }
            for name, run in runs.items()
        }
        for name, row in result[encoder].items():
            print(
                f"| {encoder} | {name} | {row['examples_per_s']:.0f} | {row['speedup']:.2f}x |",
                flush=True,
            )
    return result


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    print("| encoder | variant | examples/s (median) | vs the first |")
    print("|---|---|---|---|")
    result = measure(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"settings": vars(args), "results": result}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
