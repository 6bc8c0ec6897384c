"""The load balancer's health check: the one place its numbers are kept.

The defaults are the AWS target group's (deploy/aws/fleet.yaml): GET /healthz/ready
every 10 s, 5 s timeout, healthy after 3 passes in a row, unhealthy after 2 failures.
HAProxy gets them per server (dynamic servers inherit no ``default-server``). Tests
shorten only the interval, so a roll takes seconds instead of minutes.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class HealthCheck:
    """What makes an instance healthy in the load balancer's eyes."""

    path: str = "/healthz/ready"
    interval: float = 10.0  # seconds between checks (HealthCheckIntervalSeconds)
    timeout: float = 5.0  # seconds one check may take (HealthCheckTimeoutSeconds)
    healthy_threshold: int = 3  # passes in a row to enter rotation (HealthyThresholdCount)
    unhealthy_threshold: int = 2  # failures in a row to leave it (UnhealthyThresholdCount)

    def server_options(self) -> str:
        """The health-check options of one HAProxy ``server`` (or ``add server``) line."""
        return (f"check inter {_ms(self.interval)} rise {self.healthy_threshold} "
                f"fall {self.unhealthy_threshold}")

    def describe(self) -> str:
        """One line for people: what the check is and how fast it decides."""
        return (f"GET {self.path} every {self.interval:g} s (timeout {self.timeout:g} s), "
                f"healthy after {self.healthy_threshold}, unhealthy after {self.unhealthy_threshold}")

    def as_dict(self) -> dict:
        """The fields, for the fleet's state file."""
        return dataclasses.asdict(self)


def _ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"
