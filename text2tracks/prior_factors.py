"""The seed prior's own CF factors, at a higher rank than the IDs' (``--seed-prior-dim``).

The semantic IDs are built from the artifact's CF factors (64 dimensions by default), and the
seed prior (:mod:`text2tracks.seed_prior`) reads the same factors. Fewer dimensions make IDs
that the prompt can predict; more carry co-occurrence that a long seed list needs. On the
development data a linear fold-in of 25-100 seeds over the artifact's own ALS settings at 256
factors ranks their playlists' other tracks far better than at 64 (R-precision 0.156 against
0.107 for a title and 100 random seeds; the README's "Seed tracks"). With ``--seed-prior-dim
N`` the trainer fits an ALS of ``N`` factors with the artifact's recorded CF settings
(``cf/config.json``: the same weighting, regularisation, iterations and seed) on the same
training playlists, and the prior reads those instead; the IDs and the seeds' input factors
stay the artifact's. The factors are saved with the prior (``prior_item_factors`` in
``seq2seq/seed_factors.safetensors``), so a loaded model does not refit them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np


def training_matrix(relevant, n_items: int):
    """The binary ``(n_playlists, n_items)`` CSR matrix of the training playlists' catalogue
    items (``relevant``: a :class:`~text2tracks.ragged.Ragged` of catalogue indices per
    playlist, repeats allowed), the matrix the artifact's CF was fitted on."""
    from semantic_ids.interactions import binary_csr

    cols = np.asarray(relevant.values, dtype=np.int64)
    return binary_csr(relevant.row_of_value(), cols, len(relevant), n_items)


def fit_prior_factors(
    artifact_dir: str | Path, relevant, n_items: int, dim: int, num_threads: int = 0
) -> np.ndarray:
    """``(n_items, dim)`` float32 ALS item factors of the training playlists (``relevant``, as
    :func:`training_matrix` reads it), in catalogue order, fitted with the artifact's recorded
    CF settings but ``dim`` factors (on the CPU; ``num_threads`` 0: every core).

    Raises:
        ValueError: ``dim`` below 1, or an artifact whose CF is not ALS (its settings name the
            model; BPR factors are not a fold-in's).
    """
    from semantic_ids.cf import CONFIG_NAME, CFConfig, fit_cf
    from text2tracks.artifacts import CF_COMPONENT

    if dim < 1:
        raise ValueError(f"the seed prior's factor dimension must be at least 1, got {dim}")
    path = Path(artifact_dir) / CF_COMPONENT / CONFIG_NAME
    with open(path, encoding="utf-8") as f:
        recorded = CFConfig.from_dict(json.load(f)["config"])
    if recorded.model != "als":
        raise ValueError(
            f"--seed-prior-dim refits the artifact's ALS at another rank, but {path} records a "
            f"{recorded.model!r} model; drop --seed-prior-dim"
        )
    config = dataclasses.replace(
        recorded, factors=int(dim), num_threads=int(num_threads), use_gpu=False
    )
    model = fit_cf(training_matrix(relevant, n_items), config, show_progress=False)
    if model.item_factors.shape != (n_items, dim):
        raise ValueError(
            f"the prior's ALS came back {model.item_factors.shape}, expected ({n_items}, {dim})"
        )
    return model.item_factors


__all__ = ["fit_prior_factors", "training_matrix"]
