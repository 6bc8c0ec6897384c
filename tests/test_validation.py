"""JSON numbers packed straight into a float input: the same arrays and errors as the general path."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from api.errors import InvalidInput
from api.model import TensorInfo
from api.validation import PACKED_LIMIT, _packed, conform, to_array

PIXELS = TensorInfo("pixels", (None, 2, 3), "float32")


def general(value, info: TensorInfo) -> np.ndarray:
    """What the general path makes of ``value``: numpy's discovery, checks and cast."""
    return conform(np.array(value), info)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("value", [
    [[[0.0, 1.5, -2.25], [3.0, 4.0, 5.0]]],
    [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]],  # integers, as clients often send pixels
    [[[0.1, 1, 1e15], [-1e-30, 2**53 - 1, -(2**53 - 1)]]],  # mixed, rounding to float32
    [[[16777217, 0.3, 0.7], [1 / 3, 2 / 3, 123456789.123]]],  # ints and fractions float32 cannot hold
])
def test_packed_numbers_equal_the_general_path(value, dtype):
    info = TensorInfo("pixels", (None, 2, 3), dtype)
    packed = _packed(value, info)
    assert packed is not None  # the fast path was taken
    expected = general(value, info)
    assert packed.dtype == expected.dtype == np.dtype(dtype)
    assert packed.shape == expected.shape
    assert np.array_equal(packed, expected)
    assert packed.flags.writeable


def test_a_scalar_input_packs_too():
    info = TensorInfo("x", (None,), "float32")
    assert np.array_equal(_packed([1, 2.5, -3], info), np.array([1, 2.5, -3], "float32"))


@pytest.mark.parametrize("value, reason", [
    ([[[0.0, 1.0, 2.0], [3.0, 4.0]]], "a row too short"),
    ([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0, 6.0]]], "a row too long"),
    ([[[0.0, 1.0, 2.0]]], "too few rows"),
    ([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]], "too shallow"),
    ([[[[0.0], 1.0, 2.0], [3.0, 4.0, 5.0]]], "too deep"),
    ([[[0.0, "1", 2.0], [3.0, 4.0, 5.0]]], "a string"),
    ([[[0.0, None, 2.0], [3.0, 4.0, 5.0]]], "a null"),
    ([[["a", "b", "c"], ["d", "e", "f"]]], "strings only"),
    ([[[[0.0], [1.0], [2.0]], [[3.0], [4.0], [5.0]]]], "lists only, one level too deep"),
    ([[[0.0, {"a": 1}, 2.0], [3.0, 4.0, 5.0]]], "an object"),
    ([[[0.0, float(PACKED_LIMIT), 2.0], [3.0, 4.0, 5.0]]], "a float at the limit"),
    ([[[0.0, 1e30, 2.0], [3.0, 4.0, 5.0]]], "a float past the limit, though within float32"),
    ([[[0.0, 2**64, 2.0], [3.0, 4.0, 5.0]]], "an integer numpy cannot hold"),
    ([[[0.0, 3.5e38, 2.0], [3.0, 4.0, 5.0]]], "past float32's range"),
])
def test_anything_unusual_is_left_to_the_general_path(value, reason):
    assert _packed(value, PIXELS) is None, reason


def test_other_dtypes_and_unknown_dimensions_are_left_to_the_general_path():
    assert _packed([[1, 2]], TensorInfo("x", (None, 2), "int32")) is None
    assert _packed([[1, 2]], TensorInfo("x", (None, 2), "float16")) is None
    assert _packed([[1, 2]], TensorInfo("x", (None, None), "float32")) is None


@pytest.mark.parametrize("value, words", [
    ([[[0.0, 1.0, 2.0], [3.0, 4.0]]], "uneven or too deep"),
    ([[[0.0, 1.0, 2.0]]], "must have shape (2, 3)"),
    ([[[0.0, "1", 2.0], [3.0, 4.0, 5.0]]], "found strings"),
    ([[[0.0, None, 2.0], [3.0, 4.0, 5.0]]], "nulls, objects"),
    ([[[0.0, 3.5e38, 2.0], [3.0, 4.0, 5.0]]], "range of float32"),
    ([[[0.0, float(np.finfo("float32").max) * (1 + 2**-30), 2.0], [3.0, 4.0, 5.0]]], "range of float32"),
])
def test_what_the_packing_refuses_gets_the_general_path_s_error(value, words):
    with pytest.raises(InvalidInput, match=words.replace("(", r"\(").replace(")", r"\)")):
        to_array(value, PIXELS, may_hold_booleans=False)


def test_booleans_are_found_when_the_body_may_hold_them():
    value = orjson.loads(b"[[[true, 1.0, 2.0], [3.0, 4.0, 5.0]]]")
    with pytest.raises(InvalidInput, match="booleans"):
        to_array(value, PIXELS, may_hold_booleans=True)
