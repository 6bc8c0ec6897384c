"""Real Locust runs, through `make loadtest` / `make capacity` and Locust itself, against real servers.

Every run is bounded: two users at a fixed 10 requests/s each for a few seconds (at
most a few hundred requests), a subprocess timeout, loopback addresses only. No
assertion is about timing (the machine is shared): thresholds are either generous
or impossible, and the tests read verdicts, exit codes and report contents.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from render_nginx import render

from tests import keras_models
from tests.stack import REPO, RunningStack, free_port, start_digits_stack

pytestmark = pytest.mark.e2e

LOCUSTFILE = REPO / "loadtest" / "locustfile.py"
LOCUST_CONF = REPO / "loadtest" / "locust.conf"
BOUNDED = {"USERS": "2", "SPAWN_RATE": "2", "USER_RPS": "10"}
GENEROUS_SLO = "--slo-p95-ms 10000 --slo-p99-ms 20000 --slo-failure-ratio 0"
TIMEOUT = 90


def make(target: str, timeout: float = TIMEOUT, **variables: str) -> subprocess.CompletedProcess:
    """Run a make target as a user would at the top level (not as a sub-make of `make test`)."""
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", "--no-print-directory", target, *(f"{key}={value}" for key, value in variables.items())],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )


def locust(host: str, reports: Path, *args: str) -> subprocess.CompletedProcess:
    """Run Locust itself on the locustfile, to read its own exit code (make turns every failure into 2)."""
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--config", str(LOCUST_CONF), "--headless",
         "--host", host, "-u", "2", "-r", "2", "--user-rps", "10", "--csv", str(reports / "run"), *args],
        cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT,
    )


def last_line(result: subprocess.CompletedProcess) -> str:
    """The last line of standard output, where the verdict is printed."""
    return result.stdout.rstrip().splitlines()[-1]


def aggregated(stats_csv: Path) -> dict:
    """The 'Aggregated' row of Locust's stats CSV."""
    with stats_csv.open() as rows:
        return next(row for row in csv.DictReader(rows) if row["Name"] == "Aggregated")


def listening(port: int) -> bool:
    """True once something accepts connections on 127.0.0.1:port."""
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def digits_stack(tmp_path_factory):
    # One worker: the runs are small, and the machine is shared.
    stack = start_digits_stack(tmp_path_factory.mktemp("digits-run"), workers=1)
    yield stack
    stack.stop()


@pytest.fixture
def wrong_answers(digits_stack, tmp_path):
    """A real nginx answering 200 with a wrong answer to every predict; metadata from the real stack."""
    port = free_port()
    site = render((REPO / "tests" / "nginx" / "wrong-answers.conf").read_text(),
                  {"LISTEN": f"127.0.0.1:{port}", "UPSTREAM": digits_stack.url})
    (tmp_path / "keras-fleet.conf").write_text(site)
    for directory in ("logs", *(f"nginx-tmp/{d}" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))):
        (tmp_path / directory).mkdir(parents=True)
    # As root, nginx's workers would otherwise run as "nobody", locked out of tmp_path.
    user = "user root root;" if os.geteuid() == 0 else ""
    main = render((REPO / "deploy" / "nginx" / "nginx.conf").read_text(), {"RUN_DIR": tmp_path, "USER_DIRECTIVE": user})
    (tmp_path / "nginx.conf").write_text(main)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    server = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                               "-e", str(tmp_path / "logs" / "error.log"), "-g", "daemon off;"])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not listening(port):
        assert server.poll() is None and time.monotonic() < deadline, "nginx did not start; see logs/error.log"
        time.sleep(0.1)
    yield url
    server.terminate()  # nginx's fast shutdown
    server.wait(timeout=30)


def test_make_loadtest_against_the_real_stack_passes_and_writes_the_reports(digits_stack, tmp_path):
    result = make("loadtest", HOST=digits_stack.url, DURATION="4s", INSTANCES="2", REPORTS=str(tmp_path),
                  LOCUST_ARGS=GENEROUS_SLO, **BOUNDED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert last_line(result).startswith("SLO PASSED: p95 latency ")
    verdict = json.loads((tmp_path / "loadtest.json").read_text())
    assert verdict["passed"] and verdict["model"] == "digits" and verdict["measured"]["requests"] > 0
    totals = aggregated(tmp_path / "loadtest_stats.csv")
    assert int(totals["Request Count"]) > 0 and int(totals["Failure Count"]) == 0
    assert "<html" in (tmp_path / "loadtest.html").read_text()[:1000].lower()


def test_a_load_generator_machine_runs_make_loadtest_without_the_app_s_packages(digits_stack, tmp_path):
    venv = tmp_path / "venv"
    result = make("loadtest", LOADTEST_ONLY="1", VENV=str(venv), HOST=digits_stack.url, DURATION="3s",
                  REPORTS=str(tmp_path / "reports"), LOCUST_ARGS=GENEROUS_SLO, timeout=600, **BOUNDED)
    assert result.returncode == 0, result.stdout + result.stderr
    assert last_line(result).startswith("SLO PASSED: p95 latency ")
    assert json.loads((tmp_path / "reports" / "loadtest.json").read_text())["measured"]["requests"] > 0
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, check=True).stdout
    installed = {package["name"].lower() for package in json.loads(listed)}
    assert {"locust", "numpy", "orjson", "keras-fleet"} <= installed
    assert not installed & {"tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert", "gunicorn", "moto"}


