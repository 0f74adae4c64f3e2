"""Train the number reader's network (convolutions over the line, CTC loss) and ship it:
src/digit_recognizer/assets/number_model.onnx and number_model_card.json.

Training data, new every epoch: numbers of 1-10 digits generated (number_data) from MNIST's
first 50,000 training digits and from the digit generator's training hands, separated or
touching, rendered as canvases and photos. The epoch kept is the one that reads most of 1,000
four-digit numbers built from the last 10,000 training digits (half touching). MNIST's test
digits and the held-out hands, which make the committed test set, never take part.

  .venv/bin/python tools/train_number_reader.py --minutes 50 [--resume runs/numbers/model.keras]

--resume also takes an exported ONNX file, the shipped one included
(src/digit_recognizer/assets/number_model.onnx): it is read back into Keras first. --grow N
grafts one more LSTM branch (N units each way) onto the model it goes on from.

The time budget, not an epoch count, ends training (a cosine learning-rate schedule over it),
so the same command fits a laptop's afternoon or a short CI-sized smoke run (--minutes 1).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from digit_recognizer import number_data as nd
from digit_recognizer import synth
from digit_recognizer.artifacts import library_versions, sha256_file, ship_model, write_json
from digit_recognizer.errors import NoDigitError
from digit_recognizer.number_reader import (
    DEFAULT_NUMBER_MODEL,
    FRAMES,
    HEIGHT,
    WIDTH,
    greedy_decode,
    line_view,
)

PER_EPOCH = (6000, 2000)  # numbers from MNIST digits, from generated handwriting
MAX_DIGITS = 10


def build_model():
    """The convolutional network with a recurrent layer across the whole line."""
    return with_context(convolutional_model())


def convolutional_model():
    """Four convolution blocks (the line 32 -> 1 px tall, 192 -> 48 frames wide), two 1-D
    convolutions across frames (each frame sees its neighbours' digits), 11 logits a frame:
    the number model of releases 0.3 and 0.4."""
    import keras
    from keras import layers

    inputs = keras.Input((HEIGHT, WIDTH, 1))
    x = layers.Rescaling(1 / 255)(inputs)
    for filters, pool in ((24, (2, 2)), (48, (2, 2)), (64, (2, 1)), (96, (4, 1))):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D(pool)(x)
    x = layers.Reshape((FRAMES, 96))(x)
    for _ in range(2):
        x = layers.Conv1D(96, 5, padding="same", activation="relu")(x)
    outputs = layers.Dense(11)(x)  # logits; class 0 is CTC's blank, digit d is d + 1
    return keras.Model(inputs, outputs, name="number_reader")


def with_context(model, name: str = "context", units: int = 64):
    """The model with a bidirectional LSTM over the frames added before its output layer, as
    a residual branch whose last layer starts at zero: a trained model given the branch reads
    exactly as before and learns to use the whole line from there. A model that has a branch
    of that name already is returned as it is."""
    import keras
    from keras import layers

    if any(layer.name == name for layer in model.layers):
        return model
    frames, output = model.layers[-2].output, model.layers[-1]
    branch = layers.Bidirectional(layers.LSTM(units, return_sequences=True), name=name)(frames)
    branch = layers.Dense(frames.shape[-1], kernel_initializer="zeros", name=f"{name}_out")(branch)
    x = layers.Add(name=f"{name}_add")([frames, branch])
    return keras.Model(model.input, output(x), name="number_reader")


def grow(model, units: int):
    """The model with one more recurrent branch (`with_context`), named after how many it has:
    "context", then "context2", "context3"..."""
    count = len(recurrent_layers(model))
    return with_context(model, "context" if count == 0 else f"context{count + 1}", units)


def recurrent_layers(model) -> list:
    return [layer for layer in model.layers if type(layer).__name__ == "Bidirectional"]


def keras_from_onnx(path: Path):
    """The Keras network a number model exported by this tool computes, read back from its
    ONNX file, so that training can go on from the shipped model without its Keras file.
    Export folded each BatchNorm into its convolution: here the BatchNorm layer adds the
    folded bias and is frozen, since its statistics are no longer a batch's."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = list(graph.node)
    model = convolutional_model()
    recurrent_nodes = [n for n in nodes if n.op_type == "LSTM"]
    for node in recurrent_nodes:
        model = grow(model, next(a.i for a in node.attribute if a.name == "hidden_size"))

    def layers_of(kind: str) -> list:
        return [layer for layer in model.layers if type(layer).__name__ == kind]

    convolutions = [n for n in nodes if n.op_type == "Conv"]  # the 2-D ones, then the frames'
    blocks = zip(layers_of("Conv2D"), layers_of("BatchNormalization"), convolutions, strict=False)
    for layer, norm, node in blocks:
        layer.set_weights([weights[node.input[1]].transpose(2, 3, 1, 0)])
        bias = weights[node.input[2]]
        scale = np.full_like(bias, 1 - norm.epsilon)  # so that BatchNorm divides by 1
        norm.set_weights([np.ones_like(bias), bias, np.zeros_like(bias), scale])
        norm.trainable = False
    frame_convolutions = convolutions[len(layers_of("Conv2D")) :]
    for layer, node in zip(layers_of("Conv1D"), frame_convolutions, strict=True):
        kernel = weights[node.input[1]][:, :, 0, :]  # (out, in, 1, width) -> (out, in, width)
        bias = _bias_after(nodes, weights, node.output[0])
        layer.set_weights([kernel.transpose(2, 1, 0), bias.reshape(-1)])
    for layer, node in zip(recurrent_layers(model), recurrent_nodes, strict=True):
        kernels, recurrents, biases = (weights[name] for name in node.input[1:4])
        for direction, lstm in enumerate((layer.forward_layer, layer.backward_layer)):
            kernel, recurrent = kernels[direction], recurrents[direction]
            bias = sum(np.split(biases[direction], 2))  # ONNX keeps input and recurrent biases
            lstm.set_weights([_keras_gates(g) for g in (kernel, recurrent, bias)])
    products = [n for n in nodes if n.op_type == "MatMul"]
    for layer, node in zip(layers_of("Dense"), products, strict=True):
        layer.set_weights([weights[node.input[1]], _bias_after(nodes, weights, node.output[0])])
    difference = _largest_difference(model, path)
    if difference > 1e-3:
        raise ValueError(f"{path}: read back into Keras, logits differ by {difference:.1e}")
    return model


def _bias_after(nodes: list, weights: dict, output: str) -> np.ndarray:
    """The constant added to `output`, past the reshapes export puts in between."""
    while (node := next(n for n in nodes if output in n.input)).op_type != "Add":
        output = node.output[0]
    return weights[next(name for name in node.input if name in weights)]


def _keras_gates(weights: np.ndarray) -> np.ndarray:
    """An ONNX LSTM weight (gates on the first axis: input, output, forget, cell) in Keras's
    layout (gates on the last axis: input, forget, cell, output)."""
    gate_input, gate_output, gate_forget, gate_cell = np.split(weights, 4)
    return np.concatenate([gate_input, gate_forget, gate_cell, gate_output]).T


def _largest_difference(model, path: Path, count: int = 8) -> float:
    """Largest |Keras - ONNX Runtime| logit over random lines."""
    import onnxruntime as ort

    lines = np.random.default_rng(0).uniform(0, 255, (count, HEIGHT, WIDTH, 1)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: lines})[0]
    return float(np.abs(np.asarray(model(lines, training=False)) - expected).max())


