"""One of `make bench`'s systems, served until Ctrl-C, for a load generator of your own.

    .venv/bin/python scripts/bench_serve.py floor image
    .venv/bin/python scripts/bench_serve.py fleet image --image-dtype uint8

The system runs as `make bench` runs it: the same nginx + gunicorn configuration, model
and settings, warmed up the same way (wrk, 16 connections, 3 s). The body the benchmark
sends is written to a file, and the URL, the body and a command line for wrk (the
benchmark's own closed loop), hey and curl are printed: another load generator then
measures the very system the report measured. One system at a time, on one port.
Stopped, it removes the body's file and the stack's run directory (its logs).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import bench  # noqa: E402 (after the path above)


def load_commands(url: str, body: Path, content_type: str, connections: int) -> list[str]:
    """Command lines that send ``body`` to ``url`` as the benchmark does."""
    return [
        f"BENCH_BODY={body} BENCH_CONTENT_TYPE={content_type} wrk -t2 -c{connections} -d15s "
        f"-s {bench.WRK_SCRIPT} {url}",
        f"hey -z 15s -c {connections} -m POST -T {content_type} -D {body} {url}",
        f"curl -s {url} -H 'Content-Type: {content_type}' --data-binary @{body}",
    ]


def main(argv: list[str] | None = None) -> int:
    """Start the system, print how to load it, serve until SIGINT or SIGTERM, then stop it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("system", choices=sorted(bench.APPS), help="which of the benchmark's systems")
    bench.add_model_arguments(parser)
    parser.add_argument("--port", type=int, default=18080, help="the public port (the next one serves metrics)")
    parser.add_argument("--connections", type=int, default=16, help="the warm-up's connections, and the commands'")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of wrk load before serving")
    args = parser.parse_args(argv)

    with bench.scratch_directory("bench-serve-") as work:
        model_path, body, content_type = bench.model_and_body(args, work)
        serve(args, model_path, body, content_type)
    return 0


def serve(args, model_path: Path, body: Path, content_type: str) -> None:
    """Start the system, print how to load it, and serve until SIGINT or SIGTERM."""
    stop = threading.Event()
    env = bench.system_env(model_path, args.system)
    with bench.Server(bench.APPS[args.system], env, body, content_type, args) as server:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        print(f"serving {args.system} ({model_path.name}) at {server.url}", flush=True)
        print(f"  body: {body} ({content_type})", flush=True)
        for command in load_commands(server.url, body, content_type, args.connections):
            print(f"  {command}", flush=True)
        print("Ctrl-C stops it", flush=True)
        while not stop.wait(1):
            pass


if __name__ == "__main__":
    sys.exit(main())
