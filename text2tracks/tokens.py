"""Spelling of semantic-ID tokens and their place in the tokenizer's vocabulary.

One token per (level, code), e.g. ``<sid_0_17>``, never shared between levels. The collision
digit is simply the last level. Tokens are added level by level, so the tokens of one level form a
contiguous block ``[offsets[level], offsets[level] + level_sizes[level])`` of the vocabulary: the
constrained decoder relies on that to look only at the current level's block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def sid_token(level: int, code: int) -> str:
    """The token string of ``code`` at ``level``."""
    return f"<sid_{level}_{code}>"


@dataclass(frozen=True)
class SIDTokenLayout:
    """Where each level's block of semantic-ID tokens sits in the vocabulary.

    Attributes:
        level_sizes: number of codes at each level, the collision-digit level last.
        offsets: token id of code 0 at each level.
    """

    level_sizes: tuple[int, ...]
    offsets: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.level_sizes) != len(self.offsets) or not self.level_sizes:
            raise ValueError(
                f"level_sizes and offsets must be non-empty and of equal length, got "
                f"{len(self.level_sizes)} and {len(self.offsets)}"
            )
        if any(int(s) <= 0 for s in self.level_sizes):
            raise ValueError(f"every level needs at least one code, got {self.level_sizes}")

    @property
    def depth(self) -> int:
        return len(self.level_sizes)

    @property
    def first_id(self) -> int:
        return self.offsets[0]

    @property
    def end_id(self) -> int:
        return self.offsets[-1] + self.level_sizes[-1]

    def tokens(self) -> list[str]:
        return [sid_token(lv, c) for lv, size in enumerate(self.level_sizes) for c in range(size)]

    def codes_to_token_ids(self, codes: np.ndarray) -> np.ndarray:
        """``codes`` int (n, depth) -> token ids int64 (n, depth)."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.depth:
            raise ValueError(f"codes must have shape (n, {self.depth}), got {codes.shape}")
        if (codes < 0).any() or (codes >= np.asarray(self.level_sizes)).any():
            raise ValueError("codes out of range of the layout's level sizes")
        return codes.astype(np.int64) + np.asarray(self.offsets, dtype=np.int64)

    def token_ids_to_codes(self, token_ids: np.ndarray) -> np.ndarray:
        """token ids int (n, depth) -> codes int64 (n, depth); raises on a token of the wrong level."""
        token_ids = np.asarray(token_ids, dtype=np.int64)
        if token_ids.ndim != 2 or token_ids.shape[1] != self.depth:
            raise ValueError(f"token_ids must have shape (n, {self.depth}), got {token_ids.shape}")
        codes = token_ids - np.asarray(self.offsets, dtype=np.int64)
        if (codes < 0).any() or (codes >= np.asarray(self.level_sizes)).any():
            raise ValueError("a token id is not a semantic-ID token of its level")
        return codes

    def to_dict(self) -> dict:
        return {"level_sizes": list(self.level_sizes), "offsets": list(self.offsets)}

    @classmethod
    def from_dict(cls, d: dict) -> SIDTokenLayout:
        return cls(tuple(int(x) for x in d["level_sizes"]), tuple(int(x) for x in d["offsets"]))


def add_sid_tokens(tokenizer, level_sizes: tuple[int, ...] | list[int]) -> SIDTokenLayout:
    """Add one token per (level, code) to a Hugging Face tokenizer and return their layout.

    Tokens already present (a tokenizer saved after this call) are reused; either way the
    function checks that each level's block is contiguous, and raises if it is not.
    """
    level_sizes = tuple(int(s) for s in level_sizes)
    tokens = [sid_token(lv, c) for lv, size in enumerate(level_sizes) for c in range(size)]
    vocab = tokenizer.get_vocab()
    missing = [t for t in tokens if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=False)
    ids = tokenizer.convert_tokens_to_ids(tokens)
    offsets, start = [], 0
    for size in level_sizes:
        block = ids[start:start + size]
        if block != list(range(block[0], block[0] + size)):
            raise ValueError("semantic-ID tokens of a level are not contiguous in the vocabulary")
        offsets.append(block[0])
        start += size
    return SIDTokenLayout(level_sizes, tuple(offsets))
