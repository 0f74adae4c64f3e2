"""Generated handwriting: digits drawn as pen strokes in the shapes MNIST lacks.

MNIST's writers were US Census staff and students: almost no 1 with a flag or a base, no 7
with a crossbar, few 9s with a straight stem or 4s open at the top. This module draws every
digit in several allographs (ALLOGRAPHS), each as smoothed pen strokes with random slant,
rotation, aspect, jitter, pen width (hairline to marker) and pressure, and renders it the way
people's digits reach the recognizer: pen on paper, a tablet or mouse, a coarse scan (down to
8x8 or 16x16 and back up, blocky or blurred).

The "hands" (HANDS) are the rendering styles. They are split in two groups: TRAIN_HANDS may
train a model, HELD_OUT_HANDS only score one, so a style that trains never scores.
Deterministic for a seed. Imports NumPy and Pillow only.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from digit_recognizer.scans import block_scan, ink_box

GENERATOR_VERSION = 1  # raise when a change alters the images a seed gives

Stroke = list[tuple[float, float]]  # control points in a unit box: x right, y down

# Each digit's allographs: name -> strokes. Curves are given by a few control points and
# smoothed when drawn (Catmull-Rom), as a tablet or a steady hand gives them.
ALLOGRAPHS: dict[int, dict[str, list[Stroke]]] = {
    0: {
        "oval": [[(0.5, 0.02), (0.18, 0.2), (0.12, 0.55), (0.3, 0.92), (0.62, 0.96),
                  (0.86, 0.65), (0.84, 0.25), (0.55, 0.02), (0.45, 0.06)]],
        "slashed": [[(0.5, 0.02), (0.18, 0.2), (0.12, 0.55), (0.3, 0.92), (0.62, 0.96),
                     (0.86, 0.65), (0.84, 0.25), (0.55, 0.02), (0.45, 0.06)],
                    [(0.78, 0.12), (0.22, 0.88)]],
    },
    1: {
        "plain": [[(0.52, 0.0), (0.5, 1.0)]],
        "flag": [[(0.18, 0.32), (0.42, 0.14), (0.6, 0.0), (0.58, 1.0)]],
        "flag_base": [[(0.2, 0.3), (0.42, 0.13), (0.6, 0.0), (0.58, 0.98)],
                      [(0.25, 1.0), (0.9, 1.0)]],
        "serif": [[(0.34, 0.12), (0.52, 0.0), (0.52, 1.0)], [(0.38, 1.0), (0.66, 1.0)]],
    },
    2: {
        "plain": [[(0.12, 0.25), (0.35, 0.03), (0.7, 0.05), (0.85, 0.3), (0.6, 0.6),
                   (0.1, 0.98), (0.92, 0.97)]],
        "loop": [[(0.12, 0.25), (0.35, 0.03), (0.7, 0.05), (0.85, 0.3), (0.6, 0.6),
                  (0.15, 0.95), (0.12, 0.8), (0.3, 0.8), (0.45, 0.97), (0.92, 0.96)]],
    },
    3: {
        "round": [[(0.15, 0.12), (0.48, 0.0), (0.82, 0.18), (0.7, 0.42), (0.4, 0.5),
                   (0.8, 0.62), (0.86, 0.85), (0.52, 1.0), (0.12, 0.88)]],
        "flat_top": [[(0.12, 0.02), (0.85, 0.02), (0.45, 0.42), (0.8, 0.56), (0.88, 0.82),
                      (0.55, 1.0), (0.12, 0.88)]],
    },
    4: {
        "closed": [[(0.62, 0.0), (0.08, 0.68), (0.92, 0.68)], [(0.66, 0.02), (0.64, 1.0)]],
        "open": [[(0.2, 0.0), (0.12, 0.62), (0.9, 0.6)], [(0.68, 0.1), (0.66, 1.0)]],
    },
    5: {
        "plain": [[(0.24, 0.02), (0.18, 0.46), (0.55, 0.38), (0.85, 0.6), (0.8, 0.88),
                   (0.45, 1.0), (0.12, 0.86)], [(0.24, 0.02), (0.85, 0.02)]],
        "one_stroke": [[(0.85, 0.02), (0.24, 0.02), (0.18, 0.46), (0.55, 0.38), (0.85, 0.6),
                        (0.8, 0.88), (0.45, 1.0), (0.12, 0.86)]],
    },
    6: {
        "curved": [[(0.75, 0.02), (0.38, 0.2), (0.16, 0.6), (0.28, 0.92), (0.58, 0.99),
                    (0.84, 0.78), (0.75, 0.52), (0.45, 0.48), (0.2, 0.66)]],
        "straight": [[(0.55, 0.0), (0.22, 0.62), (0.28, 0.92), (0.58, 0.99), (0.84, 0.78),
                      (0.75, 0.52), (0.45, 0.48), (0.22, 0.64)]],
    },
    7: {
        "plain": [[(0.1, 0.04), (0.9, 0.04), (0.42, 1.0)]],
        "crossed": [[(0.1, 0.04), (0.9, 0.04), (0.42, 1.0)], [(0.3, 0.52), (0.86, 0.5)]],
        "curved": [[(0.1, 0.04), (0.9, 0.04), (0.62, 0.4), (0.48, 0.7), (0.44, 1.0)]],
        "serif": [[(0.1, 0.2), (0.12, 0.04), (0.9, 0.04), (0.42, 1.0)]],
    },
    8: {
        "one_stroke": [[(0.72, 0.12), (0.5, 0.0), (0.22, 0.15), (0.3, 0.38), (0.72, 0.6),
                        (0.82, 0.85), (0.5, 1.0), (0.18, 0.85), (0.28, 0.6), (0.7, 0.38),
                        (0.76, 0.16)]],
        "two_loops": [[(0.5, 0.47), (0.25, 0.3), (0.3, 0.06), (0.5, 0.0), (0.72, 0.08),
                       (0.76, 0.3), (0.5, 0.47)],
                      [(0.5, 0.47), (0.18, 0.7), (0.3, 0.96), (0.55, 1.0), (0.82, 0.86),
                       (0.8, 0.62), (0.5, 0.47)]],
    },
    9: {
        "curved": [[(0.8, 0.25), (0.55, 0.0), (0.22, 0.12), (0.2, 0.4), (0.5, 0.5),
                    (0.8, 0.3), (0.78, 0.6), (0.62, 0.88), (0.35, 1.0)]],
        "straight": [[(0.8, 0.25), (0.55, 0.0), (0.22, 0.12), (0.2, 0.4), (0.5, 0.5),
                      (0.8, 0.3)], [(0.8, 0.05), (0.78, 1.0)]],
    },
}  # fmt: skip


@dataclass(frozen=True)
class Hand:
    """How one kind of writer and device renders strokes. Widths are fractions of the
    digit's height; `coarse` lists the scan sizes (px) a digit may be reduced to."""

    name: str
    pen: tuple[float, float]  # pen width range
    pressure: float  # width varies along the stroke by up to this fraction
    slant: float  # max horizontal shear (x moves by slant * (0.5 - y))
    rotation: float  # max rotation, degrees
    jitter: float  # control points move by up to this fraction of the box
    smooth: bool  # curves through the points (pen, tablet) or straight segments (mouse)
    coarse: tuple[int, ...] = ()  # scan sizes; empty: full resolution
    coarse_chance: float = 0.0  # probability of a coarse scan
    blur: float = 0.0  # max Gaussian blur radius, px at 96 px
    size: tuple[float, float] = (0.55, 0.8)  # the digit's height, fraction of the canvas


