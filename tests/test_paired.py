"""Two readers on one labelled set: McNemar's exact test and `evaluate-images --against`."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import REPO
from conftest import run_digits as digits
from PIL import Image

from digit_recognizer import synth
from digit_recognizer.errors import DigitsError
from digit_recognizer.paired import mcnemar_p_value, only_right, paired_comparison

MNIST_ONLY = REPO / "tests" / "data" / "mnist_only_model.onnx"


@pytest.mark.parametrize(
    ("only_first", "only_second", "p"),
    [(0, 6, 2 / 64), (2, 5, 58 / 128), (4, 2, 44 / 64), (3, 3, 1.0), (0, 0, 1.0), (1, 0, 1.0)],
)
def test_mcnemar_p_value_is_the_two_sided_binomial_tail(only_first, only_second, p):
    assert mcnemar_p_value(only_first, only_second) == pytest.approx(p)
    assert mcnemar_p_value(only_second, only_first) == pytest.approx(p)


def test_mcnemar_p_value_falls_as_the_split_grows_uneven():
    values = [mcnemar_p_value(k, 40 - k) for k in range(21)]
    assert values == sorted(values) and values[0] < 1e-10 and values[-1] == 1.0
    with pytest.raises(ValueError, match="negative"):
        mcnemar_p_value(-1, 3)


def test_only_right_counts_the_images_one_model_alone_reads_right():
    first = np.array([True, True, False, False, True])
    second = np.array([True, False, True, False, False])
    assert only_right(first, second) == (2, 1, mcnemar_p_value(2, 1))


def report(model: str, missed: dict[str, int], folder: str = "set") -> dict:
    """An `evaluate_images` report of 20 images, two of each digit, missing `missed`."""
    return {
        "model": model,
        "folder": folder,
        "images": 20,
        "correct": 20 - len(missed),
        "recall": {str(d): 1.0 - sum(v == d for v in missed.values()) / 2 for d in range(10)},
        "mistakes": [{"file": f, "label": d, "predicted": 0} for f, d in missed.items()],
    }


def test_paired_comparison_counts_the_images_only_one_model_reads():
    a = report("a", {"1_x": 1, "7_x": 7, "7_y": 7})
    b = report("b", {"1_x": 1, "4_x": 4})
    compared = paired_comparison(a, b)
    assert compared["correct"] == [17, 18]
    assert (compared["only_a"], compared["only_b"]) == (1, 2)  # 4_x; 7_x and 7_y
    assert compared["p_value"] == pytest.approx(1.0)
    assert compared["per_digit"]["7"] == {"only_a": 0, "only_b": 2, "p_value": 0.5}
    assert compared["per_digit"]["4"]["only_a"] == 1
    assert compared["per_digit"]["1"] == {"only_a": 0, "only_b": 0, "p_value": 1.0}
    with pytest.raises(DigitsError, match="same folder"):
        paired_comparison(a, report("b", {}, folder="another"))


def test_evaluate_images_against_a_second_model(tmp_path):
    """The shipped model against the one trained on MNIST alone, on 44 handwriting images
    and 20 flagged 1s, which the MNIST-only model mostly reads as 7s."""
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((REPO / "data" / "handwriting").iterdir())[::15]:  # 44, every digit
        shutil.copy(path, folder / path.name)
    rng = np.random.default_rng(0)
    for k in range(20):
        flagged = synth.render(1, "flag", "ballpoint", rng)
        Image.fromarray(flagged).save(folder / f"1_flag_{k:02d}.png")
    out = tmp_path / "report.json"
    result = digits("evaluate-images", str(folder), "--against", str(MNIST_ONLY), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "only --against right" in result.stdout and "McNemar" in result.stdout
    saved = json.loads(out.read_text())
    compared, shipped = saved["against"], saved["with_preprocessing"]
    assert compared["models"][1].endswith("mnist_only_model.onnx")
    assert compared["correct"][0] == shipped["correct"]
    # Whatever the models read, the difference in right answers is the difference in
    # images only one of them reads right, overall and summed over the digits.
    assert compared["correct"][1] - compared["correct"][0] == (
        compared["only_b"] - compared["only_a"]
    )
    per_digit = compared["per_digit"].values()
    assert sum(s["only_a"] for s in per_digit) == compared["only_a"]
    assert compared["per_digit"]["1"]["only_a"] >= 10 > compared["per_digit"]["1"]["only_b"]
    assert compared["p_value"] < 0.01
    picture = out.with_name("report-against.png")  # the images only one model reads right
    assert picture.read_bytes().startswith(b"\x89PNG")
    missing = digits("evaluate-images", str(folder), "--against", str(tmp_path / "no.onnx"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "not found" in missing.stderr and "recall" not in missing.stdout  # before reading
