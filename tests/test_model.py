"""ServedModel on tiny real Keras models: signature, compiled call, safety, errors."""

from __future__ import annotations

import numpy as np
import pytest

from api.app import create_app
from api.model import ModelInputError, ModelLoadError, ServedModel
from tests import keras_models
from tests.fakes import FakeModel


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


# Every test of a loaded model runs under both runtimes; "litert" refuses to load
# rather than fall back, so these also prove that both models convert.
ENGINES = ["litert", "tensorflow"]


@pytest.fixture(scope="module", params=ENGINES)
def single(model_dir, request):
    model = ServedModel(keras_models.save_single_input(model_dir / "single.keras"), "single", engine=request.param)
    model.load()
    assert model.engine == request.param
    return model


@pytest.fixture(scope="module", params=ENGINES)
def multi(model_dir, request):
    model = ServedModel(keras_models.save_multi_input(model_dir / "multi.keras"), "multi", version="3",
                        engine=request.param)
    model.load()
    assert model.engine == request.param
    return model


def test_signature_is_read_from_a_sequential_model(single):
    assert single.ready
    (features,) = single.signature.inputs
    assert (features.name, features.shape, features.dtype) == ("features", (None, 4), "float32")
    (scores,) = single.signature.outputs
    assert (scores.name, scores.shape, scores.dtype) == ("scores", (None, 3), "float32")


def test_signature_of_named_inputs_and_outputs(multi):
    inputs = {t.name: (t.shape, t.dtype) for t in multi.signature.inputs}
    assert inputs == {"image": ((None, 4, 4), "float32"), "ids": ((None, 2), "int32")}
    outputs = {t.name: (t.shape, t.dtype) for t in multi.signature.outputs}
    assert outputs == {"label": ((None, 5), "float32"), "score": ((None, 1), "float32")}


def test_predict_matches_calling_the_keras_model(single):
    import keras

    reference = keras.saving.load_model(single.path)
    x = np.random.default_rng(0).normal(size=(7, 4)).astype("float32")
    result = single.predict({"features": x})
    assert list(result) == ["scores"]
    np.testing.assert_allclose(result["scores"], np.asarray(reference(x, training=False)), rtol=1e-5, atol=1e-6)


def test_multi_input_predict_returns_named_outputs(multi):
    feed = {"image": np.ones((3, 4, 4), "float32"), "ids": np.array([[1, 2], [3, 4], [0, 9]], "int32")}
    result = multi.predict(feed)
    assert set(result) == {"label", "score"}
    assert result["label"].shape == (3, 5)
    np.testing.assert_allclose(result["label"].sum(axis=1), 1.0, rtol=1e-5)


def test_predict_gives_what_keras_gives_whatever_the_order_of_named_inputs(multi):
    import keras

    # The graph takes its inputs sorted by name (ids, image), the model declares image
    # first: each value must still reach its own input.
    feed = {"image": np.random.default_rng(0).normal(size=(3, 4, 4)).astype("float32"),
            "ids": np.array([[1, 2], [3, 4], [0, 9]], "int32")}
    expected = keras.saving.load_model(multi.path, compile=False)(feed, training=False)
    result = multi.predict(feed)
    for name in ("label", "score"):
        np.testing.assert_allclose(result[name], np.asarray(expected[name]), rtol=1e-5, atol=1e-6)


def test_varying_batch_sizes_each_get_their_own_rows(single):
    # LiteRT re-plans its interpreter when the row count changes: growing, shrinking
    # and returning to a size must each give the rows computed one at a time.
    rng = np.random.default_rng(3)
    for size in (1, 5, 2, 64, 1, 5):
        x = rng.normal(size=(size, 4)).astype("float32")
        batched = single.predict({"features": x})["scores"]
        alone = np.concatenate([single.predict({"features": x[row:row + 1]})["scores"] for row in range(size)])
        np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)


