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
than 0.1 point below the shipped model's is not chosen, whatever its score.

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

GENERATED_SEED = 100  # training draws seeds 0-3 (generated.py); this set is apart from them


def development_sets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (views (N, 28, 28) 0-255, labels)}."""
    data = load_dataset("mnist")
    _, _, x_val, y_val = split_validation(data.x_train, data.y_train, 0.1, 42)
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


def corrupted_scores(candidate: Path, count: int = 2000) -> dict:
    """The corruption suite (`robustness.robustness`) on MNIST's first `count` validation
    digits of the development split, as `digits robustness` reads the test set."""
    from digit_recognizer import robustness

    data = load_dataset("mnist")
    _, _, x_val, y_val = split_validation(data.x_train, data.y_train, 0.1, 42)
    return robustness.robustness(
        robustness.predictor(candidate), x_val[:count], y_val[:count],
        preprocess_each=robustness.preprocess_batch,
    )  # fmt: skip


def predictor(candidate: Path):
    """A function from views to predicted digits: an ONNX file through ONNX Runtime, a run
    folder through its best Keras model."""
    if candidate.suffix == ".onnx":
        from digit_recognizer.predict import Recognizer

        recognizer = Recognizer(candidate)
        return lambda views: recognizer.probabilities(views).argmax(axis=1)
    from digit_recognizer.models import inference_model, load_model

    model = inference_model(load_model(candidate / "model.keras"))
    return lambda views: model.predict(views[..., None], batch_size=512, verbose=0).argmax(axis=1)


def scores(candidate: Path, sets: dict) -> dict:
    predict = predictor(candidate)
    result = {}
    for name, (views, labels) in sets.items():
        right = predict(views.astype(np.float32)) == labels
        recall = [float(right[labels == digit].mean()) for digit in range(10)]
        result[name] = {
            "accuracy": float(right.mean()),
            "worst_digit": int(np.argmin(recall)),
            "worst_recall": min(recall),
        }
    result["score"] = float(np.mean([result[name]["accuracy"] for name in sets]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", type=Path, help="run folders or ONNX files")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    parser.add_argument("--allographs", type=int, nargs="*", default=[], help="digits to check")
    parser.add_argument("--corrupted", action="store_true", help="MNIST val under corruptions")
    args = parser.parse_args()
    sets = development_sets()
    table = {str(candidate): scores(candidate, sets) for candidate in args.candidates}
    if args.allographs:
        checks = allograph_sets(args.allographs)
        for candidate in args.candidates:
            read = predictor(candidate)
            table[str(candidate)]["allographs"] = {
                name: float(np.mean(read(views.astype(np.float32)) == labels))
                for name, (views, labels) in checks.items()
            }
    if args.corrupted:
        for candidate in args.candidates:
            table[str(candidate)]["corrupted"] = corrupted_scores(candidate)
    for name, result in table.items():
        cells = "  ".join(
            f"{key} {value['accuracy']:.2%} ({value['worst_digit']}s {value['worst_recall']:.1%})"
            for key, value in result.items()
            if key not in ("score", "allographs", "corrupted")
        )
        print(f"{name}: score {result['score']:.2%}  {cells}")
        checked = result.get("allographs", {})
        if checked:
            print("  " + "  ".join(f"{key} {value:.1%}" for key, value in checked.items()))
        if "corrupted" in result:
            corrupted = result["corrupted"]
            turned = " / ".join(f"{v:.1%}" for v in corrupted["corruptions"]["rotation (deg)"])
            print(f"  corrupted mean {corrupted['mean_corrupted']:.2%}, turned 15/30/45: {turned}")
    if args.out:
        args.out.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()
