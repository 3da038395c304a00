"""How the encoder reads a seed track: as its semantic-ID tokens, or as one token per seed.

Two encodings (``seed_encoding``), chosen at training time and recorded with the model:

- ``"codes"`` (TIGER): each seed is its ``depth`` ID tokens (every level and the collision
  digit) after the title, so 100 seeds are ~400 encoder positions;
- ``"item"``: each seed is one position whose input embedding is the sum of its ID tokens'
  embeddings, scaled by ``depth ** -0.5`` (the same vectors the decoder writes, so similar
  tracks, which share ID prefixes, read alike). 100 seeds are 100 positions: the encoder's cost
  with many seeds falls about fourfold (``python -m eval.bench_seed_latency``).

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

SEED_ENCODINGS = ("codes", "item")
DEFAULT_SEED_ENCODING = "item"


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
            return out.masked_scatter(is_seed.unsqueeze(-1), seed_vectors.to(out.dtype))

    return SeedItemEmbedding


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
    """``"item"`` when ``model``'s encoder reads one token per seed, else ``"codes"``."""
    embedding = _encoder(model).get_input_embeddings()
    return "item" if isinstance(embedding, seed_item_embedding_class()) else "codes"


def install_seed_items(model, item_tokens: np.ndarray):
    """Make ``model``'s encoder read one token per seed (idempotent: a second call replaces
    the item table). Returns the new input embedding."""
    encoder = _encoder(model)
    layer = seed_item_embedding_class()(encoder.get_input_embeddings(), item_tokens)
    encoder.set_input_embeddings(layer)
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
    ``seed_encoding="item"``; ``"codes"`` leaves it as it is. Returns
    :func:`seed_token_table`."""
    if check_seed_encoding(seed_encoding) == "item":
        install_seed_items(model, item_tokens)
    return seed_token_table(model, item_tokens)


__all__ = [
    "DEFAULT_SEED_ENCODING",
    "SEED_ENCODINGS",
    "seed_item_embedding_class",
    "attach_seed_items",
    "catalogue_seed_tokens",
    "check_seed_encoding",
    "install_seed_items",
    "seed_encoding_of",
    "seed_token_table",
]
