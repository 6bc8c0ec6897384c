"""`make bench`'s load generator (wrk with scripts/bench_wrk.lua) against a real stack.

Not a benchmark: these check that the open-loop schedule sends what it is asked to and
that accepted and shed answers are counted apart, so the numbers the bench reports
mean what its README says.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime

import numpy as np
import psutil
import pytest

import bench
import bench_ab
from tests.stack import DIGITS, RunningStack, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Two predictions in flight at most: a single connection never meets the cap, 16 do.
    running = RunningStack(tmp_path_factory.mktemp("bench-run"), {
        "MODEL_PATH": str(DIGITS), "WEB_CONCURRENCY": "1", "REQUEST_DEADLINE_MS": "30000", "MAX_IN_FLIGHT": "2",
    }).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    return bench.request_body("small", tmp_path_factory.mktemp("bench-body"))


def test_closed_loop_counts_requests_and_no_errors(stack, body):
    result = bench.wrk(stack.url + "/predict", *body, connections=2, seconds=1)
    assert result["requests"] > 0
    assert result["errors"] == 0
    # The machine's CPU over the run: some, and at most every core for the second (and
    # wrk's start and stop).
    assert 0 < result["cpu_us_per_request"] * result["requests"] <= 1.5e6 * bench.os.cpu_count()
    # wrk's own cores (two threads: at most two) apart from the rest: both did work.
    assert 0 < result["load_generator_cores"] <= 2.2
    assert result["server_side_cores"] > 0


def test_load_generator_cores_are_wrk_s_alone(stack, body):
    # A child of this process that burns CPU while wrk runs must not be counted as wrk's
    # (it has not ended, so its time is not in RUSAGE_CHILDREN), only as the machine's.
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        result = bench.wrk(stack.url + "/predict", *body, connections=1, seconds=2, rate=20)
    finally:
        burner.kill()
        burner.wait()
    assert result["load_generator_cores"] < 0.5
    assert result["server_side_cores"] > 0.8


def test_raw_counts_the_cpu_of_the_timed_calls_only():
    # One process and one thread cannot spend more than about a core per second of its
    # timed loop; counting its start (loading, converting the model) would pass that.
    rate, engine, cpu_us_per_sample = bench._raw_rate(DIGITS, "auto", 1, 1, 16, seconds=1)
    assert rate > 0 and engine == "litert"
    assert 0 < rate * cpu_us_per_sample / 1e6 <= 1.2


def test_a_raw_process_runs_on_the_cores_it_is_given_as_a_fleet_worker_does():
    import multiprocessing

    cpu = max(os.sched_getaffinity(0))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=bench._raw_worker, args=(str(DIGITS), "auto", 1, 16, 0.2, queue, [cpu]))
    worker.start()
    *_, ran_on = queue.get(timeout=120)
    worker.join()
    assert ran_on == [cpu]


def test_the_naive_server_runs_unpinned_as_the_guides_run_it():
    assert bench.system_env(DIGITS, "naive")["WORKER_CPU_AFFINITY"] == "off"
    assert all("WORKER_CPU_AFFINITY" not in bench.system_env(DIGITS, system) for system in ("floor", "fleet"))


def test_http_bound_adds_the_floor_s_cost_to_the_model_s():
    # Raw: 1,000 samples/s using both cores (2,000 us each); the floor 500 us a request.
    systems = {"raw": {"samples_per_s": 1000, "cpu_us_per_sample": 2000}, "floor": {"cpu_us_per_request": 500}}
    assert bench.http_bound(systems, cores=2) == 0.8
    systems["floor"]["cpu_us_per_request"] = 0
    assert bench.http_bound(systems, cores=2) == 1.0


def test_open_loop_sends_the_rate_asked_and_times_each_answer(stack, body):
    result = bench.wrk(stack.url + "/predict", *body, connections=1, seconds=3, rate=40, track=True)
    # A Poisson schedule of 40/s for 3 s: 120 requests on average, sd about 11.
    assert 28 <= result["answered_per_s"] <= 52, result
    assert result["goodput_per_s"] == result["answered_per_s"]
    assert result["shed_503"] == 0 and result["other_errors"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"]


def test_every_turn_of_the_schedule_is_a_prediction_however_many_connections(stack, body):
    # wrk asks the schedule before a connection's first request too: 64 connections at
    # 40/s for 3 s still send about 120 predictions (sd about 11), none of the first 64
    # turns spent on anything else (a GET per connection took 1.6 s of them).
    result = bench.wrk(stack.url + "/predict", *body, connections=64, seconds=3, rate=40, track=True)
    assert 28 <= result["answered_per_s"] <= 52, result
    assert result["other_errors"] == 0


@pytest.mark.parametrize("arrivals, least_spread, most_spread", [("even", 0.0, 0.5), ("poisson", 0.6, 1.6)])
def test_open_loop_spaces_its_requests_as_asked(stack, body, arrivals, least_spread, most_spread):
    def predict_times(since: float) -> list[float]:
        # By time, not by position: earlier tests' requests are in the same log.
        lines = [json.loads(line) for line in stack.access_log()]
        times = [datetime.fromisoformat(line["time"]).timestamp() for line in lines if line.get("uri") == "/predict"]
        return sorted(t for t in times if t >= since)

    time.sleep(1.5)  # the previous test's requests end (and are logged) before this one's start
    started = time.time()
    sent = bench.wrk(stack.url + "/predict", *body, connections=1, seconds=3, rate=40, arrivals=arrivals)["requests"]
    assert wait_for(lambda: len(predict_times(started)) >= sent - 1)
    gaps = np.diff(predict_times(started))
    # The gaps' spread (standard deviation / mean): 0 for a metronome, 1 for a Poisson
    # process; nginx logs each request as it ends, so an even schedule keeps a few
    # ms of jitter from the machine. 120 gaps bound a Poisson process's spread to about
    # 1 +- 0.2.
    spread = gaps.std() / gaps.mean()
    assert least_spread <= spread <= most_spread, (arrivals, spread, len(gaps))


def test_shed_answers_are_counted_apart_from_accepted_ones(stack, body):
    result = bench.wrk(stack.url + "/predict", *body, connections=16, seconds=2, rate=3000, track=True)
    assert result["shed_503"] > 0, result
    assert result["goodput_per_s"] > 0
    assert result["other_errors"] == 0
    # Only accepted answers are timed.
    assert result["p99_ms"] is not None


def test_overload_offers_twice_the_capacity_and_compares_goodput_with_capacity_around_it(stack, body):
    import types

    args = types.SimpleNamespace(overload_connections=16, connections=4, seconds=2, arrivals="poisson")
    capacity = bench.wrk(stack.url + "/predict", *body, connections=4, seconds=2)["requests_per_s"]
    row = bench.overload("test", stack.url + "/predict", *body, capacity, args)
    # Two predictions in flight at most (the fixture), offered twice what four clients
    # got through: the excess is refused, and goodput is measured against the capacity
    # before and after the run.
    at_2x, tracked = row["at_2x"], row["at_2x_tracked"]
    assert at_2x["offered_per_s"] == tracked["offered_per_s"] == round(2 * capacity, 1)
    assert at_2x["status_errors"] > 0 and at_2x["socket_errors"] == 0
    # wrk's own count: what was answered below 400 is the goodput.
    expected = at_2x["answered_per_s"] * (1 - at_2x["status_errors"] / at_2x["requests"])
    assert abs(at_2x["goodput_per_s"] - expected) <= 0.1, at_2x
    around = (capacity + row["capacity_after_2x_per_s"]) / 2
    assert row["goodput_over_capacity"] == round(at_2x["goodput_per_s"] / around, 3)
    assert row["capacity_steady"] == (abs(capacity - row["capacity_after_2x_per_s"]) <= 0.2 * around)
    # The run that times each answer tells the refused apart: all 503, none other.
    assert tracked["shed_503"] > 0 and tracked["other_errors"] == 0 and tracked["p99_ms"] is not None
    assert row["goodput_tracked_over_capacity"] == round(tracked["goodput_per_s"] / around, 3)
    # Per core left to the server side: each run's goodput over the cores the machine
    # was busy with, less wrk's own.
    after = row["capacity_after_2x"]
    assert after["requests_per_s"] == row["capacity_after_2x_per_s"]
    per_core_at_2x = at_2x["goodput_per_s"] / at_2x["server_side_cores"]
    assert row["goodput_per_server_core_over_capacity"] == round(
        per_core_at_2x / (after["requests_per_s"] / after["server_side_cores"]), 3)


def test_the_floor_s_overload_reference_skips_the_timed_run(stack, body):
    import types

    args = types.SimpleNamespace(overload_connections=16, connections=4, seconds=1, arrivals="poisson")
    row = bench.overload("floor", stack.url + "/predict", *body, 50.0, args, accepted_latency=False)
    assert "at_2x_tracked" not in row and row["at_2x"]["goodput_per_s"] > 0


def test_request_cpu_counts_every_call_of_every_thread():
    # scripts/bench_request_cpu.py, the README's CPU-per-request figures: each thread
    # sends its requests through the WSGI app, and each request is answered.
    import bench_request_cpu

    answered = []

    def app(environ, start_response):
        answered.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b"{}"]

    micros = bench_request_cpu.cpu_per_request(app, b'{"instances": []}', threads=3, requests=50)
    assert len(answered) == 200 + 3 * 50  # its warm-up, then each thread's
    assert set(answered) == {b'{"instances": []}'}
    assert micros > 0


# --- scripts/bench_parts.py's variants of the fleet ----------------------------------------


@pytest.fixture
def fleet_without(monkeypatch):
    """Build bench_apps.fleet_without apps in this process; every replacement undone after."""
    import bench_apps

    monkeypatch.setenv("MODEL_PATH", str(DIGITS))
    monkeypatch.setenv("MAX_BATCH_SIZE", "8")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    return lambda parts: bench_apps.fleet_without(parts, patch=monkeypatch.setattr).test_client()


def digit_requests(count: int) -> list[dict]:
    from sklearn.datasets import load_digits

    return [{"instances": [image.tolist()]} for image in load_digits().images[:count]]


def predictions(client, body: dict) -> list:
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["predictions"]


def test_fleet_without_the_model_call_answers_its_first_answer_again(fleet_without):
    whole = fleet_without("")
    first, second = digit_requests(2)
    assert predictions(whole, first) != predictions(whole, second)  # different digits, different answers
    without = fleet_without("model")
    assert predictions(without, first) == predictions(without, second)
    assert len(predictions(without, {"instances": first["instances"] * 3})) == 3


def test_fleet_without_the_batcher_never_submits_to_one(fleet_without, monkeypatch):
    from api import batching

    submitted = []
    submit = batching.Batcher.submit
    monkeypatch.setattr(batching.Batcher, "submit", lambda self, *a: submitted.append(1) or submit(self, *a))
    body = digit_requests(1)[0]
    answer = predictions(fleet_without(""), body)
    assert submitted == [1]
    assert predictions(fleet_without("batcher"), body) == answer and submitted == [1]


def test_fleet_without_telemetry_counts_and_logs_no_request(fleet_without, capsys):
    from tests.conftest import flush_logs

    client = fleet_without("telemetry")
    capsys.readouterr()  # what earlier apps' log handlers wrote as they were replaced
    predictions(client, digit_requests(1)[0])
    flush_logs()
    assert 'endpoint="predict"' not in client.get("/metrics").get_data(as_text=True)
    assert '"message":"request"' not in capsys.readouterr().out


def test_the_minimal_model_server_answers_what_the_fleet_answers(fleet_without):
    import bench_apps

    minimal = bench_apps.minimal().test_client()
    for body in digit_requests(3):
        np.testing.assert_allclose(predictions(minimal, body), predictions(fleet_without(""), body), rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_the_minimal_model_server_reads_npy_bodies_as_the_fleet_does(fleet_without, dtype):
    import io

    import bench_apps
    from sklearn.datasets import load_digits

    minimal = bench_apps.minimal().test_client()
    images = load_digits().images[:3].astype(dtype)  # pixels 0-16: the same values in either dtype
    npy = io.BytesIO()
    np.save(npy, images)

    def answer(client):
        response = client.post("/predict", data=npy.getvalue(), content_type="application/x-npy")
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()["predictions"]

    got = answer(minimal)
    assert len(got) == 3 and got != [got[0]] * 3  # three digits, three answers
    np.testing.assert_allclose(got, answer(fleet_without("")), rtol=1e-5)


def test_the_image_model_alternates_the_minimal_server_with_the_floor_and_the_fleet(monkeypatch, tmp_path):
    measured = []

    def measure_http(app, env, body, content_type, args):
        measured.append(next(system for system, known in bench.APPS.items() if known == app))
        return {"requests_per_s": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "cpu_us_per_request": 10.0, "errors": 0,
                "requests": 1000}

    monkeypatch.setattr(bench, "measure_http", measure_http)
    monkeypatch.setattr(bench, "measure_raw", lambda *a, **k: {"samples_per_s": 200.0, "engine": "tensorflow"})
    monkeypatch.setattr(bench, "request_body", lambda name, work, dtype: (tmp_path / "body", "application/x-npy"))
    args = argparse.Namespace(rounds=2, image_dtype="float32", connections=16, raw_batches={"small": [1], "image": [1]},
                              raw_seconds=1, seconds=1)
    image = bench.bench_model("image", tmp_path / "model.keras", tmp_path, args)
    assert measured == ["naive", "floor", "fleet", "minimal", "floor", "fleet", "minimal"]
    assert set(image["systems"]) == {"floor", "naive", "fleet", "minimal", "raw"}
    measured.clear()
    small = bench.bench_model("small", tmp_path / "model.keras", tmp_path, args)
    assert measured == ["naive", "floor", "fleet", "floor", "fleet"]
    assert "minimal" not in small["systems"]


def test_the_image_model_is_built_where_asked_even_in_a_directory_not_made_yet(tmp_path):
    # bench_serve.py and bench_affinity.py build it before anything made reports/.
    path = bench.image_model(tmp_path / "reports" / "mobilenet_v2.keras")
    import keras

    model = keras.models.load_model(path)
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1000)


def test_fleet_without_refuses_an_unknown_part(fleet_without):
    with pytest.raises(ValueError, match="unknown parts \\['nginx'\\]"):
        fleet_without("model,nginx")


def test_bench_parts_table_prices_each_part_against_the_whole_fleet():
    import bench_parts

    rows = {"floor": {"requests_per_s": 1000, "cpu_us_per_request": 300},
            "fleet": {"requests_per_s": 500, "cpu_us_per_request": 600},
            "fleet without the model call": {"requests_per_s": 800, "cpu_us_per_request": 450}}
    lines = bench_parts.markdown(rows).splitlines()
    assert lines[2:] == ["| floor | 1000 | 1.00 | 300 |  |", "| fleet | 500 | 0.50 | 600 |  |",
                         "| fleet without the model call | 800 | 0.80 | 450 | 150 |"]


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Where the scripts' temporary directories go during a test (they must be gone after)."""
    import tempfile

    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    monkeypatch.setenv("TMPDIR", str(directory))  # for the scripts run as processes
    return directory


