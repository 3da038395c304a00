"""Streaming, columnar playlist reading and a vectorised interaction matrix, for full-MPD scale.

``semantic_ids.playlists`` builds one ``Playlist`` object (a tuple of track-id strings) per
playlist, which at 1M playlists x 66M rows is tens of GiB of Python objects. This module reads
the same files one at a time into flat arrays:

- ``indptr`` int64 ``(n_playlists + 1,)``: playlist ``p``'s rows are ``indptr[p]:indptr[p+1]``;
- ``track_codes`` int32 ``(n_rows,)``: codes into ``track_ids``, a vocabulary built
  incrementally in first-seen order (one dict entry per distinct track, never one per row);
- ``playlist_ids``, ``titles``, ``descriptions``: one string per playlist;
- with ``track_metadata=True``, ``track_metadata``: ``{"name", "artist", "album"}`` -> one
  list entry per distinct track (code order), the first record seen for it, as in
  ``PlaylistSet.tracks`` (what ``build-ids`` writes to ``tracks.json``).

Only the file being parsed is ever held as Python objects. MPD slices are parsed with ``orjson``
where it is installed (it parses the MPD-shaped slices several times faster than the standard
library; ``eval/bench_scale.py`` measures both) and Parquet is read one row group at a time with
pyarrow, its track ids dictionary-encoded per row group so that no Python code runs per row.

The same rules as the object readers hold (``semantic_ids.playlists``): a missing playlist id or
title or track id is an error, empty playlists are skipped and counted, a track repeated in a
playlist keeps its first occurrence, a playlist id used twice is an error, titles are stripped.
``ColumnarPlaylists.split`` gives the same train / validation / test sides as
``split_playlists`` and ``take`` gathers a side's rows; ``interactions_from_columns`` then gives
exactly the matrix and vocabulary of ``semantic_ids.interactions.build_interactions`` (tested),
with no Python loop over rows.

Memory model of the result (measured against in ``eval/bench_scale.py``): 4 bytes per row
(``track_codes``) + 8 per playlist (``indptr``) + the strings (~60-100 bytes per playlist for id
and title, ~150 bytes per distinct track for its id and vocabulary entry, and with
``track_metadata`` its three metadata strings).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from semantic_ids.interactions import ItemVocab
from semantic_ids.playlists import (
    PlaylistFormatError,
    Track,
    files_with,
    mpd_files,
    opt_str,
    playlist_prompt,
    require_exists,
    split_playlists,
    unit_hash,
)

try:  # optional: a faster JSON parser (pyproject lists it; the stdlib is the fallback)
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only where orjson is missing
    _orjson = None

PARSERS = ("auto", "orjson", "json")
TRACK_FIELDS = ("name", "artist", "album")
# where each field is in MPD track objects and Parquet columns
_TRACK_SOURCES = {"name": "track_name", "artist": "artist_name", "album": "album_name"}


def parse_json_bytes(data: bytes, parser: str = "auto") -> object:
    """Parse JSON ``data`` with ``orjson`` (``"auto"`` where installed) or the standard library."""
    if parser not in PARSERS:
        raise ValueError(f"parser must be one of {PARSERS}, got {parser!r}")
    if parser == "orjson" or (parser == "auto" and _orjson is not None):
        if _orjson is None:
            raise ValueError("parser='orjson' but orjson is not installed (pip install orjson)")
        return _orjson.loads(data)
    return json.loads(data)


@dataclass
class TrackVocabBuilder:
    """Track id -> code in first-seen order, grown one file (or row group) at a time.

    ``metadata`` (None: not kept) holds, per :data:`TRACK_FIELDS` name, one stripped string or
    None per code: whoever adds codes adds the first-seen metadata of the new ones.
    """

    index: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, list[str | None]] | None = None

    def add_metadata(self, columns: dict[str, list]) -> None:
        """Append the metadata of the newest codes (``columns``: field -> values, code order)."""
        if self.metadata is None:
            return
        for name, values in self.metadata.items():
            values.extend(opt_str(v) for v in columns[name])

    def __len__(self) -> int:
        return len(self.index)

    def codes(self, track_ids: list[str]) -> np.ndarray:
        """int32 codes of ``track_ids`` (one dict lookup per id), adding unseen ids."""
        setdefault, index = self.index.setdefault, self.index
        return np.fromiter(
            (setdefault(t, len(index)) for t in track_ids), dtype=np.int32, count=len(track_ids)
        )

    def track_ids(self) -> np.ndarray:
        """The vocabulary as a numpy str array, code order."""
        return np.array(list(self.index), dtype=str) if self.index else np.array([], dtype=str)


@dataclass
class ColumnarPlaylists:
    """Playlists as flat arrays (see the module docstring); row ``p`` is one playlist."""

    playlist_ids: list[str]
    titles: list[str]
    descriptions: list[str | None]
    indptr: np.ndarray
    track_codes: np.ndarray
    track_ids: np.ndarray
    n_empty_skipped: int = 0
    bytes_read: int = 0
    track_metadata: dict[str, list[str | None]] | None = None

    @property
    def n_playlists(self) -> int:
        return len(self.playlist_ids)

    @property
    def n_rows(self) -> int:
        return int(self.track_codes.size)

    def nbytes(self) -> int:
        """Bytes of the numeric arrays (the strings are not counted)."""
        return int(self.indptr.nbytes + self.track_codes.nbytes)

    def take(self, rows: np.ndarray) -> ColumnarPlaylists:
        """The playlists at ``rows`` (int indices, in that order), sharing the track vocabulary."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # gather rows without a Python loop: position of each output row in track_codes
        flat = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1])
        listed = rows.tolist()
        return ColumnarPlaylists(
            [self.playlist_ids[r] for r in listed],
            [self.titles[r] for r in listed],
            [self.descriptions[r] for r in listed],
            indptr,
            self.track_codes[flat],
            self.track_ids,
            0,
            0,
            self.track_metadata,
        )

    def split(
        self, validation_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0
    ) -> dict[str, np.ndarray]:
        """Row indices of train / validation / test, the same sides as ``split_playlists``."""
        split_playlists(  # validates the fractions with the same messages
            [], validation_fraction=validation_fraction, test_fraction=test_fraction, seed=seed
        )
        u = np.fromiter(
            (unit_hash(seed, pid) for pid in self.playlist_ids),
            dtype=np.float64,
            count=self.n_playlists,
        )
        side = np.where(
            u < test_fraction, 2, np.where(u < test_fraction + validation_fraction, 1, 0)
        )
        return {
            name: np.flatnonzero(side == k)
            for k, name in enumerate(("train", "validation", "test"))
        }

    def prompts(self) -> list[str]:
        """Each playlist's prompt, as ``Playlist.prompt`` gives it."""
        return [playlist_prompt(t, d) for t, d in zip(self.titles, self.descriptions, strict=True)]

    def tracks_of(self, row: int) -> list[str]:
        """Track ids of playlist ``row``, in order (for checks and small data)."""
        return self.track_ids[self.track_codes[self.indptr[row] : self.indptr[row + 1]]].tolist()

    def tracks_for(self, item_ids: Sequence[str]) -> dict[str, Track]:
        """``PlaylistSet.tracks``' entries for ``item_ids`` (a catalogue): ``{id: Track}`` of
        those in the vocabulary, ``{}`` when read without ``track_metadata``. Python runs once
        per asked id, never once per distinct track."""
        if self.track_metadata is None or not len(item_ids) or not self.track_ids.size:
            return {}
        wanted = np.asarray(item_ids, dtype=str)
        order = np.argsort(self.track_ids, kind="stable")
        found = order[np.searchsorted(self.track_ids, wanted, sorter=order).clip(0, order.size - 1)]
        known = self.track_ids[found] == wanted
        names, artists, albums = (self.track_metadata[f] for f in TRACK_FIELDS)
        return {
            item_id: Track(item_id, names[code], artists[code], albums[code])
            for item_id, code, ok in zip(item_ids, found.tolist(), known.tolist(), strict=True)
            if ok
        }


