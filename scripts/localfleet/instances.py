"""The fleet's instances and its state file (``fleet.json`` in the run directory).

An instance is the VM's stack, nginx + gunicorn from the same deploy configs as the
image, started by scripts/localstack.py from its own directory. Each one listens on
its own loopback address (127.0.1.x; all of 127.0.0.0/8 is loopback on Linux) with
the same ports, as VMs each have their own address and the same port 80.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from localstack import LocalStack

from localfleet.balancer import Balancer
from localfleet.health import HealthCheck

STATE_FILE = "fleet.json"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What an instance serves: a model file and the version it reports."""

    path: str
    version: str

    def describe(self) -> str:
        """Short form for progress lines."""
        return f"{Path(self.path).name} version {self.version}"


@dataclasses.dataclass(frozen=True)
class Instance:
    """One instance: its name (HAProxy's server name), address and model."""

    name: str
    host: str
    model: ModelSpec

    @classmethod
    def from_dict(cls, data: dict) -> "Instance":
        """Read back what ``dataclasses.asdict`` wrote."""
        return cls(name=data["name"], host=data["host"], model=ModelSpec(**data["model"]))


@dataclasses.dataclass
class Fleet:
    """The fleet's settings and its current instances, kept in ``run_dir/fleet.json``.

    Settings are fixed by ``fleet-up``; a roll and ``fleet-status`` read them back, so
    they need no options of their own.
    """

    run_dir: Path
    listen: str  # HAProxy's host:port
    instance_port: int
    metrics_port: int
    subnet: str  # instances get subnet.1, subnet.2, ...
    workers: int  # gunicorn workers per instance (WEB_CONCURRENCY)
    health: HealthCheck = dataclasses.field(default_factory=HealthCheck)
    instances: list[Instance] = dataclasses.field(default_factory=list)
    launched: int = 0  # instances ever launched; names the next one

    @classmethod
    def load(cls, run_dir: Path) -> "Fleet | None":
        """The fleet kept in run_dir, or None when there is none."""
        path = run_dir / STATE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        data["run_dir"] = run_dir
        data["health"] = HealthCheck(**data["health"])
        data["instances"] = [Instance.from_dict(item) for item in data["instances"]]
        return cls(**data)

    def save(self) -> None:
        """Write the state atomically, so an interrupted command leaves a readable file."""
        data = dataclasses.asdict(self)
        data.pop("run_dir")
        temporary = self.run_dir / f".{STATE_FILE}.tmp"
        temporary.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(temporary, self.run_dir / STATE_FILE)

    def balancer(self) -> Balancer:
        """The HAProxy in front of this fleet."""
        return Balancer(self.run_dir, self.listen, self.health)

    def new_instance(self, model: ModelSpec) -> Instance:
        """Name and place a new instance (the lowest free address) and record it."""
        taken = {instance.host for instance in self.instances}
        host = next(f"{self.subnet}.{n}" for n in range(1, 255) if f"{self.subnet}.{n}" not in taken)
        self.launched += 1
        instance = Instance(name=f"i{self.launched}", host=host, model=model)
        self.instances.append(instance)
        self.save()
        return instance

    def forget(self, instance: Instance) -> None:
        """Drop a stopped instance from the state."""
        self.instances = [kept for kept in self.instances if kept.name != instance.name]
        self.save()

    def address(self, instance: Instance) -> str:
        """Where the instance's nginx listens (HAProxy's server address)."""
        return f"{instance.host}:{self.instance_port}"

    def stack(self, instance: Instance) -> LocalStack:
        """The instance's nginx + gunicorn, run from its own directory."""
        return LocalStack(
            self.run_dir / "instances" / instance.name, instance.host, self.instance_port, self.metrics_port,
            env={"MODEL_PATH": instance.model.path, "MODEL_VERSION": instance.model.version,
                 "WEB_CONCURRENCY": str(self.workers)},
        )
