"""Generated numbers: strings of 1-10 handwritten digits, for training and testing readers.

Each digit comes from a pool of single digits (MNIST, or the project's generated handwriting)
and is placed after the previous one with a gap drawn from a spacing: "separated" (a clear gap)
or "touching" (from just touching to overlapping by a third of the narrower digit). The
string then gets baseline drift, varying digit sizes, slant and stroke width, and is rendered
like a canvas drawing (black on white, solid strokes) or a photo (paper under uneven light,
grey ink, blur, noise). Every digit's box is kept, so a reader's boxes can be checked too.

Which pool a set draws from decides what it may do: numbers from MNIST's training split and
training hands may train, numbers from MNIST's test split and held-out hands only test.
Deterministic for a seed. Imports NumPy and Pillow only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from digit_recognizer import morphology

SPACINGS = ("separated", "touching")
RENDERS = ("canvas", "photo")
HEIGHT = 40  # px: a digit's height while the string is composed


@dataclass(frozen=True)
class DigitPool:
    """Single digits to build numbers from: ink crops (light on dark, 0-255) and labels."""

    crops: list[np.ndarray]
    labels: np.ndarray
    name: str

    def __post_init__(self):
        if any(crop.max() < 60 for crop in self.crops):
            raise ValueError(f"{self.name}: a crop holds no ink")

    def by_label(self) -> list[np.ndarray]:
        """Indices of each digit's crops: entry d lists the crops of digit d."""
        return [np.flatnonzero(self.labels == digit) for digit in range(10)]


@dataclass(frozen=True)
class GeneratedNumber:
    """One rendered number: dark ink on light paper, its digits and each digit's box."""

    image: np.ndarray  # (H, W) uint8
    text: str
    boxes: list[tuple[int, int, int, int]]  # left, top, right, bottom per digit, px
    spacing: str
    render: str


def box_iou(a, b) -> float:
    """Intersection over union of two boxes (left, top, right, bottom)."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def crop_ink(light_on_dark: np.ndarray, threshold: float = 30) -> np.ndarray:
    """The digit's ink box (rows and columns holding a pixel over `threshold`)."""
    rows = np.flatnonzero((light_on_dark > threshold).any(axis=1))
    cols = np.flatnonzero((light_on_dark > threshold).any(axis=0))
    if len(rows) == 0:
        return light_on_dark[:1, :1]
    return light_on_dark[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def pool_from_mnist(images: np.ndarray, labels: np.ndarray, name: str = "mnist") -> DigitPool:
    """MNIST digits (N, 28, 28) as a pool."""
    crops = [crop_ink(image.astype(np.float32)) for image in images]
    return DigitPool(crops, np.asarray(labels, np.uint8), name)


def pool_from_synth(hands: tuple[str, ...], count: int, seed: int) -> DigitPool:
    """`count` generated digits in `hands` as a pool (the paper level taken off)."""
    from digit_recognizer import synth

    images, labels, _ = synth.generate(synth.SynthConfig(count=count, hands=hands, seed=seed))
    crops, kept = [], []
    for image, label in zip(images, labels, strict=True):
        ink = 255.0 - image.astype(np.float32)
        ink = np.clip((ink - np.median(ink)) * 255 / max(np.ptp(ink), 1), 0, 255)
        if ink.max() >= 60:  # a render too faint to crop (rare) is left out
            crops.append(crop_ink(ink, threshold=60))
            kept.append(label)
    return DigitPool(crops, np.asarray(kept, np.uint8), "synth:" + "+".join(hands))


def _scaled(crop: np.ndarray, height: float) -> np.ndarray:
    """A crop resized to `height` px tall, its aspect kept (a 1 stays narrow)."""
    h, w = crop.shape
    size = (max(1, round(w * height / h)), max(1, round(height)))
    return np.asarray(
        Image.fromarray(crop.astype(np.uint8)).resize(size, Image.BICUBIC), np.float32
    )


def _gap(spacing: str, left: np.ndarray, right: np.ndarray, rng: np.random.Generator) -> int:
    """Columns between two digits' ink boxes; negative: they overlap by that many."""
    if spacing == "separated":
        return round(rng.uniform(0.12, 0.45) * HEIGHT)
    narrower = min(left.shape[1], right.shape[1])
    return -round(rng.uniform(0.0, 0.35) * narrower) - 1


def compose(
    digits: list[np.ndarray], spacing: str, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Digit crops laid out left to right with gaps and baseline drift: the ink (light on
    dark) and each digit's ink points (x, y), from which its box is taken at the end."""
    sizes = HEIGHT * rng.uniform(0.85, 1.15, len(digits))
    scaled = [_scaled(crop, size) for crop, size in zip(digits, sizes, strict=True)]
    drift = np.cumsum(rng.normal(0, 0.06 * HEIGHT, len(digits))) + rng.uniform(-0.1, 0.1) * (
        np.arange(len(digits)) * HEIGHT
    )
    lefts = [0]
    for previous, following in itertools.pairwise(scaled):
        lefts.append(lefts[-1] + previous.shape[1] + _gap(spacing, previous, following, rng))
    tops = np.round(drift + (HEIGHT * 1.15 - sizes)).astype(int)  # bottoms roughly aligned
    tops -= tops.min()
    margin = HEIGHT // 2
    shift = margin - min(lefts)
    width = max(left + d.shape[1] for left, d in zip(lefts, scaled, strict=True)) + shift + margin
    height = max(top + d.shape[0] for top, d in zip(tops, scaled, strict=True)) + 2 * margin
    ink = np.zeros((height, width), np.float32)
    points = []
    for left, top, digit in zip(lefts, tops, scaled, strict=True):
        x, y = left + shift, top + margin
        region = ink[y : y + digit.shape[0], x : x + digit.shape[1]]
        np.maximum(region, digit, out=region)
        rows, cols = np.nonzero(digit > min(60.0, 0.5 * digit.max()))
        points.append(np.stack([cols + x, rows + y], axis=1).astype(np.float32))
    return ink, points


def _slant(ink: np.ndarray, points: list[np.ndarray], shear: float):
    """Lean the string: x moves right by shear * (height above the bottom row); the digits'
    ink points follow."""
    height, width = ink.shape
    extra = int(abs(shear) * height) + 1
    offset = extra if shear < 0 else 0  # a left lean moves the bottom rows right instead
    # Pillow's affine maps each output pixel to the input: x_in = x_out + shear * y - c.
    coefficients = (1, shear, -shear * height - offset, 0, 1, 0)
    out = Image.fromarray(ink.astype(np.uint8)).transform(
        (width + extra, height), Image.AFFINE, coefficients, Image.BILINEAR
    )
    moved = []
    for p in points:
        shifted = p.copy()
        shifted[:, 0] += shear * (height - p[:, 1]) + offset
        moved.append(shifted)
    return np.asarray(out, np.float32), moved


def _stroke(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Thicker or thinner strokes than the pool's, now and then."""
    choice = rng.random()
    if choice < 0.25:
        return morphology.grey_dilation(ink, 3)
    if choice < 0.35:
        return morphology.grey_erosion(ink, 2)
    return ink


def render(ink: np.ndarray, how: str, scale: float, rng: np.random.Generator) -> np.ndarray:
    """Ink (light on dark) -> dark on light uint8 at `scale` times the size, as a canvas or a
    photo would give it."""
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    enlarged = Image.fromarray(ink.astype(np.uint8)).resize(size, Image.BICUBIC)
    amount = np.asarray(enlarged, np.float32) / 255
    if how == "canvas":
        amount = np.clip(amount * 1.6, 0, 1)  # a canvas brush is solid black
        return np.clip(255 - 255 * amount, 0, 255).astype(np.uint8)
    height, width = amount.shape
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    light = rng.uniform(150, 240) + rng.uniform(-40, 40) * xx + rng.uniform(-40, 40) * yy
    pen = rng.uniform(10, 90)
    picture = Image.fromarray(np.clip(amount * 255, 0, 255).astype(np.uint8))
    amount = np.asarray(picture.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2))), np.float32)
    grey = light + (pen - light) * amount / 255 + rng.normal(0, rng.uniform(0, 4), amount.shape)
    return np.clip(grey, 0, 255).astype(np.uint8)


