"""Which objective makes the diffusion head's latent retrieve: MSE alone or GDR's MSE + InfoNCE.

    python -m eval.bench_diffusion_gdr --benchmark-dir DIR --playlists PATH --out OUT \\
        [--variants mse,gdr] [--minutes-per-variant 4]

A focused A/B of issue 12's first item, cheaper than ``eval.bench_diffusion`` (which trains and
measures everything else too). It re-creates the benchmark's split from ``DIR/results.json``
(:func:`eval.bench_diffusion.load_benchmark_split`: the same test prompts and relevant tracks),
copies ``DIR/artifact`` (only read) to ``OUT/work_artifact`` and trains one head per variant
into it with :func:`training.train_diffusion.train` (the frozen seq2seq encoder, the same seed,
the same time budget), each saved under ``OUT/runs/VARIANT``. Every head then samples
``max(n_samples, mean_samples)`` latents per test prompt from the same seeded noise, and the
items faiss finds around them are scored at k for each pooling: the max over the first
``n_samples`` (the API's default), the mean over them, and the mean over ``mean_samples`` (the
inner product with the samples' mean, an estimate of the conditional mean).

Variants (``--variants``, comma-separated, the first is the reference of the comparisons):

* ``mse``: the head as trained before (epsilon prediction, MSE alone);
* ``mse-x0``: x_0 prediction, MSE alone (what the objective change alone does);
* ``gdr``: x_0 prediction, MSE + ``contrastive_weight`` * InfoNCE, in-batch negatives;
* ``gdr-full``: the same against the whole catalogue;
* ``gdr-v``: v prediction with the in-batch contrastive term.

Writes ``OUT/gdr.json`` (configs, training summaries, metrics with bootstrap intervals, paired
bootstrap comparisons against the first variant) and ``OUT/gdr.md`` (the table), and prints it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eval.bench_diffusion_config import add_benchmark_source_flags, log
from eval.metrics import bootstrap_means, paired_bootstrap_diff, per_prompt_metrics
from text2tracks.config_flags import add_config_flags, config_from_args

VARIANTS: dict[str, dict[str, Any]] = {
    "mse": {"prediction_type": "epsilon", "contrastive_weight": 0.0},
    "mse-x0": {"prediction_type": "sample", "contrastive_weight": 0.0},
    "gdr": {"prediction_type": "sample", "contrastive_negatives": "in_batch"},
    "gdr-full": {"prediction_type": "sample", "contrastive_negatives": "full"},
    "gdr-v": {"prediction_type": "v_prediction", "contrastive_negatives": "in_batch"},
}


@dataclass(frozen=True)
class GDRBenchConfig:
    """Settings of :func:`run_gdr_benchmark`; each field is one CLI flag (``--snake-case``).

    Attributes:
        variants: comma-separated names of :data:`VARIANTS`; the first is the reference.
        minutes_per_variant: training time of each head (the same for all: equal budget).
        contrastive_weight, contrastive_temperature: lambda and tau of the ``gdr*`` variants.
        n_samples: samples pooled by max and by mean (the API's default is 4);
        mean_samples: samples pooled by mean (0: that pooling is left out).
        hidden, n_blocks, lr, batch_size: the heads' width, depth and optimiser.
        k, max_test_prompts (0 = all), n_bootstrap, seed, num_threads (0 = torch's default),
        progress.
    """

    variants: str = "mse,gdr"
    minutes_per_variant: float = 4.0
    contrastive_weight: float = 1.0
    contrastive_temperature: float = 0.05
    n_samples: int = 4
    mean_samples: int = 16
    hidden: int = 512
    n_blocks: int = 4
    lr: float = 1e-3
    batch_size: int = 256
    k: int = 10
    max_test_prompts: int = 0
    n_bootstrap: int = 1000
    seed: int = 0
    num_threads: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        names = self.variant_list
        unknown = [v for v in names if v not in VARIANTS]
        if not names or unknown or len(set(names)) != len(names):
            raise ValueError(
                f"variants must list distinct names of {sorted(VARIANTS)}, got {self.variants!r}"
            )
        if not self.minutes_per_variant > 0:
            raise ValueError(f"minutes_per_variant must be > 0, got {self.minutes_per_variant}")
        for name in ("n_samples", "hidden", "n_blocks", "batch_size", "k", "n_bootstrap"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("mean_samples", "max_test_prompts", "seed", "num_threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")

    @property
    def variant_list(self) -> list[str]:
        return [v.strip() for v in self.variants.split(",") if v.strip()]

    def poolings(self) -> list[tuple[str, str, int]]:
        """``(name, pool, n_samples)`` of every pooling measured."""
        out = [
            (f"max@{self.n_samples}", "max", self.n_samples),
            (f"mean@{self.n_samples}", "mean", self.n_samples),
        ]
        if self.mean_samples and self.mean_samples != self.n_samples:
            out.append((f"mean@{self.mean_samples}", "mean", self.mean_samples))
        return out


def train_config(config: GDRBenchConfig, variant: str, artifact: Path, playlists: str):
    """The :class:`~training.diffusion_config.DiffusionTrainConfig` of one variant."""
    from training.diffusion_config import DiffusionTrainConfig

    contrastive = {}
    if variant.startswith("gdr"):
        contrastive = {
            "contrastive_weight": config.contrastive_weight,
            "contrastive_temperature": config.contrastive_temperature,
        }
    return DiffusionTrainConfig(
        artifact=str(artifact),
        playlists=str(playlists),
        encoder="seq2seq",
        hidden=config.hidden,
        n_blocks=config.n_blocks,
        lr=config.lr,
        batch_size=config.batch_size,
        epochs=100_000,  # the time budget stops training
        max_minutes=config.minutes_per_variant,
        warmup_steps=100,
        eval_every=0,
        eval_prompts=500,
        eval_k=config.k,
        eval_samples=config.n_samples,
        seed=config.seed,
        num_threads=config.num_threads,
        log_every=50,
        progress=config.progress,
        fit_fusion=False,
        **{**VARIANTS[variant], **contrastive},
    )


def sample_test_latents(head, cond, n_samples: int, seed: int, batch: int = 128) -> np.ndarray:
    """``(n_prompts, n_samples, dim)`` CF-space latents, every prompt from the same seeded noise
    (as the API samples), so variants differ only by their head."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((n_samples, head.config.latent_dim), generator=generator)
    out = []
    with torch.inference_mode():
        for start in range(0, cond.shape[0], batch):
            part = cond[start : start + batch]
            out.append(
                head.sample(part, n_samples=n_samples, noise=noise.repeat(part.shape[0], 1))
                .float()
                .cpu()
                .numpy()
            )
    return np.concatenate(out)


def score_latents(
    latents: np.ndarray, item_factors: np.ndarray, relevant, config: GDRBenchConfig, index
) -> dict[str, dict[str, np.ndarray]]:
    """Per-prompt metrics at k of every pooling of :meth:`GDRBenchConfig.poolings`."""
    from text2tracks.latent_search import latent_candidates

    out = {}
    for name, pool, n in config.poolings():
        items, _ = latent_candidates(
            latents[:, :n], item_factors, k=config.k, index=index, pool=pool
        )
        out[name] = per_prompt_metrics(items, relevant, config.k)
    return out


def summarise(per_prompt: dict[str, np.ndarray], config: GDRBenchConfig) -> dict[str, Any]:
    """Means with 95% bootstrap intervals of ``hits`` and ``recall``."""
    out = {}
    for metric in ("hits", "recall"):
        values = per_prompt[metric]
        low, high = np.quantile(
            bootstrap_means(values, config.n_bootstrap, config.seed), [0.025, 0.975]
        )
        out[f"{metric}@{config.k}"] = float(values.mean())
        out[f"{metric}@{config.k}_ci"] = [float(low), float(high)]
    return out


def _train_variants(config, artifact: Path, playlists: str, out: Path) -> dict[str, Any]:
    """Train every variant into the working copy and keep each under ``out/runs``."""
    from eval.bench_diffusion_models import prepare_work_artifact
    from text2tracks.artifacts import DIFFUSION_COMPONENT
    from training.train_diffusion import train

    work = prepare_work_artifact(artifact, out / "work_artifact")
    summaries = {}
    for variant in config.variant_list:
        cfg = train_config(config, variant, work, playlists)
        log(f"training {variant} ({config.minutes_per_variant} min): {VARIANTS[variant]}")
        summaries[variant] = {"summary": train(cfg), "config": asdict(cfg)}
        saved = out / "runs" / variant
        shutil.rmtree(saved, ignore_errors=True)
        shutil.copytree(work / DIFFUSION_COMPONENT, saved)
    return {"work": work, "summaries": summaries}


def run_gdr_benchmark(
    artifact: Path,
    playlists: str,
    out: Path,
    prompts: list[str],
    relevant: list,
    config: GDRBenchConfig,
) -> dict[str, Any]:
    """Train the variants on a copy of ``artifact`` (only read), score their samples on the test
    ``prompts`` (``relevant``: their relevant ``cf/`` vocabulary indices), compare; writes
    ``out/gdr.json`` and ``out/gdr.md`` and returns the report."""
    import torch

    from semantic_ids.cf import CFModel
    from text2tracks.artifacts import CF_COMPONENT, SEQ2SEQ_COMPONENT
    from text2tracks.diffusion import DiffusionHead, FrozenSeq2SeqEncoder
    from text2tracks.latent_search import build_index
    from text2tracks.modeling import load_seq2seq

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    if config.max_test_prompts:
        prompts, relevant = prompts[: config.max_test_prompts], relevant[: config.max_test_prompts]
    trained = _train_variants(config, Path(artifact), playlists, out)
    item_factors = np.ascontiguousarray(
        CFModel.load(trained["work"] / CF_COMPONENT).item_factors, dtype=np.float32
    )
    index = build_index(item_factors)
    model, tokenizer, _ = load_seq2seq(trained["work"] / SEQ2SEQ_COMPONENT)
    encoder = FrozenSeq2SeqEncoder(model, tokenizer)
    with torch.inference_mode():
        cond = torch.cat(
            [encoder.encode(prompts[i : i + 256]) for i in range(0, len(prompts), 256)]
        )
    n_draw = max(n for _, _, n in config.poolings())
    per_prompt, systems = {}, {}
    for variant in config.variant_list:
        head = DiffusionHead.load(out / "runs" / variant, encoder=encoder)
        latents = sample_test_latents(head, cond, n_draw, config.seed)
        per_prompt[variant] = score_latents(latents, item_factors, relevant, config, index)
        systems[variant] = {name: summarise(m, config) for name, m in per_prompt[variant].items()}
        log(f"{variant}: {json.dumps(systems[variant])}")
    reference = config.variant_list[0]
    comparisons = {
        f"{variant} vs {reference} ({name})": paired_bootstrap_diff(
            per_prompt[variant][name]["hits"],
            per_prompt[reference][name]["hits"],
            config.n_bootstrap,
            config.seed,
        )
        for variant in config.variant_list[1:]
        for name, _, _ in config.poolings()
    }
    report = {
        "systems": systems,
        "comparisons": comparisons,
        "training": trained["summaries"],
        "n_test_prompts": len(prompts),
        "config": asdict(config),
        "artifact": str(artifact),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    (out / "gdr.json").write_text(json.dumps(report, indent=2))
    (out / "gdr.md").write_text(format_table(report, config))
    return report


def format_table(report: dict[str, Any], config: GDRBenchConfig) -> str:
    """The markdown table: Hits@k (95% interval) per variant and pooling, then comparisons."""
    names = [name for name, _, _ in config.poolings()]
    key = f"hits@{config.k}"
    lines = [
        f"latent-only Hits@{config.k} on {report['n_test_prompts']} test prompts "
        f"({config.minutes_per_variant} min of training each, seed {config.seed})",
        "",
        "| variant | steps | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for variant, by_pool in report["systems"].items():
        steps = report["training"][variant]["summary"]["steps"]
        cells = [
            f"{by_pool[n][key]:.3f} [{by_pool[n][key + '_ci'][0]:.3f}, {by_pool[n][key + '_ci'][1]:.3f}]"
            for n in names
        ]
        lines.append(f"| {variant} | {steps} | " + " | ".join(cells) + " |")
    lines += ["", "| comparison | diff | 95% CI | p |", "|---|---|---|---|"]
    for name, c in report["comparisons"].items():
        lines.append(
            f"| {name} | {c['diff']:+.3f} | [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] | {c['p_value']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """``--benchmark-dir``, ``--playlists``, ``--out``, then one flag per config field."""
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench_diffusion_gdr",
        description="Train the diffusion head with MSE alone and with GDR's MSE + InfoNCE on a "
        "finished eval.benchmark folder (into OUT, DIR is only read) and compare their "
        "latent-only Hits@k on its test prompts.",
    )
    add_benchmark_source_flags(parser)
    parser.add_argument("--out", required=True, help="where the heads, gdr.json and gdr.md go")
    add_config_flags(parser, GDRBenchConfig)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    bench_dir, playlists, out = (
        Path(args.pop("benchmark_dir")),
        args.pop("train"),
        Path(args.pop("out")),
    )
    try:
        config = config_from_args(GDRBenchConfig, args)
    except ValueError as err:
        parser.error(str(err))
    if not (bench_dir / "results.json").is_file():
        parser.error(f"{bench_dir} is not a finished eval.benchmark folder (no results.json)")
    source = (bench_dir / "artifact").resolve()
    if out.resolve() == bench_dir.resolve() or source in (out.resolve(), *out.resolve().parents):
        parser.error("--out must not be the benchmark folder or its artifact: both are only read")
    from eval.bench_diffusion import load_benchmark_split

    split = load_benchmark_split(bench_dir, playlists)
    report = run_gdr_benchmark(
        bench_dir / "artifact", playlists, out, split["prompts"], split["relevant"], config
    )
    print(format_table(report, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
