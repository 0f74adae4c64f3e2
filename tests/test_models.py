"""The seed's architectures, pinned by parameter count, and the registry."""

import numpy as np
import pytest

from digit_recognizer.errors import DigitsError
from digit_recognizer.models import build_model, model_names


@pytest.mark.parametrize(
    ("name", "parameters"), [("mlp", 109_386), ("cnn", 225_034), ("fast", 225_418)]
)
def test_seed_parameter_counts(name, parameters):
    assert build_model(name).count_params() == parameters


@pytest.mark.parametrize("name", ["mlp", "cnn", "fast"])
def test_outputs_are_probabilities(name):
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1)).astype("float32")
    probabilities = np.asarray(build_model(name)(images, training=False))
    assert probabilities.shape == (3, 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_unknown_model_lists_the_choices():
    assert {"mlp", "cnn"} <= set(model_names())
    with pytest.raises(DigitsError, match="unknown model 'resnet'; choose one of"):
        build_model("resnet")
