"""Settings: read once from the environment, typed, with errors that name the variable."""

from __future__ import annotations

import os

import pytest

from api.config import CORES, Config, available_cores


def test_defaults_without_environment():
    config = Config.from_env({})
    assert config.model_path == "models/digits.keras" and config.served_name == "digits"
    assert config.max_instances == 1024 and config.allow_unsafe_model is False
    assert config.workers == available_cores()


def test_values_are_parsed_by_type():
    config = Config.from_env({
        "MODEL_PATH": "/m/ranker.keras", "MAX_INSTANCES": "7", "MAX_BATCH_WAIT_MS": "2.5",
        "ALLOW_UNSAFE_MODEL": "yes", "RATE_LIMIT_EXEMPT": " 10.0.0.0/8, ,192.168.0.0/16 ",
    })
    assert config.served_name == "ranker"
    assert config.max_instances == 7 and config.max_batch_wait_ms == 2.5 and config.allow_unsafe_model is True
    assert config.rate_limit_exempt_cidrs == ["10.0.0.0/8", "192.168.0.0/16"]


@pytest.mark.parametrize(
    "variable, value, message",
    [("MAX_INSTANCES", "many", "MAX_INSTANCES must be an integer"),
     ("MAX_BATCH_WAIT_MS", "soon", "MAX_BATCH_WAIT_MS must be a number"),
     ("ALLOW_UNSAFE_MODEL", "perhaps", "ALLOW_UNSAFE_MODEL must be true or false"),
     ("WORKER_CPU_AFFINITY", "pinned", "WORKER_CPU_AFFINITY must be one of auto, off")],
)
def test_a_wrong_type_names_the_variable(variable, value, message):
    with pytest.raises(ValueError, match=message):
        Config.from_env({variable: value})


def test_tensorflow_threads_split_the_cores_between_workers():
    cores = available_cores()
    assert Config.from_env({"WEB_CONCURRENCY": str(cores)}).intra_op_threads == 1
    assert Config.from_env({"WEB_CONCURRENCY": "1"}).intra_op_threads == cores
    assert Config.from_env({"TF_INTRA_OP_THREADS": "3"}).intra_op_threads == 3


def test_a_pinned_worker_sizes_its_threads_by_the_machine_not_by_its_share(monkeypatch):
    # A worker pinned to one core of two (api/affinity.py) still computes its threads
    # from the master's cores: "cores / workers", not "its one core / workers".
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert available_cores() == 1
    assert Config.from_env({"WEB_CONCURRENCY": "1"}).intra_op_threads == CORES


def test_mapping_accepts_field_or_variable_names():
    assert Config.from_mapping({"MODEL_NAME": "a"}).served_name == "a"
    assert Config.from_mapping({"model_name": "b"}).served_name == "b"


def test_in_flight_limit_is_max_in_flight_else_twice_the_worker_threads():
    assert Config.from_mapping({"WEB_CONCURRENCY": 3, "GUNICORN_THREADS": 4}).in_flight_limit == 24
    assert Config.from_mapping({"WEB_CONCURRENCY": 3, "GUNICORN_THREADS": 4, "MAX_IN_FLIGHT": 5}).in_flight_limit == 5


@pytest.mark.parametrize("env, recycle_after, jitter", [
    ({}, 0, 0),  # off: each recycle costs a model load
    ({"GUNICORN_MAX_REQUESTS": "1000"}, 1000, 100),  # jitter defaults to a tenth
    ({"GUNICORN_MAX_REQUESTS": "1000", "GUNICORN_MAX_REQUESTS_JITTER": "7"}, 1000, 7),
])
def test_gunicorn_recycles_workers_only_when_asked(monkeypatch, env, recycle_after, jitter):
    import runpy
    from pathlib import Path

    for name in ("GUNICORN_MAX_REQUESTS", "GUNICORN_MAX_REQUESTS_JITTER"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = runpy.run_path(str(Path(__file__).resolve().parent.parent / "deploy" / "gunicorn.conf.py"))
    assert (settings["max_requests"], settings["max_requests_jitter"]) == (recycle_after, jitter)
