"""Headers every response carries: the request id and the served model's version."""

from __future__ import annotations

import re
import uuid

# A client-chosen id is echoed only if it is short and plain, so it cannot forge log lines.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(header: str | None) -> str:
    """Return the client's X-Request-ID when it is safe to echo, else a fresh one."""
    if header and REQUEST_ID_PATTERN.match(header):
        return header
    return uuid.uuid4().hex


def response_tags(request_id: str, model_version: str) -> list[tuple[str, str]]:
    """The headers added to every response (see api.telemetry, which adds them)."""
    return [("X-Request-ID", request_id), ("X-Model-Version", model_version)]
