"""A seed-factor prior on the decoder's ID-token scores (``--seed-prior``).

With seed factors (:mod:`text2tracks.seed_factors`) the encoder reads each seed's CF item
factors, but the decoder still has to learn, through cross-attention and a few layers, which
IDs those factors point to. ALS fold-in, the strongest continuation baseline, scores an item by
one dot product between a vector made from the seeds and the item's factors. The prior gives
the decoder that path directly, as part of the model:

- each prompt has a context ``m``, the mean of its seeds' standardised factors (zero without
  seeds);
- every decoder step adds ``m^T W v`` to the score of each code it may write, with ``W``
  ``(dim, dim)`` learned (it starts at zero: the model starts as it was);
- ``"nodes"`` (the default where seeds read factors, :class:`NodeTable`): ``v`` is the code's
  trie node's mean factor minus its parent's (the mean over the items below), so summed along
  an ID the added score is exactly ``m^T W f_i``; each step adds its level's share for the
  children of the row's prefix, which the search passes (:func:`prior_prefix`) and training
  reads from the targets (:func:`prior_rows`);
- ``"tokens"``: ``v`` is one fixed vector ``g_t`` per ID token, fitted once by least squares so
  that an item's token vectors sum to its factors (``sum_l g[c_l(i)] ~ f_i``), whatever the
  prefix.

Summed over an ID the added score is a learned bilinear form between the seeds and the item,
as ALS fold-in's ``u^T f_i`` is with ``u = (F^T F + lambda I)^-1 sum f_s`` for a fixed ``W``.
It is additive over the ID's levels, so the beam search ranks by it level by level; the model's
own scores and the prior are trained together, and the search ranks by their sum, the model's
own score. ``--seed-prior-count-scale`` scales the seeds' mean by a learned factor per bucket
of their count (an option, off by default); ``--seed-prior-learn-factors`` lets the prior's
item factors train too, from the CF factors (``f + delta``, ``delta`` learned from zero, the
``"nodes"`` tables recomputed from them at every training step; an option, off by default).
Prompts without seeds get no prior, unless ``--seed-prior-prompt`` adds ``P h`` to the context:
``h`` the prompt's mean encoder state, ``P`` learned (a forward hook on the encoder). A model
whose seeds read no factors can have that prompt-only prior over the catalogue's CF factors.
An option, off by default: it led in 20-minute screens and fell behind at 60 minutes (the
README's "Seed tracks").

The prior is a submodule of the ID-only output layer (:mod:`text2tracks.output_head`), which
adds it to its scores; the context is set by a forward pre-hook on the encoder each time the
encoder runs (training, search, item scoring alike), and the decoder's rows map to prompts as
every caller lays them out: prompt-major, as many rows per prompt (or as :func:`prior_rows`
says). Saved with the seed factor projection in ``seq2seq/seed_factors.safetensors``
(``prior_weight``; ``prior_token_factors`` for ``"tokens"``, ``prior_nodes`` marking
``"nodes"``, whose tables are rebuilt from the catalogue and the factors on load), outside the
transformers weights. Hand-written: no library adds a prompt-conditioned bias to a seq2seq's
output layer.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from text2tracks.seed_prior_context import (
    COUNT_BUCKETS,
    add_prompt_context,
    count_log_scale_parameter,
    factor_delta_parameter,
    prompt_weight_parameter,
    set_context,
)
from text2tracks.seed_prior_nodes import NodeTable

PRIOR_MARK = ".seed_prior."  # in the names of the prior's parameters (kept out of model files)
PRIOR_WEIGHT_KEY = "prior_weight"
PRIOR_TOKEN_FACTORS_KEY = "prior_token_factors"
PRIOR_NODES_KEY = "prior_nodes"  # present: the "nodes" prior
PRIOR_PROMPT_KEY = "prior_prompt_weight"  # present: the context reads the prompt too
PRIOR_COUNT_KEY = "prior_count_log_scale"  # present: the seed context is scaled by seed count
PRIOR_DELTA_KEY = "prior_factor_delta"  # present: the prior's item factors are f + delta
PRIOR_FACTORS_KEY = "prior_item_factors"  # present: the prior's own (standardised) factors
SEED_PRIORS = ("off", "tokens", "nodes")
SEED_PRIOR_INITS = ("zero", "foldin")
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
            dim: the CF factors' dimension.
            token_factors: ``(n_columns, dim)``, one row per column of the output layer's
                compact scores (zero for EOS): the ``"tokens"`` prior; ``None`` for the
                ``"nodes"`` one, which sets :attr:`nodes` instead.
            weight: a trained ``W`` ``(dim, dim)``, else zeros.
        """

        def __init__(self, dim: int, token_factors=None, weight=None) -> None:
            super().__init__()
            if token_factors is not None:
                token_factors = torch.as_tensor(token_factors, dtype=torch.float32)
                if token_factors.ndim != 2 or token_factors.shape[1] != dim:
                    raise ValueError(
                        f"token_factors must be (n_columns, {dim}), got "
                        f"{tuple(token_factors.shape)}"
                    )
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
            # --seed-prior-prompt: the context also gets a learned projection of the prompt's
            # mean encoder state (title and seeds alike), set by the encoder's forward hook
            self.prompt_weight = None
            self.count_log_scale = None  # --seed-prior-count-scale: (COUNT_BUCKETS,) log-scales
            # --seed-prior-learn-factors: (n_items, dim) learned change of the items' factors
            # (the seeds' and the nodes' alike); base_factors: the CF factors it changes
            self.factor_delta = None
            self.base_factors = None
            # --seed-prior-dim: the prior's own standardised factors (n_items, dim), read for
            # the seeds' context and the nodes instead of the factors the seeds' input reads
            self.own_factors = None
            self._tables_fresh = False  # the nodes' tables hold f + delta (eval mode only)
            self.prompt_mask = None  # the encoder's whole-prompt attention mask, between hooks
            self.item_factors = None  # a prompt-only prior's standardised catalogue factors
            self.context = None  # (batch, dim) per prompt, set by the encoder's hooks
            # the last encoder pass's seeds (batch, length; -1: no seed) and the factors their
            # context read: the prior's list loss (text2tracks.seed_prior_loss) scores them
            self.seed_items = None
            self.catalog_factors = None
            self.row_index = None  # (rows,) prompt of each decoder row, where set (prior_rows)
            self.nodes = None  # a NodeTable: the "nodes" prior (prefix-dependent)
            self.prefix = None  # search: (rows, t) codes written so far (prior_prefix)
            self.targets = None  # training: (rows, depth) target codes (prior_rows)

        def bias(self, shape):
            """Scores to add to output scores of ``shape`` (``(rows, n)`` or ``(rows, T, n)``),
            broadcastable to it, or ``None`` when no prompt has seeds."""
            if self.context is None:
                return None
            rows = shape[0]
            prompts = _row_prompts(self, rows)
            q = self.context.to(self.weight.dtype) @ self.weight  # (batch, dim)
            if self.factor_delta is not None and (self.training or not self._tables_fresh):
                _refresh_learned_tables(self)
            if self.nodes is not None:
                return self.nodes.bias(q, prompts, shape, self.prefix, self.targets)
            scores = q @ self.token_factors.to(q.dtype).T
            scores = scores.index_select(0, prompts)
            return scores.unsqueeze(1) if len(shape) == 3 else scores

        def train(self, mode: bool = True):
            self._tables_fresh = False  # the delta may change: recompute before the next search
            return super().train(mode)

    return SeedPrior


