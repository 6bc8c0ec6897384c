"""`make roll`: a new launch template version with the manifest's AMI, then an instance refresh.

Auto Scaling's instance refresh calls are answered by botocore's Stubber, which checks
every request against the service model; the rest (stack, group, launch template) is moto.
"""

from __future__ import annotations

import pytest
from botocore.stub import ANY

from fleet.cli import main
from tests.aws.fakes import ALARMS, NO_WAIT, REFRESH_ID, STACK, expect_progress, expect_start, refresh


def roll(fleet_clients, *args):
    return main(["--stack-name", STACK, "roll", *args], clients=fleet_clients, **NO_WAIT)


def expect_roll(refreshes, deployed, version: str):
    """The refresh `make roll` must start: guarded by the alarms, rolled back by itself, baked."""
    expect_start(
        refreshes, deployed, version, AutoRollback=True, AlarmSpecification={"Alarms": list(ALARMS)}, BakeTime=180
    )


def versions(clients, deployed) -> list[dict]:
    found = clients.ec2.describe_launch_template_versions(LaunchTemplateId=deployed["LaunchTemplateId"])
    return sorted(found["LaunchTemplateVersions"], key=lambda v: v["VersionNumber"])


def test_roll_success_pins_the_manifest_ami_in_a_full_new_version(
    fleet_clients, clients, deployed, network, manifest, refreshes, capsys
):
    group = deployed["AutoScalingGroupName"]
    expect_roll(refreshes, deployed, version="2")
    expect_progress(
        refreshes,
        group,
        [
            None,  # just started: not listed yet
            refresh("Pending"),
            refresh("InProgress", 0, 2, "Waiting for instances to warm up before continuing."),
            refresh("InProgress", 50, 1),
            refresh("Baking", 100, 0),
            refresh("Successful", 100, 0),
        ],
    )

    assert roll(fleet_clients, "--manifest", str(manifest)) == 0

    old, new = versions(clients, deployed)
    assert new["LaunchTemplateData"]["ImageId"] == network["new_ami"]
    # Everything but the AMI is carried over: profile, IMDSv2, network interface, tags, type.
    assert {k: v for k, v in new["LaunchTemplateData"].items() if k != "ImageId"} == {
        k: v for k, v in old["LaunchTemplateData"].items() if k != "ImageId"
    }
    assert {"IamInstanceProfile", "MetadataOptions", "NetworkInterfaces", "InstanceType"} <= set(
        new["LaunchTemplateData"]
    )
    assert "replaces version 1" in new["VersionDescription"]
    out = capsys.readouterr().out
    assert f"AMI: {network['new_ami']} (the last build in {manifest})" in out
    assert "InProgress, 50% done, 1 instance left" in out
    assert "Baking, 100% done, 0 instances left" in out
    assert f"rolled: {group} runs {network['new_ami']} (launch template version 2)" in out


def test_roll_takes_an_explicit_ami_over_the_manifest(fleet_clients, clients, deployed, network, refreshes, tmp_path):
    group = deployed["AutoScalingGroupName"]
    expect_roll(refreshes, deployed, version="2")
    expect_progress(refreshes, group, [refresh("Successful", 100, 0)])

    assert roll(fleet_clients, "--ami", network["new_ami"], "--manifest", str(tmp_path / "none.json")) == 0

    assert versions(clients, deployed)[-1]["LaunchTemplateData"]["ImageId"] == network["new_ami"]


SCRIPTS = {
    "failed": (
        [
            refresh("InProgress", 0, 2),
            refresh(
                "Failed", 0, 2, "Instance refresh failed: an instance failed to launch: The image id does not exist"
            ),
        ],
        "the instance refresh failed: Instance refresh failed: an instance failed to launch",
    ),
    "cancelled": (
        [
            refresh("InProgress", 50, 1),
            refresh("Cancelling", 50, 1, "Cancelled due to user request."),
            refresh("Cancelled", 50, 1, "Cancelled due to user request."),
        ],
        "the instance refresh was cancelled: Cancelled due to user request.",
    ),
    "rolled back": (
        [
            refresh("InProgress", 50, 1),
            refresh(
                "RollbackInProgress",
                50,
                1,
                "Rollback in progress.",
                rollback={
                    "RollbackReason": f"Alarm {ALARMS[1]} is in ALARM state.",
                    "PercentageCompleteOnRollback": 0,
                    "InstancesToUpdateOnRollback": 1,
                },
            ),
            refresh(
                "RollbackSuccessful",
                50,
                1,
                "Rollback completed successfully.",
                rollback={
                    "RollbackReason": f"Alarm {ALARMS[1]} is in ALARM state.",
                    "PercentageCompleteOnRollback": 100,
                    "InstancesToUpdateOnRollback": 0,
                },
            ),
        ],
        f"the instance refresh was rolled back; the fleet runs its previous version again: Alarm {ALARMS[1]} is in ALARM state.",
    ),
    "rollback failed": (
        [
            refresh("RollbackInProgress", 10, 2, rollback={"RollbackReason": "Instance refresh failed."}),
            refresh(
                "RollbackFailed",
                10,
                2,
                "Rollback failed: launch failures.",
                rollback={"RollbackReason": "Instance refresh failed."},
            ),
        ],
        "the instance refresh failed and so did its rollback",
    ),
}


