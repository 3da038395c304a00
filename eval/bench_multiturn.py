"""Multi-turn refinement with a simulated user, on held-out (test split) playlists.

    python -m eval.bench_multiturn --artifact DIR --playlists PATH [--prompts 200] [--rounds 5]
        [--fit-fusion 0] [--out bench_out/bench_multiturn.json]

Each test playlist with a catalogue track is one session (:mod:`text2tracks.session`): round 0
answers its title; each round shows ``--k`` (10) tracks not shown before; the simulated user likes
the shown tracks that are in the playlist and skips the rest. Per round 0..``--rounds``:

* ``hits_new``: the share of prompts whose round shows at least one relevant track not found
  before (every shown track is new: shown tracks are excluded from later rounds);
* ``cumulative_recall``: relevant tracks found so far / the playlist's catalogue tracks, averaged
  over prompts (non-decreasing by construction).

Systems (those the artifact cannot run are skipped, and the output says why):

* ``text``: generative, the title re-queried with the shown tracks excluded (no seeds, no likes);
* ``generative+seeds``: generative, liked tracks read as seed tracks (a model trained with seeds);
* ``fixed blend``: hybrid mode (needs a diffusion head), liked tracks as ``like_tracks``
  (edited towards the title by ``--edit-method``, the API's anchor by default, at
  ``--edit-strength``), fused by a fixed blend: the artifact's fitted one, the fixed alpha its
  gate fell back to, or the default even blend when it has no ``fusion.json``;
* ``gate``: the same with the artifact's ADaFuSE gate (``GatedFusion``).
* ``fixed blend + like fusion``: the fixed blend, with a second fusion for the rounds whose
  query carries liked tracks (``fusion.with_likes``): the artifact's, or fitted for this run
  on simulated validation sessions (``--fit-fusion N --like-fusion-rounds R``,
  :func:`text2tracks.session.fit_like_fusion`). ``fixed blend`` alone never uses one.

``--fit-fusion N`` fits both fusions on N validation prompts first (never the test split) and
uses those. Prints a markdown table and the final round's paired bootstrap difference of each
system against ``text``; writes ``--out`` (JSON) and, with matplotlib, the rounds curve as a PNG
beside it.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from text2tracks.hybrid import EDIT_METHODS
from text2tracks.options import DEFAULT_EDIT_STRENGTH

TEXT, SEEDS, FIXED, GATE = "text", "generative+seeds", "fixed blend", "gate"
LIKES = "fixed blend + like fusion"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m eval.bench_multiturn", description=__doc__)
    parser.add_argument("--artifact", required=True, help="a trained artifact (with seq2seq/)")
    parser.add_argument("--playlists", required=True, help="the playlists build-ids read")
    parser.add_argument("--prompts", type=int, default=200, help="test prompts (0 = all)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds after round 0")
    parser.add_argument("--k", type=int, default=10, help="tracks shown per round")
    parser.add_argument(
        "--edit-strength",
        type=float,
        default=DEFAULT_EDIT_STRENGTH,
        help="hybrid: like_tracks (default: the API's, %(default)s)",
    )
    parser.add_argument(
        "--edit-method",
        choices=EDIT_METHODS,
        default=None,
        help="hybrid: how like_tracks are edited towards the title (default: the artifact's "
        "hybrid settings, else the API's 'anchor')",
    )
    parser.add_argument(
        "--fit-fusion",
        type=int,
        default=0,
        help="fit fixed + gated fusions on N validation prompts",
    )
    parser.add_argument(
        "--like-fusion-rounds",
        type=int,
        default=3,
        help="with --fit-fusion: also fit the fusion of queries with liked tracks on sessions "
        "of this many rounds over the same validation prompts (0: not)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--out", default="bench_out/bench_multiturn.json")
    return parser


# ------------------------------------------------------------------------------ simulation


def simulate(
    recommender,
    prompts: list[str],
    relevant: list[set[str]],
    *,
    mode: str,
    pull: bool,
    rounds: int,
    k: int = 10,
    batch_size: int = 32,
    edit_strength: float = DEFAULT_EDIT_STRENGTH,
) -> np.ndarray:
    """Run one session per prompt for rounds 0..``rounds`` with the simulated user.

    Returns:
        ``found`` int64 ``(n_prompts, rounds + 1)``: the relevant tracks each round showed (all
        new: a session never shows a track twice).
    """
    from text2tracks.session import RecommendationSession, simulated_rounds

    options = {"edit_strength": edit_strength} if mode != "generative" else {}
    sessions = [
        RecommendationSession(recommender, p, mode=mode, k=k, pull=pull, **options) for p in prompts
    ]
    found = np.zeros((len(prompts), rounds + 1), dtype=np.int64)
    for round_index, liked in enumerate(
        simulated_rounds(sessions, relevant, rounds + 1, batch_size)
    ):
        found[:, round_index] = [len(tracks) for tracks in liked]
    return found


def round_metrics(found: np.ndarray, n_relevant: np.ndarray) -> dict[str, np.ndarray]:
    """Per-prompt ``hits_new`` (0/1) and ``cumulative_recall``, each ``(n_prompts, rounds + 1)``."""
    found = np.asarray(found)
    n_relevant = np.asarray(n_relevant, dtype=np.float64)[:, None]
    return {
        "hits_new": (found > 0).astype(np.float64),
        "cumulative_recall": np.cumsum(found, axis=1) / n_relevant,
    }


def summarise(per_prompt: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per round: the means of :func:`round_metrics`, with 95% bootstrap intervals."""
    from text2tracks.ranking_metrics import bootstrap_interval, bootstrap_means

    rows = []
    for r in range(per_prompt["hits_new"].shape[1]):
        row: dict[str, Any] = {"round": r}
        for name, values in per_prompt.items():
            low, high = bootstrap_interval(bootstrap_means(values[:, r]), 0.95)
            row[name] = float(values[:, r].mean())
            row[f"{name}_ci"] = [float(low), float(high)]
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ systems


