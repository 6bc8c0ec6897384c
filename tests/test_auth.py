"""API keys: off by default; 401 without a key, 403 with a wrong one; health stays open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from api.app import create_app
from api.auth import RECHECK_SECONDS
from tests.conftest import TEST_CONFIG, flush_logs
from tests.stack import REPO

IMAGE = [[1.0] * 8 for _ in range(8)]


def api_keys(*args, keys_file, file_first=False):
    """Run scripts/api_keys.py with ``--file keys_file`` after the arguments (or right after the command)."""
    file_option = ["--file", str(keys_file)]
    argv = [args[0], *file_option, *args[1:]] if file_first else [*args, *file_option]
    return subprocess.run([sys.executable, str(REPO / "scripts" / "api_keys.py"), *argv],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.fixture
def keys_file(tmp_path):
    return tmp_path / "api-keys"


@pytest.fixture
def key(keys_file):
    created = api_keys("create", "--label", "test client", keys_file=keys_file)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


@pytest.fixture
def secured(model, keys_file, key, capsys):
    return create_app({**TEST_CONFIG, "API_KEYS_FILE": str(keys_file)}, model=model).test_client()


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


def test_keys_are_stored_hashed_never_in_clear(keys_file, key):
    text = keys_file.read_text()
    assert key not in text and key.split("_", 2)[2] not in text
    assert key.split("_")[1] in text


def test_valid_key_is_served_and_its_id_handed_to_nginx_for_the_log(secured, key, capsys):
    response = secured.post("/predict", json={"instances": [IMAGE]}, headers=bearer(key))
    assert response.status_code == 200
    assert response.headers["X-Fleet"] == f"predict 1 {key.split('_')[1]} digits"


def test_valid_key_is_served_and_its_id_logged_when_the_app_logs_requests(model, keys_file, key, capsys):
    client = create_app({**TEST_CONFIG, "API_KEYS_FILE": str(keys_file), "REQUEST_LOG": "app"}, model=model)
    capsys.readouterr()
    response = client.test_client().post("/predict", json={"instances": [IMAGE]}, headers=bearer(key))
    assert response.status_code == 200
    flush_logs()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (line,) = [entry for entry in lines if entry.get("path") == "/predict"]
    assert line["key_id"] == key.split("_")[1]
    assert key not in json.dumps(lines)


@pytest.mark.parametrize("path", ["/predict", "/v1/models/digits", "/v1/models/digits/metadata"])
def test_missing_key_is_401(secured, path):
    response = secured.post(path, json={"instances": [IMAGE]}) if path == "/predict" else secured.get(path)
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.get_json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header, status",
    [
        ("Basic dXNlcjpwYXNz", 401),
        ("Bearer ", 401),
        ("Bearer kf_00000000_" + "x" * 43, 403),
        ("Bearer not-even-a-key", 403),
    ],
)
def test_malformed_or_wrong_key(secured, header, status):
    response = secured.post("/predict", json={"instances": [IMAGE]}, headers={"Authorization": header})
    assert response.status_code == status
    assert response.get_json()["error"]


def test_a_key_with_a_wrong_secret_is_403(secured, key):
    forged = key[:-4] + ("aaaa" if not key.endswith("aaaa") else "bbbb")
    assert secured.post("/predict", json={"instances": [IMAGE]}, headers=bearer(forged)).status_code == 403


def test_health_and_metrics_stay_open(secured):
    assert secured.get("/healthz/live").status_code == 200
    assert secured.get("/healthz/ready").status_code == 200
    assert secured.get("/metrics").status_code == 200


def test_revoked_key_stops_working_without_a_restart(secured, key, keys_file):
    assert secured.post("/predict", json={"instances": [IMAGE]}, headers=bearer(key)).status_code == 200
    revoked = api_keys("revoke", key.split("_")[1], keys_file=keys_file)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    time.sleep(RECHECK_SECONDS + 0.1)
    assert secured.post("/predict", json={"instances": [IMAGE]}, headers=bearer(key)).status_code == 403


def test_listing_shows_ids_and_labels_not_hashes(keys_file, key):
    listed = api_keys("list", keys_file=keys_file).stdout
    assert key.split("_")[1] in listed and "test client" in listed
    assert len(listed.split()[0]) == 8


def test_the_key_id_may_come_after_the_file_option(keys_file, key):
    key_id = key.split("_")[1]
    revoked = api_keys("revoke", key_id, keys_file=keys_file, file_first=True)  # as the README writes it
    assert (revoked.returncode, revoked.stdout.strip()) == (0, f"revoked {key_id}"), revoked.stderr
    assert key_id not in api_keys("list", keys_file=keys_file).stdout


def test_revoking_an_unknown_id_fails(keys_file, key):
    assert api_keys("revoke", "ffffffff", keys_file=keys_file).returncode == 1


def test_authentication_is_off_by_default(client):
    assert client.post("/predict", json={"instances": [IMAGE]}).status_code == 200


def test_missing_keys_file_fails_at_start(model, tmp_path):
    with pytest.raises(ValueError, match="API_KEYS_FILE"):
        create_app({**TEST_CONFIG, "API_KEYS_FILE": str(tmp_path / "absent")}, model=model)
