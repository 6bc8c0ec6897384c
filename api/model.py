"""The served Keras model: load it safely, read its signature, run compiled inference.

Knows nothing of HTTP. ``load()`` makes the model ready (loaded and warmed);
``predict()`` takes a dict of numpy arrays keyed by input name and returns a dict
of numpy arrays keyed by output name. Problems are raised as the domain errors
below, which the resources translate into HTTP statuses.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path
import numpy as np

from api.config import INFERENCE_ENGINES
from api.logs import native_stderr_logged

log = logging.getLogger(__name__)

# dtypes a client can send as JSON numbers (or booleans for bool inputs).
SUPPORTED_DTYPES = frozenset(
    {"float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16", "bool"}
)


class ModelLoadError(Exception):
    """The model file cannot be served: missing, unsafe, or without a usable signature."""


class ModelInputError(ValueError):
    """The inputs reached the model but the model rejected their values."""


class ModelNotLoaded(RuntimeError):
    """predict() was called before load() finished."""


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One named tensor of the signature; ``shape[0]`` is the batch dimension (None)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    @property
    def instance_shape(self) -> tuple[int | None, ...]:
        """The shape of one instance (the batch dimension dropped)."""
        return self.shape[1:]


@dataclasses.dataclass(frozen=True)
class Signature:
    """The model's named inputs and outputs, in the model's own order."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]

    @functools.cached_property
    def input_names(self) -> list[str]:
        """Input names in the model's order (worked out once: every request reads them)."""
        return [tensor.name for tensor in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """Output names in the model's order."""
        return [tensor.name for tensor in self.outputs]


def configure_tensorflow_threads(intra_op: int, inter_op: int) -> None:
    """Set TensorFlow's thread pools; only possible before TensorFlow runs its first op.

    Each gunicorn worker calls this right after fork, so that workers x intra-op
    threads is about the number of cores instead of every worker using them all.
    TensorFlow's import prints its native start-up lines to stderr; they are logged as
    JSON instead.
    """
    with native_stderr_logged(log):
        import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        # Already initialised (several models in one test process): keep what is set.
        log.debug("TensorFlow threads already configured; keeping them")


class ServedModel:
    """A Keras 3 model file, loaded in this process and called through its traced graph
    (under LiteRT when it runs it the same, else TensorFlow)."""

    def __init__(self, path: str | Path, name: str, version: str = "1", allow_unsafe: bool = False,
                 engine: str = "auto", threads: int = 1):
        if engine not in INFERENCE_ENGINES:
            raise ValueError(f"engine must be one of {', '.join(INFERENCE_ENGINES)}, got {engine!r}")
        self.path = Path(path)
        self.allow_unsafe = allow_unsafe
        self.requested_engine = engine
        self.engine = "tensorflow"  # what runs the model once loaded
        self.threads = threads
        self.name = name
        self.version = version
        self.ready = False
        self.signature: Signature | None = None
        self.load_seconds = 0.0
        self.warmup_seconds = 0.0
        self._call = None

    def load(self) -> None:
        """Load the file with Keras safe mode, compile the call, warm it up, then mark ready.

        Raises ModelLoadError with a message an operator can act on.
        """
        started = time.perf_counter()
        model = self._read_file()
        input_structure = _structure(model, "input")
        output_structure = _structure(model, "output")
        inputs = _input_infos(input_structure)
        self._call = _compile_call(model, input_structure, inputs)
        self.load_seconds = time.perf_counter() - started

        started = time.perf_counter()
        warm = self._call(zeros_feed(inputs, rows=1))
        self._output_names = _output_names(model, output_structure, warm)
        outputs = tuple(
            TensorInfo(name, (None,) + tuple(array.shape[1:]), array.dtype.name)
            for name, array in zip(self._output_names, _flatten(warm))
        )
        self.signature = Signature(inputs=inputs, outputs=outputs)
        if self.requested_engine != "tensorflow":
            self._switch_to_litert(inputs)
        self.warmup_seconds = time.perf_counter() - started
        self.ready = True
        log.info(
            "model loaded",
            extra={"model": self.name, "version": self.version, "engine": self.engine,
                   "load_seconds": round(self.load_seconds, 3), "warmup_seconds": round(self.warmup_seconds, 3)},
        )

    def _switch_to_litert(self, inputs: tuple[TensorInfo, ...]) -> None:
        """Run the traced graph under LiteRT if it converts and computes the same (api/litert.py)."""
        from api.litert import LiteRTUnavailable, build_litert_call

        tensorflow_call = self._call
        traced = getattr(tensorflow_call, "concrete", tensorflow_call)  # the direct call's, or the graph itself
        try:
            lite = build_litert_call(traced, inputs, self.threads, reference=lambda feed: _flatten(tensorflow_call(feed)))
        except LiteRTUnavailable as exc:
            if self.requested_engine == "litert":
                raise ModelLoadError(f"INFERENCE_ENGINE=litert, but {exc}") from None
            log.warning("serving with TensorFlow: LiteRT cannot run this model",
                        extra={"model": self.name, "reason": str(exc)})
            return
        lite(zeros_feed(inputs, rows=1))  # warm: its first call plans the memory
        # Nothing keeps TensorFlow's traced graph from here on: with its variables it is
        # TensorFlow's own copy of the model (about 210 MB of a MobileNetV2 worker's 1,080 MB).
        self._call, self.engine = lite, "litert"

    def plan_batches(self, max_rows: int) -> None:
        """Prepare for batches of up to ``max_rows`` rows: under LiteRT, an interpreter for
        each power of two up to it (api/litert.py); TensorFlow's traced call takes any size."""
        plan = getattr(self._call, "plan_batches", None)
        if plan is not None:
            plan(max_rows)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on a batch: input name -> array, returns output name -> array."""
        if not self.ready:
            raise ModelNotLoaded(f"model {self.name!r} is not loaded")
        try:
            result = self._call(inputs)
        except Exception as exc:
            import tensorflow as tf  # imported by then; here rather than on every call

            if isinstance(exc, (tf.errors.InvalidArgumentError, ValueError)):
                # Values the model cannot take (an embedding index out of range, say).
                raise ModelInputError(first_line(exc)) from exc
            raise
        return {name: np.asarray(array) for name, array in zip(self._output_names, _flatten(result))}

    def _read_file(self):
        import keras

        if not self.path.is_file():
            raise ModelLoadError(f"MODEL_PATH {str(self.path)!r} is not a file")
        if self.path.suffix != ".keras":
            raise ModelLoadError(f"MODEL_PATH {str(self.path)!r} is not a Keras 3 `.keras` file")
        try:
            # safe_mode refuses files that would run arbitrary code when loaded (Lambda
            # layers); only an explicit ALLOW_UNSAFE_MODEL turns it off.
            return keras.saving.load_model(self.path, compile=False, safe_mode=not self.allow_unsafe)
        except Exception as exc:  # Keras raises many types; the operator needs the message.
            message = f"cannot load {str(self.path)!r}: {first_line(exc)}"
            if "safe_mode" in str(exc):
                message += " (Keras Fleet loads in safe mode; set ALLOW_UNSAFE_MODEL=true only for a file you trust)"
            raise ModelLoadError(message) from exc


def _structure(model, which: str):
    """The model's input or output structure: a tensor, a list, or a dict of tensors."""
    try:
        return getattr(model, which)
    except (AttributeError, ValueError):
        tensors = getattr(model, which + "s", None)  # Sequential: .inputs / .outputs
        if not tensors:
            raise ModelLoadError(
                f"the model has no defined {which}s; save a Functional or Sequential model built on keras.Input"
            ) from None
        return tensors[0] if len(tensors) == 1 else list(tensors)


def _input_infos(structure) -> tuple[TensorInfo, ...]:
    named = structure.items() if isinstance(structure, dict) else ((t.name, t) for t in _as_list(structure))
    infos = []
    for name, tensor in named:
        dtype = str(tensor.dtype)
        if dtype not in SUPPORTED_DTYPES:
            raise ModelLoadError(f"input {name!r} has dtype {dtype}, which JSON numbers cannot carry")
        infos.append(TensorInfo(name, tuple(tensor.shape), dtype))
    if len({info.name for info in infos}) != len(infos):
        raise ModelLoadError("the model's inputs must have distinct names")
    return tuple(infos)


def _compile_call(model, structure, inputs: tuple[TensorInfo, ...]):
    """Wrap ``model(x, training=False)`` in a tf.function traced once for any batch size."""
    import tensorflow as tf

    names = [info.name for info in inputs]
    spec = {info.name: tf.TensorSpec(info.shape, tf.as_dtype(info.dtype), name=info.name) for info in inputs}

    def arrange(feed: dict):
        if isinstance(structure, dict):
            return feed
        if isinstance(structure, (list, tuple)):
            return [feed[name] for name in names]
        return feed[names[0]]

    # A fixed input_signature with a None batch dimension means one trace serves every
    # batch size: no retracing when requests bring different numbers of instances.
    @tf.function(input_signature=[spec])
    def call(feed):
        return model(arrange(feed), training=False)

    # The traced graph, called without tf.function's dispatch (about 100 us a call) nor
    # the concrete function's argument matching (about 60 us more): see _direct_call.
    return _direct_call(call.get_concrete_function())


def _direct_call(concrete):
    """A call of the traced graph on a feed dict, flattened by hand.

    ConcreteFunction.__call__ matches every argument against the signature again on each
    call: about 60 us and most of the Python a small model's call runs (measured here,
    docs/benchmark-history.md). Its own fast path, for calls that no gradient tape
    watches, is the graph's AtomicFunction called on the flat inputs plus the captured
    variables; so is this. TensorFlow names that internal, so a TensorFlow without it
    gets the public call instead.
    """
    import tensorflow as tf

    atomic = getattr(concrete, "_inference_function", None)
    if not callable(getattr(atomic, "call_preflattened", None)) or concrete.graph.deferred_external_captures:
        return concrete  # (deferred captures are looked up anew on every call)
    order = graph_input_order(concrete)
    captured = list(concrete.captured_inputs)

    def call(feed: dict):
        return atomic.call_preflattened([tf.constant(feed[name]) for name in order] + captured)

    call.concrete = concrete  # the one trace every batch size runs
    return call


def graph_input_order(concrete) -> list[str]:
    """The feed's input names in the order the traced graph takes them (tf.nest's: sorted)."""
    import tensorflow as tf

    feed_spec = concrete.structured_input_signature[0][0]
    return tf.nest.flatten({name: name for name in feed_spec})


def _output_names(model, structure, result) -> list[str]:
    if isinstance(result, dict):
        return list(result.keys())
    declared = list(getattr(model, "output_names", None) or [])
    count = len(_flatten(result))
    if len(declared) == count:
        return declared
    if count == 1:
        return [model.layers[-1].name if model.layers else "output_0"]
    return [f"output_{i}" for i in range(count)]


def _flatten(result) -> list:
    if isinstance(result, dict):
        return list(result.values())
    return _as_list(result)


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def zeros_feed(inputs: tuple[TensorInfo, ...], rows: int) -> dict[str, np.ndarray]:
    """A feed of ``rows`` all-zero instances per input (warm-ups, timing runs).

    Unknown non-batch dimensions (variable-length inputs) get length 1.
    """
    return {info.name: np.zeros((rows,) + tuple(dim or 1 for dim in info.instance_shape), dtype=info.dtype)
            for info in inputs}


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for an error or log line (at most 500 characters)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]