def test_the_same_run_with_an_impossible_threshold_fails_naming_it(digits_stack, tmp_path):
    result = make("loadtest", HOST=digits_stack.url, DURATION="3s", INSTANCES="2", REPORTS=str(tmp_path),
                  LOCUST_ARGS=f"{GENEROUS_SLO} --slo-p95-ms 0.001", **BOUNDED)
    assert result.returncode != 0
    assert re.fullmatch(r"SLO FAILED: p95 latency \d+(\.\d+)? ms > 0\.001 ms \(slo-p95-ms\)", last_line(result))
    assert json.loads((tmp_path / "loadtest.json").read_text())["missed"] == [last_line(result)[len("SLO FAILED: "):]]


def test_a_200_with_the_wrong_answer_is_failed_by_the_validation(wrong_answers, tmp_path):
    result = locust(wrong_answers, tmp_path, "-t", "3s", *GENEROUS_SLO.split())
    assert result.returncode == 1, result.stdout + result.stderr
    assert last_line(result) == "SLO FAILED: failure ratio 1.0000 > 0 (slo-failure-ratio)"
    totals = aggregated(tmp_path / "run_stats.csv")
    assert int(totals["Request Count"]) == int(totals["Failure Count"]) > 0
    failures = (tmp_path / "run_failures.csv").read_text()
    assert "wrong answer: output 'probabilities': expected shape (10,) per prediction, got (2,)" in failures


def test_no_reachable_server_is_exit_code_2_not_a_verdict(tmp_path):
    result = locust(f"http://127.0.0.1:{free_port()}", tmp_path, "-t", "3s")
    assert result.returncode == 2
    assert "cannot run the load test: GET" in result.stderr


def test_make_capacity_writes_the_report_the_autoscaler_reads(digits_stack, tmp_path):
    # Two short steps (10/s, then 20/s); a generous SLO, so the search ends at max steps.
    capacity_args = ("--capacity-start-rps 10 --capacity-user-rps 10 --capacity-step-seconds 3 "
                     "--capacity-settle-seconds 1 --capacity-max-steps 2 --capacity-keep-up 0.5")
    result = make("capacity", HOST=digits_stack.url, REPORTS=str(tmp_path), LOCUST_ARGS=f"{GENEROUS_SLO} {capacity_args}")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "capacity.json").read_text())
    assert isinstance(report["max_sustained_rps"], float) and report["max_sustained_rps"] > 0
    assert report["headroom"] == 0.7  # loadtest/locust.conf
    assert report["recommended_alb_request_count_per_target"] == math.floor(report["max_sustained_rps"] * 0.7 * 60)
    assert isinstance(report["recommended_alb_request_count_per_target"], int)
    assert report["p95_ms"] is not None and report["p99_ms"] is not None
    assert [s["users"] for s in report["steps"]] == [1, 2] and all(s["passed"] for s in report["steps"])
    assert report["model"] == "digits" and report["host"] == digits_stack.url and not report["limit_found"]
    assert last_line(result).startswith(f"CAPACITY: {report['max_sustained_rps']:g} requests/s")
    assert (tmp_path / "capacity.html").is_file() and (tmp_path / "capacity_stats.csv").is_file()


def test_make_loadtest_fits_another_model_with_named_inputs_and_outputs(tmp_path):
    model_path = keras_models.save_multi_input(tmp_path / "ranker.keras")
    stack = RunningStack(tmp_path / "run", {"MODEL_PATH": str(model_path), "WEB_CONCURRENCY": "1"})
    stack.start()
    try:
        result = make("loadtest", HOST=stack.url, DURATION="3s", INSTANCES="3", REPORTS=str(tmp_path / "reports"),
                      LOCUST_ARGS=GENEROUS_SLO, **BOUNDED)
    finally:
        stack.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert last_line(result).startswith("SLO PASSED")
    verdict = json.loads((tmp_path / "reports" / "loadtest.json").read_text())
    assert verdict["model"] == "ranker" and verdict["measured"]["failures"] == 0
