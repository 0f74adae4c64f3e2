"""Reading a whole number (a year, a meter reading) whose digits may touch or overlap.

No segmentation: the number's ink is cropped and scaled to a 32 px tall line, a small
convolutional network reads it column by column (48 frames, each 4 columns wide), two
bidirectional LSTMs let every frame see the whole line, and the network says, per frame, how
likely each digit or "nothing" (CTC's blank) is there. Greedy decoding keeps the
most likely class of each frame, merges repeats and drops blanks. Between two digits' frames
the line is cut at the column with the least ink: a digit's box spans the columns between its
cuts and the rows its ink fills there. Its probabilities are its frame's (blank left out),
multiplied by a second network's, which reads the 32x32 stretch of the line around the frame
(the digit with the edges of its neighbours), and by the digit model's when the digit stands
apart (see `NumberReader.digit_probabilities`). Three readings multiplied are over-confident:
a temperature fitted on validation numbers softens them, and a digit whose runner-up comes
within the margin chosen there is called unsure.

The networks are trained by tools/train_number_reader.py (CTC loss, keras.losses.CTC) and
tools/train_context_reader.py, calibrated by tools/calibrate_number_reader.py, and run here in
ONNX Runtime. Imports NumPy, Pillow and onnxruntime only.

reader = NumberReader()
reading = reader.read(grey)       # reading.number "2025", reading.confidence, reading.digits
(Recognizer.read_number opens the image and passes the digit model.)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from digit_recognizer.errors import NoDigitError
from digit_recognizer.preprocess import (
    digit_from_ink,
    halve,
    ink_extent,
    ink_map,
    ink_mask,
    smooth_blocks,
)

ASSETS = Path(__file__).parent / "assets"
DEFAULT_NUMBER_MODEL = ASSETS / "number_model.onnx"
DEFAULT_CONTEXT_MODEL = ASSETS / "context_model.onnx"
HEIGHT, WIDTH = 32, 192  # the line the network reads, px
STRIDE = 4  # columns per output frame
FRAMES = WIDTH // STRIDE
WINDOW = 32  # columns of the line around a digit's frame that the context model reads
BLANK = 0  # CTC's blank; digit d is class d + 1
MARGIN = 2  # px of black around the ink in the line
COARSE = 512  # images with a shorter side past this are searched for ink at a lower scale
DETAIL = 4 * HEIGHT  # the ink's neighbourhood is halved while its shorter side exceeds this


@dataclass(frozen=True)
class NumberDigit:
    digit: int
    confidence: float
    box: tuple[int, int, int, int]  # left, top, right, bottom in the image, px
    runner_up: int  # the second most probable digit
    runner_up_probability: float
    unsure: bool = False  # the runner-up came close: the digit may as well be it


def number_digit(
    probabilities: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.0
) -> NumberDigit:
    """A digit read with these ten probabilities: the most probable, the runner-up, and
    whether their gap is under `margin` (unsure): the gap the margin was chosen on."""
    from digit_recognizer.predict import top_two_gap

    second, first = (int(k) for k in np.argsort(probabilities)[-2:])
    unsure = bool(top_two_gap(probabilities) < margin)
    return NumberDigit(first, float(probabilities[first]), box, second,
                       float(probabilities[second]), unsure)  # fmt: skip


@dataclass(frozen=True)
class NumberReading:
    """A number read from an image: its digits left to right, how sure the reader is, and
    the line the network read (32x192, light ink on black)."""

    digits: list[NumberDigit]
    view: np.ndarray = field(repr=False)

    @property
    def number(self) -> str:
        return "".join(str(d.digit) for d in self.digits)

    @property
    def confidence(self) -> float:
        """Probability that every digit is right, if the digits' errors are independent."""
        return float(np.prod([d.confidence for d in self.digits]))

    @property
    def unsure(self) -> bool:
        """Some digit's runner-up came close."""
        return any(d.unsure for d in self.digits)

    def scaled(self, x: float, y: float) -> NumberReading:
        """The same reading with its boxes in an image `x` times wider, `y` times taller (the
        image it was read from had been shrunk)."""
        if x == y == 1:
            return self
        digits = [
            replace(d, box=(round(d.box[0] * x), round(d.box[1] * y),
                            round(d.box[2] * x), round(d.box[3] * y)))
            for d in self.digits
        ]  # fmt: skip
        return NumberReading(digits, self.view)

    def as_dict(self) -> dict:
        return {
            "number": self.number,
            "confidence": round(self.confidence, 6),
            "unsure": self.unsure,
            "digits": [
                {
                    "digit": d.digit,
                    "confidence": round(d.confidence, 6),
                    "runner_up": d.runner_up,
                    "runner_up_probability": round(d.runner_up_probability, 6),
                    "unsure": d.unsure,
                    "box": list(d.box),
                }
                for d in self.digits
            ],
        }


