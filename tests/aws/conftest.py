"""Fixtures for the AWS fleet: fake credentials, moto, a deployed stack, Stubber-backed refreshes.

No test reaches AWS: credentials are fake, profiles and instance metadata are off, and
every client is either moto's (in process) or answered by botocore's Stubber.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import boto3
import pytest

from fleet.clients import Clients
from tests.aws.fakes import REGION, RefreshStub, add_alarm_outputs, create_network, create_stack, write_manifest


@pytest.fixture(autouse=True)
def aws_env(monkeypatch, tmp_path):
    """Fake credentials and region; no profile, no config files, no instance metadata."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # moto's catalogue of public AMIs takes seconds to load; the tests register their own.
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@pytest.fixture
def moto():
    """moto's in-process AWS for the duration of one test."""
    from moto import mock_aws

    with warnings.catch_warnings():
        # moto says which template resources it skips (scaling policy, alarms); known.
        warnings.simplefilter("ignore", UserWarning)
        with mock_aws():
            yield


@pytest.fixture
def clients(moto) -> Clients:
    """Clients of moto's AWS."""
    return Clients(
        region=REGION,
        **{name: boto3.client(name, region_name=REGION) for name in ("cloudformation", "autoscaling", "ec2", "elbv2")},
    )


@pytest.fixture
def network(clients) -> dict:
    """A VPC with two subnets in two zones, and two AMIs (what Packer would have made)."""
    return create_network(clients.ec2)


@pytest.fixture
def deployed(clients, network) -> dict:
    """The fleet's stack, created in moto from deploy/aws/fleet.yaml with the first AMI."""
    return create_stack(clients.cloudformation, network)


@pytest.fixture
def fleet_clients(clients, deployed) -> Clients:
    """moto's clients, except that instance refresh calls go to a Stubber (moto lacks them).

    The stack description also carries the alarm outputs, which moto leaves out since it
    skips AWS::CloudWatch::Alarm resources.
    """
    add_alarm_outputs(clients.cloudformation)
    return Clients(
        region=REGION,
        cloudformation=clients.cloudformation,
        autoscaling=RefreshStub(clients.autoscaling),
        ec2=clients.ec2,
        elbv2=clients.elbv2,
    )


@pytest.fixture
def refreshes(fleet_clients):
    """The Stubber that answers the instance refresh calls; every answer must be used."""
    stubber = fleet_clients.autoscaling.stubber
    yield stubber
    stubber.assert_no_pending_responses()


@pytest.fixture
def manifest(tmp_path, network) -> Path:
    """A Packer manifest whose last run built the second AMI in two regions."""
    return write_manifest(tmp_path / "packer-manifest.json", network["new_ami"])
