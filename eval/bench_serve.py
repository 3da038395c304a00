"""Load benchmark of ``text2tracks serve``: N concurrent clients for S seconds against an artifact.

    python -m eval.bench_serve --artifact runs/demo/artifact [--clients 32] [--seconds 60]

1. Start ``text2tracks serve`` on a free port in a subprocess (so that the clients do not share
   the server's interpreter), load the same artifact in this process, and wait for ``/health``.
2. Warm up, then alternate ``--rounds`` rounds of two phases:
   a. service: ``--clients`` asyncio clients for ``--seconds / rounds``; each posts one prompt
      (cycling over a fixed prompt list from its own offset), waits for the answer and posts
      the next. Latency is measured at the client, from send to the whole answer. The batch
      sizes the server formed come from its ``/health`` counters before and after.
   b. in-process: those same batch sizes replayed through ``Text2Tracks.recommend`` (in
      proportion, for at most ``--inprocess-seconds / rounds``, in one worker thread as the
      service decodes), while the server idles: the throughput the API gives without HTTP.
   Alternating keeps both phases under the same load on a shared machine; the 1-minute load
   average of each round is written beside the figures.
3. The ratio of the two throughputs says what the service layer costs (or, when batching
   pays, what it gains).

Prints a table and writes ``bench_out/serve/serve.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

PROMPTS = (
    "chill 90s jazz",
    "sad songs",
    "workout hip hop",
    "oldies for slow dancing",
    "happy country",
    "night drive",
    "relaxing folk",
    "rock n roll 70s",
    "summer party",
    "rainy morning coffee",
    "80s synth pop",
    "dark techno",
    "study beats",
    "road trip classics",
    "romantic dinner",
    "angry punk",
    "sunday morning acoustic",
    "latin dance hits",
    "epic movie soundtrack",
    "indie heartbreak",
    "gym motivation",
    "sleepy ambient",
    "country roads",
    "90s rnb slow jams",
    "metal for running",
    "blues bar night",
    "kids songs",
    "wedding first dance",
    "christmas oldies",
    "reggae sunshine",
    "lofi for coding",
    "big band swing",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(artifact: Path, port: int, args: argparse.Namespace) -> subprocess.Popen:
    """``text2tracks serve`` in a subprocess; returns once ``/health`` answers."""
    import httpx

    command = [
        sys.executable,
        "-m",
        "text2tracks.cli",
        "serve",
        "--artifact",
        str(artifact),
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--device",
        args.device,
        "--max-batch-prompts",
        str(args.max_batch_prompts),
        "--max-wait-ms",
        str(args.max_wait_ms),
        "--torch-threads",
        str(args.torch_threads),
    ]
    server = subprocess.Popen(command)
    deadline = time.monotonic() + 300
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the server exited with code {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise RuntimeError("the server did not answer /health within 300 s")
        time.sleep(0.2)


async def run_clients(
    url: str, n_clients: int, seconds: float, k: int, num_beams: int | None
) -> dict[str, Any]:
    """``n_clients`` closed-loop clients for ``seconds``: latencies and failures."""
    import httpx

    latencies: list[float] = []
    failures: dict[str, int] = {}
    limits = httpx.Limits(max_connections=n_clients, max_keepalive_connections=n_clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        stop = time.perf_counter() + seconds

        async def one_client(offset: int) -> None:
            i = offset
            while time.perf_counter() < stop:
                body = {"prompt": PROMPTS[i % len(PROMPTS)], "k": k}
                if num_beams is not None:
                    body["num_beams"] = num_beams
                i += 1
                start = time.perf_counter()
                try:
                    answer = await client.post("/recommend", json=body)
                    answer.raise_for_status()
                    if len(answer.json()["recommendations"]) != k:
                        raise ValueError("wrong number of recommendations")
                except Exception as err:  # noqa: BLE001 - counted, the run goes on
                    key = type(err).__name__
                    failures[key] = failures.get(key, 0) + 1
                    continue
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(one_client(c * 7) for c in range(n_clients)))
        elapsed = time.perf_counter() - began
    return {"latencies": latencies, "failures": failures, "elapsed": elapsed}


def batch_sizes(before: dict, after: dict) -> dict[int, int]:
    """Decoding calls per batch size between two ``/health`` readings."""
    old = {int(s): c for s, c in before["batching"]["batch_sizes"].items()}
    new = {int(s): c for s, c in after["batching"]["batch_sizes"].items()}
    return {s: new[s] - old.get(s, 0) for s in sorted(new) if new[s] - old.get(s, 0) > 0}


def in_process(
    recommender,
    sizes: dict[int, int],
    k: int,
    num_beams: int | None,
    budget_s: float,
    seed: int = 0,
) -> dict[str, Any]:
    """Replay the server's batch sizes through the API in this process, for at most
    ``budget_s`` seconds (the calls drawn in proportion to the server's)."""
    calls = [s for s, c in sizes.items() for _ in range(c)]
    random.Random(seed).shuffle(calls)

    def replay() -> dict[str, Any]:
        n_prompts, n_calls, offset = 0, 0, 0
        start = time.perf_counter()
        for size in calls:
            batch = [PROMPTS[(offset + j) % len(PROMPTS)] for j in range(size)]
            offset += size
            recommender.recommend(batch, k=k, num_beams=num_beams, batch_size=size)
            n_prompts += size
            n_calls += 1
            if time.perf_counter() - start > budget_s:
                break
        return {"prompts": n_prompts, "calls": n_calls, "elapsed_s": time.perf_counter() - start}

    # In a worker thread, as the service decodes (asyncio.to_thread): on a loaded machine torch's
    # intra-op threads behave very differently in the main thread, which would skew the ratio.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(replay).result()


def summarise(
    run: dict[str, Any], sizes: dict[int, int], inproc: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    lat = np.asarray(run["latencies"]) * 1000
    n_ok, n_failed = len(lat), sum(run["failures"].values())
    throughput = n_ok / run["elapsed"]
    n_calls = sum(sizes.values())
    inproc = {
        **inproc,
        "prompts_per_s": inproc["prompts"] / inproc["elapsed_s"]
        if inproc["elapsed_s"] > 0
        else float("nan"),
    }
    return {
        "artifact": str(args.artifact),
        "clients": args.clients,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "k": args.k,
        "num_beams": args.num_beams,
        "device": args.device,
        "torch_threads": args.torch_threads,
        "max_batch_prompts": args.max_batch_prompts,
        "max_wait_ms": args.max_wait_ms,
        "requests_ok": n_ok,
        "requests_failed": n_failed,
        "failures": run["failures"],
        "latency_ms": {
            "p50": float(np.percentile(lat, 50)) if n_ok else None,
            "p90": float(np.percentile(lat, 90)) if n_ok else None,
            "p99": float(np.percentile(lat, 99)) if n_ok else None,
            "mean": float(lat.mean()) if n_ok else None,
            "max": float(lat.max()) if n_ok else None,
        },
        "throughput_req_per_s": throughput,
        "decoding_calls": n_calls,
        "mean_batch_size": (sum(s * c for s, c in sizes.items()) / n_calls) if n_calls else None,
        "batch_sizes": {str(s): c for s, c in sizes.items()},
        "in_process": inproc,
        "throughput_ratio_to_in_process": throughput / inproc["prompts_per_s"],
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }


def print_table(result: dict[str, Any]) -> None:
    lat = result["latency_ms"]
    rows = [
        ("clients x seconds", f"{result['clients']} x {result['seconds']:g}"),
        ("requests ok / failed", f"{result['requests_ok']} / {result['requests_failed']}"),
        (
            "latency p50 / p90 / p99 (ms)",
            f"{lat['p50']:.0f} / {lat['p90']:.0f} / {lat['p99']:.0f}"
            if lat["p50"] is not None
            else "-",
        ),
        ("throughput (req/s)", f"{result['throughput_req_per_s']:.1f}"),
        (
            "decoding calls, mean batch",
            f"{result['decoding_calls']}, {result['mean_batch_size'] or 0:.1f}",
        ),
        ("in-process, same batches (prompts/s)", f"{result['in_process']['prompts_per_s']:.1f}"),
        ("service / in-process throughput", f"{result['throughput_ratio_to_in_process']:.2f}"),
    ]
    if result.get("load_average_1min"):
        rows.append(
            (
                "load average (1 min) per round",
                " / ".join(f"{x:.1f}" for x in result["load_average_1min"]),
            )
        )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m eval.bench_serve", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--artifact", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup-seconds", type=float, default=5.0)
    parser.add_argument("--inprocess-seconds", type=float, default=30.0)
    parser.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="alternations of the service and the in-process phases",
    )
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--num-beams", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="torch intra-op threads, the same for the server and in-process (on a "
        "shared CPU machine, oversubscribed threads can be ~50x slower)",
    )
    parser.add_argument("--max-batch-prompts", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("bench_out/serve"))
    args = parser.parse_args(argv)

    import httpx
    import torch

    from text2tracks import Text2Tracks

    torch.set_num_threads(args.torch_threads)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(args.artifact, port, args)
    recommender = Text2Tracks.from_pretrained(args.artifact, device=args.device)
    run = {"latencies": [], "failures": {}, "elapsed": 0.0}
    inproc = {"prompts": 0, "calls": 0, "elapsed_s": 0.0}
    sizes: dict[int, int] = {}
    load = []
    try:
        asyncio.run(run_clients(url, args.clients, args.warmup_seconds, args.k, args.num_beams))
        in_process(recommender, {4: 2}, args.k, args.num_beams, args.warmup_seconds)  # warm-up
        for _ in range(args.rounds):
            before = httpx.get(f"{url}/health", timeout=30).json()
            part = asyncio.run(
                run_clients(url, args.clients, args.seconds / args.rounds, args.k, args.num_beams)
            )
            after = httpx.get(f"{url}/health", timeout=30).json()
            run["latencies"] += part["latencies"]
            run["elapsed"] += part["elapsed"]
            for name, count in part["failures"].items():
                run["failures"][name] = run["failures"].get(name, 0) + count
            formed = batch_sizes(before, after)
            for size, count in formed.items():
                sizes[size] = sizes.get(size, 0) + count
            replayed = in_process(
                recommender, formed, args.k, args.num_beams, args.inprocess_seconds / args.rounds
            )
            for name in inproc:
                inproc[name] += replayed[name]
            load.append(os.getloadavg()[0])
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    result = summarise(run, dict(sorted(sizes.items())), inproc, args)
    result["load_average_1min"] = load
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "serve.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_table(result)
    print(f"written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
