"""The semantic-ID catalogue: the one source of which IDs exist, and of codes <-> items.

Every item's ID is its residual k-means codes followed by a *collision digit* (TIGER style, fixed
depth): items that share all their codes get digits ``0 .. g-1`` ordered by popularity (digit 0 =
most played, ties broken by item id); an item alone in its prefix gets digit 0. The digit level's
size is the largest group.

The catalogue also records its token *scheme*, which tells the model how codes become tokens:
``"sid"`` (one token per (level, code), the semantic IDs and their random / atomic variants) or
``"bytes"`` (content IDs, :mod:`semantic_ids.content_ids`: byte levels of size 257 written with
the byte-level tokenizer's own byte tokens, then a collision digit). Catalogues saved without a
scheme are ``"sid"``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from semantic_ids.grouping import popularity_digits

CONFIG_NAME = "config.json"
CODES_NAME = "sid_codes.npy"
ITEM_IDS_NAME = "item_ids.json"
FORMAT_VERSION = 1
SCHEMES = ("sid", "bytes")
# a "bytes" (content-ID) level: UTF-8 bytes 0..255 and END (256); semantic_ids.content_ids
# writes such codes, this module checks them (content_ids imports catalog, never the reverse)
BYTE_LEVEL_SIZE = 257


def _prefix_ranks(
    codes: np.ndarray, sizes: Sequence[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per level ``l``: the sorted distinct keys of the prefixes ``codes[:, :l+1]`` and each row's rank.

    A prefix's key is ``rank of its parent prefix * sizes[l] + code``, so keys stay small
    (below ``n * max(sizes)``) however deep the IDs are (content IDs have 49 levels of 257 codes,
    far beyond a mixed-radix int64 key); ranks follow the lexicographic order of the prefixes.
    """
    n = codes.shape[0]
    rank = np.zeros(n, dtype=np.int64)
    keys, ranks = [], []
    for level, size in enumerate(sizes):
        key = rank * int(size) + codes[:, level].astype(np.int64)
        unique, rank = np.unique(key, return_inverse=True)
        rank = rank.reshape(-1).astype(np.int64)
        keys.append(unique)
        ranks.append(rank)
    return keys, ranks


def _pairs(counts: np.ndarray) -> float:
    counts = counts.astype(np.float64)
    return float((counts * (counts - 1) / 2).sum())


def _perplexity(counts: np.ndarray) -> float:
    counts = counts[counts > 0].astype(np.float64)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(math.exp(-(p * np.log(p)).sum()))


def _shared_prefix_stats(prefix_keys: np.ndarray) -> dict:
    """How many items share their full residual prefix with another item."""
    _, inverse, counts = np.unique(prefix_keys, return_inverse=True, return_counts=True)
    in_shared = counts[inverse.reshape(-1)] > 1
    return {
        "unique_prefixes": int(counts.size),
        "shared_prefix_share": float(in_shared.mean()),
        "shared_groups": int((counts > 1).sum()),
        "largest_group": int(counts.max()),
    }


def _artist_codes(artists: Sequence[str | None], n: int) -> tuple[np.ndarray, float | None]:
    """``(codes, random_agreement)``: an int artist code per item (-1 where unknown), and the
    share of random pairs of items with a known artist that have the same one (None under two)."""
    if len(artists) != n:
        raise ValueError(f"{len(artists)} artists for {n} items")
    known = np.array([a is not None and str(a) != "" for a in artists])
    _, codes = np.unique(
        np.array([str(a) if a is not None else "" for a in artists]), return_inverse=True
    )
    codes = np.where(known, codes.reshape(-1), -1)
    n_known = int(known.sum())
    total = n_known * (n_known - 1) / 2
    random_agreement = _pairs(np.bincount(codes[known])) / total if total else None
    return codes, random_agreement


def _artist_agreement(
    prefix_inverse: np.ndarray, artist_codes: np.ndarray, random_agreement: float | None
) -> dict:
    """Of the pairs of items (with a known artist) under the same prefix, the share by the same
    artist, and its lift over random pairs."""
    keep = artist_codes >= 0
    p = prefix_inverse.reshape(-1)[keep]
    same_prefix = _pairs(np.bincount(p))
    joint = p.astype(np.int64) * (int(artist_codes.max()) + 1) + artist_codes[keep]
    _, joint_counts = np.unique(joint, return_counts=True)
    agreement = _pairs(joint_counts) / same_prefix if same_prefix else None
    return {
        "same_prefix_pairs": int(same_prefix),
        "artist_pair_agreement": agreement,
        "artist_lift": (
            agreement / random_agreement if agreement is not None and random_agreement else None
        ),
    }


