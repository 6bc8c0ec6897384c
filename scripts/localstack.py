#!/usr/bin/env python3
"""Run Keras Fleet's stack locally: real nginx in front of real gunicorn, from a directory.

    python scripts/localstack.py serve   # foreground; Ctrl-C stops both servers gracefully
    python scripts/localstack.py up      # background, pid files in RUN_DIR; waits until ready
    python scripts/localstack.py down    # graceful stop of a background stack
    python scripts/localstack.py status

Settings of the app and gunicorn come from the environment (api/config.py); the
stack's own are the options below. Nothing outside --run-dir is written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from render_nginx import render, site_values

from api.config import Config

REPO = Path(__file__).resolve().parent.parent
NGINX_DIR = REPO / "deploy" / "nginx"
GUNICORN_CONF = REPO / "deploy" / "gunicorn.conf.py"


class StackError(RuntimeError):
    """The stack could not start or stop; the message says why."""


class LocalStack:
    """nginx + gunicorn, configured and run from one directory."""

    def __init__(self, run_dir: Path, host: str, port: int, metrics_port: int | None = None,
                 app: str = "api.wsgi:app", env: dict[str, str] | None = None):
        # app: the WSGI target; `make bench` runs its comparison apps (scripts/bench_apps.py)
        # in this same stack.
        # env: settings of this stack on top of the caller's environment; the local fleet
        # (scripts/localfleet/) runs instances of different models from one process.
        self.run_dir = run_dir.resolve()
        self.app = app
        self.host = host
        self.port = port
        self.env = dict(env or {})
        self.config = Config.from_env({**os.environ, **self.env})
        self.metrics_port = metrics_port or self.config.metrics_port
        self.metrics_dir = self.run_dir / "prometheus"
        self.logs = self.run_dir / "logs"
        self.socket = self.run_dir / "gunicorn.sock"
        self.gunicorn_pidfile = self.run_dir / "gunicorn.pid"
        self.nginx_pidfile = self.run_dir / "nginx.pid"
        self.tmp_dir = self.run_dir / "tmp"

    @property
    def url(self) -> str:
        """Base URL of the public listener."""
        return f"http://{self.host}:{self.port}"

    def write_configs(self) -> Path:
        """Render nginx's main config and the site into the run directory; return the main one."""
        for path in (self.logs, *(self.run_dir / "nginx-tmp" / d for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))):
            path.mkdir(parents=True, exist_ok=True)
        headers = self.run_dir / "keras-fleet-headers.conf"
        headers.write_text((NGINX_DIR / "keras-fleet-headers.conf").read_text())
        site = render(
            (NGINX_DIR / "keras-fleet.conf").read_text(),
            site_values(
                self.config,
                listen=f"{self.host}:{self.port}",
                metrics_listen=f"{self.host}:{self.metrics_port}",
                upstream=f"unix:{self.socket}",
                access_log=str(self.logs / "access.log"),
                error_log=str(self.logs / "nginx-error.log"),
                headers_file=str(headers),
            ),
        )
        (self.run_dir / "keras-fleet.conf").write_text(site)
        # As root, nginx would run its workers as "nobody", who cannot open the socket
        # gunicorn (also root here) creates; locally the workers keep the caller's user.
        user = "user root root;" if os.geteuid() == 0 else ""
        main = render((NGINX_DIR / "nginx.conf").read_text(), {"RUN_DIR": self.run_dir, "USER_DIRECTIVE": user})
        conf = self.run_dir / "nginx.conf"
        conf.write_text(main)
        return conf

    def start(self, foreground: bool) -> list[subprocess.Popen]:
        """Start gunicorn, then nginx; return both processes (gunicorn first)."""
        self._check_port_free()
        conf = self.write_configs()
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        test = subprocess.run([nginx, "-t", "-q", "-p", str(self.run_dir), "-c", str(conf), "-e", str(self.logs / "nginx-error.log")],
                              capture_output=True, text=True)
        if test.returncode != 0:
            raise StackError(f"nginx rejected its configuration:\n{test.stderr}")
        # The stack's own temporary directory, emptied at each start, as systemd's
        # PrivateTmp is on the VM: TensorFlow writes a source file per traced function
        # there and deletes it when the worker exits, but not when it is killed.
        shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self.tmp_dir.mkdir(parents=True)
        env = dict(
            os.environ,
            **self.env,
            TMPDIR=str(self.tmp_dir),
            GUNICORN_BIND=f"unix:{self.socket}",
            PROMETHEUS_MULTIPROC_DIR=str(self.metrics_dir),
            PYTHONUNBUFFERED="1",
        )
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # Background: JSON log lines (app and gunicorn) to app.log; anything written to
        # stderr past logging (native code outside the start-up lines the app re-logs as
        # JSON, a crash's trace) to stderr.log, so app.log stays one JSON object per line.
        stdout = None if foreground else open(self.logs / "app.log", "ab")
        stderr = None if foreground else open(self.logs / "stderr.log", "ab")
        gunicorn = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "--pid", str(self.gunicorn_pidfile),
             *(["--pythonpath", str(REPO / "scripts")] if self.app.startswith("bench_apps:") else []), self.app],
            cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True,  # Ctrl-C reaches only the supervisor, which stops gracefully
        )
        nginx_proc = subprocess.Popen(
            [nginx, "-p", str(self.run_dir), "-c", str(conf), "-e", str(self.logs / "nginx-error.log"), "-g", "daemon off;"],
            stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True,
        )
        return [gunicorn, nginx_proc]

    def wait_ready(self, processes: list[subprocess.Popen], timeout: float) -> None:
        """Poll /healthz/ready through nginx until 200; fail fast if a server exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, name in zip(processes, ("gunicorn", "nginx")):
                if proc.poll() is not None:
                    raise StackError(f"{name} exited with code {proc.returncode} while starting{self._log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.2)
        raise StackError(f"not ready after {timeout:.0f} s{self._log_tail()}")

    def is_ready(self) -> bool:
        """True when GET /healthz/ready answers 200 through nginx."""
        try:
            with urllib.request.urlopen(f"{self.url}/healthz/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def running_pids(self) -> dict[str, int]:
        """Live pids from the pid files, by server name."""
        pids = {}
        for name, pidfile in (("nginx", self.nginx_pidfile), ("gunicorn", self.gunicorn_pidfile)):
            pid = read_pid(pidfile)
            if pid and pid_alive(pid):
                pids[name] = pid
        return pids

    def stop(self, pids: dict[str, int]) -> None:
        """Stop gracefully: nginx first (it stops accepting and finishes what it has, which
        gunicorn still serves), then gunicorn (TERM lets in-flight requests finish)."""
        grace = self.config.graceful_timeout + 5
        if "nginx" in pids:
            signal_and_wait(pids["nginx"], signal.SIGQUIT, grace)
        if "gunicorn" in pids:
            signal_and_wait(pids["gunicorn"], signal.SIGTERM, grace)
        for pidfile in (self.nginx_pidfile, self.gunicorn_pidfile):
            pidfile.unlink(missing_ok=True)

    def _check_port_free(self) -> None:
        for port, variable in ((self.port, "PORT"), (self.metrics_port, "METRICS_PORT")):
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((self.host, port))
                except OSError:
                    raise StackError(f"{self.host}:{port} is in use; stop what holds it or set {variable}=...") from None

    def _log_tail(self) -> str:
        parts = []
        for log in (self.logs / "app.log", self.logs / "stderr.log", self.logs / "nginx-error.log"):
            if log.exists() and log.stat().st_size:
                lines = log.read_text(errors="replace").splitlines()[-15:]
                parts.append(f"\n--- last lines of {log} ---\n" + "\n".join(lines))
        return "".join(parts)


def read_pid(pidfile: Path) -> int | None:
    """The pid in a pid file, or None when there is no readable one."""
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie (ours is reaped, another's only waits)."""
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child (serve mode)
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def signal_and_wait(pid: int, sig: signal.Signals, timeout: float) -> None:
    """Send sig, wait up to timeout for the process to exit, then SIGKILL its group."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    print(f"pid {pid} ignored {sig.name} for {timeout:.0f} s; killing it", file=sys.stderr)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def serve(stack: LocalStack, timeout: float) -> int:
    """Run both servers in the foreground until Ctrl-C or SIGTERM, then stop them gracefully."""
    stopping = []
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    processes = stack.start(foreground=True)
    pids = {"gunicorn": processes[0].pid, "nginx": processes[1].pid}
    try:
        stack.wait_ready(processes, timeout)
        print(f"Keras Fleet is serving {stack.config.served_name!r} on {stack.url}  (Ctrl-C stops)", flush=True)
        while not stopping:
            if any(proc.poll() is not None for proc in processes):
                print("a server exited on its own; stopping the other", file=sys.stderr)
                stack.stop(pids)
                return 1
            time.sleep(0.2)
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        stack.stop(pids)
        return 1
    print("stopping: nginx finishes its requests, then gunicorn", flush=True)
    stack.stop(pids)
    return 0


def up(stack: LocalStack, timeout: float) -> int:
    """Start the stack in the background and wait until it is ready."""
    if stack.running_pids():
        print(f"already up on {stack.url} (make down stops it)")
        return 0
    processes = stack.start(foreground=False)
    try:
        stack.wait_ready(processes, timeout)
    except StackError as exc:
        stack.stop({"gunicorn": processes[0].pid, "nginx": processes[1].pid})
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"up: {stack.config.served_name!r} on {stack.url}; logs in {stack.logs}")
    return 0


def down(stack: LocalStack) -> int:
    """Stop a background stack gracefully."""
    pids = stack.running_pids()
    if not pids:
        print("not running")
        return 0
    stack.stop(pids)
    print("down")
    return 0


def status(stack: LocalStack) -> int:
    """Print which servers run and whether the stack is ready; exit 1 unless ready."""
    pids = stack.running_pids()
    ready = stack.is_ready()
    print(f"nginx: {pids.get('nginx', 'stopped')}  gunicorn: {pids.get('gunicorn', 'stopped')}  "
          f"ready: {'yes' if ready else 'no'}  ({stack.url})")
    return 0 if ready else 1


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("serve", "up", "down", "status"))
    parser.add_argument("--run-dir", type=Path, default=REPO / "run", help="configs, sockets, pids and logs")
    parser.add_argument("--host", default="127.0.0.1", help="address nginx listens on")
    parser.add_argument("--port", type=int, default=8080, help="port nginx listens on")
    parser.add_argument("--metrics-port", type=int, help="nginx's monitoring port (default: METRICS_PORT)")
    parser.add_argument("--ready-timeout", type=float, default=180, help="seconds to wait for /healthz/ready")
    args = parser.parse_args(argv)
    try:
        stack = LocalStack(args.run_dir, args.host, args.port, args.metrics_port)
        if args.command == "serve":
            return serve(stack, args.ready_timeout)
        if args.command == "up":
            return up(stack, args.ready_timeout)
        if args.command == "down":
            return down(stack)
        return status(stack)
    except (StackError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
