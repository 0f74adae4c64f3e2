"""Turn any image of a handwritten digit into what the model was trained on.

MNIST digits are light ink on black, the digit's longer side is 20 px (anti-aliased), and it
sits in a 28x28 frame centred by its centre of mass. Photos, scans and canvas drawings are
none of that, which is why MNIST models that score 99 % misread digits people draw. Every
path (CLI, web app, evaluation) calls `preprocess`; there is no second copy.

Pipeline, on a grey image at most WORK_SIZE px on its longer side (tried first at half its
size, kept when the digit still spans DETAIL px there):
  grey -> ink map (polarity, uneven background removed, contrast normalised)
       -> mask (Otsu threshold, specks dropped) -> crop to the ink
       -> stroke width normalised (grey erosion/dilation) -> 20 px box -> centred 28x28
Imports NumPy and Pillow only (and pyspng for the PNGs a canvas gives): never TensorFlow, nor
SciPy (see morphology.py).
"""

from __future__ import annotations

import io
import itertools
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digit_recognizer import morphology
from digit_recognizer.errors import DigitsError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000  # decompression-bomb guard: a 40-megapixel photo is the largest we open
WORK_SIZE = 512  # longer side (px) at which segmentation runs: enough detail, bounded time
BOX = 20  # MNIST: longer side of the digit, in px
FRAME = 28  # MNIST: image size, in px
MNIST_STROKE = 3.0  # median MNIST stroke width in the 20 px box (2.97 on 2,000 train digits)
DETAIL = 4 * BOX  # a digit's crop is worked on at most this size (px): 4x its final 20 px
MIN_CONTRAST = 24.0  # grey levels between paper and ink below which we see no digit
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOURS = (0, 2, 6)  # PNG colour types grey, RGB, RGBA (libspng: no grey + alpha)


class ImageError(DigitsError):
    """The bytes are not a readable image (not an image, truncated, unsupported)."""


class ImageTooLargeError(DigitsError):
    """The image has more pixels than MAX_PIXELS (a decompression bomb, or just too big)."""


class NoDigitError(DigitsError):
    """The image is blank or holds nothing that looks like ink."""


@dataclass(frozen=True)
class Digit:
    """A preprocessed digit: the 28x28 float32 view (0-255, light on dark) and where it was."""

    image: np.ndarray
    box: tuple[int, int, int, int]  # left, top, right, bottom in the working image, px


# --- Reading ---------------------------------------------------------------------------


def _simple_png(data: bytes, max_pixels: int) -> Image.Image | None:
    """An 8-bit grey, RGB or RGBA PNG without transparency key, metadata or interlacing (what
    a browser's canvas gives), decoded by libspng: the page's 280x280 canvas in 0.1-0.3 ms against
    Pillow's 0.5-0.9 (Pillow inflates with the system's zlib, slow on long runs of one byte).
    The same pixels as Pillow's; None for any other PNG, or one libspng rejects: Pillow reads
    those, and words the errors."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if depth != 8 or colour not in PNG_COLOURS or interlace or width * height > max_pixels:
        return None
    # Chunk names stand in the file as they are: absent here, the chunk is absent (found in
    # the compressed pixels by chance, the name only sends the file to Pillow). Orientation can
    # come in eXIf, or in text chunks (a raw EXIF profile, XMP): those go to Pillow.
    if any(name in data for name in (b"tRNS", b"eXIf", b"tEXt", b"zTXt", b"iTXt")):
        return None
    import pyspng  # 2 ms, only when there is a PNG to read

    try:
        return Image.fromarray(pyspng.load(data))
    except Exception:  # pybind11 raises RuntimeError or ValueError on bad data
        return None


def open_image(source: bytes | str | Path, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open any image Pillow reads, with EXIF orientation applied; fully decoded."""
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if not data:
        raise ImageError("empty file")
    if (simple := _simple_png(data, max_pixels)) is not None:
        return simple
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"image is {width}x{height} px, over the {max_pixels:,}-pixel limit"
                )
            image.load()
            return ImageOps.exif_transpose(image)
    except DigitsError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not a readable image (unknown format)") from None
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(str(e)) from None
    except Exception as e:  # Pillow raises OSError, ValueError, SyntaxError, ... on bad data
        raise ImageError(f"not a readable image ({type(e).__name__}: {e})") from None


