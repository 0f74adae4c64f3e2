"""One image's latency on ONNX Runtime for two digit models, alternated in one process (the
fair way on a shared machine: both meet the same host moments; benchmarks/README.md).

  .venv/bin/python benchmarks/compare_model_latency.py OLD.onnx NEW.onnx [--rounds 20]

Prints each model's median over rounds of the per-round p50, and the range of those p50s.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from digit_recognizer.predict import Recognizer


def round_p50(recognizer: Recognizer, image: np.ndarray, calls: int) -> float:
    """Median milliseconds of `calls` single-image calls."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        recognizer.probabilities(image)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs=2, type=Path)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=500, help="single-image calls per round")
    args = parser.parse_args()
    recognizers = [Recognizer(path) for path in args.models]
    image = np.random.default_rng(0).uniform(0, 255, (1, 28, 28)).astype(np.float32)
    for recognizer in recognizers:
        round_p50(recognizer, image, 100)  # warm-up: sessions allocate on their first calls
    p50s: list[list[float]] = [[] for _ in recognizers]
    for _ in range(args.rounds):
        for k, recognizer in enumerate(recognizers):
            p50s[k].append(round_p50(recognizer, image, args.calls))
    for path, values in zip(args.models, p50s, strict=True):
        print(
            f"{path}: p50 {np.median(values):.3f} ms (rounds {min(values):.3f}-{max(values):.3f}, "
            f"{args.rounds} rounds of {args.calls} calls)"
        )


if __name__ == "__main__":
    main()
