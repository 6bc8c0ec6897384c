"""The traced model run by LiteRT (TensorFlow Lite's runtime) instead of TensorFlow's.

The same graph, frozen and converted once per worker at load: TensorFlow's eager
runtime costs about 100 us of Python and dispatch on every call whatever the model's
size, LiteRT's interpreter about 5 us, and its XNNPACK kernels ran MobileNetV2 1.8x
faster than TensorFlow's on this machine's CPU (README "Benchmark",
docs/benchmark-history.md). Not every graph converts, and a converted one must compute
what TensorFlow computes: :func:`build_litert_call` raises :class:`LiteRTUnavailable`
saying why when either fails, and the caller keeps TensorFlow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from typing import Callable

import numpy as np

from api.logs import native_stderr_logged
from api.model import first_line, graph_input_order, zeros_feed

log = logging.getLogger(__name__)

# Converted outputs must match TensorFlow's within this (relative to the output's scale):
# float32 kernels that sum in another order differ in the last bits, a wrong graph by far more.
RELATIVE_TOLERANCE = 1e-3


class LiteRTUnavailable(Exception):
    """The model cannot run under LiteRT; the message says why (TensorFlow serves it)."""


def build_litert_call(concrete, inputs, threads: int, reference: Callable[[dict], list]) -> Callable[[dict], list]:
    """A LiteRT call of the traced ``concrete`` function, checked against ``reference``.

    ``inputs`` are the model's TensorInfos; the call takes a feed dict (input name ->
    batch-major array) and returns the outputs in the order ``reference`` (the
    TensorFlow call, flattened the same way) returns them.
    """
    if any(dim is None for info in inputs for dim in info.instance_shape):
        raise LiteRTUnavailable("inputs of variable length (a dimension other than the batch is unknown)")
    flatbuffer = _convert(concrete)
    try:
        call = _InterpreterCall(flatbuffer, concrete, threads)
        probes = [(call(feed), reference(feed)) for feed in _probe_feeds(inputs)]
    except ImportError:
        raise LiteRTUnavailable("the ai-edge-litert package is not installed") from None
    except (RuntimeError, ValueError) as exc:  # the interpreter refused the converted graph
        raise LiteRTUnavailable(f"the converted graph does not run: {first_line(exc)}") from None
    for got, expected in probes:
        _check_same(got, expected)
    return call


def _convert(concrete) -> bytes:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    try:
        # Frozen first: LiteRT would otherwise keep Keras 3's variables as resource
        # variables that nothing initialises (the converted model answers NaN). A frozen
        # graph has no variables to pass as the converter's `trackable_obj`; its warning
        # that one is missing would be one more non-JSON line per worker start.
        frozen = convert_variables_to_constants_v2(concrete)
        with _quiet("absl"):
            return tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()
    except Exception as exc:  # the converter raises many types; the reason is what counts
        raise LiteRTUnavailable(f"the graph does not convert: {first_line(exc)}") from None


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


class _InterpreterCall:
    """LiteRT interpreters of one model: one resized to each call's row count, and, once
    :meth:`plan_batches` is told the batch size, one per power of two up to it.

    Resizing an interpreter re-plans its memory and XNNPACK's runtime: about 5 us on
    the digits model, as much again as its one-row call, and a batcher's batches vary
    from one call to the next. A batch of up to the planned size therefore runs on the
    interpreter of the next power of two, its rows padded with zeros (the padded rows'
    answers are dropped): side by side, 2% more requests/s on the digits model.
    Padding costs compute, but only where batching pays (below the batch size the
    batcher found faster per row, or the one configured); a call of more rows than
    planned runs on the resizing interpreter.
    """

    def __init__(self, flatbuffer: bytes, concrete, threads: int):
        self._flatbuffer, self._threads = flatbuffer, threads
        self._interpreter = self._new_interpreter()
        self._lock = threading.Lock()  # an interpreter runs one call at a time
        self._rows = None  # what the resizing interpreter is sized for
        self._buckets: dict[int, _Bucket] = {}  # rows -> an interpreter sized for them
        by_name = {detail["name"]: detail for detail in self._interpreter.get_input_details()}
        feed_names = graph_input_order(concrete)
        self._inputs = []  # (feed name, tensor index, instance shape, dtype)
        for name, placeholder in zip(feed_names, _frozen_names(concrete.inputs)):
            detail = by_name.get(placeholder)
            if detail is None:
                raise LiteRTUnavailable(f"input {name!r} is not among the converted model's inputs")
            self._inputs.append((name, detail["index"], tuple(detail["shape_signature"][1:]), detail["dtype"]))
        out_by_name = {detail["name"]: detail["index"] for detail in self._interpreter.get_output_details()}
        outputs = _frozen_names(concrete.outputs)
        if any(name not in out_by_name for name in outputs):
            raise LiteRTUnavailable("the converted model's outputs do not match the graph's")
        self._outputs = [out_by_name[name] for name in _in_call_order(concrete, outputs)]

    def _new_interpreter(self, rows: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        with native_stderr_logged(log):
            interpreter = Interpreter(model_content=self._flatbuffer, num_threads=self._threads)
            if rows is not None:
                self._resize(interpreter, rows)
            interpreter.allocate_tensors()
        return interpreter

    def _resize(self, interpreter, rows: int) -> None:
        for _, index, shape, _ in self._inputs:
            interpreter.resize_tensor_input(index, (rows, *shape))

    def plan_batches(self, max_rows: int) -> None:
        """Make the interpreters of batches of up to ``max_rows`` rows: one per power of
        two up to the first at or past it (at start, so no request waits for one)."""
        with self._lock:
            self._buckets.clear()
            rows = 1
            while True:
                interpreter = self._new_interpreter(rows)
                padded = {name: np.zeros((rows, *shape), dtype=dtype) for name, _, shape, dtype in self._inputs}
                self._buckets[rows] = _Bucket(rows, interpreter, padded)
                if rows >= max_rows:
                    break
                rows *= 2

    def __call__(self, feed: dict) -> list[np.ndarray]:
        rows = len(next(iter(feed.values())))
        with self._lock:
            bucket = self._buckets.get(1 << (rows - 1).bit_length())
            if bucket is None:
                return self._run(self._sized_interpreter(rows), feed)
            if rows == bucket.rows:
                return self._run(bucket.interpreter, feed)
            for name, padded in bucket.padded.items():
                padded[:rows] = feed[name]
                padded[rows:] = 0
            return [output[:rows] for output in self._run(bucket.interpreter, bucket.padded)]

    def _sized_interpreter(self, rows: int):
        """The resizing interpreter, sized for ``rows`` (called under the lock)."""
        if rows != self._rows:
            self._resize(self._interpreter, rows)
            self._interpreter.allocate_tensors()
            self._rows = rows
        return self._interpreter

    def _run(self, interpreter, feed: dict) -> list[np.ndarray]:
        for name, index, _, _ in self._inputs:
            interpreter.set_tensor(index, feed[name])
        try:
            interpreter.invoke()
        except RuntimeError as exc:
            # A kernel refused these values (an index out of range, say): the
            # inputs' fault, as TensorFlow's InvalidArgumentError would say.
            raise ValueError(first_line(exc)) from exc
        return [interpreter.get_tensor(index) for index in self._outputs]  # copies


@dataclasses.dataclass(frozen=True)
class _Bucket:
    """An interpreter sized for ``rows`` rows, with an input buffer for each input that
    fewer rows are copied into, padded with zeros."""

    rows: int
    interpreter: object
    padded: dict[str, np.ndarray]


def _frozen_names(tensors) -> list[str]:
    return [tensor.name.split(":")[0] for tensor in tensors]


def _in_call_order(concrete, flat: list):
    """``flat`` (in the graph's flat output order) reordered as TensorFlow's call returns them."""
    import tensorflow as tf

    # The call packs its flat outputs into the model's structure; a dict keeps the
    # model's key order, which ServedModel reads the output names from.
    packed = tf.nest.pack_sequence_as(concrete.structured_outputs, list(range(len(flat))))
    order = list(packed.values()) if isinstance(packed, dict) else tf.nest.flatten(packed)
    return [flat[index] for index in order]


def _probe_feeds(inputs) -> list[dict]:
    """Zeros, then varied values: integer inputs stay small (embedding indices)."""
    rng = np.random.default_rng(0)
    zeros = zeros_feed(inputs, rows=1)
    varied = {}
    for info in inputs:
        shape = (3, *info.instance_shape)
        if np.dtype(info.dtype).kind == "f":
            varied[info.name] = rng.normal(0, 1, shape).astype(info.dtype)
        else:  # integers and booleans: 0 and 1
            varied[info.name] = rng.integers(0, 2, shape).astype(info.dtype)
    return [zeros, varied]


def _check_same(got: list, expected: list) -> None:
    for index, (lite, reference) in enumerate(zip(got, expected)):
        reference = np.asarray(reference)
        if lite.shape != reference.shape:
            raise LiteRTUnavailable(f"output {index} has shape {lite.shape} under LiteRT, {reference.shape} under TensorFlow")
        scale = max(1.0, float(np.abs(reference).max()))
        if not np.allclose(lite, reference, rtol=RELATIVE_TOLERANCE, atol=RELATIVE_TOLERANCE * scale, equal_nan=True):
            difference = float(np.nanmax(np.abs(lite.astype(np.float64) - reference)))
            raise LiteRTUnavailable(f"output {index} differs from TensorFlow's by up to {difference:.3g}")
