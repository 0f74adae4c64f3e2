"""The `digits` command as users run it: a fresh process, one-line errors, exit codes."""

from __future__ import annotations

import pytest
from conftest import REPO
from conftest import run_digits as digits

from digit_recognizer import __version__

HANDWRITING = sorted((REPO / "data" / "handwriting").glob("*.png"))


def test_version_and_help():
    assert digits("--version").stdout.strip() == f"digit-recognizer {__version__}"
    help_text = digits("--help").stdout
    for command in ("train", "evaluate", "compare"):
        assert command in help_text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "resnet"], "error: unknown model 'resnet'; choose one of"),
        (["train", "--data-dir", "/no/such/dir", "--limit", "50"], "does not exist"),
        (["evaluate", "/no/such/run"], "is not a run directory"),
        (["compare", "/no/such/run"], "missing config.json"),
        (["train", "--dataset", "kmnist"], "unknown dataset 'kmnist'"),
        (["export", "/no/such/run"], "expected a run folder or a .keras/.h5 model file"),
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
