"""Helpers for the fleet tests: a moto network and stack, and Stubber answers with AWS's shapes."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import boto3
from botocore.stub import Stubber

from tests.stack import REPO

REGION = "us-east-1"
TEMPLATE = REPO / "deploy" / "aws" / "fleet.yaml"
STACK = "keras-fleet-test"
# A command's keyword arguments for polling without sleeping.
NO_WAIT = {"sleep": lambda seconds: None}
ALARMS = (f"{STACK}-Target5xxAlarm-ABC123", f"{STACK}-LatencyAlarm-DEF456")
REFRESH_ID = "0f5bb9ce-2a4c-4a4d-8f43-8e1c39d1a111"
STARTED = datetime.datetime(2026, 1, 5, 10, 0, tzinfo=datetime.timezone.utc)


def create_network(ec2) -> dict:
    """A VPC, two subnets in two zones, and two AMIs: the one the fleet starts on and the new one."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for n, zone in ((1, "a"), (2, "b"))
    ]
    images = [ec2.register_image(Name=f"keras-fleet-{n}", RootDeviceName="/dev/xvda")["ImageId"] for n in (1, 2)]
    return {"vpc": vpc, "subnets": ",".join(subnets), "old_ami": images[0], "new_ami": images[1]}


def create_stack(cloudformation, network: dict) -> dict:
    """Create the fleet's stack straight in moto, every parameter given.

    Real CloudFormation records every parameter, defaults included, so an update can
    say UsePreviousValue for each; moto records only those given at creation.
    """
    body = TEMPLATE.read_text()
    summary = cloudformation.get_template_summary(TemplateBody=body)
    values = {p["ParameterKey"]: p.get("DefaultValue", "") for p in summary["Parameters"]}
    values.update(
        VpcId=network["vpc"],
        LoadBalancerSubnetIds=network["subnets"],
        InstanceSubnetIds=network["subnets"],
        ImageId=network["old_ami"],
    )
    cloudformation.create_stack(
        StackName=STACK,
        TemplateBody=body,
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()],
    )
    stack = cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}


def add_alarm_outputs(cloudformation) -> None:
    """Give moto's stack description the two alarm outputs real CloudFormation would have."""

    def add(parsed, **_):
        for stack in parsed.get("Stacks", []):
            if stack["StackName"] == STACK:
                stack.setdefault("Outputs", []).extend(
                    {"OutputKey": key, "OutputValue": name}
                    for key, name in zip(("Target5xxAlarmName", "LatencyAlarmName"), ALARMS)
                )

    cloudformation.meta.events.register("after-call.cloudformation.DescribeStacks", add)


class RefreshStub:
    """An Auto Scaling client whose instance refresh calls a Stubber answers; moto answers the rest."""

    CALLS = frozenset(
        {
            "start_instance_refresh",
            "describe_instance_refreshes",
            "cancel_instance_refresh",
            "rollback_instance_refresh",
        }
    )

    def __init__(self, moto_client):
        self.moto = moto_client
        self.stubbed = boto3.client("autoscaling", region_name=REGION)
        self.stubber = Stubber(self.stubbed)
        self.stubber.activate()

    def __getattr__(self, name):
        return getattr(self.stubbed if name in self.CALLS else self.moto, name)


def refresh(
    status: str,
    percent: int | None = None,
    left: int | None = None,
    reason: str | None = None,
    rollback: dict | None = None,
    group: str = "",
    refresh_id: str = REFRESH_ID,
) -> dict:
    """One InstanceRefresh as DescribeInstanceRefreshes answers it."""
    item = {"InstanceRefreshId": refresh_id, "AutoScalingGroupName": group, "Status": status, "StartTime": STARTED}
    if percent is not None:
        item["PercentageComplete"] = percent
    if left is not None:
        item["InstancesToUpdate"] = left
    if reason:
        item["StatusReason"] = reason
    if rollback:
        item["RollbackDetails"] = rollback
    if status in ("Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed"):
        item["EndTime"] = STARTED + datetime.timedelta(minutes=12)
    return item


