"""Hyperparameters of the prompt -> latent heads, validated when they are built.

:class:`DiffusionHeadConfig` describes the diffusion head (its denoiser and DDPM/DDIM schedule),
:class:`RegressorConfig` the plain regressor baseline. Both are frozen dataclasses stored in a
head's ``config.json``; :func:`config_from_dict` rebuilds one and rejects unknown keys.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

_BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
_PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def config_from_dict(cls, values: dict[str, Any]):
    """``cls(**values)`` for a config dataclass; a key that is not a field raises ``ValueError``."""
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    return cls(**values)


def _check_contrastive(weight: float, temperature: float, prediction_type: str) -> None:
    """``ValueError`` unless the contrastive settings make sense together."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        raise ValueError(f"contrastive_weight must be a number >= 0, got {weight!r}")
    if weight == float("inf"):
        raise ValueError("contrastive_weight must be finite, got inf")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 < temperature < float("inf")
    ):
        raise ValueError(f"contrastive_temperature must be a number > 0, got {temperature!r}")
    if weight > 0 and prediction_type == "epsilon":
        raise ValueError(
            "contrastive_weight > 0 needs an x_0 estimate that is stable at every timestep: "
            "use prediction_type 'sample' (GDR's x_0 prediction) or 'v_prediction', "
            "got 'epsilon'"
        )


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
        contrastive_weight: lambda of GDR's objective: the loss is the diffusion MSE plus lambda
            times an InfoNCE term that makes the predicted x_0, read as a retrieval query, rank
            the playlist's tracks above the other playlists' tracks of the batch
            (:func:`text2tracks.contrastive.info_nce`). 0 = MSE alone. It needs an x_0 estimate
            that is stable at every t: ``prediction_type`` ``"sample"`` (GDR) or
            ``"v_prediction"``, not ``"epsilon"`` (x_0 from eps divides by sqrt(alpha_bar_t)).
        contrastive_temperature: tau of the InfoNCE term, dividing the retrieval similarity
            (the inner product of the CF-space query with the CF item factors).
        seed_conditioning: MO-DiT: the condition also reads the seed set, the mean CF item
            factor of a prompt's seed tracks and their count, through a small learned layer added
            to the prompt's; a learned "no seeds" embedding stands for a prompt without any, and
            for the unconditional branch of guidance. False (the default, and what a saved head
            without the key loads as): seeds are not read.
        max_seed_tracks: with ``seed_conditioning``: the most seeds read per prompt (the most
            recent kept), also the cap of the count feature; the training draw's maximum.
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
    contrastive_weight: float = 0.0
    contrastive_temperature: float = 0.05
    seed_conditioning: bool = False
    max_seed_tracks: int = 100

    def __post_init__(self) -> None:
        if not isinstance(self.seed_conditioning, bool):
            raise ValueError(f"seed_conditioning must be a bool, got {self.seed_conditioning!r}")
        for name in (
            "max_seed_tracks",
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
        _check_contrastive(
            self.contrastive_weight, self.contrastive_temperature, self.prediction_type
        )
        if self.ddim_steps > self.num_train_timesteps:
            raise ValueError(
                f"ddim_steps ({self.ddim_steps}) cannot exceed num_train_timesteps ({self.num_train_timesteps})"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DiffusionHeadConfig:
        return config_from_dict(cls, values)


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
        return config_from_dict(cls, values)


__all__ = ["DiffusionHeadConfig", "RegressorConfig", "config_from_dict"]
