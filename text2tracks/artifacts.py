"""The artifact folder: one folder per trained recommender.

Layout::

    ARTIFACT_DIR/
      text2tracks.json       manifest: format version, library versions, components
      cf/                    config.json + item_factors.npy + playlist_factors.npy + ...
      semantic_ids/          config.json + codebooks / codes (.npy)
      seq2seq/               save_pretrained form, with its tokenizer
      diffusion/             config.json + model.safetensors + latent_stats.npy, and
                             fusion.json (the hybrid blend fitted on validation);
                             item_factors.npy only when the artifact has no cf/
      latent_regressor/      optional baseline head (same format), from the benchmark

Every component writes its own ``config.json`` beside its arrays. Nothing here is pickled, and
every write goes to a temporary folder that is renamed into place, so a crash never leaves a half
written component or manifest behind.

This module imports neither torch nor transformers so that the item-side commands stay light.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
MANIFEST_NAME = "text2tracks.json"
_TRACKED_LIBRARIES = (
    "text2tracks", "numpy", "scipy", "implicit", "faiss-cpu", "scikit-learn",
    "torch", "transformers", "peft", "accelerate", "safetensors", "diffusers",
)


class ArtifactError(RuntimeError):
    """An artifact folder is missing, damaged, or written by a newer text2tracks."""


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries an artifact depends on (absent ones are left out)."""
    versions = {}
    for name in _TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def write_json_atomic(path: str | os.PathLike, payload: Any) -> None:
    """Write JSON to ``path`` through a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read a JSON file, turning a missing or malformed file into an :class:`ArtifactError`."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"missing {what}: {path} does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"damaged {what}: {path} is not valid JSON ({err})") from err


def read_manifest(artifact_dir: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``text2tracks.json``; refuse a format newer than this library's."""
    artifact_dir = Path(artifact_dir)
    if not artifact_dir.is_dir():
        raise ArtifactError(f"no artifact folder at {artifact_dir}")
    manifest = read_json(artifact_dir / MANIFEST_NAME, what="manifest")
    version = manifest.get("format_version")
    if not isinstance(version, int):
        raise ArtifactError(f"damaged manifest: {artifact_dir / MANIFEST_NAME} has no integer format_version")
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{artifact_dir / MANIFEST_NAME} has format version {version}, newer than this "
            f"text2tracks reads ({FORMAT_VERSION}); upgrade text2tracks to load it"
        )
    if not isinstance(manifest.get("components"), dict):
        raise ArtifactError(f"damaged manifest: {artifact_dir / MANIFEST_NAME} has no 'components' table")
    for name in manifest["components"]:
        if not (artifact_dir / name).is_dir():
            raise ArtifactError(
                f"artifact {artifact_dir} lists component '{name}' but {artifact_dir / name} is missing"
            )
    return manifest


def new_manifest(components: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "library_versions": library_versions(),
        "components": dict(components or {}),
    }


@contextlib.contextmanager
def new_artifact(artifact_dir: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Create a fresh artifact folder atomically.

    Yields a temporary sibling folder to write into; on success it is renamed to
    ``artifact_dir``. An existing folder is replaced only with ``force=True``.
    """
    artifact_dir = Path(artifact_dir)
    if artifact_dir.exists() and not force:
        raise FileExistsError(
            f"{artifact_dir} already exists; pass --force (force=True) to overwrite it"
        )
    artifact_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{artifact_dir.name}.", suffix=".tmp", dir=artifact_dir.parent))
    try:
        yield tmp
        if artifact_dir.exists():
            old = artifact_dir.with_name(f".{artifact_dir.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(artifact_dir, old)
            os.replace(tmp, artifact_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, artifact_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def component_writer(
    artifact_dir: str | os.PathLike, name: str, info: dict[str, Any] | None = None,
    force: bool = True,
) -> Iterator[Path]:
    """Add or replace one component of an existing artifact folder atomically.

    Yields a temporary folder inside ``artifact_dir``; on success it becomes ``artifact_dir/name``
    and the manifest lists it (with ``info``). A manifest is created if the folder has none.
    """
    artifact_dir = Path(artifact_dir)
    artifact_dir.mkdir(parents=True, exist_ok=True)
    target = artifact_dir / name
    if target.exists() and not force:
        raise FileExistsError(f"{target} already exists; pass --force to overwrite it")
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=artifact_dir))
    try:
        yield tmp
        if target.exists():
            old = artifact_dir / f".{name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest_path = artifact_dir / MANIFEST_NAME
    manifest = read_json(manifest_path, "manifest") if manifest_path.exists() else new_manifest()
    manifest["library_versions"] = library_versions()
    manifest["components"][name] = dict(info or {})
    write_json_atomic(manifest_path, manifest)


def write_manifest(artifact_dir: str | os.PathLike, components: dict[str, dict[str, Any]]) -> None:
    """Write a fresh manifest listing ``components``."""
    write_json_atomic(Path(artifact_dir) / MANIFEST_NAME, new_manifest(components))
