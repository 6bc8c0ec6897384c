"""What the stack made, found through its outputs: the names the other commands need."""

from __future__ import annotations

import dataclasses

from botocore.exceptions import ClientError

from fleet.errors import FleetError, error_code, error_message

# The stack outputs the commands read; deploy/aws/fleet.yaml must keep providing them.
OUTPUTS = (
    "Url",
    "AutoScalingGroupName",
    "LaunchTemplateId",
    "TargetGroupArn",
    "Target5xxAlarmName",
    "LatencyAlarmName",
)


@dataclasses.dataclass(frozen=True)
class Fleet:
    """The stack's outputs that `make roll`, `make status` and `make rollback` use."""

    stack_name: str
    stack_status: str
    url: str
    group_name: str
    launch_template_id: str
    target_group_arn: str
    alarm_names: tuple[str, ...]


def describe_stack(cloudformation, stack_name: str) -> dict | None:
    """Return the stack's description, or None when there is no such stack."""
    try:
        return cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    except ClientError as exc:
        if error_code(exc) == "ValidationError" and "does not exist" in error_message(exc):
            return None
        raise


def outputs(stack: dict) -> dict[str, str]:
    """The stack's outputs as a plain dict."""
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def find_fleet(cloudformation, stack_name: str, region: str) -> Fleet:
    """Read the fleet's names from the outputs of stack ``stack_name``."""
    stack = describe_stack(cloudformation, stack_name)
    if stack is None:
        raise FleetError(f"there is no stack {stack_name} in {region}: deploy it with `make stack`")
    found = outputs(stack)
    missing = [key for key in OUTPUTS if key not in found]
    if missing:
        raise FleetError(
            f"stack {stack_name} ({stack['StackStatus']}) has no output {', '.join(missing)}: "
            "is it a Keras Fleet stack? Update it with `make stack`"
        )
    return Fleet(
        stack_name=stack_name,
        stack_status=stack["StackStatus"],
        url=found["Url"],
        group_name=found["AutoScalingGroupName"],
        launch_template_id=found["LaunchTemplateId"],
        target_group_arn=found["TargetGroupArn"],
        alarm_names=(found["Target5xxAlarmName"], found["LatencyAlarmName"]),
    )
