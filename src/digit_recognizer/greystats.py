"""Grey-level statistics of images, in NumPy and Pillow: histogram, Otsu's threshold, median
and percentiles.

NumPy's median and percentile import numpy.ma on first use (15-25 ms of a cold `digits
predict`); these give the same values to the last bit (tests/test_preprocess.py checks them).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def grey_histogram(values: np.ndarray) -> np.ndarray:
    """Pixel counts of grey levels 0-255 of a 2-D image (clipped to 0-255, fractions
    dropped). Pillow counts 8-bit pixels about twice as fast as np.bincount."""
    levels = values if values.dtype == np.uint8 else np.clip(values, 0, 255).astype(np.uint8)
    return np.array(Image.fromarray(levels).histogram())


def otsu_threshold(values: np.ndarray) -> float:
    """Grey level that best separates two classes (Otsu 1979), over a 256-bin histogram."""
    hist = grey_histogram(values).astype(np.float64)
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * np.arange(256))
    total_weight, total_mean = weight[-1], mean[-1]
    spread = (total_mean * weight - mean * total_weight) ** 2
    sizes = weight * (total_weight - weight)
    # Where one class is empty (sizes 0) the spread is exactly 0 too: no split, never chosen.
    between = np.divide(spread, sizes, out=np.full(256, -1.0), where=sizes > 0)
    return float(np.argmax(between))


def median(values) -> np.floating:
    """np.median of all the values (any shape, or a list), without the NaN check that imports
    numpy.ma on first use (15-25 ms of a cold `digits predict`). The images hold no NaN."""
    values = np.asarray(values).ravel()
    high = values.size // 2
    low = high if values.size % 2 else high - 1
    return np.mean(np.partition(values, (low, high))[low : high + 1])


def high_percentile(ink: np.ndarray, q: float) -> np.float32:
    """np.percentile(ink, q) for q near 100, read off a histogram when the ink is whole grey
    levels (any 8-bit image) and the ranks around q hold one value, as they do when the
    darkest ink is solid; otherwise `_percentile`."""
    levels = ink.astype(np.uint8)
    if np.array_equal(levels, ink):
        at_or_below = np.cumsum(grey_histogram(levels))
        rank = int(q / 100 * (ink.size - 1))
        neighbours = np.clip([rank - 1, rank + 2], 0, ink.size - 1)
        below, above = np.searchsorted(at_or_below, neighbours, side="right")
        if below == above:  # the same value on both sides: no interpolation to repeat
            return np.float32(below)
    return percentile(ink, q)


def percentile(values: np.ndarray, q: float) -> np.floating:
    """np.percentile(values, q), linear method, to the last bit: one partition instead of
    numpy's unique() of the indexes, which imports numpy.ma on first use (15-25 ms of a
    cold `digits predict`)."""
    flat = values.ravel()
    position = q / 100 * (flat.size - 1)
    below = int(position)
    above = min(below + 1, flat.size - 1)
    part = np.partition(flat, (below, above))
    low, high, fraction = part[below], part[above], position - below
    if fraction >= 0.5:  # numpy's _lerp: interpolate from the nearer end
        return high - (high - low) * (1 - fraction)
    return low + (high - low) * fraction
