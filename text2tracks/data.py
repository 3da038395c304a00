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

Seed tracks (``seeds=SeedDraw(...)``, off by default): per playlist and epoch some prompts also
carry seed tracks of the playlist, and their targets are its other tracks
(:mod:`text2tracks.seed_draw`). The encoder then reads :func:`seeded_prompt_ids`: the title's
tokens, then each seed's semantic-ID tokens, the one encoding of training, validation and the
API. Without seeds nothing changes: the same examples, in the same order, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from text2tracks.pair_options import check_draw_options, check_int, cumulative_weights
from text2tracks.prompt_tokens import encode_prompts, normalize_prompt  # noqa: F401 (re-exported)
from text2tracks.ragged import Ragged, as_ragged
from text2tracks.seed_draw import SeedDraw, draw_seeds, seeded_targets


def seeded_prompt_ids(
    title_ids: np.ndarray,
    seed_items: Sequence[int] | np.ndarray | None,
    sid_token_ids: np.ndarray,
    max_seeds: int | None,
) -> np.ndarray:
    """The encoder input of a prompt with seed tracks (TIGER): the title's token ids as
    :func:`encode_prompts` gives them (already cut to ``max_prompt_length``, EOS included; for a
    prompt without title, the encoding of ``""``), then, for each of the last ``max_seeds`` seeds
    in order, its semantic-ID tokens (every level, the collision digit included).

    The title and the seeds have separate budgets, so neither cuts the other: the input is at
    most ``max_prompt_length + max_seeds * depth`` tokens. Seeds beyond ``max_seeds`` are cut
    from the front (the most recent are kept); a seed is never cut in the middle of its ID.
    ``max_seeds=None`` keeps every seed; ``0`` reads none.

    Args:
        title_ids: int64 ``(n_title_tokens,)``.
        seed_items: catalogue item indices of the seeds, oldest first (``None``: none).
        sid_token_ids: int64 ``(n_items, depth)``, each item's semantic-ID token ids.
        max_seeds: the most seeds read.
    """
    title_ids = np.asarray(title_ids, dtype=np.int64)
    if seed_items is None:
        return title_ids
    seed_items = np.asarray(seed_items, dtype=np.int64).reshape(-1)
    if max_seeds is not None:
        seed_items = seed_items[seed_items.size - min(seed_items.size, int(max_seeds)) :]
    if seed_items.size == 0:
        return title_ids
    return np.concatenate([title_ids, np.asarray(sid_token_ids, np.int64)[seed_items].reshape(-1)])


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


