"""``text2tracks build-ids``: playlists -> CF embeddings -> semantic IDs, written as an artifact.

Stages: read playlists, split them by playlist (seeded), build the playlist x track matrix of the
*training* playlists (the catalogue: tracks in at least ``--min-count`` of them), fit CF, fit
residual k-means on the item factors, add the collision digit. The artifact folder is written to
a temporary sibling and renamed into place.

Two readers give the same artifact (tested): ``columnar`` (:mod:`semantic_ids.columnar`: flat
arrays, no Python object per playlist or row, for MPD slices and Parquet at full-MPD scale) and
``objects`` (:func:`semantic_ids.playlists.read_playlists`: every format, JSONL included).
``--reader auto`` (the default) takes the columnar one wherever it reads the input. The reader is
a run argument, not a :class:`BuildIDsConfig` field, since it changes nothing that is written::

    ARTIFACT_DIR/
      text2tracks.json                manifest (format version, library versions, components)
      cf/
        config.json, item_factors.npy, playlist_factors.npy     CFModel
        vocab.json, counts.npy                                   ItemVocab (training counts)
        split.json        split parameters and the training playlist ids, in the order of
                          playlist_factors' rows
      semantic_ids/
        config.json       the build settings and the catalogue stats
        residual_kmeans/  ResidualKMeans (config.json, codebooks.npy, residual_scales.npy)
        catalog/          SemanticIDCatalog (config.json, sid_codes.npy, item_ids.json)
        tracks.json       name / artist / album of each catalogue item, in item order

:func:`run_build_ids` does the work and is what evaluation code calls; the command line only maps
flags onto :class:`BuildIDsConfig`. Heavy imports happen inside functions so that
``text2tracks --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from semantic_ids.cf import CFConfig
from text2tracks import config_flags as flags
from text2tracks.artifacts import CATALOG_COMPONENT, CF_COMPONENT
from text2tracks.config_flags import add_config_flags, add_flag, add_progress_flag, command_parser

READERS = ("auto", "columnar", "objects")
TRACKS_NAME = "tracks.json"
RKM_DIR = "residual_kmeans"
CATALOG_DIR = "catalog"


@dataclass(frozen=True)
class BuildIDsConfig:
    """Everything ``build-ids`` can be told; each field is one command-line flag
    (:func:`text2tracks.config_flags.add_config_flags`; ``cf``'s fields too, ``cf.model`` as
    ``--cf-model``, and ``--seed`` seeds both CF and k-means).

    Attributes:
        min_count: tracks in fewer training playlists are left out of the catalogue.
        cf: the CF model's settings (:class:`semantic_ids.cf.CFConfig`).
        n_levels, codebook_size: residual k-means levels, and codes per level.
        assignment: catalogue code placement: ``matching`` (balanced) or ``nearest`` (plain
            residual k-means).
        balance: optional cap on a child prefix: balance x its fair share.
        normalize_input, normalize_residuals: L2-normalise the CF vectors, and each level's
            residuals.
        kmeans_iterations: k-means iterations per level.
        title_rows: weight of title-term x track rows stacked under the playlists before ALS
            (a joint embedding; 0 = playlists only).
        validation_fraction, test_fraction, split_seed: the split by playlist (a seeded hash).
        seed: seeds CF and k-means.
    """

    min_count: int = 2
    cf: CFConfig = field(default_factory=CFConfig)
    n_levels: int = field(default=3, metadata={"flag": "--levels"})
    codebook_size: int = 256
    assignment: str = field(default="matching", metadata={"choices": ("matching", "nearest")})
    balance: float | None = None
    normalize_input: bool = True
    normalize_residuals: bool = True
    kmeans_iterations: int = 20
    title_rows: float = 0.0
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.min_count) < 1:
            raise ValueError(f"min_count must be >= 1, got {self.min_count}")
        if not (isinstance(self.title_rows, (int, float)) and self.title_rows >= 0):
            raise ValueError(f"title_rows must be a number >= 0, got {self.title_rows!r}")
        if not isinstance(self.cf, CFConfig):
            raise ValueError(f"cf must be a CFConfig, got {type(self.cf).__name__}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> BuildIDsConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown BuildIDsConfig keys: {sorted(unknown)}")
        values = dict(values)
        if isinstance(values.get("cf"), dict):
            values["cf"] = CFConfig.from_dict(values["cf"])
        return cls(**values)


def run_build_ids(
    playlists_path: str | Path,
    out_dir: str | Path,
    config: BuildIDsConfig | None = None,
    force: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    reader: str = "auto",
) -> dict[str, Any]:
    """Build CF embeddings and semantic IDs from the training split of ``playlists_path``.

    ``reader`` is ``"columnar"`` (MPD slices and Parquet as flat arrays), ``"objects"`` (one
    object per playlist; every format) or ``"auto"``: columnar wherever it reads the input, so
    objects for JSONL. Both write the same artifact.

    Returns ``{"stats": catalogue stats, "timings": seconds per stage, "split": sizes,
    "n_items": catalogue size, "reader": the reader used}``.

    Raises:
        FileExistsError: ``out_dir`` exists and ``force`` is False (checked before any work).
        semantic_ids.playlists.PlaylistFormatError: unreadable playlists.
        ValueError: a catalogue too small for the codebook, CF factors that are not finite, an
            unknown ``reader``, or ``"columnar"`` for an input it does not read.
    """
    from semantic_ids.catalog import SemanticIDCatalog
    from text2tracks.artifacts import new_artifact

    config = config or BuildIDsConfig()
    log = log or (lambda message: None)
    out_dir = Path(out_dir)
    if out_dir.exists() and not force:
        raise FileExistsError(f"{out_dir} already exists; pass --force to overwrite it")

    timings: dict[str, float] = {}
    reader, train = _read_training(playlists_path, reader, config, timings, log)
    vocab = train.vocab
    with _stage("cf", timings, log):
        cf_model = _fit_cf(train.matrix, train.titles, config, show_progress, log)
    with _stage("residual_kmeans", timings, log):
        rkm = _residual_kmeans(config)
        codes = rkm.fit_encode(cf_model.item_factors)
    with _stage("catalogue", timings, log):
        catalog = SemanticIDCatalog.build(
            vocab.item_ids, codes, vocab.counts, codebook_sizes=config.codebook_size
        )
        tracks = _track_records(vocab.item_ids, train.known_tracks)
        stats = catalog.stats(cf_model.item_factors, rkm, [t["artist"] for t in tracks])
    with _stage("write", timings, log):
        split_info = _split_info(config, train)
        with new_artifact(out_dir, force=force) as tmp:
            _write_build(
                tmp,
                config=config,
                playlists_path=playlists_path,
                cf_model=cf_model,
                vocab=vocab,
                split_info=split_info,
                rkm=rkm,
                catalog=catalog,
                tracks=tracks,
                stats=stats,
            )
    log(f"wrote {out_dir}")
    return {
        "stats": stats,
        "timings": timings,
        "split": {k: v for k, v in split_info.items() if k != "train_playlist_ids"},
        "n_items": len(vocab),
        "reader": reader,
    }


@contextmanager
def _stage(name: str, timings: dict[str, float], log: Callable[[str], None]):
    """Time the stage run inside the block into ``timings[name]`` and log it (not on error)."""
    started = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - started
    log(f"  {name:<16} {timings[name]:7.2f} s")


@dataclass(frozen=True)
class _Training:
    """What the later stages need of the read and split playlists, whichever reader read them.

    ``matrix`` ``(n_train, n_items)`` and ``vocab`` as ``build_interactions`` gives them;
    ``playlist_ids`` and ``titles`` of the training playlists in row order; ``sizes`` (train,
    validation, test); ``known_tracks``: track id -> ``Track`` for at least the catalogue.
    """

    matrix: Any
    vocab: Any
    playlist_ids: list[str]
    titles: list[str]
    sizes: tuple[int, int, int]
    n_empty_skipped: int
    known_tracks: Mapping[str, Any]


def _read_training(playlists_path, requested: str, config: BuildIDsConfig, timings, log):
    """``(reader used, _Training)``: the input read by the requested reader (see
    :func:`run_build_ids`)."""
    from semantic_ids.playlists import PlaylistFormatError

    reader = _resolve_reader(playlists_path, requested)
    log(f"reading playlists from {playlists_path} ({reader} reader)")
    try:
        read = _read_columnar if reader == "columnar" else _read_objects
        return reader, read(playlists_path, config, timings, log)
    except PlaylistFormatError as err:
        # "auto" falls back where only the columnar reader refuses the layout (a Parquet
        # playlist whose rows span row groups); a truly bad file fails in the object reader too
        if requested != "auto" or reader != "columnar":
            raise
        log(f"  the columnar reader refused the input ({err}); reading it as objects")
        return "objects", _read_objects(playlists_path, config, timings, log)


def _resolve_reader(playlists_path, reader: str) -> str:
    """``"columnar"`` or ``"objects"``: ``reader`` checked, ``"auto"`` decided by the input."""
    from semantic_ids.columnar import columnar_readable

    if reader not in READERS:
        raise ValueError(f"reader must be one of {READERS}, got {reader!r}")
    if reader == "objects":
        return reader
    readable = columnar_readable(playlists_path)
    if reader == "columnar" and not readable and Path(playlists_path).exists():
        raise ValueError(
            f"{playlists_path}: the columnar reader reads MPD slices and Parquet only; use "
            "reader 'auto' or 'objects' for other formats (JSONL)"
        )
    return "columnar" if readable or reader == "columnar" else "objects"


def _read_objects(playlists_path, config: BuildIDsConfig, timings, log) -> _Training:
    """Read, split and build the training matrix with one Python object per playlist."""
    from semantic_ids.interactions import build_interactions
    from semantic_ids.playlists import read_playlists, split_playlists

    with _stage("read+split", timings, log):
        playlist_set = read_playlists(playlists_path)
        split = split_playlists(
            playlist_set.playlists,
            validation_fraction=config.validation_fraction,
            test_fraction=config.test_fraction,
            seed=config.split_seed,
        )
    sizes = (len(split.train), len(split.validation), len(split.test))
    _check_split(playlists_path, sizes, playlist_set.n_empty_skipped, log)
    with _stage("interactions", timings, log):
        matrix, vocab = build_interactions(split.train, min_count=config.min_count)
    _check_catalogue(matrix, vocab, config, log)
    return _Training(
        matrix,
        vocab,
        [p.playlist_id for p in split.train],
        [p.title for p in split.train],
        sizes,
        playlist_set.n_empty_skipped,
        playlist_set.tracks,
    )


def _read_columnar(playlists_path, config: BuildIDsConfig, timings, log) -> _Training:
    """Read, split and build the training matrix as flat arrays (MPD slices, Parquet); only the
    training rows outlive the split, and track metadata is looked up for the catalogue only."""
    from semantic_ids.columnar import interactions_from_columns, read_columnar

    with _stage("read+split", timings, log):
        columns = read_columnar(playlists_path, track_metadata=True)
        sides = columns.split(
            validation_fraction=config.validation_fraction,
            test_fraction=config.test_fraction,
            seed=config.split_seed,
        )
        train = columns.take(sides["train"])
    sizes = tuple(int(sides[name].size) for name in ("train", "validation", "test"))
    n_empty_skipped = columns.n_empty_skipped
    del columns, sides
    _check_split(playlists_path, sizes, n_empty_skipped, log)
    with _stage("interactions", timings, log):
        matrix, vocab = interactions_from_columns(train, min_count=config.min_count)
        known_tracks = train.tracks_for(vocab.item_ids)
    _check_catalogue(matrix, vocab, config, log)
    return _Training(
        matrix, vocab, train.playlist_ids, train.titles, sizes, n_empty_skipped, known_tracks
    )


def _check_split(playlists_path, sizes, n_empty_skipped: int, log) -> None:
    """Log the split's sizes; raise when no training playlist is left."""
    n_train, n_validation, n_test = sizes
    log(
        f"  {sum(sizes)} playlists ({n_empty_skipped} empty skipped): "
        f"{n_train} train / {n_validation} validation / {n_test} test"
    )
    if not n_train:
        raise ValueError(f"{playlists_path}: no training playlists after the split")


