"""One beam-search step of a BERT decoder without transformers' per-call machinery.

The recommended model pairs the MiniLM encoder with a small BERT decoder (3 layers, width 128)
inside ``EncoderDecoderModel``. At one prompt and 20 beams a step multiplies 20 rows by 128-wide
matrices: microseconds of arithmetic. Through ``EncoderDecoderModel.forward`` the same step costs
milliseconds, spent in keyword-argument deprecation wrappers, output capture, mask builders and
cache objects, once per layer and step; profiled, the decoder was three quarters of a one-prompt
search. No library offers a bare incremental step for a transformers model (``generate`` runs the
same ``forward``), so this module writes it by hand over the model's own submodules: the same
``nn.Linear``, ``nn.LayerNorm``, embedding and output modules are called, in the order
``BertLayer.forward`` calls them, so the scores equal ``forward``'s up to float rounding (a test
holds the two together), LoRA-wrapped linears included.

Cross-attention keys and values are projected once per prompt and layer and shared by its beams
(as :mod:`text2tracks.shared_cross_attention` does for the library path); self-attention keys
and values are kept per beam row and reordered with the beams.

:func:`lean_supported` says which models take this path (a plain ``EncoderDecoderModel`` with a
``BertLMHeadModel`` decoder, absolute positions, no feed-forward chunking, in eval mode); any
other model keeps ``forward``.
"""

from __future__ import annotations

from text2tracks.shared_cross_attention import additive_mask

__all__ = ["LeanBertDecoder", "lean_supported"]


def lean_supported(model) -> bool:
    """Whether :class:`LeanBertDecoder` computes exactly what ``model``'s forward would."""
    from transformers import BertLMHeadModel, EncoderDecoderModel

    if type(model) is not EncoderDecoderModel or type(model.decoder) is not BertLMHeadModel:
        return False
    config = model.decoder.config
    return (
        not model.training
        and getattr(config, "position_embedding_type", "absolute") == "absolute"
        and not getattr(config, "chunk_size_feed_forward", 0)
        and bool(getattr(config, "add_cross_attention", False))
        and not getattr(config, "cross_attention_hidden_size", None)
    )


def _repeat_rows(n: int, times: int, device):
    """``[0]*times + [1]*times + ... + [n-1]*times`` as a long tensor."""
    import torch

    return torch.arange(n, device=device).repeat_interleave(times)


def _heads(x, heads: int):
    """``(rows, heads * dh)`` -> ``(rows, heads, 1, dh)``."""
    return x.view(x.shape[0], heads, 1, -1)


class LeanBertDecoder:
    """The decoder of ``model`` run one token at a time over ``batch * beams`` beam rows.

    Args:
        model: a model for which :func:`lean_supported` holds.
        hidden: the encoder's last hidden states ``(batch, L, d_encoder)``.
        mask: the prompt's ``(batch, L)`` 0/1 padding mask, or None.
    The beam rows of a prompt are consecutive (prompt-major), as many for every prompt.
    """

    def __init__(self, model, hidden, mask) -> None:
        decoder = model.decoder
        self.bert, self.cls = decoder.bert, decoder.cls
        self.layers = list(self.bert.encoder.layer)
        config = decoder.config
        self.heads = int(config.num_attention_heads)
        self.scaling = (config.hidden_size // self.heads) ** -0.5
        if model.encoder.config.hidden_size != config.hidden_size:
            hidden = model.enc_to_dec_proj(hidden)
        self.batch = hidden.shape[0]
        # (batch, 1, 1, L) additive, broadcast over heads and beams
        self.mask = additive_mask(mask, hidden.dtype)
        # cross-attention keys and values once per prompt: (batch, heads, L, dh)
        self.cross = [
            (
                self._split(layer.crossattention.self.key(hidden)),
                self._split(layer.crossattention.self.value(hidden)),
            )
            for layer in self.layers
        ]
        self.keys: list = [None] * len(self.layers)
        self.values: list = [None] * len(self.layers)
        self.length = 0

    def _split(self, x):
        """``(batch, L, heads * dh)`` -> ``(batch, heads, L, dh)``."""
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def reorder(self, parent) -> None:
        """Beam row ``i`` continues the old row ``parent[i]``."""
        self.keys = [k.index_select(0, parent) for k in self.keys]
        self.values = [v.index_select(0, parent) for v in self.values]

    def step(self, tokens):
        """Output-layer scores ``(rows, columns)`` after appending ``tokens`` ``(rows,)``."""
        rows = tokens.shape[0]
        if self.length == 0 and rows > self.batch:
            # every beam of a prompt starts from the same start token: one row per prompt,
            # then each prompt's row (scores and cache) is repeated for its beams
            beams = rows // self.batch
            scores = self._step(tokens[::beams])
            self.reorder(_repeat_rows(self.batch, beams, tokens.device))
            return scores.repeat_interleave(beams, dim=0)
        return self._step(tokens)

    def _step(self, tokens):
        emb = self.bert.embeddings
        position = emb.position_embeddings.weight[self.length] + emb.token_type_embeddings.weight[0]
        h = emb.LayerNorm(emb.word_embeddings(tokens) + position)
        for i, layer in enumerate(self.layers):
            h = self._self_attention(i, layer.attention, h)
            h = self._cross_attention(i, layer.crossattention, h)
            h = layer.output.LayerNorm(layer.output.dense(layer.intermediate(h)) + h)
        self.length += 1
        return self.cls(h)

    def _self_attention(self, i: int, block, h):
        import torch

        attn = block.self
        q = _heads(attn.query(h), self.heads)
        k, v = _heads(attn.key(h), self.heads), _heads(attn.value(h), self.heads)
        if self.keys[i] is not None:
            k, v = torch.cat([self.keys[i], k], dim=2), torch.cat([self.values[i], v], dim=2)
        self.keys[i], self.values[i] = k, v
        weights = (q @ k.transpose(2, 3)) * self.scaling  # (rows, heads, 1, t)
        out = (weights.softmax(dim=-1) @ v).reshape(h.shape[0], -1)
        return block.output.LayerNorm(block.output.dense(out) + h)

    def _cross_attention(self, i: int, block, h):
        rows = h.shape[0]
        key, value = self.cross[i]
        # the beams of a prompt are query positions against its one copy of keys and values
        q = block.self.query(h).view(self.batch, rows // self.batch, self.heads, -1)
        weights = (q.transpose(1, 2) @ key.transpose(2, 3)) * self.scaling
        if self.mask is not None:
            weights = weights + self.mask
        out = (weights.softmax(dim=-1) @ value).transpose(1, 2).reshape(rows, -1)
        return block.output.LayerNorm(block.output.dense(out) + h)
