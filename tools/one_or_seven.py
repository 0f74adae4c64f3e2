"""Where a model puts the line between a flagged 1 and a short-barred 7 (development check).

A flagged 1 and a 7 are one shape: a stem with a stroke at its top that leaves it to the left,
steep and short for a 1's flag, flat and long for a 7's bar. The generator draws that shape
with the top stroke from flat to steep and from short to long, in the training hands (seed 100,
which no run draws), and each model reads it: the share read as 1 at each angle and length.
No label is right in every cell; the check shows where a model moves the line, which a
candidate meant for flagged 1s changes and the flag check (whose 7s have a full bar) cannot see.

  .venv/bin/python tools/one_or_seven.py MODEL... [--count 100] [--out one-or-seven.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from digit_recognizer import synth
from digit_recognizer.predict import Recognizer

ANGLES = (0, 10, 20, 30, 40, 50)  # degrees below the horizontal: a 7's bar to a 1's flag
LENGTHS = (0.2, 0.35, 0.5, 0.65, 0.8)  # of the digit's height; the flagged 1's is about 0.5
CORNER, FOOT = (0.6, 0.0), (0.5, 1.0)  # the stem's top and bottom, in the unit box
SEED = 100  # the development sets' generator seed (tools/choose_digit_model.py)
SHIPPED = Path(synth.__file__).parent / "assets" / "model.onnx"


def one_or_seven_strokes(angle: float, length: float) -> list[synth.Stroke]:
    """The stroke of a flagged 1 or a 7: from the top stroke's free end, through its middle,
    to the stem's top and down to its foot (one stroke, as both are written)."""
    rad = np.deg2rad(angle)
    start = (CORNER[0] - length * np.cos(rad), CORNER[1] + length * np.sin(rad))
    middle = ((start[0] + CORNER[0]) / 2, (start[1] + CORNER[1]) / 2)
    return [[start, middle, CORNER, FOOT]]


def views(count: int) -> dict[tuple[int, float], np.ndarray]:
    """{(angle, length): `count` views through preprocessing}, the training hands in turn."""
    rng = np.random.default_rng(SEED)  # one stream for the whole grid, cell after cell
    return {
        (angle, length): synth.stroke_views(
            one_or_seven_strokes(angle, length), count, synth.TRAIN_HANDS, rng
        )
        for angle in ANGLES
        for length in LENGTHS
    }


def read_as_one(model: str | None, grid: dict) -> np.ndarray:
    """(len(LENGTHS), len(ANGLES)): the share of each cell's views `model` reads as 1."""
    recognizer = Recognizer(model)
    shares = np.zeros((len(LENGTHS), len(ANGLES)))
    for (angle, length), cell in grid.items():
        digits = recognizer.probabilities(cell.astype(np.float32)).argmax(axis=1)
        shares[LENGTHS.index(length), ANGLES.index(angle)] = np.mean(digits == 1)
    return shares


def shapes(grid: dict) -> np.ndarray:
    """One view of each cell in a mosaic, the longest stroke on top as in the shares' panels."""
    rows = [np.hstack([grid[angle, length][0] for angle in ANGLES]) for length in LENGTHS]
    return np.vstack(rows[::-1])


def _axes(ax, title: str) -> None:
    ax.set_xticks(range(len(ANGLES)), [f"{a}°" for a in ANGLES])
    ax.set_yticks(range(len(LENGTHS)), [f"{v:.2f}" for v in LENGTHS])
    ax.set_xlabel("top stroke below the horizontal")
    ax.set_title(title, fontsize=9)


def picture(shares: dict[str, np.ndarray], out: Path, examples: np.ndarray) -> None:
    """The shapes (`shapes`), then one panel a model: the share read as 1 by angle and
    length, 1s blue and 7s red."""
    panels = 1 + len(shares)
    fig, axes = plt.subplots(1, panels, figsize=(3.6 * panels, 3.4), squeeze=False)
    extent = (-0.5, len(ANGLES) - 0.5, -0.5, len(LENGTHS) - 0.5)  # one cell a view
    axes[0][0].imshow(examples, cmap="gray", extent=extent, aspect="auto")
    _axes(axes[0][0], "one shape of each cell, as the model sees it")
    for ax, (name, grid) in zip(axes[0][1:], shares.items(), strict=True):
        ax.imshow(grid, cmap="RdBu", vmin=0, vmax=1, origin="lower", aspect="auto")
        for (row, col), share in np.ndenumerate(grid):
            colour = "white" if abs(share - 0.5) > 0.3 else "black"  # legible on dark cells
            ax.text(col, row, f"{share:.0%}", ha="center", va="center", fontsize=8, color=colour)
        _axes(ax, f"{name}: share read as 1")
    axes[0][0].set_ylabel("top stroke's length (of the height)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def model_name(model: str | None) -> str:
    """A short name for a picture's panel: the file, or the run folder of a model.onnx."""
    if model is None or Path(model).resolve() == SHIPPED.resolve():
        return "shipped"
    path = Path(model)
    return path.parent.name if path.name == "model.onnx" else path.stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="ONNX files or run folders (default: shipped)")
    parser.add_argument("--count", type=int, default=100, help="views per angle and length")
    parser.add_argument("--out", type=Path, default=Path("one-or-seven.png"))
    args = parser.parse_args()
    grid = views(args.count)
    shares = {}
    for model in args.models or [None]:
        name = model_name(model)
        shares[name] = read_as_one(model, grid)
        print(f"{name}: {shares[name].mean():.1%} of all read as 1; by length (rows) and angle")
        print("        " + "  ".join(f"{angle:5d}°" for angle in ANGLES))
        for length, row in zip(LENGTHS, shares[name], strict=True):
            print(f"  {length:.2f}  " + "  ".join(f"{share:6.1%}" for share in row))
    picture(shares, args.out, shapes(grid))
    print(f"picture: {args.out}")


if __name__ == "__main__":
    main()
