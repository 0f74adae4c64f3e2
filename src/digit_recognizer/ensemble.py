"""Ensembles: several trained runs answering as one Keras model, in one of two ways:

  average_models  the mean of the members' probabilities (any members)
  merge_models    one network as wide as the members together, each member's weights in a
                  block of its own, averaging their logits before one softmax (members of one
                  Sequential architecture): a plain chain of layers, which `digits finetune`
                  reads back and trains like any single network; exported, its block-diagonal
                  convolutions become grouped ones (fold.group_convolutions)

The ensemble is written as an ordinary run folder (model.keras + config.json), so it is
evaluated, compared, exported to ONNX (one graph) and scored for robustness like any model.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import keras
import numpy as np
from keras import layers

from digit_recognizer.artifacts import library_versions, read_json, write_json
from digit_recognizer.config import load_config, split_of
from digit_recognizer.errors import DigitsError
from digit_recognizer.models import INPUT_SHAPE, inference_model, load_model, save_model_atomic


def average_models(members: list[keras.Model]) -> keras.Model:
    """One model whose output is the mean of the members' probabilities."""
    inputs = keras.Input(shape=INPUT_SHAPE)
    outputs = [
        keras.Model(inputs, inference_model(member)(inputs), name=f"member_{k}")(inputs)
        for k, member in enumerate(members)
    ]
    averaged = outputs[0] if len(outputs) == 1 else keras.layers.Average()(outputs)
    return keras.Model(inputs, averaged, name="ensemble")


def _blocks(kernels: list[np.ndarray], positions: int, shared_input: bool, shared_output: bool):
    """One kernel (..., positions * inputs, outputs) holding each member's kernel (all of one
    shape) in a block of its own. Inputs are channels-last (position-major after Flatten):
    member k's inputs are its channels at every position. A shared input (the image) or
    output (the logits, averaged) is one block for all members."""
    n, lead = len(kernels), kernels[0].shape[:-2]
    ins, outs = kernels[0].shape[-2] // positions, kernels[0].shape[-1]
    merged = np.zeros(
        (*lead, positions, ins if shared_input else n * ins, outs if shared_output else n * outs),
        np.float32,
    )
    for k, kernel in enumerate(kernels):
        i, o = (0 if shared_input else k * ins), (0 if shared_output else k * outs)
        block = kernel.reshape(*lead, positions, ins, outs)
        merged[..., i : i + ins, o : o + outs] += block / n if shared_output else block
    return merged.reshape(*lead, positions * merged.shape[-2], merged.shape[-1])


# The layers merge_models knows: each member's channels or units stay apart through them.
MERGEABLE = (
    layers.Conv2D,
    layers.MaxPooling2D,
    layers.ReLU,
    layers.Flatten,
    layers.Dropout,
    layers.Dense,
)


def _same_plain_layers(models: list[keras.Model]) -> bool:
    """Whether the models are Sequential chains of the same MERGEABLE layers, alike in every
    setting, each weighted one with a bias."""

    def settings(layer: layers.Layer) -> dict:
        return {k: v for k, v in layer.get_config().items() if k != "name"}

    if not all(isinstance(m, keras.Sequential) for m in models):
        return False
    rows = [[(type(layer), settings(layer)) for layer in m.layers] for m in models]
    return all(row == rows[0] for row in rows) and all(
        isinstance(layer, MERGEABLE) and len(layer.weights) in (0, 2) for layer in models[0].layers
    )


def merge_models(members: list[keras.Model]) -> keras.Sequential:
    """One Sequential network computing every member side by side and the mean of their
    logits before the softmax (the normalised geometric mean of their probabilities).
    Rescaling and BatchNorm are folded first (fold.fold_affine); what is left must be the same
    chain of MERGEABLE layers in every member."""
    from digit_recognizer.fold import fold_affine

    folded = [fold_affine(inference_model(member)) for member in members]
    if not _same_plain_layers(folded):
        raise DigitsError("only members of one plain Sequential architecture can be merged")
    weighted = [k for k, layer in enumerate(folded[0].layers) if layer.weights]
    clones, values = [], []
    positions, shared_input = 1, True
    for k, group in enumerate(zip(*[m.layers for m in folded], strict=True)):
        config = group[0].get_config()
        if isinstance(group[0], layers.Flatten):
            positions = int(np.prod(group[0].input.shape[1:-1]))
        if group[0].weights:
            last = k == weighted[-1]
            kernels = [np.asarray(layer.get_weights()[0]) for layer in group]
            biases = [np.asarray(layer.get_weights()[1]) for layer in group]
            kernel = _blocks(kernels, positions, shared_input, shared_output=last)
            bias = np.mean(biases, axis=0) if last else np.concatenate(biases)
            size = "filters" if isinstance(group[0], layers.Conv2D) else "units"
            config[size] = kernel.shape[-1]
            values.append((len(clones), [kernel, bias.astype(np.float32)]))
            positions, shared_input = 1, False
        clones.append(group[0].__class__.from_config(config))
    merged = keras.Sequential([keras.Input(shape=INPUT_SHAPE), *clones], name="merged")
    for index, weights in values:
        merged.layers[index].set_weights(weights)
    return merged


def build_ensemble(run_dirs: list[Path], out_dir: Path, merge: bool = False) -> Path:
    """Average the best models of `run_dirs` into a new run folder `out_dir`: their
    probabilities, or with `merge` their logits in one wider network (merge_models)."""
    if not run_dirs:
        raise DigitsError("give at least one run folder to ensemble")
    configs = [load_config(run) for run in run_dirs]
    if len({split_of(c) for c in configs}) > 1:
        # Members must share the test set and the validation split that calibrates them.
        raise DigitsError(
            "ensemble members must share dataset, --limit, --val-split and the validation split's "
            "seed (train them with different --seed and one --split-seed)"
        )
    members = [load_model(Path(run) / "model.keras") for run in run_dirs]
    out_dir = Path(out_dir)
    combine = merge_models if merge else average_models
    save_model_atomic(combine(members), out_dir / "model.keras")
    first = read_json(Path(run_dirs[0]) / "config.json")
    write_json(
        out_dir / "config.json",
        {
            **first,
            "config": asdict(replace(configs[0], recipe="ensemble", model="ensemble")),
            "members": [str(Path(run)) for run in run_dirs],
            "average": "logits" if merge else "probabilities",
            "versions": library_versions(),
        },
    )
    # Training time and epochs of an ensemble are its members' together.
    histories = [read_json(Path(run) / "history.json") for run in run_dirs]
    write_json(
        out_dir / "history.json",
        {"epoch_seconds": [s for h in histories for s in h.get("epoch_seconds", [])]},
    )
    return out_dir
