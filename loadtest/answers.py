"""Check a predict answer against the model's output signature.

A load test that only counts status codes passes a server that answers 200 with
garbage; every answer is checked here: one prediction per instance, each of the
output's shape, all numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from loadtest.metadata import Tensor


class WrongAnswer(ValueError):
    """The answer is not what the model's signature promises; the message says how."""


def check_predictions(document: Any, outputs: tuple[Tensor, ...], instances: int) -> None:
    """Raise WrongAnswer unless `document` is {"predictions": [...]} with one valid prediction per instance.

    With several outputs each prediction is an object keyed by output name, as
    TensorFlow Serving answers a row-format request.
    """
    if not isinstance(document, dict) or "predictions" not in document:
        raise WrongAnswer('the answer is not an object with "predictions"')
    predictions = document["predictions"]
    if not isinstance(predictions, list) or len(predictions) != instances:
        got = len(predictions) if isinstance(predictions, list) else type(predictions).__name__
        raise WrongAnswer(f"expected {instances} prediction(s), one per instance; got {got}")
    if len(outputs) == 1:
        _check_output(predictions, outputs[0])
        return
    names = sorted(tensor.name for tensor in outputs)
    for row, prediction in enumerate(predictions):
        if not isinstance(prediction, dict) or sorted(prediction) != names:
            raise WrongAnswer(f"prediction {row} must be an object with the outputs {names}")
    for tensor in outputs:
        _check_output([prediction[tensor.name] for prediction in predictions], tensor)


def _check_output(values: list, tensor: Tensor) -> None:
    """The batch of one output: numbers, each prediction of the output's shape."""
    try:
        array = np.asarray(values)
    except ValueError:  # ragged nesting
        raise WrongAnswer(f"output {tensor.name!r}: predictions have uneven shapes") from None
    if array.dtype.kind not in "biuf":
        raise WrongAnswer(f"output {tensor.name!r}: predictions hold something other than numbers")
    got = array.shape[1:]
    expected = tensor.shape
    if len(got) != len(expected) or any(want is not None and want != dim for want, dim in zip(expected, got)):
        raise WrongAnswer(f"output {tensor.name!r}: expected shape {_shape(expected)} per prediction, got {_shape(got)}")


def _shape(shape: tuple) -> str:
    return "(" + ", ".join("any" if dim is None else str(dim) for dim in shape) + ("," if len(shape) == 1 else "") + ")"
