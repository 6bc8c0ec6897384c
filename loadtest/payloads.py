"""Valid random predict bodies for any served model, built from its signature.

A body is made in two steps: :func:`random_batch` draws one array per input (the right
name, shape and dtype), then an encoder of :data:`ENCODERS` turns the batch into
bytes and a Content-Type. JSON (TensorFlow Serving's row format) is the only body
format today; a binary one (``application/x-npy`` / ``x-npz``) is one more encoder
and one more entry in ``ENCODERS``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import orjson

from loadtest.metadata import ModelSignature, Tensor


@dataclasses.dataclass(frozen=True)
class Body:
    """One ready-to-send request body."""

    data: bytes
    content_type: str
    instances: int


@dataclasses.dataclass(frozen=True)
class PayloadSettings:
    """How to draw instances; the defaults suit most models."""

    instances: int = 1
    body_format: str = "json"
    # Integer inputs are often indices (embedding ids, token ids): small values are
    # valid for any vocabulary, large random ones are not.
    int_high: int = 2
    # Size given to dimensions the model leaves open (-1 after the batch one).
    open_dim: int = 8
    seed: int = 0


def random_batch(inputs: tuple[Tensor, ...], count: int, rng: np.random.Generator, settings: PayloadSettings) -> dict[str, np.ndarray]:
    """One array per input, `count` instances each, with values valid for its dtype."""
    return {tensor.name: _random_array(tensor, count, rng, settings) for tensor in inputs}


def _random_array(tensor: Tensor, count: int, rng: np.random.Generator, settings: PayloadSettings) -> np.ndarray:
    shape = (count, *(settings.open_dim if dim is None else dim for dim in tensor.shape))
    dtype = np.dtype(tensor.dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        high = min(settings.int_high, int(np.iinfo(dtype).max) + 1)
        return rng.integers(0, high, size=shape, dtype=dtype)
    # [0, 1) is within the range of every float width.
    return rng.random(shape).astype(dtype)


def encode_json(batch: dict[str, np.ndarray]) -> tuple[bytes, str]:
    """TensorFlow Serving's row format: plain nested lists for one input, an object per instance for several."""
    # JSON carries decimal text: four decimals keep bodies short (the server casts to
    # the input's dtype anyway), where a float32's exact value would take 17 digits.
    arrays = {name: array.astype(np.float64).round(4) if array.dtype.kind == "f" else array for name, array in batch.items()}
    names = list(arrays)
    if len(names) == 1:
        instances = arrays[names[0]]
    else:
        count = len(arrays[names[0]])
        instances = [{name: arrays[name][row] for name in names} for row in range(count)]
    return orjson.dumps({"instances": instances}, option=orjson.OPT_SERIALIZE_NUMPY), "application/json"


# Memory the drawn bodies may take, at least one body whatever its size.
POOL_BYTES = 64 * 1024 * 1024

# Body format name -> encoder of a batch into (bytes, Content-Type).
ENCODERS: dict[str, Callable[[dict[str, np.ndarray]], tuple[bytes, str]]] = {
    "json": encode_json,
}


def build_bodies(signature: ModelSignature, settings: PayloadSettings, pool: int) -> list[Body]:
    """Up to `pool` distinct bodies (and about POOL_BYTES), drawn once before the run so that the
    load generator spends its CPU on sending, not on drawing."""
    if settings.body_format not in ENCODERS:
        raise ValueError(f"body format {settings.body_format!r} is not supported; choose one of {sorted(ENCODERS)}")
    if settings.instances < 1 or pool < 1:
        raise ValueError("instances per request and the payload pool must be at least 1")
    rng = np.random.default_rng(settings.seed)
    encode = ENCODERS[settings.body_format]
    bodies: list[Body] = []
    # Large inputs (images) make large bodies: fewer distinct ones then, not gigabytes.
    while len(bodies) < pool and sum(len(body.data) for body in bodies) < POOL_BYTES:
        data, content_type = encode(random_batch(signature.inputs, settings.instances, rng, settings))
        bodies.append(Body(data, content_type, settings.instances))
    return bodies