def _check_catalogue(matrix, vocab, config: BuildIDsConfig, log) -> None:
    """Log the catalogue; raise when it is smaller than the codebook."""
    log(
        f"  catalogue: {len(vocab)} tracks in >= {config.min_count} training playlists; "
        f"matrix {matrix.shape[0]} x {matrix.shape[1]}, {matrix.nnz} entries"
    )
    if len(vocab) < config.codebook_size:
        raise ValueError(
            f"the catalogue has {len(vocab)} tracks, fewer than codebook_size="
            f"{config.codebook_size}; lower --codebook-size or --min-count"
        )


def _fit_cf(matrix, titles: list[str], config: BuildIDsConfig, show_progress: bool, log):
    """The CF model of the training matrix; with ``config.title_rows``, fitted jointly with
    title-term x track rows stacked under the playlists (the playlist factors keep their rows)."""
    from semantic_ids.cf import fit_cf

    if not config.title_rows:
        return fit_cf(matrix, config.cf, show_progress=show_progress)
    # a joint embedding: title-term x track rows under the playlist rows (see title_terms)
    import numpy as np
    import scipy.sparse as sp

    from semantic_ids.cf import CFModel
    from text2tracks.title_terms import title_term_matrix

    terms, names = title_term_matrix(titles, matrix)
    log(
        f"  joint CF: {len(names)} title terms x {terms.shape[1]} tracks "
        f"({terms.nnz} entries) stacked with weight {config.title_rows}"
    )
    stacked = sp.vstack([matrix.astype(np.float32), terms * float(config.title_rows)]).tocsr()
    joint = fit_cf(stacked, config.cf, show_progress=show_progress)
    return CFModel(joint.item_factors, joint.playlist_factors[: matrix.shape[0]], config.cf)


