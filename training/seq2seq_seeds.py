"""The parts of a seq2seq that read seeds and the seed prior, installed before the optimizer is
built (their weights train with the rest): the seed embedding
(:mod:`text2tracks.seed_embedding`), the seeds' CF factors (:mod:`text2tracks.seed_factors`)
and the seed prior on the decoder's scores (:mod:`text2tracks.seed_prior`)."""

from __future__ import annotations

import numpy as np

from text2tracks.seed_embedding import attach_seed_items
from text2tracks.seed_factors import catalogue_cf_factors, install_seed_factors
from text2tracks.seed_prior import install_seed_prior


def attach_seed_parts(model, config, catalog, layout, sid_token_ids: np.ndarray) -> np.ndarray:
    """Install what ``config`` (a :class:`training.seq2seq_config.TrainConfig`) asks for on
    ``model``; returns the seed token table (:func:`attach_seed_items`)."""
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
        )
    return seed_ids


__all__ = ["attach_seed_parts"]
