"""Diffusion head: prompt -> query latent in the CF space (GDR / DAR style).

The head learns ``p(query latent | prompt)`` where the latent is a training playlist's ALS factor,
the query whose dot product with the item factors ranks that playlist's tracks. Latents are
standardised per dimension (statistics kept in the artifact) so that the unit-variance Gaussian
prior of the diffusion fits them; nothing is clipped, since they are not images.

Notation (DDPM, Ho et al. 2020; DDIM, Song et al. 2021; CFG, Ho & Salimans 2022)::

    x_0          standardised target latent               (latents_std)
    x_t          noised latent at timestep t               (noisy / sample)
    alpha_bar_t  cumulative product of (1 - beta_s), s<=t  (scheduler.alphas_cumprod[t])
    eps          the Gaussian noise, eps_theta its model   (noise / model_output)
    c, c_neg, 0  prompt, negative prompt, null condition   (cond, negative_cond, null_cond)
    w            guidance weight                           (guidance_weight)
    eta          DDIM stochasticity, 0 = deterministic     (eta)

Schedulers come from ``diffusers`` (``DDPMScheduler.add_noise`` for training, ``DDIMScheduler``
for sampling, ``DDIMInverseScheduler`` for inversion) rather than being written here.

Prompt encoders share one small interface (:class:`PromptEncoder`): ``tokenize(prompts)`` gives
the tensors ``forward(**batch)`` pools into ``(batch, out_dim)``; ``encode(prompts)`` does both.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from text2tracks.artifacts import SEQ2SEQ_COMPONENT
from text2tracks.data import normalize_prompt

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STATS_NAME = "latent_stats.npy"
FORMAT_VERSION = 1

_BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
_PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
_ENCODER_KINDS = ("bytes", "seq2seq", "none")


def _from_dict(cls, values: dict[str, Any]):
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**values)


# ------------------------------------------------------------------------------------------------
# Prompt encoders
# ------------------------------------------------------------------------------------------------


class PromptEncoder(nn.Module):
    """Interface: ``tokenize(prompts) -> dict of tensors``, ``forward(**batch) -> (batch, out_dim)``."""

    kind: str = "none"
    out_dim: int
    max_length: int  # longer prompts are cut to this many units (see ``length_unit``)
    length_unit: str = "tokens"

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def input_lengths(self, prompts: list[str]) -> list[int]:  # pragma: no cover
        """Each prompt's length in ``length_unit`` before it is cut to ``max_length``."""
        raise NotImplementedError

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Pooled prompt encodings ``(batch, out_dim)`` on the encoder's device."""
        if isinstance(prompts, str):
            raise ValueError("encode expects a list of prompts, got a single str")
        device = next(self.parameters()).device
        batch = {k: v.to(device) for k, v in self.tokenize(list(prompts)).items()}
        return self(**batch)


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``hidden`` (batch, seq, dim) over positions where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


@dataclass(frozen=True)
class ByteEncoderConfig:
    """A small byte-level transformer encoder trained jointly with the head.

    Attributes:
        dim: model width (= ``out_dim``).
        n_layers, n_heads: transformer depth and heads.
        max_length: prompts are cut to this many UTF-8 bytes.
        dropout: dropout inside the transformer layers.
        normalize: apply :func:`text2tracks.data.normalize_prompt` (NFKC, casefold, spaces), as
            the seq2seq does; titles mix cases and styled Unicode freely.
    """

    dim: int = 128
    n_layers: int = 2
    n_heads: int = 4
    max_length: int = 64
    dropout: float = 0.1
    normalize: bool = True

    def __post_init__(self) -> None:
        if self.dim < 1 or self.n_layers < 1 or self.n_heads < 1 or self.max_length < 1:
            raise ValueError(f"ByteEncoderConfig needs positive sizes, got {self}")
        if self.dim % self.n_heads:
            raise ValueError(
                f"ByteEncoderConfig.dim ({self.dim}) must divide by n_heads ({self.n_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ByteEncoderConfig.dropout must be in [0, 1), got {self.dropout}")


