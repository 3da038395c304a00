"""How the encoder reads a seed track: as its semantic-ID tokens, or as one token per seed.

Two encodings (``seed_encoding``), chosen at training time and recorded with the model:

- ``"codes"`` (TIGER): each seed is its ``depth`` ID tokens (every level and the collision
  digit) after the title, so 100 seeds are ~400 encoder positions;
- ``"item"``: each seed is one position whose input embedding is the sum of its ID tokens'
  embeddings, scaled by ``depth ** -0.5`` (the same vectors the decoder writes, so similar
  tracks, which share ID prefixes, read alike). 100 seeds are 100 positions: the encoder's cost
  with many seeds falls about fourfold (``python -m eval.bench_seed_latency``);
- ``"direct"``: the same item vector, plus the encoder's position embedding where it has one
  (BERT / MiniLM; the T5's relative positions have none), through the norm that ends the
  encoder (BERT's last ``LayerNorm``, T5's ``final_layer_norm``) and written straight into
  the encoder's *output* at the seed's position: the encoder's layers run on the title alone and
  the decoder's cross-attention reads title and seeds together. A pretrained encoder is costly
  per token (MiniLM: 6 layers of width 384), so this keeps 100 seeds nearly as cheap as none.
  No parameter is added: the saved files are the same.

For ``"item"`` the prompt holds, for seed item ``i``, the id ``vocab_rows + i`` (past every token
of the vocabulary), and the encoder's input embedding is replaced by :class:`SeedItemEmbedding`,
which looks ordinary ids up as before and expands seed ids into their summed ID-token vectors.
It holds the same ``weight`` parameter under the same name, so ``save_pretrained`` writes the
same files and an artifact records only the encoding (``seq2seq/seed_tracks.json``);
:func:`attach_seed_items` re-installs the layer on load. The layer is written by hand because
neither transformers nor torch has an embedding whose rows are sums of other rows.
"""

from __future__ import annotations

import functools

import numpy as np

SEED_ENCODINGS = ("codes", "item", "direct")
DEFAULT_SEED_ENCODING = "auto"  # training's default: default_seed_encoding(encoder)


def default_seed_encoding(encoder: str) -> str:
    """What ``seed_encoding="auto"`` trains: ``"direct"`` under the pretrained MiniLM, whose
    layers are costly per token (100 seeds cost 1.19x no seeds at batch 64 instead of 2.71x,
    with the same continuation scores), ``"item"`` under the small T5 (1.35-1.40x through its
    layers)."""
    return "direct" if encoder == "minilm" else "item"


def check_seed_encoding(value) -> str:
    """``value`` when it is one of :data:`SEED_ENCODINGS`, else ``ValueError``."""
    if value not in SEED_ENCODINGS:
        raise ValueError(
            f"seed_encoding must be one of {', '.join(map(repr, SEED_ENCODINGS))}, got {value!r}"
        )
    return value


@functools.cache
def seed_item_embedding_class():
    """The :class:`SeedItemEmbedding` class, built on first use so that importing this module
    (the CLI's config and flags do) does not import torch."""
    import torch

    class SeedItemEmbedding(torch.nn.Module):
        """An input embedding that reads ids ``>= vocab_rows`` as seed items.

        Args:
            embedding: the encoder's ``nn.Embedding`` (or a ``SeedItemEmbedding`` to re-table); its
                ``weight`` is shared, not copied.
            item_tokens: int ``(n_items, depth)``, each item's ID token ids (rows of ``weight``).
        """

        def __init__(self, embedding, item_tokens: np.ndarray) -> None:
            super().__init__()
            self.weight = embedding.weight
            self.padding_idx = getattr(embedding, "padding_idx", None)
            item_tokens = np.asarray(item_tokens)
            if item_tokens.ndim != 2 or item_tokens.shape[1] < 1:
                raise ValueError(f"item_tokens must be (n_items, depth), got {item_tokens.shape}")
            if item_tokens.size and (item_tokens.min() < 0 or item_tokens.max() >= self.vocab_rows):
                raise ValueError("item_tokens hold ids outside the embedding's rows")
            # a plain attribute, not a buffer: a buffer would be broadcast by DDP at every step
            self._item_tokens = torch.from_numpy(item_tokens.astype(np.int64))
            self.scale = float(item_tokens.shape[1]) ** -0.5
            self.direct = False  # "direct": seeds skip the encoder's layers (DirectSeeds)
            self.factor_proj = None  # seed CF factors (set_factors; text2tracks.seed_factors)
            self._factors = None

        def set_factors(self, factors: np.ndarray, weight=None) -> None:
            """Add to each seed's vector a learned projection of its CF item factors
            (``factors``: ``(n_items, dim)``, standardised here per dimension); the projection
            starts at zero (the seed reads as before) or at ``weight`` ``(width, dim)``."""
            self.factor_proj, self._factors = _factor_projection(
                factors, weight, self.n_items, self.weight
            )

        @property
        def factors(self):
            """The standardised CF factors the seeds read (``(n_items, dim)``), or ``None``."""
            return self._factors

        def factors_on(self, device):
            """:attr:`factors` on ``device`` (moved once and kept there, not at every call)."""
            self._factors = self._factors.to(device)  # itself when already there
            return self._factors

        @property
        def vocab_rows(self) -> int:
            return int(self.weight.shape[0])

        @property
        def n_items(self) -> int:
            return int(self._item_tokens.shape[0])

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            rows = self.vocab_rows
            is_seed = input_ids >= rows
            if not bool(is_seed.any()):
                return torch.nn.functional.embedding(input_ids, self.weight, self.padding_idx)
            items = input_ids[is_seed] - rows
            if int(items.max()) >= self.n_items:
                raise IndexError(
                    f"seed item {int(items.max())} is outside the {self.n_items} items this model "
                    "was given (attach_seed_items with the artifact's catalogue)"
                )
            out = torch.nn.functional.embedding(
                input_ids.clamp(max=rows - 1), self.weight, self.padding_idx
            )
            if self._item_tokens.device != input_ids.device:  # moved once, not at every step
                self._item_tokens = self._item_tokens.to(input_ids.device)
            tokens = self._item_tokens[items]
            seed_vectors = self.weight[tokens].sum(dim=1) * self.scale
            if self.factor_proj is not None:
                cf_rows = self.factors_on(input_ids.device)[items].to(self.factor_proj.weight.dtype)
                seed_vectors = seed_vectors + self.factor_proj(cf_rows).to(seed_vectors.dtype)
            return out.masked_scatter(is_seed.unsqueeze(-1), seed_vectors.to(out.dtype))

    return SeedItemEmbedding


