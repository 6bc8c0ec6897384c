"""The AMI recipe, proven offline (`make test-image`).

- Debian's Packer 1.6.6 validates the template, whose defaults target real AWS.
- The provisioning scripts, unchanged, bake a fresh Debian 12 root (the path of
  `make bake-local`); booted with systemd as PID 1, like an instance launched from the
  AMI, it serves the wire contract through nginx on port 80.
- `packer build` of the real template runs against moto_server, provisions that booted
  root over SSH on loopback, and ends with a registered AMI whose id is in the manifest
  `make roll` reads. Every other address Packer might try is caught and refused.

Needs root, packer, debootstrap and systemd-nspawn (`make test-image` installs them).
Only loopback is contacted, besides Debian's mirror for apt inside the root.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.aws_fakes import DEBIAN_OWNER, NEWEST_DEBIAN_AMI, EgressRecorder, MotoServer
from tests.stack import REPO, wait_for
from tests.test_e2e import HOSTILE, digits_images

sys.path.insert(0, str(REPO / "scripts"))
import bake_local  # noqa: E402
import image_settings  # noqa: E402
import packer_manifest  # noqa: E402

pytestmark = pytest.mark.image

TEMPLATE = REPO / "deploy" / "packer"
DIGITS = REPO / "models" / "digits.keras"
CACHE = Path(os.environ.get("IMAGE_CACHE", "/var/cache/keras-fleet"))
MIRROR = os.environ.get("DEBIAN_MIRROR", bake_local.DEFAULT_MIRROR)
URL = f"http://127.0.0.1:{bake_local.IMAGE_PORT}"
APP_VERSION = importlib.metadata.version("keras-fleet")
REGION = "us-east-1"
GIT_COMMIT = "0123abc"


def run_packer(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run Debian's packer from the repo, without its update check (a call to HashiCorp)."""
    env = {**os.environ, "CHECKPOINT_DISABLE": "1", **(env or {})}
    return subprocess.run(["packer", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module", autouse=True)
def as_root():
    if os.geteuid() != 0:
        pytest.fail("the image tests boot a root file system with systemd-nspawn: run them as root (make test-image)")


@pytest.fixture(scope="module")
def egress():
    """Catches any HTTP(S) request Packer sends beyond loopback (see EgressRecorder)."""
    recorder = EgressRecorder()
    yield recorder
    recorder.close()


@pytest.fixture(scope="module")
def stage(tmp_path_factory):
    """The wheelhouse and configs, staged as `make image-stage` does."""
    path = tmp_path_factory.mktemp("stage") / "image"
    subprocess.run([str(REPO / "scripts" / "stage_image.sh"), str(path), sys.executable], check=True,
                   capture_output=True, timeout=600)
    yield path
    shutil.rmtree(path)  # 300 MB of wheels; pytest keeps its last three temporary directories


@pytest.fixture(scope="module")
def image_root(stage, tmp_path_factory):
    """A fresh Debian 12 root provisioned by deploy/packer/scripts, powered off: the image."""
    assert DIGITS.is_file(), "the demo model is missing: `make test-image` trains it first"
    root = tmp_path_factory.mktemp("image") / "rootfs"
    base = bake_local.base_root(CACHE, MIRROR)
    bake_local.fresh_root(base, root)
    env = bake_local.provisioning_env(DIGITS, "", "1", APP_VERSION)
    bake_local.provision(root, stage, DIGITS, env, root.parent / "bake-console.log")
    yield root
    bake_local.remove_root(root)


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory):
    """A throwaway key pair for Packer's SSH login (private key path, public key text)."""
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "keras-fleet-test", "-f", str(key)], check=True)
    return key, key.with_suffix(".pub").read_text()


@pytest.fixture(scope="module")
def instance(image_root, ssh_key):
    """The image booted as a new instance would be, serving on port 80; powered off after."""
    bake_local.check_port_free(bake_local.IMAGE_PORT)
    machine = bake_local.Machine(image_root, image_root.parent / "console.log", authorized_key=ssh_key[1])
    machine.boot()
    try:
        bake_local.wait_ready(machine, URL)
        yield machine
    finally:
        machine.poweroff()


# --- the template --------------------------------------------------------------------------


def test_packer_validates_the_template_offline(stage, egress):
    # validate checks that the uploads exist: the stage and the model.
    staged = ["-var", f"stage_dir={stage}"]
    for overrides in ([], ["-var", "ec2_endpoint=http://127.0.0.1:1", "-var", "ssh_host=127.0.0.1", "-var", "ssh_port=2222"]):
        result = run_packer(["validate", *staged, *overrides, str(TEMPLATE)], env=egress.env())
        assert result.returncode == 0, result.stdout + result.stderr
    assert egress.attempts == []


