"""Does beam search find the model's best IDs? Exact scores against the beam, and the beam width.

    python -m eval.bench_search --artifact DIR --playlists PATH [--prompts 100] [--num-beams 10,20,50]

For a sample of held-out prompts (the test split recorded in ``DIR/cf/split.json``) every
catalogue item is scored exactly: its semantic-ID tokens and EOS are teacher-forced through the
decoder, batched over all items, and the log-probabilities summed, which is the score the beam
assigns to a finished ID (transformers' beam search takes ``log_softmax`` before the constraint
masks, so both are the same unrenormalised sum). The exact top ``k`` is the best any search could
return. Per beam width the table gives:

- ``overlap@k``: the share of the exact top ``k`` that the beam's top ``k`` holds;
- ``hits@k`` of the beam and of the exact top ``k`` on the same prompts (the gap is what search
  loses);
- ``ms/prompt``: median one-prompt latency (batch 1), and ``hits@k per ms``.

Prints a markdown table and writes ``--out`` (default ``bench_out/bench_search.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from text2tracks.artifacts import CATALOG_COMPONENT, CF_COMPONENT, SEQ2SEQ_COMPONENT


def exact_top_k(
    model,
    encoder_ids,
    encoder_mask,
    id_tokens,
    eos_token_id: int,
    k: int,
    lower_bound: float,
    chunk: int = 4096,
):
    """The ``k`` items of highest summed log-probability for one prompt, found exactly.

    Every log-probability is <= 0, so an ID prefix scores at least as high as any ID below it: a
    prefix scoring below ``lower_bound`` (the k-th best score of any k valid IDs, e.g. the
    beam's) cannot lead to the exact top k and is pruned. This is exhaustive scoring of every
    catalogue item with the provably useless branches skipped, so it is exact and cheap.

    Args:
        model: an encoder-decoder in eval mode.
        encoder_ids, encoder_mask: one prompt, ``(1, seq_len)`` torch tensors.
        id_tokens: ``(n_items, depth)`` int64 numpy, every item's ID tokens.
        eos_token_id: the token that ends every ID (scored like the others).
        k: items wanted. ``lower_bound``: a score that k valid items reach.
        chunk: prefixes per decoder batch.

    Returns ``(items, scores)``: int64 and float64 ``(k,)``, best first; and the number of
    decoder rows run.
    """
    import torch
    from transformers.modeling_outputs import BaseModelOutput

    start = model.config.decoder_start_token_id
    labels = np.concatenate([id_tokens, np.full((len(id_tokens), 1), eos_token_id)], axis=1)
    alive = np.arange(len(labels))
    score = np.zeros(len(labels))
    rows_run = 0
    with torch.no_grad():
        hidden = model.get_encoder()(
            input_ids=encoder_ids, attention_mask=encoder_mask, return_dict=True
        ).last_hidden_state
        for t in range(labels.shape[1]):
            prefixes, group = np.unique(labels[alive, :t], axis=0, return_inverse=True)
            group = group.reshape(-1)
            step_logp = np.zeros(len(alive))
            for c in range(0, len(prefixes), chunk):
                block = prefixes[c : c + chunk]
                n = len(block)
                dec = torch.from_numpy(
                    np.concatenate([np.full((n, 1), start), block], axis=1).astype(np.int64)
                )
                out = model(
                    encoder_outputs=BaseModelOutput(last_hidden_state=hidden.expand(n, -1, -1)),
                    attention_mask=encoder_mask.expand(n, -1),
                    decoder_input_ids=dec,
                )
                lp = torch.log_softmax(out.logits[:, -1].float(), dim=-1).numpy()
                members = (group >= c) & (group < c + n)
                step_logp[members] = lp[group[members] - c, labels[alive[members], t]]
                rows_run += n
            score_alive = score[alive] + step_logp
            keep = score_alive >= lower_bound - 1e-4
            score[alive] = score_alive
            alive = alive[keep]
    order = np.argsort(-score[alive], kind="stable")[:k]
    return alive[order], score[alive][order], rows_run


def run(args: argparse.Namespace) -> dict:
    """Exact top ``k`` and the beam at each width on sampled test prompts; the result dict."""
    import torch

    from eval.metrics import per_prompt_metrics
    from semantic_ids.catalog import SemanticIDCatalog
    from text2tracks.data import encode_prompts
    from text2tracks.modeling import ModelConfig, load_seq2seq
    from text2tracks.trie import FlatTrie

    torch.set_num_threads(args.num_threads)
    art = Path(args.artifact)
    prompts, relevant = sample_test_prompts(art, args)
    model, tokenizer, layout = load_seq2seq(art / SEQ2SEQ_COMPONENT)
    info = json.loads((art / SEQ2SEQ_COMPONENT / "text2tracks_seq2seq.json").read_text())
    max_len = (
        ModelConfig.from_dict(info["model_config"]).max_prompt_length
        if "model_config" in info
        else 64
    )
    catalog = SemanticIDCatalog.load(art / CATALOG_COMPONENT / "catalog")
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    sid = layout.codes_to_token_ids(catalog.sid_codes)
    encoded = encode_prompts(tokenizer, prompts, max_len)
    k = args.k

    started = time.perf_counter()
    exact_top, decoder_rows = exact_tops(
        model, tokenizer, layout, trie, sid, encoded, k, max(args.beams)
    )
    exact_s = time.perf_counter() - started
    exact_hits = float(per_prompt_metrics(exact_top, relevant, k=k)["hits"].mean())
    rows = beam_rows(art, catalog.item_ids, prompts, relevant, exact_top, exact_hits, args)
    return {
        "artifact": str(art),
        "prompts": len(prompts),
        "k": k,
        "rows": rows,
        "exact_seconds_per_prompt": exact_s / max(1, len(prompts)),
        "exact_decoder_rows_median": float(np.median(decoder_rows)),
        "best_beams_by_hits_per_ms": max(rows, key=lambda r: r[f"hits@{k}_per_ms"])["beams"],
    }


def sample_test_prompts(art: Path, args: argparse.Namespace) -> tuple[list[str], list]:
    """``--prompts`` test prompts (the split recorded in ``art/cf/split.json``) with a
    catalogue track, sampled with ``--seed``, and their relevant catalogue items."""
    from eval.metrics import relevant_items
    from semantic_ids.interactions import ItemVocab
    from semantic_ids.playlists import read_playlists, split_playlists

    split_info = json.loads((art / CF_COMPONENT / "split.json").read_text())
    playlists = read_playlists(args.train).playlists
    split = split_playlists(
        playlists,
        validation_fraction=split_info["validation_fraction"],
        test_fraction=split_info["test_fraction"],
        seed=split_info["seed"],
    )
    if not split.test:
        raise ValueError(f"{art} was built without a test split; nothing held out to score")
    vocab = ItemVocab.load(art / CF_COMPONENT)
    kept, relevant, _ = relevant_items(split.test, vocab)
    rng = np.random.default_rng(args.seed)
    pick = np.sort(rng.choice(len(kept), size=min(args.prompts, len(kept)), replace=False))
    return [split.test[kept[i]].prompt for i in pick], [relevant[i] for i in pick]


def exact_tops(model, tokenizer, layout, trie, sid, encoded, k: int, widest: int):
    """Per encoded prompt, the exact top ``k`` items ``(n_prompts, k)`` and the decoder rows
    run; the ``widest`` beam's k-th score bounds the exact search from below."""
    import torch

    from text2tracks.decoding import constrained_generate

    exact_top = np.zeros((len(encoded), k), dtype=np.int64)
    decoder_rows = []
    for i, ids in enumerate(encoded):
        ids_t = torch.from_numpy(ids)[None]
        _, beam_scores = constrained_generate(
            model, ids_t, torch.ones_like(ids_t), trie, layout, k=k, num_beams=widest
        )
        exact_top[i], _, n_rows = exact_top_k(
            model,
            ids_t,
            torch.ones_like(ids_t),
            sid,
            tokenizer.eos_token_id,
            k,
            float(np.asarray(beam_scores)[0, -1]),
        )
        decoder_rows.append(n_rows)
    return exact_top, decoder_rows


def beam_rows(
    art: Path, item_ids, prompts, relevant, exact_top: np.ndarray, exact_hits: float, args
) -> list[dict]:
    """Per beam width of ``--num-beams``: overlap with the exact top ``k``, Hits@k beside the
    exact top's ``exact_hits``, and the median one-prompt latency of beam search as users get
    it (the public API, whose constraint tables are built once)."""
    from eval.metrics import per_prompt_metrics
    from text2tracks.pipeline import Text2Tracks

    k = args.k
    recommender = Text2Tracks.from_pretrained(art)
    index = {t: i for i, t in enumerate(item_ids)}
    rows = []
    for beams in args.beams:
        recommender.recommend(prompts[0], k=k, num_beams=beams)  # warm-up
        tops, singles = [], []
        for prompt in prompts:
            t0 = time.perf_counter()
            recs = recommender.recommend(prompt, k=k, num_beams=beams)
            singles.append(time.perf_counter() - t0)
            tops.append([index[r.track_id] for r in recs])
        top = np.asarray(tops, dtype=np.int64)
        hits = float(per_prompt_metrics(top, relevant, k=k)["hits"].mean())
        overlap = float(
            np.mean([len(set(a) & set(b)) / k for a, b in zip(top, exact_top, strict=True)])
        )
        ms = 1000 * statistics.median(singles)
        rows.append(
            {
                "beams": beams,
                f"overlap@{k}": overlap,
                f"hits@{k}": hits,
                f"exact_hits@{k}": exact_hits,
                "ms_per_prompt": ms,
                f"hits@{k}_per_ms": hits / ms,
            }
        )
    return rows


def format_table(result: dict) -> str:
    k = result["k"]
    lines = [
        f"{result['prompts']} test prompts; exact top {k} Hits@{k} "
        f"{result['rows'][0][f'exact_hits@{k}']:.3f} "
        f"({result['exact_seconds_per_prompt']:.2f} s per prompt, "
        f"{result['exact_decoder_rows_median']:.0f} decoder rows after pruning)",
        "",
        f"| beams | overlap@{k} with exact | Hits@{k} | ms / prompt | Hits@{k} per ms |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['beams']} | {r[f'overlap@{k}']:.3f} | {r[f'hits@{k}']:.3f} | "
            f"{r['ms_per_prompt']:.1f} | {r[f'hits@{k}_per_ms']:.4f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench_search", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--artifact", required=True, help="a trained artifact (with seq2seq/)")
    parser.add_argument(
        "--playlists",
        "--train",
        dest="train",
        required=True,
        help="the playlists the artifact was built from",
    )
    parser.add_argument("--prompts", type=int, default=100, help="test prompts sampled")
    parser.add_argument(
        "--num-beams",
        "--beams",
        dest="beams",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[10, 20, 50, 100],
        help="comma-separated beam widths",
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--out", default="bench_out/bench_search.json")
    args = parser.parse_args(argv)
    result = run(args)
    print(format_table(result))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
