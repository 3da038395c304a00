"""Playlists -> a binary playlist-by-item matrix and the item vocabulary (the catalogue)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from semantic_ids.playlists import Playlist, PlaylistSet

VOCAB_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ItemVocab:
    """The catalogue: item index <-> track id, with each item's training playlist count.

    ``item_ids[i]`` is the track id of item ``i``; ``counts[i]`` (int64, shape ``(n_items,)``)
    is the number of training playlists that contain it. Items are ordered by descending count,
    then track id, so index 0 is the most common item.
    """

    item_ids: tuple[str, ...]
    counts: np.ndarray
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        item_ids = tuple(str(i) for i in self.item_ids)
        counts = np.asarray(self.counts)
        if counts.ndim != 1 or counts.shape[0] != len(item_ids):
            raise ValueError(
                f"counts must have shape ({len(item_ids)},) to match item_ids, got {counts.shape}."
            )
        if counts.size and not np.issubdtype(counts.dtype, np.integer):
            raise ValueError(f"counts must be integers, got dtype {counts.dtype}.")
        index = {item_id: i for i, item_id in enumerate(item_ids)}
        if len(index) != len(item_ids):
            raise ValueError("item_ids must be unique; found a repeated track id.")
        counts = counts.astype(np.int64, copy=True)
        counts.setflags(write=False)
        object.__setattr__(self, "item_ids", item_ids)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.item_ids)

    def __contains__(self, track_id: object) -> bool:
        return track_id in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ItemVocab):
            return NotImplemented
        return self.item_ids == other.item_ids and np.array_equal(self.counts, other.counts)

    def __hash__(self) -> int:
        return hash(self.item_ids)

    def index_of(self, track_id: str) -> int:
        """The item index of ``track_id``; KeyError if it is not in the catalogue."""
        try:
            return self._index[track_id]
        except KeyError:
            raise KeyError(
                f"track {track_id!r} is not in the catalogue ({len(self)} items); it occurs in "
                "too few training playlists, or only in held-out ones."
            ) from None

    def indices(self, track_ids: Iterable[str], skip_unknown: bool = True) -> np.ndarray:
        """Item indices (int64) of ``track_ids`` in order; unknown ids skipped or a KeyError."""
        if skip_unknown:
            get = self._index.get
            found = [j for j in (get(t) for t in track_ids) if j is not None]
        else:
            found = [self.index_of(t) for t in track_ids]
        return np.asarray(found, dtype=np.int64)

    def save(self, directory: str | Path) -> None:
        """Write ``vocab.json`` (format version, item ids) and ``counts.npy`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        payload = {"format_version": VOCAB_FORMAT_VERSION, "item_ids": list(self.item_ids)}
        with (directory / "vocab.json").open("w", encoding="utf-8") as handle:
            json.dump(payload, handle, ensure_ascii=False)
        np.save(directory / "counts.npy", np.asarray(self.counts, dtype=np.int64))

    @classmethod
    def load(cls, directory: str | Path) -> ItemVocab:
        """Read a vocabulary written by :meth:`save`."""
        directory = Path(directory)
        with (directory / "vocab.json").open(encoding="utf-8") as handle:
            payload = json.load(handle)
        version = payload.get("format_version")
        if version != VOCAB_FORMAT_VERSION:
            raise ValueError(
                f"{directory / 'vocab.json'}: format_version {version!r}, expected "
                f"{VOCAB_FORMAT_VERSION}; re-save the vocabulary with this version of the code."
            )
        counts = np.load(directory / "counts.npy", allow_pickle=False)
        return cls(tuple(payload["item_ids"]), counts)


def _as_list(playlists: Sequence[Playlist] | PlaylistSet) -> Sequence[Playlist]:
    return playlists.playlists if isinstance(playlists, PlaylistSet) else playlists


def build_interactions(
    playlists: Sequence[Playlist] | PlaylistSet, min_count: int = 2, vocab: ItemVocab | None = None
) -> tuple[sp.csr_matrix, ItemVocab]:
    """Binary interactions of playlists with catalogue items.

    Returns ``(matrix, vocab)``: ``matrix`` is a float32 ``csr_matrix`` of shape
    ``(n_playlists, n_items)``, row ``r`` being ``playlists[r]`` and 1.0 where it holds the item.
    Without ``vocab`` the catalogue is built here: tracks in at least ``min_count`` of the given
    playlists, ordered by descending count then track id. With ``vocab`` (e.g. for held-out
    playlists) the catalogue is reused as is and tracks outside it are dropped; ``min_count`` is
    then ignored.
    """
    playlists = _as_list(playlists)
    if vocab is None and (not isinstance(min_count, (int, np.integer)) or min_count < 1):
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}.")
    n_rows = len(playlists)
    lengths = np.fromiter((len(p.track_ids) for p in playlists), dtype=np.int64, count=n_rows)
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), lengths)

    if vocab is not None:
        get = vocab._index.get
        cols = np.fromiter(
            (get(t, -1) for p in playlists for t in p.track_ids), dtype=np.int64, count=rows.size
        )
        keep = cols >= 0
        return binary_csr(rows[keep], cols[keep], n_rows, len(vocab)), vocab

    # Provisional ids in first-seen order (one dict lookup per row), then a catalogue order.
    provisional: dict[str, int] = {}
    setdefault = provisional.setdefault
    cols = np.fromiter(
        (setdefault(t, len(provisional)) for p in playlists for t in p.track_ids),
        dtype=np.int64,
        count=rows.size,
    )
    all_ids = np.array(list(provisional), dtype=object)
    # count playlists, not rows: a track repeated inside one playlist counts once
    matrix = binary_csr(rows, cols, n_rows, len(all_ids))
    counts = np.asarray(matrix.getnnz(axis=0), dtype=np.int64)
    kept = np.flatnonzero(counts >= min_count)
    # descending count, then track id: sort by id first, then stable sort by -count
    by_id = kept[np.argsort(all_ids[kept].astype(str), kind="stable")]
    order = by_id[np.argsort(-counts[by_id], kind="stable")]
    new_vocab = ItemVocab(tuple(all_ids[order].tolist()), counts[order])
    return matrix[:, order].tocsr(), new_vocab


def binary_csr(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sp.csr_matrix:
    """The float32 0/1 ``(n_rows, n_cols)`` CSR matrix with a 1 at each ``(rows, cols)`` pair
    (repeats counted once), indices sorted."""
    data = np.ones(rows.size, dtype=np.float32)
    matrix = sp.csr_matrix((data, (rows, cols)), shape=(n_rows, n_cols), dtype=np.float32)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    matrix.sort_indices()
    return matrix


def catalogue_tracks(playlist: Playlist, vocab: ItemVocab) -> list[int]:
    """Item indices of the playlist's tracks that are in the catalogue, in playlist order, once each.

    These are the relevant items of a held-out playlist.
    """
    seen: dict[int, None] = {}
    for track_id in playlist.track_ids:
        index = vocab._index.get(track_id)
        if index is not None:
            seen.setdefault(index, None)
    return list(seen)
