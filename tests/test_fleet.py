"""The local fleet: real HAProxy in front of real nginx + gunicorn instances, rolled under load.

One fleet of two instances serves the module, health-checked every second (the AWS
target group's other thresholds unchanged). The tests run in file order: a failed
roll (the fleet keeps its version), an interrupted roll finished by a second one, a good
roll, then a killed instance.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from tests import keras_models
from tests.fleet import HeldPrediction, Load, RunningFleet
from tests.stack import REPO, wait_for

from localfleet.balancer import Balancer, haproxy_binary
from localfleet.health import HealthCheck

pytestmark = pytest.mark.e2e

DIGITS = REPO / "models" / "digits.keras"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, request):
    assert DIGITS.is_file(), "the demo model is missing: `make test` trains it first"
    fleet = RunningFleet(tmp_path_factory.mktemp("fleet"))
    request.addfinalizer(fleet.down)  # also when `up` fails half-way
    return fleet.up(2, DIGITS, "1")


def current_version(fleet: RunningFleet) -> str:
    (version,) = {instance.model.version for instance in fleet.state().instances}
    return version


def next_version(fleet: RunningFleet) -> str:
    """One past the newest version in the fleet: a roll's target even when a test before left two."""
    return str(max(int(instance.model.version) for instance in fleet.state().instances) + 1)


# --- the fleet through HAProxy ---------------------------------------------------------------


def test_fleet_serves_through_haproxy_with_version_and_request_id(fleet):
    import requests

    response = requests.post(f"{fleet.url}/v1/models/digits:predict", json={"instances": [[[0] * 8] * 8]}, timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == current_version(fleet)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])  # nginx's, through HAProxy
    assert requests.get(f"{fleet.url}/healthz/ready", timeout=10).status_code == 200

    status = fleet.command("status")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[2:]}
    assert len(rows) == 2
    for name, (_, address, model, version, health, check, *_) in rows.items():
        assert address.startswith("127.0.1.") and model == "digits.keras"
        assert (version, health, check) == (current_version(fleet), "UP", "L7OK/200")
    assert "every 1 s (timeout 5 s), healthy after 3, unhealthy after 2" in status.stdout


def test_every_instance_is_checked_with_the_target_group_s_thresholds(fleet):
    config = (fleet.run_dir / "haproxy.cfg").read_text()
    assert "option httpchk GET /healthz/ready" in config and "timeout check 5000ms" in config
    servers = [row for row in fleet.api.stat_rows() if row["svname"] != "BACKEND"]
    assert len(servers) == 2
    expected = HealthCheck()
    assert all((row["check_rise"], row["check_fall"]) == (str(expected.healthy_threshold), str(expected.unhealthy_threshold))
               for row in servers)
    # the interval is the only threshold the tests shorten
    assert fleet.state().health == HealthCheck(interval=1.0)


# --- rolls under load ------------------------------------------------------------------------


def broken_file(directory):
    path = directory / "broken.keras"
    path.write_bytes(b"not a Keras file")
    return path


@pytest.mark.parametrize(
    "make_model, options, reason",
    [
        (broken_file, (), "gunicorn exited with code 3 while starting: cannot load"),  # the worker cannot boot
        (lambda d: keras_models.save_with_lambda(d / "lambda.keras"), (),  # safe mode refuses it
         "gunicorn exited with code 3 while starting: cannot load"),
        (lambda d: DIGITS, ("--warmup", "1"), "not ready after"),  # not ready within the warm-up time
    ],
    ids=["not-a-keras-file", "lambda-layer", "warm-up-timeout"],
)
def test_a_roll_to_a_model_that_cannot_serve_rolls_back_without_a_failed_request(
        fleet, tmp_path, make_model, options, reason):
    model_path = make_model(tmp_path)
    before = {instance.name for instance in fleet.state().instances}
    version, retries = current_version(fleet), fleet.retries()
    with Load(fleet.url) as load:
        result = fleet.roll(model_path, "broken", *options)
        load.wait_for_answers(20)
    assert result.returncode != 0
    assert "roll aborted and rolled back" in result.stderr and reason in result.stderr, result.stderr
    assert "removing" in result.stdout and "rollback complete" in result.stdout, result.stdout
    assert load.failures() == []
    assert load.versions() == {version: len(load.answers)}
    assert {instance.name for instance in fleet.state().instances} == before
    assert set(fleet.servers()) == before and all(server.healthy for server in fleet.servers().values())
    assert fleet.retries() == retries  # no request needed a replay on another instance


def read_until(process: subprocess.Popen, text: str) -> str:
    """The process's stdout up to and including the first line holding ``text`` (all of it, if none does)."""
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            break
    return "".join(lines)


