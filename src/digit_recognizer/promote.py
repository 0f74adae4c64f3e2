"""Promotion gates: a fine-tuned model enters the model store only if it is no worse than
the version being served on everything the project measures, and better on the held-out
corrections it was made for.

gates = promotion_gates(candidate_onnx, current_onnx, held_out_views, held_out_labels, ...)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digit_recognizer.artifacts import read_json
from digit_recognizer.errors import DigitsError
from digit_recognizer.feedback import FeedbackStore
from digit_recognizer.model_store import ModelStore
from digit_recognizer.paired import only_right, paired_comparison
from digit_recognizer.predict import Recognizer, load_card

CORRUPTION_IMAGES = 2000  # the first MNIST test images the corruption suite is scored on


@dataclass(frozen=True)
class Gate:
    name: str
    current: float | None
    candidate: float | None
    rule: str
    passed: bool
    # Images only the served model reads right, only the candidate, and McNemar's p-value:
    # whether the gap could be chance (for information; the rule decides). None for the
    # corruption suite, a mean over many corruptions.
    only_current: int | None = None
    only_candidate: int | None = None
    p_value: float | None = None


def _paired(current: np.ndarray, candidate: np.ndarray) -> dict:
    """Of the same images (per image: read right), how many only the served model and only
    the candidate read right, and McNemar's p-value."""
    only_current, only_candidate, p_value = only_right(current, candidate)
    return {"only_current": only_current, "only_candidate": only_candidate, "p_value": p_value}


def _at_least(name: str, current: float, candidate: float, slack_points: float, **paired) -> Gate:
    rule = "not lower" if slack_points == 0 else f"not lower by more than {slack_points} points"
    passed = candidate >= current - slack_points / 100 - 1e-12
    return Gate(name, current, candidate, rule, passed, **paired)


def read_right(model: Path, views: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per view, whether `model` reads it as its label."""
    probabilities = Recognizer(model).probabilities(views.astype(np.float32))
    return probabilities.argmax(axis=1) == labels


def sklearn_scans() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 handwritten digits (bundled with it) as 32x32 uint8 scans, dark
    ink on white (values 0-16 become ink, each pixel a 4x4 block), and their labels: the
    images of `eval-sets/sklearn-digits` and of the promotion gate alike."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey = (255 - digits.images * (255 / 16)).astype(np.uint8)
    return np.kron(grey, np.ones((4, 4), np.uint8)), digits.target


def sklearn_views() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits through the shared preprocessing, as the evaluation set is read."""
    from digit_recognizer.robustness import preprocess_batch

    scans, labels = sklearn_scans()
    return preprocess_batch(scans.astype(np.float32)), labels


def promotion_gates(
    candidate: Path,
    current: Path,
    corrections: tuple[np.ndarray, np.ndarray],
    handwriting: Path | None = None,
    data_dir: Path | None = None,
) -> list[Gate]:
    """Every gate of a promotion, each comparing the candidate with the current model on
    the same images. `corrections`: the held-out corrections' views and labels."""
    from digit_recognizer.data import load_dataset
    from digit_recognizer.image_folder import evaluate_images
    from digit_recognizer.robustness import predictor, preprocess_batch, robustness

    mnist = load_dataset("mnist", data_dir)
    both = (current, candidate)
    gates = []
    hits = [read_right(m, mnist.x_test, mnist.y_test) for m in both]
    gates.append(_at_least("MNIST test accuracy", *_means(hits), 0.05, **_paired(*hits)))
    x, y = mnist.x_test[:CORRUPTION_IMAGES], mnist.y_test[:CORRUPTION_IMAGES]
    scores = [robustness(predictor(m), x, y, 0, preprocess_batch)["mean_corrupted"] for m in both]
    gates.append(_at_least("corruption suite, mean", *scores, 0.3))
    if handwriting is not None:
        now, then = (evaluate_images(handwriting, m) for m in both)
        split = paired_comparison(now, then)
        paired = {"only_current": split["only_a"], "only_candidate": split["only_b"]}
        name, scores = f"handwriting ({handwriting.name})", (now["accuracy"], then["accuracy"])
        gates.append(_at_least(name, *scores, 0, **paired, p_value=split["p_value"]))
    views, labels = sklearn_views()
    hits = [read_right(m, views, labels) for m in both]
    gates.append(_at_least("scikit-learn's digits", *_means(hits), 0, **_paired(*hits)))
    views, labels = corrections
    if len(labels) == 0:
        gates.append(Gate("held-out corrections", None, None, "higher (none held out)", False))
    else:
        hits = [read_right(m, views, labels) for m in both]
        now, then = _means(hits)
        gates.append(
            Gate("held-out corrections", now, then, "higher", then > now, **_paired(*hits))
        )
    return gates


def _means(hits: list[np.ndarray]) -> list[float]:
    return [float(h.mean()) for h in hits]


def held_out_corrections(run: Path, store: FeedbackStore) -> tuple[np.ndarray, np.ndarray]:
    """The views and labels of the corrections a fine-tune run kept out of training."""
    ids = set(read_json(run / "finetune.json")["held_out_ids"])
    rows = [r for r in store.corrections() if r.id in ids]
    if len(rows) < len(ids):
        raise DigitsError(
            f"{len(ids) - len(rows)} of the run's held-out corrections are no longer in "
            f"{store.display_url} (deleted?): fine-tune again"
        )
    if not rows:
        return np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.int64)
    return np.stack([r.view for r in rows]), np.array([r.label for r in rows])


def promote(
    run: Path,
    models: ModelStore,
    store: FeedbackStore,
    handwriting: Path | None = None,
    data_dir: Path | None = None,
) -> tuple[list[Gate], int | None]:
    """Score a fine-tune run against the served version; if every gate holds, add it to the
    store as the new current version. Returns the gates and the new version (or None)."""
    run = Path(run)
    candidate = run / "model.onnx"
    if not (run / "finetune.json").is_file() or not candidate.is_file():
        raise DigitsError(f"{run} is not a fine-tune run (no finetune.json and model.onnx)")
    corrections = held_out_corrections(run, store)
    gates = promotion_gates(candidate, models.current_model(), corrections, handwriting, data_dir)
    if not all(gate.passed for gate in gates):
        return gates, None
    card = load_card(candidate) | {
        "gates": [gate.__dict__ for gate in gates],
        "promoted_over": models.current(),
    }
    return gates, models.add(candidate, card)