def test_the_template_defaults_target_real_aws_and_the_newest_official_debian():
    result = run_packer(["inspect", str(TEMPLATE)])
    assert result.returncode == 0, result.stderr
    defaults = dict(re.findall(r'^var\.(\w+): "(.*)"$', result.stdout, re.MULTILINE))
    assert defaults["ec2_endpoint"] == "" and defaults["ssh_host"] == "" and defaults["ssh_private_key_file"] == ""
    assert defaults["source_ami_owner"] == DEBIAN_OWNER and defaults["ssh_username"] == "admin"
    assert defaults["ssh_port"] == "22" and defaults["manifest"] == "reports/packer-manifest.json"
    assert defaults["app_version"] == APP_VERSION, "keep the template's app_version default in step with setup.py"


def test_every_provisioning_script_stops_on_the_first_error():
    scripts = sorted((TEMPLATE / "scripts").glob("*.sh"))
    assert [s.name.split("-", 1)[1] for s in scripts] == [
        "install-system.sh", "install-app.sh", "configure-services.sh", "cleanup.sh", "validate.sh"]
    for script in scripts:
        assert "\nset -o nounset -o errexit -o pipefail\n" in script.read_text(), script.name


def test_bake_ami_says_which_credentials_are_missing(tmp_path):
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    result = subprocess.run([str(REPO / "scripts" / "bake_ami.sh"), str(tmp_path / "manifest.json")],
                            env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "no AWS credentials found" in result.stderr and "AWS_ACCESS_KEY_ID" in result.stderr
    assert not (tmp_path / "manifest.json").exists()


# --- the baked image -----------------------------------------------------------------------


def test_cleanup_leaves_no_instance_identity_or_bake_leftovers(image_root):
    assert (image_root / "etc/machine-id").read_text() == ""
    assert not list((image_root / "etc/ssh").glob("ssh_host_*"))
    assert not list(image_root.glob("home/*/.ssh/authorized_keys"))
    assert not list((image_root / "var/lib/apt/lists").glob("*_Packages"))
    assert not (image_root / "var/tmp/keras-fleet-image").exists()
    assert not (image_root / "usr/sbin/policy-rc.d").exists()
    assert all(log.stat().st_size == 0 for log in (image_root / "var/log").rglob("*.log"))


def test_the_booted_image_runs_both_units_from_boot(instance):
    for unit in ("keras-fleet.service", "nginx.service"):
        assert instance.run(["systemctl", "is-enabled", unit]).stdout.strip() == "enabled"
        assert instance.run(["systemctl", "is-active", unit]).stdout.strip() == "active"
    assert requests.get(f"{URL}/healthz/ready", timeout=10).json() == {"status": "ready", "model": "digits", "version": "1"}


def test_gunicorn_runs_unprivileged_and_hardened_and_only_nginx_reaches_its_socket(instance):
    show = instance.run(["systemctl", "show", "keras-fleet.service", "-p", "User", "-p", "NoNewPrivileges",
                         "-p", "ProtectSystem", "-p", "PrivateTmp", "-p", "CapabilityBoundingSet", "-p", "MainPID"])
    props = dict(line.split("=", 1) for line in show.stdout.splitlines())
    assert props["User"] == "keras-fleet" and props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict" and props["PrivateTmp"] == "yes" and props["CapabilityBoundingSet"] == ""
    assert instance.run(["stat", "-c", "%U", f"/proc/{props['MainPID']}"]).stdout.strip() == "keras-fleet"
    # gunicorn's socket and each worker's own (api/worker_sockets.py).
    sockets = ["/run/keras-fleet/gunicorn.sock", "/run/keras-fleet/gunicorn.0.sock"]
    socket_mode = instance.run(["stat", "-c", "%U:%G %a", "/run/keras-fleet", *sockets])
    assert socket_mode.stdout.split("\n")[:3] == ["keras-fleet:keras-fleet 750"] + ["keras-fleet:keras-fleet 770"] * 2
    for path in sockets:
        connect = f"import socket; socket.socket(socket.AF_UNIX).connect('{path}'); print('connected')"
        as_nginx = instance.run(["runuser", "-u", "www-data", "--", "python3", "-c", connect], check=False)
        as_other = instance.run(["runuser", "-u", "nobody", "--", "python3", "-c", connect], check=False)
        assert as_nginx.stdout.strip() == "connected", as_nginx.stderr
        assert as_other.returncode != 0 and "Permission denied" in as_other.stderr


def frozen(freeze_output: str) -> dict[str, str]:
    """`pip freeze` lines as {normalized project name: version}."""
    pairs = (line.split("==", 1) for line in freeze_output.split() if "==" in line)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pairs}