class Seq2SeqPairs:
    """The (prompt, target item) examples of one epoch, as a map-style dataset.

    Args:
        prompt_ids: per playlist, its prompt's token ids (see :func:`encode_prompts`).
        relevant: per playlist, the catalogue item indices of its tracks (may be empty: such a
            playlist gives no example); a sequence of lists, or a
            :class:`~text2tracks.ragged.Ragged` (no Python object per entry, for full-MPD scale).
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

        seeds: draw seed tracks per playlist and epoch (:class:`~text2tracks.seed_draw.SeedDraw`;
            ``None``: off, exactly the examples of a run without seeds).
        own_tracks: with ``seeds``: per playlist, its own catalogue tracks in playlist order,
            where seeds and their targets come from (``None``: ``relevant``; pass them when
            ``relevant`` is the teacher's list).
        blank_prompt_ids: with ``seeds``: the encoding of ``""``, the prompt of a playlist whose
            title is dropped (its length counts for ``bucket_batches``).
        seed_width: encoder tokens per seed, for ``bucket_batches`` (``None``: depth; 1 when the
            model reads one token per seed).
        seed_cf, seed_cf_weight: with ``seeds``: per playlist, its CF fold-in list
            (:func:`text2tracks.cf_targets.cf_lists`), and the probability that a seeded target
            is drawn from it instead of the playlist's own tracks (0: off).

    Item ``i`` of the dataset is ``(playlist_index, item_index)``, and with ``seeds``
    ``(playlist_index, item_index, seed_items, with_title)``; :class:`Seq2SeqCollator` turns a
    list of them into tensors. Call :meth:`set_epoch` before each epoch. With seeds the number of
    examples may change from epoch to epoch (a seeded playlist's targets exclude its seeds).
    """

    def __init__(
        self,
        prompt_ids: Sequence[np.ndarray],
        relevant: Sequence[Sequence[int]] | Ragged,
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
        target_weights: Sequence[Sequence[float]] | Ragged | None = None,
        seeds: SeedDraw | None = None,
        own_tracks: Sequence[Sequence[int]] | Ragged | None = None,
        blank_prompt_ids: np.ndarray | None = None,
        seed_width: int | None = None,
        seed_cf=None,
        seed_cf_weight: float = 0.0,
    ) -> None:
        sid_token_ids = check_draw_options(
            prompt_ids,
            relevant,
            sid_token_ids,
            targets_per_playlist,
            popularity_power,
            item_counts,
            target_weights,
        )
        self.group_size = check_int("group_size", group_size, 1)
        self.bucket_batches = check_int("bucket_batches", bucket_batches, 0)
        if self.bucket_batches:
            if batch_size is None:
                raise ValueError("bucket_batches > 0 needs batch_size (the DataLoader's)")
            self.batch_size = check_int("batch_size", batch_size, 1)
        else:
            self.batch_size = None if batch_size is None else check_int("batch_size", batch_size, 1)
        self.prompt_ids = list(prompt_ids)
        self.prompt_length = np.fromiter(
            (len(p) for p in self.prompt_ids), dtype=np.int64, count=len(self.prompt_ids)
        )
        self.prompt_key = prompt_keys(self.prompt_ids) if self.bucket_batches else None
        self.sid_token_ids = sid_token_ids
        # encoder tokens per seed, for length buckets: depth, or 1 with one token per seed
        self.seed_width = sid_token_ids.shape[1] if seed_width is None else int(seed_width)
        self.eos_token_id = int(eos_token_id)
        self.targets_per_playlist = int(targets_per_playlist)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self._init_pairs(relevant, popularity_power, item_counts, target_weights)
        self.seed_draw = None
        if not 0 <= seed_cf_weight <= 1:
            raise ValueError(f"seed_cf_weight must be in [0, 1], got {seed_cf_weight!r}")
        if seed_cf_weight and (seeds is None or seed_cf is None):
            raise ValueError("seed_cf_weight > 0 needs seeds and seed_cf (the CF lists)")
        self.seed_cf, self.seed_cf_weight = seed_cf, float(seed_cf_weight)
        if seeds is not None:
            self._init_seeds(
                seeds, relevant if own_tracks is None else own_tracks, blank_prompt_ids
            )
            if seed_cf is not None and len(seed_cf) != len(self.prompt_ids):
                raise ValueError(
                    f"seed_cf must have one list per playlist, got {len(seed_cf)} for "
                    f"{len(self.prompt_ids)}"
                )
        self.epoch = -1
        self.set_epoch(0)

    def _init_pairs(self, relevant, popularity_power, item_counts, target_weights) -> None:
        """The (playlist, item) pairs as arrays, and what the epoch's draw reads."""
        relevant = relevant if isinstance(relevant, Ragged) else as_ragged(relevant)
        lengths = relevant.lengths()
        self.indptr = relevant.indptr
        values = relevant.values
        if values.size and (values.min() < 0 or values.max() >= len(self.sid_token_ids)):
            raise ValueError("a relevant item index is outside sid_token_ids")
        # 4-byte indices where they fit: per pair, its item and (without target weights) its
        # playlist: 66M pairs at MPD scale, 0.26 GB each instead of 0.53
        index = np.int32 if max(len(self.sid_token_ids), len(relevant)) < 2**31 else np.int64
        self.items = values.astype(index, copy=False)
        self.n_playlists_with_targets = int((lengths > 0).sum())
        self.log_weight = self.cumulative = self.pair_playlist = None
        if target_weights is not None:
            # the draw gives each target's playlist: no per-pair playlist array (200M teacher
            # entries at MPD scale)
            self.cumulative = cumulative_weights(target_weights, self.indptr, lengths)
            self._length = int(self.targets_per_playlist * self.n_playlists_with_targets)
            return
        self.pair_playlist = np.repeat(np.arange(len(relevant), dtype=index), lengths)
        if popularity_power:
            counts = np.maximum(np.asarray(item_counts, dtype=np.float64), 1.0)
            self.log_weight = -float(popularity_power) * np.log(counts[self.items])
        if self.targets_per_playlist:
            self._length = int(np.minimum(lengths, self.targets_per_playlist).sum())
        else:
            self._length = int(lengths.sum())

    def _init_seeds(self, seeds: SeedDraw, own_tracks, blank_prompt_ids) -> None:
        if not isinstance(seeds, SeedDraw):
            raise ValueError(f"seeds must be a SeedDraw or None, got {type(seeds).__name__}")
        if len(own_tracks) != len(self.prompt_ids):
            raise ValueError(
                f"own_tracks must have one entry per playlist, got {len(own_tracks)} for "
                f"{len(self.prompt_ids)} playlists"
            )
        if blank_prompt_ids is None:
            raise ValueError(
                "seeds need blank_prompt_ids, the encoding of the empty title "
                '(encode_prompts(tokenizer, [""], max_length)[0])'
            )
        self.seed_draw = seeds
        self.blank_prompt_ids = np.asarray(blank_prompt_ids, dtype=np.int64)
        own_tracks = as_ragged(own_tracks)
        lengths = own_tracks.lengths()
        self.own_indptr, self.own_items = own_tracks.indptr, own_tracks.values
        if self.own_items.size and (
            self.own_items.min() < 0 or self.own_items.max() >= len(self.sid_token_ids)
        ):
            raise ValueError("an own_tracks item index is outside sid_token_ids")
        self.own_playlist = np.repeat(np.arange(len(own_tracks), dtype=np.int64), lengths)
        if self.prompt_key is None:
            self.prompt_key = prompt_keys(self.prompt_ids)

    def __len__(self) -> int:
        return self._length

    def set_prompts(self, prompt_ids: Sequence[np.ndarray]) -> None:
        """Replace every playlist's prompt token ids (e.g. an epoch's BPE-dropout segmentation,
        :class:`text2tracks.prompt_tokens.SubwordDropout`); the next :meth:`set_epoch` draws
        again, since the order of an epoch depends on prompt lengths."""
        if len(prompt_ids) != len(self.prompt_ids):
            raise ValueError(f"need {len(self.prompt_ids)} prompts, got {len(prompt_ids)}")
        self.prompt_ids = list(prompt_ids)
        self.prompt_length = np.fromiter(map(len, self.prompt_ids), np.int64, len(prompt_ids))
        if self.prompt_key is not None:
            self.prompt_key = prompt_keys(self.prompt_ids)
        self.epoch = -1

    def set_epoch(self, epoch: int) -> None:
        """Draw the examples of ``epoch`` (deterministic in ``(seed, epoch)``)."""
        if epoch == self.epoch:
            return
        rng = np.random.default_rng([self.seed, int(epoch)])
        chosen, playlist = self._draw_targets(rng)
        item = self.items[chosen]
        self.epoch_seeds = None
        if self.seed_draw is not None:
            # a generator of its own, so that the draw above is the one of a run without seeds
            seed_rng = np.random.default_rng([self.seed, int(epoch), 1])
            self.epoch_seeds = draw_seeds(self.own_indptr, self.own_items, self.seed_draw, seed_rng)
            keep = ~self.epoch_seeds.has_seeds[playlist]
            seeded = seeded_targets(self.epoch_seeds, self.targets_per_playlist, seed_rng)
            seeded_items = self.own_items[seeded]
            if self.seed_cf_weight:
                seeded_items = self._cf_targets(seeded, seed_rng)
            playlist = np.concatenate([playlist[keep], self.own_playlist[seeded]])
            item = np.concatenate([item[keep], seeded_items])
            self._length = int(playlist.size)
        if self.shuffle:
            if self.group_size > 1 or self.bucket_batches:
                order = self._grouped_order(playlist, rng)
            else:
                order = rng.permutation(playlist.size)
            playlist, item = playlist[order], item[order]
        self.example_playlist = playlist
        self.example_item = item
        self.epoch = int(epoch)

    def _cf_targets(self, seeded: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The seeded targets (own pairs ``seeded``), each drawn from its playlist's CF list
        with probability ``seed_cf_weight`` (never one of the epoch's seeds)."""
        n_items = len(self.sid_token_ids)
        is_seed = self.epoch_seeds.is_seed
        seed_keys = self.own_playlist[is_seed] * n_items + self.own_items[is_seed]
        return self.seed_cf.mix(
            self.own_playlist[seeded],
            self.own_items[seeded],
            self.seed_cf_weight,
            seed_keys,
            n_items,
            rng,
        ).astype(self.own_items.dtype)

    def _draw_targets(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's (playlist, item) pairs, as indices into ``self.items``, and their
        playlists."""
        if self.cumulative is not None:
            # N draws with replacement per playlist: u in [p, p + 1) falls in p's segment
            with_targets = np.flatnonzero(np.diff(self.indptr) > 0)
            owner = np.repeat(with_targets, self.targets_per_playlist)
            draws = owner + rng.random(owner.size)
            chosen = np.searchsorted(self.cumulative, draws, side="right")
            return np.minimum(chosen, self.indptr[owner + 1] - 1), owner
        if self.targets_per_playlist:
            # Gumbel top-k: the N largest of log w + Gumbel noise within each playlist are a draw
            # of N distinct tracks without replacement, proportional to w
            keys = rng.gumbel(size=self.items.size)
            if self.log_weight is not None:
                keys = keys + self.log_weight
            order = np.lexsort((-keys, self.pair_playlist))
            rank = np.arange(order.size) - self.indptr[self.pair_playlist[order]]
            chosen = order[rank < self.targets_per_playlist]
            return chosen, self.pair_playlist[chosen]
        return np.arange(self.items.size), self.pair_playlist

    def _prompt_lengths_keys(self, playlist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per example (of ``playlist``), its prompt's length and a key equal for equal prompts:
        a playlist with seeds this epoch has a prompt of its own."""
        length, key = self.prompt_length[playlist], self.prompt_key[playlist]
        if self.epoch_seeds is None:
            return length, key
        seeded = self.epoch_seeds.has_seeds[playlist]
        n_seeds = np.minimum(self.epoch_seeds.n_seeds(), self.seed_draw.max_seeds)[playlist]
        title = np.where(self.epoch_seeds.with_title[playlist], length, self.blank_prompt_ids.size)
        length = np.where(seeded, title + self.seed_width * n_seeds, length)
        key = np.where(seeded, int(self.prompt_key.max(initial=0)) + 1 + playlist, key)
        return length, key

    def _grouped_order(self, playlist: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The permutation of the examples (of ``playlist``): contiguous groups, then length
        buckets."""
        n = playlist.size
        chosen = np.arange(n)
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
        length, key = self._prompt_lengths_keys(playlist)
        order = np.lexsort((group_key, key, length, window))
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

    def __getitem__(self, index: int) -> tuple:
        playlist, item = int(self.example_playlist[index]), int(self.example_item[index])
        if self.epoch_seeds is None:
            return playlist, item
        return self.prompt_item(playlist, item)

    def prompt_item(self, playlist: int, item: int = 0) -> tuple:
        """``(playlist, item, seed_items, with_title)`` of ``playlist`` in the current epoch
        (the seeds of a playlist without seeds this epoch are empty)."""
        if self.epoch_seeds is None:
            return int(playlist), int(item), np.zeros(0, np.int64), True
        return (
            int(playlist),
            int(item),
            self.epoch_seeds.seeds_of(playlist),
            bool(self.epoch_seeds.with_title[playlist]),
        )

    def seeds_of(self, playlist: int) -> np.ndarray:
        """The seed items of ``playlist`` in the current epoch (empty without seeds)."""
        return self.prompt_item(playlist)[2]

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

    Items with seeds, ``(playlist_index, item_index, seed_items, with_title)`` (from
    :class:`Seq2SeqPairs` with ``seeds``), get the prompt :func:`seeded_prompt_ids` builds from
    the playlist's title (or ``blank_prompt_ids`` without it) and the last ``max_seed_tracks``
    seeds (each as its row of ``seed_token_ids``, default ``sid_token_ids``: see
    :mod:`text2tracks.seed_embedding`); equal prompts (same title and seeds) still share a row.

    With ``soft_targets`` (a :class:`~text2tracks.soft_targets.SoftCodeTargets`) the batch also
    holds ``soft_token_ids`` and ``soft_probs``: each example's target list's code distribution
    per position, given its drawn item's prefix (one-hot for an example with seeds), and a
    ``prompt_index`` even when prompts are not shared (each example its own row).
    """

    def __init__(
        self,
        prompt_ids: Sequence[np.ndarray],
        sid_token_ids: np.ndarray,
        pad_token_id: int,
        eos_token_id: int,
        share_prompts: bool = False,
        blank_prompt_ids: np.ndarray | None = None,
        max_seed_tracks: int | None = None,
        seed_token_ids: np.ndarray | None = None,
        soft_targets=None,
    ) -> None:
        self.prompt_ids = list(prompt_ids)
        self.soft_targets = soft_targets
        self.sid_token_ids = np.asarray(sid_token_ids, dtype=np.int64)
        self.seed_token_ids = (
            self.sid_token_ids
            if seed_token_ids is None
            else np.asarray(seed_token_ids, dtype=np.int64)
        )
        self.pad_token_id = int(pad_token_id)
        self.eos_token_id = int(eos_token_id)
        self.share_prompts = bool(share_prompts)
        self.prompt_key = prompt_keys(self.prompt_ids) if self.share_prompts else None
        self.blank_prompt_ids = (
            None if blank_prompt_ids is None else np.asarray(blank_prompt_ids, dtype=np.int64)
        )
        self.max_seed_tracks = max_seed_tracks

    def set_prompts(self, prompt_ids: Sequence[np.ndarray]) -> None:
        """Replace every playlist's prompt token ids (see :meth:`Seq2SeqPairs.set_prompts`)."""
        self.prompt_ids = list(prompt_ids)
        self.prompt_key = prompt_keys(self.prompt_ids) if self.share_prompts else None

    def __call__(self, batch: Sequence[tuple]) -> dict:
        import torch

        playlists = np.fromiter((b[0] for b in batch), dtype=np.int64, count=len(batch))
        items = np.fromiter((b[1] for b in batch), dtype=np.int64, count=len(batch))
        out = {}
        if self.soft_targets is not None:  # seeded examples' targets are not the list's
            from_list = [len(b) < 3 or not len(b[2]) for b in batch]
            soft = self.soft_targets.batch(playlists, items, np.asarray(from_list, dtype=bool))
            out["soft_token_ids"], out["soft_probs"] = map(torch.from_numpy, soft)
        if batch and len(batch[0]) > 2:
            prompts, index = self._seeded_prompts(batch)
            if self.share_prompts:
                out["prompt_index"] = torch.from_numpy(index)
        elif self.share_prompts:
            _, first, inverse = np.unique(
                self.prompt_key[playlists], return_index=True, return_inverse=True
            )
            rank = np.empty(first.size, dtype=np.int64)  # distinct prompts by first appearance
            rank[np.argsort(first, kind="stable")] = np.arange(first.size)
            rows = playlists[np.sort(first)]
            out["prompt_index"] = torch.from_numpy(rank[inverse.reshape(-1)])
            prompts = [self.prompt_ids[p] for p in rows]
        else:
            prompts = [self.prompt_ids[p] for p in playlists]
        if self.soft_targets is not None and "prompt_index" not in out:
            out["prompt_index"] = torch.arange(len(batch))  # the soft loss is grouped_forward's
        input_ids, attention_mask = pad_prompts(prompts, self.pad_token_id)
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

    def _seeded_prompts(self, batch) -> tuple[list[np.ndarray], np.ndarray]:
        """The prompts of items with seeds (one per example, or one per distinct prompt with
        ``share_prompts``) and each example's row among them."""
        prompts: list[np.ndarray] = []
        rows: dict[bytes, int] = {}
        index = np.empty(len(batch), dtype=np.int64)
        for b, (playlist, _, seeds, with_title) in enumerate(batch):
            if with_title:
                title = self.prompt_ids[playlist]
            elif self.blank_prompt_ids is None:
                raise ValueError(
                    "an example without title needs the collator's blank_prompt_ids (the "
                    'encoding of "")'
                )
            else:
                title = self.blank_prompt_ids
            ids = seeded_prompt_ids(title, seeds, self.seed_token_ids, self.max_seed_tracks)
            key = ids.tobytes() if self.share_prompts else b
            if key not in rows:
                rows[key] = len(prompts)
                prompts.append(ids)
            index[b] = rows[key]
        return prompts, index


def pad_prompts(prompts: Sequence[np.ndarray], pad_token_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id arrays to the longest: ``(input_ids, attention_mask)`` int64
    ``(n, width)``."""
    width = max(len(p) for p in prompts)
    input_ids = np.full((len(prompts), width), pad_token_id, dtype=np.int64)
    attention_mask = np.zeros((len(prompts), width), dtype=np.int64)
    for row, ids in enumerate(prompts):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


class PromptBatches:
    """Validation prompts as a dataset of playlist indices, for Hits@K with beam search.

    With ``pairs`` (a :class:`Seq2SeqPairs` drawn with seeds), item ``i`` carries playlist
    ``i``'s seeds of the pairs' current epoch, so that the collator builds the same prompt as
    for the validation loss.
    """

    def __init__(self, n_playlists: int, pairs: Seq2SeqPairs | None = None) -> None:
        self.n = int(n_playlists)
        self.pairs = pairs

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple:
        if self.pairs is not None and self.pairs.seed_draw is not None:
            return self.pairs.prompt_item(index)
        return int(index), 0