def test_ctrl_c_while_an_instance_drains_ends_the_roll_after_that_step_without_a_failed_request(fleet):
    first, second = fleet.state().instances
    version, target = current_version(fleet), next_version(fleet)
    # One request in flight on each instance (HAProxy takes turns), so the drain of the
    # first one lasts until the test lets its request finish.
    held = [HeldPrediction(fleet.port) for _ in range(2)]
    assert wait_for(lambda: [server.sessions for server in fleet.servers().values()] == [1, 1]), fleet.servers()
    with Load(fleet.url) as load:
        roll = fleet.start_roll(DIGITS, target, "--drain-timeout", "300")
        try:
            output = read_until(roll, f"draining {first.name}")
            assert f"draining {first.name}" in output, output + roll.stderr.read()
            time.sleep(1)  # the roll is waiting for the held request
            roll.send_signal(signal.SIGINT)
            output += read_until(roll, "interrupted: stopping")
            assert f"interrupted: stopping {first.name} now" in output, output
            time.sleep(0.5)
            roll.send_signal(signal.SIGINT)  # impatient: the stop under way still runs to its end
            answers = [request.finish() for request in held]  # the stop lets the first one finish
            rest, errors = roll.communicate(timeout=120)
        finally:
            roll.kill()
        load.wait_for_answers(20)
    assert roll.returncode == 130, output + rest + errors
    assert f"{first.name} stopped and removed" in rest and "roll complete" not in rest, rest
    assert "roll interrupted after the step it was in" in errors and "Traceback" not in errors, errors
    assert answers == [(200, version), (200, version)]
    assert load.failures() == []
    # Two instances, as before the roll: the one replaced, the other untouched, both in rotation.
    instances = {instance.name: instance.model.version for instance in fleet.state().instances}
    assert len(instances) == 2 and instances[second.name] == version and target in instances.values(), instances
    assert set(fleet.servers()) == set(instances) and all(server.healthy for server in fleet.servers().values())
    assert not (fleet.run_dir / "instances" / first.name / "gunicorn.pid").exists()

    finish = fleet.roll(DIGITS, target)
    assert finish.returncode == 0, finish.stdout + finish.stderr
    assert "1 of 2 instances" in finish.stdout and "1 already serve it" in finish.stdout, finish.stdout
    assert current_version(fleet) == target


def test_a_roll_under_load_has_no_failed_request_and_ends_on_the_new_version(fleet):
    old = {instance.name for instance in fleet.state().instances}
    version = next_version(fleet)
    retries = fleet.retries()
    with Load(fleet.url) as load:
        result = fleet.roll(DIGITS, version)
        rolled = time.monotonic()
        load.wait_for_answers(50)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("[1/2] launched", "[1/2] draining", "[2/2] launched", "[2/2] draining", "roll complete"):
        assert step in result.stdout
    assert load.failures() == []
    assert len(load.versions()) == 2  # both versions answered during the roll
    after = load.versions(started_after=rolled)
    assert set(after) == {version} and after[version] >= 50
    assert {instance.name for instance in fleet.state().instances}.isdisjoint(old)
    assert fleet.retries() == retries  # the drain alone kept every request whole


def test_a_killed_gunicorn_master_leaves_rotation_and_fails_only_requests_in_flight(fleet):
    victim, survivor = (instance.name for instance in fleet.state().instances)
    with Load(fleet.url) as load:
        killed = time.monotonic()
        os.kill(fleet.gunicorn_pid(victim), signal.SIGKILL)
        deadline = time.monotonic() + 120
        while fleet.servers()[victim].status.startswith("UP") and time.monotonic() < deadline:
            time.sleep(0.2)
        out_of_rotation = time.monotonic()
        load.wait_for_answers(50)
    servers = fleet.servers()
    assert not servers[victim].status.startswith("UP"), servers[victim]
    assert servers[survivor].healthy
    in_flight = [answer for answer in load.answers if answer.started < killed < answer.ended]
    assert all(answer in in_flight for answer in load.failures()), load.failures()
    assert len(load.failures()) <= len(in_flight)
    assert load.versions(started_after=out_of_rotation).total() >= 50  # the fleet keeps serving
    status = fleet.command("status")
    assert status.returncode == 1 and "DOWN" in status.stdout


# --- the front door --------------------------------------------------------------------------


def test_health_check_defaults_are_the_aws_target_group_s():
    health = HealthCheck()
    assert (health.path, health.interval, health.timeout) == ("/healthz/ready", 10, 5)
    assert health.server_options() == "check inter 10000ms rise 3 fall 2"
    template = REPO / "deploy" / "aws" / "fleet.yaml"
    if not template.exists():
        pytest.skip("deploy/aws/fleet.yaml is not in this tree")
    text = template.read_text()
    for key, value in (("HealthCheckPath", health.path), ("HealthCheckIntervalSeconds", "10"),
                       ("HealthCheckTimeoutSeconds", "5"), ("HealthyThresholdCount", str(health.healthy_threshold)),
                       ("UnhealthyThresholdCount", str(health.unhealthy_threshold))):
        assert re.search(rf"^\s*{key}:\s*{re.escape(value)}\s*$", text, re.M), f"{key} differs from health.py"


def test_rendered_haproxy_config_is_valid(tmp_path):
    balancer = Balancer(tmp_path, "127.0.0.1:1", HealthCheck())
    config = balancer.write_config()
    check = subprocess.run([haproxy_binary(), "-c", "-q", "-f", str(config)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_roll_local_needs_a_model_version():
    result = subprocess.run(["make", "-n", "roll-local"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode != 0 and "MODEL_VERSION is not set" in result.stderr


def test_roll_local_passes_the_warm_up_and_drain_bounds_when_given():
    result = subprocess.run(["make", "-n", "roll-local", "MODEL_VERSION=2", "WARMUP=30", "DRAIN_TIMEOUT=5"], cwd=REPO,
                            capture_output=True, text=True)
    command = " ".join(result.stdout.replace("\\\n", " ").split())
    assert "roll --model-path models/digits.keras --model-version 2 --warmup 30 --drain-timeout 5" in command, command
    plain = subprocess.run(["make", "-n", "roll-local", "MODEL_VERSION=2"], cwd=REPO, capture_output=True, text=True)
    assert "--warmup" not in plain.stdout and "--drain-timeout" not in plain.stdout
