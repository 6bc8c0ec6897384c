"""`make teardown`: delete the fleet's CloudFormation stack, showing its events until it is gone."""

from __future__ import annotations

from fleet.clients import Clients
from fleet.errors import FleetError
from fleet.progress import Progress
from fleet.resources import describe_stack
from fleet.stack import check_not_busy, ended_badly, events_so_far, watch


def teardown(clients: Clients, stack_name: str, confirm: str | None, progress: Progress) -> int:
    """Delete the stack once ``confirm`` repeats its name; print its events until it is gone.

    Everything the stack made goes with it: the instances, the load balancer, the
    alarms, the security groups. The AMIs and their snapshots stay (Packer made them).
    Returns 0 when the stack is gone (or was never there); raises :class:`FleetError`
    without the confirmation, while another operation runs, or when the deletion fails.
    """
    cfn = clients.cloudformation
    existing = describe_stack(cfn, stack_name)
    if existing is None:
        progress.say(f"no stack {stack_name} in {clients.region}: nothing to delete")
        return 0
    if confirm != stack_name:
        raise FleetError(
            f"this deletes stack {stack_name} in {clients.region}: its instances, load balancer and alarms; "
            f"to go ahead, name it: `make teardown CONFIRM={stack_name}`"
        )
    check_not_busy(existing, stack_name, f"make teardown CONFIRM={stack_name}", unless="DELETE_IN_PROGRESS")
    status = existing["StackStatus"]
    stack_id = existing["StackId"]
    seen = events_so_far(cfn, stack_id)
    if status != "DELETE_IN_PROGRESS":  # else a deletion already runs: watch it
        cfn.delete_stack(StackName=stack_id)
    progress.say(f"deleting stack {stack_name} in {clients.region}")
    final = watch(cfn, stack_id, seen, progress)
    if final["StackStatus"] != "DELETE_COMPLETE":
        raise ended_badly(stack_name, final, " Fix what held it (the reasons above), then run `make teardown` again.")
    progress.say(f"stack {stack_name} deleted; the AMIs and their snapshots stay until you deregister them")
    return 0
