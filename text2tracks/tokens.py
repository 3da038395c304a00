"""Spelling of semantic-ID tokens and their place in the tokenizer's vocabulary.

One token per (level, code), e.g. ``<sid_0_17>``, never shared between levels. The collision
digit is simply the last level. Tokens are added level by level, so the tokens of one level form a
contiguous block ``[offsets[level], offsets[level] + level_sizes[level])`` of the vocabulary: the
constrained decoder relies on that to look only at the current level's block.

Two token *schemes* (:attr:`SIDTokenLayout.scheme`):

- ``"sid"`` (semantic IDs, random codes, atomic IDs): the new tokens above, level by level.
- ``"bytes"`` (content IDs, :mod:`semantic_ids.content_ids`): the model writes the UTF-8 bytes of
  "artist - title" with the byte-level tokenizer's *own* byte tokens, shared with the prompt's
  input embeddings. In ByT5's vocabulary byte ``b`` is token ``b + 3`` (0 pad, 1 EOS, 2 unk), so
  one token ``<sid_end>`` added right after the bytes (id 259) makes ``[3, 260)`` a block of 257
  codes: bytes ``0 .. 255`` and END ``256``. Every byte level uses that same block (the blocks
  of different levels overlap, which is fine: ``codes_to_token_ids`` / ``token_ids_to_codes``
  work per level), and the collision digit gets its own block of ``<sid_{L}_{c}>`` tokens
  after ``<sid_end>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEMES = ("sid", "bytes")
BYTE_TOKEN_OFFSET = 3  # ByT5: 0 pad, 1 EOS, 2 unk, then byte b is token b + 3
N_BYTES = 256
SID_END_TOKEN = "<sid_end>"
SID_END_ID = BYTE_TOKEN_OFFSET + N_BYTES  # 259
BYTE_LEVEL_SIZE = N_BYTES + 1  # bytes 0..255 and END (256)
_PROBE = "Az09 -~é€😀"  # ASCII, 2-, 3- and 4-byte UTF-8 characters


def sid_token(level: int, code: int) -> str:
    """The token string of ``code`` at ``level``."""
    return f"<sid_{level}_{code}>"


@dataclass(frozen=True)
class SIDTokenLayout:
    """Where each level's block of semantic-ID tokens sits in the vocabulary.

    Attributes:
        level_sizes: number of codes at each level, the collision-digit level last.
        offsets: token id of code 0 at each level.
        scheme: ``"sid"`` (one new token per (level, code), blocks one after the other) or
            ``"bytes"`` (content IDs: every byte level is the block ``[3, 260)`` of the byte
            tokens and ``<sid_end>``, the last level a block of collision-digit tokens).
    """

    level_sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    scheme: str = "sid"

    def __post_init__(self) -> None:
        if len(self.level_sizes) != len(self.offsets) or not self.level_sizes:
            raise ValueError(
                f"level_sizes and offsets must be non-empty and of equal length, got "
                f"{len(self.level_sizes)} and {len(self.offsets)}"
            )
        if any(int(s) <= 0 for s in self.level_sizes):
            raise ValueError(f"every level needs at least one code, got {self.level_sizes}")
        if self.scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {self.scheme!r}")
        if self.scheme == "bytes":
            byte_levels = self.level_sizes[:-1]
            if (
                len(self.level_sizes) < 2
                or any(s != BYTE_LEVEL_SIZE for s in byte_levels)
                or any(o != BYTE_TOKEN_OFFSET for o in self.offsets[:-1])
            ):
                raise ValueError(
                    f"a 'bytes' layout has byte levels of {BYTE_LEVEL_SIZE} codes at offset "
                    f"{BYTE_TOKEN_OFFSET}, then a collision-digit level; got level_sizes "
                    f"{self.level_sizes}, offsets {self.offsets}"
                )
            if self.offsets[-1] <= SID_END_ID:
                raise ValueError(
                    f"the collision-digit block must follow {SID_END_TOKEN} (id {SID_END_ID}), "
                    f"got offset {self.offsets[-1]}"
                )

    @property
    def depth(self) -> int:
        return len(self.level_sizes)

    @property
    def first_id(self) -> int:
        """Smallest token id of any level's block."""
        return min(self.offsets)

    @property
    def end_id(self) -> int:
        """One past the largest token id of any level's block."""
        return max(o + s for o, s in zip(self.offsets, self.level_sizes, strict=True))

    def tokens(self) -> list[str]:
        """The tokens this layout adds to the tokenizer (``"bytes"``: ``<sid_end>`` and the digits)."""
        if self.scheme == "bytes":
            last = self.depth - 1
            return [SID_END_TOKEN] + [sid_token(last, c) for c in range(self.level_sizes[-1])]
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
        return {
            "level_sizes": list(self.level_sizes),
            "offsets": list(self.offsets),
            "scheme": self.scheme,
        }

    @classmethod
    def from_dict(cls, d: dict) -> SIDTokenLayout:
        """Inverse of :meth:`to_dict`; a dict without ``scheme`` (older files) is ``"sid"``."""
        return cls(
            tuple(int(x) for x in d["level_sizes"]),
            tuple(int(x) for x in d["offsets"]),
            str(d.get("scheme", "sid")),
        )


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
        block = ids[start : start + size]
        if block != list(range(block[0], block[0] + size)):
            raise ValueError("semantic-ID tokens of a level are not contiguous in the vocabulary")
        offsets.append(block[0])
        start += size
    return SIDTokenLayout(level_sizes, tuple(offsets))


