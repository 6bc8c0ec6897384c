#!/usr/bin/env python3
"""What pinning the workers to cores (WORKER_CPU_AFFINITY=auto) is worth: one running
system, measured with its workers pinned and unpinned in turn.

    .venv/bin/python scripts/bench_affinity.py fleet image --image-dtype uint8
    .venv/bin/python scripts/bench_affinity.py floor small --rounds 4

The system (the fleet, or the floor: the same stack answering a constant) starts as
`make bench` runs it, so its workers pin themselves. Each round measures it twice under
the benchmark's wrk load, in an order that alternates: once with every thread of every
worker allowed on every core (as WORKER_CPU_AFFINITY=off leaves them), once with each
thread back on the cores its worker chose. One running stack, the same workers (and
loaded model) for both, measured seconds apart: this shared machine's drift, which
moves `make bench`'s absolute numbers by 10-30%, moves both alike. Prints each round's
pinned / unpinned requests/s and their geometric mean.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import psutil

sys.path[:0] = [str(Path(__file__).resolve().parent)]

import bench  # noqa: E402 (after the path above)


def worker_threads(master_pid: int) -> dict[int, set[int]]:
    """Every thread of gunicorn's workers, with the cores it may run on now."""
    threads = {}
    for worker in psutil.Process(master_pid).children():
        for thread in worker.threads():
            threads[thread.id] = os.sched_getaffinity(thread.id)
    return threads


def worker_cores(master_pid: int) -> dict[int, set[int]]:
    """Each gunicorn worker (by pid) with the cores its main thread may run on now."""
    return {worker.pid: os.sched_getaffinity(worker.pid) for worker in psutil.Process(master_pid).children()}


def move_workers(master_pid: int, cores: dict[int, set[int]]) -> None:
    """Put every thread of each worker, those started since the last call too, on the worker's ``cores``."""
    # Threads are listed anew each time: gthread's pool and the runtimes start threads
    # under load, and one started while its worker was unpinned stays unpinned (a new
    # thread takes the cores of the thread that starts it).
    bench.set_thread_affinity({thread.id: cores[worker.pid] for worker in psutil.Process(master_pid).children()
                               if worker.pid in cores for thread in worker.threads()})


def main(argv: list[str] | None = None) -> int:
    """Serve the system, measure it pinned and unpinned in turn, print the rounds and the summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system", choices=("fleet", "floor"), help="which of the benchmark's systems")
    bench.add_model_arguments(parser)
    bench.add_load_arguments(parser, seconds=15.0)
    parser.set_defaults(rounds=3)
    args = parser.parse_args(argv)

    with bench.scratch_directory("bench-affinity-") as work:
        model_path, body, content_type = bench.model_and_body(args, work)
        ratios = measure(args, model_path, body, content_type)
    print(f"pinned / unpinned: {statistics.geometric_mean(ratios):.3f} (geometric mean of {len(ratios)} rounds, "
          f"{min(ratios):.3f}-{max(ratios):.3f})")
    return 0


def measure(args, model_path: Path, body: Path, content_type: str) -> list[float]:
    """Each round's pinned / unpinned requests/s of one running system (printed as it goes)."""
    every_core = os.sched_getaffinity(0)
    ratios = []
    with bench.Server(bench.APPS[args.system], bench.system_env(model_path, args.system), body, content_type,
                      args) as server:
        master = server.processes[0].pid
        pinned = worker_cores(master)
        print(f"{args.system}, {args.model}: {len(worker_threads(master))} worker threads, workers on cores "
              f"{sorted(tuple(sorted(cores)) for cores in pinned.values())}", flush=True)
        for number in range(args.rounds):
            rates = {}
            order = ("unpinned", "pinned") if number % 2 == 0 else ("pinned", "unpinned")
            for mode in order:
                move_workers(master, pinned if mode == "pinned" else dict.fromkeys(pinned, every_core))
                measured = bench.wrk(server.url, body, content_type, args.connections, args.seconds)
                rates[mode] = measured["requests_per_s"]
            ratios.append(rates["pinned"] / rates["unpinned"])
            print(f"round {number + 1}: unpinned {rates['unpinned']:.1f} req/s, pinned {rates['pinned']:.1f}, "
                  f"pinned / unpinned {ratios[-1]:.3f}", flush=True)
    return ratios


if __name__ == "__main__":
    sys.exit(main())