class SemanticIDCatalog:
    """Items and their fixed-depth semantic IDs.

    Attributes:
        item_ids: tuple of track ids; item ``i`` is ``item_ids[i]``.
        sid_codes: int64 ``(n_items, depth)``, the residual codes then the collision digit.
        level_sizes: codes per level: the codebook sizes, then the largest collision group.
        scheme: ``"sid"`` (one token per (level, code)) or ``"bytes"`` (content IDs: byte
            levels of 257 codes, then the collision digit).
    """

    def __init__(
        self,
        item_ids: Sequence[str],
        sid_codes: np.ndarray,
        level_sizes: Sequence[int],
        scheme: str = "sid",
    ) -> None:
        sid_codes = np.asarray(sid_codes)
        if sid_codes.ndim != 2 or sid_codes.shape[0] != len(item_ids):
            raise ValueError(
                f"sid_codes must be (n_items={len(item_ids)}, depth), got {sid_codes.shape}"
            )
        level_sizes = tuple(int(s) for s in level_sizes)
        if (
            not level_sizes
            or len(level_sizes) != sid_codes.shape[1]
            or any(s < 1 for s in level_sizes)
        ):
            raise ValueError(
                f"level_sizes {level_sizes} must give a positive size for each of the "
                f"{sid_codes.shape[1]} levels"
            )
        if sid_codes.size and (
            sid_codes.min() < 0 or (sid_codes.max(axis=0) >= np.asarray(level_sizes)).any()
        ):
            raise ValueError(f"sid_codes out of range for level_sizes {level_sizes}")
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
        if scheme == "bytes":
            if len(level_sizes) < 2 or any(s != BYTE_LEVEL_SIZE for s in level_sizes[:-1]):
                raise ValueError(
                    f"a 'bytes' (content-ID) catalogue has byte levels of {BYTE_LEVEL_SIZE} codes "
                    f"then a collision digit, got level_sizes {level_sizes}"
                )
        if len(item_ids) * max(level_sizes) >= 2**62:
            raise ValueError(f"level_sizes {level_sizes} are too large for int64 prefix keys")
        self.item_ids = tuple(str(i) for i in item_ids)
        self.sid_codes = np.ascontiguousarray(sid_codes, dtype=np.int64)
        self.sid_codes.setflags(write=False)
        self.level_sizes = level_sizes
        self.scheme = scheme
        self._level_keys, ranks = _prefix_ranks(self.sid_codes, level_sizes)
        if self._level_keys[-1].size != len(self.item_ids):
            raise ValueError("two items share a full semantic ID; every item needs its own")
        self._rank_item = np.empty(len(self.item_ids), dtype=np.int64)
        self._rank_item[ranks[-1]] = np.arange(len(self.item_ids))
        self._item_index = {item_id: i for i, item_id in enumerate(self.item_ids)}
        if len(self._item_index) != len(self.item_ids):
            raise ValueError("item_ids must be unique")

    # ------------------------------------------------------------------ building

    @classmethod
    def build(
        cls,
        item_ids: Sequence[str],
        codes: np.ndarray,
        popularity: np.ndarray,
        codebook_sizes: int | Sequence[int] | None = None,
    ) -> SemanticIDCatalog:
        """Add the collision digit to residual codes.

        Args:
            item_ids: track id of each item, ``(n_items,)``.
            codes: int ``(n_items, n_levels)`` residual k-means codes (e.g. ``ResidualKMeans.codes_``).
            popularity: ``(n_items,)`` play counts; within a shared prefix, the most played item
                gets digit 0 (ties: the smaller item id first).
            codebook_sizes: codes per level (one int for all levels); defaults to ``max + 1``.
        """
        codes = np.asarray(codes)
        popularity = np.asarray(popularity)
        n = len(item_ids)
        if codes.ndim != 2 or codes.shape[0] != n:
            raise ValueError(f"codes must be (n_items={n}, n_levels), got {codes.shape}")
        if popularity.shape != (n,):
            raise ValueError(f"popularity must be ({n},), got {popularity.shape}")
        if codes.size and codes.min() < 0:
            raise ValueError("codes must be non-negative")
        n_levels = codes.shape[1]
        if codebook_sizes is None:
            sizes = tuple(int(codes[:, lv].max()) + 1 if n else 1 for lv in range(n_levels))
        elif isinstance(codebook_sizes, (int, np.integer)):
            sizes = (int(codebook_sizes),) * n_levels
        else:
            sizes = tuple(int(s) for s in codebook_sizes)
        if len(sizes) != n_levels:
            raise ValueError(f"{len(sizes)} codebook sizes for {n_levels} levels")
        codes = codes.astype(np.int64)
        if n_levels and n:
            prefix_keys = _prefix_ranks(codes, sizes)[1][-1]
        else:
            prefix_keys = np.zeros(n, dtype=np.int64)
        ids = np.asarray([str(i) for i in item_ids])
        # within a prefix: most popular first, then the smaller item id
        digits = popularity_digits(prefix_keys, popularity, ids)
        max_group = int(digits.max()) + 1 if n else 1
        return cls(item_ids, np.column_stack([codes, digits]), sizes + (max_group,))

    # ------------------------------------------------------------------ lookups

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def depth(self) -> int:
        return len(self.level_sizes)

    @property
    def n_levels(self) -> int:
        """Residual levels, without the collision digit."""
        return self.depth - 1

    def codes_digest(self) -> str:
        """A short digest of the tracks and their IDs: a model trained on this catalogue records
        it, so that one trained on another build's codes of the same shape is refused on load
        instead of answering with other tracks."""
        import hashlib

        digest = hashlib.sha256("\0".join(self.item_ids).encode("utf-8", "surrogatepass"))
        digest.update(np.ascontiguousarray(self.sid_codes, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]

    def index_of(self, item_id: str) -> int:
        """Item index of a track id (KeyError if not in the catalogue)."""
        try:
            return self._item_index[item_id]
        except KeyError:
            raise KeyError(f"track {item_id!r} is not in the semantic-ID catalogue") from None

    def codes_of(self, item: int | str) -> tuple[int, ...]:
        """The full semantic ID of an item index or track id."""
        index = self.index_of(item) if isinstance(item, str) else int(item)
        return tuple(int(c) for c in self.sid_codes[index])

    def items_for_codes(self, codes: np.ndarray) -> np.ndarray:
        """Item index int64 ``(n,)`` of each row of ``codes`` ``(n, depth)``; -1 where no item has it."""
        codes = np.asarray(codes)
        if codes.ndim != 2 or codes.shape[1] != self.depth:
            raise ValueError(f"codes must be (n, {self.depth}), got shape {codes.shape}")
        codes = codes.astype(np.int64)
        ok = ((codes >= 0) & (codes < np.asarray(self.level_sizes))).all(axis=1)
        if not len(self):
            return np.full(codes.shape[0], -1, dtype=np.int64)
        rank = np.zeros(codes.shape[0], dtype=np.int64)
        for level, size in enumerate(self.level_sizes):
            keys = self._level_keys[level]
            key = rank * size + np.where(ok, codes[:, level], 0)
            pos = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            ok &= keys[pos] == key
            rank = np.where(ok, pos, 0)
        return np.where(ok, self._rank_item[rank], -1)

    def lookup(self, codes: Sequence[int]) -> int:
        """Item index of one full semantic ID; KeyError if no item has it."""
        codes = tuple(int(c) for c in codes)
        if len(codes) != self.depth:
            raise KeyError(f"a semantic ID has {self.depth} codes, got {len(codes)}: {codes}")
        index = int(self.items_for_codes(np.asarray([codes]))[0])
        if index < 0:
            raise KeyError(f"no item has semantic ID {codes}")
        return index

    # ------------------------------------------------------------------ stats

    def stats(
        self,
        item_vectors: np.ndarray | None = None,
        rkm=None,
        artists: Sequence[str | None] | None = None,
    ) -> dict:
        """Collision, codebook-use, reconstruction and coherence figures.

        Args:
            item_vectors: float ``(n_items, dim)`` CF vectors the codes were built from (with
                ``rkm``: reconstruction error per level).
            rkm: the fitted ``ResidualKMeans``.
            artists: artist of each item (None where unknown), for the coherence check.

        Returns a JSON-ready dict:
            ``tracks``, ``unique_prefixes`` (distinct residual codes), ``shared_prefix_share``
            (share of tracks whose residual codes another track also has), ``shared_groups``,
            ``largest_group``; per level (``levels``): ``codebook_size``, ``codes_used_share``,
            ``perplexity`` of that level's codes, ``prefixes`` (distinct codes[:l+1]); with
            vectors: ``reconstruction_mse`` per level and ``nearest_code_share`` (share of items
            whose codes[:l+1] equal plain nearest-centroid encoding); with artists: per level
            ``artist_pair_agreement`` (share of same-prefix item pairs by the same artist; None
            when no two items share the prefix) next to ``artist_pair_random`` (the same share for
            random pairs) and their ratio ``artist_lift``.
        """
        n = len(self)
        n_levels = self.n_levels
        residual = self.sid_codes[:, :n_levels]
        out: dict = {
            "tracks": n,
            "depth": self.depth,
            "level_sizes": list(self.level_sizes),
            "scheme": self.scheme,
        }
        if n == 0:
            return out
        prefix_ranks = _prefix_ranks(residual, self.level_sizes[:n_levels])[1] if n_levels else []
        prefix_keys = prefix_ranks[-1] if n_levels else np.zeros(n, dtype=np.int64)
        out.update(_shared_prefix_stats(prefix_keys))
        artist_codes = random_agreement = None
        if artists is not None:
            artist_codes, random_agreement = _artist_codes(artists, n)
            out["artist_pair_random"] = random_agreement
        errors = nearest = None
        if item_vectors is not None and rkm is not None:
            errors = rkm.reconstruction_error(item_vectors, residual)
            nearest = rkm.encode(item_vectors)
        levels = []
        for level in range(n_levels):
            size = self.level_sizes[level]
            level_counts = np.bincount(residual[:, level], minlength=size)
            _, prefix_inverse, prefix_counts = np.unique(
                prefix_ranks[level], return_inverse=True, return_counts=True
            )
            row = {
                "level": level,
                "codebook_size": size,
                "codes_used_share": float((level_counts > 0).mean()),
                "perplexity": _perplexity(level_counts),
                "prefixes": int(prefix_counts.size),
                "largest_prefix_group": int(prefix_counts.max()),
            }
            if errors is not None:
                row["reconstruction_mse"] = errors[level]
                # how far the catalogue's placement strays from plain nearest-centroid codes
                row["nearest_code_share"] = float(
                    (nearest[:, : level + 1] == residual[:, : level + 1]).all(axis=1).mean()
                )
            if artist_codes is not None:
                row.update(_artist_agreement(prefix_inverse, artist_codes, random_agreement))
            levels.append(row)
        out["levels"] = levels
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``config.json`` (with the scheme), ``sid_codes.npy`` and ``item_ids.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {
            "format_version": FORMAT_VERSION,
            "n_items": len(self),
            "depth": self.depth,
            "level_sizes": list(self.level_sizes),
            "scheme": self.scheme,
        }
        with open(directory / CONFIG_NAME, "w", encoding="utf-8") as f:
            json.dump(config, f, indent=2, sort_keys=True)
            f.write("\n")
        with open(directory / ITEM_IDS_NAME, "w", encoding="utf-8") as f:
            json.dump(list(self.item_ids), f, ensure_ascii=False)
        np.save(directory / CODES_NAME, np.asarray(self.sid_codes), allow_pickle=False)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> SemanticIDCatalog:
        """Read a catalogue written by :meth:`save`."""
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(
                f"no semantic-ID catalogue at {directory}: {config_path} is missing"
            )
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
        version = config.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{config_path}: format_version {version!r}, this code reads {FORMAT_VERSION}"
            )
        with open(directory / ITEM_IDS_NAME, encoding="utf-8") as f:
            item_ids = json.load(f)
        sid_codes = np.load(directory / CODES_NAME, allow_pickle=False)
        if sid_codes.shape != (config["n_items"], config["depth"]):
            raise ValueError(
                f"{directory / CODES_NAME} has shape {sid_codes.shape}, config says "
                f"({config['n_items']}, {config['depth']})"
            )
        # catalogues written before schemes existed are semantic IDs
        return cls(item_ids, sid_codes, config["level_sizes"], scheme=config.get("scheme", "sid"))