HANDS = {
    # Training styles.
    "ballpoint": Hand("ballpoint", (0.04, 0.09), 0.25, 0.25, 8, 0.035, True),
    "marker": Hand("marker", (0.12, 0.3), 0.1, 0.2, 8, 0.03, True, (16,), 0.3, 1.0),
    "tablet": Hand("tablet", (0.02, 0.06), 0.5, 0.3, 10, 0.04, True),
    "mouse": Hand("mouse", (0.05, 0.14), 0.0, 0.15, 6, 0.05, False),
    "scan": Hand("scan", (0.06, 0.2), 0.2, 0.25, 8, 0.03, True, (8, 12, 16), 0.9, 1.5),
    # Held-out styles: other widths, slants and devices; they never train.
    "felt_tip": Hand("felt_tip", (0.08, 0.16), 0.15, 0.35, 12, 0.04, True, (), 0.0, 2.0),
    "hairline": Hand("hairline", (0.015, 0.035), 0.3, 0.2, 10, 0.03, True),
    "bold_scan": Hand("bold_scan", (0.15, 0.3), 0.05, 0.15, 6, 0.025, False, (10, 14), 0.8),
    # The same shapes thin and bold, filling the frame: preprocessing must read both alike.
    "thin_fill": Hand("thin_fill", (0.04, 0.06), 0.0, 0.2, 6, 0.03, True, size=(0.85, 0.95)),
    "bold_fill": Hand("bold_fill", (0.28, 0.36), 0.0, 0.2, 6, 0.03, True, size=(0.85, 0.95)),
}
TRAIN_HANDS = ("ballpoint", "marker", "tablet", "mouse", "scan")
HELD_OUT_HANDS = ("felt_tip", "hairline", "bold_scan", "thin_fill", "bold_fill")
CANVAS = 96  # px: strokes are drawn at this size, then scanned or kept
# MNIST's own digits as coarse scans (`scanned_views`): the shapes MNIST has, at the few
# pixels a scanned form gives a digit, which MNIST's 20x20 boxes never show. Training only.
MNIST_SCAN = Hand("mnist_scan", (0, 0), 0, 0, 0, 0, True, (8, 10, 12, 16), 1.0, 1.0, (0.6, 0.95))


