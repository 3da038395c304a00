"""Scale benchmark of the item side (issue 14): read, interactions, ALS, semantic IDs and trie
on synthetic MPD-shaped sets of 10k, 100k and 1M playlists.

For each ``--sizes`` value, in a fresh subprocess (so that peak RSS is per size): generate the
synthetic set once (``semantic_ids.synthetic``; MPD slices up to ``--json-max`` playlists, Parquet
always; reused when present), then time each stage and sample its peak RSS (psutil, every 10 ms):

1. JSON parsing of MPD slices, parse only, one core: MB/s with the standard library and with
   orjson; then the columnar MPD reader end to end (``semantic_ids.columnar``), MB/s per core.
2. The columnar Parquet reader (row group at a time): rows/s.
3. The interaction matrix from the columns (``interactions_from_columns``, min count 2).
4. Implicit ALS (``semantic_ids.cf.fit_cf``) with ``--factors`` and ``--als-iterations``; the
   time of the 15 iterations of the default config is extrapolated per iteration.
5. Residual k-means (3 x 256, matching assignment, as build-ids) and the catalogue
   (``SemanticIDCatalog.build``: collision digit).
6. The flattened trie (``text2tracks.trie.FlatTrie.from_codes``): its arrays' bytes.
6b. Constrained decoding over that catalogue with one fixed model (``eval.bench_decoding``'s
   T5, random weights, one torch thread): one-prompt latency (k=10) and prompts/s at batch 64.
7. For comparison, the object reader (``read_playlists`` + ``build_interactions``) up to
   ``--object-max`` playlists (run last, so that its freed memory does not raise the others).

Memory model (bytes; P playlists, R rows = nnz, T distinct tracks, I catalogue items, f factors,
d = f, L = 3 levels, c = 32 candidates of the matching assignment). Each stage's model is printed
beside its measured peak RSS increase:

- columnar read, kept: 4 R (int32 codes) + 8 P (indptr) + ~110 P (id, title strings, list slots)
  + 144 T (the track ids as a numpy ``<U36`` array); while reading, also 4 R for the per-file
  code chunks before they are joined, ~160 T for the vocabulary dict and its str objects, and
  the Python objects of the one slice being parsed (~2x its bytes of indented JSON)
  -> peak ~8 R + 118 P + 304 T + 2 x slice bytes.
- interaction matrix: kept 8 R (float32 data + int32 indices) + 8 P; transient while building
  8 R (row ids, int64) + 8 R (column ids, int64) + 1 R (mask), and per catalogue item its id
  sorted as ``<U36`` (144) and the ItemVocab tuple + dict (~100) -> peak ~25 R + 250 I, kept
  8 R + 8 P + 150 I (numpy buffers and Python objects traced exactly with tracemalloc: RSS
  deltas miss memory reused from freed arenas).
- ALS: bm25 weighting makes a weighted copy through COO (~24 R transient, 8 R kept), implicit
  keeps the item-user transpose (8 R) and the factors 4 f (P + I) -> peak ~40 R + 4 f (P + I).
- residual k-means: the input and its normalised / residual copies ~16 d I, the matching
  assignment's candidate lists 12 c I (int64 ids + float32 distances) -> ~(16 d + 12 c) I.
- catalogue: int64 codes and per-level prefix keys and ranks ~8 (L + 1) x 4 I, the sorted
  ``<U36`` ids of the collision digit (144 I) and the id -> index dict (~100 I) -> ~370 I.
- trie: per node int64 code, parent, subtree count (24), internal nodes also child start/end
  (16), per item its leaf and its node at each level (8 + 8 (L + 1)); the last two levels have
  ~I nodes each -> ~120 I.

Writes ``OUT/results.json`` and ``OUT/growth.png`` (time and peak RSS against playlists,
log-log), and prints a table per size. Run::

    python -m eval.bench_scale --sizes 10000,100000,1000000 --out bench_out/scale
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting are ruinous when other processes share the cores
# (see eval/bench_ids.py); set before faiss / implicit load their OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

# STAGES is kept importable from here (it moved with the table and the plot, issue 11)
from eval.bench_scale_report import STAGES, growth, plot, print_table  # noqa: E402, F401

MB = 2**20


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakRSS:
    """Samples this process's RSS in a thread; ``peak_mb`` and ``delta_mb`` over the block."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.start = _rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        self.end = _rss()
        self.peak = max(self.peak, self.end)

    def record(self, **extra) -> dict:
        return {
            "seconds": round(self.seconds, 3),
            "peak_rss_mb": round(self.peak / MB, 1),
            "delta_peak_mb": round((self.peak - self.start) / MB, 1),
            "kept_mb": round((self.end - self.start) / MB, 1),
            **extra,
        }


