"""EncodedJSON: answered straight through WSGI, yet a whole werkzeug Response when read."""

from __future__ import annotations

import numpy as np
import orjson
from werkzeug.test import run_wsgi_app

from api.responses import EncodedJSON, json_response

BODY = b'{"predictions":[[0.5,0.25]]}'


def call(response, method="POST"):
    """The status, headers and body a WSGI server gets from ``response``."""
    captured = {}

    def start_response(status, headers, exc_info=None):
        captured.update(status=status, headers=headers)

    body = b"".join(response({"REQUEST_METHOD": method}, start_response))
    return captured["status"], captured["headers"], body


def test_it_hands_the_server_its_status_type_length_and_body():
    status, headers, body = call(EncodedJSON(BODY))
    assert status == "200 OK"
    assert headers == [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]
    assert body == BODY


def test_other_statuses_get_their_reason_phrase():
    assert call(EncodedJSON(b'{"error":"x"}', status=429))[0] == "429 TOO MANY REQUESTS"


def test_a_head_request_gets_the_headers_without_the_body():
    status, headers, body = call(EncodedJSON(BODY), method="HEAD")
    assert (status, body) == ("200 OK", b"")
    assert ("Content-Length", str(len(BODY))) in headers


def test_reading_werkzeugs_attributes_makes_it_a_whole_response():
    response = EncodedJSON(BODY, status=201)
    assert response.status_code == 201
    assert response.mimetype == "application/json"
    assert response.get_data() == BODY
    assert response.headers["Content-Length"] == str(len(BODY))


def test_a_header_added_after_it_is_made_is_sent():
    response = EncodedJSON(BODY)
    response.headers["Retry-After"] = "1"
    status, headers, body = call(response)
    assert ("Retry-After", "1") in headers
    assert (status, body) == ("200 OK", BODY)
    # werkzeug's own WSGI handling agrees.
    app_iter, status, headers = run_wsgi_app(EncodedJSON(BODY), {"REQUEST_METHOD": "GET"})
    assert (status, b"".join(app_iter), headers["Content-Type"]) == ("200 OK", BODY, "application/json")


def test_a_missing_attribute_is_still_an_attribute_error():
    response = EncodedJSON(BODY)
    assert not hasattr(response, "no_such_attribute")
    assert call(response)[2] == BODY  # and it stays whole, answering as werkzeug's would


def test_json_response_encodes_numpy_arrays_and_takes_headers():
    response = json_response({"outputs": np.array([[1.5, 2.0]], dtype=np.float32)}, 200, {"X-Model-Version": "3"})
    status, headers, body = call(response)
    assert orjson.loads(body) == {"outputs": [[1.5, 2.0]]}
    assert ("X-Model-Version", "3") in headers


def test_json_response_takes_headers_as_a_dict_or_as_pairs():
    for headers in ({"Retry-After": "1"}, [("Retry-After", "1")]):
        assert ("Retry-After", "1") in call(json_response({"a": 1}, 503, headers))[1]
