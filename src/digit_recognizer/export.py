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


def write_onnx(keras_model, out: Path, temperature: float = 1.0) -> bool:
    """Export `keras_model` to ONNX at `out` (atomically), rewritten by constant_flatten,
    group_convolutions, split_matmuls and, for a temperature other than 1, fold_temperature.
    True if the temperature was folded."""
    import keras
    import onnx

    from digit_recognizer.fold import (
        constant_flatten,
        fold_temperature,
        group_convolutions,
        split_matmuls,
    )

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
    group_convolutions(model)
    split_matmuls(model)  # after constant_flatten: its row order keeps each member's together
    folded = temperature != 1.0 and fold_temperature(model, temperature)
    onnx.checker.check_model(model)
    write_atomic(out, lambda tmp: onnx.save(model, str(tmp)))
    return folded


SCAN_KINDS = ("scans", "form_scans")  # generated entries that re-scan digits, not draw them


def generated_images(generated: dict | None, split: str) -> int:
    """How many generated images (drawn digits, coarse and form scans) a run added to `split`."""
    generated = generated or {}
    drawn = generated.get(split, {}).get("images", 0)
    scanned = (generated.get(kind, {}).get(split, {}).get("images", 0) for kind in SCAN_KINDS)
    return drawn + sum(scanned)


def provenance(config: dict) -> dict:
    """What trained the model and what only scored it, from a run's config.json. The held-out
    sets never train a model nor choose a setting."""
    from digit_recognizer.synth import HELD_OUT_HANDS

    data = config["data"]
    generated = dict(data.get("generated") or {})
    scans = generated.pop("scans", None)
    form_scans = generated.pop("form_scans", None)
    added = generated_images(data.get("generated"), "train")
    training = [
        f"{data['train'] - added} images of the {data['dataset']} training set (the rest"
        f" of it is the validation split), {added} generated"
    ]
    for split, settings in generated.items():
        training.append(
            f"generated ({split}): digit_recognizer.synth version {settings['version']}, "
            f"seed {settings['seed']}, styles {', '.join(settings['hands'])}, "
            f"{settings['images']} images"
        )
    if scans:
        sizes = scans["hand"]["coarse"]
        training.append(
            f"coarse scans ({sizes[0]}-{sizes[-1]} px) of {scans['train']['images']} of those "
            f"training digits and {scans['validation']['images']} validation digits: "
            f"digit_recognizer.synth version {scans['version']}, style {scans['hand']['name']}"
        )
    if form_scans:
        training.append(
            f"8x8 form scans (scans.form_scan, ink box {form_scans['box'][0]}x"
            f"{form_scans['box'][1]} px) of {form_scans['train']['images']} of those MNIST and "
            f"generated training digits and {form_scans['validation']['images']} validation "
            f"digits: digit_recognizer.synth version {form_scans['version']}"
        )
    return {
        "training_data": training,
        "held_out": [
            f"{data['dataset']} test set ({data['test']} images): reported, never chooses",
            "data/handwriting: 660 digits in 18 handwriting fonts and pen strokes",
            "scikit-learn's digits: 1,797 real handwritten digits, 13 writers (eval-sets)",
            f"generated digits in the held-out styles {', '.join(HELD_OUT_HANDS)} (eval-sets)",
        ],
    }


def describe_run(run_dir: Path) -> str:
    """A run (a teacher, an ensemble) in words that mean something on another machine (its
    folder does not): recipe, network and seeds."""
    if not (run_dir / "config.json").is_file():
        return run_dir.name
    content = read_json(run_dir / "config.json")
    config = content["config"]
    folders = [Path(m) for m in content.get("members", [])]
    members = [read_json(m / "config.json")["config"] for m in folders if m.is_dir()]
    if members and len(members) == len(folders):
        seeds = ", ".join(str(m["seed"]) for m in members)
        epochs = members[0]["epochs"]
        merged = ", their logits in one network" if content.get("average") == "logits" else ""
        return (
            f"the average of {len(members)} `{members[0]['model']}` networks "
            f"(recipe {members[0]['recipe']}, {epochs} epoch{'s' * (epochs != 1)}, seeds {seeds}) "
            f"trained on the same data{merged}"
        )
    return f"a `{config['model']}` network (recipe {config['recipe']}, seed {config['seed']})"


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
            # Settings and data by name and checksum: a local folder means nothing elsewhere.
            card["training"] = {k: v for k, v in content["config"].items() if k != "data_dir"}
            for run in ("teacher", "init_from"):  # runs by what they are, not their folder
                if card["training"].get(run):
                    card["training"][run] = describe_run(Path(card["training"][run]))
            if content.get("members"):
                card["training"]["ensemble"] = describe_run(run_dir)
            card["data"] = {k: v for k, v in content["data"].items() if k != "source"}
            card.update(provenance(content))
        elif name == "calibration.json":
            card["calibration"] = {
                key: content[key]
                for key in ("temperature", "fitted_on", "test_ece", "test_ece_calibrated", "unsure")
                if key in content
            }
            if temperature_in_model:
                card["calibration"]["in_model"] = True
                temperature = content["temperature"]
                card["output"] += f", calibrated (temperature {temperature:.4g} in the last layer)"
        elif name == "metrics.json":
            card["test_accuracy"] = content["accuracy"]
            card["test_macro_f1"] = content["macro_f1"]
            card["parameters"] = content["parameters"]
        elif "loss" in content:  # an ensemble's history has only its members' epoch times
            card["epochs"] = len(content["loss"])
    return card


def export_onnx(
    source: Path, out: Path | None = None, handwriting: Path | None = None
) -> tuple[Path, dict]:
    """Export a run's best model (or a .keras file) to ONNX beside a model_card.json.

    Rescaling and BatchNorm layers are folded into the next layer's weights first
    (fold.fold_affine) and Flatten's shape arithmetic is made constant (constant_flatten):
    the same function in fewer operations. A temperature fitted by `digits evaluate`
    (calibration.json) goes into the last layer (fold_temperature), so the file's outputs are
    calibrated and nothing is computed after it.

    Fails if ONNX Runtime's outputs differ from Keras's by more than MAX_ABS_DIFF. With
    `handwriting`, a folder of labelled images, the card also records the exported model's
    accuracy on it with and without preprocessing.
    """

    from digit_recognizer.fold import fold_affine
    from digit_recognizer.models import inference_model, load_model

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
        from digit_recognizer.image_folder import evaluate_images

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
