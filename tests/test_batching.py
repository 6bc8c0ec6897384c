"""The batcher: joins concurrent requests, returns each caller its rows, sheds overload."""

from __future__ import annotations

import concurrent.futures
import threading
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.batching import Batcher, Overloaded, fastest_batch_size, request_deadline
from api.metrics import Metrics
from api.model import ModelInputError
from tests.fakes import DIGITS_SIGNATURE

LATER = 3600.0  # a deadline nobody reaches in a test


class GatedModel:
    """Records every call; the first call blocks until released, so requests pile up behind it."""

    def __init__(self, gate_first_call: bool = True):
        self.calls: list[int] = []
        self.threads: list[int] = []  # the thread each call ran in
        self.gate = threading.Event()
        self.entered = threading.Event()
        if not gate_first_call:
            self.gate.set()

    def predict(self, inputs):
        x = inputs["x"]
        self.calls.append(len(x))
        self.threads.append(threading.get_ident())
        self.entered.set()
        self.gate.wait(timeout=30)
        if (x < 0).any():
            raise ModelInputError("negative values are not allowed")
        return {"y": x * 2, "row_sum": x.sum(axis=1)}


def make_batcher(model, max_batch_size=8, max_wait=0.0, max_queue=100):
    metrics = Metrics()
    return metrics, Batcher(model.predict, max_batch_size, max_wait, max_queue, metrics, "m")


def submit_later(batcher, rows, value, deadline=LATER):
    return batcher.submit({"x": np.full((rows, 3), value, "float32")}, time.monotonic() + deadline)


def start_blocked_call(pool, batcher, model):
    """Start one 1-row call and wait until it is inside the (gated) model."""
    running = pool.submit(submit_later, batcher, 1, 1.0)
    assert model.entered.wait(5)
    return running


def queue_behind_a_running_call(pool, batcher, model, queued):
    """Start one 1-row call that blocks in the model, then queue (rows, value) requests behind it."""
    running = start_blocked_call(pool, batcher, model)
    waiting = [pool.submit(submit_later, batcher, rows, value) for rows, value in queued]
    wait_until(lambda: batcher._waiting == len(queued))
    return running, waiting


def test_each_caller_gets_exactly_its_own_rows_under_concurrency():
    model = GatedModel(gate_first_call=False)
    _, batcher = make_batcher(model, max_batch_size=16, max_wait=0.002)
    sizes = [1 + i % 5 for i in range(200)]

    def call(i):
        x = np.arange(sizes[i] * 3, dtype="float32").reshape(sizes[i], 3) + 1000 * i
        result = batcher.submit({"x": x}, time.monotonic() + LATER)
        return i, x, result

    with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
        for i, x, result in pool.map(call, range(200)):
            np.testing.assert_array_equal(result["y"], x * 2)
            np.testing.assert_array_equal(result["row_sum"], x.sum(axis=1))
    assert sum(model.calls) == sum(sizes)
    assert max(model.calls) <= 16
    assert len(model.calls) < 200, "concurrent requests were never joined"


def test_requests_queued_behind_a_model_call_are_joined_into_one_batch():
    model = GatedModel()
    metrics, batcher = make_batcher(model, max_batch_size=8)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        first, rest = queue_behind_a_running_call(pool, batcher, model, [(2, float(v)) for v in range(3)])
        model.gate.set()
        assert first.result()["y"].tolist() == [[2.0] * 3]
        for value, future in enumerate(rest):
            assert future.result()["y"].tolist() == [[2.0 * value] * 3] * 2
    assert model.calls == [1, 6]
    sizes = {s.labels["le"]: s.value for f in text_string_to_metric_families(metrics.exposition().decode())
             for s in f.samples if s.name == "keras_fleet_batch_size_bucket"}
    assert sizes["1.0"] == 1 and sizes["4.0"] == 1 and sizes["8.0"] == 2


def test_a_batch_never_exceeds_max_batch_size_and_the_rest_goes_next():
    model = GatedModel()
    _, batcher = make_batcher(model, max_batch_size=5)
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        first, rest = queue_behind_a_running_call(pool, batcher, model, [(3, 1.0)] * 3)
        model.gate.set()
        for future in [first, *rest]:
            assert future.result()["y"].shape[1] == 3
    assert model.calls[0] == 1 and all(size <= 5 for size in model.calls) and sum(model.calls) == 10


def test_a_partial_batch_runs_when_the_wait_expires():
    model = GatedModel(gate_first_call=False)
    _, batcher = make_batcher(model, max_batch_size=64, max_wait=0.05)
    result = submit_later(batcher, 2, 4.0)
    assert result["y"].tolist() == [[8.0] * 3] * 2
    assert model.calls == [2]


def test_a_request_larger_than_a_batch_runs_alone():
    model = GatedModel(gate_first_call=False)
    _, batcher = make_batcher(model, max_batch_size=4)
    assert submit_later(batcher, 10, 1.0)["y"].shape == (10, 3)
    assert model.calls == [10]


