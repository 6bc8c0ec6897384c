"""Per-request telemetry: ids, response tags, the Prometheus request series, the log line's fields.

One WSGI middleware around the Flask app does nearly all of it, reading and writing
the WSGI environ directly: five Flask hooks and werkzeug's header objects cost more
per request than a small model's share of a batched call (measured, README
"Benchmark"). Code inside the app leaves what the log line should carry in the
environ: the endpoint (one hook), :data:`BATCH_SIZE` and :data:`KEY_ID`.

Each request's JSON line is nginx's (``REQUEST_LOG=nginx``, the default): the app
hands its fields to nginx in :data:`LOG_HEADERS` on the response, which nginx logs
and strips (deploy/nginx/keras-fleet.conf), and writes a line of its own only for a
5xx. With ``REQUEST_LOG=app`` the app writes every request's line itself.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from flask import Flask, request

from api.headers import request_id_from, response_tags
from api.logs import log_fields
from api.metrics import Metrics

access_log = logging.getLogger("keras_fleet.access")

# What the app tells the log line, through the environ.
REQUEST_ID = "keras_fleet.request_id"
ENDPOINT = "keras_fleet.endpoint"
BATCH_SIZE = "keras_fleet.batch_size"
KEY_ID = "keras_fleet.key_id"

# Scrapes come every few seconds from the monitoring system: counted, but logged at debug
# (and not on nginx's monitoring listener).
QUIET_ENDPOINTS = frozenset({"metrics"})

# The response headers that carry the app's fields to nginx's log line (nginx strips them).
LOG_HEADERS = ("X-Fleet-Endpoint", "X-Fleet-Model", "X-Fleet-Batch-Size", "X-Fleet-Key-Id")


def install_telemetry(app: Flask, metrics: Metrics, model_name: str, model_version: str, request_log: str) -> None:
    """Wrap the app in :class:`RequestTelemetry` and have it note each request's endpoint."""

    @app.before_request
    def note_endpoint():
        request.environ[ENDPOINT] = request.endpoint

    app.wsgi_app = RequestTelemetry(app.wsgi_app, metrics, model_name, model_version, request_log)


class RequestTelemetry:
    """WSGI middleware: gives each request an id, tags its response, counts and times it, and
    logs it or hands nginx what to log (``request_log``: "nginx" or "app")."""

    def __init__(self, app: Callable, metrics: Metrics, model_name: str, model_version: str, request_log: str):
        self.app = app
        self.metrics = metrics
        self.model_name = model_name
        self.model_version = model_version
        self.nginx_logs = request_log == "nginx"
        self._in_flight = metrics.series(metrics.in_flight)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = environ[REQUEST_ID] = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        tags = response_tags(request_id, self.model_version)
        status = ["500"]

        def tagged_start_response(status_line, headers, exc_info=None):
            status[0] = status_line[:3]
            headers.extend(tags)
            if self.nginx_logs:
                self._add_log_headers(environ, headers)
            return start_response(status_line, headers, exc_info)

        self._in_flight.inc()
        try:
            return self.app(environ, tagged_start_response)
        finally:
            self._in_flight.dec()
            self._record(environ, int(status[0]), time.perf_counter() - started)

    def _add_log_headers(self, environ: dict, headers: list) -> None:
        """The app's fields of the request's line, for nginx to log (LOG_HEADERS)."""
        endpoint = _endpoint(environ)
        if endpoint in QUIET_ENDPOINTS:
            return
        headers.append(("X-Fleet-Endpoint", endpoint))
        headers.append(("X-Fleet-Model", self.model_name))
        batch_size = environ.get(BATCH_SIZE)
        if batch_size is not None:
            headers.append(("X-Fleet-Batch-Size", str(batch_size)))
        key_id = environ.get(KEY_ID)
        if key_id is not None:
            headers.append(("X-Fleet-Key-Id", key_id))

    def _record(self, environ: dict, status: int, elapsed: float) -> None:
        endpoint = _endpoint(environ)
        self.metrics.series(self.metrics.requests, endpoint, self.model_name, str(status)).inc()
        self.metrics.series(self.metrics.latency, endpoint, self.model_name).observe(elapsed)
        if status >= 500:
            level = logging.WARNING  # written by the app whoever logs the rest: its 5xx need its side
        elif self.nginx_logs:
            return
        else:
            level = logging.DEBUG if endpoint in QUIET_ENDPOINTS else logging.INFO
        if not access_log.isEnabledFor(level):
            return
        log_fields(access_log, level, "request", {
            "request_id": environ[REQUEST_ID],
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "endpoint": endpoint,
            "model": self.model_name,
            "status": status,
            "latency_ms": round(elapsed * 1000, 3),
            "batch_size": environ.get(BATCH_SIZE),
            "key_id": environ.get(KEY_ID),
            "client": environ.get("HTTP_X_REAL_IP") or environ.get("REMOTE_ADDR"),
            "forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
        })


def _endpoint(environ: dict) -> str:
    """The endpoint the request matched, as the note_endpoint hook left it ("unmatched" if none)."""
    return environ.get(ENDPOINT) or "unmatched"
