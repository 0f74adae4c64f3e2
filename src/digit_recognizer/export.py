"""Export a trained Keras model to ONNX, verify it, and write its model card."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from digit_recognizer.artifacts import (
    library_versions,
    read_json,
    sha256_file,
    write_atomic,
    write_json,
)
from digit_recognizer.errors import DigitsError
from digit_recognizer.predict import card_path

MAX_ABS_DIFF = 1e-4  # largest difference between Keras and ONNX probabilities we accept


def _keras_model_path(source: Path) -> Path:
    source = Path(source)
    path = source / "model.keras" if source.is_dir() else source
    if not path.is_file() or path.suffix not in (".keras", ".h5"):
        raise DigitsError(f"{source}: expected a run folder or a .keras/.h5 model file")
    return path


def max_output_difference(
    model, onnx_path: Path, temperature: float = 1.0, count: int = 64, seed: int = 0
) -> float:
    """Largest |Keras - ONNX Runtime| probability over random 0-255 images, the Keras side
    scaled by `temperature` (folded into the ONNX file)."""
    import onnxruntime as ort

    from digit_recognizer.predict import apply_temperature

    images = np.random.default_rng(seed).uniform(0, 255, (count, 28, 28, 1)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: images})[0]
    keras_out = apply_temperature(np.asarray(model(images, training=False)), temperature)
    return float(np.abs(onnx_out - keras_out).max())


# --- Rewriting the exported graph: the same function in fewer operations ----------------


def _producers(graph) -> dict:
    return {output: node for node in graph.node for output in node.output}


def _consumers(graph, name: str) -> list:
    return [node for node in graph.node if name in node.input]


def _drop_unused(graph) -> None:
    """Remove the nodes and constants that no graph output depends on."""
    needed = {output.name for output in graph.output}
    kept = []
    for node in reversed(graph.node):  # ONNX lists nodes in topological order
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    unused = [tensor for tensor in graph.initializer if tensor.name not in needed]
    for tensor in unused:
        graph.initializer.remove(tensor)


def _static_dims(model) -> dict[str, list]:
    """Each tensor's dimensions as shape inference (with constant propagation) sees them:
    ints where known, names where they depend on the batch."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    return {
        info.name: [dim.dim_value or dim.dim_param for dim in info.type.tensor_type.shape.dim]
        for info in [*inferred.graph.input, *inferred.graph.value_info]
    }


def constant_flatten(model) -> None:
    """Keras's Flatten exports as a Transpose back to channels-last, then six operations
    computing the shape [batch, -1] at run time for a Reshape. Where shape inference shows the
    Reshape gives [batch, k], its shape becomes the constant [-1, k]; where it also reads a
    channels-last Transpose and feeds only a MatMul of constant weights, it reads the
    channels-first tensor and the weight rows are permuted to match: the same sums of the
    same products. About 5 % of the shipped model's time in ONNX Runtime."""
    from onnx import numpy_helper

    graph = model.graph
    dims, producers = _static_dims(model), _producers(graph)
    constants = {tensor.name: tensor for tensor in graph.initializer}
    for reshape in [node for node in graph.node if node.op_type == "Reshape"]:
        source, shape = reshape.input[0], reshape.input[1]
        result, features = dims.get(reshape.output[0], []), dims.get(source, [None])[1:]
        if shape in constants or len(result) != 2 or not isinstance(result[1], int):
            continue
        if not all(isinstance(d, int) for d in features) or np.prod(features) != result[1]:
            continue  # not [batch, everything else]: -1 would not stand for the batch
        constant = numpy_helper.from_array(np.array([-1, result[1]], np.int64), f"{shape}_fixed")
        graph.initializer.append(constant)
        reshape.input[1] = constant.name
        transpose, users = producers.get(source), _consumers(graph, reshape.output[0])
        perm = [list(a.ints) for a in transpose.attribute if a.name == "perm"] if transpose else []
        if (
            perm != [[0, 2, 3, 1]]
            or transpose.op_type != "Transpose"
            or len(_consumers(graph, source)) != 1
            or len(users) != 1
            or users[0].op_type != "MatMul"
            or users[0].input[0] != reshape.output[0]
            or users[0].input[1] not in constants
            or len(_consumers(graph, users[0].input[1])) != 1
        ):
            continue
        height, width, channels = features
        weights = constants[users[0].input[1]]
        rows = numpy_helper.to_array(weights)  # in (height, width, channel) order
        rows = rows.reshape(height, width, channels, -1).transpose(2, 0, 1, 3)
        weights.CopyFrom(numpy_helper.from_array(rows.reshape(result[1], -1), weights.name))
        reshape.input[0] = transpose.input[0]
    _drop_unused(graph)


def fold_temperature(model, temperature: float) -> bool:
    """Divide the logits feeding the output Softmax by `temperature`, so that the file itself
    gives calibrated probabilities: softmax(z / T) is apply_temperature's softmax(log p / T).
    False, and nothing changed, unless the graph ends in Softmax(x @ W + b) or Softmax(x @ W)
    (a bias of zeros is dropped by the exporter), W and b constant."""
    from onnx import numpy_helper

    graph = model.graph
    producers = _producers(graph)
    constants = {tensor.name: tensor for tensor in graph.initializer}
    softmax = producers.get(graph.output[0].name)
    logits = producers.get(softmax.input[0]) if softmax and softmax.op_type == "Softmax" else None
    names = []
    if logits is not None and logits.op_type == "Add":
        names.append(logits.input[1])
        logits = producers.get(logits.input[0])
    if logits is None or logits.op_type != "MatMul":
        return False
    names.append(logits.input[1])
    if not all(name in constants and len(_consumers(graph, name)) == 1 for name in names):
        return False
    for name in names:
        scaled = numpy_helper.to_array(constants[name]) / np.float32(temperature)
        constants[name].CopyFrom(numpy_helper.from_array(scaled.astype(np.float32), name))
    return True


