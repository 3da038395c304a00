"""Settings of the diffusion benchmark (:class:`DiffusionBenchConfig`, one CLI flag per field)
and its log line."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from eval.bench_diffusion_pairs import NEGATIVE_SETS
from training.diffusion_config import NEGATIVES, TARGET_SOURCES, DiffusionTrainConfig


def log(message: str) -> None:
    """One progress line on stderr, stamped with the time."""
    print(f"[bench_diffusion {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DiffusionBenchConfig:
    """Settings of :func:`run_diffusion_benchmark`; each field is one CLI flag (``--snake-case``).

    Attributes:
        budget_minutes: training time of all models together: the head(s) get 70% (split
            between the encoders tried), the regressor 30%.
        encoders: comma-separated encoders of the head to try, in order (``seq2seq``, ``bytes``).
        min_minutes_per_model: an extra encoder is tried only if its share is at least this.
        head_epochs, regressor_epochs: epoch caps (time usually stops training first).
        head_ema_decay: the heads' moving average of weights (``DiffusionTrainConfig.ema_decay``,
            whose default it takes; 0 = none).
        head_eval_every: validate the heads and the regressor every this many steps and keep
            each one's best validation's weights (``DiffusionTrainConfig.keep_best``); 0 = one
            validation at the end, the last weights kept.
        head_contrastive_targets, head_latent_target: what the heads learn from, the playlist's
            own tracks and factor or the title-kNN teacher's list
            (``DiffusionTrainConfig.contrastive_targets`` / ``latent_target``, whose defaults
            they take); the regressor, the head's yardstick, learns the same latent target.
        head_contrastive_negatives, head_contrastive_weight: the heads' contrastive term
            (``DiffusionTrainConfig.contrastive_negatives`` / ``contrastive_weight``, whose
            defaults they take).
        head_teacher_own_weight: the share of the title-kNN teacher's list on the playlist's
            own tracks, for the heads and the regressor
            (``DiffusionTrainConfig.teacher_own_weight``, whose default it takes).
        hidden, n_blocks, lr, train_batch_size: model width/depth and optimiser (both models).
        k: cut-off of the metrics. candidates: beam candidates per prompt (>= k) for the
            generative and hybrid systems (the hybrid settings' ``beam_candidates``); beams: beam
            width (at least ``candidates``; the API's hybrid mode searches with as many beams as
            candidates, so a wider beam is checked against it only when they are equal).
        n_samples: diffusion samples per prompt; latent_k: faiss neighbours per sample.
        pool: how an item's similarities to a prompt's samples are pooled in the latent and
            hybrid systems (``mean``, which measured better for the head, or ``max``).
        mean_samples: samples of the ``latent-only-mean`` system, whose similarities are pooled
            by their mean (the inner product with the samples' mean: an estimate of the
            conditional mean, what a regressor predicts); 0 leaves the system out.
        reuse_models: evaluate the head and regressor an earlier run trained (in
            ``DIR/diffusion_artifact``, or, from runs before it existed, in the benchmark's
            artifact) instead of training them again.
        guidance_weight: w of the head for retrieval (0 = the head's configured default).
        guidance_grid: weights of the negative-prompt curve.
        negative_weights: hybrid mode's ``negative_weight`` values of the second negative-prompt
            curve (at the head's retrieval guidance weight): how hard the fused list, beam
            candidates included, is pushed away from the negative.
        negative_contrasts: hybrid mode's ``negative_contrast`` values of a third curve (at the
            default ``negative_weight``): the negative prompt guiding the beam's view too.
        n_negative_pairs, prompts_per_pair, min_title_playlists: negative-prompt pairs, test
            prompts per pair, and how many training titles a word needs to be considered.
        max_contamination: a pair whose positive playlists are mostly made of the negative's
            items is a near-synonym ("rap" / "hip"), not a contrast: skipped above this share.
        negative_reference: hybrid mode's ``negative_reference`` (``catalogue`` or ``prompt``;
            :class:`text2tracks.hybrid.HybridSettings`).
        negative_set, min_negative_share: which tracks the negative's share counts: ``union``
            (default), every track of the training playlists titled with the negative word, or
            ``characteristic``, those at least ``min_negative_share`` of whose training
            playlists are (:func:`eval.bench_diffusion_pairs.select_negative_pairs`; on the
            development data the positive prompts' lists hold none of those, so the share is 0
            with or without a negative and the target cannot be judged by it).
        strengths, n_seed_tracks, max_inversion_prompts: the inversion curve.
        joint_neighbours: N of the inversion's second pattern definition for Joint@K (a track
            is in the seeds' pattern when among the N of highest cosine to their mean factor).
        joint_hybrid: also measure the edits' Joint@K in hybrid mode (one beam search per
            strength).
        seed_methods: comma-separated ways of turning the seed tracks into the starting latent
            (``mean``, ``fold_in``; see :func:`text2tracks.diffusion.seed_latent`), one inversion
            curve each; the first goes into the hybrid settings saved with the fitted fusion
            (``DIR/fusion.json``).
        edit_method: how the edits combine the seeds and the prompt (``anchor``, the API's
            default, or ``inversion``; :class:`text2tracks.hybrid.HybridSettings`).
        max_validation_prompts: validation prompts used to fit the fusions (0 = all).
        latency_prompts: prompts timed one by one for the sampling cost.
        batch_size: prompts per beam-search / sampling batch.
        n_bootstrap, seed, num_threads (0 = torch's default), progress.
    """

    budget_minutes: float = 10.0
    encoders: str = "seq2seq,bytes"
    min_minutes_per_model: float = 1.0
    head_epochs: int = 2000
    regressor_epochs: int = 200
    head_ema_decay: float = DiffusionTrainConfig.ema_decay  # the training default
    head_eval_every: int = 0
    head_contrastive_targets: str = DiffusionTrainConfig.contrastive_targets
    head_latent_target: str = DiffusionTrainConfig.latent_target
    head_contrastive_negatives: str = DiffusionTrainConfig.contrastive_negatives
    head_contrastive_weight: float = DiffusionTrainConfig.contrastive_weight
    head_teacher_own_weight: float = DiffusionTrainConfig.teacher_own_weight
    hidden: int = 512
    n_blocks: int = 4
    lr: float = 1e-3
    train_batch_size: int = 256
    k: int = 10
    candidates: int = 50
    beams: int = 50
    n_samples: int = 4
    mean_samples: int = 16
    pool: str = "mean"
    latent_k: int = 100
    guidance_weight: float = 0.0
    guidance_grid: str = "1,2,3,5,7.5"
    negative_weights: str = "0.5,1,2,4,8"
    negative_contrasts: str = "0.25,0.5,1,2"
    n_negative_pairs: int = 6
    prompts_per_pair: int = 30
    min_title_playlists: int = 5
    max_contamination: float = 0.6
    negative_set: str = "union"
    negative_reference: str = "catalogue"
    min_negative_share: float = 0.5
    strengths: str = "0,0.25,0.5,0.6,0.7,0.8,0.9,1"
    seed_methods: str = "mean,fold_in"
    edit_method: str = "anchor"
    n_seed_tracks: int = 5
    max_inversion_prompts: int = 200
    joint_neighbours: int = 200
    joint_hybrid: bool = True
    max_validation_prompts: int = 1000
    latency_prompts: int = 20
    batch_size: int = 32
    n_bootstrap: int = 1000
    seed: int = 0
    num_threads: int = 0
    progress: bool = True
    reuse_models: bool = False

    def __post_init__(self) -> None:
        if not self.budget_minutes > 0:
            raise ValueError(f"budget_minutes must be > 0, got {self.budget_minutes}")
        bad = [e for e in self.encoder_list if e not in ("seq2seq", "bytes")]
        if bad or not self.encoder_list:
            raise ValueError(f"encoders must list 'seq2seq' and/or 'bytes', got {self.encoders!r}")
        for name in (
            "head_epochs",
            "regressor_epochs",
            "hidden",
            "n_blocks",
            "train_batch_size",
            "k",
            "candidates",
            "beams",
            "n_samples",
            "latent_k",
            "n_negative_pairs",
            "prompts_per_pair",
            "min_title_playlists",
            "n_seed_tracks",
            "joint_neighbours",
            "batch_size",
            "latency_prompts",
            "n_bootstrap",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in (
            "max_inversion_prompts",
            "max_validation_prompts",
            "head_eval_every",
            "num_threads",
            "seed",
            "mean_samples",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if self.pool not in ("max", "mean"):
            raise ValueError(f"pool must be 'max' or 'mean', got {self.pool!r}")
        if self.candidates < self.k:
            raise ValueError(f"candidates ({self.candidates}) must be >= k ({self.k})")
        if self.latent_k < self.k:
            raise ValueError(f"latent_k ({self.latent_k}) must be >= k ({self.k})")
        self._check_choices()
        if not 0 < self.min_negative_share <= 1:
            raise ValueError(f"min_negative_share must be in (0, 1], got {self.min_negative_share}")
        if not 0 < self.max_contamination <= 1:
            raise ValueError(f"max_contamination must be in (0, 1], got {self.max_contamination}")
        self._check_head_training()
        if not (self.lr > 0 and self.guidance_weight >= 0 and self.min_minutes_per_model >= 0):
            raise ValueError("lr must be > 0, guidance_weight and min_minutes_per_model >= 0")
        if not self.grid or any(w <= 0 for w in self.grid):
            raise ValueError(
                f"guidance_grid must hold positive weights, got {self.guidance_grid!r}"
            )
        for name in ("negative_weights", "negative_contrasts"):
            values = _split_floats(getattr(self, name), name)
            if not values or any(w < 0 for w in values):
                raise ValueError(f"{name} must hold weights >= 0, got {getattr(self, name)!r}")
        if not self.strength_list or any(not 0 <= s <= 1 for s in self.strength_list):
            raise ValueError(f"strengths must lie in [0, 1], got {self.strengths!r}")

    def _check_choices(self) -> None:
        """The settings that name one of a fixed set of choices."""
        from text2tracks.hybrid import EDIT_METHODS, NEGATIVE_REFERENCES, SEED_METHODS

        choices = {
            "negative_set": NEGATIVE_SETS,
            "negative_reference": NEGATIVE_REFERENCES,
            "edit_method": EDIT_METHODS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        methods = self.seed_method_list
        if not methods or len(set(methods)) != len(methods) or set(methods) - set(SEED_METHODS):
            raise ValueError(
                f"seed_methods must list distinct methods of {SEED_METHODS}, "
                f"got {self.seed_methods!r}"
            )

    def _check_head_training(self) -> None:
        """The heads' training settings passed to ``DiffusionTrainConfig``."""
        heads = {"head_contrastive_negatives": NEGATIVES}
        heads.update(
            dict.fromkeys(("head_contrastive_targets", "head_latent_target"), TARGET_SOURCES)
        )
        for name, choices in heads.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        if not 0 <= self.head_ema_decay < 1:
            raise ValueError(f"head_ema_decay must be in [0, 1), got {self.head_ema_decay}")
        if not self.head_contrastive_weight >= 0:
            raise ValueError(
                f"head_contrastive_weight must be >= 0, got {self.head_contrastive_weight}"
            )
        if not 0 <= self.head_teacher_own_weight <= 1:
            raise ValueError(
                f"head_teacher_own_weight must be in [0, 1], got {self.head_teacher_own_weight}"
            )

    @property
    def encoder_list(self) -> list[str]:
        return [e.strip() for e in self.encoders.split(",") if e.strip()]

    @property
    def grid(self) -> list[float]:
        return [float(w) for w in _split_floats(self.guidance_grid, "guidance_grid")]

    @property
    def negative_weight_list(self) -> list[float]:
        return _split_floats(self.negative_weights, "negative_weights")

    @property
    def negative_contrast_list(self) -> list[float]:
        return _split_floats(self.negative_contrasts, "negative_contrasts")

    @property
    def seed_method_list(self) -> list[str]:
        return [m.strip() for m in self.seed_methods.split(",") if m.strip()]

    @property
    def strength_list(self) -> list[float]:
        return [float(s) for s in _split_floats(self.strengths, "strengths")]


def _split_floats(text: str, name: str) -> list[float]:
    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError as err:
        raise ValueError(f"{name} must be comma-separated numbers, got {text!r}") from err


def add_benchmark_source_flags(parser) -> None:
    """``--benchmark-dir`` (a finished ``eval.benchmark`` folder, only read) and the
    ``--playlists`` it was run on: the source of every diffusion benchmark."""
    from text2tracks.config_flags import add_flag

    parser.add_argument(
        "--benchmark-dir", required=True, help="output folder of python -m eval.benchmark"
    )
    add_flag(
        parser,
        "--playlists",
        aliases=("--train",),
        dest="train",
        required=True,
        help="the --playlists of that benchmark",
    )