def test_planned_batches_run_padded_and_answer_each_row_as_if_alone(model_dir):
    # Batches of up to the planned size run on interpreters of a power of two rows, the
    # missing rows padded with zeros; larger ones on the interpreter resized to them.
    model = ServedModel(keras_models.save_multi_input(model_dir / "planned.keras"), "planned", engine="litert")
    model.load()
    model.plan_batches(6)
    assert sorted(model._call._buckets) == [1, 2, 4, 8]
    rng = np.random.default_rng(5)
    for size in (1, 3, 8, 2, 5, 7, 1, 9, 20, 3):
        feed = {"image": rng.normal(size=(size, 4, 4)).astype("float32"),
                "ids": rng.integers(0, 10, size=(size, 2)).astype("int32")}
        batched = model.predict(feed)
        alone = [model.predict({name: array[row:row + 1] for name, array in feed.items()}) for row in range(size)]
        for name in ("label", "score"):
            assert batched[name].shape[0] == size
            np.testing.assert_allclose(batched[name], np.concatenate([each[name] for each in alone]),
                                       rtol=1e-5, atol=1e-6)


def test_the_app_plans_the_models_batches_for_its_batch_size():
    model = FakeModel()
    create_app({"MAX_BATCH_SIZE": 8}, model=model)
    assert model.planned_rows == 8


def test_auto_engine_prefers_litert(model_dir, capfd):
    model = ServedModel(keras_models.save_single_input(model_dir / "auto.keras"), "auto")
    model.load()
    assert model.engine == "litert"
    # LiteRT's native "INFO: Created TensorFlow Lite XNNPACK delegate" went to the JSON log.
    assert "INFO: Created" not in capfd.readouterr().err


def test_auto_engine_keeps_tensorflow_for_what_litert_cannot_run(model_dir, caplog):
    path = keras_models.save_variable_length(model_dir / "sequence.keras")
    model = ServedModel(path, "sequence")
    with caplog.at_level("WARNING", logger="api.model"):
        model.load()
    assert model.engine == "tensorflow"
    assert "variable length" in caplog.records[-1].reason
    # Still served, at any length.
    assert model.predict({"tokens": np.ones((2, 7), "float32")})["total"].shape == (2, 1)
    with pytest.raises(ModelLoadError, match="INFERENCE_ENGINE=litert, but inputs of variable length"):
        ServedModel(path, "sequence", engine="litert").load()


def test_a_converted_model_that_computes_otherwise_is_not_served(model_dir, monkeypatch):
    import api.litert

    # Stand in for a conversion that went wrong: the flatbuffer of another model with
    # the same signature (other weights). The check against TensorFlow must catch it.
    other = ServedModel(keras_models.save_single_input(model_dir / "other.keras", seed=9), "other",
                        engine="tensorflow")
    other.load()
    wrong = api.litert._convert(other._call.concrete)
    monkeypatch.setattr(api.litert, "_convert", lambda concrete: wrong)
    model = ServedModel(keras_models.save_single_input(model_dir / "checked.keras"), "checked")
    model.load()
    assert model.engine == "tensorflow"
    with pytest.raises(ModelLoadError, match="differs from TensorFlow's"):
        ServedModel(model.path, "checked", engine="litert").load()


def test_an_unknown_engine_is_refused(model_dir):
    with pytest.raises(ValueError, match="engine must be one of auto, litert, tensorflow"):
        ServedModel(model_dir / "x.keras", "x", engine="onnx")


def test_any_batch_size_uses_one_trace(single):
    # The compiled call is traced once, for a None batch dimension, at warm-up.
    for size in (1, 2, 5, 33, 100):
        assert single.predict({"features": np.zeros((size, 4), "float32")})["scores"].shape == (size, 3)
    if single.engine == "tensorflow":
        # One graph: the concrete function traced for (None, 4) serves every size.
        assert single._call.concrete.structured_input_signature[0][0]["features"].shape.as_list() == [None, 4]
    else:
        # One converted graph, its batch dimension left open (-1) for the interpreter to size.
        assert single._call._interpreter.get_input_details()[0]["shape_signature"].tolist() == [-1, 4]