def _residual_kmeans(config: BuildIDsConfig):
    """An unfitted :class:`~semantic_ids.residual_kmeans.ResidualKMeans` with the settings."""
    from semantic_ids.residual_kmeans import ResidualKMeans

    return ResidualKMeans(
        n_levels=config.n_levels,
        codebook_size=config.codebook_size,
        normalize_input=config.normalize_input,
        normalize_residuals=config.normalize_residuals,
        n_iter=config.kmeans_iterations,
        seed=config.seed,
        assignment=config.assignment,
        balance=config.balance,
    )


def _track_records(item_ids, known_tracks) -> list[dict[str, Any]]:
    """``tracks.json``'s records: id, name, artist, album of each item (None where unknown)."""
    tracks = []
    for item_id in item_ids:
        track = known_tracks.get(item_id)
        tracks.append(
            {
                "id": item_id,
                "name": getattr(track, "name", None),
                "artist": getattr(track, "artist", None),
                "album": getattr(track, "album", None),
            }
        )
    return tracks


def _split_info(config: BuildIDsConfig, train: _Training) -> dict[str, Any]:
    """``cf/split.json``: the split's parameters and sizes, and the training playlist ids."""
    n_train, n_validation, n_test = train.sizes
    return {
        "validation_fraction": config.validation_fraction,
        "test_fraction": config.test_fraction,
        "seed": config.split_seed,
        "n_train": n_train,
        "n_validation": n_validation,
        "n_test": n_test,
        "n_empty_skipped": train.n_empty_skipped,
        # row r of playlist_factors is this playlist
        "train_playlist_ids": list(train.playlist_ids),
    }


