"""HAProxy's runtime API over its admin socket: what the roll does to the load balancer.

Each method is a few runtime commands (HAProxy management guide, "Unix Socket commands").
Servers are named after the fleet's instances; the backend is ``instances``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import socket
import time
from pathlib import Path

from localfleet.health import HealthCheck

BACKEND = "instances"


class BalancerError(RuntimeError):
    """HAProxy refused a runtime command or could not start; the message says why."""


@dataclasses.dataclass(frozen=True)
class ServerStat:
    """One server's line of ``show stat``: what the load balancer thinks of an instance."""

    name: str
    status: str  # UP, DOWN, "UP 1/2" (going down), "DOWN 1/2" (going up), DRAIN, MAINT
    check: str  # last check, e.g. "L7OK/200", "L7STS/503", "L4CON", "L7TOUT"
    sessions: int  # requests on the server right now (scur)
    served: int  # requests sent to it so far (stot)

    @property
    def healthy(self) -> bool:
        """In rotation: up by its checks and not drained or in maintenance."""
        return self.status == "UP"


class RuntimeAPI:
    """Commands to one HAProxy through its ``stats socket ... level admin``."""

    def __init__(self, socket_path: Path):
        self.socket_path = socket_path

    def command(self, line: str) -> str:
        """Send one command and return HAProxy's whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(str(self.socket_path))
            conn.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := conn.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode(errors="replace")

    def available(self) -> bool:
        """True when HAProxy answers on the socket."""
        try:
            return "Name: HAProxy" in self.command("show info")
        except OSError:
            return False

    def stat_rows(self) -> list[dict[str, str]]:
        """The backend's lines of ``show stat`` (its servers and its BACKEND total), by column name."""
        rows = csv.DictReader(io.StringIO(self.command("show stat").lstrip("# ")))
        return [row for row in rows if row["pxname"] == BACKEND]

    def servers(self) -> dict[str, ServerStat]:
        """The backend's servers by name."""
        return {
            row["svname"]: ServerStat(
                name=row["svname"], status=row["status"], sessions=int(row["scur"] or 0),
                served=int(row["stot"] or 0),
                # "* " marks a check in progress; the last result is what follows it.
                check="/".join(part for part in (row["check_status"].lstrip("* "), row["check_code"]) if part) or "-",
            )
            for row in self.stat_rows()
            if row["svname"] != "BACKEND"
        }

    def backend_retries(self) -> int:
        """Requests the backend retried or redispatched to another instance, so far."""
        (total,) = (row for row in self.stat_rows() if row["svname"] == "BACKEND")
        return int(total["wretr"] or 0) + int(total["wredis"] or 0)

    def add(self, name: str, address: str, health: HealthCheck) -> None:
        """Add a server that stays out of rotation until it passes ``rise`` checks in a row.

        A new server leaves maintenance "up, going down" and would take traffic before
        its first check. It leaves through drain instead (no new requests), is forced
        down there, and only then made ready: it has to earn its place by its checks,
        as a new target does in an AWS target group (state "initial").
        """
        self._expect(f"add server {BACKEND}/{name} {address} {health.server_options()}", "New server registered")
        self._expect(f"enable health {BACKEND}/{name}", "")
        self._expect(f"set server {BACKEND}/{name} state drain", "")
        self._expect(f"set server {BACKEND}/{name} health down", "")
        self._expect(f"set server {BACKEND}/{name} state ready", "")

    def drain(self, name: str) -> None:
        """Take the server out of load balancing; its requests in flight go on."""
        self._expect(f"set server {BACKEND}/{name} state drain", "")

    def maintenance(self, name: str) -> None:
        """No traffic and no health checks: the server is about to go."""
        self._expect(f"set server {BACKEND}/{name} state maint", "")

    def delete(self, name: str, timeout: float = 30) -> None:
        """Remove a server in maintenance, waiting for HAProxy to let go of its idle connections."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.command(f"del server {BACKEND}/{name}").strip()
            if answer.startswith("Server deleted") or "No such server" in answer:
                return
            if time.monotonic() > deadline:
                raise BalancerError(f"del server {name}: {answer}")
            time.sleep(0.2)

    def _expect(self, line: str, wanted: str) -> None:
        """Run a command whose answer must start with ``wanted`` (empty: must be empty)."""
        answer = self.command(line).strip()
        if not answer.startswith(wanted) or (not wanted and answer):
            raise BalancerError(f"HAProxy refused {line!r}: {answer}")