@pytest.mark.parametrize("engine, kept", [("litert", False), ("tensorflow", True)])
def test_only_tensorflow_s_engine_keeps_its_traced_graph(model_dir, monkeypatch, engine, kept):
    # Under LiteRT the traced graph and its variables are TensorFlow's copy of the model,
    # dead weight once the interpreter answers the same: a MobileNetV2 worker held about
    # 210 MB more with it (api/wsgi.py collects it before freezing).
    import gc
    import weakref

    import api.model

    traced = []
    compile_call = api.model._compile_call

    def remembering_the_graph(*args):
        call = compile_call(*args)
        traced.append(weakref.ref(call.concrete))
        return call

    monkeypatch.setattr(api.model, "_compile_call", remembering_the_graph)
    model = ServedModel(keras_models.save_single_input(model_dir / f"lean-{engine}.keras"), "lean", engine=engine)
    model.load()
    gc.collect()
    assert (traced[0]() is not None) is kept
    assert model.predict({"features": np.ones((2, 4), "float32")})["scores"].shape == (2, 3)


def test_model_predict_is_never_called(model_dir, monkeypatch):
    import keras

    def forbidden(*args, **kwargs):
        raise AssertionError("model.predict must not be used per request")

    monkeypatch.setattr(keras.Model, "predict", forbidden)
    model = ServedModel(keras_models.save_single_input(model_dir / "again.keras"), "again")
    model.load()
    model.predict({"features": np.zeros((2, 4), "float32")})


def test_value_the_model_rejects_is_a_model_input_error(multi):
    feed = {"image": np.ones((1, 4, 4), "float32"), "ids": np.array([[1, 99]], "int32")}
    with pytest.raises(ModelInputError):
        multi.predict(feed)


def test_lambda_layers_are_refused_by_safe_mode(model_dir):
    model = ServedModel(keras_models.save_with_lambda(model_dir / "lambda.keras"), "lambda")
    with pytest.raises(ModelLoadError, match="Lambda.*ALLOW_UNSAFE_MODEL=true"):
        model.load()
    assert not model.ready


def test_lambda_layers_load_only_when_unsafe_loading_is_allowed(model_dir):
    path = keras_models.save_with_lambda(model_dir / "trusted.keras")
    client = create_app({"MODEL_PATH": str(path), "ALLOW_UNSAFE_MODEL": "true"}).test_client()
    response = client.post("/predict", json={"instances": [[1.0, 2.5]]})
    assert response.status_code == 200
    assert response.get_json()["predictions"] == [[2.0, 5.0]]


@pytest.mark.parametrize(
    "name, content, message",
    [("missing.keras", None, "is not a file"), ("model.h5", b"x", "not a Keras 3"), ("junk.keras", b"junk", "cannot load")],
)
def test_unusable_files_are_refused_with_a_clear_message(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message):
        ServedModel(path, "x").load()


def test_predict_before_load_raises(tmp_path):
    from api.model import ModelNotLoaded

    with pytest.raises(ModelNotLoaded):
        ServedModel(tmp_path / "x.keras", "x").predict({})


def test_app_serves_a_real_multi_input_model(model_dir):
    path = keras_models.save_multi_input(model_dir / "served.keras")
    client = create_app({"MODEL_PATH": str(path), "MODEL_VERSION": "5"}).test_client()
    body = {"instances": [{"image": [[0.5] * 4] * 4, "ids": [1, 2]}]}
    response = client.post("/v1/models/served:predict", json=body)
    assert response.status_code == 200, response.get_json()
    (prediction,) = response.get_json()["predictions"]
    assert set(prediction) == {"label", "score"} and len(prediction["label"]) == 5
    assert response.headers["X-Model-Version"] == "5"
    bad = client.post("/v1/models/served:predict", json={"instances": [{"image": [[0.5] * 4] * 4, "ids": [1, 50]}]})
    assert bad.status_code == 400 and "rejected" in bad.get_json()["error"]


def test_without_the_litert_package_auto_keeps_tensorflow(model_dir, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)  # import now fails
    model = ServedModel(keras_models.save_single_input(model_dir / "nolite.keras"), "nolite")
    model.load()
    assert model.engine == "tensorflow"
    with pytest.raises(ModelLoadError, match="ai-edge-litert package is not installed"):
        ServedModel(model.path, "nolite", engine="litert").load()