def make_number(
    pool: DigitPool,
    text: str,
    spacing: str,
    how: str,
    rng: np.random.Generator,
    index: list[np.ndarray] | None = None,
) -> GeneratedNumber:
    """Render `text` (digits) from random crops of `pool`."""
    index = index or pool.by_label()
    crops = [pool.crops[int(rng.choice(index[int(c)]))] for c in text]
    ink, points = compose(crops, spacing, rng)
    ink, points = _slant(ink, points, rng.uniform(-0.1, 0.3))
    ink = _stroke(ink, rng)
    scale = rng.uniform(0.8, 1.4) if how == "photo" else rng.uniform(1.2, 2.2)
    image = render(ink, how, scale, rng)
    boxes = [
        (int(p[:, 0].min() * scale), int(p[:, 1].min() * scale),
         int(np.ceil((p[:, 0].max() + 1) * scale)), int(np.ceil((p[:, 1].max() + 1) * scale)))
        for p in points
    ]  # fmt: skip
    return GeneratedNumber(image, text, boxes, spacing, how)


def random_text(length: int, rng: np.random.Generator) -> str:
    """A random string of `length` digits (a leading 0 allowed: meter readings have them)."""
    return "".join(str(d) for d in rng.integers(0, 10, length))


def generate(
    pool: DigitPool,
    count: int,
    lengths: tuple[int, int],
    spacings: tuple[str, ...] = SPACINGS,
    renders: tuple[str, ...] = RENDERS,
    seed: int = 0,
) -> list[GeneratedNumber]:
    """`count` numbers of lengths in [lengths[0], lengths[1]], spacings and renders at random."""
    unknown = (set(spacings) - set(SPACINGS)) | (set(renders) - set(RENDERS))
    if unknown:
        raise ValueError(f"unknown spacing or render {sorted(unknown)}")
    rng = np.random.default_rng(seed)
    index = pool.by_label()
    numbers = []
    for _ in range(count):
        text = random_text(int(rng.integers(lengths[0], lengths[1] + 1)), rng)
        spacing = spacings[int(rng.integers(len(spacings)))]
        how = renders[int(rng.integers(len(renders)))]
        numbers.append(make_number(pool, text, spacing, how, rng, index))
    return numbers


def validation_numbers(x_train: np.ndarray, y_train: np.ndarray) -> list[GeneratedNumber]:
    """The number readers' validation numbers: 1,000 four-digit numbers from MNIST's last
    10,000 training digits, which no number reader trains on. Fixed (one seed), so sittings
    and models compare on the same numbers."""
    pool = pool_from_mnist(x_train[50000:], y_train[50000:], "mnist-val")
    return generate(pool, 1000, (4, 4), seed=1)
