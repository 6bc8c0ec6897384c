#!/usr/bin/env python3
"""Check the settings a bake puts into the image, and stage them (`make bake-ami SETTINGS=...`).

    scripts/image_settings.py SETTINGS_FILE STAGE

SETTINGS_FILE holds ``VARIABLE=value`` lines of api/config.py's variables (blank lines
and ``#`` comments allowed), the production values of what `make serve` reads from its
environment: rate limits, batching, deadlines, API keys. It is checked here, on the
machine that bakes, so that a typo fails in seconds instead of on the fleet:

- every variable must be one of api/config.py's, and not one the image sets itself;
- every value must parse as its setting does when a worker starts;
- values are plain (no spaces, quotes or ``$``), since systemd's EnvironmentFile and
  the shell (which renders nginx's site) both read the file and would differ on those;
- ``API_KEYS_FILE`` names a keys file made by scripts/api_keys.py (relative to the
  settings file); it is staged too and installed as /etc/keras-fleet/api-keys.

Writes STAGE/settings.env (the checked lines, API_KEYS_FILE pointing into the image)
and STAGE/api-keys; 30-configure-services.sh appends the one to the image's
/etc/keras-fleet/keras-fleet.env and installs the other. STAGE/settings-digest holds
the first 12 hex digits of both files' SHA-256: the AMI's Settings tag, which
`make status` shows, so that two images' settings can be told apart.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import re
import shutil
import sys
from pathlib import Path

from api.auth import read_keys_file
from api.config import Config

# Where the image keeps the keys file (30-configure-services.sh installs it there).
KEYS_ON_IMAGE = "/etc/keras-fleet/api-keys"
# Variables the bake itself sets, and what sets them instead.
SET_BY_THE_IMAGE = {
    "MODEL_PATH": "the bake's MODEL_PATH",
    "MODEL_NAME": "the bake's MODEL_NAME",
    "MODEL_VERSION": "the bake's MODEL_VERSION",
    "GUNICORN_BIND": "the image's layout (/run/keras-fleet)",
    "PROMETHEUS_MULTIPROC_DIR": "the image's layout (/run/keras-fleet)",
}
LINE = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)=(?P<value>.*)")
PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.,:/+@%-]*")


class SettingsError(ValueError):
    """The settings file cannot go into an image; the message names the line and what to fix."""


def read_settings(path: Path) -> dict[str, str]:
    """The file's settings by variable, checked; raise :class:`SettingsError` on the first problem."""
    known = {field.metadata["env"] for field in dataclasses.fields(Config)}
    settings: dict[str, str] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        where = f"{path}:{number}"
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        match = LINE.fullmatch(text)
        if not match:
            raise SettingsError(f"{where}: expected VARIABLE=value, got {text!r}")
        name, value = match["name"], match["value"]
        if name in SET_BY_THE_IMAGE:
            raise SettingsError(f"{where}: {name} is set by {SET_BY_THE_IMAGE[name]}, not by the settings file")
        if name not in known:
            raise SettingsError(f"{where}: {name} is not a setting of api/config.py (`.venv/bin/python -m api.config` lists them)")
        if name in settings:
            raise SettingsError(f"{where}: {name} is set twice")
        if not PLAIN_VALUE.fullmatch(value):
            raise SettingsError(f"{where}: {name}'s value {value!r} must be plain: letters, digits and . , : / + @ % _ -"
                                " (systemd and the shell both read this file, and differ on quotes and spaces)")
        settings[name] = value
        lines[name] = number
    try:
        Config.from_env(environ=settings)
    except ValueError as exc:
        # api/config.py's errors begin with the variable's name: point at its line.
        name = str(exc).split(" ", 1)[0]
        raise SettingsError(f"{path}:{lines[name]}: {exc}" if name in lines else f"{path}: {exc}") from None
    return settings


def stage_settings(path: Path, stage: Path) -> list[str]:
    """Check the settings file and write it (and its keys file) into the stage; return its lines."""
    settings = read_settings(path)
    keys_file = settings.get("API_KEYS_FILE")
    if keys_file:
        source = path.parent / keys_file
        if not source.is_file():
            raise SettingsError(f"{path}: API_KEYS_FILE {keys_file!r} does not exist (looked for {source}); "
                                "create keys with scripts/api_keys.py")
        try:
            keys = read_keys_file(source)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        if not keys:
            raise SettingsError(f"{source} holds no key: every request would be refused")
        shutil.copyfile(source, stage / "api-keys")
        settings["API_KEYS_FILE"] = KEYS_ON_IMAGE
    lines = [f"{name}={value}" for name, value in settings.items()]
    (stage / "settings.env").write_text(f"# From {path.name} (make bake-ami SETTINGS=...)\n" + "\n".join(lines) + "\n")
    (stage / "settings-digest").write_text(settings_digest(stage) + "\n")
    return lines


def settings_digest(stage: Path) -> str:
    """12 hex digits of the SHA-256 of the staged settings and keys: equal files, equal digests."""
    digest = hashlib.sha256()
    for name in ("settings.env", "api-keys"):
        staged = stage / name
        # The name and length first, so that moving bytes from one file to the other changes it.
        content = staged.read_bytes() if staged.is_file() else b""
        digest.update(f"{name}:{len(content)}:".encode() + content)
    return digest.hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: check and stage, or say what is wrong and exit 2."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("settings", type=Path, help="the settings file (VARIABLE=value lines)")
    parser.add_argument("stage", type=Path, help="the image's stage directory (scripts/stage_image.sh)")
    args = parser.parse_args(argv)
    try:
        lines = stage_settings(args.settings, args.stage)
    except (SettingsError, OSError) as exc:
        print(f"error: settings for the image: {exc}", file=sys.stderr)
        return 2
    print(f"staged {len(lines)} setting(s) from {args.settings}: {' '.join(line.split('=')[0] for line in lines)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
