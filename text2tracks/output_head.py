"""An output layer that scores only the tokens semantic IDs are written with.

The decoder of a text2tracks model only ever writes ID tokens and EOS: the constrained search
forbids every other token. Yet a plain ``lm_head`` projects each decoder state onto the whole
vocabulary, prompt tokens included (8k subwords for the default model, 30k WordPieces with the
MiniLM encoder), and at the default model's size that projection costs more than the decoder
layers themselves. :class:`IDOutputHead` multiplies by the rows of the ID tokens only and fills
every other column with :data:`MASKED_LOGIT`, so that the softmax (in the loss and in beam
search) is over the tokens the model can write.

It replaces the model's output layer in place and keeps the same parameters under the same
names (the weight stays tied to the input embeddings where it was), so ``save_pretrained``
writes exactly what it wrote before and a saved model loads into a plain ``transformers`` class;
:func:`text2tracks.modeling.load_seq2seq` puts the head back from the model's recorded config.
No library offers a vocabulary-subset output layer for ``transformers`` models, hence this
module.
"""

from __future__ import annotations

import contextlib
import functools

# exp(-1e4) is 0 in every float type, so a masked column takes no probability; kept finite (not
# -inf) so that `0 * masked log-probability` stays 0 where padding positions are multiplied out
MASKED_LOGIT = -1.0e4


@functools.cache
def _id_output_head_class():
    import torch

    class IDOutputHead(torch.nn.Module):
        """``linear``'s projection computed for ``token_ids`` only; other columns are masked.

        Holds ``linear``'s own ``weight`` (and ``bias``) parameters, not copies: ties to the
        input embeddings and state-dict names are unchanged.
        """

        def __init__(self, linear, token_ids, vocab_size: int) -> None:
            super().__init__()
            self.weight = linear.weight
            self.bias = linear.bias
            self.vocab_size = int(vocab_size)
            index = torch.as_tensor(sorted(set(int(t) for t in token_ids)), dtype=torch.long)
            if index.numel() == 0 or index[0] < 0 or index[-1] >= self.vocab_size:
                raise ValueError(
                    f"token ids must lie in [0, {self.vocab_size}), got "
                    f"{index.tolist()[:3]}...{index.tolist()[-3:]}"
                )
            self.register_buffer("token_ids", index, persistent=False)
            position = torch.full((self.vocab_size,), -1, dtype=torch.long)
            position[index] = torch.arange(index.numel())
            self.register_buffer("position", position, persistent=False)
            # True inside `compact_output`: forward returns the scored columns only
            self.compact = False
            self.seed_prior = None  # a prompt-conditioned bias (text2tracks.seed_prior)

        def compact_labels(self, labels):
            """``labels`` (token ids, ``-100`` for padding) as columns of the compact scores."""
            ignore = labels.eq(-100)
            columns = self.position[labels.masked_fill(ignore, 0)]
            if bool((columns.lt(0) & ~ignore).any()):
                bad = sorted(set(labels[columns.lt(0) & ~ignore].tolist()))[:5]
                raise ValueError(f"labels hold tokens the output layer does not score: {bad}")
            return columns.masked_fill(ignore, -100)

        @property
        def out_features(self) -> int:
            return self.vocab_size

        def forward(self, hidden):
            weight = self.weight.index_select(0, self.token_ids)
            bias = None if self.bias is None else self.bias.index_select(0, self.token_ids)
            scores = torch.nn.functional.linear(hidden, weight, bias)
            if self.seed_prior is not None:
                extra = self.seed_prior.bias(tuple(scores.shape))
                if extra is not None:
                    scores = scores + extra.to(scores.dtype)
            if self.compact:
                return scores
            logits = scores.new_full((*scores.shape[:-1], self.vocab_size), MASKED_LOGIT)
            return logits.index_copy(-1, self.token_ids, scores)

        def extra_repr(self) -> str:
            return f"{self.token_ids.numel()} of {self.vocab_size} tokens scored"

    return IDOutputHead


def install_id_output_head(model, token_ids) -> None:
    """Replace ``model``'s output layer (``get_output_embeddings()``) by an :class:`IDOutputHead`
    over ``token_ids``. Works for T5 (``lm_head``), BERT decoders inside ``EncoderDecoderModel``
    (``cls.predictions.decoder``) and any model whose ``set_output_embeddings`` takes a module."""
    linear = model.get_output_embeddings()
    if linear is None:
        raise ValueError(f"{type(model).__name__} has no output layer to restrict")
    # an installed head has the same weight/bias: it is rebuilt over the new token set
    head = _id_output_head_class()(linear, token_ids, linear.weight.shape[0])
    model.set_output_embeddings(head)


@contextlib.contextmanager
def compact_output(model):
    """Within the block, ``model``'s :class:`IDOutputHead` returns only its scored columns
    (``(..., n_scored)`` instead of ``(..., vocab)``), and the block gets the head (to map labels
    with ``head.compact_labels``); ``None`` and no change for a model without one. The training
    loss computed on these columns equals the one on full logits (a masked column adds
    ``exp(MASKED_LOGIT) = 0``) without writing a ``vocab``-wide tensor per target token: with
    MiniLM's 30k vocabulary that tensor, not the matmul, was most of a step."""
    head = model.get_output_embeddings()
    if not isinstance(head, _id_output_head_class()):
        yield None
        return
    head.compact = True
    try:
        yield head
    finally:
        head.compact = False


def has_id_output_head(model) -> bool:
    """Whether ``model`` (or its decoder) scores only the ID tokens."""
    return isinstance(model.get_output_embeddings(), _id_output_head_class())
