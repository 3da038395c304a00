"""A synthetic Million Playlist Dataset at any size, shaped like the real one, for cost measurements.

Real data stays the yardstick for quality; this set is for time and memory at 10k, 100k and 1M
playlists (issue 14). It is written as MPD slice files (1,000 playlists each, the full MPD JSON
schema) and/or one Parquet file with one row group per 1,000 playlists, streaming: one slice is
generated, written and dropped before the next, so memory does not grow with the number of
playlists. Slice ``s`` depends only on ``(seed, s)``, so the set is deterministic in the seed and
any slice can be regenerated alone.

The shape of the draws, and the real MPD figures it is anchored to, are described in
:mod:`semantic_ids.synthetic_sampling`; this module renders the slices as files.

CLI::

    python -m semantic_ids.synthetic --playlists 100000 --out data/synth100k --format mpd,parquet
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from semantic_ids.synthetic_sampling import (  # noqa: F401  (re-exported: they lived here)
    ARTIST_TRACKS,
    HEAPS_EXPONENT,
    REAL_MPD_PLAYLISTS,
    REAL_MPD_TRACKS,
    SLICE_SIZE,
    SyntheticConfig,
    SyntheticSlice,
    TrackTable,
    generate_slice,
    iter_slices,
    title_text,
    zipf_ranks,
)

FORMATS = ("mpd", "parquet")


def slice_name(config: SyntheticConfig, index: int) -> str:
    start = index * config.slice_size
    return f"mpd.slice.{start}-{start + config.slice_size - 1}.json"


def _mpd_json(config: SyntheticConfig, sl: SyntheticSlice, table: TrackTable, index: int) -> str:
    """The slice as MPD JSON text, laid out as the real files are (``json.dump(indent=4)``).

    Assembled from per-track fragments (one per distinct track of the slice) rather than by
    ``json.dumps`` of nested dicts: the same bytes, without a dict per row.
    """
    dump = json.dumps
    k5, k3 = "\n" + " " * 20, "\n" + " " * 12
    body = [
        f'{k5}"artist_name": {dump(table.artist_name[k])},{k5}"track_uri": '
        f'"{table.track_uri[k]}",{k5}"artist_uri": "{table.artist_uri[k]}",{k5}"track_name": '
        f'{dump(table.track_name[k])},{k5}"album_uri": "{table.album_uri[k]}",{k5}'
        f'"duration_ms": {table.duration_ms[k]},{k5}"album_name": {dump(table.album_name[k])}'
        f"\n                }}"
        for k in range(table.unique.size)
    ]
    inverse = table.inverse.tolist()
    parts = []
    indptr = sl.indptr.tolist()
    for p in range(sl.pids.size):
        lo, hi = indptr[p], indptr[p + 1]
        rows = inverse[lo:hi]
        tracks_json = ",".join(
            f'\n                {{{k5}"pos": {i},{body[k]}' for i, k in enumerate(rows)
        )
        artists = np.unique(table.artist[rows]).size
        albums = np.unique(table.album[rows]).size
        duration = int(table.duration_ms[rows].sum())
        desc = sl.descriptions[p]
        desc_json = f'{k3}"description": {dump(desc)},' if desc is not None else ""
        fields = (
            f'{k3}"name": {dump(sl.titles[p])},'
            f'{k3}"collaborative": "{"true" if sl.collaborative[p] else "false"}",'
            f'{k3}"pid": {int(sl.pids[p])},{k3}"modified_at": {int(sl.modified_at[p])},'
            f'{k3}"num_tracks": {hi - lo},{k3}"num_albums": {albums},'
            f'{k3}"num_followers": {int(sl.followers[p])},{k3}"num_edits": {int(sl.edits[p])},'
            f'{k3}"duration_ms": {duration},{k3}"num_artists": {artists},{desc_json}'
        )
        parts.append(f'\n        {{{fields}{k3}"tracks": [{tracks_json}\n            ]\n        }}')
    start = index * config.slice_size
    info = {
        "generated_on": "synthetic (semantic_ids.synthetic)",
        "slice": f"{start}-{start + config.slice_size - 1}",
        "version": "v1",
        "seed": config.seed,
    }
    info_json = dump(info, indent=4).replace("\n", "\n    ")
    return f'{{\n    "info": {info_json},\n    "playlists": [{",".join(parts)}\n    ]\n}}'


def _parquet_schema():
    import pyarrow as pa

    return pa.schema(
        [
            ("playlist_id", pa.int64()),
            ("title", pa.string()),
            ("description", pa.string()),
            ("position", pa.int32()),
            ("track_id", pa.string()),
            ("track_name", pa.string()),
            ("artist_name", pa.string()),
            ("album_name", pa.string()),
        ]
    )


def _parquet_table(sl: SyntheticSlice, table: TrackTable):
    import pyarrow as pa

    lengths = np.diff(sl.indptr)
    row_playlist = np.repeat(np.arange(sl.pids.size), lengths)
    position = (np.arange(sl.tracks.size) - np.repeat(sl.indptr[:-1], lengths)).astype(np.int32)
    inv = table.inverse

    def by_track(values: list[str]):
        return pa.DictionaryArray.from_arrays(pa.array(inv.astype(np.int32)), pa.array(values))

    def by_playlist(values: list):
        return pa.array(values, type=pa.string()).take(pa.array(row_playlist))

    return pa.table(
        {
            "playlist_id": pa.array(sl.pids[row_playlist]),
            "title": by_playlist(sl.titles),
            "description": by_playlist(sl.descriptions),
            "position": pa.array(position),
            "track_id": by_track(table.track_uri).cast(pa.string()),
            "track_name": by_track(table.track_name).cast(pa.string()),
            "artist_name": by_track(table.artist_name).cast(pa.string()),
            "album_name": by_track(table.album_name).cast(pa.string()),
        },
        schema=_parquet_schema(),
    )


def _render_slice(config: SyntheticConfig, formats: tuple[str, ...], index: int):
    """Slice ``index`` rendered: (rows, MPD JSON bytes or None, Arrow table or None)."""
    sl = generate_slice(config, index)
    table = TrackTable(config, sl.tracks)
    text = _mpd_json(config, sl, table, index).encode("utf-8") if "mpd" in formats else None
    arrow = _parquet_table(sl, table) if "parquet" in formats else None
    return int(sl.tracks.size), text, arrow


def _bounded(pool, render, n: int, window: int) -> Iterator:
    """``render(i)`` for i in order, from ``pool``, with at most ``window`` slices in flight."""
    from collections import deque

    pending: deque = deque()
    for index in range(n):
        pending.append(pool.apply_async(render, (index,)))
        if len(pending) >= window:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def write_synthetic(
    config: SyntheticConfig,
    out: str | Path,
    formats: tuple[str, ...] = ("mpd",),
    progress: bool = False,
    workers: int = 1,
) -> dict:
    """Write the set under ``out``: ``out/mpd/mpd.slice.*.json`` and/or ``out/parquet/
    playlists.parquet`` (one row group per slice). Returns a summary (counts, bytes, paths).

    Slices are written one at a time, in order; with ``workers > 1`` they are rendered by that
    many processes (at most 2 slices per worker in flight, so memory stays constant in the
    number of playlists) and the files are the same bytes. A finished set is marked by
    ``out/synthetic.json``.
    """
    from tqdm.auto import tqdm

    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats must be a non-empty subset of {FORMATS}, got {formats}")
    if int(workers) < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    writer = _ParquetSliceWriter(out) if "parquet" in formats else None
    if "mpd" in formats:
        (out / "mpd").mkdir(exist_ok=True)
    n_rows, json_bytes = 0, 0
    rendered, pool = _rendered_slices(config, tuple(formats), workers)
    try:
        for index, (rows, text, arrow) in enumerate(
            tqdm(
                rendered,
                total=config.n_slices,
                desc="synthetic slices",
                unit="slice",
                disable=not progress,
            )
        ):
            n_rows += rows
            if text is not None:
                json_bytes += len(text)
                _write_json_slice(out / "mpd" / slice_name(config, index), text)
            if writer is not None:
                writer.write(arrow)
    finally:
        if pool is not None:
            pool.terminate()
    if writer is not None:
        writer.close()
    summary = {
        "n_playlists": config.n_playlists,
        "n_rows": n_rows,
        "seed": config.seed,
        "universe": config.universe,
        "formats": list(formats),
        "json_bytes": json_bytes,
    }
    (out / "synthetic.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


class _ParquetSliceWriter:
    """``out/parquet/playlists.parquet``, one row group per slice, written under a temporary
    name and moved into place by :meth:`close`."""

    def __init__(self, out: Path) -> None:
        import pyarrow.parquet as pq

        (out / "parquet").mkdir(exist_ok=True)
        self.path = out / "parquet" / "playlists.parquet"
        self.tmp = self.path.with_suffix(".parquet.tmp")
        self.writer = pq.ParquetWriter(self.tmp, _parquet_schema(), compression="zstd")

    def write(self, arrow) -> None:
        self.writer.write_table(arrow, row_group_size=1 << 30)

    def close(self) -> None:
        self.writer.close()
        self.tmp.replace(self.path)


def _rendered_slices(config: SyntheticConfig, formats: tuple[str, ...], workers: int):
    """``(slices, pool)``: every slice rendered, in order, by ``workers`` processes (``pool``,
    for the caller to terminate) or in this one (``pool`` None)."""
    from functools import partial

    render = partial(_render_slice, config, formats)
    if workers > 1 and config.n_slices > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(int(workers))
        return _bounded(pool, render, config.n_slices, window=2 * int(workers)), pool
    return map(render, range(config.n_slices)), None


def _write_json_slice(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m semantic_ids.synthetic",
        description="Write a synthetic MPD-shaped playlist set (MPD slices and/or Parquet).",
    )
    parser.add_argument("--playlists", type=int, required=True, help="number of playlists")
    parser.add_argument("--out", required=True, help="output folder (mpd/ and parquet/ inside)")
    parser.add_argument(
        "--format", default="mpd", help="mpd, parquet or mpd,parquet (default: mpd)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tracks",
        type=int,
        default=None,
        help="track universe size (default: from the real MPD's Heaps curve)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes rendering slices (the output is the same)"
    )
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args(argv)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    config = SyntheticConfig(n_playlists=args.playlists, seed=args.seed, n_tracks=args.tracks)
    summary = write_synthetic(
        config, args.out, formats, progress=args.progress, workers=args.workers
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
