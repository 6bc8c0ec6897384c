"""The request id every response carries: the client's when safe to echo, else a fresh one."""

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

