"""Decoding cost against catalogue size, with one model (issue 14: "decoding flat in catalogue
size"; target: latency at 2M items within 1.5x of 10k, trie tables under 1 GiB at 2M).

    python -m eval.bench_catalogue_size [--items 10000,100000,1000000,2000000]
        [--out bench_out/bench_catalogue_size.json]

One model for every size (the default ``ModelConfig``, byte prompts, random weights: speed does
not depend on training) and synthetic catalogues of 3 x 256 codes and a collision digit
(:func:`eval.bench_decoding.synthetic_catalogue`: skewed first codes, so branches are uneven as
in real IDs). Per size: the trie's build time and its arrays' bytes, then the API's search (the
code-space search with shared cross-attention, :func:`text2tracks.generative.search_items`:
beam 50, 10 answers diversified over 50 candidates) timed for one prompt (median of
``--repeats``) and for a batch of 64 prompts, the sizes interleaved in each repeat so that a
busy machine slows all alike. Ratios are to the smallest catalogue, medians of the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from eval.bench_decoding import synthetic_catalogue
from eval.benchmark_outputs import table_main
from eval.timing import int_list, paired_ratio, time_interleaved

SIZES = (256, 256, 256, 32)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eval.bench_catalogue_size", description=__doc__)
    ap.add_argument("--items", default="10000,100000,1000000,2000000", help="catalogue sizes")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64, help="the batch timed beside one prompt (> 1)")
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench_out/bench_catalogue_size.json")
    return ap


def run(args) -> dict:
    from text2tracks.generative import search_items
    from text2tracks.modeling import ModelConfig, build_seq2seq
    from text2tracks.trie import FlatTrie

    if args.batch < 2:
        raise SystemExit(
            f"--batch must be at least 2 (one prompt is timed anyway), got {args.batch}"
        )
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, _, layout = build_seq2seq(ModelConfig(tokenizer="bytes"), SIZES)
    model.eval()
    g = torch.Generator().manual_seed(args.seed)
    one = torch.randint(3, 259, (1, args.prompt_tokens), generator=g)
    many = torch.randint(3, 259, (args.batch, args.prompt_tokens), generator=g)
    tries, rows = {}, {}
    for n in int_list(args.items):
        codes = synthetic_catalogue(n, SIZES[-1], args.seed)
        t0 = time.perf_counter()
        tries[n] = FlatTrie.from_codes(codes, SIZES)
        rows[n] = {
            "items": tries[n].n_items,
            "trie_build_s": time.perf_counter() - t0,
            "trie_mb": tries[n].nbytes / 2**20,
        }

    def search(n: int, _: int, size: int) -> None:
        x = one if size == 1 else many
        search_items(
            model, x, torch.ones_like(x), tries[n], layout, k=10, num_beams=50, diversity=0.5
        )

    # warm-up included; one call per repeat at batch 1 and at --batch
    timed = time_interleaved(search, list(tries), [1, args.batch], args.repeats, calls=1)
    smallest = min(rows)
    for n, r in rows.items():
        r["one"] = [t for (t,) in timed[1][n]]
        r["batch"] = [t for (t,) in timed[args.batch][n]]
        r["ratio"] = paired_ratio(timed[1][n], timed[1][smallest])
    out = []
    for n, r in rows.items():
        out.append(
            {
                "requested_items": n,
                "items": r["items"],
                "trie_build_s": r["trie_build_s"],
                "trie_mb": r["trie_mb"],
                "one_prompt_ms": 1000 * statistics.median(r["one"]),
                "batch_ms_per_prompt": 1000 * statistics.median(r["batch"]) / args.batch,
                "one_prompt_ratio_to_smallest": r["ratio"],
                "times_one_s": r["one"],
                "times_batch_s": r["batch"],
            }
        )
    return {
        "threads": args.threads,
        "repeats": args.repeats,
        "batch": args.batch,
        "prompt_tokens": args.prompt_tokens,
        "rows": out,
    }


def format_table(result: dict) -> str:
    lines = [
        f"one thread per search, beam 50, k 10 (50 candidates), median of {result['repeats']}",
        "| items | trie build s | trie MB | one prompt ms | vs smallest | batch "
        f"{result['batch']} ms/prompt |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['items']:,} | {r['trie_build_s']:.1f} | {r['trie_mb']:.0f} | "
            f"{r['one_prompt_ms']:.1f} | {r['one_prompt_ratio_to_smallest']:.2f}x | "
            f"{r['batch_ms_per_prompt']:.1f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    return table_main(argv, build_parser, run, format_table)


if __name__ == "__main__":
    raise SystemExit(main())
