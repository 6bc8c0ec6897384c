"""End to end: real nginx in front of real gunicorn on loopback, started as `make up` starts them."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from localstack import pid_alive

from tests import keras_models, readme_examples
from tests.stack import DIGITS, REPO, RunningStack, start_digits_stack, wait_for

pytestmark = pytest.mark.e2e

JSON = {"Content-Type": "application/json"}


def digits_images(count: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images[:count].astype("float32")


def worker_pids(master: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True).stdout
    return {int(pid) for pid in out.split()}


@pytest.fixture(scope="module")
def digits_stack(tmp_path_factory):
    stack = start_digits_stack(tmp_path_factory.mktemp("digits-run"), workers=2)
    yield stack
    stack.stop()


@pytest.fixture
def slow_stack(tmp_path_factory):
    """A stack whose large requests take seconds, to have requests in flight at shutdown."""
    model_path = keras_models.save_slow(tmp_path_factory.mktemp("slow-model") / "slow.keras")
    stack = RunningStack(
        tmp_path_factory.mktemp("slow-run"),
        {"MODEL_PATH": str(model_path), "WEB_CONCURRENCY": "2", "MAX_INSTANCES": "4096", "REQUEST_DEADLINE_MS": "60000"},
    )
    stack.start()
    yield stack
    stack.stop()


# --- the contract through nginx ------------------------------------------------------------


def test_every_endpoint_answers_through_nginx(digits_stack):
    images = digits_images(2).tolist()
    row = digits_stack.post("/v1/models/digits:predict", json={"instances": images})
    assert row.status_code == 200
    predictions = np.array(row.json()["predictions"])
    assert predictions.shape == (2, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    assert predictions.argmax(axis=1).tolist() == [0, 1]  # the first two digits images are 0 and 1

    columnar = digits_stack.post("/predict", json={"inputs": {"pixels": images}})
    assert columnar.status_code == 200
    np.testing.assert_allclose(columnar.json()["outputs"], predictions, rtol=1e-5)

    status = digits_stack.get("/v1/models/digits").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = digits_stack.get("/v1/models/digits/metadata").json()
    assert "pixels" in metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert digits_stack.get("/healthz/live").status_code == 200
    assert digits_stack.get("/healthz/ready").json()["status"] == "ready"


README_EXAMPLES = readme_examples.stack_examples((REPO / "README.md").read_text())


@pytest.mark.parametrize("block", README_EXAMPLES, ids=lambda block: f"README-line-{block[0].line}")
def test_the_readme_s_examples_answer_what_it_shows(digits_stack, block, tmp_path):
    # Run as a reader would, from a checkout (the examples call .venv/bin/python, here
    # the venv the tests run in, and leave files behind): only the stack's ports differ.
    (tmp_path / ".venv").symlink_to(sys.prefix)
    metrics_base = digits_stack.metrics_url.removesuffix("/metrics")
    for example in block:
        command = example.command.replace(readme_examples.STACK_URL, digits_stack.url)
        command = command.replace(readme_examples.METRICS_URL, metrics_base)
        result = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, capture_output=True,
                                text=True, timeout=60)
        where = f"README.md line {example.line}: {example.command[:80]}"
        assert result.returncode == 0, f"{where}\nexit {result.returncode}: {result.stderr}"
        if example.expected is not None:
            assert example.matches(result.stdout), f"{where}\nshows {example.expected}\nanswered {result.stdout}"
        elif example.command.startswith("curl "):
            assert result.stdout.strip(), f"{where}\nanswered nothing"


def test_fifty_concurrent_requests_match_in_process_inference(digits_stack):
    import keras

    images = digits_images(50)
    expected = np.asarray(keras.saving.load_model(DIGITS)(images, training=False))

    def predict(index: int):
        response = digits_stack.post("/predict", json={"instances": [images[index].tolist()]})
        return index, response.status_code, response.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(predict, range(50)))
    for index, status, body in results:
        assert status == 200, body
        np.testing.assert_allclose(body["predictions"][0], expected[index], rtol=1e-4, atol=1e-6)


HOSTILE = [
    ("malformed JSON", b'{"instances": [1,', JSON, 400),
    ("NaN", b'{"instances": [NaN]}', JSON, 400),
    ("deep nesting", b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", JSON, 400),
    ("a million-element array", b'{"instances": [' + b"0," * 999_999 + b"0]}", JSON, 400),
    ("one huge instance", b'{"instances": [[' + b"0," * 999_999 + b"0]]}", JSON, 400),
    ("strings for numbers", json.dumps({"instances": [[["x"] * 8] * 8]}).encode(), JSON, 400),
    ("wrong shape", json.dumps({"instances": [[1, 2]]}).encode(), JSON, 400),
    ("wrong content type", b"instances=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415),
    ("body over nginx's limit", b"0" * (8 * 1024 * 1024 + 1), JSON, 413),
]


@pytest.mark.parametrize("label, body, headers, status", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_bad_input_gets_a_json_4xx_and_workers_survive(digits_stack, label, body, headers, status):
    workers = worker_pids(digits_stack.pid("gunicorn"))
    response = digits_stack.post("/v1/models/digits:predict", data=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"]
    assert digits_stack.get("/healthz/ready").status_code == 200
    assert worker_pids(digits_stack.pid("gunicorn")) == workers


@pytest.mark.parametrize(
    "method, path, status",
    [("post", "/v1/models/other:predict", 404), ("get", "/v1/models/digits:predict", 405), ("get", "/nope", 404)],
)
def test_routing_errors_are_json(digits_stack, method, path, status):
    response = getattr(digits_stack, method)(path, json={"instances": [[[0] * 8] * 8]})
    assert response.status_code == status
    assert response.json()["error"]


def test_request_id_is_nginx_s_own_or_the_client_s_and_reaches_the_access_log(digits_stack):
    generated = digits_stack.get("/healthz/live").headers["X-Request-ID"]
    assert len(generated) == 32  # nginx's $request_id
    echoed = digits_stack.get("/healthz/live", headers={"X-Request-ID": "client-id-42"}).headers["X-Request-ID"]
    assert echoed == "client-id-42"
    forged = digits_stack.get("/healthz/live", headers={"X-Request-ID": 'a"b'}).headers["X-Request-ID"]
    assert forged != 'a"b' and len(forged) == 32
    too_large = digits_stack.post("/predict", data=b"0" * (9 * 1024 * 1024), headers=JSON)
    assert too_large.status_code == 413 and len(too_large.headers["X-Request-ID"]) == 32
    # exactly one X-Request-ID header, not nginx's and the app's side by side
    assert "," not in digits_stack.get("/healthz/live").headers["X-Request-ID"]
    wanted = {generated, "client-id-42", forged, too_large.headers["X-Request-ID"]}
    # nginx logs a request when it is finalised, which for a rejected upload can come
    # just after the client has its answer.
    deadline = time.monotonic() + 10
    while True:
        logged = {json.loads(line)["request_id"] for line in digits_stack.access_log()}
        if wanted <= logged or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert wanted <= logged


def test_another_keras_model_with_named_inputs_through_model_path(tmp_path):
    model_path = keras_models.save_multi_input(tmp_path / "ranker.keras")
    stack = RunningStack(tmp_path / "run", {"MODEL_PATH": str(model_path), "MODEL_VERSION": "4", "WEB_CONCURRENCY": "1"})
    stack.start()
    try:
        body = {"inputs": {"image": [[[0.1] * 4] * 4] * 3, "ids": [[1, 2], [3, 4], [5, 6]]}}
        response = stack.post("/v1/models/ranker/versions/4:predict", json=body)
        assert response.status_code == 200, response.text
        assert response.headers["X-Model-Version"] == "4"
        outputs = response.json()["outputs"]
        assert np.array(outputs["label"]).shape == (3, 5) and np.array(outputs["score"]).shape == (3, 1)
        assert stack.get("/v1/models/digits").status_code == 404
    finally:
        stack.stop()


# --- shutdown ------------------------------------------------------------------------------


def start_one_worker_slow_stack(tmp_path, **settings: str) -> RunningStack:
    """The slow model in one worker, large batches allowed and a deadline it always meets;
    ``settings`` add or override environment variables. Started; stop() it when done."""
    model_path = keras_models.save_slow(tmp_path / "slow.keras")
    # The batcher predicts a request's time from the calls before it: one-row calls of
    # this model read all its weights per row, so they foretell a 4096-row batch several
    # times too slow (past 60 s, and shed, on a busy day here). Ten minutes is never reached.
    return RunningStack(tmp_path / "run", {
        "MODEL_PATH": str(model_path), "WEB_CONCURRENCY": "1", "MAX_INSTANCES": "4096", "MAX_BATCH_SIZE": "4096",
        "REQUEST_DEADLINE_MS": "600000", **settings,
    }).start()


def send_slow_requests(stack: RunningStack, count: int):
    body = {"instances": np.random.default_rng(0).normal(size=(4096, 4)).round(3).tolist()}
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=count)
    futures = [pool.submit(stack.post, "/predict", json=body) for _ in range(count)]
    return pool, futures


def test_make_down_lets_in_flight_requests_finish_and_leaves_no_process(slow_stack):
    nginx, gunicorn = slow_stack.pid("nginx"), slow_stack.pid("gunicorn")
    workers = worker_pids(gunicorn)
    pool, futures = send_slow_requests(slow_stack, 4)
    time.sleep(1.0)  # the requests are now being computed; each takes seconds
    assert not any(future.done() for future in futures), "the slow model answered too fast to test shutdown"
    stopped = slow_stack.stop()
    assert stopped.returncode == 0, stopped.stderr
    statuses = [future.result().status_code for future in futures]
    pool.shutdown()
    assert statuses == [200] * 4
    assert not any(pid_alive(pid) for pid in {nginx, gunicorn, *workers})


def test_gunicorn_term_finishes_in_flight_then_nginx_answers_json_503(slow_stack):
    pool, futures = send_slow_requests(slow_stack, 2)
    time.sleep(1.0)
    gunicorn = slow_stack.pid("gunicorn")
    os.kill(gunicorn, signal.SIGTERM)
    assert [future.result().status_code for future in futures] == [200, 200]
    pool.shutdown()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and pid_alive(gunicorn):
        time.sleep(0.1)
    assert not pid_alive(gunicorn)
    response = slow_stack.get("/healthz/ready")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "not available" in response.json()["error"]


def test_predictions_over_max_in_flight_get_503_from_nginx_at_once_while_health_checks_pass(tmp_path):
    stack = start_one_worker_slow_stack(tmp_path, GUNICORN_THREADS="4", MAX_IN_FLIGHT="1")
    try:
        pool, futures = send_slow_requests(stack, 1)
        time.sleep(1.0)  # the first prediction is now being computed; it takes seconds
        assert not futures[0].done(), "the slow model answered too fast to test the cap"
        refused = stack.post("/v1/models/slow:predict", json={"instances": [[0.0] * 4]})
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert refused.json() == {"error": "the server is at capacity; retry shortly"}
        # Health checks and metadata do not count against the cap.
        assert stack.get("/healthz/ready").status_code == 200
        assert stack.get("/v1/models/slow/metadata").status_code == 200
        assert futures[0].result().status_code == 200
        pool.shutdown()
        # Refused before gunicorn: the app shed nothing.
        assert "keras_fleet_requests_shed_total{" not in stack.metrics()
        assert stack.post("/predict", json={"instances": [[0.0] * 4]}).status_code == 200
    finally:
        stack.stop()


def refuses_connections(path: str) -> bool:
    """True when nothing listens at the unix socket ``path`` any more."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return True
    return False


