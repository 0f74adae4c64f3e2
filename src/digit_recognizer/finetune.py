"""Fine-tune the digit model on the corrections people sent, mixed with MNIST replay and
generated handwriting, so that it learns their hands without forgetting everyone else's.

record = finetune(FinetuneConfig(), store, out=Path("runs/finetune"))
out/model.keras, model.onnx, model_card.json, finetune.json (seed, config, data, versions)

The starting point is an ONNX model (by default the one being served): its graph is read
back into an equivalent Keras network (keras_from_onnx), checked to give the same outputs.
A part of the corrections is held out; `digits promote` scores both models on it.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from digit_recognizer.artifacts import library_versions, sha256_file, write_json
from digit_recognizer.errors import DigitsError
from digit_recognizer.feedback import FeedbackStore, StoredCorrection

MIN_CORRECTIONS = 20
MAX_ABS_DIFF = 1e-4  # Keras twin against the ONNX file it was read from


@dataclass(frozen=True)
class FinetuneConfig:
    """Defaults: the gentlest change that still learns a misread style (docs/decisions.md,
    "Fine-tuning on corrections"): only the last layer learns, slowly, while MNIST replay
    holds the rest of the model's answers in place."""

    epochs: int = 6
    learning_rate: float = 5e-5
    batch_size: int = 64
    replay: int = 30  # MNIST training digits per correction, so old hands are rehearsed
    generated: float = 0.0  # generated handwriting (training styles), a share of the replay
    per_client: int = 100  # most corrections one client contributes: none steers alone
    holdout: float = 0.25  # share of the corrections kept out to score the result
    train_features: bool = False  # False: only the dense head learns; the convolutions stay
    head_layers: int = 1  # how many dense layers, from the top, learn (without train_features)
    distill: bool = True  # MNIST replay aims at the base model's answers, not its labels
    augmented_replay: bool = True  # and so does a copy of it through the robust recipe's
    # augmentation (rotation, shift, zoom, erasing, contrast, noise, stroke width)
    seed: int = 0


def held_out(row: StoredCorrection, share: float, seed: int) -> bool:
    """A fixed, seeded coin per correction: the same rows stay out however often one runs."""
    return zlib.crc32(f"{seed}:{row.id}".encode()) % 10_000 < share * 10_000


def select(
    rows: list[StoredCorrection], config: FinetuneConfig
) -> tuple[list[StoredCorrection], list[StoredCorrection]]:
    """(training, held out): each client's newest `per_client` corrections, then split."""
    kept: list[StoredCorrection] = []
    by_client: dict[str, list[StoredCorrection]] = {}
    for row in rows:
        by_client.setdefault(row.client_id, []).append(row)
    for client_rows in by_client.values():
        kept += sorted(client_rows, key=lambda r: r.id)[-config.per_client :]
    kept.sort(key=lambda r: r.id)
    split: tuple[list[StoredCorrection], list[StoredCorrection]] = ([], [])
    for row in kept:
        split[held_out(row, config.holdout, config.seed)].append(row)
    return split