def standardise_factors(factors) -> np.ndarray:
    """``factors`` ``(n_items, dim)`` standardised per dimension (float64; constant dimensions
    centred only)."""
    factors = np.asarray(factors, dtype=np.float64)
    std = factors.std(axis=0)
    return (factors - factors.mean(axis=0)) / np.where(std > 1e-8, std, 1.0)


def _factor_projection(factors: np.ndarray, weight, n_items: int, like):
    """``(projection, standardised factors)`` for :meth:`SeedItemEmbedding.set_factors`: a
    bias-free ``Linear(dim, width)`` on ``like``'s device and dtype, at zero or ``weight``."""
    import torch

    factors = np.asarray(factors, dtype=np.float64)
    if factors.ndim != 2 or factors.shape[0] != n_items:
        raise ValueError(
            f"seed factors must be ({n_items}, dim), one row per catalogue item; "
            f"got {factors.shape}"
        )
    if not np.isfinite(factors).all():
        raise ValueError("seed factors hold NaN or infinite values")
    factors = standardise_factors(factors)
    proj = torch.nn.Linear(factors.shape[1], int(like.shape[1]), bias=False)
    proj = proj.to(device=like.device, dtype=like.dtype)
    with torch.no_grad():
        if weight is None:
            proj.weight.zero_()
        else:
            weight = torch.as_tensor(weight)
            if tuple(weight.shape) != tuple(proj.weight.shape):
                raise ValueError(
                    f"the seed factor projection must be {tuple(proj.weight.shape)}, "
                    f"got {tuple(weight.shape)}"
                )
            proj.weight.copy_(weight)
    proj.trains_at_decoder_lr = True  # new weights: training.optimizer's decoder rate
    return proj, torch.from_numpy(factors.astype(np.float32))


def _output_norm(encoder):
    """The norm that ends ``encoder``'s forward (BERT: the last layer's ``LayerNorm``; T5: its
    ``final_layer_norm``), so that seeds come out at the title states' scale; else a layer norm
    without weights."""
    import torch

    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if layers is not None and hasattr(getattr(layers[-1], "output", None), "LayerNorm"):
        return layers[-1].output.LayerNorm
    final = getattr(encoder, "final_layer_norm", None)
    if final is not None:
        return final
    return lambda x: torch.nn.functional.layer_norm(x, x.shape[-1:])


