"""A local fleet behind real HAProxy for tests, and a bounded load that records every answer.

The fleet is driven through scripts/localfleetctl.py exactly as `make fleet-up`,
`make roll-local` and `make fleet-down` drive it, on free loopback ports and a private
run directory.
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from tests.stack import REPO, free_port

SCRIPTS = REPO / "scripts"
# The tests read HAProxy's state through the fleet's own runtime API client.
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from localfleet.instances import Fleet  # noqa: E402
from localfleet.runtime import RuntimeAPI, ServerStat  # noqa: E402

LOCALFLEETCTL = SCRIPTS / "localfleetctl.py"
DIGIT = {"instances": [[[0, 0, 5, 13, 9, 1, 0, 0]] * 8]}

# Settings of every instance in the tests.
INSTANCE_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    # The machine is shared and slow: a generous deadline, so that overload shedding (a
    # 503 by design) is never mistaken for a failure of the roll.
    "REQUEST_DEADLINE_MS": "30000",
    # A gunicorn whose master is killed lets its worker finish for this long; short, so
    # the kill test sees the instance leave rotation in seconds, not half a minute.
    "GUNICORN_GRACEFUL_TIMEOUT": "5",
}


class RunningFleet:
    """A fleet started with `localfleetctl.py up`; down() runs `localfleetctl.py down`."""

    def __init__(self, run_dir: Path, check_interval: float = 1.0):
        self.run_dir = run_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.check_interval = check_interval
        self.env = {**os.environ, **INSTANCE_ENV}

    def command(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """Run one localfleetctl.py command against this fleet."""
        return subprocess.run(self._argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout)

    def start_command(self, *args: str) -> subprocess.Popen:
        """Start one localfleetctl.py command in the background; its progress is read from stdout."""
        return subprocess.Popen(self._argv(*args), env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, str(LOCALFLEETCTL), "--run-dir", str(self.run_dir), *args]

    def up(self, instances: int, model_path: Path, version: str) -> "RunningFleet":
        """Start the fleet and wait until every instance is healthy; fail with the output if not."""
        result = self.command(
            "up", "--instances", str(instances), "--port", str(self.port), "--instance-port", str(free_port()),
            "--metrics-port", str(free_port()), "--check-interval", str(self.check_interval),
            "--model-path", str(model_path), "--model-version", version,
        )
        assert result.returncode == 0, f"fleet did not start:\n{result.stdout}\n{result.stderr}"
        return self

    def roll(self, model_path: Path, version: str, *options: str) -> subprocess.CompletedProcess:
        """Roll the fleet, as `make roll-local` does."""
        return self.command("roll", "--model-path", str(model_path), "--model-version", version, *options)

    def start_roll(self, model_path: Path, version: str, *options: str) -> subprocess.Popen:
        """Roll the fleet in the background."""
        return self.start_command("roll", "--model-path", str(model_path), "--model-version", version, *options)

    def down(self) -> subprocess.CompletedProcess:
        """Stop everything, as `make fleet-down` does."""
        return self.command("down")

    def state(self) -> Fleet:
        """The fleet's state file: its instances and settings."""
        return Fleet.load(self.run_dir)

    @property
    def api(self) -> RuntimeAPI:
        """HAProxy's runtime API, through the fleet's own client."""
        return RuntimeAPI(self.run_dir / "haproxy.sock")

    def servers(self) -> dict[str, ServerStat]:
        """HAProxy's view of the instances."""
        return self.api.servers()

    def retries(self) -> int:
        """Requests HAProxy has replayed on another instance so far."""
        return self.api.backend_retries()

    def gunicorn_pid(self, name: str) -> int:
        """The pid of an instance's gunicorn master."""
        return int((self.run_dir / "instances" / name / "gunicorn.pid").read_text())


@dataclasses.dataclass(frozen=True)
class Answer:
    """One request of the load: when it ran, whether it succeeded, which version answered."""

    started: float  # time.monotonic()
    ended: float
    ok: bool
    version: str | None
    detail: str  # status code or exception, for failure messages


