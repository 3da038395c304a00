"""Prompt encoders: prompts -> pooled condition vectors ``(batch, out_dim)`` for the latent heads.

Every encoder shares one small interface (:class:`PromptEncoder`): ``tokenize(prompts)`` gives
the tensors ``forward(**batch)`` pools into ``(batch, out_dim)``; ``encode(prompts)`` does both.
:class:`ByteEncoder` is a small transformer over UTF-8 bytes trained with the head;
:class:`FrozenSeq2SeqEncoder` reuses the trained seq2seq's encoder, frozen. How an encoder is
written into a head's ``config.json`` lives with the heads' save/load in
:mod:`text2tracks.head_base`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from text2tracks.data import normalize_prompt


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
        # T5 names its width d_model; an EncoderDecoderModel (the MiniLM encoder) keeps it in
        # the encoder's own config as hidden_size.
        encoder_config = self.encoder.config
        width = getattr(encoder_config, "d_model", None) or encoder_config.hidden_size
        self.out_dim = int(width)
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


__all__ = [
    "ByteEncoder",
    "ByteEncoderConfig",
    "FrozenSeq2SeqEncoder",
    "PromptEncoder",
    "masked_mean",
]
