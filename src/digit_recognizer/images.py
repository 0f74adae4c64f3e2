"""Reading and writing images: any format Pillow reads in (EXIF orientation applied,
transparency on white, 16-bit to 8-bit grey, a size limit against decompression bombs), and
small grey PNGs out.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from digit_recognizer.errors import DigitsError, ImageError, ImageTooLargeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_PIXELS = 40_000_000  # decompression-bomb guard: a 40-megapixel photo is the largest we open
WORK_SIZE = 512  # longer side (px) images are shrunk to before segmentation: bounded time
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOURS = (0, 2, 6)  # PNG colour types grey, RGB, RGBA (libspng: no grey + alpha)


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


def load_grey(
    source: bytes | str | Path | Image.Image,
    max_pixels: int = MAX_PIXELS,
    work_size: int = WORK_SIZE,
):
    """Read an image (bytes, path or PIL image) as float32 grey, shrunk to `work_size`."""
    image = source if isinstance(source, Image.Image) else open_image(source, max_pixels)
    if image.width == 0 or image.height == 0:
        raise ImageError("image has no pixels")
    if max(image.size) > work_size:
        image = image.copy()
        image.thumbnail((work_size, work_size), Image.Resampling.BOX)
    return to_grey(image)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def grey_png(pixels: np.ndarray) -> bytes:
    """An 8-bit grey PNG of a 2-D array (clipped to 0-255, fractions dropped). Written here
    because Pillow's PNG writer spends 0.1-0.3 ms per call in Python on a 28x28 image."""
    height, width = pixels.shape
    rows = np.zeros((height, width + 1), np.uint8)  # each row starts with filter type 0
    rows[:, 1:] = np.clip(pixels, 0, 255)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (
        PNG_SIGNATURE + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes())) + _png_chunk(b"IEND", b"")
    )  # fmt: skip
