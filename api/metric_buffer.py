"""Counting in memory, writing to prometheus-client's files about once a second.

In multiprocess mode each ``inc()`` or ``observe()`` of prometheus-client writes the
new value into the worker's memory-mapped file under a lock, and a prediction makes
about ten of them (request count and latency, in flight, batch size, call time,
predicted class). Here a request only adds to numbers in memory, under one lock held
for an addition; a thread of each worker writes what gathered into the files every
:data:`FLUSH_SECONDS`, ``/metrics`` first writes the scraping worker's own, and a
worker writes the rest when it exits. A scrape can miss the other workers' last
second; no count is lost.
"""

from __future__ import annotations

import atexit
import bisect
import threading
import weakref

from prometheus_client import Counter, Gauge, Histogram

FLUSH_SECONDS = 1.0


class MetricBuffer:
    """The buffered series of one process, and the thread that writes them out."""

    def __init__(self, interval: float = FLUSH_SECONDS):
        self.interval = interval
        self.lock = threading.Lock()  # held only to add to or take a series' numbers
        self._flushing = threading.Lock()  # one flush at a time, so a gauge's values land in order
        self._series: list[_Buffered] = []
        self._flusher: threading.Thread | None = None

    def wrap(self, child) -> "_Buffered":
        """A buffered front for one prometheus-client series (a metric with its labels bound)."""
        for kind, front in ((Histogram, BufferedHistogram), (Counter, BufferedCounter), (Gauge, BufferedGauge)):
            if isinstance(child, kind):
                series = front(child, self)
                break
        else:
            raise TypeError(f"cannot buffer a {type(child).__name__}")
        with self.lock:
            self._series.append(series)
            start = self._flusher is None
            if start:
                self._flusher = threading.Thread(target=_flush_every_interval, args=(weakref.ref(self), self.interval),
                                                 name="metrics-flush", daemon=True)
        if start:
            # Started with the first series, in the process that records: gunicorn builds
            # the app in each worker, after the fork (a thread would not survive one).
            self._flusher.start()
            atexit.register(_flush_if_alive, weakref.ref(self))
        return series

    def flush(self) -> None:
        """Write everything gathered so far into prometheus-client's series."""
        with self._flushing:
            with self.lock:
                taken = [(series, series.take()) for series in self._series]
            for series, numbers in taken:
                series.apply(numbers)


def _flush_every_interval(buffer_ref: weakref.ref, interval: float) -> None:
    # A weak reference: an app dropped (tests build many) takes its thread with it.
    stop = threading.Event()
    while not stop.wait(interval):
        buffer = buffer_ref()
        if buffer is None:
            return
        buffer.flush()
        del buffer


def _flush_if_alive(buffer_ref: weakref.ref) -> None:
    buffer = buffer_ref()
    if buffer is not None:
        buffer.flush()


class _Buffered:
    def __init__(self, child, buffer: MetricBuffer):
        self.child = child
        self._lock = buffer.lock

    def take(self):  # called under the buffer's lock
        raise NotImplementedError

    def apply(self, numbers) -> None:
        raise NotImplementedError


class BufferedCounter(_Buffered):
    """A counter's series: ``inc()`` adds in memory."""

    def __init__(self, child, buffer: MetricBuffer):
        super().__init__(child, buffer)
        self._pending = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (written out at the next flush)."""
        with self._lock:
            self._pending += amount

    def take(self) -> float:
        pending, self._pending = self._pending, 0.0
        return pending

    def apply(self, pending: float) -> None:
        if pending:
            self.child.inc(pending)


class BufferedHistogram(_Buffered):
    """A histogram's series: ``observe()`` counts the value into its bucket in memory."""

    def __init__(self, child, buffer: MetricBuffer):
        super().__init__(child, buffer)
        # prometheus-client keeps one value per bucket (not cumulative) and the sum;
        # a flush adds to those, as its own observe() does one value at a time.
        self._bounds = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        """Count ``value`` into the first bucket whose upper bound holds it."""
        index = bisect.bisect_left(self._bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def take(self) -> tuple[list[int], float]:
        taken = self._counts, self._sum
        self._counts, self._sum = [0] * len(self._bounds), 0.0
        return taken

    def apply(self, numbers: tuple[list[int], float]) -> None:
        counts, total = numbers
        if not any(counts):
            return
        self.child._sum.inc(total)
        for bucket, count in zip(self.child._buckets, counts):
            if count:
                bucket.inc(count)


class BufferedGauge(_Buffered):
    """A gauge's series: ``inc()``, ``dec()`` and ``set()`` in memory; a flush writes the value."""

    def __init__(self, child, buffer: MetricBuffer):
        super().__init__(child, buffer)
        self._value = 0.0
        self._written: float | None = None

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` to the value."""
        with self._lock:
            self._value += amount

    def dec(self, amount: float = 1.0) -> None:
        """Take ``amount`` from the value."""
        self.inc(-amount)

    def set(self, value: float) -> None:
        """Make ``value`` the value."""
        with self._lock:
            self._value = value

    def take(self) -> float:
        return self._value

    def apply(self, value: float) -> None:
        if value != self._written:
            self.child.set(value)
            self._written = value
