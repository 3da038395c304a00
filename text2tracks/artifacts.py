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

Before a component is loaded, :func:`component_dir` checks its files byte by byte (complete
``.npy`` and safetensors files, valid JSON), so that a damaged artifact fails with a message that
names the file instead of deep inside numpy or torch.

This module imports neither torch nor transformers so that the item-side commands stay light.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
MANIFEST_NAME = "text2tracks.json"
# component folders of an artifact
SEQ2SEQ_COMPONENT = "seq2seq"
CATALOG_COMPONENT = "semantic_ids"
DIFFUSION_COMPONENT = "diffusion"
CF_COMPONENT = "cf"
SPLIT_NAME = "split.json"  # in cf/: the split's parameters and the training playlist ids
MEMBER_PREFIX = "seq2seq_"  # seq2seq_1, seq2seq_2...: more ensemble members beside seq2seq/
REGRESSOR_COMPONENT = "latent_regressor"  # optional baseline head, written by the benchmark
_TRACKED_LIBRARIES = (
    "text2tracks",
    "numpy",
    "scipy",
    "implicit",
    "faiss-cpu",
    "scikit-learn",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "diffusers",
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


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Write one file atomically: yield a temporary path in the same folder as ``path``.

    Write the whole file to the yielded path. When the block ends without an error the file is
    flushed to disk (``fsync``), given mode 0644 (``mkstemp`` makes it 0600) and renamed onto
    ``path`` with ``os.replace``, so a reader sees the old file or the new one, never half of
    one. When the block raises, the temporary file is removed and ``path`` is left as it was.
    The one place in the project that writes a file this way.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write UTF-8 text to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(
    path: str | os.PathLike,
    payload: Any,
    *,
    sort_keys: bool = True,
    default: Callable[[Any], Any] | None = None,
) -> None:
    """Write JSON (indent 2, a final newline) to ``path`` atomically (see :func:`atomic_file`).

    ``sort_keys=False`` keeps insertion order; ``default`` converts values JSON does not know
    (as in ``json.dumps``).
    """
    write_text_atomic(
        path, json.dumps(payload, indent=2, sort_keys=sort_keys, default=default) + "\n"
    )


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
        raise ArtifactError(
            f"damaged manifest: {artifact_dir / MANIFEST_NAME} has no integer format_version"
        )
    if version > FORMAT_VERSION:
        raise ArtifactError(
            f"{artifact_dir / MANIFEST_NAME} has format version {version}, newer than this "
            f"text2tracks reads ({FORMAT_VERSION}); upgrade text2tracks to load it"
        )
    if not isinstance(manifest.get("components"), dict):
        raise ArtifactError(
            f"damaged manifest: {artifact_dir / MANIFEST_NAME} has no 'components' table"
        )
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


def _swap_folder_in(tmp: Path, target: Path) -> None:
    """Rename the finished folder ``tmp`` to ``target``; an existing ``target`` is moved aside
    to ``.NAME.old`` first and removed after, so ``target`` is never half written."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


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
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{artifact_dir.name}.", suffix=".tmp", dir=artifact_dir.parent)
    )
    try:
        yield tmp
        _swap_folder_in(tmp, artifact_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def component_writer(
    artifact_dir: str | os.PathLike,
    name: str,
    info: dict[str, Any] | None = None,
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
        _swap_folder_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    manifest_path = artifact_dir / MANIFEST_NAME
    with _manifest_lock(artifact_dir):
        manifest = (
            read_json(manifest_path, "manifest") if manifest_path.exists() else new_manifest()
        )
        manifest["library_versions"] = library_versions()
        manifest["components"][name] = dict(info or {})
        write_json_atomic(manifest_path, manifest)


def member_component(member: int) -> str:
    """The component of ensemble member ``member``: ``seq2seq`` for 0, ``seq2seq_1``..."""
    return SEQ2SEQ_COMPONENT if member == 0 else f"{MEMBER_PREFIX}{member}"


def member_indices(components: dict[str, Any]) -> list[int]:
    """The ensemble members (>= 1) a manifest's components list, consecutive from 1."""
    found = set()
    for name in components:
        suffix = name[len(MEMBER_PREFIX) :] if name.startswith(MEMBER_PREFIX) else ""
        if suffix.isdigit() and int(suffix) >= 1:
            found.add(int(suffix))
    out = []
    while len(out) + 1 in found:
        out.append(len(out) + 1)
    return out


def remove_components(artifact_dir: str | os.PathLike, names: list[str]) -> None:
    """Delete components (folders and manifest entries), e.g. ensemble members of an earlier
    training that a new one with fewer members must not leave behind."""
    artifact_dir = Path(artifact_dir)
    manifest_path = artifact_dir / MANIFEST_NAME
    with _manifest_lock(artifact_dir):
        for name in names:
            shutil.rmtree(artifact_dir / name, ignore_errors=True)
        if manifest_path.exists():
            manifest = read_json(manifest_path, "manifest")
            if any(n in manifest["components"] for n in names):
                for name in names:
                    manifest["components"].pop(name, None)
                write_json_atomic(manifest_path, manifest)


@contextlib.contextmanager
def _manifest_lock(artifact_dir: Path) -> Iterator[None]:
    """An exclusive lock around a read-modify-write of the manifest: ensemble members train in
    parallel processes and each adds its component. A no-op where ``fcntl`` does not exist."""
    try:
        import fcntl
    except ImportError:  # Windows: members there are trained one after another
        yield
        return
    artifact_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(artifact_dir, os.O_RDONLY)  # the folder itself: no lock file left behind
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def write_manifest(artifact_dir: str | os.PathLike, components: dict[str, dict[str, Any]]) -> None:
    """Write a fresh manifest listing ``components``."""
    write_json_atomic(Path(artifact_dir) / MANIFEST_NAME, new_manifest(components))


# ------------------------------------------------------------------------------ file checks


def check_npy(path: Path) -> None:
    """Raise ArtifactError if ``path`` is not a complete ``.npy`` file (header and data size)."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            header_end = f.tell()
    except (ValueError, OSError, EOFError) as err:
        raise ArtifactError(f"damaged array file {path}: {err}") from err
    if dtype.hasobject:
        raise ArtifactError(f"{path} holds Python objects (pickle); artifacts never do")
    expected = header_end + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = path.stat().st_size
    if actual != expected:
        raise ArtifactError(
            f"damaged array file {path}: {actual} bytes, its header {shape} {dtype} needs "
            f"{expected} (truncated or overwritten?)"
        )


def check_safetensors(path: Path) -> None:
    """Raise ArtifactError if ``path`` is not a complete safetensors file."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ValueError("shorter than the 8-byte header length")
            n = int.from_bytes(head, "little")
            if n > size - 8:
                raise ValueError(f"header length {n} runs past the end of the file")
            header = json.loads(f.read(n))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError, OSError) as err:
        raise ArtifactError(f"damaged weights file {path}: {err}") from err
    expected = 8 + n + max(ends, default=0)
    if size != expected:
        raise ArtifactError(
            f"damaged weights file {path}: {size} bytes, its header needs {expected} "
            "(truncated or overwritten?)"
        )


