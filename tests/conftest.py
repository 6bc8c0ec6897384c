"""Shared fixtures: in-process apps over fake models, and tiny real Keras models."""

from __future__ import annotations

import logging
import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from api.app import create_app  # noqa: E402
from tests.fakes import MULTI_SIGNATURE, FakeModel  # noqa: E402

# A fixed batch size: left at 0, the app would time the model at start, and the fakes
# record every call (tests/test_batching.py tests that measurement).
TEST_CONFIG = {"MAX_INSTANCES": 16, "MAX_BODY_BYTES": 64 * 1024, "MAX_BATCH_SIZE": 64}


def flush_logs() -> None:
    """Write the log lines the app's handler holds back (it writes below WARNING in batches)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


@pytest.fixture
def model():
    """A ready fake of the digits model."""
    return FakeModel()


@pytest.fixture
def client(model):
    """An in-process client of an app serving the fake digits model."""
    return create_app(TEST_CONFIG, model=model).test_client()


@pytest.fixture
def multi_model():
    """A ready fake model with two named inputs and two outputs."""
    return FakeModel(signature=MULTI_SIGNATURE, name="multi", version="7")


@pytest.fixture
def multi_client(multi_model):
    """An in-process client of an app serving the multi-input fake."""
    return create_app(TEST_CONFIG, model=multi_model).test_client()
