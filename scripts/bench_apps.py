"""The systems `make bench` compares Keras Fleet with, run in the same nginx + gunicorn.

    gunicorn -c deploy/gunicorn.conf.py --pythonpath scripts 'bench_apps:floor()'
    gunicorn -c deploy/gunicorn.conf.py --pythonpath scripts 'bench_apps:naive()'

floor: Flask-RESTful answering a constant: what the HTTP stack alone can carry.
naive: what the usual deployment guides show: Flask-RESTful calling model.predict
       on each request's body. Both read MODEL_PATH like the real app.
minimal: the least a model server can do on this stack: JSON instances (or an npy
       array) to an array, the model as Keras Fleet runs it, the answer as JSON;
       nothing checked, joined, counted or logged (`make bench`'s image rows,
       scripts/bench_parts.py).
fleet_without('model,batcher,telemetry'): Keras Fleet with parts of its work taken
       out, to measure what each costs (scripts/bench_parts.py); never served.
floor_plus('parse'): the floor doing one part of the fleet's work besides (FLOOR_PARTS),
       to price that part over the whole stack, side by side with the floor:
       scripts/bench_ab.py floor "bench_apps:floor_plus('parse')"
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import Callable

import numpy as np
from flask import Flask, request
from flask_restful import Api, Resource


# What the floor answers every prediction with (floor_plus too).
FLOOR_ANSWER = {"predictions": [[0.1] * 10]}


def floor() -> Flask:
    """A predict endpoint that reads the body and answers a constant: no model at all."""
    answer = FLOOR_ANSWER

    class Constant(Resource):
        def post(self):
            request.get_data()
            return answer

    return _app(Constant)


def naive() -> Flask:
    """A predict endpoint calling model.predict per request, as most tutorials do."""
    import keras

    model = keras.saving.load_model(os.environ["MODEL_PATH"], compile=False)  # noqa: STYLE3, a guide's code

    class Predict(Resource):
        def post(self):
            if request.mimetype == "application/x-npy":
                batch = np.load(io.BytesIO(request.get_data()), allow_pickle=False)
            else:
                batch = np.array(request.get_json()["instances"], dtype="float32")
            return {"predictions": model.predict(batch, verbose=0).tolist()}

    return _app(Predict)


def minimal() -> Flask:
    """A predict endpoint doing only what any model server must: parse, call the model, answer
    (for a model of one input)."""
    import orjson
    from flask import Response

    from api.binary import read_npy  # a view of the body, its header read once per shape: the cheapest read

    model = _served_model("minimal")
    (name,), output = [info.name for info in model.signature.inputs], model.signature.outputs[0].name

    class Predict(Resource):
        def post(self):
            if request.mimetype == "application/x-npy":  # the benchmark's image bodies, float32 or uint8
                batch = read_npy(request.get_data()).astype(np.float32, copy=False)
            else:
                batch = np.asarray(orjson.loads(request.get_data())["instances"], dtype=np.float32)
            answer = {"predictions": model.predict({name: batch})[output]}
            return Response(orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY), content_type="application/json")

    return _app(Predict)


# What fleet_without can take out of Keras Fleet.
PARTS = ("model", "batcher", "telemetry")


def fleet_without(parts: str, patch: Callable = setattr) -> Flask:
    """Keras Fleet (the app, as api.wsgi builds it) with ``parts``, a comma-separated
    subset of PARTS, taken out:

    model      the model is called once; every request gets copies of that answer
    batcher    each request calls the model in its own thread: no joining, no hand-off
    telemetry  no per-request metrics or log line

    ``patch`` makes the replacements (tests pass pytest's monkeypatch.setattr, which
    undoes them).
    """
    from api import app as fleet_app, batching, model as served, telemetry

    skipped = {part for part in parts.split(",") if part}
    if skipped - set(PARTS):
        raise ValueError(f"unknown parts {sorted(skipped - set(PARTS))}; choose among {', '.join(PARTS)}")
    if "model" in skipped:
        call_model = served.ServedModel.predict

        def first_answer_again(self, inputs):
            if not hasattr(self, "bench_answer"):
                self.bench_answer = call_model(self, served.zeros_feed(self.signature.inputs, rows=1))
            rows = len(next(iter(inputs.values())))
            return {name: np.repeat(answer, rows, axis=0) for name, answer in self.bench_answer.items()}

        patch(served.ServedModel, "predict", first_answer_again)
    if "batcher" in skipped:
        class Unbatched(batching.Batcher):
            def submit(self, inputs, deadline):
                return self._call([batching._Pending(inputs, len(next(iter(inputs.values()))), deadline)])

        patch(fleet_app, "Batcher", Unbatched)
    if "telemetry" in skipped:
        patch(telemetry.RequestTelemetry, "_record", lambda self, environ, endpoint, status, elapsed: None)
    return fleet_app.create_app()


def _floor_parts() -> dict[str, Callable[[], Callable[[bytes], object]]]:
    """FLOOR_PARTS: each part's name -> a builder of its work on a request body."""

    def parse():
        from api.validation import parse_predict_request

        model = _served_model()
        return lambda body: parse_predict_request(body, "application/json", model.signature, 1024)

    def model():
        from api.model import zeros_feed

        served = _served_model()
        feed = zeros_feed(served.signature.inputs, rows=1)
        return lambda body: served.predict(feed)

    def hashed(size: int):
        data = b"x" * size  # hashlib lets go of the GIL from 2048 bytes on, keeps it below
        return lambda: lambda body: hashlib.sha256(data).digest()

    numbers = range(1700)  # about 10 us of the interpreter's tightest loop here
    return {
        "parse": parse,  # the fleet's JSON parsing and input checks of the body
        "model": model,  # a one-row model call, as the fleet makes it
        "python": lambda: lambda body: sum(numbers),
        "hash-keeps-gil": hashed(2047),
        "hash-releases-gil": hashed(2048),
    }


_PARTS = _floor_parts()
FLOOR_PARTS = tuple(_PARTS)


def floor_plus(part: str) -> Flask:
    """The floor, doing one part of FLOOR_PARTS on each request's body besides."""
    if part not in _PARTS:
        raise ValueError(f"unknown part {part!r}; choose among {', '.join(FLOOR_PARTS)}")
    work = _PARTS[part]()
    answer = FLOOR_ANSWER

    class ConstantAfterWork(Resource):
        def post(self):
            work(request.get_data())
            return answer

    return _app(ConstantAfterWork)


def _served_model(name: str = "floor_plus"):
    """MODEL_PATH loaded as the fleet loads it, with one thread (a worker's share here)."""
    from api.model import ServedModel, configure_tensorflow_threads

    configure_tensorflow_threads(1, 1)
    model = ServedModel(os.environ["MODEL_PATH"], name, threads=1)
    model.load()
    return model


def _app(resource) -> Flask:
    app = Flask(__name__)
    api = Api(app)
    api.add_resource(resource, "/predict", "/v1/models/<name>:predict")

    @app.get("/healthz/ready")
    def ready():
        return {"status": "ready"}

    return app
