"""The fleet's command line: stack, roll, status, rollback, teardown. Expected failures print one line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

from botocore.exceptions import BotoCoreError, ClientError

from fleet.clients import Clients, connect
from fleet.errors import FleetError, explain
from fleet.manifest import chosen_ami
from fleet.progress import Progress
from fleet.rollback import rollback
from fleet.roll import roll
from fleet.stack import Settings, deploy
from fleet.status import status
from fleet.teardown import teardown

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "deploy" / "aws" / "fleet.yaml"
MANIFEST = REPO / "reports" / "packer-manifest.json"
CAPACITY = REPO / "reports" / "capacity.json"


def parser() -> argparse.ArgumentParser:
    """The argument parser of every fleet command."""
    top = argparse.ArgumentParser(prog="fleetctl", description="Deploy, roll and inspect Keras Fleet on AWS.")
    top.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION or the profile's)")
    top.add_argument("--profile", help="AWS profile (default: AWS_PROFILE or the default credential chain)")
    top.add_argument("--stack-name", default="keras-fleet", help="CloudFormation stack name (default: %(default)s)")
    top.add_argument(
        "--poll-seconds", type=float, default=15, help="seconds between progress checks (default: %(default)s)"
    )
    commands = top.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="create or update the stack, show its events, print its URL")
    stack.add_argument("--vpc-id", help="VPC (needed to create)")
    stack.add_argument("--subnets", help="comma-separated public subnets for the load balancer (needed to create)")
    stack.add_argument("--instance-subnets", help="comma-separated subnets for the instances (default: --subnets)")
    stack.add_argument("--ami", help="AMI to create the stack with (default: the Packer manifest's last build)")
    stack.add_argument(
        "--param",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="any other template parameter, e.g. InstanceType=c7i.xlarge (repeatable)",
    )
    stack.add_argument("--template", type=Path, default=TEMPLATE, help="CloudFormation template (default: %(default)s)")
    stack.add_argument("--manifest", type=Path, default=MANIFEST, help="Packer manifest (default: %(default)s)")
    stack.add_argument("--capacity", type=Path, default=CAPACITY, help="capacity report (default: %(default)s)")

    roll_ = commands.add_parser("roll", help="roll the fleet to an AMI with an instance refresh")
    roll_.add_argument("--ami", help="AMI to roll to (default: the Packer manifest's last build)")
    roll_.add_argument("--manifest", type=Path, default=MANIFEST, help="Packer manifest (default: %(default)s)")
    roll_.add_argument(
        "--bake-seconds",
        type=int,
        default=180,
        help="after the last replacement, watch the alarms this long before success (default: %(default)s)",
    )

    commands.add_parser("status", help="instances, their health and AMI, the last instance refresh")
    commands.add_parser("rollback", help="undo the last roll (or the one in progress)")
    teardown_ = commands.add_parser("teardown", help="delete the stack: its instances, load balancer and alarms")
    teardown_.add_argument("--confirm", metavar="STACK_NAME", help="the stack's name, to confirm the deletion")
    return top


def key_value(text: str) -> tuple[str, str]:
    """Parse ``KEY=VALUE`` for --param."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def main(
    argv: list[str] | None = None, *, clients: Clients | None = None, sleep: Callable[[float], None] = time.sleep
) -> int:
    """Run one command; return its exit code. Tests pass ``clients`` and a ``sleep`` that returns at once."""
    args = parser().parse_args(argv)
    try:
        clients = clients or connect(args.region, args.profile)
        return run(args, clients, sleep)
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (BotoCoreError, ClientError) as exc:
        print(f"error: {explain(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "\ninterrupted: what AWS started goes on; `make status` shows it, `make rollback` undoes a roll",
            file=sys.stderr,
        )
        return 130


def run(args: argparse.Namespace, clients: Clients, sleep: Callable[[float], None]) -> int:
    """Dispatch to the command's module."""
    progress = Progress(sleep=sleep, poll_seconds=args.poll_seconds)
    if args.command == "stack":
        settings = Settings(
            template=args.template,
            manifest=args.manifest,
            capacity=args.capacity,
            vpc_id=args.vpc_id,
            subnets=args.subnets,
            instance_subnets=args.instance_subnets,
            ami=args.ami,
            extra=dict(args.param),
        )
        return deploy(clients, args.stack_name, settings, progress)
    if args.command == "roll":
        ami, which = chosen_ami(args.ami, args.manifest, clients.region)
        progress.say(which)
        return roll(clients, args.stack_name, ami, bake_seconds=args.bake_seconds, progress=progress)
    if args.command == "rollback":
        return rollback(clients, args.stack_name, progress)
    if args.command == "teardown":
        return teardown(clients, args.stack_name, args.confirm, progress)
    return status(clients, args.stack_name)