def to_grey(image: Image.Image) -> np.ndarray:
    """Any mode -> float32 grey 0-255. Transparency is composited onto white paper."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        peak = float(values.max()) if values.size else 0.0
        scale = 255.0 / 65535.0 if peak > 255 else 1.0  # 16-bit -> 8-bit
        return np.clip(values * scale, 0, 255)
    if image.mode in ("LA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
    # A browser's canvas is RGBA with every pixel opaque: compositing it would change
    # nothing, for 0.6 ms on a 280 px canvas against 0.1 ms to check.
    if image.mode == "RGBA" and image.getchannel("A").getextrema() != (255, 255):
        paper = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, image)
    return np.asarray(image.convert("L"), dtype=np.float32)


def load_grey(source: bytes | str | Path | Image.Image, max_pixels: int = MAX_PIXELS):
    """Read an image (bytes, path or PIL image) as float32 grey, shrunk to WORK_SIZE."""
    image = source if isinstance(source, Image.Image) else open_image(source, max_pixels)
    if image.width == 0 or image.height == 0:
        raise ImageError("image has no pixels")
    if max(image.size) > WORK_SIZE:
        image = image.copy()
        image.thumbnail((WORK_SIZE, WORK_SIZE), Image.Resampling.BOX)
    return to_grey(image)


# --- From grey image to ink ------------------------------------------------------------


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


def _median(values) -> np.floating:
    """np.median of all the values (any shape, or a list), without the NaN check that imports
    numpy.ma on first use (15-25 ms of a cold `digits predict`). The images hold no NaN."""
    values = np.asarray(values).ravel()
    high = values.size // 2
    low = high if values.size % 2 else high - 1
    return np.mean(np.partition(values, (low, high))[low : high + 1])


def _border(image: np.ndarray) -> np.ndarray:
    """The outermost rows and columns: mostly paper, whatever the digit does."""
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


def _background(light_on_dark: np.ndarray) -> np.ndarray | np.float32:
    """Estimate of the paper under uneven light and shadows: a grey opening (5x5) on the
    image shrunk to about 20 px on its shorter side (8x at least), so that strokes up to a
    fifth of that side (32 px at least) vanish from it, scaled back up. Small images (under 64 px,
    e.g. MNIST itself) get one flat level: the border's median."""
    height, width = light_on_dark.shape
    if min(height, width) < 64:
        return np.float32(_median(_border(light_on_dark)))
    # A fixed 8x (a 40 px window) took the strokes of large, bold digits for paper and cut
    # them out: MNIST digits drawn 504 px wide read 89.1 % instead of 98.8 %.
    factor = max(8, min(height, width) // 20)
    small = np.asarray(Image.fromarray(light_on_dark.astype(np.uint8)).reduce(factor))
    opened = morphology.grey_dilation(morphology.grey_erosion(small, 5), 5)
    if opened.min() == opened.max():  # even paper (a canvas, a clean scan): nothing to scale
        return np.float32(opened[0, 0])
    scaled_up = Image.fromarray(opened).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(scaled_up, np.float32)


def _high_percentile(ink: np.ndarray, q: float) -> np.float32:
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
    return _percentile(ink, q)


def _percentile(values: np.ndarray, q: float) -> np.floating:
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


def ink_map(grey: np.ndarray) -> np.ndarray:
    """Light ink on a black background (MNIST polarity), paper removed, ink scaled to 255."""
    # The paper dominates the border: if it is lighter than mid-grey, the ink is dark.
    light = 255.0 - grey if _median(_border(grey)) > 127 else grey
    ink = light - _background(light)
    np.maximum(ink, 0, out=ink)
    peak = _high_percentile(ink, 99.5)
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
    if ink_pixels > 0.5 * mask.size:
        raise NoDigitError("no digit found (ink covers most of the image: noise or texture)")
    return mask


# --- From ink to a 28x28 MNIST-like digit ----------------------------------------------


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
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
    top, bottom, left, right = _extent(mask)
    longer_side = max(bottom - top, right - left) + 1
    target = MNIST_STROKE * longer_side / BOX  # the wanted width at this resolution
    width = stroke_width(mask)
    steps = round((width - target) / 2)  # px to remove (or add) on each side
    steps = int(min(max(steps, -longer_side // 12), longer_side // 12))
    if width > 1.5 * target and steps > 0:
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
    top, bottom, left, right = _extent(visible)
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
    top, bottom, left, right = _extent(mask)
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


def preprocess(source: bytes | str | Path | Image.Image | np.ndarray) -> np.ndarray:
    """Any image -> (28, 28) float32, 0-255, light digit on black, MNIST-style.

    Raises ImageError (unreadable), ImageTooLargeError, or NoDigitError (blank image).
    """
    grey = np.asarray(source, np.float32) if isinstance(source, np.ndarray) else load_grey(source)
    if grey.ndim != 2:
        raise ImageError(f"expected a 2-D grey image, got shape {grey.shape}")
    if min(grey.shape) < 2:
        raise NoDigitError(f"no digit found (the image is only {grey.shape} px)")
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
        top, bottom, left, right = _extent(mask)
        if max(bottom - top, right - left) + 1 < DETAIL:
            return None
        return digit_from_ink(ink, mask)
    except NoDigitError:
        return None


# --- Several digits in a row ------------------------------------------------------------


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
    ink = ink_map(load_grey(source))
    mask = ink_mask(ink)
    boxes = _merge_overlapping(morphology.bounding_boxes(*morphology.label(mask)))
    height = float(_median([b[3] - b[1] for b in boxes]))
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


def naive_resize(source: bytes | str | Path | Image.Image) -> np.ndarray:
    """What a bare MNIST demo does, for comparison: grey, squash to 28x28, invert if the
    paper is light. No cropping, centring, cleaning or stroke normalisation."""
    grey = load_grey(source)
    small = Image.fromarray(grey.astype(np.uint8)).resize((FRAME, FRAME), Image.Resampling.LANCZOS)
    view = np.asarray(small, dtype=np.float32)
    return 255.0 - view if _median(view) > 127 else view
