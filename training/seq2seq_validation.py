"""Validation of the seq2seq model during training (:mod:`training.train_seq2seq`): the loss on
the validation examples and Hits@K of the API's constrained beam search on the validation prompts,
each gathered over processes with ``gather_for_metrics``."""

from __future__ import annotations

from typing import Any

from training.seq2seq_config import TrainConfig


def validate(
    config: TrainConfig,
    accelerator,
    model,
    val_loss_dl,
    val_prompt_dl,
    val_relevant: list[set[int]],
    trie,
    layout,
) -> dict[str, Any]:
    """Validation loss and Hits@eval_k (constrained beam search), gathered over processes.

    ``model`` is the prepared (wrapped) model, left in train mode; ``val_relevant[i]`` holds the
    relevant item indices of validation playlist ``i`` (batches carry ``playlist_index``).
    Returns ``{"val_loss", "val_hits@K", "val_prompts"}`` (NaN where there is nothing to score).
    """
    import torch

    model.eval()
    with torch.no_grad():
        losses = _validation_losses(accelerator, model, val_loss_dl)
        hits = _validation_hits(
            config,
            accelerator,
            accelerator.unwrap_model(model),
            val_prompt_dl,
            val_relevant,
            trie,
            layout,
        )
    model.train()
    val_loss = float(torch.cat(losses).mean()) if losses else float("nan")
    hits_all = torch.cat(hits) if hits else torch.zeros(0)
    return {
        "val_loss": val_loss,
        f"val_hits@{config.eval_k}": float(hits_all.mean()) if hits_all.numel() else float("nan"),
        "val_prompts": int(hits_all.numel()),
    }


def _validation_losses(accelerator, model, val_loss_dl) -> list:
    """Per-example cross-entropy of each batch, gathered (one tensor per batch)."""
    import torch

    from text2tracks.seed_prior import prior_rows

    losses = []
    for batch in val_loss_dl:
        with prior_rows(accelerator.unwrap_model(model), None, batch["labels"]):
            logits = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                labels=batch["labels"],
            ).logits
        # per-example loss, so that gather_for_metrics can drop the padding duplicates
        per_token = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), batch["labels"], reduction="none"
        )
        losses.append(accelerator.gather_for_metrics(per_token.mean(dim=1)))
    return losses


def _validation_hits(
    config: TrainConfig, accelerator, unwrapped, val_prompt_dl, val_relevant, trie, layout
) -> list:
    """Hit (1.0) or miss (0.0) of each validation prompt's top ``eval_k`` items, gathered (one
    tensor per batch). A prompt's seed tracks (prompt batches drawn with seeds) are excluded, as
    the API excludes them."""
    import numpy as np
    import torch

    from text2tracks.generative import search_items
    from text2tracks.modeling import DEFAULT_DIVERSITY, DEFAULT_NUM_BEAMS

    pairs = getattr(getattr(val_prompt_dl, "dataset", None), "pairs", None)
    seeded = pairs is not None and pairs.seed_draw is not None
    hits = []
    for batch in val_prompt_dl:
        rows = batch["playlist_index"].tolist()
        exclude = [np.unique(pairs.seeds_of(r)) for r in rows] if seeded else None
        if exclude is not None and not any(e.size for e in exclude):
            exclude = None
        # the API's ranking: its beam width and diversity (text2tracks.generative)
        items, _ = search_items(
            unwrapped,
            batch["input_ids"],
            batch["attention_mask"],
            trie,
            layout,
            k=config.eval_k,
            num_beams=config.num_beams or max(config.eval_k, DEFAULT_NUM_BEAMS),
            diversity=DEFAULT_DIVERSITY,
            exclude=exclude,
        )
        hit = [float(any(int(j) in val_relevant[r] for j in items[b])) for b, r in enumerate(rows)]
        hits.append(accelerator.gather_for_metrics(torch.tensor(hit, device=accelerator.device)))
    return hits