@pytest.mark.parametrize("outcome", SCRIPTS)
def test_roll_exits_non_zero_with_the_reason_when_the_refresh_does_not_succeed(
    outcome, fleet_clients, deployed, manifest, refreshes, capsys
):
    states, reason = SCRIPTS[outcome]
    expect_roll(refreshes, deployed, version="2")
    expect_progress(refreshes, deployed["AutoScalingGroupName"], states)

    assert roll(fleet_clients, "--manifest", str(manifest)) == 1

    captured = capsys.readouterr()
    assert reason in captured.err
    assert "Traceback" not in captured.err


def test_rollback_progress_shows_the_rollback_percentage(fleet_clients, deployed, manifest, refreshes, capsys):
    expect_roll(refreshes, deployed, version="2")
    states, _ = SCRIPTS["rolled back"]
    expect_progress(refreshes, deployed["AutoScalingGroupName"], states)

    roll(fleet_clients, "--manifest", str(manifest))

    assert "RollbackInProgress, 0% done, 1 instance left: Rollback in progress." in capsys.readouterr().out


def test_roll_refuses_while_another_refresh_runs(fleet_clients, deployed, manifest, refreshes, capsys):
    refreshes.add_client_error(
        "start_instance_refresh",
        service_error_code="InstanceRefreshInProgress",
        service_message="An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.",
        http_status_code=400,
    )

    assert roll(fleet_clients, "--manifest", str(manifest)) == 1

    assert "an instance refresh is already running" in capsys.readouterr().err


def test_roll_to_the_ami_already_running_everywhere_does_nothing(fleet_clients, deployed, network, refreshes, capsys):
    assert roll(fleet_clients, "--ami", network["old_ami"]) == 0

    assert "nothing to roll" in capsys.readouterr().out


def test_roll_without_a_manifest_says_what_to_do(fleet_clients, deployed, tmp_path, capsys):
    assert roll(fleet_clients, "--manifest", str(tmp_path / "missing.json")) == 1

    assert "no Packer manifest" in capsys.readouterr().err


def test_roll_of_a_spot_group_keeps_its_mixed_instances_policy(fleet_clients, clients, deployed, manifest, refreshes):
    group = deployed["AutoScalingGroupName"]
    distribution = {
        "OnDemandBaseCapacity": 1,
        "OnDemandPercentageAboveBaseCapacity": 50,
        "SpotAllocationStrategy": "price-capacity-optimized",
    }
    clients.autoscaling.update_auto_scaling_group(
        AutoScalingGroupName=group,
        MixedInstancesPolicy={
            "LaunchTemplate": {
                "LaunchTemplateSpecification": {"LaunchTemplateId": deployed["LaunchTemplateId"], "Version": "1"}
            },
            "InstancesDistribution": distribution,
        },
    )
    refreshes.add_response(
        "start_instance_refresh",
        {"InstanceRefreshId": REFRESH_ID},
        expected_params={
            "AutoScalingGroupName": group,
            "Strategy": "Rolling",
            "DesiredConfiguration": {
                "MixedInstancesPolicy": {
                    "LaunchTemplate": {
                        "LaunchTemplateSpecification": {
                            "LaunchTemplateId": deployed["LaunchTemplateId"],
                            "Version": "2",
                        },
                        "Overrides": [],
                    },
                    "InstancesDistribution": distribution,
                }
            },
            "Preferences": ANY,
        },
    )
    expect_progress(refreshes, group, [refresh("Successful", 100, 0)])

    assert roll(fleet_clients, "--manifest", str(manifest)) == 0
