"""Locust load test of a served Keras model, judged against the SLO.

    locust -f loadtest/locustfile.py --config loadtest/locust.conf --headless \
        --host http://127.0.0.1:8080 -u 10 -r 10 -t 30s

Before the run the model's metadata is read once and a pool of valid random bodies
is drawn from it (loadtest/payloads.py). Each user posts them to the predict
endpoint and checks every answer (loadtest/answers.py): a 200 with the wrong
content is a failure. When the run ends the whole run is judged against the SLO
(loadtest/slo.py): the exit code is the verdict and the last line says why.
``make loadtest`` runs this; ``make capacity`` adds loadtest/capacity.py's shape.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Callable, Iterator

from locust import FastHttpUser, constant, constant_throughput, events, task
from locust.env import Environment

from loadtest.answers import WrongAnswer, check_predictions
from loadtest.metadata import MetadataError, ModelSignature, fetch_signature
from loadtest.options import add_arguments, capacity_user_rps, payload_settings_from_options, refuse, slo_from_options
from loadtest.payloads import Body, build_bodies
from loadtest.reports import write_json
from loadtest.slo import Measurement, Slo, judge, verdict_line

log = logging.getLogger(__name__)


@dataclasses.dataclass
class PredictPlan:
    """What every user of this process sends and how it checks the answers."""

    signature: ModelSignature
    bodies: Iterator[Body]
    pacing: Callable


@events.init_command_line_parser.add_listener
def _add_options(parser, **_kwargs):
    add_arguments(parser)


@events.init.add_listener
def _prepare(environment: Environment, **_kwargs):
    """Read the model's signature, draw the bodies, and arm the SLO gate, once per process."""
    options = environment.parsed_options
    if not environment.host:
        refuse("no host: pass --host (make loadtest HOST=...)")
    try:
        signature = fetch_signature(environment.host, options.model_name)
        bodies = build_bodies(signature, payload_settings_from_options(options), options.payload_pool)
    except (MetadataError, ValueError) as exc:
        refuse(str(exc))
    # A capacity run sets the rate through the number of users, so each user's rate is fixed.
    user_rps = capacity_user_rps(options) if environment.shape_class else options.user_rps
    # Users are the one place Locust hands the environment to; the plan travels on it.
    environment.predict_plan = PredictPlan(
        signature=signature,
        bodies=itertools.cycle(bodies),
        pacing=constant_throughput(user_rps) if user_rps > 0 else constant(0),
    )
    log.info("load testing %r at %s: %d instance(s) per request, %s bodies", signature.model,
             environment.host, options.instances, options.body_format)
    if not environment.shape_class:
        # A capacity run judges each step itself (loadtest/capacity.py), not the whole run.
        gate = SloGate(slo_from_options(options), options.slo_report)
        environment.events.quitting.add_listener(gate.judge)
        environment.events.quit.add_listener(gate.announce)


class SloGate:
    """Judges the whole run when it ends: sets the exit code, writes the verdict, prints it last."""

    def __init__(self, slo: Slo, report_path: str):
        self.slo = slo
        self.report_path = report_path
        self.line = ""

    def judge(self, environment: Environment, **_kwargs) -> None:
        """On quitting: measure the run and set the process exit code (1 when the SLO is missed)."""
        total = environment.stats.total
        measured = Measurement(
            requests=total.num_requests,
            failures=total.num_failures,
            p95_ms=total.get_response_time_percentile(0.95) or 0,
            p99_ms=total.get_response_time_percentile(0.99) or 0,
            seconds=max(0.0, total.last_request_timestamp - total.start_time) if total.num_requests else 0.0,
        )
        breaches = judge(self.slo, measured)
        environment.process_exit_code = 1 if breaches else 0
        self.line = verdict_line(self.slo, measured)
        if self.report_path:
            write_json(self.report_path, {
                "passed": not breaches,
                "verdict": self.line,
                "missed": [str(breach) for breach in breaches],
                "slo": self.slo.as_dict(),
                "measured": measured.as_dict(),
                "host": environment.host,
                "model": environment.predict_plan.signature.model,
            })

    def announce(self, **_kwargs) -> None:
        """On quit, after Locust printed its tables: the verdict is the last line of the output."""
        print(self.line, flush=True)


class PredictUser(FastHttpUser):
    """A client posting valid random instances to the predict endpoint and checking every answer."""

    def on_start(self) -> None:
        """Take the process's plan (built once in the init event)."""
        self.plan: PredictPlan = self.environment.predict_plan

    def wait_time(self) -> float:
        """Pace as the plan says: a constant rate per user, or none."""
        return self.plan.pacing(self)

    @task
    def predict(self) -> None:
        """POST one body; a wrong status or a wrong answer is a failure."""
        body = next(self.plan.bodies)
        with self.client.post(
            self.plan.signature.predict_path,
            data=body.data,
            headers={"Content-Type": body.content_type},
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}: {(response.text or '')[:200]}")
                return
            try:
                check_predictions(response.json(), self.plan.signature.outputs, body.instances)
            except WrongAnswer as exc:
                response.failure(f"wrong answer: {exc}")
            except ValueError:
                response.failure("wrong answer: the body is not JSON")
            else:
                response.success()
