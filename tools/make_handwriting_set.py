"""Build data/handwriting/: a labelled test set of handwriting-like digits that are NOT MNIST.

Digits come from handwriting-style fonts in Debian packages and from pen strokes drawn along
per-digit templates, each rendered like a photo, scan or drawing: random size, position
(off-centre), thickness, rotation, paper colour with uneven light and texture, ink colour,
blur, JPEG noise, and both polarities (dark ink on paper, chalk on a board).

File names hold the label: `7_kristi_03.jpg` is a 7. Deterministic for a seed.
Needs the fonts (regenerating only; the set is committed):
  apt-get install fonts-comic-neue fonts-dkg-handwriting fonts-breip fonts-bwht \
    fonts-dancingscript fonts-ecolier-court fonts-humor-sans \
    fonts-kaushanscript fonts-klee fonts-kristi fonts-rufscript fonts-seto fonts-kiloji
Run: .venv/bin/python tools/make_handwriting_set.py [--out data/handwriting] [--height 56 160]
"""

from __future__ import annotations

import argparse
import glob
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_GLOBS = {
    "comicneue": "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",
    "dkg": "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf",
    "breip": "/usr/share/fonts/truetype/breip/Breip.ttf",
    "bwht": "/usr/share/fonts/opentype/bwht/BecauseWe*-Regular.otf",
    "dancing": "/usr/share/fonts/opentype/dancingscript/DancingScript-Regular.otf",
    "ecolier": "/usr/share/fonts/truetype/ecolier-court/Ecolier-court.ttf",
    "humor": "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",
    "kaushan": "/usr/share/fonts/opentype/kaushanscript/KaushanScript-Regular.otf",
    "klee": "/usr/share/fonts/truetype/klee/KleeOne-Regular.ttf",
    "kristi": "/usr/share/fonts/truetype/kristi/Kristi.ttf",
    "rufscript": "/usr/share/fonts/truetype/rufscript/Rufscript010.ttf",
    "seto": "/usr/share/fonts/truetype/seto/setofont.ttf",
    "kiloji": "/usr/share/fonts/truetype/kiloji/kiloji.ttf",
}

# Pen-stroke templates in a unit box (x right, y down): each digit is a list of strokes.
STROKES = {
    0: [[(0.5, 0.05), (0.2, 0.2), (0.12, 0.5), (0.2, 0.82), (0.5, 0.95), (0.8, 0.82),
         (0.88, 0.5), (0.8, 0.18), (0.5, 0.05)]],
    1: [[(0.35, 0.2), (0.55, 0.05), (0.55, 0.95)]],
    2: [[(0.15, 0.25), (0.35, 0.07), (0.65, 0.07), (0.82, 0.28), (0.7, 0.52), (0.15, 0.93),
         (0.88, 0.93)]],
    3: [[(0.15, 0.12), (0.5, 0.04), (0.8, 0.2), (0.72, 0.42), (0.42, 0.5), (0.78, 0.6),
         (0.85, 0.8), (0.55, 0.96), (0.15, 0.88)]],
    4: [[(0.62, 0.95), (0.62, 0.05), (0.12, 0.65), (0.9, 0.65)]],
    5: [[(0.82, 0.06), (0.25, 0.06), (0.2, 0.45), (0.55, 0.4), (0.82, 0.58), (0.8, 0.85),
         (0.5, 0.96), (0.15, 0.88)]],
    6: [[(0.75, 0.06), (0.4, 0.25), (0.18, 0.6), (0.25, 0.88), (0.52, 0.96), (0.8, 0.8),
         (0.78, 0.58), (0.5, 0.48), (0.22, 0.62)]],
    7: [[(0.12, 0.08), (0.88, 0.08), (0.45, 0.95)]],
    8: [[(0.5, 0.5), (0.22, 0.32), (0.3, 0.1), (0.5, 0.04), (0.72, 0.12), (0.78, 0.3),
         (0.5, 0.5), (0.18, 0.7), (0.28, 0.92), (0.5, 0.97), (0.75, 0.9), (0.82, 0.7),
         (0.5, 0.5)]],
    9: [[(0.8, 0.35), (0.55, 0.48), (0.28, 0.42), (0.22, 0.2), (0.45, 0.05), (0.75, 0.12),
         (0.8, 0.35), (0.72, 0.95)]],
}  # fmt: skip


def font_files() -> dict[str, str]:
    fonts = {}
    for name, pattern in FONT_GLOBS.items():
        for k, path in enumerate(sorted(glob.glob(pattern))):
            fonts[name if k == 0 else f"{name}{k}"] = path
    return fonts


