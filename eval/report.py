"""One self-contained HTML page from a benchmark folder.

    python -m eval.report DIR          # writes DIR/report.html

``DIR`` is the ``--out`` folder of ``python -m eval.benchmark``. The page reads:

* ``results.json``: the results table with bootstrap intervals (``systems``), the paired
  comparisons, the split, the training curve (``curve`` of the main model, ``curve`` of each
  ablation system), codebook use per level (``ids.stats``) and latency.
* ``per_prompt.json`` when present: per system, ``first_hit_rank`` (1-based rank of the first
  relevant item, 0 for none within the ranked depth) and the top-level ``rank_depth``
  (``{system: depth ranked}``) give Hits@K against K for K = 1 .. depth, with a bootstrap band.
  A system without them is drawn as its one recorded point, Hits@k with its interval, and the
  page says that the rest of its curve was not recorded.

Everything is inline (CSS in a ``<style>`` element, plots as base64 PNG from matplotlib), so the
file can be mailed or opened offline. Strings from the results are HTML-escaped.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eval.metrics import bootstrap_means, hits_at_ks
from text2tracks.artifacts import write_text_atomic

REPORT_NAME = "report.html"
_BASELINES = ("popularity", "exact_title", "title_knn", "bm25", "dense_biencoder")
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; background: #fff; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.name, th.name { text-align: left; font-weight: 600; }
.ci { color: #777; font-size: 0.85em; } .note { color: #555; font-size: 0.9em; }
.missing { color: #a33; } .wide { overflow-x: auto; } td.name { white-space: nowrap; } img { max-width: 100%; height: auto; }
"""


# ------------------------------------------------------------------------------------ reading


def write_table_and_json(out: str | Path, stem: str, results: Mapping, table: str) -> Path:
    """A benchmark's outputs: ``OUT/STEM.json`` (the results) and ``OUT/STEM.md`` (the table),
    written atomically; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"{stem}.json", json.dumps(results, indent=2))
    write_text_atomic(out / f"{stem}.md", table + "\n")
    return out


def read_results(results_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``(results.json, per_prompt.json or None)`` of a benchmark folder."""
    results_dir = Path(results_dir)
    path = results_dir / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: is {results_dir} a benchmark --out folder?"
        )
    results = json.loads(path.read_text(encoding="utf-8"))
    per_path = results_dir / "per_prompt.json"
    per_prompt = json.loads(per_path.read_text(encoding="utf-8")) if per_path.is_file() else None
    return results, per_prompt


def _k(results: Mapping) -> int:
    systems = results.get("systems", {})
    return int(
        next((m["k"] for m in systems.values() if "k" in m), results.get("config", {}).get("k", 10))
    )