def _row_prompts(prior, rows: int):
    """The prompt of each of ``rows`` decoder rows: ``prior.row_index`` inside
    :func:`prior_rows`, else prompt-major (``r // (rows // batch)``)."""
    import torch

    batch = prior.context.shape[0]
    if prior.row_index is not None:
        if rows != prior.row_index.shape[0]:
            raise RuntimeError(
                f"the decoder runs {rows} rows, prior_rows gave {prior.row_index.shape[0]}"
            )
        return prior.row_index.to(prior.context.device)
    if rows % batch:
        raise RuntimeError(
            f"the decoder runs {rows} rows for {batch} prompts: rows must be prompt-major, as "
            "many per prompt"
        )
    index = torch.arange(batch, device=prior.context.device)
    return index.repeat_interleave(rows // batch)


def _refresh_learned_tables(prior) -> None:
    """``--seed-prior-learn-factors``: the nodes' tables from ``f + delta``; in training at every
    step (with the gradient), in eval once (no graph) until the next training mode."""
    import torch

    prior.base_factors = prior.base_factors.to(prior.factor_delta.device)  # moved once
    with torch.set_grad_enabled(prior.training and torch.is_grad_enabled()):
        prior.nodes.refresh(prior.base_factors + prior.factor_delta)
    prior._tables_fresh = not prior.training


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


class _Items:
    """What a prior is built from: the catalogue's standardised CF factors ``(n_items, dim)``
    (torch) and ID tokens ``(n_items, depth)`` (numpy), and the seed embedding whose seeds read
    those factors (``None``: a prompt-only prior, whose model reads no seeds)."""

    def __init__(self, factors, tokens, embedding) -> None:
        self.factors, self.tokens, self.embedding = factors, tokens, embedding


def _parts(model, factors=None, item_tokens=None):
    """``(_Items, ID-only output layer)``: the seeds' own factors where the model's seeds read
    them, else (a prompt-only prior) the given catalogue ``factors`` and ``item_tokens``;
    ``ValueError`` otherwise."""
    import torch

    from text2tracks.output_head import has_id_output_head
    from text2tracks.seed_embedding import seed_item_embedding_class, standardise_factors

    embedding = model.get_encoder().get_input_embeddings()
    if isinstance(embedding, seed_item_embedding_class()) and embedding.factor_proj is not None:
        items = _Items(embedding.factors, embedding._item_tokens.cpu().numpy(), embedding)
    elif factors is not None and item_tokens is not None:
        item_tokens = np.asarray(item_tokens, dtype=np.int64)
        if len(factors) != len(item_tokens):
            raise ValueError(
                f"the prior's factors hold {len(factors)} items, the catalogue {len(item_tokens)}"
            )
        standard = torch.from_numpy(standardise_factors(factors).astype(np.float32))
        items = _Items(standard, item_tokens, None)
    else:
        raise ValueError(
            "the seed prior reads CF factors: train with seed factors on (--seed-prob > 0, "
            "seeds read as one token each), or give it the catalogue's factors "
            "(--seed-prior-prompt), or use --seed-prior off"
        )
    if not has_id_output_head(model):
        raise ValueError(
            "the seed prior adds to an ID-only output layer: the model has none "
            "(id_only_output=False or LoRA); use --seed-prior off"
        )
    return items, model.get_output_embeddings()


def install_seed_prior(
    model,
    weight=None,
    token_factors=None,
    layout=None,
    prompt=False,
    prompt_weight=None,
    factors=None,
    item_tokens=None,
    count_scale=False,
    count_log_scale=None,
    learn_factors=False,
    factor_delta=None,
    prior_factors=None,
    weight_init="zero",
    train_weight=True,
):
    """Give ``model``'s output layer a :class:`SeedPrior` over its seeds' CF factors and the
    encoder the hook that sets each prompt's context. Idempotent. Returns the prior.

    With ``layout`` (the model's :class:`~text2tracks.tokens.SIDTokenLayout`) the prior is the
    ``"nodes"`` one (:class:`NodeTable`: exact per item, prefix-dependent); else the
    ``"tokens"`` one (one vector per ID token; fitted from the catalogue when
    ``token_factors`` is not given). ``prompt`` (or a saved ``prompt_weight``): the context
    also reads the prompt's encoder states (``--seed-prior-prompt``), so prompts without seeds
    get a prior too; a model whose seeds read no factors (or that reads no seeds) can have this
    prompt-only prior over the catalogue's CF ``factors`` (catalogue order, raw; standardised
    here) and ID ``item_tokens`` ``(n_items, depth)``. ``count_scale`` (or a saved
    ``count_log_scale``): the seeds' mean factors are scaled by a learned factor per bucket of
    their count (``--seed-prior-count-scale``; it needs seeds that read factors).
    ``learn_factors`` (or a saved ``factor_delta``): the ``"nodes"`` prior reads ``f + delta``
    for every item, seeds and nodes alike, ``delta`` learned (``--seed-prior-learn-factors``).
    ``prior_factors``: the prior's own standardised factors ``(n_items, dim)``, catalogue order
    (``--seed-prior-dim``, :mod:`text2tracks.prior_factors`), read for the seeds' context and
    the nodes instead of the factors the seeds' input reads. ``weight_init`` (where no trained
    ``weight`` is given): ``"zero"``, the model as without a prior, or ``"foldin"``
    (:func:`foldin_weight`), the prior starting as a linear fold-in of the seeds' mean.
    ``train_weight`` False: ``W`` stays as it starts (``--seed-prior-freeze-weight``; the
    count scale and learned factors still train)."""

    if factors is not None and not (prompt or prompt_weight is not None):
        raise ValueError("a prior over the catalogue's factors reads the prompt: pass prompt=True")
    items, head = _parts(model, factors, item_tokens)
    if prior_factors is not None:
        items = _own_items(items, prior_factors)
    count_scale = count_scale or count_log_scale is not None
    learn_factors = learn_factors or factor_delta is not None
    _check_options(items, layout, count_scale, learn_factors)
    prior = _new_prior(items, head, layout, token_factors, weight, weight_init)
    prior.weight.requires_grad_(bool(train_weight))
    prior.own_factors = items.factors if prior_factors is not None else None
    dim = prior.weight.shape[0]
    encoder = _without_prior_hooks(model.get_encoder())
    # before DirectSeeds' pre-hook, which cuts the seeds out of the encoder's input
    encoder._seed_prior_hook = encoder.register_forward_pre_hook(
        set_context(prior, items.embedding), with_kwargs=True, prepend=True
    )
    # a prompt-only prior keeps its factors: an artifact without cf/ saves them with the model
    prior.item_factors = items.factors if items.embedding is None else None
    if prompt or prompt_weight is not None:
        prior.prompt_weight = prompt_weight_parameter(encoder, dim, prompt_weight).to(
            head.weight.device
        )
        encoder._seed_prior_prompt_hook = encoder.register_forward_hook(
            add_prompt_context(prior), with_kwargs=True
        )
    if count_scale:
        prior.count_log_scale = count_log_scale_parameter(count_log_scale).to(head.weight.device)
    if learn_factors:
        prior.base_factors = items.factors
        prior.factor_delta = factor_delta_parameter(items.factors.shape, factor_delta).to(
            head.weight.device
        )
    head.seed_prior = prior
    return prior


def _new_prior(items: _Items, head, layout, token_factors, weight, weight_init: str):
    """The :class:`SeedPrior` over ``items``' factors for ``head``'s columns: the ``"nodes"``
    one with ``layout``, else the ``"tokens"`` one (``token_factors`` fitted where not given);
    ``W`` as given, else started as ``weight_init`` says."""
    import torch

    n_columns, dim = head.token_ids.numel(), int(items.factors.shape[1])
    nodes = None
    if layout is not None:
        nodes = _node_table(items, head, layout)
    elif token_factors is None:
        item_columns = head.position[torch.from_numpy(items.tokens).to(head.position.device)]
        token_factors = fit_token_factors(
            item_columns.cpu().numpy(), items.factors.cpu().numpy(), n_columns
        )
    if weight is None and weight_init == "foldin":
        weight = foldin_weight(items.factors.cpu().numpy())
    elif weight is None and weight_init != "zero":
        raise ValueError(f"weight_init must be 'zero' or 'foldin', got {weight_init!r}")
    prior = seed_prior_class()(dim, None if nodes is not None else token_factors, weight)
    prior = prior.to(head.weight.device)
    if nodes is None and prior.token_factors.shape[0] != n_columns:
        raise ValueError(
            f"the seed prior's token factors are {tuple(prior.token_factors.shape)}, the model "
            f"scores {n_columns} columns of {dim}-d factors"
        )
    prior.nodes = None if nodes is None else nodes.to(head.weight.device)
    return prior


# --seed-prior-init foldin: the ridge of the factors' second-moment matrix (standardised
# factors: unit diagonal), and the spread of the prior's scores it starts at (the standard
# deviation over the catalogue of a 10-seed mean's scores, median over 64 draws), near what
# the zero-start prior learns in an hour (1.3-1.5 on the development data)
FOLDIN_RIDGE = 0.1
FOLDIN_SPREAD = 1.0


def foldin_weight(factors: np.ndarray, spread: float = FOLDIN_SPREAD) -> np.ndarray:
    """``W = c (F^T F / n + ridge I)^-1`` for the items' standardised ``factors`` ``F``: the
    prior ``m^T W f_i`` is then a linear fold-in of the seeds' mean ``m`` (ALS fold-in's query
    up to scale, which solves the same normal equations for the sum), ``c`` chosen so that the
    scores spread as ``spread`` says (:data:`FOLDIN_SPREAD`). Learning ``W`` from zero does
    not get there in the budget: on the development data this start ranked a title and 100
    random seeds' tracks at 0.13 R-precision where the trained ``W`` of the same model gave
    0.11 (the README's "Seed tracks")."""
    f = np.asarray(factors, dtype=np.float64)
    n, dim = f.shape
    inverse = np.linalg.inv(f.T @ f / max(n, 1) + FOLDIN_RIDGE * np.eye(dim))
    rng = np.random.default_rng(0)
    spreads = [
        float((f @ (inverse @ f[rng.integers(0, n, size=min(10, n))].mean(axis=0))).std())
        for _ in range(64)
    ]
    scale = spread / max(float(np.median(spreads)), 1e-12)
    # the prior is m^T W v: the inverse is symmetric, so W is the same either side
    return (scale * inverse).astype(np.float32)


def _own_items(items: _Items, prior_factors) -> _Items:
    """``items`` with the prior's own factors in place of the seeds' (``ValueError`` where the
    model's seeds read no factors, or the factors do not cover the catalogue)."""
    import torch

    if items.embedding is None:
        raise ValueError(
            "the seed prior's own factors (--seed-prior-dim) replace the factors the seeds "
            "read: the model's seeds must read factors (--seed-prob > 0, seed factors on)"
        )
    own = torch.as_tensor(np.asarray(prior_factors, dtype=np.float32))
    if own.ndim != 2 or own.shape[0] != items.factors.shape[0]:
        raise ValueError(
            f"the seed prior's own factors must be ({items.factors.shape[0]}, dim), one row per "
            f"catalogue item, got {tuple(own.shape)}"
        )
    return _Items(own, items.tokens, items.embedding)


def _without_prior_hooks(encoder):
    """``encoder`` with an earlier prior's hooks removed (installing again replaces them)."""
    for name in ("_seed_prior_hook", "_seed_prior_prompt_hook"):
        old = getattr(encoder, name, None)
        if old is not None:
            old.remove()
            setattr(encoder, name, None)
    return encoder


def _check_options(items: _Items, layout, count_scale: bool, learn_factors: bool) -> None:
    """``ValueError`` naming the flag to drop where the count scale or learned factors ask for
    seeds that read factors (and learned factors for the ``"nodes"`` prior) and lack them."""
    if count_scale and items.embedding is None:
        raise ValueError(
            "the seed prior's count scale scales the seeds' mean factors: the model's seeds "
            "must read factors (--seed-prob > 0, seed factors on); drop --seed-prior-count-scale"
        )
    if learn_factors and (items.embedding is None or layout is None):
        raise ValueError(
            "the seed prior learns its item factors only as the nodes prior over seeds that "
            "read factors (--seed-prob > 0, --seed-prior nodes); drop --seed-prior-learn-factors"
        )


def _node_table(items: _Items, head, layout) -> NodeTable:
    """The catalogue's :class:`NodeTable`: item codes from the items' ID tokens."""
    tokens = items.tokens
    offsets = np.asarray(layout.offsets, dtype=np.int64)
    codes = tokens - offsets[None, :]
    columns = [
        head.position[off : off + size].cpu().numpy()
        for off, size in zip(layout.offsets, layout.level_sizes, strict=True)
    ]
    if any((c < 0).any() for c in columns):
        raise ValueError("the model's output layer does not score every ID code")
    factors = items.factors.cpu().numpy()
    return NodeTable(codes, layout.level_sizes, factors, columns, layout.offsets)


def seed_prior_of(model):
    """The model's :class:`SeedPrior`, or ``None``."""
    head = model.get_output_embeddings()
    return getattr(head, "seed_prior", None)


@contextlib.contextmanager
def prior_rows(model, index, labels=None):
    """Within the block, decoder row ``r`` of ``model`` reads the seed prior of prompt
    ``index[r]`` (training's grouped forward, where several targets share one encoded prompt in
    any order; ``None``: prompt-major), and a ``"nodes"`` prior the rows' target ``labels``
    (teacher forcing); no effect on a model without a prior."""
    prior = seed_prior_of(model)
    if prior is None:
        yield
        return
    before = prior.row_index, prior.targets
    targets = None if prior.nodes is None or labels is None else prior.nodes.codes_of(labels)
    prior.row_index, prior.targets = index, targets
    try:
        yield
    finally:
        prior.row_index, prior.targets = before


@contextlib.contextmanager
def prior_prefix(model, codes):
    """Within the block (one search step), the ``"nodes"`` prior reads each decoder row's
    ``codes`` written so far ``(rows, t)``; no effect on a model without a prior."""
    prior = seed_prior_of(model)
    if prior is None:
        yield
        return
    prior.prefix = codes
    try:
        yield
    finally:
        prior.prefix = None


def prior_tensors(model) -> dict:
    """What :func:`text2tracks.seed_factors.save_seed_factors` writes for the prior (``{}``
    without one)."""
    import torch

    prior = seed_prior_of(model)
    if prior is None:
        return {}
    out = {PRIOR_WEIGHT_KEY: prior.weight.detach().float().cpu().contiguous()}
    if prior.prompt_weight is not None:
        out[PRIOR_PROMPT_KEY] = prior.prompt_weight.detach().float().cpu().contiguous()
    if prior.count_log_scale is not None:
        out[PRIOR_COUNT_KEY] = prior.count_log_scale.detach().float().cpu().contiguous()
    if prior.factor_delta is not None:
        out[PRIOR_DELTA_KEY] = prior.factor_delta.detach().float().cpu().contiguous()
    if prior.own_factors is not None:
        out[PRIOR_FACTORS_KEY] = prior.own_factors.detach().float().cpu().contiguous()
    if prior.nodes is not None:  # rebuilt from the catalogue and the factors on load
        out[PRIOR_NODES_KEY] = torch.ones(1)
    else:
        out[PRIOR_TOKEN_FACTORS_KEY] = prior.token_factors.detach().float().cpu().contiguous()
    return out


def load_seed_prior(model, tensors: dict, layout, factors=None, item_tokens=None) -> bool:
    """Re-install a saved prior from ``tensors`` (the safetensors file's contents; ``layout``:
    the model's, for a ``"nodes"`` prior; ``factors`` and ``item_tokens``: the catalogue's, for
    a prompt-only prior, :func:`install_seed_prior`); False when it holds none."""
    if PRIOR_WEIGHT_KEY not in tensors:
        return False
    install_seed_prior(
        model,
        tensors[PRIOR_WEIGHT_KEY],
        None if PRIOR_NODES_KEY in tensors else tensors[PRIOR_TOKEN_FACTORS_KEY],
        layout=layout if PRIOR_NODES_KEY in tensors else None,
        prompt_weight=tensors.get(PRIOR_PROMPT_KEY),
        factors=factors,
        item_tokens=item_tokens,
        count_log_scale=tensors.get(PRIOR_COUNT_KEY),
        factor_delta=tensors.get(PRIOR_DELTA_KEY),
        prior_factors=tensors.get(PRIOR_FACTORS_KEY),
    )
    return True


__all__ = [
    "COUNT_BUCKETS",
    "PRIOR_MARK",
    "SEED_PRIORS",
    "SEED_PRIOR_INITS",
    "NodeTable",
    "prior_prefix",
    "fit_token_factors",
    "foldin_weight",
    "install_seed_prior",
    "load_seed_prior",
    "prior_rows",
    "prior_tensors",
    "seed_prior_class",
    "seed_prior_of",
]
