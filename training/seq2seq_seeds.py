"""The parts of a seq2seq that read seeds and the seed prior, installed before the optimizer is
built (their weights train with the rest): the seed embedding
(:mod:`text2tracks.seed_embedding`), the seeds' CF factors (:mod:`text2tracks.seed_factors`)
and the seed prior on the decoder's scores (:mod:`text2tracks.seed_prior`)."""

from __future__ import annotations

import time

import numpy as np

from text2tracks.prior_factors import fit_prior_factors
from text2tracks.seed_embedding import attach_seed_items, standardise_factors
from text2tracks.seed_factors import catalogue_cf_factors, install_seed_factors
from text2tracks.seed_prior import install_seed_prior


def attach_seed_parts(
    model, config, catalog, layout, sid_token_ids: np.ndarray, train_relevant=None, log=print
) -> np.ndarray:
    """Install what ``config`` (a :class:`training.seq2seq_config.TrainConfig`) asks for on
    ``model``; returns the seed token table (:func:`attach_seed_items`). ``train_relevant``:
    the training playlists' catalogue items, which ``config.seed_prior_dim`` fits the prior's
    own factors on."""
    seed_encoding = config.seed_encoding if config.seed_prob else "codes"
    seed_ids = attach_seed_items(model, sid_token_ids, seed_encoding)
    factors = None  # the catalogue's CF factors, read once where anything reads them
    if config.seed_factors or config.seed_prior != "off":
        factors = catalogue_cf_factors(config.artifact, catalog)
    if config.seed_factors:
        install_seed_factors(model, factors)
    if config.seed_prior != "off":  # after the seeds' factors, which it reads where they exist
        install_seed_prior(
            model,
            layout=layout if config.seed_prior == "nodes" else None,
            prompt=config.seed_prior_prompt,
            factors=None if config.seed_factors else factors,
            item_tokens=None if config.seed_factors else sid_token_ids,
            count_scale=config.seed_prior_count_scale,
            learn_factors=config.seed_prior_learn_factors,
            prior_factors=_prior_factors(config, catalog, train_relevant, log),
            weight_init=config.seed_prior_init,
            train_weight=not config.seed_prior_freeze_weight,
        )
    return seed_ids


def _prior_factors(config, catalog, train_relevant, log):
    """``--seed-prior-dim``: the prior's own standardised factors, else ``None``."""
    if not config.seed_prior_dim:
        return None
    if train_relevant is None:
        raise ValueError("seed_prior_dim fits on the training playlists: pass train_relevant")
    started = time.perf_counter()
    factors = fit_prior_factors(
        config.artifact,
        train_relevant,
        len(catalog.item_ids),
        config.seed_prior_dim,
        num_threads=config.num_threads,
    )
    log(
        f"seed prior: its own ALS of {config.seed_prior_dim} factors fitted in "
        f"{time.perf_counter() - started:.1f} s"
    )
    return standardise_factors(factors).astype(np.float32)


__all__ = ["attach_seed_parts"]
