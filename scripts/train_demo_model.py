#!/usr/bin/env python3
"""Train the demo model, `digits`: a small classifier of scikit-learn's bundled 8x8 digits.

No download: the data set ships inside scikit-learn. One instance is an 8x8 nested
list of pixel values 0-16; the prediction is the 10 class probabilities. Prints the
held-out accuracy and saves a Keras 3 `.keras` file.

    python scripts/train_demo_model.py --output models/digits.keras
"""

from __future__ import annotations

import argparse
from pathlib import Path


def build_model():
    """An MLP that rescales the 0-16 pixels itself, so clients send them as they are."""
    import keras

    pixels = keras.Input(shape=(8, 8), name="pixels")
    x = keras.layers.Rescaling(1.0 / 16.0)(pixels)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.2)(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    probabilities = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(pixels, probabilities, name="digits")


def load_split(seed: int):
    """The digits images and labels, split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    return train_test_split(
        digits.images.astype("float32"), digits.target, test_size=0.2, random_state=seed, stratify=digits.target
    )


def main() -> None:
    """Train, report held-out accuracy, save."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="models/digits.keras", help="where to save the model")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(args.seed)
    x_train, x_test, y_train, y_test = load_split(args.seed)
    model = build_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=32, validation_split=0.1, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"held-out accuracy: {accuracy:.4f} on {len(x_test)} images")
    if accuracy < 0.9:
        raise SystemExit(f"accuracy {accuracy:.4f} is below 0.90; not saving")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    model.save(output)
    print(f"saved {output}")


if __name__ == "__main__":
    main()
