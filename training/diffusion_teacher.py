"""Title-kNN teacher targets for the diffusion head (``train-diffusion --contrastive-targets
teacher`` / ``--latent-target teacher``), after DGR's distillation of a ranker into a retriever.

A playlist's own tracks are one noisy draw of what its title asks for. The seq2seq learns better
from the title-kNN teacher's list (:mod:`text2tracks.teacher`: the tracks of the training
playlists whose titles resemble this one, its own vote left out, part of the mass on its own
tracks); the head can learn from the same list in two places:

- ``contrastive_targets="teacher"``: the contrastive term's positives are drawn from the
  teacher's list, weighted by its probabilities, instead of uniformly from the playlist's tracks;
- ``latent_target="teacher"``: the x_0 the head learns to write is the ridge fold-in of the
  teacher's ``teacher_fold_in_top`` best tracks into the CF space (the query vector that scores
  those tracks highest, as ALS folds in a new user), instead of the playlist's own ALS factor.

Both are computed once per run from the training playlists that :func:`load_pairs` keeps (a few
seconds for the development data).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.diffusion_config import DiffusionTrainConfig

FOLD_IN_REGULARISATION = 0.1  # eval.teacher_views' ridge, under which the fold-in was measured


def teacher_positives(config: DiffusionTrainConfig) -> bool:
    """Whether the contrastive term (the head's, when it has one) draws from the teacher."""
    contrastive = not config.regressor and config.contrastive_weight > 0
    return contrastive and config.contrastive_targets == "teacher"


def uses_teacher(config: DiffusionTrainConfig) -> bool:
    """Whether ``config`` reads the teacher anywhere (then :func:`apply_teacher` computes it)."""
    return config.latent_target == "teacher" or teacher_positives(config)


def apply_teacher(config: DiffusionTrainConfig, data: dict[str, Any], log=None) -> dict[str, Any]:
    """``data`` (:func:`training.diffusion_data.load_pairs`'s) with the teacher's targets in
    place of the playlists' own where ``config`` asks for them: ``train_tracks`` becomes the
    teacher's probabilities (scipy CSR, rows sum to 1) and/or ``train_latents`` the fold-in of
    the teacher's best tracks. Replaced tracks stay as ``own_tracks`` (and, for a
    seed-conditioned head, ``own_fold_in`` is the fold-in of each playlist's own tracks, its x_0
    target while it carries seeds; :mod:`training.diffusion_seeds`). A
    playlist whose title resembles no other's gets its own tracks as the teacher's list
    (:func:`text2tracks.teacher.teacher_targets`). A copy; ``data`` itself is not changed."""
    import time

    import scipy.sparse as sp

    from text2tracks.cf_targets import ridge_fold_in
    from text2tracks.ragged import Ragged
    from text2tracks.teacher import keep_top_per_row, teacher_targets

    if not uses_teacher(config):
        return data
    started = time.perf_counter()
    own = data["train_tracks"]
    n_items = own.shape[1]
    own_rows = Ragged(own.indptr.astype(np.int64), own.indices.astype(np.int64))
    teacher = teacher_targets(
        data["train_prompts"],
        own_rows,
        n_items,
        top_items=config.teacher_top_items,
        own_weight=config.teacher_own_weight,
        leave_out=True,
        progress=config.progress,
    )
    probabilities = sp.csr_matrix(
        (teacher.weights.values, teacher.items.values, teacher.items.indptr),
        shape=(len(teacher), n_items),
        dtype=np.float32,
    )
    out = dict(data)
    if teacher_positives(config):
        out["train_tracks"], out["own_tracks"] = probabilities, own
    if config.latent_target == "teacher":
        best = keep_top_per_row(probabilities, config.teacher_fold_in_top, 1.0)
        best.sort_indices()
        best_rows = Ragged(best.indptr.astype(np.int64), best.indices.astype(np.int64))
        folded = ridge_fold_in(best_rows, data["item_factors"], FOLD_IN_REGULARISATION)
        out["train_latents"] = np.ascontiguousarray(folded, dtype=np.float32)
        if config.seed_conditioning:  # what a playlist learns while it carries seeds
            out["own_fold_in"] = ridge_fold_in(
                own_rows, data["item_factors"], FOLD_IN_REGULARISATION
            )
    if log is not None:
        log(
            f"teacher: title-kNN targets for {len(teacher)} playlists in "
            f"{time.perf_counter() - started:.1f} s (contrastive "
            f"positives: {'teacher' if teacher_positives(config) else 'playlist'}, latent "
            f"target: {config.latent_target})"
        )
    return out


__all__ = [
    "FOLD_IN_REGULARISATION",
    "apply_teacher",
    "teacher_positives",
    "uses_teacher",
]
