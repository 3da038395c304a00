"""Tests for eval.bench_search: the pruned exact top-k equals brute-force scoring of every item."""

from __future__ import annotations

import numpy as np
import torch

from eval.bench_search import exact_top_k
from semantic_ids.catalog import SemanticIDCatalog
from text2tracks.decoding import constrained_generate
from text2tracks.modeling import ModelConfig, build_seq2seq
from text2tracks.trie import FlatTrie


def _brute_force(model, ids, labels):
    from transformers.modeling_outputs import BaseModelOutput

    with torch.no_grad():
        hidden = model.get_encoder()(
            input_ids=ids, attention_mask=torch.ones_like(ids)
        ).last_hidden_state
        n = labels.shape[0]
        logits = model(
            encoder_outputs=BaseModelOutput(last_hidden_state=hidden.expand(n, -1, -1)),
            attention_mask=torch.ones_like(ids).expand(n, -1),
            labels=labels,
        ).logits
        logp = torch.log_softmax(logits, -1).gather(-1, labels[..., None])[..., 0]
    return logp.sum(1).numpy()


def test_exact_top_k_matches_brute_force_and_bounds_the_beam():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sizes = [6, 5, 4]
    codes = np.unique(np.stack([rng.integers(0, s, 60) for s in sizes], axis=1), axis=0)
    catalog = SemanticIDCatalog.build(
        [f"t{i}" for i in range(len(codes))], codes, np.arange(len(codes), 0, -1), sizes
    )
    config = ModelConfig(
        d_model=32, num_layers=1, num_decoder_layers=1, num_heads=2, d_ff=64, tokenizer="bytes"
    )
    model, tokenizer, layout = build_seq2seq(config, catalog.level_sizes)
    model.eval()
    sid = layout.codes_to_token_ids(catalog.sid_codes)
    labels = torch.from_numpy(
        np.concatenate([sid, np.full((len(sid), 1), tokenizer.eos_token_id)], axis=1).astype(
            np.int64
        )
    )
    trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    k = 5
    for prompt in ("chill", "rock anthems"):
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        truth = _brute_force(model, ids, labels)
        best = np.argsort(-truth, kind="stable")[:k]
        _, beam_scores = constrained_generate(
            model, ids, torch.ones_like(ids), trie, layout, k=k, num_beams=k
        )
        bound = float(np.asarray(beam_scores)[0, -1])
        assert bound <= truth[best[-1]] + 1e-5  # the beam's k-th is a valid lower bound
        items, scores, rows = exact_top_k(
            model, ids, torch.ones_like(ids), sid, tokenizer.eos_token_id, k, bound
        )
        np.testing.assert_allclose(scores, truth[best], rtol=1e-4, atol=1e-5)
        assert set(items.tolist()) == set(best.tolist())
        # each distinct prefix runs at most once (an untrained model prunes little)
        assert rows <= 1 + sum(
            len(np.unique(labels[:, :t].numpy(), axis=0)) for t in range(1, labels.shape[1])
        )
