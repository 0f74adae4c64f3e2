"""Compare candidate digit models on the development sets that choose among them, never on
the sets that score them (MNIST's test set, scikit-learn's digits, the held-out styles).

Six sets, all from data a candidate may see in training or from the same sources:
  mnist-val           MNIST's validation split (the `robust` recipe's, seed 42), as drawn
  mnist-val-scans     2,000 of them as 8x8 block scans (scans.block_scan), through preprocessing
  mnist-val-form      the same 2,000 as 8x8 form scans (scans.form_scan: NIST's normalisation)
  generated           2,400 generated digits in the training hands (seed 100: no run draws it)
  generated-scans     the same digits as 8x8 block scans
  generated-form      the same digits as 8x8 form scans

The score is the mean of the six accuracies; a candidate whose mnist-val accuracy is more
than 0.1 point below the shipped model's is not chosen, whatever its score. Every candidate
after the first is also compared with the first on the same views: the views only one of the
two reads right, and McNemar's p-value (is the gap chance?).

`--allographs 1 7` also reads 1,000 generated digits of each allograph of those digits (the
training hands, seed 100): the flag check, where a candidate meant for flagged 1s must gain
without a 7 losing. `--corrupted` also reads 2,000 MNIST validation digits under the
corruption suite (`digits robustness`'s 12 corruptions at 3 severities): the development
side of its bar, and the only one here that turns digits by 30 or 45 degrees.

  .venv/bin/python tools/choose_digit_model.py runs/a runs/b src/digit_recognizer/assets/model.onnx
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from digit_recognizer import scans, synth
from digit_recognizer.data import load_dataset, split_validation
from digit_recognizer.paired import only_right

GENERATED_SEED = 100  # training draws seeds 0-3 (generated.py); this set is apart from them


def mnist_validation() -> tuple[np.ndarray, np.ndarray]:
    """MNIST's validation split of the `robust` recipe (seed 42): images and labels."""
    data = load_dataset("mnist")
    _, _, x_val, y_val = split_validation(data.x_train, data.y_train, 0.1, 42)
    return x_val, y_val


def development_sets(x_val: np.ndarray, y_val: np.ndarray) -> dict:
    """{name: (views (N, 28, 28) 0-255, labels)}, from MNIST's validation split."""
    images, labels, _ = synth.generate(synth.SynthConfig(count=2400, seed=GENERATED_SEED))
    generated, generated_labels = synth.preprocessed_views(images, labels)
    form = scans.form_scan
    return {
        "mnist-val": (x_val, y_val),
        "mnist-val-scans": synth.block_scanned_views(x_val[:2000], y_val[:2000]),
        "mnist-val-form": synth.block_scanned_views(x_val[:2000], y_val[:2000], scan=form),
        "generated": (generated, generated_labels),
        "generated-scans": synth.block_scanned_views(generated, generated_labels),
        "generated-form": synth.block_scanned_views(generated, generated_labels, scan=form),
    }


def allograph_sets(digits: list[int], count: int = 1000) -> dict:
    """{"1 flag": (views, labels), ...}: `count` generated digits of each allograph of
    `digits` in the training hands, as the development sets' generated digits are drawn."""
    sets = {}
    for digit in digits:
        for allograph in synth.ALLOGRAPHS[digit]:
            views = synth.allograph_views(
                digit, allograph, count, synth.TRAIN_HANDS, GENERATED_SEED
            )
            sets[f"{digit} {allograph}"] = (views, np.full(len(views), digit, np.uint8))
    return sets


def corrupted_scores(probabilities, x_val: np.ndarray, y_val: np.ndarray, count=2000) -> dict:
    """The corruption suite (`robustness.robustness`) on the first `count` validation
    digits, as `digits robustness` reads the test set."""
    from digit_recognizer import robustness

    return robustness.robustness(
        probabilities, x_val[:count], y_val[:count], preprocess_each=robustness.preprocess_batch
    )


def model_probabilities(candidate: Path):
    """A function from views to the digits' probabilities: an ONNX file through ONNX
    Runtime, a run folder through its best Keras model."""
    if candidate.suffix == ".onnx":
        from digit_recognizer.predict import Recognizer

        return Recognizer(candidate).probabilities
    from digit_recognizer.models import inference_model, load_model

    model = inference_model(load_model(candidate / "model.keras"))
    return lambda views: model.predict(views[..., None], batch_size=512, verbose=0)


def accuracy(probabilities, views: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Whether each view is read as its label."""
    return probabilities(views.astype(np.float32)).argmax(axis=1) == labels


def scores(probabilities, sets: dict, hits: dict) -> dict:
    """Each set's accuracy and worst digit, and their mean; each view's hit goes to `hits`."""
    result = {}
    for name, (views, labels) in sets.items():
        right = hits[name] = accuracy(probabilities, views, labels)
        recall = [float(right[labels == digit].mean()) for digit in range(10)]
        result[name] = {
            "accuracy": float(right.mean()),
            "worst_digit": int(np.argmin(recall)),
            "worst_recall": min(recall),
        }
    result["score"] = float(np.mean([result[name]["accuracy"] for name in sets]))
    return result


def against_first(first: dict, hits: dict) -> dict:
    """{set: images only the first candidate reads right, only this one, McNemar's p}: which
    of the gaps between them could be chance."""
    return {name: list(only_right(first[name], right)) for name, right in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", type=Path, help="run folders or ONNX files")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--allographs", type=int, nargs="*", default=[], help="digits to check")
    parser.add_argument("--corrupted", action="store_true", help="MNIST val under corruptions")
    args = parser.parse_args()
    x_val, y_val = mnist_validation()
    sets = development_sets(x_val, y_val)
    checks = allograph_sets(args.allographs) if args.allographs else {}
    table, first_hits = {}, None
    for candidate in args.candidates:
        probabilities = model_probabilities(candidate)  # one load per candidate
        hits: dict[str, np.ndarray] = {}
        result = table[str(candidate)] = scores(probabilities, sets, hits)
        if checks:
            result["allographs"] = {}
            for name, (views, labels) in checks.items():
                hits[name] = accuracy(probabilities, views, labels)
                result["allographs"][name] = float(hits[name].mean())
        if first_hits is None:
            first_hits = hits
        else:
            result["against_first"] = against_first(first_hits, hits)
        if args.corrupted:
            result["corrupted"] = corrupted_scores(probabilities, x_val, y_val)
    for name, result in table.items():
        cells = "  ".join(
            f"{key} {value['accuracy']:.2%} ({value['worst_digit']}s {value['worst_recall']:.1%})"
            for key, value in result.items()
            if key not in ("score", "allographs", "corrupted", "against_first")
        )
        print(f"{name}: score {result['score']:.2%}  {cells}")
        checked = result.get("allographs", {})
        if checked:
            print("  " + "  ".join(f"{key} {value:.1%}" for key, value in checked.items()))
        if "against_first" in result:
            cells = "  ".join(
                f"{key} {a}/{b} (p {p:.2g})" for key, (a, b, p) in result["against_first"].items()
            )
            print(f"  only the first / only this one right: {cells}")
        if "corrupted" in result:
            corrupted = result["corrupted"]
            turned = " / ".join(f"{v:.1%}" for v in corrupted["corruptions"]["rotation (deg)"])
            print(f"  corrupted mean {corrupted['mean_corrupted']:.2%}, turned 15/30/45: {turned}")
    if args.out:
        args.out.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
