"""`make rollback`: undo the last roll, whatever state it is in."""

from __future__ import annotations

from botocore.exceptions import ClientError

from fleet import refresh
from fleet.clients import Clients
from fleet.errors import FleetError, error_code, error_message
from fleet.launch_template import Version, describe_group, get_version, group_version
from fleet.progress import Progress
from fleet.resources import Fleet, find_fleet
from fleet.roll import FAILURES, refresh_to, version_of


def rollback(clients: Clients, stack_name: str, progress: Progress) -> int:
    """Undo the last roll and return 0, or raise :class:`FleetError` saying why it could not.

    - a refresh still replacing instances: AWS rolls it back (RollbackInstanceRefresh);
    - one being cancelled or rolled back: wait for it to end;
    - instances left on another version by a failed or cancelled refresh: refresh them
      back onto the group's version;
    - otherwise: refresh the group onto the version the last roll replaced.
    """
    fleet = find_fleet(clients.cloudformation, stack_name, clients.region)
    last = refresh.latest(clients.autoscaling, fleet.group_name)
    if last and last["Status"] in refresh.REVERSIBLE:
        return _roll_back_refresh(clients, fleet, last, progress)
    if last and last["Status"] not in refresh.ENDED:
        progress.say(f"instance refresh {last['InstanceRefreshId']} is {last['Status']}: waiting for it to end")
        last = refresh.follow(clients.autoscaling, fleet.group_name, last["InstanceRefreshId"], progress)
    group = describe_group(clients.autoscaling, fleet.group_name)
    current = group_version(clients.ec2, group)
    strays = [i["InstanceId"] for i in group["Instances"] if version_of(i) not in (None, str(current.number))]
    if strays:
        progress.say(f"{', '.join(strays)} run another version than the group's {current.number}: moving them back")
        target = current
    elif last and last["Status"] == "RollbackSuccessful":
        progress.say(
            f"the last roll was rolled back already: {fleet.group_name} runs version {current.number} ({current.image_id})"
        )
        return 0
    else:
        target = previous_version(clients.ec2, current)
        progress.say(
            f"rolling {fleet.group_name} back from version {current.number} ({current.image_id}) "
            f"to version {target.number} ({target.image_id})"
        )
    # No alarms on the way back: they may still be ringing for the version being left.
    refresh_to(clients, fleet, group, target, progress, guarded=False)
    progress.say(f"rolled back: {fleet.group_name} runs launch template version {target.number} ({target.image_id})")
    return 0


def previous_version(ec2, current: Version) -> Version:
    """The version before ``current``: the one its roll replaced, else the number before."""
    number = current.replaces or current.number - 1
    if number < 1:
        raise FleetError(f"launch template version {current.number} is the first: there is nothing to roll back to")
    return get_version(ec2, current.template_id, number)


def _roll_back_refresh(clients: Clients, fleet: Fleet, active: dict, progress: Progress) -> int:
    progress.say(f"rolling back instance refresh {active['InstanceRefreshId']} ({refresh.progress_line(active)})")
    try:
        clients.autoscaling.rollback_instance_refresh(AutoScalingGroupName=fleet.group_name)
    except ClientError as exc:
        if error_code(exc) in ("IrreversibleInstanceRefresh", "ActiveInstanceRefreshNotFound"):
            raise FleetError(
                f"AWS cannot roll back instance refresh {active['InstanceRefreshId']}: {error_message(exc)}"
            ) from None
        raise
    final = refresh.follow(clients.autoscaling, fleet.group_name, active["InstanceRefreshId"], progress)
    if final["Status"] != "RollbackSuccessful":
        raise FleetError(f"{FAILURES.get(final['Status'], final['Status'])}: {refresh.reason(final)}")
    progress.say(f"rolled back: {fleet.group_name} runs its previous version again")
    return 0
