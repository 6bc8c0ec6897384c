"""Instance refreshes: start one that launches before it terminates, and follow it to its end."""

from __future__ import annotations

from botocore.exceptions import ClientError

from fleet.errors import FleetError, error_code
from fleet.progress import Progress

# Statuses after which AWS does nothing more with a refresh.
ENDED = frozenset({"Successful", "Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed"})
# Statuses of a refresh that is still replacing instances and can still be rolled back.
REVERSIBLE = frozenset({"Pending", "InProgress", "Baking"})


def start(
    autoscaling,
    group_name: str,
    desired_configuration: dict,
    *,
    warmup_seconds: int,
    bake_seconds: int = 0,
    alarm_names: tuple[str, ...] = (),
) -> str:
    """Start a rolling instance refresh of the group to ``desired_configuration``; return its id.

    With ``alarm_names`` the refresh fails when one goes off and then rolls itself back;
    without, it is a rollback itself and must not be undone by the alarms its bad
    predecessor set off.
    """
    preferences = {
        # Launch before terminate: never fewer healthy instances than before the roll,
        # at most twice as many while it runs.
        "MinHealthyPercentage": 100,
        "MaxHealthyPercentage": 200,
        # After a new instance is healthy, wait this long before moving on.
        "InstanceWarmup": warmup_seconds,
        # Instances already on the desired configuration are left alone.
        "SkipMatching": True,
        # Either alarm going off fails the refresh, and a failed refresh undoes itself.
        "AutoRollback": bool(alarm_names),
    }
    if alarm_names:
        preferences["AlarmSpecification"] = {"Alarms": list(alarm_names)}
        # After the last replacement, the alarms are watched this long before success:
        # a fault that needs traffic to show still rolls back.
        preferences["BakeTime"] = bake_seconds
    try:
        response = autoscaling.start_instance_refresh(
            AutoScalingGroupName=group_name,
            Strategy="Rolling",
            DesiredConfiguration=desired_configuration,
            Preferences=preferences,
        )
    except ClientError as exc:
        if error_code(exc) == "InstanceRefreshInProgress":
            raise FleetError(
                f"an instance refresh is already running on {group_name}: "
                "watch it with `make status`, undo it with `make rollback`"
            ) from None
        raise
    return response["InstanceRefreshId"]


def latest(autoscaling, group_name: str) -> dict | None:
    """The group's most recent instance refresh, or None if it never had one."""
    found = autoscaling.describe_instance_refreshes(AutoScalingGroupName=group_name, MaxRecords=1)
    return found["InstanceRefreshes"][0] if found["InstanceRefreshes"] else None


def follow(autoscaling, group_name: str, refresh_id: str, progress: Progress) -> dict:
    """Print the refresh's progress each time it changes, until it ends; return its last state."""
    last_line = None
    while True:
        found = autoscaling.describe_instance_refreshes(
            AutoScalingGroupName=group_name, InstanceRefreshIds=[refresh_id]
        )
        # A refresh just started may not be listed yet (AWS is eventually consistent).
        refresh = found["InstanceRefreshes"][0] if found["InstanceRefreshes"] else {"Status": "Pending"}
        line = progress_line(refresh)
        if line != last_line:
            progress.say(line)
            last_line = line
        if refresh["Status"] in ENDED:
            return refresh
        progress.wait()


def progress_line(refresh: dict) -> str:
    """One line: status, percentage done, instances left, and AWS's reason if it gives one."""
    status = refresh["Status"]
    if status.startswith("Rollback"):
        details = refresh.get("RollbackDetails", {})
        percent, left = details.get("PercentageCompleteOnRollback"), details.get("InstancesToUpdateOnRollback")
    else:
        percent, left = refresh.get("PercentageComplete"), refresh.get("InstancesToUpdate")
    parts = [status]
    if percent is not None:
        parts.append(f"{percent}% done")
    if left is not None:
        parts.append(f"{left} instance{'' if left == 1 else 's'} left")
    line = ", ".join(parts)
    return f"{line}: {refresh['StatusReason']}" if refresh.get("StatusReason") else line


def reason(refresh: dict) -> str:
    """Why a refresh ended as it did, in AWS's words."""
    because = [refresh.get("RollbackDetails", {}).get("RollbackReason"), refresh.get("StatusReason")]
    return "; ".join(text for text in because if text) or "AWS gave no reason"