def keras_from_onnx(path: Path):
    """The Keras network an exported digit model's ONNX graph computes (convolutions, grouped
    ones included, ReLU, max pooling, flatten, dense layers, split into blocks or not, softmax:
    what `digits export` writes for the CNNs), with Dropout before each dense layer for
    training. Refuses any other graph."""
    import keras
    import onnx
    from keras import layers
    from onnx import numpy_helper

    from digit_recognizer.fold import block_diagonal

    graph = onnx.load(str(path)).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    stack: list = [keras.Input((28, 28, 1))]
    assigned: list[tuple] = []
    nodes = list(graph.node)
    blocks = None  # the weights of the MatMuls after a Split, until their Concat
    for k, node in enumerate(nodes):
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Reshape" and k == 0:
            continue  # NHWC -> NCHW of a one-channel image: a reshape Keras does not need
        if node.op_type == "Conv":
            kernel = weights[node.input[1]]
            if any(attributes.get("pads", [0])):
                raise DigitsError(f"{path}: padded convolutions are not supported")
            # A grouped kernel as the ordinary one it stands for (zeros off the diagonal):
            # Keras exports grouped Conv2D through a function ONNX cannot read.
            kernel = block_diagonal(np.split(kernel, attributes.get("group", 1)))
            layer = layers.Conv2D(kernel.shape[0], kernel.shape[2:], strides=attributes["strides"])
            stack.append(layer)
            assigned.append((layer, [kernel.transpose(2, 3, 1, 0), weights[node.input[2]]]))
        elif node.op_type == "Relu":
            stack.append(layers.ReLU())
        elif node.op_type == "MaxPool":
            stack.append(layers.MaxPooling2D(attributes["kernel_shape"], attributes["strides"]))
        elif node.op_type == "Reshape":  # flatten, in ONNX's channels-first order
            stack += [layers.Permute((3, 1, 2)), layers.Flatten()]
        elif node.op_type == "Split":  # with the MatMuls up to its Concat: one dense layer
            blocks = []
        elif node.op_type == "MatMul" and blocks is not None:
            blocks.append(weights[node.input[1]])
        elif node.op_type == "MatMul" or (node.op_type == "Concat" and blocks):
            kernel = weights[node.input[1]] if node.op_type == "MatMul" else block_diagonal(blocks)
            blocks = None
            bias = weights[nodes[k + 1].input[1]]  # the Add that follows
            layer = layers.Dense(kernel.shape[1])
            stack += [layers.Dropout(0.3), layer]
            assigned.append((layer, [kernel, bias]))
        elif node.op_type == "Add" and nodes[k - 1].op_type in ("MatMul", "Concat"):
            continue
        elif node.op_type == "Softmax":
            stack.append(layers.Softmax())
        else:
            raise DigitsError(f"{path}: cannot fine-tune a graph with {node.op_type} nodes")
    model = keras.Sequential(stack, name="finetuned")
    for layer, values in assigned:
        layer.set_weights(values)
    from digit_recognizer.export import max_output_difference

    difference = max_output_difference(model, path)
    if difference > MAX_ABS_DIFF:
        raise DigitsError(f"{path}: read back into Keras, outputs differ by {difference:.2e}")
    return model


