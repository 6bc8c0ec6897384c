"""The HTTP resources: TensorFlow Serving's REST endpoints and the health checks.

Each resource receives the served model through its constructor
(``resource_class_kwargs``); none reaches for a global. Resources raise the errors
of ``api.errors`` and never build an error body themselves.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
from flask import Response, request
from flask_restful import Resource
from werkzeug.exceptions import RequestEntityTooLarge

from api.config import Config
from api.batching import Batcher, Overloaded, request_deadline
from api.errors import InvalidInput, ModelNotFound, ModelNotReady, ServerOverloaded
from api.metrics import CONTENT_TYPE, Metrics
from api.model import ModelInputError, ServedModel, TensorInfo
from api.responses import json_response
from api.telemetry import BATCH_SIZE
from api.validation import SERVING_SIGNATURE, media_type, parse_predict_request

# numpy dtype name -> TensorFlow's DataType enum name, as TF Serving's metadata spells it.
TF_DTYPE_NAMES = {
    "float16": "DT_HALF",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "bool": "DT_BOOL",
}


@dataclasses.dataclass(frozen=True)
class Services:
    """What the resources need, built once by the app factory and injected into each."""

    model: ServedModel
    config: Config
    metrics: Metrics
    batcher: Batcher | None
    openapi: dict | None


class ServiceResource(Resource):
    """Base for resources: receives the services through its constructor."""

    def __init__(self, services: Services):
        self.services = services


class ModelResource(ServiceResource):
    """Base for the endpoints about the served model: resolves name and version."""

    def __init__(self, services: Services):
        super().__init__(services)
        self.model = services.model
        self.config = services.config

    def resolve(self, name: str | None, version: str | None) -> ServedModel:
        """Return the served model if the path names it, else raise ModelNotFound."""
        if name is not None and name != self.model.name:
            raise ModelNotFound(f"no model named {name!r}; this server serves {self.model.name!r}")
        if version is not None and version != self.model.version:
            raise ModelNotFound(
                f"model {self.model.name!r} has no version {version!r}; the served version is {self.model.version!r}"
            )
        return self.model

    def ready_model(self, name: str | None, version: str | None) -> ServedModel:
        """Like resolve(), and raise ModelNotReady until the model is loaded and warm."""
        model = self.resolve(name, version)
        if not model.ready:
            raise ModelNotReady()
        return model


class Predict(ModelResource):
    """POST /v1/models/<name>[/versions/<v>]:predict and POST /predict."""

    def post(self, name: str | None = None, version: str | None = None):
        """Run the model on the body's instances and answer in the request's format."""
        model = self.ready_model(name, version)
        environ = request.environ  # read directly: werkzeug's parsed views cost more than a small model's call
        deadline = request_deadline(environ.get("HTTP_X_REQUEST_START"), self.config.request_deadline_ms / 1000)
        if deadline <= time.monotonic():
            # Queued so long before reaching a thread that the client has given up on it:
            # answer at once rather than spend the model on it.
            self.shed(Overloaded("expired", "the request waited past its deadline before it could start; retry"))
        parsed = parse_predict_request(
            request_body(environ, self.config.max_body_bytes), media_type(environ.get("CONTENT_TYPE")), model.signature,
            self.config.max_instances,
        )
        environ[BATCH_SIZE] = parsed.batch_size
        try:
            outputs = self.services.batcher.submit(parsed.inputs, deadline)
        except ModelInputError as exc:
            raise InvalidInput(f"the model rejected the input values: {exc}") from None
        except Overloaded as exc:
            self.shed(exc)
        # A Response of our own: Flask-RESTful would negotiate the media type (twice) to
        # reach the same JSON.
        return json_response(format_predictions(outputs, parsed.columnar))

    def shed(self, overload: Overloaded):
        """Count the shed request and answer 503 with Retry-After."""
        metrics = self.services.metrics
        metrics.series(metrics.shed, self.model.name, overload.reason).inc()
        raise ServerOverloaded(str(overload))


class ModelStatus(ModelResource):
    """GET /v1/models/<name>[/versions/<v>]: the version status, as TF Serving reports it."""

    def get(self, name: str, version: str | None = None):
        """Report the served version and whether it is available."""
        model = self.resolve(name, version)
        return {
            "model_version_status": [
                {
                    "version": model.version,
                    "state": "AVAILABLE" if model.ready else "LOADING",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }


class ModelMetadata(ModelResource):
    """GET /v1/models/<name>[/versions/<v>]/metadata: input and output names, shapes, dtypes."""

    def get(self, name: str, version: str | None = None):
        """Describe the serving signature in TF Serving's metadata format."""
        model = self.ready_model(name, version)
        signature = model.signature
        return {
            "model_spec": {"name": model.name, "signature_name": "", "version": model.version},
            "metadata": {
                "signature_def": {
                    "signature_def": {
                        SERVING_SIGNATURE: {
                            "inputs": {t.name: tensor_metadata(t) for t in signature.inputs},
                            "outputs": {t.name: tensor_metadata(t) for t in signature.outputs},
                            "method_name": "tensorflow/serving/predict",
                        }
                    }
                }
            },
        }


