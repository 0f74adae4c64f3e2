"""How well a model reads MNIST validation digits made into 8x8 block scans (scans.block_scan),
through preprocessing: the development set for reading coarse scans. The validation split is
the `robust` recipe's (seed 42), so the shipped model never trained on these digits; MNIST's
test set and scikit-learn's digits take no part.

  .venv/bin/python tools/read_block_scans.py [--model runs/robust-scans] [--count 2000]
"""

from __future__ import annotations

import argparse

from digit_recognizer import synth
from digit_recognizer.data import load_dataset, split_validation
from digit_recognizer.predict import Recognizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="ONNX file or run folder (default: shipped)")
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    data = load_dataset("mnist")
    _, _, x_val, y_val = split_validation(data.x_train, data.y_train, 0.1, 42)
    images, labels = x_val[: args.count], y_val[: args.count]
    views, labels = synth.block_scanned_views(images, labels)
    predicted = Recognizer(args.model).probabilities(views).argmax(axis=1)
    right = predicted == labels
    per_digit = " ".join(f"{d}: {right[labels == d].mean():.1%}" for d in range(10))
    print(f"{right.mean():.2%} of {len(labels)} block scans read right; {per_digit}")


if __name__ == "__main__":
    main()
