"""The group's launch template: the version it runs, and new versions of it for a roll."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from fleet.errors import FleetError

# Written into each version a roll makes, so `make rollback` knows what came before.
DESCRIPTION = "keras-fleet roll to {ami}; replaces version {previous}"
REPLACES = re.compile(r"replaces version (\d+)")


@dataclasses.dataclass(frozen=True)
class Version:
    """One launch template version and its full launch data."""

    template_id: str
    number: int
    data: dict
    description: str = ""

    @property
    def image_id(self) -> str:
        """The AMI this version launches."""
        return self.data.get("ImageId", "")

    @property
    def replaces(self) -> int | None:
        """The version a roll moved away from when it made this one, if a roll made it."""
        match = REPLACES.search(self.description)
        return int(match.group(1)) if match else None


def describe_group(autoscaling, group_name: str) -> dict:
    """Return the Auto Scaling group's description."""
    groups = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name])["AutoScalingGroups"]
    if not groups:
        raise FleetError(f"the Auto Scaling group {group_name} is gone: update the stack with `make stack`")
    return groups[0]


def template_spec(group: dict) -> dict:
    """The group's launch template id and version, with or without a mixed instances policy."""
    spec = group.get("LaunchTemplate") or (group.get("MixedInstancesPolicy") or {}).get("LaunchTemplate", {}).get(
        "LaunchTemplateSpecification"
    )
    if not spec:
        raise FleetError(
            f"the group {group['AutoScalingGroupName']} uses no launch template; update it with `make stack`"
        )
    return spec


def get_version(ec2, template_id: str, version: str | int) -> Version:
    """Return one version (a number, ``$Latest`` or ``$Default``) of a launch template."""
    found = ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=[str(version)])
    item = found["LaunchTemplateVersions"][0]
    return Version(
        template_id, int(item["VersionNumber"]), item["LaunchTemplateData"], item.get("VersionDescription", "")
    )


def group_version(ec2, group: dict) -> Version:
    """The launch template version the group launches new instances from."""
    spec = template_spec(group)
    return get_version(ec2, spec["LaunchTemplateId"], spec.get("Version") or "$Default")


def add_version(ec2, base: Version, ami: str) -> Version:
    """Create a version with all of ``base``'s launch data and ``ami`` pinned as its image.

    The full data is sent, not a SourceVersion diff, so the new version stands on its own.
    """
    data = {**fit_to_shape(base.data, ec2.meta.service_model.shape_for("RequestLaunchTemplateData")), "ImageId": ami}
    description = DESCRIPTION.format(ami=ami, previous=base.number)
    made = ec2.create_launch_template_version(
        LaunchTemplateId=base.template_id, VersionDescription=description, LaunchTemplateData=data
    )["LaunchTemplateVersion"]
    return Version(base.template_id, int(made["VersionNumber"]), data, description)


def desired_configuration(autoscaling, group: dict, version: Version) -> dict:
    """The instance refresh's DesiredConfiguration: the group as it is, on ``version``.

    A group with a mixed instances policy (Spot) keeps its policy; only the version changes.
    """
    spec = {"LaunchTemplateId": version.template_id, "Version": str(version.number)}
    policy = group.get("MixedInstancesPolicy")
    if not policy:
        return {"LaunchTemplate": spec}
    policy = fit_to_shape(policy, autoscaling.meta.service_model.shape_for("MixedInstancesPolicy"))
    policy["LaunchTemplate"]["LaunchTemplateSpecification"] = spec
    return {"MixedInstancesPolicy": policy}


def fit_to_shape(value: Any, shape) -> Any:
    """Keep only what a request ``shape`` accepts of a value AWS described.

    Describe calls answer with read-only fields (e.g. MetadataOptions.State) that the
    matching create call rejects; the service model says which fields a request takes.
    """
    if shape.type_name == "structure":
        return {key: fit_to_shape(item, shape.members[key]) for key, item in value.items() if key in shape.members}
    if shape.type_name == "list":
        return [fit_to_shape(item, shape.member) for item in value]
    if shape.type_name == "map":
        return {key: fit_to_shape(item, shape.value) for key, item in value.items()}
    return value
