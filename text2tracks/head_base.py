"""What the latent heads share: latent standardisation, the prompt encoder, save and load.

:class:`LatentModel` is the base of :class:`~text2tracks.diffusion.DiffusionHead` and
:class:`~text2tracks.latent_regressor.PromptToLatentRegressor`. It keeps per-dimension
statistics of the target latents (CF factors are standardised so that a unit-variance prior
fits them) and an optional :class:`~text2tracks.prompt_encoders.PromptEncoder`.

A saved head is a folder::

    config.json         format_version, kind, the head's config, the encoder's payload
    model.safetensors   the head's weights (a frozen seq2seq encoder's stay in ``seq2seq/``)
    latent_stats.npy    (2, latent_dim) float32: mean; std
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from text2tracks.artifacts import SEQ2SEQ_COMPONENT
from text2tracks.head_configs import config_from_dict
from text2tracks.prompt_encoders import (
    ByteEncoder,
    ByteEncoderConfig,
    FrozenSeq2SeqEncoder,
    PromptEncoder,
)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
STATS_NAME = "latent_stats.npy"
FORMAT_VERSION = 1

_ENCODER_KINDS = ("bytes", "seq2seq", "none")


def encoder_payload(encoder: PromptEncoder | None) -> dict[str, Any]:
    """The ``encoder`` entry of a head's ``config.json``: its kind and what rebuilds it."""
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


def encoder_from_payload(
    payload: dict[str, Any], directory: Path, encoder: PromptEncoder | None
) -> PromptEncoder | None:
    """The encoder a saved head was written with, from its ``config.json`` payload.

    A byte encoder is rebuilt from its config (its weights are the head's); a seq2seq encoder is
    ``encoder`` when given, otherwise loaded from the artifact's ``seq2seq/`` beside ``directory``.
    """
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
        return ByteEncoder(config_from_dict(ByteEncoderConfig, payload["config"]))
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


def as_2d(cond: torch.Tensor | None, name: str) -> torch.Tensor | None:
    """``cond`` as given when it is None or ``(batch, cond_dim)``; ``ValueError`` otherwise."""
    if cond is not None and cond.ndim != 2:
        raise ValueError(f"{name} must be (batch, cond_dim), got shape {tuple(cond.shape)}")
    return cond


class LatentModel(nn.Module):
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
            "encoder": encoder_payload(self.encoder),
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
        encoder = encoder_from_payload(payload["encoder"], directory, encoder)
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


__all__ = [
    "CONFIG_NAME",
    "FORMAT_VERSION",
    "STATS_NAME",
    "WEIGHTS_NAME",
    "LatentModel",
    "as_2d",
    "encoder_from_payload",
    "encoder_payload",
]
