"""CPU per request of the floor and of Keras Fleet's app, in one process, without HTTP.

    .venv/bin/python scripts/bench_request_cpu.py [--requests 3000]

Calls each WSGI app directly with one digits request at a time, from 1 and from 8
threads (gunicorn's threads per worker), and prints CPU microseconds per request: what
the app itself costs beyond the floor's Flask-RESTful answer, apart from nginx,
gunicorn and the load generator. docs/benchmark-history.md quotes it.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def environ(body: bytes) -> dict:
    """A WSGI environ of one JSON predict request, as gunicorn would build it."""
    return {"REQUEST_METHOD": "POST", "PATH_INFO": "/predict", "SERVER_NAME": "bench", "SERVER_PORT": "80",
            "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json",
            "wsgi.url_scheme": "http", "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
            "HTTP_X_REQUEST_ID": "bench", "wsgi.errors": sys.stderr}


def cpu_per_request(app, body: bytes, threads: int, requests: int) -> float:
    """CPU microseconds per request with ``threads`` threads calling ``app`` at once."""
    def call(count: int) -> None:
        for _ in range(count):
            b"".join(app(environ(body), lambda status, headers, exc_info=None: None))

    call(200)  # warm-up
    started = time.process_time()
    workers = [threading.Thread(target=call, args=(requests,)) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return 1e6 * (time.process_time() - started) / (requests * threads)


def main() -> int:
    """Measure the floor and the fleet, at 1 and 8 threads."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per thread")
    args = parser.parse_args()
    sys.path[:0] = [str(REPO), str(REPO / "scripts")]
    os.chdir(REPO)
    import bench

    os.environ.setdefault("MODEL_PATH", bench.SMALL_MODEL)
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as metrics:
        os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", metrics)
        results = measure(args)
    for label, micros in results.items():
        print(f"{label:<22} {micros:7.1f} us CPU per request")
    return 0


def measure(args) -> dict[str, float]:
    """CPU microseconds per request of each app, at 1 and 8 threads."""
    os.environ.setdefault("TF_INTRA_OP_THREADS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from sklearn.datasets import load_digits

    import bench_apps
    from api.app import create_app

    body = json.dumps({"instances": [load_digits().images[0].tolist()]}).encode()
    apps = {"floor": bench_apps.floor(), "fleet": create_app()}
    # The app's log handler writes to whatever sys.stdout is: its lines are written,
    # as in production, but to nowhere.
    sys.stdout = open(os.devnull, "w")
    results = {f"{name}, {threads} thread(s)": round(cpu_per_request(app, body, threads, args.requests), 1)
               for threads in (1, 8) for name, app in apps.items()}
    logging.getLogger().handlers[0].flush()  # the lines still waiting, to nowhere too
    sys.stdout = sys.__stdout__
    return results


if __name__ == "__main__":
    sys.exit(main())
