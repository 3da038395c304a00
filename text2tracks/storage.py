"""Reading and writing a whole recommender's artifact folder: the bodies of
:meth:`Text2Tracks.from_pretrained <text2tracks.pipeline.Text2Tracks.from_pretrained>` and
:meth:`~text2tracks.pipeline.Text2Tracks.save_pretrained`.

Each component's files are checked (:func:`text2tracks.artifacts.component_dir`) before it is
loaded, and any failure inside a component becomes an :class:`ArtifactError` naming it. Saving
writes a temporary folder and renames it, copying the components that are not held in memory
(``cf/``, training logs...) from the folder the recommender was loaded from.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from text2tracks.artifacts import (
    CATALOG_COMPONENT,
    CF_COMPONENT,
    DIFFUSION_COMPONENT,
    MANIFEST_NAME,
    SEQ2SEQ_COMPONENT,
    ArtifactError,
    component_dir,
    member_component,
    member_indices,
    new_artifact,
    new_manifest,
    read_manifest,
    write_json_atomic,
)
from text2tracks.latent import CATALOGUE_FACTORS_NAME, catalogue_factor_loader, load_head
from text2tracks.metadata import (
    CATALOG_SUBDIR,
    TRACKS_NAME,
    read_track_metadata,
    write_track_metadata,
)
from text2tracks.seed_factors import catalogue_cf_factors

DEFAULT_MAX_PROMPT_LENGTH = 64


@dataclass
class Seq2SeqParts:
    """What ``semantic_ids/`` and ``seq2seq/`` hold, read and checked."""

    model: Any
    tokenizer: Any
    layout: Any
    catalog: Any
    metadata: dict[str, tuple[str | None, str | None]]
    max_prompt_length: int
    model_config: dict | None
    device: str
    members: list = field(default_factory=list)  # ensemble members 1.. (MemberModel)


@dataclass
class DiffusionParts:
    """What ``diffusion/`` holds: the head, a loader of the item factors, the fitted fusion."""

    head: Any
    item_factors: Any  # a function returning (n_items, latent_dim) float32
    fusion: Any
    settings: Any
    validation: dict[str, Any]


def read_seq2seq_parts(artifact_dir: Path, manifest: dict, device=None) -> Seq2SeqParts:
    """Read the catalogue, the track metadata and the seq2seq model of an artifact.

    ``device`` ``None`` picks CUDA when available, else the CPU.
    """
    from semantic_ids.catalog import SemanticIDCatalog
    from text2tracks.modeling import MODEL_INFO_NAME, load_seq2seq

    catalog_dir = component_dir(
        artifact_dir,
        manifest,
        CATALOG_COMPONENT,
        "build the semantic IDs first (text2tracks build-ids)",
    )
    seq2seq_dir = component_dir(
        artifact_dir,
        manifest,
        SEQ2SEQ_COMPONENT,
        "train the model first (python -m training.train_seq2seq)",
    )
    try:
        catalog = SemanticIDCatalog.load(catalog_dir / CATALOG_SUBDIR)
        metadata = read_track_metadata(catalog_dir)
    except ArtifactError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure here is a damaged component
        raise ArtifactError(f"cannot read component {catalog_dir}: {err}") from err
    model_config = None
    info_path = seq2seq_dir / MODEL_INFO_NAME
    if info_path.is_file():
        with open(info_path, encoding="utf-8") as f:
            model_config = json.load(f).get("model_config")
    max_len = (model_config or {}).get("max_prompt_length", DEFAULT_MAX_PROMPT_LENGTH)
    digest = catalog.codes_digest()  # once, for the model and every member
    # the CF factors seeds may read: read from cf/ once, on first use, for the model and members
    seed_factors = functools.cache(lambda: catalogue_cf_factors(artifact_dir, catalog))
    check_catalog_digest(manifest, SEQ2SEQ_COMPONENT, seq2seq_dir, digest)
    try:
        model, tokenizer, layout = load_seq2seq(seq2seq_dir)
        _attach_seeds(model, layout, catalog, seq2seq_dir, seed_factors)
    except Exception as err:  # noqa: BLE001
        raise ArtifactError(f"cannot load component {seq2seq_dir}: {err}") from err
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    members = [
        _read_member(artifact_dir, manifest, i, catalog, digest, seed_factors)
        for i in member_indices(manifest["components"])
    ]
    return Seq2SeqParts(
        model, tokenizer, layout, catalog, metadata, max_len, model_config, device, members
    )


def check_catalog_digest(manifest: dict, name: str, directory: Path, digest: str) -> None:
    """``ArtifactError`` when the manifest says model component ``name`` was trained on other
    semantic IDs than those of the catalogue whose ``codes_digest()`` is ``digest`` (another
    build with the same level sizes: the model would write valid IDs of other tracks). Models
    saved before digests were recorded pass."""
    recorded = (manifest.get("components", {}).get(name) or {}).get("catalog_digest")
    if recorded is not None and recorded != digest:
        raise ArtifactError(
            f"{directory} was trained on other semantic IDs than this artifact's catalogue "
            f"(catalogue digest {recorded} recorded, {digest} here); train it "
            "on this catalogue, or use it with the semantic_ids/ it was trained on"
        )


def _attach_seeds(model, layout, catalog, seq2seq_dir: Path, seed_factors: Callable) -> None:
    """A model trained to read one token per seed gets its seed embedding back
    (:func:`text2tracks.seed_embedding.attach_seed_items`), with its seeds' CF factors
    (``seed_factors()``) where it was trained with them, and any model its seed prior
    (:func:`text2tracks.seed_factors.load_seed_factors`)."""
    from text2tracks.seed_embedding import attach_seed_items
    from text2tracks.seed_factors import load_seed_factors
    from text2tracks.seed_prompts import read_seed_encoding

    encoding = read_seed_encoding(seq2seq_dir)
    item_tokens = layout.codes_to_token_ids(catalog.sid_codes)
    if encoding != "codes":  # "codes" needs no layer, so not the ID-token table either
        attach_seed_items(model, item_tokens, encoding)
    # the factors' projection and the seed prior, or a prompt-only prior, where saved
    load_seed_factors(model, seq2seq_dir, seed_factors, layout, item_tokens)


def _read_member(
    artifact_dir: Path, manifest: dict, member: int, catalog, digest: str, seed_factors: Callable
):
    """Ensemble member ``member`` (its ``seq2seq_MEMBER/`` component) as a ``MemberModel``;
    ``digest``: the catalogue's ``codes_digest()``; ``seed_factors``: the shared CF factor
    loader (:func:`_attach_seeds`)."""
    from text2tracks.ensemble import MemberModel
    from text2tracks.generative import check_layout
    from text2tracks.modeling import MODEL_INFO_NAME, load_seq2seq
    from text2tracks.seed_prompts import read_max_seed_tracks

    name = member_component(member)
    directory = component_dir(artifact_dir, manifest, name, "train the ensemble again")
    check_catalog_digest(manifest, name, directory, digest)
    try:
        model, tokenizer, layout = load_seq2seq(directory)
        check_layout(layout, catalog)
        _attach_seeds(model, layout, catalog, directory, seed_factors)
        info_path = directory / MODEL_INFO_NAME
        config = {}
        if info_path.is_file():
            with open(info_path, encoding="utf-8") as f:
                config = json.load(f).get("model_config") or {}
        max_len = config.get("max_prompt_length", DEFAULT_MAX_PROMPT_LENGTH)
        return MemberModel(model, tokenizer, layout, max_len, read_max_seed_tracks(directory))
    except Exception as err:  # noqa: BLE001 - any failure here is a damaged component
        raise ArtifactError(f"cannot load ensemble member {directory}: {err}") from err


def read_diffusion_parts(
    artifact_dir: Path, manifest: dict, model, tokenizer, device, catalog
) -> DiffusionParts:
    """Read ``diffusion/`` (head, latent statistics, fusion); the item factors are read on first
    use through the returned loader."""
    from text2tracks.hybrid import load_fusion

    diffusion_dir = component_dir(
        artifact_dir,
        manifest,
        DIFFUSION_COMPONENT,
        "train one first (python -m training.train_diffusion)",
    )
    if not (diffusion_dir / CATALOGUE_FACTORS_NAME).is_file():
        component_dir(
            artifact_dir,
            manifest,
            CF_COMPONENT,
            "the diffusion head searches the CF item factors that text2tracks build-ids writes",
        )
    try:
        head = load_head(diffusion_dir, model, tokenizer, device)
        fusion, settings, validation = load_fusion(diffusion_dir)
    except ArtifactError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure here is a damaged component
        raise ArtifactError(f"cannot load component {diffusion_dir}: {err}") from err
    loader = catalogue_factor_loader(artifact_dir, catalog, head.config.latent_dim)
    return DiffusionParts(head, loader, fusion, settings, validation)


@dataclass(frozen=True)
class ArtifactOrigin:
    """Where a recommender was read from: the folder, its manifest's components, and the fusion
    (with its settings and validation summary) of its ``diffusion/fusion.json``."""

    directory: Path
    components: dict[str, dict]
    fusion: Any = None
    settings: Any = None
    validation: dict[str, Any] = field(default_factory=dict)


def load_recommender(cls, path, device=None):
    """``cls.from_pretrained(path, device)``: read an artifact folder into a ``cls``
    (:class:`~text2tracks.pipeline.Text2Tracks`), raising :class:`ArtifactError` naming what is
    missing or damaged."""
    artifact_dir = Path(path)
    manifest = read_manifest(artifact_dir)
    parts = read_seq2seq_parts(artifact_dir, manifest, device)
    diffusion = None
    if DIFFUSION_COMPONENT in manifest["components"]:
        import torch

        diffusion = read_diffusion_parts(
            artifact_dir,
            manifest,
            parts.model,
            parts.tokenizer,
            torch.device(parts.device),
            parts.catalog,
        )
    origin = ArtifactOrigin(artifact_dir.resolve(), dict(manifest["components"]))
    if diffusion is not None:
        origin = replace(
            origin,
            fusion=diffusion.fusion,
            settings=diffusion.settings,
            validation=diffusion.validation,
        )
    try:
        return cls(
            parts.model,
            parts.tokenizer,
            parts.layout,
            parts.catalog,
            parts.metadata,
            max_prompt_length=parts.max_prompt_length,
            device=parts.device,
            model_config=parts.model_config,
            origin=origin,
            members=parts.members,
            **(
                {}
                if diffusion is None
                else dict(
                    diffusion_head=diffusion.head,
                    item_factors=diffusion.item_factors,
                    fusion=diffusion.fusion,
                    hybrid_settings=diffusion.settings,
                )
            ),
        )
    except ValueError as err:
        raise ArtifactError(f"artifact {artifact_dir}: {err}") from err


@dataclass
class DiffusionToSave:
    """The diffusion side of a recommender being saved."""

    head: Any
    fusion: Any
    settings: Any
    fusion_changed: bool  # set or refitted in memory since it was loaded
    summary: dict[str, Any]  # the validation summary of that fusion ({} if unknown)
    item_factors: Any  # a function returning the catalogue's factors (called only if needed)


def write_artifact(
    path: Path,
    *,
    source: Path | None,
    components: dict[str, dict],
    catalog,
    names,
    artists,
    model,
    tokenizer,
    layout,
    model_config: dict | None,
    diffusion: DiffusionToSave | None,
    max_seed_tracks: int | None = None,
    seed_blend=None,
) -> Path:
    """Write a recommender as an artifact folder at ``path`` (atomically; replaces it).

    Components of ``source`` (the folder it was loaded from, if any) are copied first; the parts
    held in memory are then written over them. ``max_seed_tracks`` (the most seed tracks the
    model reads) goes to ``seq2seq/seed_tracks.json`` inside the temporary folder, so the
    folder renamed into place is whole; ``None`` keeps the source's file, if any.
    ``seed_blend`` (a :class:`~text2tracks.seed_blend.SeedBlend`) replaces ``seed_blend/``.
    """
    from text2tracks.modeling import ModelConfig, save_seq2seq
    from text2tracks.seed_embedding import seed_encoding_of
    from text2tracks.seed_factors import save_seed_item_factors
    from text2tracks.seed_prompts import write_max_seed_tracks

    components = dict(components)
    with new_artifact(path, force=True) as tmp:
        for name in components:
            if source is not None and (source / name).is_dir():
                shutil.copytree(source / name, tmp / name)
        sid_dir = tmp / CATALOG_COMPONENT
        sid_dir.mkdir(exist_ok=True)
        shutil.rmtree(sid_dir / CATALOG_SUBDIR, ignore_errors=True)
        catalog.save(sid_dir / CATALOG_SUBDIR)
        write_track_metadata(
            sid_dir,
            catalog.item_ids,
            names,
            artists,
            None if source is None else source / CATALOG_COMPONENT / TRACKS_NAME,
        )
        config = None if model_config is None else ModelConfig.from_dict(model_config)
        seq2seq_dir = tmp / SEQ2SEQ_COMPONENT
        for stale in ("model.safetensors", "adapter_model.safetensors", "adapter_config.json"):
            (seq2seq_dir / stale).unlink(missing_ok=True)
        save_seq2seq(model, tokenizer, layout, seq2seq_dir, config)
        if not (tmp / CF_COMPONENT).is_dir():  # the seeds' CF factors have nowhere else to live
            save_seed_item_factors(model, seq2seq_dir)
        if max_seed_tracks is not None:
            write_max_seed_tracks(seq2seq_dir, max_seed_tracks, seed_encoding_of(model))
        if diffusion is not None:
            _write_diffusion(
                tmp / DIFFUSION_COMPONENT, diffusion, has_cf=(tmp / CF_COMPONENT).is_dir()
            )
            components.setdefault(DIFFUSION_COMPONENT, {"kind": "diffusion_head"})
        if seed_blend is not None:
            _write_seed_blend(tmp, seed_blend, components)
        components.setdefault(
            CATALOG_COMPONENT,
            {
                "depth": catalog.depth,
                "level_sizes": list(catalog.level_sizes),
                "n_items": len(catalog),
            },
        )
        components[SEQ2SEQ_COMPONENT] = {
            **components.get(SEQ2SEQ_COMPONENT, {}),
            "catalog_digest": catalog.codes_digest(),  # the model written here reads this one
        }
        components = {n: c for n, c in components.items() if (tmp / n).is_dir()}
        write_json_atomic(tmp / MANIFEST_NAME, new_manifest(components))
    return path


def _write_seed_blend(tmp: Path, seed_blend, components: dict[str, dict]) -> None:
    """``seed_blend/`` written afresh, and its manifest entry."""
    from text2tracks.seed_blend import SEED_BLEND_COMPONENT

    shutil.rmtree(tmp / SEED_BLEND_COMPONENT, ignore_errors=True)
    seed_blend.save(tmp / SEED_BLEND_COMPONENT)
    components[SEED_BLEND_COMPONENT] = {
        "kind": "seed_blend",
        "buckets": sorted(seed_blend.mixtures),
    }


def _write_diffusion(directory: Path, diffusion: DiffusionToSave, has_cf: bool) -> None:
    from text2tracks.hybrid import FUSION_NAME, save_fusion

    directory.mkdir(exist_ok=True)
    diffusion.head.save(directory)  # a frozen seq2seq encoder's weights stay in seq2seq/
    fusion_path = directory / FUSION_NAME
    if diffusion.fusion is None:
        fusion_path.unlink(missing_ok=True)
    elif diffusion.fusion_changed or not fusion_path.is_file():
        save_fusion(directory, diffusion.fusion, diffusion.settings, diffusion.summary)
    if not has_cf and not (directory / CATALOGUE_FACTORS_NAME).is_file():
        np.save(directory / CATALOGUE_FACTORS_NAME, diffusion.item_factors(), allow_pickle=False)
