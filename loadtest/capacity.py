"""Locust step-load shape for ``make capacity``: the highest request rate one instance sustains within the SLO.

    locust -f loadtest/locustfile.py,loadtest/capacity.py --config loadtest/locust.conf \
        --headless --host http://127.0.0.1:8080

Load it together with locustfile.py, which supplies the users (each at
``--capacity-user-rps``). Each step holds a number of users for
``--capacity-step-seconds``, measures all but its first ``--capacity-settle-seconds``,
and is judged against the SLO (loadtest/capacity_search.py decides the next step).
When the search ends, the report goes to ``--capacity-report``
(reports/capacity.json): ``max_sustained_rps`` and the autoscaler's
``recommended_alb_request_count_per_target``. Exit code 0 when some step met the SLO.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import time

from locust import LoadTestShape, events
from locust.env import Environment
from locust.stats import StatsEntry, calculate_response_time_percentile, diff_response_time_dicts

from loadtest.capacity_search import Step, UserSearch, capacity_report, evaluate_step, summary_line
from loadtest.options import capacity_user_rps, refuse, slo_from_options
from loadtest.reports import write_json
from loadtest.slo import Measurement

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """Locust's cumulative totals at one moment; two of them bound a step's measured window."""

    at: float
    requests: int
    failures: int
    response_times: dict[int, int]

    @classmethod
    def take(cls, total: StatsEntry) -> "Snapshot":
        """Copy the totals now (the histogram keeps growing under us)."""
        return cls(time.monotonic(), total.num_requests, total.num_failures, dict(total.response_times))


def measure_between(start: Snapshot, end: Snapshot) -> Measurement:
    """What happened between two snapshots, with percentiles from Locust's own histogram."""
    requests = end.requests - start.requests
    times = diff_response_time_dicts(end.response_times, start.response_times)
    return Measurement(
        requests=requests,
        failures=end.failures - start.failures,
        p95_ms=calculate_response_time_percentile(times, requests, 0.95),
        p99_ms=calculate_response_time_percentile(times, requests, 0.99),
        seconds=end.at - start.at,
    )


@dataclasses.dataclass
class RunningStep:
    """The step under way; its clock starts once all its users run."""

    users: int
    started: float | None = None
    window_start: Snapshot | None = None


# Users started per second at a step change: Locust's own limit before it warns.
SPAWN_RATE = 100


class CapacitySearch(LoadTestShape):
    """Raise the request rate step by step until the SLO fails, then narrow it down."""

    def __init__(self):
        super().__init__()
        self.options = None
        self.slo = None
        self.user_rps = 0.0
        self.search: UserSearch | None = None
        self.current: RunningStep | None = None
        self.steps: list[Step] = []

    def configure(self, options) -> None:
        """Take the capacity options (at init, so that bad ones stop the run before it starts)."""
        self.user_rps = capacity_user_rps(options)
        if self.user_rps <= 0:
            raise ValueError("--capacity-user-rps must not be negative: a step's rate is users x this")
        if options.capacity_headroom is None or not 0 < options.capacity_headroom <= 1:
            raise ValueError("--capacity-headroom must be in (0, 1]; its default is in loadtest/locust.conf")
        if not 0 <= options.capacity_settle_seconds < options.capacity_step_seconds:
            raise ValueError("--capacity-settle-seconds must be shorter than --capacity-step-seconds")
        self.options = options
        self.slo = slo_from_options(options)
        self.search = UserSearch(
            start=math.ceil(options.capacity_start_rps / self.user_rps),
            growth=options.capacity_growth,
            refinements=options.capacity_refinements,
            max_steps=options.capacity_max_steps,
        )

    def tick(self):
        """Called by Locust about every second: (users, spawn rate) to run now, or None to stop."""
        if self.current is None:
            self.current = RunningStep(self.search.start)
        step, now = self.current, time.monotonic()
        total = self.runner.environment.stats.total
        if step.started is None:
            # Ramping to hundreds of users takes seconds, during which the rate is not the step's.
            if self.runner.user_count == step.users:
                step.started = now
        elif step.window_start is None:
            if now >= step.started + self.options.capacity_settle_seconds:
                step.window_start = Snapshot.take(total)
        elif now >= step.started + self.options.capacity_step_seconds:
            users = self._finish_step(step, Snapshot.take(total))
            if users is None:
                return None
            self.current = RunningStep(users)
        return self.current.users, SPAWN_RATE

    def _finish_step(self, step: RunningStep, end: Snapshot) -> int | None:
        """Judge the step, log it, and return the next step's users (None: the search is over)."""
        result = evaluate_step(
            step.users,
            self.user_rps,
            measure_between(step.window_start, end),
            self.slo,
            self.options.capacity_keep_up,
            self.runner.current_cpu_usage,
        )
        self.steps.append(result)
        log.info("capacity step %d: %s", len(self.steps), json.dumps(result.as_dict()))
        return self.search.next(step.users, result.passed)

    def report(self, environment: Environment) -> dict:
        """The capacity report for the steps run so far."""
        options = environment.parsed_options
        plan = environment.predict_plan
        return capacity_report(
            self.steps,
            self.slo,
            options.capacity_headroom,
            limit_found=bool(self.search and self.search.limit_found),
            context={
                "host": environment.host,
                "model": plan.signature.model,
                "instances_per_request": options.instances,
                "body_format": options.body_format,
                "user_rps": round(self.user_rps, 3),
                "step_seconds": options.capacity_step_seconds,
                "settle_seconds": options.capacity_settle_seconds,
                "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            },
        )


class CapacityReporter:
    """Writes the report when the run ends, sets the exit code, and prints the summary last."""

    def __init__(self, shape: CapacitySearch):
        self.shape = shape
        self.line = ""

    def write(self, environment: Environment, **_kwargs) -> None:
        """On quitting: write the JSON report; exit code 1 when no step met the SLO."""
        report = self.shape.report(environment)
        path = environment.parsed_options.capacity_report
        write_json(path, report)
        environment.process_exit_code = 0 if report["max_sustained_rps"] > 0 else 1
        self.line = summary_line(report, path)

    def announce(self, **_kwargs) -> None:
        """On quit, after Locust printed its tables: the summary is the last line of the output."""
        print(self.line, flush=True)


@events.init.add_listener
def _arm_reporter(environment: Environment, **_kwargs):
    if isinstance(environment.shape_class, CapacitySearch):
        try:
            environment.shape_class.configure(environment.parsed_options)
        except ValueError as exc:
            refuse(str(exc))
        reporter = CapacityReporter(environment.shape_class)
        environment.events.quitting.add_listener(reporter.write)
        environment.events.quit.add_listener(reporter.announce)
