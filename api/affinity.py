"""Each gunicorn worker on cores of its own (WORKER_CPU_AFFINITY=auto).

Left to the kernel, a worker moves between cores: nginx and the other workers wake
on its core, and it resumes on whichever core is free, where its caches and TLB hold
someone else's data. Pinned to its own share of the cores, a worker comes back to
warm caches. Measured here (two cores, two workers, the same running stack with its
workers pinned and unpinned in turn, scripts/bench_affinity.py): the digits model +20%
requests/s, MobileNetV2 +2-4% images/s (docs/benchmark-history.md). Pinning nginx's workers as well made
the image model slower, with latency spikes: nginx stays free to run where there is
room.

A worker is pinned by its slot (api/worker_sockets.py), so a replacement worker takes
the cores of the one it replaces. Only an even split is pinned: with three workers on
two cores one core would carry two workers, which the kernel balances better.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

log = logging.getLogger(__name__)


def worker_cores(slot: int, workers: int, cores: Sequence[int]) -> list[int] | None:
    """The cores worker ``slot`` of ``workers`` runs on: its even share of ``cores``
    (several workers share a core when there are more workers than cores), or None
    when the workers do not split the cores evenly."""
    cores = sorted(cores)
    if workers < 1 or not cores or (len(cores) % workers and workers % len(cores)):
        return None
    if workers >= len(cores):
        return [cores[slot % len(cores)]]
    share = len(cores) // workers
    first = (slot % workers) * share
    return cores[first:first + share]


def pin_worker(slot: int, workers: int, mode: str, cores: Sequence[int], op_threads: int = 1) -> list[int] | None:
    """Pin the calling process to worker ``slot``'s share of ``cores`` (``mode`` as
    WORKER_CPU_AFFINITY); return its cores, or None when it stays unpinned: when off,
    when the split is uneven, when the share has fewer cores than the worker's model
    runs ``op_threads`` on (they would take turns on them), and when the system refuses.

    Call it before the process starts a thread: threads inherit the affinity of the
    thread that starts them, and one already running keeps its own.
    """
    share = worker_cores(slot, workers, cores) if mode == "auto" else None
    if share is None or len(share) < op_threads:
        return None
    try:
        os.sched_setaffinity(0, share)
    except OSError as exc:  # a sandbox that forbids it (seccomp, a cpuset): serve unpinned
        log.warning("worker left unpinned: setting its CPU affinity to %s failed: %s", share, exc)
        return None
    return share
