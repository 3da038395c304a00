"""Rows of different lengths as two flat arrays (CSR without columns), for full-MPD scale.

Per-playlist lists of catalogue items are the shape of most training data: a playlist's tracks,
a teacher's target list, its weights. At 1M playlists x 66M rows a ``list`` of Python ``list``
holds 66M int objects (~2.5 GB, and minutes to build); :class:`Ragged` holds them in
``indptr`` (int64, ``n_rows + 1``) and ``values`` (one flat array), 8-12 bytes per entry.

It reads like a sequence (``len``, indexing, iteration give each row as an array view), so code
written for lists of lists takes it unchanged; the hot paths use the two arrays directly
(:func:`as_ragged` converts either form once).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Ragged", "as_ragged"]


@dataclass(frozen=True)
class Ragged:
    """Row ``p`` is ``values[indptr[p]:indptr[p + 1]]``."""

    indptr: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        indptr = np.asarray(self.indptr)
        if indptr.ndim != 1 or indptr.size < 1 or indptr[0] != 0:
            raise ValueError("indptr must be a 1-d array starting at 0")
        if np.any(np.diff(indptr) < 0):
            raise ValueError("indptr must not decrease")
        if int(indptr[-1]) != np.asarray(self.values).shape[0]:
            raise ValueError(
                f"indptr ends at {int(indptr[-1])} but there are {len(self.values)} values"
            )

    @classmethod
    def from_rows(cls, rows: Sequence[Sequence], dtype=np.int64) -> Ragged:
        """From a sequence of rows (lists or arrays)."""
        lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        indptr = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        values = (
            np.concatenate([np.asarray(r, dtype=dtype).reshape(-1) for r in rows])
            if indptr[-1]
            else np.zeros(0, dtype=dtype)
        )
        return cls(indptr, values.astype(dtype, copy=False))

    def __len__(self) -> int:
        return int(self.indptr.size - 1)

    def __getitem__(self, row: int) -> np.ndarray:
        n = len(self)
        row = int(row)
        if not -n <= row < n:
            raise IndexError(f"row {row} out of range for {n} rows")
        row %= n
        return self.values[self.indptr[row] : self.indptr[row + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for row in range(len(self)):
            yield self.values[self.indptr[row] : self.indptr[row + 1]]

    def lengths(self) -> np.ndarray:
        """int64 ``(n_rows,)``."""
        return np.diff(self.indptr)

    def row_of_value(self) -> np.ndarray:
        """int64 ``(n_values,)``: the row each value belongs to."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths())

    def take(self, rows) -> Ragged:
        """The rows at ``rows`` (int indices, in that order), without a Python loop."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        starts = self.indptr[rows]
        lengths = self.indptr[rows + 1] - starts
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        flat = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        return Ragged(indptr, self.values[flat])

    def filter(self, keep: np.ndarray) -> Ragged:
        """The same rows with only the values where the boolean ``keep`` (per value) holds."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != self.values.shape[:1]:
            raise ValueError(
                f"keep must hold one flag per value ({len(self.values)}), got {keep.shape}"
            )
        counts = np.zeros(keep.size + 1, dtype=np.int64)
        np.cumsum(keep, out=counts[1:])
        return Ragged(counts[self.indptr], self.values[keep])

    def tolist(self) -> list[list]:
        """Each row as a Python list (for small data and checks)."""
        return [r.tolist() for r in self]


def as_ragged(rows, dtype=np.int64) -> Ragged:
    """``rows`` as a :class:`Ragged` of ``dtype`` (a ``Ragged`` of that dtype is returned as is)."""
    if isinstance(rows, Ragged):
        if rows.values.dtype == np.dtype(dtype):
            return rows
        return Ragged(rows.indptr, rows.values.astype(dtype))
    return Ragged.from_rows(rows, dtype=dtype)
