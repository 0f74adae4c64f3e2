"""Write MNIST test digits as large drawings: dark ink on white, scaled to fill a size x size
canvas (strokes about size/10 wide, like a bold marker or the web page at 280 px).

Reading them checks that preprocessing does not depend on the scale a digit is drawn at:
`digits evaluate-images DIR` should score about what it scores on MNIST's own 28x28 images.
File names hold the label (`7_mnist_00042.png`), as in data/handwriting.
Run: .venv/bin/python tools/make_mnist_canvases.py --size 504 --count 1000 --out eval-sets/canvas504
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from digit_recognizer.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=280, help="canvas side in px")
    parser.add_argument("--count", type=int, default=1000, help="test digits, chosen at random")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_dataset("mnist")
    picks = np.random.default_rng(args.seed).choice(len(data.x_test), args.count, replace=False)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    for index in sorted(picks):
        size = (args.size, args.size)
        big = Image.fromarray(data.x_test[index]).resize(size, Image.Resampling.BILINEAR)
        drawing = Image.fromarray(255 - np.asarray(big))
        drawing.save(args.out / f"{data.y_test[index]}_mnist_{index:05d}.png")
    print(f"wrote {args.count} MNIST test digits as {args.size} px drawings to {args.out}")


if __name__ == "__main__":
    main()
