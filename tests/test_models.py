"""The architectures, pinned by parameter count, and the registry."""

import numpy as np
import pytest

from digit_recognizer.errors import DigitsError
from digit_recognizer.models import build_model, model_names


@pytest.mark.parametrize(
    ("name", "parameters"),
    [("mlp", 109_386), ("cnn", 225_034), ("fast", 80_394), ("deep", 321_866), ("vgg", 871_210)],
)
def test_seed_parameter_counts(name, parameters):
    assert build_model(name).count_params() == parameters


@pytest.mark.parametrize("name", model_names())
def test_every_model_trains_one_step_on_a_tiny_batch(name):
    import keras

    model = build_model(name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (8, 28, 28, 1)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    loss = model.train_on_batch(x, np.arange(8) % 10)
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert isinstance(model, keras.Model)


@pytest.mark.parametrize("name", model_names())
def test_outputs_are_probabilities(name):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype("float32")
    probabilities = np.asarray(build_model(name)(images, training=False))
    assert probabilities.shape == (3, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_unknown_model_lists_the_choices():
    assert {"mlp", "cnn"} <= set(model_names())
    with pytest.raises(DigitsError, match="unknown model 'resnet'; choose one of"):
        build_model("resnet")
