"""How predictable is each level of the semantic IDs from the title?

    python -m eval.id_predictability --playlists PATH --artifacts DIR [DIR ...] [--names a,b]

For every validation playlist (the split recorded in each artifact), the title-kNN votes of the
training playlists (:class:`text2tracks.teacher.TitleNeighbors`, the teacher's similarity) are
summed per ID prefix of each level: ``vote(prefix) = sum over neighbours q of sim(q) * (number of
q's tracks under prefix)``. Per level, ``acc@1`` is the share of the playlist's catalogue tracks
whose prefix is the most voted one, ``acc@10`` the share within the ten most voted; ``prior@1``
and ``prior@10`` are the same against the popularity of prefixes alone (no title), so the gain
over the prior is what the title tells about that level. Means over validation playlists.

IDs whose first levels are more predictable from the title give the decoder an easier first step;
this compares ID builds (for example ALS-only against the joint embedding of ``--title-rows``) at
equal catalogue. Prints a markdown table and writes ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from text2tracks.artifacts import CATALOG_COMPONENT, CF_COMPONENT


def predictability(artifact: str | Path, train: str, max_prompts: int = 0) -> list[dict]:
    """Per level, ``acc@1``, ``acc@10``, ``prior@1``, ``prior@10`` (see the module docstring)."""
    from semantic_ids.catalog import SemanticIDCatalog
    from semantic_ids.interactions import ItemVocab, build_interactions
    from semantic_ids.playlists import read_playlists, split_playlists
    from text2tracks.teacher import TitleNeighbors

    art = Path(artifact)
    info = json.loads((art / CF_COMPONENT / "split.json").read_text())
    split = split_playlists(
        read_playlists(train).playlists,
        validation_fraction=info["validation_fraction"],
        test_fraction=info["test_fraction"],
        seed=info["seed"],
    )
    vocab = ItemVocab.load(art / CF_COMPONENT)
    catalog = SemanticIDCatalog.load(art / CATALOG_COMPONENT / "catalog")
    train_matrix, _ = build_interactions(split.train, vocab=vocab)
    val_matrix, _ = build_interactions(split.validation, vocab=vocab)
    keep = np.flatnonzero(val_matrix.getnnz(axis=1) > 0)
    if max_prompts:
        keep = keep[:max_prompts]
    val_matrix = val_matrix[keep].tocsr()
    prompts = [split.validation[i].prompt for i in keep]
    weights = TitleNeighbors().fit([p.prompt for p in split.train]).weights(prompts)
    item_votes = (weights @ train_matrix).tocsr()  # (n_val, n_items)
    popularity = np.asarray(train_matrix.sum(axis=0)).ravel()
    codes = np.asarray(catalog.sid_codes)
    rows = []
    n_levels = codes.shape[1] - 1 if catalog.depth > 1 else 1
    for level in range(n_levels):
        # prefix id of each item at this level
        _, prefix = np.unique(codes[:, : level + 1], axis=0, return_inverse=True)
        prefix = prefix.reshape(-1)
        n_prefix = int(prefix.max()) + 1
        to_prefix = sp.csr_matrix(
            (np.ones(len(prefix), dtype=np.float32), (np.arange(len(prefix)), prefix)),
            shape=(len(prefix), n_prefix),
        )
        votes = (item_votes @ to_prefix).toarray()
        truth = (val_matrix @ to_prefix).toarray()  # tracks of the playlist under each prefix
        prior = popularity @ to_prefix
        totals = truth.sum(axis=1)
        out = {"level": level, "prefixes": n_prefix}
        for name, score in (("acc", votes), ("prior", np.broadcast_to(prior, votes.shape))):
            order = np.argsort(-score, axis=1, kind="stable")
            for k in (1, 10):
                top = order[:, :k]
                share = np.take_along_axis(truth, top, axis=1).sum(axis=1) / totals
                out[f"{name}@{k}"] = float(share.mean())
        rows.append(out)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.id_predictability", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--playlists",
        "--train",
        dest="train",
        required=True,
        help="the playlists the artifacts were built from",
    )
    parser.add_argument("--artifacts", nargs="+", required=True)
    parser.add_argument("--names", default=None, help="comma-separated labels of the artifacts")
    parser.add_argument("--out", default="bench_out/id_predictability.json")
    args = parser.parse_args(argv)
    names = args.names.split(",") if args.names else args.artifacts
    if len(names) != len(args.artifacts):
        parser.error("--names needs one label per artifact")
    result = {
        name: predictability(a, args.train) for name, a in zip(names, args.artifacts, strict=True)
    }
    print("| IDs | level | prefixes | acc@1 | prior@1 | acc@10 | prior@10 |")
    print("|---|---|---|---|---|---|---|")
    for name, rows in result.items():
        for r in rows:
            print(
                f"| {name} | {r['level']} | {r['prefixes']} | {r['acc@1']:.3f} | "
                f"{r['prior@1']:.3f} | {r['acc@10']:.3f} | {r['prior@10']:.3f} |"
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
