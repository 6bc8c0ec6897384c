#!/usr/bin/env python3
"""Read the AMI id of the newest Packer build from its manifest (reports/packer-manifest.json).

`make bake-ami` prints it; `make roll` rolls the fleet to it.

    python scripts/packer_manifest.py [reports/packer-manifest.json]   # prints ami-..., region on stderr
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_MANIFEST = Path("reports/packer-manifest.json")


class ManifestError(ValueError):
    """The manifest is missing or holds no AMI of the last run; the message says which."""


def latest_ami(manifest: Path = DEFAULT_MANIFEST) -> tuple[str, str]:
    """Return (region, AMI id) of the last run's build.

    Packer appends one entry per build to the manifest; the last run's entry is the one
    whose packer_run_uuid is last_run_uuid. Its artifact_id reads "region:ami-...".
    """
    try:
        data = json.loads(Path(manifest).read_text())
    except FileNotFoundError:
        raise ManifestError(f"no manifest at {manifest}: run `make bake-ami` first") from None
    runs = [b for b in data.get("builds", []) if b.get("packer_run_uuid") == data.get("last_run_uuid")]
    if not runs:
        raise ManifestError(f"{manifest} holds no build of its last run")
    region, _, ami = runs[-1]["artifact_id"].partition(":")
    if not ami.startswith("ami-"):
        raise ManifestError(f"{manifest}: the last build's artifact {runs[-1]['artifact_id']!r} is not an AMI")
    return region, ami


def main(argv: list[str]) -> int:
    """CLI: print the AMI id of the last run (its region goes to stderr)."""
    try:
        region, ami = latest_ami(Path(argv[0]) if argv else DEFAULT_MANIFEST)
    except ManifestError as exc:
        print(f"packer_manifest: {exc}", file=sys.stderr)
        return 1
    print(f"region: {region}", file=sys.stderr)
    print(ami)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
