"""The command line and the make targets: clear one-line errors, never a traceback, and no AWS call."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.stub import Stubber

from fleet.cli import main
from fleet.clients import Clients
from fleet.errors import explain
from tests.aws.fakes import REGION
from tests.stack import REPO


@pytest.fixture
def no_credentials(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name)


def test_missing_credentials_are_named_without_a_request(no_credentials, capsys):
    assert main(["--region", REGION, "status"]) == 1

    err = capsys.readouterr().err
    assert err.startswith("error: no AWS credentials found: set AWS_PROFILE")
    assert "AWS_ACCESS_KEY_ID" in err


def test_an_unknown_profile_is_named(capsys):
    assert main(["--region", REGION, "--profile", "prod", "roll"]) == 1

    assert "The config profile (prod) could not be found" in capsys.readouterr().err


def test_missing_region_is_named(monkeypatch, capsys):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    assert main(["rollback"]) == 1

    assert "no AWS region: set AWS_REGION" in capsys.readouterr().err


def test_rejected_credentials_say_so(capsys):
    client = boto3.client("cloudformation", region_name=REGION)
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "describe_stacks",
            service_error_code="ExpiredToken",
            service_message="The security token included in the request is expired",
        )
        code = main(["status"], clients=Clients(REGION, client, None, None, None))

    assert code == 1
    err = capsys.readouterr().err
    assert "AWS rejected the credentials (ExpiredToken: The security token included in the request is expired)" in err


def test_other_aws_errors_name_the_call():
    error = ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "StartInstanceRefresh")
    assert str(explain(error)) == "AWS refused StartInstanceRefresh: AccessDenied: not allowed"
    assert str(explain(EndpointConnectionError(endpoint_url="https://x"))).startswith("cannot reach AWS")


def clean_env(**changes) -> dict:
    """The test's environment without make's own variables, with ``changes``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def test_the_real_command_prints_one_line_without_credentials(no_credentials):
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fleetctl.py"), "--region", REGION, "status"],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(),
    )

    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "no AWS credentials found" in result.stderr


def make(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(**env),
    )


@pytest.mark.parametrize("target", ["stack", "roll", "status", "rollback"])
def test_fleet_targets_fail_fast_naming_a_missing_region(target):
    result = make(target, AWS_REGION=None, AWS_DEFAULT_REGION=None)

    assert result.returncode != 0
    assert f"AWS_REGION is not set: name the fleet's region, e.g. make {target} AWS_REGION=us-east-1" in result.stderr


def test_make_passes_region_stack_profile_and_ami():
    result = make(
        "-n", "roll", "AWS_REGION=eu-west-1", "STACK_NAME=blue", "AWS_PROFILE=ops", "AMI=ami-0123456789abcdef0"
    )

    assert (
        "scripts/fleetctl.py --region eu-west-1 --stack-name blue --profile ops roll --ami ami-0123456789abcdef0"
        " --manifest reports/packer-manifest.json" in result.stdout
    )


@pytest.mark.parametrize("target", ["stack", "roll"])
def test_make_reads_the_ami_from_the_manifest_bake_ami_wrote(target):
    result = make("-n", target, "AWS_REGION=us-east-1", "MANIFEST=build/blue-manifest.json")

    assert "--manifest build/blue-manifest.json" in " ".join(result.stdout.replace("\\\n", " ").split())


def test_make_stack_passes_network_and_extra_parameters():
    result = make(
        "-n",
        "stack",
        "AWS_REGION=us-east-1",
        "VPC_ID=vpc-1",
        "SUBNETS=subnet-a,subnet-b",
        "STACK_PARAMS=InstanceType=c7i.xlarge MaxSize=10",
    )

    command = " ".join(result.stdout.replace("\\\n", " ").split())  # recipe lines joined
    assert (
        "stack --vpc-id vpc-1 --subnets subnet-a,subnet-b --manifest reports/packer-manifest.json"
        " --param InstanceType=c7i.xlarge --param MaxSize=10" in command
    )
