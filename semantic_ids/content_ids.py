"""Content IDs: a track's "artist - title" string as its identifier, under the same trie.

The comparison scheme of Text2Tracks' ID ablation: instead of CF codes, the model writes the
UTF-8 bytes of ``"artist - title"`` and the constrained decoder allows only strings of real
tracks. To fit the fixed-depth trie of :mod:`text2tracks.trie`, every ID has the same shape:

- ``max_bytes`` byte levels: the string's UTF-8 bytes as codes ``0 .. 255`` (truncated to at most
  ``max_bytes`` bytes at a character boundary, never inside a multi-byte character), then the
  END code ``256`` repeated to ``max_bytes`` positions (level size 257 each);
- one collision-digit level: items whose padded byte codes are identical (same text, or same
  first ``max_bytes`` bytes) get digits ``0, 1, 2, ...`` by popularity (most played first, ties by
  item index), exactly as the semantic IDs' collision digit; its size is the largest group.

Tokens are the byte-level tokenizer's own byte tokens (see ``text2tracks.tokens``): the decoder
writes the same byte embeddings the encoder reads. No torch here.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from semantic_ids.catalog import BYTE_LEVEL_SIZE, SemanticIDCatalog
from semantic_ids.grouping import popularity_digits

N_BYTE_CODES = 256
END_CODE = 256  # after the last byte of a string, repeated up to max_bytes
DEFAULT_MAX_BYTES = 48
SEPARATOR = " - "

_SPACES = re.compile(r"\s+")


def _clean(text) -> str:
    if text is None:
        return ""
    return _SPACES.sub(" ", unicodedata.normalize("NFC", str(text))).strip()


def content_text(name: str | None, artist: str | None, track_id: str | None = None) -> str:
    """The content string of a track: ``"artist - title"``, NFC-normalised, whitespace collapsed.

    With one of ``name`` / ``artist`` missing (``None`` or blank) the other stands alone; with
    both missing the track id is used (so every item still has a string of its own).
    """
    parts = [p for p in (_clean(artist), _clean(name)) if p]
    if parts:
        return SEPARATOR.join(parts)
    return _clean(track_id)


def truncate_utf8(text: str, max_bytes: int) -> bytes:
    """UTF-8 bytes of ``text``, cut to at most ``max_bytes`` at a character boundary."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return data
    cut = max_bytes
    # a byte 10xxxxxx continues the character before it: cutting there would split that char
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]


def _check_max_bytes(max_bytes) -> int:
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
    return int(max_bytes)


