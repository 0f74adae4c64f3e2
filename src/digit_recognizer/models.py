"""Model architectures, looked up by name. Imports nothing from training.

Every model takes (28, 28, 1) grey images with values 0-255 and returns 10 softmax
probabilities. Scaling to 0-1 happens inside the model (a Rescaling layer), so training,
evaluation, ONNX export and the web app can never disagree about it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
from keras import layers

from digit_recognizer.errors import DigitsError

INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10

MODEL_BUILDERS: dict[str, Callable[[], keras.Model]] = {}


def register(name: str) -> Callable[[Callable[[], keras.Model]], Callable[[], keras.Model]]:
    """Decorator: make a model builder available to `build_model(name)` and the CLI."""

    def decorator(builder: Callable[[], keras.Model]) -> Callable[[], keras.Model]:
        MODEL_BUILDERS[name] = builder
        return builder

    return decorator


@register("mlp")
def build_mlp() -> keras.Model:
    """The seed's baseline: Flatten -> Dense 128 -> Dense 64 -> Dense 10 (109,386 parameters)."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Rescaling(1.0 / 255),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(64, activation="relu"),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="mlp",
    )


@register("cnn")
def build_cnn() -> keras.Model:
    """The seed's CNN (225,034 parameters). Shapes: 28x28x1 -> 26x26x32 -> 13x13x32 ->
    11x11x64 -> 5x5x64 -> 1600 -> 128 -> 10."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="cnn",
    )


@register("fast")
def build_fast() -> keras.Model:
    """LeNet-5-sized (LeCun et al. 1998) with BatchNorm, for the fast recipe (80,394
    parameters): 5x5 convolutions 16 and 32 wide, about 1.1 M multiply-adds per image, less
    than half the seed CNN's 2.6 M. BN lets it train at a 10x higher rate. Momentum 0.9, not
    Keras's 0.99: a few hundred steps must settle its statistics."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(16, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.BatchNormalization(momentum=0.9),
            layers.Conv2D(32, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.BatchNormalization(momentum=0.9),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="fast",
    )


