"""`make rollback`: undo the refresh in progress, or roll to the version the last roll replaced."""

from __future__ import annotations


from fleet.cli import main
from tests.aws.fakes import (
    NO_WAIT,
    REFRESH_ID,
    STACK,
    add_rolled_version,
    expect_latest,
    expect_progress,
    expect_start,
    move_group,
    refresh,
)


def rollback(fleet_clients):
    return main(["--stack-name", STACK, "rollback"], clients=fleet_clients, **NO_WAIT)


def test_rollback_rolls_back_the_refresh_in_progress(fleet_clients, deployed, refreshes, capsys):
    group = deployed["AutoScalingGroupName"]
    expect_latest(refreshes, group, refresh("InProgress", 50, 1))
    refreshes.add_response(
        "rollback_instance_refresh", {"InstanceRefreshId": REFRESH_ID}, expected_params={"AutoScalingGroupName": group}
    )
    expect_progress(
        refreshes,
        group,
        [
            refresh(
                "RollbackInProgress",
                50,
                1,
                rollback={
                    "RollbackReason": "Rollback requested by user.",
                    "PercentageCompleteOnRollback": 0,
                    "InstancesToUpdateOnRollback": 1,
                },
            ),
            refresh(
                "RollbackSuccessful",
                50,
                1,
                rollback={
                    "RollbackReason": "Rollback requested by user.",
                    "PercentageCompleteOnRollback": 100,
                    "InstancesToUpdateOnRollback": 0,
                },
            ),
        ],
    )

    assert rollback(fleet_clients) == 0

    out = capsys.readouterr().out
    assert f"rolling back instance refresh {REFRESH_ID} (InProgress, 50% done, 1 instance left)" in out
    assert "RollbackSuccessful, 100% done, 0 instances left" in out


def test_rollback_of_an_irreversible_refresh_says_why(fleet_clients, deployed, refreshes, capsys):
    expect_latest(refreshes, deployed["AutoScalingGroupName"], refresh("InProgress", 20, 2))
    refreshes.add_client_error(
        "rollback_instance_refresh",
        service_error_code="IrreversibleInstanceRefresh",
        service_message="The instance refresh has no previous configuration to roll back to.",
        http_status_code=400,
    )

    assert rollback(fleet_clients) == 1

    assert "AWS cannot roll back instance refresh" in capsys.readouterr().err


def test_rollback_after_a_successful_roll_returns_to_the_version_it_replaced(
    fleet_clients, clients, deployed, network, refreshes, capsys
):
    group, template = deployed["AutoScalingGroupName"], deployed["LaunchTemplateId"]
    rolled = add_rolled_version(clients.ec2, template, network["new_ami"])
    move_group(clients.autoscaling, clients.ec2, group, template, group_version=rolled, instance_version=rolled)
    expect_latest(refreshes, group, refresh("Successful", 100, 0))
    expect_start(refreshes, deployed, version="1", AutoRollback=False)  # no alarms on the way back
    expect_progress(refreshes, group, [refresh("InProgress", 0, 2), refresh("Successful", 100, 0)])

    assert rollback(fleet_clients) == 0

    out = capsys.readouterr().out
    assert f"back from version 2 ({network['new_ami']}) to version 1 ({network['old_ami']})" in out
    assert f"rolled back: {group} runs launch template version 1 ({network['old_ami']})" in out


def test_rollback_after_a_cancelled_roll_moves_the_stray_instances_back(
    fleet_clients, clients, deployed, network, refreshes, capsys
):
    group, template = deployed["AutoScalingGroupName"], deployed["LaunchTemplateId"]
    rolled = add_rolled_version(clients.ec2, template, network["new_ami"])
    # A cancelled refresh leaves the group on version 1 and some instances on version 2.
    move_group(clients.autoscaling, clients.ec2, group, template, group_version="1", instance_version=rolled)
    expect_latest(refreshes, group, refresh("Cancelled", 50, 1, "Cancelled due to user request."))
    expect_start(refreshes, deployed, version="1", AutoRollback=False)  # no alarms on the way back
    expect_progress(refreshes, group, [refresh("Successful", 100, 0)])

    assert rollback(fleet_clients) == 0

    assert "run another version than the group's 1: moving them back" in capsys.readouterr().out


def test_rollback_after_an_automatic_rollback_has_nothing_left_to_do(fleet_clients, deployed, refreshes, capsys):
    expect_latest(refreshes, deployed["AutoScalingGroupName"], refresh("RollbackSuccessful", 50, 1))

    assert rollback(fleet_clients) == 0

    assert "the last roll was rolled back already" in capsys.readouterr().out


def test_rollback_waits_for_a_rollback_already_running(fleet_clients, deployed, refreshes, capsys):
    group = deployed["AutoScalingGroupName"]
    expect_latest(refreshes, group, refresh("RollbackInProgress", 50, 1, rollback={"RollbackReason": "Alarm."}))
    expect_progress(refreshes, group, [refresh("RollbackSuccessful", 50, 1, rollback={"RollbackReason": "Alarm."})])

    assert rollback(fleet_clients) == 0

    out = capsys.readouterr().out
    assert "is RollbackInProgress: waiting for it to end" in out
    assert "the last roll was rolled back already" in out


def test_rollback_of_the_first_version_has_nowhere_to_go(fleet_clients, deployed, refreshes, capsys):
    expect_latest(refreshes, deployed["AutoScalingGroupName"], None)

    assert rollback(fleet_clients) == 1

    assert "version 1 is the first: there is nothing to roll back to" in capsys.readouterr().err