def byte_codes(texts: Sequence[str], max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """int64 ``(n, max_bytes)``: each text's truncated UTF-8 bytes, padded with ``END_CODE``."""
    max_bytes = _check_max_bytes(max_bytes)
    encoded = [truncate_utf8(str(t), max_bytes) for t in texts]
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    flat = np.frombuffer(b"".join(b.ljust(max_bytes, b"\0") for b in encoded), dtype=np.uint8)
    codes = flat.reshape(len(encoded), max_bytes).astype(np.int64)
    codes[np.arange(max_bytes)[None, :] >= lengths[:, None]] = END_CODE
    return codes


def collision_digits(group_codes: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Digit of each row within its group of identical rows: 0 for the most popular, then 1, ...

    Ties in popularity are broken by row index. ``group_codes`` int ``(n, width)``.
    """
    n = group_codes.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    _, group = np.unique(group_codes, axis=0, return_inverse=True)
    return popularity_digits(group.reshape(-1), popularity, np.arange(n))


def content_codes(
    texts: Sequence[str], popularity, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Content IDs of ``texts`` (one per item, e.g. from :func:`content_text`).

    Args:
        texts: ``(n_items,)`` strings.
        popularity: ``(n_items,)`` play counts; within a group of identical byte codes the most
            played item gets collision digit 0.
        max_bytes: byte levels (strings longer than this are truncated at a character boundary).

    Returns:
        ``codes`` int64 ``(n_items, max_bytes + 1)`` (bytes / END, then the collision digit) and
        ``level_sizes`` (``(257,) * max_bytes + (largest group,)``). Every row is unique.
    """
    max_bytes = _check_max_bytes(max_bytes)
    texts = list(texts)
    popularity = np.asarray(popularity)
    if popularity.shape != (len(texts),):
        raise ValueError(f"popularity must have shape ({len(texts)},), got {popularity.shape}")
    if popularity.size and not np.isfinite(popularity.astype(np.float64)).all():
        raise ValueError("popularity must be finite numbers")
    bytes_ = byte_codes(texts, max_bytes)
    digits = collision_digits(bytes_, popularity)
    largest = int(digits.max()) + 1 if digits.size else 1
    codes = np.column_stack([bytes_, digits]).astype(np.int64)
    return codes, (BYTE_LEVEL_SIZE,) * max_bytes + (largest,)


def id_lengths(codes: np.ndarray) -> np.ndarray:
    """Number of real bytes (codes before the first END) of each content ID, int64 ``(n,)``."""
    codes = np.asarray(codes)
    byte_part = codes[:, :-1]
    return (byte_part != END_CODE).sum(axis=1).astype(np.int64)


def id_token_counts(codes: np.ndarray) -> np.ndarray:
    """Tokens that carry information in each content ID, int64 ``(n,)``.

    Real bytes, then END when the string is shorter than the byte levels (a truncated string has
    none), the collision digit and EOS: what a decoder that stopped at END would write. The fixed
    decoder writes ``max_bytes + 2`` tokens for every item (END repeated to the full depth).
    """
    codes = np.asarray(codes)
    n_bytes = id_lengths(codes)
    return n_bytes + (n_bytes < codes.shape[1] - 1).astype(np.int64) + 2


def content_stats(texts: Sequence[str], codes: np.ndarray) -> dict:
    """Figures of a content-ID catalogue (JSON-ready).

    ``tracks``, ``max_bytes``, ``share_truncated`` (strings longer than ``max_bytes`` bytes),
    ``mean_bytes`` / ``median_bytes`` (of the full UTF-8 strings) and ``mean_id_bytes`` (after
    truncation), ``share_collision_digit_nonzero`` (items whose digit is > 0, i.e. that share
    their byte codes with a more popular item), ``shared_share`` (items in a group of two or
    more), ``largest_group``, ``decode_steps`` (``max_bytes + 2``: bytes/END, digit, EOS) and
    ``mean_id_tokens`` (see :func:`id_token_counts`).
    """
    codes = np.asarray(codes)
    texts = list(texts)
    if codes.ndim != 2 or codes.shape[0] != len(texts) or codes.shape[1] < 2:
        raise ValueError(f"codes must be (n_items={len(texts)}, max_bytes + 1), got {codes.shape}")
    max_bytes = codes.shape[1] - 1
    out: dict = {"tracks": len(texts), "max_bytes": max_bytes, "decode_steps": max_bytes + 2}
    if not texts:
        return out
    full = np.fromiter(
        (len(str(t).encode("utf-8")) for t in texts), dtype=np.int64, count=len(texts)
    )
    kept = id_lengths(codes)
    _, group, counts = np.unique(codes[:, :-1], axis=0, return_inverse=True, return_counts=True)
    out.update(
        share_truncated=float((full > max_bytes).mean()),
        mean_bytes=float(full.mean()),
        median_bytes=float(np.median(full)),
        mean_id_bytes=float(kept.mean()),
        share_collision_digit_nonzero=float((codes[:, -1] > 0).mean()),
        shared_share=float((counts[group.reshape(-1)] > 1).mean()),
        largest_group=int(counts.max()),
        mean_id_tokens=float(id_token_counts(codes).mean()),
    )
    return out


def content_catalog(
    item_ids: Sequence[str],
    names: Sequence[str | None],
    artists: Sequence[str | None],
    popularity,
    max_bytes: int = DEFAULT_MAX_BYTES,
):
    """A :class:`~semantic_ids.catalog.SemanticIDCatalog` of content IDs (token scheme "bytes").

    Returns ``(catalog, stats)`` with :func:`content_stats`' figures.
    """
    if not len(item_ids) == len(names) == len(artists):
        raise ValueError(
            f"item_ids, names and artists differ in length: {len(item_ids)}, {len(names)}, "
            f"{len(artists)}"
        )
    texts = [content_text(n, a, t) for t, n, a in zip(item_ids, names, artists, strict=True)]
    codes, level_sizes = content_codes(texts, popularity, max_bytes)
    catalog = SemanticIDCatalog(item_ids, codes, level_sizes, scheme="bytes")
    return catalog, content_stats(texts, codes)
