"""The AMI the last Packer build made, read from Packer's manifest post-processor output."""

from __future__ import annotations

import json
import re
from pathlib import Path

from fleet.errors import FleetError

AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")


def check_ami_id(ami: str) -> str:
    """Return ``ami`` if it looks like an AMI id, else raise :class:`FleetError`."""
    if not AMI_ID.match(ami):
        raise FleetError(f"{ami!r} is not an AMI id (ami- followed by 8 to 17 hex digits)")
    return ami


def latest_ami(path: Path, region: str) -> str:
    """Return the AMI id that the last Packer run built in ``region``.

    The last run is the build whose ``packer_run_uuid`` is the manifest's
    ``last_run_uuid``; its ``artifact_id`` reads ``region:ami-id``, comma-separated when
    it copied the AMI to several regions.
    """
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise FleetError(f"no Packer manifest at {path}: run `make bake-ami`, or pass AMI=ami-...") from None
    except (OSError, ValueError) as exc:
        raise FleetError(f"cannot read the Packer manifest {path}: {exc}") from None
    run = manifest.get("last_run_uuid")
    builds = [b for b in manifest.get("builds", []) if b.get("packer_run_uuid") == run]
    if not builds:
        raise FleetError(f"{path} has no build from its last run ({run}); pass AMI=ami-...")
    # Several builds in one run: the later one wins, as it is the one Packer wrote last.
    for build in reversed(builds):
        amis = amis_by_region(build.get("artifact_id", ""))
        if region in amis:
            return check_ami_id(amis[region])
    made_in = sorted({r for b in builds for r in amis_by_region(b.get("artifact_id", ""))})
    raise FleetError(
        f"the last Packer build made no AMI in {region} (only in {', '.join(made_in) or 'no region'}); "
        f"bake in {region} or pass AMI=ami-..."
    )


def chosen_ami(ami: str | None, manifest: Path, region: str) -> tuple[str, str]:
    """The AMI to use, ``ami`` when given else the manifest's last build, and a line saying which."""
    if ami:
        return check_ami_id(ami), f"AMI: {ami}"
    found = latest_ami(manifest, region)
    return found, f"AMI: {found} (the last build in {manifest})"


def amis_by_region(artifact_id: str) -> dict[str, str]:
    """Split an amazon-ebs artifact id ``us-east-1:ami-1,eu-west-1:ami-2`` into a dict."""
    pairs = (item.strip().split(":", 1) for item in artifact_id.split(",") if ":" in item)
    return {region: ami for region, ami in pairs}
