"""The HAProxy process in front of the local fleet, run from the fleet's directory.

Not Debian's haproxy service: the configuration is rendered from haproxy.cfg beside
this file into the run directory, and HAProxy runs in the foreground of its own
session with its log in ``logs/haproxy.log``, like the instances' nginx.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from localstack import pid_alive, read_pid, signal_and_wait
from render_nginx import render

from localfleet.health import HealthCheck
from localfleet.runtime import BalancerError, RuntimeAPI

TEMPLATE = Path(__file__).with_name("haproxy.cfg")
# How long a soft stop may take: the template's hard-stop-after, plus a margin.
STOP_TIMEOUT = 35


def haproxy_binary() -> str:
    """Debian's haproxy: on PATH, or in /usr/sbin (not on every user's PATH)."""
    return shutil.which("haproxy") or "/usr/sbin/haproxy"


class Balancer:
    """HAProxy listening on ``listen`` (host:port), with its admin socket in ``run_dir``."""

    def __init__(self, run_dir: Path, listen: str, health: HealthCheck):
        self.run_dir = run_dir
        self.listen = listen
        self.health = health
        self.config = run_dir / "haproxy.cfg"
        self.socket = run_dir / "haproxy.sock"
        self.pidfile = run_dir / "haproxy.pid"
        self.log = run_dir / "logs" / "haproxy.log"
        self.api = RuntimeAPI(self.socket)

    @property
    def url(self) -> str:
        """Where clients send their requests."""
        return f"http://{self.listen}"

    def write_config(self) -> Path:
        """Render the configuration into the run directory and return its path."""
        self.config.write_text(render(TEMPLATE.read_text(), {
            "SOCKET": self.socket,
            "LISTEN": self.listen,
            "CHECK_PATH": self.health.path,
            "CHECK_TIMEOUT": f"{round(self.health.timeout * 1000)}ms",
        }))
        return self.config

    def start(self, timeout: float = 15) -> None:
        """Check the configuration, start HAProxy and wait until its runtime API answers."""
        haproxy = haproxy_binary()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        config = str(self.write_config())
        check = subprocess.run([haproxy, "-c", "-q", "-f", config], capture_output=True, text=True)
        if check.returncode != 0:
            raise BalancerError(f"HAProxy rejected its configuration:\n{check.stdout}{check.stderr}")
        with open(self.log, "ab") as log:
            process = subprocess.Popen([haproxy, "-db", "-f", config], stdin=subprocess.DEVNULL, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.pidfile.write_text(f"{process.pid}\n")
        deadline = time.monotonic() + timeout
        while not self.api.available():
            if process.poll() is not None or time.monotonic() > deadline:
                raise BalancerError(f"HAProxy did not start on {self.listen}:\n{self._log_tail()}")
            time.sleep(0.1)

    def pid(self) -> int | None:
        """HAProxy's pid while it runs."""
        pid = read_pid(self.pidfile)
        return pid if pid and pid_alive(pid) else None

    def stop(self) -> None:
        """Soft stop: stop listening, let requests in flight finish, exit."""
        pid = self.pid()
        if pid:
            signal_and_wait(pid, signal.SIGUSR1, STOP_TIMEOUT)
        self.pidfile.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 15) -> str:
        if not self.log.exists():
            return "(no log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