def ensure_data(
    n: int, root: Path, seed: int, json_max: int, workers: int = 1
) -> tuple[Path, dict]:
    """The synthetic set of ``n`` playlists under ``root`` (generated once, then reused)."""
    from semantic_ids.synthetic import SyntheticConfig, write_synthetic

    folder = root / f"synth_{n}_seed{seed}"
    formats = ("mpd", "parquet") if n <= json_max else ("parquet",)
    marker = folder / "synthetic.json"
    if marker.exists():
        summary = json.loads(marker.read_text())
        if set(formats) <= set(summary["formats"]) and summary.get("config") == _config_key(
            SyntheticConfig(n_playlists=n, seed=seed)
        ):
            summary["generate_s"] = summary.get("generate_s")
            return folder, summary
    started = time.perf_counter()
    summary = write_synthetic(
        SyntheticConfig(n_playlists=n, seed=seed),
        folder,
        formats,
        progress=sys.stderr.isatty(),
        workers=workers,
    )
    summary["generate_s"] = round(time.perf_counter() - started, 1)
    summary["config"] = _config_key(SyntheticConfig(n_playlists=n, seed=seed))
    marker.write_text(json.dumps(summary, indent=2) + "\n")
    return folder, summary


def _config_key(config) -> dict:
    from dataclasses import asdict

    return json.loads(json.dumps(asdict(config)))


def bench_parse(files: list[Path], max_files: int) -> dict:
    """MB/s of JSON parsing (parse only, one core) for the stdlib and orjson, same bytes."""
    import orjson

    out = {}
    for name, loads in (("parse_json", json.loads), ("parse_orjson", orjson.loads)):
        n_bytes, seconds = 0, 0.0
        with PeakRSS() as peak:
            for file in files[:max_files]:
                data = file.read_bytes()
                t0 = time.perf_counter()
                parsed = loads(data)
                seconds += time.perf_counter() - t0
                n_bytes += len(data)
                del parsed, data
        out[name] = peak.record(
            mb_per_s=round(n_bytes / MB / seconds, 1),
            files=min(len(files), max_files),
            json_mb=round(n_bytes / MB, 1),
        )
        out[name]["seconds"] = round(seconds, 3)
    return out


def run_size(n: int, args: argparse.Namespace) -> dict:
    """Every stage at one size, in this process; returns the record for results.json.

    Each stage's inputs are deleted as soon as no later stage needs them, so that each peak
    RSS counts what the stage itself holds.
    """
    from semantic_ids.cf import available_cpus

    started = time.perf_counter()
    folder, summary = ensure_data(
        n, Path(args.data_dir), args.seed, args.json_max, args.gen_workers
    )
    record: dict = {
        "n_playlists": n,
        "data": str(folder),
        "synthetic": summary,
        "min_count": args.min_count,
        "stages": {},
        "cpus": available_cpus(),
    }
    stages = record["stages"]
    print(
        f"[{n}] data ready in {time.perf_counter() - started:.0f}s: {summary['n_rows']} rows",
        flush=True,
    )
    mpd_files = sorted((folder / "mpd").glob("mpd.slice.*.json"))
    columns = bench_reading(folder, mpd_files, args, stages)  # 1-2
    P, R, T = columns.n_playlists, columns.n_rows, int(columns.track_ids.size)
    record.update(P=P, R=R, T=T)
    matrix, vocab = bench_interactions(columns, args, stages)  # 3
    nnz, n_items = int(matrix.nnz), len(vocab)
    record.update(nnz=nnz, I=n_items)
    del columns
    print(
        f"[{n}] {P} playlists, {R} rows, {T} tracks, catalogue {n_items} (>= {args.min_count})",
        flush=True,
    )
    item_factors = bench_als(matrix, args, stages, P)  # 4
    del matrix
    gc.collect()
    rkm, codes = bench_residual_kmeans(item_factors, args, stages)  # 5
    catalog = bench_catalog(vocab, codes, stages)
    trie = bench_trie(catalog, stages)  # 6
    # peak of the whole item-side build (generation included), before torch is loaded below
    record["build_peak_rss_mb"] = _max_rss_mb()
    if args.decode:
        stages["decode"] = bench_decode(catalog.sid_codes, args)
    del trie, catalog, rkm, codes, item_factors, vocab
    if n <= args.object_max and mpd_files:  # 7. the object path, for comparison
        stages["object_reader"] = bench_object_reader(folder, args)
    record["process_peak_rss_mb"] = _max_rss_mb()
    record["build_ids_s"] = round(
        sum(
            stages[s]["seconds"]
            for s in ("read_parquet_columnar", "interactions", "residual_kmeans", "catalog", "trie")
        )
        + stages["als"]["seconds_15_iterations_est"],
        1,
    )
    return record