def test_a_prediction_refused_for_capacity_says_so_after_a_dead_workers_socket_refused_it(tmp_path):
    # Two workers of one thread, one prediction in flight each. One worker is killed and,
    # with the master stopped, not replaced: its socket refuses connections. nginx tries
    # it, then finds the other worker full: that is capacity, not a server still starting.
    stack = start_one_worker_slow_stack(tmp_path, WEB_CONCURRENCY="2", GUNICORN_THREADS="1", MAX_IN_FLIGHT="2")
    master = stack.pid("gunicorn")
    try:
        assert stack.wait_for_log("serves slot", count=2), "both workers must serve their sockets"
        os.kill(master, signal.SIGSTOP)
        dead = min(worker_pids(master))
        dead_socket = stack.served_socket(dead)
        assert dead_socket, f"worker {dead} serves no socket"
        os.kill(dead, signal.SIGKILL)
        # Not just until the process is a zombie: its other threads, and so its sockets,
        # outlive that by the tens of ms the kernel takes to unmap the model's memory; a
        # request sent there meanwhile is accepted and then reset (502, no retry of a POST).
        assert wait_for(lambda: refuses_connections(dead_socket)), "the killed worker's socket still accepts"
        pool, futures = send_slow_requests(stack, 1)
        time.sleep(1.0)  # the prediction is now being computed by the live worker; it takes seconds
        assert not futures[0].done(), f"answered too soon to test the cap: {futures[0].result().text}"
        refused = stack.post("/predict", json={"instances": [[0.0] * 4]})
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert refused.json() == {"error": "the server is at capacity; retry shortly"}
        # nginx did try the dead worker's socket first (502), then found the group full
        # (the line is written just after the answer is sent).
        def refused_predictions():
            lines = [json.loads(line) for line in stack.access_log()]
            return [line["upstream_status"] for line in lines if line["uri"] == "/predict" and line["status"] == 503]

        assert wait_for(lambda: refused_predictions() == ["502, 502"])
        assert futures[0].result().status_code == 200
        pool.shutdown()
    finally:
        os.kill(master, signal.SIGCONT)
        stack.stop()


