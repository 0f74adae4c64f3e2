"""Turn any image of a handwritten digit into what the model was trained on.

MNIST digits are light ink on black, the digit's longer side is 20 px (anti-aliased), and it
sits in a 28x28 frame centred by its centre of mass. Photos, scans and canvas drawings are
none of that, which is why MNIST models that score 99 % misread digits people draw. Every
path (CLI, web app, evaluation) calls `preprocess`; there is no second copy.

Pipeline, on a grey image at most WORK_SIZE px on its longer side (tried first at half its
size, kept when the digit still spans DETAIL px there):
  grey -> blocks smoothed (a pixel-replicated enlargement, e.g. an 8x8 scan shown at 32 px)
       -> ink map (polarity, uneven background removed, contrast normalised)
       -> mask (Otsu threshold, specks dropped) -> crop to the ink
       -> stroke width normalised (grey erosion/dilation) -> 20 px box -> centred 28x28
Reading the file is images.py's job, cutting a row of digits apart segment.py's. Imports NumPy
and Pillow only: never TensorFlow, nor SciPy (see morphology.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from digit_recognizer import morphology
from digit_recognizer.errors import ImageError, NoDigitError
from digit_recognizer.greystats import grey_histogram, high_percentile, median, otsu_threshold
from digit_recognizer.images import MAX_PIXELS, load_grey

BOX = 20  # MNIST: longer side of the digit, in px
FRAME = 28  # MNIST: image size, in px
MNIST_STROKE = 3.0  # median MNIST stroke width in the 20 px box (2.97 on 2,000 train digits)
DETAIL = 4 * BOX  # a digit's crop is worked on at most this size (px): 4x its final 20 px
MIN_CONTRAST = 24.0  # grey levels between paper and ink below which we see no digit


# --- From grey image to ink ------------------------------------------------------------


def _change_positions(lines: np.ndarray) -> np.ndarray:
    """Indices i > 0 where lines[i] differs from lines[i - 1], along the first axis."""
    differs = lines[1:] != lines[:-1]
    return np.flatnonzero(differs.any(axis=1) if differs.ndim > 1 else differs) + 1


def replication_factor(grey: np.ndarray) -> int:
    """k when the image is a smaller one enlarged k times by repeating pixels (every k x k
    block one grey, from the top-left corner), else 1."""

    def common_factor(rows: np.ndarray, cols: np.ndarray) -> int:
        return int(np.gcd.reduce(np.concatenate([rows, cols, grey.shape])))

    # k divides every position where a row or a column starts to differ; those along the
    # middle column and row alone turn a photo or a drawing away before the whole image.
    height, width = grey.shape
    middle = common_factor(
        _change_positions(grey[:, width // 2]), _change_positions(grey[height // 2])
    )
    if middle < 2:
        return 1
    return common_factor(_change_positions(grey), _change_positions(grey.T))


def smooth_blocks(grey: np.ndarray) -> np.ndarray:
    """A pixel-replicated enlargement (`replication_factor` k >= 2: an 8x8 scan shown at
    32 px, a zoomed screenshot) enlarged again from its own pixels, bilinear, to the same
    size: its staircase edges would otherwise become the strokes' outline, and the faint
    blocks at a stroke's side would be cut to their inner pixel. Other images pass as they
    are. (MNIST validation digits as 8x8 block scans: 98.35 % read before, 98.80 % after.)"""
    factor = replication_factor(grey)
    if factor < 2:
        return grey
    native = Image.fromarray(grey[::factor, ::factor].astype(np.float32))
    size = (grey.shape[1], grey.shape[0])
    return np.asarray(native.resize(size, Image.Resampling.BILINEAR), np.float32)


def _border(image: np.ndarray) -> np.ndarray:
    """The outermost rows and columns: mostly paper, whatever the digit does."""
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def _opened(image: Image.Image, factor: int) -> np.ndarray:
    """The image reduced `factor` times (box average), then a 5x5 grey opening: what is left
    is wider than 5 * factor px in the full image."""
    small = np.asarray(image.reduce(factor))
    return morphology.grey_dilation(morphology.grey_erosion(small, 5), 5)


def _background(light_on_dark: np.ndarray) -> np.ndarray | np.float32:
    """Estimate of the paper under uneven light and shadows: a grey opening (5x5) on the
    image shrunk to about 20 px on its shorter side (8x at least), so that strokes up to a
    fifth of that side (32 px at least) vanish from it, scaled back up. Small images (under 64 px,
    e.g. MNIST itself) get one flat level: the border's median."""
    height, width = light_on_dark.shape
    level = np.float32(median(_border(light_on_dark)))
    if min(height, width) < 64:
        return level
    # A fixed 8x (a 40 px window) took the strokes of large, bold digits for paper and cut
    # them out: MNIST digits drawn 504 px wide read 89.1 % instead of 98.8 %.
    base = factor = max(8, min(height, width) // 20)
    image = Image.fromarray(light_on_dark.astype(np.uint8))
    opened = _opened(image, factor)
    # A marker's stroke can be wider than the window still: the opening keeps it, as high as
    # ink, and the digit comes out hollow (bold digits filling the frame: 86.7 % against 95.8 %
    # drawn thin). Such a stroke is a plateau that a window twice as wide removes, while
    # uneven light, smooth and wide, looks the same through both: the window doubles while it
    # removes something half as high as the ink.
    # Even paper (a canvas, a clean scan) holds no stroke: nothing to check, no time spent.
    uneven = opened.min() != opened.max()
    swallowed = 0.5 * (high_percentile(light_on_dark, 99.5) - level) if uneven else 0.0
    while uneven and 10 * factor <= min(height, width):
        wider = _opened(image, 2 * factor)
        resized = Image.fromarray(wider).resize(opened.shape[::-1], Image.Resampling.BILINEAR)
        if (opened.astype(np.float32) - np.asarray(resized, np.float32)).max() < swallowed:
            break
        factor, opened = 2 * factor, wider
    if factor > base and opened.max() - level >= swallowed:  # no window fits around the
        return level  # strokes: the paper is the border's level
    if opened.min() == opened.max():  # even paper (a canvas, a clean scan): nothing to scale
        return np.float32(opened[0, 0])
    scaled_up = Image.fromarray(opened).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(scaled_up, np.float32)


def dark_ink(grey: np.ndarray) -> bool:
    """Whether the ink is darker than the paper. The paper dominates the border: a light one
    means dark ink, a dark one light ink. A mid-grey border (a dim photo, grey paper) is
    compared with the image's darkest and lightest 1 %: the ink is the end farther from it
    (a dim photo's paper at 127 read as dark paper turned its ink into background)."""
    paper = float(median(_border(grey)))
    if not 64 <= paper < 192:
        return paper > 127
    cumulative = np.cumsum(grey_histogram(grey))
    darkest, lightest = np.searchsorted(cumulative, [0.01 * grey.size, 0.99 * grey.size])
    return paper - darkest > lightest - paper


def ink_map(grey: np.ndarray) -> np.ndarray:
    """Light ink on a black background (MNIST polarity), paper removed, ink scaled to 255."""
    light = 255.0 - grey if dark_ink(grey) else grey
    ink = light - _background(light)
    np.maximum(ink, 0, out=ink)
    peak = high_percentile(ink, 99.5)
    if peak < MIN_CONTRAST:
        raise NoDigitError("no digit found (the image is blank or has no contrast)")
    ink *= 255.0 / peak
    return np.minimum(ink, 255, out=ink)


def ink_mask(ink: np.ndarray) -> np.ndarray:
    """Otsu mask of the ink with specks (tiny components) and paper texture dropped."""
    # Hysteresis: confident ink is over Otsu's threshold; fainter ink (over half of it)
    # stays where it touches confident ink, so thin or faint strokes are not cut apart.
    high = max(otsu_threshold(ink), 40.0)
    labels, sizes = morphology.label_sizes(ink > 0.5 * high)
    keep = np.zeros(len(sizes), dtype=bool)  # per component label; 0 is the background
    keep[labels[ink > high]] = True
    keep[0] = False
    if not keep.any():
        raise NoDigitError("no digit found (no ink)")
    biggest = sizes[keep].max()
    # A speck is under 4 px or 3 % of the biggest stroke; the biggest stroke always stays.
    keep &= (sizes >= max(4, 0.03 * biggest)) | (sizes == biggest)
    mask = keep.take(labels)  # keep[labels], twice as fast
    ink_pixels = np.count_nonzero(mask)
    if ink_pixels < 4:
        raise NoDigitError("no digit found (too little ink)")
    # Ink over half the image is texture or noise, unless it forms strokes: a bold digit
    # cropped tight (a clipped scan, a marker) covers that much too, in wide strokes.
    if ink_pixels > 0.5 * mask.size and stroke_width(mask) < max(3.0, 0.1 * min(mask.shape)):
        raise NoDigitError("no digit found (ink covers most of the image: noise or texture)")
    return mask


# --- From ink to a 28x28 MNIST-like digit ----------------------------------------------


def ink_extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    """First and last row, first and last column holding a set pixel of a non-empty mask
    (what np.nonzero gives, without listing every pixel)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in px: area / half the boundary length (a stroke of length L and
    width w has area L*w and about 2L boundary pixels)."""
    boundary = mask & ~morphology.binary_erosion(mask)
    return 2.0 * mask.sum() / max(boundary.sum(), 1)


def normalise_stroke(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Thin a marker or thicken a hairline so the stroke is MNIST-like once scaled to 20 px."""
    top, bottom, left, right = ink_extent(mask)
    longer_side = max(bottom - top, right - left) + 1
    target = MNIST_STROKE * longer_side / BOX  # the wanted width at this resolution
    width = stroke_width(mask)
    steps = round((width - target) / 2)  # px to remove (or add) on each side
    steps = int(min(max(steps, -longer_side // 12), longer_side // 12))
    # Under 2 * BOX px a stroke is a pixel or two wide, and one step of erosion takes whole
    # strokes away: an 8x8 scan's 8 came out as a 1 (MNIST validation digits scanned at 8x8:
    # 8s 90.4 % read, 95.2 % left bold; the 20 px box thins them enough).
    if width > 1.5 * target and steps > 0 and longer_side >= 2 * BOX:
        return morphology.grey_erosion(ink, 2 * steps + 1)
    if width < 0.6 * target and steps < 0:
        return morphology.grey_dilation(ink, -2 * steps + 1)
    return ink


def center_in_frame(ink: np.ndarray) -> np.ndarray:
    """Scale the ink's bounding box so its longer side is 20 px (aspect kept, anti-aliased),
    and place it in 28x28 with its centre of mass at the centre, as MNIST was made."""
    visible = ink > 8
    if not visible.any():
        raise NoDigitError("no digit found (ink vanished while normalising)")
    top, bottom, left, right = ink_extent(visible)
    crop = ink[top : bottom + 1, left : right + 1]
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = Image.fromarray(crop.astype(np.uint8)).resize(size, Image.Resampling.LANCZOS)
    digit = np.asarray(small, dtype=np.float32)
    total = digit.sum()
    if total == 0:
        raise NoDigitError("no digit found (ink too faint)")
    rows, cols = np.indices(digit.shape)
    center_y, center_x = (rows * digit).sum() / total, (cols * digit).sum() / total
    # Python's min and max: np.clip on one number costs more than the rest of these lines.
    top = int(min(max(round(FRAME / 2 - center_y), 0), FRAME - digit.shape[0]))
    left = int(min(max(round(FRAME / 2 - center_x), 0), FRAME - digit.shape[1]))
    frame = np.zeros((FRAME, FRAME), dtype=np.float32)
    frame[top : top + digit.shape[0], left : left + digit.shape[1]] = digit
    return frame


def digit_from_ink(ink: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Ink and its mask (one digit) -> 28x28 float32, 0-255, light on dark."""
    top, bottom, left, right = ink_extent(mask)
    pad = max(2, (max(bottom - top, right - left) + 1) // 8)  # room for dilation
    top, left = max(top - pad, 0), max(left - pad, 0)
    bottom, right = bottom + pad + 1, right + pad + 1
    mask, ink = mask[top:bottom, left:right], ink[top:bottom, left:right]  # all work on the crop
    soft_edges = morphology.binary_dilation(mask)  # keep the anti-aliased rim of each stroke
    ink = np.where(soft_edges, ink, 0.0)
    scale = DETAIL / max(ink.shape)
    if scale < 1:  # finer detail than the 20 px box can show costs time and buys nothing
        size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
        ink = np.asarray(Image.fromarray(ink.astype(np.uint8)).resize(size, Image.Resampling.BOX))
        ink = ink.astype(np.float32)
        mask = ink > 0.5 * max(otsu_threshold(ink), 40.0)
    return center_in_frame(normalise_stroke(ink, mask))


def preprocess(
    source: bytes | str | Path | Image.Image | np.ndarray, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Any image -> (28, 28) float32, 0-255, light digit on black, MNIST-style.

    Raises ImageError (unreadable), ImageTooLargeError (over `max_pixels`), or NoDigitError
    (blank image).
    """
    if isinstance(source, np.ndarray):
        grey = np.asarray(source, np.float32)
    else:
        grey = load_grey(source, max_pixels)
    if grey.ndim != 2:
        raise ImageError(f"expected a 2-D grey image, got shape {grey.shape}")
    if min(grey.shape) < 2:
        raise NoDigitError(f"no digit found (the image is only {grey.shape} px)")
    grey = smooth_blocks(grey)
    if max(grey.shape) >= 2 * DETAIL and min(grey.shape) >= 8:
        digit = _digit_at_half_size(grey)
        if digit is not None:
            return digit
    ink = ink_map(grey)
    return digit_from_ink(ink, ink_mask(ink))


def halve(grey: np.ndarray) -> np.ndarray:
    """Mean of each 2x2 block (an odd last row or column is dropped)."""
    g = grey[: grey.shape[0] // 2 * 2, : grey.shape[1] // 2 * 2]
    return (g[0::2, 0::2] + g[1::2, 0::2] + g[0::2, 1::2] + g[1::2, 1::2]) * np.float32(0.25)


def _digit_at_half_size(grey: np.ndarray) -> np.ndarray | None:
    """The digit read from the image shrunk 2x, if it still spans DETAIL px there (the most
    detail the later stages keep): a quarter of the pixels to segment, so a 280 px canvas
    takes half the time. None when the digit is smaller, or not found: read at full size."""
    try:
        ink = ink_map(halve(grey))
        mask = ink_mask(ink)
        top, bottom, left, right = ink_extent(mask)
        if max(bottom - top, right - left) + 1 < DETAIL:
            return None
        return digit_from_ink(ink, mask)
    except NoDigitError:
        return None


def naive_resize(source: bytes | str | Path | Image.Image) -> np.ndarray:
    """What a bare MNIST demo does, for comparison: grey, squash to 28x28, invert if the
    paper is light. No cropping, centring, cleaning or stroke normalisation."""
    grey = load_grey(source)
    small = Image.fromarray(grey.astype(np.uint8)).resize((FRAME, FRAME), Image.Resampling.LANCZOS)
    view = np.asarray(small, dtype=np.float32)
    return 255.0 - view if median(view) > 127 else view
