"""Prediction monitoring: what the model answers, as Prometheus series.

A classifier's predictions are counted by predicted class; a regressor's values go
into a histogram. Which one is read from the first output's shape unless
PREDICTION_MONITORING says otherwise.
"""

from __future__ import annotations

import collections

import numpy as np

from api.metrics import Metrics
from api.model import Signature, TensorInfo

# Outputs of at most this many values are classified in Python, not numpy: numpy's
# argmax and bincount let go of the GIL even for ten values, and in a worker whose
# threads queue for the GIL each such call hands it to another thread and waits to
# get it back (measured on the digits model: about one thread switch per prediction
# here, and 5% more requests/s over the whole stack without it). A larger batch keeps
# numpy's one call.
PYTHON_PICK_VALUES = 4096

# A one-column output is a binary classifier's probability of class 1: class 1 from here up.
BINARY_THRESHOLD = 0.5


def monitoring_kind(output: TensorInfo, setting: str) -> str:
    """'classifier', 'regressor' or 'off' for this output, given PREDICTION_MONITORING."""
    if setting != "auto":
        return setting
    if output.dtype not in ("float16", "float32", "float64"):
        return "off"
    per_instance = output.instance_shape
    if per_instance in ((), (1,)):
        return "regressor"
    if len(per_instance) == 1 and per_instance[0] is not None and per_instance[0] >= 2:
        return "classifier"
    return "off"


class PredictionMonitor:
    """Records the first output of every prediction into the prediction series."""

    def __init__(self, metrics: Metrics, model_name: str, signature: Signature, setting: str):
        self.output = signature.outputs[0]
        self.kind = monitoring_kind(self.output, setting)
        self._model_name = model_name
        self._metrics = metrics
        # Only the series of the chosen kind exists, so dashboards see no empty one.
        if self.kind == "regressor":
            self._values = metrics.series(metrics.predicted_value, model_name, self.output.name)

    def observe(self, outputs: dict[str, np.ndarray]) -> None:
        """Count or histogram the predictions of one request."""
        values = outputs[self.output.name]
        if self.kind == "classifier":
            self._count_classes(values)
        elif self.kind == "regressor":
            for value in np.ravel(values):
                self._values.observe(float(value))

    def _count_classes(self, values: np.ndarray) -> None:
        rows = values.reshape(len(values), -1)
        if rows.size <= PYTHON_PICK_VALUES:
            picked = [_pick(row) for row in rows.tolist()]
            if len(picked) == 1:  # a batch of one (most calls, when the worker is not busy)
                self._class_counter(picked[0]).inc()
                return
            counts = collections.Counter(picked).items()
        else:
            predicted = (rows[:, 0] >= BINARY_THRESHOLD).astype(int) if rows.shape[1] == 1 else rows.argmax(axis=1)
            counts = ((label, int(count)) for label, count in enumerate(np.bincount(predicted)) if count)
        for label, count in counts:
            self._class_counter(label).inc(count)

    def _class_counter(self, label: int):
        return self._metrics.series(self._metrics.predicted_class, self._model_name, self.output.name, str(label))


def _pick(row: list[float]) -> int:
    """The class one row of outputs predicts, as numpy's argmax would (the first of equal
    largest values); one column is a binary classifier's probability of class 1."""
    if len(row) == 1:
        return int(row[0] >= BINARY_THRESHOLD)
    return row.index(max(row))
