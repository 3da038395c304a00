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

Decisions on input (each tested in ``tests/test_pipeline.py``; the latent and hybrid modes in
``tests/test_pipeline_modes.py``):

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
- ``mode``: ``"generative"`` (constrained beam search, the default); ``"latent"`` (query latents
  sampled from the diffusion head, faiss search around each over the catalogue's CF item
  factors, candidates pooled); ``"hybrid"`` (beam candidates and latent candidates pooled, their
  scores fused by the artifact's fitted fusion, ``diffusion/fusion.json``). The latent modes need
  the artifact's ``diffusion/`` component and raise ``ValueError`` when it has none.
- Options of the latent modes only (each raises ``ValueError`` in generative mode):
  ``negative_prompt`` (str, or one str-or-None per prompt) guides away from it:
  eps = eps(negative) + w * (eps(prompt) - eps(negative)); ``guidance_weight`` is w (None: the
  head's stored default); ``like_tracks`` (track ids, or one collection per prompt) starts from
  the tracks' mean CF factor, inverts it by DDIM under ``source_prompt`` (None: the null
  condition) for ``edit_strength`` of the steps and regenerates it under the prompt: 0 keeps the
  seed (tracks like these), 1 follows the prompt. Unknown ids are ignored with a warning; a
  prompt left with none raises ``ValueError``. ``n_samples`` (None: the stored setting) latents
  per prompt give diversity; an edit is deterministic, so it gives one.
- ``seed``: every prompt starts from the same ``n_samples`` noise vectors drawn from ``seed``,
  so the same call gives the same answer and a prompt's answer does not depend on the batch it
  is in; ``seed=None`` draws fresh noise each call.

Answers are deterministic: the model runs in eval mode without sampling, the latent modes start
from seeded noise and run DDIM with eta = 0, and the same prompts in the same batches give the
same recommendations. Calls are thread-safe: one lock serialises the tokenizer, ``generate`` and
the diffusion head (the model is not re-entrant on every backend), and everything else is
per-call state, so threads get the same answers as serial calls.

Example of the latent modes (an artifact with a ``diffusion/`` component)::

    recommender.recommend("summer party", k=10, mode="hybrid", negative_prompt="country")
    recommender.recommend("rainy morning", k=10, mode="latent",
                          like_tracks=["spotify:track:..."], edit_strength=0.6)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
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
CF_COMPONENT = "cf"
MODES = ("generative", "latent", "hybrid")
DEFAULT_MAX_PROMPT_LENGTH = 64
DEFAULT_EDIT_STRENGTH = 0.5
CATALOGUE_FACTORS_NAME = "item_factors.npy"  # diffusion/item_factors.npy: only when there is no cf/
_UNKNOWN_SHOWN = 5
_LATENT_ONLY = ("negative_prompt", "like_tracks", "source_prompt", "guidance_weight", "n_samples")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recommendation:
    """One recommended track.

    Attributes:
        track_id: the catalogue's id of the track.
        score: higher is better; what it is depends on the mode. ``"generative"``: the
            log-probability of the track's semantic ID under constrained beam search.
            ``"latent"``: the inner product of the track's CF factor with the query latents,
            pooled over the samples (max by default). ``"hybrid"``: the fused score,
            ``alpha * z(log-prob) + (1 - alpha) * z(latent similarity)`` with each view
            normalised over the prompt's pooled candidates (a track the beam did not return gets
            that view's floor); comparable within one prompt's answer only.
        rank: 1 for the best track, then 2, 3, ...
        name, artist: the track's metadata from the catalogue (None where unknown).
    """

    track_id: str
    score: float
    rank: int
    name: str | None = None
    artist: str | None = None


# ------------------------------------------------------------------------------ file checks


def _warn_long_prompts(
    lengths: list[int], limit: int, unit: str, taker: str, first_index: int, stacklevel: int
) -> list[int]:
    """Warn, naming each prompt, about those longer than ``limit``; their batch positions."""
    too_long = [i for i, n in enumerate(lengths) if n > limit]
    for i in too_long:
        warnings.warn(
            f"prompt {first_index + i} has {lengths[i]} {unit}, more than {taker} takes ({limit}); "
            "it was truncated",
            UserWarning,
            stacklevel=stacklevel,
        )
    return too_long


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
    DIFFUSION_COMPONENT: (("config.json",), ("model.safetensors",), ("latent_stats.npy",)),
    CF_COMPONENT: (("item_factors.npy",), ("vocab.json",)),
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


# ------------------------------------------------------------------------------ diffusion


def _load_head(diffusion_dir: Path, model, tokenizer, device):
    """The :class:`~text2tracks.diffusion.DiffusionHead` of ``diffusion/``.

    A head conditioned on the seq2seq's frozen encoder shares the recommender's loaded model
    (as in training, where it wraps the same weights) instead of loading ``seq2seq/`` again.
    """
    from text2tracks.diffusion import CONFIG_NAME, DiffusionHead, FrozenSeq2SeqEncoder

    with open(diffusion_dir / CONFIG_NAME, encoding="utf-8") as f:
        payload = json.load(f)
    if payload.get("kind") != DiffusionHead.component_kind:
        raise ArtifactError(
            f"{diffusion_dir / CONFIG_NAME} holds a {payload.get('kind')!r}, not a diffusion head"
        )
    encoder_payload = payload.get("encoder") or {}
    encoder = None
    if encoder_payload.get("kind") == "seq2seq":
        encoder = FrozenSeq2SeqEncoder(
            model, tokenizer, max_length=int(encoder_payload.get("max_length", 128)),
            normalize=bool(encoder_payload.get("normalize", True)),
        )
    elif encoder_payload.get("kind") == "none":
        raise ArtifactError(
            f"the diffusion head in {diffusion_dir} has no prompt encoder (it was trained on given "
            "condition vectors), so it cannot be conditioned on prompts"
        )
    return DiffusionHead.load(diffusion_dir, encoder=encoder, map_location=str(device))


def _catalogue_factor_loader(
    artifact_dir: Path, catalog, latent_dim: int
) -> Callable[[], np.ndarray]:
    """A function that reads the CF item factors in catalogue order (called on first use).

    They come from ``cf/`` (``item_factors.npy`` in the order of ``cf/vocab.json``, the item
    vocabulary the catalogue and the diffusion training were built from), mapped by track id;
    ``diffusion/item_factors.npy`` (catalogue order) takes precedence where an artifact was
    saved without ``cf/``.
    """

    def load() -> np.ndarray:
        from semantic_ids.interactions import ItemVocab
        from text2tracks.hybrid import catalogue_factors

        own = artifact_dir / DIFFUSION_COMPONENT / CATALOGUE_FACTORS_NAME
        try:
            if own.is_file():
                factors = np.ascontiguousarray(np.load(own, allow_pickle=False), dtype=np.float32)
            else:
                cf_dir = artifact_dir / CF_COMPONENT
                vocab = ItemVocab.load(cf_dir)
                raw = np.load(cf_dir / "item_factors.npy", allow_pickle=False, mmap_mode="r")
                factors = catalogue_factors(raw, vocab.item_ids, catalog.item_ids)
        except (OSError, ValueError, KeyError) as err:
            raise ArtifactError(f"cannot read the CF item factors of {artifact_dir}: {err}") from err
        if factors.shape != (len(catalog), latent_dim):
            raise ArtifactError(
                f"the CF item factors of {artifact_dir} have shape {factors.shape}; the catalogue "
                f"and the diffusion head need ({len(catalog)}, {latent_dim})"
            )
        return factors

    return load


@dataclass(frozen=True)
class _LatentRequest:
    """The latent-mode options of one call, one entry per prompt where they vary."""

    negatives: list[str | None]
    seeds: list[np.ndarray | None]  # catalogue indices of each prompt's like_tracks
    sources: list[str | None]
    strength: float
    guidance_weight: float
    n_samples: int
    seed: int | None

    def rows(self, start: int, stop: int) -> _LatentRequest:
        return _LatentRequest(self.negatives[start:stop], self.seeds[start:stop],
                              self.sources[start:stop], self.strength, self.guidance_weight,
                              self.n_samples, self.seed)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


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
        diffusion_head: a :class:`~text2tracks.diffusion.DiffusionHead` with a prompt encoder,
            for the ``"latent"`` and ``"hybrid"`` modes (``None``: generative only).
        item_factors: with a head: the CF item factors ``(n_items, latent_dim)`` in catalogue
            order, or a function returning them (called once, on first use).
        fusion: with a head: the fitted ``FixedBlendFusion`` / ``GatedFusion`` of the hybrid
            mode (``None``: :func:`text2tracks.hybrid.default_fusion`, with a warning).
        hybrid_settings: with a head: :class:`~text2tracks.hybrid.HybridSettings` (samples per
            prompt, beam candidates, faiss neighbours, pooling; ``None``: the defaults).

    Attributes ``diffusion_head``, ``fusion`` and ``hybrid_settings`` may be replaced after
    construction (e.g. a fusion refitted with :meth:`fit_fusion`); :meth:`save_pretrained`
    writes them.
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
        diffusion_head=None,
        item_factors: np.ndarray | Callable[[], np.ndarray] | None = None,
        fusion=None,
        hybrid_settings=None,
    ) -> None:
        from text2tracks.trie import FlatTrie

        if tuple(layout.level_sizes) != tuple(catalog.level_sizes):
            raise ValueError(
                f"the model's semantic-ID layout {tuple(layout.level_sizes)} does not match the "
                f"catalogue's level sizes {tuple(catalog.level_sizes)}; they come from different "
                "builds"
            )
        layout_scheme, catalog_scheme = getattr(layout, "scheme", "sid"), getattr(catalog, "scheme", "sid")
        if layout_scheme != catalog_scheme:
            raise ValueError(
                f"the model writes {layout_scheme!r} tokens but the catalogue holds "
                f"{catalog_scheme!r} IDs; they come from different builds"
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
        # the diffusion side (see _attach_diffusion)
        self.diffusion_head = None
        self.fusion = None
        self.hybrid_settings = None
        self._item_factors: np.ndarray | None = None
        self._item_factors_loader: Callable[[], np.ndarray] | None = None
        self._index = None
        self._latent_lock = threading.Lock()  # lazy item factors and faiss index
        self._warned_default_fusion = False
        self._fusion_on_disk: tuple = (None, None)  # (fusion, settings) of the source's file
        self._fusion_summary: tuple = (None, {})  # (fusion, its validation summary)
        if diffusion_head is not None:
            self._attach_diffusion(diffusion_head, item_factors, fusion, hybrid_settings)
        elif item_factors is not None or fusion is not None or hybrid_settings is not None:
            raise ValueError("item_factors, fusion and hybrid_settings belong to a diffusion head; "
                             "pass diffusion_head too")

    def _attach_diffusion(self, head, item_factors, fusion, settings) -> None:
        from text2tracks.diffusion import DiffusionHead
        from text2tracks.hybrid import HybridSettings
        from text2tracks.rerank import FixedBlendFusion, GatedFusion

        if not isinstance(head, DiffusionHead):
            raise ValueError(f"diffusion_head must be a DiffusionHead, got {type(head).__name__}")
        if head.encoder is None:
            raise ValueError("diffusion_head has no prompt encoder; the API conditions it on prompts")
        if item_factors is None:
            raise ValueError("diffusion_head needs item_factors: (n_items, latent_dim) CF item "
                             "factors in catalogue order, or a function that returns them")
        if fusion is not None and not isinstance(fusion, (FixedBlendFusion, GatedFusion)):
            raise ValueError(f"fusion must be a FixedBlendFusion or GatedFusion, got {type(fusion).__name__}")
        settings = HybridSettings() if settings is None else settings
        if not isinstance(settings, HybridSettings):
            raise ValueError(f"hybrid_settings must be HybridSettings, got {type(settings).__name__}")
        head.to(self.device)
        head.eval()
        self.diffusion_head = head
        self.fusion = fusion
        self.hybrid_settings = settings
        if callable(item_factors):
            self._item_factors_loader = item_factors
        else:
            self._item_factors = self._checked_factors(item_factors)

    def _checked_factors(self, factors) -> np.ndarray:
        factors = np.ascontiguousarray(factors, dtype=np.float32)
        expected = (len(self.catalog), self.diffusion_head.config.latent_dim)
        if factors.shape != expected:
            raise ValueError(f"item_factors must have shape {expected} (catalogue size, the head's "
                             f"latent_dim), got {factors.shape}")
        if not np.isfinite(factors).all():
            raise ValueError("item_factors hold NaN or infinite values")
        return factors

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
        if DIFFUSION_COMPONENT in manifest["components"]:
            recommender._load_diffusion(artifact_dir, manifest)
        recommender._source_dir = artifact_dir.resolve()
        recommender._components = dict(manifest["components"])
        return recommender

    def _load_diffusion(self, artifact_dir: Path, manifest: dict) -> None:
        """Load ``diffusion/`` (head, latent statistics, fusion); the item factors and the faiss
        index over them are read and built on first use."""
        from text2tracks.hybrid import load_fusion

        diffusion_dir = _component_dir(
            artifact_dir, manifest, DIFFUSION_COMPONENT,
            "train one first (python -m training.train_diffusion)",
        )
        if not (diffusion_dir / CATALOGUE_FACTORS_NAME).is_file():
            _component_dir(
                artifact_dir, manifest, CF_COMPONENT,
                "the diffusion head searches the CF item factors that text2tracks build-ids writes",
            )
        try:
            head = _load_head(diffusion_dir, self.model, self.tokenizer, self.device)
            fusion, settings, validation = load_fusion(diffusion_dir)
        except ArtifactError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure here is a damaged component
            raise ArtifactError(f"cannot load component {diffusion_dir}: {err}") from err
        loader = _catalogue_factor_loader(artifact_dir, self.catalog, head.config.latent_dim)
        try:
            self._attach_diffusion(head, loader, fusion, settings)
        except ValueError as err:
            raise ArtifactError(f"artifact {artifact_dir}: {err}") from err
        self._fusion_on_disk = (fusion, settings)
        self._fusion_summary = (fusion, validation)

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write this recommender as an artifact folder at ``path`` (atomically; replaces it).

        The catalogue, the seq2seq model and the diffusion head (with its fusion) are written
        from memory; other components of the folder it was loaded from (``cf/``, training logs
        in ``diffusion/``...) are copied as they are.
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
            if self.diffusion_head is not None:
                self._save_diffusion(tmp / DIFFUSION_COMPONENT, has_cf=(tmp / CF_COMPONENT).is_dir())
                components.setdefault(DIFFUSION_COMPONENT, {"kind": "diffusion_head"})
            components.setdefault(CATALOG_COMPONENT, {
                "depth": self.catalog.depth, "level_sizes": list(self.catalog.level_sizes),
                "n_items": len(self.catalog),
            })
            components.setdefault(SEQ2SEQ_COMPONENT, {})
            components = {n: c for n, c in components.items() if (tmp / n).is_dir()}
            write_json_atomic(tmp / MANIFEST_NAME, new_manifest(components))
        return path

    def _save_diffusion(self, directory: Path, has_cf: bool) -> None:
        from text2tracks.hybrid import FUSION_NAME, save_fusion

        directory.mkdir(exist_ok=True)
        self.diffusion_head.save(directory)  # a frozen seq2seq encoder's weights stay in seq2seq/
        fusion_path = directory / FUSION_NAME
        if self.fusion is None:
            fusion_path.unlink(missing_ok=True)
        elif (self.fusion, self.hybrid_settings) != self._fusion_on_disk or not fusion_path.is_file():
            # a fusion set or refitted in memory; its validation summary only if it has one
            fitted, summary = self._fusion_summary
            save_fusion(directory, self.fusion, self.hybrid_settings,
                        summary if fitted is self.fusion else {})
        if not has_cf and not (directory / CATALOGUE_FACTORS_NAME).is_file():
            np.save(directory / CATALOGUE_FACTORS_NAME, self.item_factors, allow_pickle=False)

    # -------------------------------------------------------------------------- properties

    def __len__(self) -> int:
        """Number of tracks in the catalogue."""
        return len(self.catalog)

    @property
    def device(self):
        return next(self.model.parameters()).device

    @property
    def has_diffusion(self) -> bool:
        """Whether the ``"latent"`` and ``"hybrid"`` modes are available."""
        return self.diffusion_head is not None

    @property
    def item_factors(self) -> np.ndarray:
        """CF item factors ``(n_items, latent_dim)`` float32 in catalogue order (read on first use)."""
        if self.diffusion_head is None:
            raise ValueError("this recommender has no diffusion head, so no item factors")
        with self._latent_lock:
            if self._item_factors is None:
                self._item_factors = self._checked_factors(self._item_factors_loader())
            return self._item_factors

    def _latent_index(self):
        """``(item_factors, faiss index over them)``, built once on first use."""
        from text2tracks.rerank import build_index

        factors = self.item_factors
        with self._latent_lock:
            if self._index is None:
                self._index = build_index(factors)
            return factors, self._index

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
        *,
        negative_prompt: str | Sequence[str | None] | None = None,
        guidance_weight: float | None = None,
        like_tracks: Iterable[str] | Sequence[Iterable[str] | None] | None = None,
        edit_strength: float = DEFAULT_EDIT_STRENGTH,
        source_prompt: str | Sequence[str | None] | None = None,
        n_samples: int | None = None,
        seed: int | None = 0,
    ) -> list[Recommendation] | list[list[Recommendation]]:
        """Recommend ``k`` tracks for one prompt or for each of a list of prompts.

        Args:
            prompt_or_prompts: a prompt (``str``) or a list of prompts.
            k: tracks per prompt, in ``[1, catalogue size]``.
            exclude: track ids never to recommend: one collection for every prompt, or (with a
                list of prompts) a list of one collection per prompt. Unknown ids are ignored
                with a warning.
            num_beams: beam width (``None``: the default given at construction, else the
                decoder's default for ``k``). In hybrid mode the beam's candidates (at least
                ``k``; ``None``: ``hybrid_settings.beam_candidates``).
            batch_size: prompts per ``generate`` call (and per diffusion batch).
            mode: ``"generative"`` (constrained beam search), ``"latent"`` (faiss around
                diffusion samples) or ``"hybrid"`` (both, fused); the last two need a
                ``diffusion/`` component. :class:`Recommendation` says what ``score`` is in each.
            negative_prompt: latent modes: guide away from this prompt, eps = eps(negative) +
                w * (eps(prompt) - eps(negative)); one ``str`` for every prompt, or one
                ``str`` / ``None`` per prompt.
            guidance_weight: latent modes: w (``None``: the head's stored default); >= 0.
            like_tracks: latent modes: track ids whose mean CF factor (or ALS fold-in, with
                ``hybrid_settings.seed_method="fold_in"``) is the starting latent,
                edited towards the prompt by DDIM inversion (one collection for every prompt,
                or one collection / ``None`` per prompt). Unknown ids are ignored with a
                warning; a prompt left with none raises ``ValueError``.
            edit_strength: with ``like_tracks``: the share of the DDIM steps inverted and
                regenerated, in ``[0, 1]``: 0 stays at the tracks, 1 follows the prompt.
            source_prompt: with ``like_tracks``: the prompt the inversion runs under
                (``None``: the null condition); one for all prompts or one per prompt.
            n_samples: latent modes: latents sampled per prompt, their candidates pooled
                (``None``: ``hybrid_settings.n_samples``).
            seed: latent modes: the noise seed (every prompt starts from the same noise, so
                answers do not depend on batching); ``None`` draws fresh noise each call.

        Returns:
            ``list[Recommendation]`` (best first) for a ``str``; a list of those for a list.

        Raises:
            ValueError: bad ``k``, prompts, mode or options (see the module docstring); a
                latent-mode option in generative mode; a latent mode without a diffusion head.

        Example::

            >>> recs = recommender.recommend("old classics for slow dancing", k=3)  # doctest: +SKIP
            >>> [r.rank for r in recs]  # doctest: +SKIP
            [1, 2, 3]
            >>> recommender.recommend("summer party", k=3, mode="hybrid",
            ...                       negative_prompt="country")  # doctest: +SKIP
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
        options = dict(negative_prompt=negative_prompt, like_tracks=like_tracks,
                       source_prompt=source_prompt, guidance_weight=guidance_weight,
                       n_samples=n_samples)
        if mode == "generative":
            given = [name for name in _LATENT_ONLY if options[name] is not None]
            if given:
                raise ValueError(
                    f"{', '.join(given)} need mode='latent' or mode='hybrid' (the diffusion head); "
                    "mode='generative' cannot use them"
                )
        texts = self._normalise(prompts)
        request = None
        if mode != "generative":
            request = self._latent_request(len(prompts), single, edit_strength=edit_strength,
                                           seed=seed, **options)
        excluded = self._exclude_indices(exclude, len(prompts), single)
        for i, items in enumerate(excluded):
            left = len(self) - (0 if items is None else len(items))
            if k > left:
                raise ValueError(
                    f"k={k} but only {left} tracks are left for prompt {i} after excluding "
                    f"{len(self) - left} of the {len(self)} in the catalogue; lower k"
                )
        answers: list[list[Recommendation]] = []
        if mode != "generative":
            for start in range(0, len(texts), int(batch_size)):
                stop = start + int(batch_size)
                answers.extend(self._recommend_latent_batch(
                    mode, texts[start:stop], excluded[start:stop], k, num_beams, start,
                    request.rows(start, stop)))
            return answers[0] if single else answers
        beams = num_beams if num_beams is not None else self.num_beams
        if beams is None or beams < 2:
            # one beam would be greedy search, which reports no sequence scores
            beams = max(k, 2)
        for start in range(0, len(texts), int(batch_size)):
            stop = start + int(batch_size)
            answers.extend(
                self._recommend_batch(texts[start:stop], excluded[start:stop], k, beams, start)
            )
        return answers[0] if single else answers

    def sample_latents(
        self,
        prompt_or_prompts: str | Sequence[str],
        *,
        negative_prompt: str | Sequence[str | None] | None = None,
        guidance_weight: float | None = None,
        like_tracks: Iterable[str] | Sequence[Iterable[str] | None] | None = None,
        edit_strength: float = DEFAULT_EDIT_STRENGTH,
        source_prompt: str | Sequence[str | None] | None = None,
        n_samples: int | None = None,
        seed: int | None = 0,
        batch_size: int = 32,
    ) -> np.ndarray:
        """The query latents that the latent and hybrid modes search around.

        Takes the options of :meth:`recommend` (same meaning, same defaults, same checks), so
        ``recommend(..., mode="latent")`` ranks the tracks by their pooled inner product with
        exactly these latents.

        Returns:
            float32 CF-space latents ``(n_samples, latent_dim)`` for a ``str``,
            ``(n_prompts, n_samples, latent_dim)`` for a list.
        """
        single = isinstance(prompt_or_prompts, str)
        prompts = [prompt_or_prompts] if single else list(prompt_or_prompts)
        self._check_mode("latent")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        texts = self._normalise(prompts)
        request = self._latent_request(
            len(prompts), single, negative_prompt=negative_prompt, like_tracks=like_tracks,
            source_prompt=source_prompt, guidance_weight=guidance_weight, n_samples=n_samples,
            edit_strength=edit_strength, seed=seed)
        dim = self.diffusion_head.config.latent_dim
        out = [np.zeros((0, request.n_samples, dim), dtype=np.float32)]
        for start in range(0, len(texts), int(batch_size)):
            stop = start + int(batch_size)
            with self._lock:
                out.append(self._query_latents(texts[start:stop], request.rows(start, stop)))
        latents = np.concatenate(out)
        return latents[0] if single else latents

    def fit_fusion(
        self,
        prompts: Sequence[str],
        relevant: Sequence[Iterable[str]],
        *,
        settings=None,
        kind: str = "fixed",
        metric: str = "hits",
        k: int = 10,
        batch_size: int = 32,
        progress: bool = False,
    ) -> dict[str, Any]:
        """Fit the hybrid mode's fusion on validation prompts and keep it (``self.fusion``).

        Candidates are gathered exactly as :meth:`recommend` gathers them in hybrid mode (the
        same beam width, samples, seed 0 and faiss search), then
        :func:`text2tracks.hybrid.fit_fusion` fits the weights. :meth:`save_pretrained` writes
        the result to ``diffusion/fusion.json``.

        Args:
            prompts: validation prompts (held out from the head's and the seq2seq's training).
            relevant: per prompt, the track ids that are right for it; ids not in the catalogue
                are ignored, and prompts left with none (or empty after normalisation) are
                skipped and counted.
            settings: :class:`~text2tracks.hybrid.HybridSettings` to gather candidates with
                (``None``: ``self.hybrid_settings``); they become ``self.hybrid_settings``.
            kind, metric, k: ``"fixed"`` or ``"gated"``; the metric at k it maximises.
            batch_size, progress: prompts per batch; a progress bar.

        Returns:
            The fit's summary (``n_prompts``, ``n_skipped``, the metric of the beam order, the
            latent order and the fused order on these prompts, the alpha grid).
        """
        from text2tracks.data import normalize_prompt
        from text2tracks.hybrid import HybridSettings
        from text2tracks.hybrid import fit_fusion as fit

        self._check_mode("hybrid")
        settings = self.hybrid_settings if settings is None else settings
        if not isinstance(settings, HybridSettings):
            raise ValueError(f"settings must be HybridSettings, got {type(settings).__name__}")
        prompts, relevant = list(prompts), list(relevant)
        if len(prompts) != len(relevant):
            raise ValueError(f"{len(prompts)} prompts but {len(relevant)} relevant collections")
        texts, sets = [], []
        for prompt, tracks in zip(prompts, relevant, strict=True):
            if not isinstance(prompt, str) or not normalize_prompt(prompt):
                continue
            found = {i for i in map(self._catalogue_index, tracks) if i is not None}
            if found:
                texts.append(normalize_prompt(prompt))
                sets.append(found)
        if not texts:
            raise ValueError("no prompt has a relevant track in the catalogue: cannot fit the fusion")
        n_beam = min(settings.beam_candidates, len(self))

        def beam(batch: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
            n = max(min(n, len(self)), min(k, len(self)))
            answers = self.recommend(batch, k=n, num_beams=n, batch_size=len(batch))
            items = np.array([[self.catalog.index_of(r.track_id) for r in a] for a in answers])
            return items.reshape(len(batch), n), np.array([[r.score for r in a] for a in answers])

        def sample(batch: list[str]) -> np.ndarray:
            return self.sample_latents(batch, n_samples=settings.n_samples, batch_size=len(batch))

        factors, index = self._latent_index()
        fusion, summary = fit(
            texts, sets, beam, sample, factors, settings=replace(settings, beam_candidates=n_beam),
            index=index, kind=kind, metric=metric, k=k, batch_size=batch_size, progress=progress)
        summary["n_skipped"] = len(prompts) - len(texts)
        summary["settings"] = asdict(settings)
        self.fusion, self.hybrid_settings = fusion, settings
        self._fusion_summary = (fusion, summary)
        return summary

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

    def _latent_request(
        self, n_prompts: int, single: bool, *, negative_prompt, like_tracks, source_prompt,
        guidance_weight, n_samples, edit_strength, seed,
    ) -> _LatentRequest:
        """Check and spread the latent-mode options over the prompts."""
        if guidance_weight is None:
            guidance_weight = self.diffusion_head.config.guidance_weight
        elif not _is_number(guidance_weight) or not np.isfinite(guidance_weight) or guidance_weight < 0:
            raise ValueError(f"guidance_weight must be a finite number >= 0 (1 = plain conditional, "
                             f"> 1 = stronger prompt), got {guidance_weight!r}")
        if n_samples is None:
            n_samples = self.hybrid_settings.n_samples
        elif isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
        if not _is_number(edit_strength) or not 0.0 <= float(edit_strength) <= 1.0:
            raise ValueError(f"edit_strength must be a number in [0, 1] (0 = stay at like_tracks, "
                             f"1 = follow the prompt), got {edit_strength!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))
                                 or not 0 <= seed < 2**63):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        seeds = self._like_indices(like_tracks, n_prompts, single)
        sources = self._per_prompt_texts(source_prompt, "source_prompt", n_prompts, single)
        if any(s is not None for s in sources) and all(s is None for s in seeds):
            raise ValueError("source_prompt is the prompt DDIM inversion runs under; it only "
                             "applies with like_tracks")
        return _LatentRequest(
            negatives=self._per_prompt_texts(negative_prompt, "negative_prompt", n_prompts, single),
            seeds=seeds, sources=sources, strength=float(edit_strength),
            guidance_weight=float(guidance_weight), n_samples=int(n_samples),
            seed=None if seed is None else int(seed),
        )

    def _per_prompt_texts(self, value, name: str, n_prompts: int, single: bool) -> list[str | None]:
        """``None`` / one ``str`` for every prompt / one ``str`` or ``None`` per prompt ->
        normalised texts, one per prompt."""
        from text2tracks.data import normalize_prompt

        if value is None:
            return [None] * n_prompts
        if isinstance(value, str):
            values = [value] * n_prompts
        elif single:
            raise TypeError(f"{name} must be a str or None for one prompt, got {type(value).__name__}")
        elif isinstance(value, Iterable) and not isinstance(value, (bytes, Mapping)):
            values = list(value)
            if len(values) != n_prompts:
                raise ValueError(f"{name} has {len(values)} entries for {n_prompts} prompts; give "
                                 "one (str or None) per prompt, or a single str for all of them")
        else:
            raise TypeError(f"{name} must be a str, or a list of str / None (one per prompt), got "
                            f"{type(value).__name__}")
        out: list[str | None] = []
        for i, text in enumerate(values):
            if text is None:
                out.append(None)
                continue
            if not isinstance(text, str):
                raise TypeError(f"{name} {i} must be a str or None, got {type(text).__name__} {text!r}")
            text = normalize_prompt(text)
            if not text:
                raise ValueError(f"{name} {i} is empty or only whitespace; give some text or None")
            out.append(text)
        return out

    def _like_indices(self, like_tracks, n_prompts: int, single: bool) -> list[np.ndarray | None]:
        """One sorted int64 array of catalogue indices per prompt (None: no seed tracks)."""
        if like_tracks is None:
            return [None] * n_prompts
        if isinstance(like_tracks, str):
            like_tracks = [like_tracks]
        if isinstance(like_tracks, Mapping) or not isinstance(like_tracks, Iterable):
            raise TypeError(f"like_tracks must be a collection of track ids (or one per prompt), "
                            f"got {type(like_tracks).__name__}")
        like_tracks = list(like_tracks)
        per_prompt = (
            not single and len(like_tracks) > 0
            and all(e is None or (isinstance(e, Iterable) and not isinstance(e, str)) for e in like_tracks)
        )
        if per_prompt:
            if len(like_tracks) != n_prompts:
                raise ValueError(f"like_tracks has {len(like_tracks)} collections for {n_prompts} "
                                 "prompts; give one per prompt, or one collection of track ids for all")
            groups = [None if e is None else list(e) for e in like_tracks]
        else:
            if not like_tracks:
                raise ValueError("like_tracks is empty; give some track ids, or None")
            groups = [like_tracks]
        unknown: list[str] = []
        arrays: list[np.ndarray | None] = []
        for i, group in enumerate(groups):
            if not group:
                arrays.append(None)
                continue
            found = []
            for track_id in group:
                if not isinstance(track_id, str):
                    raise TypeError(f"like_tracks holds track ids (str), got "
                                    f"{type(track_id).__name__} {track_id!r}")
                index = self._catalogue_index(track_id)
                if index is None:
                    unknown.append(track_id)
                else:
                    found.append(index)
            if not found:
                which = f"prompt {i}" if per_prompt else "the prompts"
                raise ValueError(f"none of the {len(group)} like_tracks of {which} is in the "
                                 f"catalogue (e.g. {group[0]!r}); give catalogue track ids")
            arrays.append(np.unique(np.asarray(found, dtype=np.int64)))
        if unknown:
            shown = ", ".join(repr(t) for t in list(dict.fromkeys(unknown))[:_UNKNOWN_SHOWN])
            more = len(set(unknown)) - _UNKNOWN_SHOWN
            warnings.warn(
                f"like_tracks: ignored {len(set(unknown))} track id(s) that are not in the "
                f"catalogue ({shown}{f' and {more} more' if more > 0 else ''})",
                UserWarning,
                stacklevel=4,
            )
        return arrays if per_prompt else arrays * n_prompts

    def _catalogue_index(self, track_id: str) -> int | None:
        try:
            return self.catalog.index_of(track_id)
        except KeyError:
            return None

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

    def _encode(self, texts: list[str], first_index: int, stacklevel: int = 4):
        lengths = [len(ids) for ids in self.tokenizer(texts, truncation=False)["input_ids"]]
        too_long = _warn_long_prompts(lengths, self.max_prompt_length, "tokens", "the model",
                                      first_index, stacklevel + 1)
        return self.tokenizer(
            texts,
            truncation=bool(too_long),
            max_length=self.max_prompt_length if too_long else None,
            padding=True,
            return_tensors="pt",
        )

    def _generate(self, texts, excluded, k, num_beams, first_index) -> tuple[np.ndarray, np.ndarray]:
        """Constrained beam search (the caller holds the lock): catalogue item indices int64 and
        log-probs float64, ``(batch, k)`` each, best first."""
        import torch

        from text2tracks.decoding import constrained_generate

        exclude_arg = None if all(e is None for e in excluded) else [
            () if e is None else e for e in excluded
        ]
        # user -> recommend -> _recommend_*batch -> _generate -> _encode -> warn
        encoded = self._encode(texts, first_index, stacklevel=5)
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
        return items, scores

    def _answers(self, items: np.ndarray, scores: np.ndarray) -> list[list[Recommendation]]:
        """Rows of item indices and scores -> Recommendations (-1 marks "no item")."""
        out = []
        for row_items, row_scores in zip(items, scores, strict=True):
            recs = []
            for item, score in zip(row_items.tolist(), row_scores.tolist(), strict=True):
                if item < 0:  # no item there (cannot happen for k <= what is left to recommend)
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

    def _recommend_batch(self, texts, excluded, k, num_beams, first_index):
        with self._lock:
            items, scores = self._generate(texts, excluded, k, num_beams, first_index)
        return self._answers(items, scores)

    # -------------------------------------------------------------------------- latent modes

    def _conditions(self, texts: list[str | None]):
        """Prompt encodings ``(batch, cond_dim)``; ``None`` rows get the head's null condition,
        which is what the head itself uses for "no prompt" (so that every row takes the same
        computation whatever its neighbours in the batch)."""
        import torch

        head = self.diffusion_head
        null = head.denoiser.null_cond.detach()
        out = null.expand(len(texts), -1).clone()
        given = [i for i, t in enumerate(texts) if t is not None]
        if given:
            encoded = head.encode([texts[i] for i in given])
            out[torch.as_tensor(given, device=out.device)] = encoded.to(out.dtype)
        return out

    def _query_latents(self, texts: list[str], request: _LatentRequest) -> np.ndarray:
        """CF-space query latents ``(batch, n_samples, latent_dim)`` (the caller holds the lock).

        Prompts without ``like_tracks`` are sampled (DDIM, eta = 0) from the request's seeded
        noise, guided by their negative prompt or the null condition; prompts with seeds are
        edited (:meth:`DiffusionHead.edit`), which is deterministic, so their one latent is
        repeated ``n_samples`` times (pooling is unchanged by repeats).
        """
        import torch

        from text2tracks.diffusion import seed_latent

        head = self.diffusion_head
        n, n_samples, dim = len(texts), request.n_samples, head.config.latent_dim
        out = torch.zeros(n, n_samples, dim)
        with torch.inference_mode():
            cond = head.encode(texts)
            negative = self._conditions(request.negatives)
            plain = [i for i, s in enumerate(request.seeds) if s is None]
            edited = [i for i, s in enumerate(request.seeds) if s is not None]
            if plain:
                rows = torch.as_tensor(plain, device=cond.device)
                noise = None
                if request.seed is not None:
                    generator = torch.Generator().manual_seed(request.seed)
                    noise = torch.randn((n_samples, dim), generator=generator).repeat(len(plain), 1)
                sampled = head.sample(cond[rows], negative_cond=negative[rows],
                                      guidance_weight=request.guidance_weight,
                                      n_samples=n_samples, noise=noise)
                out[plain] = sampled.float().cpu()
            if edited:
                rows = torch.as_tensor(edited, device=cond.device)
                factors = self.item_factors
                start = torch.from_numpy(np.stack([
                    seed_latent(factors, request.seeds[i], self.hybrid_settings.seed_method)
                    for i in edited]))
                source = self._conditions([request.sources[i] for i in edited])
                moved = head.edit(start, cond[rows], request.strength, source_cond=source,
                                  negative_cond=negative[rows],
                                  guidance_weight=request.guidance_weight)
                out[edited] = moved.float().cpu()[:, None, :].expand(-1, n_samples, -1)
        return out.numpy()

    def _hybrid_fusion(self):
        if self.fusion is not None:
            return self.fusion
        from text2tracks.hybrid import DEFAULT_ALPHA, default_fusion

        if not self._warned_default_fusion:
            self._warned_default_fusion = True
            logger.warning(
                "%s has no fitted fusion (diffusion/fusion.json): hybrid mode blends the z-scored "
                "beam log-probabilities and latent similarities with alpha=%s; fit one with "
                "python -m training.train_diffusion (or Text2Tracks.fit_fusion)",
                self._source_dir or "this recommender", DEFAULT_ALPHA,
            )
        return default_fusion()

    def _recommend_latent_batch(self, mode, texts, excluded, k, num_beams, first_index, request):
        from text2tracks.hybrid import fuse, gather_candidates

        settings = self.hybrid_settings
        factors, index = self._latent_index()
        encoder = self.diffusion_head.encoder
        if mode == "latent" and encoder is not None:  # in hybrid mode _encode speaks
            # user -> recommend -> _recommend_latent_batch -> _warn_long_prompts -> warn
            _warn_long_prompts(encoder.input_lengths(texts), encoder.max_length, encoder.length_unit,
                               "the diffusion head's encoder", first_index, stacklevel=4)
        exclude_sets = [set() if e is None else set(e.tolist()) for e in excluded]
        with self._lock:
            latents = self._query_latents(texts, request)
            if mode == "hybrid":
                left = min(len(self) - (0 if e is None else len(e)) for e in excluded)
                wanted = settings.beam_candidates if num_beams is None else int(num_beams)
                n_beam = min(max(k, wanted, 2), left) if left >= 2 else left
                beam_items, beam_scores = self._generate(texts, excluded, n_beam, n_beam, first_index)
        if mode == "latent":
            from text2tracks.rerank import rerank

            items, scores = rerank("latent", k, latents=latents, item_factors=factors, index=index,
                                   latent_k=settings.latent_k, pool=settings.pool,
                                   exclude=exclude_sets)
        else:
            candidates = gather_candidates(beam_items, beam_scores, latents, factors, index=index,
                                           latent_k=settings.latent_k, pool=settings.pool, k=k,
                                           exclude=exclude_sets)
            items, scores = fuse(self._hybrid_fusion(), candidates, k, latents=latents,
                                 prompts=texts, exclude=exclude_sets)
        return self._answers(items, scores)