def choose_systems(recommender, fitted: dict | None = None) -> tuple[dict, dict[str, str]]:
    """``({name: run spec}, {name: why it is skipped})`` for this recommender.

    A spec is ``{"mode", "pull", "fusion", "note"}``; ``fitted`` maps ``"fixed"``/``"gated"``
    to fusions fitted for this run (they win over the artifact's).
    """
    from text2tracks.fusion import plain_fusion
    from text2tracks.hybrid import default_fusion
    from text2tracks.rerank import FixedBlendFusion, GatedFusion

    fitted = fitted or {}
    systems: dict[str, dict] = {
        TEXT: {"mode": "generative", "pull": False, "fusion": None, "note": "exclusions only"}
    }
    skipped: dict[str, str] = {}
    if recommender.max_seed_tracks > 0:
        note = f"liked tracks as seed_tracks (reads {recommender.max_seed_tracks})"
        systems[SEEDS] = {"mode": "generative", "pull": True, "fusion": None, "note": note}
    else:
        skipped[SEEDS] = "the model was trained without seed tracks (max_seed_tracks 0)"
    if not recommender.has_diffusion:
        why = "the artifact has no diffusion head (recommender.has_diffusion is False)"
        return systems, {**skipped, FIXED: why, GATE: why, LIKES: why}
    on_disk = recommender.fusion
    if "fixed" in fitted:
        fixed, note = fitted["fixed"], "fitted for this run on validation prompts"
    elif isinstance(on_disk, FixedBlendFusion):
        fixed, note = on_disk, "the artifact's fitted fixed blend"
    elif isinstance(on_disk, GatedFusion):
        fixed = FixedBlendFusion(on_disk.fixed_alpha_, on_disk.normalisation)
        note = "the fixed alpha the artifact's gate was fitted around"
    else:
        fixed, note = default_fusion(), "no fusion.json: the default even blend"
    if "likes" in fitted:
        likes, like_note = fitted["likes"], "fitted for this run on simulated validation sessions"
    else:
        likes, like_note = on_disk, "the artifact's fusion, with its fusion for liked tracks"
    plain = plain_fusion(fixed)  # the plain blend every round
    systems[FIXED] = {"mode": "hybrid", "pull": True, "fusion": plain, "note": note}
    if getattr(likes, "with_likes", None) is not None:
        systems[LIKES] = {"mode": "hybrid", "pull": True, "fusion": likes, "note": like_note}
    else:
        skipped[LIKES] = "no fusion for liked tracks: pass --fit-fusion N (--like-fusion-rounds)"
    if "gated" in fitted:
        note = "fitted for this run on validation prompts"
        systems[GATE] = {"mode": "hybrid", "pull": True, "fusion": fitted["gated"], "note": note}
    elif isinstance(on_disk, GatedFusion):
        note = "the artifact's fitted gate"
        gate = plain_fusion(on_disk)  # the same gate every round
        systems[GATE] = {"mode": "hybrid", "pull": True, "fusion": gate, "note": note}
    else:
        skipped[GATE] = (
            "the artifact has no fitted gate (diffusion/fusion.json holds "
            f"{type(on_disk).__name__ if on_disk is not None else 'nothing'}); "
            "pass --fit-fusion N to fit one on validation prompts"
        )
    return systems, skipped