def build_deep_variant(name: str, width: int, dense: int = 256) -> keras.Model:
    """A 5x5 convolution 32 wide, then two 3x3 convolutions `width` wide, BN after each
    stage, then Dense. Shapes 28x28 -> 24x24x32 -> 12x12 -> 10x10 -> 8x8 -> 4x4 -> dense -> 10."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Rescaling(1.0 / 255),
            layers.Conv2D(32, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.BatchNormalization(momentum=0.9),
            layers.Conv2D(width, 3, activation="relu"),
            layers.BatchNormalization(momentum=0.9),
            layers.Conv2D(width, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.BatchNormalization(momentum=0.9),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(dense, activation="relu"),
            layers.Dropout(0.3),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name=name,
    )


@register("deep")
def build_deep() -> keras.Model:
    """The most accurate network per second of CPU training we measured (321,866
    parameters, about 4.9 M multiply-adds per image, a quarter of `vgg`'s): 3x3
    convolutions 64 wide."""
    return build_deep_variant("deep", 64)


@register("deep48")
def build_deep48() -> keras.Model:
    """`deep` with 3x3 convolutions 48 wide (235,434 parameters, 3.4 M multiply-adds), each
    of the shipped model's two networks: under the `robust` recipe as accurate on clean and
    handwritten digits (0.1 point lower under corruption) and about 20 % quicker to answer in
    ONNX Runtime (docs/decisions.md, "The shipped network")."""
    return build_deep_variant("deep48", 48)


def _vgg_block(filters: int) -> list[layers.Layer]:
    """Two 3x3 convolutions with BatchNorm, then 2x2 max pooling and dropout."""
    convolutions = []
    for _ in range(2):
        convolutions += [
            layers.Conv2D(filters, 3, padding="same", use_bias=False),
            layers.BatchNormalization(momentum=0.9),
            layers.ReLU(),
        ]
    return [*convolutions, layers.MaxPooling2D(2), layers.Dropout(0.25)]


@register("vgg")
def build_vgg() -> keras.Model:
    """VGG-style (Simonyan & Zisserman 2014), sized for MNIST: 28x28x32 -> 14x14x64 ->
    7x7x64 -> Dense 256 -> 10 (871,210 parameters). About 19 M multiply-adds per image,
    7x the seed CNN's 2.6 M."""
    return keras.Sequential(
        [
            keras.Input(shape=INPUT_SHAPE),
            layers.Rescaling(1.0 / 255),
            *_vgg_block(32),
            *_vgg_block(64),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="vgg",
    )


# keras.applications networks, fed MNIST resized to their smallest accepted input (32x32)
# and repeated to 3 channels inside the model.
TRANSFER_SIZE = 32
BASE_LAYER = "pretrained_base"


def build_transfer(name: str, weights: str = "none") -> keras.Model:
    """MobileNetV2 (alpha 0.35) or EfficientNetB0 from keras.applications with a new head.

    `weights`: "none" (random), "imagenet" (Keras downloads them: needs the internet) or the
    path of a weights file for the headless base network.
    """
    applications = {
        "mobilenet": lambda w: keras.applications.MobileNetV2(
            input_shape=(TRANSFER_SIZE, TRANSFER_SIZE, 3), alpha=0.35, include_top=False,
            weights=w, name=BASE_LAYER,
        ),
        "efficientnet": lambda w: keras.applications.EfficientNetB0(
            input_shape=(TRANSFER_SIZE, TRANSFER_SIZE, 3), include_top=False, weights=w,
            name=BASE_LAYER,
        ),
    }  # fmt: skip
    if weights not in ("none", "imagenet") and not Path(weights).is_file():
        raise DigitsError(f"--weights: {weights} is neither none, imagenet nor a file")
    try:
        base = applications[name](None if weights == "none" else weights)
    except (ValueError, OSError) as e:  # a file for another network, or no download
        raise DigitsError(f"cannot load {weights} weights for {name}: {e}") from None
    if weights == "none":
        # From scratch, keras.applications' BatchNorm momentum (0.999 in MobileNetV2) leaves the
        # moving statistics near their initial values for thousands of steps: on full MNIST the
        # validation loss stayed at chance (2.30) for 4 epochs while training accuracy reached
        # 96 %. 0.9, as in our own networks, settles them within an epoch.
        for layer in base.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = 0.9
    inputs = keras.Input(shape=INPUT_SHAPE)
    x = layers.Resizing(TRANSFER_SIZE, TRANSFER_SIZE)(inputs)
    x = layers.Concatenate()([x, x, x])  # grey -> the RGB the base was trained on
    if name == "mobilenet":  # MobileNetV2 expects [-1, 1]; EfficientNet rescales 0-255 itself
        x = layers.Rescaling(1 / 127.5, offset=-1.0)(x)
    x = layers.GlobalAveragePooling2D()(base(x))
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


register("mobilenet")(lambda: build_transfer("mobilenet"))
register("efficientnet")(lambda: build_transfer("efficientnet"))


def inference_model(model: keras.Model) -> keras.Model:
    """The model without its training-only augmentation block (for export): exporting the
    wrapper would trace the random ops, which ONNX cannot run."""
    if model.layers and model.layers[0].name == "augmentation":
        return model.layers[1]
    return model


def pretrained_base(model: keras.Model) -> keras.Model | None:
    """The keras.applications base inside a transfer model (for freezing), else None."""
    inner = inference_model(model)
    names = [layer.name for layer in inner.layers]
    return inner.get_layer(BASE_LAYER) if BASE_LAYER in names else None


def load_model(path: str | Path) -> keras.Model:
    """keras.models.load_model, with our augmentation layers registered: a saved training
    model holds them, and Keras finds their classes only once `augment` is imported."""
    from digit_recognizer import augment  # noqa: F401  (registers the layers)

    return keras.models.load_model(path)


def save_model_atomic(model: keras.Model, path: Path) -> Path:
    """Save `model` (.keras or .h5 by the suffix) so that a reader never finds half a file."""
    from digit_recognizer.artifacts import write_atomic

    return write_atomic(path, lambda tmp: model.save(tmp))


def model_names() -> list[str]:
    return sorted(MODEL_BUILDERS)


def build_model(name: str, weights: str = "none") -> keras.Model:
    """Build a model by registry name; `weights` only for the keras.applications ones."""
    if name not in MODEL_BUILDERS:
        raise DigitsError(f"unknown model {name!r}; choose one of {', '.join(model_names())}")
    if weights != "none":
        if name not in ("mobilenet", "efficientnet"):
            raise DigitsError(f"--weights applies to mobilenet and efficientnet, not {name}")
        return build_transfer(name, weights)
    return MODEL_BUILDERS[name]()