_CONTENT_FIX = (
    "content IDs need the built-in byte-level tokenizer (ModelConfig(base=None)), a "
    "ByT5Tokenizer(extra_ids=0), or a pretrained ByT5 base (whose sentinel tokens are dropped)"
)


def check_byte_tokenizer(tokenizer) -> None:
    """Raise ``ValueError`` unless ``tokenizer`` writes UTF-8 byte ``b`` as token id ``b + 3``."""
    try:
        ids = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
        byte_tokens = tokenizer.convert_tokens_to_ids([chr(b) for b in range(N_BYTES)])
    except Exception as err:  # noqa: BLE001 - any failure means: not a byte tokenizer
        raise ValueError(
            f"{type(tokenizer).__name__} is not a byte-level tokenizer ({err}); {_CONTENT_FIX}"
        ) from err
    expected = [b + BYTE_TOKEN_OFFSET for b in _PROBE.encode("utf-8")]
    if list(ids) != expected or list(byte_tokens) != list(range(BYTE_TOKEN_OFFSET, SID_END_ID)):
        raise ValueError(
            f"{type(tokenizer).__name__} does not map UTF-8 byte b to token id b + "
            f"{BYTE_TOKEN_OFFSET} ({_PROBE!r} -> {list(ids)[:12]}..., expected "
            f"{expected[:12]}...); {_CONTENT_FIX}"
        )


def add_content_tokens(tokenizer, level_sizes: tuple[int, ...] | list[int]) -> SIDTokenLayout:
    """Prepare a byte-level tokenizer for content IDs and return their ``"bytes"`` layout.

    ``level_sizes`` is ``(257,) * max_bytes + (largest collision group,)`` (from
    :func:`semantic_ids.content_ids.content_codes`). Adds ``<sid_end>`` (it must become id 259,
    right after the 256 byte tokens) and the collision-digit tokens ``<sid_{L}_{c}>`` as one
    contiguous block; tokens already present (a tokenizer saved after this call) are reused.

    Raises ``ValueError`` (naming the fix) when the tokenizer is not byte-level with byte ``b`` at
    id ``b + 3``, or when ``<sid_end>`` cannot be id 259 (e.g. ByT5's default ``extra_ids``
    sentinel tokens already hold ids 259..383); these checks run before anything is added.
    """
    level_sizes = tuple(int(s) for s in level_sizes)
    if (
        len(level_sizes) < 2
        or any(s != BYTE_LEVEL_SIZE for s in level_sizes[:-1])
        or level_sizes[-1] < 1
    ):
        raise ValueError(
            f"content-ID level sizes are ({BYTE_LEVEL_SIZE},) * max_bytes + (collision digits,), "
            f"got {level_sizes}"
        )
    check_byte_tokenizer(tokenizer)
    vocab = tokenizer.get_vocab()
    if SID_END_TOKEN in vocab:
        end_id = tokenizer.convert_tokens_to_ids(SID_END_TOKEN)
        if end_id != SID_END_ID:
            raise ValueError(
                f"{SID_END_TOKEN} is token {end_id}, expected {SID_END_ID}; {_CONTENT_FIX}"
            )
    elif len(tokenizer) != SID_END_ID:
        held = tokenizer.convert_ids_to_tokens(SID_END_ID) if len(tokenizer) > SID_END_ID else None
        raise ValueError(
            f"{SID_END_TOKEN} must be token {SID_END_ID}, right after the byte tokens, but the "
            f"tokenizer has {len(tokenizer)} tokens (id {SID_END_ID} is {held!r}): {_CONTENT_FIX}"
        )
    else:
        tokenizer.add_tokens([SID_END_TOKEN], special_tokens=False)
        if tokenizer.convert_tokens_to_ids(SID_END_TOKEN) != SID_END_ID:
            raise ValueError(f"{SID_END_TOKEN} did not land at id {SID_END_ID}; {_CONTENT_FIX}")
    last = len(level_sizes) - 1
    digits = [sid_token(last, c) for c in range(level_sizes[-1])]
    missing = [t for t in digits if t not in vocab]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=False)
    ids = tokenizer.convert_tokens_to_ids(digits)
    if ids != list(range(ids[0], ids[0] + len(ids))) or ids[0] <= SID_END_ID:
        raise ValueError(
            "the collision-digit tokens are not one contiguous block after "
            f"{SID_END_TOKEN} in the vocabulary"
        )
    return SIDTokenLayout(level_sizes, (BYTE_TOKEN_OFFSET,) * last + (ids[0],), "bytes")


def add_layout_tokens(
    tokenizer, level_sizes: tuple[int, ...] | list[int], scheme: str = "sid"
) -> SIDTokenLayout:
    """:func:`add_sid_tokens` for ``scheme="sid"``, :func:`add_content_tokens` for ``"bytes"``."""
    if scheme == "sid":
        return add_sid_tokens(tokenizer, level_sizes)
    if scheme == "bytes":
        return add_content_tokens(tokenizer, level_sizes)
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
