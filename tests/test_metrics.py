"""Metrics, prediction monitoring and JSON request logs, in process."""

from __future__ import annotations

import json
import logging
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.logs import FLUSH_SECONDS, configure_logging, iso_time, log_fields, native_line, native_stderr_logged
from api.metrics import Metrics
from api.model import Signature, TensorInfo
from api.monitoring import PredictionMonitor, monitoring_kind
from api.telemetry import LOG_HEADER, log_header_value
from tests.conftest import TEST_CONFIG, flush_logs
from tests.fakes import BrokenModel, FakeModel

ONES = [[1.0] * 8 for _ in range(8)]


def samples(text: str, name: str) -> dict[tuple, float]:
    """{sorted label items: value} of one series in Prometheus text."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_request_counters_and_latency_by_endpoint_and_code(client):
    for _ in range(3):
        client.post("/predict", json={"instances": [ONES]})
    client.post("/predict", data=b"{", content_type="application/json")
    client.get("/healthz/ready")
    text = client.get("/metrics").get_data(as_text=True)
    requests = samples(text, "keras_fleet_requests_total")
    assert requests[(("code", "200"), ("endpoint", "predict"), ("model", "digits"))] == 3
    assert requests[(("code", "400"), ("endpoint", "predict"), ("model", "digits"))] == 1
    assert requests[(("code", "200"), ("endpoint", "ready"), ("model", "digits"))] == 1
    latency = samples(text, "keras_fleet_request_duration_seconds_count")
    assert latency[(("endpoint", "predict"), ("model", "digits"))] == 4
    info = samples(text, "keras_fleet_model_info")
    ((labels, value),) = info.items()
    assert dict(labels)["version"] == "1" and dict(labels)["engine"] == "fake" and value == 1
    assert samples(text, "keras_fleet_model_load_seconds") == {(("model", "digits"),): 0.25}
    assert samples(text, "keras_fleet_worker_starts_total") == {(("model", "digits"),): 1}


def test_metrics_are_prometheus_text(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_classifier_predictions_are_counted_by_class(client):
    # The fake digits model answers each row's mean in all 10 columns, so argmax is class 0.
    client.post("/predict", json={"instances": [ONES, ONES]})
    text = client.get("/metrics").get_data(as_text=True)
    by_class = samples(text, "keras_fleet_predictions_by_class_total")
    assert by_class == {(("model", "digits"), ("output", "probabilities"), ("predicted_class", "0")): 2}


@pytest.mark.parametrize(
    "shape, dtype, setting, kind",
    [
        ((None, 10), "float32", "auto", "classifier"),
        ((None, 1), "float32", "auto", "regressor"),
        ((None,), "float64", "auto", "regressor"),
        ((None, 4, 4), "float32", "auto", "off"),
        ((None, 3), "int32", "auto", "off"),
        ((None, 1), "float32", "classifier", "classifier"),
        ((None, 10), "float32", "off", "off"),
    ],
)
def test_monitoring_kind_follows_the_output_signature(shape, dtype, setting, kind):
    assert monitoring_kind(TensorInfo("y", shape, dtype), setting) == kind


def monitor_for(shape, setting="auto", buckets=(0.0, 1.0, 10.0)):
    metrics = Metrics(prediction_buckets=buckets)
    signature = Signature(inputs=(TensorInfo("x", (None, 2), "float32"),), outputs=(TensorInfo("y", shape, "float32"),))
    return metrics, PredictionMonitor(metrics, "m", signature, setting)


def test_regressor_values_go_to_the_histogram():
    metrics, monitor = monitor_for((None, 1))
    monitor.observe({"y": np.array([[0.5], [5.0], [50.0]], "float32")})
    buckets = samples(metrics.exposition().decode(), "keras_fleet_prediction_value_bucket")
    assert {dict(k)["le"]: v for k, v in buckets.items()} == {"0.0": 0, "1.0": 1, "10.0": 2, "+Inf": 3}


def test_binary_classifier_with_one_column_thresholds_at_one_half():
    metrics, monitor = monitor_for((None, 1), setting="classifier")
    monitor.observe({"y": np.array([[0.2], [0.7], [0.9]], "float32")})
    counts = samples(metrics.exposition().decode(), "keras_fleet_predictions_by_class_total")
    assert {dict(k)["predicted_class"]: v for k, v in counts.items()} == {"0": 1, "1": 2}


@pytest.mark.parametrize("columns", [1, 3])
def test_classes_are_counted_alike_in_python_and_in_numpy(monkeypatch, columns):
    # Small outputs are classified in Python (numpy's argmax lets go of the GIL), large
    # ones by numpy: both count the same classes, ties going to the first column.
    rng = np.random.default_rng(7)
    outputs = rng.random((40, columns)).astype("float32")
    outputs[:5] = 0.5  # ties, and exactly the binary threshold
    counted = {}
    for pick_values in (10**6, 0):
        monkeypatch.setattr("api.monitoring.PYTHON_PICK_VALUES", pick_values)
        metrics, monitor = monitor_for((None, columns), setting="classifier")
        monitor.observe({"y": outputs})
        monitor.observe({"y": outputs[:1]})
        counts = samples(metrics.exposition().decode(), "keras_fleet_predictions_by_class_total")
        counted[pick_values] = {dict(k)["predicted_class"]: v for k, v in counts.items()}
    expected = np.bincount((outputs[:, 0] >= 0.5).astype(int) if columns == 1 else outputs.argmax(axis=1))
    expected[int(outputs[0, 0] >= 0.5) if columns == 1 else 0] += 1
    assert counted[10**6] == counted[0] == {str(label): count for label, count in enumerate(expected) if count}


def test_bad_prediction_monitoring_setting_fails_at_start():
    with pytest.raises(ValueError, match="PREDICTION_MONITORING"):
        create_app({**TEST_CONFIG, "PREDICTION_MONITORING": "sometimes"}, model=FakeModel())
    with pytest.raises(ValueError, match="PREDICTION_BUCKETS"):
        create_app({**TEST_CONFIG, "PREDICTION_BUCKETS": "1,two"}, model=FakeModel())


def test_info_lines_leave_together_and_a_warning_at_once(capsys):
    configure_logging("info")
    capsys.readouterr()  # what earlier tests' handlers wrote as they were replaced
    log = logging.getLogger("keras_fleet.test")
    log.info("first")
    log.info("second")
    assert capsys.readouterr().out == ""  # waiting, to leave in one write
    log.warning("trouble")
    out = capsys.readouterr().out
    assert [json.loads(line)["message"] for line in out.splitlines()] == ["first", "second", "trouble"]


def test_a_line_written_straight_to_the_handler_is_the_line_logging_would_write(capsys):
    configure_logging("info")
    capsys.readouterr()
    log = logging.getLogger("keras_fleet.test")
    fields = {"request_id": "r1", "status": 200, "latency_ms": 1.5, "key_id": None, "shape": (2, 3)}
    log.log(logging.INFO, "request", extra=fields)
    log_fields(log, logging.INFO, "request", fields)
    log.warning("flush")
    through_logging, straight, _ = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert straight.pop("time")[:19] == through_logging.pop("time")[:19]  # to the second; both are "now"
    assert straight == through_logging == {"level": "INFO", "logger": "keras_fleet.test", "message": "request",
                                           "request_id": "r1", "status": 200, "latency_ms": 1.5, "key_id": None,
                                           "shape": [2, 3]}


def test_a_line_goes_through_logging_when_another_handler_listens():
    configure_logging("info")
    records = []
    listener = logging.Handler()
    listener.emit = records.append
    logging.getLogger().addHandler(listener)
    try:
        log_fields(logging.getLogger("keras_fleet.test"), logging.INFO, "request", {"status": 503})
    finally:
        logging.getLogger().removeHandler(listener)
    assert [(record.getMessage(), record.status) for record in records] == [("request", 503)]


@pytest.mark.parametrize("timestamp", [0.0, 1_700_000_000.0, 1_859_991_813.1169999, 1_700_000_000.9999996,
                                       1_700_000_000.0004999, 1_700_000_000.9995, 1_763_821_014.123456])
def test_log_times_read_as_datetime_writes_them(timestamp):
    from datetime import datetime, timezone

    assert iso_time(timestamp) == datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="milliseconds")


def test_a_waiting_line_is_written_within_the_flush_interval(capsys):
    configure_logging("info")
    capsys.readouterr()
    logging.getLogger("keras_fleet.test").info("soon")
    deadline = time.monotonic() + 10 * FLUSH_SECONDS
    out = ""
    while "soon" not in out and time.monotonic() < deadline:
        time.sleep(FLUSH_SECONDS / 5)
        out += capsys.readouterr().out
    assert json.loads(out)["message"] == "soon"


def test_a_closed_handler_stops_its_flusher_and_closes_again_quietly(capsys):
    # configure_logging closes the handler it replaces, and logging.shutdown closes it
    # again at exit: neither may raise, in the caller or in the flusher thread.
    configure_logging("info")
    handler = logging.getLogger().handlers[0]
    logging.getLogger("keras_fleet.test").info("buffered")  # starts the flusher
    flusher = handler._flusher
    handler.close()
    handler.close()
    flusher.join(timeout=10 * FLUSH_SECONDS)
    assert not flusher.is_alive()
    assert json.loads(capsys.readouterr().out)["message"] == "buffered"
    configure_logging("info")


def test_what_native_code_writes_to_stderr_becomes_json_log_lines(capfd, caplog):
    import os

    log = logging.getLogger("keras_fleet.native")
    with caplog.at_level(logging.INFO, logger="keras_fleet.native"):
        with native_stderr_logged(log):
            os.write(2, b"INFO: Created a delegate.\nWARNING: slow path\nno prefix here\n")
    assert capfd.readouterr().err == ""  # nothing reached the real stderr
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "Created a delegate."), (logging.WARNING, "slow path"), (logging.INFO, "no prefix here"),
    ]
    os.write(2, b"after\n")  # and stderr is back where it was
    assert capfd.readouterr().err == "after\n"


@pytest.mark.parametrize("line, level, message", [
    ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", logging.INFO,
     "Created TensorFlow Lite XNNPACK delegate for CPU."),
    ("I0000 00:00:1795361499.765889    8478 port.cc:153] oneDNN custom operations are on.", logging.INFO,
     "oneDNN custom operations are on."),
    ("E0000 00:00:1795361499.765889    8478 cuda.cc:1] no GPU: here", logging.ERROR, "no GPU: here"),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", logging.INFO,
     "All log messages before absl::InitializeLog() is called are written to STDERR"),
    ("plain text: kept whole", logging.INFO, "plain text: kept whole"),
])
def test_native_lines_keep_their_level_and_message(line, level, message):
    assert native_line(line) == (level, message)


def test_app_writes_one_json_line_per_request_when_it_logs_requests(capsys, model):
    client = create_app({**TEST_CONFIG, "REQUEST_LOG": "app"}, model=model).test_client()  # logs to stdout
    capsys.readouterr()
    client.post("/predict", json={"instances": [ONES, ONES]}, headers={"X-Request-ID": "log-me"})
    flush_logs()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (line,) = [entry for entry in lines if entry.get("request_id") == "log-me"]
    assert line["level"] == "INFO" and line["status"] == 200 and line["model"] == "digits"
    assert line["batch_size"] == 2 and line["endpoint"] == "predict"
    assert isinstance(line["latency_ms"], float) and line["time"]


def test_by_default_the_app_hands_nginx_its_fields_and_writes_no_request_line(capsys, model):
    client = create_app(TEST_CONFIG, model=model).test_client()
    capsys.readouterr()
    response = client.post("/predict", json={"instances": [ONES, ONES]}, headers={"X-Request-ID": "not-logged"})
    missing = client.get("/v1/models/nope")
    scrape = client.get("/metrics")
    flush_logs()
    assert response.status_code == 200 and missing.status_code == 404
    assert response.headers[LOG_HEADER] == "predict 2 - digits"  # endpoint, rows, no API key, model
    assert missing.headers[LOG_HEADER] == "model_status - - digits"
    assert LOG_HEADER not in scrape.headers  # nginx's monitoring listener logs nothing
    # nginx stamps the request id on the response (deploy/nginx/keras-fleet-headers.conf)
    assert "X-Request-ID" not in response.headers and "X-Request-ID" not in missing.headers
    assert "not-logged" not in capsys.readouterr().out
    assert 'endpoint="predict"' in scrape.get_data(as_text=True)  # counted all the same


def test_the_log_header_puts_the_model_last_as_the_one_field_that_may_hold_a_space():
    assert log_header_value("predict", 3, "1a2b3c4d", "my model") == "predict 3 1a2b3c4d my model"
    assert log_header_value("ready", None, None, "m") == "ready - - m"


def test_the_app_writes_the_line_of_a_server_error_whoever_logs_the_rest(capsys):
    client = create_app(TEST_CONFIG, model=BrokenModel()).test_client()
    capsys.readouterr()
    response = client.post("/predict", json={"instances": [ONES]}, headers={"X-Request-ID": "broken-1"})
    flush_logs()
    assert response.status_code == 500
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (line,) = [entry for entry in lines if entry.get("request_id") == "broken-1" and entry["message"] == "request"]
    assert line["level"] == "WARNING" and line["status"] == 500 and line["endpoint"] == "predict"