class DirectSeeds:
    """The hooks that make an encoder read ``"direct"`` seeds: before its forward, the input is
    cut to the title (the columns up to the longest title; seed ids there are masked out); after
    it, the output is widened back to the prompt's length with each seed's vector at its
    position. Every caller (training, beam search, item scoring) calls the encoder module with
    the whole prompt and gets states for the whole prompt, so nothing else changes.

    Hooks, not a wrapper module: a wrapper would rename the encoder's parameters and so its saved
    files. Prompts hold the title first and the seeds after it
    (:func:`text2tracks.data.seeded_prompt_ids`), right-padded.
    """

    def __init__(self, encoder, embedding) -> None:
        self.embedding = embedding
        embeddings = getattr(encoder, "embeddings", None)  # BERT: word + position + type
        self.positions = getattr(embeddings, "position_embeddings", None)
        self.norm = _output_norm(encoder)
        self.full: tuple | None = None
        self.handles = [
            encoder.register_forward_pre_hook(self.before, with_kwargs=True),
            encoder.register_forward_hook(self.after, with_kwargs=True),
        ]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def before(self, module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        self.full = None
        if input_ids is None:
            return None
        is_seed = input_ids >= self.embedding.vocab_rows
        if not bool(is_seed.any()):
            return None
        if mask is None:
            mask = input_ids.new_ones(input_ids.shape)
        title = mask.bool() & ~is_seed
        width = max(1, int(title.sum(dim=1).max()))
        self.full = (input_ids, is_seed, title)
        ids = input_ids[:, :width].masked_fill(is_seed[:, :width], 0)
        kwargs = {**kwargs, "input_ids": ids, "attention_mask": title[:, :width].to(mask.dtype)}
        return args[1:] if args else args, kwargs

    def after(self, module, args, kwargs, output):
        import torch

        if self.full is None:
            return None
        input_ids, is_seed, title = self.full
        self.full = None
        hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state
        batch, length = input_ids.shape
        width = hidden.shape[1]
        vectors = self.embedding(input_ids[is_seed].unsqueeze(0))[0]
        if self.positions is not None:
            where = torch.arange(length, device=input_ids.device).expand(batch, length)
            vectors = vectors + self.positions(where[is_seed])
        vectors = self.norm(vectors)
        states = hidden.new_zeros(batch, length, hidden.shape[-1])
        states[:, :width] = hidden * title[:, :width].unsqueeze(-1).to(hidden.dtype)
        states.masked_scatter_(is_seed.unsqueeze(-1), vectors.to(hidden.dtype))
        if isinstance(output, tuple):
            return (states, *output[1:])
        output.last_hidden_state = states
        return output


def __getattr__(name: str):
    if name == "SeedItemEmbedding":
        return seed_item_embedding_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _encoder(model):
    encoder = model.get_encoder()
    if not hasattr(encoder, "get_input_embeddings"):
        raise TypeError(f"{type(model).__name__}'s encoder has no input embeddings to extend")
    return encoder


def seed_encoding_of(model) -> str:
    """``"item"`` / ``"direct"`` when ``model``'s encoder reads one token per seed (through its
    layers / straight into its output), else ``"codes"``."""
    embedding = _encoder(model).get_input_embeddings()
    if not isinstance(embedding, seed_item_embedding_class()):
        return "codes"
    return "direct" if embedding.direct else "item"


def install_seed_items(model, item_tokens: np.ndarray, direct: bool = False):
    """Make ``model``'s encoder read one token per seed, through its layers or, with ``direct``,
    straight into its output (:class:`DirectSeeds`). Idempotent: a second call replaces the item
    table and the hooks. Returns the new input embedding."""
    encoder = _encoder(model)
    old = getattr(encoder, "_direct_seeds", None)
    if old is not None:
        old.remove()
        encoder._direct_seeds = None
    layer = seed_item_embedding_class()(encoder.get_input_embeddings(), item_tokens)
    encoder.set_input_embeddings(layer)
    if direct:
        layer.direct = True
        encoder._direct_seeds = DirectSeeds(encoder, layer)
    return layer


def seed_token_table(model, item_tokens: np.ndarray) -> np.ndarray:
    """``(n_items, width)`` int64: what the encoder reads for each catalogue item as a seed.

    ``item_tokens`` are the items' ID tokens; with one token per seed the table is
    ``vocab_rows + item`` (width 1), else ``item_tokens`` themselves (width ``depth``)."""
    embedding = _encoder(model).get_input_embeddings()
    if isinstance(embedding, seed_item_embedding_class()):
        return (embedding.vocab_rows + np.arange(embedding.n_items, dtype=np.int64))[:, None]
    return np.asarray(item_tokens, dtype=np.int64)


def catalogue_seed_tokens(model, layout, sid_codes: np.ndarray) -> np.ndarray:
    """:func:`seed_token_table` of a catalogue: ``layout`` turns its ``sid_codes`` into the
    items' ID tokens."""
    return seed_token_table(model, layout.codes_to_token_ids(sid_codes))


def attach_seed_items(model, item_tokens: np.ndarray, seed_encoding: str) -> np.ndarray:
    """Install :class:`SeedItemEmbedding` when the model reads (or is to be trained to read)
    ``seed_encoding="item"`` or ``"direct"``; ``"codes"`` leaves it as it is. Returns
    :func:`seed_token_table`."""
    encoding = check_seed_encoding(seed_encoding)
    if encoding != "codes":
        install_seed_items(model, item_tokens, direct=encoding == "direct")
    return seed_token_table(model, item_tokens)


__all__ = [
    "DEFAULT_SEED_ENCODING",
    "DirectSeeds",
    "default_seed_encoding",
    "SEED_ENCODINGS",
    "seed_item_embedding_class",
    "attach_seed_items",
    "catalogue_seed_tokens",
    "check_seed_encoding",
    "install_seed_items",
    "seed_encoding_of",
    "seed_token_table",
    "standardise_factors",
]
