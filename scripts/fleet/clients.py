"""The one place AWS clients are made; tests build :class:`Clients` from moto or Stubber ones."""

from __future__ import annotations

import dataclasses
from typing import Any

import boto3
from botocore.config import Config

from fleet.errors import CREDENTIALS_HINT, FleetError

# Standard retry mode backs off on throttling, which polling a long roll can meet.
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 8}, user_agent_extra="keras-fleet")


@dataclasses.dataclass(frozen=True)
class Clients:
    """The AWS API clients the fleet commands use, all in one region."""

    region: str
    cloudformation: Any
    autoscaling: Any
    ec2: Any
    elbv2: Any


def connect(region: str | None, profile: str | None) -> Clients:
    """Open clients for ``region`` with ``profile`` (or the default credential chain).

    Raises :class:`FleetError` when no region or no credentials can be found, before
    any request is made.
    """
    session = boto3.Session(profile_name=profile or None, region_name=region or None)
    if not session.region_name:
        raise FleetError("no AWS region: set AWS_REGION (e.g. make status AWS_REGION=us-east-1)")
    if session.get_credentials() is None:
        raise FleetError(f"no AWS credentials found: {CREDENTIALS_HINT}")
    return Clients(
        region=session.region_name,
        **{
            name: session.client(name, config=CLIENT_CONFIG)
            for name in ("cloudformation", "autoscaling", "ec2", "elbv2")
        },
    )