class Load:
    """Concurrent clients POSTing predictions through HAProxy, bounded in time and count.

    Each client keeps its own keep-alive session, as real clients do. Every request is
    recorded; a failure is any answer but 200, or no answer (connection error, timeout).
    """

    def __init__(self, url: str, clients: int = 4, max_seconds: float = 300, max_requests: int = 200_000):
        self.url = f"{url}/v1/models/digits:predict"
        self.clients = clients
        self.deadline = time.monotonic() + max_seconds
        self.max_requests = max_requests
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        self.wait_for_answers(20)  # the load is really flowing before the test acts
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the clients and wait until each has its last answer."""
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def wait_for_answers(self, count: int, timeout: float = 120) -> None:
        """Block until ``count`` more answers are in (the load keeps going meanwhile)."""
        target = len(self.answers) + count
        deadline = time.monotonic() + timeout
        while len(self.answers) < target and time.monotonic() < deadline and not self._stop.is_set():
            time.sleep(0.05)
        assert len(self.answers) >= target, f"the load got {len(self.answers)} answers, wanted {target}"

    def failures(self) -> list[Answer]:
        """Every request that did not get a 200."""
        return [answer for answer in self.answers if not answer.ok]

    def versions(self, started_after: float = 0.0) -> collections.Counter:
        """Model versions of the successful answers to requests sent after ``started_after``."""
        return collections.Counter(answer.version for answer in self.answers
                                   if answer.ok and answer.started > started_after)

    def _client(self) -> None:
        session = requests.Session()
        while not self._stop.is_set() and time.monotonic() < self.deadline and len(self.answers) < self.max_requests:
            started = time.monotonic()
            try:
                response = session.post(self.url, json=DIGIT, timeout=60)
                answer = Answer(started, time.monotonic(), response.status_code == 200,
                                response.headers.get("X-Model-Version"),
                                f"{response.status_code} {response.text[:200]}")
            except requests.RequestException as exc:
                answer = Answer(started, time.monotonic(), False, None, repr(exc))
            with self._lock:
                self.answers.append(answer)
        session.close()


class HeldPrediction:
    """A prediction sent through HAProxy with half its body: in flight on an instance until finish().

    HAProxy waits for a whole body before choosing an instance (http-buffer-request),
    unless the body outgrows its 16 KB buffer; this one does, so an instance has it.
    Until finish(), a byte of the padding goes out every second, as from a slow upload:
    a client silent for CLIENT_TIMEOUT_S (10 s) is cut off by nginx (HAProxy answers
    502), and a roll on a busy machine can take longer than that to reach the drain.
    """

    BODY_BYTES = 80_000  # JSON allows the whitespace that pads it
    TRICKLE_EVERY_S = 1.0

    def __init__(self, port: int):
        self.body = json.dumps(DIGIT).encode().ljust(self.BODY_BYTES)
        self.sent = len(self.body) // 2
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.connection.putrequest("POST", "/v1/models/digits:predict")
        self.connection.putheader("Content-Type", "application/json")
        self.connection.putheader("Content-Length", str(len(self.body)))
        self.connection.endheaders(self.body[:self.sent])
        self.finishing = threading.Event()
        self.trickle = threading.Thread(target=self._trickle, daemon=True)
        self.trickle.start()

    def _trickle(self) -> None:
        # Only padding (the last bytes are spaces), and never the last byte: finish() sends that.
        while not self.finishing.wait(self.TRICKLE_EVERY_S) and self.sent < len(self.body) - 1:
            self.connection.send(self.body[self.sent:self.sent + 1])
            self.sent += 1

    def finish(self) -> tuple[int, str | None]:
        """Send the rest of the body; the answer's status and model version."""
        self.finishing.set()
        self.trickle.join()
        try:
            self.connection.send(self.body[self.sent:])
            response = self.connection.getresponse()
            response.read()
            return response.status, response.headers.get("X-Model-Version")
        finally:
            self.connection.close()
