"""Warm start (``--init-from ART``): a training run starts from the seq2seq of another artifact
built on the same semantic IDs, instead of from a fresh model.

The use it was made for: a model that reads seed tracks trained on top of the title-only
default, so that title-only prompts start where that model ended and the seeds' training
minutes are stated on top of its budget (the README's "Seed tracks"). Member ``i`` of the new
run starts from member ``i`` of ``ART`` (from member ``i mod n`` where ``ART`` has ``n``); the
seed parts, the optimizer and the learning-rate schedule start fresh. Refused where ``ART``'s
model was trained on other IDs or has another architecture than the run's model flags say.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


def warm_start_model(config, catalog, log):
    """``(model, tokenizer, layout)``: member ``config.member``'s starting model, read from
    ``config.init_from`` (an artifact folder), in training mode.

    Raises:
        ValueError: the artifact is missing or damaged, has no seq2seq, its model was trained
            on other semantic IDs (another catalogue digest or level sizes), or its model
            config differs from ``config.model`` (naming the fields).
    """
    from text2tracks.artifacts import (
        ArtifactError,
        component_dir,
        member_component,
        member_indices,
        read_manifest,
    )
    from text2tracks.generative import check_layout
    from text2tracks.modeling import MODEL_INFO_NAME, load_seq2seq
    from text2tracks.storage import check_catalog_digest

    art = Path(config.init_from)
    try:
        manifest = read_manifest(art)
    except ArtifactError as err:
        raise ValueError(f"--init-from {art}: {err}") from err
    components = manifest["components"]
    if member_component(0) not in components:
        raise ValueError(f"--init-from {art}: the artifact has no trained seq2seq to start from")
    members = [0, *member_indices(components)]
    name = member_component(members[config.member % len(members)])
    try:  # the checks loading an artifact makes: files whole, the same semantic IDs
        directory = component_dir(art, manifest, name, "train it first")
        check_catalog_digest(manifest, name, directory, catalog.codes_digest())
    except ArtifactError as err:
        raise ValueError(f"--init-from: {err}") from err
    saved = json.loads((directory / MODEL_INFO_NAME).read_text(encoding="utf-8"))["model_config"]
    wanted = json.loads(json.dumps(dataclasses.asdict(config.model)))  # tuples as lists
    differ = sorted(k for k in wanted if k in saved and saved[k] != wanted[k])
    if differ:
        shown = ", ".join(f"{k} {saved[k]!r} (run: {wanted[k]!r})" for k in differ)
        raise ValueError(
            f"--init-from {directory}: its model differs from this run's in {shown}; pass the "
            "same model flags as it was trained with"
        )
    model, tokenizer, layout = load_seq2seq(directory)
    check_layout(layout, catalog)
    model.train()
    log(f"warm start: from {directory} ({components[name].get('steps', '?')} steps trained there)")
    return model, tokenizer, layout


__all__ = ["warm_start_model"]
