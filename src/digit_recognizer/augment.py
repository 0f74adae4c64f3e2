"""Augmentation: Keras preprocessing layers that vary the training images, identity at inference.

Every model sees grey 0-255 images (batch, 28, 28, 1). The random layers here are our own
where Keras has none that fits: stroke width, noise of a random level, and rotation, shift,
zoom and elastic distortion as one resampling. They are registered with Keras, so a saved
training model (`last.keras`, for --resume) loads back.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from digit_recognizer.models import INPUT_SHAPE


class RandomLayer(layers.Layer):
    """A layer that changes images at random in training and passes them through otherwise.

    Subclasses name their settings in `settings` (saved by get_config) and implement
    `transform(images)`; `self.generator` draws their random numbers from `seed`."""

    settings: tuple[str, ...] = ()

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        return self.transform(images) if training else images

    def transform(self, images):
        raise NotImplementedError

    def get_config(self):
        own = {name: getattr(self, name) for name in self.settings}
        return {**super().get_config(), **own, "seed": self.seed}


@keras.saving.register_keras_serializable(package="digit_recognizer")
class RandomStrokeWidth(RandomLayer):
    """Thicken or thin each image's strokes at random (grey dilation or erosion), with
    `probability`: pens, scanners and people vary stroke width far more than MNIST does.
    Four equally likely changes: dilate 3x3 or 5x5, erode 2x2 or 3x3."""

    settings = ("probability",)

    def __init__(self, probability: float, seed: int | None = None, **kwargs):
        super().__init__(seed, **kwargs)
        self.probability = probability

    def transform(self, images):
        def dilate(x, size):
            return keras.ops.max_pool(x, size, strides=1, padding="same")

        variants = [dilate(images, 3), dilate(images, 5), -dilate(-images, 2), -dilate(-images, 3)]
        draw = keras.random.uniform((keras.ops.shape(images)[0], 1, 1, 1), seed=self.generator)
        out = images
        for k, variant in enumerate(variants):
            low, high = self.probability * k / 4, self.probability * (k + 1) / 4
            out = keras.ops.where((draw >= low) & (draw < high), variant, out)
        return out


@keras.saving.register_keras_serializable(package="digit_recognizer")
class RandomNoise(RandomLayer):
    """Gaussian noise with a standard deviation drawn per image from [0, `max_sigma`] (a
    fraction of the 0-255 range), clipped to 0-255: clean and very noisy images both occur,
    where Keras's GaussianNoise gives every image the same level."""

    settings = ("max_sigma",)

    def __init__(self, max_sigma: float, seed: int | None = None, **kwargs):
        super().__init__(seed, **kwargs)
        self.max_sigma = max_sigma

    def transform(self, images):
        shape = keras.ops.shape(images)
        sigma = keras.random.uniform(
            (shape[0], 1, 1, 1), 0, 255 * self.max_sigma, seed=self.generator
        )
        noise = keras.random.normal(shape, seed=self.generator) * sigma
        return keras.ops.clip(images + noise, 0, 255)


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


def affine_matrices(
    angle, height: int, width: int, inverse_zoom=1.0, shift_rows=0.0, shift_cols=0.0
):
    """(batch, 8): rotations by `angle` (radians, (batch,)) and zooms about the image's
    centre, then shifts (px), as `keras.ops.image.affine_transform` takes them: output pixel
    (x, y) reads the input at (a0 x + a1 y + a2, b0 x + b1 y + b2); x is the column."""
    ops = keras.ops
    cos, sin = ops.cos(angle) * inverse_zoom, ops.sin(angle) * inverse_zoom
    center_y, center_x = (height - 1) / 2, (width - 1) / 2
    a2 = center_x - cos * center_x - sin * center_y - shift_cols
    b2 = center_y + sin * center_x - cos * center_y - shift_rows
    zeros = ops.zeros_like(angle)
    return ops.stack([cos, sin, a2, -sin, cos, b2, zeros, zeros], axis=-1)


