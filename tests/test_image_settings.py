"""`make bake-ami SETTINGS=...`: the production settings are checked and staged before a bake.

What the booted image does with them is in tests/test_image.py (make test-image).
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.stack import REPO

sys.path.insert(0, str(REPO / "scripts"))
import image_settings  # noqa: E402

KEY_LINE = "1a2b3c4d " + "0" * 64 + " 2026-11-24T00:00:00Z mobile app\n"


def test_settings_and_their_api_keys_are_staged_with_the_keys_file_moved_into_the_image(tmp_path, capsys):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "api-keys").write_text("# Keras Fleet API keys\n" + KEY_LINE)
    settings = tmp_path / "prod.env"
    settings.write_text("# production\n\nRATE_LIMIT_RPS=50\n  REQUEST_DEADLINE_MS=500\nAPI_KEYS_FILE=secrets/api-keys\n")
    stage = tmp_path / "stage"
    stage.mkdir()
    assert image_settings.main([str(settings), str(stage)]) == 0
    assert (stage / "settings.env").read_text().splitlines()[1:] == [
        "RATE_LIMIT_RPS=50", "REQUEST_DEADLINE_MS=500", "API_KEYS_FILE=/etc/keras-fleet/api-keys"]
    assert (stage / "api-keys").read_text() == (tmp_path / "secrets" / "api-keys").read_text()
    assert "staged 3 setting(s)" in capsys.readouterr().out


def test_the_settings_digest_tells_two_images_settings_and_keys_apart(tmp_path):
    def digest(settings_text: str, keys_text: str | None) -> str:
        case = tmp_path / str(len(list(tmp_path.iterdir())))
        (case / "stage").mkdir(parents=True)
        if keys_text is not None:
            (case / "keys").write_text(keys_text)
            settings_text += "API_KEYS_FILE=keys\n"
        (case / "prod.env").write_text(settings_text)
        image_settings.stage_settings(case / "prod.env", case / "stage")
        return (case / "stage" / "settings-digest").read_text().strip()

    first = digest("RATE_LIMIT_RPS=50\n", KEY_LINE)
    assert re.fullmatch(r"[0-9a-f]{12}", first)
    assert digest("RATE_LIMIT_RPS=50\n", KEY_LINE) == first  # the same files, the same tag
    assert digest("RATE_LIMIT_RPS=51\n", KEY_LINE) != first
    assert digest("RATE_LIMIT_RPS=50\n", KEY_LINE.replace("1a2b3c4d", "5e6f7a8b")) != first
    assert digest("RATE_LIMIT_RPS=50\n", None) != first


def test_without_api_keys_only_the_settings_are_staged(tmp_path):
    settings = tmp_path / "prod.env"
    settings.write_text("MAX_BATCH_WAIT_MS=2.5\nTRUSTED_PROXIES=10.1.0.0/16,10.2.0.0/16\n")
    image_settings.stage_settings(settings, tmp_path)
    assert (tmp_path / "settings.env").read_text().endswith("MAX_BATCH_WAIT_MS=2.5\nTRUSTED_PROXIES=10.1.0.0/16,10.2.0.0/16\n")
    assert not (tmp_path / "api-keys").exists()
    assert (tmp_path / "settings-digest").is_file()


@pytest.mark.parametrize(
    "text, keys, message",
    [
        ("MODEL_PATH=/models/other.keras\n", None, "prod.env:1: MODEL_PATH is set by the bake's MODEL_PATH"),
        ("GUNICORN_BIND=0.0.0.0:80\n", None, "GUNICORN_BIND is set by the image's layout"),
        ("# limits\nRATE_LIMIT_RPSS=5\n", None, "prod.env:2: RATE_LIMIT_RPSS is not a setting of api/config.py"),
        ("# limits\nMAX_INSTANCES=many\n", None, "prod.env:2: MAX_INSTANCES must be an integer, got 'many'"),
        ("LOG_LEVEL=info\nREQUEST_LOG=both\n", None, "prod.env:2: REQUEST_LOG must be one of nginx, app"),
        ("PREDICTION_BUCKETS=1,two\n", None, "prod.env:1: PREDICTION_BUCKETS must be comma-separated numbers"),
        ('TRUSTED_PROXIES="10.0.0.0/8"\n', None, "TRUSTED_PROXIES's value '\"10.0.0.0/8\"' must be plain"),
        ("LOG_LEVEL=$LEVEL\n", None, "must be plain"),
        ("export MAX_INSTANCES=3\n", None, "prod.env:1: expected VARIABLE=value, got 'export MAX_INSTANCES=3'"),
        ("MAX_INSTANCES=3\nMAX_INSTANCES=4\n", None, "prod.env:2: MAX_INSTANCES is set twice"),
        ("API_KEYS_FILE=missing-keys\n", None, "API_KEYS_FILE 'missing-keys' does not exist"),
        ("API_KEYS_FILE=keys\n", "1a2b3c4d not-a-digest\n", "keys:1: expected '<8-hex id> <sha256 hex>"),
        ("API_KEYS_FILE=keys\n", "# no keys yet\n", "holds no key: every request would be refused"),
    ],
    ids=["model", "layout", "unknown", "type", "choice", "buckets", "quotes", "dollar", "export", "twice", "no-keys-file",
         "bad-keys-file", "empty-keys-file"],
)
def test_a_setting_the_image_could_not_use_fails_the_stage_naming_the_line(tmp_path, capsys, text, keys, message):
    settings = tmp_path / "prod.env"
    settings.write_text(text)
    if keys is not None:
        (tmp_path / "keys").write_text(keys)
    stage = tmp_path / "stage"
    stage.mkdir()
    assert image_settings.main([str(settings), str(stage)]) == 2
    assert message in capsys.readouterr().err
    assert list(stage.iterdir()) == []  # nothing half staged


def test_stage_image_checks_the_settings_before_building_anything(tmp_path):
    settings = tmp_path / "prod.env"
    settings.write_text("MAX_INSTANCES=many\n")
    stage = tmp_path / "image"
    result = subprocess.run([str(REPO / "scripts" / "stage_image.sh"), str(stage), sys.executable, str(settings)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "error: settings for the image: " in result.stderr and "MAX_INSTANCES must be an integer" in result.stderr
    assert not stage.exists()  # no wheel was built


def test_the_bake_targets_stage_the_settings_file():
    for target in ("image-stage", "bake-ami", "bake-local", "packer-validate"):
        result = subprocess.run(["make", "-n", target, "SETTINGS=deploy/prod.env"], cwd=REPO, capture_output=True,
                                text=True)
        assert 'scripts/stage_image.sh build/image .venv/bin/python "deploy/prod.env"' in result.stdout, target
        if target in ("bake-ami", "packer-validate"):  # the AMI's Settings tag
            assert "-var settings_digest=$(cat build/image/settings-digest)" in result.stdout, target


def test_the_variables_the_bake_owns_are_the_ones_its_script_writes():
    # 30-configure-services.sh writes the image's env file; the check must refuse exactly
    # the variables it owns, besides its defaults: the first two a settings file may
    # override, TF_CPP_MIN_LOG_LEVEL is TensorFlow's, no setting of api/config.py.
    script = (REPO / "deploy" / "packer" / "scripts" / "30-configure-services.sh").read_text()
    written = set(re.findall(r"^([A-Z_]+)=", script.split("<<ENV\n", 1)[1].split("\nENV\n", 1)[0], re.M))
    defaults = {"TRUSTED_PROXIES", "RATE_LIMIT_EXEMPT", "TF_CPP_MIN_LOG_LEVEL"}
    assert written == set(image_settings.SET_BY_THE_IMAGE) | defaults
    assert f'install -m 0640 -o root -g keras-fleet "$stage/api-keys" {image_settings.KEYS_ON_IMAGE}' in script