class _ChunkCollector:
    """Concatenates per-file chunks, applying the shared reader rules with array operations."""

    def __init__(self, track_metadata: bool = False) -> None:
        metadata = {name: [] for name in TRACK_FIELDS} if track_metadata else None
        self.vocab = TrackVocabBuilder(metadata=metadata)
        self.playlist_ids: list[str] = []
        self.titles: list[str] = []
        self.descriptions: list[str | None] = []
        self.lengths: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.n_empty_skipped = 0
        self.bytes_read = 0

    def add_chunk(
        self,
        where: str,
        pids: list[str],
        titles: list[object],
        descriptions: list[object],
        lengths: np.ndarray,
        codes: np.ndarray,
    ) -> None:
        """One file's playlists: ``lengths[p]`` rows each, ``codes`` concatenated (int32)."""
        for k, title in enumerate(titles):
            if title is None:
                raise PlaylistFormatError(
                    f"{where}: playlist {pids[k]!r} has no title; the title is the prompt, add "
                    "one ('name' in MPD files, 'title' in Parquet; \"\" is allowed)."
                )
            if not isinstance(title, str):
                raise PlaylistFormatError(
                    f"{where}: playlist {pids[k]!r} has a title of type {type(title).__name__} "
                    f"({title!r}); write the title as a string."
                )
        # a track repeated inside a playlist keeps its first occurrence
        n = len(pids)
        row_of = np.repeat(np.arange(n, dtype=np.int64), lengths)
        key = row_of * (len(self.vocab) + 1) + codes
        _, first = np.unique(key, return_index=True)
        if first.size != codes.size:
            keep = np.zeros(codes.size, dtype=bool)
            keep[first] = True
            codes = codes[keep]
            lengths = np.bincount(row_of[keep], minlength=n)
        empty = lengths == 0
        if empty.any():
            self.n_empty_skipped += int(empty.sum())
            kept = np.flatnonzero(~empty).tolist()
            pids = [pids[k] for k in kept]
            titles = [titles[k] for k in kept]
            descriptions = [descriptions[k] for k in kept]
            lengths = lengths[~empty]
        self.playlist_ids.extend(pids)
        self.titles.extend(t.strip() for t in titles)
        self.descriptions.extend(opt_str(d) for d in descriptions)
        self.lengths.append(np.asarray(lengths, dtype=np.int64))
        self.codes.append(np.asarray(codes, dtype=np.int32))

    def result(self, source: object) -> ColumnarPlaylists:
        ids = np.array(self.playlist_ids, dtype=str)
        if ids.size:
            uniq, counts = np.unique(ids, return_counts=True)
            if (counts > 1).any():
                dup = str(uniq[np.argmax(counts > 1)])
                raise PlaylistFormatError(
                    f"{source}: playlist id {dup!r} is used {int(counts.max())} times; playlist "
                    "ids must be unique across all files read together (in Parquet, keep each "
                    "playlist's rows inside one row group)."
                )
        track_ids = self.vocab.track_ids()
        if track_ids.size and (np.char.str_len(np.char.strip(track_ids)) == 0).any():
            raise PlaylistFormatError(
                f"{source}: a track id is blank (whitespace only); every track needs an id."
            )
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int64)
        indptr = np.zeros(lengths.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        codes = np.concatenate(self.codes) if self.codes else np.zeros(0, np.int32)
        return ColumnarPlaylists(
            self.playlist_ids,
            self.titles,
            self.descriptions,
            indptr,
            codes,
            track_ids,
            self.n_empty_skipped,
            self.bytes_read,
            self.vocab.metadata,
        )


def _mpd_chunk(out: _ChunkCollector, file: Path, parser: str) -> None:
    try:
        raw_bytes = file.read_bytes()
    except OSError as err:
        raise PlaylistFormatError(f"{file}: cannot be read ({err}).") from err
    out.bytes_read += len(raw_bytes)
    try:
        data = parse_json_bytes(raw_bytes, parser)
    except ValueError as err:  # json.JSONDecodeError and orjson.JSONDecodeError are ValueErrors
        raise PlaylistFormatError(
            f"{file}: malformed JSON ({err}); fix or replace the file (MPD slices are JSON "
            "objects with a 'playlists' list)."
        ) from err
    del raw_bytes
    playlists = data.get("playlists") if isinstance(data, dict) else None
    if not isinstance(playlists, list):
        raise PlaylistFormatError(
            f"{file}: expected a JSON object with a 'playlists' list (the MPD slice format)."
        )
    pids, titles, descriptions, uris = [], [], [], []
    # the file's track objects, one per row, only while its new tracks' metadata is taken
    rows: list | None = [] if out.vocab.metadata is not None else None
    lengths = np.zeros(len(playlists), dtype=np.int64)
    for index, raw in enumerate(playlists):
        if not isinstance(raw, dict):
            raise PlaylistFormatError(f"{file}, playlist index {index}: expected a JSON object.")
        pid = raw.get("pid")
        if pid is None:
            raise PlaylistFormatError(
                f"{file}, playlist index {index}: playlist has no id; give every playlist a "
                "unique 'pid'."
            )
        tracks = raw.get("tracks") or []
        try:
            track_uris = [t["track_uri"] for t in tracks]
        except (KeyError, TypeError):
            track_uris = [t.get("track_uri") if isinstance(t, dict) else None for t in tracks]
        if None in track_uris or "" in track_uris:
            position = next(i for i, u in enumerate(track_uris) if u is None or u == "")
            raise PlaylistFormatError(
                f"{file}, playlist index {index}: playlist {str(pid).strip()!r}, track at "
                f"position {position} has no track id; every track needs a 'track_uri'."
            )
        pids.append(str(pid).strip())
        titles.append(raw.get("name"))
        descriptions.append(raw.get("description"))
        lengths[index] = len(track_uris)
        uris.extend(track_uris)
        if rows is not None:
            rows.extend(tracks)
    n_known = len(out.vocab)
    codes = out.vocab.codes(uris)
    if rows is not None:
        first = _first_rows_of_new(codes, n_known)
        new = [rows[r] for r in first.tolist()]
        out.vocab.add_metadata(
            {name: [t.get(_TRACK_SOURCES[name]) for t in new] for name in TRACK_FIELDS}
        )
    out.add_chunk(str(file), pids, titles, descriptions, lengths, codes)


def _first_rows_of_new(codes: np.ndarray, n_known: int) -> np.ndarray:
    """Row of the first occurrence of each code ``>= n_known``, in code order."""
    rows = np.flatnonzero(codes >= n_known)
    _, first = np.unique(codes[rows], return_index=True)
    return rows[first]


def read_mpd_columnar(
    path: str | Path, parser: str = "auto", track_metadata: bool = False
) -> ColumnarPlaylists:
    """MPD slices (a folder of ``mpd.slice.*.json`` in name order, or one file) as arrays;
    with ``track_metadata``, each distinct track's ``track_name`` / ``artist_name`` /
    ``album_name`` too."""
    root = Path(path)
    out = _ChunkCollector(track_metadata)
    for file in mpd_files(root):
        _mpd_chunk(out, file, parser)
    return out.result(root)


_PARQUET_COLUMNS = ("playlist_id", "title", "track_id")


def iter_parquet_row_groups(path: str | Path, columns: tuple[str, ...]) -> Iterator[tuple]:
    """``(file, row group index, pyarrow.Table)`` for each row group of each Parquet file."""
    import pyarrow.parquet as pq

    root = Path(path)
    require_exists(root)
    files = files_with(root, (".parquet",)) if root.is_dir() else [root]
    if not files:
        raise PlaylistFormatError(f"{root}: no .parquet files in this folder.")
    for file in files:
        try:
            handle = pq.ParquetFile(file)
        except Exception as err:  # pyarrow raises several types for non-Parquet files
            raise PlaylistFormatError(f"{file}: not a readable Parquet file ({err}).") from err
        names = handle.schema_arrow.names
        missing = [c for c in _PARQUET_COLUMNS if c not in names]
        if missing:
            raise PlaylistFormatError(
                f"{file}: missing column(s) {', '.join(missing)}; a playlist Parquet file needs "
                f"{', '.join(_PARQUET_COLUMNS)}. Found: {', '.join(names)}."
            )
        wanted = [c for c in columns if c in names]
        for group in range(handle.num_row_groups):
            yield file, group, handle.read_row_group(group, columns=wanted)


def _parquet_chunk(out: _ChunkCollector, where: str, table) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    n_rows = table.num_rows
    if n_rows == 0:
        return
    pid_col = table.column("playlist_id").combine_chunks()
    if pid_col.null_count:
        raise PlaylistFormatError(
            f"{where}: playlist_id is null in some rows; every row needs its playlist's id."
        )
    # group rows by playlist in order of first appearance (as the object reader does), then by
    # position where that column exists; all with array operations
    pid_enc = pc.dictionary_encode(pid_col)
    group = np.asarray(pid_enc.indices, dtype=np.int64)
    if "position" in table.column_names:
        position = table.column("position").combine_chunks()
        pos = np.asarray(pc.fill_null(position, 0), dtype=np.int64)
        is_null = np.asarray(position.is_null(), dtype=bool)
        order = np.lexsort((np.arange(n_rows), pos, is_null, group))
    else:
        order = np.argsort(group, kind="stable")
    track_col = table.column("track_id").combine_chunks().take(pa.array(order))
    if track_col.null_count:
        raise PlaylistFormatError(
            f"{where}: track_id is null in some rows; every track needs an id."
        )
    track_enc = pc.dictionary_encode(pc.cast(track_col, pa.string()))
    if pc.any(pc.equal(pc.utf8_trim_whitespace(track_enc.dictionary), "")).as_py():
        raise PlaylistFormatError(f"{where}: empty track_id in some rows; every track needs one.")
    n_known = len(out.vocab)
    local = out.vocab.codes(track_enc.dictionary.to_pylist())
    codes = local[np.asarray(track_enc.indices, dtype=np.int64)]
    if out.vocab.metadata is not None:
        rows = pa.array(order[_first_rows_of_new(codes, n_known)])
        out.vocab.add_metadata(
            {
                name: table.column(_TRACK_SOURCES[name]).take(rows).to_pylist()
                if _TRACK_SOURCES[name] in table.column_names
                else [None] * len(rows)
                for name in TRACK_FIELDS
            }
        )
    sorted_group = group[order]
    n_groups = len(pid_enc.dictionary)
    lengths = np.bincount(sorted_group, minlength=n_groups)
    first_row = order[np.searchsorted(sorted_group, np.arange(n_groups))]
    first = pa.array(first_row)
    pids = [str(p).strip() for p in pid_enc.dictionary.to_pylist()]
    titles = table.column("title").take(first).to_pylist()
    descriptions = (
        table.column("description").take(first).to_pylist()
        if "description" in table.column_names
        else [None] * n_groups
    )
    out.add_chunk(where, pids, titles, descriptions, lengths, codes)


def read_parquet_columnar(path: str | Path, track_metadata: bool = False) -> ColumnarPlaylists:
    """Parquet (one row per playlist-track) read one row group at a time, as arrays.

    Same columns as :func:`semantic_ids.playlists.read_parquet`. A playlist's rows must lie in
    one row group (a playlist split across row groups is reported as a repeated id). With
    ``track_metadata``, the ``track_name`` / ``artist_name`` / ``album_name`` columns (where
    present) of each distinct track's first row are kept.
    """
    out = _ChunkCollector(track_metadata)
    columns = ("playlist_id", "title", "track_id", "description", "position")
    if track_metadata:
        columns += tuple(_TRACK_SOURCES[name] for name in TRACK_FIELDS)
    for file, group, table in iter_parquet_row_groups(path, columns):
        out.bytes_read += table.nbytes
        _parquet_chunk(out, f"{file}, row group {group}", table)
    return out.result(Path(path))


def read_columnar(
    path: str | Path, parser: str = "auto", track_metadata: bool = False
) -> ColumnarPlaylists:
    """MPD slices or Parquet as arrays: ``.parquet`` files / folders of them, else MPD slices
    (``track_metadata``: see :func:`read_mpd_columnar` and :func:`read_parquet_columnar`)."""
    root = Path(path)
    require_exists(root)
    if root.is_dir():
        if not _has_mpd_slices(root) and files_with(root, (".parquet",)):
            return read_parquet_columnar(root, track_metadata)
        return read_mpd_columnar(root, parser, track_metadata)
    if root.suffix.lower() == ".parquet":
        return read_parquet_columnar(root, track_metadata)
    return read_mpd_columnar(root, parser, track_metadata)


def _has_mpd_slices(folder: Path) -> bool:
    return any(folder.glob("mpd.slice.*.json")) or any((folder / "data").glob("mpd.slice.*.json"))


def columnar_readable(path: str | Path) -> bool:
    """Whether ``read_playlists`` would read ``path`` as MPD slices or Parquet, which
    :func:`read_columnar` reads too (False for JSONL, unknown formats and missing paths)."""
    root = Path(path)
    if root.is_dir():
        if _has_mpd_slices(root):
            return True
        return not files_with(root, (".jsonl", ".ndjson")) and bool(files_with(root, (".parquet",)))
    return root.is_file() and root.suffix.lower() in (".json", ".parquet")


def interactions_from_columns(
    columns: ColumnarPlaylists, min_count: int = 2, vocab: ItemVocab | None = None
) -> tuple[sp.csr_matrix, ItemVocab]:
    """The matrix and catalogue of ``build_interactions`` from columnar playlists, vectorised.

    Returns ``(matrix, vocab)``: float32 ``csr_matrix`` ``(n_playlists, n_items)`` with sorted
    indices; without ``vocab`` the catalogue is the tracks in >= ``min_count`` playlists,
    ordered by descending count then track id; with ``vocab`` it is reused and other tracks are
    dropped. Python runs once per distinct track (the catalogue), never once per row.
    """
    n_rows = columns.n_playlists
    codes = columns.track_codes
    track_ids = columns.track_ids
    if vocab is None:
        if not isinstance(min_count, (int, np.integer)) or min_count < 1:
            raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}.")
        # rows hold each track once, so row counts are playlist counts
        counts = np.bincount(codes, minlength=track_ids.size).astype(np.int64)
        kept = np.flatnonzero(counts >= min_count)
        by_id = kept[np.argsort(track_ids[kept], kind="stable")]
        order = by_id[np.argsort(-counts[by_id], kind="stable")]
        vocab = ItemVocab(tuple(track_ids[order].tolist()), counts[order])
        remap = np.full(track_ids.size, -1, dtype=np.int64)
        remap[order] = np.arange(order.size)
    else:
        get = vocab._index.get
        remap = np.fromiter(
            (get(t, -1) for t in track_ids.tolist()), dtype=np.int64, count=track_ids.size
        )
    cols = remap[codes] if codes.size else np.zeros(0, dtype=np.int64)
    keep = cols >= 0
    row_of = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(columns.indptr))
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(row_of[keep], minlength=n_rows), out=indptr[1:])
    indices = cols[keep].astype(np.int32 if len(vocab) < 2**31 else np.int64)
    del row_of, keep, cols
    data = np.ones(indices.size, dtype=np.float32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(n_rows, len(vocab)))
    matrix.sort_indices()
    return matrix, vocab
