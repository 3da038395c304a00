"""A seed-factor prior on the decoder's ID-token scores (``--seed-prior``).

With seed factors (:mod:`text2tracks.seed_factors`) the encoder reads each seed's CF item
factors, but the decoder still has to learn, through cross-attention and a few layers, which
IDs those factors point to. ALS fold-in, the strongest continuation baseline, scores an item by
one dot product between a vector made from the seeds and the item's factors. The prior gives
the decoder that path directly, as part of the model:

- each ID token ``t`` (one code of one level) has a fixed factor vector ``g_t``, fitted once by
  least squares so that the vectors of an item's ID tokens sum to its standardised CF factors
  (``sum_l g[c_l(i)] ~ f_i``; the collision digit's tokens fit what is left, near zero);
- each prompt has a context ``m``, the mean of its seeds' standardised factors (zero without
  seeds);
- every decoder step adds ``m^T W g_t`` to the score of token ``t``, with ``W`` ``(dim, dim)``
  learned (it starts at zero: the model starts as it was).

Summed over an ID's tokens the added score is ``m^T W sum_l g_t ~ m^T W f_i``: a learned bilinear
form between the seeds and the item, as ALS fold-in's ``u^T f_i`` is with
``u = (F^T F + lambda I)^-1 sum f_s`` for a fixed ``W``. It is additive over the ID's levels, so
the beam search ranks by it level by level without knowing the whole ID; the model's own
scores and the prior are trained together, and the search ranks by their sum, the model's own
score. Prompts without seeds get no prior.

The prior is a submodule of the ID-only output layer (:mod:`text2tracks.output_head`), which
adds it to its scores; the context is set by a forward pre-hook on the encoder each time the
encoder runs (training, search, item scoring alike), and the decoder's rows map to prompts as
every caller lays them out: prompt-major, as many rows per prompt. Saved with the seed factor
projection in ``seq2seq/seed_factors.safetensors`` (``prior_weight``, ``prior_token_factors``),
outside the transformers weights. Hand-written: no library adds a prompt-conditioned bias to a
seq2seq's output layer.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

PRIOR_MARK = ".seed_prior."  # in the names of the prior's parameters (kept out of model files)
PRIOR_WEIGHT_KEY = "prior_weight"
PRIOR_TOKEN_FACTORS_KEY = "prior_token_factors"
# the least-squares fit's ridge, relative to the mean diagonal of the one-hot Gram matrix: the
# one-hot columns of each level sum to one (collinear with every other level), so the plain
# normal equations are singular
_RIDGE = 1e-3


@functools.cache
def seed_prior_class():
    """The :class:`SeedPrior` module class, built on first use (importing this module loads no
    torch)."""
    import torch

    class SeedPrior(torch.nn.Module):
        """``m^T W g_t`` for each prompt's seed context ``m`` and each scored column ``t``.

        Args:
            token_factors: ``(n_columns, dim)``, one row per column of the output layer's
                compact scores (zero for EOS).
            weight: a trained ``W`` ``(dim, dim)``, else zeros.
        """

        def __init__(self, token_factors, weight=None) -> None:
            super().__init__()
            token_factors = torch.as_tensor(token_factors, dtype=torch.float32)
            if token_factors.ndim != 2:
                raise ValueError(f"token_factors must be 2-d, got {tuple(token_factors.shape)}")
            dim = token_factors.shape[1]
            self.register_buffer("token_factors", token_factors, persistent=False)
            self.weight = torch.nn.Parameter(torch.zeros(dim, dim))
            if weight is not None:
                weight = torch.as_tensor(weight, dtype=torch.float32)
                if tuple(weight.shape) != (dim, dim):
                    raise ValueError(
                        f"the seed prior's weight must be ({dim}, {dim}), got {tuple(weight.shape)}"
                    )
                with torch.no_grad():
                    self.weight.copy_(weight)
            self.context = None  # (batch, dim) per prompt, set by the encoder's pre-hook
            self.row_index = None  # (rows,) prompt of each decoder row, where set (prior_rows)

        def bias(self, rows: int):
            """``(rows, n_columns)`` scores to add, or ``None`` when no prompt has seeds. Row
            ``r`` is prompt ``row_index[r]`` inside :func:`prior_rows`, else prompt
            ``r // (rows // batch)``."""
            if self.context is None:
                return None
            batch = self.context.shape[0]
            if self.row_index is not None:
                if rows != self.row_index.shape[0]:
                    raise RuntimeError(
                        f"the decoder runs {rows} rows, prior_rows gave an index of {self.row_index.shape[0]}"
                    )
                q = self.context.to(self.weight.dtype).index_select(0, self.row_index) @ self.weight
                return q @ self.token_factors.to(q.dtype).T
            if rows % batch:
                raise RuntimeError(
                    f"the decoder runs {rows} rows for {batch} prompts: rows must be "
                    "prompt-major, as many per prompt"
                )
            q = self.context.to(self.weight.dtype) @ self.weight
            scores = q @ self.token_factors.to(q.dtype).T
            return scores if rows == batch else scores.repeat_interleave(rows // batch, dim=0)

    return SeedPrior


def fit_token_factors(columns: np.ndarray, factors: np.ndarray, n_columns: int) -> np.ndarray:
    """Per output column, the vector ``g`` whose sums over each item's columns best fit its
    factors: ridge least squares of ``factors`` ``(n_items, dim)`` on the items' one-hot
    ``columns`` ``(n_items, depth)``. Returns float32 ``(n_columns, dim)``; columns no item
    uses stay zero."""
    from scipy import sparse

    columns = np.asarray(columns, dtype=np.int64)
    factors = np.asarray(factors, dtype=np.float64)
    n_items, depth = columns.shape
    if factors.shape[0] != n_items:
        raise ValueError(f"{n_items} items' columns but {factors.shape[0]} rows of factors")
    if n_items and (columns.min() < 0 or columns.max() >= n_columns):
        raise ValueError(f"item columns must lie in [0, {n_columns})")
    onehot = sparse.csr_matrix(
        (np.ones(n_items * depth), (np.repeat(np.arange(n_items), depth), columns.ravel())),
        shape=(n_items, n_columns),
    )
    gram = (onehot.T @ onehot).toarray()
    ridge = _RIDGE * max(float(np.mean(np.diag(gram))), 1.0)
    rhs = onehot.T @ factors
    fitted = np.linalg.solve(gram + ridge * np.eye(n_columns), rhs)
    return fitted.astype(np.float32)


def _parts(model):
    """``(seed embedding with factors, ID-only output layer)``; ``ValueError`` otherwise."""
    from text2tracks.output_head import has_id_output_head
    from text2tracks.seed_embedding import seed_item_embedding_class

    embedding = model.get_encoder().get_input_embeddings()
    if not isinstance(embedding, seed_item_embedding_class()) or embedding.factor_proj is None:
        raise ValueError(
            "the seed prior reads the seeds' CF factors: train with seed factors on "
            "(--seed-prob > 0, seeds read as one token each) or drop --seed-prior"
        )
    if not has_id_output_head(model):
        raise ValueError(
            "the seed prior adds to an ID-only output layer: the model has none "
            "(id_only_output=False or LoRA); drop --seed-prior"
        )
    return embedding, model.get_output_embeddings()


def _set_context(prior, embedding):
    """The encoder's forward pre-hook: ``prior.context`` = each prompt's mean seed factors."""

    def hook(module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        prior.context = None
        if input_ids is None:
            return None
        is_seed = input_ids >= embedding.vocab_rows
        if not bool(is_seed.any()):
            return None
        factors = embedding.factors
        if factors.device != input_ids.device:
            factors = factors.to(input_ids.device)
            embedding._factors = factors
        items = (input_ids - embedding.vocab_rows).clamp(min=0)
        rows = factors[items] * is_seed.unsqueeze(-1).to(factors.dtype)
        count = is_seed.sum(dim=1, keepdim=True).clamp(min=1).to(factors.dtype)
        prior.context = rows.sum(dim=1) / count
        return None

    return hook


def install_seed_prior(model, weight=None, token_factors=None):
    """Give ``model``'s output layer a :class:`SeedPrior` over its seeds' CF factors (fitting the
    token vectors from the catalogue when ``token_factors`` is not given) and the encoder the
    hook that sets each prompt's context. Idempotent. Returns the prior."""
    embedding, head = _parts(model)
    if token_factors is None:
        item_columns = head.position[embedding._item_tokens.to(head.position.device)]
        token_factors = fit_token_factors(
            item_columns.cpu().numpy(), embedding.factors.cpu().numpy(), head.token_ids.numel()
        )
    prior = seed_prior_class()(token_factors, weight).to(head.weight.device)
    if tuple(prior.token_factors.shape) != (head.token_ids.numel(), embedding.factors.shape[1]):
        raise ValueError(
            f"the seed prior's token factors are {tuple(prior.token_factors.shape)}, the model "
            f"scores {head.token_ids.numel()} columns of {embedding.factors.shape[1]}-d factors"
        )
    encoder = model.get_encoder()
    old = getattr(encoder, "_seed_prior_hook", None)
    if old is not None:
        old.remove()
    # before DirectSeeds' pre-hook, which cuts the seeds out of the encoder's input
    encoder._seed_prior_hook = encoder.register_forward_pre_hook(
        _set_context(prior, embedding), with_kwargs=True, prepend=True
    )
    head.seed_prior = prior
    return prior


def seed_prior_of(model):
    """The model's :class:`SeedPrior`, or ``None``."""
    head = model.get_output_embeddings()
    return getattr(head, "seed_prior", None)


@contextlib.contextmanager
def prior_rows(model, index):
    """Within the block, decoder row ``r`` of ``model`` reads the seed prior of prompt
    ``index[r]`` (training's grouped forward, where several targets share one encoded prompt in
    any order); no effect on a model without a prior."""
    prior = seed_prior_of(model)
    if prior is None:
        yield
        return
    before, prior.row_index = prior.row_index, index
    try:
        yield
    finally:
        prior.row_index = before


def prior_tensors(model) -> dict:
    """What :func:`text2tracks.seed_factors.save_seed_factors` writes for the prior (``{}``
    without one)."""
    prior = seed_prior_of(model)
    if prior is None:
        return {}
    return {
        PRIOR_WEIGHT_KEY: prior.weight.detach().float().cpu().contiguous(),
        PRIOR_TOKEN_FACTORS_KEY: prior.token_factors.detach().float().cpu().contiguous(),
    }


def load_seed_prior(model, tensors: dict) -> bool:
    """Re-install a saved prior from ``tensors`` (the safetensors file's contents); False when
    it holds none."""
    if PRIOR_WEIGHT_KEY not in tensors:
        return False
    install_seed_prior(model, tensors[PRIOR_WEIGHT_KEY], tensors[PRIOR_TOKEN_FACTORS_KEY])
    return True


__all__ = [
    "PRIOR_MARK",
    "fit_token_factors",
    "install_seed_prior",
    "load_seed_prior",
    "prior_rows",
    "prior_tensors",
    "seed_prior_class",
    "seed_prior_of",
]
