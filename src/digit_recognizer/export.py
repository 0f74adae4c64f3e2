"""Export a trained Keras model to ONNX, verify it, and write its model card."""

from __future__ import annotations

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


def max_output_difference(model, onnx_path: Path, count: int = 64, seed: int = 0) -> float:
    """Largest |Keras - ONNX Runtime| probability over random 0-255 images."""
    import onnxruntime as ort

    images = np.random.default_rng(seed).uniform(0, 255, (count, 28, 28, 1)).astype(np.float32)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_out = session.run(None, {session.get_inputs()[0].name: images})[0]
    return float(np.abs(onnx_out - np.asarray(model(images, training=False))).max())


def model_card(run_dir: Path, onnx_path: Path, max_diff: float) -> dict:
    """What a user needs to trust a model file: data, settings, figures, date, checksum."""
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
    (models.fold_affine): the same function in fewer operations.

    Fails if ONNX Runtime's outputs differ from Keras's by more than MAX_ABS_DIFF. With
    `handwriting`, a folder of labelled images, the card also records the exported model's
    accuracy on it with and without preprocessing.
    """

    from digit_recognizer.models import fold_affine, inference_model, load_model

    keras_path = _keras_model_path(source)
    out = Path(out) if out else keras_path.with_suffix(".onnx")
    model = inference_model(load_model(keras_path))
    folded = fold_affine(model)
    folded(np.zeros((1, 28, 28, 1), np.float32))  # Keras exports only a model that has run
    write_atomic(out, lambda tmp: folded.export(str(tmp), format="onnx", verbose=False))
    max_diff = max_output_difference(model, out)  # against the model as trained: checks the fold
    if max_diff > MAX_ABS_DIFF:
        out.unlink()
        raise DigitsError(f"ONNX outputs differ from Keras by {max_diff:.2e} (> {MAX_ABS_DIFF})")
    card = model_card(keras_path.parent, out, max_diff)
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