def _max_rss_mb() -> float:
    """This process's peak RSS so far, MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def bench_reading(folder: Path, mpd_files: list[Path], args, stages: dict):
    """Stages 1-2: JSON parsing and the columnar MPD reader (when the size has MPD slices),
    then the columnar Parquet reader, with their memory models; returns the Parquet columns."""
    from semantic_ids.columnar import read_mpd_columnar, read_parquet_columnar

    if mpd_files:
        stages.update(bench_parse(mpd_files, args.parse_files))
        with PeakRSS() as peak:
            columns = read_mpd_columnar(folder / "mpd")
        stages["read_mpd_columnar"] = peak.record(
            mb_per_s=round(columns.bytes_read / MB / peak.seconds, 1),
            json_mb=round(columns.bytes_read / MB, 1),
        )
        del columns
    with PeakRSS() as peak:
        columns = read_parquet_columnar(folder / "parquet")
    P, R, T = columns.n_playlists, columns.n_rows, int(columns.track_ids.size)
    stages["read_parquet_columnar"] = peak.record(
        rows_per_s=round(R / peak.seconds),
        model_kept_mb=_mb(4 * R + 118 * P + 144 * T),
        model_peak_mb=_mb(8 * R + 118 * P + 304 * T),
    )
    if "read_mpd_columnar" in stages:
        slice_bytes = stages["read_mpd_columnar"]["json_mb"] * MB / len(mpd_files)
        stages["read_mpd_columnar"].update(
            model_kept_mb=_mb(4 * R + 118 * P + 144 * T),
            model_peak_mb=_mb(8 * R + 118 * P + 304 * T + 2 * slice_bytes),
        )
    return columns


def bench_interactions(columns, args, stages: dict):
    """Stage 3: the interaction matrix from the columns (peak traced exactly); ``(matrix,
    vocab)``."""
    from semantic_ids.columnar import interactions_from_columns

    R, P = columns.n_rows, columns.n_playlists
    tracemalloc.start()  # numpy reports its buffers to tracemalloc: the exact transient peak
    with PeakRSS() as peak:
        matrix, vocab = interactions_from_columns(columns, min_count=args.min_count)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    nnz, n_items = int(matrix.nnz), len(vocab)
    stages["interactions"] = peak.record(
        traced_peak_mb=_mb(traced_peak),
        nnz=nnz,
        n_items=n_items,
        matrix_mb=_mb(matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes),
        model_peak_mb=_mb(25 * R + 250 * n_items),
        model_kept_mb=_mb(8 * nnz + 8 * P + 150 * n_items),
    )
    return matrix, vocab


def bench_als(matrix, args, stages: dict, n_playlists: int) -> np.ndarray:
    """Stage 4: implicit ALS for ``--als-iterations`` (15 extrapolated); the item factors."""
    from semantic_ids.cf import CFConfig, fit_cf

    f, nnz, n_items = args.factors, int(matrix.nnz), matrix.shape[1]
    config = CFConfig(factors=f, iterations=args.als_iterations)
    with PeakRSS() as peak:
        cf = fit_cf(matrix, config, show_progress=False)
    per_iter = peak.seconds / args.als_iterations
    stages["als"] = peak.record(
        factors=f,
        iterations=args.als_iterations,
        seconds_per_iteration=round(per_iter, 2),
        seconds_15_iterations_est=round(15 * per_iter, 1),
        model_peak_mb=_mb(40 * nnz + 4 * f * (n_playlists + n_items)),
    )
    return cf.item_factors


def bench_residual_kmeans(item_factors: np.ndarray, args, stages: dict):
    """Stage 5a: residual k-means, 3 x 256, as build-ids; ``(model, codes)``."""
    from semantic_ids.residual_kmeans import ResidualKMeans

    n_items = item_factors.shape[0]
    with PeakRSS() as peak:
        rkm = ResidualKMeans(
            n_levels=3, codebook_size=256, n_iter=args.kmeans_iterations, seed=args.seed
        )
        codes = rkm.fit_encode(item_factors)
    stages["residual_kmeans"] = peak.record(
        n_iter=args.kmeans_iterations, model_peak_mb=_mb((16 * args.factors + 12 * 32) * n_items)
    )
    return rkm, codes


def bench_catalog(vocab, codes: np.ndarray, stages: dict):
    """Stage 5b: the catalogue (collision digit) of the codes."""
    from semantic_ids.catalog import SemanticIDCatalog

    with PeakRSS() as peak:
        catalog = SemanticIDCatalog.build(vocab.item_ids, codes, vocab.counts, 256)
    stats_group = int(catalog.level_sizes[-1])
    stages["catalog"] = peak.record(
        largest_collision_group=stats_group, model_peak_mb=_mb(370 * len(vocab))
    )
    return catalog


def bench_trie(catalog, stages: dict):
    """Stage 6: the flattened trie of the catalogue and the bytes of its arrays."""
    from text2tracks.trie import FlatTrie

    n_items = len(catalog.item_ids)
    with PeakRSS() as peak:
        trie = FlatTrie.from_codes(catalog.sid_codes, catalog.level_sizes)
    trie_bytes = trie.nbytes
    stages["trie"] = peak.record(
        table_mb=_mb(trie_bytes),
        bytes_per_item=round(trie_bytes / n_items, 1),
        model_mb=_mb(120 * n_items),
    )
    return trie


def bench_object_reader(folder: Path, args) -> dict:
    """Stage 7: the object reader (``read_playlists`` + ``build_interactions``) of the MPD."""
    from semantic_ids.interactions import build_interactions
    from semantic_ids.playlists import read_playlists

    with PeakRSS() as peak:
        playlist_set = read_playlists(folder / "mpd")
        build_interactions(playlist_set, min_count=args.min_count)
    record = peak.record()
    del playlist_set
    return record


DIGIT_BLOCK = 256  # the model's collision-digit block: one model for every catalogue size


def bench_decode(sid_codes: np.ndarray, args: argparse.Namespace) -> dict:
    """One-prompt latency (k=10) and prompts/s at batch 64 of constrained beam search over this
    catalogue, with one fixed model (bench_decoding's T5, random weights) for every size."""
    import torch

    from eval.bench_decoding import BYTE_VOCAB, build_model
    from text2tracks.decoding import constrained_generate
    from text2tracks.tokens import SIDTokenLayout
    from text2tracks.trie import FlatTrie

    torch.set_num_threads(1)
    digit = int(sid_codes[:, -1].max()) + 1
    if digit > DIGIT_BLOCK:
        return {
            "seconds": 0.0,
            "peak_rss_mb": 0.0,
            "delta_peak_mb": 0.0,
            "kept_mb": 0.0,
            "skipped": f"collision group {digit} > {DIGIT_BLOCK}",
        }
    sizes = (256, 256, 256, DIGIT_BLOCK)
    layout = SIDTokenLayout(sizes, tuple(BYTE_VOCAB + sum(sizes[:lv]) for lv in range(4)))
    model = build_model(layout.end_id, args.seed)
    g = torch.Generator().manual_seed(args.seed)
    x1 = torch.randint(3, 259, (1, 32), generator=g)
    x64 = torch.randint(3, 259, (64, 32), generator=g)
    with PeakRSS() as peak:
        trie = FlatTrie.from_codes(sid_codes, sizes)
        constrained_generate(model, x1, None, trie, layout, k=10)  # warm-up
        latency = []
        for _ in range(args.decode_repeats):
            t0 = time.perf_counter()
            constrained_generate(model, x1, None, trie, layout, k=10)
            latency.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        constrained_generate(model, x64, None, trie, layout, k=10)
        batch_s = time.perf_counter() - t0
    return peak.record(
        latency_ms=round(1000 * float(np.median(latency)), 1),
        prompts_per_s_batch64=round(64 / batch_s, 1),
        torch_threads=1,
    )


def _mb(n_bytes: float) -> float:
    return round(n_bytes / MB, 1)


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``python -m eval.bench_scale`` (two hidden ones for its child processes)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="playlist counts, comma-separated"
    )
    parser.add_argument("--out", default="bench_out/scale")
    parser.add_argument("--data-dir", default=None, help="synthetic sets (default OUT/data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json-max",
        type=int,
        default=100_000,
        help="write and read MPD JSON up to this size (Parquet above it)",
    )
    parser.add_argument(
        "--object-max",
        type=int,
        default=100_000,
        help="run the object reader for comparison up to this size",
    )
    parser.add_argument(
        "--parse-files", type=int, default=10, help="slice files timed for the parse-only MB/s"
    )
    parser.add_argument(
        "--gen-workers",
        type=int,
        default=1,
        help="processes generating the synthetic set (not timed as a stage)",
    )
    parser.add_argument("--min-count", type=int, default=2)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--als-iterations", type=int, default=3)
    parser.add_argument("--kmeans-iterations", type=int, default=20)
    parser.add_argument(
        "--decode",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time constrained decoding over each catalogue (one fixed model)",
    )
    parser.add_argument("--decode-repeats", type=int, default=5)
    parser.add_argument(
        "--merge",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="include sizes measured earlier into OUT (size_N.json) in the output",
    )
    parser.add_argument("--one-size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.data_dir = args.data_dir or str(out / "data")

    if args.one_size is not None:  # the child: one size, one process
        record = run_size(args.one_size, args)
        Path(args.result_file).write_text(json.dumps(record, indent=2) + "\n")
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    records = earlier_records(out, sizes) if args.merge else []
    results_path = out / "results.json"
    for n in sizes:
        record = run_child(n, out, argv)
        if record is None:
            break
        records.append(record)
        records.sort(key=lambda r: r["n_playlists"])
        print_table(record)
        write_results(records, results_path)
        plot(records, out / "growth.png")
    if records:
        for record in records:
            if record["n_playlists"] not in sizes:
                print_table(record)
        print(f"\nwrote {results_path} and {out / 'growth.png'}")
        print(json.dumps(growth(records), indent=1))
    return 0 if records else 1


def earlier_records(out: Path, sizes: list[int]) -> list[dict]:
    """The sizes measured by earlier runs into ``out`` (``size_N.json``), but not in ``sizes``:
    they join the table, the JSON and the plot."""
    earlier = {int(p.stem.split("_")[1]): p for p in out.glob("size_*.json")}
    records = [json.loads(p.read_text()) for n, p in sorted(earlier.items()) if n not in sizes]
    for record in records:
        print(
            f"(size {record['n_playlists']} from an earlier run: {earlier[record['n_playlists']]})"
        )
    return records


def run_child(
    n: int, out: Path, argv: list[str] | None, module: str = "eval.bench_scale"
) -> dict | None:
    """Size ``n`` in a fresh process (``python -m module --one-size n --result-file F`` plus this
    run's flags), so that its peak RSS is its own; its record, or None if it failed."""
    result_file = out / f"size_{n}.json"
    child = [sys.executable, "-m", module, "--one-size", str(n), "--result-file", str(result_file)]
    code = subprocess.call(child + list(argv if argv is not None else sys.argv[1:]))
    if code != 0:
        print(f"size {n}: the run failed (exit {code}); stopping", file=sys.stderr)
        return None
    return json.loads(result_file.read_text())


def per_size_main(args, sizes: list[int], argv, module: str, run_size, plot, format_table) -> int:
    """The per-size benchmarks' ``main`` after parsing: a child (``--one-size``) runs its size
    and writes its record; the parent runs each size in a child, then writes
    ``OUT/results.json`` and ``OUT/growth.png`` and prints the table."""
    out = Path(args.out)
    if args.one_size is not None:  # the child: one size, one process
        record = run_size(args.one_size, args)
        Path(args.result_file).write_text(json.dumps(record, indent=2) + "\n")
        return 0
    records = []
    for n in sizes:
        record = run_child(n, out, argv, module=module)
        if record is None:
            break
        records.append(record)
    if not records:
        return 1
    payload = {"host": platform.node(), "load_average": list(os.getloadavg()), "sizes": records}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    plot(records, out / "growth.png")
    print(format_table(records))
    print(f"wrote {out / 'results.json'} and {out / 'growth.png'}")
    return 0


def write_results(records: list[dict], path: Path) -> None:
    """``results.json``: the host, every size's record and the growth between sizes."""
    payload = {
        "host": platform.node(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
        "sizes": records,
        "growth": growth(records),
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
