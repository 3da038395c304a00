"""The artifacts of the benchmark's ID-scheme ablation: one catalogue under other IDs.

Each variant is a copy of the benchmark's artifact (same items, same CF vectors, no trained
model) whose catalogue uses another ID scheme: ``semantic`` (the artifact's own semantic IDs),
``random`` (random codes of the same shape), ``atomic`` (one token per track) or ``content``
(the bytes of "artist - title"). :func:`id_token_figures` reports what decoding an artifact's IDs
costs. ``eval.benchmark`` trains and scores a model on each.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from text2tracks.artifacts import CATALOG_COMPONENT, CF_COMPONENT

ABLATION_SCHEMES = ("semantic", "random", "atomic", "content")
DEFAULT_CONTENT_MAX_BYTES = 48
# what a variant does not inherit from the artifact it copies: its trained models
_MODEL_FOLDERS = ("seq2seq", "diffusion", ".checkpoints")


def ablation_schemes(value) -> tuple[str, ...]:
    """``"semantic,random,..."`` (or a sequence) -> validated tuple of ID schemes, in order."""
    names = [v.strip() for v in (value.split(",") if isinstance(value, str) else value)]
    names = list(dict.fromkeys(n for n in names if n))
    unknown = [n for n in names if n not in ABLATION_SCHEMES]
    if unknown:
        raise ValueError(f"unknown ID scheme(s) {unknown}; choose from {list(ABLATION_SCHEMES)}")
    return tuple(names)


def copy_without_models(base: Path, out: Path) -> None:
    """``out`` becomes a copy of the artifact ``base`` without its model folders."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out, ignore=shutil.ignore_patterns(*_MODEL_FOLDERS))


def strip_component(art: Path, name: str) -> None:
    """Drop the component ``name`` from the manifest of the artifact ``art``."""
    from text2tracks.artifacts import read_json, write_json_atomic

    manifest = read_json(art / "text2tracks.json", "manifest")
    manifest["components"].pop(name, None)
    write_json_atomic(art / "text2tracks.json", manifest)


def ablation_artifact(
    base: Path,
    out: Path,
    scheme: str,
    seed: int,
    content_max_bytes: int = DEFAULT_CONTENT_MAX_BYTES,
) -> Path:
    """``out``: the artifact ``base`` without its models, its catalogue under ``scheme``.

    ``"semantic"`` keeps the artifact's own IDs; any other scheme goes to
    :func:`variant_artifact`.
    """
    if scheme == "semantic":
        copy_without_models(base, out)
        strip_component(out, "seq2seq")
        return out
    return variant_artifact(base, out, scheme, seed=seed, content_max_bytes=content_max_bytes)


def variant_artifact(
    base: Path,
    out: Path,
    scheme: str,
    seed: int,
    content_max_bytes: int = DEFAULT_CONTENT_MAX_BYTES,
) -> Path:
    """A copy of ``base`` whose catalogue uses another ID scheme (same items, same CF).

    ``scheme``: ``"random"`` (random codes of the same shape), ``"atomic"`` (one token per
    track) or ``"content"`` (content IDs from the artifact's ``semantic_ids/tracks.json``:
    "artist - title" cut to ``content_max_bytes`` UTF-8 bytes; their figures go into the
    manifest's ``semantic_ids`` entry as ``content_stats``).
    """
    from semantic_ids.catalog import SemanticIDCatalog

    copy_without_models(base, out)
    # the quantiser made the semantic IDs, not these: training must not start the ID tokens
    # from its centroids (training.seq2seq_data.init_ids_from_codebooks)
    shutil.rmtree(out / CATALOG_COMPONENT / "residual_kmeans", ignore_errors=True)
    catalog_dir = out / CATALOG_COMPONENT / "catalog"
    catalog = SemanticIDCatalog.load(catalog_dir)
    content_stats = None
    if scheme == "random":
        variant = random_catalog(catalog, seed)
    elif scheme == "atomic":
        n_items = len(catalog.item_ids)
        variant = SemanticIDCatalog(catalog.item_ids, np.arange(n_items)[:, None], (n_items,))
    elif scheme == "content":
        variant, content_stats = _content_catalog_of(base, out, catalog, content_max_bytes)
    else:
        raise ValueError(f"unknown ID scheme {scheme!r}; expected 'random', 'atomic' or 'content'")
    shutil.rmtree(catalog_dir)
    variant.save(catalog_dir)
    _write_variant_manifest(out, scheme, variant, content_stats)
    return out


