"""The lock files pin every package the venvs need, within the ranges asked for, and the venvs hold those versions.

`make setup` and the template scanners' venv install through requirements.lock and
requirements-iac.lock as pip constraints; `make lock` rewrites them. A package added to
setup.py or IAC_TOOLS without `make lock` installs unpinned, and fails here.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.stack import REPO

APP_LOCK = REPO / "requirements.lock"
IAC_LOCK = REPO / "requirements-iac.lock"
RELOCK = "run `make lock` (after changing setup.py or IAC_TOOLS), then `make test`"


def read_lock(path: Path) -> dict[str, str]:
    """The lock's pins: canonical name -> version."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line and not line.startswith("#"):
            name, separator, version = line.partition("==")
            assert separator and version, f"{path.name}:{number}: not name==version: {line!r}"
            pins[canonicalize_name(name)] = version
    return pins


def locked_python(path: Path) -> str:
    """The Python version the lock was resolved for (its header says)."""
    match = re.search(r"^# Resolved for Python (\d+\.\d+)", path.read_text(), re.MULTILINE)
    assert match, f"{path.name} does not say which Python it was resolved for; {RELOCK}"
    return match.group(1)


def needed(distribution: str, extras: set[str]) -> set[str]:
    """Every distribution that ``distribution[extras]`` needs here, itself left out, as installed metadata says."""
    seen: dict[str, set[str]] = {}
    todo = [(distribution, extras)]
    while todo:
        name, wanted = todo.pop()
        key = canonicalize_name(name)
        if key in seen and wanted <= seen[key]:
            continue
        seen[key] = seen.get(key, set()) | wanted
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in wanted or {""}):
                todo.append((requirement.name, set(requirement.extras)))
    return set(seen) - {canonicalize_name(distribution)}


def direct_requirements(distribution: str) -> list[Requirement]:
    """What ``distribution`` asks for itself, every extra included."""
    return [Requirement(text) for text in importlib.metadata.requires(distribution) or []]


def iac_tools() -> list[Requirement]:
    match = re.search(r"^IAC_TOOLS\s*\?=\s*(.+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert match, "the Makefile no longer sets IAC_TOOLS"
    return [Requirement(tool) for tool in match.group(1).split()]


def test_every_package_the_app_venv_needs_is_locked_at_the_version_installed():
    running = "%d.%d" % sys.version_info[:2]
    if running != locked_python(APP_LOCK):
        pytest.skip(f"the lock pins Python {locked_python(APP_LOCK)}'s packages; `make setup` left it out on {running}")
    pins = read_lock(APP_LOCK)
    packages = needed("keras-fleet", {"test"})
    assert len(packages) > 50  # TensorFlow alone brings dozens: the walk followed the metadata
    assert "keras-fleet" not in pins  # the project itself installs from the checkout
    missing = sorted(packages - set(pins))
    assert not missing, f"not in {APP_LOCK.name}: {missing}; {RELOCK}"
    installed = {name: importlib.metadata.version(name) for name in packages}
    differ = {name: (pins[name], installed[name]) for name in packages if pins[name] != installed[name]}
    assert not differ, f"locked and installed versions differ: {differ}; `make setup` installs the lock"


def test_the_app_lock_is_within_setup_py_ranges():
    pins = read_lock(APP_LOCK)
    requirements = direct_requirements("keras-fleet")
    assert {"tensorflow-cpu", "gunicorn", "moto", "locust"} <= {canonicalize_name(r.name) for r in requirements}
    outside = [f"{r} (locked {pins.get(canonicalize_name(r.name))})" for r in requirements
               if not r.specifier.contains(pins.get(canonicalize_name(r.name), "0"), prereleases=True)]
    assert not outside, f"setup.py asks for {outside}; {RELOCK}"


def test_the_iac_lock_holds_the_scanners_within_range_and_their_venv_holds_the_lock():
    pins = read_lock(IAC_LOCK)
    tools = iac_tools()
    outside = [f"{tool} (locked {pins.get(canonicalize_name(tool.name))})" for tool in tools
               if not tool.specifier.contains(pins.get(canonicalize_name(tool.name), "0"))]
    assert not outside, f"IAC_TOOLS asks for {outside}; {RELOCK}"
    python = REPO / os.environ.get("IAC_VENV", ".venv-iac") / "bin" / "python"
    assert python.exists(), f"{python} is missing: `make test` installs cfn-lint and checkov there"
    listing = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m, json; "
         "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"],
        capture_output=True, text=True, check=True, timeout=60)
    installed = {canonicalize_name(name): version for name, version in json.loads(listing.stdout).items()}
    differ = {name: (version, installed.get(name)) for name, version in pins.items() if installed.get(name) != version}
    assert not differ, f"locked and installed (in {python.parent.parent.name}) differ: {differ}"


@pytest.mark.parametrize("python, pinned", [("%d.%d" % sys.version_info[:2], True), ("3.1", False)])
def test_make_setup_uses_a_lock_only_on_the_python_it_was_resolved_for(tmp_path, python, pinned):
    lock = tmp_path / "requirements.lock"
    lock.write_text(f"# Resolved for Python {python} (...).\nnumpy==2.0.0\n")
    result = subprocess.run([str(REPO / "scripts" / "lock_constraint.sh"), sys.executable, str(lock)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == (["--constraint", str(lock)] if pinned else [])
    assert ("resolves setup.py's ranges afresh" in result.stderr) is not pinned, result.stderr


def test_both_locks_were_resolved_for_the_python_the_image_runs():
    # Debian 12's python3, which the image's venv and its staged wheels are for.
    assert locked_python(APP_LOCK) == locked_python(IAC_LOCK) == "3.11"
