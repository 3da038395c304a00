"""Seeds that also carry their CF item factors (``--seed-factors``).

A seed read as one token (``seed_encoding`` ``"item"`` or ``"direct"``,
:mod:`text2tracks.seed_embedding`) is the sum of its semantic-ID token embeddings: similar tracks
read alike, but everything below the last ID level (and, for tracks in one leaf, everything
but the collision digit) must be learnt from the training examples. With seed factors each
seed's vector also gets ``W f``: its ALS item factors from the artifact's ``cf/``
(standardised per dimension), through one learned ``(width, dim)`` projection that starts at
zero, so the model starts from the co-occurrence structure that ALS fold-in and item kNN, the
strong continuation baselines, read directly. The factors come from the same training
playlists as the semantic IDs; nothing about a held-out playlist enters them.

Stored beside the model as ``seq2seq/seed_factors.safetensors`` (the projection; the factors
themselves are the artifact's ``cf/``, or ``seq2seq/seed_item_factors.npy`` in an artifact
saved without one), outside the transformers weights so that ``from_pretrained`` reads the
model unchanged; :func:`load_seed_factors` re-installs it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

SEED_FACTORS_NAME = "seed_factors.safetensors"
# the factors themselves, catalogue order, only where the artifact has no cf/ to read them from
SEED_ITEM_FACTORS_NAME = "seed_item_factors.npy"
PROJECTION_MARK = ".factor_proj."  # in the names of the projection's parameters


def _seed_embedding(model):
    from text2tracks.seed_embedding import seed_item_embedding_class

    embedding = model.get_encoder().get_input_embeddings()
    if not isinstance(embedding, seed_item_embedding_class()):
        raise ValueError(
            "seed factors need a model that reads one token per seed (seed_encoding 'item' or "
            "'direct'); train with --seed-prob > 0 and --seed-encoding item|direct|auto"
        )
    return embedding


def catalogue_cf_factors(artifact_dir: str | Path, catalog) -> np.ndarray:
    """The artifact's CF item factors ``(len(catalog), dim)`` in catalogue order (``cf/``,
    :func:`semantic_ids.cf.load_catalogue_factors`); ``ArtifactError`` when they cannot be
    read."""
    from semantic_ids.cf import load_catalogue_factors
    from text2tracks.artifacts import CF_COMPONENT, ArtifactError

    try:
        return load_catalogue_factors(Path(artifact_dir) / CF_COMPONENT, catalog.item_ids)
    except (OSError, ValueError, KeyError) as err:
        raise ArtifactError(
            f"cannot read the CF item factors the model's seeds read ({artifact_dir}): {err}"
        ) from err


def _factor_embedding(model):
    """The model's seed embedding when its seeds read factors, else ``None``."""
    from text2tracks.seed_embedding import seed_item_embedding_class

    embedding = model.get_encoder().get_input_embeddings()
    if isinstance(embedding, seed_item_embedding_class()) and embedding.factor_proj is not None:
        return embedding
    return None


def save_seed_item_factors(model, directory: str | Path) -> bool:
    """Write the factors the model's seeds read to ``directory/seed_item_factors.npy`` (an
    artifact without ``cf/``, :func:`text2tracks.storage.write_artifact`); False when its seeds
    read none. They are the standardised factors, which standardise to themselves on load."""
    from text2tracks.seed_prior import seed_prior_of

    embedding = _factor_embedding(model)
    prior = seed_prior_of(model)
    if embedding is not None:
        factors = embedding.factors
    elif prior is not None and prior.item_factors is not None:  # a prompt-only prior's
        factors = prior.item_factors
    else:
        return False
    np.save(Path(directory) / SEED_ITEM_FACTORS_NAME, factors.cpu().numpy())
    return True


def install_seed_factors(model, factors: np.ndarray, weight=None) -> None:
    """Make ``model``'s seeds read their CF ``factors`` (catalogue order) as well; ``weight``:
    a trained projection, else a zero one to train."""
    _seed_embedding(model).set_factors(factors, weight)


def seed_factor_projection(model):
    """The trained projection's weight ``(width, dim)``, or ``None`` when the model's seeds read
    no factors."""
    embedding = _factor_embedding(model)
    return None if embedding is None else embedding.factor_proj.weight


def save_seed_factors(model, directory: str | Path) -> bool:
    """Write the projection (and the seed prior's weights, :mod:`text2tracks.seed_prior`, where
    the model has one) to ``directory/seed_factors.safetensors`` (True), or remove a stale file
    when the model has no projection (False)."""
    from safetensors.torch import save_file

    from text2tracks.seed_prior import prior_tensors

    path = Path(directory) / SEED_FACTORS_NAME
    weight = seed_factor_projection(model)
    (Path(directory) / SEED_ITEM_FACTORS_NAME).unlink(missing_ok=True)  # written after, if needed
    tensors = prior_tensors(model)  # a prompt-only prior is saved here without a projection
    if weight is None and not tensors:
        path.unlink(missing_ok=True)
        return False
    if weight is not None:
        tensors["weight"] = weight.detach().float().cpu().contiguous()
    save_file(tensors, str(path))
    return True


def load_seed_factors(
    model,
    seq2seq_dir: str | Path,
    artifact_factors: Callable[[], np.ndarray],
    layout=None,
    item_tokens=None,
) -> bool:
    """Re-install a saved projection, and the seed prior where one was saved (True); False when
    the model was trained without seed factors. The factors are the model's own copy (``seed_item_factors.npy``, written where the
    artifact has no ``cf/``), else ``artifact_factors()`` (:func:`catalogue_cf_factors`; one
    cached call serves the model and every member). ``layout``: the model's, which a
    ``"nodes"`` seed prior (:mod:`text2tracks.seed_prior`) is rebuilt with; ``item_tokens``:
    the catalogue's ID tokens, which a prompt-only prior (no projection) is rebuilt from."""
    from safetensors.torch import load_file

    from text2tracks.seed_prior import load_seed_prior

    path = Path(seq2seq_dir) / SEED_FACTORS_NAME
    if not path.is_file():
        return False
    tensors = load_file(str(path))
    own = Path(seq2seq_dir) / SEED_ITEM_FACTORS_NAME
    factors = np.load(own, allow_pickle=False) if own.is_file() else artifact_factors()
    if "weight" not in tensors:  # a prompt-only prior: the model's seeds read no factors
        return load_seed_prior(model, tensors, layout, factors, item_tokens)
    weight = tensors["weight"]
    if factors.ndim != 2 or factors.shape[1] != weight.shape[1]:
        raise ValueError(
            f"{path} projects {weight.shape[1]}-dimensional CF factors, but the artifact holds "
            f"{factors.shape}; the model was trained on another CF build"
        )
    install_seed_factors(model, factors, weight)  # its rows checked against the catalogue
    load_seed_prior(model, tensors, layout)  # after the factors it reads
    return True


__all__ = [
    "PROJECTION_MARK",
    "SEED_FACTORS_NAME",
    "SEED_ITEM_FACTORS_NAME",
    "catalogue_cf_factors",
    "install_seed_factors",
    "load_seed_factors",
    "save_seed_factors",
    "save_seed_item_factors",
    "seed_factor_projection",
]
