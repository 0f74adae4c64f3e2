"""Segmentation of a row of digits (a photographed "2025"): connected components, broken
strokes merged, touching digits cut at the columns with the least ink, left to right.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from digit_recognizer import morphology
from digit_recognizer.errors import NoDigitError
from digit_recognizer.greystats import median
from digit_recognizer.images import load_grey
from digit_recognizer.preprocess import digit_from_ink, ink_map, ink_mask, smooth_blocks


@dataclass(frozen=True)
class Digit:
    """A preprocessed digit: the 28x28 float32 view (0-255, light on dark) and where it was."""

    image: np.ndarray
    box: tuple[int, int, int, int]  # left, top, right, bottom in the working image, px


def _merge_overlapping(boxes: list[list[int]]) -> list[list[int]]:
    """Merge boxes [left, top, right, bottom] that overlap by half the narrower one's width:
    the pieces of a broken stroke (the cap of a 5, a 4 drawn in two strokes)."""
    merged: list[list[int]] = []
    for box in sorted(boxes):
        if merged:
            last = merged[-1]
            overlap = min(last[2], box[2]) - max(last[0], box[0])
            if overlap >= 0.5 * min(last[2] - last[0], box[2] - box[0]):
                merged[-1] = [min(last[0], box[0]), min(last[1], box[1]),
                              max(last[2], box[2]), max(last[3], box[3])]  # fmt: skip
                continue
        merged.append(list(box))
    return merged


def _split_wide(box: list[int], mask: np.ndarray, height: float) -> list[list[int]]:
    """Cut a box holding touching digits at the columns with the least ink."""
    left, top, right, bottom = box
    width = right - left
    parts = round(width / (0.8 * height))
    if width < 1.25 * height or parts < 2:
        return [box]
    ink_per_column = mask[top:bottom, left:right].sum(axis=0)
    cuts, step = [left], width / parts
    for k in range(1, parts):
        lo, hi = int(k * step - 0.25 * step), int(k * step + 0.25 * step)
        hi = max(hi, lo + 1)  # a narrow box (step under 2 px) would leave nothing to search
        cuts.append(left + lo + int(np.argmin(ink_per_column[lo:hi])))
    cuts.append(right)
    return [[a, top, b, bottom] for a, b in itertools.pairwise(cuts) if b > a]


def split_digits(source: bytes | str | Path | Image.Image) -> list[Digit]:
    """Find each digit in a row (connected components, broken strokes merged, touching
    digits split) and preprocess each one; returned left to right."""
    ink = ink_map(smooth_blocks(load_grey(source)))  # a zoomed small scan: its own pixels
    mask = ink_mask(ink)
    boxes = _merge_overlapping(morphology.bounding_boxes(*morphology.label(mask)))
    height = float(median([b[3] - b[1] for b in boxes]))
    boxes = [part for box in boxes for part in _split_wide(box, mask, height)]
    digits = []
    for left, top, right, bottom in boxes:
        part = np.zeros_like(mask)
        part[top:bottom, left:right] = mask[top:bottom, left:right]
        if part.sum() >= 0.02 * mask.sum():  # a stray dot is not a digit
            digits.append(Digit(digit_from_ink(ink, part), (left, top, right, bottom)))
    if not digits:
        raise NoDigitError("no digit found")
    return digits
