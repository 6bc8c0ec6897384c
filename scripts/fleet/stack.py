"""`make stack`: create or update the fleet's CloudFormation stack, showing its events."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from botocore.exceptions import ClientError

from fleet.capacity import requests_per_instance
from fleet.clients import Clients
from fleet.errors import FleetError, error_code, error_message
from fleet.launch_template import describe_group, group_version
from fleet.manifest import chosen_ami
from fleet.progress import Progress
from fleet.resources import describe_stack, outputs

# CloudFormation takes a template body up to this size in the request itself.
MAX_TEMPLATE_BODY = 51_200
DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE")
# A stack in one of these states can only be deleted.
DEAD = ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED")


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the operator asked of `make stack`; unset values keep what the stack has."""

    template: Path
    manifest: Path
    capacity: Path
    vpc_id: str | None = None
    subnets: str | None = None
    instance_subnets: str | None = None
    ami: str | None = None
    extra: dict[str, str] = dataclasses.field(default_factory=dict)


def deploy(clients: Clients, stack_name: str, settings: Settings, progress: Progress) -> int:
    """Create the stack, or update it, print its events until it settles, then its URL.

    Returns 0 when the stack is complete (or already up to date); raises
    :class:`FleetError` with the failed resources' reasons otherwise.
    """
    cfn, say = clients.cloudformation, progress.say
    body = settings.template.read_text()
    if len(body.encode()) > MAX_TEMPLATE_BODY:
        raise FleetError(f"{settings.template} is over CloudFormation's {MAX_TEMPLATE_BODY} bytes for a template body")
    existing = describe_stack(cfn, stack_name)
    _check_updatable(existing, stack_name, clients.region)
    given = parameters(clients, existing, settings, say=say)
    request = dict(StackName=stack_name, TemplateBody=body, Capabilities=["CAPABILITY_IAM"])
    if existing is None:
        say(f"creating stack {stack_name} in {clients.region}")
        stack_id = cfn.create_stack(
            **request,
            Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(given.items())],
            Tags=[{"Key": "project", "Value": "keras-fleet"}],
        )["StackId"]
        seen: set[str] = set()
    else:
        stack_id = existing["StackId"]
        seen = events_so_far(cfn, stack_id)
        say(f"updating stack {stack_name} in {clients.region}")
        try:
            cfn.update_stack(**request, Parameters=update_parameters(existing, given))
        except ClientError as exc:
            if error_code(exc) == "ValidationError" and "No updates are to be performed" in error_message(exc):
                say(f"stack {stack_name} is up to date")
                say(f"URL: {outputs(existing).get('Url', '?')}")
                return 0
            raise
    final = watch(cfn, stack_id, seen, progress)
    if final["StackStatus"] not in DONE:
        advice = f" Delete it (`make teardown CONFIRM={stack_name}`) and run `make stack` again." \
            if final["StackStatus"] in DEAD else ""
        raise ended_badly(stack_name, final, advice)
    say(f"URL: {outputs(final).get('Url', '?')}")
    return 0


def parameters(
    clients: Clients, existing: dict | None, settings: Settings, *, say: Callable[[str], None]
) -> dict[str, str]:
    """The parameter values to send; parameters left out keep their value (or default)."""
    given = dict(settings.extra)
    for key, value in (
        ("VpcId", settings.vpc_id),
        ("LoadBalancerSubnetIds", settings.subnets),
        ("InstanceSubnetIds", settings.instance_subnets or settings.subnets),
    ):
        if value:
            given[key] = value
    # A target given outright wins; the report is not even read then.
    measured = None if "TargetRequestsPerInstance" in given else requests_per_instance(settings.capacity)
    if measured is not None:
        given["TargetRequestsPerInstance"] = str(measured)
        say(f"target: {measured} requests per instance per minute (from {settings.capacity})")
    if existing is None:
        missing = [var for key, var in (("VpcId", "VPC_ID"), ("LoadBalancerSubnetIds", "SUBNETS")) if key not in given]
        if missing:
            raise FleetError(
                f"creating the stack needs {' and '.join(missing)}: "
                "make stack VPC_ID=vpc-... SUBNETS=subnet-a,subnet-b [INSTANCE_SUBNETS=subnet-c,subnet-d]"
            )
        given["ImageId"], which = chosen_ami(settings.ami, settings.manifest, clients.region)
        say(which)
        return given
    # The fleet keeps the AMI it runs: the last roll's, which the stack's own parameter
    # may not know. Sending it keeps CloudFormation from moving the group back.
    live = live_image(clients, existing)
    if live:
        if settings.ami and settings.ami != live:
            say(f"note: the fleet keeps {live}; `make roll AMI={settings.ami}` moves it to {settings.ami}")
        given["ImageId"] = live
    return given