def test_a_system_that_fails_to_start_leaves_nothing_running(body, scratch):
    import socket
    import types

    from localstack import StackError
    from tests.stack import free_port

    port = free_port()
    args = types.SimpleNamespace(port=port, connections=1, warmup=0)
    with pytest.raises(StackError, match="gunicorn exited"):
        with bench.Server("bench_apps:no_such_system()", {"MODEL_PATH": str(DIGITS)}, *body, args):
            pass
    with socket.socket() as probe:  # nginx let go of the port: it was stopped, not left behind
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    assert list(scratch.iterdir()) == []  # nor its run directory


def test_a_system_s_settings_reach_its_stack_and_leave_the_environment_as_it_was(body, monkeypatch, scratch):
    import types

    from tests.stack import free_port

    monkeypatch.delenv("MAX_IN_FLIGHT", raising=False)
    args = types.SimpleNamespace(port=free_port(), connections=1, warmup=0)
    settings = {"MODEL_PATH": str(DIGITS), "MAX_IN_FLIGHT": "3"}
    with bench.Server(bench.APPS["floor"], settings, *body, args) as server:
        assert "MAX_IN_FLIGHT" not in os.environ  # a second system started now would not inherit it
        assert server.stack.config.max_in_flight == 3
        assert psutil.Process(server.processes[0].pid).environ()["MAX_IN_FLIGHT"] == "3"
        assert server.stack.run_dir.parent == scratch and (server.stack.run_dir / "nginx.conf").exists()
    assert "MAX_IN_FLIGHT" not in os.environ
    # Its run directory (nginx's access log: ~100 MB after a benchmark's load) went with it.
    assert list(scratch.iterdir()) == []


