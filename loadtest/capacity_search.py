"""The capacity search's logic: which load to try next, how a step is judged, what the report says.

Plain Python, no Locust (loadtest/capacity.py drives it from a LoadTestShape). The
load is set as a number of users that each send at a fixed rate, so a step's
offered rate is users x user rate. The search multiplies the users until a step
misses the SLO, then bisects between the last step that met it and the first that
did not. A step meets it when its latency and failures are within the SLO and the
server kept up with the offered rate: a rate the server only half serves is not
sustained, whatever the latency of what it did serve.
"""

from __future__ import annotations

import dataclasses
import math

from loadtest.slo import Breach, Measurement, Slo, judge


@dataclasses.dataclass
class UserSearch:
    """Grow the number of users geometrically until a step fails, then bisect."""

    start: int
    growth: float
    refinements: int
    max_steps: int
    best_pass: int = 0
    lowest_fail: int | None = None
    steps: int = 0
    refined: int = 0

    def __post_init__(self):
        if self.start < 1 or self.growth <= 1 or self.max_steps < 1 or self.refinements < 0:
            raise ValueError("the capacity search needs start >= 1 user, growth > 1, max steps >= 1, refinements >= 0")

    @property
    def limit_found(self) -> bool:
        """True once a step has missed the SLO: the capacity lies below it."""
        return self.lowest_fail is not None

    def next(self, users: int, passed: bool) -> int | None:
        """Record how the step with `users` went; return the users of the next step, or None when done."""
        self.steps += 1
        if passed:
            self.best_pass = max(self.best_pass, users)
        else:
            self.lowest_fail = users if self.lowest_fail is None else min(self.lowest_fail, users)
        if self.steps >= self.max_steps:
            return None
        if self.lowest_fail is None:
            return max(users + 1, math.ceil(users * self.growth))
        middle = (self.best_pass + self.lowest_fail) // 2
        if self.refined >= self.refinements or middle <= self.best_pass:
            return None
        self.refined += 1
        return middle


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the search: the load offered, what was measured, and what it missed."""

    users: int
    offered_rps: float
    measured: Measurement
    breaches: tuple[Breach, ...]
    load_generator_cpu_percent: float

    @property
    def passed(self) -> bool:
        """True when the step met the SLO at the offered rate."""
        return not self.breaches

    def as_dict(self) -> dict:
        """The step as the report lists it."""
        measured = self.measured.as_dict()
        return {
            "users": self.users,
            "offered_rps": round(self.offered_rps, 2),
            "achieved_rps": measured.pop("rps"),
            **measured,
            "load_generator_cpu_percent": round(self.load_generator_cpu_percent, 1),
            "passed": self.passed,
            "missed": [str(breach) for breach in self.breaches],
        }


def evaluate_step(users: int, user_rps: float, measured: Measurement, slo: Slo, keep_up: float, cpu_percent: float) -> Step:
    """Judge one step: the SLO's thresholds, and whether the server kept up with the offered rate."""
    offered = users * user_rps
    breaches = judge(slo, measured)
    if measured.requests and measured.rps < keep_up * offered:
        breaches.append(Breach("capacity-keep-up", "achieved rate", f"{measured.rps:.1f}/s",
                               f"{keep_up:g} x the offered {offered:g}/s", relation="<"))
    return Step(users, offered, measured, tuple(breaches), cpu_percent)


def capacity_report(steps: list[Step], slo: Slo, headroom: float, limit_found: bool, context: dict) -> dict:
    """The report: the best step that met the SLO, and the autoscaler target derived from it.

    ``recommended_alb_request_count_per_target`` is requests per target per minute,
    the unit of the ALB's ``ALBRequestCountPerTarget`` metric:
    floor(max_sustained_rps x headroom x 60).
    """
    passed = [step for step in steps if step.passed]
    best = max(passed, key=lambda step: step.measured.rps, default=None)
    max_rps = round(best.measured.rps, 2) if best else 0.0
    return {
        "max_sustained_rps": max_rps,
        "p95_ms": best.measured.p95_ms if best else None,
        "p99_ms": best.measured.p99_ms if best else None,
        "headroom": headroom,
        "recommended_alb_request_count_per_target": math.floor(max_rps * headroom * 60),
        "limit_found": limit_found,
        "slo": slo.as_dict(),
        **context,
        "steps": [step.as_dict() for step in steps],
    }


def summary_line(report: dict, path: str) -> str:
    """The last line of a capacity run: the capacity and the autoscaler target, or why there is none."""
    if not report["steps"]:
        return f"CAPACITY NOT FOUND: the run ended before its first step did ({path})"
    if not report["max_sustained_rps"]:
        return f"CAPACITY NOT FOUND: no step met the SLO ({path})"
    line = (
        f"CAPACITY: {report['max_sustained_rps']:g} requests/s sustained within the SLO "
        f"(p95 {report['p95_ms']:g} ms, p99 {report['p99_ms']:g} ms); "
        f"ALBRequestCountPerTarget {report['recommended_alb_request_count_per_target']} per minute "
        f"at headroom {report['headroom']:g} ({path})"
    )
    if not report["limit_found"]:
        line += "; the SLO never failed, so this is a lower bound: raise --capacity-max-steps"
    return line
