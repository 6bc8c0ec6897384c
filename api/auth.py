"""API keys: `Authorization: Bearer <key>`, checked against hashed keys in a file.

A key looks like ``kf_<id>_<secret>``. The file (API_KEYS_FILE, written by
scripts/api_keys.py) holds one line per key: its id, the SHA-256 of the whole key,
when it was made and a label. The key itself is never stored or logged; the id is
logged with each request. The file is re-read when it changes, so a revoked key
stops working within a second, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import time
from pathlib import Path

from api.errors import Forbidden, Unauthorized

KEY_PATTERN = re.compile(r"^kf_([0-9a-f]{8})_[A-Za-z0-9_-]{20,100}$")
RECHECK_SECONDS = 1.0


def key_digest(key: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def read_keys_file(path: Path) -> dict[str, str]:
    """{key id: digest} from a keys file; comment and blank lines are skipped."""
    keys = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) < 2 or not re.fullmatch(r"[0-9a-f]{8}", fields[0]) or not re.fullmatch(r"[0-9a-f]{64}", fields[1]):
            raise ValueError(f"{path}:{number}: expected '<8-hex id> <sha256 hex> [created] [label]'")
        keys[fields[0]] = fields[1]
    return keys


class ApiKeys:
    """The valid keys, from a file that may change while the server runs."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"API_KEYS_FILE {str(self.path)!r} does not exist; create keys with scripts/api_keys.py")
        self._lock = threading.Lock()
        self._keys = read_keys_file(self.path)
        self._stamp = self._file_stamp()
        self._checked = time.monotonic()

    def authenticate(self, authorization: str | None) -> str:
        """Return the id of the key in an Authorization header; raise 401 or 403 if none is valid."""
        if not authorization:
            raise Unauthorized("this endpoint needs an API key: send Authorization: Bearer <key>")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise Unauthorized("send the API key as Authorization: Bearer <key>")
        key = key.strip()
        match = KEY_PATTERN.match(key)
        digest = self._current().get(match.group(1)) if match else None
        # compare_digest: the time taken does not tell an attacker how much of a digest matched.
        if digest is None or not hmac.compare_digest(digest, key_digest(key)):
            raise Forbidden("the API key is not valid (wrong, revoked or mistyped)")
        return match.group(1)

    def _current(self) -> dict[str, str]:
        now = time.monotonic()
        if now - self._checked >= RECHECK_SECONDS:
            with self._lock:
                self._checked = now
                stamp = self._file_stamp()
                if stamp != self._stamp:
                    try:
                        self._keys, self._stamp = read_keys_file(self.path), stamp
                    except (OSError, ValueError):
                        # A half-written or removed file: no key is valid until it is fixed
                        # (failing closed beats serving with revoked keys).
                        self._keys, self._stamp = {}, stamp
        return self._keys

    def _file_stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size


# The model endpoints need a key; health checks (load balancer) and metrics (their own
# port) stay open.
PROTECTED_ENDPOINTS = frozenset({"predict", "model_status", "model_metadata"})


def install_authentication(app, api_keys: ApiKeys) -> None:
    """Require a valid API key on the model endpoints; remember its id for the request log."""
    from flask import request

    from api.telemetry import KEY_ID

    @app.before_request
    def require_api_key():
        if request.endpoint in PROTECTED_ENDPOINTS:
            request.environ[KEY_ID] = api_keys.authenticate(request.headers.get("Authorization"))
