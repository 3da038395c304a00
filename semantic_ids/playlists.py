"""Playlist records and readers (MPD slices, JSONL, Parquet), and the playlist-level split."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Track:
    """Metadata of one track, kept for content IDs, BM25 and display."""

    track_id: str
    name: str | None = None
    artist: str | None = None
    album: str | None = None


@dataclass(frozen=True)
class Playlist:
    """One playlist: its prompt text and its ordered track ids."""

    playlist_id: str
    title: str
    track_ids: tuple[str, ...]
    description: str | None = None

    @property
    def prompt(self) -> str:
        """The prompt of this playlist: its title, and its description where present."""
        return playlist_prompt(self.title, self.description)


def playlist_prompt(title: str, description: str | None) -> str:
    """A playlist's prompt: its title, and its description where present ("title. description")."""
    if description and description.strip():
        return f"{title.strip()}. {description.strip()}"
    return title.strip()


@dataclass
class PlaylistSet:
    """What a reader returns: playlists, the metadata of their tracks, and what was skipped."""

    playlists: list[Playlist]
    tracks: dict[str, Track] = field(default_factory=dict)
    n_empty_skipped: int = 0


# ---------------------------------------------------------------------------------------------
# Readers
#
# Decisions shared by every reader (tested in tests/test_playlists.py):
# - A playlist without a title key (or with a null title) is an error; a title that is present
#   but empty after stripping whitespace is kept as "" (the MPD has a few; the evaluator decides
#   what to do with empty prompts). Titles are otherwise kept verbatim: emoji, case, punctuation
#   and non-Latin scripts untouched, only surrounding whitespace stripped.
# - A track without an id is an error naming the file and the playlist.
# - A playlist whose track list is empty is skipped and counted in `n_empty_skipped` (and
#   logged at INFO), never silently.
# - A track id repeated inside one playlist keeps its first occurrence only: a playlist is a set
#   of relevant items for retrieval, and the interaction matrix is binary.
# - The same playlist id twice (in one file or across files) is an error: ids key the split.
# - Track metadata: the first record seen for a track id wins.
# ---------------------------------------------------------------------------------------------


SUPPORTED_FORMATS = (
    "MPD slices (a folder of mpd.slice.*.json, or one such .json file), "
    "JSONL (.jsonl / .ndjson: one playlist per line), "
    "Parquet (.parquet: one row per playlist-track)"
)


class PlaylistFormatError(ValueError):
    """A playlist file that cannot be read; the message names the file, where, what and the fix."""


def _where(path: Path, line: int | None = None, playlist: str | None = None) -> str:
    parts = [str(path)]
    if line is not None:
        parts.append(f"line {line}")
    if playlist is not None:
        parts.append(f"playlist {playlist}")
    return ", ".join(parts)


