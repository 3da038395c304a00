"""ID-token embeddings that start where the semantic IDs came from: the quantiser's centroids.

A semantic ID is a path through the residual k-means codebooks of the tracks' CF vectors
(:mod:`semantic_ids.residual_kmeans`), so code ``c`` of level ``l`` has a meaning before any
training: the centroid ``codebooks[l, c]``. Randomly initialised ID-token embeddings throw that
away and the model has to learn from the prompts alone which codes are alike. Here each
residual level's token embeddings start as one fixed random projection of their centroids
into the model's width (``P ~ N(0, 1/dim)``, seeded), scaled to the standard deviation the
rows had at random initialisation, so that the model's scale is unchanged. Codes with near
centroids start with near embeddings; the sum of a track's tokens (how the encoder reads a
seed track, :mod:`text2tracks.seed_embedding`) starts near the projection of its quantised CF
vector; and, the output layer being tied to the embeddings, the decoder's first logits already
rank codes by their centroids. The collision digit has no centroid and keeps its random rows.

Written by hand: a few numpy lines over the artifact's codebooks; no library initialises an
embedding from another model's geometry.
"""

from __future__ import annotations

import numpy as np

ID_INITS = ("codebooks", "random")


def check_id_init(value) -> str:
    """``value`` when it is one of :data:`ID_INITS`, else ``ValueError``."""
    if value not in ID_INITS:
        raise ValueError(f"id_init must be one of {', '.join(map(repr, ID_INITS))}, got {value!r}")
    return value


def projected_codebooks(codebooks: np.ndarray, width: int, seed: int = 0) -> np.ndarray:
    """``(n_levels, K, width)``: the centroids ``(n_levels, K, dim)`` through one random
    projection ``(dim, width)`` with entries ``N(0, 1/dim)`` drawn from ``seed``."""
    codebooks = np.asarray(codebooks, dtype=np.float64)
    if codebooks.ndim != 3:
        raise ValueError(f"codebooks must be (n_levels, K, dim), got shape {codebooks.shape}")
    dim = codebooks.shape[2]
    projection = np.random.default_rng(seed).normal(size=(dim, width)) / np.sqrt(dim)
    return codebooks @ projection


def codebook_token_rows(layout, level_sizes, n_levels: int) -> np.ndarray:
    """``(n_levels, K)`` token ids of code ``c`` at level ``l`` under ``layout``
    (:class:`~text2tracks.tokens.SIDTokenLayout`: a level's codes are consecutive ids from its
    offset)."""
    offsets = np.asarray(layout.offsets[:n_levels], dtype=np.int64)
    return offsets[:, None] + np.arange(level_sizes[0], dtype=np.int64)


def init_id_embeddings(model, layout, level_sizes, codebooks: np.ndarray, seed: int = 0) -> int:
    """Set the embedding rows of the residual levels' ID tokens from ``codebooks``; returns how
    many rows were set.

    Args:
        model: a transformers seq2seq whose decoder input embeddings hold the ID tokens (T5
            shares them with the encoder and the tied output layer).
        layout: the model's :class:`~text2tracks.tokens.SIDTokenLayout` (semantic-ID scheme).
        level_sizes: the catalogue's level sizes; the residual levels must all be ``K``, the
            codebooks' size.
        codebooks: ``(n_levels, K, dim)`` (``ResidualKMeans.codebooks_``).
    """
    import torch

    codebooks = np.asarray(codebooks)
    n_levels = codebooks.shape[0] if codebooks.ndim == 3 else -1
    if codebooks.ndim != 3 or tuple(level_sizes[:n_levels]) != (codebooks.shape[1],) * n_levels:
        raise ValueError(
            f"codebooks of shape {codebooks.shape} do not describe IDs with level sizes "
            f"{tuple(level_sizes)}: rebuild the IDs (build-ids), or train with --id-init random"
        )
    rows = torch.as_tensor(codebook_token_rows(layout, level_sizes, n_levels).reshape(-1))
    weight = model.get_decoder().get_input_embeddings().weight
    vectors = projected_codebooks(codebooks, weight.shape[1], seed).reshape(len(rows), -1)
    with torch.no_grad():
        vectors = vectors / vectors.std() * float(weight[rows].std())
        weight[rows] = torch.as_tensor(vectors, dtype=weight.dtype, device=weight.device)
    return len(rows)
