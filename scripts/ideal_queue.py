"""The tail latency of an ideal server on this machine: what the p99 target is read against.

The target "p99 at 70% of capacity <= 3 x the unloaded p50" compares a loaded tail
with an unloaded median. Part of the gap is queueing, which no implementation avoids:
requests that arrive independently (Poisson) sometimes arrive together and wait.
:func:`p99_over_service` measures the gap for the best server a machine of ``servers``
cores could run: every request takes exactly its unloaded time on one core, nothing
else runs, requests are served first come first served (an M/D/c queue). A real server
whose unloaded latency is its own CPU work cannot do better; one that spends its
unloaded time waiting (on a timer, a disk, another machine) can, as its waits overlap.
"""

from __future__ import annotations

import heapq

import numpy as np


def p99_over_service(servers: int, load: float, arrivals: str = "poisson", count: int = 400_000,
                     seed: int = 0) -> float:
    """The ideal server's p99 time in the system, in units of its service time.

    ``servers`` requests are served at once, each for exactly one unit; requests
    arrive at ``load`` x ``servers`` per unit, ``arrivals`` apart: "poisson" (random
    gaps, as independent clients send) or "even" (every gap the same). Simulated over
    ``count`` requests (the first tenth left out: the queue starts empty), seeded, so
    the same arguments give the same answer.
    """
    if not 0 < load < 1:
        raise ValueError(f"load must be between 0 and 1 (a queue at or past capacity grows without bound), got {load}")
    rate = load * servers
    if arrivals == "poisson":
        gaps = np.random.default_rng(seed).exponential(1 / rate, count)
    elif arrivals == "even":
        gaps = np.full(count, 1 / rate)
    else:
        raise ValueError(f"arrivals must be 'poisson' or 'even', got {arrivals!r}")
    arrival_times = np.cumsum(gaps).tolist()
    # When each server is next free; each request takes the one free first (FCFS).
    free_at = [0.0] * servers
    sojourns = np.empty(count)
    for index, arrived in enumerate(arrival_times):
        done = max(heapq.heappop(free_at), arrived) + 1.0
        heapq.heappush(free_at, done)
        sojourns[index] = done - arrived
    return round(float(np.percentile(sojourns[count // 10:], 99)), 2)