def training_data(
    corrections: list[StoredCorrection], config: FinetuneConfig, data_dir: Path | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Corrections, MNIST replay (training split) and generated digits, shuffled: images
    (N, 28, 28, 1), labels, which of them are MNIST replay, and what went in."""
    from digit_recognizer import synth
    from digit_recognizer.data import load_dataset

    rng = np.random.default_rng(config.seed)
    mnist = load_dataset("mnist", data_dir)
    replay = rng.choice(len(mnist.x_train), len(corrections) * config.replay, replace=False)
    generated, generated_labels = np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)
    if count := int(len(replay) * config.generated):
        images, labels = synth.training_set(
            synth.SynthConfig(count=count, hands=synth.TRAIN_HANDS, seed=config.seed)
        )
        generated, generated_labels = synth.preprocessed_views(images, labels)
    parts = [
        (np.stack([r.view for r in corrections]), np.array([r.label for r in corrections])),
        (mnist.x_train[replay], mnist.y_train[replay]),
        (generated, generated_labels),
    ]
    x = np.concatenate([images for images, _ in parts]).astype(np.float32)
    y = np.concatenate([labels for _, labels in parts]).astype(np.int64)
    is_replay = np.repeat([False, True, False], [len(labels) for _, labels in parts])
    order = rng.permutation(len(x))
    sources = {
        "corrections": len(corrections),
        "mnist_replay": len(replay),
        "generated": len(generated),
        "mnist_checksums": mnist.checksums,
    }
    return x[order, ..., None], y[order], is_replay[order], sources


def augmented(images: np.ndarray, seed: int) -> np.ndarray:
    """One pass of the robust training recipe's augmentation over (N, 28, 28, 1) images."""
    from digit_recognizer.augment import augmentation
    from digit_recognizer.config import RECIPES

    recipe = RECIPES["robust"]
    names = ("rotation", "shift", "zoom", "erase", "contrast", "noise", "stroke")
    augment = augmentation(**{k: recipe[k] for k in names}, seed=seed)
    batches = [augment(images[k : k + 512], training=True) for k in range(0, len(images), 512)]
    return np.concatenate([np.asarray(b) for b in batches]).astype(np.float32)


def with_targets(
    model, x: np.ndarray, y: np.ndarray, is_replay: np.ndarray, config: FinetuneConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The images to fit and what each should answer: its label (one-hot), or, for MNIST
    replay with `distill`, what the base model answers, on the image and on an augmented
    copy of it (learning without forgetting): the new version keeps the old one's answers,
    confidence and robustness where no one corrected it, not just its labels."""
    targets = np.eye(10, dtype=np.float32)[y]
    if not config.distill:
        return x, targets
    if config.augmented_replay:
        copies = augmented(x[is_replay], config.seed)
        x = np.concatenate([x, copies])
        targets = np.concatenate([targets, np.zeros((len(copies), 10), np.float32)])
        is_replay = np.concatenate([is_replay, np.ones(len(copies), bool)])
    teacher = np.asarray(model.predict(x, batch_size=512, verbose=0))
    return x, np.where(is_replay[:, None], teacher, targets)


def finetune(
    config: FinetuneConfig,
    store: FeedbackStore,
    out: Path,
    source: Path | None = None,
    data_dir: Path | None = None,
    progress=None,
) -> dict:
    """Fine-tune `source` (an ONNX model; None: the served one) and write the run to `out`.
    Returns the run's record (also in out/finetune.json)."""
    import keras

    from digit_recognizer.export import write_onnx
    from digit_recognizer.model_store import open_model_store
    from digit_recognizer.predict import card_path, load_card

    source = Path(source) if source else open_model_store().current_model()
    training, held = select(store.corrections(), config)
    if len(training) < MIN_CORRECTIONS:
        raise DigitsError(
            f"{len(training)} corrections to train on in {store.display_url} (after the "
            f"per-client cap and the held-out share); fine-tuning needs {MIN_CORRECTIONS}"
        )
    keras.utils.set_random_seed(config.seed)
    model = keras_from_onnx(source)
    x, y, is_replay, sources = training_data(training, config, data_dir)
    x, targets = with_targets(model, x, y, is_replay, config)
    if not config.train_features:
        dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
        for layer in model.layers:
            layer.trainable = layer in dense[-config.head_layers :]
    model.compile(
        keras.optimizers.Adam(config.learning_rate),
        loss="categorical_crossentropy",
        metrics=["categorical_accuracy"],
    )
    callbacks = [progress] if progress else []
    history = model.fit(
        x,
        targets,
        batch_size=config.batch_size,
        epochs=config.epochs,
        verbose=0,
        callbacks=callbacks,
    )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras", include_optimizer=False)
    write_onnx(model, out / "model.onnx")
    base_card = load_card(source)
    record = {
        "base_model": str(source),
        "base_sha256": sha256_file(source),
        "config": asdict(config),
        "database": store.display_url,
        "training_ids": [r.id for r in training],
        "held_out_ids": [r.id for r in held],
        "data": sources,
        "history": {k: [float(v) for v in values] for k, values in history.history.items()},
        "versions": library_versions(),
    }
    card = {
        "model_file": "model.onnx",
        "sha256": sha256_file(out / "model.onnx"),
        "input": base_card.get("input"),
        "output": base_card.get("output"),
        "finetuned": {k: v for k, v in record.items() if not k.endswith("_ids")},
        # The base's temperature stays in the last layer; not refitted on the new weights.
        "calibration": base_card.get("calibration", {}),
        "training_data": [
            *base_card.get("training_data", []),
            f"{len(training)} user corrections from {store.display_url}",
        ],
        "held_out": [*base_card.get("held_out", []), f"{len(held)} held-out user corrections"],
    }
    write_json(card_path(out / "model.onnx"), card)
    write_json(out / "finetune.json", record)  # last: a run without it is incomplete
    return record