def _write_build(
    tmp: Path,
    *,
    config: BuildIDsConfig,
    playlists_path,
    cf_model,
    vocab,
    split_info,
    rkm,
    catalog,
    tracks,
    stats,
) -> None:
    """Write the built components and the manifest into the new artifact folder ``tmp``."""
    from text2tracks.artifacts import SPLIT_NAME, write_json_atomic, write_manifest

    cf_dir = tmp / CF_COMPONENT
    cf_model.save(cf_dir)
    vocab.save(cf_dir)
    write_json_atomic(cf_dir / SPLIT_NAME, split_info)
    sid_dir = tmp / CATALOG_COMPONENT
    sid_dir.mkdir()
    rkm.save(sid_dir / RKM_DIR)
    catalog.save(sid_dir / CATALOG_DIR)
    with open(sid_dir / TRACKS_NAME, "w", encoding="utf-8") as f:
        json.dump(tracks, f, ensure_ascii=False)
    write_json_atomic(
        sid_dir / "config.json",
        {"build": config.to_dict(), "playlists": str(playlists_path), "stats": stats},
    )
    write_manifest(
        tmp,
        {
            "cf": {
                "model": config.cf.model,
                "n_items": cf_model.n_items,
                "n_playlists": cf_model.n_playlists,
                "dim": cf_model.dim,
            },
            "semantic_ids": {
                "depth": catalog.depth,
                "level_sizes": list(catalog.level_sizes),
                "n_items": len(catalog),
            },
        },
    )


def load_semantic_ids(artifact_dir: str | Path):
    """Read ``(ResidualKMeans, SemanticIDCatalog, tracks)`` from an artifact's ``semantic_ids/``."""
    from semantic_ids.catalog import SemanticIDCatalog
    from semantic_ids.residual_kmeans import ResidualKMeans

    sid_dir = Path(artifact_dir) / CATALOG_COMPONENT
    with open(sid_dir / TRACKS_NAME, encoding="utf-8") as f:
        tracks = json.load(f)
    return (
        ResidualKMeans.load(sid_dir / RKM_DIR),
        SemanticIDCatalog.load(sid_dir / CATALOG_DIR),
        tracks,
    )


