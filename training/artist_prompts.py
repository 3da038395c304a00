"""Artist prompts: the catalogue's own metadata as extra training examples for the seq2seq.

A playlist titled with an artist's name ("Adele", "Chris Brown", "Los Temerarios") is one of the
commonest kinds of MPD title, and its answer is plain: that artist's tracks. Title kNN and a
seq2seq trained on titles alone only know the artists that some training playlist is named
after; an unseen artist's name finds nothing (on the development data's validation split, 30
playlists are named after a catalogue artist that no training title matches: title kNN hits 5 of
them, the artist's ten most-played catalogue tracks 23). The catalogue already knows every
track's artist (``semantic_ids/tracks.json``), so each artist becomes one more training
"playlist": its prompt is the artist's name, its targets that artist's catalogue tracks weighted
by how many training playlists hold each (an artist playlist holds the hits first).

Only artists whose tracks are held ``min_count`` times or more in the training playlists take
part (fewer is noise), and none whose name is also a training prompt: the playlists with that
title already teach it ("Yoga", "Free" and "Heart" are artists too, and their playlists are
not). The examples are added to the epoch after the teacher's (the teacher never sees them), in
:func:`training.seq2seq_data.build_examples`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from text2tracks.ragged import Ragged
from text2tracks.teacher import prompt_text

__all__ = ["ArtistPrompts", "artist_key", "artist_prompts", "append_rows"]


@dataclass(frozen=True)
class ArtistPrompts:
    """One training example per artist: ``prompts[a]`` and its weighted ``items`` / ``weights``
    (rows of two :class:`Ragged` with the same ``indptr``; each ``weights`` row sums to 1)."""

    prompts: list[str]
    items: Ragged
    weights: Ragged

    def __len__(self) -> int:
        return len(self.prompts)


def artist_key(name: str | None) -> str:
    """How names are compared: NFKC, case folded, runs of spaces as one, no outer spaces."""
    return " ".join(prompt_text(name or "").split())


def artist_prompts(
    item_artists: Sequence[str | None],
    item_counts: np.ndarray,
    train_prompts: Sequence[str],
    min_count: int = 5,
    top_items: int = 50,
) -> ArtistPrompts:
    """The artist examples of the catalogue (see the module docstring).

    Args:
        item_artists: per catalogue item, its artist's name (``None`` or ``""``: unknown).
        item_counts: ``(n_items,)`` the number of training playlists that hold each item.
        train_prompts: the training playlists' prompts; an artist whose name equals one of them
            (NFKC, case folded, spaces collapsed) is left out.
        min_count: an artist needs its items' counts to sum to at least this.
        top_items: each artist keeps its most-held items, at most this many.

    Artists are grouped by the folded name and named by the first spelling in item order;
    items within an artist by count (ties to the lower item index), weights ``count / sum``.
    Artists come in the order of their first item.
    """
    counts = np.asarray(item_counts, dtype=np.float64)
    if counts.shape != (len(item_artists),):
        raise ValueError(
            f"item_counts has shape {counts.shape}, expected ({len(item_artists)},): one count "
            "per catalogue item"
        )
    if int(min_count) < 1 or int(top_items) < 1:
        raise ValueError(f"min_count and top_items must be >= 1, got {min_count}, {top_items}")
    titles = {artist_key(p) for p in train_prompts}
    groups: dict[str, list[int]] = {}
    names: dict[str, str] = {}
    for item, name in enumerate(item_artists):
        key = artist_key(name)
        if key and key not in titles:
            groups.setdefault(key, []).append(item)
            names.setdefault(key, " ".join(str(name).split()))
    prompts, rows, weights = [], [], []
    for key, items in groups.items():
        items = np.asarray(items, dtype=np.int64)
        held = counts[items]
        if held.sum() < min_count:  # min_count >= 1: some item is held
            continue
        order = np.lexsort((items, -held))[: int(top_items)]
        order = order[held[order] > 0]
        prompts.append(names[key])
        rows.append(items[order].astype(np.int32))
        weights.append((held[order] / held[order].sum()).astype(np.float32))
    return ArtistPrompts(
        prompts, Ragged.from_rows(rows, np.int32), Ragged.from_rows(weights, np.float32)
    )


def append_rows(first: Ragged, second: Ragged) -> Ragged:
    """``first``'s rows, then ``second``'s (values in ``first``'s dtype; a copy)."""
    head = np.asarray(first.values)
    values = np.concatenate([head, np.asarray(second.values, dtype=head.dtype)])
    tail = np.asarray(second.indptr[1:], dtype=np.int64) + int(first.indptr[-1])
    return Ragged(np.concatenate([np.asarray(first.indptr, dtype=np.int64), tail]), values)
