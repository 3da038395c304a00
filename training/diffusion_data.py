"""The data the diffusion head (or the regressor) trains on (:mod:`training.train_diffusion`):
(prompt, CF playlist factor) pairs of the training playlists, the validation prompts with their
relevant items, and the prompt inputs of the encoder (frozen seq2seq encodings or byte tokens)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from text2tracks.artifacts import CF_COMPONENT, SEQ2SEQ_COMPONENT
from text2tracks.ragged import Ragged
from training.diffusion_config import DiffusionTrainConfig


def load_pairs(artifact: str | os.PathLike, playlists: str | os.PathLike) -> dict[str, Any]:
    """Training pairs and validation prompts of an artifact.

    Returns ``item_factors`` (n_items, dim), ``train_prompts``, ``train_latents``
    (n_train, dim) and ``train_tracks`` (scipy CSR (n_train, n_items), each playlist's
    catalogue tracks, what the contrastive term retrieves) and ``train_sequences`` (a
    :class:`~text2tracks.ragged.Ragged` of int64: the same tracks in playlist order, from which
    seed tracks are drawn) of the training
    playlists with at least one catalogue track, and
    ``validation_prompts`` / ``validation_relevant`` (validation playlists with at least one
    catalogue track; ``n_validation_skipped`` counts the others).
    """
    import numpy as np

    from semantic_ids.cf import CFModel
    from semantic_ids.interactions import ItemVocab, catalogue_tracks
    from text2tracks.artifacts import artifact_split

    artifact = Path(artifact)
    cf = CFModel.load(artifact / CF_COMPONENT)
    vocab = ItemVocab.load(artifact / CF_COMPONENT)
    split = artifact_split(artifact, playlists)
    train_ids = [p.playlist_id for p in split.train]
    if len(train_ids) != cf.playlist_factors.shape[0]:
        raise ValueError(
            f"{len(train_ids)} training playlists but {cf.playlist_factors.shape[0]} "
            f"rows in {artifact}/cf/playlist_factors.npy"
        )
    train_tracks = [catalogue_tracks(p, vocab) for p in split.train]
    keep = [i for i, tracks in enumerate(train_tracks) if tracks]
    if len(keep) < 2:
        raise ValueError("fewer than two training playlists hold a catalogue track")
    validation = [(p.prompt, catalogue_tracks(p, vocab)) for p in split.validation]
    validation_kept = [(prompt, rel) for prompt, rel in validation if rel]
    return {
        "item_factors": cf.item_factors,
        "train_prompts": [split.train[i].prompt for i in keep],
        "train_latents": np.ascontiguousarray(cf.playlist_factors[keep]),
        "train_tracks": tracks_matrix([train_tracks[i] for i in keep], len(vocab)),
        "train_sequences": Ragged.from_rows([train_tracks[i] for i in keep]),
        "validation_prompts": [prompt for prompt, _ in validation_kept],
        "validation_relevant": [set(rel) for _, rel in validation_kept],
        "n_validation_skipped": len(validation) - len(validation_kept),
        "n_train_skipped": len(train_ids) - len(keep),
    }


def tracks_matrix(tracks, n_items: int):
    """scipy CSR ``(len(tracks), n_items)`` float32 with a 1 at each row's item indices (a
    repeated index sums); ``tracks`` is a sequence of index lists or arrays."""
    import numpy as np
    import scipy.sparse as sp

    rows = Ragged.from_rows(tracks)
    data = np.ones(rows.values.size, dtype=np.float32)
    matrix = sp.csr_matrix((data, rows.values, rows.indptr), shape=(len(tracks), n_items))
    matrix.sum_duplicates()
    return matrix


def validation_subset(
    config: DiffusionTrainConfig, data: dict[str, Any]
) -> tuple[list[str], list[set[int]]]:
    """The validation prompts and relevant items scored during training: at most
    ``config.eval_prompts`` of :func:`load_pairs`'s, drawn with ``config.seed`` (order kept)."""
    import numpy as np

    val_prompts, val_relevant = data["validation_prompts"], data["validation_relevant"]
    if config.eval_prompts and len(val_prompts) > config.eval_prompts:
        pick = np.sort(
            np.random.default_rng(config.seed).choice(
                len(val_prompts), config.eval_prompts, replace=False
            )
        )
        val_prompts, val_relevant = [val_prompts[i] for i in pick], [val_relevant[i] for i in pick]
    return val_prompts, val_relevant


def prompt_inputs(
    config: DiffusionTrainConfig, train_prompts: list[str], val_prompts: list[str], device
) -> dict[str, Any]:
    """What the model reads of the prompts, by ``config.encoder``.

    ``seq2seq``: the trained seq2seq's encoder, frozen (``frozen``), so the prompts are encoded
    once here: ``train_inputs`` is ``(cond,)`` and ``val_cond`` the validation encodings (None
    without validation prompts); ``encoder`` is None. ``bytes``: a new ``ByteEncoder``
    (``encoder``) trained with the head: ``train_inputs`` is ``(input_ids, attention_mask)``;
    ``frozen`` and ``val_cond`` are None. ``cond_dim`` is the width of the encodings either way.
    """
    if config.encoder == "seq2seq":
        import torch

        from text2tracks.diffusion import FrozenSeq2SeqEncoder
        from text2tracks.modeling import load_seq2seq

        seq2seq, tokenizer, _ = load_seq2seq(Path(config.artifact) / SEQ2SEQ_COMPONENT)
        frozen = FrozenSeq2SeqEncoder(seq2seq, tokenizer).to(device)

        def encode_all(prompts: list[str], batch: int = 512) -> torch.Tensor:
            return torch.cat(
                [frozen.encode(prompts[i : i + batch]).cpu() for i in range(0, len(prompts), batch)]
            )

        return {
            "encoder": None,
            "frozen": frozen,
            "cond_dim": frozen.out_dim,
            "train_inputs": (encode_all(train_prompts),),
            "val_cond": encode_all(val_prompts) if val_prompts else None,
        }
    from text2tracks.diffusion import ByteEncoder

    encoder = ByteEncoder(config.byte_config())
    tokens = encoder.tokenize(train_prompts)
    return {
        "encoder": encoder,
        "frozen": None,
        "cond_dim": encoder.out_dim,
        "train_inputs": (tokens["input_ids"], tokens["attention_mask"]),
        "val_cond": None,
    }


def latent_retrieval_metrics(
    latents, item_factors, relevant: list[set[int]], k: int, index=None, pool: str = "max"
) -> dict[str, float]:
    """Hits@k and Recall@k of faiss search around latents (batch, [n_samples,] dim), an item's
    similarities to a prompt's samples pooled by ``pool`` (``max`` or ``mean``)."""
    import numpy as np

    from text2tracks.rerank import latent_candidates, per_prompt_metric

    items, _ = latent_candidates(latents, item_factors, k=k, index=index, pool=pool)
    hits = per_prompt_metric(items, relevant, "hits", k)
    recall = np.array(
        [len(set(items[b].tolist()) & rel) / min(len(rel), k) for b, rel in enumerate(relevant)]
    )
    return {f"hits@{k}": float(hits.mean()), f"recall@{k}": float(recall.mean())}