def update_parameters(existing: dict, given: dict[str, str]) -> list[dict]:
    """Parameters for UpdateStack: the given values, and the previous value for the rest."""
    keys = {p["ParameterKey"] for p in existing.get("Parameters", [])} | set(given)
    return [
        {"ParameterKey": k, "ParameterValue": given[k]} if k in given else {"ParameterKey": k, "UsePreviousValue": True}
        for k in sorted(keys)
    ]


def live_image(clients: Clients, stack: dict) -> str | None:
    """The AMI of the launch template version the stack's group launches now, if there is one."""
    group_name = outputs(stack).get("AutoScalingGroupName")
    if not group_name:
        return None
    return group_version(clients.ec2, describe_group(clients.autoscaling, group_name)).image_id or None


def watch(cfn, stack_id: str, seen: set[str], progress: Progress) -> dict:
    """Print the stack's new events until it is no longer in progress; return its description.

    A waiter would block without showing events, so this polls both itself. The
    returned description carries ``failures``: the failed events of this operation.
    """
    failures: list[dict] = []
    while True:
        # Status first: once it has settled, every event of the operation is written.
        stack = cfn.describe_stacks(StackName=stack_id)["Stacks"][0]
        for event in new_events(cfn, stack_id, seen):
            progress.say(describe_event(event))
            if event["ResourceStatus"].endswith("_FAILED"):
                failures.append(event)
        if not stack["StackStatus"].endswith("_IN_PROGRESS"):
            return {**stack, "failures": failures}
        progress.wait()


def events_so_far(cfn, stack_id: str) -> set[str]:
    """The id of the stack's latest event: what :func:`watch` shows comes after it."""
    return {e["EventId"] for e in cfn.describe_stack_events(StackName=stack_id)["StackEvents"][:1]}


def ended_badly(stack_name: str, final: dict, advice: str = "") -> FleetError:
    """The error for a stack operation that did not complete: its status and the failed resources' reasons."""
    failures = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason', '')}" for e in final["failures"]]
    return FleetError(f"stack {stack_name} ended {final['StackStatus']}: {'; '.join(failures) or 'no reason given'}.{advice}")


def new_events(cfn, stack_id: str, seen: set[str]) -> list[dict]:
    """The stack's events not seen yet, oldest first; marks them seen."""
    fresh = []
    for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack_id):
        for event in page["StackEvents"]:  # newest first
            if event["EventId"] in seen:
                break
            fresh.append(event)
        else:
            continue
        break
    seen.update(e["EventId"] for e in fresh)
    return fresh[::-1]


def describe_event(event: dict) -> str:
    """One event as a line: time, status, resource, and CloudFormation's reason."""
    line = f"{event['Timestamp']:%H:%M:%S}  {event['ResourceStatus']:<36} {event['LogicalResourceId']} ({event['ResourceType']})"
    return f"{line}: {event['ResourceStatusReason']}" if event.get("ResourceStatusReason") else line


def check_not_busy(existing: dict, stack_name: str, run_again: str, unless: str | None = None) -> None:
    """Raise :class:`FleetError` while an operation other than ``unless`` runs on the stack,
    naming the make target (``run_again``) to run once it settles."""
    status = existing["StackStatus"]
    if status.endswith("_IN_PROGRESS") and status != unless:
        raise FleetError(f"stack {stack_name} is busy ({status}): wait for it to settle (`make status`), "
                         f"then run `{run_again}` again")


def _check_updatable(existing: dict | None, stack_name: str, region: str) -> None:
    if existing is None:
        return
    check_not_busy(existing, stack_name, "make stack")
    status = existing["StackStatus"]
    if status in DEAD:
        raise FleetError(
            f"stack {stack_name} is {status} and can only be deleted: "
            f"`make teardown CONFIRM={stack_name}`, then `make stack` again"
        )
    if status == "UPDATE_ROLLBACK_FAILED":
        raise FleetError(
            f"stack {stack_name} is UPDATE_ROLLBACK_FAILED: "
            f"aws cloudformation continue-update-rollback --stack-name {stack_name} --region {region}, then `make stack` again"
        )