def check_component_files(directory: Path) -> None:
    """Check every JSON, ``.npy`` and safetensors file of a component before loading it."""
    for path in sorted(directory.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".json":
            try:
                with open(path, encoding="utf-8") as f:
                    json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise ArtifactError(f"damaged file {path}: not valid JSON ({err})") from err
        elif path.suffix == ".npy":
            check_npy(path)
        elif path.suffix == ".safetensors":
            check_safetensors(path)


# Files each component needs (one of a tuple's alternatives), checked before loading.
REQUIRED_FILES = {
    CATALOG_COMPONENT: (
        ("catalog/config.json",),
        ("catalog/sid_codes.npy",),
        ("catalog/item_ids.json",),
    ),
    SEQ2SEQ_COMPONENT: (
        ("config.json", "adapter_config.json"),
        ("sid_layout.json",),
        ("model.safetensors", "adapter_model.safetensors"),
    ),
    DIFFUSION_COMPONENT: (("config.json",), ("model.safetensors",), ("latent_stats.npy",)),
    CF_COMPONENT: (("item_factors.npy",), ("vocab.json",)),
}


def component_dir(artifact_dir: Path, manifest: dict, name: str, hint: str) -> Path:
    """The folder of component ``name``, after checking that the manifest lists it, that its
    required files are there and that every JSON, ``.npy`` and safetensors file is whole.

    Raises:
        ArtifactError: naming the missing or damaged file (``hint`` says how to make it).
    """
    if name not in manifest["components"]:
        raise ArtifactError(f"{artifact_dir / MANIFEST_NAME} lists no '{name}' component; {hint}")
    directory = artifact_dir / name
    for alternatives in REQUIRED_FILES.get(name, ()):
        if not any((directory / f).is_file() for f in alternatives):
            raise ArtifactError(
                f"damaged component {directory}: {directory / alternatives[0]} is missing"
            )
    check_component_files(directory)
    return directory


def artifact_split(artifact: str | os.PathLike, playlists: str | os.PathLike):
    """Read ``playlists`` and split them with the parameters of ``ARTIFACT/cf/split.json``, as
    build-ids did; ``ValueError`` if the training playlists are not those the artifact was built
    from (another file, or other split parameters). Returns the ``PlaylistSplit``."""
    from semantic_ids.playlists import read_playlists, split_playlists

    info = _split_info(artifact)
    split = split_playlists(
        read_playlists(playlists).playlists,
        validation_fraction=info["validation_fraction"],
        test_fraction=info["test_fraction"],
        seed=info["seed"],
    )
    _check_train_ids(artifact, playlists, info, [p.playlist_id for p in split.train])
    return split


def artifact_split_columns(
    artifact: str | os.PathLike,
    playlists: str | os.PathLike,
    sides: tuple[str, ...] = ("train", "validation", "test"),
) -> dict:
    """:func:`artifact_split` with the columnar reader (MPD slices or Parquet; see
    ``semantic_ids.columnar.columnar_readable``): each of ``sides`` (of train, validation,
    test) as ``ColumnarPlaylists``, the same playlists in the same order, without one Python
    object per track (what full-MPD training data needs)."""
    from semantic_ids.columnar import read_columnar

    info = _split_info(artifact)
    columns = read_columnar(playlists)
    split = columns.split(
        validation_fraction=info["validation_fraction"],
        test_fraction=info["test_fraction"],
        seed=info["seed"],
    )
    ids = columns.playlist_ids
    _check_train_ids(artifact, playlists, info, [ids[r] for r in split["train"].tolist()])
    return {name: columns.take(split[name]) for name in sides}


def _split_info(artifact: str | os.PathLike) -> dict:
    return read_json(Path(artifact) / CF_COMPONENT / SPLIT_NAME, "split parameters")


def _check_train_ids(artifact, playlists, info: dict, train_ids: list[str]) -> None:
    expected = info.get("train_playlist_ids")
    if expected is not None and train_ids != list(expected):
        raise ValueError(
            f"the training playlists of {playlists} (re-split with {artifact}/cf/{SPLIT_NAME}) "
            f"are not those {artifact} was built from; pass the same playlists as build-ids"
        )
