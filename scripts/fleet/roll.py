"""`make roll`: move the fleet to a new AMI with an instance refresh that undoes itself."""

from __future__ import annotations

from fleet import refresh
from fleet.clients import Clients
from fleet.errors import FleetError
from fleet.launch_template import Version, add_version, describe_group, desired_configuration, group_version
from fleet.progress import Progress
from fleet.resources import Fleet, find_fleet

# The template sets the group's DefaultInstanceWarmup to 90 s; this stands in for a
# group that has none.
FALLBACK_WARMUP_SECONDS = 90

# How a refresh that did not succeed is told, by its final status.
FAILURES = {
    "Failed": "the instance refresh failed",
    "Cancelled": "the instance refresh was cancelled",
    "RollbackSuccessful": "the instance refresh was rolled back; the fleet runs its previous version again",
    "RollbackFailed": "the instance refresh failed and so did its rollback; instances may be mixed, see `make status`",
}


def roll(clients: Clients, stack_name: str, ami: str, *, bake_seconds: int, progress: Progress) -> int:
    """Roll the fleet to ``ami``: a new launch template version, then a refresh onto it.

    Returns 0 once every instance runs the new version; raises :class:`FleetError`
    with AWS's reason when the refresh fails, is cancelled or is rolled back.
    """
    fleet = find_fleet(clients.cloudformation, stack_name, clients.region)
    group = describe_group(clients.autoscaling, fleet.group_name)
    base = group_version(clients.ec2, group)
    if base.image_id == ami and all(version_of(i) == str(base.number) for i in group["Instances"]):
        progress.say(f"{fleet.group_name} already runs {ami} on launch template version {base.number}: nothing to roll")
        return 0
    new = add_version(clients.ec2, base, ami)
    progress.say(
        f"launch template {new.template_id}: version {new.number} is version {base.number} with {ami} (was {base.image_id})"
    )
    refresh_to(clients, fleet, group, new, progress, bake_seconds=bake_seconds)
    progress.say(f"rolled: {fleet.group_name} runs {ami} (launch template version {new.number}); {fleet.url}")
    return 0


def refresh_to(
    clients: Clients,
    fleet: Fleet,
    group: dict,
    version: Version,
    progress: Progress,
    *,
    bake_seconds: int = 0,
    guarded: bool = True,
) -> dict:
    """Refresh the group onto ``version`` and follow it; raise :class:`FleetError` unless it succeeds.

    ``guarded``: the stack's alarms watch the refresh and roll it back when they go off.
    """
    refresh_id = refresh.start(
        clients.autoscaling,
        fleet.group_name,
        desired_configuration(clients.autoscaling, group, version),
        warmup_seconds=group.get("DefaultInstanceWarmup") or FALLBACK_WARMUP_SECONDS,
        bake_seconds=bake_seconds,
        alarm_names=fleet.alarm_names if guarded else (),
    )
    watched = f"rolls back if {' or '.join(fleet.alarm_names)} goes off" if guarded else "no alarms"
    progress.say(f"instance refresh {refresh_id} to version {version.number}: launch before terminate; {watched}")
    final = refresh.follow(clients.autoscaling, fleet.group_name, refresh_id, progress)
    if final["Status"] != "Successful":
        raise FleetError(f"{FAILURES[final['Status']]}: {refresh.reason(final)}")
    return final


def version_of(instance: dict) -> str | None:
    """The launch template version an instance of the group was launched from."""
    return (instance.get("LaunchTemplate") or {}).get("Version")
