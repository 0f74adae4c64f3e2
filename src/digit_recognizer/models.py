"""Model architectures, looked up by name. Imports nothing from training.

Every model takes (28, 28, 1) grey images with values 0-255 and returns 10 softmax
probabilities. Scaling to 0-1 happens inside the model (a Rescaling layer), so training,
evaluation, ONNX export and the web app can never disagree about it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
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
    """`deep` with 3x3 convolutions 48 wide (235,434 parameters, 3.4 M multiply-adds), the
    shipped model: under the `robust` recipe as accurate on clean and handwritten digits
    (0.1 point lower under corruption) and about 20 % quicker to answer in ONNX Runtime.
    benchmarks/README.md, "Changed at stop 20"."""
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


@keras.saving.register_keras_serializable(package="digit_recognizer")
class RandomStrokeWidth(layers.Layer):
    """Thicken or thin each image's strokes at random (grey dilation or erosion), with
    `probability`: pens, scanners and people vary stroke width far more than MNIST does.
    Four equally likely changes: dilate 3x3 or 5x5, erode 2x2 or 3x3. Identity at inference."""

    def __init__(self, probability: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.probability, self.seed = probability, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images

        def dilate(x, size):
            return keras.ops.max_pool(x, size, strides=1, padding="same")

        variants = [dilate(images, 3), dilate(images, 5), -dilate(-images, 2), -dilate(-images, 3)]
        draw = keras.random.uniform((keras.ops.shape(images)[0], 1, 1, 1), seed=self.generator)
        out = images
        for k, variant in enumerate(variants):
            low, high = self.probability * k / 4, self.probability * (k + 1) / 4
            out = keras.ops.where((draw >= low) & (draw < high), variant, out)
        return out

    def get_config(self):
        return {**super().get_config(), "probability": self.probability, "seed": self.seed}


@keras.saving.register_keras_serializable(package="digit_recognizer")
class RandomNoise(layers.Layer):
    """Gaussian noise with a standard deviation drawn per image from [0, `max_sigma`] (a
    fraction of the 0-255 range), clipped to 0-255: clean and very noisy images both occur,
    where Keras's GaussianNoise gives every image the same level. Identity at inference."""

    def __init__(self, max_sigma: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_sigma, self.seed = max_sigma, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        shape = keras.ops.shape(images)
        sigma = keras.random.uniform(
            (shape[0], 1, 1, 1), 0, 255 * self.max_sigma, seed=self.generator
        )
        noise = keras.random.normal(shape, seed=self.generator) * sigma
        return keras.ops.clip(images + noise, 0, 255)

    def get_config(self):
        return {**super().get_config(), "max_sigma": self.max_sigma, "seed": self.seed}


def blur_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix M such that M @ v is v blurred by a normalised Gaussian of
    `sigma` px (3 sigma each side), with zeros beyond the ends."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    offsets = np.arange(size)[np.newaxis, :] - np.arange(size)[:, np.newaxis]
    inside = np.abs(offsets) <= radius
    matrix = np.where(inside, taps[np.clip(offsets + radius, 0, 2 * radius)], 0.0)
    return (matrix / taps.sum()).astype(np.float32)


def warp(images, shift):
    """Resample (batch, height, width, 1) images at each pixel moved by `shift` (batch,
    height, width, 2: rows, columns; px), bilinearly, black outside the image."""
    ops = keras.ops
    batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
    rows = ops.reshape(ops.arange(height, dtype="float32"), (1, height, 1))
    cols = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, width))
    # Samples beyond the image read the zero border that padding adds (1 px before, 2
    # after), so clipping to [-1, size] keeps every corner in range and still black.
    y = ops.clip(rows + shift[..., 0], -1.0, height)
    x = ops.clip(cols + shift[..., 1], -1.0, width)
    y0, x0 = ops.floor(y), ops.floor(x)
    wy, wx = y - y0, x - x0
    stride = width + 3
    flat = ops.reshape(ops.pad(images[..., 0], [[0, 0], [1, 2], [1, 2]]), (-1,))
    first = ops.reshape(ops.arange(batch) * (height + 3) * stride, (-1, 1, 1))
    top_left = first + ops.cast(y0 + 1, "int32") * stride + ops.cast(x0 + 1, "int32")

    def at(offset):
        return ops.take(flat, top_left + offset)

    top = at(0) * (1 - wx) + at(1) * wx
    bottom = at(stride) * (1 - wx) + at(stride + 1) * wx
    return ops.expand_dims(top * (1 - wy) + bottom * wy, -1)


def affine_field(matrix, height: int, width: int):
    """(batch, 8) affine transforms (`RandomWarp.affine_matrix`) -> (batch, height, width, 2)
    shifts for `warp`: where each output pixel reads from, minus where it is."""
    ops = keras.ops
    a0, a1, a2, b0, b1, b2 = (ops.reshape(matrix[:, i], (-1, 1, 1)) for i in range(6))
    rows = ops.reshape(ops.arange(height, dtype="float32"), (1, -1, 1))
    cols = ops.reshape(ops.arange(width, dtype="float32"), (1, 1, -1))
    from_rows = b0 * cols + b1 * rows + b2
    from_cols = a0 * cols + a1 * rows + a2
    return ops.stack([from_rows - rows, from_cols - cols], axis=-1)


