"""Playlist records and readers (MPD slices, JSONL, Parquet), and the playlist-level split."""

from __future__ import annotations

from dataclasses import dataclass, field


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
        if self.description and self.description.strip():
            return f"{self.title.strip()}. {self.description.strip()}"
        return self.title.strip()


@dataclass
class PlaylistSet:
    """What a reader returns: playlists, the metadata of their tracks, and what was skipped."""

    playlists: list[Playlist]
    tracks: dict[str, Track] = field(default_factory=dict)
    n_empty_skipped: int = 0
