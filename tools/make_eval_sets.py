"""Write the generated evaluation sets into eval-sets/ (ignored by git): real handwriting from
scikit-learn and held-out styles of the digit generator. None of them ever trains a model.

  eval-sets/sklearn-digits/    scikit-learn's 1,797 handwritten digits (13 writers, 8x8 scans
                               with 17 grey levels), dark on white, enlarged 4x (nearest): 32x32
  eval-sets/held-out-styles/   every allograph in the held-out hands (synth.HELD_OUT_HANDS but
                               the two below), 1,200 images at 96 px
  eval-sets/thin/, thick/      the same shapes and seeds drawn thin and with a marker filling
                               the frame (stroke up to half the digit's width), enlarged to 192 px
  eval-sets/mnist-test/        MNIST's 10,000 test digits as 28x28 PNGs: with preprocessing
                               off they are the raw images, with it on they are re-cropped
  eval-sets/sklearn-numbers/   400 four-digit numbers built from scikit-learn's digits (real
                               writers), half separated, half touching (`digits
                               evaluate-numbers`)

File names hold the label and the source (`7_7crossed_felt-tip_0042.png`), as in
data/handwriting. Run: .venv/bin/python tools/make_eval_sets.py [--out eval-sets]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from digit_recognizer import synth


def write_sklearn_digits(out: Path) -> int:
    """scikit-learn's digits as 32x32 PNGs: values 0-16 -> ink, dark on white."""
    from digit_recognizer.promote import sklearn_scans

    scans, labels = sklearn_scans()
    for index, (scan, label) in enumerate(zip(scans, labels, strict=True)):
        Image.fromarray(scan).save(out / f"{label}_sklearn_{index:04d}.png")
    return len(scans)


def write_styles(out: Path, hands: tuple[str, ...], count: int, seed: int, scale: int = 1) -> int:
    """`count` generated digits in `hands`, every allograph alike, enlarged `scale` times."""
    images, labels, kinds = synth.generate(synth.SynthConfig(count=count, hands=hands, seed=seed))
    for index, (image, label, (allograph, hand)) in enumerate(
        zip(images, labels, kinds, strict=True)
    ):
        picture = Image.fromarray(image)
        if scale != 1:
            picture = picture.resize((image.shape[1] * scale,) * 2, Image.Resampling.BICUBIC)
        source = f"{label}{allograph}".replace("_", "-")
        picture.save(out / f"{label}_{source}_{hand.replace('_', '-')}_{index:04d}.png")
    return count


def write_sklearn_numbers(out: Path, seed: int) -> int:
    """Numbers written with scikit-learn's digits, named as data/numbers' files are."""
    from sklearn.datasets import load_digits

    from digit_recognizer import number_data as nd

    digits = load_digits()
    big = [np.kron(image * (255 / 16), np.ones((4, 4))) for image in digits.images]
    pool = nd.DigitPool([nd.crop_ink(image) for image in big], digits.target, "sklearn")
    for spacing, offset in (("separated", 0), ("touching", 1)):
        numbers = nd.generate(pool, 200, (4, 4), (spacing,), seed=seed + offset)
        for index, number in enumerate(numbers):
            name = f"{number.text}_{spacing}-{number.render}_{index:04d}.png"
            Image.fromarray(number.image).save(out / name)
    return 400


def write_mnist_test(out: Path) -> int:
    """MNIST's test digits as they are (light on dark, 28x28), one PNG each."""
    from digit_recognizer.data import load_dataset

    data = load_dataset("mnist")
    for index, (image, label) in enumerate(zip(data.x_test, data.y_test, strict=True)):
        Image.fromarray(image).save(out / f"{label}_mnist_{index:05d}.png")
    return len(data.x_test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("eval-sets"))
    parser.add_argument("--seed", type=int, default=2027)
    args = parser.parse_args()
    styles = tuple(h for h in synth.HELD_OUT_HANDS if not h.endswith("_fill"))
    sets = {
        "sklearn-digits": lambda folder: write_sklearn_digits(folder),
        "held-out-styles": lambda folder: write_styles(folder, styles, 1200, args.seed),
        "thin": lambda folder: write_styles(folder, ("thin_fill",), 480, args.seed, scale=2),
        "thick": lambda folder: write_styles(folder, ("bold_fill",), 480, args.seed, scale=2),
        "mnist-test": write_mnist_test,
        "sklearn-numbers": lambda folder: write_sklearn_numbers(folder, args.seed),
    }
    for name, write in sets.items():
        folder = args.out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        print(f"{folder}: {write(folder)} images")


if __name__ == "__main__":
    main()