def format_stats_table(stats: dict[str, Any]) -> str:
    """The catalogue stats as a small text table."""
    lines = [
        f"tracks {stats['tracks']}   unique prefixes {stats.get('unique_prefixes')}   "
        f"in shared prefix {100 * stats.get('shared_prefix_share', 0.0):.2f}%   "
        f"largest group {stats.get('largest_group')}   level sizes {stats.get('level_sizes')}"
    ]
    if "artist_pair_random" in stats:
        lines.append(f"artist agreement of random pairs {stats['artist_pair_random']:.5f}")
    header = (
        f"{'level':>5} {'used':>6} {'perplexity':>10} {'prefixes':>9} {'max group':>9} "
        f"{'recon mse':>9} {'nearest':>7} {'artist':>7} {'lift':>6}"
    )
    lines.append(header)

    def fmt(value, spec):
        return format(value, spec) if value is not None else "-"

    for row in stats.get("levels", []):
        lines.append(
            f"{row['level']:>5} {row['codes_used_share']:>6.2f} {row['perplexity']:>10.1f} "
            f"{row['prefixes']:>9} {row['largest_prefix_group']:>9} "
            f"{fmt(row.get('reconstruction_mse'), '9.4f'):>9} "
            f"{fmt(row.get('nearest_code_share'), '7.3f'):>7} "
            f"{fmt(row.get('artist_pair_agreement'), '7.4f'):>7} "
            f"{fmt(row.get('artist_lift'), '6.0f'):>6}"
        )
    return "\n".join(lines)


EPILOG = """examples:
  text2tracks build-ids --playlists path/to/mpd --artifact artifacts/mpd --min-count 2
  text2tracks build-ids --playlists mpd.parquet --artifact artifacts/mpd --reader columnar
  text2tracks build-ids --playlists playlists.jsonl --artifact artifacts/small --levels 2 \\
      --codebook-size 64 --factors 32 --force
"""
# CFConfig (semantic_ids) says nothing of flags: its spelling and choices are given here
CF_FLAG_NAMES = {"model": "--cf-model"}
CF_CHOICES = {"model": ("als", "bpr"), "weighting": ("bm25", "tfidf", "none")}


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``build-ids``: the inputs, then one flag per field of :class:`BuildIDsConfig`."""
    parser = command_parser(
        subparsers,
        "build-ids",
        prog="text2tracks build-ids",
        help="build CF embeddings and semantic IDs from playlists into an artifact folder",
        description=(
            "Read playlists (MPD slices, JSONL or Parquet), split them by playlist, fit CF on the "
            "training playlists and build semantic IDs (residual k-means + collision digit)."
        ),
        epilog=EPILOG,
    )
    add_flag(parser, "--playlists", required=True, help="playlist file or folder")
    add_flag(
        parser, "--artifact", aliases=("--out",), required=True, help="artifact folder to write"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --artifact")
    parser.add_argument(
        "--reader",
        choices=READERS,
        default="auto",
        help=(
            "how to read --playlists: columnar (MPD slices and Parquet as flat arrays, for the "
            "full MPD), objects (any format), or auto: columnar where it can (default: auto); "
            "both write the same artifact"
        ),
    )
    add_progress_flag(parser)
    add_config_flags(parser, BuildIDsConfig, names=CF_FLAG_NAMES, choices=CF_CHOICES)
    parser.set_defaults(func=_main)
    return parser


def config_from_args(args: argparse.Namespace) -> BuildIDsConfig:
    """The :class:`BuildIDsConfig` (with its :class:`CFConfig`) that parsed flags describe."""
    return flags.config_from_args(BuildIDsConfig, args)


def _main(args: argparse.Namespace) -> int:
    import os

    # spinning OpenMP threads (faiss, implicit) crawl when other processes share the cores;
    # this only takes effect if no OpenMP runtime is loaded yet, as in a fresh command
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from semantic_ids.playlists import PlaylistFormatError

    try:
        config = config_from_args(args)
        result = run_build_ids(
            args.playlists,
            args.artifact,
            config,
            force=args.force,
            show_progress=args.progress,
            log=lambda m: print(m, file=sys.stderr, flush=True),
            reader=args.reader,
        )
    except (FileExistsError, FileNotFoundError, PlaylistFormatError, ValueError) as err:
        print(f"text2tracks build-ids: error: {err}", file=sys.stderr)
        return 2
    print(format_stats_table(result["stats"]))
    return 0
