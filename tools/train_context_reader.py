"""Train the number reader's context model and ship it: src/digit_recognizer/assets/
context_model.onnx and context_model_card.json.

The context model reads the 32x32 stretch of a line around a digit that the shipped number
model placed (number_reader.digit_windows): the digit with the edges of its neighbours, which
is what a touching digit looks like. Its reading is multiplied into the number model's.

Training data: those windows in numbers of 1-10 digits generated (number_data) from MNIST's
first 50,000 training digits (three numbers in four) and from the digit generator's training
hands, placed by the number model itself, so the windows are cut as they will be when
reading; a number it reads with the wrong count of digits gives none (no window to pin a
label on). Validation: the windows of the number model's 1,000 validation numbers (MNIST's
last 10,000 training digits); the epoch kept is the one that reads most of them. MNIST's test
digits and the held-out hands, which make the committed test set, never take part.

  .venv/bin/python tools/train_context_reader.py --numbers 48000 --epochs 4
  .venv/bin/python tools/train_context_reader.py --resume runs/context/model.keras \\
      --epochs 3 --learning-rate 1e-3 --seed 1 --ship
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from digit_recognizer import number_data as nd
from digit_recognizer import synth
from digit_recognizer.artifacts import library_versions, sha256_file, ship_model, write_json
from digit_recognizer.errors import NoDigitError
from digit_recognizer.export import write_onnx
from digit_recognizer.number_reader import (
    DEFAULT_CONTEXT_MODEL,
    HEIGHT,
    WINDOW,
    NumberReader,
    digit_windows,
    greedy_decode,
    line_view,
)

CHUNK = 1000  # numbers a worker makes at a time
MNIST_SHARE = 0.75  # of the training numbers; the rest from generated handwriting


def build_model():
    """Three convolution blocks (32 -> 4 px) and a small dense layer: ten probabilities."""
    import keras
    from keras import layers

    inputs = keras.Input((HEIGHT, WINDOW, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    for filters in (24, 48, 96):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="digit_in_context")


def windows(numbers: list[nd.GeneratedNumber], reader: NumberReader):
    """Each digit's window where the number model places it, with its true digit; numbers
    read with the wrong count of digits are left out (and counted)."""
    xs, ys, left_out = [], [], 0
    for number in numbers:
        try:
            line = line_view(number.image)
        except NoDigitError:  # a render too faint to find (rare)
            left_out += 1
            continue
        decoded = greedy_decode(reader.logits(line.view[np.newaxis])[0])
        if len(decoded) != len(number.text):
            left_out += 1
            continue
        xs.append(digit_windows(line.view, [frame for _, frame, _ in decoded]))
        ys += [int(c) for c in number.text]
    return np.concatenate(xs).astype(np.uint8), np.array(ys, np.uint8), left_out


def _chunk(seed: int):
    """One worker's training windows (numbers from MNIST digits and from generated ones)."""
    from digit_recognizer.data import load_dataset

    data = load_dataset("mnist")
    mnist = nd.pool_from_mnist(data.x_train[:50000], data.y_train[:50000])
    written = nd.pool_from_synth(synth.TRAIN_HANDS, 3000, seed)
    from_mnist = int(CHUNK * MNIST_SHARE)
    numbers = nd.generate(mnist, from_mnist, (1, 10), seed=seed) + nd.generate(
        written, CHUNK - from_mnist, (1, 10), seed=seed + 1
    )
    return windows(numbers, NumberReader())


def training_windows(count: int):
    """`count` numbers' windows, made by two worker processes."""
    seeds = [100 + 7 * k for k in range(max(1, count // CHUNK))]
    with multiprocessing.get_context("spawn").Pool(2) as workers:
        parts = workers.map(_chunk, seeds)
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return x, y, sum(p[2] for p in parts)


def main() -> None:
    import keras

    from digit_recognizer.data import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numbers", type=int, default=48000, help="training numbers")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--resume", type=Path, default=None, help="a model.keras to go on from")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/context"))
    parser.add_argument("--ship", action="store_true", help="write the ONNX model into assets/")
    args = parser.parse_args()
    start = time.time()
    data = load_dataset("mnist")
    x, y, left_out = training_windows(args.numbers)
    x_val, y_val, _ = windows(nd.validation_numbers(data.x_train, data.y_train), NumberReader())
    print(f"{len(x)} training windows ({left_out} numbers left out), {len(x_val)} validation")
    keras.utils.set_random_seed(args.seed)
    steps = args.epochs * int(np.ceil(len(x) / 256))
    if args.resume is None:  # a short warm-up, then a cosine down to zero
        model = build_model()
        rate = keras.optimizers.schedules.CosineDecay(
            0.0, steps, warmup_target=args.learning_rate, warmup_steps=steps // 10
        )
    else:
        model = keras.models.load_model(args.resume)
        rate = keras.optimizers.schedules.CosineDecay(args.learning_rate, steps)
    model.compile(keras.optimizers.Adam(rate), "sparse_categorical_crossentropy")
    args.out.mkdir(parents=True, exist_ok=True)
    best, history = -1.0, []
    for epoch in range(1, args.epochs + 1):
        fit = model.fit(x[..., None], y, batch_size=256, epochs=1, verbose=2)
        accuracy = float(np.mean(model.predict(x_val[..., None], verbose=0).argmax(1) == y_val))
        history.append({"epoch": epoch, "loss": fit.history["loss"][-1], "validation": accuracy,
                        "minutes": (time.time() - start) / 60})  # fmt: skip
        print(f"epoch {epoch}: validation windows {accuracy:.2%}", flush=True)
        if accuracy > best:
            best = accuracy
            model.save(args.out / "model.keras")
    onnx = args.out / "model.onnx"
    write_onnx(keras.models.load_model(args.out / "model.keras"), onnx)
    card = {
        "model": "context model: a digit in the 32x32 stretch of line around it",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": f"{HEIGHT}x{WINDOW} window of the number line, light ink on black",
        "training_data": {
            "numbers": args.numbers,
            "windows": len(x),
            "mnist": f"train[:50000] digits, {MNIST_SHARE:.0%} of the numbers",
            "generated_handwriting": f"training hands {list(synth.TRAIN_HANDS)}",
            "placed_by": "the shipped number model (number_model.onnx)",
            "mnist_checksums": data.checksums,
        },
        "validation": "windows of 1,000 four-digit numbers from MNIST train[50000:]",
        "held_out": "data/numbers: MNIST test digits and held-out hands only",
        "validation_accuracy": best,
        "epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "resumed_from": str(args.resume) if args.resume else None,
        "history": history,
        "versions": library_versions(),
        "onnx_sha256": sha256_file(onnx),
    }
    write_json(args.out / "card.json", card)
    if args.ship:
        ship_model(onnx, card, DEFAULT_CONTEXT_MODEL)
    print(f"best validation {best:.2%}; model in {args.out}")


if __name__ == "__main__":
    main()
