"""Read the served model's signature from TensorFlow Serving's metadata endpoint.

``GET /v1/models/<name>/metadata`` names every input and output with its dtype and
shape; the payloads and the answer checks are built from it, so the load test fits
any served model without knowing it in advance.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from typing import Any

SERVING_SIGNATURE = "serving_default"

# TensorFlow's DataType enum names, as the metadata spells them -> numpy dtype names.
# (api/resources.py maps the other way; the load test keeps its own table because it
# speaks to any TensorFlow Serving server and must not need the server's package.)
NUMPY_DTYPES = {
    "DT_HALF": "float16",
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_INT8": "int8",
    "DT_INT16": "int16",
    "DT_INT32": "int32",
    "DT_INT64": "int64",
    "DT_UINT8": "uint8",
    "DT_UINT16": "uint16",
    "DT_BOOL": "bool",
}


class MetadataError(RuntimeError):
    """The metadata could not be fetched or does not describe a usable signature."""


@dataclasses.dataclass(frozen=True)
class Tensor:
    """One named input or output; ``shape`` is one instance's (no batch dimension), None where unknown."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


@dataclasses.dataclass(frozen=True)
class ModelSignature:
    """The served model's name and its serving signature's inputs and outputs."""

    model: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]

    @property
    def predict_path(self) -> str:
        """The URL path of the model's predict endpoint."""
        return f"/v1/models/{self.model}:predict"


def parse_metadata(document: Any, model: str) -> ModelSignature:
    """Turn a metadata document (TF Serving's format) into a ModelSignature, or raise MetadataError."""
    try:
        signature = document["metadata"]["signature_def"]["signature_def"][SERVING_SIGNATURE]
        inputs, outputs = signature["inputs"], signature["outputs"]
    except (KeyError, TypeError):
        raise MetadataError(f"the metadata of {model!r} has no {SERVING_SIGNATURE!r} signature with inputs and outputs") from None
    if not inputs or not outputs:
        raise MetadataError(f"the {SERVING_SIGNATURE!r} signature of {model!r} has no inputs or no outputs")
    return ModelSignature(
        model=model,
        inputs=tuple(_tensor(name, info) for name, info in inputs.items()),
        outputs=tuple(_tensor(name, info) for name, info in outputs.items()),
    )


def _tensor(name: str, info: dict) -> Tensor:
    dtype = NUMPY_DTYPES.get(info.get("dtype"))
    if dtype is None:
        raise MetadataError(f"tensor {name!r} has dtype {info.get('dtype')!r}, which a JSON body cannot carry")
    shape = info.get("tensor_shape", {})
    if shape.get("unknown_rank"):
        raise MetadataError(f"tensor {name!r} has an unknown rank; random instances need one")
    sizes = [int(dim["size"]) for dim in shape.get("dim", [])]
    if not sizes:
        raise MetadataError(f"tensor {name!r} has no batch dimension")
    # The first dimension is the batch; -1 elsewhere is a size the model leaves open.
    return Tensor(name, tuple(None if size < 0 else size for size in sizes[1:]), dtype)


def fetch_json(url: str, timeout: float = 10) -> Any:
    """GET url and decode its JSON body, or raise MetadataError saying what went wrong."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise MetadataError(f"GET {url} answered {exc.code}: {exc.read()[:200].decode(errors='replace')}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise MetadataError(f"GET {url} failed: {exc}") from None


def discover_model_name(host: str) -> str:
    """Ask a Keras Fleet server which model it serves (its /healthz/ready names it)."""
    document = fetch_json(f"{host.rstrip('/')}/healthz/ready")
    name = document.get("model") if isinstance(document, dict) else None
    if not name:
        raise MetadataError(f"{host}/healthz/ready does not name the model; pass the model name (MODEL_NAME=...)")
    return name


def fetch_signature(host: str, model: str | None = None) -> ModelSignature:
    """The signature of `model` on `host` (the served model when model is empty)."""
    model = model or discover_model_name(host)
    return parse_metadata(fetch_json(f"{host.rstrip('/')}/v1/models/{model}/metadata"), model)
