"""What the benchmark writes beside ``results.json``: the markdown table, the curve, per prompt.

* :func:`markdown` - ``results.md``: the metrics table, cost per system, the main model's
  latency and the paired comparisons.
* :func:`plot_curves` - ``curve.png``: validation Hits@10 against training minutes, the baselines
  as horizontal lines.
* :func:`per_prompt_json` - ``per_prompt.json``: per-prompt hits, NDCG and first-hit rank of every
  system, so that runs on the same split can be compared pairwise later
  (:mod:`eval.compare_runs`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from eval.metrics import format_table


def markdown(results: dict, k: int) -> str:
    """``results.md`` of a benchmark's ``results``, metrics at ``k``."""
    columns = [f"hits@{k}", f"recall@{k}", f"ndcg@{k}", "mrr", f"coverage@{k}"]
    lines = [
        "# Benchmark",
        "",
        f"split: {results['split']}",
        "",
        format_table(results["systems"], columns=columns),
        "",
        *_cost_table(results["systems"]),
    ]
    main = results["systems"].get("text2tracks", {})
    if "latency_ms_one_prompt" in main:
        lines += [
            "",
            f"text2tracks: one prompt (k={k}) {main['latency_ms_one_prompt']:.1f} ms; "
            f"{main['prompts_per_s_batch64']:.1f} prompts/s at batch 64",
        ]
    if results["comparisons"]:
        lines += ["", *_comparison_table(results["comparisons"])]
    return "\n".join(lines) + "\n"


def _cost_table(systems: dict) -> list[str]:
    """Markdown lines: training time, decoding steps, ID tokens and latency of each system."""
    lines = [
        "| system | train s | decoding steps/item | mean ID tokens | latency ms/prompt (batched) |",
        "|---|---|---|---|---|",
    ]
    for name, m in systems.items():
        mean_tokens = m.get("mean_id_tokens")
        lines.append(
            f"| {name} | {m.get('train_seconds') or 0:.0f} | "
            f"{m.get('decoding_steps_per_item', '-')} | "
            f"{'-' if mean_tokens is None else f'{mean_tokens:.1f}'} | "
            f"{m.get('latency_ms_per_prompt_batched', 0):.2f} |"
        )
    return lines


def _comparison_table(comparisons: dict) -> list[str]:
    """Markdown lines: each paired comparison's Hits difference, its CI, relative change, p."""
    lines = ["| comparison | Hits diff | 95% CI | relative | p |", "|---|---|---|---|---|"]
    for name, c in comparisons.items():
        rel = f"{100 * c['relative']:+.1f}%" if c.get("relative") is not None else "-"
        lines.append(
            f"| {name} | {c['diff']:+.4f} | [{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}] "
            f"| {rel} | {c['p_value']:.3f} |"
        )
    return lines


def plot_curves(results: dict, path: Path, baselines: Iterable[str]) -> None:
    """``curve.png``: validation Hits@10 of each trained system against training minutes; the
    test Hits@10 of each of ``baselines`` present in ``results`` as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    curves = {"text2tracks": results.get("curve", [])}
    curves.update({n: m.get("curve", []) for n, m in results["systems"].items() if "curve" in m})
    for name, curve in curves.items():
        key = "val_hits@10"
        points = [
            (r["elapsed_s"] / 60, r[key])
            for r in curve
            if r.get(key) is not None and r.get("elapsed_s") is not None
        ]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=name)
    for name in baselines:
        if name in results["systems"]:
            ax.axhline(results["systems"][name]["hits@10"], linestyle=":", linewidth=1)
            ax.text(
                0.99,
                results["systems"][name]["hits@10"],
                name,
                fontsize=7,
                va="bottom",
                ha="right",
                transform=ax.get_yaxis_transform(),
            )
    ax.set_xlabel("training minutes")
    ax.set_ylabel("validation Hits@10 (baselines: test)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def per_prompt_json(prompt_index: Sequence[int], rank_depth: dict, per_prompt: dict) -> str:
    """``per_prompt.json``: the test prompts scored (indices into the test playlists), how deep
    each system ranked, and each system's per-prompt hits, NDCG and first-hit rank."""
    return json.dumps(
        {
            "prompt_index": [int(i) for i in prompt_index],
            "rank_depth": rank_depth,
            "systems": {
                name: {
                    **{
                        m: [float(x) for x in v] for m, v in values.items() if m in ("hits", "ndcg")
                    },
                    "first_hit_rank": [int(x) for x in values["first_hit_rank"]],
                }
                for name, values in per_prompt.items()
            },
        }
    )


def write_json(path: str | Path, result: dict) -> Path:
    """Write a benchmark's result as indented JSON (creating the folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return path


def table_main(argv, build_parser, run, format_table) -> int:
    """The ``main`` of a benchmark that prints one table: parse ``argv``, ``run(args)``, print
    ``format_table(result)``, write the result to ``args.out`` as JSON."""
    args = build_parser().parse_args(argv)
    result = run(args)
    print(format_table(result))
    print(f"wrote {write_json(args.out, result)}")
    return 0
