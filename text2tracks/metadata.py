"""Track metadata (name, artist) of an artifact's catalogue: ``semantic_ids/tracks.json``.

``text2tracks build-ids`` writes the file; :class:`~text2tracks.pipeline.Text2Tracks` reads it to
show names beside the track ids it recommends, and writes it back on ``save_pretrained``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from text2tracks.artifacts import ArtifactError

CATALOG_SUBDIR = "catalog"  # semantic_ids/catalog/: the SemanticIDCatalog
TRACKS_NAME = "tracks.json"  # semantic_ids/tracks.json: metadata of each item, in item order


def read_track_metadata(sid_dir: str | Path) -> dict[str, tuple[str | None, str | None]]:
    """Track id -> (name, artist) from ``semantic_ids/tracks.json`` (empty if it is absent).

    The file is a list of ``{"id", "name", "artist", "album"}`` records (``build-ids``); an
    object ``{track_id: {"name", "artist"}}`` is read too.

    Raises:
        ArtifactError: a record has no ``id``, or the file is neither a list nor an object.
    """
    path = Path(sid_dir) / TRACKS_NAME
    if not path.is_file():
        return {}
    with open(path, encoding="utf-8") as f:
        payload = json.load(f)
    out = {}
    if isinstance(payload, dict):
        for track_id, meta in payload.items():
            meta = meta or {}
            out[str(track_id)] = (meta.get("name"), meta.get("artist"))
    elif isinstance(payload, list):
        for meta in payload:
            if not isinstance(meta, dict) or meta.get("id") is None:
                raise ArtifactError(f"damaged file {path}: a track record without an 'id'")
            out[str(meta["id"])] = (meta.get("name"), meta.get("artist"))
    else:
        raise ArtifactError(f"damaged file {path}: expected a list of track records")
    return out


def write_track_metadata(
    sid_dir: str | Path,
    item_ids: Sequence[str],
    names: Sequence[str | None],
    artists: Sequence[str | None],
    old: Path | None,
) -> None:
    """Write ``tracks.json`` in item order, keeping the albums of the file it was loaded from."""
    albums = {}
    if old is not None and old.is_file():
        with open(old, encoding="utf-8") as f:
            payload = json.load(f)
        if isinstance(payload, list):
            albums = {str(t.get("id")): t.get("album") for t in payload if isinstance(t, dict)}
    records = [
        {"id": t, "name": n, "artist": a, "album": albums.get(t)}
        for t, n, a in zip(item_ids, names, artists, strict=True)
    ]
    with open(Path(sid_dir) / TRACKS_NAME, "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False)


def names_and_artists(
    item_ids: Sequence[str], metadata: Mapping[str, Any] | None
) -> tuple[tuple[str | None, ...], tuple[str | None, ...]]:
    """Names and artists in item order from ``track id -> (name, artist)`` or ``-> Track``
    (anything with ``name`` and ``artist`` attributes); ``None`` where a track is unknown."""
    names, artists = [], []
    metadata = metadata or {}
    for track_id in item_ids:
        meta = metadata.get(track_id)
        if meta is None:
            names.append(None)
            artists.append(None)
        elif hasattr(meta, "name"):
            names.append(meta.name)
            artists.append(meta.artist)
        else:
            names.append(meta[0])
            artists.append(meta[1])
    return tuple(names), tuple(artists)
