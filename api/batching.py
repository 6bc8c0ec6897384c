"""Server-side batching: concurrent requests in one worker share one model call.

Request threads call :meth:`Batcher.submit`; one batching thread per worker takes
what is queued (up to ``max_batch_size`` instances, waiting at most ``max_wait``
after the first for more), concatenates the inputs, calls the model once and hands
each caller exactly its own rows back. The queue is bounded and every request has
a deadline: when the worker cannot answer in time, the caller gets
:class:`Overloaded` at once instead of waiting without bound.

The model call is traced once for any batch size (see api/model.py), so joining a
varying number of rows never recompiles anything.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from typing import Callable

import numpy as np

from api.metrics import Metrics
from api.model import ModelInputError

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]


def request_deadline(
    start_header: str | None, budget_seconds: float, now_wall: float | None = None, now: float | None = None
) -> float:
    """The request's deadline on the monotonic clock.

    The budget counts from the request's first byte at nginx: ``X-Request-Start:
    t=<epoch seconds when nginx passed it on> d=<seconds it had taken to arrive>``,
    so upload time and time queued before a worker thread picked the request up both
    count; without the header, from now. The clocks can be given (tests); they
    default to the wall clock and the monotonic clock.
    """
    now_wall = time.time() if now_wall is None else now_wall
    now = time.monotonic() if now is None else now
    fields = dict(part.split("=", 1) for part in (start_header or "").split() if "=" in part)
    try:
        waited = now_wall - float(fields["t"]) + float(fields.get("d", 0))
    except (KeyError, ValueError):
        waited = 0.0
    return now + budget_seconds - min(max(0.0, waited), budget_seconds)


class Overloaded(Exception):
    """The worker cannot answer this request before its deadline; ``reason`` says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass(eq=False)
class _Pending:
    inputs: Arrays
    rows: int
    deadline: float  # time.monotonic() after which nobody waits for the answer
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    outputs: Arrays | None = None
    error: BaseException | None = None
    abandoned: bool = False  # the caller stopped waiting (deadline passed)
    queued: bool = True  # still counted in the queue (bounded by max_queue)

    def finish(self, outputs: Arrays | None = None, error: BaseException | None = None) -> None:
        self.outputs, self.error = outputs, error
        self.done.set()


class Batcher:
    """Joins the predict calls of one worker's request threads into batched model calls."""

    def __init__(
        self,
        predict: Callable[[Arrays], Arrays],
        max_batch_size: int,
        max_wait_seconds: float,
        max_queue: int,
        metrics: Metrics,
        model_name: str,
    ):
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_seconds
        self.max_queue = max_queue
        self._queue: queue.Queue[_Pending] = queue.Queue()
        self._carry: _Pending | None = None  # taken from the queue but did not fit the last batch
        self._waiting = 0
        self._queued_rows = 0
        # Recent model cost, to tell early which requests cannot make their deadline:
        # seconds per row and per call (moving averages; 0 until the first batch).
        self._row_seconds = 0.0
        self._call_seconds_avg = 0.0
        self._lock = threading.Lock()
        self._batch_sizes = metrics.batch_size.labels(model_name)
        self._call_seconds = metrics.model_call.labels(model_name)
        self._queue_depth = metrics.queue_depth
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    def submit(self, inputs: Arrays, deadline: float) -> Arrays:
        """Predict ``inputs`` in a shared batch; raise Overloaded if it cannot be done by ``deadline``."""
        rows = len(next(iter(inputs.values())))
        with self._lock:
            if self._waiting >= self.max_queue:
                raise Overloaded("queue_full", f"the server is at capacity ({self._waiting} requests queued); retry")
            # Shed now what the queue ahead cannot clear in time, rather than compute it
            # after its client has given up: that would waste the capacity under overload.
            expected = (self._queued_rows + rows) * self._row_seconds
            if time.monotonic() + expected > deadline:
                raise Overloaded("predicted_late", "the server is at capacity: the queue cannot be cleared "
                                 "within the request deadline; retry")
            self._waiting += 1
            self._queued_rows += rows
        self._queue_depth.inc()
        pending = _Pending(inputs=inputs, rows=rows, deadline=deadline)
        self._queue.put(pending)
        if not pending.done.wait(timeout=max(0.0, deadline - time.monotonic())):
            pending.abandoned = True  # the batching thread skips it if it has not started it
            self._leave_queue(pending)
            raise Overloaded("deadline", "the server could not answer within the request deadline; retry")
        if pending.error is not None:
            raise pending.error
        return pending.outputs

    def _leave_queue(self, pending: _Pending) -> None:
        # Called by the caller (gave up) and by the batching thread (started it): count once.
        with self._lock:
            if pending.queued:
                pending.queued = False
                self._waiting -= 1
                self._queued_rows -= pending.rows
                self._queue_depth.dec()

    def _run(self) -> None:
        while True:
            batch = self._collect()
            try:
                self._execute(batch)
            except Exception:  # never let the batching thread die: callers would hang
                log.exception("batch failed")

    def _collect(self) -> list[_Pending]:
        """Block for the first request, then take more until the batch is full or max_wait passes."""
        first = self._carry or self._queue.get()
        self._carry = None
        batch, rows = [first], first.rows
        deadline = time.monotonic() + self.max_wait
        while rows < self.max_batch_size:
            try:
                remaining = deadline - time.monotonic()
                following = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if rows + following.rows > self.max_batch_size:
                self._carry = following  # first in line for the next batch
                break
            batch.append(following)
            rows += following.rows
        return batch

    def _execute(self, batch: list[_Pending]) -> None:
        live = []
        done_by = time.monotonic() + self._call_seconds_avg
        for pending in batch:
            self._leave_queue(pending)
            if pending.abandoned:
                continue
            if pending.deadline < done_by:
                # It would be answered after its deadline: free its place in the batch now.
                pending.finish(error=Overloaded("deadline", "the request could not be answered within its deadline; retry"))
                continue
            live.append(pending)
        if not live:
            return
        try:
            outputs = self._call(live)
        except ModelInputError as exc:
            if len(live) == 1:
                live[0].finish(error=exc)
                return
            # One request's values made the model refuse the batch: run each alone,
            # so only that request fails.
            for pending in live:
                self._execute_alone(pending)
            return
        except Exception as exc:
            for pending in live:
                pending.finish(error=exc)
            return
        offset = 0
        for pending in live:
            pending.finish(outputs={name: array[offset:offset + pending.rows] for name, array in outputs.items()})
            offset += pending.rows

    def _execute_alone(self, pending: _Pending) -> None:
        try:
            pending.finish(outputs=self._call([pending]))
        except Exception as exc:
            pending.finish(error=exc)

    def _call(self, batch: list[_Pending]) -> Arrays:
        names = list(batch[0].inputs)
        joined = batch[0].inputs if len(batch) == 1 else {
            name: np.concatenate([pending.inputs[name] for pending in batch]) for name in names
        }
        started = time.perf_counter()
        outputs = self._predict(joined)
        elapsed = time.perf_counter() - started
        rows = sum(pending.rows for pending in batch)
        self._call_seconds.observe(elapsed)
        self._batch_sizes.observe(rows)
        self._learn_cost(elapsed, rows)
        return outputs

    def _learn_cost(self, seconds: float, rows: int) -> None:
        # A moving average over the last ~10 calls: follows the load without jumping.
        weight = 0.1 if self._call_seconds_avg else 1.0
        self._call_seconds_avg += weight * (seconds - self._call_seconds_avg)
        self._row_seconds += weight * (seconds / rows - self._row_seconds)
