"""How well the number reader and the row reader read small numbers zoomed in by repeating
pixels (a screenshot of a small scan, enlarged): the number readers' 1,000 validation numbers
(`number_data.validation_numbers`: MNIST training digits no number reader trains on), each
shrunk to 10-24 px tall and enlarged 3-8 times, nearest neighbour. The development check for
reading blocky numbers; no evaluation set takes part.

  .venv/bin/python tools/read_blocky_numbers.py [--count 1000] [--seed 7]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image
from rich.progress import track

from digit_recognizer import number_data as nd
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    data = load_dataset("mnist")
    numbers = nd.validation_numbers(data.x_train, data.y_train)[: args.count]
    rng = np.random.default_rng(args.seed)
    recognizer = Recognizer()
    tally = np.zeros((2, 2), int)  # rows: plain, blocky; columns: number reader, row reader
    for number in track(numbers, description="reading"):
        tally[0] += read_right(recognizer, number.image, number.text)
        tally[1] += read_right(recognizer, zoomed_in(number.image, rng), number.text)
    for name, (by_number, by_row) in zip(("as drawn", "zoomed in"), tally, strict=True):
        print(
            f"{name}: number reader {by_number / len(numbers):.1%}, "
            f"row reader {by_row / len(numbers):.1%} of {len(numbers)}"
        )


if __name__ == "__main__":
    main()
