"""The diffusion benchmark's outputs: the plots of its two curves and of the edits' Joint@K, the
report table, and the JSON it writes (``diffusion.json``; its systems merged into the
benchmark's ``results.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from eval.metrics import format_table
from text2tracks.artifacts import write_json_atomic

# ------------------------------------------------------------------------------------ JSON


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically, keys in insertion order, numpy values as plain numbers."""
    write_json_atomic(path, payload, sort_keys=False, default=_json_default)


def _json_default(value: Any):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray, set)):
        return sorted(value) if isinstance(value, set) else value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def merge_into_results(path: Path, report: dict) -> dict:
    """Re-read ``results.json``, add the systems and comparisons (keeping the others), write atomically."""
    results = json.loads(path.read_text())
    results.setdefault("systems", {}).update(report["systems"])
    results.setdefault("comparisons", {}).update(report["comparisons"])
    results["diffusion"] = {
        "target": report["target"],
        "training": report["training"],
        "latency": report["latency"],
        "negative_prompts_target": report["negative_prompts"].get("target"),
        "inversion_curve": report["inversion"].get("curve"),
        "inversion_curves": report["inversion"].get("curves"),
        "joint_at_k": _joint_record(report["inversion"].get("joint")),
        "api_parity": report.get("api_parity"),
        "fusion_path": report.get("fusion", {}).get("path"),
    }
    write_json(path, results)
    return json.loads(path.read_text())


def _joint_record(joint: dict | None) -> dict | None:
    """What ``results.json`` keeps of Joint@K (its points are in the inversion curves)."""
    if joint is None:
        return None
    keep = ("ks", "n_prompts", "n_neighbours", "yardsticks", "hybrid_curve", "target")
    return {key: joint[key] for key in keep}


# ------------------------------------------------------------------------------------ plots