def allograph_names() -> list[tuple[int, str]]:
    """Every (digit, allograph) pair, in a fixed order."""
    return [(digit, name) for digit in range(10) for name in ALLOGRAPHS[digit]]


def catmull_rom(points: np.ndarray, samples: int = 8) -> np.ndarray:
    """A smooth curve through `points` (n, 2): `samples` points per segment."""
    if len(points) < 3:
        return points
    padded = np.vstack([points[0], points, points[-1]])
    t = np.linspace(0, 1, samples, endpoint=False)[:, None]
    curve = []
    for p0, p1, p2, p3 in zip(padded, padded[1:], padded[2:], padded[3:], strict=False):
        curve.append(
            0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                   + (3 * p1 - p0 - 3 * p2 + p3) * t**3)
        )  # fmt: skip
    return np.vstack([*curve, points[-1:]])


def vary_shape(strokes: list[Stroke], amount: float, rng: np.random.Generator) -> list[np.ndarray]:
    """The same allograph as another writer proportions it: each stroke moved and stretched
    on its own (a longer flag, a lower crossbar, a wider base) by up to `amount` of the box,
    then the whole digit bent by a smooth random warp of up to `amount` (a rounder loop, a
    bowed stem). Jitter moves single points; this moves parts, keeping each stroke smooth."""
    direction = rng.uniform(0, 2 * np.pi, 2)
    frequency, phase = rng.uniform(0.5, 1.5, 2), rng.uniform(0, 2 * np.pi, 2)
    bend = rng.uniform(-amount, amount, 2)
    varied = []
    for stroke in strokes:
        points = np.asarray(stroke, np.float64)
        centre = points.mean(axis=0)
        stretch = 1 + rng.uniform(-amount, amount, 2) * 2
        points = centre + (points - centre) * stretch + rng.uniform(-amount, amount, 2) / 2
        along = points @ np.stack([np.cos(direction), np.sin(direction)])  # (n, 2)
        varied.append(points + bend * np.sin(2 * np.pi * frequency * along + phase))
    return varied


def _place(
    strokes: list[Stroke] | list[np.ndarray], hand: Hand, pen: float, rng: np.random.Generator
) -> tuple[list[np.ndarray], float]:
    """Strokes jittered, slanted, stretched and rotated, then fitted with their ink (a pen
    `pen` of the digit's height wide) inside the canvas at a random size and position.
    Returns px coordinates and the pen width in px."""
    slant = rng.uniform(-0.3, 1.0) * hand.slant  # most people lean right
    angle = np.deg2rad(rng.uniform(-hand.rotation, hand.rotation))
    aspect = rng.uniform(0.7, 1.25)
    rotate = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    placed = []
    for stroke in strokes:
        points = np.asarray(stroke, np.float64)
        points = points + rng.uniform(-hand.jitter, hand.jitter, points.shape)
        points[:, 0] = (points[:, 0] - 0.5) * aspect + slant * (0.5 - points[:, 1])
        points[:, 1] -= 0.5
        placed.append(points @ rotate.T)
    every = np.vstack(placed)
    low, high = every.min(axis=0), every.max(axis=0)
    pen_units = pen * max(high[1] - low[1], 1e-3)
    extent = high - low + pen_units  # the ink's box, in the strokes' units
    height = rng.uniform(*hand.size) * CANVAS
    scale = min(height / max(extent[1], 0.5 * extent[0]), 0.98 * CANVAS / extent[0])
    room = CANVAS - extent * scale
    offset = rng.uniform(0.25, 0.75, 2) * room - (low - pen_units / 2) * scale
    return [points * scale + offset for points in placed], pen_units * scale


