"""The metric buffer: series counted in memory, written to prometheus-client when flushed."""

from __future__ import annotations

import concurrent.futures
import gc
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from api.metric_buffer import BufferedCounter, BufferedGauge, BufferedHistogram, MetricBuffer
from tests.test_metrics import samples

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def series(registry: CollectorRegistry):
    return (
        Counter("c", "c", ["k"], registry=registry).labels("a"),
        Histogram("h", "h", ["k"], buckets=BUCKETS, registry=registry).labels("a"),
        Gauge("g", "g", registry=registry),
    )


def exposed(registry: CollectorRegistry) -> dict:
    """Every sample but the creation times, which differ between any two registries."""
    text = generate_latest(registry).decode()
    return {name: samples(text, name) for name in ("c_total", "h_bucket", "h_count", "h_sum", "g")}


def test_buffered_series_expose_what_direct_ones_would():
    direct, buffered = CollectorRegistry(), CollectorRegistry()
    counter, histogram, gauge = series(direct)
    buffer = MetricBuffer(interval=3600)
    b_counter, b_histogram, b_gauge = (buffer.wrap(child) for child in series(buffered))
    assert (type(b_counter), type(b_histogram), type(b_gauge)) == (BufferedCounter, BufferedHistogram, BufferedGauge)
    # On the bounds, between them, past the last: each lands where prometheus-client puts it.
    values = [0.0, 0.001, 0.0011, 0.01, 0.05, 0.1, 1.0, 1.5, 30.0]
    for value in values:
        for target in (histogram, b_histogram):
            target.observe(value)
    for target in (counter, b_counter):
        target.inc()
        target.inc(2.5)
    for target in (gauge, b_gauge):
        target.inc(3)
        target.dec()
    buffer.flush()
    assert exposed(buffered) == exposed(direct)
    for target in (gauge, b_gauge):
        target.set(7)
    buffer.flush()
    assert exposed(buffered) == exposed(direct)


def test_nothing_reaches_prometheus_client_until_a_flush():
    registry = CollectorRegistry()
    buffer = MetricBuffer(interval=3600)
    counter, histogram, gauge = (buffer.wrap(child) for child in series(registry))
    counter.inc()
    histogram.observe(0.5)
    gauge.inc()
    before = exposed(registry)
    assert before["c_total"] == {(("k", "a"),): 0.0} and before["h_count"] == {(("k", "a"),): 0.0}
    assert before["g"] == {(): 0.0}
    buffer.flush()
    after = exposed(registry)
    assert after["c_total"] == {(("k", "a"),): 1.0} and after["h_count"] == {(("k", "a"),): 1.0}
    assert after["g"] == {(): 1.0}
    buffer.flush()  # nothing new: nothing added twice
    assert exposed(registry) == after


def test_the_thread_writes_within_its_interval():
    registry = CollectorRegistry()
    buffer = MetricBuffer(interval=0.05)
    counter, _, _ = (buffer.wrap(child) for child in series(registry))
    counter.inc(4)
    deadline = time.monotonic() + 5
    while exposed(registry)["c_total"] != {(("k", "a"),): 4.0} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exposed(registry)["c_total"] == {(("k", "a"),): 4.0}


def test_counts_from_many_threads_are_exact_while_flushes_run():
    registry = CollectorRegistry()
    buffer = MetricBuffer(interval=0.001)  # flushing all the time, amid the counting
    counter, histogram, gauge = (buffer.wrap(child) for child in series(registry))

    def count(_):
        for _ in range(5000):
            counter.inc()
            histogram.observe(0.05)
            gauge.inc()
            gauge.dec()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(count, range(8)))
    buffer.flush()
    totals = exposed(registry)
    assert totals["c_total"] == {(("k", "a"),): 40000.0}
    assert totals["h_count"] == {(("k", "a"),): 40000.0}
    assert totals["h_sum"][(("k", "a"),)] == pytest.approx(2000.0)
    assert totals["g"] == {(): 0.0}


def test_a_dropped_buffer_takes_its_thread_with_it():
    buffer = MetricBuffer(interval=0.01)
    buffer.wrap(series(CollectorRegistry())[0])
    thread = buffer._flusher
    assert thread.is_alive()
    del buffer
    gc.collect()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_only_counters_histograms_and_gauges_are_buffered():
    from prometheus_client import Summary

    with pytest.raises(TypeError, match="Summary"):
        MetricBuffer().wrap(Summary("s", "s", registry=CollectorRegistry()))
