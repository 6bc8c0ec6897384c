"""A fake model for API tests: the ServedModel interface, no TensorFlow."""

from __future__ import annotations

import numpy as np

from api.model import ModelInputError, Signature, TensorInfo

DIGITS_SIGNATURE = Signature(
    inputs=(TensorInfo("pixels", (None, 8, 8), "float32"),),
    outputs=(TensorInfo("probabilities", (None, 10), "float32"),),
)

# Two named inputs (one integer) and two outputs, to cover TF Serving's named formats.
MULTI_SIGNATURE = Signature(
    inputs=(TensorInfo("features", (None, 3), "float32"), TensorInfo("ids", (None,), "int32")),
    outputs=(TensorInfo("total", (None,), "float32"), TensorInfo("doubled", (None, 3), "float32")),
)

# An input value the fake model rejects, as a real model rejects an out-of-range id.
REJECTED_VALUE = -1


class FakeModel:
    """Deterministic stand-in for ServedModel with the same attributes and predict()."""

    def __init__(self, signature: Signature = DIGITS_SIGNATURE, name: str = "digits", version: str = "1",
                 ready: bool = True):
        self.signature = signature
        self.name = name
        self.version = version
        self.ready = ready
        self.load_seconds = 0.25
        self.warmup_seconds = 0.05
        self.engine = "fake"  # ServedModel's is "litert" or "tensorflow"
        self.calls: list[dict[str, np.ndarray]] = []
        self.planned_rows: int | None = None

    def plan_batches(self, max_rows: int) -> None:
        """Note the batch size the app planned for."""
        self.planned_rows = max_rows

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Digits: each row's mean in all 10 classes; multi: the sum and the doubled features."""
        self.calls.append(inputs)
        if self.signature is DIGITS_SIGNATURE:
            pixels = inputs["pixels"]
            means = pixels.reshape(len(pixels), -1).mean(axis=1, keepdims=True)
            return {"probabilities": np.repeat(means, 10, axis=1).astype("float32")}
        if (inputs["ids"] == REJECTED_VALUE).any():
            raise ModelInputError("id -1 is not in [0, 100)")
        features = inputs["features"]
        return {"total": features.sum(axis=1) + inputs["ids"], "doubled": features * 2}


class BrokenModel(FakeModel):
    """A model whose inference fails for a reason that is not the client's."""

    def predict(self, inputs):
        """Always fails like a server-side fault."""
        raise RuntimeError("out of memory (simulated)")
