"""Evaluation on the test set: metrics.json, a scikit-learn report and pictures."""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix, f1_score
from sklearn.metrics import precision_recall_fscore_support as prfs

from digit_recognizer import plots
from digit_recognizer.artifacts import read_json, write_json, write_text
from digit_recognizer.data import Dataset, load_dataset
from digit_recognizer.errors import DigitsError


@dataclass(frozen=True)
class Metrics:
    """Test-set figures of one model. `ms_per_image` is batched inference (batch 512)."""

    accuracy: float
    loss: float
    macro_f1: float
    per_class: list[dict]  # [{class, precision, recall, f1, support}, ...]
    confusion_matrix: list[list[int]]  # rows: true class, columns: predicted
    ms_per_image: float
    test_images: int
    parameters: int
    ece: float | None = None  # expected calibration error, 15 bins (evaluate_run fills it)
    ece_calibrated: float | None = None  # after temperature scaling
    temperature: float | None = None  # fitted on the validation split
    # Test images read wrong, by index: `digits compare` tells chance from a real difference
    # by the images only one of two runs reads right.
    misread: list[int] = field(default_factory=list)


def predict_probabilities(model, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """(N, 28, 28) uint8 -> (N, 10) probabilities."""
    return model.predict(images[..., np.newaxis], batch_size=batch_size, verbose=0)


def compute_metrics(
    probabilities: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]
) -> dict:
    """Accuracy, cross-entropy, macro F1, per-class scores and confusion matrix."""
    predicted = probabilities.argmax(axis=1)
    classes = list(range(len(class_names)))
    eps = 1e-7  # keeps log finite for a probability that rounds to 0
    loss = float(-np.mean(np.log(probabilities[np.arange(len(labels)), labels] + eps)))
    precision, recall, f1, support = prfs(labels, predicted, labels=classes, zero_division=0)
    per_class = [
        {
            "class": class_names[c],
            "precision": float(precision[c]),
            "recall": float(recall[c]),
            "f1": float(f1[c]),
            "support": int(support[c]),
        }
        for c in classes
    ]
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "loss": loss,
        "macro_f1": float(f1_score(labels, predicted, labels=classes, average="macro")),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "misread": np.flatnonzero(predicted != labels).tolist(),
    }