def random_catalog(catalog, seed: int):
    """Random codes of the shape of ``catalog``'s semantic IDs, for the same items.

    One code per residual level, drawn uniformly, then the collision digit ordered by
    popularity like the real catalogue.
    """
    from semantic_ids.catalog import SemanticIDCatalog

    n_items = len(catalog.item_ids)
    rng = np.random.default_rng(seed)
    n_levels = catalog.depth - 1
    sizes = catalog.level_sizes[:n_levels]
    codes = np.stack([rng.integers(0, s, n_items) for s in sizes], axis=1)
    popularity = np.arange(n_items, 0, -1)  # catalogue items are ordered by count
    return SemanticIDCatalog.build(catalog.item_ids, codes, popularity, list(sizes))


def _content_catalog_of(base: Path, out: Path, catalog, content_max_bytes: int):
    """``(content-ID catalogue, content_stats)`` of the items of ``catalog``, from the track
    metadata of the artifact copy ``out``."""
    from semantic_ids.content_ids import content_catalog
    from semantic_ids.interactions import ItemVocab
    from text2tracks.metadata import read_track_metadata

    metadata = read_track_metadata(out / CATALOG_COMPONENT)
    meta = [metadata.get(t, (None, None)) for t in catalog.item_ids]
    vocab = ItemVocab.load(out / CF_COMPONENT)
    if tuple(vocab.item_ids) != tuple(catalog.item_ids):
        raise ValueError(f"{base}: the catalogue and the CF vocabulary list different items")
    variant, content_stats = content_catalog(
        catalog.item_ids,
        [m[0] for m in meta],
        [m[1] for m in meta],
        vocab.counts,
        max_bytes=content_max_bytes,
    )
    content_stats["share_without_metadata"] = float(
        np.mean([m[0] is None and m[1] is None for m in meta])
    )
    return variant, content_stats


def _write_variant_manifest(out: Path, scheme: str, variant, content_stats: dict | None) -> None:
    """The manifest of a variant: no models, the new catalogue's shape (and content figures)."""
    from text2tracks.artifacts import read_json, write_json_atomic

    manifest_path = out / "text2tracks.json"
    manifest = read_json(manifest_path, "manifest")
    manifest["components"].pop("seq2seq", None)
    manifest["components"].pop("diffusion", None)
    entry = manifest["components"].setdefault("semantic_ids", {})
    entry.update(
        scheme=scheme,
        depth=variant.depth,
        level_sizes=list(variant.level_sizes),
        n_items=len(variant),
    )
    if scheme == "content":
        entry["content_stats"] = content_stats
    write_json_atomic(manifest_path, manifest)


def content_stats_of(art: Path) -> dict | None:
    """The ``content_stats`` the manifest of the artifact ``art`` records, if any."""
    from text2tracks.artifacts import read_json

    manifest = read_json(art / "text2tracks.json", "manifest")
    return manifest["components"]["semantic_ids"].get("content_stats")


def id_token_figures(art: Path) -> dict:
    """``decoding_steps_per_item`` (depth + EOS) and ``mean_id_tokens`` of an artifact's IDs."""
    from semantic_ids.catalog import SemanticIDCatalog
    from semantic_ids.content_ids import id_token_counts

    catalog = SemanticIDCatalog.load(art / CATALOG_COMPONENT / "catalog")
    steps = catalog.depth + 1
    mean = (
        float(id_token_counts(catalog.sid_codes).mean())
        if catalog.scheme == "bytes"
        else float(steps)
    )
    return {
        "decoding_steps_per_item": steps,
        "mean_id_tokens": mean,
        "token_scheme": catalog.scheme,
    }