def hits_curves(
    results: Mapping, per_prompt: Mapping | None, n_bootstrap: int = 200
) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Hits@K against K for every system that recorded its first-hit ranks.

    Returns ``(curves, not_recorded)``: ``curves[name]`` holds ``ks`` (1 .. depth), ``hits``
    (mean Hits@K) and ``low`` / ``high`` (95% bootstrap band over prompts); ``not_recorded``
    lists the systems of ``results.json`` without first-hit ranks.
    """
    curves: dict[str, dict[str, np.ndarray]] = {}
    per_systems = (per_prompt or {}).get("systems", {})
    depths = (per_prompt or {}).get("rank_depth", {})
    for name in results.get("systems", {}):
        ranks = per_systems.get(name, {}).get("first_hit_rank")
        if ranks is None or len(ranks) == 0:
            continue
        ranks = np.asarray(ranks, dtype=np.int64)
        depth = int(depths.get(name) or max(1, int(ranks.max())))
        ks = np.arange(1, depth + 1)
        per_k = hits_at_ks(ranks, ks)
        samples = bootstrap_means(per_k, n_bootstrap=n_bootstrap, seed=0)
        low, high = np.quantile(samples, [0.025, 0.975], axis=-1)
        curves[name] = {"ks": ks, "hits": per_k.mean(axis=1), "low": low, "high": high}
    not_recorded = [n for n in results.get("systems", {}) if n not in curves]
    return curves, not_recorded


def training_curves(results: Mapping) -> dict[str, list[dict]]:
    """``{system: curve points}``: the main model's ``curve`` and each system's own."""
    curves = {}
    if results.get("curve"):
        curves["text2tracks"] = list(results["curve"])
    for name, m in results.get("systems", {}).items():
        if m.get("curve"):
            curves[name] = list(m["curve"])
    return curves


# ------------------------------------------------------------------------------------ plots


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(png_b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_b64}">'


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_hits_at_k(results: Mapping, curves: Mapping[str, Mapping], k: int) -> str:
    """Hits@K against K (log K axis): a line and band per recorded system, a point with its
    interval at ``k`` for the others. Returns base64 PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, c in curves.items():
        # Hits@K is defined at whole K: steps, not slopes
        (line,) = ax.step(c["ks"], c["hits"], where="post", label=name)
        ax.fill_between(
            c["ks"], c["low"], c["high"], step="post", color=line.get_color(), alpha=0.15
        )
    for name, m in results.get("systems", {}).items():
        value, ci = m.get(f"hits@{k}"), m.get(f"hits@{k}_ci")
        if name in curves or value is None:
            continue
        err = [[value - ci[0]], [ci[1] - value]] if ci else None
        ax.errorbar([k], [value], yerr=err, fmt="o", capsize=3, label=f"{name} (@{k} only)")
    ax.set_xscale("log")
    ax.set_xlabel("K (log scale)")
    ax.set_ylabel("test Hits@K")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def plot_training(results: Mapping, curves: Mapping[str, list[dict]], k: int) -> str:
    """Validation Hits@k and loss against training minutes; baselines' test Hits@k dotted."""
    plt = _pyplot()
    fig, (ax_hits, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in curves.items():
        hit_key = next((key for p in points for key in p if key.startswith("val_hits@")), None)
        for ax, key in ((ax_hits, hit_key), (ax_loss, "val_loss")):
            xy = [
                (p["elapsed_s"] / 60, p[key])
                for p in points
                if key and p.get(key) is not None and p.get("elapsed_s") is not None
            ]
            if xy:
                xs, ys = zip(*xy, strict=True)
                ax.plot(xs, ys, marker="o", markersize=3, label=name)
    for name in _BASELINES:
        value = results.get("systems", {}).get(name, {}).get(f"hits@{k}")
        if value is not None:
            ax_hits.axhline(value, linestyle=":", linewidth=1, color="gray")
            ax_hits.text(
                0.99,
                value,
                name,
                fontsize=7,
                va="bottom",
                ha="right",
                transform=ax_hits.get_yaxis_transform(),
            )
    ax_hits.set_xlabel("training minutes")
    ax_hits.set_ylabel(f"validation Hits@{k} (baselines: test)")
    ax_loss.set_xlabel("training minutes")
    ax_loss.set_ylabel("validation loss")
    for ax in (ax_hits, ax_loss):
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def plot_codebooks(levels: Sequence[Mapping]) -> str:
    """Per level: share of codes used and perplexity / codebook size (1 = uniform use)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(levels))
    used = [float(lv.get("codes_used_share") or 0.0) for lv in levels]
    spread = [
        float(lv.get("perplexity") or 0.0) / float(lv.get("codebook_size") or 1) for lv in levels
    ]
    ax.bar(x - 0.2, used, width=0.4, label="codes used (share)")
    ax.bar(x + 0.2, spread, width=0.4, label="perplexity / codebook size")
    ax.set_xticks(x, [f"level {lv.get('level', i)}" for i, lv in enumerate(levels)])
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def plot_latency(rows: Sequence[tuple[str, float]]) -> str:
    """Horizontal bars of batched latency per prompt (ms, log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    names = [name for name, _ in rows]
    values = [max(value, 1e-4) for _, value in rows]
    ax.barh(names, values)
    ax.set_xscale("log")
    ax.set_xlabel("ms per prompt, batched (log scale)")
    ax.invert_yaxis()
    fig.tight_layout()
    return _png(fig)


# ------------------------------------------------------------------------------------ HTML


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _fmt_small(value: Any) -> str:
    """Two decimals, or three significant digits below 1 (a lookup of 0.0001 ms is not 0)."""
    if isinstance(value, (float, np.floating)) and 0 < abs(value) < 1:
        return f"{value:.3g}"
    return _fmt(value, 2)


def _metric_cell(m: Mapping, key: str) -> str:
    text = _fmt(m.get(key))
    ci = m.get(f"{key}_ci")
    if ci:
        text += f' <span class="ci">[{ci[0]:.3f}, {ci[1]:.3f}]</span>'
    return f"<td>{text}</td>"


def _relative(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """``rows`` of already formatted cells; the first cell of each row is the (escaped) name."""
    head = "".join(
        f"<th{' class=name' if i == 0 else ''}>{html.escape(h)}</th>" for i, h in enumerate(header)
    )
    body = "".join(
        f'<tr><td class="name">{html.escape(str(r[0]))}</td>{"".join(r[1:])}</tr>' for r in rows
    )
    return (
        f'<div class="wide"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
        "</table></div>"
    )


def _results_section(results: Mapping, k: int) -> str:
    systems = results.get("systems", {})
    if not systems:
        return '<p class="missing">No systems in results.json.</p>'
    metrics = [f"hits@{k}", f"recall@{k}", f"ndcg@{k}", "mrr"]
    rows = [
        [
            name,
            *(_metric_cell(m, key) for key in metrics),
            f"<td>{_fmt(m.get(f'coverage@{k}'), 4)}</td>",
            f"<td>{_fmt(m.get('n_prompts'))}</td>",
            f"<td>{_fmt(m.get('train_seconds'), 0)}</td>",
        ]
        for name, m in systems.items()
    ]
    out = [
        _table(["system", *metrics, f"coverage@{k}", "prompts", "train s"], rows),
        '<p class="note">Intervals: 95% percentile bootstrap over test prompts.</p>',
    ]
    comparisons = results.get("comparisons") or {}
    if comparisons:
        rows = [
            [
                name,
                f"<td>{c['diff']:+.4f}</td>",
                f"<td>[{c['ci'][0]:+.4f}, {c['ci'][1]:+.4f}]</td>",
                f"<td>{_relative(c.get('relative'))}</td>",
                f"<td>{_fmt(c.get('p_value'))}</td>",
            ]
            for name, c in comparisons.items()
        ]
        out += [
            f"<h3>Paired comparisons (Hits@{k})</h3>",
            _table(["comparison", "difference", "95% CI", "relative", "p"], rows),
        ]
    return "\n".join(out)


def _hits_section(results: Mapping, per_prompt: Mapping | None, k: int) -> str:
    curves, not_recorded = hits_curves(results, per_prompt)
    if not results.get("systems"):
        return '<p class="missing">Not recorded: no systems.</p>'
    out = [_img(plot_hits_at_k(results, curves, k), "Hits@K against K")]
    if curves:
        ks = [K for K in (1, 5, 10, 20, 50, 100) if any(K <= c["ks"][-1] for c in curves.values())]
        rows = [
            [
                name,
                *(
                    f"<td>{_fmt(float(c['hits'][K - 1]))}</td>"
                    if K <= c["ks"][-1]
                    else "<td>-</td>"
                    for K in ks
                ),
            ]
            for name, c in curves.items()
        ]
        out.append(_table(["system", *(f"Hits@{K}" for K in ks)], rows))
        depths = ", ".join(f"{html.escape(name)} {int(c['ks'][-1])}" for name, c in curves.items())
        out.append(
            f'<p class="note">Ranked depth (the last K drawn): {depths}. A generative '
            "model's curve ends at its beam width. Bands: 95% bootstrap over prompts.</p>"
        )
    if not_recorded:
        reason = (
            "there is no per_prompt.json"
            if per_prompt is None
            else "per_prompt.json has no first_hit_rank for them"
        )
        out.append(
            f'<p class="missing">Hits@K for K other than {k}: not recorded for '
            f"{html.escape(', '.join(not_recorded))} ({reason}); shown as one point "
            f"at K = {k}.</p>"
        )
    return "\n".join(out)


def _training_section(results: Mapping, k: int) -> str:
    curves = training_curves(results)
    if not curves:
        return '<p class="missing">Training curve: not recorded (no model was trained in this run).</p>'
    out = [_img(plot_training(results, curves, k), "training curve")]
    summary = results.get("training_summary") or {}
    if summary:
        keys = ("steps", "epochs_done", "elapsed_s", "examples_per_s", "n_parameters", "stopped_by")
        out.append(
            _table(
                ["text2tracks", *keys],
                [["training", *(f"<td>{_fmt(summary.get(key), 1)}</td>" for key in keys)]],
            )
        )
    return "\n".join(out)


def _codebook_section(results: Mapping) -> str:
    stats = (results.get("ids") or {}).get("stats") or {}
    levels = stats.get("levels") or []
    if not stats:
        return (
            '<p class="missing">Codebook use: not recorded (results.json has no ids.stats; '
            "the run reused existing IDs).</p>"
        )
    overall = (
        "tracks",
        "depth",
        "level_sizes",
        "unique_prefixes",
        "shared_prefix_share",
        "shared_groups",
        "largest_group",
    )
    out = [
        _table(
            ["catalogue", *overall],
            [["semantic IDs", *(f"<td>{_fmt(stats.get(key), 4)}</td>" for key in overall)]],
        )
    ]
    if levels:
        keys = [key for key in levels[0] if key != "level"]
        rows = [
            [f"level {lv.get('level', i)}", *(f"<td>{_fmt(lv.get(key), 3)}</td>" for key in keys)]
            for i, lv in enumerate(levels)
        ]
        out += [
            _img(plot_codebooks(levels), "codebook use per level"),
            _table(["level", *keys], rows),
        ]
    return "\n".join(out)


def _latency_section(results: Mapping) -> str:
    systems = results.get("systems", {})
    keys = (
        "latency_ms_per_prompt_batched",
        "latency_ms_one_prompt",
        "prompts_per_s_batch64",
        "decoding_steps_per_item",
        "mean_id_tokens",
    )
    present = [name for name, m in systems.items() if any(m.get(key) is not None for key in keys)]
    if not present:
        return '<p class="missing">Latency: not recorded.</p>'
    rows = [
        [name, *(f"<td>{_fmt_small(systems[name].get(key))}</td>" for key in keys)]
        for name in present
    ]
    out = [
        _table(
            [
                "system",
                "ms/prompt (batched)",
                "ms one prompt",
                "prompts/s at batch 64",
                "decoding steps/item",
                "mean ID tokens",
            ],
            rows,
        )
    ]
    bars = [
        (name, float(systems[name]["latency_ms_per_prompt_batched"]))
        for name in present
        if systems[name].get("latency_ms_per_prompt_batched") is not None
    ]
    if bars:
        out.insert(0, _img(plot_latency(bars), "latency per prompt"))
    return "\n".join(out)


def render_report(results: Mapping, per_prompt: Mapping | None = None, title: str = "") -> str:
    """The HTML page (a string) for a loaded ``results.json`` and optional ``per_prompt.json``."""
    k = _k(results)
    split = results.get("split") or {}
    split_text = ", ".join(
        f"{html.escape(str(key))}: {_fmt(value)}" for key, value in split.items()
    )
    sections = [
        ("Results", _results_section(results, k)),
        ("Hits@K against K", _hits_section(results, per_prompt, k)),
        ("Training curve", _training_section(results, k)),
        ("Codebook use per level", _codebook_section(results)),
        ("Latency", _latency_section(results)),
    ]
    body = "\n".join(
        f"<section><h2>{html.escape(name)}</h2>\n{content}</section>" for name, content in sections
    )
    heading = html.escape(f"text2tracks benchmark{': ' + title if title else ''}")
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{heading}</title><style>{_CSS}</style></head><body>\n"
        f'<h1>{heading}</h1>\n<p class="note">Split: {split_text or "not recorded"}.</p>\n'
        f"{body}\n</body></html>\n"
    )


def write_report(results_dir: str | Path) -> Path:
    """Write ``results_dir/report.html`` from the folder's ``results.json`` (and
    ``per_prompt.json`` when present); returns its path. Written atomically."""
    results_dir = Path(results_dir)
    results, per_prompt = read_results(results_dir)
    path = results_dir / REPORT_NAME
    write_text_atomic(path, render_report(results, per_prompt, title=results_dir.name))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.report",
        description="Write DIR/report.html (one self-contained page) from a benchmark --out folder.",
    )
    parser.add_argument("results_dir", metavar="DIR", help="folder holding results.json")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.results_dir)
    except FileNotFoundError as err:
        parser.error(str(err))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
