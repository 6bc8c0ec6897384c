#!/usr/bin/env python3
"""What each part of Keras Fleet's work costs on the small model, over the whole stack.

    make bench-parts      # about 5 minutes; writes reports/bench_parts.json and .md

The digits model's fleet/floor target is missed; this says where the difference goes.
Under the same wrk load as `make bench` (16 connections, closed loop), each variant
behind the same nginx + gunicorn, all alternating for a few rounds (the machine's speed
drifts): the floor, the fleet, and the fleet with one part of its work taken out
(scripts/bench_apps.py, ``fleet_without``): the model call, the batcher, the
per-request telemetry, then all three; and a minimal model server (``minimal``: JSON
to an array, the model as the fleet runs it, JSON back, and nothing else), the least
any server answering predictions costs here. Requests/s and the whole machine's CPU per
request (wrk's included) for each; what a part costs is the fleet's CPU per request
minus that of the fleet without it.
"""

from __future__ import annotations

import argparse
import sys

import bench

VARIANTS = {
    "floor": bench.APPS["floor"],
    "minimal model server": "bench_apps:minimal()",
    "fleet": bench.APPS["fleet"],
    "fleet without the model call": "bench_apps:fleet_without('model')",
    "fleet without the batcher": "bench_apps:fleet_without('batcher')",
    "fleet without per-request telemetry": "bench_apps:fleet_without('telemetry')",
    "fleet without all three": "bench_apps:fleet_without('model,batcher,telemetry')",
}


def measure(args) -> dict[str, dict]:
    """Each variant's mean over the rounds: requests/s, CPU per request, latencies."""
    env = bench.system_env(bench.REPO / args.model, "fleet")
    rounds: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with bench.scratch_directory("bench-parts-") as work:
        body, content_type = bench.request_body("small", work)
        for number in range(args.rounds):
            print(f"round {number + 1} of {args.rounds}:", flush=True)
            for name, app in VARIANTS.items():
                result = bench.measure_http(app, env, body, content_type, args)
                rounds[name].append(result)
    return {name: bench.mean_of_rounds(results) for name, results in rounds.items()}


def markdown(rows: dict[str, dict]) -> str:
    """The table the README quotes."""
    floor, fleet = rows["floor"], rows["fleet"]
    lines = ["| variant | requests/s | / floor | CPU µs per request | its part costs (µs) |", "|---|---|---|---|---|"]
    for name, row in rows.items():
        part = ""
        if name.startswith("fleet without"):
            part = f"{fleet['cpu_us_per_request'] - row['cpu_us_per_request']:.0f}"
        lines.append(f"| {name} | {row['requests_per_s']:.0f} | {row['requests_per_s'] / floor['requests_per_s']:.2f} "
                     f"| {row['cpu_us_per_request']:.0f} | {part} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    """Measure every variant and write the reports."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_load_arguments(parser, seconds=10)
    parser.add_argument("--model", default=bench.SMALL_MODEL, help="the small model")
    args = parser.parse_args()
    rows = measure(args)
    bench.write_reports("bench_parts", rows, markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
