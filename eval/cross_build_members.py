"""Members on different semantic-ID builds, fused item by item, against members on one build.

    python -m eval.cross_build_members --playlists PATH \
        --artifacts A0=DIR_A0 A1=DIR_A1 B0=DIR_B0 B1=DIR_B1 [--split test] [--out JSON]

Two members on the same IDs share one trie: today's ensemble (:mod:`text2tracks.ensemble`)
searches the mean of their log-probabilities in that trie. Members trained on different ID builds
(``build-ids --seed 1``: the same split and tracks, ALS and k-means seeded apart) cannot share a
search, but might make more different mistakes. This measures that: each artifact (one seq2seq
each) searches its own trie (beam ``--depth``, no diversification); for each pair, the union of
their candidates is scored exactly by both members (each track's own ID under each member's
catalogue, teacher-forced: :meth:`text2tracks.Text2Tracks.score_tracks`), ranked by the mean
log-probability and diversified by the first member's first code as the API does
(:func:`text2tracks.generative.diversify`). Pairs on the same build are also decoded by the
product search, the shipped ensemble. Prints Hits@k per system and pair (with each pair's
paired bootstrap against its better member) and writes ``--out``.

The figures in the README's "Tried and not kept" list come from this module.
"""

from __future__ import annotations

import argparse
import itertools
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from text2tracks.generative import diversify
from text2tracks.modeling import DEFAULT_DIVERSITY


def union_candidates(lists: Sequence[np.ndarray]) -> list[list[str]]:
    """Per prompt, the tracks of every list (``(n_prompts, depth)`` track-id arrays, ``""`` for
    none) in first-seen order: the first list's, then the others' new ones."""
    return [
        list(dict.fromkeys(t for t in itertools.chain(*rows) if t))
        for rows in zip(*lists, strict=True)
    ]


def fuse_items(
    candidates: Sequence[Sequence[int]],
    member_scores: np.ndarray,
    groups_of: np.ndarray,
    k: int,
    penalty: float,
) -> np.ndarray:
    """The top ``k`` of each prompt's ``candidates`` (catalogue indices, ragged) by the members'
    mean log-probability (``member_scores`` ``(members, n_prompts, width)``, the candidates in
    order, NaN past each row's end), diversified by ``groups_of[item]``. ``(n_prompts, k)``."""
    mean = np.asarray(member_scores, dtype=np.float64).mean(axis=0)  # NaN where no candidate
    width = mean.shape[1]
    if width < k:
        raise ValueError(f"the members' candidates give {width} tracks a prompt, fewer than k={k}")
    items = np.zeros(mean.shape, dtype=np.int64)
    for i, row in enumerate(candidates):
        items[i, : len(row)] = row
    scores = np.where(np.isnan(mean), -np.inf, mean)
    order = np.argsort(-scores, axis=1, kind="stable")
    items, scores = np.take_along_axis(items, order, 1), np.take_along_axis(scores, order, 1)
    return diversify(items, scores, groups_of[items], k, penalty)[0]


def measure(
    recommenders: Mapping[str, object],
    prompts: Sequence[str],
    relevant: Sequence[set],
    *,
    k: int = 10,
    depth: int = 50,
    penalty: float = DEFAULT_DIVERSITY,
    batch_size: int = 64,
) -> dict:
    """Hits@k (per prompt) of each recommender alone (the API's own answer), of each pair fused
    item by item, and of each same-build pair by the product search. ``relevant``: per prompt,
    the set of relevant track ids."""

    def hits(ids) -> list[float]:
        return [
            float(any(t in rel for t in row[:k])) for row, rel in zip(ids, relevant, strict=True)
        ]

    with warnings.catch_warnings():  # long prompts are cut as in the benchmark; no warning each
        warnings.filterwarnings("ignore", message=".*was truncated")
        return _measure(recommenders, list(prompts), hits, k, depth, penalty, batch_size)


def _measure(recommenders, prompts, hits, k: int, depth: int, penalty: float, batch_size: int):
    systems, beams = {}, {}
    for name, rec in recommenders.items():
        systems[name] = hits(rec.recommend_arrays(prompts, k=k, batch_size=batch_size)[0])
        beams[name] = rec.recommend_arrays(
            prompts, k=depth, num_beams=depth, diversity=0.0, batch_size=batch_size
        )[0]
    for a, b in itertools.combinations(recommenders, 2):
        first, second = recommenders[a], recommenders[b]
        union = union_candidates([beams[a], beams[b]])
        scores = np.stack([r.score_tracks(prompts, union) for r in (first, second)])
        indices = [[first.catalog.index_of(t) for t in row] for row in union]
        groups = np.asarray(first.catalog.sid_codes)[:, 0]
        fused = fuse_items(indices, scores, groups, k, penalty)
        systems[f"{a}+{b}"] = hits(np.asarray(first.catalog.item_ids)[fused])
        if same_build(first, second):
            systems[f"{a}+{b} product"] = hits(_product(first, second, prompts, k, batch_size))
    return systems


