"""Metrics and logs through real nginx and gunicorn with two workers."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
from datetime import datetime, timedelta

import numpy as np
import pytest

from api.logs import FLUSH_SECONDS as LOG_FLUSH_SECONDS
from api.metric_buffer import FLUSH_SECONDS
from tests.stack import DIGITS, RunningStack, start_digits_stack, wait_for
from tests.test_auth import api_keys
from tests.test_e2e import digits_images, worker_pids
from tests.test_metrics import samples

pytestmark = pytest.mark.e2e



@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = start_digits_stack(tmp_path_factory.mktemp("obs-run"), workers=2)
    yield running
    running.stop()


def predict_counts(text: str) -> dict[str, float]:
    found = samples(text, "keras_fleet_requests_total")
    return {dict(labels)["code"]: value for labels, value in found.items() if dict(labels)["endpoint"] == "predict"}


def test_counters_add_up_across_workers_dead_and_alive(stack):
    import keras

    images = digits_images(60)
    expected_classes = np.bincount(
        np.asarray(keras.saving.load_model(DIGITS)(images, training=False)).argmax(axis=1), minlength=10
    )

    def good(index):
        return stack.post("/predict", json={"instances": [images[index].tolist()]}).status_code

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        assert set(pool.map(good, range(30))) == {200}
    for _ in range(7):
        assert stack.post("/predict", data=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    for _ in range(3):
        assert stack.post("/predict", data=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert stack.post("/v1/models/nope:predict", json={"instances": [[0]]}).status_code == 404
    # Workers write their counts out once a second (api/metric_buffer.py): wait until
    # the scrape has them all, so the kill below loses none.
    assert wait_for(lambda: predict_counts(stack.metrics()) == {"200": 30, "400": 7, "415": 3, "404": 1})

    # Kill every worker: gunicorn starts two new ones, and the rest of the sequence goes
    # to them. The dead workers' counts must stay; their live gauges must go.
    master = stack.pid("gunicorn")
    old = worker_pids(master)
    starts = samples(stack.metrics(), "keras_fleet_worker_starts_total")[(("model", "digits"),)]
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    # Both new workers serving (each on its own socket): one alone would take at most
    # its share of the predictions nginx lets in at once, and the 20 below could exceed it.
    assert wait_for(lambda: len(worker_pids(master) - old) == 2)
    new = worker_pids(master) - old
    assert wait_for(lambda: all(stack.served_socket(pid) for pid in new), timeout=60)
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        assert set(pool.map(good, range(30, 60))) == {200}

    assert wait_for(lambda: predict_counts(stack.metrics()) == {"200": 60, "400": 7, "415": 3, "404": 1})
    # The scrape itself is the one request in flight, once the other worker has
    # written out that its own requests ended. A scrape is itself a request: one the
    # other worker answered shows there as in flight until that worker's next write
    # (FLUSH_SECONDS), so scrapes polled faster than that could keep each other in
    # view on both workers indefinitely.
    assert wait_for(lambda: samples(stack.metrics(), "keras_fleet_requests_in_flight") == {(): 1.0},
                    interval=FLUSH_SECONDS * 1.5)
    text = stack.metrics()
    assert predict_counts(text) == {"200": 60, "400": 7, "415": 3, "404": 1}
    by_class = samples(text, "keras_fleet_predictions_by_class_total")
    counted = {int(dict(labels)["predicted_class"]): value for labels, value in by_class.items()}
    assert counted == {label: count for label, count in enumerate(expected_classes) if count}
    # Each replacement counted its start: the dead workers' starts stay counted.
    assert samples(text, "keras_fleet_worker_starts_total") == {(("model", "digits"),): starts + 2}
    writers = {path.stem.split("_")[-1] for path in (stack.run_dir / "prometheus").glob("counter_*.db")}
    assert len(writers) >= 2, "the counts did not come from several worker processes"


def test_metrics_are_not_served_on_the_public_port(stack):
    for path in ("/metrics", "/metrics/", "//metrics", "/%6detrics"):
        response = stack.get(path)
        assert response.status_code == 404, path
        assert "keras_fleet" not in response.text


def test_monitoring_port_serves_only_metrics(stack):
    import requests

    assert requests.get(stack.metrics_url.replace("/metrics", "/predict"), timeout=5).status_code == 404
    assert requests.post(stack.metrics_url, timeout=5).status_code == 403


def test_each_request_has_one_json_line_from_nginx_with_the_apps_fields(stack):
    ids = [f"trace-{n}" for n in range(5)]
    for request_id in ids:
        response = stack.post("/predict", json={"instances": [[[0] * 8] * 8]}, headers={"X-Request-ID": request_id})
        assert not [name for name in response.headers if name.lower().startswith("x-fleet")], response.headers
    stack.post("/predict", data=b"{", headers={"Content-Type": "application/json", "X-Request-ID": "trace-bad"})
    stack.get("/healthz/ready", headers={"X-Request-ID": "trace-ready"})
    stack.get("/metrics", headers={"X-Request-ID": "trace-nginx"})  # nginx answers it itself: no app fields

    def logged(lines):
        return {entry.get("request_id"): entry for entry in map(json.loads, lines)}  # each line is JSON

    assert wait_for(lambda: set(ids + ["trace-bad", "trace-ready", "trace-nginx"]) <= set(logged(stack.access_log())))
    nginx = logged(stack.access_log())
    for request_id in ids:
        line = nginx[request_id]
        assert (line["status"], line["endpoint"], line["model"], line["batch_size"]) == (200, "predict", "digits", 1)
        assert datetime.fromisoformat(line["time"]).microsecond % 1000 == 0  # milliseconds, like the app's lines
    assert (nginx["trace-bad"]["status"], nginx["trace-bad"]["batch_size"]) == (400, None)
    assert (nginx["trace-ready"]["endpoint"], nginx["trace-ready"]["key_id"]) == ("ready", "")
    own = nginx["trace-nginx"]
    assert (own["status"], own["endpoint"], own["model"], own["batch_size"], own["key_id"]) == (404, "", "", None, "")
    time.sleep(LOG_FLUSH_SECONDS + 0.5)  # anything the app would write has been written
    assert not set(ids + ["trace-bad", "trace-ready"]) & set(logged(stack.app_log())), "a second line per request"
    def model_loaded():
        return [entry for entry in map(json.loads, stack.app_log()) if entry.get("message") == "model loaded"]

    # Each worker's (a replaced one's too) within the half second its lines may wait.
    assert wait_for(lambda: len(model_loaded()) >= 2)
    assert all(entry["warmup_seconds"] >= 0 and entry["engine"] == "litert" for entry in model_loaded())
    # TensorFlow's and LiteRT's native start-up lines came out as JSON, not on stderr.
    assert any("XNNPACK" in entry.get("message", "") for entry in map(json.loads, stack.app_log()))
    assert stack.stderr_log() == []


def test_nginx_splits_the_apps_fields_a_key_id_and_a_model_name_with_a_space_and_a_zone_west_of_utc(tmp_path):
    keys_file = tmp_path / "api-keys"
    key = api_keys("create", "--label", "e2e", keys_file=keys_file).stdout.strip()
    # nginx keeps TZ and writes local time: POSIX "XXX+5" is five hours west of UTC.
    stack = RunningStack(tmp_path / "run", {"MODEL_PATH": str(DIGITS), "MODEL_NAME": "digits demo",
                                            "API_KEYS_FILE": str(keys_file), "WEB_CONCURRENCY": "1",
                                            "TZ": "XXX+5"}).start()
    try:
        body = {"instances": [[[0] * 8] * 8] * 3}
        response = stack.post("/v1/models/digits demo:predict", json=body,
                              headers={"Authorization": f"Bearer {key}", "X-Request-ID": "split-1"})
        assert response.status_code == 200, response.text
        assert "X-Fleet" not in response.headers and response.headers["X-Request-ID"] == "split-1"

        def line():
            return next((entry for entry in map(json.loads, stack.access_log()) if entry["request_id"] == "split-1"), None)

        assert wait_for(lambda: line() is not None)
        logged = line()
        assert (logged["endpoint"], logged["model"], logged["batch_size"], logged["key_id"]) == (
            "predict", "digits demo", 3, key.split("_")[1])
        logged_at = datetime.fromisoformat(logged["time"])  # "...T02:22:52.043-05:00"
        assert logged_at.utcoffset() == timedelta(hours=-5) and logged_at.microsecond % 1000 == 0
        assert abs(logged_at.timestamp() - time.time()) < 60
    finally:
        stack.stop()
