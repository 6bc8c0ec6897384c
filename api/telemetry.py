"""Per-request telemetry: ids, response tags, the Prometheus request series, the log line's fields.

One WSGI middleware around the Flask app does all of it, reading and writing the
WSGI environ directly: Flask hooks and werkzeug's header objects cost more per
request than a small model's share of a batched call (measured,
docs/benchmark-history.md). The endpoint is read from the rule Flask matched; code
inside the app leaves the rest of what the log line should carry in the environ:
:data:`BATCH_SIZE` and :data:`KEY_ID`.

Each request's JSON line is nginx's (``REQUEST_LOG=nginx``, the default): the app
hands its fields to nginx in one :data:`LOG_HEADER` on the response, which nginx
splits, logs and strips (deploy/nginx/keras-fleet.conf), and nginx stamps the
request id on the response; the app writes a line of its own only for a 5xx. With
``REQUEST_LOG=app`` the app writes every request's line and stamps the id itself.
Every response header costs gunicorn two regular expressions and more, so behind nginx
the app sends only what nginx cannot know (side by side, folding three log headers into
one, leaving the id to nginx and dropping the endpoint hook served 3.8% more small
requests/s).
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable

from flask import Flask

from api.headers import request_id_from
from api.logs import log_fields
from api.metrics import Metrics

access_log = logging.getLogger("keras_fleet.access")

# What the app tells the log line, through the environ.
REQUEST_ID = "keras_fleet.request_id"
BATCH_SIZE = "keras_fleet.batch_size"
KEY_ID = "keras_fleet.key_id"

# Scrapes come every few seconds from the monitoring system: counted, but logged at debug
# (and not on nginx's monitoring listener).
QUIET_ENDPOINTS = frozenset({"metrics"})

# The response header that carries the app's fields to nginx's log line (nginx strips it):
# "<endpoint> <rows or -> <API key id or -> <model>", the model last as the only field
# that may hold a space.
LOG_HEADER = "X-Fleet"


def log_header_value(endpoint: str, batch_size: int | None, key_id: str | None, model_name: str) -> str:
    """The :data:`LOG_HEADER` of a request (nginx's maps split it back into fields)."""
    rows = "-" if batch_size is None else str(batch_size)
    return f"{endpoint} {rows} {key_id or '-'} {model_name}"


def install_telemetry(app: Flask, metrics: Metrics, model_name: str, model_version: str, request_log: str) -> None:
    """Wrap the app in :class:`RequestTelemetry`."""
    app.wsgi_app = RequestTelemetry(app.wsgi_app, metrics, model_name, model_version, request_log)


class RequestTelemetry:
    """WSGI middleware: tags each response, counts and times the request, and logs it (with an
    id it gives it) or hands nginx what to log (``request_log``: "nginx" or "app")."""

    def __init__(self, app: Callable, metrics: Metrics, model_name: str, model_version: str, request_log: str):
        self.app = app
        self.metrics = metrics
        self.model_name = model_name
        self.model_version = model_version
        self.nginx_logs = request_log == "nginx"
        self._in_flight = metrics.series(metrics.in_flight)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        # The status and endpoint, once the app starts its response: Flask lets go of its
        # request (and the rule it matched) when the app returns.
        answer = ["500", "unmatched"]

        def tagged_start_response(status_line, headers, exc_info=None):
            answer[0], answer[1] = status_line[:3], _endpoint(environ)
            headers.append(("X-Model-Version", self.model_version))
            if self.nginx_logs:
                self._add_log_header(environ, answer[1], headers)
            else:
                # The app logs the request, so it stamps the id its line carries (with
                # REQUEST_LOG=nginx, nginx stamps its own or the client's, checked).
                headers.append(("X-Request-ID", _request_id(environ)))
            return start_response(status_line, headers, exc_info)

        self._in_flight.inc()
        try:
            return self.app(environ, tagged_start_response)
        finally:
            self._in_flight.dec()
            self._record(environ, answer[1], int(answer[0]), time.perf_counter() - started)

    def _add_log_header(self, environ: dict, endpoint: str, headers: list) -> None:
        """The app's fields of the request's line, for nginx to log (LOG_HEADER)."""
        if endpoint in QUIET_ENDPOINTS:
            return
        headers.append((LOG_HEADER, log_header_value(endpoint, environ.get(BATCH_SIZE), environ.get(KEY_ID),
                                                     self.model_name)))

    def _record(self, environ: dict, endpoint: str, status: int, elapsed: float) -> None:
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
            "request_id": _request_id(environ),
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


def _request_id(environ: dict) -> str:
    """The request's id: the client's when safe to echo, else a fresh one; worked out once."""
    request_id = environ.get(REQUEST_ID)
    if request_id is None:
        request_id = environ[REQUEST_ID] = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
    return request_id


def _endpoint(environ: dict) -> str:
    """The endpoint of the rule Flask matched ("unmatched" if none), while the app runs:
    read from the request Flask made (werkzeug keeps it in the environ until Flask is
    done with it), which costs less than a Flask hook."""
    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
    return rule.endpoint if rule is not None else "unmatched"
