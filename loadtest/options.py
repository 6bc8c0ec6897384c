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
    """Add the options to Locust's parser (a configargparse parser; env_var is its extension)."""
    defaults = PayloadSettings()
    payload = parser.add_argument_group("Keras Fleet payloads")
    payload.add_argument("--model-name", default="", env_var="LOCUST_MODEL_NAME",
                         help="model to load (/v1/models/<name>); empty: the one the server names on /healthz/ready")
    payload.add_argument("--instances", type=int, default=defaults.instances, env_var="LOCUST_INSTANCES",
                         help="instances (rows) per predict request")
    payload.add_argument("--body-format", choices=sorted(ENCODERS), default=defaults.body_format,
                         env_var="LOCUST_BODY_FORMAT", help="request body encoding")
    payload.add_argument("--int-high", type=int, default=defaults.int_high, env_var="LOCUST_INT_HIGH",
                         help="integer inputs are drawn from [0, INT_HIGH) (they are often embedding ids)")
    payload.add_argument("--open-dim", type=int, default=defaults.open_dim, env_var="LOCUST_OPEN_DIM",
                         help="size given to input dimensions the model leaves open (-1)")
    payload.add_argument("--payload-pool", type=int, default=64, env_var="LOCUST_PAYLOAD_POOL",
                         help="distinct bodies drawn before the run and sent in turn")
    payload.add_argument("--payload-seed", type=int, default=defaults.seed, env_var="LOCUST_PAYLOAD_SEED",
                         help="random seed of the bodies")
    payload.add_argument("--user-rps", type=float, default=0, env_var="LOCUST_USER_RPS",
                         help="requests per second of each user (constant throughput); 0: each user sends as fast as answers come")

    slo = parser.add_argument_group("Keras Fleet SLO (defaults in loadtest/locust.conf)")
    slo.add_argument("--slo-p95-ms", type=float, required=True, env_var="LOCUST_SLO_P95_MS",
                     help="95th percentile latency must be at most this (ms)")
    slo.add_argument("--slo-p99-ms", type=float, required=True, env_var="LOCUST_SLO_P99_MS",
                     help="99th percentile latency must be at most this (ms)")
    slo.add_argument("--slo-failure-ratio", type=float, required=True, env_var="LOCUST_SLO_FAILURE_RATIO",
                     help="failed requests / all requests must be at most this (0.01 = 1%%)")
    slo.add_argument("--slo-report", default="", env_var="LOCUST_SLO_REPORT",
                     help="also write the verdict as JSON to this file (make loadtest: reports/loadtest.json)")

    capacity = parser.add_argument_group("Keras Fleet capacity search (loadtest/capacity.py)")
    capacity.add_argument("--capacity-report", default="reports/capacity.json", env_var="LOCUST_CAPACITY_REPORT",
                          help="where the capacity run writes its JSON result")
    capacity.add_argument("--capacity-start-rps", type=float, default=10, env_var="LOCUST_CAPACITY_START_RPS",
                          help="request rate of the first step")
    capacity.add_argument("--capacity-growth", type=float, default=2, env_var="LOCUST_CAPACITY_GROWTH",
                          help="each step multiplies the rate by this until the SLO fails")
    capacity.add_argument("--capacity-refinements", type=int, default=4, env_var="LOCUST_CAPACITY_REFINEMENTS",
                          help="steps that then bisect between the last rate that met the SLO and the first that did not")
    capacity.add_argument("--capacity-step-seconds", type=float, default=12, env_var="LOCUST_CAPACITY_STEP_SECONDS",
                          help="length of one step")
    capacity.add_argument("--capacity-settle-seconds", type=float, default=4, env_var="LOCUST_CAPACITY_SETTLE_SECONDS",
                          help="first seconds of a step that are not measured (users start, queues settle)")
    capacity.add_argument("--capacity-max-steps", type=int, default=20, env_var="LOCUST_CAPACITY_MAX_STEPS",
                          help="the search stops after this many steps, limit found or not")
    capacity.add_argument("--capacity-user-rps", type=float, default=0, env_var="LOCUST_CAPACITY_USER_RPS",
                          help="requests per second of each user; a step's rate is users x this. "
                               "0: 1000 / slo-p99-ms, so a user keeps its pace for as long as the SLO holds")
    capacity.add_argument("--capacity-keep-up", type=float, default=0.9, env_var="LOCUST_CAPACITY_KEEP_UP",
                          help="a step is sustained only if it achieved at least this share of its offered rate")
    capacity.add_argument("--capacity-headroom", type=float, default=None, env_var="LOCUST_CAPACITY_HEADROOM",
                          help="share of the measured capacity the autoscaler targets (policy; in loadtest/locust.conf)")


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
