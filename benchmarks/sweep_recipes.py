"""Which training settings reach 99.5 % test accuracy in the fewest epochs? Trains variants of
the `accurate` recipe for several seeds, in parallel processes, and appends each run's test
accuracy after every epoch (as `digits bench` measures it, stopping once 99.5 % is reached) to
a JSON-lines file. Epochs, not seconds, are compared: seconds per epoch are measured on the CPU
by `digits bench`, so the sweep can run on a faster machine.

Run (on a GPU machine with Keras on JAX; TensorFlow works the same, slower):
    KERAS_BACKEND=jax JAX_DEFAULT_MATMUL_PRECISION=highest XLA_PYTHON_CLIENT_PREALLOCATE=false \\
        python benchmarks/sweep_recipes.py --out sweep.jsonl --data-dir DIR --workers 6
The best schedules were checked on the CPU with `--workers 1 --runs NAME:SEED,...`.
Results: benchmarks/recipe_sweep.jsonl, summarised in docs/results.md ("Recipe sweep").
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

# Overrides of the `accurate` recipe (10 epochs, one-cycle 5e-3); "deep-e6-ls-lr1e2" became
# the first `accurate-short` recipe, "deep-e4-ls-lr1e2-b128" the present one.
VARIANTS = {
    "deep-e10": {},
    "deep-e6": {"epochs": 6},
    "deep-e5": {"epochs": 5},
    "deep-e4": {"epochs": 4},
    "deep-e6-lr1e2": {"epochs": 6, "learning_rate": 1e-2},
    "deep-e6-ls": {"epochs": 6, "label_smoothing": 0.1},
    "deep-e5-ls": {"epochs": 5, "label_smoothing": 0.1},
    "deep-e5-ls-lr1e2": {"epochs": 5, "label_smoothing": 0.1, "learning_rate": 1e-2},
    "deep-e6-ls-lr1e2": {"epochs": 6, "label_smoothing": 0.1, "learning_rate": 1e-2},
    "deep48-e7": {"model": "deep48", "epochs": 7},
    "deep48-e6-ls": {"model": "deep48", "epochs": 6, "label_smoothing": 0.1},
    "deep2-e8": {"model": "deep2", "epochs": 8},
    "fast-e10": {"model": "fast", "epochs": 10},
}

# 99.5 % within 3 or 4 epochs (a CPU epoch takes 39-55 s), and the `robust` recipe (what
# `make ship-model` ships) on the cheaper 48-channel network, trained in full.
SHORT = {"label_smoothing": 0.1, "learning_rate": 1e-2}
VARIANTS |= {
    "deep-e3-ls-lr1e2": {**SHORT, "epochs": 3},
    "deep-e3-ls-lr2e2": {**SHORT, "epochs": 3, "learning_rate": 2e-2},
    "deep-e3-ls-lr1e2-b128": {**SHORT, "epochs": 3, "batch_size": 128},
    "deep-e4-ls-lr1e2": {**SHORT, "epochs": 4},
    "deep-e4-ls-lr2e2": {**SHORT, "epochs": 4, "learning_rate": 2e-2},
    "deep-e4-ls2-lr1e2": {**SHORT, "epochs": 4, "label_smoothing": 0.2},
    "deep-e4-ls-lr1e2-b128": {**SHORT, "epochs": 4, "batch_size": 128},
    "deep-e4-ls-lr1e2-aug8": {**SHORT, "epochs": 4, "rotation": 8.0, "shift": 0.08, "zoom": 0.08},
    "deep-e4-ls-lr1e2-aug5": {**SHORT, "epochs": 4, "rotation": 5.0, "shift": 0.05, "zoom": 0.05},
    "deep48-e4-ls-lr1e2": {**SHORT, "model": "deep48", "epochs": 4},
    "deep48-e5-ls-lr1e2": {**SHORT, "model": "deep48", "epochs": 5},
    "deep48-e4-ls-lr1e2-b128": {**SHORT, "model": "deep48", "epochs": 4, "batch_size": 128},
    "deep48-e5-ls-lr2e2": {**SHORT, "model": "deep48", "epochs": 5, "learning_rate": 2e-2},
    "robust-deep": {"recipe": "robust"},
    "robust-deep48": {"recipe": "robust", "model": "deep48"},
    "robust-deep48-d128": {"recipe": "robust", "model": "deep48-d128"},
}


def register_candidates() -> None:
    """`deep` without its third convolution (2.7 M multiply-adds per image instead of 4.9 M),
    and the shipped `deep48` with Dense 128 instead of 256 (for ONNX Runtime's p99: half the
    Dense weights to read per image). `deep48` itself is in models.py."""
    import keras
    from keras import layers

    from digit_recognizer.models import INPUT_SHAPE, NUM_CLASSES, build_deep_variant, register

    def bn() -> layers.Layer:
        return layers.BatchNormalization(momentum=0.9)

    register("deep2")(lambda: keras.Sequential([
        keras.Input(shape=INPUT_SHAPE), layers.Rescaling(1.0 / 255),
        layers.Conv2D(32, 5, activation="relu"), layers.MaxPooling2D(2), bn(),
        layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(2), bn(),
        layers.Flatten(), layers.Dropout(0.3), layers.Dense(256, activation="relu"),
        layers.Dropout(0.3), layers.Dense(NUM_CLASSES, activation="softmax"),
    ], name="deep2"))  # fmt: skip
    register("deep48-d128")(lambda: build_deep_variant("deep48-d128", 48, dense=128))


def run_one(name: str, seed: int, data_dir: str | None, work_dir: Path) -> dict:
    """One training run; variants of `accurate` stop at 99.5 %, other recipes run in full."""
    register_candidates()
    from digit_recognizer.bench import time_to_accuracy_callback
    from digit_recognizer.data import load_dataset
    from digit_recognizer.train import recipe_config, train

    data = load_dataset("mnist", Path(data_dir) if data_dir else None)
    overrides = dict(VARIANTS[name])
    recipe = overrides.pop("recipe", "accurate")
    callback = time_to_accuracy_callback(
        data.x_test, data.y_test, (0.99, 0.995), 1e9, stop=recipe == "accurate"
    )
    cfg = recipe_config(recipe, seed=seed, **overrides)
    start = time.time()
    train(cfg, work_dir / f"{name}-{seed}", data=data, verbose=0, extra_callbacks=(callback,))
    curve = [round(point["accuracy"], 4) for point in callback.curve]
    seconds = [round(point["seconds"], 1) for point in callback.curve]  # training time so far
    return {"name": name, "seed": seed, "curve": curve, "seconds": seconds,
            "wall_s": round(time.time() - start, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/sweep"), help="run folders")
    parser.add_argument("--runs", default=None, help="name:seed,... (default: all, seeds 42 1 2)")
    args = parser.parse_args()
    if args.runs:
        runs = [(name, int(seed)) for name, seed in (r.split(":") for r in args.runs.split(","))]
    else:
        runs = [(name, seed) for seed in (42, 1, 2) for name in VARIANTS]
    context = get_context("spawn")  # JAX and TensorFlow do not survive a fork
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool, args.out.open("a") as log:
        futures = [
            pool.submit(run_one, name, seed, args.data_dir, args.work_dir) for name, seed in runs
        ]
        for future in as_completed(futures):
            record = json.dumps(future.result())
            print(record, flush=True)
            log.write(record + "\n")
            log.flush()  # a sweep stopped by a time limit keeps what it finished


if __name__ == "__main__":
    main()