def write_onnx(keras_model, out: Path, temperature: float = 1.0) -> bool:
    """Export `keras_model` to ONNX at `out` (atomically), rewritten by constant_flatten and,
    for a temperature other than 1, fold_temperature. True if the temperature was folded."""
    import keras
    import onnx

    # Keras traces the model for ONNX without training=False, and a nested model (the
    # keras.applications base of `mobilenet`) then normalised with each batch's statistics:
    # outputs 0.58 off Keras's and dependent on the other images in the batch.
    inputs = keras.Input(shape=keras_model.input_shape[1:])
    inference = keras.Model(inputs, keras_model(inputs, training=False), name=keras_model.name)
    inference(np.zeros((1, *inputs.shape[1:]), np.float32))  # Keras exports only models that ran
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "keras.onnx"
        inference.export(str(raw), format="onnx", verbose=False)
        model = onnx.load(str(raw))
    constant_flatten(model)
    folded = temperature != 1.0 and fold_temperature(model, temperature)
    onnx.checker.check_model(model)
    write_atomic(out, lambda tmp: onnx.save(model, str(tmp)))
    return folded


def model_card(
    run_dir: Path, onnx_path: Path, max_diff: float, temperature_in_model: bool = False
) -> dict:
    """What a user needs to trust a model file: data, settings, figures, date, checksum.
    `temperature_in_model`: the file's last layer holds calibration.json's temperature."""
    card: dict = {
        "model_file": onnx_path.name,
        "sha256": sha256_file(onnx_path),
        "exported": datetime.now(UTC).isoformat(timespec="seconds"),
        "onnx_max_abs_diff_vs_keras": max_diff,
        "input": "float32 [batch, 28, 28, 1], grey 0-255, light digit on black (MNIST)",
        "output": "float32 [batch, 10], softmax probabilities of digits 0-9",
        "versions": library_versions(),
    }
    for name in ("config.json", "metrics.json", "history.json", "calibration.json"):
        if not (run_dir / name).is_file():
            continue
        content = read_json(run_dir / name)
        if name == "config.json":
            card["training"] = content["config"]
            card["data"] = content["data"]
        elif name == "calibration.json":
            card["calibration"] = {
                key: content[key]
                for key in ("temperature", "fitted_on", "test_ece", "test_ece_calibrated")
            }
            if temperature_in_model:
                card["calibration"]["in_model"] = True
                temperature = content["temperature"]
                card["output"] += f", calibrated (temperature {temperature:.4g} in the last layer)"
        elif name == "metrics.json":
            card["test_accuracy"] = content["accuracy"]
            card["test_macro_f1"] = content["macro_f1"]
            card["parameters"] = content["parameters"]
        else:
            card["epochs"] = len(content.get("loss", []))
    return card


def export_onnx(
    source: Path, out: Path | None = None, handwriting: Path | None = None
) -> tuple[Path, dict]:
    """Export a run's best model (or a .keras file) to ONNX beside a model_card.json.

    Rescaling and BatchNorm layers are folded into the next layer's weights first
    (models.fold_affine) and Flatten's shape arithmetic is made constant (constant_flatten):
    the same function in fewer operations. A temperature fitted by `digits evaluate`
    (calibration.json) goes into the last layer (fold_temperature), so the file's outputs are
    calibrated and nothing is computed after it.

    Fails if ONNX Runtime's outputs differ from Keras's by more than MAX_ABS_DIFF. With
    `handwriting`, a folder of labelled images, the card also records the exported model's
    accuracy on it with and without preprocessing.
    """

    from digit_recognizer.models import fold_affine, inference_model, load_model

    keras_path = _keras_model_path(source)
    out = Path(out) if out else keras_path.with_suffix(".onnx")
    model = inference_model(load_model(keras_path))
    folded = fold_affine(model)
    calibration = keras_path.parent / "calibration.json"
    temperature = read_json(calibration)["temperature"] if calibration.is_file() else 1.0
    in_model = write_onnx(folded, out, temperature)
    # Against the model as trained: checks every fold and rewrite.
    max_diff = max_output_difference(model, out, temperature if in_model else 1.0)
    if max_diff > MAX_ABS_DIFF:
        out.unlink()
        raise DigitsError(f"ONNX outputs differ from Keras by {max_diff:.2e} (> {MAX_ABS_DIFF})")
    card = model_card(keras_path.parent, out, max_diff, temperature_in_model=in_model)
    if handwriting is not None:
        from digit_recognizer.evaluate import evaluate_images

        card["handwriting"] = {
            "folder": str(handwriting),
            **{
                f"accuracy_{'with' if on else 'without'}_preprocessing": evaluate_images(
                    handwriting, out, preprocessing=on
                )["accuracy"]
                for on in (True, False)
            },
        }
    write_json(card_path(out), card)
    return out, card
