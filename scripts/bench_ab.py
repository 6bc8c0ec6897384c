"""Two systems measured at the same time, each on a core of its own: a ratio that drift cannot move.

    .venv/bin/python scripts/bench_ab.py floor fleet
    .venv/bin/python scripts/bench_ab.py fleet "fleet REQUEST_LOG=app" --rounds 8
    .venv/bin/python scripts/bench_ab.py fleet "bench_apps:fleet_without('telemetry')"

`make bench` runs its systems one after the other, and this shared machine's speed
drifts 10-30% between runs, so a change of a few percent is lost in it. Here both
systems run at once: each one's nginx, gunicorn (one worker by default) and wrk are
pinned to one core, the other system's to the other, and the cores are swapped every
round so that neither system keeps the faster one. Each round prints B's requests/s
over A's; the summary is their geometric mean. Measured here: two starts of the same
code agree within about 3%, rounds of one start within about 2%. A system is
``APP [NAME=VALUE ...]``: floor, naive, fleet or a ``bench_apps:`` app, with
environment settings of its own (api/config.py's). Only the small (digits) model.
It measures one core per system: what a small model costs per request, not the
machine's capacity, which `make bench` reports.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import bench  # noqa: E402 (after the path above)


def parse_system(text: str) -> tuple[str, dict[str, str]]:
    """``"fleet LOG_LEVEL=warning"`` -> ("api.wsgi:app", {"LOG_LEVEL": "warning"})."""
    app, *settings = text.split()
    bad = [setting for setting in settings if "=" not in setting]
    if bad:
        raise ValueError(f"{bad[0]!r} is not NAME=VALUE; a system is APP [NAME=VALUE ...]")
    return bench.APPS.get(app, app), dict(setting.split("=", 1) for setting in settings)


def pin(processes: list, cpu: int) -> None:
    """Move every thread of ``processes`` and of their children to ``cpu``."""
    family = [psutil.Process(process.pid) for process in processes]
    family += [child for process in family for child in process.children(recursive=True)]
    bench.set_thread_affinity({thread.id: {cpu} for member in family for thread in member.threads()})


def measure_round(servers: list, cpus: tuple[int, int], body: Path, content_type: str, args) -> list[dict]:
    """Both systems under wrk at once, system i and its wrk on cpus[i]."""
    for server, cpu in zip(servers, cpus):
        pin(server.processes, cpu)
    results: list[dict] = [{}, {}]

    def load(index: int) -> None:
        os.sched_setaffinity(0, {cpus[index]})  # this thread's, which wrk inherits
        results[index] = bench.wrk(servers[index].url, body, content_type, args.connections, args.seconds)

    threads = [threading.Thread(target=load, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main(argv: list[str] | None = None) -> int:
    """Start both systems, measure them side by side, print each round and the summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="the reference system: APP [NAME=VALUE ...]")
    parser.add_argument("b", help="the system compared with it")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers of each system")
    bench.add_load_arguments(parser, seconds=6.0)
    parser.set_defaults(connections=8, warmup=2.0, rounds=6)  # the cores swap every round
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        parser.error("needs two cores, one per system")
    cores = tuple(sorted(os.sched_getaffinity(0))[:2])
    systems = [parse_system(args.a), parse_system(args.b)]
    os.chdir(REPO)
    with bench.scratch_directory("bench-ab-") as work:
        ratios = compare(systems, cores, *bench.request_body("small", work), args)
    print(f"B/A: {statistics.geometric_mean(ratios):.3f} (geometric mean of {len(ratios)} rounds, "
          f"{min(ratios):.3f}-{max(ratios):.3f})")
    return 0


def compare(systems: list, cores: tuple[int, int], body: Path, content_type: str, args) -> list[float]:
    """B / A requests/s of each round, the two systems served side by side (printed as it goes)."""
    servers = []
    try:
        for index, (app, settings) in enumerate(systems):
            # One core per system: LiteRT's and TensorFlow's thread pools sized for one, as
            # `cores / workers` would size them on a machine of that core (pinned only once
            # started, the workers would otherwise see both and spin a pool thread on one).
            env = {"MODEL_PATH": str(REPO / bench.SMALL_MODEL), "WEB_CONCURRENCY": str(args.workers),
                   "TF_INTRA_OP_THREADS": "1", **settings}
            port_args = argparse.Namespace(**{**vars(args), "port": args.port + 10 * index})
            servers.append(bench.Server(app, env, body, content_type, port_args).__enter__())
        ratios = []
        for round_number in range(args.rounds):
            cpus = cores if round_number % 2 == 0 else cores[::-1]
            a, b = measure_round(servers, cpus, body, content_type, args)
            ratios.append(b["requests_per_s"] / a["requests_per_s"])
            print(f"round {round_number + 1} (A on cpu {cpus[0]}): A {a['requests_per_s']:.0f} req/s, "
                  f"B {b['requests_per_s']:.0f} req/s, B/A {ratios[-1]:.3f}", flush=True)
    finally:
        for server in servers:
            server.__exit__()
    return ratios


if __name__ == "__main__":
    sys.exit(main())
