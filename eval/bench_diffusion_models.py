"""The models the diffusion benchmark evaluates, and where they live.

The benchmark never writes into the artifact it is given (``DIR/artifact``). It trains the
diffusion head(s) and the regressor with :func:`training.train_diffusion.train` into a working
copy, ``DIR/diffusion_artifact`` (:func:`prepare_work_artifact`), keeps the better head there,
and then reads that folder only through the public API (:func:`load_recommender`:
``Text2Tracks.from_pretrained``). The regressor baseline, which the API does not serve, is read
by :func:`load_regressor` on the recommender's own seq2seq encoder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from eval.bench_diffusion_config import DiffusionBenchConfig, log
from text2tracks.artifacts import DIFFUSION_COMPONENT, REGRESSOR_COMPONENT, component_writer

WORK_ARTIFACT = "diffusion_artifact"  # DIR/diffusion_artifact: the copy the models train into
RUNS_DIR = "diffusion_runs"  # DIR/diffusion_runs/diffusion-ENCODER: each head trained
TRAINED_COMPONENTS = (DIFFUSION_COMPONENT, REGRESSOR_COMPONENT)


# ------------------------------------------------------------------------------------ the copy


def _link_or_copy(source: str, target: str) -> str:
    """Hard-link a file (no copy of the seq2seq weights or the CF factors), else copy it.

    Safe because every writer of this library replaces a file (writes a temporary, renames it)
    or writes a new component folder, so nothing writes through a link into the original; the
    benchmark's test checks that the original's bytes are unchanged."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


def prepare_work_artifact(source: Path, work: Path) -> Path:
    """A fresh copy of the artifact ``source`` at ``work`` (replacing it) to train into.

    Hidden top-level entries (checkpoints, half-written components) are left out."""
    source, work = Path(source), Path(work)
    if work.resolve() == source.resolve():
        raise ValueError(f"the working copy {work} cannot be the artifact itself")
    tmp = work.with_name(f".{work.name}.tmp")
    for stale in (tmp, work):
        shutil.rmtree(stale, ignore_errors=True)

    def hidden_at_top(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if n.startswith(".")] if Path(directory) == source else []

    shutil.copytree(source, tmp, ignore=hidden_at_top, copy_function=_link_or_copy)
    os.replace(tmp, work)
    return work


# ------------------------------------------------------------------------------------ training


def head_encoders(config: DiffusionBenchConfig) -> list[str]:
    """The head encoders to try: the configured ones, the last ones dropped while their share of
    70% of the budget is under ``min_minutes_per_model``."""
    encoders = config.encoder_list
    head_minutes = 0.7 * config.budget_minutes
    while len(encoders) > 1 and head_minutes / len(encoders) < config.min_minutes_per_model:
        log(f"budget too small for the {encoders[-1]} encoder too; skipping it")
        encoders = encoders[:-1]
    return encoders


def _train_settings(config: DiffusionBenchConfig, work: Path, train_path: str) -> dict[str, Any]:
    """The :class:`~training.diffusion_config.DiffusionTrainConfig` fields every run shares."""
    return dict(
        artifact=str(work),
        playlists=str(train_path),
        hidden=config.hidden,
        n_blocks=config.n_blocks,
        lr=config.lr,
        batch_size=config.train_batch_size,
        eval_every=config.head_eval_every,
        keep_best=config.head_eval_every > 0,
        eval_prompts=min(500, config.max_validation_prompts or 500),
        pool=config.pool,  # validation (and --keep-best) ranks as the benchmark's latent does
        eval_k=config.k,
        teacher_own_weight=config.head_teacher_own_weight,  # the regressor's target follows
        seed=config.seed,
        num_threads=config.num_threads,
        progress=config.progress,
        log_every=50,
        warmup_steps=100,
        fit_fusion=False,  # the benchmark fits the fusion and keeps it in its own folder
    )


def _keep_best_head(work: Path, runs_dir: Path, best: str, summary: dict[str, Any]) -> None:
    """Put the head trained with encoder ``best`` (saved under ``runs_dir``) into ``work``."""
    info = {
        "kind": "diffusion_head",
        "encoder": best,
        "steps": summary["steps"],
        **summary["final_eval"],
    }
    with component_writer(work, DIFFUSION_COMPONENT, info) as tmp:
        shutil.rmtree(tmp)
        shutil.copytree(runs_dir / f"diffusion-{best}", tmp)


