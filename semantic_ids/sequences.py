"""Interaction sequences without titles: readers and the leave-last-out split (TIGER's protocol).

A sequence is one user's items in time order. Two file formats:

- JSONL, one user per line: ``{"user": "u1", "items": ["i3", "i9", ...]}`` (already in order);
- CSV with a header holding ``user,item,timestamp`` (any column order, other columns ignored):
  rows are grouped by user and sorted by timestamp (ties keep file order).

Playlists are sequences too (:func:`sequences_from_playlists`: track order is the playlist's).

:func:`leave_last_out` splits every sequence as TIGER (and SASRec, BERT4Rec) do: the last item is
the test target, the one before it the validation target, the rest the training history; users
with fewer than ``min_length`` items are left out and counted.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Sequences",
    "SequenceSplit",
    "read_sequences",
    "sequences_from_playlists",
    "leave_last_out",
    "k_core",
]


class SequenceFormatError(ValueError):
    """A sequence file that cannot be read; the message names the file and line."""


@dataclass
class Sequences:
    """Users and their items in time order (``items[u]`` belongs to ``users[u]``)."""

    users: list[str]
    items: list[list[str]]
    n_skipped: int = 0

    def __post_init__(self) -> None:
        if len(self.users) != len(self.items):
            raise ValueError(f"{len(self.users)} users but {len(self.items)} item lists")

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class SequenceSplit:
    """Leave-last-out: per kept user, the training history and the two held-out targets."""

    users: list[str]
    train: list[list[str]]
    validation: list[str]
    test: list[str]
    n_too_short: int = 0
    min_length: int = 3
    extra: dict = field(default_factory=dict)

    def test_history(self, u: int) -> list[str]:
        """What a model sees before the test target: the training history and the validation
        item."""
        return [*self.train[u], self.validation[u]]


def _read_jsonl(path: Path) -> Sequences:
    users, items = [], []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise SequenceFormatError(f"{path}:{line_no}: not JSON ({err.msg})") from None
            if (
                not isinstance(record, dict)
                or "user" not in record
                or not isinstance(record.get("items"), list)
            ):
                raise SequenceFormatError(
                    f'{path}:{line_no}: expected {{"user": ..., "items": [...]}}'
                )
            users.append(str(record["user"]))
            items.append([str(i) for i in record["items"]])
    return Sequences(users, items)


def _read_csv(path: Path) -> Sequences:
    by_user: dict[str, list[tuple[float, int, str]]] = {}
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = {"user", "item", "timestamp"} - set(reader.fieldnames or [])
        if missing:
            raise SequenceFormatError(
                f"{path}: the header needs the columns user, item, timestamp; missing "
                f"{sorted(missing)}"
            )
        for row_no, row in enumerate(reader, 2):
            try:
                stamp = float(row["timestamp"])
            except (TypeError, ValueError):
                raise SequenceFormatError(
                    f"{path}:{row_no}: timestamp {row['timestamp']!r} is not a number"
                ) from None
            by_user.setdefault(row["user"], []).append((stamp, row_no, row["item"]))
    users = list(by_user)
    return Sequences(users, [[item for _, _, item in sorted(by_user[u])] for u in users])


def read_sequences(path: str | Path) -> Sequences:
    """Read a ``.jsonl`` or ``.csv`` sequence file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such sequence file")
    if path.suffix.lower() in (".jsonl", ".json"):
        return _read_jsonl(path)
    if path.suffix.lower() == ".csv":
        return _read_csv(path)
    raise SequenceFormatError(f"{path}: expected a .jsonl or .csv file")


def sequences_from_playlists(playlists: Sequence) -> Sequences:
    """Each playlist as a sequence: its id as the user, its tracks in playlist order."""
    return Sequences([p.playlist_id for p in playlists], [list(p.track_ids) for p in playlists])


def k_core(sequences: Sequences, k: int) -> Sequences:
    """The ``k``-core, as TIGER's datasets (Amazon 5-core) are cut: items in fewer than ``k``
    users' sequences are dropped, then users left with fewer than ``k`` items, again until
    every item has ``k`` users and every user ``k`` items (order kept). Dropped users join
    ``n_skipped``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    users, items = list(sequences.users), [list(seq) for seq in sequences.items]
    while True:
        counts: dict[str, int] = {}
        for seq in items:
            for item in set(seq):
                counts[item] = counts.get(item, 0) + 1
        kept = [[i for i in seq if counts[i] >= k] for seq in items]
        long_enough = [len(seq) >= k for seq in kept]
        kept_users = [u for u, ok in zip(users, long_enough, strict=True) if ok]
        kept_items = [seq for seq, ok in zip(kept, long_enough, strict=True) if ok]
        if kept_items == items:
            break
        users, items = kept_users, kept_items
    dropped = len(sequences.users) - len(users)
    return Sequences(users, items, n_skipped=sequences.n_skipped + dropped)


def leave_last_out(sequences: Sequences, min_length: int = 3) -> SequenceSplit:
    """Last item -> test, the one before -> validation, the rest -> training history.

    Consecutive repeats of an item are kept (they are events); users with fewer than
    ``min_length`` (>= 3) items are left out and counted in ``n_too_short``.
    """
    if min_length < 3:
        raise ValueError(f"min_length must be >= 3 (history, validation, test), got {min_length}")
    users, train, validation, test = [], [], [], []
    short = 0
    for user, items in zip(sequences.users, sequences.items, strict=True):
        if len(items) < min_length:
            short += 1
            continue
        users.append(user)
        train.append(list(items[:-2]))
        validation.append(items[-2])
        test.append(items[-1])
    return SequenceSplit(users, train, validation, test, n_too_short=short, min_length=min_length)