def _draw_stroke(draw: ImageDraw.ImageDraw, points: np.ndarray, width: float, hand: Hand, rng):
    """One stroke as round-capped segments whose width follows a random pressure curve."""
    path = catmull_rom(points) if hand.smooth else points
    if not hand.smooth:  # a mouse gives straight segments between sparse samples
        segments = [np.linspace(a, b, 4, endpoint=False) for a, b in itertools.pairwise(path)]
        path = np.vstack([*segments, path[-1:]])
    phase, cycles = rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 2.0)
    along = np.linspace(0, 1, len(path))
    widths = width * (1 + hand.pressure * np.sin(phase + 2 * np.pi * cycles * along))
    for (x0, y0), (x1, y1), w in zip(path, path[1:], widths, strict=False):
        draw.line([(x0, y0), (x1, y1)], fill=255, width=max(1, round(w)))
        r = w / 2
        draw.ellipse([x1 - r, y1 - r, x1 + r, y1 + r], fill=255)
    x, y, r = path[0][0], path[0][1], widths[0] / 2
    draw.ellipse([x - r, y - r, x + r, y + r], fill=255)


def _scan(ink: Image.Image, hand: Hand, rng: np.random.Generator) -> Image.Image:
    """A coarse scan (reduced to a few px and enlarged again, blocky or blurred), or none."""
    if not hand.coarse or rng.random() >= hand.coarse_chance:
        return ink
    size = int(rng.choice(hand.coarse))
    small = ink.resize((size, size), Image.Resampling.BOX)
    if rng.random() < 0.5:  # the levels an 8x8 count of a 32x32 bitmap gives: 17
        levels = np.round(np.asarray(small, np.float32) / 255 * 16) * (255 / 16)
        small = Image.fromarray(levels.astype(np.uint8))
    resample = Image.Resampling.NEAREST if rng.random() < 0.5 else Image.Resampling.BILINEAR
    return small.resize(ink.size, resample)


def render(
    digit: int, allograph: str, hand_name: str, rng: np.random.Generator, shape: float = 0.0
) -> np.ndarray:
    """One digit as a (CANVAS, CANVAS) uint8 grey image: dark ink on light paper. `shape`:
    how far its parts may be moved, stretched and bent (`vary_shape`); 0 draws the allograph
    as it is, with the same random numbers as before shape variety existed."""
    return render_strokes(ALLOGRAPHS[digit][allograph], hand_name, rng, shape)


def render_strokes(
    strokes: list[Stroke], hand_name: str, rng: np.random.Generator, shape: float = 0.0
) -> np.ndarray:
    """Any strokes (control points in a unit box, as in ALLOGRAPHS) drawn as `render` draws
    an allograph: a shape between two allographs, say, for a development check."""
    hand = HANDS[hand_name]
    if shape:
        strokes = vary_shape(strokes, shape, rng)
    strokes, width = _place(strokes, hand, rng.uniform(*hand.pen), rng)
    ink = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(ink)
    for stroke in strokes:
        _draw_stroke(draw, stroke, width, hand, rng)
    return _on_paper(ink, hand, rng)


