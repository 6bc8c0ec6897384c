"""Server-side batching: concurrent requests in one worker share one model call.

Request threads call :meth:`Batcher.submit`. There is no batching thread: the first
request to arrive while no model call is under way becomes the *leader*. It takes
what is queued (up to ``max_batch_size`` instances, waiting at most ``max_wait``
after the first for more), concatenates the inputs, calls the model once, and hands
each caller exactly its own rows back. Requests arriving meanwhile queue up behind
it and make the next batch; when the leader's own request is answered it passes the
lead to the oldest one still queued. So an idle worker answers a lone request
without waking another thread, and a busy one batches whatever arrived during the
previous call (a thread hand-off per request would cost more than the model call of
a small model; measured, see docs/benchmark-history.md).

The queue is bounded and every request has a deadline: when the worker cannot
answer in time, the caller gets :class:`Overloaded` at once instead of waiting
without bound. The model call is traced once for any batch size (see api/model.py),
so joining a varying number of rows never recompiles anything.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import threading
import time
from typing import Callable

import numpy as np

from api.metrics import Metrics
from api.model import ModelInputError, Signature, zeros_feed

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
    waited = 0.0
    sent, upload = _start_fields(start_header) if start_header else (None, None)
    if sent is not None:
        try:
            waited = now_wall - float(sent) + (float(upload) if upload is not None else 0.0)
        except ValueError:
            waited = 0.0
    return now + budget_seconds - min(max(0.0, waited), budget_seconds)


def _start_fields(start_header: str) -> tuple[str | None, str | None]:
    """The first ``t=`` and ``d=`` values of an X-Request-Start header. String methods,
    not a regular expression: on every request, the engine's cost shows (docs/benchmark-history.md)."""
    sent = upload = None
    for field in start_header.split():
        if field[:2] == "t=" and sent is None:
            sent = field[2:]
        elif field[:2] == "d=" and upload is None:
            upload = field[2:]
    return sent, upload


def fastest_batch_size(
    predict: Callable[[Arrays], Arrays], signature: Signature, limit: int, repeats: int = 5,
    budget_seconds: float = 2.0, clock: Callable[[], float] = time.perf_counter,
) -> int:
    """The batch size to cap ``predict``'s batches at: doubling from 1 up to ``limit``,
    the last size whose rows per second beat the size before it by 10% or more.

    Larger batches are not always faster per row: MobileNetV2 under LiteRT ran 1.7x
    more images/s one at a time than in eights on this machine's CPU (caches), while
    the digits model's rows/s grows almost with the batch. Each size's time is its
    fastest of up to ``repeats`` calls, the one least disturbed by the rest of the
    machine. The whole measurement stays within about ``budget_seconds`` (it runs in a
    worker's start, which gunicorn's timeout bounds): a slow model stops doubling early.
    """
    spent = 0.0

    def timed_call(feed: Arrays) -> float:
        nonlocal spent
        started = clock()
        predict(feed)
        elapsed = clock() - started
        spent += elapsed
        return elapsed

    share = budget_seconds / 4  # what one size's repeats may use: a slow model still tries a few

    def rows_per_second(rows: int) -> float:
        feed = zeros_feed(signature.inputs, rows)
        started_at = spent
        fastest = timed_call(feed)  # a first call at a new size also plans its memory
        for _ in range(repeats):
            if spent - started_at >= share:
                break
            fastest = min(fastest, timed_call(feed))
        return rows / max(fastest, 1e-9)

    best, best_rate = 1, rows_per_second(1)
    while best * 2 <= limit:
        # A call at twice the rows takes about twice as long, and a size's repeats stop
        # past its share: stop before the next size could take the measurement past the budget.
        call = 2 * best / best_rate
        if spent + 2 * call + share > budget_seconds:
            break
        rate = rows_per_second(best * 2)
        if rate < 1.1 * best_rate:
            break
        best, best_rate = best * 2, rate
    return best