@keras.saving.register_keras_serializable(package="digit_recognizer")
class RandomWarp(RandomLayer):
    """Random rotation (up to `rotation` degrees), zoom (a factor within 1 +- `zoom`), shift
    (up to `shift` of the size, each axis) and elastic distortion (Simard et al. 2003: a
    smooth random displacement field, uniform noise in [-1, 1] blurred by a Gaussian of
    `sigma` px and scaled by `elastic` px; they trained MNIST with 34 and 4), all applied as
    ONE bilinear resampling, black outside the image.

    Why one: every resampling blurs a little, and Keras's rotation, shift and zoom layers
    resample once each: a network trained through four resamplings learns blurred digits
    (docs/decisions.md, "Augmentation as one resampling")."""

    settings = ("rotation", "shift", "zoom", "elastic", "sigma")

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
        super().__init__(seed, **kwargs)
        self.rotation, self.shift, self.zoom = rotation, shift, zoom
        self.elastic, self.sigma = elastic, sigma

    def elastic_field(self, batch, height: int, width: int):
        """(batch, height, width, 2): smooth random shifts in px, rows then columns."""
        noise = keras.random.uniform((batch, height, width, 2), -1, 1, seed=self.generator)
        # The separable blur as two small matrix products (zero padding at the edges): 20x
        # cheaper on the CPU than depthwise convolutions with 25-tap kernels.
        blur_rows, blur_cols = blur_matrix(height, self.sigma), blur_matrix(width, self.sigma)
        return keras.ops.einsum("ij,bjkc,lk->bilc", blur_rows, noise, blur_cols) * self.elastic

    def affine_matrix(self, batch, height: int, width: int):
        """(batch, 8): a random rotation and zoom about the centre, then a random shift
        (`affine_matrices`)."""

        def draw(limit):
            return keras.random.uniform((batch,), -limit, limit, seed=self.generator)

        angle = draw(np.deg2rad(self.rotation))
        inverse_zoom = 1.0 / (1.0 + draw(self.zoom))
        shift_rows, shift_cols = draw(self.shift * height), draw(self.shift * width)
        return affine_matrices(angle, height, width, inverse_zoom, shift_rows, shift_cols)

    def transform(self, images):
        batch, height, width = keras.ops.shape(images)[0], images.shape[1], images.shape[2]
        matrix = self.affine_matrix(batch, height, width)
        if not self.elastic:  # one Keras op: 3x cheaper than `warp`'s gathers
            return keras.ops.image.affine_transform(images, matrix, fill_mode="constant")
        field = affine_field(matrix, height, width) + self.elastic_field(batch, height, width)
        return warp(images, field)


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
            layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed + 1),
            layers.RandomZoom(zoom, fill_mode="constant", seed=seed + 2),
        ]
        if rotation:  # none: `label_rotated_batches` may turn the images instead
            steps.insert(
                0, layers.RandomRotation(rotation / 360.0, fill_mode="constant", seed=seed)
            )
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


def label_rotated_batches(
    images: np.ndarray,
    targets: np.ndarray,
    labels: np.ndarray,
    rotation: float,
    flag_rotation: float,
    batch_size: int,
    seed: int,
):
    """Training batches (a tf.data pipeline, shuffled every epoch) in which each image is
    turned at random by up to `rotation` degrees, but a 1 or a 7 by up to `flag_rotation`:
    a flagged 1 turned 20 degrees has a 7's bar, and a 7 turned back is a flagged 1, so a
    wide rotation teaches each to read as the other. For a model whose own augmentation
    block does not rotate."""
    import tensorflow as tf

    limits = np.where(np.isin(labels, (1, 7)), flag_rotation, rotation)
    data = tf.data.Dataset.from_tensor_slices(
        (images, targets, np.deg2rad(limits).astype(np.float32))
    )
    data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    height, width = images.shape[1:3]

    def rotate(batch, batch_targets, batch_limits):
        angle = tf.random.uniform(tf.shape(batch_limits), -1.0, 1.0, seed=seed) * batch_limits
        matrices = affine_matrices(angle, height, width)
        turned = keras.ops.image.affine_transform(batch, matrices, fill_mode="constant")
        return turned, batch_targets

    return data.map(rotate, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
