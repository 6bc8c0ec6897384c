"""nginx's protections and hostile clients, through real nginx and gunicorn."""

from __future__ import annotations

import concurrent.futures
import io
import json
import pickle
import socket
import time

import numpy as np
import pytest

from api.logs import FLUSH_SECONDS
from tests.stack import DIGITS, RunningStack
from tests.test_e2e import worker_pids

pytestmark = pytest.mark.e2e

JSON = {"Content-Type": "application/json"}
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    running = RunningStack(tmp_path_factory.mktemp("secure-run"), {
        "MODEL_PATH": str(DIGITS), "WEB_CONCURRENCY": "2", "REQUEST_DEADLINE_MS": "30000",
        # Small limits so a test reaches them; loopback is not exempt here; the local
        # address is trusted to name clients in X-Forwarded-For, as the ALB is on AWS.
        "RATE_LIMIT_RPS": "5", "RATE_LIMIT_BURST": "5", "RATE_LIMIT_EXEMPT": "", "CLIENT_TIMEOUT_S": "2",
        "TRUSTED_PROXIES": "127.0.0.1/32",
    })
    running.start()
    yield running
    running.stop()


def as_client(address: str) -> dict:
    return {"X-Forwarded-For": address}


def test_rate_limit_answers_json_429_with_retry_after_per_client(stack):
    responses = [stack.get("/healthz/live", headers=as_client("198.51.100.7")) for _ in range(20)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited and {r.status_code for r in responses} == {200, 429}
    assert limited[0].headers["Retry-After"] == "1"
    assert "rate limit" in limited[0].json()["error"]
    assert limited[0].headers["X-Request-ID"]
    # Another client, behind the same trusted proxy, has its own allowance.
    assert stack.get("/healthz/live", headers=as_client("198.51.100.8")).status_code == 200


def test_security_headers_and_no_version_on_every_response(stack):
    ok = stack.get("/healthz/live", headers=as_client("198.51.100.20"))
    too_large = stack.post("/predict", data=b"0" * (9 * 1024 * 1024), headers={**JSON, **as_client("198.51.100.21")})
    app_error = stack.post("/predict", data=b"{", headers={**JSON, **as_client("198.51.100.22")})
    for response in (ok, too_large, app_error):
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.status_code, name)
        assert response.headers["Server"] == "nginx"


def hostile_bodies():
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"x": 1}], dtype=object), allow_pickle=True)
    truncated = io.BytesIO()
    np.save(truncated, np.zeros((4, 8, 8), "float32"))
    return [
        ("deep nesting", b'{"instances": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", JSON),
        ("a million-element array", b'{"instances": [' + b"0," * 999_999 + b"0]}", JSON),
        ("huge numbers", b'{"instances": [[' + b",".join([b"[" + b",".join([b"9" * 400] * 8) + b"]"] * 8) + b"]]}", JSON),
        ("strings for numbers", json.dumps({"instances": [[["1"] * 8] * 8]}).encode(), JSON),
        ("NaN", b'{"instances": [[[NaN, 1, 2, 3, 4, 5, 6, 7]]]}', JSON),
        ("Infinity", b'{"instances": [[[Infinity]]]}', JSON),
        ("invalid UTF-8", b'{"instances": "\xff\xfe"}', JSON),
        ("a pickle as JSON", pickle.dumps({"instances": [1]}), JSON),
        ("pickled .npy", pickled.getvalue(), {"Content-Type": "application/x-npy"}),
        ("truncated .npy", truncated.getvalue()[:-100], {"Content-Type": "application/x-npy"}),
        ("XML", b"<instances><i>1</i></instances>", {"Content-Type": "application/xml"}),
        ("form", b"instances=1", {"Content-Type": "application/x-www-form-urlencoded"}),
    ]


def worker_memory_kb(pids) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return total


def test_hostile_bodies_get_4xx_and_workers_survive_with_bounded_memory(stack):
    master = stack.pid("gunicorn")
    workers = worker_pids(master)
    before = worker_memory_kb(workers)
    for round_number in range(3):
        for index, (label, body, headers) in enumerate(hostile_bodies()):
            client = {"X-Forwarded-For": f"203.0.113.{round_number * 20 + index}"}
            response = stack.post("/predict", data=body, headers={**headers, **client})
            assert 400 <= response.status_code < 500, (label, response.status_code, response.text[:200])
            assert response.json()["error"], label
    assert worker_pids(master) == workers
    assert stack.get("/healthz/ready", headers=as_client("203.0.113.200")).status_code == 200
    # Bounded: three rounds of hostile bodies leave no growth a leak would show.
    assert worker_memory_kb(workers) - before < 300 * 1024


def raw_request(stack, head: bytes, body: bytes = b"", pause: float = 0.0) -> bytes:
    with socket.create_connection(("127.0.0.1", stack.port), timeout=15) as connection:
        connection.sendall(head)
        if body:
            connection.sendall(body)
        time.sleep(pause)
        chunks = []
        try:
            while chunk := connection.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, socket.timeout):
            pass
        return b"".join(chunks)


def test_slow_clients_are_cut_off_by_nginx_without_tying_up_workers(stack):
    workers = worker_pids(stack.pid("gunicorn"))
    def head(n: int) -> bytes:
        return (b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"X-Forwarded-For: 192.0.2.%d\r\nContent-Length: 1000\r\n\r\n" % (50 + n))

    # Body never completes; headers never complete: nginx times out after CLIENT_TIMEOUT_S.
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        slow = [pool.submit(raw_request, stack, head(n), b'{"instances": [', 0) for n in range(10)]
        slow += [pool.submit(raw_request, stack, b"POST /predict HTTP/1.1\r\nHost: x\r\n") for _ in range(10)]
        # While they dangle, everyone else is served (nginx holds them, not gunicorn).
        time.sleep(0.5)
        for n in range(5):
            assert stack.get("/healthz/ready", headers=as_client(f"192.0.2.{n}")).status_code == 200
        answers = [future.result(timeout=30) for future in slow]
    for answer in answers:
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
    assert worker_pids(stack.pid("gunicorn")) == workers
    time.sleep(3 * FLUSH_SECONDS)  # each worker writes its request lines at least this often
    assert not [line for line in stack.app_log() if '"192.0.2.5' in line], "a slow body reached the app"


def test_oversized_headers_get_json_431(stack):
    response = stack.get("/healthz/live", headers={"X-Junk": "x" * 20000, **as_client("198.51.100.30")})
    assert response.status_code == 431
    assert response.json()["error"] == "request headers are too large"