def test_the_stack_keeps_its_temporary_files_in_its_own_directory_emptied_at_each_start(tmp_path):
    # A killed worker leaves the source files TensorFlow wrote for its traced functions;
    # they stay in the stack's directory until its next start, not in /tmp for good.
    left_behind = tmp_path / "tmp" / "__autograph_generated_file_of_a_killed_worker.py"
    left_behind.parent.mkdir()
    left_behind.write_text("")
    stack = start_digits_stack(tmp_path, workers=1)
    try:
        assert not left_behind.exists()
        (worker,) = worker_pids(stack.pid("gunicorn"))
        assert read_environ(worker)["TMPDIR"] == str(tmp_path / "tmp")
        assert list(left_behind.parent.glob("__autograph_generated_file*.py")), "the worker traced nothing there"
    finally:
        stack.stop()


def read_environ(pid: int) -> dict[str, str]:
    """Process ``pid``'s environment."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def test_npy_body_through_nginx_answers_like_json(digits_stack):
    import io

    images = digits_images(3)
    buffer = io.BytesIO()
    np.save(buffer, images)
    binary = digits_stack.post("/predict", data=buffer.getvalue(), headers={"Content-Type": "application/x-npy"})
    assert binary.status_code == 200, binary.text
    as_json = digits_stack.post("/predict", json={"instances": images.tolist()})
    np.testing.assert_allclose(binary.json()["predictions"], as_json.json()["predictions"], rtol=1e-5)


def test_workers_recycled_by_max_requests_answer_every_request(tmp_path):
    # Off by default (each recycle is a model load); set, a worker that reaches its count
    # finishes what it holds and exits while a fresh one loads: no request is lost.
    stack = RunningStack(tmp_path, {
        "MODEL_PATH": str(DIGITS), "WEB_CONCURRENCY": "2", "REQUEST_DEADLINE_MS": "30000",
        "GUNICORN_MAX_REQUESTS": "40", "GUNICORN_MAX_REQUESTS_JITTER": "10",
    }).start()
    try:
        master = stack.pid("gunicorn")
        first = worker_pids(master)
        images = digits_images(4)

        def predict(index: int) -> int:
            return stack.post("/predict", json={"instances": [images[index % 4].tolist()]}).status_code

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            statuses = list(pool.map(predict, range(300)))
        assert statuses.count(200) == 300, sorted(set(statuses))
        # 300 requests over two workers recycling every 40-50: several generations of workers.
        assert len(first - worker_pids(master)) == 2, "no worker was recycled"
    finally:
        stack.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_worker_restarted_under_load_answers_everything_and_takes_its_share(tmp_path):
    # A worker stopped under load (recycled, or TERM) hands its socket's path back to
    # gunicorn's shared socket and answers what already waits on its own; its
    # replacement takes the path over once ready, and nginx sends it its share.
    from bench import wrk

    stack = start_digits_stack(tmp_path, workers=2)
    try:
        body = tmp_path / "body.json"
        body.write_text(json.dumps({"instances": digits_images(1).tolist()}))
        master = stack.pid("gunicorn")
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            load = pool.submit(wrk, f"{stack.url}/predict", body, "application/json", 16, 16, track=True)
            time.sleep(2.0)
            stopped = min(worker_pids(master))
            os.kill(stopped, signal.SIGTERM)
            assert stack.wait_for_log("serves slot", count=3), "no replacement worker is serving"
            workers = sorted(worker_pids(master))
            assert stopped not in workers and len(workers) == 2
            # The share is measured under a load of its own, started now: on a busy machine
            # the replacement may take longer to load than the first load lasts. Both
            # together stay under the cap on predictions in flight (2 x 2 workers x 8 threads).
            share_load = pool.submit(wrk, f"{stack.url}/predict", body, "application/json", 8, 7)
            time.sleep(1.0)
            before = [cpu_seconds(pid) for pid in workers]
            time.sleep(4.0)
            used = [cpu_seconds(pid) - start for pid, start in zip(workers, before)]
            assert share_load.result()["errors"] == 0
            answered = load.result()
        assert answered["goodput_per_s"] > 0 and answered["shed_503"] == answered["other_errors"] == 0, answered
        assert min(used) > 0.35 * sum(used), f"CPU seconds per worker over 4 s of load: {used}"
    finally:
        stack.stop()


def thread_cores(pid: int) -> set[tuple[int, ...]]:
    """The core sets the threads of process ``pid`` may run on (one set when they agree)."""
    sets = set()
    for thread in os.listdir(f"/proc/{pid}/task"):
        try:
            sets.add(tuple(sorted(os.sched_getaffinity(int(thread)))))
        except ProcessLookupError:  # the thread ended since the listing
            pass
    return sets


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two cores to choose from")
def test_each_worker_runs_on_cores_of_its_own_and_its_replacement_takes_them(tmp_path):
    from api.affinity import worker_cores

    cores = sorted(os.sched_getaffinity(0))
    shares = {tuple(worker_cores(slot, 2, cores)) for slot in range(2)}
    stack = start_digits_stack(tmp_path, workers=2)
    try:
        master = stack.pid("gunicorn")
        # Every thread (request threads, the model's) on its worker's share; the two disjoint.
        by_worker = {pid: thread_cores(pid) for pid in worker_pids(master)}
        assert all(len(sets) == 1 for sets in by_worker.values()), by_worker
        assert sorted(share for (share,) in by_worker.values()) == sorted(shares), by_worker
        stopped = min(by_worker)
        os.kill(stopped, signal.SIGTERM)
        assert stack.wait_for_log("serves slot", count=3), "no replacement worker is serving"
        (replacement,) = worker_pids(master) - set(by_worker)
        assert thread_cores(replacement) == by_worker[stopped]
        assert stack.post("/predict", json={"instances": digits_images(1).tolist()}).status_code == 200
    finally:
        stack.stop()


def test_workers_left_unpinned_may_run_on_every_core(tmp_path):
    stack = start_digits_stack(tmp_path, workers=2, WORKER_CPU_AFFINITY="off")
    try:
        every_core = tuple(sorted(os.sched_getaffinity(0)))
        assert [thread_cores(pid) for pid in worker_pids(stack.pid("gunicorn"))] == [{every_core}] * 2
    finally:
        stack.stop()


def test_nginx_sends_a_request_to_the_idle_worker_not_behind_a_busy_one(tmp_path):
    # One request thread per worker: a worker computing a long prediction cannot start
    # another. On gunicorn's one shared socket, nginx's kept-alive connection could
    # belong to that worker, and a short request waited behind the long one; with a
    # socket per worker, least_conn sends it to the idle worker.
    stack = start_one_worker_slow_stack(tmp_path, WEB_CONCURRENCY="2", GUNICORN_THREADS="1")
    try:
        assert stack.wait_for_log("serves slot", count=2), "the second worker is not serving"
        short = {"instances": [[0.0] * 4]}
        for _ in range(8):  # connections to both workers in nginx's cache
            assert stack.post("/predict", json=short).status_code == 200
        pool, futures = send_slow_requests(stack, 1)
        time.sleep(1.0)
        assert not futures[0].done(), "the slow model answered too fast to test"
        for _ in range(10):
            assert stack.post("/predict", json=short).status_code == 200
        assert not futures[0].done(), "a short request waited for the long one"
        assert futures[0].result().status_code == 200
        pool.shutdown()
    finally:
        stack.stop()


def test_a_reload_answers_every_request_while_new_workers_load(tmp_path):
    # HUP: gunicorn starts new workers and stops the old at once. Until a new worker is
    # ready, each worker's socket leads to gunicorn's shared one, where requests wait.
    stack = start_digits_stack(tmp_path, workers=2)
    try:
        master = stack.pid("gunicorn")
        old = worker_pids(master)
        body = {"instances": digits_images(1).tolist()}
        reloaded = threading.Event()

        def client(_: int) -> list[int]:
            import requests

            statuses = []
            with requests.Session() as session:
                while not reloaded.is_set() or len(statuses) < 20:
                    statuses.append(session.post(f"{stack.url}/predict", json=body, timeout=60).status_code)
            return statuses

        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            clients = [pool.submit(client, index) for index in range(4)]
            time.sleep(1.0)
            os.kill(master, signal.SIGHUP)
            wait_for(lambda: not worker_pids(master) & old and len(worker_pids(master)) == 2, timeout=120)
            reloaded.set()
            statuses = [status for done in clients for status in done.result()]
        assert not worker_pids(master) & old, "the old workers are still there"
        assert statuses.count(200) == len(statuses), sorted(set(statuses))
    finally:
        stack.stop()


def test_overload_is_shed_with_503_and_retry_after_never_500(tmp_path):
    stack = start_one_worker_slow_stack(tmp_path, GUNICORN_THREADS="6", BATCH_QUEUE_SIZE="1")
    try:
        pool, futures = send_slow_requests(stack, 6)
        responses = [future.result() for future in futures]
        pool.shutdown()
        statuses = sorted(response.status_code for response in responses)
        assert 200 in statuses and 503 in statuses, statuses
        assert set(statuses) <= {200, 503}
        for response in responses:
            if response.status_code == 503:
                assert response.headers["Retry-After"] == "1"
                assert "capacity" in response.json()["error"]
        assert stack.get("/healthz/ready").status_code == 200
        assert 'reason="queue_full"' in stack.metrics()
    finally:
        stack.stop()