@dataclass(frozen=True)
class Line:
    """The number's ink scaled into the network's input, and how to map columns back."""

    view: np.ndarray  # (HEIGHT, WIDTH) float32, 0-255, light on black
    ink: np.ndarray  # the cropped ink at its own scale (for the boxes' rows)
    left: float  # image column of the crop's first column
    top: float  # image row of the crop's first row
    scale: float  # line px per crop px
    factor: int  # image px per crop px (halvings)


def _ink_box(grey: np.ndarray) -> tuple[int, int, int, int] | None:
    """Where the ink is in a large image, found at a lower scale: (top, bottom, left, right)
    in image px with a margin, or None for an image small enough to read whole."""
    factor, small = 1, grey
    while min(small.shape) >= COARSE:
        small, factor = halve(small), 2 * factor
    if factor == 1:
        return None
    top, bottom, left, right = ink_extent(ink_mask(ink_map(small)))
    pad = 2
    return (max(top - pad, 0) * factor, (bottom + 1 + pad) * factor,
            max(left - pad, 0) * factor, (right + 1 + pad) * factor)  # fmt: skip


def line_view(grey: np.ndarray) -> Line:
    """A grey image of a number (any polarity) -> the network's input: the ink cropped,
    scaled to HEIGHT - 2 * MARGIN px tall (less if the number is too long to fit), on black,
    left-aligned. A pixel-replicated enlargement (a small scan zoomed in) is read from its own
    pixels, as single digits are (`preprocess.smooth_blocks`). Raises NoDigitError on a blank
    image."""
    grey = smooth_blocks(np.asarray(grey, np.float32))
    top = left = 0
    found = _ink_box(grey)
    if found is not None:  # read the ink's neighbourhood only, at a useful scale
        top, bottom, left, right = found
        grey = grey[top:bottom, left:right]
    factor = 1
    while min(grey.shape) >= DETAIL:  # 2-4x the line's detail is plenty
        grey, factor = halve(grey), 2 * factor
    ink = ink_map(grey)
    mask = ink_mask(ink)
    first_row, last_row, first_col, last_col = ink_extent(mask)
    crop = np.where(mask, ink, 0)[first_row : last_row + 1, first_col : last_col + 1]
    inner = HEIGHT - 2 * MARGIN
    scale = min(inner / crop.shape[0], (WIDTH - 2 * MARGIN) / crop.shape[1])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    small = Image.fromarray(crop.astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    view = np.zeros((HEIGHT, WIDTH), np.float32)
    row = (HEIGHT - size[1]) // 2
    view[row : row + size[1], MARGIN : MARGIN + size[0]] = np.asarray(small, np.float32)
    return Line(view, crop, left + first_col * factor, top + first_row * factor, scale, factor)


def greedy_decode(logits: np.ndarray) -> list[tuple[int, int, float]]:
    """One line's (FRAMES, 11) logits -> (digit, frame, probability) per digit read: the most
    likely class per frame, repeats merged, blanks dropped. A digit held over several frames
    is placed at, and as sure as, its most confident one."""
    probabilities = softmax(logits)
    best = probabilities.argmax(axis=-1)
    digits: list[tuple[int, int, float]] = []
    previous = BLANK
    for frame, label in enumerate(best):
        p = float(probabilities[frame, label])
        if label != BLANK and label == previous and p > digits[-1][2]:
            digits[-1] = (int(label) - 1, frame, p)
        elif label != BLANK and label != previous:
            digits.append((int(label) - 1, frame, p))
        previous = label
    return digits


def _cut(view_ink: np.ndarray, a: float, b: float) -> tuple[float, bool]:
    """The column between two digits' frames where the least ink crosses (the middle one of
    a run of empty columns), where one digit ends and the next begins, and whether it is
    empty (the digits do not touch there)."""
    first, last = int(a), max(int(b), int(a) + 1)
    stretch = view_ink[first:last]
    lows = np.flatnonzero(stretch <= stretch.min())
    return first + float(lows[len(lows) // 2]) + 0.5, bool(stretch.min() == 0)


def _spans(line: Line, frames: list[int]) -> tuple[list[tuple[int, int]], list[bool]]:
    """Each digit's columns in the cropped ink, from the cut before its frame to the cut after
    it (the first and last reach the ends), and whether it stands apart: no ink crosses
    either cut."""
    centres = [(frame + 0.5) * STRIDE for frame in frames]
    view_ink = line.view.sum(axis=0)
    cuts = [_cut(view_ink, a, b) for a, b in itertools.pairwise(centres)]
    edges = [MARGIN, *(column for column, _ in cuts), WIDTH]
    clear = [True, *(empty for _, empty in cuts), True]
    width = line.ink.shape[1]
    spans = []
    for a, b in itertools.pairwise(edges):
        first = int(np.clip(np.floor((a - MARGIN) / line.scale), 0, width - 1))
        spans.append((first, int(np.clip(np.ceil((b - MARGIN) / line.scale), first + 1, width))))
    return spans, [left and right for left, right in itertools.pairwise(clear)]


def _box(line: Line, first: int, last: int) -> tuple[int, int, int, int]:
    """The box, in image px, of the ink in the columns [first, last) of the crop (the
    columns' full height if they hold none)."""
    inked = line.ink[:, first:last] > 0
    rows, cols = np.flatnonzero(inked.any(axis=1)), np.flatnonzero(inked.any(axis=0))
    if rows.size == 0:  # a digit read where no ink is
        rows, cols = np.array([0, line.ink.shape[0] - 1]), np.array([0, last - first - 1])
    f, left, top = line.factor, line.left + first * line.factor, line.top
    return (int(left + cols[0] * f), int(top + rows[0] * f),
            int(left + (cols[-1] + 1) * f), int(top + (rows[-1] + 1) * f))  # fmt: skip


def digit_views(line: Line, spans: list[tuple[int, int]]) -> np.ndarray:
    """Each digit's ink, cut out at its columns, as the digit model's 28x28 view."""
    views = []
    for first, last in spans:
        mask = np.zeros(line.ink.shape, dtype=bool)
        mask[:, first:last] = line.ink[:, first:last] > 0
        if not mask.any():
            views.append(np.zeros((28, 28), np.float32))
            continue
        views.append(digit_from_ink(line.ink, mask))
    return np.stack(views)


def digit_windows(view: np.ndarray, frames: list[int]) -> np.ndarray:
    """The WINDOW columns of the line centred on each digit's frame (black past its ends):
    the digit with the edges of its neighbours, as the context model reads it."""
    half = WINDOW // 2
    padded = np.pad(np.asarray(view, np.float32), ((0, 0), (half, half)))
    centres = [int((frame + 0.5) * STRIDE) + half for frame in frames]
    return np.stack([padded[:, c - half : c + half] for c in centres])


class NumberReader:
    """ONNX Runtime sessions over the number model and the context model."""

    def __init__(
        self,
        model: str | Path | None = None,
        threads: int = 1,
        context_model: str | Path | None = None,
    ):
        from digit_recognizer.predict import load_card, open_session

        self.model_path = Path(model) if model else DEFAULT_NUMBER_MODEL
        self.session = open_session(self.model_path, threads)
        self.input_name = self.session.get_inputs()[0].name
        self.context_path = Path(context_model) if context_model else DEFAULT_CONTEXT_MODEL
        self.threads = threads
        self._context_session = None  # opened on first read (training it needs logits only)
        # Fitted on the validation numbers (tools/calibrate_number_reader.py) and carried by
        # the number model's card; without it digits are read as the models say, never unsure.
        calibration = load_card(self.model_path).get("calibration", {})
        self.temperature = float(calibration.get("temperature", 1.0))
        self.unsure_margin = float(calibration.get("unsure", {}).get("margin", 0.0))

    def logits(self, views: np.ndarray) -> np.ndarray:
        """(N, HEIGHT, WIDTH) lines -> (N, FRAMES, 11) logits."""
        batch = np.asarray(views, np.float32).reshape(-1, HEIGHT, WIDTH, 1)
        return self.session.run(None, {self.input_name: batch})[0]

    def in_context(self, windows: np.ndarray) -> np.ndarray:
        """(N, HEIGHT, WINDOW) stretches of a line -> (N, 10) probabilities of their digit."""
        from digit_recognizer.predict import open_session

        if self._context_session is None:
            self._context_session = open_session(self.context_path, self.threads)
        batch = np.asarray(windows, np.float32).reshape(-1, HEIGHT, WINDOW, 1)
        session = self._context_session
        return session.run(None, {session.get_inputs()[0].name: batch})[0]

    def read(self, grey: np.ndarray, digit_model=None) -> NumberReading:
        """Read the number in a grey image: its digits (see `digit_probabilities`), each
        with its calibrated probability, runner-up and box. Raises NoDigitError if there is
        none."""
        from digit_recognizer.predict import apply_temperature

        line, spans, probabilities = self.digit_probabilities(grey, digit_model)
        probabilities = apply_temperature(probabilities, self.temperature)
        digits = [
            number_digit(p, _box(line, *span), self.unsure_margin)
            for p, span in zip(probabilities, spans, strict=True)
        ]
        return NumberReading(digits, line.view)

    def digit_probabilities(
        self, grey: np.ndarray, digit_model=None
    ) -> tuple[Line, list[tuple[int, int]], np.ndarray]:
        """The line read, each digit's columns in its ink and (N, 10) probabilities, before
        calibration. The sequence model says how many digits and where; each digit's reading
        is its frame's multiplied by the context model's, which reads the stretch of line
        around it, neighbours' edges included. With `digit_model` (28x28 views -> (N, 10)
        probabilities), a digit that stands apart is also read by it from its own columns
        and multiplied in: trained on far more digits, it helps say which. (A digit that
        touches a neighbour is not: cut out at columns, it brings pieces of the neighbour
        that the digit model never saw.) Raises NoDigitError if there is none."""
        line = line_view(grey)
        logits = self.logits(line.view[np.newaxis])[0]
        decoded = greedy_decode(logits)
        if not decoded:
            raise NoDigitError("no digit found (the number reader read nothing)")
        frames = [frame for _, frame, _ in decoded]
        spans, apart = _spans(line, frames)
        probabilities = softmax(logits[frames])[:, 1:]  # without the blank
        probabilities = multiplied(probabilities, self.in_context(digit_windows(line.view, frames)))
        alone = [k for k, isolated in enumerate(apart) if isolated]
        if digit_model is not None and alone:
            views = digit_views(line, [spans[k] for k in alone])
            probabilities[alone] = multiplied(probabilities[alone], digit_model(views))
        return line, spans, probabilities


def multiplied(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Two readings of the same digits (rows of probabilities) combined, each row summing to
    1. Each probability is floored first: two sure and opposite readings whose products all
    underflow to 0 still give a distribution, not 0/0."""
    both = np.maximum(p, 1e-12).astype(np.float64) * np.maximum(q, 1e-12)
    return both / both.sum(axis=1, keepdims=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)
