"""The load test's own logic, without Locust: signature, payloads, answer checks, SLO verdicts, capacity search.

Payloads are checked against the real API in process, over tiny real Keras models:
what the load test sends must be what a served model accepts.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from api.app import create_app
from api.model import ServedModel
from loadtest.answers import WrongAnswer, check_predictions
from loadtest.capacity_search import UserSearch, capacity_report, evaluate_step, summary_line
from loadtest.metadata import MetadataError, Tensor, parse_metadata
from loadtest.payloads import PayloadSettings, build_bodies, random_batch
from loadtest.slo import Measurement, Slo, judge, verdict_line
from tests import keras_models

SLO = Slo(p95_ms=100, p99_ms=200, max_failure_ratio=0.01)


def metadata(inputs: dict, outputs: dict) -> dict:
    """A metadata document as TF Serving writes it; tensors given as name -> (dtype, dims with batch)."""

    def tensors(spec):
        return {
            name: {"dtype": dtype, "tensor_shape": {"dim": [{"size": str(d)} for d in dims], "unknown_rank": False}}
            for name, (dtype, dims) in spec.items()
        }

    return {"metadata": {"signature_def": {"signature_def": {"serving_default": {
        "inputs": tensors(inputs), "outputs": tensors(outputs)}}}}}


# --- the signature ---------------------------------------------------------------------------


def test_metadata_gives_names_instance_shapes_and_numpy_dtypes():
    signature = parse_metadata(
        metadata({"image": ("DT_FLOAT", [-1, 4, -1]), "ids": ("DT_INT32", [-1, 2])}, {"score": ("DT_FLOAT", [-1, 1])}),
        "ranker",
    )
    assert signature.inputs == (Tensor("image", (4, None), "float32"), Tensor("ids", (2,), "int32"))
    assert signature.outputs == (Tensor("score", (1,), "float32"),)
    assert signature.predict_path == "/v1/models/ranker:predict"


@pytest.mark.parametrize(
    "document, message",
    [
        ({"metadata": {}}, "no 'serving_default' signature"),
        (metadata({"text": ("DT_STRING", [-1])}, {"y": ("DT_FLOAT", [-1])}), "DT_STRING"),
        (metadata({}, {"y": ("DT_FLOAT", [-1])}), "no inputs"),
        (metadata({"x": ("DT_FLOAT", [])}, {"y": ("DT_FLOAT", [-1])}), "no batch dimension"),
    ],
)
def test_unusable_metadata_is_refused_with_the_reason(document, message):
    with pytest.raises(MetadataError, match=message):
        parse_metadata(document, "m")


# --- payloads --------------------------------------------------------------------------------


def test_random_instances_have_each_input_s_shape_dtype_and_a_valid_range():
    inputs = (Tensor("x", (3, None), "float16"), Tensor("ids", (2,), "int64"), Tensor("flag", (), "bool"),
              Tensor("small", (1,), "uint8"))
    settings = PayloadSettings(int_high=300, open_dim=5)
    batch = random_batch(inputs, 4, np.random.default_rng(0), settings)
    assert batch["x"].shape == (4, 3, 5) and batch["x"].dtype == np.float16
    assert batch["ids"].shape == (4, 2) and batch["ids"].dtype == np.int64 and batch["ids"].max() < 300
    assert batch["flag"].shape == (4,) and batch["flag"].dtype == bool
    assert batch["small"].max() <= 255  # int_high is clipped to the dtype


def test_pool_is_bounded_by_count_and_bodies_differ():
    signature = parse_metadata(metadata({"x": ("DT_FLOAT", [-1, 4])}, {"y": ("DT_FLOAT", [-1, 1])}), "m")
    bodies = build_bodies(signature, PayloadSettings(instances=3), pool=5)
    assert len(bodies) == 5 and len({body.data for body in bodies}) == 5
    assert all(body.content_type == "application/json" and body.instances == 3 for body in bodies)


def test_an_unknown_body_format_is_refused():
    signature = parse_metadata(metadata({"x": ("DT_FLOAT", [-1, 4])}, {"y": ("DT_FLOAT", [-1, 1])}), "m")
    with pytest.raises(ValueError, match="npy"):
        build_bodies(signature, PayloadSettings(body_format="npy"), pool=1)


@pytest.fixture(scope="module", params=["single", "multi"])
def real_model_client(request, tmp_path_factory):
    """An in-process app serving a tiny real Keras model: one input and output, or named ones."""
    save = {"single": keras_models.save_single_input, "multi": keras_models.save_multi_input}[request.param]
    model = ServedModel(save(tmp_path_factory.mktemp("model") / f"{request.param}.keras"), request.param)
    model.load()
    return model.name, create_app({"MAX_INSTANCES": 64}, model=model).test_client()


@pytest.mark.parametrize("instances", [1, 5])
def test_bodies_built_from_the_metadata_are_accepted_and_answered_as_checked(real_model_client, instances):
    name, client = real_model_client
    signature = parse_metadata(client.get(f"/v1/models/{name}/metadata").get_json(), name)
    for body in build_bodies(signature, PayloadSettings(instances=instances, seed=instances), pool=3):
        response = client.post(signature.predict_path, data=body.data, content_type=body.content_type)
        assert response.status_code == 200, response.get_json()
        check_predictions(response.get_json(), signature.outputs, instances)


# --- answer checks ---------------------------------------------------------------------------

ONE_OUTPUT = (Tensor("probabilities", (10,), "float32"),)
TWO_OUTPUTS = (Tensor("label", (5,), "float32"), Tensor("score", (None,), "float32"))


def test_a_right_answer_passes():
    check_predictions({"predictions": [[0.1] * 10, [0.2] * 10]}, ONE_OUTPUT, 2)
    check_predictions({"predictions": [{"label": [0] * 5, "score": [1, 2, 3]}]}, TWO_OUTPUTS, 1)


@pytest.mark.parametrize(
    "document, outputs, message",
    [
        ([[0.1] * 10], ONE_OUTPUT, 'not an object with "predictions"'),
        ({"outputs": [[0.1] * 10]}, ONE_OUTPUT, 'not an object with "predictions"'),
        ({"predictions": [[0.1] * 10] * 2}, ONE_OUTPUT, "expected 1 prediction"),
        ({"predictions": {"probabilities": [0.1] * 10}}, ONE_OUTPUT, "expected 1 prediction"),
        ({"predictions": [[0.5, 0.5]]}, ONE_OUTPUT, r"expected shape \(10,\) per prediction, got \(2,\)"),
        ({"predictions": [[[0.1] * 10]]}, ONE_OUTPUT, r"got \(1, 10\)"),
        ({"predictions": [[None] * 10]}, ONE_OUTPUT, "other than numbers"),
        ({"predictions": [["a"] * 10]}, ONE_OUTPUT, "other than numbers"),
        ({"predictions": [[0.1] * 5]}, TWO_OUTPUTS, r"object with the outputs \['label', 'score'\]"),
        ({"predictions": [{"label": [0] * 5}]}, TWO_OUTPUTS, "object with the outputs"),
        ({"predictions": [{"label": [0] * 4, "score": [1]}]}, TWO_OUTPUTS, r"output 'label': expected shape \(5,\)"),
    ],
)
def test_a_wrong_answer_is_named(document, outputs, message):
    with pytest.raises(WrongAnswer, match=message):
        check_predictions(document, outputs, 1)


def test_uneven_predictions_are_a_wrong_answer():
    with pytest.raises(WrongAnswer, match="uneven"):
        check_predictions({"predictions": [[0.1] * 10, [0.1] * 9]}, ONE_OUTPUT, 2)


# --- the SLO verdict -------------------------------------------------------------------------


def test_a_measurement_within_every_threshold_passes():
    measured = Measurement(requests=1000, failures=10, p95_ms=100, p99_ms=150, seconds=10)
    assert judge(SLO, measured) == []
    assert verdict_line(SLO, measured).startswith("SLO PASSED: p95 latency 100 ms <= 100 ms")


@pytest.mark.parametrize(
    "measured, expected",
    [
        (Measurement(1000, 0, 101, 150, 10), "SLO FAILED: p95 latency 101 ms > 100 ms (slo-p95-ms)"),
        (Measurement(1000, 0, 50, 250, 10), "SLO FAILED: p99 latency 250 ms > 200 ms (slo-p99-ms)"),
        (Measurement(1000, 11, 50, 60, 10), "SLO FAILED: failure ratio 0.0110 > 0.01 (slo-failure-ratio)"),
        (Measurement(0, 0, 0, 0, 10), "SLO FAILED: completed requests 0 > none allowed: nothing was measured (requests)"),
        (Measurement(10, 10, 500, 900, 10),
         "SLO FAILED: p95 latency 500 ms > 100 ms (slo-p95-ms); p99 latency 900 ms > 200 ms (slo-p99-ms); "
         "failure ratio 1.0000 > 0.01 (slo-failure-ratio)"),
    ],
)
def test_the_verdict_names_each_missed_threshold_and_its_measured_value(measured, expected):
    assert verdict_line(SLO, measured) == expected


# --- the capacity search ---------------------------------------------------------------------


def run_search(search: UserSearch, capacity: int) -> list[int]:
    """The users of every step against a server that meets the SLO up to `capacity` users."""
    tried, users = [], search.start
    while users is not None:
        tried.append(users)
        users = search.next(users, users <= capacity)
    return tried


def test_the_search_grows_until_a_step_fails_then_bisects():
    search = UserSearch(start=5, growth=2, refinements=4, max_steps=20)
    assert run_search(search, capacity=33) == [5, 10, 20, 40, 30, 35, 32, 33]
    assert search.limit_found and (search.best_pass, search.lowest_fail) == (33, 35)


def test_the_search_stops_at_max_steps_without_a_limit():
    search = UserSearch(start=1, growth=2, refinements=4, max_steps=3)
    assert run_search(search, capacity=1000) == [1, 2, 4]
    assert not search.limit_found


def test_a_failing_first_step_bisects_down_towards_one_user():
    assert run_search(UserSearch(start=8, growth=2, refinements=4, max_steps=20), capacity=2) == [8, 4, 2, 3]


def step(users: int, rps: float, p95: float, failures: int = 0):
    measured = Measurement(requests=int(rps * 10), failures=failures, p95_ms=p95, p99_ms=p95 * 2, seconds=10)
    return evaluate_step(users, 2, measured, SLO, keep_up=0.9, cpu_percent=30)


def test_a_step_that_does_not_keep_up_with_its_offered_rate_is_not_sustained():
    slow = step(users=50, rps=80, p95=20)  # offered 100/s
    assert not slow.passed
    assert slow.as_dict()["missed"] == ["achieved rate 80.0/s < 0.9 x the offered 100/s (capacity-keep-up)"]
    assert step(users=50, rps=95, p95=20).passed


def test_the_report_takes_the_best_passing_step_and_derives_the_alb_target():
    steps = [step(10, 20, 10), step(20, 40, 30), step(40, 80, 150), step(30, 60, 90)]
    report = capacity_report(steps, SLO, headroom=0.7, limit_found=True, context={"model": "digits"})
    assert report["max_sustained_rps"] == 60
    assert (report["p95_ms"], report["p99_ms"]) == (90, 180)
    assert report["recommended_alb_request_count_per_target"] == math.floor(60 * 0.7 * 60) == 2520
    assert report["headroom"] == 0.7 and report["model"] == "digits" and len(report["steps"]) == 4
    assert report["steps"][2]["missed"] == ["p95 latency 150 ms > 100 ms (slo-p95-ms)", "p99 latency 300 ms > 200 ms (slo-p99-ms)"]
    assert summary_line(report, "r.json").startswith("CAPACITY: 60 requests/s sustained within the SLO")


def test_without_a_passing_step_the_report_says_zero_and_the_summary_says_so():
    report = capacity_report([step(10, 20, 500)], SLO, headroom=0.7, limit_found=True, context={})
    assert report["max_sustained_rps"] == 0 and report["recommended_alb_request_count_per_target"] == 0
    assert summary_line(report, "r.json").startswith("CAPACITY NOT FOUND: no step met the SLO")
    interrupted = capacity_report([], SLO, headroom=0.7, limit_found=False, context={})
    assert summary_line(interrupted, "r.json").startswith("CAPACITY NOT FOUND: the run ended before its first step")


def test_a_search_that_never_failed_reports_a_lower_bound():
    report = capacity_report([step(10, 20, 10)], SLO, headroom=0.5, limit_found=False, context={})
    assert "lower bound" in summary_line(report, "r.json")
