"""``text2tracks export`` on synthetic prompt files of growing size: time and memory (issue 14).

    python -m eval.bench_export_memory --artifact runs/demo/artifact \\
        --sizes 10000,100000,1000000 [--k 10 --num-beams 10 --batch-size 256] \\
        [--out bench_out/export_memory/results.json]

For each size N it writes N synthetic prompts (JSONL, ``{"id", "prompt"}``, titles drawn from a
small vocabulary with a fixed seed, so the same N gives the same file) and runs the real command,
``python -m text2tracks.commands.export``, in a fresh process, sampling that process's RSS with
psutil every ``--interval`` seconds (50 ms). Progress is read from the export's journal (one
line per finished prompt; read incrementally, only the bytes appended since the last sample), so
the record holds the RSS when 10%, 50% and 90% of the prompts were done as well as the peak (the
merge at the end included). It checks that the output has N lines, prints a table (size,
seconds, prompts/s, peak RSS, the peak over the smallest size's peak) and writes the JSON to
``--out``. The issue's target: the peak at 1M prompts within 10% of the peak at 10k.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

MOODS = ("chill", "sad", "happy", "angry", "dreamy", "upbeat", "mellow", "dark", "romantic")
GENRES = ("jazz", "hip hop", "folk", "rock", "country", "edm", "soul", "pop", "metal", "lofi")
DECADES = ("60s", "70s", "80s", "90s", "2000s", "2010s")
ACTIVITIES = ("studying", "running", "a road trip", "cooking", "sleeping", "a party", "the gym")
PROGRESS_MARKS = (0.1, 0.5, 0.9)
MB = 2**20


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m eval.bench_export_memory", description=__doc__)
    ap.add_argument("--artifact", required=True, help="the artifact folder to export with")
    ap.add_argument("--sizes", default="10000,100000,1000000", help="prompts per run")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--num-beams", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default="bench_out/export_memory/results.json")
    ap.add_argument(
        "--work-dir", default=None, help="prompt and output files (default: beside --out)"
    )
    ap.add_argument("--interval", type=float, default=0.05, help="seconds between RSS samples")
    ap.add_argument("--seed", type=int, default=0, help="the prompts' seed")
    ap.add_argument("--keep-files", action="store_true", help="keep the prompt and output files")
    return ap


def synthetic_title(rng: random.Random) -> str:
    """A playlist title like ``chill 90s jazz for studying``."""
    words = [rng.choice(MOODS)]
    if rng.random() < 0.6:
        words.append(rng.choice(DECADES))
    words.append(rng.choice(GENRES))
    if rng.random() < 0.5:
        words += ["for", rng.choice(ACTIVITIES)]
    return " ".join(words)


def write_prompts(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` synthetic prompts as JSONL (ids ``p0``...), the same for the same ``n`` and seed."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"id": f"p{i}", "prompt": synthetic_title(rng)}) + "\n")
    return path


class JournalProgress:
    """Prompts finished so far, from the lines of a growing journal (its header not counted),
    reading only what was appended since the last look."""

    def __init__(self, path: Path):
        self.path, self.offset, self.lines = path, 0, 0

    def done(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:  # not yet, or already merged and removed
            return max(self.lines - 1, 0)
        self.offset += len(chunk)
        self.lines += chunk.count(b"\n")
        return max(self.lines - 1, 0)


def _export_command(args, source: Path, output: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "text2tracks.commands.export",
        "--artifact",
        str(args.artifact),
        "--input",
        str(source),
        "--output",
        str(output),
        "--k",
        str(args.k),
        "--num-beams",
        str(args.num_beams),
        "--batch-size",
        str(args.batch_size),
        "--no-progress",
    ]


def run_size(n: int, args, work: Path) -> dict:
    """Export ``n`` synthetic prompts in a fresh process, sampling its RSS; its record."""
    import psutil

    from text2tracks.export_journal import journal_path

    source = write_prompts(work / f"prompts_{n}.jsonl", n, args.seed)
    output = work / f"recs_{n}.jsonl"
    output.unlink(missing_ok=True)
    for stale in work.glob(f"recs_{n}.jsonl.partial*.jsonl"):
        stale.unlink()
    progress = JournalProgress(journal_path(output))
    stderr_path = work / f"export_{n}.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(_repo()), os.environ.get("PYTHONPATH")])),
    }
    t0 = time.perf_counter()
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            _export_command(args, source, output), env=env, stdout=stderr, stderr=stderr
        )
        samples, at_marks, peak = [], {}, 0
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                rss = watched.memory_info().rss
            except psutil.Error:  # it ended between poll and sample
                break
            done = progress.done()
            peak = max(peak, rss)
            samples.append((round(time.perf_counter() - t0, 3), round(rss / MB, 1), done))
            for mark in PROGRESS_MARKS:
                if mark not in at_marks and done >= mark * n:
                    at_marks[mark] = round(rss / MB, 1)
            time.sleep(args.interval)
        code = proc.wait()
    seconds = time.perf_counter() - t0
    log = stderr_path.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        raise RuntimeError(f"export of {n} prompts failed (exit {code}):\n{log[-2000:]}")
    with open(output, "rb") as f:
        n_lines = sum(1 for _ in f)
    if not args.keep_files:
        for path in (source, output, stderr_path):
            path.unlink(missing_ok=True)
    return {
        "n_prompts": n,
        "seconds": round(seconds, 3),
        "prompts_per_s": round(n / seconds, 1) if seconds else None,
        "peak_rss_mb": round(peak / MB, 1),
        "rss_at_progress_mb": {f"{int(m * 100)}%": at_marks.get(m) for m in PROGRESS_MARKS},
        "output_lines": n_lines,
        "n_samples": len(samples),
        "timeline": _thinned(samples, 200),  # (seconds, RSS MB, prompts done)
        "summary": [line for line in log.splitlines() if line.startswith("export:")],
    }


def _repo() -> Path:
    return Path(__file__).resolve().parents[1]


def _thinned(samples: list, at_most: int) -> list:
    step = max(1, -(-len(samples) // at_most))
    return samples[::step]


def format_table(records: list[dict]) -> str:
    base = records[0]["peak_rss_mb"] if records else 0.0
    lines = [
        "| prompts | seconds | prompts/s | peak RSS MB | RSS MB at 10% / 50% / 90% | peak / smallest |",
        "|---|---|---|---|---|---|",
    ]
    for r in records:
        marks = " / ".join(
            "-" if v is None else f"{v:,.0f}" for v in r["rss_at_progress_mb"].values()
        )
        ratio = r["peak_rss_mb"] / base if base else float("nan")
        lines.append(
            f"| {r['n_prompts']:,} | {r['seconds']:.1f} | {r['prompts_per_s'] or 0:,.1f} | "
            f"{r['peak_rss_mb']:,.0f} | {marks} | {ratio:.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(args.work_dir) if args.work_dir else out.parent / "work"
    work.mkdir(parents=True, exist_ok=True)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    records = [run_size(n, args, work) for n in sizes]
    base = records[0]["peak_rss_mb"]
    for r in records:
        r["peak_over_smallest"] = round(r["peak_rss_mb"] / base, 4) if base else None
    payload = {
        "host": platform.node(),
        "load_average": list(os.getloadavg()),
        "settings": {
            "artifact": str(Path(args.artifact).resolve()),
            "k": args.k,
            "num_beams": args.num_beams,
            "batch_size": args.batch_size,
            "interval_s": args.interval,
            "seed": args.seed,
        },
        "sizes": records,
    }
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(format_table(records))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
