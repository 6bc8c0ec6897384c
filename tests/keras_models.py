"""Tiny real Keras models, built and saved on the fly (random weights, no download)."""

from __future__ import annotations

from pathlib import Path


def save_single_input(path: Path, seed: int = 1) -> Path:
    """A Sequential model: 4 floats -> 3 softmax probabilities."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((4,), name="features"), keras.layers.Dense(8, activation="relu"),
         keras.layers.Dense(3, activation="softmax", name="scores")]
    )
    model.save(path)
    return path


def save_multi_input(path: Path) -> Path:
    """A Functional model with named inputs (float image, int ids) and two named outputs."""
    import keras

    keras.utils.set_random_seed(2)
    image = keras.Input((4, 4), name="image")
    ids = keras.Input((2,), name="ids", dtype="int32")
    embedded = keras.layers.Flatten()(keras.layers.Embedding(10, 3)(ids))
    joined = keras.layers.Concatenate()([keras.layers.Flatten()(image), embedded])
    label = keras.layers.Dense(5, activation="softmax", name="label")(joined)
    score = keras.layers.Dense(1, name="score")(joined)
    keras.Model({"image": image, "ids": ids}, {"label": label, "score": score}).save(path)
    return path


def save_variable_length(path: Path) -> Path:
    """A model over sequences of any length: (None,) float tokens -> their weighted sum."""
    import keras

    keras.utils.set_random_seed(4)
    tokens = keras.Input((None,), name="tokens")
    weighted = keras.layers.Dense(1, name="weight")(keras.layers.Reshape((-1, 1))(tokens))
    keras.Model(tokens, keras.layers.GlobalAveragePooling1D(name="total")(weighted)).save(path)
    return path


def save_with_lambda(path: Path) -> Path:
    """A model whose file holds Python code (a Lambda layer): unsafe to load."""
    import keras

    inputs = keras.Input((2,), name="x")
    keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs)).save(path)
    return path


def save_slow(path: Path) -> Path:
    """A model that takes a second or more per large batch, for in-flight shutdown tests."""
    import keras

    keras.utils.set_random_seed(3)
    inputs = keras.Input((4,), name="x")
    x = keras.layers.Dense(2048, activation="relu")(inputs)
    # One layer applied many times: lots of compute (about 0.7 TFLOP for 4096 rows)
    # from a small file.
    shared = keras.layers.Dense(2048, activation="relu")
    for _ in range(20):
        x = shared(x)
    keras.Model(inputs, keras.layers.Dense(1, name="y")(x)).save(path)
    return path
