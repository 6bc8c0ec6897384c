"""The local fleet's subcommands: up, status, roll, down (`make fleet-up`, ...)."""

from __future__ import annotations

import argparse
import concurrent.futures
import fcntl
import sys
import urllib.error
import urllib.request
from pathlib import Path

from localstack import REPO

from localfleet.health import HealthCheck
from localfleet.instances import STATE_FILE, Fleet, ModelSpec
from localfleet.roll import LaunchFailed, RollAborted, await_healthy, progress, roll, start
from localfleet.runtime import BalancerError

# Seconds a new instance has to become healthy in HAProxy. It stands for the group's
# health check grace period (deploy/aws/fleet.yaml): boot, model load and warm-up fit
# well inside it.
WARMUP = 180
# Seconds a drained instance gets to finish its requests: the target group's
# deregistration delay.
DRAIN_TIMEOUT = 70


def up(args: argparse.Namespace) -> int:
    """Start HAProxy and N instances; return once all are healthy in HAProxy."""
    fleet = Fleet.load(args.run_dir)
    if fleet and fleet.balancer().pid():
        print(f"already up on {fleet.balancer().url} (make fleet-down stops it)")
        return status(args)
    if fleet:  # left by a fleet whose HAProxy is gone: stop whatever still runs
        stop_all(fleet)
    model = model_spec(args)
    fleet = Fleet(args.run_dir, f"{args.host}:{args.port}", args.instance_port, args.metrics_port, args.subnet,
                  args.workers, HealthCheck(interval=args.check_interval))
    args.run_dir.mkdir(parents=True, exist_ok=True)
    fleet.save()
    balancer = fleet.balancer()
    try:
        balancer.start()
        progress(f"HAProxy listens on {balancer.url}; health check {fleet.health.describe()}")
        launches = []
        for _ in range(args.instances):
            launches.append(start(fleet, balancer, model, args.warmup))
            progress(f"launched {launches[-1].instance.name} on {fleet.address(launches[-1].instance)} "
                     f"({model.describe()})")
        for launch in launches:
            await_healthy(fleet, balancer, launch)
    except (LaunchFailed, BalancerError, KeyboardInterrupt) as exc:
        print(f"error: fleet-up failed: {exc or 'interrupted'}; stopping what it started", file=sys.stderr)
        stop_all(fleet)
        return 1
    progress(f"fleet up: {len(fleet.instances)} instances behind {balancer.url}")
    return status(args)


