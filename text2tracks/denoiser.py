"""The diffusion head's network: eps_theta(x_t, t, c), a FiLM-conditioned residual MLP.

The timestep (sinusoidal, ``diffusers``' ``Timesteps`` + ``TimestepEmbedding``) and the pooled
prompt encoding share one embedding that scales and shifts every residual block. A learned
``null_cond`` stands for "no prompt", which classifier-free guidance needs.

With ``seed_conditioning`` (MO-DiT) the seed set joins the same embedding: the mean CF item
factor of a prompt's seeds, standardised by the item factors' per-dimension statistics
(``seed_shift`` / ``seed_scale``, buffers saved with the weights), and a count feature
``log(1 + n) / log(1 + max_seed_tracks)``, through a small MLP; ``null_seeds``, a learned
embedding, stands for "no seeds". The condition dropped for guidance drops both: the
unconditional branch is the null prompt without seeds.
"""

from __future__ import annotations

import math

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
        self.max_seed_tracks = c.max_seed_tracks
        if c.seed_conditioning:
            self.seed_embed = nn.Sequential(
                nn.Linear(c.latent_dim + 1, c.hidden), nn.SiLU(), nn.Linear(c.hidden, c.hidden)
            )
            self.null_seeds = nn.Parameter(torch.zeros(c.hidden))
            self.register_buffer("seed_shift", torch.zeros(c.latent_dim))
            self.register_buffer("seed_scale", torch.ones(c.latent_dim))
        self.in_proj = nn.Linear(c.latent_dim, c.hidden)
        self.blocks = nn.ModuleList(_FiLMBlock(c.hidden, c.dropout) for _ in range(c.n_blocks))
        self.out_norm = nn.LayerNorm(c.hidden)
        self.out = nn.Linear(c.hidden, c.latent_dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def reads_seeds(self) -> bool:
        return hasattr(self, "seed_embed")

    def seed_embedding(
        self,
        seed_latents: torch.Tensor | None,
        seed_counts: torch.Tensor | None,
        drop_mask: torch.Tensor | None,
        n: int,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """``(n, hidden)``: the seed set's embedding, ``null_seeds`` where a row has none
        (``seed_counts`` 0, or no seeds given) or is dropped."""
        null = self.null_seeds.to(dtype).expand(n, -1)
        if seed_latents is None:
            return null
        counts = seed_counts.to(dtype).clamp(0, self.max_seed_tracks)
        z = (seed_latents.to(dtype) - self.seed_shift) / self.seed_scale
        count_feature = torch.log1p(counts) / math.log1p(self.max_seed_tracks)
        emb = self.seed_embed(torch.cat([z, count_feature[:, None]], dim=1))
        absent = counts <= 0
        if drop_mask is not None:
            absent = absent | drop_mask
        return torch.where(absent[:, None], null, emb)

    def forward(
        self,
        x_t: torch.Tensor,
        timesteps: torch.Tensor,
        cond: torch.Tensor | None,
        drop_mask: torch.Tensor | None = None,
        seed_latents: torch.Tensor | None = None,
        seed_counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x_t`` (batch, latent_dim), ``timesteps`` (batch,), ``cond`` (batch, cond_dim) or None
        (all null); ``drop_mask`` (batch,) bool replaces those rows' condition (and seeds) by the
        null one. ``seed_latents`` (batch, latent_dim), the mean CF factor of each row's seeds,
        and ``seed_counts`` (batch,), how many (0: none), only for a seed-conditioned denoiser
        (None: no row has seeds)."""
        if (seed_latents is None) != (seed_counts is None):
            raise ValueError("seed_latents and seed_counts go together")
        if seed_latents is not None and not self.reads_seeds:
            raise ValueError("this denoiser was built without seed_conditioning; it reads no seeds")
        null = self.null_cond.to(x_t.dtype).expand(x_t.shape[0], -1)
        if cond is None:
            cond = null
        elif drop_mask is not None:
            cond = torch.where(drop_mask[:, None], null, cond.to(x_t.dtype))
        temb = self.time_embed(self.time_proj(timesteps).to(x_t.dtype))
        temb = temb + self.cond_embed(cond.to(x_t.dtype))
        if self.reads_seeds:
            temb = temb + self.seed_embedding(
                seed_latents, seed_counts, drop_mask, x_t.shape[0], x_t.dtype
            )
        emb = F.silu(temb)
        h = self.in_proj(x_t)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(self.out_norm(h))


__all__ = ["Denoiser"]