# What every refresh the fleet starts asks for: launch before terminate, keep what matches.
LAUNCH_BEFORE_TERMINATE = {
    "MinHealthyPercentage": 100,
    "MaxHealthyPercentage": 200,
    "InstanceWarmup": 90,
    "SkipMatching": True,
}


def expect_start(stubber: Stubber, deployed: dict, version: str, **preferences) -> None:
    """Queue the answer to StartInstanceRefresh, for the one request that must come: onto ``version``."""
    stubber.add_response(
        "start_instance_refresh",
        {"InstanceRefreshId": REFRESH_ID},
        expected_params={
            "AutoScalingGroupName": deployed["AutoScalingGroupName"],
            "Strategy": "Rolling",
            "DesiredConfiguration": {
                "LaunchTemplate": {"LaunchTemplateId": deployed["LaunchTemplateId"], "Version": version}
            },
            "Preferences": {**LAUNCH_BEFORE_TERMINATE, **preferences},
        },
    )


def expect_progress(stubber: Stubber, group: str, states: list[dict | None], refresh_id: str = REFRESH_ID) -> None:
    """Queue the answers to the refresh being followed, one state per poll (None: not listed yet)."""
    for state in states:
        stubber.add_response(
            "describe_instance_refreshes",
            {"InstanceRefreshes": [{**state, "AutoScalingGroupName": group}] if state else []},
            expected_params={"AutoScalingGroupName": group, "InstanceRefreshIds": [refresh_id]},
        )


def expect_latest(stubber: Stubber, group: str, state: dict | None) -> None:
    """Queue the answer to "the group's last refresh"."""
    found = [{**state, "AutoScalingGroupName": group}] if state else []
    stubber.add_response(
        "describe_instance_refreshes",
        {"InstanceRefreshes": found},
        expected_params={"AutoScalingGroupName": group, "MaxRecords": 1},
    )


def write_manifest(path: Path, ami: str) -> Path:
    """A Packer manifest like the post-processor writes: an older run, then the last one."""
    path.write_text(
        json.dumps(
            {
                "builds": [
                    {
                        "name": "keras-fleet",
                        "builder_type": "amazon-ebs",
                        "build_time": 1767000000,
                        "artifact_id": f"{REGION}:ami-0aaaaaaaaaaaaaaaa",
                        "packer_run_uuid": "run-old",
                        "custom_data": {},
                    },
                    {
                        "name": "keras-fleet",
                        "builder_type": "amazon-ebs",
                        "build_time": 1767600000,
                        "artifact_id": f"eu-west-1:ami-0bbbbbbbbbbbbbbbb,{REGION}:{ami}",
                        "packer_run_uuid": "run-new",
                        "custom_data": {"git_commit": "abc1234"},
                    },
                ],
                "last_run_uuid": "run-new",
            },
            indent=2,
        )
    )
    return path


def move_group(autoscaling, ec2, group: str, template_id: str, group_version: str, instance_version: str) -> None:
    """Point the group at one launch template version and its instances at another, in moto.

    moto has no instance refresh, and it reports every instance of a group as launched
    from its template's default version; setting that default is how the instances come
    to run ``instance_version``.
    """
    spec = {"LaunchTemplateId": template_id, "Version": group_version}
    autoscaling.update_auto_scaling_group(AutoScalingGroupName=group, LaunchTemplate=spec)
    ec2.modify_launch_template(LaunchTemplateId=template_id, DefaultVersion=instance_version)


def add_rolled_version(ec2, template_id: str, ami: str) -> str:
    """A launch template version as `make roll` writes it: version 1's data with ``ami``."""
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template_id, Versions=["1"])
    made = ec2.create_launch_template_version(
        LaunchTemplateId=template_id,
        VersionDescription=f"keras-fleet roll to {ami}; replaces version 1",
        LaunchTemplateData={**data["LaunchTemplateVersions"][0]["LaunchTemplateData"], "ImageId": ami},
    )
    return str(made["LaunchTemplateVersion"]["VersionNumber"])
