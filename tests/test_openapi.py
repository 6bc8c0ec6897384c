"""The OpenAPI document is served and names exactly the routes the app has."""

from __future__ import annotations

import re

import pytest

from api.openapi import tensor_schema
from api.model import TensorInfo

# Served by nginx on the monitoring port only, so not part of the public API document.
NOT_PUBLIC = {("/metrics", "get")}


def registered_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z_]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    return routes


def test_document_lists_exactly_the_registered_routes(client):
    document = client.get("/openapi.json").get_json()
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == registered_routes(client.application) - NOT_PUBLIC


def test_document_is_valid_openapi_3(client):
    from openapi_spec_validator import validate

    document = client.get("/openapi.json").get_json()
    validate(document)
    assert document["openapi"].startswith("3.")


def test_request_schema_follows_the_model_signature(multi_client):
    document = multi_client.get("/openapi.json").get_json()
    schema = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    row = schema["oneOf"][0]["properties"]["instances"]["items"]
    assert row["required"] == ["features", "ids"]
    assert row["properties"]["ids"] == {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}
    features = row["properties"]["features"]
    assert (features["minItems"], features["maxItems"], features["items"]["maximum"]) == (3, 3, float(3.4028234663852886e38))


@pytest.mark.parametrize(
    "dtype, dims, expected",
    [("bool", (), {"type": "boolean"}),
     ("uint8", (2,), {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}, "minItems": 2, "maxItems": 2}),
     ("float16", (None,), {"type": "array", "items": {"type": "number", "minimum": -65504.0, "maximum": 65504.0}, "minItems": 1})],
)
def test_tensor_schema(dtype, dims, expected):
    assert tensor_schema(TensorInfo("x", (None,) + dims, dtype), dims) == expected