def _on_paper(ink: Image.Image, hand: Hand, rng: np.random.Generator) -> np.ndarray:
    """Ink (0-255, white is ink) scanned, blurred and put on paper as `hand` does: a
    (CANVAS, CANVAS) uint8 grey image, dark ink on light paper."""
    ink = _scan(ink, hand, rng)
    if hand.blur:
        ink = ink.filter(ImageFilter.GaussianBlur(rng.uniform(0, hand.blur)))
    paper, pen = rng.uniform(190, 255), rng.uniform(0, 90)
    amount = np.asarray(ink, np.float32) / 255
    grey = paper + (pen - paper) * amount + rng.normal(0, rng.uniform(0, 6), amount.shape)
    return np.clip(grey, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class SynthConfig:
    """What a generated set holds; saved with the runs and model cards that use it."""

    count: int = 6000  # images, spread evenly over every (digit, allograph)
    hands: tuple[str, ...] = TRAIN_HANDS
    seed: int = 0
    shape: float = 0.0  # shape variety (`vary_shape`); 0: the allographs as drawn
    version: int = GENERATOR_VERSION

    def as_dict(self) -> dict:
        return {**asdict(self), "hands": list(self.hands)}


def generate(cfg: SynthConfig) -> tuple[list[np.ndarray], np.ndarray, list[tuple[str, str]]]:
    """`cfg.count` rendered digits, their labels, and (allograph, hand) of each. Every
    (digit, allograph) gets the same share; hands are drawn at random from `cfg.hands`."""
    unknown = set(cfg.hands) - set(HANDS)
    if unknown:
        raise ValueError(f"unknown hands {sorted(unknown)}; choose from {sorted(HANDS)}")
    rng = np.random.default_rng(cfg.seed)
    pairs = allograph_names()
    images, labels, kinds = [], [], []
    for k in range(cfg.count):
        digit, allograph = pairs[k % len(pairs)]
        hand = cfg.hands[int(rng.integers(len(cfg.hands)))]
        images.append(render(digit, allograph, hand, rng, cfg.shape))
        labels.append(digit)
        kinds.append((allograph, hand))
    return images, np.asarray(labels, np.uint8), kinds


def training_set(cfg: SynthConfig) -> tuple[list[np.ndarray], np.ndarray]:
    """Generated digits for training: refuses any held-out hand, so none ever trains."""
    held_out = set(cfg.hands) & set(HELD_OUT_HANDS)
    if held_out:
        raise ValueError(f"hands {sorted(held_out)} are held out for evaluation")
    images, labels, _ = generate(cfg)
    return images, labels


def preprocessed_views(
    images: list[np.ndarray], labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Generated digits as the model sees them: through `preprocess`, like any photo, rounded
    to uint8 as MNIST is: (N, 28, 28) and their labels. A render preprocessing finds no digit
    in (rare: a faint pen on dark paper) is left out."""
    from digit_recognizer.errors import NoDigitError
    from digit_recognizer.preprocess import preprocess

    views, kept = [], []
    for image, label in zip(images, labels, strict=True):
        try:
            view = preprocess(image.astype(np.float32))
        except NoDigitError:
            continue
        views.append(np.clip(np.rint(view), 0, 255).astype(np.uint8))
        kept.append(label)
    return np.stack(views), np.asarray(kept, np.uint8)


def allograph_views(
    digit: int, allograph: str, count: int, hands: tuple[str, ...], seed: int
) -> np.ndarray:
    """`count` views (uint8 28x28, through preprocessing) of one allograph, the hands taken
    in turn: one writing habit, e.g. the flagged 1 (`1`, `"flag"`), in many renderings."""
    rng = np.random.default_rng(seed)
    return stroke_views(ALLOGRAPHS[digit][allograph], count, hands, rng)


def stroke_views(
    strokes: list[Stroke], count: int, hands: tuple[str, ...], rng: np.random.Generator
) -> np.ndarray:
    """`count` views (uint8 28x28, through preprocessing) of any strokes (`render_strokes`),
    the hands taken in turn; a render preprocessing finds no digit in is left out."""
    images = [render_strokes(strokes, hands[k % len(hands)], rng) for k in range(count)]
    views, _ = preprocessed_views(images, np.zeros(count, np.uint8))
    return views


def render_scan(digit_image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An MNIST digit (28x28, light ink on black) as a coarse scan: its ink enlarged to a
    random height of the canvas, reduced to 8-16 px and enlarged again (MNIST_SCAN), on paper.
    A (CANVAS, CANVAS) uint8 grey image, dark ink on light paper."""
    crop = ink_box(digit_image, 0)
    height = rng.uniform(*MNIST_SCAN.size) * CANVAS
    scale = min(height / crop.height, 0.98 * CANVAS / crop.width)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    room = np.array([CANVAS - size[0], CANVAS - size[1]])
    left, top = (rng.uniform(0.25, 0.75, 2) * room).astype(int)
    ink = Image.new("L", (CANVAS, CANVAS), 0)
    ink.paste(crop.resize(size, Image.Resampling.BILINEAR), (int(left), int(top)))
    return _on_paper(ink, MNIST_SCAN, rng)


def scanned_views(
    images: np.ndarray, labels: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """MNIST digits (N, 28, 28) as coarse scans read through preprocessing, like
    `preprocessed_views`: (N, 28, 28) uint8 and their labels. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    return preprocessed_views([render_scan(image, rng) for image in images], labels)


def block_scanned_views(
    images: np.ndarray, labels: np.ndarray, scan=block_scan
) -> tuple[np.ndarray, np.ndarray]:
    """Digits (N, 28, 28, light ink on black) as 8x8 block scans (`block_scan` or
    `form_scan`) read through preprocessing, like `preprocessed_views`: (N, 28, 28) uint8 and
    their labels."""
    return preprocessed_views([scan(image) for image in images], labels)
