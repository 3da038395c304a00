"""What ``text2tracks train`` can be told (:class:`TrainConfig`, with the model's
:class:`~text2tracks.modeling.ModelConfig`) and the learning-rate schedule it describes.

Its defaults are the team's recommended configuration; every field is one flag
(:func:`text2tracks.config_flags.add_config_flags`). ``training.train_seq2seq`` re-exports both.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from text2tracks.cf_targets import CF_SOURCES
from text2tracks.id_embedding_init import ID_INITS, check_id_init
from text2tracks.modeling import ModelConfig
from text2tracks.options import check_integer_fields
from text2tracks.seed_draw import DEFAULT_MAX_SEED_TRACKS, SeedDraw
from text2tracks.seed_embedding import (
    DEFAULT_SEED_ENCODING,
    SEED_ENCODINGS,
    check_seed_encoding,
    default_seed_encoding,
)
from text2tracks.seed_prior import SEED_PRIOR_INITS, SEED_PRIORS

_SCHEDULES = ("linear", "cosine", "constant")
# The learning rate of a fine-tuned MiniLM encoder (the decoder keeps ``lr``): at 3e-5 it learnt
# too slowly in a 30-minute screen (validation Hits@10 0.370 against 0.404 at 1e-4), and at the
# decoder's 2e-3 it forgot its pretraining (0.22).
MINILM_ENCODER_LR = 1e-4
# the training loop's counts (>= 0) that both trainers' configs have
LOOP_COUNTS = ("max_steps", "warmup_steps", "eval_every", "eval_prompts", "checkpoint_every")
_PRECISIONS = ("auto", "no", "fp16", "bf16")
TARGET_SOURCES = ("playlist", "teacher")
_SEED_FIELDS = {
    "prob": "seed_prob",
    "max_seeds": "max_seed_tracks",
    "title_drop": "seed_title_drop",
    "random_subset": "seed_random_subset",
    "next_window": "seed_next_window",
}


# the options that need the "nodes" seed prior over the seeds' factors, and what each does
_NODES_PRIOR_OPTIONS = {
    "seed_prior_learn_factors": "trains the nodes prior's item factors",
    "seed_prior_list_weight": "trains the nodes prior as a retriever of the seeds' playlist",
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything the training script can be told; each field is one flag.

    Attributes:
        artifact: folder written by ``text2tracks build-ids``; the model lands in its ``seq2seq/``.
        playlists: the playlists the artifact was built from (re-split as recorded there).
        model: how to build the model (``--base``, ``--d-model``, ... ``--lora``).
        lr, weight_decay: AdamW settings (no decay on norms and biases).
        max_grad_norm: clip the gradients' global norm to this before each optimizer step
            (0, the default: no clipping, as the recorded runs trained).
        encoder_lr: the learning rate of the encoder's own parameters (0: the recommended
            one, :meth:`resolved_encoder_lr`: ``lr`` for the T5 trained from scratch,
            ``MINILM_ENCODER_LR`` (1e-4) for a fine-tuned MiniLM, which ``lr`` would wreck).
        batch_size, grad_accum: examples per device per forward pass, and forward passes per
            optimizer step.
        epochs, max_steps, max_minutes: stop at whichever comes first (0 = no limit for steps and
            minutes). ``max_minutes`` counts wall time from the start of the loop, validation
            included; the run saves and exits when it is spent.
        warmup_steps, schedule: linear warmup, then linear or cosine decay to 0 (or constant) over
            the run's horizon: the fraction of steps or of ``max_minutes`` spent, whichever is
            larger, so that a time-budgeted run decays to 0 when its time runs out.
        mixed_precision: passed to ``Accelerator`` (no / fp16 / bf16); ``auto`` (the default) is
            bf16 autocast of the training steps on a CPU with native bf16 arithmetic
            (AVX512-BF16 or AMX: 1.2x the steps in a 20-minute run, test Hits@10 within
            noise of fp32) and fp32 elsewhere, GPUs included
            (:func:`training.launch.resolve_mixed_precision`).
        eval_every: validate every this many steps (0 = only at the end). A pass over 500
            prompts at beam 50 takes about 15 s on one CPU thread, as long as ~80 training
            steps of the default model, and counts against ``max_minutes``: every 500 steps it
            took 12-13% of a 20-minute run, every 2,000 under 4%.
        eval_prompts: validation playlists used (0 = all of them).
        eval_k, num_beams: Hits@eval_k with this beam width (None = the API's default,
            ``text2tracks.modeling.DEFAULT_NUM_BEAMS``, or eval_k if larger).
        checkpoint_every: checkpoint every this many steps (0 = only at the end).
        checkpoint_dir: where checkpoints go (default ``ARTIFACT/.checkpoints``).
        keep_checkpoints: older checkpoints beyond this many are deleted.
        ema_decay: keep an exponential moving average of the trainable weights (diffusers'
            ``EMAModel``, this maximum decay; 0 = off): validation scores the average and the
            run saves it (:mod:`training.final_weights`).
        keep_best: at the end, restore the weights of the validation with the best
            Hits@eval_k (the last one included), as transformers' ``load_best_model_at_end``;
            with ``ema_decay``, the best average.
        resume: ``"latest"`` (newest in checkpoint_dir) or a checkpoint folder.
        init_from: an artifact folder whose trained seq2seq (member ``member``'s, or member
            ``member mod n``) the run starts from instead of a fresh model: same semantic IDs,
            same model flags (:mod:`training.warm_start`). The optimizer, the schedule and any
            seed parts start fresh. ``None`` (the default): a fresh model.
        targets_per_playlist, popularity_power: see :class:`text2tracks.data.Seq2SeqPairs`.
        targets_per_prompt_group: keep up to this many examples of one playlist together in a
            batch and run the encoder once per distinct prompt of the batch, its output shared
            by the decoder rows (:func:`grouped_forward`); 1 = off (one encoder row per example).
            Only the order of an epoch's examples changes, not which ones are drawn.
        list_loss_weight, list_loss_negatives: add this weight times a sequence-level list loss
            to the cross-entropy (0 = off): a sampled softmax of each example's label sequence
            against up to ``list_loss_negatives`` label sequences of the batch's other prompts,
            scored by the decoder on its prompt (:func:`grouped_forward`; needs
            ``targets_per_prompt_group`` > 1). One more decoder pass per step.
        soft_target_weight: in [0, 1]; with w > 0 the loss is ``(1 - w) * ce + w * soft_ce``,
            ``soft_ce`` the cross-entropy against the target list's exact distribution over each
            ID level's code given the drawn target's prefix
            (:mod:`text2tracks.soft_targets`: the same expected gradient as the drawn targets',
            with less variance; an example with seeds keeps its own target). Not with the list
            loss.
        length_bucket_window: sort prompts by length within windows of this many batches, so
            that little padding is encoded (0 = off). The batches of a window are shuffled.
        target_source: what each playlist's examples are drawn from: ``"playlist"`` its own
            tracks (see ``targets_per_playlist``); ``"teacher"`` the title-kNN teacher's list for
            its prompt (:func:`text2tracks.teacher.teacher_targets`), ``targets_per_playlist``
            draws with replacement per epoch.
        teacher_top_items, teacher_own_weight, teacher_leave_out: the teacher's list length, the
            share of probability kept on the playlist's own tracks, and whether the playlist's
            own vote is removed from its teacher scores.
        artist_prompts: add one example per catalogue artist to every epoch, its name as the
            prompt and its tracks as the targets (:mod:`training.artist_prompts`; needs
            ``target_source="teacher"`` and the catalogue's ``semantic_ids/tracks.json``).
        artist_min_count, artist_top_items: an artist takes part when its tracks are held this
            many times in the training playlists; its targets are its most-held tracks, at most
            ``artist_top_items``.
        seed_prob: the share of training playlists that carry seed tracks in an epoch (0 = off:
            title-only prompts, exactly the examples of a run before seeds existed). A playlist
            with seeds reads its title (or not, ``seed_title_drop``) and 1 .. ``max_seed_tracks``
            of its tracks (log-uniform; its first ones, or a random subset with probability
            ``seed_random_subset``) as their semantic-ID tokens, and its targets are its other
            tracks: its own, also with ``target_source="teacher"`` (the teacher answers the
            title only), drawn uniformly (``popularity_power`` applies to the rest). Validation
            prompts are drawn the same way, once (:mod:`text2tracks.seed_draw`).
        max_seed_tracks: the most seeds a prompt carries, in training and (recorded in
            ``train_config.json``) at inference, where the most recent are kept.
        seed_title_drop, seed_random_subset: with seeds, the probability of a prompt without
            title and of seeds drawn as a random subset rather than the first tracks.
        seed_next_window: with seeds drawn as a prefix, only the next this-many tracks are its
            targets (1: TIGER's next item); 0: any other track of the playlist.
        seed_cf_weight: with seeds, the probability that a target is drawn from the playlist's
            CF fold-in list (:mod:`text2tracks.cf_targets`: the items the ALS item factors rank
            highest for the whole playlist, in proportion to their scores) instead of its own
            other tracks; 0: own tracks only.
        seed_cf_top: the length of that list.
        seed_cf_source: where that list comes from: ``"als"``, the ALS fold-in above, or
            ``"cooccurrence"``, the items that co-occur with the playlist's tracks in the other
            training playlists (item-kNN cosine, :func:`text2tracks.cf_targets.cooccurrence_lists`).
        seed_encoding: how the encoder reads a seed: ``"item"``, one position whose embedding
            is the sum of its ID tokens' (:mod:`text2tracks.seed_embedding`); ``"direct"``, the
            same vector written straight into the encoder's output (its layers read the title
            only: cheap seeds for a pretrained encoder); or ``"codes"``, its ``depth`` ID tokens
            (TIGER); ``"auto"`` (the default): ``"direct"`` under MiniLM, ``"item"`` under
            the T5 (:func:`text2tracks.seed_embedding.default_seed_encoding`). Recorded with
            the model.
        seed_factors: seeds also read their CF item factors (the artifact's ``cf/``) through
            a learned projection (:mod:`text2tracks.seed_factors`). ``None`` (the default): on
            wherever seeds are read as one token each (``seed_prob`` > 0, ``seed_encoding``
            ``"item"`` or ``"direct"``); True asks for it and needs those; False turns it off.
        seed_prior: the decoder's ID-token scores also get a learned bilinear prior between the
            mean of the seeds' CF factors and the IDs' factors (:mod:`text2tracks.seed_prior`):
            ``"tokens"``, one fitted vector per ID token; ``"nodes"``, exact per item (each
            step adds its level's share for the prefix's children); ``"off"``; ``"auto"`` (the
            default): ``"nodes"`` wherever the seeds read factors (or ``seed_prior_prompt``
            asks for the prior) and the model has an ID-only output layer (not LoRA), else
            ``"off"``.
        seed_prior_prompt: the seed prior's context also reads the prompt: a learned projection
            of its mean encoder state (title and seeds) is added to the seeds' mean factors, so
            title-only prompts get a prior too. A model without seed factors gets this prior
            over the catalogue's CF factors (the artifact's ``cf/``). Off by default: ahead in
            20-minute screens, behind at 60 minutes (README, "Seed tracks").
        seed_prior_count_scale: the seeds' mean factors in the prior's context are scaled by a
            learned factor per bucket of the seed count (1, 2-3, 4-7, ...; each starts at 1),
            so the prior can weigh more against the decoder's own scores when there are many
            seeds. Needs seed factors and a seed prior.
        seed_prior_learn_factors: the ``"nodes"`` prior's item factors (seeds' and nodes'
            alike) train too: the CF factors plus a learned change that starts at zero and
            decays toward it with the weight decay. Needs seed factors and the ``"nodes"``
            prior.
        seed_prior_dim: 0 (the default): the seed prior reads the artifact's CF factors, as the
            seeds' input does; N: its own ALS of N factors, fitted at the start of training with
            the artifact's recorded CF settings on the same training playlists
            (:mod:`text2tracks.prior_factors`) and saved with the model. Needs seed factors and
            a seed prior.
        seed_prior_init: how the seed prior's ``W`` starts: ``"zero"`` (the default), the model
            as without a prior; ``"foldin"``, a linear fold-in of the seeds' mean factors over
            the prior's item factors (:func:`text2tracks.seed_prior.foldin_weight`).
        seed_prior_freeze_weight: the seed prior's ``W`` stays as it starts (needs
            ``seed_prior_init="foldin"``: a fixed linear fold-in, which the count scale and
            learned factors still adjust).
        seed_prior_list_weight: weight of the seed prior's own list loss beside the decoder's
            (0, the default: off): the prior's whole-ID scores ``m^T W f_i`` over the catalogue,
            softmaxed with the seeds left out, should rank each seeded example's target first
            (:mod:`text2tracks.seed_prior_loss`). Needs the ``"nodes"`` prior over seed factors.
        id_init: how the semantic-ID tokens' embeddings start: ``"codebooks"``, a fixed random
            projection of the residual k-means centroids each code stands for
            (:mod:`text2tracks.id_embedding_init`; where the artifact has them: IDs built by
            build-ids; the ablation's random, atomic and content IDs have none and start
            random), or ``"random"``, the model's own initialisation.
        normalize_prompts: apply :func:`text2tracks.data.normalize_prompt`.
        subword_dropout: BPE-dropout of the training prompts: each epoch re-segments them,
            skipping each merge of the subword tokenizer with this probability
            (:class:`text2tracks.prompt_tokens.SubwordDropout`; seeded by ``seed`` and the
            epoch). 0: the tokenizer's own segmentation. Needs ``model.tokenizer="subword"``
            and the T5 encoder; validation and inference always read the tokenizer's own.
        num_workers: DataLoader workers (0: batches built in the main process; they are cheap).
        num_threads: torch CPU threads (0 = all CPUs of this process divided by local processes).
        log_every: write the mean train loss every this many steps.
        seed: seeds the model initialisation, the dropout and the draw of examples.
        members: how many models to train for the ensemble that the API decodes as one
            (:mod:`text2tracks.ensemble`). On one machine they train at the same time, one process
            each, ``num_threads`` (default: the CPUs divided among them) each, for the same
            ``max_minutes``; member ``i`` draws with ``seed + i`` and is saved as
            ``seq2seq_i/`` (member 0 as ``seq2seq/``). Under a multi-process launch
            (``accelerate launch``) they train one after the other.
        member: which member this run trains (set by the run that trains them all; give it to
            train or resume one member by itself).
        progress: show a tqdm bar (main process only).
    """

    artifact: str
    playlists: str
    model: ModelConfig = field(default_factory=ModelConfig)
    lr: float = 2e-3
    encoder_lr: float = 0.0
    batch_size: int = 128
    grad_accum: int = 1
    epochs: int = 100
    max_steps: int = 0
    max_minutes: float = 0.0
    warmup_steps: int = 200
    weight_decay: float = 0.01
    max_grad_norm: float = 0.0
    schedule: str = field(default="linear", metadata={"choices": _SCHEDULES})
    mixed_precision: str = field(default="auto", metadata={"choices": _PRECISIONS})
    eval_every: int = 2000
    eval_prompts: int = 500
    eval_k: int = 10
    num_beams: int | None = None
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    keep_checkpoints: int = 2
    ema_decay: float = 0.0
    keep_best: bool = False
    resume: str | None = field(
        default=None, metadata={"argparse": {"nargs": "?", "const": "latest", "metavar": "DIR"}}
    )
    init_from: str | None = None
    seed: int = 0
    members: int = 2
    member: int = 0
    targets_per_playlist: int = 16
    popularity_power: float = 0.0
    targets_per_prompt_group: int = 8
    list_loss_weight: float = 0.0
    list_loss_negatives: int = 16
    soft_target_weight: float = 0.0
    length_bucket_window: int = 32
    target_source: str = field(default="teacher", metadata={"choices": TARGET_SOURCES})
    teacher_top_items: int = 200
    teacher_own_weight: float = 0.5
    teacher_leave_out: bool = True
    artist_prompts: bool = False
    artist_min_count: int = 5
    artist_top_items: int = 50
    seed_prob: float = 0.0
    max_seed_tracks: int = DEFAULT_MAX_SEED_TRACKS
    seed_title_drop: float = 0.3
    seed_random_subset: float = 0.3
    seed_next_window: int = 0
    seed_cf_weight: float = 0.0
    seed_cf_top: int = 100
    seed_cf_source: str = field(default="als", metadata={"choices": CF_SOURCES})
    seed_encoding: str = field(
        default=DEFAULT_SEED_ENCODING, metadata={"choices": ("auto", *SEED_ENCODINGS)}
    )
    seed_factors: bool | None = None
    seed_prior: str = field(default="auto", metadata={"choices": ("auto", *SEED_PRIORS)})
    seed_prior_prompt: bool = False
    seed_prior_count_scale: bool = False
    seed_prior_learn_factors: bool = False
    seed_prior_dim: int = 0
    seed_prior_init: str = field(default="zero", metadata={"choices": SEED_PRIOR_INITS})
    seed_prior_freeze_weight: bool = False
    seed_prior_list_weight: float = 0.0
    id_init: str = field(default="codebooks", metadata={"choices": ID_INITS})
    normalize_prompts: bool = True
    subword_dropout: float = 0.0
    num_workers: int = 0
    num_threads: int = 0
    log_every: int = 50
    progress: bool = True

    def resolved_encoder_lr(self) -> float:
        """The encoder's learning rate for :func:`training.optimizer.build_optimizer` (0: ``lr``):
        ``encoder_lr`` when given, else ``MINILM_ENCODER_LR`` for a fine-tuned MiniLM."""
        if self.encoder_lr:
            return float(self.encoder_lr)
        if self.model.encoder == "minilm" and not self.model.freeze_encoder:
            return MINILM_ENCODER_LR
        return 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise ValueError(f"model must be a ModelConfig, got {type(self.model).__name__}")
        self._check_number_types()
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0 = off), got {self.ema_decay!r}")
        if self.max_minutes < 0 or self.weight_decay < 0 or self.popularity_power < 0:
            raise ValueError("max_minutes, weight_decay and popularity_power must be >= 0")
        if self.max_grad_norm < 0:
            raise ValueError(
                f"max_grad_norm must be >= 0 (0: no clipping), got {self.max_grad_norm!r}"
            )
        if self.encoder_lr < 0:
            raise ValueError(f"encoder_lr must be >= 0 (0: the same as lr), got {self.encoder_lr}")
        if self.encoder_lr and self.model.freeze_encoder:
            raise ValueError(
                "encoder_lr sets the learning rate of the encoder, which freeze_encoder=True "
                "keeps fixed: drop --freeze-encoder to fine-tune it, or --encoder-lr"
            )
        if self.list_loss_weight < 0:
            raise ValueError(f"list_loss_weight must be >= 0, got {self.list_loss_weight}")
        if self.list_loss_weight and self.targets_per_prompt_group < 2:
            raise ValueError(
                "list_loss_weight > 0 needs the grouped forward: set "
                "targets_per_prompt_group >= 2 (its negatives are other prompts' "
                "examples in the batch)"
            )
        self._check_soft_targets()
        if self.schedule not in _SCHEDULES:
            raise ValueError(f"schedule must be one of {_SCHEDULES}, got {self.schedule!r}")
        if self.mixed_precision not in _PRECISIONS:
            raise ValueError(
                f"mixed_precision must be one of {_PRECISIONS}, got {self.mixed_precision!r}"
            )
        if self.num_beams is not None and (
            not isinstance(self.num_beams, int) or self.num_beams < self.eval_k
        ):
            raise ValueError(f"num_beams must be >= eval_k ({self.eval_k}), got {self.num_beams!r}")
        if self.popularity_power and not self.targets_per_playlist:
            raise ValueError("popularity_power needs targets_per_playlist > 0")
        if self.target_source not in TARGET_SOURCES:
            raise ValueError(
                f"target_source must be one of {TARGET_SOURCES}, got {self.target_source!r}"
            )
        if self.target_source == "teacher":
            if not self.targets_per_playlist:
                raise ValueError(
                    "target_source='teacher' draws targets_per_playlist targets per "
                    "playlist and epoch; set targets_per_playlist > 0"
                )
            if self.popularity_power:
                raise ValueError("popularity_power applies to target_source='playlist' only")
        elif self.artist_prompts:
            raise ValueError(
                "artist_prompts weights each artist's tracks the way the teacher weights a "
                "playlist's: set target_source='teacher' (the default) or artist_prompts=False"
            )
        self._check_seed_options()
        self._check_token_options()
        if self.member >= self.members:
            raise ValueError(
                f"member must be below members ({self.members}), got {self.member}; members "
                "are numbered from 0"
            )
        if not (
            isinstance(self.teacher_own_weight, (int, float)) and 0 <= self.teacher_own_weight <= 1
        ):
            raise ValueError(
                f"teacher_own_weight must be in [0, 1], got {self.teacher_own_weight!r}"
            )

    def _check_number_types(self) -> None:
        """Integer fields are integers (>= 1 or >= 0), float fields finite numbers."""
        positive = ("batch_size", "grad_accum", "epochs", "eval_k", "keep_checkpoints", "log_every")
        positive += ("members",)
        positive += ("targets_per_prompt_group", "teacher_top_items", "list_loss_negatives")
        positive += ("artist_min_count", "artist_top_items")
        non_negative = (
            *LOOP_COUNTS,
            "targets_per_playlist",
            "num_workers",
            "num_threads",
            "length_bucket_window",
            "member",
        )
        check_integer_fields(self, positive, non_negative)
        for name in (
            "lr",
            "encoder_lr",
            "max_minutes",
            "weight_decay",
            "max_grad_norm",
            "popularity_power",
            "list_loss_weight",
            "soft_target_weight",
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise ValueError(f"{name} must be a finite number, got {value!r}")

    def _check_soft_targets(self) -> None:
        w = self.soft_target_weight
        if not 0 <= w <= 1:
            raise ValueError(f"soft_target_weight must be in [0, 1] (0 = off), got {w!r}")
        if not w:
            return
        if self.list_loss_weight:
            raise ValueError(
                "soft_target_weight > 0 and list_loss_weight > 0 do not combine: set one to 0"
            )
        if self.popularity_power or not self.model.id_only_output:
            raise ValueError(
                "soft_target_weight > 0 needs targets drawn in proportion to their weights "
                "(popularity_power 0) and the ID output head (id_only_output)"
            )

    def _check_token_options(self) -> None:
        check_id_init(self.id_init)
        value = self.subword_dropout
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"subword_dropout must be in [0, 1), got {value!r}")
        if value and (self.model.tokenizer != "subword" or self.model.encoder != "t5"):
            raise ValueError(
                "subword_dropout re-segments the learned subword prompts of the T5 encoder; "
                f"this model reads {self.model.tokenizer!r} with {self.model.encoder!r}: set "
                "--subword-dropout 0, or use --tokenizer subword --encoder t5"
            )

    def _check_seed_options(self) -> None:
        """seed_prob and the frozen encoder, and the seed draw's own checks under our names."""
        if self.seed_encoding == "auto":
            object.__setattr__(self, "seed_encoding", default_seed_encoding(self.model.encoder))
        check_seed_encoding(self.seed_encoding)
        if isinstance(self.seed_cf_weight, bool) or not 0 <= self.seed_cf_weight <= 1:
            raise ValueError(f"seed_cf_weight must be in [0, 1], got {self.seed_cf_weight!r}")
        if isinstance(self.seed_cf_top, bool) or self.seed_cf_top < 1:
            raise ValueError(f"seed_cf_top must be a positive integer, got {self.seed_cf_top!r}")
        if self.seed_cf_source not in CF_SOURCES:
            raise ValueError(
                f"seed_cf_source must be one of {CF_SOURCES}, got {self.seed_cf_source!r}"
            )
        one_token = bool(self.seed_prob) and self.seed_encoding != "codes"
        if self.seed_factors is None:
            object.__setattr__(self, "seed_factors", one_token)
        elif self.seed_factors and not one_token:
            raise ValueError(
                "seed_factors needs seeds read as one token each: set --seed-prob > 0 and "
                "--seed-encoding item, direct or auto (not codes), or drop --seed-factors"
            )
        if self.seed_prior == "auto":
            # the prior adds to an ID-only output layer, which LoRA models do not have
            scored = self.model.id_only_output and not self.model.lora
            reads = self.seed_factors or self.seed_prior_prompt  # the seeds', or the catalogue's
            object.__setattr__(self, "seed_prior", "nodes" if reads and scored else "off")
        if self.seed_prior not in SEED_PRIORS:
            raise ValueError(
                f"seed_prior must be 'auto' or one of {SEED_PRIORS}, got {self.seed_prior!r}"
            )
        if self.seed_prior != "off" and not (self.seed_factors or self.seed_prior_prompt):
            raise ValueError(
                "seed_prior reads the seeds' CF factors: keep seed factors on (--seed-prob > 0, "
                "no --no-seed-factors), add --seed-prior-prompt (the prompt's context over the "
                "catalogue's factors), or use --seed-prior off"
            )
        self._check_seed_prior_options()
        if self.seed_prob and self.model.freeze_encoder:
            raise ValueError(
                "seed_prob > 0 needs a trainable encoder: it reads seeds as semantic-ID tokens, "
                "whose encoder embeddings are new; with freeze_encoder=True they stay random. "
                "Drop --freeze-encoder, or set --seed-prob 0"
            )
        if self.seed_prob and self.model.encoder_trainable_layers is not None:
            raise ValueError(
                "seed_prob > 0 needs the encoder's embeddings to train (seeds are new ID tokens), "
                "which encoder_trainable_layers keeps fixed: drop one of them"
            )
        try:
            self.seed_draw()
        except ValueError as err:  # SeedDraw names its fields; say which of ours it was
            message = str(err)
            for inner, outer in _SEED_FIELDS.items():
                if message.startswith(inner + " "):
                    message = outer + message[len(inner) :]
            raise ValueError(message) from None

    def _check_seed_prior_options(self) -> None:
        """The seed prior's options against the prior and the seeds they need."""
        if self.seed_prior_prompt and self.seed_prior == "off":
            raise ValueError(
                "seed_prior_prompt adds the prompt to the seed prior's context: it needs a seed "
                "prior (--seed-prior tokens or nodes) and an ID-only output layer (not LoRA); "
                "drop --seed-prior-prompt"
            )
        if self.seed_prior_count_scale and (self.seed_prior == "off" or not self.seed_factors):
            raise ValueError(
                "seed_prior_count_scale scales the seeds' mean factors in the seed prior: it "
                "needs seed factors (--seed-prob > 0, seeds read as one token each) and a seed "
                "prior; drop --seed-prior-count-scale"
            )
        if self.seed_prior_list_weight < 0:
            raise ValueError(
                f"seed_prior_list_weight must be >= 0 (0: off), got {self.seed_prior_list_weight}"
            )
        for name, what in _NODES_PRIOR_OPTIONS.items():
            if getattr(self, name) and (self.seed_prior != "nodes" or not self.seed_factors):
                raise ValueError(
                    f"{name} {what}: it needs seed factors (--seed-prob > 0, seeds read as one "
                    "token each) and --seed-prior nodes (or auto); drop "
                    f"--{name.replace('_', '-')}"
                )
        if self.seed_prior_dim < 0:
            raise ValueError(
                f"seed_prior_dim must be >= 0 (0: the artifact's factors), got {self.seed_prior_dim}"
            )
        if self.seed_prior_init not in SEED_PRIOR_INITS:
            raise ValueError(
                f"seed_prior_init must be one of {SEED_PRIOR_INITS}, got {self.seed_prior_init!r}"
            )
        if self.seed_prior_init != "zero" and self.seed_prior == "off":
            raise ValueError(
                "seed_prior_init sets how the seed prior starts: it needs a seed prior; drop "
                "--seed-prior-init"
            )
        if self.seed_prior_freeze_weight and self.seed_prior_init != "foldin":
            raise ValueError(
                "seed_prior_freeze_weight keeps the seed prior's W as it starts: it needs "
                "--seed-prior-init foldin (a zero W would stay zero); drop "
                "--seed-prior-freeze-weight or add --seed-prior-init foldin"
            )
        if self.seed_prior_dim and (self.seed_prior == "off" or not self.seed_factors):
            raise ValueError(
                "seed_prior_dim gives the seed prior its own CF factors: it needs seed factors "
                "(--seed-prob > 0, seeds read as one token each) and a seed prior; drop "
                "--seed-prior-dim"
            )

    def seed_draw(self) -> SeedDraw | None:
        """The seed draw of the training examples (``None`` when ``seed_prob`` is 0)."""
        draw = SeedDraw(
            prob=self.seed_prob,
            max_seeds=self.max_seed_tracks,
            title_drop=self.seed_title_drop,
            random_subset=self.seed_random_subset,
            next_window=self.seed_next_window,
        )
        return draw if self.seed_prob > 0 else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["model"] = self.model.to_dict()
        return d


def lr_factor(step: int, elapsed_s: float, config: TrainConfig, total_steps: int | None) -> float:
    """Multiplier of the base learning rate before optimizer step ``step`` (0-based).

    Written here rather than taken from ``transformers.get_*_schedule_with_warmup`` because those
    need the number of steps in advance, and a time budget does not give one: progress is the
    larger of the fraction of steps and the fraction of ``max_minutes`` spent.
    """
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return 1.0
    progress = 0.0
    if total_steps:
        span = max(1, total_steps - config.warmup_steps)
        progress = (step - config.warmup_steps) / span
    if config.max_minutes:
        progress = max(progress, elapsed_s / (60.0 * config.max_minutes))
    progress = min(max(progress, 0.0), 1.0)
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress
