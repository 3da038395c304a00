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

The head is assembled from modules with one job each, and every public name stays importable
from here:

* :mod:`text2tracks.prompt_encoders`: prompts -> condition vectors (:class:`PromptEncoder`,
  :class:`ByteEncoder`, :class:`FrozenSeq2SeqEncoder`);
* :mod:`text2tracks.head_configs`: :class:`DiffusionHeadConfig`, :class:`RegressorConfig`;
* :mod:`text2tracks.denoiser`: the network eps_theta (:class:`Denoiser`);
* :mod:`text2tracks.head_base`: latent standardisation, save and load;
* :mod:`text2tracks.latent_regressor`: the plain baseline (:class:`PromptToLatentRegressor`).

* :mod:`text2tracks.head_seeds`: seed tracks as the head reads them (:func:`seed_latent`, the
  CF-space starting point of an edit; :func:`~text2tracks.head_seeds.seed_inputs`, the seed sets
  a seed-conditioned head reads).

This module holds the head itself (training loss, guidance, DDIM sampling, inversion, editing).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from text2tracks.contrastive import ContrastiveTargets
from text2tracks.denoiser import Denoiser

# The names below are re-exported (``as`` spells that out): code that imported them from here
# keeps working.
from text2tracks.head_base import CONFIG_NAME as CONFIG_NAME
from text2tracks.head_base import FORMAT_VERSION as FORMAT_VERSION
from text2tracks.head_base import STATS_NAME as STATS_NAME
from text2tracks.head_base import WEIGHTS_NAME as WEIGHTS_NAME
from text2tracks.head_base import LatentModel, as_2d
from text2tracks.head_configs import DiffusionHeadConfig, RegressorConfig
from text2tracks.head_seeds import seed_latent as seed_latent
from text2tracks.latent_regressor import PromptToLatentRegressor
from text2tracks.prompt_encoders import (
    ByteEncoder,
    ByteEncoderConfig,
    FrozenSeq2SeqEncoder,
    PromptEncoder,
    masked_mean,
)

# ------------------------------------------------------------------------------------------------
# The diffusion head
# ------------------------------------------------------------------------------------------------


class DiffusionHead(LatentModel):
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

    # --- seeds (MO-DiT) ---------------------------------------------------------------------------

    @property
    def reads_seeds(self) -> bool:
        """Whether the condition reads seed tracks (``config.seed_conditioning``)."""
        return self.denoiser.reads_seeds

    def set_seed_stats(self, item_factors: np.ndarray | torch.Tensor) -> None:
        """Fit the standardisation of seed means on the CF item factors ``(n_items, latent_dim)``
        (their per-dimension mean and std); only for a seed-conditioned head."""
        if not self.reads_seeds:
            raise ValueError("this head was built without seed_conditioning")
        factors = torch.as_tensor(np.asarray(item_factors, dtype=np.float32))
        if factors.ndim != 2 or factors.shape[1] != self.config.latent_dim or len(factors) < 2:
            raise ValueError(
                f"seed stats need (n >= 2, {self.config.latent_dim}) item factors, "
                f"got {tuple(factors.shape)}"
            )
        self.denoiser.seed_shift.copy_(factors.mean(0))
        self.denoiser.seed_scale.copy_(factors.std(0).clamp_min(1e-6))

    def _seeds(self, seed_latents, seed_counts, batch: int):
        """``(seed_latents, seed_counts)`` on the device, checked, or None."""
        if seed_latents is None and seed_counts is None:
            return None
        if seed_latents is None or seed_counts is None:
            raise ValueError("seed_latents and seed_counts go together")
        if not self.reads_seeds:
            raise ValueError("this head was built without seed_conditioning, so it reads no seeds")
        latents = torch.as_tensor(seed_latents, dtype=torch.float32, device=self.device)
        counts = torch.as_tensor(seed_counts, dtype=torch.float32, device=self.device)
        expected = (batch, self.config.latent_dim)
        if tuple(latents.shape) != expected or tuple(counts.shape) != (batch,):
            raise ValueError(
                f"seed_latents must be {expected} and seed_counts ({batch},), "
                f"got {tuple(latents.shape)} and {tuple(counts.shape)}"
            )
        return latents, counts

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

    def _ddim_inverse(self, steps: int, prediction_type: str | None = None):
        from diffusers import DDIMInverseScheduler

        kwargs = self._scheduler_kwargs()
        if prediction_type is not None:
            kwargs["prediction_type"] = prediction_type
        scheduler = DDIMInverseScheduler(**kwargs)
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
        contrastive_targets: ContrastiveTargets | None = None,
        return_losses: bool = False,
        seed_latents: torch.Tensor | None = None,
        seed_counts: torch.Tensor | None = None,
        prompt_kept: torch.Tensor | None = None,
        **encoder_inputs: torch.Tensor,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """The training loss on a batch of standardised latents ``(batch, latent_dim)``: the
        ``"loss"`` of :meth:`losses`, or (``return_losses``) all of them, so that a training
        loop logs the parts through the wrapped module's forward (as DDP needs)."""
        losses = self.losses(
            latents_std,
            cond,
            generator,
            contrastive_targets,
            seed_latents=seed_latents,
            seed_counts=seed_counts,
            prompt_kept=prompt_kept,
            **encoder_inputs,
        )
        return losses if return_losses else losses["loss"]

    def losses(
        self,
        latents_std: torch.Tensor,
        cond: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        contrastive_targets: ContrastiveTargets | None = None,
        seed_latents: torch.Tensor | None = None,
        seed_counts: torch.Tensor | None = None,
        prompt_kept: torch.Tensor | None = None,
        **encoder_inputs: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """DDPM loss (``"mse"``), the contrastive term (``"contrastive"``, when the config's
        ``contrastive_weight`` > 0) and their weighted sum (``"loss"``).

        The condition is ``cond`` (batch, cond_dim), or the encoder's output for
        ``encoder_inputs`` (e.g. ``input_ids``, ``attention_mask``), or None (null).
        ``contrastive_targets`` (the items of the batch and which of them each row should
        retrieve) is needed exactly when ``contrastive_weight`` > 0. The contrastive term is
        averaged over the rows that kept their condition: it teaches the prompt-conditional
        prediction to retrieve, and the null condition stays the plain denoiser CFG needs.

        A seed-conditioned head also reads ``seed_latents`` (batch, latent_dim) and
        ``seed_counts`` (batch,) (0: that row has no seeds), and ``prompt_kept`` (batch,) bool
        puts the null prompt in the rows where it is False (a prompt of seeds alone). The
        guidance drop replaces prompt and seeds alike.
        """
        from diffusers.utils.torch_utils import randn_tensor

        use_contrastive = self.config.contrastive_weight > 0
        if use_contrastive != (contrastive_targets is not None):
            raise ValueError(
                f"contrastive_weight is {self.config.contrastive_weight}: contrastive_targets "
                f"must be {'given' if use_contrastive else 'None'}"
            )
        x_0 = latents_std
        cond = self._condition(cond, encoder_inputs)
        n = x_0.shape[0]
        seeds = self._seeds(seed_latents, seed_counts, n)
        if prompt_kept is not None:
            null = self.denoiser.null_cond.expand(n, -1)
            cond = null if cond is None else torch.where(prompt_kept[:, None], cond, null)
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
        output = self.denoiser(x_t, timesteps, cond, drop, *(seeds or ()))
        if self.config.prediction_type == "epsilon":
            target = noise
        elif self.config.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(x_0, noise, timesteps)
        else:
            target = x_0
        out = {"mse": F.mse_loss(output.float(), target.float())}
        out["loss"] = out["mse"]
        if use_contrastive:
            # 5. GDR: the predicted x_0, destandardised into the CF space, as a retrieval query
            x_0_hat = self._predicted_x0(output, x_t, timesteps)
            per_row = contrastive_targets.losses(
                self.destandardise(x_0_hat), self.config.contrastive_temperature
            )
            kept = per_row if drop is None else per_row[~drop]
            out["contrastive"] = kept.mean() if kept.numel() else per_row.sum() * 0.0
            out["loss"] = out["mse"] + self.config.contrastive_weight * out["contrastive"]
        return out

    def _predicted_x0(
        self, output: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """x_0_hat from the denoiser's output: itself (``sample``), or
        sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v (``v_prediction``)."""
        if self.config.prediction_type == "sample":
            return output
        if self.config.prediction_type != "v_prediction":
            raise ValueError(f"no stable x_0 estimate for {self.config.prediction_type!r}")
        alpha_bar = self.noise_scheduler.alphas_cumprod.to(x_t.device)[timesteps][:, None]
        return alpha_bar.sqrt().to(x_t.dtype) * x_t - (1 - alpha_bar).sqrt().to(x_t.dtype) * output

    # --- guidance -------------------------------------------------------------------------------

    def _guided(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor | None,
        negative_cond: torch.Tensor | None,
        w: float,
        seeds: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Classifier-free guidance: eps = eps(c_neg or 0) + w * (eps(c) - eps(c_neg or 0)).

        With seeds S (a seed-conditioned head) the conditional branch is eps(c, S) and the base
        reads no seeds, eps(c_neg or 0, no seeds): guidance strengthens prompt and seeds
        together, as training dropped them together."""
        timesteps = t.expand(x_t.shape[0]) if t.ndim == 0 else t
        if cond is None:
            if negative_cond is None and seeds is None:
                return self.denoiser(x_t, timesteps, None)
            # No prompt but a negative or seeds: guide relative to the null condition.
            cond = self.denoiser.null_cond.expand(x_t.shape[0], -1)
        if negative_cond is None and w == 1.0:
            return self.denoiser(x_t, timesteps, cond, None, *(seeds or ()))
        n = x_t.shape[0]
        both_seeds = ()
        if seeds is not None:
            seed_latents, seed_counts = seeds
            both_seeds = (
                torch.cat([seed_latents, seed_latents]),
                torch.cat([seed_counts, torch.zeros_like(seed_counts)]),
            )
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
            *both_seeds,
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
        seeds: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        for t in timesteps:
            model_output = self._guided(x_t, t, cond, negative_cond, w, seeds)
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
        seed_latents: torch.Tensor | None = None,
        seed_counts: torch.Tensor | None = None,
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
            seed_latents, seed_counts: a seed-conditioned head's seed sets, (batch, latent_dim)
                mean CF factors of each prompt's seeds and (batch,) their counts (0: none);
                see :func:`text2tracks.head_seeds.seed_inputs`.
        """
        from diffusers.utils.torch_utils import randn_tensor

        cond, negative_cond = as_2d(cond, "cond"), as_2d(negative_cond, "negative_cond")
        if cond is None and batch_size is None:
            raise ValueError("sample needs cond, or batch_size for unconditional sampling")
        batch = cond.shape[0] if cond is not None else int(batch_size)
        if negative_cond is not None and negative_cond.shape[0] != batch:
            raise ValueError(f"negative_cond has {negative_cond.shape[0]} rows, cond has {batch}")
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        w = self.config.guidance_weight if guidance_weight is None else float(guidance_weight)
        steps = self._steps(steps)
        seeds = self._seeds(seed_latents, seed_counts, batch)
        if seeds is not None:
            seeds = tuple(s.repeat_interleave(n_samples, dim=0) for s in seeds)
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
            x_t, scheduler, scheduler.timesteps, cond, negative_cond, w, eta, generator, seeds
        )
        return self.destandardise(x_0).reshape(batch, n_samples, -1)

    # --- inversion and editing ------------------------------------------------------------------

    def _invert_std(
        self, x_0: torch.Tensor, source_cond: torch.Tensor | None, steps: int, n_steps: int
    ) -> torch.Tensor:
        # An x_0-predicting head steps through an epsilon-form inverse scheduler: diffusers'
        # DDIMInverseScheduler turns x_0_hat into eps_hat with alpha_bar of the *current* level,
        # which is 1 at the first step (0 / 0 = NaN). Here eps_hat is computed at the timestep
        # the model was evaluated at (alpha_bar_t < 1), the same approximation as below.
        from_x0 = self.config.prediction_type == "sample"
        scheduler = self._ddim_inverse(steps, "epsilon" if from_x0 else None)
        alphas_cumprod = scheduler.alphas_cumprod.to(x_0.device)
        x_t = x_0
        for t in scheduler.timesteps[:n_steps]:
            # Inverse DDIM (eta = 0): x_t from x_{t-1} with eps_theta(x_{t-1}, t, c_src), the usual
            # approximation eps_theta(x_t) ~ eps_theta(x_{t-1}); no guidance (w = 1) keeps it exact-ish.
            model_output = self._guided(x_t, t, source_cond, None, 1.0)
            if from_x0:
                alpha_bar = alphas_cumprod[t]
                model_output = (x_t - alpha_bar.sqrt() * model_output) / (1 - alpha_bar).sqrt()
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
        source_cond = as_2d(source_cond, "source_cond")
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
        seed_latents: torch.Tensor | None = None,
        seed_counts: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Move seed latents ``(n, latent_dim)`` (e.g. the mean factor of some tracks) towards a
        prompt: invert them for ``round(strength * steps)`` DDIM steps under ``source_cond``
        (None = null), then denoise the rest of the way under ``prompt_cond`` with guidance.

        strength 0 returns the seeds; 1 inverts the whole trajectory and follows the prompt.
        A seed-conditioned head denoises under the seed sets ``seed_latents`` / ``seed_counts``
        too (the inversion reads none). Returns CF-space latents ``(n, latent_dim)``.
        """
        if not 0.0 <= float(strength) <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {strength}")
        steps = self._steps(steps)
        latents = torch.as_tensor(latents, dtype=torch.float32, device=self.device)
        if latents.ndim != 2:
            raise ValueError(f"latents must be (n, latent_dim), got {tuple(latents.shape)}")
        n_invert = int(round(float(strength) * steps))
        seeds = self._seeds(seed_latents, seed_counts, latents.shape[0])
        if n_invert == 0:
            return latents.clone()
        w = self.config.guidance_weight if guidance_weight is None else float(guidance_weight)
        # 1. x_0 -> x_{t_k}, k = n_invert, under c_src (DDIMInverseScheduler, eta = 0)
        x_t = self._invert_std(
            self.standardise(latents), as_2d(source_cond, "source_cond"), steps, n_invert
        )
        # 2. x_{t_k} -> x_0 under c (and c_neg) with guidance w (DDIMScheduler, eta = 0)
        scheduler = self._ddim(steps)
        timesteps = scheduler.timesteps[steps - n_invert :]
        x_0 = self._denoise(
            x_t,
            scheduler,
            timesteps,
            as_2d(prompt_cond, "prompt_cond"),
            as_2d(negative_cond, "negative_cond"),
            w,
            0.0,
            None,
            seeds,
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
