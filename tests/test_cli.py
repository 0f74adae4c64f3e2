"""The `digits` command as users run it: a fresh process, one-line errors, exit codes."""

from __future__ import annotations

import re

import pytest
from conftest import REPO
from conftest import run_digits as digits

from digit_recognizer import __version__

HANDWRITING = sorted((REPO / "data" / "handwriting").glob("*.png"))


COMMANDS = {
    "predict", "serve", "evaluate-images", "train", "evaluate", "compare", "export", "report",
    "ensemble", "robustness", "bench", "evaluate-numbers", "feedback", "finetune", "promote",
    "rollback",
}  # fmt: skip


def listed_commands(help_text: str) -> set[str]:
    """The names in the Commands box of Typer's help (a row starts with the box's edge)."""
    box = help_text.split("Commands", 1)[1]
    return {m.group(1) for m in re.finditer(r"^\S\s([a-z][a-z-]+)\s{2,}", box, re.MULTILINE)}


def test_version_and_help():
    assert digits("--version").stdout.strip() == f"digit-recognizer {__version__}"
    assert listed_commands(digits("--help").stdout) == COMMANDS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "resnet"], "error: unknown model 'resnet'; choose one of"),
        (["train", "--data-dir", "/no/such/dir", "--limit", "50"], "does not exist"),
        (["evaluate", "/no/such/run"], "is not a run directory"),
        (["train", "--init-from", "/no/such/run", "--limit", "50"], "is not a run directory"),
        (["compare", "/no/such/run"], "missing config.json"),
        (["train", "--dataset", "kmnist"], "unknown dataset 'kmnist'"),
        (["export", "/no/such/run"], "expected a run folder or a .keras/.h5 model file"),
        (["promote", "/no/such/run"], "is not a fine-tune run"),
        (["finetune", "--out", "never-written"], "fine-tuning needs 20"),
        (["rollback", "--store", "/no/such/store"], "nothing to roll back"),
        (["serve", "--db", "nonsense"], "not a database URL"),
        (["feedback", "delete", "--client", "x", "--db", "mysql://h/d"], "only sqlite"),
    ],
)
def test_user_errors_are_one_line_and_non_zero(args, message, tmp_path):
    result = digits(*args, "--out", str(tmp_path / "run")) if args[0] == "train" else digits(*args)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_exit_codes_and_output_survive_the_fast_exit(tmp_path):
    """main() ends the process without Python's teardown: the exit code and every printed
    line must still come through (usage errors are Typer's exit code 2)."""
    assert digits("predict").returncode == 2
    assert "Missing argument" in digits("predict").stderr
    missing = tmp_path / "missing.png"
    result = digits("predict", "--json", str(missing), *[str(p) for p in HANDWRITING[:40]])
    assert result.returncode == 1 and f"{missing}: error" in result.stderr
    assert len(result.stdout.splitlines()) == 40


def test_train_smoke_run_from_the_command_line(tmp_path, mnist_path):
    out = tmp_path / "run"
    result = digits(
        "train", "--model", "mlp", "--limit", "300", "--epochs", "1",
        "--data-dir", str(mnist_path), "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and (out / "metrics.json").is_file()
    # Training also fits a temperature (calibration.json), which the export folds in.
    result = digits("export", str(out), "--out", str(tmp_path / "mlp.onnx"))
    assert result.returncode == 0, result.stderr
    assert "in its last layer" in result.stdout and (tmp_path / "mlp_card.json").is_file()


def test_unsure_answers_are_marked_in_the_terminal():
    import numpy as np

    from digit_recognizer.cli.reading import _format_prediction
    from digit_recognizer.predict import Prediction

    probabilities = [0.0, 0.52, 0.0, 0.0, 0.0, 0.0, 0.0, 0.48, 0.0, 0.0]
    view = np.zeros((28, 28), np.float32)
    unsure = Prediction(1, 0.52, probabilities, view, unsure=True)
    sure = Prediction(1, 0.52, probabilities, view, unsure=False)
    assert _format_prediction(REPO / "a.png", unsure, 1).endswith("\tunsure: 1 or 7?")
    assert "unsure" not in _format_prediction(REPO / "a.png", sure, 1)


def test_evaluate_images_reports_recall_per_digit_and_draws_the_confusion_matrix(tmp_path):
    import json
    import shutil

    folder = tmp_path / "images"
    folder.mkdir()
    every = sorted((REPO / "data" / "handwriting").iterdir())
    for path in every[::15]:  # 44 of the 660, every digit
        shutil.copy(path, folder / path.name)
    report = tmp_path / "report.json"
    result = digits("evaluate-images", str(folder), "--out", str(report))
    assert result.returncode == 0, result.stderr
    assert "recall per digit" in result.stdout
    assert re.search(r"\b\d+ of \d+\b", result.stdout)  # a row a digit, with its counts
    scored = json.loads(report.read_text())["with_preprocessing"]
    assert set(scored["recall"]) == {str(d) for d in range(10)}
    matrix = scored["confusion_matrix"]
    assert len(matrix) == 10 and all(len(row) == 11 for row in matrix)  # + "no digit"
    assert sum(map(sum, matrix)) == scored["images"] == 44
    assert "unsure: right / wrong" in result.stdout
    assert scored["unsure"]["right"] + scored["unsure"]["wrong"] <= 44
    assert report.with_suffix(".png").read_bytes().startswith(b"\x89PNG")