def test_the_image_ships_the_package_versions_the_tests_ran_against(instance):
    host = frozen(subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                                 text=True, check=True).stdout)
    image = frozen(instance.run(["/opt/keras-fleet/venv/bin/python", "-m", "pip", "freeze"]).stdout)
    assert image.pop("keras-fleet") == APP_VERSION
    assert {"tensorflow-cpu", "keras", "ai-edge-litert", "gunicorn", "flask", "numpy"} <= set(image)
    assert {name: version for name, version in image.items() if host.get(name) != version} == {}


def test_the_booted_image_serves_predictions_through_nginx(instance):
    images = digits_images(2).tolist()
    row = requests.post(f"{URL}/v1/models/digits:predict", json={"instances": images}, timeout=60)
    assert row.status_code == 200, row.text
    assert row.headers["X-Model-Version"] == "1" and len(row.headers["X-Request-ID"]) == 32
    predictions = np.array(row.json()["predictions"])
    assert predictions.shape == (2, 10) and predictions.argmax(axis=1).tolist() == [0, 1]
    columnar = requests.post(f"{URL}/predict", json={"inputs": {"pixels": images}}, timeout=60)
    assert columnar.status_code == 200, columnar.text
    np.testing.assert_allclose(columnar.json()["outputs"], predictions, rtol=1e-5)
    pinned = requests.post(f"{URL}/v1/models/digits/versions/1:predict", json={"instances": images[:1]}, timeout=60)
    assert pinned.status_code == 200, pinned.text
    status = requests.get(f"{URL}/v1/models/digits", timeout=10).json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = requests.get(f"{URL}/v1/models/digits/metadata", timeout=10).json()
    assert "pixels" in metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
    assert requests.get(f"{URL}/healthz/live", timeout=10).json() == {"status": "alive"}


def main_settings(config: str) -> dict[str, str]:
    """nginx's main-context settings that `make bench` measures with: PCRE JIT, connections a worker."""
    return {name: value for name, value in re.findall(r"^\s*(pcre_jit|worker_connections)\s+(\S+);", config, re.M)}


def test_the_images_nginx_runs_the_main_settings_make_serve_benches(instance):
    benched = main_settings((REPO / "deploy" / "nginx" / "nginx.conf").read_text())
    assert benched == {"pcre_jit": "on", "worker_connections": "4096"}
    # The image's: Debian's nginx.conf, edited when the image was baked.
    assert main_settings(instance.run(["nginx", "-T"]).stdout) == benched


def predict_caps(site) -> dict[str, int]:
    """The predict upstream's sockets and their caps on requests in flight (max_conns)."""
    block = site.read_text().split("upstream keras_fleet_predict {", 1)[1].split("}", 1)[0]
    return {path: int(cap) for path, cap in re.findall(r"server unix:(\S+) max_fails=0 max_conns=(\d+);", block)}


def test_nginx_renders_its_site_for_the_machine_it_starts_on(instance, image_root):
    site = image_root / "etc/nginx/sites-available/keras-fleet.conf"
    settings = image_root / "etc/keras-fleet/keras-fleet.env"
    cores = int(instance.run(["nproc"]).stdout)
    # One socket per gunicorn worker (one worker per core), and the cap on predictions
    # in flight shared out among them: 2 x workers x 8 threads in all.
    assert predict_caps(site) == {f"/run/keras-fleet/gunicorn.{slot}.sock": 2 * 8 for slot in range(cores)}
    original = settings.read_text()
    try:
        # A new setting reaches nginx at its next start: the site is rendered anew then.
        settings.write_text(original + "MAX_IN_FLIGHT=7\n")
        instance.run(["systemctl", "restart", "nginx.service"])
        assert sum(predict_caps(site).values()) == 7
        assert requests.get(f"{URL}/healthz/ready", timeout=10).status_code == 200
    finally:
        settings.write_text(original)
        instance.run(["systemctl", "restart", "nginx.service"])
    assert sum(predict_caps(site).values()) == 2 * cores * 8
    assert requests.post(f"{URL}/predict", json={"instances": digits_images(1).tolist()}, timeout=60).status_code == 200


