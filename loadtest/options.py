"""Keras Fleet's own Locust options: payloads, pacing, the SLO, and the capacity search.

Registered on Locust's parser (``events.init_command_line_parser``), so each can be
given on the command line (``--slo-p95-ms 200``), as an environment variable
(``LOCUST_SLO_P95_MS=200``) or in a config file (``slo-p95-ms = 200``, see
``loadtest/locust.conf``), which is where the SLO's defaults are written: the
thresholds are policy, so they have no default in code and a run without them is
refused.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from loadtest.payloads import ENCODERS, PayloadSettings
from loadtest.slo import Slo

# Exit code when no run could be made (no metadata, options that cannot work), as
# opposed to 1: a run was made and missed the SLO.
CANNOT_RUN = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options to Locust's parser (a configargparse parser, which reads env vars and config files)."""
    defaults = PayloadSettings()
    payload = parser.add_argument_group("Keras Fleet payloads")
    _option(payload, "model-name", "model to load (/v1/models/<name>); empty: the one the server names on /healthz/ready",
            default="")
    _option(payload, "instances", "instances (rows) per predict request", type=int, default=defaults.instances)
    _option(payload, "body-format", "request body encoding", choices=sorted(ENCODERS), default=defaults.body_format)
    _option(payload, "int-high", "integer inputs are drawn from [0, INT_HIGH) (they are often embedding ids)",
            type=int, default=defaults.int_high)
    _option(payload, "open-dim", "size given to input dimensions the model leaves open (-1)",
            type=int, default=defaults.open_dim)
    _option(payload, "payload-pool", "distinct bodies drawn before the run and sent in turn", type=int, default=64)
    _option(payload, "payload-seed", "random seed of the bodies", type=int, default=defaults.seed)
    _option(payload, "user-rps", "requests per second of each user (constant throughput); "
            "0: each user sends its next request as soon as it has an answer", type=float, default=0.0)

    slo = parser.add_argument_group("Keras Fleet SLO (defaults in loadtest/locust.conf)")
    _option(slo, "slo-p95-ms", "95th percentile latency must be at most this (ms)", type=float, required=True)
    _option(slo, "slo-p99-ms", "99th percentile latency must be at most this (ms)", type=float, required=True)
    _option(slo, "slo-failure-ratio", "failed requests / all requests must be at most this (0.01 = 1%%)",
            type=float, required=True)
    _option(slo, "slo-report", "also write the verdict as JSON to this file (make loadtest: reports/loadtest.json)",
            default="")

    capacity = parser.add_argument_group("Keras Fleet capacity search (loadtest/capacity.py)")
    _option(capacity, "capacity-report", "where the capacity run writes its JSON result", default="reports/capacity.json")
    _option(capacity, "capacity-start-rps", "request rate of the first step", type=float, default=10.0)
    _option(capacity, "capacity-growth", "each step multiplies the rate by this until the SLO fails",
            type=float, default=2.0)
    _option(capacity, "capacity-refinements",
            "steps that then bisect between the last rate that met the SLO and the first that did not",
            type=int, default=4)
    _option(capacity, "capacity-step-seconds", "length of one step", type=float, default=12.0)
    _option(capacity, "capacity-settle-seconds", "first seconds of a step that are not measured (queues settle)",
            type=float, default=4.0)
    _option(capacity, "capacity-max-steps", "the search stops after this many steps, limit found or not",
            type=int, default=20)
    _option(capacity, "capacity-user-rps", "requests per second of each user; a step's rate is users x this. "
            "0: 1000 / slo-p99-ms, so a user keeps its pace for as long as the SLO holds", type=float, default=0.0)
    _option(capacity, "capacity-keep-up", "a step is sustained only if it achieved at least this share of its offered rate",
            type=float, default=0.9)
    _option(capacity, "capacity-headroom",
            "share of the measured capacity the autoscaler targets (policy; in loadtest/locust.conf)",
            type=float, default=None)


def _option(group, name: str, help: str, **kwargs) -> None:
    """--NAME on the command line, LOCUST_NAME in the environment, `NAME = ...` in a config file."""
    group.add_argument(f"--{name}", env_var="LOCUST_" + name.upper().replace("-", "_"), help=help, **kwargs)


def slo_from_options(options: argparse.Namespace) -> Slo:
    """The SLO the options set."""
    return Slo(p95_ms=options.slo_p95_ms, p99_ms=options.slo_p99_ms, max_failure_ratio=options.slo_failure_ratio)


def payload_settings_from_options(options: argparse.Namespace) -> PayloadSettings:
    """The payload settings the options set."""
    return PayloadSettings(
        instances=options.instances,
        body_format=options.body_format,
        int_high=options.int_high,
        open_dim=options.open_dim,
        seed=options.payload_seed,
    )


def refuse(reason: str) -> NoReturn:
    """Stop before the run starts, saying why (from Locust's init event, where nothing runs yet)."""
    logging.getLogger("loadtest").error("cannot run the load test: %s", reason)
    sys.exit(CANNOT_RUN)


def capacity_user_rps(options: argparse.Namespace) -> float:
    """Each user's rate in a capacity run: as set, or one request per p99 budget.

    A paced user falls behind once the mean latency exceeds 1 / its rate; at one
    request per p99 budget that only happens after the SLO has already failed, so
    the SLO, not the pacing, decides where capacity ends.
    """
    return options.capacity_user_rps or 1000 / options.slo_p99_ms


if __name__ == "__main__":
    # `locust --help` leaves out a locustfile's own options; this lists them.
    import configargparse

    listing = configargparse.ArgumentParser(prog="locust -f loadtest/locustfile.py", description=__doc__,
                                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(listing)
    listing.print_help()
