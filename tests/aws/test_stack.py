"""`make stack` against moto: create with the manifest's AMI and the measured capacity, update in place.

Resource-level stack events (which moto does not write) come from a Stubber sequence.
"""

from __future__ import annotations

import datetime
import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from fleet.cli import main
from fleet.clients import Clients
from tests.aws.fakes import NO_WAIT, REGION, STACK, add_rolled_version, move_group


def stack(clients, *args):
    return main(["--stack-name", STACK, "stack", *args], clients=clients, **NO_WAIT)


def parameters(clients) -> dict[str, str]:
    described = clients.cloudformation.describe_stacks(StackName=STACK)["Stacks"][0]
    return {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}


def first_deploy(network: dict, manifest, capacity) -> list[str]:
    """The arguments of a first `make stack`: network, Packer manifest, capacity report."""
    return [
        "--vpc-id",
        network["vpc"],
        "--subnets",
        network["subnets"],
        "--manifest",
        str(manifest),
        "--capacity",
        str(capacity),
    ]


@pytest.fixture
def capacity(tmp_path):
    path = tmp_path / "capacity.json"
    path.write_text(
        json.dumps(
            {
                "max_sustained_rps": 52.5,
                "p95_ms": 80,
                "p99_ms": 140,
                "headroom": 0.25,
                "recommended_alb_request_count_per_target": 2400,
            }
        )
    )
    return path


def test_first_deploy_uses_the_manifest_ami_and_the_measured_capacity(clients, network, manifest, capacity, capsys):
    code = stack(clients, *first_deploy(network, manifest, capacity))

    assert code == 0
    sent = parameters(clients)
    assert sent["ImageId"] == network["new_ami"]
    assert sent["TargetRequestsPerInstance"] == "2400"
    assert sent["VpcId"] == network["vpc"]
    # moto shows list parameters as Python lists; the instance subnets default to the balancer's.
    assert sent["InstanceSubnetIds"] == sent["LoadBalancerSubnetIds"]
    out = capsys.readouterr().out
    assert f"creating stack {STACK} in {REGION}" in out
    assert f"target: 2400 requests per instance per minute (from {capacity})" in out
    assert f"AMI: {network['new_ami']} (the last build in {manifest})" in out
    assert "CREATE_COMPLETE" in out
    url = next(line for line in out.splitlines() if line.startswith("URL: "))
    assert url.startswith("URL: http://") and url.endswith(".elb.amazonaws.com")


def test_first_deploy_without_a_capacity_report_keeps_the_template_default(clients, network, manifest, tmp_path):
    assert stack(clients, *first_deploy(network, manifest, tmp_path / "none.json")) == 0

    assert parameters(clients).get("TargetRequestsPerInstance", "3000") == "3000"


def test_a_target_given_outright_wins_over_the_capacity_report_unread(clients, network, manifest, tmp_path):
    report = tmp_path / "capacity.json"
    report.write_text('{"recommended_alb_request_count_per_target": 0}')  # no step met the SLO

    assert stack(clients, *first_deploy(network, manifest, report), "--param", "TargetRequestsPerInstance=1200") == 0
    assert parameters(clients)["TargetRequestsPerInstance"] == "1200"


def test_first_deploy_names_the_variables_it_needs(clients, network, manifest, tmp_path, capsys):
    assert stack(clients, "--manifest", str(manifest), "--capacity", str(tmp_path / "none.json")) == 1

    err = capsys.readouterr().err
    assert "creating the stack needs VPC_ID and SUBNETS" in err
    assert "Traceback" not in err


def test_update_keeps_the_ami_the_last_roll_left_and_the_other_parameters(clients, deployed, network, tmp_path, capsys):
    group, template = deployed["AutoScalingGroupName"], deployed["LaunchTemplateId"]
    rolled = add_rolled_version(clients.ec2, template, network["new_ami"])
    move_group(clients.autoscaling, clients.ec2, group, template, group_version=rolled, instance_version=rolled)
    before = parameters(clients)

    code = stack(
        clients,
        "--param",
        "InstanceType=c7i.xlarge",
        "--ami",
        "ami-0123456789abcdef0",
        "--capacity",
        str(tmp_path / "none.json"),
    )

    assert code == 0
    after = parameters(clients)
    assert after["ImageId"] == network["new_ami"]  # the fleet's, not the stack's old one nor --ami
    assert after["InstanceType"] == "c7i.xlarge"
    assert {k: v for k, v in after.items() if k not in ("ImageId", "InstanceType")} == {
        k: v for k, v in before.items() if k not in ("ImageId", "InstanceType")
    }
    out = capsys.readouterr().out
    assert f"note: the fleet keeps {network['new_ami']}; `make roll AMI=ami-0123456789abcdef0`" in out
    assert "UPDATE_COMPLETE" in out