def test_full_queue_is_shed_at_once():
    model = GatedModel()
    _, batcher = make_batcher(model, max_queue=2)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        running, queued = queue_behind_a_running_call(pool, batcher, model, [(1, 1.0)] * 2)
        with pytest.raises(Overloaded) as shed:
            submit_later(batcher, 1, 1.0)
        assert shed.value.reason == "queue_full"
        model.gate.set()
        assert all(f.result()["y"].shape == (1, 3) for f in [running, *queued])


def test_a_request_past_its_deadline_is_shed_and_never_computed():
    model = GatedModel()
    _, batcher = make_batcher(model)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        running = start_blocked_call(pool, batcher, model)
        with pytest.raises(Overloaded) as shed:
            submit_later(batcher, 7, 1.0, deadline=0.05)
        assert shed.value.reason == "deadline"
        model.gate.set()
        running.result()
    submit_later(batcher, 1, 1.0)  # the batcher moved on past the abandoned request
    assert 7 not in model.calls
    assert batcher._waiting == 0


def test_a_value_the_model_rejects_fails_only_its_own_request():
    model = GatedModel()
    _, batcher = make_batcher(model)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        running, (good, bad) = queue_behind_a_running_call(pool, batcher, model, [(1, 2.0), (1, -1.0)])
        model.gate.set()
        running.result()
        assert good.result()["y"].tolist() == [[4.0] * 3]
        with pytest.raises(ModelInputError):
            bad.result()


def test_batched_results_equal_unbatched_results_on_a_real_model(tmp_path):
    from api.model import ServedModel
    from tests import keras_models

    model = ServedModel(keras_models.save_single_input(tmp_path / "m.keras"), "m")
    model.load()
    batcher = Batcher(model.predict, 32, 0.002, 100, Metrics(), "m")
    rows = np.random.default_rng(5).normal(size=(100, 4)).astype("float32")
    alone = [model.predict({"features": rows[i:i + 1]})["scores"] for i in range(100)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        batched = list(pool.map(
            lambda i: batcher.submit({"features": rows[i:i + 1]}, time.monotonic() + LATER)["scores"], range(100)))
    for one, joined in zip(alone, batched):
        np.testing.assert_allclose(joined, one, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "header, waited",
    [(None, 0.0), ("t=garbage", 0.0), ("t={now_minus_0_3}", 0.3), ("t={future}", 0.0), ("t={long_ago}", 1.0),
     ("t={now_minus_0_3} d=0.200", 0.5), ("t={now_minus_0_3} d=junk", 0.0), ("d=0.4", 0.0)],
)
def test_deadline_counts_from_when_nginx_received_the_request(header, waited):
    now = 1_800_000_000.0
    values = {"now_minus_0_3": f"{now - 0.3:.3f}", "future": f"{now + 50:.3f}", "long_ago": f"{now - 500:.3f}"}
    deadline = request_deadline(header.format(**values) if header else None, 1.0, now_wall=now, now=100.0)
    assert deadline == pytest.approx(100.0 + 1.0 - waited, abs=1e-6)


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.005)


def test_a_request_the_queue_cannot_clear_in_time_is_shed_on_arrival():
    model = GatedModel()
    _, batcher = make_batcher(model)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        running, queued = queue_behind_a_running_call(pool, batcher, model, [(5, 1.0)])
        batcher._row_seconds = 1.0  # as if each row had cost a second: 5 queued + 1 > 2 s
        with pytest.raises(Overloaded) as shed:
            submit_later(batcher, 1, 1.0, deadline=2.0)
        assert shed.value.reason == "predicted_late"
        submit_after = pool.submit(submit_later, batcher, 1, 3.0, 60.0)  # a later deadline still fits
        batcher._row_seconds = 0.0
        model.gate.set()
        assert submit_after.result()["y"].tolist() == [[6.0] * 3]
        running.result()
        queued[0].result()


def test_a_queued_request_that_would_finish_late_is_dropped_before_the_call():
    model = GatedModel()
    _, batcher = make_batcher(model)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        running = start_blocked_call(pool, batcher, model)
        doomed = pool.submit(submit_later, batcher, 4, 1.0, 0.5)
        fine = pool.submit(submit_later, batcher, 2, 1.0)
        wait_until(lambda: batcher._waiting == 2)
        batcher._call_seconds_avg = 10.0  # the next call is expected to take 10 s
        model.gate.set()
        running.result()
        with pytest.raises(Overloaded) as shed:
            doomed.result()
        assert shed.value.reason == "deadline"
        assert fine.result()["y"].shape == (2, 3)
    assert 4 not in model.calls and 6 not in model.calls


