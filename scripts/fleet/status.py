"""`make status`: the fleet's instances, their health and AMI, and the last instance refresh."""

from __future__ import annotations

from typing import Callable

from fleet import refresh
from fleet.clients import Clients
from fleet.launch_template import describe_group, group_version
from fleet.resources import find_fleet
from fleet.roll import version_of

COLUMNS = ("INSTANCE", "ZONE", "LIFECYCLE", "GROUP HEALTH", "TARGET HEALTH", "AMI", "VERSION")


def status(clients: Clients, stack_name: str, *, say: Callable[[str], None] = print) -> int:
    """Print the fleet's state; return 0 (reading it is all this does)."""
    fleet = find_fleet(clients.cloudformation, stack_name, clients.region)
    group = describe_group(clients.autoscaling, fleet.group_name)
    current = group_version(clients.ec2, group)
    instances = group["Instances"]
    images = instance_images(clients.ec2, [i["InstanceId"] for i in instances])
    health = target_health(clients.elbv2, fleet.target_group_arn)

    say(f"stack {fleet.stack_name}: {fleet.stack_status}, {fleet.url}")
    say(
        f"group {fleet.group_name}: {len(instances)} instances, desired {group['DesiredCapacity']} "
        f"(min {group['MinSize']}, max {group['MaxSize']}); launches version {current.number} ({current.image_id})"
    )
    rows = [
        (
            i["InstanceId"],
            i["AvailabilityZone"],
            i["LifecycleState"],
            i["HealthStatus"],
            health.get(i["InstanceId"], "not registered"),
            images.get(i["InstanceId"], "?"),
            version_of(i) or "?",
        )
        for i in sorted(instances, key=lambda i: i["InstanceId"])
    ]
    for line in table(COLUMNS, rows):
        say(line)
    for ami, label in image_labels(clients.ec2, {current.image_id, *images.values()}).items():
        say(f"{ami}: {label}")
    last = refresh.latest(clients.autoscaling, fleet.group_name)
    if last is None:
        say("instance refresh: none yet")
    else:
        when = f"started {last['StartTime']:%Y-%m-%d %H:%M:%S %Z}" if last.get("StartTime") else "not started"
        if last.get("EndTime"):
            when += f", ended {last['EndTime']:%Y-%m-%d %H:%M:%S %Z}"
        say(f"instance refresh {last['InstanceRefreshId']} ({when}): {refresh.progress_line(last)}")
    return 0


def instance_images(ec2, instance_ids: list[str]) -> dict[str, str]:
    """The AMI each instance was launched from, by instance id."""
    if not instance_ids:  # no ids would describe every instance in the region
        return {}
    pages = ec2.get_paginator("describe_instances").paginate(InstanceIds=instance_ids)
    return {i["InstanceId"]: i["ImageId"] for page in pages for r in page["Reservations"] for i in r["Instances"]}


def image_labels(ec2, image_ids: set[str]) -> dict[str, str]:
    """What each AMI holds, from the tags `make bake-ami` gives it: model, settings, commit."""
    # A filter, not ImageIds=: a deregistered AMI is left out instead of failing the call.
    found = ec2.describe_images(Filters=[{"Name": "image-id", "Values": sorted(image_ids)}])["Images"]
    tags = {image["ImageId"]: {tag["Key"]: tag["Value"] for tag in image.get("Tags", [])} for image in found}
    labels = {}
    for ami in sorted(image_ids):
        if ami not in tags:
            labels[ami] = "deregistered (or not visible to this account)"
        elif "Model" not in tags[ami]:
            labels[ami] = "no Keras Fleet tags (not baked by make bake-ami)"
        else:
            t = tags[ami]
            labels[ami] = (f"model {t['Model']} version {t.get('ModelVersion', '?')}, settings {t.get('Settings', '?')}, "
                           f"keras-fleet {t.get('AppVersion', '?')} at {t.get('GitCommit', '?')}")
    return labels


def target_health(elbv2, target_group_arn: str) -> dict[str, str]:
    """Each registered instance's health in the target group, with the load balancer's reason."""
    found = elbv2.describe_target_health(TargetGroupArn=target_group_arn)["TargetHealthDescriptions"]
    return {
        t["Target"]["Id"]: " ".join(filter(None, (t["TargetHealth"]["State"], t["TargetHealth"].get("Reason"))))
        for t in found
    }


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    """Left-aligned columns as wide as their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    return ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in (header, *rows)]