def train_models(
    artifact: Path, train_path: str, config: DiffusionBenchConfig, out_dir: Path
) -> dict[str, Any]:
    """Train the head(s) and the regressor under the budget in ``out_dir/diffusion_artifact``.

    Returns ``{"artifact": the trained copy, "best": encoder, "summaries", "encoders_tried"}``.
    """
    from training.train_diffusion import DiffusionTrainConfig, train

    work = prepare_work_artifact(artifact, out_dir / WORK_ARTIFACT)
    encoders = head_encoders(config)
    common = _train_settings(config, work, train_path)
    runs_dir = out_dir / RUNS_DIR
    runs_dir.mkdir(parents=True, exist_ok=True)
    summaries = {}
    for encoder in encoders:
        minutes = 0.7 * config.budget_minutes / len(encoders)
        cfg = DiffusionTrainConfig(
            encoder=encoder,
            epochs=config.head_epochs,
            max_minutes=minutes,
            ema_decay=config.head_ema_decay,
            contrastive_targets=config.head_contrastive_targets,
            latent_target=config.head_latent_target,
            contrastive_negatives=config.head_contrastive_negatives,
            contrastive_weight=config.head_contrastive_weight,
            **common,
        )
        log(f"training the diffusion head ({encoder} encoder, {minutes:.2f} min) in {work}")
        summaries[f"head-{encoder}"] = train(cfg)
        saved = runs_dir / f"diffusion-{encoder}"
        shutil.rmtree(saved, ignore_errors=True)
        shutil.copytree(work / DIFFUSION_COMPONENT, saved)
    key = f"hits@{config.k}"
    best = max(
        encoders, key=lambda e: (summaries[f"head-{e}"]["final_eval"].get(key, 0.0), e == "seq2seq")
    )
    if best != encoders[-1]:  # the last one trained sits in the copy: put the best there
        _keep_best_head(work, runs_dir, best, summaries[f"head-{best}"])
    finals = {e: summaries[f"head-{e}"]["final_eval"] for e in encoders}
    log(f"head encoder on validation: {finals} -> {best}")
    cfg = DiffusionTrainConfig(
        encoder=best,
        regressor=True,
        epochs=config.regressor_epochs,
        max_minutes=0.3 * config.budget_minutes,
        latent_target=config.head_latent_target,  # the yardstick learns what the head writes
        **common,
    )
    log(f"training the regressor ({best} encoder, {cfg.max_minutes:.2f} min)")
    summaries["regressor"] = train(cfg)
    return {"artifact": work, "best": best, "summaries": summaries, "encoders_tried": encoders}


# ------------------------------------------------------------------------------------ reuse


def _head_encoder(artifact: Path) -> str:
    from text2tracks.diffusion import CONFIG_NAME

    payload = json.loads((artifact / DIFFUSION_COMPONENT / CONFIG_NAME).read_text())
    return (payload.get("encoder") or {}).get("kind", "seq2seq")


def reuse_models(artifact: Path, out_dir: Path) -> dict[str, Any]:
    """The head and regressor an earlier run trained, with that run's summaries.

    They are looked for in ``out_dir/diffusion_artifact``, then in ``artifact`` itself (runs
    before the working copy trained there); either is only read. ``ValueError`` when neither
    holds both."""
    artifact, out_dir = Path(artifact), Path(out_dir)
    missing = {}
    for folder in (out_dir / WORK_ARTIFACT, artifact):
        missing[folder] = [c for c in TRAINED_COMPONENTS if not (folder / c).is_dir()]
        if not missing[folder]:
            break
    else:
        lacks = "; ".join(f"{folder} has no {names}" for folder, names in missing.items())
        raise ValueError(f"--reuse-models: {lacks}; run without it first")
    encoder = _head_encoder(folder)
    previous = out_dir / "diffusion.json"
    training = json.loads(previous.read_text()).get("training", {}) if previous.is_file() else {}
    log(f"reusing the trained head ({encoder} encoder) and regressor from {folder}")
    return {
        "artifact": folder,
        "best": encoder,
        "summaries": training.get("summaries", {}),
        "encoders_tried": training.get("encoders_tried", [encoder]),
        "reused": True,
    }


# ------------------------------------------------------------------------------------ loading


def load_recommender(artifact: Path):
    """The product as users get it: ``Text2Tracks.from_pretrained(artifact)``."""
    from text2tracks import Text2Tracks

    recommender = Text2Tracks.from_pretrained(artifact)
    if not recommender.has_diffusion:
        raise ValueError(f"{artifact} has no {DIFFUSION_COMPONENT}/ component to evaluate")
    return recommender


def load_regressor(artifact: Path, recommender):
    """The prompt -> latent regressor of ``artifact``; a seq2seq-conditioned one shares the
    recommender's model as its frozen encoder, as the diffusion head does in the API."""
    from text2tracks.diffusion import CONFIG_NAME, FrozenSeq2SeqEncoder, PromptToLatentRegressor

    directory = Path(artifact) / REGRESSOR_COMPONENT
    payload = json.loads((directory / CONFIG_NAME).read_text())
    encoder_payload = payload.get("encoder") or {}
    encoder = None
    if encoder_payload.get("kind") == "seq2seq":
        encoder = FrozenSeq2SeqEncoder(
            recommender.model,
            recommender.tokenizer,
            max_length=int(encoder_payload.get("max_length", 128)),
            normalize=bool(encoder_payload.get("normalize", True)),
        )
    regressor = PromptToLatentRegressor.load(
        directory, encoder=encoder, map_location=str(recommender.device)
    )
    regressor.eval()
    return regressor