class Live(ServiceResource):
    """GET /healthz/live: 200 while the process runs."""

    def get(self):
        """Answer that the process is alive."""
        return {"status": "alive"}


class Ready(ModelResource):
    """GET /healthz/ready: 200 once the model is loaded and warmed in this worker, else 503."""

    def get(self):
        """Answer whether this worker can serve predictions now."""
        model = self.ready_model(None, None)
        return {"status": "ready", "model": model.name, "version": model.version}


class OpenApiDocument(ServiceResource):
    """GET /openapi.json: the API described for the served model."""

    def get(self):
        """The OpenAPI 3 document (503 until the model, which it describes, is loaded)."""
        if self.services.openapi is None:
            raise ModelNotReady()
        return self.services.openapi


class MetricsText(ServiceResource):
    """GET /metrics: Prometheus text for all workers (nginx serves it on METRICS_PORT only)."""

    def get(self):
        """Expose every series."""
        return Response(self.services.metrics.exposition(), mimetype=None, content_type=CONTENT_TYPE)


def tensor_metadata(info: TensorInfo) -> dict:
    """One tensor as TF Serving's metadata describes it (-1 is an unknown dimension)."""
    return {
        "dtype": TF_DTYPE_NAMES.get(info.dtype, info.dtype),
        "tensor_shape": {
            "dim": [{"size": str(-1 if dim is None else dim), "name": ""} for dim in info.shape],
            "unknown_rank": False,
        },
        "name": info.name,
    }


def request_body(environ: dict, limit: int | None) -> bytes:
    """The request's body, read in one call. werkzeug's get_data() reads 64 KiB at a time
    and copies the body three more times on the way, which shows on a 600 KB tensor;
    the length is read from the environ, as werkzeug's parsed views cost more than a
    small model's share of a call."""
    declared = environ.get("CONTENT_LENGTH") or ""
    if not (declared.isascii() and declared.isdigit()) or "HTTP_TRANSFER_ENCODING" in environ:
        return request.get_data(cache=False)  # chunked, or no usable length: werkzeug handles every such case
    length = int(declared)
    if limit is not None and length > limit:
        raise RequestEntityTooLarge()
    body = environ["wsgi.input"].read(length)
    if len(body) < length:
        raise InvalidInput(f"the body ended after {len(body)} of the {length} bytes its Content-Length "
                           "announced; send the whole body")
    return body


def format_predictions(outputs: dict[str, np.ndarray], columnar: bool) -> dict:
    """Shape the model's outputs as TF Serving replies to a row or columnar request."""
    names = list(outputs)
    if columnar:
        return {"outputs": outputs[names[0]] if len(names) == 1 else outputs}
    if len(names) == 1:
        return {"predictions": outputs[names[0]]}
    rows = len(outputs[names[0]])
    return {"predictions": [{name: outputs[name][row] for name in names} for row in range(rows)]}