class Overloaded(Exception):
    """The worker cannot answer this request before its deadline; ``reason`` says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def would_finish_late() -> Overloaded:
    """What a request gets when the model call would end after its deadline."""
    return Overloaded("deadline", "the request could not be answered within its deadline; retry")


@dataclasses.dataclass(eq=False)
class _Pending:
    inputs: Arrays
    rows: int
    deadline: float  # time.monotonic() after which nobody waits for the answer
    outputs: Arrays | None = None
    error: BaseException | None = None
    finished: bool = False
    lead: bool = False  # woken to lead the next batch rather than with an answer
    # Held until the request is answered or asked to lead; its owner blocks acquiring
    # it. A bare lock is the cheapest thing a thread can sleep on (an Event is a
    # Condition and two locks).
    wake: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def __post_init__(self):
        self.wake.acquire()

    def finish(self, outputs: Arrays | None = None, error: BaseException | None = None) -> None:
        self.outputs, self.error, self.finished = outputs, error, True
        self.wake.release()

    def hand_lead(self) -> None:
        self.lead = True
        self.wake.release()


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
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # a leader waiting for a fuller batch
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_rows = 0
        self._leading = False  # a request thread is forming or running a batch
        self._leader_waiting = False
        # Recent model cost, to tell early which requests cannot make their deadline:
        # seconds per row and per call (moving averages; 0 until the first batch).
        self._row_seconds = 0.0
        self._call_seconds_avg = 0.0
        self._batch_sizes = metrics.series(metrics.batch_size, model_name)
        self._call_seconds = metrics.series(metrics.model_call, model_name)
        self._queue_depth = metrics.series(metrics.queue_depth)

    @property
    def _waiting(self) -> int:
        """Requests queued and not yet taken into a batch."""
        return len(self._queue)

    def submit(self, inputs: Arrays, deadline: float) -> Arrays:
        """Predict ``inputs`` in a shared batch; raise Overloaded if it cannot be done by ``deadline``."""
        rows = len(next(iter(inputs.values())))
        with self._lock:
            self._admit(rows, deadline)
            # Nothing under way and no wait for company: call the model at once, with
            # none of a queued request's bookkeeping (the lead is taken all the same, so
            # requests arriving meanwhile queue up behind this call).
            alone = not self._leading and self.max_wait == 0
            if alone:
                self._leading = True
            else:
                pending = _Pending(inputs=inputs, rows=rows, deadline=deadline)
                self._enqueue(pending)
                lead = not self._leading
                self._leading = True
        if alone:
            try:
                return self._run_alone(inputs, rows, deadline)
            finally:
                self._pass_lead()
        if lead:
            self._lead(pending)
        elif not pending.wake.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self._give_up(pending)
        elif pending.lead:
            self._lead(pending)
        if pending.error is not None:
            raise pending.error
        return pending.outputs

    def _enqueue(self, pending: _Pending) -> None:
        """Queue a request behind the call under way (called under the lock)."""
        self._queue.append(pending)
        self._queued_rows += pending.rows
        if self._leader_waiting:
            self._arrived.notify()

    def _admit(self, rows: int, deadline: float) -> None:
        """Refuse at once what this worker cannot answer in time (called under the lock)."""
        if len(self._queue) >= self.max_queue:
            raise Overloaded("queue_full", f"the server is at capacity ({len(self._queue)} requests queued); retry")
        # Shed now what the queue ahead cannot clear in time, rather than compute it
        # after its client has given up: that would waste the capacity under overload.
        expected = (self._queued_rows + rows) * self._row_seconds
        if time.monotonic() + expected > deadline:
            raise Overloaded("predicted_late", "the server is at capacity: the queue cannot be cleared "
                             "within the request deadline; retry")

    def _give_up(self, pending: _Pending) -> None:
        """The deadline passed while queued: leave the queue, unless already taken or asked to lead."""
        with self._lock:
            if pending in self._queue and not pending.lead:
                self._queue.remove(pending)
                self._queued_rows -= pending.rows
                raise Overloaded("deadline", "the server could not answer within the request deadline; retry")
        # Taken into a batch (its answer is on the way) or handed the lead just now:
        # either way, see it through; a request past its deadline is dropped unrun.
        pending.wake.acquire()
        if pending.lead:
            self._lead(pending)

    def _run_alone(self, inputs: Arrays, rows: int, deadline: float) -> Arrays:
        """The model call of a request that found the worker idle (it holds the lead)."""
        if deadline < time.monotonic() + self._call_seconds_avg:
            raise would_finish_late()
        return self._predict_rows(inputs, rows)

    def _pass_lead(self) -> None:
        """Hand the lead to the oldest queued request, or end it if none waits."""
        with self._lock:
            if self._queue:
                self._queue[0].hand_lead()
            else:
                self._leading = False

    def _lead(self, own: _Pending) -> None:
        """Run batches until ``own`` is answered, then pass the lead on (or end it)."""
        while True:
            batch = self._take_batch()
            try:
                self._execute(batch)
            except Exception:  # never leave the queue without a leader: callers would hang
                log.exception("batch failed")
                for pending in batch:
                    if not pending.finished:
                        pending.finish(error=RuntimeError("the batch failed"))
            with self._lock:
                if not self._queue:
                    self._leading = False
                    return
                if own.finished:
                    self._queue[0].hand_lead()
                    return

    def _take_batch(self) -> list[_Pending]:
        """Take the oldest queued requests, up to max_batch_size rows (waiting up to max_wait for more)."""
        with self._lock:
            if self.max_wait > 0:
                give_up_at = time.monotonic() + self.max_wait
                self._leader_waiting = True
                while self._queued_rows < self.max_batch_size and (left := give_up_at - time.monotonic()) > 0:
                    self._arrived.wait(left)
                self._leader_waiting = False
            batch = [self._queue.popleft()]  # always at least one, even if larger than a batch
            rows = batch[0].rows
            while self._queue and rows + self._queue[0].rows <= self.max_batch_size:
                rows += self._queue[0].rows
                batch.append(self._queue.popleft())
            self._queued_rows -= rows
            waiting = len(self._queue)
        self._queue_depth.set(waiting)
        return batch

    def _execute(self, batch: list[_Pending]) -> None:
        live = []
        done_by = time.monotonic() + self._call_seconds_avg
        for pending in batch:
            if pending.deadline < done_by:
                # It would be answered after its deadline: free its place in the batch now.
                pending.finish(error=would_finish_late())
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
        joined = batch[0].inputs if len(batch) == 1 else {
            name: np.concatenate([pending.inputs[name] for pending in batch]) for name in batch[0].inputs
        }
        return self._predict_rows(joined, sum(pending.rows for pending in batch))

    def _predict_rows(self, joined: Arrays, rows: int) -> Arrays:
        started = time.perf_counter()
        outputs = self._predict(joined)
        elapsed = time.perf_counter() - started
        self._call_seconds.observe(elapsed)
        self._batch_sizes.observe(rows)
        self._learn_cost(elapsed, rows)
        return outputs

    def _learn_cost(self, seconds: float, rows: int) -> None:
        # A moving average over the last ~10 calls: follows the load without jumping.
        weight = 0.1 if self._call_seconds_avg else 1.0
        self._call_seconds_avg += weight * (seconds - self._call_seconds_avg)
        self._row_seconds += weight * (seconds / rows - self._row_seconds)
