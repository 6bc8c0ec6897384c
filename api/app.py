"""The application factory: ``create_app()`` reads as the table of contents of the API."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from flask import Flask, current_app
from flask_restful import Api
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter

from api.auth import ApiKeys, install_authentication
from api.batching import Batcher, fastest_batch_size
from api.config import AUTO_BATCH_LIMIT, Config
from api.errors import InternalError, from_http_exception
from api.logs import configure_logging
from api.metrics import Metrics
from api.model import ServedModel, configure_tensorflow_threads
from api.monitoring import PredictionMonitor
from api.openapi import build_document
from api.resources import (
    Live, MetricsText, ModelMetadata, ModelStatus, OpenApiDocument, Predict, Ready, Services,
)
from api.responses import json_response
from api.telemetry import install_telemetry

log = logging.getLogger(__name__)

MODEL = "/v1/models/<model_name:name>"
VERSION = "/versions/<model_name:version>"

# The whole API, in one place: resource, its endpoint name (the metrics' label), its paths.
ROUTES = (
    (Predict, "predict", (f"{MODEL}:predict", f"{MODEL}{VERSION}:predict", "/predict")),
    (ModelStatus, "model_status", (MODEL, f"{MODEL}{VERSION}")),
    (ModelMetadata, "model_metadata", (f"{MODEL}/metadata", f"{MODEL}{VERSION}/metadata")),
    (Live, "live", ("/healthz/live",)),
    (Ready, "ready", ("/healthz/ready",)),
    (OpenApiDocument, "openapi", ("/openapi.json",)),
    # nginx serves this one on METRICS_PORT only, never on the public listener.
    (MetricsText, "metrics", ("/metrics",)),
)


class ModelNameConverter(BaseConverter):
    """A model name or version: one path segment without ':' (so ':predict' stays a verb)."""

    regex = r"[^/:]+"


class SyncFlask(Flask):
    """Flask for an app without async views: skips the per-call coroutine check.

    Flask asks ``inspect.iscoroutinefunction`` about every hook and view on every
    request; Flask's docs name this method as the one to override.
    """

    def ensure_sync(self, func):  # noqa: D102 (Flask hook)
        return func


class JsonErrorApi(Api):
    """Flask-RESTful's Api, with every error rendered as ``{"error": ...}``."""

    def handle_error(self, e):  # noqa: D102 (Flask-RESTful hook)
        return render_error(e)


def create_app(config: Config | Mapping[str, Any] | None = None, model: ServedModel | None = None) -> Flask:
    """Build the WSGI app; load the model unless one is given (tests give a fake)."""
    settings = _settings(config)
    configure_logging(settings.log_level)
    app = SyncFlask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.url_map.converters["model_name"] = ModelNameConverter
    model = model or load_model(settings)
    services = build_services(model, settings)
    install_telemetry(app, services.metrics, model.name, model.version, settings.request_log)
    if settings.api_keys_file:
        install_authentication(app, ApiKeys(settings.api_keys_file))
    register_resources(app, services)
    register_error_handlers(app)
    return app


def load_model(settings: Config) -> ServedModel:
    """Load and warm the configured model in this process (a gunicorn worker, after fork)."""
    # Thread pools can only be sized before TensorFlow's first op, so this comes first.
    configure_tensorflow_threads(settings.intra_op_threads, settings.tf_inter_op_threads)
    model = ServedModel(settings.model_path, settings.served_name, settings.model_version,
                        allow_unsafe=settings.allow_unsafe_model, engine=settings.inference_engine,
                        threads=settings.intra_op_threads)
    model.load()
    return model


def build_services(model: ServedModel, settings: Config) -> Services:
    """The metrics, prediction monitor, batcher and API document of this process, around the model."""
    metrics = Metrics(settings.prometheus_multiproc_dir, settings.prediction_bucket_values)
    batcher = openapi = None
    if model.ready:
        openapi = build_document(model)
        metrics.record_model(model)
        monitor = PredictionMonitor(metrics, model.name, model.signature, settings.prediction_monitoring)
        batch_size = settings.max_batch_size or fastest_batch_size(model.predict, model.signature, AUTO_BATCH_LIMIT)
        model.plan_batches(batch_size)
        log.info("batching", extra={"model": model.name, "max_batch_size": batch_size,
                                    "measured": not settings.max_batch_size})
        batcher = Batcher(
            monitored(model.predict, monitor),
            max_batch_size=batch_size,
            max_wait_seconds=settings.max_batch_wait_ms / 1000,
            max_queue=settings.batch_queue_size,
            metrics=metrics,
            model_name=model.name,
        )
    return Services(model=model, config=settings, metrics=metrics, batcher=batcher, openapi=openapi)


def monitored(predict, monitor: PredictionMonitor):
    """``predict``, with every batch's outputs recorded by the prediction monitor.

    Once per model call rather than once per request: the same counts, at a
    fraction of the cost when requests are batched.
    """

    def predict_and_observe(inputs):
        outputs = predict(inputs)
        monitor.observe(outputs)
        return outputs

    return predict_and_observe


def register_resources(app: Flask, services: Services) -> Api:
    """Add every route of ROUTES, injecting the services into each resource."""
    api = JsonErrorApi(app, catch_all_404s=True)
    api.representations = {"application/json": json_response}
    for resource, endpoint, paths in ROUTES:
        api.add_resource(resource, *paths, endpoint=endpoint, resource_class_kwargs={"services": services})
    return api


def register_error_handlers(app: Flask) -> None:
    """Render errors raised outside Flask-RESTful's dispatch the same way."""
    app.register_error_handler(HTTPException, render_error)
    app.register_error_handler(Exception, render_error)


def render_error(error: Exception):
    """Turn any exception into the API's JSON error response; unknown ones are 500s."""
    if isinstance(error, HTTPException):
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return from_http_exception(error, max_body_bytes=limit).get_response()
    log.exception("unhandled error")
    return InternalError().get_response()


def _settings(config: Config | Mapping[str, Any] | None) -> Config:
    if isinstance(config, Config):
        return config
    if config is None:
        return Config.from_env()
    return Config.from_mapping(config)