class ByteEncoder(PromptEncoder):
    """UTF-8 bytes -> embedding + learned positions -> transformer -> masked mean -> LayerNorm."""

    kind = "bytes"
    length_unit = "bytes"
    PAD = 0  # byte b is token b + 1

    def __init__(self, config: ByteEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = config or ByteEncoderConfig()
        c = self.config
        self.out_dim = c.dim
        self.max_length = c.max_length
        self.embed = nn.Embedding(257, c.dim, padding_idx=self.PAD)
        self.position = nn.Embedding(c.max_length, c.dim)
        layer = nn.TransformerEncoderLayer(
            c.dim,
            c.n_heads,
            dim_feedforward=4 * c.dim,
            dropout=c.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.layers = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(c.dim)

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        c = self.config
        rows = []
        for prompt in prompts:
            text = normalize_prompt(prompt) if c.normalize else prompt
            data = text.encode("utf-8")[: c.max_length] or b" "
            rows.append([b + 1 for b in data])
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self.PAD, dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return {"input_ids": input_ids, "attention_mask": (input_ids != self.PAD).long()}

    def input_lengths(self, prompts: list[str]) -> list[int]:
        norm = normalize_prompt if self.config.normalize else str
        return [len(norm(p).encode("utf-8")) for p in prompts]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        hidden = self.embed(input_ids) + self.position(positions)[None]
        hidden = self.layers(hidden, src_key_padding_mask=attention_mask == 0)
        return self.norm(masked_mean(hidden, attention_mask))


class FrozenSeq2SeqEncoder(PromptEncoder):
    """The trained seq2seq's encoder, frozen, masked-mean-pooled: ``(batch, d_model)``.

    Its weights live in the artifact's ``seq2seq/`` folder and are never saved with the head.
    Stays in eval mode (no dropout) even when the surrounding module is put in train mode.
    """

    kind = "seq2seq"

    def __init__(
        self, model: nn.Module, tokenizer: Any, max_length: int = 128, normalize: bool = True
    ) -> None:
        super().__init__()
        self.normalize = bool(normalize)
        self.encoder = model.get_encoder()
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.out_dim = int(model.config.d_model)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.encoder.eval()

    def train(self, mode: bool = True) -> FrozenSeq2SeqEncoder:
        super().train(mode)
        self.encoder.eval()
        return self

    def tokenize(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        texts = [normalize_prompt(p) for p in prompts] if self.normalize else list(prompts)
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def input_lengths(self, prompts: list[str]) -> list[int]:
        texts = [normalize_prompt(p) for p in prompts] if self.normalize else list(prompts)
        return [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return masked_mean(hidden.float(), attention_mask)


def _encoder_payload(encoder: PromptEncoder | None) -> dict[str, Any]:
    if encoder is None:
        return {"kind": "none"}
    if isinstance(encoder, ByteEncoder):
        return {"kind": "bytes", "config": asdict(encoder.config)}
    if isinstance(encoder, FrozenSeq2SeqEncoder):
        return {
            "kind": "seq2seq",
            "max_length": encoder.max_length,
            "out_dim": encoder.out_dim,
            "normalize": encoder.normalize,
        }
    raise ValueError(f"cannot save an encoder of type {type(encoder).__name__}")


def _encoder_from_payload(
    payload: dict[str, Any], directory: Path, encoder: PromptEncoder | None
) -> PromptEncoder | None:
    kind = payload.get("kind")
    if kind not in _ENCODER_KINDS:
        raise ValueError(
            f"{directory / CONFIG_NAME}: encoder kind must be one of {_ENCODER_KINDS}, got {kind!r}"
        )
    if kind == "none":
        return encoder
    if kind == "bytes":
        if encoder is not None:
            raise ValueError("this head has its own byte encoder; do not pass encoder= to load it")
        return ByteEncoder(_from_dict(ByteEncoderConfig, payload["config"]))
    if encoder is None:
        # The seq2seq sits beside us in the artifact folder.
        from text2tracks.modeling import load_seq2seq

        model, tokenizer, _ = load_seq2seq(directory.parent / SEQ2SEQ_COMPONENT)
        encoder = FrozenSeq2SeqEncoder(
            model,
            tokenizer,
            max_length=payload.get("max_length", 128),
            normalize=payload.get("normalize", True),
        )
    if encoder.out_dim != payload.get("out_dim", encoder.out_dim):
        raise ValueError(
            f"encoder gives {encoder.out_dim}-d encodings, the saved head expects {payload['out_dim']}"
        )
    return encoder


# ------------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DiffusionHeadConfig:
    """Hyperparameters of the diffusion head.

    Attributes:
        latent_dim: width of the CF space (the ALS factor width).
        cond_dim: width of the pooled prompt encoding.
        hidden, n_blocks: width and depth of the residual MLP denoiser.
        time_embed_dim: channels of the sinusoidal timestep embedding.
        dropout: dropout inside the residual blocks.
        num_train_timesteps, beta_schedule, beta_start, beta_end: the DDPM noise schedule.
        prediction_type: what the denoiser predicts: ``"epsilon"``, ``"v_prediction"``, ``"sample"``.
        cond_drop_prob: probability of replacing the condition by the learned null condition
            during training (classifier-free guidance needs it > 0).
        guidance_weight: default w; 1 = plain conditional, > 1 = stronger prompt.
        ddim_steps: default number of DDIM sampling / inversion steps.
    """

    latent_dim: int
    cond_dim: int
    hidden: int = 512
    n_blocks: int = 4
    time_embed_dim: int = 128
    dropout: float = 0.0
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    beta_start: float = 0.0001
    beta_end: float = 0.02
    prediction_type: str = "epsilon"
    cond_drop_prob: float = 0.1
    guidance_weight: float = 2.0
    ddim_steps: int = 20

    def __post_init__(self) -> None:
        for name in (
            "latent_dim",
            "cond_dim",
            "hidden",
            "n_blocks",
            "time_embed_dim",
            "ddim_steps",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(
                    f"DiffusionHeadConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.time_embed_dim % 2:
            raise ValueError(
                f"DiffusionHeadConfig.time_embed_dim must be even, got {self.time_embed_dim}"
            )
        if self.beta_schedule not in _BETA_SCHEDULES:
            raise ValueError(
                f"beta_schedule must be one of {_BETA_SCHEDULES}, got {self.beta_schedule!r}"
            )
        if self.prediction_type not in _PREDICTION_TYPES:
            raise ValueError(
                f"prediction_type must be one of {_PREDICTION_TYPES}, got {self.prediction_type!r}"
            )
        if not 0.0 <= self.cond_drop_prob < 1.0:
            raise ValueError(f"cond_drop_prob must be in [0, 1), got {self.cond_drop_prob}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.ddim_steps > self.num_train_timesteps:
            raise ValueError(
                f"ddim_steps ({self.ddim_steps}) cannot exceed num_train_timesteps ({self.num_train_timesteps})"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiffusionHeadConfig:
        return _from_dict(cls, values)


@dataclass(frozen=True)
class RegressorConfig:
    """The plain baseline: prompt encoding -> standardised latent, with the same encoder.

    Attributes:
        loss: ``"mse"`` on standardised latents or ``"cosine"`` (1 - cosine similarity).
    """

    latent_dim: int
    cond_dim: int
    hidden: int = 512
    n_blocks: int = 2
    dropout: float = 0.1
    loss: str = "mse"

    def __post_init__(self) -> None:
        for name in ("latent_dim", "cond_dim", "hidden", "n_blocks"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"RegressorConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.loss not in ("mse", "cosine"):
            raise ValueError(f"RegressorConfig.loss must be 'mse' or 'cosine', got {self.loss!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RegressorConfig:
        return _from_dict(cls, values)


# ------------------------------------------------------------------------------------------------
# Networks
# ------------------------------------------------------------------------------------------------


class _FiLMBlock(nn.Module):
    """Pre-norm residual MLP block whose norm is scaled and shifted by the embedding (FiLM)."""

    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.film = nn.Linear(hidden, 2 * hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, 2 * hidden),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * hidden, hidden),
        )
        # Start each block as the identity: zero scale/shift and zero last layer.
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(emb).chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


class Denoiser(nn.Module):
    """eps_theta(x_t, t, c): residual MLP with a sinusoidal timestep embedding, FiLM-conditioned.

    The condition enters through the same embedding as the timestep. ``null_cond`` is a learned
    vector in the condition space that stands for "no prompt" (classifier-free guidance).
    """

    def __init__(self, config: DiffusionHeadConfig) -> None:
        super().__init__()
        from diffusers.models.embeddings import TimestepEmbedding, Timesteps

        c = config
        self.time_proj = Timesteps(c.time_embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(c.time_embed_dim, c.hidden)
        self.cond_embed = nn.Sequential(
            nn.Linear(c.cond_dim, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden)
        )
        self.null_cond = nn.Parameter(torch.zeros(c.cond_dim))
        self.in_proj = nn.Linear(c.latent_dim, c.hidden)
        self.blocks = nn.ModuleList(_FiLMBlock(c.hidden, c.dropout) for _ in range(c.n_blocks))
        self.out_norm = nn.LayerNorm(c.hidden)
        self.out = nn.Linear(c.hidden, c.latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(
        self,
        x_t: torch.Tensor,
        timesteps: torch.Tensor,
        cond: torch.Tensor | None,
        drop_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x_t`` (batch, latent_dim), ``timesteps`` (batch,), ``cond`` (batch, cond_dim) or None
        (all null); ``drop_mask`` (batch,) bool replaces those rows' condition by the null one."""
        null = self.null_cond.to(x_t.dtype).expand(x_t.shape[0], -1)
        if cond is None:
            cond = null
        elif drop_mask is not None:
            cond = torch.where(drop_mask[:, None], null, cond.to(x_t.dtype))
        temb = self.time_embed(self.time_proj(timesteps).to(x_t.dtype))
        emb = F.silu(temb + self.cond_embed(cond.to(x_t.dtype)))
        h = self.in_proj(x_t)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(self.out_norm(h))


class _ResidualMLP(nn.Module):
    def __init__(
        self, in_dim: int, out_dim: int, hidden: int, n_blocks: int, dropout: float
    ) -> None:
        super().__init__()
        self.in_proj = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LayerNorm(hidden),
                nn.Linear(hidden, 2 * hidden),
                nn.SiLU(),
                nn.Dropout(dropout),
                nn.Linear(2 * hidden, hidden),
            )
            for _ in range(n_blocks)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.in_proj(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


# ------------------------------------------------------------------------------------------------
# Shared: latent standardisation, encoder handling, save/load
# ------------------------------------------------------------------------------------------------


class _LatentModel(nn.Module):
    """Holds the latent statistics (per-dimension mean/std) and an optional prompt encoder."""

    component_kind: str = ""

    def __init__(self, latent_dim: int, encoder: PromptEncoder | None) -> None:
        super().__init__()
        self.register_buffer("latent_mean", torch.zeros(latent_dim))
        self.register_buffer("latent_std", torch.ones(latent_dim))
        self.encoder = encoder

    @property
    def device(self) -> torch.device:
        return self.latent_mean.device

    def set_latent_stats(self, latents: np.ndarray | torch.Tensor) -> None:
        """Fit the standardisation on the target latents ``(n, latent_dim)``."""
        latents = torch.as_tensor(np.asarray(latents, dtype=np.float32))
        if (
            latents.ndim != 2
            or latents.shape[1] != self.latent_mean.shape[0]
            or latents.shape[0] < 2
        ):
            raise ValueError(
                f"latent stats need (n >= 2, {self.latent_mean.shape[0]}) latents, got {tuple(latents.shape)}"
            )
        self.latent_mean.copy_(latents.mean(0))
        self.latent_std.copy_(latents.std(0).clamp_min(1e-6))

    def standardise(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents - self.latent_mean) / self.latent_std

    def destandardise(self, latents_std: torch.Tensor) -> torch.Tensor:
        return latents_std * self.latent_std + self.latent_mean

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """Pooled prompt encodings ``(batch, cond_dim)`` from this model's encoder."""
        if self.encoder is None:
            raise ValueError("this model has no prompt encoder; pass condition vectors instead")
        return self.encoder.encode(prompts).to(self.device)

    def _condition(
        self, cond: torch.Tensor | None, encoder_inputs: dict[str, torch.Tensor]
    ) -> torch.Tensor | None:
        if cond is not None:
            return cond
        if encoder_inputs:
            if self.encoder is None:
                raise ValueError("encoder inputs given but the model has no encoder")
            return self.encoder(**encoder_inputs)
        return None

    def _own_state(self) -> dict[str, torch.Tensor]:
        """Weights to save: everything but a frozen seq2seq encoder (it lives in ``seq2seq/``)."""
        skip = "encoder." if isinstance(self.encoder, FrozenSeq2SeqEncoder) else None
        return {
            k: v.detach().cpu().contiguous()
            for k, v in self.state_dict().items()
            if not (skip and k.startswith(skip)) and k not in ("latent_mean", "latent_std")
        }

    def _config_dict(self) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``config.json``, ``model.safetensors`` and ``latent_stats.npy`` (mean; std)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {
            "format_version": FORMAT_VERSION,
            "kind": self.component_kind,
            "config": self._config_dict(),
            "encoder": _encoder_payload(self.encoder),
        }
        with open(directory / CONFIG_NAME, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
        save_file(self._own_state(), str(directory / WEIGHTS_NAME))
        stats = torch.stack([self.latent_mean, self.latent_std]).cpu().numpy().astype(np.float32)
        np.save(directory / STATS_NAME, stats, allow_pickle=False)

    @classmethod
    def _load_parts(cls, directory: str | os.PathLike, encoder: PromptEncoder | None):
        directory = Path(directory)
        path = directory / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no {CONFIG_NAME} in {directory}")
        with open(path, encoding="utf-8") as f:
            payload = json.load(f)
        if payload.get("kind") != cls.component_kind:
            raise ValueError(
                f"{path} holds a {payload.get('kind')!r}, not a {cls.component_kind!r}"
            )
        if payload.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(
                f"{path} has format version {payload['format_version']}, newer than {FORMAT_VERSION}"
            )
        encoder = _encoder_from_payload(payload["encoder"], directory, encoder)
        stats = np.load(directory / STATS_NAME, allow_pickle=False)
        return payload, encoder, stats

    def _finish_load(self, directory: Path, stats: np.ndarray, map_location: str) -> None:
        from safetensors.torch import load_file

        state = load_file(str(Path(directory) / WEIGHTS_NAME), device=str(map_location))
        state["latent_mean"] = torch.from_numpy(stats[0])
        state["latent_std"] = torch.from_numpy(stats[1])
        frozen = isinstance(self.encoder, FrozenSeq2SeqEncoder)
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if not (frozen and k.startswith("encoder."))]
        if missing or unexpected:
            raise ValueError(
                f"{directory / WEIGHTS_NAME}: missing {missing}, unexpected {unexpected}"
            )
        self.eval()


# ------------------------------------------------------------------------------------------------
# The diffusion head
# ------------------------------------------------------------------------------------------------


def _as_2d(cond: torch.Tensor | None, name: str) -> torch.Tensor | None:
    if cond is not None and cond.ndim != 2:
        raise ValueError(f"{name} must be (batch, cond_dim), got shape {tuple(cond.shape)}")
    return cond


class DiffusionHead(_LatentModel):
    """DDPM-trained, DDIM-sampled head ``p(x_0 | c)`` over standardised CF latents.

    ``forward(latents_std, cond)`` is the training loss; ``sample``, ``invert`` and ``edit``
    answer in the CF space (destandardised). Condition vectors ``(batch, cond_dim)`` come from
    :meth:`encode` (the head's own encoder) or are given directly.
    """

    component_kind = "diffusion_head"

    def __init__(self, config: DiffusionHeadConfig, encoder: PromptEncoder | None = None) -> None:
        super().__init__(config.latent_dim, encoder)
        from diffusers import DDPMScheduler

        if encoder is not None and encoder.out_dim != config.cond_dim:
            raise ValueError(
                f"encoder gives {encoder.out_dim}-d encodings but cond_dim is {config.cond_dim}"
            )
        self.config = config
        self.denoiser = Denoiser(config)
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=config.num_train_timesteps,
            beta_schedule=config.beta_schedule,
            beta_start=config.beta_start,
            beta_end=config.beta_end,
            clip_sample=False,
            prediction_type=config.prediction_type,
        )

    def _config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    # --- schedulers -----------------------------------------------------------------------------

    def _scheduler_kwargs(self) -> dict[str, Any]:
        c = self.config
        return dict(
            num_train_timesteps=c.num_train_timesteps,
            beta_schedule=c.beta_schedule,
            beta_start=c.beta_start,
            beta_end=c.beta_end,
            prediction_type=c.prediction_type,
            clip_sample=False,
            set_alpha_to_one=True,
            steps_offset=0,
            timestep_spacing="leading",
        )

    def _ddim(self, steps: int):
        from diffusers import DDIMScheduler

        scheduler = DDIMScheduler(**self._scheduler_kwargs())
        scheduler.set_timesteps(steps, device=self.device)
        return scheduler

    def _ddim_inverse(self, steps: int):
        from diffusers import DDIMInverseScheduler

        scheduler = DDIMInverseScheduler(**self._scheduler_kwargs())
        scheduler.set_timesteps(steps, device=self.device)
        return scheduler

    def _steps(self, steps: int | None) -> int:
        steps = self.config.ddim_steps if steps is None else int(steps)
        if not 1 <= steps <= self.config.num_train_timesteps:
            raise ValueError(
                f"steps must be in [1, {self.config.num_train_timesteps}], got {steps}"
            )
        return steps

    # --- training -------------------------------------------------------------------------------

    def forward(
        self,
        latents_std: torch.Tensor,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **encoder_inputs: torch.Tensor,
    ) -> torch.Tensor:
        """DDPM loss on a batch of standardised latents ``(batch, latent_dim)``.

        The condition is ``cond`` (batch, cond_dim), or the encoder's output for
        ``encoder_inputs`` (e.g. ``input_ids``, ``attention_mask``), or None (null).
        """
        from diffusers.utils.torch_utils import randn_tensor

        x_0 = latents_std
        cond = self._condition(cond, encoder_inputs)
        n = x_0.shape[0]
        # 1. t ~ Uniform{0..T-1}, eps ~ N(0, I) (drawn where the generator lives, then moved)
        where = generator.device if generator is not None else x_0.device
        timesteps = torch.randint(
            0, self.config.num_train_timesteps, (n,), device=where, generator=generator
        ).to(x_0.device)
        noise = randn_tensor(x_0.shape, generator=generator, device=x_0.device, dtype=x_0.dtype)
        # 2. x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps
        x_t = self.noise_scheduler.add_noise(x_0, noise, timesteps)
        # 3. drop the condition with probability p_uncond (classifier-free guidance)
        drop = None
        if cond is not None and self.training and self.config.cond_drop_prob > 0:
            u = torch.rand(n, generator=generator, device=where)
            drop = (u < self.config.cond_drop_prob).to(x_0.device)
        # 4. regress the model output on its target (eps, v or x_0)
        output = self.denoiser(x_t, timesteps, cond, drop)
        if self.config.prediction_type == "epsilon":
            target = noise
        elif self.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(x_0, noise, timesteps)
        else:
            target = x_0
        return F.mse_loss(output.float(), target.float())

    # --- guidance -------------------------------------------------------------------------------

    def _guided(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None,
        negative_cond: torch.Tensor | None,
        w: float,
    ) -> torch.Tensor:
        """Classifier-free guidance: eps = eps(c_neg or 0) + w * (eps(c) - eps(c_neg or 0))."""
        timesteps = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        if cond is None:
            if negative_cond is None:
                return self.denoiser(x_t, timesteps, None)
            # No prompt but a negative: guide away from it, relative to the null condition.
            cond = self.denoiser.null_cond.expand(x_t.shape[0], -1)
        if negative_cond is None and w == 1.0:
            return self.denoiser(x_t, timesteps, cond)
        n = x_t.shape[0]
        if negative_cond is None:
            base, drop = (
                cond,
                torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)]),
            )
        else:
            base, drop = negative_cond, torch.zeros(2 * n, dtype=torch.bool)
        out = self.denoiser(
            torch.cat([x_t, x_t]),
            torch.cat([timesteps, timesteps]),
            torch.cat([cond, base.to(cond.dtype)]),
            drop.to(x_t.device),
        )
        out_cond, out_base = out.chunk(2)
        return out_base + w * (out_cond - out_base)

    def _denoise(
        self,
        x_t: torch.Tensor,
        scheduler,
        timesteps: torch.Tensor,
        cond,
        negative_cond,
        w: float,
        eta: float,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        for t in timesteps:
            model_output = self._guided(x_t, t, cond, negative_cond, w)
            # DDIM update (Song et al. eq. 12): x_{t-1} = sqrt(alpha_bar_{t-1}) x_0_hat
            #   + sqrt(1 - alpha_bar_{t-1} - sigma_t^2) eps_hat + sigma_t z, sigma_t from eta.
            x_t = scheduler.step(model_output, t, x_t, eta=eta, generator=generator).prev_sample
        return x_t

    # --- sampling -------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor | None,
        negative_cond: torch.Tensor | None = None,
        guidance_weight: float | None = None,
        n_samples: int = 1,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
        batch_size: int | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample query latents in the CF space: ``(batch, n_samples, latent_dim)``.

        Args:
            cond: prompt encodings (batch, cond_dim); None samples unconditionally (then
                ``batch_size`` gives the batch).
            negative_cond: negative-prompt encodings (batch, cond_dim), replacing the null
                condition in the guidance.
            guidance_weight: w (default ``config.guidance_weight``).
            n_samples: samples per prompt (diversity; their candidates are pooled downstream).
            steps: DDIM steps (default ``config.ddim_steps``).
            generator: for reproducible noise.
            eta: 0 = deterministic DDIM.
            noise: start from this x_T (batch * n_samples, latent_dim) instead of fresh noise.
        """
        from diffusers.utils.torch_utils import randn_tensor

        cond, negative_cond = _as_2d(cond, "cond"), _as_2d(negative_cond, "negative_cond")
        if cond is None and batch_size is None:
            raise ValueError("sample needs cond, or batch_size for unconditional sampling")
        batch = cond.shape[0] if cond is not None else int(batch_size)
        if negative_cond is not None and negative_cond.shape[0] != batch:
            raise ValueError(f"negative_cond has {negative_cond.shape[0]} rows, cond has {batch}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        w = self.config.guidance_weight if guidance_weight is None else float(guidance_weight)
        steps = self._steps(steps)
        if cond is not None:
            cond = cond.to(self.device).repeat_interleave(n_samples, dim=0)
        if negative_cond is not None:
            negative_cond = negative_cond.to(self.device).repeat_interleave(n_samples, dim=0)
        shape = (batch * n_samples, self.config.latent_dim)
        if noise is None:
            # 1. x_T ~ N(0, I) (init_noise_sigma is 1 for DDIM)
            x_t = randn_tensor(shape, generator=generator, device=self.device)
        else:
            if tuple(noise.shape) != shape:
                raise ValueError(f"noise must have shape {shape}, got {tuple(noise.shape)}")
            x_t = noise.to(self.device, torch.float32)
        scheduler = self._ddim(steps)
        # 2. for t = T ... 0: guided model output, DDIM step  3. destandardise x_0
        x_0 = self._denoise(
            x_t, scheduler, scheduler.timesteps, cond, negative_cond, w, eta, generator
        )
        return self.destandardise(x_0).reshape(batch, n_samples, -1)

    # --- inversion and editing ------------------------------------------------------------------

    def _invert_std(
        self, x_0: torch.Tensor, source_cond: torch.Tensor | None, steps: int, n_steps: int
    ) -> torch.Tensor:
        scheduler = self._ddim_inverse(steps)
        x_t = x_0
        for t in scheduler.timesteps[:n_steps]:
            # Inverse DDIM (eta = 0): x_t from x_{t-1} with eps_theta(x_{t-1}, t, c_src), the usual
            # approximation eps_theta(x_t) ~ eps_theta(x_{t-1}); no guidance (w = 1) keeps it exact-ish.
            model_output = self._guided(x_t, t, source_cond, None, 1.0)
            x_t = scheduler.step(model_output, t, x_t).prev_sample
        return x_t

    @torch.no_grad()
    def invert(
        self,
        latents: torch.Tensor,
        source_cond: torch.Tensor | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """Deterministic DDIM inversion of CF latents ``(n, latent_dim)`` to x_T (standardised).

        ``sample(cond=source_cond, guidance_weight=1, noise=x_T, steps=steps)`` maps it back.
        """
        steps = self._steps(steps)
        latents = torch.as_tensor(latents, dtype=torch.float32, device=self.device)
        source_cond = _as_2d(source_cond, "source_cond")
        return self._invert_std(self.standardise(latents), source_cond, steps, steps)

    @torch.no_grad()
    def edit(
        self,
        latents: torch.Tensor,
        prompt_cond: torch.Tensor | None,
        strength: float,
        source_cond: torch.Tensor | None = None,
        negative_cond: torch.Tensor | None = None,
        guidance_weight: float | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """Move seed latents ``(n, latent_dim)`` (e.g. the mean factor of some tracks) towards a
        prompt: invert them for ``round(strength * steps)`` DDIM steps under ``source_cond``
        (None = null), then denoise the rest of the way under ``prompt_cond`` with guidance.

        strength 0 returns the seeds; 1 inverts the whole trajectory and follows the prompt.
        Returns CF-space latents ``(n, latent_dim)``.
        """
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        steps = self._steps(steps)
        latents = torch.as_tensor(latents, dtype=torch.float32, device=self.device)
        if latents.ndim != 2:
            raise ValueError(f"latents must be (n, latent_dim), got {tuple(latents.shape)}")
        n_invert = int(round(float(strength) * steps))
        if n_invert == 0:
            return latents.clone()
        w = self.config.guidance_weight if guidance_weight is None else float(guidance_weight)
        # 1. x_0 -> x_{t_k}, k = n_invert, under c_src (DDIMInverseScheduler, eta = 0)
        x_t = self._invert_std(
            self.standardise(latents), _as_2d(source_cond, "source_cond"), steps, n_invert
        )
        # 2. x_{t_k} -> x_0 under c (and c_neg) with guidance w (DDIMScheduler, eta = 0)
        scheduler = self._ddim(steps)
        timesteps = scheduler.timesteps[steps - n_invert :]
        x_0 = self._denoise(
            x_t,
            scheduler,
            timesteps,
            _as_2d(prompt_cond, "prompt_cond"),
            _as_2d(negative_cond, "negative_cond"),
            w,
            0.0,
            None,
        )
        return self.destandardise(x_0)

    # --- prompt-level conveniences ---------------------------------------------------------------

    @torch.no_grad()
    def sample_prompts(
        self, prompts: list[str], negative_prompts: list[str] | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """:meth:`sample` from prompts (and optional negative prompts), using the head's encoder."""
        cond = self.encode(prompts)
        negative = self.encode(negative_prompts) if negative_prompts is not None else None
        return self.sample(cond, negative_cond=negative, **kwargs)

    # --- persistence ----------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        encoder: PromptEncoder | None = None,
        map_location: str | torch.device = "cpu",
    ) -> DiffusionHead:
        """Load a head saved by :meth:`save`. A seq2seq-conditioned head needs ``encoder`` or a
        sibling ``seq2seq/`` folder in the artifact."""
        payload, encoder, stats = cls._load_parts(directory, encoder)
        head = cls(DiffusionHeadConfig.from_dict(payload["config"]), encoder)
        head._finish_load(Path(directory), stats, str(map_location))
        return head.to(map_location)


# ------------------------------------------------------------------------------------------------
# The plain regressor baseline
# ------------------------------------------------------------------------------------------------


class PromptToLatentRegressor(_LatentModel):
    """Prompt encoding -> standardised latent, one point per prompt: the baseline the head must beat."""

    component_kind = "latent_regressor"

    def __init__(self, config: RegressorConfig, encoder: PromptEncoder | None = None) -> None:
        super().__init__(config.latent_dim, encoder)
        if encoder is not None and encoder.out_dim != config.cond_dim:
            raise ValueError(
                f"encoder gives {encoder.out_dim}-d encodings but cond_dim is {config.cond_dim}"
            )
        self.config = config
        self.net = _ResidualMLP(
            config.cond_dim, config.latent_dim, config.hidden, config.n_blocks, config.dropout
        )

    def _config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def forward(
        self,
        latents_std: torch.Tensor,
        cond: torch.Tensor | None = None,
        **encoder_inputs: torch.Tensor,
    ) -> torch.Tensor:
        """Training loss (MSE or 1 - cosine) against standardised latents ``(batch, latent_dim)``."""
        cond = self._condition(cond, encoder_inputs)
        if cond is None:
            raise ValueError("the regressor needs a condition")
        pred = self.net(cond)
        if self.config.loss == "mse":
            return F.mse_loss(pred, latents_std)
        return (1 - F.cosine_similarity(pred, latents_std, dim=-1)).mean()

    @torch.no_grad()
    def predict(self, cond: torch.Tensor) -> torch.Tensor:
        """CF-space latents ``(batch, latent_dim)`` for prompt encodings ``(batch, cond_dim)``."""
        return self.destandardise(self.net(_as_2d(cond, "cond").to(self.device)))

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, n_samples: int = 1, **_: Any) -> torch.Tensor:
        """Same shape as :meth:`DiffusionHead.sample`: ``(batch, n_samples, latent_dim)`` (all equal)."""
        return self.predict(cond)[:, None, :].expand(-1, n_samples, -1)

    @classmethod
    def load(
        cls,
        directory: str | os.PathLike,
        encoder: PromptEncoder | None = None,
        map_location: str | torch.device = "cpu",
    ) -> PromptToLatentRegressor:
        payload, encoder, stats = cls._load_parts(directory, encoder)
        model = cls(RegressorConfig.from_dict(payload["config"]), encoder)
        model._finish_load(Path(directory), stats, str(map_location))
        return model.to(map_location)


# ------------------------------------------------------------------------------------------------
# Seeds for editing
# ------------------------------------------------------------------------------------------------


def seed_latent(
    item_factors: np.ndarray,
    item_indices: list[int] | np.ndarray,
    method: str = "mean",
    regularization: float = 0.01,
) -> np.ndarray:
    """One CF-space seed latent ``(dim,)`` for a set of tracks.

    ``"mean"`` is their mean item factor. ``"fold_in"`` solves the ALS user step for a playlist
    holding exactly these tracks, ``(Y^T Y + lambda I)^{-1} Y_S^T 1`` (implicit's
    ``recalculate_user`` with unit confidence), which lives in the same space as the playlist
    factors the head was trained on.
    """
    item_factors = np.asarray(item_factors, dtype=np.float64)
    idx = np.asarray(item_indices, dtype=np.int64)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= item_factors.shape[0]:
        raise ValueError(
            f"item_indices must be non-empty and in [0, {item_factors.shape[0]}), got {idx}"
        )
    if method == "mean":
        return item_factors[idx].mean(0).astype(np.float32)
    if method == "fold_in":
        gram = item_factors.T @ item_factors + regularization * np.eye(item_factors.shape[1])
        return np.linalg.solve(gram, item_factors[idx].sum(0)).astype(np.float32)
    raise ValueError(f"method must be 'mean' or 'fold_in', got {method!r}")


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "ByteEncoder",
    "ByteEncoderConfig",
    "Denoiser",
    "DiffusionHead",
    "DiffusionHeadConfig",
    "FrozenSeq2SeqEncoder",
    "PromptEncoder",
    "PromptToLatentRegressor",
    "RegressorConfig",
    "count_parameters",
    "masked_mean",
    "seed_latent",
]
