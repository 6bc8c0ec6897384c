"""`make status` against moto: instances, their health in the target group, AMI, the last refresh."""

from __future__ import annotations

from fleet import status as status_module
from fleet.cli import main
from tests.aws.fakes import REFRESH_ID, STACK, expect_latest, refresh


def status(fleet_clients):
    return main(["--stack-name", STACK, "status"], clients=fleet_clients)


def test_status_lists_each_instance_with_its_health_ami_and_version(
    fleet_clients, clients, deployed, network, refreshes, capsys
):
    group = deployed["AutoScalingGroupName"]
    expect_latest(refreshes, group, refresh("InProgress", 50, 1, "Waiting for instances to warm up before continuing."))

    assert status(fleet_clients) == 0

    out = capsys.readouterr().out
    instances = clients.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group])["AutoScalingGroups"][0][
        "Instances"
    ]
    assert len(instances) == 2
    assert f"stack {STACK}: CREATE_COMPLETE, {deployed['Url']}" in out
    assert f"launches version 1 ({network['old_ami']})" in out
    for instance in instances:
        row = next(line for line in out.splitlines() if line.startswith(instance["InstanceId"]))
        assert row.split() == [
            instance["InstanceId"],
            instance["AvailabilityZone"],
            "InService",
            "Healthy",
            "healthy",
            network["old_ami"],
            "1",
        ]
    assert (
        f"instance refresh {REFRESH_ID} (started 2026-01-05 10:00:00 UTC): InProgress, 50% done, 1 instance left" in out
    )


def test_status_says_what_each_ami_holds_from_its_bake_tags(fleet_clients, clients, deployed, network, refreshes,
                                                              capsys):
    bake_tags = {"Model": "digits", "ModelVersion": "7", "Settings": "3f2a9c01b4de", "AppVersion": "0.1.0",
                 "GitCommit": "abc1234"}
    clients.ec2.create_tags(Resources=[network["old_ami"]], Tags=[{"Key": k, "Value": v} for k, v in bake_tags.items()])
    expect_latest(refreshes, deployed["AutoScalingGroupName"], None)

    assert status(fleet_clients) == 0

    lines = capsys.readouterr().out.splitlines()
    assert f"{network['old_ami']}: model digits version 7, settings 3f2a9c01b4de, keras-fleet 0.1.0 at abc1234" in lines
    assert [line for line in lines if line.startswith("ami-")] == [lines[-2]]  # one AMI: every instance and the template


def test_status_names_an_ami_without_bake_tags_and_one_deregistered(clients, network):
    clients.ec2.deregister_image(ImageId=network["new_ami"])
    labels = status_module.image_labels(clients.ec2, {network["old_ami"], network["new_ami"]})
    assert labels == {network["old_ami"]: "no Keras Fleet tags (not baked by make bake-ami)",
                      network["new_ami"]: "deregistered (or not visible to this account)"}


def test_status_shows_instances_the_load_balancer_does_not_know(fleet_clients, clients, deployed, refreshes, capsys):
    group = deployed["AutoScalingGroupName"]
    target = clients.elbv2.describe_target_health(TargetGroupArn=deployed["TargetGroupArn"])[
        "TargetHealthDescriptions"
    ][0]
    clients.elbv2.deregister_targets(TargetGroupArn=deployed["TargetGroupArn"], Targets=[target["Target"]])
    expect_latest(refreshes, group, None)

    assert status(fleet_clients) == 0

    out = capsys.readouterr().out
    assert "not registered" in next(line for line in out.splitlines() if line.startswith(target["Target"]["Id"]))
    assert "instance refresh: none yet" in out


def test_status_of_a_missing_stack_says_how_to_create_it(clients, capsys):
    assert main(["--stack-name", "nope", "status"], clients=clients) == 1

    assert "there is no stack nope in us-east-1: deploy it with `make stack`" in capsys.readouterr().err
