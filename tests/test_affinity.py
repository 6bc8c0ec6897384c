"""Workers pinned to their share of the cores (api/affinity.py)."""

import multiprocessing
import os

import pytest

from api.affinity import pin_worker, worker_cores


@pytest.mark.parametrize("workers, cores, expected", [
    (2, [0, 1], [[0], [1]]),
    (4, list(range(8)), [[0, 1], [2, 3], [4, 5], [6, 7]]),
    (1, [0, 1, 2, 3], [[0, 1, 2, 3]]),
    (4, [0, 1], [[0], [1], [0], [1]]),  # more workers than cores: each core carries two
    (2, [5, 2], [[2], [5]]),  # the cores this process may use, whichever they are
])
def test_the_cores_are_split_evenly_among_the_workers(workers, cores, expected):
    assert [worker_cores(slot, workers, cores) for slot in range(workers)] == expected


@pytest.mark.parametrize("workers, cores", [(3, [0, 1]), (2, [0, 1, 2]), (0, [0, 1]), (2, [])])
def test_an_uneven_split_is_not_pinned(workers, cores):
    assert [worker_cores(slot, workers, cores) for slot in range(max(workers, 1))] == [None] * max(workers, 1)


def test_a_slot_past_the_workers_wraps_around():
    # During a reload, new workers share the slots of the old ones they replace.
    assert worker_cores(3, 2, [0, 1, 2, 3]) == worker_cores(1, 2, [0, 1, 2, 3]) == [2, 3]


def _pin_and_report(queue, *args) -> None:
    queue.put((pin_worker(*args), sorted(os.sched_getaffinity(0))))


def pinned_in_a_child(*args) -> tuple[list[int] | None, list[int]]:
    """What pin_worker returns in a fresh process, and the cores that process may use after."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_pin_and_report, args=(queue, *args))
    child.start()
    result = queue.get(timeout=30)
    child.join()
    return result


needs_two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two cores to choose from")


@needs_two_cores
def test_a_pinned_worker_runs_on_its_share_only():
    cores = sorted(os.sched_getaffinity(0))[:2]
    assert pinned_in_a_child(1, 2, "auto", cores) == ([cores[1]], [cores[1]])


@needs_two_cores
@pytest.mark.parametrize("mode, op_threads", [("off", 1), ("auto", 2)])
def test_a_worker_stays_unpinned_when_off_or_when_its_share_is_too_small_for_its_threads(mode, op_threads):
    everything = sorted(os.sched_getaffinity(0))
    assert pinned_in_a_child(0, 2, mode, everything[:2], op_threads) == (None, everything)


def test_a_worker_the_system_forbids_to_pin_serves_unpinned(monkeypatch, caplog):
    def refuse(pid, cores):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setaffinity", refuse)
    assert pin_worker(0, 2, "auto", [0, 1]) is None
    assert "worker left unpinned" in caplog.text and "Operation not permitted" in caplog.text
