"""Digits as scanned forms give them: 8x8 grids of ink counts, drawn back at 32 px.

`block_scan` fits the digit's ink box into the grid, aspect kept; `form_scan` normalises it as
NIST's form reader did for the scans that became scikit-learn's digits. Both make development
and training sets (tools/choose_digit_model.py, `digits train --form-scans`) from digits whose
label is known. Imports NumPy and Pillow only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from digit_recognizer.morphology import binary_dilation, binary_erosion
from digit_recognizer.preprocess import ink_extent


def ink_box(digit_image: np.ndarray, threshold: int) -> Image.Image:
    """The box around a digit's pixels over `threshold` (light ink on black), as a picture."""
    mask = digit_image > threshold
    if not mask.any():
        raise ValueError("an image without ink cannot be scanned")
    top, bottom, left, right = ink_extent(mask)
    return Image.fromarray(digit_image[top : bottom + 1, left : right + 1])


def block_scan(digit_image: np.ndarray, blocks: int = 8, block: int = 4) -> np.ndarray:
    """A digit (light ink on black) as the classic 8x8 scan of handwritten forms: its ink
    box fitted into a square bitmap of blocks * block px (aspect kept), each block's count of
    inked pixels a grey level (0 to block**2), every block drawn block x block px. A uint8
    image of blocks * block px a side, dark ink on light paper."""
    side = blocks * block
    crop = ink_box(digit_image, 40)
    scale = side / max(crop.size)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    bitmap = np.zeros((side, side), np.uint8)
    top, left = (side - size[1]) // 2, (side - size[0]) // 2
    bitmap[top : top + size[1], left : left + size[0]] = crop.resize(
        size, Image.Resampling.BILINEAR
    )
    return _block_counts(bitmap > 127, blocks, block)


# NIST's form reader (NISTIR 5469), whose 32x32 bitmaps became scikit-learn's 8x8 digits,
# stretches every character's ink box to 20x32 px whatever its shape, then thins or
# thickens its strokes towards 256-412 inked pixels.
FORM_BOX = (20, 32)  # width, height, px


def _form_stroke_steps(inked: int) -> int:
    """How many times NIST's reader erodes (negative) or dilates a character of `inked`
    pixels in its 32x32 bitmap, to even out the stroke width of pens."""
    if inked > 412:
        return -2 if inked > 560 else -1
    if inked < 256:
        return 2 if inked < 108 else 1
    return 0


def form_scan(digit_image: np.ndarray) -> np.ndarray:
    """A digit (light ink on black) as NIST's form reader normalises a character, in 8x8
    blocks of 17 grey levels like `block_scan`: its ink box stretched to FORM_BOX (a 1 comes
    out as wide as a 0), centred in 32x32, its stroke width evened out (`_form_stroke_steps`).
    A 32x32 uint8 image, dark ink on light paper."""
    width, height = FORM_BOX
    crop = ink_box(digit_image, 40).resize(FORM_BOX, Image.Resampling.BILINEAR)
    bitmap = np.zeros((height, height), bool)
    left = (height - width) // 2
    bitmap[:, left : left + width] = np.asarray(crop) > 127
    steps = _form_stroke_steps(int(bitmap.sum()))
    for _ in range(abs(steps)):
        bitmap = binary_dilation(bitmap) if steps > 0 else binary_erosion(bitmap)
    return _block_counts(bitmap, 8, 4)


def _block_counts(bitmap: np.ndarray, blocks: int, block: int) -> np.ndarray:
    """A square boolean bitmap of blocks * block px as block x block cells, each cell's count
    of set pixels a grey level (0 to block**2) drawn dark on light paper."""
    counts = bitmap.reshape(blocks, block, blocks, block).sum(axis=(1, 3))
    grey = (255 - counts * (255 / block**2)).astype(np.uint8)
    return np.kron(grey, np.ones((block, block), np.uint8))