def test_bench_serve_serves_a_system_as_the_bench_runs_it_until_interrupted(scratch):
    import signal
    import socket
    import urllib.request

    from tests.stack import free_port

    port = free_port()
    serving = subprocess.Popen([sys.executable, "scripts/bench_serve.py", "fleet", "small", "--port", str(port),
                                "--warmup", "0"], cwd=bench.REPO, stdout=subprocess.PIPE, text=True)
    try:
        lines = [serving.stdout.readline() for _ in range(6)]
        assert lines[0].startswith(f"serving fleet (digits.keras) at http://127.0.0.1:{port}/predict"), lines
        body_path = lines[1].split()[1]
        assert lines[1].strip().endswith("(application/json)") and body_path.startswith(str(scratch))
        assert any(line.strip().startswith("hey ") and body_path in line for line in lines)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=open(body_path, "rb").read(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            predictions = json.loads(answer.read())["predictions"]
        assert len(predictions) == 1 and len(predictions[0]) == 10  # the digits model's ten classes
        serving.send_signal(signal.SIGINT)
        assert serving.wait(timeout=60) == 0
    finally:
        serving.kill()
        serving.wait()
    with socket.socket() as probe:  # the stack was stopped, not left behind
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    assert list(scratch.iterdir()) == []  # nor the body it wrote, nor the stack's run directory


# --- scripts/bench_ab.py: two systems side by side, a core each ------------------------------


def test_a_system_is_an_app_with_settings_of_its_own():
    assert bench_ab.parse_system("fleet LOG_LEVEL=warning GUNICORN_THREADS=4") == (
        "api.wsgi:app", {"LOG_LEVEL": "warning", "GUNICORN_THREADS": "4"})
    assert bench_ab.parse_system("bench_apps:floor()") == ("bench_apps:floor()", {})
    with pytest.raises(ValueError, match="'verbose' is not NAME=VALUE"):
        bench_ab.parse_system("fleet verbose")


def test_pin_moves_every_thread_of_a_process_and_its_children():
    # A parent with a thread, and a child with a thread of its own.
    code = ("import threading, subprocess, sys, time; threading.Thread(target=time.sleep, args=(30,)).start(); "
            "subprocess.Popen([sys.executable, '-c', 'import threading, time; "
            "threading.Thread(target=time.sleep, args=(30,)).start(); time.sleep(30)']); time.sleep(30)")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        family = psutil.Process(parent.pid)
        assert wait_for(lambda: len(family.threads()) == 2 and family.children()
                        and len(family.children()[0].threads()) == 2)
        cpu = max(os.sched_getaffinity(0))
        bench_ab.pin([parent], cpu)
        threads = [thread.id for member in (family, *family.children()) for thread in member.threads()]
        assert len(threads) == 4
        assert all(os.sched_getaffinity(thread) == {cpu} for thread in threads)
    finally:
        for member in psutil.Process(parent.pid).children(recursive=True):
            member.kill()
        parent.kill()
        parent.wait()


def test_side_by_side_measures_both_systems_each_round_on_swapped_cores(capsys, scratch):
    assert bench_ab.main(["bench_apps:floor()", "fleet LOG_LEVEL=warning", "--rounds", "2",
                          "--seconds", "1", "--warmup", "1", "--port", "18380"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rounds = [line for line in lines if line.startswith("round ")]
    first, second = sorted(os.sched_getaffinity(0))[:2]
    assert [line.split("(")[1].split(")")[0] for line in rounds] == [f"A on cpu {first}", f"A on cpu {second}"]
    for line in rounds:
        a, b = (float(part.split()[1]) for part in line.split(": ", 1)[1].split(", ")[:2])
        assert a > 0 and b > 0
    assert lines[-1].startswith("B/A: ") and "geometric mean of 2 rounds" in lines[-1]
    assert list(scratch.iterdir()) == []  # the body and both run directories removed


def test_the_floor_plus_a_part_answers_the_floor_s_constant_after_doing_that_part(monkeypatch):
    import bench_apps
    from api.model import ServedModel

    monkeypatch.setenv("MODEL_PATH", str(DIGITS))
    constant = predictions(bench_apps.floor().test_client(), digit_requests(1)[0])
    for part in bench_apps.FLOOR_PARTS:
        assert predictions(bench_apps.floor_plus(part).test_client(), digit_requests(1)[0]) == constant, part
    client = bench_apps.floor_plus("model").test_client()  # loaded and warmed first
    called = []
    predict = ServedModel.predict
    monkeypatch.setattr(ServedModel, "predict", lambda self, feed: called.append(1) or predict(self, feed))
    predictions(client, digit_requests(1)[0])
    assert called == [1]
    response = bench_apps.floor_plus("parse").test_client().post("/predict", json={"instances": [["a"]]})
    assert response.status_code == 400  # the fleet's own check refused the body


def test_floor_plus_refuses_an_unknown_part():
    import bench_apps

    with pytest.raises(ValueError, match="unknown part 'gil'"):
        bench_apps.floor_plus("gil")


# --- scripts/bench_affinity.py: one fleet, its workers pinned and unpinned in turn -------------


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two cores to choose from")
def test_the_affinity_bench_measures_the_workers_pinned_and_unpinned_in_alternating_order(monkeypatch, capsys,
                                                                                         scratch):
    import bench_affinity

    every_core = os.sched_getaffinity(0)
    servers, seen = [], []

    class NotedServer(bench.Server):
        def __enter__(self):
            servers.append(super().__enter__())
            return servers[-1]

    measure = bench.wrk

    def wrk_noting_the_workers(*args, **kwargs):
        # What the workers' threads may run on while each measurement runs (not the warm-up's).
        if servers:
            threads = bench_affinity.worker_threads(servers[-1].processes[0].pid)
            seen.append(sorted({tuple(sorted(cores)) for cores in threads.values()}))
        return measure(*args, **kwargs)

    monkeypatch.setattr(bench, "Server", NotedServer)
    monkeypatch.setattr(bench, "wrk", wrk_noting_the_workers)
    assert bench_affinity.main(["fleet", "small", "--rounds", "2", "--seconds", "1", "--warmup", "0", "--port", "18390"]) == 0
    out = capsys.readouterr().out
    assert "pinned / unpinned:" in out and out.count("round ") == 2
    unpinned, pinned = [tuple(sorted(every_core))], [(core,) for core in sorted(every_core)[:2]]
    assert seen == [unpinned, pinned, pinned, unpinned]  # the order alternates between rounds
    assert list(scratch.iterdir()) == []