def describe_branches(model) -> str:
    """The model's recurrent branches in words, for its card."""
    units = [layer.forward_layer.units for layer in recurrent_layers(model)]
    if not units:
        return "no recurrent layer"
    return " and ".join(f"a bidirectional LSTM of {u} units" for u in units) + " across it"


def lines(numbers: list[nd.GeneratedNumber]) -> tuple[np.ndarray, np.ndarray]:
    """Network inputs (N, HEIGHT, WIDTH, 1) and CTC targets (N, MAX_DIGITS), 0-padded."""
    views, targets = [], []
    for number in numbers:
        try:
            views.append(line_view(number.image).view)
        except NoDigitError:  # a render too faint to find (rare)
            continue
        target = np.zeros(MAX_DIGITS, np.int32)
        target[: len(number.text)] = [int(c) + 1 for c in number.text]
        targets.append(target)
    return np.stack(views)[..., None], np.stack(targets)


def _epoch_data(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's fresh numbers (run in a worker process while the previous epoch fits)."""
    from digit_recognizer.data import load_dataset

    data = load_dataset("mnist")
    mnist = nd.pool_from_mnist(data.x_train[:50000], data.y_train[:50000])
    written = nd.pool_from_synth(synth.TRAIN_HANDS, 3000, seed)
    x1, y1 = lines(nd.generate(mnist, PER_EPOCH[0], (1, MAX_DIGITS), seed=seed))
    x2, y2 = lines(nd.generate(written, PER_EPOCH[1], (1, MAX_DIGITS), seed=seed + 1))
    return np.concatenate([x1, x2]), np.concatenate([y1, y2])


def read_all(model, x: np.ndarray) -> list[str]:
    logits = np.asarray(model.predict(x, batch_size=256, verbose=0))
    return ["".join(str(d) for d, _, _ in greedy_decode(row)) for row in logits]


def export(model_path: Path, out: Path) -> None:
    import keras

    model = keras.models.load_model(model_path, compile=False)
    model(np.zeros((1, HEIGHT, WIDTH, 1), np.float32))  # export needs a traced call
    model.export(str(out), format="onnx", verbose=False)


def main() -> None:
    import keras

    from digit_recognizer.data import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs/numbers"))
    parser.add_argument(
        "--resume", type=Path, default=None, help="a model.keras or exported .onnx to go on from"
    )
    parser.add_argument(
        "--grow", type=int, default=0, help="graft one more LSTM branch of this many units"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--ship", action="store_true", help="write the ONNX model into assets/")
    args = parser.parse_args()
    keras.utils.set_random_seed(args.seed)
    data = load_dataset("mnist")
    x_val, y_val = lines(nd.validation_numbers(data.x_train, data.y_train))
    truth = ["".join(str(c - 1) for c in row if c) for row in y_val]
    if args.resume is None:
        model = build_model()
    else:  # a model trained before the LSTM gets it grafted on; one with it goes on as it is
        model = with_context(
            keras_from_onnx(args.resume)
            if args.resume.suffix == ".onnx"
            else keras.models.load_model(args.resume)
        )
    if args.grow:  # one more recurrent branch, starting at zero like the first
        model = grow(model, args.grow)
    model.compile(keras.optimizers.Adam(args.learning_rate), loss=keras.losses.CTC())
    args.out.mkdir(parents=True, exist_ok=True)
    best, history, epoch = -1.0, [], 0
    start = time.time()
    with multiprocessing.get_context("spawn").Pool(1) as workers:
        upcoming = workers.apply_async(_epoch_data, (args.seed + 1000,))
        while (elapsed := time.time() - start) < 60 * args.minutes:
            x, y = upcoming.get()
            epoch += 1
            upcoming = workers.apply_async(_epoch_data, (args.seed + 1000 * (epoch + 1),))
            rate = (
                args.learning_rate * 0.5 * (1 + math.cos(math.pi * elapsed / (60 * args.minutes)))
            )
            model.optimizer.learning_rate.assign(max(rate, 0.02 * args.learning_rate))
            loss = model.fit(x, y, batch_size=64, epochs=1, shuffle=True, verbose=0).history["loss"]
            read = read_all(model, x_val)
            accuracy = float(np.mean([r == t for r, t in zip(read, truth, strict=True)]))
            minutes = (time.time() - start) / 60
            history.append({"epoch": epoch, "loss": loss[-1], "validation": accuracy,
                            "learning_rate": rate, "minutes": minutes})  # fmt: skip
            print(
                f"epoch {epoch}: loss {loss[-1]:.3f}, validation numbers {accuracy:.2%}", flush=True
            )
            if accuracy > best:
                best = accuracy
                model.save(args.out / "model.keras")
    onnx = args.out / "model.onnx"
    export(args.out / "model.keras", onnx)
    card = {
        "model": f"number_reader (convolutions over the line, {describe_branches(model)}, "
        "CTC loss, greedy decoding)",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "input": f"{HEIGHT}x{WIDTH} line, light ink on black (number_reader.line_view)",
        "training_data": {
            "mnist": "train[:50000] digits, numbers of 1-10 digits, new every epoch",
            "generated_handwriting": f"training hands {list(synth.TRAIN_HANDS)}",
            "per_epoch": {"mnist": PER_EPOCH[0], "generated": PER_EPOCH[1]},
            "mnist_checksums": data.checksums,
            "number_generator": "number_data (separated and touching, canvas and photo)",
        },
        "validation": "1,000 four-digit numbers from MNIST train[50000:] (chooses the epoch)",
        "held_out": "data/numbers: MNIST test digits and held-out hands only",
        "validation_accuracy": best,
        "epochs": epoch,
        "minutes": args.minutes,
        "seed": args.seed,
        "learning_rate": args.learning_rate,
        "resumed_from": str(args.resume) if args.resume else None,
        "grown_by": f"an LSTM branch of {args.grow} units each way" if args.grow else None,
        "history": history,
        "versions": library_versions(),
    }
    card["onnx_sha256"] = sha256_file(onnx)
    write_json(args.out / "card.json", card)
    if args.ship:
        ship_model(onnx, card, DEFAULT_NUMBER_MODEL)
    print(f"best validation {best:.2%} after {epoch} epochs; model in {args.out}")


if __name__ == "__main__":
    main()
