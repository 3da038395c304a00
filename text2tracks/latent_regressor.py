"""The plain baseline the diffusion head must beat: prompt encoding -> one latent per prompt.

:class:`PromptToLatentRegressor` maps a pooled prompt encoding through a residual MLP to a
standardised CF latent (MSE or cosine loss), with the same encoders, standardisation and
on-disk format as the diffusion head (:class:`~text2tracks.head_base.LatentModel`).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from text2tracks.head_base import LatentModel, as_2d
from text2tracks.head_configs import RegressorConfig
from text2tracks.prompt_encoders import PromptEncoder


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


class PromptToLatentRegressor(LatentModel):
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
        return self.destandardise(self.net(as_2d(cond, "cond").to(self.device)))

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


__all__ = ["PromptToLatentRegressor"]
