"""Per-request telemetry: ids, response tags, the Prometheus request series, one JSON log line.

One WSGI middleware around the Flask app does nearly all of it, reading and writing
the WSGI environ directly: five Flask hooks and werkzeug's header objects cost more
per request than a small model's share of a batched call (measured, README
"Benchmark"). Code inside the app leaves what the log line should carry in the
environ: the endpoint (one hook), :data:`BATCH_SIZE` and :data:`KEY_ID`.
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

# Scrapes come every few seconds from the monitoring system: counted, but logged at debug.
QUIET_ENDPOINTS = frozenset({"metrics"})


def install_telemetry(app: Flask, metrics: Metrics, model_name: str, model_version: str) -> None:
    """Wrap the app in :class:`RequestTelemetry` and have it note each request's endpoint."""

    @app.before_request
    def note_endpoint():
        request.environ[ENDPOINT] = request.endpoint

    app.wsgi_app = RequestTelemetry(app.wsgi_app, metrics, model_name, model_version)


class RequestTelemetry:
    """WSGI middleware: gives each request an id, tags its response, counts, times and logs it."""

    def __init__(self, app: Callable, metrics: Metrics, model_name: str, model_version: str):
        self.app = app
        self.metrics = metrics
        self.model_name = model_name
        self.model_version = model_version
        self._in_flight = metrics.series(metrics.in_flight)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = environ[REQUEST_ID] = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        tags = response_tags(request_id, self.model_version)
        status = ["500"]

        def tagged_start_response(status_line, headers, exc_info=None):
            status[0] = status_line[:3]
            headers.extend(tags)
            return start_response(status_line, headers, exc_info)

        self._in_flight.inc()
        try:
            return self.app(environ, tagged_start_response)
        finally:
            self._in_flight.dec()
            self._record(environ, int(status[0]), time.perf_counter() - started)

    def _record(self, environ: dict, status: int, elapsed: float) -> None:
        endpoint = environ.get(ENDPOINT) or "unmatched"
        self.metrics.series(self.metrics.requests, endpoint, self.model_name, str(status)).inc()
        self.metrics.series(self.metrics.latency, endpoint, self.model_name).observe(elapsed)
        level = logging.DEBUG if endpoint in QUIET_ENDPOINTS else logging.INFO
        if status >= 500:
            level = logging.WARNING
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
