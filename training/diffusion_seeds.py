"""Seed tracks in the diffusion head's training (MO-DiT: seeds -> query latent).

With ``--seed-conditioning`` every epoch draws, per training playlist, whether it carries seeds
and which of its tracks they are, as the seq2seq's training does
(:func:`text2tracks.seed_draw.draw_seeds`: probability ``seed_prob``, 1 .. ``max_seed_tracks``
seeds log-uniform, its first tracks or a random subset, the title dropped at times). The draw
depends only on ``(seed, epoch)``, so every process and a resumed run see the same one.

Per batch, :meth:`SeedBatches.inputs` gives what the head reads (the seeds' mean CF item factor
and count, by :func:`text2tracks.head_seeds.seed_inputs`, the function inference uses, and
whether the prompt keeps its title), and :meth:`SeedBatches.positives` the tracks the
contrastive term should retrieve: the playlist's tracks without its seeds, which the API never
recommends back. The target latent stays the playlist's CF factor.

The title-kNN teacher (:mod:`training.diffusion_teacher`, the default) answers titles, not seeds:
a playlist that carries seeds in an epoch learns from its own tracks (without the seeds) as the
contrastive term's positives, and, with the teacher's fold-in as the x_0 target, from the
fold-in of its own tracks (the same kind of vector, :meth:`SeedBatches.target`); a playlist
without seeds that epoch learns the teacher's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from text2tracks.head_seeds import seed_inputs
from text2tracks.seed_draw import EpochSeeds, SeedDraw, draw_seeds

# Keeps this draw's generator apart from the contrastive term's, seeded by (seed, step, ...).
_STREAM = 13


class SeedBatches:
    """One run's seed draws over the training playlists (rows of ``data["train_sequences"]``).

    Args:
        data: :func:`training.diffusion_data.load_pairs`'s output (``train_sequences``,
            ``item_factors``).
        prob, max_seeds: the draw's ``SeedDraw.prob`` and ``max_seeds``.
        seed: the run's seed.
    """

    def __init__(self, data: dict[str, Any], prob: float, max_seeds: int, seed: int) -> None:
        sequences = data["train_sequences"]
        self.indptr, self.items = sequences.indptr, sequences.values
        self.item_factors = np.asarray(data["item_factors"], dtype=np.float32)
        self.draw = SeedDraw(prob=prob, max_seeds=max_seeds)
        self.seed = seed
        self.epoch: int | None = None
        self.drawn: EpochSeeds | None = None
        self._seed_matrix = None
        # with the teacher: each playlist's own tracks, and its own x_0 target (standardised,
        # set by use_own_targets once the head's statistics are known)
        self.own_tracks = data.get("own_tracks")
        self.own_targets = None

    def use_own_targets(self, targets) -> None:
        """The x_0 target (a tensor ``(n_train, dim)``, standardised as the head learns) of each
        playlist while it carries seeds, in place of the teacher's (:meth:`target`)."""
        self.own_targets = targets

    def target(self, target, rows: np.ndarray):
        """The batch's x_0 targets: the teacher's ``target`` rows, but for playlists that carry
        seeds this epoch their own (:meth:`use_own_targets`; unchanged without)."""
        import torch

        if self.own_targets is None:
            return target
        seeded = torch.from_numpy(self.drawn.has_seeds[rows]).to(target.device)
        own = self.own_targets[torch.from_numpy(rows)].to(target.device, target.dtype)
        return torch.where(seeded[:, None], own, target)

    @classmethod
    def of_run(cls, config, data: dict[str, Any], model=None) -> SeedBatches | None:
        """The draws of a training run (a :class:`~training.diffusion_config.DiffusionTrainConfig`)
        with ``seed_conditioning``; None without. With the teacher's fold-in target
        (``data["own_fold_in"]``), ``model`` standardises each playlist's own target for the
        epochs it carries seeds (:meth:`use_own_targets`)."""
        if not config.seed_conditioning:
            return None
        seeds = cls(data, config.seed_prob, config.max_seed_tracks, config.seed)
        if "own_fold_in" in data and model is not None:
            import torch

            seeds.use_own_targets(model.standardise(torch.from_numpy(data["own_fold_in"])))
        return seeds

    def set_epoch(self, epoch: int) -> None:
        """Draw the seeds of ``epoch`` (a no-op when it is the one drawn)."""
        import scipy.sparse as sp

        if epoch == self.epoch:
            return
        rng = np.random.default_rng((self.seed, _STREAM, epoch))
        self.drawn = draw_seeds(self.indptr, self.items, self.draw, rng)
        lengths = np.diff(self.indptr)
        owner = np.repeat(np.arange(lengths.size, dtype=np.int64), lengths)
        is_seed = self.drawn.is_seed
        self._seed_matrix = sp.csr_matrix(
            (np.ones(int(is_seed.sum()), np.float32), (owner[is_seed], self.items[is_seed])),
            shape=(lengths.size, self.item_factors.shape[0]),
        )
        self.epoch = epoch

    def inputs(self, rows: np.ndarray, device) -> dict[str, Any]:
        """The head's seed inputs for the playlists ``rows``: ``seed_latents`` (batch, dim),
        ``seed_counts`` (batch,) (0: none) and ``prompt_kept`` (batch,) bool, on ``device``."""
        import torch

        if self.drawn is None:
            raise ValueError("call set_epoch before asking for a batch's seeds")
        means, counts = seed_inputs(
            self.item_factors, [self.drawn.seeds_of(r) for r in rows], self.draw.max_seeds
        )
        return {
            "seed_latents": torch.from_numpy(means).to(device),
            "seed_counts": torch.from_numpy(counts).to(device),
            "prompt_kept": torch.from_numpy(self.drawn.with_title[rows]).to(device),
        }

    def positives(self, tracks, rows: np.ndarray):
        """``tracks`` (scipy CSR (batch, n_items), the playlists ``rows``' tracks, or the
        teacher's lists) without their seeds; a playlist carrying seeds takes its own tracks in
        place of the teacher's list, and a row that would be left empty keeps its tracks."""
        import scipy.sparse as sp

        tracks = sp.csr_matrix(tracks)
        if self.own_tracks is not None:
            seeded = self.drawn.has_seeds[rows].astype(np.float32)
            tracks = sp.csr_matrix(
                sp.diags(seeded) @ self.own_tracks[rows] + sp.diags(1.0 - seeded) @ tracks
            )
            tracks.eliminate_zeros()
        left = sp.csr_matrix(tracks - tracks.multiply(self._seed_matrix[rows] > 0))
        left.eliminate_zeros()
        empty = np.diff(left.indptr) == 0
        if empty.any():  # cannot happen for unique tracks (seeds <= tracks - 1); kept safe
            left = sp.vstack([tracks[i] if empty[i] else left[i] for i in range(len(empty))])
        return sp.csr_matrix(left)


__all__ = ["SeedBatches"]