def _describe(fusion) -> dict[str, Any] | None:
    if fusion is None:
        return None
    out = {"kind": type(fusion).__name__}
    if hasattr(fusion, "alpha"):
        out["alpha"] = float(fusion.alpha)
    if getattr(fusion, "fixed_alpha_", None) is not None:
        out["fixed_alpha"] = float(fusion.fixed_alpha_)
    if getattr(fusion, "with_likes", None) is not None:
        out["with_likes"] = _describe(fusion.with_likes)
    return out


def _fit_fusions(recommender, split, vocab, n_prompts: int, args) -> dict:
    from text2tracks.ranking_metrics import relevant_items

    kept, lists, _ = relevant_items(split.validation, vocab)
    kept, lists = kept[:n_prompts], lists[:n_prompts]
    k, batch_size, like_rounds = args.k, args.batch_size, args.like_fusion_rounds
    edit_strength = args.edit_strength
    prompts = [split.validation[i].prompt for i in kept]
    relevant = [[vocab.item_ids[j] for j in items] for items in lists]
    fitted = {}
    for kind in ("fixed", "gated"):
        recommender.fit_fusion(prompts, relevant, kind=kind, k=k, batch_size=batch_size)
        fitted[kind] = recommender.fusion
    if like_rounds:
        recommender.fusion = fitted["fixed"]
        recommender.fit_like_fusion(
            prompts,
            relevant,
            rounds=like_rounds,
            k=k,
            edit_strength=edit_strength,
            batch_size=batch_size,
        )
        fitted["likes"] = recommender.fusion  # a copy of the fixed blend, with_likes set
    return fitted


# ------------------------------------------------------------------------------ the run


def held_out(artifact, playlists, n_prompts: int):
    """The test split's prompts: ``(split, vocab, prompts, relevant track-id sets, n_skipped)``
    (playlists without a catalogue track skipped and counted; ``n_prompts`` 0: all)."""
    from semantic_ids.interactions import ItemVocab
    from text2tracks.artifacts import CF_COMPONENT, artifact_split
    from text2tracks.ranking_metrics import relevant_items

    split = artifact_split(artifact, playlists)
    vocab = ItemVocab.load(Path(artifact) / CF_COMPONENT)
    kept, lists, n_skipped = relevant_items(split.test, vocab)
    if n_prompts:
        kept, lists = kept[:n_prompts], lists[:n_prompts]
    if len(kept) == 0:
        raise ValueError(f"{playlists}: no test playlist has a catalogue track")
    prompts = [split.test[i].prompt for i in kept]
    relevant = [{vocab.item_ids[j] for j in items} for items in lists]
    return split, vocab, prompts, relevant, n_skipped


def run_system(recommender, spec: dict, prompts, relevant, args) -> tuple[dict, dict]:
    """One system's sessions: ``(its JSON entry, per-prompt metrics)``."""
    if spec["fusion"] is not None:
        recommender.fusion = spec["fusion"]
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # over-long prompts, default fusion
        found = simulate(
            recommender,
            prompts,
            relevant,
            mode=spec["mode"],
            pull=spec["pull"],
            rounds=args.rounds,
            k=args.k,
            batch_size=args.batch_size,
            edit_strength=args.edit_strength,
        )
    seconds = time.perf_counter() - started
    per_prompt = round_metrics(found, np.array([len(r) for r in relevant]))
    entry = {
        "mode": spec["mode"],
        "pull": spec["pull"],
        "note": spec["note"],
        "fusion": _describe(spec["fusion"]),
        "seconds": seconds,
        "rounds": summarise(per_prompt),
    }
    return entry, per_prompt


