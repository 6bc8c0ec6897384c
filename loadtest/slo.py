"""The service level objective and its verdict: thresholds, a measurement, and which ones it breaks.

Plain Python, no Locust: the locustfile measures a whole run, the capacity shape
measures one step, and both are judged here the same way.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Slo:
    """The thresholds a run must meet: latency percentiles in ms and the share of failed requests."""

    p95_ms: float
    p99_ms: float
    max_failure_ratio: float

    def as_dict(self) -> dict:
        """The thresholds under their option names, for reports."""
        return {"slo-p95-ms": self.p95_ms, "slo-p99-ms": self.p99_ms, "slo-failure-ratio": self.max_failure_ratio}


@dataclasses.dataclass(frozen=True)
class Measurement:
    """What a run (or one step of it) measured."""

    requests: int
    failures: int
    p95_ms: float
    p99_ms: float
    seconds: float

    @property
    def failure_ratio(self) -> float:
        """Failed requests / all requests (0 when there were none)."""
        return self.failures / self.requests if self.requests else 0.0

    @property
    def rps(self) -> float:
        """Requests per second over the measured time."""
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        """The measurement, with its derived rates, for reports."""
        return {
            "requests": self.requests,
            "failures": self.failures,
            "failure_ratio": round(self.failure_ratio, 5),
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "seconds": round(self.seconds, 2),
            "rps": round(self.rps, 2),
        }


@dataclasses.dataclass(frozen=True)
class Breach:
    """One threshold the measurement did not meet."""

    option: str
    what: str
    measured: str
    limit: str
    relation: str = ">"

    def __str__(self) -> str:
        return f"{self.what} {self.measured} {self.relation} {self.limit} ({self.option})"


def judge(slo: Slo, measured: Measurement) -> list[Breach]:
    """Every threshold `measured` breaks; an empty list means the SLO is met."""
    if measured.requests == 0:
        return [Breach("requests", "completed requests", "0", "none allowed: nothing was measured")]
    breaches = []
    if measured.p95_ms > slo.p95_ms:
        breaches.append(Breach("slo-p95-ms", "p95 latency", f"{measured.p95_ms:g} ms", f"{slo.p95_ms:g} ms"))
    if measured.p99_ms > slo.p99_ms:
        breaches.append(Breach("slo-p99-ms", "p99 latency", f"{measured.p99_ms:g} ms", f"{slo.p99_ms:g} ms"))
    if measured.failure_ratio > slo.max_failure_ratio:
        breaches.append(
            Breach("slo-failure-ratio", "failure ratio", f"{measured.failure_ratio:.4f}", f"{slo.max_failure_ratio:g}")
        )
    return breaches


def verdict_line(slo: Slo, measured: Measurement) -> str:
    """One line: PASSED with the measured values, or FAILED naming each breached threshold and its value."""
    breaches = judge(slo, measured)
    if breaches:
        return "SLO FAILED: " + "; ".join(str(breach) for breach in breaches)
    return (
        f"SLO PASSED: p95 latency {measured.p95_ms:g} ms <= {slo.p95_ms:g} ms, "
        f"p99 latency {measured.p99_ms:g} ms <= {slo.p99_ms:g} ms, "
        f"failure ratio {measured.failure_ratio:.4f} <= {slo.max_failure_ratio:g} "
        f"({measured.requests} requests, {measured.rps:.1f}/s)"
    )