def opt_str(value: object) -> str | None:
    """Metadata strings: None stays None, anything else becomes a stripped str."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class _Collector:
    """Accumulates playlists and track metadata with the shared rules above."""

    def __init__(self) -> None:
        self.playlists: list[Playlist] = []
        self.tracks: dict[str, Track] = {}
        self.n_empty_skipped = 0
        self._seen: dict[str, str] = {}

    def add(
        self,
        *,
        where: str,
        playlist_id: object,
        title: object,
        track_ids: Iterable[object],
        description: object = None,
    ) -> None:
        if playlist_id is None:
            raise PlaylistFormatError(
                f"{where}: playlist has no id; give every playlist a unique id "
                "('pid' in MPD files, 'id' in JSONL, 'playlist_id' in Parquet)."
            )
        pid = str(playlist_id).strip()
        if title is None:
            raise PlaylistFormatError(
                f"{where}: playlist {pid!r} has no title; the title is the prompt, add one "
                "('name' in MPD files, 'title' in JSONL and Parquet; \"\" is allowed)."
            )
        if not isinstance(title, str):
            raise PlaylistFormatError(
                f"{where}: playlist {pid!r} has a title of type {type(title).__name__} "
                f"({title!r}); write the title as a string."
            )
        if pid in self._seen:
            raise PlaylistFormatError(
                f"{where}: playlist id {pid!r} was already used at {self._seen[pid]}; "
                "playlist ids must be unique across all files read together."
            )
        self._seen[pid] = where
        unique: dict[str, None] = {}
        for position, track_id in enumerate(track_ids):
            if track_id is None or (isinstance(track_id, str) and not track_id.strip()):
                raise PlaylistFormatError(
                    f"{where}: playlist {pid!r}, track at position {position} has no track id; "
                    "every track needs one ('track_uri' in MPD files, 'id' or a plain string in "
                    "JSONL, 'track_id' in Parquet)."
                )
            unique.setdefault(track_id if isinstance(track_id, str) else str(track_id), None)
        if not unique:
            self.n_empty_skipped += 1
            return
        self.playlists.append(
            Playlist(
                playlist_id=pid,
                title=title.strip(),
                track_ids=tuple(unique),
                description=opt_str(description),
            )
        )

    def add_track(self, track_id: str, name: object, artist: object, album: object) -> None:
        if track_id not in self.tracks:
            self.tracks[track_id] = Track(track_id, opt_str(name), opt_str(artist), opt_str(album))

    def result(self, source: object) -> PlaylistSet:
        if self.n_empty_skipped:
            logger.info(
                "%s: skipped %d empty playlist(s) (no tracks)", source, self.n_empty_skipped
            )
        return PlaylistSet(self.playlists, self.tracks, self.n_empty_skipped)


def require_exists(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; check the path to the playlists.")


def _load_json(path: Path) -> object:
    try:
        with path.open("rb") as handle:
            return json.load(handle)
    except json.JSONDecodeError as err:
        raise PlaylistFormatError(
            f"{_where(path, err.lineno)}: malformed JSON ({err.msg}, column {err.colno}); "
            "fix or replace the file (MPD slices are JSON objects with a 'playlists' list)."
        ) from err
    except UnicodeDecodeError as err:
        raise PlaylistFormatError(f"{path}: not UTF-8 text ({err}); save it as UTF-8.") from err
    except OSError as err:
        raise PlaylistFormatError(f"{path}: cannot be read ({err}).") from err


def mpd_files(path: Path) -> list[Path]:
    require_exists(path)
    if path.is_file():
        return [path]
    files = sorted(path.glob("mpd.slice.*.json"))
    if not files and (path / "data").is_dir():
        # the full MPD download keeps its slices in data/
        files = sorted((path / "data").glob("mpd.slice.*.json"))
    if not files:
        raise PlaylistFormatError(
            f"{path}: no mpd.slice.*.json files in this folder; point at the folder that holds "
            "the MPD slices (or at one slice file)."
        )
    return files


def read_mpd(path: str | Path) -> PlaylistSet:
    """Read MPD slices: a folder of ``mpd.slice.*.json`` files (read in name order) or one file.

    Accepts the full MPD schema and reduced ones: per playlist ``pid``, ``name``, optional
    ``description`` and ``tracks``; per track ``track_uri`` (the track id) and optionally
    ``track_name``, ``artist_name``, ``album_name``. ``playlist_id`` is ``str(pid)``.
    """
    root = Path(path)
    files = mpd_files(root)
    out = _Collector()
    for file in tqdm(files, desc="MPD slices", unit="file", disable=None):
        data = _load_json(file)
        playlists = data.get("playlists") if isinstance(data, dict) else None
        if not isinstance(playlists, list):
            raise PlaylistFormatError(
                f"{file}: expected a JSON object with a 'playlists' list (the MPD slice format)."
            )
        for index, raw in enumerate(playlists):
            where = f"{file}, playlist index {index}"
            if not isinstance(raw, dict):
                raise PlaylistFormatError(f"{where}: expected a JSON object for the playlist.")
            tracks = raw.get("tracks")
            if tracks is None:
                tracks = []
            if not isinstance(tracks, list):
                raise PlaylistFormatError(f"{where}: 'tracks' must be a list of track objects.")
            track_ids = []
            for position, track in enumerate(tracks):
                if not isinstance(track, dict):
                    raise PlaylistFormatError(
                        f"{where} (pid {raw.get('pid')!r}), track at position {position}: "
                        "expected a track object with a 'track_uri'."
                    )
                uri = track.get("track_uri")
                track_ids.append(uri)
                if uri is not None and uri not in out.tracks:
                    out.add_track(
                        str(uri),
                        track.get("track_name"),
                        track.get("artist_name"),
                        track.get("album_name"),
                    )
            out.add(
                where=where,
                playlist_id=raw.get("pid"),
                title=raw.get("name"),
                track_ids=track_ids,
                description=raw.get("description"),
            )
    return out.result(root)


def read_jsonl(path: str | Path) -> PlaylistSet:
    """Read JSONL playlists, one per line: ``{"id", "title", "description"?, "tracks"}``.

    ``tracks`` holds track ids, or objects ``{"id", "name"?, "artist"?, "album"?}`` whose
    metadata is kept. Blank lines are ignored. ``path`` is a file or a folder of ``*.jsonl`` /
    ``*.ndjson`` files (read in name order).
    """
    root = Path(path)
    require_exists(root)
    files = files_with(root, (".jsonl", ".ndjson")) if root.is_dir() else [root]
    if not files:
        raise PlaylistFormatError(f"{root}: no .jsonl or .ndjson files in this folder.")
    out = _Collector()
    for file in tqdm(files, desc="JSONL files", unit="file", disable=None):
        try:
            handle = file.open(encoding="utf-8")
        except OSError as err:
            raise PlaylistFormatError(f"{file}: cannot be read ({err}).") from err
        with handle:
            try:
                for line_no, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    _jsonl_line(out, file, line_no, line)
            except UnicodeDecodeError as err:
                raise PlaylistFormatError(
                    f"{file}: not UTF-8 text ({err}); save it as UTF-8."
                ) from err
    return out.result(root)


def _jsonl_line(out: _Collector, file: Path, line_no: int, line: str) -> None:
    where = _where(file, line_no)
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise PlaylistFormatError(
            f"{where}: malformed JSON ({err.msg}, column {err.colno}); each line must be one "
            'JSON object such as {"id": "p1", "title": "chill", "tracks": ["t1", "t2"]}.'
        ) from err
    if not isinstance(raw, dict):
        raise PlaylistFormatError(f"{where}: expected a JSON object, got {type(raw).__name__}.")
    tracks = raw.get("tracks")
    if tracks is None:
        tracks = []
    if not isinstance(tracks, list):
        raise PlaylistFormatError(f"{where}: 'tracks' must be a list of track ids or objects.")
    track_ids: list[object] = []
    for position, track in enumerate(tracks):
        if isinstance(track, dict):
            track_id = track.get("id")
            if track_id is not None:
                out.add_track(
                    str(track_id), track.get("name"), track.get("artist"), track.get("album")
                )
            track_ids.append(track_id)
        elif isinstance(track, (str, int)) and not isinstance(track, bool):
            track_ids.append(track)
        else:
            raise PlaylistFormatError(
                f"{where} (playlist {raw.get('id')!r}), track at position {position}: expected a "
                f'track id string or an object with an "id", got {track!r}.'
            )
    out.add(
        where=where,
        playlist_id=raw.get("id"),
        title=raw.get("title"),
        track_ids=track_ids,
        description=raw.get("description"),
    )


_PARQUET_REQUIRED = ("playlist_id", "title", "track_id")
_PARQUET_OPTIONAL = ("description", "track_name", "artist_name", "album_name", "position")


def read_parquet(path: str | Path) -> PlaylistSet:
    """Read Parquet with one row per playlist-track.

    Columns ``playlist_id, title, track_id`` are required; ``description, track_name,
    artist_name, album_name, position`` are optional. Rows are grouped by playlist; tracks keep
    row order, or ``position`` order where that column exists. A playlist's title and
    description are taken from its first row. ``path`` is a file or a folder of ``*.parquet``.
    """
    import pyarrow.parquet as pq

    root = Path(path)
    require_exists(root)
    files = files_with(root, (".parquet",)) if root.is_dir() else [root]
    if not files:
        raise PlaylistFormatError(f"{root}: no .parquet files in this folder.")
    out = _Collector()
    for file in tqdm(files, desc="Parquet files", unit="file", disable=None):
        try:
            schema = pq.read_schema(file)
            missing = [c for c in _PARQUET_REQUIRED if c not in schema.names]
            if missing:
                raise PlaylistFormatError(
                    f"{file}: missing column(s) {', '.join(missing)}; a playlist Parquet file needs "
                    f"{', '.join(_PARQUET_REQUIRED)} (optional: {', '.join(_PARQUET_OPTIONAL)}). "
                    f"Found: {', '.join(schema.names)}."
                )
            columns = [c for c in (*_PARQUET_REQUIRED, *_PARQUET_OPTIONAL) if c in schema.names]
            table = pq.read_table(file, columns=columns)
        except PlaylistFormatError:
            raise
        except Exception as err:  # pyarrow raises several types for corrupt or non-Parquet files
            raise PlaylistFormatError(f"{file}: not a readable Parquet file ({err}).") from err
        _parquet_table(out, file, {name: table.column(name).to_pylist() for name in columns})
    return out.result(root)


def _parquet_table(out: _Collector, file: Path, cols: dict[str, list]) -> None:
    n_rows = len(cols["playlist_id"])
    groups: dict[object, list[int]] = {}
    for row, pid in enumerate(cols["playlist_id"]):
        if pid is None:
            raise PlaylistFormatError(
                f"{file}, row {row}: playlist_id is null; every row needs its playlist's id."
            )
        groups.setdefault(pid, []).append(row)
    positions = cols.get("position")
    names, artists, albums = (cols.get(c) for c in ("track_name", "artist_name", "album_name"))
    track_col = cols["track_id"]
    for pid, rows in groups.items():
        if positions is not None:
            rows = sorted(rows, key=lambda r: (positions[r] is None, positions[r] or 0, r))
        for r in rows:
            track_id = track_col[r]
            if track_id is not None and str(track_id) not in out.tracks:
                out.add_track(
                    str(track_id),
                    names[r] if names else None,
                    artists[r] if artists else None,
                    albums[r] if albums else None,
                )
        first = rows[0]
        out.add(
            where=f"{file}, row {first} of {n_rows}",
            playlist_id=pid,
            title=cols["title"][first],
            track_ids=[track_col[r] for r in rows],
            description=cols["description"][first] if "description" in cols else None,
        )


def files_with(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)


def read_playlists(path: str | Path) -> PlaylistSet:
    """Read playlists in whichever supported format ``path`` holds.

    A file is dispatched by extension (``.json`` -> MPD slice, ``.jsonl``/``.ndjson`` -> JSONL,
    ``.parquet`` -> Parquet). A folder is read as MPD slices if it holds ``mpd.slice.*.json``
    (or ``data/mpd.slice.*.json``), else as all its JSONL files, else all its Parquet files.
    """
    root = Path(path)
    require_exists(root)
    if root.is_dir():
        if any(root.glob("mpd.slice.*.json")) or any((root / "data").glob("mpd.slice.*.json")):
            return read_mpd(root)
        if files_with(root, (".jsonl", ".ndjson")):
            return read_jsonl(root)
        if files_with(root, (".parquet",)):
            return read_parquet(root)
        raise PlaylistFormatError(
            f"{root}: found no playlist files in this folder. Supported: {SUPPORTED_FORMATS}."
        )
    suffix = root.suffix.lower()
    if suffix == ".json":
        return read_mpd(root)
    if suffix in (".jsonl", ".ndjson"):
        return read_jsonl(root)
    if suffix == ".parquet":
        return read_parquet(root)
    raise PlaylistFormatError(
        f"{root}: unknown playlist format {suffix or '(no extension)'!r}. "
        f"Supported: {SUPPORTED_FORMATS}."
    )


# ---------------------------------------------------------------------------------------------
# Playlist-level split
# ---------------------------------------------------------------------------------------------


@dataclass
class PlaylistSplit:
    """Whole playlists on each side; each list keeps the input order."""

    train: list[Playlist]
    validation: list[Playlist]
    test: list[Playlist]


def unit_hash(seed: int, playlist_id: str) -> float:
    digest = hashlib.blake2b(f"{seed}\x00{playlist_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def split_playlists(
    playlists: Sequence[Playlist] | PlaylistSet,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> PlaylistSplit:
    """Split whole playlists into train / validation / test by a hash of (seed, playlist_id).

    Each playlist's side depends only on its own id and the seed, never on the other
    playlists, so adding files never moves an existing playlist to another side. The hash gives
    u in [0, 1): u < test_fraction -> test; u < test_fraction + validation_fraction ->
    validation; else train. Raising a fraction therefore only moves playlists out of train.
    """
    for name, value in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}.")
    if validation_fraction + test_fraction >= 1.0:
        raise ValueError(
            "validation_fraction + test_fraction must be below 1 so that training playlists "
            f"remain, got {validation_fraction} + {test_fraction}."
        )
    if isinstance(playlists, PlaylistSet):
        playlists = playlists.playlists
    split = PlaylistSplit([], [], [])
    held_out = test_fraction + validation_fraction
    for playlist in playlists:
        u = unit_hash(seed, playlist.playlist_id)
        if u < test_fraction:
            split.test.append(playlist)
        elif u < held_out:
            split.validation.append(playlist)
        else:
            split.train.append(playlist)
    return split
