"""How well does a model hold up when digits are rotated, shifted, noisy, thick or faint?

Each corruption maps uint8 images (N, 28, 28) to corrupted uint8 images, at three
severities, deterministically for a seed. `robustness` scores a model on the MNIST test set
under each one and writes robustness.json, robustness.md and robustness.png.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from digit_recognizer.artifacts import write_json, write_text

Corruption = Callable[[np.ndarray, float, np.random.Generator], np.ndarray]


def _per_image(images: np.ndarray, transform: Callable[[Image.Image], Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(transform(Image.fromarray(x))) for x in images])


def rotate(images, degrees, rng):
    signs = rng.choice([-1.0, 1.0], len(images))  # clockwise or anticlockwise, at random
    return np.stack(
        [np.asarray(Image.fromarray(x).rotate(degrees * s, Image.Resampling.BILINEAR))
         for x, s in zip(images, signs, strict=True)]
    )  # fmt: skip


def translate(images, pixels, rng):
    out = np.zeros_like(images)
    for k, x in enumerate(images):
        dy, dx = (rng.choice([-1, 1], 2) * pixels).astype(int)
        out[k] = np.roll(x, (dy, dx), axis=(0, 1))  # MNIST borders are black: roll is a shift
    return out


def scale(images, factor, rng):
    """Shrink (factor < 1) about the centre, as a small or distant digit looks."""
    size = max(4, round(28 * factor))
    offset = (28 - size) // 2

    def shrink(image: Image.Image) -> Image.Image:
        canvas = Image.new("L", (28, 28), 0)
        canvas.paste(image.resize((size, size), Image.Resampling.LANCZOS), (offset, offset))
        return canvas

    return _per_image(images, shrink)


def gaussian_noise(images, sigma, rng):
    noisy = images.astype(np.float32) + rng.normal(0, 255 * sigma, images.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def salt_and_pepper(images, fraction, rng):
    out = images.copy()
    hit = rng.random(images.shape)
    out[hit < fraction / 2] = 0
    out[hit > 1 - fraction / 2] = 255
    return out


def blur(images, sigma, rng):
    from scipy import ndimage

    return ndimage.gaussian_filter(images.astype(np.float32), (0, sigma, sigma)).astype(np.uint8)


def thicken(images, pixels, rng):
    from scipy import ndimage

    return ndimage.grey_dilation(images, size=(1, 2 * int(pixels) + 1, 2 * int(pixels) + 1))


def thin(images, pixels, rng):
    from scipy import ndimage

    size = int(pixels) + 1  # 2x2 then 3x3 then 4x4 minimum: strokes are only ~3 px wide
    return ndimage.grey_erosion(images, size=(1, size, size))


def elastic(images, alpha, rng, sigma: float = 4.0):
    """Simard et al. (2003): smooth random displacement fields of strength alpha (px)."""
    from scipy import ndimage

    out = np.empty_like(images)
    rows, cols = np.mgrid[0:28, 0:28].astype(np.float32)
    for k, x in enumerate(images):
        dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (28, 28)), sigma) * alpha
        dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (28, 28)), sigma) * alpha
        out[k] = ndimage.map_coordinates(x, [rows + dy, cols + dx], order=1, mode="constant")
    return out


def occlude(images, width, rng):
    """A black bar across the digit, horizontal or vertical, through its middle region."""
    out = images.copy()
    for k in range(len(out)):
        start = int(rng.integers(9, 19 - int(width) // 2))
        if rng.random() < 0.5:
            out[k, start : start + int(width), :] = 0
        else:
            out[k, :, start : start + int(width)] = 0
    return out


def contrast(images, keep, rng):
    """Faint ink on grey paper: the range shrinks to `keep` of itself around mid-grey."""
    squeezed = 127.5 + (images.astype(np.float32) - 127.5) * keep
    return np.clip(squeezed, 0, 255).astype(np.uint8)


def invert(images, _severity, rng):
    """Dark ink on white paper, as a scan looks; preprocessing must undo it."""
    return 255 - images


# name -> (function, three severities, whether preprocessing runs first)
CORRUPTIONS: dict[str, tuple[Corruption, tuple[float, float, float], bool]] = {
    "rotation (deg)": (rotate, (15, 30, 45), False),
    "translation (px)": (translate, (2, 4, 6), False),
    "scale (factor)": (scale, (0.8, 0.6, 0.45), False),
    "gaussian noise (sigma)": (gaussian_noise, (0.1, 0.25, 0.4), False),
    "salt and pepper (fraction)": (salt_and_pepper, (0.05, 0.1, 0.2), False),
    "blur (sigma px)": (blur, (0.75, 1.25, 1.75), False),
    "thicken (px)": (thicken, (1, 2, 3), False),
    "thin (px)": (thin, (1, 2, 3), False),
    "elastic (alpha px)": (elastic, (8, 16, 24), False),
    "occlusion (bar px)": (occlude, (3, 5, 7), False),
    "contrast (kept)": (contrast, (0.5, 0.3, 0.15), False),
    "inverted polarity": (invert, (1, 1, 1), True),
}


def corrupt(name: str, images: np.ndarray, severity: int, seed: int = 0) -> np.ndarray:
    """Apply corruption `name` at severity 1, 2 or 3 (deterministic for a seed)."""
    function, levels, _ = CORRUPTIONS[name]
    rng = np.random.default_rng([seed, severity, sorted(CORRUPTIONS).index(name)])
    return function(images, levels[severity - 1], rng)


def robustness(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    seed: int = 0,
    preprocess_each: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict:
    """Accuracy of `predict` ((N, 28, 28) float32 -> (N, 10)) under every corruption.

    Corruptions marked for it go through `preprocess_each` (the shared preprocessing) first.
    """

    def accuracy(batch: np.ndarray) -> float:
        return float(np.mean(predict(batch.astype(np.float32)).argmax(axis=1) == labels))

    table: dict[str, list[float]] = {}
    for name, (function, levels, needs_preprocessing) in CORRUPTIONS.items():
        row = []
        for severity in (1, 2, 3):
            level = levels[severity - 1]
            if function is invert and level in levels[: severity - 1]:
                row.append(row[levels.index(level)])  # same level, no randomness: same batch
                continue
            batch = corrupt(name, images, severity, seed)
            if needs_preprocessing and preprocess_each is not None:
                batch = preprocess_each(batch)
            row.append(accuracy(batch))
        table[name] = row
    clean = accuracy(images)
    mean = float(np.mean([v for row in table.values() for v in row]))
    return {"clean": clean, "mean_corrupted": mean, "corruptions": table, "seed": seed}


def preprocess_batch(images: np.ndarray) -> np.ndarray:
    """The shared preprocessing on each image; a blank result becomes a black image."""
    from digit_recognizer.errors import NoDigitError
    from digit_recognizer.preprocess import preprocess

    views = np.zeros((len(images), 28, 28), np.float32)
    for k, image in enumerate(images):
        # A blank result stays black: the model will most likely get it wrong, as it should.
        with contextlib.suppress(NoDigitError):
            views[k] = preprocess(image.astype(np.float32))
    return views


def predictor(model: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """(N, 28, 28) float32 -> (N, 10) for a run folder (Keras) or an .onnx file / 'default'."""
    path = Path(model)
    if path.is_dir() and (path / "model.keras").is_file():
        from digit_recognizer.models import load_model

        network = load_model(path / "model.keras")
        return lambda x: network.predict(x[..., None], batch_size=1024, verbose=0)
    from digit_recognizer.predict import Recognizer

    return Recognizer(model).probabilities


def markdown(results: dict[str, dict]) -> str:
    """One table, a column pair per model: accuracy at severities 1/2/3."""
    names = list(results)
    header = "| corruption | " + " | ".join(f"{n} (1 / 2 / 3)" for n in names) + " |\n"
    header += "|---|" + "---:|" * len(names) + "\n"
    rows = "".join(
        f"| {c} | "
        + " | ".join(" / ".join(f"{v:.1%}" for v in results[n]["corruptions"][c]) for n in names)
        + " |\n"
        for c in CORRUPTIONS
    )
    footer = "| **clean** | " + " | ".join(f"{results[n]['clean']:.2%}" for n in names) + " |\n"
    footer += (
        "| **mean corrupted** | "
        + " | ".join(f"**{results[n]['mean_corrupted']:.2%}**" for n in names)
        + " |\n"
    )
    return header + rows + footer


def write_report(results: dict[str, dict], out_dir: Path) -> Path:
    """robustness.json, robustness.md and a bar chart of mean accuracy per corruption."""
    from digit_recognizer import plots

    out_dir = Path(out_dir)
    write_json(out_dir / "robustness.json", results)
    plots.robustness_bars(
        {
            n: {c: float(np.mean(v)) for c, v in r["corruptions"].items()}
            for n, r in results.items()
        },
        out_dir / "robustness.png",
    )
    return write_text(out_dir / "robustness.md", "# Robustness\n\n" + markdown(results))
