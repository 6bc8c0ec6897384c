"""Launch before terminate, one instance at a time: the rehearsal of an AWS instance refresh.

The refresh it stands for keeps 100% of the fleet healthy (MinHealthyPercentage 100):
a new instance must pass the load balancer's health checks before an old one leaves,
and the old one leaves by draining (the target group's deregistration), then a graceful
stop (nginx finishes its requests, gunicorn's workers theirs). A new instance that is
not healthy within the warm-up time aborts the roll, and the roll is undone the same
way it was done: every instance already replaced is replaced back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import time
from collections.abc import Iterator

from localstack import LocalStack, StackError

from localfleet.balancer import Balancer
from localfleet.instances import Fleet, Instance, ModelSpec

# Seconds a drained instance must show no request in flight, twice in a row, before it
# stops: a request HAProxy has just picked it for is counted by then.
SETTLE = 0.3


class LaunchFailed(Exception):
    """A new instance did not become healthy in the load balancer; the message says why."""


class RollAborted(Exception):
    """The roll stopped and was rolled back (or could not be); the message says why."""


def progress(message: str) -> None:
    """One line of progress, shown at once (a roll takes minutes)."""
    print(message, flush=True)


@dataclasses.dataclass
class Launch:
    """A new instance whose servers are starting, registered with HAProxy but not in rotation."""

    instance: Instance
    stack: LocalStack
    processes: list[subprocess.Popen]
    started: float  # time.monotonic() at its start
    deadline: float  # time.monotonic() by which it must be healthy


def start(fleet: Fleet, balancer: Balancer, model: ModelSpec, warmup: float) -> Launch:
    """Start a new instance's nginx + gunicorn and add it to HAProxy, down until its checks pass."""
    instance = fleet.new_instance(model)
    stack = fleet.stack(instance)
    started = time.monotonic()
    try:
        processes = stack.start(foreground=False)
    except StackError as exc:
        fleet.forget(instance)
        raise LaunchFailed(f"{instance.name} could not start: {exc}") from None
    try:
        balancer.api.add(instance.name, fleet.address(instance), fleet.health)
    except BaseException:
        stack.stop(stack.running_pids())
        fleet.forget(instance)
        raise
    return Launch(instance, stack, processes, started, started + warmup)


def await_healthy(fleet: Fleet, balancer: Balancer, launch: Launch, prefix: str = "") -> None:
    """Wait until HAProxy reports the new instance UP; raise LaunchFailed if it does not in time.

    Fails at once when nginx or gunicorn exits (a model that cannot load makes
    gunicorn's master exit), with the end of the instance's logs.
    """
    name = launch.instance.name
    try:
        launch.stack.wait_ready(launch.processes, max(0.0, launch.deadline - time.monotonic()))
    except StackError as exc:
        summary, _, log_tail = str(exc).partition("\n")
        progress(log_tail)
        if launch.processes[0].poll() is not None:
            summary += f": {boot_error(launch.stack)}"
        raise LaunchFailed(f"{name} did not get ready: {summary} (logs in {launch.stack.logs})") from None
    health = fleet.health
    progress(f"{prefix}{name} answers ready ({time.monotonic() - launch.started:.1f} s after its start); "
             f"waiting for HAProxy's checks ({health.healthy_threshold} passes, {health.interval:g} s apart)")
    while True:
        server = balancer.api.servers().get(name)
        if server and server.healthy:
            progress(f"{prefix}{name} is healthy in HAProxy and in rotation "
                     f"({time.monotonic() - launch.started:.1f} s after its start)")
            return
        for process, what in zip(launch.processes, ("gunicorn", "nginx")):
            if process.poll() is not None:
                raise LaunchFailed(f"{name}: {what} exited with code {process.returncode}")
        if time.monotonic() > launch.deadline:
            check = server.check if server else "not registered"
            raise LaunchFailed(f"{name} was not healthy in HAProxy within the warm-up time (last check: {check})")
        time.sleep(0.2)


def boot_error(stack: LocalStack) -> str:
    """Why gunicorn exited: its master prints a worker's boot exception last on stderr."""
    log = stack.logs / "stderr.log"
    lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    return lines[-1] if lines else "no error on stderr"


def launch(fleet: Fleet, balancer: Balancer, model: ModelSpec, warmup: float, prefix: str = "") -> Instance:
    """Start a new instance and wait until it is in rotation; on any failure remove it again."""
    new = start(fleet, balancer, model, warmup)
    progress(f"{prefix}launched {new.instance.name} on {fleet.address(new.instance)} ({model.describe()})")
    try:
        await_healthy(fleet, balancer, new, prefix)
    except BaseException:  # Ctrl-C too: a half-started instance never stays behind
        progress(f"{prefix}removing {new.instance.name} from HAProxy and stopping it")
        terminate(fleet, balancer, new.instance)
        raise
    return new.instance


