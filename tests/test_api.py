"""The HTTP contract, in process, over fake models: every endpoint and every error class."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest

from api.app import create_app
from api.errors import InvalidInput
from tests.conftest import TEST_CONFIG
from tests.fakes import REJECTED_VALUE, BrokenModel, FakeModel

IMAGE = [[float(row * 8 + col) for col in range(8)] for row in range(8)]  # mean 31.5
BLANK = [[0.0] * 8 for _ in range(8)]


def post(client, path, body, content_type="application/json", **kwargs):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(path, data=data, content_type=content_type, **kwargs)


def assert_error(response, status, words):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/json"
    message = response.get_json()["error"]
    assert isinstance(message, str)
    for word in words:
        assert word.lower() in message.lower(), message
    return message


# --- the happy paths -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/models/digits:predict", "/predict", "/v1/models/digits/versions/1:predict"])
def test_row_format_returns_one_prediction_per_instance(client, path):
    response = post(client, path, {"instances": [IMAGE, BLANK]})
    assert response.status_code == 200
    predictions = response.get_json()["predictions"]
    assert np.allclose(predictions, [[31.5] * 10, [0.0] * 10])


def test_columnar_format_returns_outputs(client):
    response = post(client, "/v1/models/digits:predict", {"inputs": [IMAGE]})
    assert response.status_code == 200
    assert np.allclose(response.get_json()["outputs"], [[31.5] * 10])


def test_named_input_in_row_format_of_single_input_model(client, model):
    response = post(client, "/predict", {"instances": [{"pixels": IMAGE}]})
    assert response.status_code == 200
    assert model.calls[-1]["pixels"].dtype == np.float32


def test_multi_input_row_format_answers_objects_per_row(multi_client):
    body = {"instances": [{"features": [1, 2, 3], "ids": 10}, {"features": [0, 0, 1], "ids": 0}]}
    response = post(multi_client, "/v1/models/multi:predict", body)
    assert response.status_code == 200
    assert response.get_json() == {
        "predictions": [{"total": 16.0, "doubled": [2.0, 4.0, 6.0]}, {"total": 1.0, "doubled": [0.0, 0.0, 2.0]}]
    }


def test_multi_input_columnar_format_answers_named_outputs(multi_client, multi_model):
    body = {"inputs": {"features": [[1, 2, 3], [0, 0, 1]], "ids": [10, 0]}}
    response = post(multi_client, "/v1/models/multi:predict", body)
    assert response.status_code == 200
    assert response.get_json() == {"outputs": {"total": [16.0, 1.0], "doubled": [[2.0, 4.0, 6.0], [0.0, 0.0, 2.0]]}}
    assert multi_model.calls[-1]["ids"].dtype == np.int32


def test_content_type_with_charset_is_json(client):
    response = post(client, "/predict", {"instances": [IMAGE]}, content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_missing_content_type_is_read_as_json(client):
    response = client.post("/predict", data=orjson.dumps({"instances": [IMAGE]}))
    assert response.status_code == 200


def test_model_status_in_tf_serving_format(client):
    response = client.get("/v1/models/digits")
    assert response.status_code == 200
    assert response.get_json() == {
        "model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    }


def test_model_status_while_loading():
    client = create_app(TEST_CONFIG, model=FakeModel(ready=False)).test_client()
    assert client.get("/v1/models/digits").get_json()["model_version_status"][0]["state"] == "LOADING"


def test_metadata_describes_signature(multi_client):
    response = multi_client.get("/v1/models/multi/metadata")
    assert response.status_code == 200
    body = response.get_json()
    assert body["model_spec"] == {"name": "multi", "signature_name": "", "version": "7"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["features"]["dtype"] == "DT_FLOAT"
    assert signature["inputs"]["ids"]["dtype"] == "DT_INT32"
    assert [d["size"] for d in signature["inputs"]["features"]["tensor_shape"]["dim"]] == ["-1", "3"]
    assert set(signature["outputs"]) == {"total", "doubled"}
    assert signature["method_name"] == "tensorflow/serving/predict"


def test_health_endpoints(client):
    assert client.get("/healthz/live").status_code == 200
    ready = client.get("/healthz/ready")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "model": "digits", "version": "1"}


# --- headers every response carries ------------------------------------------------------


@pytest.fixture
def logging_client(model):
    """An app that writes its own request lines (REQUEST_LOG=app), so stamps the request
    id itself; behind nginx (the default), nginx does (tests/test_e2e.py)."""
    return create_app({**TEST_CONFIG, "REQUEST_LOG": "app"}, model=model).test_client()


def test_request_id_is_generated_when_absent(logging_client):
    first = logging_client.get("/healthz/live").headers["X-Request-ID"]
    second = logging_client.get("/healthz/live").headers["X-Request-ID"]
    assert first and second and first != second


def test_request_id_from_client_is_echoed_on_errors_too(logging_client):
    response = post(logging_client, "/predict", b"{", headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 400
    assert response.headers["X-Request-ID"] == "abc-123"


def test_hostile_request_id_is_replaced(logging_client):
    response = logging_client.get("/healthz/live", headers={"X-Request-ID": 'x" \\n{"forged": 1}'})
    assert response.headers["X-Request-ID"] != 'x" \\n{"forged": 1}'
    assert len(response.headers["X-Request-ID"]) == 32


def test_model_version_header(multi_client):
    assert multi_client.get("/healthz/live").headers["X-Model-Version"] == "7"


# --- every error class ----------------------------------------------------------------

DEEP = b'{"instances": ' + b"[" * 2000 + b"]" * 2000 + b"}"
TOO_MANY_DIMS = b'{"instances": ' + b"[" * 80 + b"1" + b"]" * 80 + b"}"


@pytest.mark.parametrize(
    "body, words",
    [
        (b"{not json", ["not valid json"]),
        (b"", ["empty"]),
        (b"\xff\xfe\x00", ["not valid json"]),
        (b"[1, 2]", ["json object"]),
        (b'"instances"', ["json object"]),
        ({"instances": [IMAGE], "inputs": [IMAGE]}, ["exactly one"]),
        ({}, ["exactly one"]),
        ({"instance": [IMAGE]}, ["unknown key 'instance'"]),
        ({"instances": []}, ["non-empty"]),
        ({"instances": IMAGE[0][0]}, ["non-empty list"]),
        ({"inputs": []}, ["non-empty"]),
        ({"instances": [[1, 2, 3]]}, ["shape (8, 8)", "got (3,)"]),
        ({"instances": [IMAGE, IMAGE[:4]]}, ["uneven or too deep nesting"]),
        ({"instances": [[["a"] * 8] * 8]}, ["numbers", "strings"]),
        ({"instances": [[["1.5"] * 8] * 8]}, ["strings"]),
        ({"instances": [[[None] * 8] * 8]}, ["numbers"]),
        ({"instances": [[[True] * 8] * 8]}, ["booleans"]),
        ({"instances": [[[{}] * 8] * 8]}, ["numbers"]),
        (b'{"instances": [NaN]}', ["nan and infinity are not allowed"]),
        (b'{"instances": [Infinity]}', ["nan and infinity are not allowed"]),
        (b'{"instances": [1e400]}', ["not valid json"]),
        ({"instances": [[[1e39] * 8] * 8]}, ["finite", "float32"]),
        (b'{"instances": [[' + b",".join([b"[" + b",".join([b"1" + b"0" * 40] * 8) + b"]"] * 8) + b"]]}", ["range of float32"]),
        ({"instances": [{"pixel": IMAGE}]}, ["unknown input 'pixel'", "pixels"]),
        ({"instances": [IMAGE, {"pixels": IMAGE}]}, ["mix"]),
        ({"inputs": {"pixels": [IMAGE], "extra": [1]}}, ["unknown input 'extra'"]),
        ({"instances": [BLANK] * 17}, ["too many instances", "17 > 16"]),
        ({"inputs": [BLANK] * 17}, ["too many instances"]),
        ({"instances": [IMAGE], "signature_name": "other"}, ["signature_name"]),
        (DEEP, ["not valid json"]),
        (TOO_MANY_DIMS, ["uneven or too deep nesting"]),
    ],
)
def test_bad_bodies_get_400_naming_the_problem(client, model, body, words):
    response = post(client, "/v1/models/digits:predict", body)
    assert_error(response, 400, words)
    assert model.calls == []


@pytest.mark.parametrize(
    "body, words",
    [
        ({"instances": [[1, 2, 3]]}, ["object with the inputs"]),
        ({"instances": [{"features": [1, 2, 3]}]}, ["missing input 'ids'"]),
        ({"inputs": [[1, 2, 3]]}, ["named inputs"]),
        ({"inputs": {"features": [[1, 2, 3]], "ids": [1, 2]}}, ["same number of instances"]),
        ({"inputs": {"features": [[1, 2, 3]], "ids": [1.5]}}, ["integers"]),
        ({"inputs": {"features": [[1, 2, 3]], "ids": [2**40]}}, ["range of int32"]),
        ({"inputs": {"features": [[1, 2, 3]], "ids": [REJECTED_VALUE]}}, ["model rejected", "not in [0, 100)"]),
    ],
)
def test_bad_named_inputs_get_400(multi_client, body, words):
    assert_error(post(multi_client, "/v1/models/multi:predict", body), 400, words)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_wrong_content_type_gets_415(client, content_type):
    response = post(client, "/predict", {"instances": [IMAGE]}, content_type=content_type)
    assert_error(response, 415, ["content-type", "application/json"])


@pytest.mark.parametrize(
    "path, words",
    [
        ("/v1/models/other:predict", ["no model named 'other'", "digits"]),
        ("/v1/models/digits/versions/2:predict", ["no version '2'"]),
        ("/v2/predict", ["no such path"]),
    ],
)
def test_unknown_model_or_path_gets_404(client, path, words):
    assert_error(post(client, path, {"instances": [IMAGE]}), 404, words)


@pytest.mark.parametrize("path", ["/v1/models/other", "/v1/models/other/metadata", "/v1/models/digits/versions/9"])
def test_unknown_model_status_gets_404(client, path):
    assert_error(client.get(path), 404, ["no model" if "other" in path else "no version"])


@pytest.mark.parametrize(
    "method, path",
    [("get", "/v1/models/digits:predict"), ("put", "/predict"), ("post", "/healthz/ready"), ("delete", "/v1/models/digits")],
)
def test_wrong_method_gets_405_with_allow(client, method, path):
    response = getattr(client, method)(path)
    assert_error(response, 405, ["method not allowed"])
    assert response.headers["Allow"]


def test_body_over_limit_gets_413(client, model):
    body = b'{"instances": [' + b"0," * (TEST_CONFIG["MAX_BODY_BYTES"] // 2) + b"0]}"
    assert_error(post(client, "/predict", body), 413, ["over the limit of 65536 bytes"])
    assert model.calls == []


def test_a_body_shorter_than_its_content_length_gets_400(client, model):
    # The client left before sending all it announced: nothing to predict from.
    body = orjson.dumps({"instances": [IMAGE]})
    response = client.post("/predict", input_stream=io.BytesIO(body), content_type="application/json",
                           environ_overrides={"CONTENT_LENGTH": str(len(body) + 10)})
    assert_error(response, 400, ["body ended after", "Content-Length"])
    assert model.calls == []


@pytest.mark.parametrize("length", [None, "", "ten", "-5"])
def test_a_body_without_a_usable_content_length_is_read_to_its_end(client, model, length):
    # Chunked (no Content-Length; gunicorn marks the stream as ending), or a length
    # that is not a number: read as werkzeug reads it, to the end of the stream.
    body = orjson.dumps({"instances": [IMAGE]})
    overrides = {"wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked"}
    if length is not None:
        overrides["CONTENT_LENGTH"] = length
    response = client.post("/predict", input_stream=io.BytesIO(body), content_type="application/json",
                           environ_overrides=overrides)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert np.allclose(response.get_json()["predictions"], [[31.5] * 10])


def test_not_ready_gets_503_with_retry_after():
    client = create_app(TEST_CONFIG, model=FakeModel(ready=False)).test_client()
    for response in (client.get("/healthz/ready"), post(client, "/predict", {"instances": [IMAGE]})):
        assert_error(response, 503, ["not ready"])
        assert response.headers["Retry-After"] == "1"
    assert client.get("/healthz/live").status_code == 200


def test_server_fault_is_a_json_500_and_the_app_keeps_serving():
    client = create_app(TEST_CONFIG, model=BrokenModel()).test_client()
    assert_error(post(client, "/predict", {"instances": [IMAGE]}), 500, ["internal server error"])
    assert client.get("/healthz/live").status_code == 200


# --- binary tensors -----------------------------------------------------------------------


def npy(array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npz(compressed=False, **arrays) -> bytes:
    import io

    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("dtype", ["float32", "float64", "int16", "uint8"])
def test_npy_body_predicts_like_json(client, model, dtype):
    images = np.array([IMAGE, BLANK], dtype=dtype)
    response = post(client, "/predict", npy(images), content_type="application/x-npy")
    assert response.status_code == 200, response.get_json()
    assert np.allclose(response.get_json()["predictions"], [[31.5] * 10, [0.0] * 10])
    assert model.calls[-1]["pixels"].dtype == np.float32


def test_fortran_ordered_npy_keeps_its_values(client, model):
    images = np.asfortranarray(np.array([IMAGE, BLANK], dtype="float32"))
    assert post(client, "/predict", npy(images), content_type="application/x-npy").status_code == 200
    np.testing.assert_array_equal(model.calls[-1]["pixels"], np.array([IMAGE, BLANK], "float32"))


def test_npy_headers_are_read_one_at_a_time(monkeypatch):
    # numpy parses a header with ast.literal_eval, which CPython 3.11 cannot run in two
    # threads at once (python/cpython#106905: a valid request failed with a 500 under
    # load). A header reader that dwells inside proves the threads never overlap in it.
    import threading
    import time

    from api import binary

    real = binary.npy_format.read_array_header_1_0
    inside, most = [0], [0]

    def dwelling(stream):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.002)
        inside[0] -= 1
        return real(stream)

    monkeypatch.setattr(binary.npy_format, "read_array_header_1_0", dwelling)
    monkeypatch.setattr(binary, "_HEADERS", {})
    # Every body a shape of its own: a header already read would not be read again.
    bodies = [[npy(np.zeros((thread + 1, row + 1), "float32")) for row in range(10)] for thread in range(8)]
    threads = [threading.Thread(target=lambda mine: [binary.read_npy(body) for body in mine], args=(mine,))
               for mine in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most[0] == 1
    assert len(binary._HEADERS) == min(80, binary.HEADER_CACHE_SIZE)


def test_npy_header_read_once_then_remembered_and_still_checked(monkeypatch):
    from api import binary

    parsed = []
    real = binary.npy_format.read_array_header_1_0
    monkeypatch.setattr(binary.npy_format, "read_array_header_1_0", lambda stream: parsed.append(1) or real(stream))
    monkeypatch.setattr(binary, "_HEADERS", {})
    first, second = np.zeros((2, 3), "float32"), np.arange(6, dtype="float32").reshape(2, 3)
    np.testing.assert_array_equal(binary.read_npy(npy(first)), first)
    np.testing.assert_array_equal(binary.read_npy(npy(second)), second)
    assert len(parsed) == 1
    # A known header does not vouch for the body: a short one is still refused.
    with pytest.raises(InvalidInput, match="truncated or padded"):
        binary.read_npy(npy(second)[:-4])
    assert binary.read_npy(npy(np.zeros((3, 3), "float32"))).shape == (3, 3)
    assert len(parsed) == 2


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_body_feeds_named_inputs(multi_client, compressed):
    body = npz(compressed, features=np.array([[1, 2, 3]], "float32"), ids=np.array([10], "int32"))
    response = post(multi_client, "/v1/models/multi:predict", body, content_type="application/x-npz")
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {"predictions": [{"total": 16.0, "doubled": [2.0, 4.0, 6.0]}]}


def truncated_npy():
    return npy(np.zeros((2, 8, 8), "float32"))[:-10]


def lying_header():
    # A header declaring a huge shape over a few bytes: must be refused before any allocation.
    raw = npy(np.zeros((1, 8, 8), "float32"))
    return raw.replace(b"'shape': (1, 8, 8), ", b"'shape': (99999999, 8, 8),")


@pytest.mark.parametrize(
    "body, content_type, words",
    [
        (lambda: npy(np.array([{"evil": 1}], dtype=object)), "application/x-npy", ["python objects", "pickle"]),
        (truncated_npy, "application/x-npy", ["truncated"]),
        (lying_header, "application/x-npy", ["truncated or padded"]),
        (lambda: b"not an npy file", "application/x-npy", ["not a valid .npy"]),
        (lambda: b"", "application/x-npy", ["not a valid .npy"]),
        (lambda: npy(np.zeros((2, 8, 7), "float32")), "application/x-npy", ["shape (8, 8)", "got (8, 7)"]),
        (lambda: npy(np.zeros((8, 8), "float32")), "application/x-npy", ["shape (8, 8)"]),
        (lambda: npy(np.zeros((0, 8, 8), "float32")), "application/x-npy", ["at least one instance"]),
        (lambda: npy(np.float32(1.0)), "application/x-npy", ["at least one instance"]),
        (lambda: npy(np.full((1, 8, 8), np.nan, "float32")), "application/x-npy", ["finite"]),
        (lambda: npy(np.full((1, 8, 8), 1e300)), "application/x-npy", ["range of float32"]),
        (lambda: npy(np.zeros((1, 8, 8), "complex64")), "application/x-npy", ["complex"]),
        (lambda: npy(np.array([[["a"] * 8] * 8])), "application/x-npy", ["strings"]),
        (lambda: npy(np.zeros((1, 8, 8), bool)), "application/x-npy", ["booleans"]),
        (lambda: npy(np.zeros((17, 8, 8), "float32")), "application/x-npy", ["too many instances"]),
        (lambda: npz(pixels=np.zeros((1, 8, 8), "float32")), "application/x-npy", ["not a valid .npy"]),
        (lambda: b"PK\x03\x04garbage", "application/x-npz", ["not a valid zip"]),
        (lambda: npz(pixel=np.zeros((1, 8, 8), "float32")), "application/x-npz", ["unknown input 'pixel'"]),
        (lambda: npz(compressed=True, pixels=np.zeros((300, 8, 8), "float32")), "application/x-npz", ["inflates"]),
    ],
)
def test_bad_binary_bodies_get_400(client, model, body, content_type, words):
    assert_error(post(client, "/predict", body(), content_type=content_type), 400, words)
    assert model.calls == []


@pytest.mark.parametrize(
    "body, words",
    [
        (lambda: npy(np.zeros((1, 3), "float32")), ["named inputs", "application/x-npz"]),
        (lambda: npz(features=np.zeros((1, 3), "float32")), ["missing input 'ids'"]),
        (lambda: npz(features=np.zeros((1, 3), "float32"), ids=np.array([1.5], "float32")), ["integers"]),
        (lambda: npz(features=np.zeros((2, 3), "float32"), ids=np.array([1], "int32")), ["same number"]),
        (lambda: npz(features=np.zeros((1, 3)), ids=np.array([2**40])), ["range of int32"]),
    ],
)
def test_bad_binary_named_inputs_get_400(multi_client, body, words):
    content_type = "application/x-npz" if body().startswith(b"PK") else "application/x-npy"
    assert_error(post(multi_client, "/v1/models/multi:predict", body(), content_type=content_type), 400, words)


# --- overload -------------------------------------------------------------------------------


def test_full_queue_answers_503_with_retry_after_never_500(model):
    client = create_app({**TEST_CONFIG, "BATCH_QUEUE_SIZE": 0}, model=model).test_client()
    response = post(client, "/predict", {"instances": [IMAGE]})
    assert_error(response, 503, ["at capacity"])
    assert response.headers["Retry-After"] == "1"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'keras_fleet_requests_shed_total{model="digits",reason="queue_full"} 1.0' in metrics


def test_request_that_waited_past_its_deadline_is_shed_before_parsing(client, model):
    import time

    stale = f"t={time.time() - 5:.3f}"
    response = post(client, "/predict", b"{not even json", headers={"X-Request-Start": stale})
    assert_error(response, 503, ["deadline"])
    assert response.headers["Retry-After"] == "1"
    assert model.calls == []


def test_a_boolean_among_numbers_is_refused(client, model):
    body = {"inputs": [[[False] + [0.0] * 7] + [[0.0] * 8] * 7]}
    assert_error(post(client, "/predict", body), 400, ["booleans"])
    assert model.calls == []


@pytest.mark.parametrize("dtype, values, accepted", [
    ("float16", np.array([[1000]]), True),
    ("float16", np.array([[70000]]), False),  # an integer too large for a float16
    ("float16", np.array([[70000.0]]), False),
    ("float32", np.array([[np.finfo("float32").max]], "float64"), True),
    ("float32", np.array([[float(np.finfo("float32").max) * (1 + 2**-30)]]), False),  # rounds down to max if cast
    ("float32", np.array([[np.nan]], "float32"), False),
    ("float32", np.array([[-np.inf]], "float64"), False),
    ("float64", np.array([[2**62]]), True),
    ("int8", np.array([[-128, 127]]), True),
    ("int8", np.array([[128]]), False),
])
def test_values_are_checked_against_the_input_dtype_s_range(dtype, values, accepted):
    from api.model import TensorInfo
    from api.validation import conform

    info = TensorInfo("x", (None, values.shape[1]), dtype)
    if accepted:
        cast = conform(values, info)
        assert cast.dtype == np.dtype(dtype) and np.array_equal(cast, values.astype(dtype))
    else:
        with pytest.raises(InvalidInput, match=f"range of {dtype}"):
            conform(values, info)
