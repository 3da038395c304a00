"""Speed of constrained beam search over semantic IDs.

On one model (a T5 of this project's default size built from a config, random weights: speed does
not depend on training) and a synthetic catalogue (~64k items, IDs 3 x 256 codes + a collision
digit), measures in one run:

- time spent inside the constraint (the processor's ``__call__``, timed cumulatively) for
  :class:`text2tracks.decoding.SIDConstraintProcessor` vs the classic ``prefix_allowed_tokens_fn``
  (transformers' ``PrefixConstrainedLogitsProcessor``), batch 32, beam 20 (target: >= 5x less);
- total constrained beam search time vs unconstrained beam search with the same beams and the same
  number of decoding steps (``max_new_tokens = depth + 1``; target: within 15%);
- the same with 50 excluded items per prompt (exclusion pruning inside decoding);
- latency of one prompt (k=10, median of repeats) and prompts per second at batch 64
  (:func:`text2tracks.decoding.constrained_generate`, end to end).

Ratios are medians over interleaved repeats of the same run (the CPU may be shared).

    python -m eval.bench_decoding [--out bench_out/bench_decoding.json] [--repeats 5] [--threads 1]
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

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, T5Config, T5ForConditionalGeneration
from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

from text2tracks.decoding import (
    SIDConstraintProcessor,
    constrained_generate,
    prefix_allowed_tokens_fn_from_trie,
)
from text2tracks.tokens import SIDTokenLayout
from text2tracks.trie import FlatTrie

BYTE_VOCAB = 384  # ByT5: 3 specials + 256 bytes + 125 extra ids
PAD, EOS = 0, 1


class Timed(LogitsProcessor):
    """Delegates to ``inner`` and adds the wall time of each call to ``seconds``."""

    def __init__(self, inner):
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, input_ids, scores):
        t0 = time.perf_counter()
        out = self.inner(input_ids, scores)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def synthetic_catalogue(n_items: int, digit_size: int, seed: int) -> np.ndarray:
    """IDs (n, 4): 3 skewed k-means-like codes over 256 and a collision digit (rank in its group)."""
    rng = np.random.default_rng(seed)
    p0 = 1.0 / np.arange(1, 257) ** 0.6
    c0 = rng.choice(256, size=n_items, p=p0 / p0.sum())
    c1 = (c0 * 7 + rng.choice(256, size=n_items, p=p0 / p0.sum())) % 256
    c2 = rng.integers(0, 256, size=n_items)
    base = np.stack([c0, c1, c2], axis=1)
    key = (c0 * 256 + c1) * 256 + c2
    order = np.argsort(key, kind="stable")
    sk = key[order]
    start = np.r_[0, np.flatnonzero(sk[1:] != sk[:-1]) + 1]
    group_start = np.repeat(start, np.diff(np.r_[start, len(sk)]))
    digit = np.empty(n_items, dtype=np.int64)
    digit[order] = np.arange(n_items) - group_start
    keep = digit < digit_size
    return np.concatenate([base, digit[:, None]], axis=1)[keep].astype(np.int64)


def build_model(vocab: int, seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab,
        d_model=256,
        d_kv=64,
        d_ff=1024,
        num_layers=4,
        num_decoder_layers=4,
        num_heads=4,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        decoder_start_token_id=PAD,
        pad_token_id=PAD,
        eos_token_id=EOS,
        dropout_rate=0.0,
    )
    return T5ForConditionalGeneration(config).eval()


def generate(model, x, beams, k, depth, processor=None, min_new_tokens=None):
    kwargs = dict(
        input_ids=x,
        attention_mask=torch.ones_like(x),
        num_beams=beams,
        num_return_sequences=k,
        output_scores=True,
        return_dict_in_generate=True,
        length_penalty=0.0,
        do_sample=False,
        early_stopping=True,
        max_new_tokens=depth + 1,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    if processor is not None:
        kwargs["logits_processor"] = LogitsProcessorList([processor])
    if min_new_tokens is not None:
        kwargs["min_new_tokens"] = min_new_tokens
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model.generate(**kwargs)
        return out, time.perf_counter() - t0


def med(xs):
    return float(statistics.median(xs))


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m eval.bench_decoding``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench_out/bench_decoding.json")
    ap.add_argument("--n-items", type=int, default=65536)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--beams", type=int, default=20)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--latency-repeats", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (default 1: on a shared, oversubscribed CPU, "
        "multi-threaded small ops mostly wait for descheduled threads; 0 keeps "
        "torch's default)",
    )
    return ap


@dataclass
class Setup:
    """The catalogue, its trie, the model and the prompts every run decodes."""

    sizes: tuple[int, ...]
    layout: SIDTokenLayout
    trie: FlatTrie
    build_s: float
    model: T5ForConditionalGeneration
    n_params: int
    generator: torch.Generator
    x: torch.Tensor
    exclude: list[np.ndarray]

    @property
    def depth(self) -> int:
        return self.trie.depth


def build_setup(args: argparse.Namespace) -> Setup:
    """A synthetic catalogue of 3 x 256 codes + a 32-way collision digit, its trie (timed),
    a random-weight model, a batch of random byte prompts and 50 excluded items per prompt."""
    sizes = (256, 256, 256, 32)
    offsets = tuple(BYTE_VOCAB + sum(sizes[:lv]) for lv in range(len(sizes)))
    layout = SIDTokenLayout(sizes, offsets)
    t0 = time.perf_counter()
    codes = synthetic_catalogue(args.n_items, sizes[-1], args.seed)
    trie = FlatTrie.from_codes(codes, sizes)
    build_s = time.perf_counter() - t0
    model = build_model(layout.end_id, args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randint(3, 259, (args.batch, args.prompt_len), generator=g)
    rng = np.random.default_rng(args.seed)
    exclude = [rng.choice(trie.n_items, size=50, replace=False) for _ in range(args.batch)]
    return Setup(sizes, layout, trie, build_s, model, n_params, g, x, exclude)


def beam_search_runs(s: Setup, beams: int) -> dict:
    """The four beam searches compared, by name: each returns ``(output, seconds, Timed or
    None)``."""
    fn = prefix_allowed_tokens_fn_from_trie(s.trie, s.layout, EOS, PAD)

    def run_ours():
        timed = Timed(SIDConstraintProcessor(s.trie, s.layout, EOS, PAD))
        out, total = generate(s.model, s.x, beams, beams, s.depth, timed)
        return out, total, timed

    def run_prefix():
        timed = Timed(PrefixConstrainedLogitsProcessor(fn, beams))
        out, total = generate(s.model, s.x, beams, beams, s.depth, timed)
        return out, total, timed

    def run_ours_excl():
        timed = Timed(
            SIDConstraintProcessor(s.trie, s.layout, EOS, PAD, exclude=s.exclude, num_beams=beams)
        )
        out, total = generate(s.model, s.x, beams, beams, s.depth, timed)
        return out, total, timed

    def run_free():
        # same beams and the same number of steps: EOS is held back until depth tokens
        out, total = generate(s.model, s.x, beams, beams, s.depth, None, min_new_tokens=s.depth)
        return out, total, None

    return {
        "ours": run_ours,
        "prefix_fn": run_prefix,
        "ours_exclude": run_ours_excl,
        "unconstrained": run_free,
    }


def time_beam_searches(runs: dict, repeats: int) -> tuple[dict, bool]:
    """One warm-up of each run, then ``repeats`` interleaved rounds: per run the lists
    ``total_s``, ``constraint_s`` and ``steps``; and whether ours and the prefix function
    always found the same sequences."""
    for f in runs.values():  # warm-up (allocator, first-call paths)
        f()
    rec = {name: {"total_s": [], "constraint_s": [], "steps": []} for name in runs}
    same_items = True
    for _ in range(repeats):
        results = {}
        for name, f in runs.items():
            out, total, timed = f()
            rec[name]["total_s"].append(total)
            rec[name]["constraint_s"].append(timed.seconds if timed else 0.0)
            rec[name]["steps"].append(len(out.scores))
            results[name] = out
        same_items &= torch.equal(results["ours"].sequences, results["prefix_fn"].sequences)
    return rec, same_items


def end_to_end(s: Setup, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """:func:`constrained_generate` at k=10: seconds of one prompt per repeat, and prompts per
    second at batch 64 per repeat (each after a warm-up call)."""
    x1 = s.x[:1]
    constrained_generate(s.model, x1, None, s.trie, s.layout, k=10)
    lat = []
    for _ in range(args.latency_repeats):
        t1 = time.perf_counter()
        constrained_generate(s.model, x1, None, s.trie, s.layout, k=10)
        lat.append(time.perf_counter() - t1)
    x64 = torch.randint(3, 259, (64, args.prompt_len), generator=s.generator)
    constrained_generate(s.model, x64, None, s.trie, s.layout, k=10)
    thr = []
    for _ in range(max(3, args.repeats // 2)):
        t1 = time.perf_counter()
        constrained_generate(s.model, x64, None, s.trie, s.layout, k=10)
        thr.append(64 / (time.perf_counter() - t1))
    return lat, thr


def describe(s: Setup, args, rec: dict, same_items: bool, lat: list, thr: list) -> dict:
    """The JSON report: machine, model, catalogue, medians and raw timings, ratios, targets."""
    summary = {name: {key: med(v) for key, v in r.items()} for name, r in rec.items()}
    ratio_constraint = [
        p / o
        for p, o in zip(rec["prefix_fn"]["constraint_s"], rec["ours"]["constraint_s"], strict=True)
    ]
    ratio_total = [
        o / u for o, u in zip(rec["ours"]["total_s"], rec["unconstrained"]["total_s"], strict=True)
    ]
    result = {
        "device": "cpu",
        "load_average": list(os.getloadavg()),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "model": {
            "d_model": 256,
            "layers": "4+4",
            "vocab": s.layout.end_id,
            "parameters": s.n_params,
        },
        "catalogue": {
            "n_items": s.trie.n_items,
            "level_sizes": list(s.sizes),
            "nodes_per_level": [s.trie.n_nodes(lv) for lv in range(s.depth)],
            "trie_build_s": s.build_s,
        },
        "batch": args.batch,
        "beams": args.beams,
        "k": args.beams,
        "prompt_len": args.prompt_len,
        "repeats": args.repeats,
        "median": summary,
        "raw": rec,
        "constraint_speedup_vs_prefix_fn": med(ratio_constraint),
        "constraint_speedup_per_repeat": ratio_constraint,
        "constrained_over_unconstrained_total": med(ratio_total),
        "constrained_over_unconstrained_per_repeat": ratio_total,
        "identical_sequences_ours_vs_prefix_fn": bool(same_items),
        "latency_one_prompt_k10_s": med(lat),
        "latency_one_prompt_k10_all_s": lat,
        "prompts_per_s_batch64_k10": med(thr),
        "targets": {"constraint_speedup_min": 5.0, "constrained_over_unconstrained_max": 1.15},
    }
    result["targets_met"] = {
        "constraint_speedup": result["constraint_speedup_vs_prefix_fn"] >= 5.0,
        "constrained_within_15pct": result["constrained_over_unconstrained_total"] <= 1.15,
    }
    return result


def print_summary(result: dict, args: argparse.Namespace) -> None:
    """The setting, a table of median times per run, the ratios against their targets and the
    end-to-end figures."""
    print(
        f"catalogue {result['catalogue']['n_items']} items, "
        f"nodes/level {result['catalogue']['nodes_per_level']}, "
        f"model {result['model']['parameters'] / 1e6:.1f}M params, batch {args.batch}, "
        f"beams {args.beams}, {torch.get_num_threads()} torch threads, median of {args.repeats}"
    )
    print(f"{'run':<16}{'total s':>10}{'constraint s':>14}{'steps':>7}")
    for name, s in result["median"].items():
        print(f"{name:<16}{s['total_s']:>10.3f}{s['constraint_s']:>14.4f}{s['steps']:>7.0f}")
    print(
        f"constraint time, prefix_fn / ours: {result['constraint_speedup_vs_prefix_fn']:.1f}x "
        f"(target >= 5x)"
    )
    print(
        f"constrained / unconstrained total: {result['constrained_over_unconstrained_total']:.3f} "
        f"(target <= 1.15)"
    )
    print(f"identical beams ours vs prefix_fn: {result['identical_sequences_ours_vs_prefix_fn']}")
    print(
        f"latency, one prompt, k=10: {result['latency_one_prompt_k10_s'] * 1000:.1f} ms (median "
        f"of {args.latency_repeats})"
    )
    print(f"throughput, batch 64, k=10: {result['prompts_per_s_batch64_k10']:.1f} prompts/s")


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    setup = build_setup(args)
    rec, same_items = time_beam_searches(beam_search_runs(setup, args.beams), args.repeats)
    lat, thr = end_to_end(setup, args)
    result = describe(setup, args, rec, same_items, lat, thr)
    print_summary(result, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