def _plt():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_negative(negative: dict, path: Path, k: int) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    curve = negative.get("curve", [])
    ws = [r["w"] for r in curve]
    for view, color in (("latent", "tab:blue"), ("hybrid", "tab:orange")):
        for label, style in (("without", "--"), ("with", "-")):
            if curve:
                axes[0].plot(
                    ws,
                    [r[f"{view}_share_{label}"] for r in curve],
                    style,
                    marker="o",
                    color=color,
                    label=f"{view}, {label} negative",
                )
                axes[1].plot(
                    ws,
                    [r[f"{view}_hits_{label}"] for r in curve],
                    style,
                    marker="o",
                    color=color,
                    label=f"{view}, {label} negative",
                )
    if negative.get("generative_share") is not None:
        axes[0].axhline(
            negative["generative_share"], linestyle=":", color="grey", label="generative (beam)"
        )
    axes[0].set_ylabel(f"share of top {k} in negative-titled training playlists")
    axes[1].set_ylabel(f"Hits@{k} on the positive prompt")
    for ax in axes:
        ax.set_xlabel("guidance weight w")
        ax.legend(fontsize=7)
    pairs = ", ".join(f"{p['positive']} / -{p['negative']}" for p in negative.get("pairs", []))
    fig.suptitle(f"negative prompts ({negative.get('n_prompts', 0)} prompts: {pairs})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_inversion(inversion: dict, path: Path, k: int) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for (method, curve), style in zip(inversion["curves"].items(), ("-", "--", ":"), strict=False):
        xs = [r["strength"] for r in curve]
        axes[0].plot(
            xs,
            [r["seed_cosine"] for r in curve],
            style,
            marker="o",
            color="tab:blue",
            label=f"cosine to seed mean factor ({method})",
        )
        axes[0].plot(
            xs,
            [r["seed_hits"] for r in curve],
            style,
            marker="s",
            color="tab:orange",
            label=f"Hits@{k} vs seed playlist ({method})",
        )
        axes[1].plot(
            xs,
            [r["prompt_hits"] for r in curve],
            style,
            marker="o",
            color="tab:green",
            label=f"Hits@{k} vs prompt playlist ({method})",
        )
    ref = inversion.get("prompt_only_reference")
    if ref:
        axes[1].axhline(
            ref["prompt_hits"], linestyle=":", color="grey", label="prompt only (no seed)"
        )
    axes[0].set_ylabel("similarity to the seed tracks")
    axes[1].set_ylabel("relevance to the prompt")
    for ax in axes:
        ax.set_xlabel("edit strength")
        ax.legend(fontsize=7)
    fig.suptitle(f"DDIM inversion edits ({inversion.get('n_prompts', 0)} prompts)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


_JOINT_LINES = (
    ("joint", "-", "Joint"),
    ("pattern", "--", "Pattern"),
    ("attribute", ":", "Attribute"),
)


def plot_joint(inversion: dict, path: Path, k: int = 10) -> None:
    """Joint@k, Pattern@k and Attribute@k of the edits against the strength, per seed method
    (and hybrid mode), with the two yardsticks' Joint@k as horizontal lines; one panel per
    pattern definition (co-occurrence, CF neighbourhood)."""
    joint = inversion.get("joint") or {}
    curves = dict(inversion.get("curves", {}))
    if joint.get("hybrid_curve"):
        curves["hybrid"] = joint["hybrid_curve"]
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:purple")
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, pattern, title in zip(
        axes, ("", "_cf"), ("co-occurrence", "CF neighbourhood"), strict=True
    ):
        for (method, curve), color in zip(curves.items(), colors, strict=False):
            xs = [r["strength"] for r in curve]
            for measure, style, label in _JOINT_LINES:
                key = f"{measure}{pattern if measure != 'attribute' else ''}@{k}"
                if curve and curve[0].get(key) is not None:
                    ys = [r[key] for r in curve]
                    ax.plot(xs, ys, style, marker="o", color=color, label=f"{label}@{k} ({method})")
        for name, color in (("seed_mean", "grey"), ("prompt_only", "black")):
            value = joint.get("yardsticks", {}).get(name, {}).get(f"joint{pattern}@{k}")
            if value is not None:
                ax.axhline(value, linestyle="-.", color=color, label=f"Joint@{k}: {name} alone")
        ax.set_xlabel("edit strength")
        ax.set_title(f"pattern = {title}", fontsize=9)
        ax.legend(fontsize=6)
    axes[0].set_ylabel(f"share of the top {k}")
    fig.suptitle(
        f"Joint@{k} of DDIM inversion edits ({joint.get('n_prompts', 0)} prompts)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _negative_lines(neg: dict) -> list[str]:
    if not neg.get("curve"):
        return []
    lines = [
        "",
        f"negative prompts ({neg['n_prompts']} prompts; pairs "
        f"{[(p['positive'], p['negative']) for p in neg['pairs']]}):",
        "| w | latent share w/o -> with | latent hits w/o -> with | hybrid share w/o -> with "
        "| hybrid hits w/o -> with |",
        "|---|---|---|---|---|",
    ]
    for r in neg["curve"]:
        lines.append(
            f"| {r['w']:g} | {r['latent_share_without']:.3f} -> {r['latent_share_with']:.3f} | "
            f"{r['latent_hits_without']:.3f} -> {r['latent_hits_with']:.3f} | "
            f"{r['hybrid_share_without']:.3f} -> {r['hybrid_share_with']:.3f} | "
            f"{r['hybrid_hits_without']:.3f} -> {r['hybrid_hits_with']:.3f} |"
        )
    lines.append(
        f"target met at w = latent {neg['target']['latent']['met_at']}, "
        f"hybrid {neg['target']['hybrid']['met_at']}"
    )
    through = neg.get("hybrid_hits_through_negative")
    if through is not None:
        lines.append(
            f"of the prompts hybrid mode hits without a negative, {through:.1%} are hit only by "
            "tracks in the negative's playlists (removing those tracks loses them)"
        )
    for key in ("negative_weight", "negative_contrast"):
        rows = neg.get(f"{key}_curve")
        if not rows:
            continue
        lines += [
            "",
            f"hybrid mode per {key} (w = {neg['default_w']:g}; default negative_weight "
            f"{neg['default_negative_weight']:g}):",
            f"| {key} | hybrid share w/o -> with | hybrid hits w/o -> with |",
            "|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r[key]:g} | {r['hybrid_share_without']:.3f} -> "
                f"{r['hybrid_share_with']:.3f} | {r['hybrid_hits_without']:.3f} -> "
                f"{r['hybrid_hits_with']:.3f} |"
            )
        lines.append(f"hybrid target met at {key} = {neg['target'][f'hybrid_by_{key}']['met_at']}")
    return lines


def _inversion_lines(inv: dict) -> list[str]:
    if not inv.get("curve"):
        return []
    lines = [
        "",
        f"inversion ({inv['n_prompts']} prompts, {inv['n_seed_tracks']} seed tracks):",
        "| seed latent | strength | cosine to seeds | Hits vs seed playlist | Hits vs prompt |",
        "|---|---|---|---|---|",
    ]
    for method, curve in inv["curves"].items():
        for r in curve:
            lines.append(
                f"| {method} | {r['strength']:g} | {r['seed_cosine']:.3f} | "
                f"{r['seed_hits']:.3f} | {r['prompt_hits']:.3f} |"
            )
    return lines


def _joint_lines(inv: dict) -> list[str]:
    joint = inv.get("joint")
    if not joint:
        return []
    names = [
        f"{m}@{k}"
        for k in joint["ks"]
        for m in ("joint", "pattern", "attribute", "joint_cf", "pattern_cf")
    ]
    lines = [
        "",
        f"Joint@K of the edits ({joint['n_prompts']} prompts with a content word; pattern: "
        f"co-occurrence, _cf: {joint['n_neighbours']} CF neighbours):",
        "| edit | strength | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    rows = [(m, r) for m, c in inv["curves"].items() for r in c]
    rows += [("hybrid", r) for r in joint.get("hybrid_curve") or []]
    rows += [(f"{name} alone", {"strength": "-"} | y) for name, y in joint["yardsticks"].items()]
    for label, r in rows:
        values = " | ".join("-" if r.get(n) is None else f"{r[n]:.3f}" for n in names)
        strength = r["strength"] if isinstance(r["strength"], str) else f"{r['strength']:g}"
        lines.append(f"| {label} | {strength} | {values} |")
    for pattern, checks in joint["target"].items():
        for edit, c in checks.items():
            if not c.get("evaluable"):
                lines.append(f"{pattern}, {edit}: not evaluable")
                continue
            lines.append(
                f"{pattern}, {edit}: Joint@10 above both yardsticks at strengths "
                f"{c['joint_above_yardsticks_at']}; Attribute@10 rises {c['attribute_rises']}, "
                f"Pattern@10 falls {c['pattern_falls']} (monotone {c['monotone']}); Joint@10 "
                f"unimodal {c['joint_unimodal']}, peak at {c['joint_peak_strength']:g}"
            )
    return lines


def _cost_lines(report: dict) -> list[str]:
    lat = report["latency"]
    lines = [
        "",
        f"sampling cost ({lat['ddim_steps']} DDIM steps, {lat['n_samples']} samples): head "
        f"{lat['batch1']['head_ms']:.1f} ms of {lat['batch1']['total_ms']:.1f} ms per prompt at "
        f"batch 1 ({100 * lat['head_share_batch1']:.1f}%), {lat['batch64_per_prompt']['head_ms']:.2f}"
        f" of {lat['batch64_per_prompt']['total_ms']:.2f} ms batched "
        f"({100 * lat['head_share_batch64']:.1f}%)",
        f"head encoder: tried {report['training']['encoders_tried']}, chose "
        f"{report['training']['encoder_chosen']}; hybrid vs generative "
        f"{report['target']['hybrid_relative_gain']}; gate pays: {report['target']['gate_pays']}",
    ]
    if report.get("api_parity"):
        lines.append(f"the same rankings as recommend_arrays (first batch): {report['api_parity']}")
    if report.get("fusion", {}).get("path"):
        lines.append(
            f"fitted fusion: {report['fusion']['path']} (text2tracks.hybrid.load_fusion reads it)"
        )
    return lines


def format_report(report: dict, k: int = 10) -> str:
    """The systems table, comparisons, negative-prompt and inversion curves (with Joint@K), and
    the cost."""
    columns = [f"hits@{k}", f"recall@{k}", f"ndcg@{k}", "mrr", f"coverage@{k}"]
    lines = [
        format_table(report["systems"], columns=columns),
        "",
        "| comparison | Hits diff | 95% CI | relative | p |",
        "|---|---|---|---|---|",
    ]
    for name, c in report["comparisons"].items():
        relative = f"{100 * c['relative']:+.1f}%" if c.get("relative") is not None else "-"
        lines.append(
            f"| {name} | {c['diff']:+.4f} | [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}] | "
            f"{relative} | {c['p_value']:.3f} |"
        )
    lines += _negative_lines(report["negative_prompts"])
    lines += _inversion_lines(report["inversion"])
    lines += _joint_lines(report["inversion"])
    lines += _cost_lines(report)
    return "\n".join(lines) + "\n"
