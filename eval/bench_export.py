"""Benchmark of ``text2tracks export``: throughput, time outside the model, and resume after kills.

    python -m eval.bench_export --artifact runs/demo/artifact [--prompts FILE] [--n 512]
        [--ks 10 50] [--batch-size 32] [--num-beams B] [--kills 5] [--out bench_out/export]

1. Throughput, in this process with the model loaded once: for each k, one export of ``--n``
   prompts (JSONL in, JSONL out, the real journal and fsync per batch). Reported: prompts per
   second, and the share of the run's wall time spent outside ``recommend`` (reading the input,
   journal writes and fsyncs, the final merge and atomic write, bookkeeping), measured in that
   same run. Target: under 10%.
2. Resume: an uninterrupted export in a subprocess gives the reference; then the same export is
   started and killed with SIGKILL at a random point ``--kills`` times (each restart with
   ``--resume``), and a last ``--resume`` finishes it. The final output must equal the
   reference byte for byte.

Prompts: ``--prompts`` (any export input format) or, by default, ``--n`` titles of the built-in
demo playlists. Prints a table and writes ``OUT/bench_export.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def _prompts(path: str | None, n: int, seed: int) -> list[str]:
    if path:
        from text2tracks.commands.export import read_input

        prompts = [row.prompt for row in read_input(path).rows if row.error is None]
    else:
        from semantic_ids.demo import make_demo

        demo = make_demo(n_tracks=200, n_playlists=max(n, 1), seed=seed + 1)
        prompts = [p.title for p in demo.playlists if p.title.strip()]
    if not prompts:
        raise ValueError("no usable prompts")
    return [prompts[i % len(prompts)] for i in range(n)]


def _write_jsonl(path: Path, prompts: list[str]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, prompt in enumerate(prompts):
            f.write(json.dumps({"id": f"p{i}", "prompt": prompt}, ensure_ascii=False) + "\n")
    return path


def bench_throughput(
    artifact: str,
    prompts: list[str],
    ks: list[int],
    batch_size: int,
    num_beams: int | None,
    workdir: Path,
) -> list[dict[str, Any]]:
    from text2tracks.commands.export import run_export
    from text2tracks.pipeline import Text2Tracks

    recommender = Text2Tracks.from_pretrained(artifact)
    source = _write_jsonl(workdir / "prompts.jsonl", prompts)
    rows = []
    for k in ks:
        beams = None if num_beams is None else max(num_beams, k)
        recommender.recommend(prompts[:batch_size], k=k, num_beams=beams)  # warm-up
        out = workdir / f"throughput-k{k}.jsonl"
        summary = run_export(
            artifact,
            source,
            out,
            k=k,
            batch_size=batch_size,
            num_beams=beams,
            progress=False,
            recommender=recommender,
        )
        total = summary.total_s - summary.load_s
        rows.append(
            {
                "k": k,
                "num_beams": beams or max(k, 2),
                "n_prompts": len(prompts),
                "batch_size": batch_size,
                "total_s": round(total, 3),
                "model_s": round(summary.model_s, 3),
                "prompts_per_s": round(len(prompts) / total, 2),
                "outside_model_share": round((total - summary.model_s) / total, 4),
                "read_s": round(summary.read_s, 4),
                "merge_s": round(summary.merge_s, 4),
            }
        )
    return rows


def _export_cmd(artifact, source, out, k, batch_size, num_beams, resume):
    cmd = [
        sys.executable,
        "-m",
        "text2tracks.commands.export",
        "--artifact",
        str(artifact),
        "--input",
        str(source),
        "--output",
        str(out),
        "--k",
        str(k),
        "--batch-size",
        str(batch_size),
        "--no-progress",
    ]
    if num_beams is not None:
        cmd += ["--num-beams", str(num_beams)]
    return cmd + (["--resume"] if resume else [])


def bench_resume(
    artifact: str,
    prompts: list[str],
    kills: int,
    batch_size: int,
    num_beams: int | None,
    workdir: Path,
    seed: int,
    k: int = 10,
    seconds_per_prompt: float = 0.01,
) -> dict[str, Any]:
    from text2tracks.commands.export import journal_path

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    source = _write_jsonl(workdir / "resume-prompts.jsonl", prompts)
    reference = workdir / "resume-reference.jsonl"
    started = time.perf_counter()
    subprocess.run(
        _export_cmd(artifact, source, reference, k, batch_size, num_beams, False),
        env=env,
        check=True,
        capture_output=True,
    )
    reference_s = time.perf_counter() - started

    # kill points: distinct batch boundaries of the job, chosen at random (0 = during start-up),
    # each followed by a random delay so that the kill lands somewhere inside the next batch's
    # decoding or journal write
    rng = random.Random(seed)
    n_batches = -(-len(prompts) // batch_size)
    boundaries = sorted(rng.sample(range(n_batches), min(kills, n_batches)))
    out = workdir / "resume-output.jsonl"
    started = time.perf_counter()
    kill_points = _kill_runs(
        lambda resume: _export_cmd(artifact, source, out, k, batch_size, num_beams, resume),
        env,
        journal_path(out),
        out,
        [min(boundary * batch_size, len(prompts)) for boundary in boundaries],
        [rng.uniform(0.0, 0.9) * batch_size * seconds_per_prompt for _ in boundaries],
    )
    final = subprocess.run(
        _export_cmd(artifact, source, out, k, batch_size, num_beams, True),
        env=env,
        capture_output=True,
        text=True,
    )
    killed_s = time.perf_counter() - started
    equal = final.returncode == 0 and out.read_bytes() == reference.read_bytes()
    return {
        "n_prompts": len(prompts),
        "k": k,
        "kills": kill_points,
        "final_returncode": final.returncode,
        "final_summary": final.stderr.strip()[-600:],
        "equal_to_uninterrupted": equal,
        "kills_mid_run": sum(not p["output_written_before_kill"] for p in kill_points),
        "uninterrupted_s": round(reference_s, 2),
        "with_kills_s": round(killed_s, 2),
    }


def _kill_runs(
    command, env: dict, journal: Path, out: Path, targets: list[int], delays: list[float]
) -> list[dict]:
    """Start the export (``command(resume)``, resuming from the second start on) once per
    target, wait until its journal holds that many rows, wait the matching delay and SIGKILL
    it; what each kill left behind."""

    def journal_rows() -> int:
        return max(journal.read_bytes().count(b"\n") - 1, 0) if journal.exists() else -1

    kill_points = []
    for attempt, (target, delay) in enumerate(zip(targets, delays, strict=True)):
        proc = subprocess.Popen(
            command(attempt > 0), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        while proc.poll() is None and journal_rows() < target:
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kill_points.append(
            {
                "attempt": attempt + 1,
                "after_rows": target,
                "delay_s": round(delay, 3),
                "rows_in_journal_after_kill": max(journal_rows(), 0),
                "output_written_before_kill": out.exists(),
            }
        )
    return kill_points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench_export", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--prompts", default=None, help="prompt file (default: demo titles)")
    parser.add_argument("--n", type=int, default=512, help="prompts for the throughput runs")
    parser.add_argument("--ks", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--resume-batch-size", type=int, default=16)
    parser.add_argument("--num-beams", type=int, default=None, help="default: k")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--resume-n", type=int, default=512, help="prompts for the resume run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_out/export")
    args = parser.parse_args(argv)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    import torch

    results: dict[str, Any] = {
        "artifact": str(args.artifact),
        "torch_threads": torch.get_num_threads(),
        "cpus": len(os.sched_getaffinity(0)),
    }
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        workdir = Path(tmp)
        prompts = _prompts(args.prompts, args.n, args.seed)
        results["throughput"] = bench_throughput(
            args.artifact, prompts, args.ks, args.batch_size, args.num_beams, workdir
        )
        if args.kills:
            resume_prompts = _prompts(args.prompts, args.resume_n, args.seed)
            first = results["throughput"][0]
            per_prompt = first["total_s"] / first["n_prompts"]
            results["resume"] = bench_resume(
                args.artifact,
                resume_prompts,
                args.kills,
                args.resume_batch_size,
                args.num_beams,
                workdir,
                args.seed,
                seconds_per_prompt=per_prompt,
            )
    with open(out_dir / "bench_export.json", "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)

    print("| k | beams | prompts | batch | prompts/s | total s | model s | outside model |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results["throughput"]:
        print(
            f"| {r['k']} | {r['num_beams']} | {r['n_prompts']} | {r['batch_size']} | "
            f"{r['prompts_per_s']:.1f} | {r['total_s']:.2f} | {r['model_s']:.2f} | "
            f"{100 * r['outside_model_share']:.2f}% |"
        )
    if "resume" in results:
        r = results["resume"]
        points = ", ".join(str(p["rows_in_journal_after_kill"]) for p in r["kills"])
        if any(p["output_written_before_kill"] for p in r["kills"]):
            points += "; a run finished before its kill came"
        print(
            f"\nresume: {r['kills_mid_run']} of {len(r['kills'])} SIGKILLs mid-run (rows in the journal after each: {points}) "
            f"of {r['n_prompts']} rows; final output equal to an uninterrupted run: "
            f"{r['equal_to_uninterrupted']}"
        )
    print(f"\nwrote {out_dir / 'bench_export.json'}")
    return 0 if results.get("resume", {}).get("equal_to_uninterrupted", True) else 1


if __name__ == "__main__":
    sys.exit(main())
