"""Ensembles: average the probabilities of several trained runs in one Keras model.

The ensemble is written as an ordinary run folder (model.keras + config.json), so it is
evaluated, compared, exported to ONNX (one graph) and scored for robustness like any model.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import keras

from digit_recognizer.artifacts import library_versions, read_json, write_json
from digit_recognizer.config import load_config, split_of
from digit_recognizer.errors import DigitsError
from digit_recognizer.models import INPUT_SHAPE, inference_model, load_model
from digit_recognizer.train import save_model_atomic


def average_models(members: list[keras.Model]) -> keras.Model:
    """One model whose output is the mean of the members' probabilities."""
    inputs = keras.Input(shape=INPUT_SHAPE)
    outputs = [
        keras.Model(inputs, inference_model(member)(inputs), name=f"member_{k}")(inputs)
        for k, member in enumerate(members)
    ]
    averaged = outputs[0] if len(outputs) == 1 else keras.layers.Average()(outputs)
    return keras.Model(inputs, averaged, name="ensemble")


def build_ensemble(run_dirs: list[Path], out_dir: Path) -> Path:
    """Average the best models of `run_dirs` into a new run folder `out_dir`."""
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
    save_model_atomic(average_models(members), out_dir / "model.keras")
    first = read_json(Path(run_dirs[0]) / "config.json")
    write_json(
        out_dir / "config.json",
        {
            **first,
            "config": asdict(replace(configs[0], recipe="ensemble", model="ensemble")),
            "members": [str(Path(run)) for run in run_dirs],
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