def test_a_settings_file_configures_the_image_and_its_api_keys(instance, image_root, tmp_path):
    """`make bake-ami SETTINGS=prod.env`: the file's settings and its API keys reach the services.

    The booted image runs 30-configure-services.sh again with a stage holding the
    settings, as the bake would have, then once more with a stage holding none.
    """
    keys = tmp_path / "api-keys"
    key = subprocess.run([sys.executable, str(REPO / "scripts" / "api_keys.py"), "create", "--file", str(keys)],
                         capture_output=True, text=True, check=True).stdout.strip()
    settings = tmp_path / "prod.env"
    settings.write_text("# production\nMAX_INSTANCES=3\nAPI_KEYS_FILE=api-keys\n")
    stage = image_root / "var/tmp/settings-stage"
    stage.mkdir()
    image_settings.stage_settings(settings, stage)
    script = image_root / "var/tmp/30-configure-services.sh"
    shutil.copy2(TEMPLATE / "scripts" / script.name, script)
    env_file, keys_on_image = image_root / "etc/keras-fleet/keras-fleet.env", image_root / "etc/keras-fleet/api-keys"
    original = env_file.read_text()
    env = {**bake_local.provisioning_env(DIGITS, "", "1", APP_VERSION), "STAGE_DIR": "/var/tmp/settings-stage"}

    def configure():
        instance.run(["/var/tmp/30-configure-services.sh"], env=env)
        instance.run(["systemctl", "restart", "keras-fleet.service", "nginx.service"])
        bake_local.wait_ready(instance, URL)

    def predict(rows: int, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.post(f"{URL}/predict", json={"instances": digits_images(rows).tolist()}, headers=headers,
                             timeout=60)

    try:
        configure()
        assert env_file.read_text().startswith(original)
        assert env_file.read_text().endswith("MAX_INSTANCES=3\nAPI_KEYS_FILE=/etc/keras-fleet/api-keys\n")
        assert keys_on_image.read_text() == keys.read_text()
        group = {line.split(":")[2]: line.split(":")[0] for line in (image_root / "etc/group").read_text().splitlines()}
        assert (oct(keys_on_image.stat().st_mode & 0o777), group[str(keys_on_image.stat().st_gid)]) == \
            ("0o640", "keras-fleet")
        assert predict(1).status_code == 401
        assert predict(1, {"Authorization": "Bearer kf_00000000_" + "x" * 30}).status_code == 403
        with_key = {"Authorization": f"Bearer {key}"}
        assert predict(3, with_key).status_code == 200
        too_many = predict(4, with_key)
        assert (too_many.status_code, too_many.json()["error"]) == (400, "too many instances: 4 > 3; split the request")
    finally:
        shutil.rmtree(stage)
        stage.mkdir()  # a bake without SETTINGS
        configure()
        shutil.rmtree(stage)
        script.unlink()
    assert env_file.read_text() == original and not keys_on_image.exists()
    assert predict(4).status_code == 200


@pytest.mark.parametrize("label, body, headers, status", HOSTILE, ids=[case[0] for case in HOSTILE])
def test_the_booted_image_answers_bad_input_with_a_json_4xx(instance, label, body, headers, status):
    response = requests.post(f"{URL}/v1/models/digits:predict", data=body, headers=headers, timeout=60)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json" and response.json()["error"]
    assert requests.get(f"{URL}/healthz/ready", timeout=10).status_code == 200


def test_the_booted_image_answers_routing_errors_and_logs_json_with_the_request_id(instance, image_root):
    unknown = requests.post(f"{URL}/v1/models/other:predict", json={"instances": [[0]]}, timeout=10,
                            headers={"X-Request-ID": "image-test-42"})
    assert unknown.status_code == 404 and unknown.json()["error"]
    assert requests.get(f"{URL}/v1/models/digits:predict", timeout=10).status_code == 405

    def logged_ids() -> set[str]:  # nginx writes its buffered lines at least once a second
        lines = (image_root / "var/log/nginx/keras-fleet.access.log").read_text().splitlines()
        return {json.loads(line)["request_id"] for line in lines}

    assert wait_for(lambda: "image-test-42" in logged_ids(), timeout=10), logged_ids()


def test_shutting_down_stops_nginx_before_gunicorn_so_a_request_nginx_holds_is_answered(instance, image_root):
    """A request whose body is still arriving when the instance shuts down is answered.

    nginx passes a prediction on only once its whole body is in (request buffering), so
    gunicorn must still run when it does: systemd stops nginx (QUIT: no new
    connections, finish those in progress) and only then gunicorn.
    """
    settings = image_root / "etc/keras-fleet/keras-fleet.env"
    original = settings.read_text()
    body = json.dumps({"instances": digits_images(1).tolist()}).encode()
    head = (f"POST /v1/models/digits:predict HTTP/1.1\r\nHost: image\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        # The request's first byte starts its deadline (1 s by default), and the stop
        # below takes longer than that on a busy machine.
        settings.write_text(original + "REQUEST_DEADLINE_MS=60000\n")
        instance.run(["systemctl", "restart", "keras-fleet.service"])
        bake_local.wait_ready(instance, URL)
        with socket.create_connection(("127.0.0.1", bake_local.IMAGE_PORT), timeout=60) as client:
            client.sendall(head + body[:100])
            # Both units in one stop, as a shutdown stops them.
            instance.run(["systemctl", "stop", "--no-block", "nginx.service", "keras-fleet.service"])
            assert wait_for(lambda: instance.run(["systemctl", "is-active", "nginx.service"], check=False)
                            .stdout.strip() == "deactivating", timeout=10)
            # gunicorn's stop waits for nginx's.
            jobs = instance.run(["systemctl", "list-jobs", "--no-legend", "--no-pager"]).stdout
            assert re.search(r"keras-fleet\.service\s+stop\s+waiting", jobs), jobs
            time.sleep(1)  # stopped side by side, gunicorn was gone by now: 503 "not available"
            client.sendall(body[100:])
            answer = client.makefile("rb").read().decode()
        status_line, _, rest = answer.partition("\r\n")
        assert status_line == "HTTP/1.1 200 OK", answer
        assert len(json.loads(rest.split("\r\n\r\n", 1)[1])["predictions"]) == 1
        for unit in ("nginx.service", "keras-fleet.service"):
            assert wait_for(lambda: instance.run(["systemctl", "is-active", unit], check=False).stdout.strip()
                            == "inactive", timeout=60), unit
    finally:
        settings.write_text(original)
        instance.run(["systemctl", "restart", "keras-fleet.service", "nginx.service"])
        bake_local.wait_ready(instance, URL)


# --- the amazon-ebs build against moto -----------------------------------------------------


def test_packer_builds_the_real_template_against_moto(instance, image_root, ssh_key, stage, egress, tmp_path):
    moto = MotoServer(tmp_path)
    manifest = tmp_path / "packer-manifest.json"
    try:
        env = {
            **egress.env(),
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            # No instance metadata service, no profile of whoever runs the tests.
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        }
        variables = {
            "ec2_endpoint": moto.url, "region": REGION, "stage_dir": stage, "model_path": DIGITS,
            "app_version": APP_VERSION, "git_commit": GIT_COMMIT, "manifest": manifest,
            "settings_digest": (stage / "settings-digest").read_text().strip(),
            # moto's instance addresses are made up: Packer logs in to the booted image on loopback.
            "ssh_host": "127.0.0.1", "ssh_port": instance.ssh_port, "ssh_private_key_file": ssh_key[0],
        }
        args = [arg for name, value in variables.items() for arg in ("-var", f"{name}={value}")]
        result = run_packer(["build", "-color=false", *args, str(TEMPLATE)], env=env, timeout=1200)
        assert result.returncode == 0, tail(result.stdout + result.stderr)

        region, ami = packer_manifest.latest_ami(manifest)
        ec2 = moto.ec2(REGION)
        images = ec2.describe_images(Owners=["self"])["Images"]
        assert (region, [image["ImageId"] for image in images]) == (REGION, [ami])
        tags = {tag["Key"]: tag["Value"] for tag in images[0]["Tags"]}
        assert tags["Model"] == "digits" and tags["ModelVersion"] == "1" and tags["GitCommit"] == GIT_COMMIT
        assert tags["AppVersion"] == APP_VERSION and tags["SourceAMI"] == NEWEST_DEBIAN_AMI
        assert tags["Settings"] == "defaults"  # staged without a settings file
        build_instances = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        assert [(i["ImageId"], i["State"]["Name"]) for i in build_instances] == [(NEWEST_DEBIAN_AMI, "terminated")]
        for step in ("10-install-system.sh", "50-validate.sh", "validate: the image is ready"):
            assert step in result.stdout
    finally:
        moto.stop()
    assert egress.attempts == [], "Packer tried to reach beyond loopback"

    # What Packer provisioned boots, as the AMI's instances will, into a serving system.
    assert instance.poweroff(), "the image did not power off cleanly"
    rebooted = bake_local.Machine(image_root, image_root.parent / "console.log")
    rebooted.boot()
    try:
        bake_local.wait_ready(rebooted, URL)
        assert "answered a prediction" in bake_local.check_serving(URL)
    finally:
        assert rebooted.poweroff(), "the image did not power off cleanly"
