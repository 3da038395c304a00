"""The inference API: :class:`Text2Tracks` loads an artifact folder and answers prompts.

Example (after ``python -m training.demo --out runs/demo``, which writes ``runs/demo/artifact``)::

    from text2tracks.pipeline import Text2Tracks

    recommender = Text2Tracks.from_pretrained("runs/demo/artifact")
    for rec in recommender.recommend("chill 90s jazz", k=5):
        print(rec.rank, rec.track_id, f"{rec.score:.3f}", rec.name, "-", rec.artist)

    # several prompts at once, each without the tracks already in its playlist
    answers = recommender.recommend(
        ["sad songs", "workout hip hop"], k=10, exclude=[["demo:pop:sad:90s:00012"], []]
    )

Decisions on input (each tested in ``tests/test_pipeline.py``):

- ``prompt_or_prompts``: one ``str`` gives a ``list[Recommendation]``; a list (or any non-string
  sequence) of ``str`` gives a ``list[list[Recommendation]]`` in the same order; an empty list
  gives ``[]``. A prompt that is empty or only whitespace (after the same normalisation as in
  training) raises ``ValueError`` naming its index. A prompt longer than the model takes is
  truncated to ``max_prompt_length`` tokens with a ``UserWarning`` naming its index.
- ``k`` must be an integer in ``[1, catalogue size]``, else ``ValueError`` stating the limits;
  with ``exclude`` it must also leave ``k`` tracks to recommend.
- ``exclude``: track ids removed inside decoding, so ``k`` answers still come back. One
  collection of ids applies to every prompt; for a list of prompts, a list of as many
  collections gives each prompt its own. Ids that are not in the catalogue cannot be
  recommended anyway: they are ignored with a ``UserWarning`` that names a few of them.
- ``mode``: ``"generative"`` (constrained beam search, the default). ``"latent"`` and ``"hybrid"``
  need the artifact's ``diffusion/`` component and raise ``ValueError`` when it has none.

Answers are deterministic: the model runs in eval mode without sampling, and the same prompts in
the same batches give the same recommendations. Calls are thread-safe: one lock serialises the
tokenizer and ``generate`` (the model is not re-entrant on every backend), and everything else
is per-call state, so threads get the same answers as serial calls.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from text2tracks.artifacts import (
    MANIFEST_NAME,
    ArtifactError,
    new_artifact,
    new_manifest,
    read_manifest,
    write_json_atomic,
)

SEQ2SEQ_COMPONENT = "seq2seq"
CATALOG_COMPONENT = "semantic_ids"
DIFFUSION_COMPONENT = "diffusion"
MODES = ("generative", "latent", "hybrid")
DEFAULT_MAX_PROMPT_LENGTH = 64
_UNKNOWN_SHOWN = 5


@dataclass(frozen=True)
class Recommendation:
    """One recommended track.

    Attributes:
        track_id: the catalogue's id of the track.
        score: the model's score (log-probability of the track's semantic ID under beam search;
            higher is better).
        rank: 1 for the best track, then 2, 3, ...
        name, artist: the track's metadata from the catalogue (None where unknown).
    """

    track_id: str
    score: float
    rank: int
    name: str | None = None
    artist: str | None = None


# ------------------------------------------------------------------------------ file checks


def _check_npy(path: Path) -> None:
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


def _check_safetensors(path: Path) -> None:
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


def _check_component_files(directory: Path) -> None:
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
            _check_npy(path)
        elif path.suffix == ".safetensors":
            _check_safetensors(path)


# Files each component needs (one of a tuple's alternatives), checked before loading.
_REQUIRED_FILES = {
    CATALOG_COMPONENT: (("catalog/config.json",), ("catalog/sid_codes.npy",),
                        ("catalog/item_ids.json",)),
    SEQ2SEQ_COMPONENT: (("config.json", "adapter_config.json"), ("sid_layout.json",),
                        ("model.safetensors", "adapter_model.safetensors")),
}


def _component_dir(artifact_dir: Path, manifest: dict, name: str, hint: str) -> Path:
    if name not in manifest["components"]:
        raise ArtifactError(
            f"{artifact_dir / MANIFEST_NAME} lists no '{name}' component; {hint}"
        )
    directory = artifact_dir / name
    for alternatives in _REQUIRED_FILES.get(name, ()):
        if not any((directory / f).is_file() for f in alternatives):
            raise ArtifactError(
                f"damaged component {directory}: {directory / alternatives[0]} is missing"
            )
    _check_component_files(directory)
    return directory


# ------------------------------------------------------------------------------ metadata


CATALOG_SUBDIR = "catalog"  # semantic_ids/catalog/: the SemanticIDCatalog
TRACKS_NAME = "tracks.json"  # semantic_ids/tracks.json: metadata of each item, in item order


def _read_track_metadata(sid_dir: Path) -> dict[str, tuple[str | None, str | None]]:
    """Track id -> (name, artist) from ``semantic_ids/tracks.json`` (empty if it is absent).

    The file is a list of ``{"id", "name", "artist", "album"}`` records (``build-ids``); an
    object ``{track_id: {"name", "artist"}}`` is read too.
    """
    path = sid_dir / TRACKS_NAME
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


def _write_track_metadata(sid_dir: Path, item_ids, names, artists, old: Path | None) -> None:
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
    with open(sid_dir / TRACKS_NAME, "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False)


# ------------------------------------------------------------------------------ the API


class Text2Tracks:
    """A trained recommender: prompt -> ranked catalogue tracks.

    Build it with :meth:`from_pretrained` (the usual way) or from its parts. Example::

        >>> from text2tracks.pipeline import Text2Tracks
        >>> recommender = Text2Tracks.from_pretrained("runs/demo/artifact")  # doctest: +SKIP
        >>> recs = recommender.recommend("chill 90s jazz", k=3)  # doctest: +SKIP
        >>> [(r.rank, r.track_id) for r in recs]  # doctest: +SKIP
        [(1, 'demo:jazz:chill:90s:00113'), (2, ...), (3, ...)]

    Args:
        model: a Hugging Face seq2seq model whose vocabulary holds the semantic-ID tokens.
        tokenizer: its tokenizer.
        layout: the :class:`~text2tracks.tokens.SIDTokenLayout` of the semantic-ID tokens.
        catalog: the :class:`~semantic_ids.catalog.SemanticIDCatalog` (which IDs exist).
        track_metadata: track id -> ``(name, artist)`` (or a ``Track``), for display.
        max_prompt_length: prompts are truncated to this many tokens, as in training.
        num_beams: default beam width (``None``: the decoder's default for ``k``).
        device: torch device to run on (``None``: the model's current device).
        model_config: the ``ModelConfig`` dict the model was built from (kept on save).
    """

    def __init__(
        self,
        model,
        tokenizer,
        layout,
        catalog,
        track_metadata: Mapping[str, Any] | None = None,
        *,
        max_prompt_length: int = DEFAULT_MAX_PROMPT_LENGTH,
        num_beams: int | None = None,
        device=None,
        model_config: dict | None = None,
    ) -> None:
        from text2tracks.trie import FlatTrie

        if tuple(layout.level_sizes) != tuple(catalog.level_sizes):
            raise ValueError(
                f"the model's semantic-ID layout {tuple(layout.level_sizes)} does not match the "
                f"catalogue's level sizes {tuple(catalog.level_sizes)}; they come from different "
                "builds"
            )
        if isinstance(max_prompt_length, bool) or int(max_prompt_length) < 1:
            raise ValueError(f"max_prompt_length must be a positive integer, got {max_prompt_length!r}")
        self.model = model
        if device is not None:
            self.model.to(device)
        self.model.eval()
        self.tokenizer = tokenizer
        self.layout = layout
        self.catalog = catalog
        self.max_prompt_length = int(max_prompt_length)
        self.num_beams = num_beams
        self.model_config = dict(model_config) if model_config else None
        self.trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
        names, artists = [], []
        metadata = track_metadata or {}
        for track_id in catalog.item_ids:
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
        self._names = tuple(names)
        self._artists = tuple(artists)
        self._lock = threading.Lock()
        self._source_dir: Path | None = None
        self._components: dict[str, dict] = {}

    # -------------------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device=None) -> Text2Tracks:
        """Load an artifact folder (``text2tracks.json`` + components).

        Args:
            path: the artifact folder, e.g. ``runs/demo/artifact``.
            device: torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``...); ``None`` picks CUDA
                when available, else the CPU.

        Raises:
            ArtifactError: the folder, its manifest or a component is missing or damaged (the
                message names the file), or the manifest's format version is newer than this
                text2tracks reads.
        """
        from semantic_ids.catalog import SemanticIDCatalog
        from text2tracks.modeling import MODEL_INFO_NAME, load_seq2seq

        artifact_dir = Path(path)
        manifest = read_manifest(artifact_dir)
        catalog_dir = _component_dir(
            artifact_dir, manifest, CATALOG_COMPONENT,
            "build the semantic IDs first (text2tracks build-ids)",
        )
        seq2seq_dir = _component_dir(
            artifact_dir, manifest, SEQ2SEQ_COMPONENT,
            "train the model first (python -m training.train_seq2seq)",
        )
        try:
            catalog = SemanticIDCatalog.load(catalog_dir / CATALOG_SUBDIR)
            metadata = _read_track_metadata(catalog_dir)
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
        try:
            model, tokenizer, layout = load_seq2seq(seq2seq_dir)
        except Exception as err:  # noqa: BLE001
            raise ArtifactError(f"cannot load component {seq2seq_dir}: {err}") from err
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            recommender = cls(
                model, tokenizer, layout, catalog, metadata,
                max_prompt_length=max_len, device=device, model_config=model_config,
            )
        except ValueError as err:
            raise ArtifactError(f"artifact {artifact_dir}: {err}") from err
        recommender._source_dir = artifact_dir.resolve()
        recommender._components = dict(manifest["components"])
        return recommender

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write this recommender as an artifact folder at ``path`` (atomically; replaces it).

        The catalogue and the seq2seq model are written from memory; other components of the
        folder it was loaded from (``cf/``, ``diffusion/``...) are copied as they are.
        """
        from text2tracks.modeling import ModelConfig, save_seq2seq

        path = Path(path)
        components = dict(self._components)
        source = self._source_dir
        with new_artifact(path, force=True) as tmp:
            for name in components:
                # copied first (with training logs, the residual k-means, cf/, diffusion/...);
                # the parts held in memory are then written over them
                if source is not None and (source / name).is_dir():
                    shutil.copytree(source / name, tmp / name)
            sid_dir = tmp / CATALOG_COMPONENT
            sid_dir.mkdir(exist_ok=True)
            shutil.rmtree(sid_dir / CATALOG_SUBDIR, ignore_errors=True)
            self.catalog.save(sid_dir / CATALOG_SUBDIR)
            _write_track_metadata(
                sid_dir, self.catalog.item_ids, self._names, self._artists,
                None if source is None else source / CATALOG_COMPONENT / TRACKS_NAME,
            )
            config = None
            if self.model_config is not None:
                config = ModelConfig.from_dict(self.model_config)
            seq2seq_dir = tmp / SEQ2SEQ_COMPONENT
            for stale in ("model.safetensors", "adapter_model.safetensors", "adapter_config.json"):
                (seq2seq_dir / stale).unlink(missing_ok=True)
            save_seq2seq(self.model, self.tokenizer, self.layout, seq2seq_dir, config)
            components.setdefault(CATALOG_COMPONENT, {
                "depth": self.catalog.depth, "level_sizes": list(self.catalog.level_sizes),
                "n_items": len(self.catalog),
            })
            components.setdefault(SEQ2SEQ_COMPONENT, {})
            components = {n: c for n, c in components.items() if (tmp / n).is_dir()}
            write_json_atomic(tmp / MANIFEST_NAME, new_manifest(components))
        return path

    # -------------------------------------------------------------------------- properties

    def __len__(self) -> int:
        """Number of tracks in the catalogue."""
        return len(self.catalog)

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def has_diffusion(self) -> bool:
        return DIFFUSION_COMPONENT in self._components

    def __repr__(self) -> str:
        return (
            f"Text2Tracks(tracks={len(self)}, levels={tuple(self.catalog.level_sizes)}, "
            f"device={self.device}, source={self._source_dir})"
        )

    # -------------------------------------------------------------------------- inference

    def recommend(
        self,
        prompt_or_prompts: str | Sequence[str],
        k: int = 10,
        exclude: Iterable[str] | Sequence[Iterable[str]] | None = None,
        num_beams: int | None = None,
        batch_size: int = 32,
        mode: str = "generative",
    ) -> list[Recommendation] | list[list[Recommendation]]:
        """Recommend ``k`` tracks for one prompt or for each of a list of prompts.

        Args:
            prompt_or_prompts: a prompt (``str``) or a list of prompts.
            k: tracks per prompt, in ``[1, catalogue size]``.
            exclude: track ids never to recommend: one collection for every prompt, or (with a
                list of prompts) a list of one collection per prompt. Unknown ids are ignored
                with a warning.
            num_beams: beam width (``None``: the default given at construction, else the
                decoder's default for ``k``).
            batch_size: prompts per ``generate`` call.
            mode: ``"generative"``; ``"latent"`` / ``"hybrid"`` need a ``diffusion/`` component.

        Returns:
            ``list[Recommendation]`` (best first) for a ``str``; a list of those for a list.

        Example::

            >>> recs = recommender.recommend("old classics for slow dancing", k=3)  # doctest: +SKIP
            >>> [r.rank for r in recs]  # doctest: +SKIP
            [1, 2, 3]
        """
        single = isinstance(prompt_or_prompts, str)
        if single:
            prompts = [prompt_or_prompts]
        elif isinstance(prompt_or_prompts, Iterable) and not isinstance(
            prompt_or_prompts, (bytes, Mapping)
        ):
            prompts = list(prompt_or_prompts)
        else:
            raise TypeError(
                f"prompt_or_prompts must be a str or a list of str, got "
                f"{type(prompt_or_prompts).__name__}"
            )
        self._check_mode(mode)
        self._check_k(k)
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        texts = self._normalise(prompts)
        excluded = self._exclude_indices(exclude, len(prompts), single)
        for i, items in enumerate(excluded):
            left = len(self) - (0 if items is None else len(items))
            if k > left:
                raise ValueError(
                    f"k={k} but only {left} tracks are left for prompt {i} after excluding "
                    f"{len(self) - left} of the {len(self)} in the catalogue; lower k"
                )
        beams = num_beams if num_beams is not None else self.num_beams
        if beams is None or beams < 2:
            # one beam would be greedy search, which reports no sequence scores
            beams = max(k, 2)
        answers: list[list[Recommendation]] = []
        for start in range(0, len(texts), int(batch_size)):
            stop = start + int(batch_size)
            answers.extend(
                self._recommend_batch(texts[start:stop], excluded[start:stop], k, beams, start)
            )
        return answers[0] if single else answers

    # -------------------------------------------------------------------------- helpers

    def _check_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "generative":
            return
        if not self.has_diffusion:
            where = self._source_dir or "this recommender"
            raise ValueError(
                f"mode={mode!r} needs a diffusion head, but {where} has no '{DIFFUSION_COMPONENT}/' "
                "component; train one (python -m training.train_diffusion) or use "
                "mode='generative'"
            )
        raise NotImplementedError(
            f"mode={mode!r} is not wired into Text2Tracks yet; use mode='generative'"
        )

    def _check_k(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an integer, got {type(k).__name__} {k!r}")
        if not 1 <= k <= len(self):
            raise ValueError(
                f"k must be between 1 and the catalogue size ({len(self)} tracks), got {k}"
            )

    def _normalise(self, prompts: list) -> list[str]:
        from text2tracks.data import normalize_prompt

        texts = []
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise TypeError(f"prompt {i} must be a str, got {type(prompt).__name__} {prompt!r}")
            text = normalize_prompt(prompt)
            if not text.strip():
                raise ValueError(f"prompt {i} is empty or only whitespace ({prompt!r}); give some text")
            texts.append(text)
        return texts

    def _exclude_indices(self, exclude, n_prompts: int, single: bool) -> list[np.ndarray | None]:
        """One sorted int64 array of excluded item indices per prompt (None: nothing excluded)."""
        if exclude is None:
            return [None] * n_prompts
        if isinstance(exclude, str):
            exclude = [exclude]
        if isinstance(exclude, Mapping) or not isinstance(exclude, Iterable):
            raise TypeError(
                f"exclude must be a collection of track ids (or one per prompt), got "
                f"{type(exclude).__name__}"
            )
        exclude = list(exclude)
        per_prompt = (
            not single
            and len(exclude) > 0
            and all(e is None or (isinstance(e, Iterable) and not isinstance(e, str)) for e in exclude)
        )
        if per_prompt:
            if len(exclude) != n_prompts:
                raise ValueError(
                    f"exclude has {len(exclude)} collections for {n_prompts} prompts; give one "
                    "per prompt, or a single collection of track ids for all of them"
                )
            groups = [[] if e is None else list(e) for e in exclude]
        else:
            groups = [exclude]
        unknown: list[str] = []
        arrays = []
        for group in groups:
            found = []
            for track_id in group:
                if not isinstance(track_id, str):
                    raise TypeError(
                        f"exclude holds track ids (str), got {type(track_id).__name__} {track_id!r}"
                    )
                try:
                    found.append(self.catalog.index_of(track_id))
                except KeyError:
                    unknown.append(track_id)
            arrays.append(np.unique(np.asarray(found, dtype=np.int64)) if found else None)
        if unknown:
            shown = ", ".join(repr(t) for t in list(dict.fromkeys(unknown))[:_UNKNOWN_SHOWN])
            more = len(set(unknown)) - _UNKNOWN_SHOWN
            warnings.warn(
                f"exclude: ignored {len(set(unknown))} track id(s) that are not in the catalogue "
                f"({shown}{f' and {more} more' if more > 0 else ''}); they are never recommended",
                UserWarning,
                stacklevel=3,
            )
        return arrays if per_prompt else arrays * n_prompts

    def _encode(self, texts: list[str], first_index: int):
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        too_long = [i for i, n in enumerate(lengths) if n > self.max_prompt_length]
        for i in too_long:
            warnings.warn(
                f"prompt {first_index + i} has {lengths[i]} tokens, more than the model takes "
                f"({self.max_prompt_length}); it was truncated",
                UserWarning,
                stacklevel=4,
            )
        return self.tokenizer(
            texts,
            truncation=bool(too_long),
            max_length=self.max_prompt_length if too_long else None,
            padding=True,
            return_tensors="pt",
        )

    def _recommend_batch(self, texts, excluded, k, num_beams, first_index):
        import torch

        from text2tracks.decoding import constrained_generate

        exclude_arg = None if all(e is None for e in excluded) else [
            () if e is None else e for e in excluded
        ]
        with self._lock:
            encoded = self._encode(texts, first_index)
            device = self.device
            with torch.inference_mode():
                items, scores = constrained_generate(
                    self.model,
                    encoded["input_ids"].to(device),
                    encoded["attention_mask"].to(device),
                    self.trie,
                    self.layout,
                    k=k,
                    num_beams=num_beams,
                    exclude=exclude_arg,
                )
        items = np.asarray(items.cpu() if hasattr(items, "cpu") else items, dtype=np.int64)
        scores = np.asarray(scores.cpu() if hasattr(scores, "cpu") else scores, dtype=np.float64)
        out = []
        for row_items, row_scores in zip(items, scores, strict=True):
            recs = []
            for item, score in zip(row_items.tolist(), row_scores.tolist(), strict=True):
                if item < 0:  # the decoder ran out of valid items (cannot happen for k <= size)
                    continue
                recs.append(
                    Recommendation(
                        track_id=self.catalog.item_ids[item],
                        score=float(score),
                        rank=len(recs) + 1,
                        name=self._names[item],
                        artist=self._artists[item],
                    )
                )
            out.append(recs)
        return out
