"""Training benchmarks: images per second of each network, and training seconds until test
accuracy first passes a target when a recipe trains as `digits train --recipe` does."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np


def time_to_accuracy_callback(
    x_test: np.ndarray, y_test: np.ndarray, targets, max_seconds: float, stop: bool = True
):
    """A Keras callback: test accuracy after each epoch against training seconds (evaluation
    not counted); with `stop`, ends training once every target is reached or max_seconds is
    spent."""
    import keras

    class TimeToAccuracy(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds, self.curve, self.reached = 0.0, [], {}

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds += time.perf_counter() - self.start
            predicted = self.model.predict(x_test[..., None], batch_size=2048, verbose=0)
            accuracy = float(np.mean(predicted.argmax(axis=1) == y_test))
            validation = (logs or {}).get("val_accuracy")
            self.curve.append(
                {"epoch": epoch + 1, "seconds": self.seconds, "accuracy": accuracy,
                 "val_accuracy": None if validation is None else float(validation)}
            )  # fmt: skip
            for target in targets:
                if accuracy >= target and str(target) not in self.reached:
                    self.reached[str(target)] = self.seconds
            if stop and (len(self.reached) == len(targets) or self.seconds > max_seconds):
                self.model.stop_training = True

    return TimeToAccuracy()


def time_to_accuracy(recipe: str, data, targets, max_seconds: float, work_dir: Path, **overrides):
    """Train `recipe` as `digits train --recipe` does; when did test accuracy pass each target?"""
    from digit_recognizer.train import recipe_config, train

    callback = time_to_accuracy_callback(data.x_test, data.y_test, targets, max_seconds)
    cfg = recipe_config(recipe, **overrides)
    train(cfg, work_dir / recipe, data=data, verbose=0, extra_callbacks=(callback,))
    return {
        "recipe": recipe,
        "model": cfg.model,
        "config": asdict(cfg),
        "seconds_to": {f"{t:.3f}": callback.reached.get(str(t)) for t in targets},
        "accuracy_after_1_epoch": callback.curve[0]["accuracy"] if callback.curve else None,
        "curve": callback.curve,
    }


def train_throughput(model_name: str, batch_size: int, steps: int) -> float:
    """Training images/s of a registered model on random data, after a warm-up."""

    from digit_recognizer.models import build_model

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch_size * steps, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    model = build_model(model_name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[: batch_size * 2], y[: batch_size * 2], batch_size=batch_size, verbose=0)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, verbose=0)
    return len(x) / (time.perf_counter() - start)
