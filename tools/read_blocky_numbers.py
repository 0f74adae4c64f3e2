"""How well the number reader and the row reader read blocky numbers, on development data:
the number readers' 1,000 validation numbers (`number_data.validation_numbers`: MNIST training
digits no number reader trains on) as drawn, and zoomed in (each shrunk to 10-24 px tall and
enlarged 3-8 times by repeating pixels, a screenshot of a small scan); and 400 numbers of the
same digits as 8x8 form scans (`scans.form_scan`, how scikit-learn's digits were made), half
separated and half touching, built as `eval-sets/sklearn-numbers` is. No evaluation set
takes part.

  .venv/bin/python tools/read_blocky_numbers.py [--count 1000] [--seed 7]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image
from rich.progress import track

from digit_recognizer import number_data as nd
from digit_recognizer import scans
from digit_recognizer.data import load_dataset
from digit_recognizer.errors import DigitsError
from digit_recognizer.predict import Recognizer


def zoomed_in(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A number (uint8, dark on light) shrunk to 10-24 px tall, then enlarged 3-8 times by
    repeating its pixels: a uint8 image."""
    picture = Image.fromarray(image)
    height = int(rng.integers(10, 25))
    width = max(1, round(picture.width * height / picture.height))
    factor = int(rng.integers(3, 9))
    small = picture.resize((width, height), Image.Resampling.BOX)
    return np.asarray(small.resize((width * factor, height * factor), Image.Resampling.NEAREST))


def read_right(recognizer: Recognizer, image: np.ndarray, text: str) -> tuple[bool, bool]:
    """Whether the number reader, and the row reader, read `text` from `image`."""
    answers = []
    for read in (
        lambda: recognizer.read_number(image.astype(np.float32)).number,
        lambda: "".join(str(p.digit) for p in recognizer.read_row(Image.fromarray(image))),
    ):
        try:
            answers.append(read() == text)
        except DigitsError:  # nothing found counts as wrong
            answers.append(False)
    return answers[0], answers[1]


def form_scanned_numbers(x: np.ndarray, y: np.ndarray, seed: int) -> dict:
    """{"form scans, separated": numbers, "form scans, touching": numbers}: 200 four-digit
    numbers each, from digits (light on dark) as 8x8 form scans enlarged 4x."""
    crops = [nd.crop_ink(255 - scans.form_scan(image).astype(np.float32)) for image in x]
    pool = nd.DigitPool(crops, y, "form scans")
    return {
        f"form scans, {spacing}": nd.generate(pool, 200, (4, 4), (spacing,), seed=seed + k)
        for k, spacing in enumerate(("separated", "touching"))
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    data = load_dataset("mnist")
    numbers = nd.validation_numbers(data.x_train, data.y_train)[: args.count]
    rng = np.random.default_rng(args.seed)
    recognizer = Recognizer()
    x, y = data.x_train[50000:], data.y_train[50000:]  # the validation numbers' digits
    sets = {
        "as drawn": [(n.image, n.text) for n in numbers],
        "zoomed in": [(zoomed_in(n.image, rng), n.text) for n in numbers],
    }
    for name, made in form_scanned_numbers(x[:2000], y[:2000], args.seed).items():
        sets[name] = [(n.image, n.text) for n in made]
    for name, pairs in sets.items():
        right = np.array([read_right(recognizer, image, text) for image, text in track(pairs)])
        by_number, by_row = right.mean(axis=0)
        print(f"{name}: number reader {by_number:.1%}, row reader {by_row:.1%} of {len(pairs)}")


if __name__ == "__main__":
    main()