def retire(fleet: Fleet, balancer: Balancer, instance: Instance, drain_timeout: float, prefix: str = "") -> None:
    """Drain an instance in HAProxy, wait for its requests in flight, then stop it gracefully."""
    balancer.api.drain(instance.name)
    started = time.monotonic()
    server = balancer.api.servers().get(instance.name)
    progress(f"{prefix}draining {instance.name} ({server.sessions if server else 0} requests in flight)")
    try:
        idle = wait_idle(balancer, instance.name, drain_timeout)
    except KeyboardInterrupt:
        # Ctrl-C ends the roll after this step, not inside it: a drained instance left
        # running would take no traffic yet count as one of the fleet's instances.
        progress(f"{prefix}interrupted: stopping {instance.name} now, as a drain timeout would "
                 "(nginx and gunicorn still let its requests finish), then ending the roll")
        with contextlib.suppress(KeyboardInterrupt):  # another Ctrl-C asks for what is under way
            terminate(fleet, balancer, instance)
        progress(f"{prefix}{instance.name} stopped and removed")
        raise
    if idle:
        progress(f"{prefix}{instance.name} drained in {time.monotonic() - started:.1f} s; stopping it "
                 "(nginx finishes, then gunicorn)")
    else:
        progress(f"{prefix}{instance.name} still has requests after {drain_timeout:g} s; stopping it anyway "
                 "(nginx and gunicorn still let them finish)")
    terminate(fleet, balancer, instance)
    progress(f"{prefix}{instance.name} stopped and removed")


def wait_idle(balancer: Balancer, name: str, timeout: float) -> bool:
    """True once the server shows no request in flight twice in a row, SETTLE apart."""
    deadline = time.monotonic() + timeout
    idle_reads = 0
    while time.monotonic() < deadline:
        server = balancer.api.servers().get(name)
        idle_reads = idle_reads + 1 if server is None or server.sessions == 0 else 0
        if idle_reads == 2:
            return True
        time.sleep(SETTLE)
    return False


def terminate(fleet: Fleet, balancer: Balancer, instance: Instance) -> None:
    """Take the instance out of HAProxy, stop its servers gracefully, forget it.

    Once begun it runs to the end (seconds, bounded by the stop's grace): a Ctrl-C
    meanwhile is raised after it, so no instance is left half removed.
    """
    with interrupts_deferred():
        balancer.api.maintenance(instance.name)
        stack = fleet.stack(instance)
        stack.stop(stack.running_pids())
        balancer.api.delete(instance.name)
        fleet.forget(instance)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT back while the block runs, and raise KeyboardInterrupt after it if one came."""
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def replace(fleet: Fleet, balancer: Balancer, old: Instance, model: ModelSpec, warmup: float,
            drain_timeout: float, prefix: str) -> Instance:
    """One step of the refresh: a new instance in rotation first, then the old one out."""
    new = launch(fleet, balancer, model, warmup, prefix)
    retire(fleet, balancer, old, drain_timeout, prefix)
    return new


def roll(fleet: Fleet, balancer: Balancer, model: ModelSpec, warmup: float, drain_timeout: float) -> None:
    """Replace every instance not already serving ``model``; on a failed launch, roll back and raise."""
    todo = [instance for instance in fleet.instances if instance.model != model]
    skipped = len(fleet.instances) - len(todo)
    progress(f"roll: {len(todo)} of {len(fleet.instances)} instances to {model.describe()}, one at a time, "
             f"launch before terminate (warm-up {warmup:g} s)" + (f"; {skipped} already serve it" if skipped else ""))
    replaced: list[tuple[Instance, Instance]] = []  # (old, new), for the rollback
    for step, old in enumerate(todo, 1):
        prefix = f"[{step}/{len(todo)}] "
        try:
            new = replace(fleet, balancer, old, model, warmup, drain_timeout, prefix)
        except LaunchFailed as exc:
            progress(f"{prefix}failed: {exc}")
            try:
                rollback(fleet, balancer, replaced, warmup, drain_timeout)
            except RollAborted as undone:
                raise RollAborted(f"roll aborted: {exc}; {undone}") from None
            raise RollAborted(f"roll aborted and rolled back: {exc}") from None
        replaced.append((old, new))
    progress(f"roll complete: {len(fleet.instances)} instances serve {model.describe()}")


def rollback(fleet: Fleet, balancer: Balancer, replaced: list[tuple[Instance, Instance]], warmup: float,
             drain_timeout: float) -> None:
    """Undo the steps done so far, newest first, the same way: launch the old model, retire the new."""
    untouched = ", ".join(instance.name for instance in fleet.instances) or "none"
    progress(f"rollback: the new instance is gone; {len(replaced)} replaced instance(s) to restore; "
             f"serving meanwhile: {untouched}")
    for step, (old, new) in enumerate(reversed(replaced), 1):
        prefix = f"[rollback {step}/{len(replaced)}] "
        try:
            replace(fleet, balancer, new, old.model, warmup, drain_timeout, prefix)
        except LaunchFailed as exc:
            raise RollAborted(f"rollback incomplete ({exc}); the fleet serves what fleet-status shows") from None
    progress("rollback complete: the fleet serves what it served before the roll")
