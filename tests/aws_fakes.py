"""Stand-ins for AWS in the image tests: a real moto_server on loopback, and a recorder
that catches any attempt to reach anything but loopback.

Nothing here contacts an address outside 127.0.0.0/8.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.stack import free_port

# Debian's account for its official cloud images: the Packer template's default owner.
DEBIAN_OWNER = "136693071363"
# Two official-looking Debian 12 images; the template must pick the newer one.
DEBIAN_AMIS = [
    {"ami_id": "ami-0debian12older000", "name": "debian-12-amd64-20240101-1000", "creation_date": "2024-01-01T10:00:00.000Z"},
    {"ami_id": "ami-0debian12newer000", "name": "debian-12-amd64-20250501-2000", "creation_date": "2025-05-01T20:00:00.000Z"},
]
NEWEST_DEBIAN_AMI = DEBIAN_AMIS[1]["ami_id"]


def write_debian_amis(path: Path) -> Path:
    """moto's AMI catalogue (MOTO_AMIS_PATH) holding only the Debian 12 images above."""
    amis = [
        {**ami, "description": "Debian 12 (bookworm)", "owner_id": DEBIAN_OWNER, "public": True,
         "virtualization_type": "hvm", "architecture": "x86_64", "state": "available", "platform": None,
         "image_type": "machine", "hypervisor": "xen", "root_device_name": "/dev/xvda",
         "root_device_type": "ebs", "sriov": "simple"}
        for ami in DEBIAN_AMIS
    ]
    path.write_text(json.dumps(amis))
    return path


class MotoServer:
    """moto_server on 127.0.0.1, with the Debian AMIs preloaded; stop() ends it."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "moto.log"
        env = dict(os.environ, MOTO_AMIS_PATH=str(write_debian_amis(workdir / "amis.json")))
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        self._wait(timeout=60)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with code {self.process.returncode}:\n{self.log.read_text()}")
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2).close()
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto_server did not answer within {timeout:.0f} s:\n{self.log.read_text()}")

    def ec2(self, region: str):
        """A boto3 EC2 client of this server."""
        import boto3

        return boto3.client("ec2", region_name=region, endpoint_url=self.url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def stop(self) -> None:
        """End the server."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class EgressRecorder:
    """An HTTP(S) proxy on loopback that forwards nothing: every request a client sends it
    (anything not for loopback, when HTTP(S)_PROXY point here) is recorded and refused.

    Go's and Python's HTTP clients never proxy loopback, so traffic to moto_server goes
    straight to it, and everything else ends here instead of leaving the machine.
    """

    def __init__(self):
        self.attempts: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def env(self) -> dict[str, str]:
        """Environment variables that send a client's non-loopback HTTP(S) here."""
        return {name: self.url for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")} | {
            "NO_PROXY": "", "no_proxy": ""}

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    first_line = conn.makefile("rb").readline().decode(errors="replace").strip()
                except OSError:
                    first_line = "(unreadable)"
                self.attempts.append(first_line)
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        """Stop listening."""
        self._server.close()