def same_build(first, second) -> bool:
    """Whether two recommenders spell the same catalogue with the same semantic IDs."""
    return first.catalog.codes_digest() == second.catalog.codes_digest()


def _as_member(recommender):
    """A recommender's own model as an ensemble member."""
    from text2tracks.ensemble import MemberModel

    return MemberModel(
        recommender.model, recommender.tokenizer, recommender.layout, recommender.max_prompt_length
    )


def _product(first, second, prompts, k: int, batch_size: int) -> np.ndarray:
    """The shipped ensemble's answer: ``second``'s model searched with ``first``'s as one."""
    kept = first.members
    first.members = [*kept, _as_member(second)]
    try:
        return first.recommend_arrays(prompts, k=k, batch_size=batch_size)[0]
    finally:
        first.members = kept


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m eval.cross_build_members",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--playlists", required=True, help="the playlists build-ids read")
    parser.add_argument(
        "--artifacts", nargs="+", required=True, metavar="NAME=DIR", help="trained artifacts"
    )
    parser.add_argument("--split", choices=("validation", "test"), default="test")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--depth", type=int, default=50, help="each member's beam")
    parser.add_argument("--prompts", type=int, default=0, help="0 = every prompt of the split")
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--out", default="bench_out/cross_build_members.json")
    return parser


def _named(pairs: Sequence[str]) -> dict[str, Path]:
    named = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--artifacts takes NAME=DIR pairs, got {pair!r} (e.g. A0=runs/a)")
        if name in named:
            raise ValueError(f"--artifacts: the name {name!r} is given twice")
        named[name] = Path(path)
    if len(named) < 2:
        raise ValueError("--artifacts needs at least two artifacts to pair")
    return named


def run(args: argparse.Namespace) -> dict:
    import torch

    from eval.metrics import paired_bootstrap_diff
    from semantic_ids.interactions import ItemVocab
    from text2tracks.artifacts import CF_COMPONENT, artifact_split
    from text2tracks.pipeline import Text2Tracks
    from text2tracks.ranking_metrics import relevant_items

    torch.set_num_threads(args.num_threads)
    named = _named(args.artifacts)
    splits = [getattr(artifact_split(d, args.playlists), args.split) for d in named.values()]
    playlists = splits[0]
    ids = [p.playlist_id for p in playlists]
    if any([p.playlist_id for p in other] != ids for other in splits[1:]):
        raise ValueError("--artifacts were built on different splits; pair artifacts of one split")
    vocab = ItemVocab.load(next(iter(named.values())) / CF_COMPONENT)
    kept, relevant, _ = relevant_items(playlists, vocab)
    if args.prompts:
        kept, relevant = kept[: args.prompts], relevant[: args.prompts]
    prompts = [playlists[i].prompt for i in kept]
    relevant = [{vocab.item_ids[j] for j in r} for r in relevant]
    recs = {n: Text2Tracks.from_pretrained(d, device="cpu") for n, d in named.items()}
    systems = measure(recs, prompts, relevant, k=args.k, depth=args.depth)
    rows = []
    for name, hits in systems.items():
        row = {"system": name, f"hits@{args.k}": float(np.mean(hits))}
        parts = name.split(" ")[0].split("+")
        if len(parts) == 2:
            best = max(parts, key=lambda p: np.mean(systems[p]))
            row["vs_better_member"] = paired_bootstrap_diff(hits, systems[best])
        rows.append(row)
    result = {"split": args.split, "n_prompts": len(prompts), "rows": rows, "per_prompt": systems}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def format_table(result: dict, k: int = 10) -> str:
    header = f"| system ({result['n_prompts']} {result['split']} prompts) | Hits@{k} |"
    lines = [f"{header} vs its better member |", "|---|---|---|"]
    for row in result["rows"]:
        diff = row.get("vs_better_member")
        text = f"{diff['diff']:+.3f}, p = {diff['p_value']:.2f}" if diff else "-"
        lines.append(f"| {row['system']} | {row[f'hits@{k}']:.3f} | {text} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    print(format_table(result, args.k))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
