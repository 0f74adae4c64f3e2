"""Calibrate the shipped number reader on its validation numbers and write the result into
src/digit_recognizer/assets/number_model_card.json ("calibration").

The reader multiplies three readings of each digit (the sequence model's, the context
model's and, for a digit standing apart, the digit model's), so its probabilities come out
over-confident. A temperature fitted on the digits of the 1,000 validation numbers (MNIST's
last 10,000 training digits, which neither number model trains on) softens them, and the
"unsure" margin is chosen there as for single digits: the gap between the top two
probabilities under which the validation digits with the closest calls fall
(evaluate.UNSURE_SHARE of them). A number read with the wrong count of digits has no digit to
pin a label on and is left out. Run after the number and context models change (`make
ship-number-model` does).

  .venv/bin/python tools/calibrate_number_reader.py
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import numpy as np
from rich.progress import track

from digit_recognizer import number_data as nd
from digit_recognizer.artifacts import card_path, read_json, write_json
from digit_recognizer.data import load_dataset
from digit_recognizer.evaluate import expected_calibration_error, fit_temperature, unsure_margin
from digit_recognizer.number_reader import DEFAULT_NUMBER_MODEL, NumberReader
from digit_recognizer.predict import Recognizer, apply_temperature


def labelled_digits(numbers: list[nd.GeneratedNumber], reader: NumberReader, digit_model):
    """The reader's uncalibrated probabilities for every digit of the numbers it reads with
    the right count of digits, with their true digits; and how many numbers were left out."""
    probabilities, labels, left_out = [], [], 0
    for number in track(numbers, description="reading validation numbers"):
        _, _, p = reader.digit_probabilities(number.image, digit_model)
        if len(p) != len(number.text):
            left_out += 1
            continue
        probabilities.append(p)
        labels += [int(c) for c in number.text]
    return np.concatenate(probabilities), np.array(labels), left_out


def calibration(probabilities: np.ndarray, labels: np.ndarray, numbers: int) -> dict:
    """The temperature, its effect on the expected calibration error, and the unsure margin
    chosen on the calibrated probabilities."""
    temperature = fit_temperature(probabilities, labels)
    calibrated = apply_temperature(probabilities, temperature)
    unsure = unsure_margin(calibrated, labels)
    unsure["chosen_on"] = f"validation numbers ({len(labels)} digits of {numbers} numbers)"
    return {
        "temperature": temperature,
        "fitted_on": unsure["chosen_on"],
        "validation_ece": expected_calibration_error(probabilities, labels)[0],
        "validation_ece_calibrated": expected_calibration_error(calibrated, labels)[0],
        "unsure": unsure,
        "with": "the context model and, for digits standing apart, the shipped digit model",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    data = load_dataset("mnist")
    numbers = nd.validation_numbers(data.x_train, data.y_train)
    reader = NumberReader()
    probabilities, labels, left_out = labelled_digits(numbers, reader, Recognizer().probabilities)
    result = calibration(probabilities, labels, len(numbers) - left_out)
    path = card_path(DEFAULT_NUMBER_MODEL)
    write_json(path, {**read_json(path), "calibration": result})
    unsure = result["unsure"]
    print(
        f"temperature {result['temperature']:.3f} (ECE {result['validation_ece']:.4f} -> "
        f"{result['validation_ece_calibrated']:.4f}); unsure under a gap of "
        f"{unsure['margin']:.3f}: {unsure['validation_flagged']:.1%} of validation digits, "
        f"{unsure['validation_errors_flagged']:.1%} of their errors; written to {path}"
    )


if __name__ == "__main__":
    main()
