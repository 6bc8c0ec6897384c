"""The systems `make bench` compares Keras Fleet with, run in the same nginx + gunicorn.

    gunicorn -c deploy/gunicorn.conf.py --pythonpath scripts 'bench_apps:floor()'
    gunicorn -c deploy/gunicorn.conf.py --pythonpath scripts 'bench_apps:naive()'

floor: Flask-RESTful answering a constant: what the HTTP stack alone can carry.
naive: what the usual deployment guides show: Flask-RESTful calling model.predict
       on each request's body. Both read MODEL_PATH like the real app.
"""

from __future__ import annotations

import io
import os

import numpy as np
from flask import Flask, request
from flask_restful import Api, Resource


def floor() -> Flask:
    """A predict endpoint that reads the body and answers a constant: no model at all."""
    answer = {"predictions": [[0.1] * 10]}

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


def _app(resource) -> Flask:
    app = Flask(__name__)
    api = Api(app)
    api.add_resource(resource, "/predict", "/v1/models/<name>:predict")

    @app.get("/healthz/ready")
    def ready():
        return {"status": "ready"}

    return app