@keras.saving.register_keras_serializable(package="digit_recognizer")
class RandomWarp(layers.Layer):
    """Random rotation (up to `rotation` degrees), zoom (a factor within 1 +- `zoom`), shift
    (up to `shift` of the size, each axis) and elastic distortion (Simard et al. 2003: a
    smooth random displacement field, uniform noise in [-1, 1] blurred by a Gaussian of
    `sigma` px and scaled by `elastic` px; they trained MNIST with 34 and 4), all applied as
    ONE bilinear resampling, black outside the image. Identity at inference.

    Why one: every resampling blurs a little, and Keras's rotation, shift and zoom layers
    resample once each. With elastic distortion as a fourth resampling, a `deep` network
    scored 99.2 % on validation digits blurred by a Gaussian of 0.7 px and 98.1 % on the
    clean ones: it had learnt blurred digits."""

    def __init__(
        self,
        rotation: float,
        shift: float,
        zoom: float,
        elastic: float,
        sigma: float = 4.0,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rotation, self.shift, self.zoom = rotation, shift, zoom
        self.elastic, self.sigma, self.seed = elastic, sigma, seed
        self.generator = keras.random.SeedGenerator(seed)

    def elastic_field(self, batch, height: int, width: int):
        """(batch, height, width, 2): smooth random shifts in px, rows then columns."""
        noise = keras.random.uniform((batch, height, width, 2), -1, 1, seed=self.generator)
        # The separable blur as two small matrix products (zero padding at the edges): 20x
        # cheaper on the CPU than depthwise convolutions with 25-tap kernels.
        blur_rows, blur_cols = blur_matrix(height, self.sigma), blur_matrix(width, self.sigma)
        return keras.ops.einsum("ij,bjkc,lk->bilc", blur_rows, noise, blur_cols) * self.elastic

    def affine_matrix(self, batch, height: int, width: int):
        """(batch, 8): a random rotation and zoom about the centre, then a random shift, as
        `keras.ops.image.affine_transform` takes it: output pixel (x, y) reads the input at
        (a0 x + a1 y + a2, b0 x + b1 y + b2); x is the column."""
        ops = keras.ops

        def draw(limit):
            return keras.random.uniform((batch,), -limit, limit, seed=self.generator)

        angle = draw(np.deg2rad(self.rotation))
        inverse_zoom = 1.0 / (1.0 + draw(self.zoom))
        shift_rows, shift_cols = draw(self.shift * height), draw(self.shift * width)
        cos, sin = ops.cos(angle) * inverse_zoom, ops.sin(angle) * inverse_zoom
        center_y, center_x = (height - 1) / 2, (width - 1) / 2
        a2 = center_x - cos * center_x - sin * center_y - shift_cols
        b2 = center_y + sin * center_x - cos * center_y - shift_rows
        zeros = ops.zeros_like(angle)
        return ops.stack([cos, sin, a2, -sin, cos, b2, zeros, zeros], axis=-1)

    def call(self, images, training=False):
        if not training:
            return images
        batch, height, width = keras.ops.shape(images)[0], images.shape[1], images.shape[2]
        matrix = self.affine_matrix(batch, height, width)
        if not self.elastic:  # one Keras op: 3x cheaper than `warp`'s gathers
            return keras.ops.image.affine_transform(images, matrix, fill_mode="constant")
        field = affine_field(matrix, height, width) + self.elastic_field(batch, height, width)
        return warp(images, field)

    def get_config(self):
        return {
            **super().get_config(), "rotation": self.rotation, "shift": self.shift,
            "zoom": self.zoom, "elastic": self.elastic, "sigma": self.sigma, "seed": self.seed,
        }  # fmt: skip


def augmentation(
    rotation: float,
    shift: float,
    zoom: float,
    seed: int,
    erase: float = 0.0,
    contrast: float = 0.0,
    noise: float = 0.0,
    stroke: float = 0.0,
    elastic: float = 0.0,
    one_resampling: bool = False,
) -> keras.Sequential:
    """Keras preprocessing layers, active in `fit` only (identity at inference and dropped
    from exported models): random rotation (degrees), shift and zoom (fractions of the
    image); optionally erasing a patch (probability `erase`: occlusion), contrast and
    brightness changes (up to `contrast`: faint ink, grey paper), Gaussian noise (standard
    deviation up to `noise`, a fraction of the grey range), stroke width changes
    (probability `stroke`) and elastic distortion (strength `elastic`, px). With
    `one_resampling` (`--warp`) or `elastic`, all the geometry is one resampling (RandomWarp)
    instead of Keras's three."""
    if one_resampling or elastic:
        steps = [RandomWarp(rotation, shift, zoom, elastic, seed=seed + 8)]
    else:
        steps = [
            layers.RandomRotation(rotation / 360.0, fill_mode="constant", seed=seed),
            layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 2),
        ]
    if stroke:
        steps.append(RandomStrokeWidth(stroke, seed=seed + 7))
    if erase:
        steps.append(layers.RandomErasing(erase, scale=(0.02, 0.12), fill_value=0, seed=seed + 3))
    if contrast:
        steps.append(layers.RandomContrast(contrast, seed=seed + 4))
        steps.append(layers.RandomBrightness(contrast / 2, seed=seed + 5))
    if noise:
        steps.append(RandomNoise(noise, seed=seed + 6))
    return keras.Sequential(steps, name="augmentation")