def test_a_lone_request_that_would_finish_late_is_shed_before_the_call():
    model = GatedModel(gate_first_call=False)
    _, batcher = make_batcher(model)
    batcher._call_seconds_avg = 10.0  # a call is expected to take 10 s; a row alone costs nothing yet
    with pytest.raises(Overloaded) as shed:
        submit_later(batcher, 1, 1.0, deadline=0.5)
    assert shed.value.reason == "deadline" and model.calls == []
    assert not batcher._leading  # the worker is free for the next request
    assert submit_later(batcher, 1, 1.0)["y"].shape == (1, 3)


def test_the_cost_estimate_follows_the_model_calls():
    model = GatedModel(gate_first_call=False)
    _, batcher = make_batcher(model)
    submit_later(batcher, 4, 1.0)
    assert batcher._call_seconds_avg > 0 and batcher._row_seconds == pytest.approx(batcher._call_seconds_avg / 4)
    assert batcher._queued_rows == 0 and batcher._waiting == 0


def test_a_lone_request_runs_the_model_in_its_own_thread():
    model = GatedModel(gate_first_call=False)
    _, batcher = make_batcher(model)
    assert submit_later(batcher, 2, 1.0)["y"].shape == (2, 3)
    assert model.threads == [threading.get_ident()]


def test_a_lone_call_that_fails_still_passes_the_lead_to_those_queued_behind_it():
    class FailsFirst(GatedModel):
        def predict(self, inputs):
            outputs = super().predict(inputs)
            if len(self.calls) == 1:
                raise RuntimeError("the runtime broke")
            return outputs

    model = FailsFirst()
    _, batcher = make_batcher(model)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        first, rest = queue_behind_a_running_call(pool, batcher, model, [(1, 2.0), (1, 3.0)])
        model.gate.set()
        with pytest.raises(RuntimeError, match="the runtime broke"):
            first.result()
        assert [future.result()["y"].tolist() for future in rest] == [[[4.0] * 3], [[6.0] * 3]]
    assert model.calls == [1, 2]
    assert not batcher._leading and batcher._waiting == 0
    assert submit_later(batcher, 1, 5.0)["y"].tolist() == [[10.0] * 3]  # the worker still serves


def test_the_lead_passes_to_the_oldest_waiting_request():
    model = GatedModel()
    _, batcher = make_batcher(model, max_batch_size=5)
    callers = {}

    def call(rows, value):
        callers[value] = threading.get_ident()
        return submit_later(batcher, rows, value)

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        first = pool.submit(call, 1, 0.0)
        assert model.entered.wait(5)
        second = pool.submit(call, 3, 1.0)
        wait_until(lambda: batcher._waiting == 1)
        third = pool.submit(call, 3, 2.0)  # 3 + 3 rows do not fit one batch of 5
        wait_until(lambda: batcher._waiting == 2)
        model.gate.set()
        for value, future in enumerate((first, second, third)):
            assert future.result()["y"].tolist() == [[2.0 * value] * 3] * (1 if value == 0 else 3)
    assert model.calls == [1, 3, 3]
    # Each batch ran in the thread of a request it answered: no thread ran a batch
    # that was not its own, and none was woken only to pass work along.
    assert model.threads == [callers[0.0], callers[1.0], callers[2.0]]
    assert batcher._waiting == 0 and not batcher._leading


class CostlyModel:
    """A model whose every call advances a clock by ``cost(rows)`` seconds."""

    def __init__(self, cost):
        self.cost = cost
        self.now = 0.0
        self.sizes: list[int] = []

    def clock(self) -> float:
        return self.now

    def predict(self, inputs):
        rows = len(inputs["pixels"])
        self.sizes.append(rows)
        self.now += self.cost(rows)
        return {"probabilities": np.zeros((rows, 10), "float32")}


@pytest.mark.parametrize("cost, expected", [
    (lambda rows: 100e-6 + 1e-6 * rows, 64),  # a fixed cost per call: batching pays up to the limit
    (lambda rows: 2e-3 * rows, 1),  # nothing shared between rows: a batch of 2 gains nothing
    (lambda rows: 1e-3 + 1e-4 * rows if rows <= 8 else 1e-3 * rows, 8),  # rows get dearer past 8
])
def test_the_measured_batch_size_is_the_last_that_still_pays(cost, expected):
    model = CostlyModel(cost)
    assert fastest_batch_size(model.predict, DIGITS_SIGNATURE, limit=64, clock=model.clock) == expected
    assert max(model.sizes) <= min(64, 2 * expected)  # never tries what it need not


def test_the_measured_batch_size_never_exceeds_the_limit():
    model = CostlyModel(lambda rows: 1e-3)
    assert fastest_batch_size(model.predict, DIGITS_SIGNATURE, limit=20, clock=model.clock) == 16


def test_measuring_a_slow_model_stays_within_its_budget():
    # 0.3 s a row and still gaining from batching: it stops doubling where the next
    # size would take the worker's start past the budget.
    model = CostlyModel(lambda rows: 0.5 + 0.3 * rows)
    chosen = fastest_batch_size(model.predict, DIGITS_SIGNATURE, limit=64, budget_seconds=10.0, clock=model.clock)
    assert chosen == 2
    assert model.now <= 10.0
