"""The diffusion head's network: eps_theta(x_t, t, c), a FiLM-conditioned residual MLP.

The timestep (sinusoidal, ``diffusers``' ``Timesteps`` + ``TimestepEmbedding``) and the pooled
prompt encoding share one embedding that scales and shifts every residual block. A learned
``null_cond`` stands for "no prompt", which classifier-free guidance needs.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from text2tracks.head_configs import DiffusionHeadConfig


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


__all__ = ["Denoiser"]
