"""Headers every response carries: the request id and the served model's version."""

from __future__ import annotations

import re
import uuid

from flask import Flask, g, request

# A client-chosen id is echoed only if it is short and plain, so it cannot forge log lines.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(header: str | None) -> str:
    """Return the client's X-Request-ID when it is safe to echo, else a fresh one."""
    if header and REQUEST_ID_PATTERN.match(header):
        return header
    return uuid.uuid4().hex


def install_response_headers(app: Flask, model) -> None:
    """Give each request an id (nginx's, the client's, or a new one) and tag every response."""

    @app.before_request
    def assign_request_id():
        g.request_id = request_id_from(request.headers.get("X-Request-ID"))

    @app.after_request
    def tag_response(response):
        # g.request_id is missing only if the request failed before before_request ran.
        response.headers["X-Request-ID"] = g.get("request_id") or request_id_from(request.headers.get("X-Request-ID"))
        response.headers["X-Model-Version"] = model.version
        return response