def status(args: argparse.Namespace) -> int:
    """Print HAProxy and every instance with its model version and health; 0 when all are UP."""
    fleet = Fleet.load(args.run_dir)
    if not fleet:
        print(f"no local fleet in {args.run_dir} (make fleet-up starts one)")
        return 1
    balancer = fleet.balancer()
    pid = balancer.pid()
    if not pid:
        print(f"HAProxy is not running (fleet state in {args.run_dir / STATE_FILE}; make fleet-down cleans up)")
        return 1
    servers = balancer.api.servers()
    print(f"HAProxy on {balancer.url} (pid {pid}); health check {fleet.health.describe()}")
    rows = [("instance", "address", "model", "version", "haproxy", "last check", "in flight", "served")]
    for instance in fleet.instances:
        server = servers.get(instance.name)
        rows.append((instance.name, fleet.address(instance), Path(instance.model.path).name,
                     reported_version(fleet, instance.host) or "-", server.status if server else "absent",
                     server.check if server else "-", str(server.sessions if server else 0),
                     str(server.served if server else 0)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    healthy = all(servers.get(instance.name) and servers[instance.name].healthy for instance in fleet.instances)
    return 0 if fleet.instances and healthy else 1


def reported_version(fleet: Fleet, host: str) -> str | None:
    """The model version the instance itself reports (X-Model-Version), or None if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host}:{fleet.instance_port}/healthz/live", timeout=2) as response:
            return response.headers.get("X-Model-Version")
    except (urllib.error.URLError, OSError):
        return None


def roll_command(args: argparse.Namespace) -> int:
    """Roll the running fleet to a model file or version, one instance at a time."""
    fleet = Fleet.load(args.run_dir)
    if not fleet or not fleet.balancer().pid():
        print("error: no local fleet is up (make fleet-up starts one)", file=sys.stderr)
        return 1
    model = model_spec(args)
    with open(args.run_dir / ".roll.lock", "w") as lock:
        # One roll at a time, as AWS allows one instance refresh per group.
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("error: a roll of this fleet is already in progress", file=sys.stderr)
            return 1
        try:
            roll(fleet, fleet.balancer(), model, args.warmup, args.drain_timeout)
        except RollAborted as exc:
            status(args)
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            status(args)
            print("error: roll interrupted after the step it was in; the fleet serves what is listed above, "
                  "and the same roll-local again finishes the roll", file=sys.stderr)
            return 130
    return status(args)


def down(args: argparse.Namespace) -> int:
    """Stop HAProxy (letting its requests finish), then every instance gracefully."""
    fleet = Fleet.load(args.run_dir)
    if not fleet:
        print("not running")
        return 0
    stop_all(fleet)
    print("down")
    return 0


def stop_all(fleet: Fleet) -> None:
    """HAProxy first, so no request reaches an instance that is stopping; then the instances,
    side by side (each stop waits seconds for its servers to finish)."""
    fleet.balancer().stop()
    stacks = [fleet.stack(instance) for instance in fleet.instances]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(stacks))) as pool:
        list(pool.map(lambda stack: stack.stop(stack.running_pids()), stacks))
    (fleet.run_dir / STATE_FILE).unlink(missing_ok=True)


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The model of the command line, its path made absolute; fails fast if the file is missing."""
    path = Path(args.model_path).resolve()
    if not path.is_file():
        raise SystemExit(f"error: MODEL_PATH {str(path)!r} is not a file")
    return ModelSpec(str(path), args.model_version)


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per make target."""
    main_parser = argparse.ArgumentParser(prog="localfleetctl.py", description=__doc__)
    main_parser.add_argument("--run-dir", type=Path, default=REPO / "run" / "fleet",
                             help="HAProxy's and the instances' configs, sockets, pids, logs and fleet.json")
    commands = main_parser.add_subparsers(dest="command", required=True)

    up_parser = commands.add_parser("up", help="start HAProxy and N instances")
    up_parser.add_argument("-n", "--instances", type=int, default=3, help="how many instances")
    up_parser.add_argument("--host", default="127.0.0.1", help="address HAProxy listens on")
    up_parser.add_argument("--port", type=int, default=8000, help="port HAProxy listens on")
    up_parser.add_argument("--instance-port", type=int, default=8080, help="port of every instance's nginx")
    up_parser.add_argument("--metrics-port", type=int, default=9101, help="port of every instance's /metrics")
    up_parser.add_argument("--subnet", default="127.0.1", help="instances listen on SUBNET.1, SUBNET.2, ...")
    up_parser.add_argument("--workers", type=int, default=1,
                           help="gunicorn workers per instance (the instances share this machine's cores)")
    up_parser.add_argument("--check-interval", type=float, default=HealthCheck().interval,
                           help="seconds between health checks (default: the AWS target group's)")
    add_model_options(up_parser, version_default="1")
    up_parser.set_defaults(handler=up)

    status_parser = commands.add_parser("status", help="HAProxy and each instance: model version, health")
    status_parser.set_defaults(handler=status)

    roll_parser = commands.add_parser("roll", help="replace every instance, launch before terminate")
    add_model_options(roll_parser, version_default=None)
    roll_parser.add_argument("--drain-timeout", type=float, default=DRAIN_TIMEOUT,
                             help="seconds a drained instance gets to finish its requests")
    roll_parser.set_defaults(handler=roll_command)

    down_parser = commands.add_parser("down", help="stop HAProxy, then every instance, gracefully")
    down_parser.set_defaults(handler=down)
    return main_parser


def add_model_options(command: argparse.ArgumentParser, version_default: str | None) -> None:
    """The model to serve and the warm-up a new instance gets."""
    command.add_argument("--model-path", default=str(REPO / "models" / "digits.keras"), help="Keras 3 .keras file")
    command.add_argument("--model-version", default=version_default, required=version_default is None,
                         help="version label the instances report (X-Model-Version)")
    command.add_argument("--warmup", type=float, default=WARMUP,
                         help="seconds a new instance has to become healthy in HAProxy")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    args = parser().parse_args(argv)
    args.run_dir = args.run_dir.resolve()
    try:
        return args.handler(args)
    except BalancerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
