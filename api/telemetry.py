"""Per-request telemetry: the Prometheus request series and one JSON log line per request."""

from __future__ import annotations

import logging
import time

from flask import Flask, g, request

from api.metrics import Metrics

access_log = logging.getLogger("keras_fleet.access")

# Scrapes come every few seconds from the monitoring system: counted, but logged at debug.
QUIET_ENDPOINTS = frozenset({"metrics"})


def install_telemetry(app: Flask, metrics: Metrics, model_name: str) -> None:
    """Count, time and log every request the app answers."""
    # labels() costs a lookup and a lock per call; the label sets are few, so keep them.
    children: dict[tuple, object] = {}

    def child(metric, *labels: str):
        key = (id(metric), *labels)
        found = children.get(key)
        if found is None:
            found = children[key] = metric.labels(*labels)
        return found

    @app.before_request
    def start_clock():
        g.started = time.perf_counter()
        g.in_flight = True
        metrics.in_flight.inc()

    @app.after_request
    def record(response):
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.endpoint or "unmatched"
        child(metrics.requests, endpoint, model_name, str(response.status_code)).inc()
        child(metrics.latency, endpoint, model_name).observe(elapsed)
        level = logging.DEBUG if endpoint in QUIET_ENDPOINTS else logging.INFO
        if response.status_code >= 500:
            level = logging.WARNING
        access_log.log(level, "request", extra={
            "request_id": g.get("request_id"),
            "method": request.method,
            "path": request.path,
            "endpoint": endpoint,
            "model": model_name,
            "status": response.status_code,
            "latency_ms": round(elapsed * 1000, 3),
            "batch_size": g.get("batch_size"),
            "key_id": g.get("key_id"),
            "client": request.headers.get("X-Real-IP") or request.remote_addr,
            "forwarded_for": request.headers.get("X-Forwarded-For"),
        })
        return response

    @app.teardown_request
    def stop_clock(_error):
        if g.pop("in_flight", False):
            metrics.in_flight.dec()
