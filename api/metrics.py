"""Prometheus series of one serving process, and their exposition across all workers.

gunicorn runs several worker processes; prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by deploy/gunicorn.conf.py before the workers
fork) has each worker write its values to files, and ``/metrics`` adds them up. Each
:class:`Metrics` has its own registry so that several apps in one test process do
not collide. The series a request touches are written through a :class:`MetricBuffer`
(api/metric_buffer.py): in memory first, into the files once a second.
"""

from __future__ import annotations

import hashlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import multiprocess

from api.metric_buffer import MetricBuffer

PREFIX = "keras_fleet"
# Millisecond-scale inference: fine buckets from 1 ms, up to the request timeout.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Every series the API records; one instance per app."""

    def __init__(self, multiprocess_dir: str = "", prediction_buckets: tuple[float, ...] = (0.0, 1.0)):
        self.multiprocess_dir = multiprocess_dir
        self.buffer = MetricBuffer()
        self._buffered: dict[tuple, object] = {}
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            f"{PREFIX}_requests", "HTTP requests answered, by endpoint, model and status code.",
            ["endpoint", "model", "code"], registry=registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds", "Time from the app receiving a request to its response.",
            ["endpoint", "model"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.in_flight = Gauge(
            f"{PREFIX}_requests_in_flight", "Requests being handled now, all workers together.",
            registry=registry, multiprocess_mode="livesum",
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth", "Requests waiting for a model call, all workers together.",
            registry=registry, multiprocess_mode="livesum",
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size", "Instances per model call (requests joined by the batcher).",
            ["model"], buckets=BATCH_BUCKETS, registry=registry,
        )
        self.model_call = Histogram(
            f"{PREFIX}_model_call_duration_seconds", "Time of one compiled model call.",
            ["model"], buckets=LATENCY_BUCKETS, registry=registry,
        )
        self.shed = Counter(
            f"{PREFIX}_requests_shed", "Requests answered 503 at once because the worker was overloaded.",
            ["model", "reason"], registry=registry,
        )
        # "mostrecent": the value the last worker to start set, dead workers' included
        # (one that crashed after loading still tells what loading costs).
        self.load_seconds = Gauge(
            f"{PREFIX}_model_load_seconds", "Seconds the last worker to start took to load the model.",
            ["model"], registry=registry, multiprocess_mode="mostrecent",
        )
        self.warmup_seconds = Gauge(
            f"{PREFIX}_model_warmup_seconds", "Seconds the last worker to start took to warm the model up.",
            ["model"], registry=registry, multiprocess_mode="mostrecent",
        )
        self.worker_starts = Counter(
            f"{PREFIX}_worker_starts", "Workers that loaded the model since gunicorn started (restarts included).",
            ["model"], registry=registry,
        )
        self.model_info = Gauge(
            f"{PREFIX}_model_info", "The served model (always 1): name, version, input signature digest, runtime.",
            ["model", "version", "signature", "engine"], registry=registry, multiprocess_mode="max",
        )
        self.predicted_class = Counter(
            f"{PREFIX}_predictions_by_class", "Instances predicted, by predicted class (classifiers).",
            ["model", "output", "predicted_class"], registry=registry,
        )
        self.predicted_value = Histogram(
            f"{PREFIX}_prediction_value", "Predicted values (regressors).",
            ["model", "output"], buckets=prediction_buckets, registry=registry,
        )

    def series(self, metric, *labels: str):
        """``metric``'s series for these label values, buffered (see api/metric_buffer.py)."""
        key = (id(metric), *labels)
        found = self._buffered.get(key)
        if found is None:
            found = self._buffered[key] = self.buffer.wrap(metric.labels(*labels) if labels else metric)
        return found

    def record_model(self, model) -> None:
        """Publish the served model's identity and its load and warm-up times; count the worker's start."""
        self.model_info.labels(model.name, model.version, signature_digest(model.signature), model.engine).set(1)
        self.load_seconds.labels(model.name).set(model.load_seconds)
        self.warmup_seconds.labels(model.name).set(model.warmup_seconds)
        self.worker_starts.labels(model.name).inc()

    def exposition(self) -> bytes:
        """The Prometheus text of every worker (multiprocess mode) or of this process."""
        self.buffer.flush()  # this worker's latest; the others write theirs within a second
        if self.multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)


def signature_digest(signature) -> str:
    """A short digest of the input names, shapes and dtypes: changes when the contract does."""
    text = ";".join(f"{t.name}:{t.shape}:{t.dtype}" for t in signature.inputs) if signature else ""
    return hashlib.sha256(text.encode()).hexdigest()[:12]

