"""The architectures, pinned by parameter count, and the registry."""

import numpy as np
import pytest

from digit_recognizer.errors import DigitsError
from digit_recognizer.models import build_model, model_names


@pytest.mark.parametrize(
    ("name", "parameters"),
    [
        ("mlp", 109_386),
        ("cnn", 225_034),
        ("fast", 80_394),
        ("deep", 321_866),
        ("deep48", 235_434),
        ("vgg", 871_210),
    ],
)
def test_seed_parameter_counts(name, parameters):
    assert build_model(name).count_params() == parameters


@pytest.mark.parametrize("name", model_names())
def test_every_model_trains_one_step_on_a_tiny_batch(name):
    import keras

    keras.utils.set_random_seed(0)
    model = build_model(name)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (8, 28, 28, 1)).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    losses = [float(model.train_on_batch(x, np.arange(8) % 10)) for _ in range(15)]
    assert all(np.isfinite(losses))
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert min(losses[-3:]) < losses[0]  # it learns the batch, not merely changes


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


def with_random_batchnorm_statistics(model):
    """Trained-like BatchNorm layers (untrained ones are the identity: folding them is moot)."""
    import keras

    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.get_weights()[0].shape
            layer.set_weights([rng.uniform(-2, 2, shape), rng.normal(0, 1, shape),
                               rng.normal(0, 1, shape), rng.uniform(0.5, 2, shape)])  # fmt: skip
    return model


@pytest.mark.parametrize("name", ["deep", "fast", "cnn"])
def test_folding_rescaling_and_batchnorm_keeps_the_outputs(name):
    import keras

    from digit_recognizer.fold import fold_affine

    model = with_random_batchnorm_statistics(build_model(name))
    folded = fold_affine(model)
    kinds = {type(layer) for layer in folded.layers}
    assert not kinds & {keras.layers.Rescaling, keras.layers.BatchNormalization}
    images = np.random.default_rng(0).uniform(0, 255, (16, 28, 28, 1)).astype("float32")
    expected = np.asarray(model(images, training=False))
    assert np.abs(np.asarray(folded(images, training=False)) - expected).max() < 1e-5


def test_folding_leaves_alone_what_it_cannot_fold_exactly():
    import keras

    from digit_recognizer.fold import fold_affine

    # BatchNorm before a zero-padded convolution: the padding would see the shift, not 0.
    padded = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.BatchNormalization(),
                               keras.layers.Conv2D(4, 3, padding="same"), keras.layers.Flatten(),
                               keras.layers.Dense(10)])  # fmt: skip
    with_random_batchnorm_statistics(padded)
    assert fold_affine(padded) is padded
    vgg = build_model("vgg")
    assert fold_affine(vgg) is vgg  # BatchNorm between Conv and ReLU: nothing linear follows it


def test_block_diagonal_kernels_become_grouped_and_back():
    from digit_recognizer.fold import block_diagonal, diagonal_blocks, diagonal_groups

    rng = np.random.default_rng(0)
    grouped = rng.normal(size=(6, 4, 3, 3)).astype(np.float32)  # 2 groups of 3 filters x 4
    full = block_diagonal(np.split(grouped, 2))
    assert full.shape == (6, 8, 3, 3) and not full[:3, 4:].any() and not full[3:, :4].any()
    assert diagonal_groups(full) == 2 and np.array_equal(full[3:, 4:], grouped[3:])
    assert np.array_equal(np.concatenate(diagonal_blocks(full, 2)), grouped)
    full[0, 5, 1, 1] = 1e-3  # one weight off the diagonal: no longer two groups
    assert diagonal_groups(full) == 1 and diagonal_groups(grouped) == 1
    dense = block_diagonal([np.ones((3, 2)), 2 * np.ones((3, 2))])  # a dense layer's blocks
    assert dense.shape == (6, 4) and dense[3:, 2:].min() == 2 and not dense[:3, 2:].any()
    assert diagonal_groups(dense) == 2
