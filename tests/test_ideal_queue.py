"""The ideal server `make bench` reads the p99 target against (scripts/ideal_queue.py)."""

from __future__ import annotations

import math

import pytest

import ideal_queue


def erlang_md1_p99(load: float) -> float:
    """The exact p99 time in an M/D/1 queue, in service times: Erlang's formula for the
    waiting time's distribution, P(W <= t) = (1 - r) sum_{k <= t} (r (k - t))^k / k! e^{-r (k - t)}."""
    def waited_at_most(t: float) -> float:
        return (1 - load) * sum((load * (k - t)) ** k / math.factorial(k) * math.exp(-load * (k - t))
                                for k in range(math.floor(t) + 1))

    # The sum alternates in sign, and its terms grow like e^(r t): exact in doubles for
    # the t of a p99 at these loads, not far past it. So the search starts low and
    # doubles its bound, rather than evaluating the sum at a large t.
    low, high = 0.0, 1.0
    while waited_at_most(high) < 0.99:
        low, high = high, 2 * high
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if waited_at_most(middle) < 0.99 else (low, middle)
    return low + 1.0  # the wait, then the service itself


@pytest.mark.parametrize("load", [0.5, 0.7, 0.8])
def test_one_server_under_poisson_arrivals_matches_erlang_s_formula(load):
    assert ideal_queue.p99_over_service(1, load) == pytest.approx(erlang_md1_p99(load), rel=0.05)


def test_evenly_spaced_arrivals_below_capacity_never_wait():
    assert ideal_queue.p99_over_service(1, 0.9, arrivals="even") == 1.0
    assert ideal_queue.p99_over_service(2, 0.7, arrivals="even") == 1.0


def test_two_servers_wait_less_than_one_at_the_same_load_and_still_more_than_three_times():
    one, two = ideal_queue.p99_over_service(1, 0.7), ideal_queue.p99_over_service(2, 0.7)
    assert two < one
    # The README's reading of the p99 target on two cores rests on this.
    assert two > 3


def test_the_same_arguments_give_the_same_answer():
    assert ideal_queue.p99_over_service(2, 0.7, seed=3) == ideal_queue.p99_over_service(2, 0.7, seed=3)


@pytest.mark.parametrize("load, arrivals", [(1.0, "poisson"), (0.0, "poisson"), (0.7, "bursty")])
def test_a_load_at_capacity_or_an_unknown_arrival_pattern_is_refused(load, arrivals):
    with pytest.raises(ValueError):
        ideal_queue.p99_over_service(1, load, arrivals)
