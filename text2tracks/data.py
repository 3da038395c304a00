"""Training pairs for the seq2seq model: prompt -> the semantic ID of one of its tracks.

A playlist gives one prompt (its title, and description where present) and a set of relevant
catalogue items. An *example* is (prompt, one item); its target is the item's semantic-ID tokens
followed by EOS. Each epoch draws the examples afresh:

- ``targets_per_playlist=0``: every (prompt, track) pair, as in the Text2Tracks paper; long
  playlists weigh more.
- ``targets_per_playlist=N``: N distinct tracks per playlist per epoch (all of them when it has
  fewer), so every prompt weighs about the same and epochs are short and varied.
- ``popularity_power=p`` (with N > 0): tracks are drawn with weight ``count ** -p`` (``count`` =
  training playlists holding the track), so that p > 0 tempers the pull of popular tracks;
  p = 0 is uniform.
- ``target_weights`` (with N > 0): per playlist a probability over its candidate items (for
  example the title-kNN teacher of :mod:`text2tracks.teacher`); each epoch draws N targets per
  playlist *with replacement* from it, so that the expected loss is the cross-entropy against
  that distribution and the model's most likely IDs are the distribution's head.

The draw is vectorised (Gumbel top-k over all pairs at once, no Python loop per playlist) and
depends only on ``(seed, epoch)``, so that a resumed run sees the same examples.

Two options change only the *order* of an epoch's examples (the drawn set is the same), to make
training cheaper:

- ``group_size=T`` (> 1): each playlist's drawn examples are cut into groups of at most T that
  stay contiguous, and the groups are shuffled. A batch then holds few distinct prompts, and
  :class:`Seq2SeqCollator` with ``share_prompts=True`` sends each distinct prompt once, with
  ``prompt_index`` mapping every example to its prompt row: the encoder runs once per prompt.
- ``bucket_batches=W`` (> 0, with ``batch_size``): within each window of W batches the groups are
  sorted by prompt length (then prompt text), cut into batches, and the full batches of the
  window shuffled; prompts of a batch have similar lengths, so padding stays small.

The gradient of an epoch is unchanged (the same examples, each once); only batches are more
correlated. Both orders are deterministic in ``(seed, epoch)`` and the options.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

_SPACES = re.compile(r"\s+")
# three or more single letters or digits separated by single spaces ("w o r k o u t")
_SPACED_LETTERS = re.compile(r"(?<!\S)(?:\w ){2,}\w(?!\S)")


def normalize_prompt(text: str) -> str:
    """NFKC, lower-case (``casefold``), whitespace runs collapsed to one space, stripped, and
    letters spelled out with spaces joined ("w o r k o u t" -> "workout", as the 2018 challenge
    teams cleaned titles).

    NFKC folds full-width letters and styled Unicode (𝓬𝓱𝓲𝓵𝓵 -> chill) into plain ones; emoji and
    non-Latin scripts are kept. The same function must run at training and at inference.
    """
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return _SPACED_LETTERS.sub(lambda m: m.group(0).replace(" ", ""), text)


def encode_prompts(
    tokenizer, prompts: Sequence[str], max_length: int, normalize: bool = True
) -> list[np.ndarray]:
    """Token ids (int64, EOS-terminated, at most ``max_length``) of each prompt.

    Distinct prompts are tokenized once: playlist titles repeat a lot ("chill", "workout").
    """
    texts = [normalize_prompt(p) if normalize else p for p in prompts]
    unique = list(dict.fromkeys(texts))
    encoded = tokenizer(unique, truncation=True, max_length=max_length, add_special_tokens=True)[
        "input_ids"
    ]
    by_text = {t: np.asarray(ids, dtype=np.int64) for t, ids in zip(unique, encoded, strict=True)}
    return [by_text[t] for t in texts]


def prompt_keys(prompt_ids: Sequence[np.ndarray]) -> np.ndarray:
    """Per prompt, the index of its distinct token sequence (equal prompts share a key)."""
    index: dict[bytes, int] = {}
    return np.fromiter(
        (
            index.setdefault(np.asarray(ids, dtype=np.int64).tobytes(), len(index))
            for ids in prompt_ids
        ),
        dtype=np.int64,
        count=len(prompt_ids),
    )


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_draw_options(
    prompt_ids,
    relevant,
    sid_token_ids,
    targets_per_playlist,
    popularity_power,
    item_counts,
    target_weights,
) -> np.ndarray:
    """Check :class:`Seq2SeqPairs`' data and draw options together (some exclude others);
    returns ``sid_token_ids`` as an int64 array."""
    if len(prompt_ids) != len(relevant):
        raise ValueError(
            f"prompt_ids and relevant must have one entry per playlist, got "
            f"{len(prompt_ids)} and {len(relevant)}"
        )
    if (
        isinstance(targets_per_playlist, bool)
        or not isinstance(targets_per_playlist, (int, np.integer))
        or targets_per_playlist < 0
    ):
        raise ValueError(
            f"targets_per_playlist must be an integer >= 0, got {targets_per_playlist!r}"
        )
    sid_token_ids = np.asarray(sid_token_ids, dtype=np.int64)
    if sid_token_ids.ndim != 2:
        raise ValueError(f"sid_token_ids must be (n_items, depth), got shape {sid_token_ids.shape}")
    if popularity_power and item_counts is None:
        raise ValueError("popularity_power != 0 needs item_counts")
    if target_weights is not None:
        if targets_per_playlist == 0:
            raise ValueError(
                "target_weights needs targets_per_playlist > 0 (targets are drawn "
                "from them with replacement)"
            )
        if popularity_power:
            raise ValueError("target_weights and popularity_power exclude each other")
        if len(target_weights) != len(relevant) or any(
            len(w) != len(r) for w, r in zip(target_weights, relevant, strict=True)
        ):
            raise ValueError("target_weights must hold one weight per relevant item")
    if popularity_power and targets_per_playlist == 0:
        raise ValueError(
            "popularity_power needs targets_per_playlist > 0 (with 0 every pair is used)"
        )
    return sid_token_ids


def _cumulative_weights(
    target_weights, indptr: np.ndarray, lengths: np.ndarray, pair_playlist: np.ndarray
) -> np.ndarray:
    """Per (playlist, item) pair, its playlist's cumulative target distribution up to it plus
    the playlist's index, so that one ``searchsorted`` draws every playlist's targets at once."""
    weights = (
        np.concatenate([np.asarray(w, dtype=np.float64) for w in target_weights])
        if lengths.sum()
        else np.zeros(0)
    )
    if weights.size and (not np.all(np.isfinite(weights)) or weights.min() < 0):
        raise ValueError("target_weights must be finite and >= 0")
    cum = np.r_[0.0, np.cumsum(weights)]
    before = cum[indptr[:-1]]  # per playlist, the weight of earlier playlists
    totals = cum[indptr[1:]] - before
    if np.any(totals[lengths > 0] <= 0):
        raise ValueError("every playlist with targets needs a positive total weight")
    owner = pair_playlist
    within = (cum[1:] - before[owner]) / np.where(totals > 0, totals, 1.0)[owner]
    within[indptr[1:][lengths > 0] - 1] = 1.0
    return np.minimum(within, 1.0) + owner


class Seq2SeqPairs:
    """The (prompt, target item) examples of one epoch, as a map-style dataset.

    Args:
        prompt_ids: per playlist, its prompt's token ids (see :func:`encode_prompts`).
        relevant: per playlist, the catalogue item indices of its tracks (may be empty: such a
            playlist gives no example).
        sid_token_ids: int64 ``(n_items, depth)``, the semantic-ID token ids of each item
            (``SIDTokenLayout.codes_to_token_ids(catalog.sid_codes)``).
        eos_token_id: appended to every target.
        targets_per_playlist: 0 for every pair, else how many tracks each playlist gives per epoch.
        popularity_power: p in ``weight = count ** -p``; needs ``item_counts`` when non-zero.
        item_counts: ``(n_items,)`` training playlist count of each item.
        seed: with the epoch, fixes the draw and the order.
        shuffle: shuffle the examples of an epoch (off for validation; the two options below
            then do nothing).
        group_size: keep each playlist's examples in contiguous groups of at most this many
            (1 = no grouping: examples shuffled one by one).
        bucket_batches: sort by prompt length within windows of this many batches (0 = off).
        batch_size: the DataLoader's batch size (needed when ``bucket_batches > 0``: batches of
            the window are cut at multiples of it, so they must match the loader's).

    Item ``i`` of the dataset is ``(playlist_index, item_index)``; :class:`Seq2SeqCollator` turns
    a list of them into tensors. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        prompt_ids: Sequence[np.ndarray],
        relevant: Sequence[Sequence[int]],
        sid_token_ids: np.ndarray,
        eos_token_id: int,
        targets_per_playlist: int = 0,
        popularity_power: float = 0.0,
        item_counts: np.ndarray | None = None,
        seed: int = 0,
        shuffle: bool = True,
        group_size: int = 1,
        bucket_batches: int = 0,
        batch_size: int | None = None,
        target_weights: Sequence[Sequence[float]] | None = None,
    ) -> None:
        sid_token_ids = _check_draw_options(
            prompt_ids,
            relevant,
            sid_token_ids,
            targets_per_playlist,
            popularity_power,
            item_counts,
            target_weights,
        )
        self.group_size = _check_int("group_size", group_size, 1)
        self.bucket_batches = _check_int("bucket_batches", bucket_batches, 0)
        if self.bucket_batches:
            if batch_size is None:
                raise ValueError("bucket_batches > 0 needs batch_size (the DataLoader's)")
            self.batch_size = _check_int("batch_size", batch_size, 1)
        else:
            self.batch_size = (
                None if batch_size is None else _check_int("batch_size", batch_size, 1)
            )
        self.prompt_ids = list(prompt_ids)
        self.prompt_length = np.fromiter(
            (len(p) for p in self.prompt_ids), dtype=np.int64, count=len(self.prompt_ids)
        )
        self.prompt_key = prompt_keys(self.prompt_ids) if self.bucket_batches else None
        self.sid_token_ids = sid_token_ids
        self.eos_token_id = int(eos_token_id)
        self.targets_per_playlist = int(targets_per_playlist)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        lengths = np.fromiter((len(r) for r in relevant), dtype=np.int64, count=len(relevant))
        self.indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.items = (
            np.concatenate([np.asarray(r, dtype=np.int64) for r in relevant])
            if lengths.sum()
            else np.zeros(0, dtype=np.int64)
        )
        if self.items.size and (self.items.min() < 0 or self.items.max() >= len(sid_token_ids)):
            raise ValueError("a relevant item index is outside sid_token_ids")
        self.pair_playlist = np.repeat(np.arange(len(relevant), dtype=np.int64), lengths)
        if popularity_power:
            counts = np.maximum(np.asarray(item_counts, dtype=np.float64), 1.0)
            self.log_weight = -float(popularity_power) * np.log(counts[self.items])
        else:
            self.log_weight = None
        self.n_playlists_with_targets = int((lengths > 0).sum())
        self.cumulative = None
        if target_weights is not None:
            self.cumulative = _cumulative_weights(
                target_weights, self.indptr, lengths, self.pair_playlist
            )
            self._length = int(self.targets_per_playlist * (lengths > 0).sum())
        elif self.targets_per_playlist:
            self._length = int(np.minimum(lengths, self.targets_per_playlist).sum())
        else:
            self._length = int(lengths.sum())
        self.epoch = -1
        self.set_epoch(0)

    def __len__(self) -> int:
        return self._length

    def set_epoch(self, epoch: int) -> None:
        """Draw the examples of ``epoch`` (deterministic in ``(seed, epoch)``)."""
        if epoch == self.epoch:
            return
        rng = np.random.default_rng([self.seed, int(epoch)])
        if self.cumulative is not None:
            # N draws with replacement per playlist: u in [p, p + 1) falls in p's segment
            with_targets = np.flatnonzero(np.diff(self.indptr) > 0)
            owner = np.repeat(with_targets, self.targets_per_playlist)
            draws = owner + rng.random(owner.size)
            chosen = np.searchsorted(self.cumulative, draws, side="right")
            chosen = np.minimum(chosen, self.indptr[owner + 1] - 1)
        elif self.targets_per_playlist:
            # Gumbel top-k: the N largest of log w + Gumbel noise within each playlist are a draw
            # of N distinct tracks without replacement, proportional to w
            keys = rng.gumbel(size=self.items.size)
            if self.log_weight is not None:
                keys = keys + self.log_weight
            order = np.lexsort((-keys, self.pair_playlist))
            rank = np.arange(order.size) - self.indptr[self.pair_playlist[order]]
            chosen = order[rank < self.targets_per_playlist]
        else:
            chosen = np.arange(self.items.size)
        if self.shuffle:
            if self.group_size > 1 or self.bucket_batches:
                chosen = self._grouped_order(chosen, rng)
            else:
                chosen = chosen[rng.permutation(chosen.size)]
        self.example_playlist = self.pair_playlist[chosen]
        self.example_item = self.items[chosen]
        self.epoch = int(epoch)

    def _grouped_order(self, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``chosen`` (pair indices) reordered: contiguous groups, then length buckets."""
        n = chosen.size
        playlist = self.pair_playlist[chosen]
        # 1. a random order within each playlist, then groups of group_size consecutive examples
        order = np.lexsort((rng.random(n), playlist))
        chosen, playlist = chosen[order], playlist[order]
        starts = (
            np.r_[0, np.flatnonzero(playlist[1:] != playlist[:-1]) + 1]
            if n
            else np.zeros(0, np.int64)
        )
        run_start = np.repeat(starts, np.diff(np.r_[starts, n]).astype(np.int64))
        rank = np.arange(n) - run_start
        group = (
            np.cumsum(
                np.r_[True, (playlist[1:] != playlist[:-1]) | (rank[1:] % self.group_size == 0)]
            )
            - 1
            if n
            else np.zeros(0, np.int64)
        )
        # 2. groups in random order (examples keep their place inside their group)
        group_key = rng.random(int(group[-1]) + 1 if n else 0)[group]
        order = np.lexsort((rank, group_key))
        chosen, playlist, group_key = chosen[order], playlist[order], group_key[order]
        if not self.bucket_batches:
            return chosen
        # 3. within windows of bucket_batches batches: sort by prompt length (then text, so that
        # equal prompts meet and share an encoder row), groups kept whole by their random key
        window = np.arange(n) // (self.bucket_batches * self.batch_size)
        order = np.lexsort(
            (group_key, self.prompt_key[playlist], self.prompt_length[playlist], window)
        )
        chosen = chosen[order]
        # 4. shuffle the full batches of each window; a last partial batch stays last
        n_blocks = -(-n // self.batch_size)
        block_window = np.arange(n_blocks) // self.bucket_batches
        block_key = rng.random(n_blocks)
        if n % self.batch_size:
            block_key[-1] = np.inf
        block_order = np.lexsort((block_key, block_window))
        block_start = block_order * self.batch_size
        block_len = np.minimum(self.batch_size, n - block_start)
        take = np.repeat(block_start, block_len) + (
            np.arange(n) - np.repeat(np.cumsum(block_len) - block_len, block_len)
        )
        return chosen[take]

    def __getitem__(self, index: int) -> tuple[int, int]:
        return int(self.example_playlist[index]), int(self.example_item[index])

    def labels(self, item_index: int) -> np.ndarray:
        """Target token ids of ``item_index``: its semantic-ID tokens, then EOS."""
        return np.append(self.sid_token_ids[item_index], self.eos_token_id)


class Seq2SeqCollator:
    """``[(playlist_index, item_index), ...]`` -> ``input_ids``, ``attention_mask``, ``labels``.

    Prompts are right-padded with ``pad_token_id`` to the longest in the batch. Every target has
    the same length (depth + 1: the ID, then EOS), so labels need no padding. ``playlist_index``
    and ``item_index`` ride along for validation.

    With ``share_prompts=True`` each distinct prompt of the batch (equal token ids, whichever
    playlist) is one row of ``input_ids`` / ``attention_mask``, in order of first appearance, and
    ``prompt_index`` (one per example) gives its row: the encoder output of row
    ``prompt_index[b]`` serves example ``b`` (``training.train_seq2seq.grouped_forward``).
    """

    def __init__(
        self,
        prompt_ids: Sequence[np.ndarray],
        sid_token_ids: np.ndarray,
        pad_token_id: int,
        eos_token_id: int,
        share_prompts: bool = False,
    ) -> None:
        self.prompt_ids = list(prompt_ids)
        self.sid_token_ids = np.asarray(sid_token_ids, dtype=np.int64)
        self.pad_token_id = int(pad_token_id)
        self.eos_token_id = int(eos_token_id)
        self.share_prompts = bool(share_prompts)
        self.prompt_key = prompt_keys(self.prompt_ids) if self.share_prompts else None

    def __call__(self, batch: Sequence[tuple[int, int]]) -> dict:
        import torch

        playlists = np.fromiter((b[0] for b in batch), dtype=np.int64, count=len(batch))
        items = np.fromiter((b[1] for b in batch), dtype=np.int64, count=len(batch))
        out = {}
        if self.share_prompts:
            _, first, inverse = np.unique(
                self.prompt_key[playlists], return_index=True, return_inverse=True
            )
            rank = np.empty(first.size, dtype=np.int64)  # distinct prompts by first appearance
            rank[np.argsort(first, kind="stable")] = np.arange(first.size)
            rows = playlists[np.sort(first)]
            out["prompt_index"] = torch.from_numpy(rank[inverse.reshape(-1)])
        else:
            rows = playlists
        prompts = [self.prompt_ids[p] for p in rows]
        width = max(len(p) for p in prompts)
        input_ids = np.full((len(prompts), width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(prompts), width), dtype=np.int64)
        for row, ids in enumerate(prompts):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        labels = np.empty((len(batch), self.sid_token_ids.shape[1] + 1), dtype=np.int64)
        labels[:, :-1] = self.sid_token_ids[items]
        labels[:, -1] = self.eos_token_id
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
            "labels": torch.from_numpy(labels),
            "playlist_index": torch.from_numpy(playlists),
            "item_index": torch.from_numpy(items),
            **out,
        }


class PromptBatches:
    """Validation prompts as a dataset of playlist indices, for Hits@K with beam search."""

    def __init__(self, n_playlists: int) -> None:
        self.n = int(n_playlists)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[int, int]:
        return int(index), 0