def evaluate(model, data: Dataset) -> tuple[Metrics, np.ndarray]:
    """Score `model` on `data`'s test set; returns metrics and the (N, 10) probabilities."""
    predict_probabilities(model, data.x_test[:64])  # warm-up: first call builds the graph
    start = time.perf_counter()
    probabilities = predict_probabilities(model, data.x_test)
    seconds = time.perf_counter() - start
    scores = compute_metrics(probabilities, data.y_test.astype(int), data.class_names)
    metrics = Metrics(
        **scores,
        ms_per_image=1000 * seconds / len(data.x_test),
        test_images=len(data.x_test),
        parameters=int(model.count_params()),
    )
    return metrics, probabilities


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> tuple[float, list[dict]]:
    """ECE (Guo et al. 2017): |accuracy - confidence| per equal-width confidence bin,
    weighted by the bin's share of images. Returns the ECE and the bins, for a diagram."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    table, ece = [], 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence > low) & (confidence <= high)
        if not inside.any():
            continue
        accuracy, mean_confidence = float(correct[inside].mean()), float(confidence[inside].mean())
        ece += inside.mean() * abs(accuracy - mean_confidence)
        table.append({"low": float(low), "high": float(high), "count": int(inside.sum()),
                      "accuracy": accuracy, "confidence": mean_confidence})  # fmt: skip
    return float(ece), table


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T minimising the cross-entropy of softmax(log p / T)."""
    from scipy.optimize import minimize_scalar

    from digit_recognizer.predict import apply_temperature

    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        scaled = apply_temperature(probabilities, float(np.exp(log_t)))
        return float(-np.mean(np.log(scaled[rows, labels] + 1e-12)))

    # Search log T in [log 0.05, log 20]: bounded, and symmetric around T = 1.
    return float(np.exp(minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded").x))


UNSURE_SHARE = 0.01  # the share of validation answers flagged "unsure"


def unsure_margin(probabilities: np.ndarray, labels: np.ndarray, share: float = UNSURE_SHARE):
    """The gap between the top two probabilities below which an answer is called unsure,
    chosen on validation: the `share` of answers with the smallest gaps. Also reports how many
    of the validation errors those answers hold, so the card says what the flag is worth."""
    from digit_recognizer.predict import top_two_gap

    gaps = top_two_gap(probabilities)
    margin = float(np.quantile(gaps, share))
    wrong = probabilities.argmax(axis=1) != labels
    flagged = gaps < margin
    return {
        "margin": margin,
        "chosen_on": f"validation split ({len(labels)} images)",
        "validation_flagged": float(flagged.mean()),
        "validation_errors_flagged": float(flagged[wrong].mean()) if wrong.any() else None,
    }


def calibrate(
    model, data: Dataset, val_split: float, seed: int, test_probabilities: np.ndarray
) -> dict:
    """Fit a temperature on the run's own validation split (never the test set), choose the
    "unsure" margin there, and report the test ECE before and after the temperature."""
    from digit_recognizer.data import split_validation
    from digit_recognizer.predict import apply_temperature

    _, _, x_val, y_val = split_validation(data.x_train, data.y_train, val_split, seed)
    val_probabilities = predict_probabilities(model, x_val)
    temperature = fit_temperature(val_probabilities, y_val.astype(int))
    unsure = unsure_margin(apply_temperature(val_probabilities, temperature), y_val.astype(int))
    labels = data.y_test.astype(int)
    before, bins_before = expected_calibration_error(test_probabilities, labels)
    calibrated = apply_temperature(test_probabilities, temperature)
    after, bins_after = expected_calibration_error(calibrated, labels)
    return {
        "temperature": temperature,
        "fitted_on": f"validation split ({len(y_val)} images)",
        "test_ece": before,
        "test_ece_calibrated": after,
        "unsure": unsure,
        "bins": bins_before,
        "bins_calibrated": bins_after,
    }


def most_confident_mistakes(probabilities: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    return wrong[np.argsort(-probabilities[wrong].max(axis=1))][:k]


def write_report(
    out_dir: Path, metrics: Metrics, probabilities: np.ndarray, data: Dataset
) -> dict[str, Path]:
    """Write metrics.json, classification_report.txt and the evaluation figures."""
    out_dir = Path(out_dir)
    labels = data.y_test.astype(int)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    report = classification_report(
        labels, predicted, labels=list(range(len(data.class_names))),
        target_names=list(data.class_names), digits=4, zero_division=0,
    )  # fmt: skip
    files = {
        "metrics": write_json(out_dir / "metrics.json", asdict(metrics)),
        "report": write_text(out_dir / "classification_report.txt", report),
        "confusion": plots.confusion_matrix(
            np.array(metrics.confusion_matrix), data.class_names, out_dir / "confusion_matrix.png"
        ),
    }
    samples = np.arange(min(32, len(labels)))
    files["samples"] = plots.digit_grid(
        data.x_test[samples], labels[samples], predicted[samples], confidence[samples],
        out_dir / "samples.png", "Test digits: true → predicted (confidence)", data.class_names,
    )  # fmt: skip
    mistakes = most_confident_mistakes(probabilities, labels, k=24)
    files["misclassified"] = plots.digit_grid(
        data.x_test[mistakes], labels[mistakes], predicted[mistakes], confidence[mistakes],
        out_dir / "misclassified.png",
        f"Most confident mistakes ({int((predicted != labels).sum())} in all)", data.class_names,
    )  # fmt: skip
    history_path = out_dir / "history.json"
    if history_path.is_file():
        files["curves"] = plots.training_curves(
            read_json(history_path), out_dir / "curves.png", title=out_dir.name
        )
    return files


def evaluate_run(run_dir: Path, data: Dataset | None = None) -> Metrics:
    """Evaluate a run directory's best model on the test set it was configured with."""
    from digit_recognizer.config import load_config, validation_seed
    from digit_recognizer.models import load_model

    run_dir = Path(run_dir)
    cfg = load_config(run_dir)
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        raise DigitsError(f"{run_dir} has no model.keras (training never finished an epoch)")
    if data is None:
        data = load_dataset(cfg.dataset, Path(cfg.data_dir) if cfg.data_dir else None, cfg.limit)
    model = load_model(model_path)
    metrics, probabilities = evaluate(model, data)
    calibration = calibrate(model, data, cfg.val_split, validation_seed(cfg), probabilities)
    metrics = replace(
        metrics,
        ece=calibration["test_ece"],
        ece_calibrated=calibration["test_ece_calibrated"],
        temperature=calibration["temperature"],
    )
    write_json(run_dir / "calibration.json", calibration)
    plots.reliability_diagram(
        calibration["bins"], calibration["bins_calibrated"], calibration["temperature"],
        run_dir / "reliability.png",
    )  # fmt: skip
    write_report(run_dir, metrics, probabilities, data)
    return metrics
