"""Turn a predict request body into the model's input arrays, or say what to fix.

One plain function, :func:`parse_predict_request`, reads TensorFlow Serving's JSON
request formats, row (``{"instances": [...]}``) and columnar (``{"inputs": ...}``),
with named inputs in either, and binary tensors (``application/x-npy`` for one
input, ``application/x-npz`` for named inputs; batch-major like columnar JSON).
Every problem is raised as an ``InvalidInput`` (400) or ``UnsupportedMediaType``
(415) whose message a client can act on.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from array import array as packed_array
from typing import Any

import numpy as np
import orjson

from api.binary import NPY_TYPE, NPZ_TYPE, read_npy, read_npz
from api.errors import InvalidInput, UnsupportedMediaType
from api.model import Signature, TensorInfo

JSON_TYPES = frozenset({"", "application/json"})
ALLOWED_KEYS = {"instances", "inputs", "signature_name"}
SERVING_SIGNATURE = "serving_default"

# JSON numbers that pack straight into an input of these dtypes (array module typecodes).
PACKED_TYPECODES = {"float32": "f", "float64": "d"}
# Below this magnitude every JSON integer converts to float64 exactly, and every number
# fits every dtype above, so packing it rounds as numpy's cast would.
PACKED_LIMIT = 2**53


@dataclasses.dataclass(frozen=True)
class PredictRequest:
    """The validated request: one array per model input, and the format to answer in."""

    inputs: dict[str, np.ndarray]
    columnar: bool

    @property
    def batch_size(self) -> int:
        """Number of instances (rows) in the request."""
        return len(next(iter(self.inputs.values())))


def media_type(content_type: str | None) -> str:
    """The media type of a Content-Type header, lowercased, without its parameters."""
    return (content_type or "").partition(";")[0].strip().lower()


def parse_predict_request(
    body: bytes, content_type: str | None, signature: Signature, max_instances: int
) -> PredictRequest:
    """Validate a predict body against the model's signature and return its arrays."""
    content_type = (content_type or "").lower()
    if content_type in (NPY_TYPE, NPZ_TYPE):
        arrays = _binary_inputs(body, content_type, signature)
        checked = {info.name: conform(arrays[info.name], info) for info in signature.inputs}
        _check_batch(checked, max_instances)
        return PredictRequest(inputs=checked, columnar=False)
    if content_type not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; send application/json, "
            f"{NPY_TYPE} (one input) or {NPZ_TYPE} (named inputs)"
        )
    document = _load_json(body)
    if not isinstance(document, dict):
        raise InvalidInput('the body must be a JSON object: {"instances": [...]} or {"inputs": ...}')
    if not document.keys() <= ALLOWED_KEYS:
        unknown = sorted(set(document) - ALLOWED_KEYS)[0]
        raise InvalidInput(f"unknown key {unknown!r}; use 'instances' (row format) or 'inputs' (columnar format)")
    signature_name = document.get("signature_name", SERVING_SIGNATURE)
    if signature_name != SERVING_SIGNATURE:
        raise InvalidInput(f"unknown signature_name {signature_name!r}; this model serves {SERVING_SIGNATURE!r}")
    if ("instances" in document) == ("inputs" in document):
        raise InvalidInput("send exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if "instances" in document:
        columns = _columns_from_rows(document["instances"], signature, max_instances)
        columnar = False
    else:
        columns = _columns_from_inputs(document["inputs"], signature)
        columnar = True
    # numpy reads true/false among numbers as 1/0; look for them only when the body
    # could hold any (a walk over every value costs too much for large inputs).
    may_hold_booleans = b"true" in body or b"false" in body
    arrays = {info.name: to_array(columns[info.name], info, may_hold_booleans) for info in signature.inputs}
    _check_batch(arrays, max_instances)
    return PredictRequest(inputs=arrays, columnar=columnar)


def _binary_inputs(body: bytes, content_type: str, signature: Signature) -> dict[str, np.ndarray]:
    names = signature.input_names
    if content_type == NPZ_TYPE:
        arrays = read_npz(body)
        _check_names(arrays, names, where="the .npz body")
        return arrays
    if len(names) > 1:
        raise InvalidInput(f"the model has named inputs {names}; send them as {NPZ_TYPE} (numpy.savez)")
    return {names[0]: read_npy(body)}


def _load_json(body: bytes) -> Any:
    if not body:
        raise InvalidInput('the body is empty; send {"instances": [...]} or {"inputs": ...}')
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        hint = ""
        if b"NaN" in body or b"Infinity" in body:
            hint = "; NaN and Infinity are not allowed, send finite numbers"
        raise InvalidInput(f"the body is not valid JSON ({exc}){hint}") from None


def _columns_from_rows(instances: Any, signature: Signature, max_instances: int) -> dict[str, list]:
    """Row format: a list of instances, each a value (one input) or an object of named inputs."""
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list, one item per instance")
    if len(instances) > max_instances:
        raise InvalidInput(f"too many instances: {len(instances)} > {max_instances}; split the request")
    names = signature.input_names
    named = [isinstance(instance, dict) for instance in instances]
    if len(names) == 1 and not any(named):
        return {names[0]: instances}
    if not all(named):
        raise InvalidInput(
            f"each instance must be an object with the inputs {names} (the model has named inputs)"
            if len(names) > 1
            else "instances must be all values or all objects, not a mix"
        )
    columns: dict[str, list] = {name: [] for name in names}
    for index, instance in enumerate(instances):
        _check_names(instance, names, where=f"instance {index}")
        for name in names:
            columns[name].append(instance[name])
    return columns


def _columns_from_inputs(inputs: Any, signature: Signature) -> dict[str, Any]:
    """Columnar format: a value (one input) or an object mapping each input name to its batch."""
    names = signature.input_names
    if isinstance(inputs, dict):
        _check_names(inputs, names, where="'inputs'")
        return inputs
    if len(names) > 1:
        raise InvalidInput(f"'inputs' must be an object with the model's named inputs {names}")
    return {names[0]: inputs}


def _check_names(given: dict, names: list[str], where: str) -> None:
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise InvalidInput(f"{where}: unknown input {unknown[0]!r}; the model's inputs are {names}")
    missing = [name for name in names if name not in given]
    if missing:
        raise InvalidInput(f"{where}: missing input {missing[0]!r}; the model's inputs are {names}")


def to_array(value: Any, info: TensorInfo, may_hold_booleans: bool = True) -> np.ndarray:
    """Convert one input's batch (nested lists) to an array of the input's dtype and shape."""
    if not isinstance(value, list) or not value:
        raise InvalidInput(f"input {info.name!r} must be a non-empty list with one item per instance")
    if not may_hold_booleans:
        packed = _packed(value, info)
        if packed is not None:
            return packed
    try:
        array = np.array(value)
    except (ValueError, TypeError, OverflowError):
        raise InvalidInput(
            f"input {info.name!r}: instances have uneven or too deep nesting; "
            f"each must have shape {_shape(info.instance_shape)}"
        ) from None
    if may_hold_booleans and info.dtype != "bool" and array.dtype.kind != "b" and _holds_boolean(value):
        raise InvalidInput(f"input {info.name!r} takes numbers ({info.dtype}); found booleans")
    return conform(array, info)


def _packed(value: list, info: TensorInfo) -> np.ndarray | None:
    """The common case without numpy's general machinery: plain numbers of a fixed-shape
    float input, packed straight into its array; None for anything else, which
    :func:`to_array` then checks (and words the error for) the general way.

    Same result as the general path, at a fraction of its cost over the whole stack:
    numpy's array discovery, ufuncs and casts cost several times more per request behind
    nginx and gunicorn than in a tight loop (measured, docs/benchmark-history.md). Booleans
    must be ruled out by the caller (they are ints to the array module).
    """
    typecode = PACKED_TYPECODES.get(info.dtype)
    if typecode is None or None in info.instance_shape:
        return None
    numbers = value
    for size in info.instance_shape:  # one nesting level at a time, each list of its size
        for item in numbers:
            if type(item) is not list or len(item) != size:
                return None
        numbers = list(itertools.chain.from_iterable(numbers))
    try:
        if not -PACKED_LIMIT < min(numbers) <= max(numbers) < PACKED_LIMIT:  # strings, nulls, lists: TypeError
            return None
    except (TypeError, ValueError):  # ValueError: a dimension of size 0
        return None
    return np.ndarray((len(value), *info.instance_shape), info.dtype, packed_array(typecode, numbers))


def _holds_boolean(value: Any) -> bool:
    if isinstance(value, list):
        return any(_holds_boolean(item) for item in value)
    return isinstance(value, bool)


def conform(array: np.ndarray, info: TensorInfo) -> np.ndarray:
    """Check an array's kind of values and shape against the input, and cast it to its dtype."""
    if array.ndim == 0 or len(array) == 0:
        raise InvalidInput(f"input {info.name!r} must hold at least one instance (a batch-major array)")
    _check_kind(array, info)
    _check_shape(array, info)
    return _cast(array, info)


def _check_kind(array: np.ndarray, info: TensorInfo) -> None:
    kind = array.dtype.kind
    if info.dtype == "bool":
        if kind != "b":
            raise InvalidInput(f"input {info.name!r} takes booleans (true/false)")
        return
    if kind not in "iuf":
        found = {"U": "strings", "S": "strings", "b": "booleans", "c": "complex numbers"}.get(
            kind, "nulls, objects or out-of-range integers"
        )
        raise InvalidInput(f"input {info.name!r} takes numbers ({info.dtype}); found {found}")
    if kind == "f" and _target(info.dtype)[0].kind in "iu":
        raise InvalidInput(f"input {info.name!r} takes integers ({info.dtype}); found fractional numbers")


def _check_shape(array: np.ndarray, info: TensorInfo) -> None:
    expected = info.instance_shape
    got = array.shape[1:]
    if got == expected:
        return
    if len(got) != len(expected) or any(want is not None and want != dim for want, dim in zip(expected, got)):
        raise InvalidInput(
            f"input {info.name!r}: each instance must have shape {_shape(expected)}, got {_shape(got)}"
        )


@functools.lru_cache(maxsize=None)
def _target(dtype: str) -> tuple[np.dtype, float | int, float | int]:
    """An input dtype, and the least and largest values it holds (worked out once per dtype)."""
    target = np.dtype(dtype)
    if target.kind in "iu":
        limits = np.iinfo(target)
        return target, int(limits.min), int(limits.max)
    if target.kind == "f":
        largest = float(np.finfo(target).max)
        return target, -largest, largest
    return target, 0, 0


def _cast(array: np.ndarray, info: TensorInfo) -> np.ndarray:
    target, least, largest = _target(info.dtype)
    if target.kind in "iu":
        if array.min() < least or array.max() > largest:
            raise InvalidInput(f"input {info.name!r}: values outside the range of {info.dtype}")
        return array.astype(target, copy=False)
    if target.kind == "f":
        # Checked before the cast, on the values as sent: NaN and infinities fail the
        # comparison, and a value just past the target's largest, which the cast would
        # round down to it, is refused too, so the documented range is exact.
        if array.dtype.kind == "f" and array.dtype.itemsize > target.itemsize:
            in_range = np.abs(array).max() <= largest  # narrowing: NaN fails the comparison
        elif array.dtype.kind == "f":
            in_range = np.isfinite(array).all()  # the cheaper pass, where the range cannot shrink
        else:  # integers: only a float16 is too small for some
            in_range = largest >= 2.0**64 or (array.min() >= least and array.max() <= largest)
        if not in_range:
            raise InvalidInput(f"input {info.name!r}: values must be finite and within the range of {info.dtype}")
        return array.astype(target, copy=False)
    return array


def _check_batch(arrays: dict[str, np.ndarray], max_instances: int) -> None:
    if len(arrays) > 1:
        sizes = {name: len(array) for name, array in arrays.items()}
        if len(set(sizes.values())) > 1:
            raise InvalidInput(f"all inputs must have the same number of instances; got {sizes}")
    size = len(next(iter(arrays.values())))
    if size > max_instances:
        raise InvalidInput(f"too many instances: {size} > {max_instances}; split the request")


def _shape(shape: tuple) -> str:
    dims = ["any" if dim is None else str(dim) for dim in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"