def run(args) -> dict[str, Any]:
    import torch

    from eval.metrics import paired_bootstrap_diff
    from text2tracks.pipeline import Text2Tracks

    if args.rounds < 0 or args.k < 1:
        raise ValueError(f"--rounds must be >= 0 and --k >= 1, got {args.rounds} and {args.k}")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    split, vocab, prompts, relevant, n_skipped = held_out(
        args.artifact, args.playlists, args.prompts
    )
    recommender = Text2Tracks.from_pretrained(args.artifact)
    settings = recommender.hybrid_settings  # None without a diffusion head
    if args.edit_method is not None and settings is not None:
        recommender.hybrid_settings = settings = replace(settings, edit_method=args.edit_method)
    fitted = {}
    if args.fit_fusion and recommender.has_diffusion:
        fitted = _fit_fusions(recommender, split, vocab, args.fit_fusion, args)
    systems, skipped = choose_systems(recommender, fitted)
    for name, why in skipped.items():
        print(f"skipped {name}: {why}", flush=True)
    results: dict[str, Any] = {}
    per_system: dict[str, dict[str, np.ndarray]] = {}
    for name, spec in systems.items():
        results[name], per_system[name] = run_system(recommender, spec, prompts, relevant, args)
        print(f"{name}: {results[name]['seconds']:.0f} s", flush=True)
    last = args.rounds
    for name in results:
        if name != TEXT:
            results[name]["vs_text_final_round"] = {
                metric: paired_bootstrap_diff(
                    per_system[name][metric][:, last], per_system[TEXT][metric][:, last]
                )
                for metric in ("hits_new", "cumulative_recall")
            }
    if LIKES in results and FIXED in results:
        results[LIKES]["vs_fixed_final_round"] = {
            metric: paired_bootstrap_diff(
                per_system[LIKES][metric][:, last], per_system[FIXED][metric][:, last]
            )
            for metric in ("hits_new", "cumulative_recall")
        }
    return {
        "artifact": str(args.artifact),
        "split": "test",
        "prompts": len(prompts),
        "skipped_no_catalogue_track": n_skipped,
        "k": args.k,
        "rounds": args.rounds,
        "edit_strength": args.edit_strength,
        "edit_method": None if settings is None else settings.edit_method,
        "fit_fusion_prompts": args.fit_fusion if fitted else 0,
        "systems": results,
        "skipped_systems": skipped,
    }


def format_table(result: dict[str, Any]) -> str:
    """The markdown table: one row per round, Hits@k of new tracks and cumulative recall per
    system."""
    names = list(result["systems"])
    k = result["k"]
    header = (
        "| round | " + " | ".join(f"{n}: Hits@{k} new | {n}: cum. recall" for n in names) + " |"
    )
    lines = [header, "|---|" + "---|---|" * len(names)]
    for r in range(result["rounds"] + 1):
        cells = []
        for name in names:
            row = result["systems"][name]["rounds"][r]
            cells += [f"{row['hits_new']:.3f}", f"{row['cumulative_recall']:.3f}"]
        lines.append(f"| {r} | " + " | ".join(cells) + " |")
    for name, system in result["systems"].items():
        comparison = system.get("vs_text_final_round")
        if comparison:
            d = comparison["cumulative_recall"]
            lines.append(
                f"\n{name} - text at round {result['rounds']}: cumulative recall "
                f"{d['diff']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}], p = {d['p_value']:.3f}"
            )
    d = result["systems"].get(LIKES, {}).get("vs_fixed_final_round", {}).get("cumulative_recall")
    if d:
        lines.append(
            f"\n{LIKES} - {FIXED} at round {result['rounds']}: cumulative recall "
            f"{d['diff']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}], p = {d['p_value']:.3f}"
        )
    for name, why in result["skipped_systems"].items():
        lines.append(f"\nskipped {name}: {why}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """The rounds curve (cumulative recall and Hits of new tracks per round) as a PNG;
    ``None`` without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, system in result["systems"].items():
        rounds = [row["round"] for row in system["rounds"]]
        for ax, metric in zip(axes, ("cumulative_recall", "hits_new"), strict=True):
            ax.plot(rounds, [row[metric] for row in system["rounds"]], marker="o", label=name)
    for ax, title in zip(
        axes, ("cumulative recall", f"Hits@{result['k']} of new relevant tracks"), strict=True
    ):
        ax.set_xlabel("round")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"multi-turn refinement, {result['prompts']} held-out prompts")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    print(format_table(result))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = plot(result, out.with_suffix(".png"))
    result["plot"] = str(png) if png else None
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}" + (f" and {png}" if png else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