def paper(rng: np.random.Generator, size: tuple[int, int], dark: bool) -> np.ndarray:
    """RGB paper (or board) with a lighting gradient and grain, float 0-255."""
    width, height = size
    base = rng.uniform(15, 70) if dark else rng.uniform(150, 250)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    gradient = rng.uniform(-40, 40) * (xx - 0.5) + rng.uniform(-40, 40) * (yy - 0.5)
    grain = rng.normal(0, rng.uniform(2, 10), (height, width))
    tint = rng.uniform(-12, 12, 3)
    grey = np.clip(base + gradient + grain, 0, 255)
    return np.clip(grey[..., None] + tint, 0, 255)


def glyph_layer(rng, size, digit: int, font_path: str | None) -> Image.Image:
    """The digit as an 'L' coverage mask (255 = ink), placed off-centre, rotated."""
    width, height = size
    layer = Image.new("L", size, 0)
    draw = ImageDraw.Draw(layer)
    digit_height = rng.uniform(0.35, 0.8) * height
    if font_path is None:
        box_w, box_h = digit_height * rng.uniform(0.5, 0.8), digit_height
        x0 = rng.uniform(0.05 * width, max(0.05 * width, width - box_w - 0.05 * width))
        y0 = rng.uniform(0.05 * height, max(0.05 * height, height - box_h - 0.05 * height))
        line_width = max(1, int(digit_height * rng.uniform(0.04, 0.16)))
        for stroke in STROKES[digit]:
            jitter = rng.normal(0, 0.025, (len(stroke), 2))
            points = [(x0 + (x + jx) * box_w, y0 + (y + jy) * box_h)
                      for (x, y), (jx, jy) in zip(stroke, jitter, strict=True)]  # fmt: skip
            draw.line(points, fill=255, width=line_width, joint="curve")
    else:
        font = ImageFont.truetype(font_path, size=max(8, int(digit_height * 1.3)))
        stroke = int(rng.choice([0, 0, 1, 2]) * digit_height / 60)
        left, top, right, bottom = draw.textbbox((0, 0), str(digit), font=font, stroke_width=stroke)
        x = rng.uniform(-left + 2, max(-left + 3, width - right - 2))
        y = rng.uniform(-top + 2, max(-top + 3, height - bottom - 2))
        draw.text((x, y), str(digit), fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return layer.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BICUBIC)


def render(
    rng: np.random.Generator, digit: int, font_path: str | None, heights=(56, 160)
) -> tuple[bytes, str]:
    """One test image as encoded bytes and its file extension."""
    height = int(rng.uniform(*heights))
    size = (int(height * rng.uniform(0.8, 1.4)), height)
    dark = rng.random() < 0.2  # chalk on a board: light ink on dark
    background = paper(rng, size, dark)
    ink_colour = rng.uniform(200, 250, 3) if dark else rng.uniform(0, 90, 3)
    coverage = np.asarray(glyph_layer(rng, size, digit, font_path), np.float32)[..., None] / 255
    rgb = background * (1 - coverage) + ink_colour * coverage
    image = Image.fromarray(rgb.astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))
    if rng.random() < 0.3:
        image = image.convert("L")
    buffer = io.BytesIO()
    if rng.random() < 0.7:
        image.save(buffer, "JPEG", quality=int(rng.uniform(30, 90)))
        return buffer.getvalue(), "jpg"
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue(), "png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/handwriting"))
    parser.add_argument("--per-font", type=int, default=3, help="images per digit and font")
    parser.add_argument("--drawn", type=int, default=12, help="pen-stroke images per digit")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--height", type=int, nargs=2, default=(56, 160), metavar=("MIN", "MAX"),
        help="image height range in px (the committed set: 56 160)",
    )  # fmt: skip
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sources = {name: path for name, path in font_files().items()}
    if not sources:
        raise SystemExit("no handwriting fonts found; see this script's docstring")
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    count = 0
    for digit in range(10):
        for name, path in [*sources.items(), ("drawn", None)]:
            repeats = args.drawn if path is None else args.per_font
            for k in range(repeats):
                data, extension = render(rng, digit, path, tuple(args.height))
                (args.out / f"{digit}_{name}_{k:02d}.{extension}").write_bytes(data)
                count += 1
    print(f"wrote {count} images from {len(sources)} fonts + drawn strokes to {args.out}")


if __name__ == "__main__":
    main()
