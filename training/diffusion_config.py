"""What ``text2tracks train-diffusion`` can be told: :class:`DiffusionTrainConfig`, one flag per
field (:func:`text2tracks.config_flags.add_config_flags`). ``training.train_diffusion``
re-exports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from text2tracks.options import check_integer_fields
from text2tracks.rerank import FUSION_METRICS as _FUSION_METRICS
from training.seq2seq_config import LOOP_COUNTS, TARGET_SOURCES  # shared with the seq2seq

_ENCODERS = ("seq2seq", "bytes")
_PRECISIONS = ("no", "fp16", "bf16")
_FUSION_KINDS = ("fixed", "gated", "mixture")  # text2tracks.hybrid.FUSION_KINDS
_POOLS = ("max", "mean")
NEGATIVES = ("in_batch", "full")  # text2tracks.contrastive.NEGATIVES (which imports torch)


@dataclass(frozen=True)
class DiffusionTrainConfig:
    """Everything the script can be told; each field is one flag (``--snake-case``).

    Attributes:
        artifact, playlists: the artifact built by ``build-ids`` (and trained seq2seq for
            ``--encoder seq2seq``) and the playlists it was built from.
        encoder: ``seq2seq`` (frozen, from ``ART/seq2seq``) or ``bytes`` (trained jointly).
        regressor: train :class:`PromptToLatentRegressor` instead of the diffusion head.
        hidden, n_blocks, time_embed_dim, dropout, beta_schedule, prediction_type,
            cond_drop_prob, guidance_weight, ddim_steps: see :class:`DiffusionHeadConfig`.
        contrastive_weight, contrastive_temperature: GDR's objective (head only; the regressor
            keeps ``regressor_loss``): the diffusion MSE plus ``contrastive_weight`` times an
            InfoNCE term between the predicted x_0, read as a retrieval query (inner product
            with the CF item factors, as faiss ranks), and the playlist's tracks, at temperature
            ``contrastive_temperature``; 0 = MSE alone (with ``--prediction-type epsilon``:
            the head as it was first trained). Needs ``prediction_type`` ``sample`` (x_0
            prediction, GDR; the default) or ``v_prediction``.
        contrastive_negatives: ``in_batch`` (one track drawn per playlist of the batch; the
            other playlists' tracks are the negatives) or ``full`` (every catalogue track).
        contrastive_targets, latent_target: what the head learns from (``playlist``: the
            playlist's own tracks and ALS factor; ``teacher``: the title-kNN teacher's list for
            its prompt, as the seq2seq learns; :mod:`training.diffusion_teacher`): the
            contrastive term's positives, and the x_0 target (the ridge fold-in of the
            teacher's ``teacher_fold_in_top`` best tracks). ``latent_target`` applies to the
            regressor too. Both ``teacher`` by default: on the development data the head's
            latent-only Hits@10 went from 0.257 / 0.246 to 0.313 / 0.313 (two seeds); the
            fold-in target alone, with the playlist's tracks as positives, scored 0.220.
        teacher_top_items, teacher_own_weight, teacher_fold_in_top: the teacher's list length,
            the share of its probability on the playlist's own tracks (as the seq2seq's
            ``TrainConfig``), and how many of its best tracks the x_0 target folds in.
        seed_conditioning, seed_prob, max_seed_tracks: MO-DiT (head only): the head's condition
            also reads a seed set (:class:`DiffusionHeadConfig`'s ``seed_conditioning``). Per
            epoch, a playlist (with two tracks or more) carries seeds with probability
            ``seed_prob``: 1 .. ``max_seed_tracks`` of its tracks (log-uniform), its first ones
            or (30%) a random subset, its title dropped 30% of the time
            (:func:`text2tracks.seed_draw.draw_seeds`, as the seq2seq's training draws them).
            The target stays the playlist's CF factor; the contrastive term's positives leave
            the seeds out (:mod:`training.diffusion_seeds`). ``seed_prob`` is read only with
            ``seed_conditioning``.
        pool: how an item's inner products with a prompt's samples are pooled (``max`` or
            ``mean``), in validation and in the hybrid settings saved with the fusion.
        regressor_loss: ``mse`` or ``cosine`` (regressor only).
        byte_dim, byte_layers, byte_heads, byte_max_length: the byte encoder's shape.
        lr, weight_decay, batch_size, grad_accum, epochs, max_steps, max_minutes, warmup_steps:
            AdamW with linear warmup then cosine decay over the run's horizon (the larger of the
            fraction of steps and of ``max_minutes`` spent); stop at the first limit reached.
        eval_every, eval_prompts, eval_k, eval_samples: validation every N steps (0 = at the
            end only) on up to ``eval_prompts`` validation playlists, Hits@eval_k from
            ``eval_samples`` latents per prompt (pooled by ``pool``).
        ema_decay: keep an exponential moving average of the weights (diffusers' ``EMAModel``,
            this maximum decay; 0 = off): validation scores the average and the run saves it
            (:mod:`training.final_weights`).
        keep_best: at the end, restore the weights of the validation with the best
            Hits@eval_k (the last one included; needs ``eval_every`` > 0 to have a choice), as
            transformers' ``load_best_model_at_end``; off: the last weights (the default: on
            the development data neither this nor ``ema_decay`` moved test latent-only Hits@10,
            README "The diffusion head").
        checkpoint_every, checkpoint_dir, keep_checkpoints, resume: see the module docstring.
        num_threads: torch CPU threads (0 = this process's CPUs / local processes).
        mixed_precision: passed to ``Accelerator`` (no / fp16 / bf16).
        seed: seeds the initialisation, the noise and the order of examples.
        log_every: write the mean train loss every this many steps.
        progress: show a tqdm bar (main process only).
        fit_fusion, fusion_prompts, fusion_kind, fusion_metric, fusion_candidates,
            fusion_latent_k, fusion_samples: the hybrid fusion fitted after training (see the
            module docstring); the last three are stored as the API's defaults.
        fusion_like_rounds: also fit the fusion of queries that carry liked tracks
            (``fusion.with_likes``, what a multi-turn session sends after a like) on hybrid-mode
            sessions of this many rounds over the same validation prompts
            (:func:`text2tracks.session.fit_like_fusion`); 0: not (default 3).
        fusion_seed_prompts: also fit the fusion of prompts that continue seed tracks
            (``fusion.with_seeds``) on this many continuations cut from the validation
            prompts (:func:`text2tracks.seed_fusion.continuation_examples`); 0: not.
    """

    artifact: str
    playlists: str
    encoder: str = field(default="seq2seq", metadata={"choices": _ENCODERS})
    regressor: bool = False
    hidden: int = 512
    n_blocks: int = 4
    time_embed_dim: int = 128
    dropout: float = 0.0
    beta_schedule: str = field(
        default="squaredcos_cap_v2",
        metadata={"choices": ("squaredcos_cap_v2", "linear", "scaled_linear")},
    )
    prediction_type: str = field(
        default="sample", metadata={"choices": ("epsilon", "v_prediction", "sample")}
    )
    cond_drop_prob: float = 0.1
    guidance_weight: float = 2.0
    # 5 DDIM steps, not 20: on two 16.8-minute heads (test split, 646 prompts) latent-only
    # Hits@10 0.251 / 0.243 -> 0.265 / 0.252 with 4 samples, 0.271 / 0.268 -> 0.274 / 0.271 with
    # 16, hybrid level (0.395 / 0.401 -> 0.401 / 0.399), at a quarter of the sampling cost (hybrid
    # 52 -> 32 ms a prompt at batch 64, 2.5x -> 1.5x generative with one model). On validation
    # prompts 3-20 steps score within 0.005 of each other. README "The diffusion head".
    ddim_steps: int = 5
    # GDR's objective is the default: on the development data's test split, equal budget
    # (4 min), latent-only Hits@10 0.158 -> 0.211 (max of 4), 0.172 -> 0.255 (mean of 4),
    # 0.193 -> 0.263 (mean of 16) against epsilon-prediction MSE alone (python -m
    # eval.bench_diffusion_gdr; paired bootstrap p < 0.001 each). Mean pooling of the samples
    # is the default too (max of 4 0.211, mean of 4 0.255, same run), as in HybridSettings.
    contrastive_weight: float = 1.0
    contrastive_temperature: float = 0.05
    contrastive_negatives: str = field(default="in_batch", metadata={"choices": NEGATIVES})
    contrastive_targets: str = field(default="teacher", metadata={"choices": TARGET_SOURCES})
    latent_target: str = field(default="teacher", metadata={"choices": TARGET_SOURCES})
    teacher_top_items: int = 200
    teacher_own_weight: float = 0.3
    teacher_fold_in_top: int = 100
    seed_conditioning: bool = False
    seed_prob: float = 0.5
    max_seed_tracks: int = 100
    pool: str = field(default="mean", metadata={"choices": _POOLS})
    regressor_loss: str = field(default="mse", metadata={"choices": ("mse", "cosine")})
    byte_dim: int = 128
    byte_layers: int = 2
    byte_heads: int = 4
    byte_max_length: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 256
    grad_accum: int = 1
    epochs: int = 50
    max_steps: int = 0
    max_minutes: float = 0.0
    warmup_steps: int = 200
    mixed_precision: str = field(default="no", metadata={"choices": _PRECISIONS})
    eval_every: int = 1000
    eval_prompts: int = 1000
    eval_k: int = 10
    eval_samples: int = 4
    ema_decay: float = 0.0
    keep_best: bool = False
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    keep_checkpoints: int = 2
    resume: str | None = field(
        default=None, metadata={"argparse": {"nargs": "?", "const": "latest", "metavar": "DIR"}}
    )
    seed: int = 0
    num_threads: int = 0
    log_every: int = 100
    progress: bool = True
    fit_fusion: bool = True
    fusion_prompts: int = 300
    fusion_kind: str = field(default="fixed", metadata={"choices": _FUSION_KINDS})
    fusion_metric: str = field(default="hits", metadata={"choices": _FUSION_METRICS})
    fusion_candidates: int = 50
    fusion_latent_k: int = 100
    fusion_samples: int = 4
    # the fusion of liked rounds: on the default pair's head, 646 test sessions, cumulative
    # recall at round 5 0.084 against 0.071 for the round-0 blend alone and 0.073 for text
    # re-query (p < 0.001 each; README "Multi-turn refinement")
    fusion_like_rounds: int = 3
    # the fusion of continuations (issue 13; README "Seeds in hybrid mode")
    fusion_seed_prompts: int = 300

    def __post_init__(self) -> None:
        if self.encoder not in _ENCODERS:
            raise ValueError(f"encoder must be one of {_ENCODERS}, got {self.encoder!r}")
        if self.mixed_precision not in _PRECISIONS:
            raise ValueError(
                f"mixed_precision must be one of {_PRECISIONS}, got {self.mixed_precision!r}"
            )
        positive = (
            "batch_size",
            "grad_accum",
            "epochs",
            "eval_k",
            "eval_samples",
            "keep_checkpoints",
            "log_every",
            "fusion_prompts",
            "fusion_candidates",
            "fusion_latent_k",
            "fusion_samples",
            "max_seed_tracks",
            "teacher_top_items",
            "teacher_fold_in_top",
        )
        check_integer_fields(
            self,
            positive,
            (*LOOP_COUNTS, "num_threads", "fusion_like_rounds", "fusion_seed_prompts"),
        )
        for name in ("contrastive_targets", "latent_target"):
            if getattr(self, name) not in TARGET_SOURCES:
                raise ValueError(
                    f"{name} must be one of {TARGET_SOURCES}, got {getattr(self, name)!r}"
                )
        if not 0.0 <= self.teacher_own_weight <= 1.0:
            raise ValueError(
                f"teacher_own_weight must be in [0, 1], got {self.teacher_own_weight!r}"
            )
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay!r}")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.max_minutes >= 0):
            raise ValueError("lr must be > 0, weight_decay and max_minutes >= 0")
        if self.fusion_kind not in _FUSION_KINDS:
            raise ValueError(
                f"fusion_kind must be one of {_FUSION_KINDS}, got {self.fusion_kind!r}"
            )
        if self.fusion_metric not in _FUSION_METRICS:
            raise ValueError(
                f"fusion_metric must be one of {_FUSION_METRICS}, got {self.fusion_metric!r}"
            )
        if self.contrastive_negatives not in NEGATIVES:
            raise ValueError(
                f"contrastive_negatives must be one of {NEGATIVES}, "
                f"got {self.contrastive_negatives!r}"
            )
        if not 0.0 <= self.seed_prob <= 1.0:
            raise ValueError(f"seed_prob must be in [0, 1], got {self.seed_prob!r}")
        if self.seed_conditioning and self.regressor:
            raise ValueError("seed_conditioning is for the diffusion head, not --regressor")
        if self.pool not in _POOLS:
            raise ValueError(f"pool must be one of {_POOLS}, got {self.pool!r}")
        # The model configs validate their own fields (the contrastive ones included, for the
        # head: a regressor run trains no contrastive term and only checks them here).
        self.head_config(1, 1)
        if self.regressor:
            self.regressor_config(1, 1)

    def head_config(self, latent_dim: int, cond_dim: int):
        from text2tracks.diffusion import DiffusionHeadConfig

        return DiffusionHeadConfig(
            latent_dim=latent_dim,
            cond_dim=cond_dim,
            hidden=self.hidden,
            n_blocks=self.n_blocks,
            time_embed_dim=self.time_embed_dim,
            dropout=self.dropout,
            beta_schedule=self.beta_schedule,
            prediction_type=self.prediction_type,
            cond_drop_prob=self.cond_drop_prob,
            guidance_weight=self.guidance_weight,
            ddim_steps=self.ddim_steps,
            contrastive_weight=self.contrastive_weight,
            contrastive_temperature=self.contrastive_temperature,
            seed_conditioning=self.seed_conditioning,
            max_seed_tracks=self.max_seed_tracks,
        )

    def regressor_config(self, latent_dim: int, cond_dim: int):
        from text2tracks.diffusion import RegressorConfig

        return RegressorConfig(
            latent_dim=latent_dim,
            cond_dim=cond_dim,
            hidden=self.hidden,
            n_blocks=max(1, self.n_blocks // 2),
            dropout=self.dropout or 0.1,
            loss=self.regressor_loss,
        )

    def byte_config(self):
        from text2tracks.diffusion import ByteEncoderConfig

        return ByteEncoderConfig(
            dim=self.byte_dim,
            n_layers=self.byte_layers,
            n_heads=self.byte_heads,
            max_length=self.byte_max_length,
        )

    @property
    def component(self) -> str:
        return "latent_regressor" if self.regressor else "diffusion"


def lr_factor(step: int, elapsed_s: float, config: DiffusionTrainConfig, total_steps: int) -> float:
    """Linear warmup, then cosine to 0 over the horizon (steps or ``max_minutes``, the larger
    fraction spent). Not transformers' schedulers: they need the step count up front, a time
    budget does not give one."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    if config.max_minutes:
        progress = max(progress, elapsed_s / (60.0 * config.max_minutes))
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