def with_augmentation(model: keras.Model, augment: keras.Sequential) -> keras.Model:
    """Put the augmentation block in front of `model`; parameters are unchanged."""
    return keras.Sequential([keras.Input(shape=INPUT_SHAPE), augment, model], name=model.name)


def inference_model(model: keras.Model) -> keras.Model:
    """The model without its training-only augmentation block (for export): exporting the
    wrapper would trace the random ops, which ONNX cannot run."""
    if model.layers and model.layers[0].name == "augmentation":
        return model.layers[1]
    return model


def _affine(layer: layers.Layer) -> tuple[np.ndarray, np.ndarray] | None:
    """A Rescaling or (inference-mode) BatchNormalization layer as x * scale + shift per
    channel, else None."""
    if isinstance(layer, layers.Rescaling):
        return np.float64(layer.scale), np.float64(layer.offset)
    if isinstance(layer, layers.BatchNormalization) and layer.axis in (-1, 3, [-1], [3]):
        gamma, beta, mean, variance = (np.asarray(w, np.float64) for w in layer.get_weights())
        scale = gamma / np.sqrt(variance + layer.epsilon)
        return scale, beta - mean * scale
    return None


def _folded_weights(layer: layers.Layer, scale, shift) -> list[np.ndarray] | None:
    """Weights of a Conv2D or Dense that first applies x * scale + shift to its input, or
    None where that is not exact: a padded convolution would pad with `shift`, not 0."""
    if isinstance(layer, layers.Conv2D):
        if (layer.padding != "valid" and np.any(shift)) or layer.groups != 1:
            return None
    elif not isinstance(layer, layers.Dense):
        return None
    if not layer.use_bias:
        return None
    kernel, bias = (np.asarray(w, np.float64) for w in layer.get_weights())
    inputs = kernel.shape[-2]  # Conv2D (h, w, in, out), Dense (in, out)
    # After Flatten (channels last), feature k is channel k % channels: tile the vectors.
    scale, shift = np.resize(scale, inputs), np.resize(shift, inputs)
    shifted = np.tensordot(kernel, shift, axes=([-2], [0])).reshape(-1, kernel.shape[-1])
    return [
        (kernel * scale[:, None]).astype(np.float32),
        (bias + shifted.sum(0)).astype(np.float32),
    ]


def fold_affine(model: keras.Model) -> keras.Model:
    """An equivalent Sequential model for inference with every Rescaling and BatchNorm folded
    into the next Conv2D or Dense (through Flatten and Dropout, which commute with a per-channel
    map). Fewer operations: the shipped `deep` model answers 20-30 % sooner in ONNX Runtime.
    A model this cannot fold exactly (functional, padded convolution after BatchNorm, ...) is
    returned as it is."""
    if not isinstance(model, keras.Sequential):
        return model
    clones, weights, pending = [], [], None
    for layer in model.layers:
        affine = _affine(layer)
        if affine is not None and pending is None:
            pending = affine
            continue
        layer_weights = [np.asarray(w) for w in layer.get_weights()]
        if pending is not None and not isinstance(layer, layers.Flatten | layers.Dropout):
            layer_weights = _folded_weights(layer, *pending)
            if layer_weights is None:
                return model
            pending = None
        clones.append(layer.__class__.from_config(layer.get_config()))
        weights.append(layer_weights)
    if pending is not None:
        return model
    folded = keras.Sequential([keras.Input(shape=model.input_shape[1:]), *clones], name=model.name)
    for clone, layer_weights in zip(clones, weights, strict=True):
        clone.set_weights(layer_weights)
    return folded


def pretrained_base(model: keras.Model) -> keras.Model | None:
    """The keras.applications base inside a transfer model (for freezing), else None."""
    inner = inference_model(model)
    names = [layer.name for layer in inner.layers]
    return inner.get_layer(BASE_LAYER) if BASE_LAYER in names else None


def load_model(path: str | Path) -> keras.Model:
    """keras.models.load_model, with this module imported: a saved training model holds our
    own augmentation layers, which Keras finds only once their classes are registered."""
    return keras.models.load_model(path)


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