def test_update_with_nothing_to_change_says_so(clients, deployed, tmp_path, capsys):
    assert stack(clients, "--capacity", str(tmp_path / "none.json")) == 0

    out = capsys.readouterr().out
    assert f"stack {STACK} is up to date" in out
    assert f"URL: {deployed['Url']}" in out


def stubbed_cloudformation():
    client = boto3.client("cloudformation", region_name=REGION)
    return client, Stubber(client)


def only(cloudformation) -> Clients:
    """Clients whose CloudFormation is stubbed; the others must not be called."""
    return Clients(region=REGION, cloudformation=cloudformation, autoscaling=None, ec2=None, elbv2=None)


STACK_ID = f"arn:aws:cloudformation:{REGION}:123456789012:stack/{STACK}/4f3ab0e0-0000-4000-8000-000000000001"
T0 = datetime.datetime(2026, 1, 5, 10, 0, tzinfo=datetime.timezone.utc)


def described(status: str) -> dict:
    return {"Stacks": [{"StackId": STACK_ID, "StackName": STACK, "CreationTime": T0, "StackStatus": status}]}


def event(n: int, resource: str, kind: str, status: str, reason: str | None = None) -> dict:
    item = {
        "StackId": STACK_ID,
        "EventId": f"event-{n}",
        "StackName": STACK,
        "LogicalResourceId": resource,
        "ResourceType": kind,
        "ResourceStatus": status,
        "Timestamp": T0 + datetime.timedelta(seconds=10 * n),
    }
    if reason:
        item["ResourceStatusReason"] = reason
    return item


def test_a_failed_create_shows_its_events_and_the_failure_reason(network, tmp_path, capsys):
    client, stubber = stubbed_cloudformation()
    stubber.add_client_error(
        "describe_stacks",
        service_error_code="ValidationError",
        service_message=f"Stack with id {STACK} does not exist",
        expected_params={"StackName": STACK},
    )
    stubber.add_response(
        "create_stack",
        {"StackId": STACK_ID},
        expected_params={
            "StackName": STACK,
            "TemplateBody": ANY,
            "Capabilities": ["CAPABILITY_IAM"],
            "Parameters": ANY,
            "Tags": [{"Key": "project", "Value": "keras-fleet"}],
        },
    )
    stubber.add_response("describe_stacks", described("CREATE_IN_PROGRESS"), {"StackName": STACK_ID})
    stubber.add_response(
        "describe_stack_events",
        {
            "StackEvents": [
                event(2, "LoadBalancer", "AWS::ElasticLoadBalancingV2::LoadBalancer", "CREATE_IN_PROGRESS"),
                event(1, STACK, "AWS::CloudFormation::Stack", "CREATE_IN_PROGRESS", "User Initiated"),
            ]
        },
        {"StackName": STACK_ID},
    )
    stubber.add_response("describe_stacks", described("ROLLBACK_COMPLETE"), {"StackName": STACK_ID})
    reason = "At least two subnets in two different Availability Zones must be specified"
    stubber.add_response(
        "describe_stack_events",
        {
            "StackEvents": [
                event(4, STACK, "AWS::CloudFormation::Stack", "ROLLBACK_COMPLETE"),
                event(3, "LoadBalancer", "AWS::ElasticLoadBalancingV2::LoadBalancer", "CREATE_FAILED", reason),
                event(2, "LoadBalancer", "AWS::ElasticLoadBalancingV2::LoadBalancer", "CREATE_IN_PROGRESS"),
            ]
        },
        {"StackName": STACK_ID},
    )

    with stubber:
        code = stack(
            only(client),
            "--vpc-id",
            network["vpc"],
            "--subnets",
            network["subnets"],
            "--ami",
            network["new_ami"],
            "--capacity",
            str(tmp_path / "none.json"),
        )

    assert code == 1
    stubber.assert_no_pending_responses()
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert any(
        "CREATE_IN_PROGRESS" in line and "LoadBalancer (AWS::ElasticLoadBalancingV2::LoadBalancer)" in line
        for line in lines
    )
    assert (
        sum("LoadBalancer (AWS::ElasticLoadBalancingV2::LoadBalancer)" in line for line in lines) == 2
    )  # each event once
    assert f"stack {STACK} ended ROLLBACK_COMPLETE: LoadBalancer: {reason}" in captured.err
    assert f"Delete it (`make teardown CONFIRM={STACK}`) and run `make stack` again" in captured.err


@pytest.mark.parametrize(
    "status, advice",
    [
        ("UPDATE_IN_PROGRESS", "is busy"),
        ("ROLLBACK_COMPLETE", f"can only be deleted: `make teardown CONFIRM={STACK}`"),
        ("UPDATE_ROLLBACK_FAILED", "continue-update-rollback"),
    ],
)
def test_a_stack_that_cannot_be_updated_says_what_to_do(status, advice, capsys):
    client, stubber = stubbed_cloudformation()
    stubber.add_response("describe_stacks", described(status), {"StackName": STACK})

    with stubber:
        assert stack(only(client)) == 1

    assert advice in capsys.readouterr().err
