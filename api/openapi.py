"""The OpenAPI 3 document of the API, served at /openapi.json.

Built from the served model's signature, so the request schema describes the very
instances this server takes (names, shapes, dtypes); clients and fuzzers get exact
types. tests/test_openapi.py keeps its paths equal to the registered routes.
"""

from __future__ import annotations

import numpy as np

from api.model import Signature, TensorInfo

ERRORS = {
    "400": "The body cannot be read as the model's inputs; `error` says what to fix.",
    "401": "An API key is needed (when API keys are on).",
    "403": "The API key is not valid.",
    "404": "No such model, version or path.",
    "413": "The body is over MAX_BODY_BYTES.",
    "415": "The Content-Type is not one this endpoint reads.",
    "429": "Rate limited (nginx); see Retry-After.",
    "503": "Not ready, or at capacity; see Retry-After.",
    "504": "The model did not answer in time.",
}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _responses(ok: str, schema: dict, errors: tuple[str, ...] = tuple(ERRORS)) -> dict:
    responses = {"200": {"description": ok, "content": _json(schema)}}
    for code in errors:
        responses[code] = {"description": ERRORS[code], "content": _json({"$ref": "#/components/schemas/Error"})}
    return responses


def tensor_schema(info: TensorInfo, dims: tuple) -> dict:
    """JSON Schema of a nested list of the tensor's dtype with the given dimensions."""
    if info.dtype == "bool":
        schema: dict = {"type": "boolean"}
    elif info.dtype.startswith(("int", "uint")):
        limits = np.iinfo(info.dtype)
        schema = {"type": "integer", "minimum": int(limits.min), "maximum": int(limits.max)}
    else:
        largest = float(np.finfo(info.dtype).max)
        schema = {"type": "number", "minimum": -largest, "maximum": largest}
    for dim in reversed(dims):
        schema = {"type": "array", "items": schema, "minItems": dim or 1, **({"maxItems": dim} if dim else {})}
    return schema


def _request_schema(signature: Signature) -> dict:
    inputs = signature.inputs
    if len(inputs) == 1:
        instance = tensor_schema(inputs[0], inputs[0].instance_shape)
        columns = tensor_schema(inputs[0], (None,) + inputs[0].instance_shape)
    else:
        names = [t.name for t in inputs]
        instance = {"type": "object", "required": names, "additionalProperties": False,
                    "properties": {t.name: tensor_schema(t, t.instance_shape) for t in inputs}}
        columns = {"type": "object", "required": names, "additionalProperties": False,
                   "properties": {t.name: tensor_schema(t, (None,) + t.instance_shape) for t in inputs}}
    return {
        "oneOf": [
            {"type": "object", "required": ["instances"], "additionalProperties": False,
             "properties": {"instances": {"type": "array", "minItems": 1, "items": instance},
                            "signature_name": {"type": "string", "enum": ["serving_default"]}}},
            {"type": "object", "required": ["inputs"], "additionalProperties": False,
             "properties": {"inputs": columns, "signature_name": {"type": "string", "enum": ["serving_default"]}}},
        ]
    }


def build_document(model) -> dict:
    """The whole API as an OpenAPI 3.0 document, for the served model."""
    signature: Signature = model.signature
    name_param = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": [model.name]},
                  "description": "The served model's name (another name is a 404)."}
    version_param = {"name": "version", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": [model.version]},
                     "description": "The served model's version (another version is a 404)."}
    predict_body = {
        "required": True,
        "content": {
            "application/json": {"schema": _request_schema(signature)},
            "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
            "application/x-npz": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    secured = [{"bearer": []}, {}]  # a key when API_KEYS_FILE is set, none otherwise

    def predict(params):
        return {"post": {
            "summary": "Predict (TensorFlow Serving's REST predict)",
            "parameters": params, "requestBody": predict_body, "security": secured,
            "responses": _responses("One prediction per instance, or the columnar outputs.",
                                    {"$ref": "#/components/schemas/Predictions"}),
        }}

    def status(params):
        return {"get": {"summary": "The model's version status", "parameters": params, "security": secured,
                        "responses": _responses("Version status.", {"$ref": "#/components/schemas/Status"},
                                                ("401", "403", "404", "429", "503"))}}

    def metadata(params):
        return {"get": {"summary": "The model's signature", "parameters": params, "security": secured,
                        "responses": _responses("Signature.", {"type": "object", "required": ["model_spec", "metadata"]},
                                                ("401", "403", "404", "429", "503"))}}

    health = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}
    both = [name_param, version_param]
    return {
        "openapi": "3.0.3",
        "info": {"title": "Keras Fleet", "version": "1",
                 "description": "TensorFlow Serving's REST API for one Keras model, plus health checks."},
        "paths": {
            "/v1/models/{name}:predict": predict([name_param]),
            "/v1/models/{name}/versions/{version}:predict": predict(both),
            "/predict": predict([]),
            "/v1/models/{name}": status([name_param]),
            "/v1/models/{name}/versions/{version}": status(both),
            "/v1/models/{name}/metadata": metadata([name_param]),
            "/v1/models/{name}/versions/{version}/metadata": metadata(both),
            "/healthz/live": {"get": {"summary": "200 while the process runs",
                                      "responses": _responses("Alive.", health, ("429",))}},
            "/healthz/ready": {"get": {"summary": "200 once the model is loaded and warm, else 503",
                                       "responses": _responses("Ready.", health, ("429", "503"))}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": _responses("OpenAPI 3 document.", {"type": "object"}, ("429",))}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                "Predictions": {"type": "object", "minProperties": 1, "maxProperties": 1,
                                "properties": {"predictions": {"type": "array"}, "outputs": {}}},
                "Status": {"type": "object", "required": ["model_version_status"],
                           "properties": {"model_version_status": {"type": "array", "items": {
                               "type": "object", "required": ["version", "state"],
                               "properties": {"version": {"type": "string"}, "state": {"type": "string"}}}}}},
            },
        },
    }
