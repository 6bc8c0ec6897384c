"""Start and stop the real local stack (nginx + gunicorn) for end-to-end tests.

Uses scripts/localstack.py exactly as `make up` / `make down` do, on a free
loopback port and a private run directory.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
LOCALSTACK = REPO / "scripts" / "localstack.py"
DIGITS = REPO / "models" / "digits.keras"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RunningStack:
    """A local stack started with `localstack.py up`; stop() runs `localstack.py down`."""

    def __init__(self, run_dir: Path, env: dict[str, str]):
        self.run_dir = run_dir
        self.port = free_port()
        self.metrics_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
        self.session = requests.Session()

    def command(self, name: str, timeout: float = 240) -> subprocess.CompletedProcess:
        """Run one localstack.py command against this stack."""
        return subprocess.run(
            [sys.executable, str(LOCALSTACK), name, "--run-dir", str(self.run_dir), "--port", str(self.port),
             "--metrics-port", str(self.metrics_port)],
            env=self.env, capture_output=True, text=True, timeout=timeout,
        )

    def start(self) -> "RunningStack":
        """Start in the background and wait until ready; fail with the logs if it cannot."""
        result = self.command("up")
        assert result.returncode == 0, f"stack did not start:\n{result.stdout}\n{result.stderr}"
        return self

    def stop(self) -> subprocess.CompletedProcess:
        """Stop gracefully, as `make down` does."""
        return self.command("down")

    def pid(self, name: str) -> int:
        """The pid of the 'nginx' or 'gunicorn' master, from its pid file."""
        return int((self.run_dir / f"{name}.pid").read_text())

    def post(self, path: str, **kwargs) -> requests.Response:
        """POST through nginx."""
        return self.session.post(self.url + path, timeout=60, **kwargs)

    def get(self, path: str, **kwargs) -> requests.Response:
        """GET through nginx."""
        return self.session.get(self.url + path, timeout=60, **kwargs)

    def metrics(self) -> str:
        """Prometheus text from the monitoring listener."""
        response = requests.get(self.metrics_url, timeout=10)
        response.raise_for_status()
        return response.text

    def access_log(self) -> list[str]:
        """nginx's JSON access log lines so far."""
        return self._log("access.log")

    def app_log(self) -> list[str]:
        """The app's and gunicorn's JSON log lines so far."""
        return self._log("app.log")

    def stderr_log(self) -> list[str]:
        """What the processes wrote to stderr past logging."""
        return self._log("stderr.log")

    def wait_for_log(self, text: str, count: int, seconds: float = 60) -> bool:
        """Wait until ``text`` is in ``count`` lines of the app's log (lines below WARNING
        leave each worker about every 0.5 s)."""
        return wait_for(lambda: sum(text in line for line in self.app_log()) >= count, timeout=seconds)

    def served_socket(self, worker: int) -> str | None:
        """The socket of its own that gunicorn worker ``worker`` serves, from its log line;
        None until it serves one."""
        marker = f"Worker {worker} serves slot"
        line = next((line for line in self.app_log() if marker in line), None)
        return json.loads(line)["message"].rsplit(" at ", 1)[1] if line else None

    def _log(self, name: str) -> list[str]:
        log = self.run_dir / "logs" / name
        return log.read_text().splitlines() if log.exists() else []


def wait_for(condition, timeout: float = 20.0, interval: float = 0.1) -> bool:
    """Check ``condition`` until it holds (True) or ``timeout`` seconds pass (False).

    True as soon as one check passes, without checking again: a check may be a scrape
    or a request, and the next one can be answered by another worker.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def start_digits_stack(run_dir: Path, workers: int, **settings: str) -> RunningStack:
    """The demo model behind real nginx and gunicorn, started and ready; stop() it when done.
    ``settings`` are more environment settings (api/config.py's)."""
    assert DIGITS.is_file(), "the demo model is missing: `make test` trains it first"
    # A generous deadline: on a busy shared machine, overload shedding (a 503 by design,
    # tested on its own) must not be mistaken for the failures these tests look for.
    env = {"MODEL_PATH": str(DIGITS), "WEB_CONCURRENCY": str(workers), "REQUEST_DEADLINE_MS": "30000", **settings}
    stack = RunningStack(run_dir, env).start()
    # Ready means one worker serves; tests that stop or kill workers want them all serving.
    if not stack.wait_for_log("serves slot", count=workers):
        stack.stop()
        raise AssertionError(f"not all {workers} workers serve their sockets:\n" + "\n".join(stack.app_log()[-20:]))
    return stack
