"""The `digits` command: a thin layer over the library. Each command parses its options,
calls one library function and renders the result."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from digit_recognizer import __version__
from digit_recognizer.errors import DigitsError

app = typer.Typer(
    help="Handwritten digit recognition: train, evaluate and compare MLPs and CNNs on MNIST.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
console = Console()

DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Folder with the IDX files or mnist.npz (default: DIGITS_DATA_DIR, cache)."),
]
DatasetOption = Annotated[str, typer.Option(help="mnist or fashion-mnist.")]


def _quiet_tensorflow() -> None:
    """Import TensorFlow without its C++ start-up chatter on stderr.

    TF 2.21 logs through absl before TF_CPP_MIN_LOG_LEVEL applies, so the only switch that
    silences it (TF_ENABLE_ONEDNN_OPTS=0) would also change the maths. Instead, file
    descriptor 2 points at /dev/null during the import; Python errors still raise.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("absl").setLevel(logging.ERROR)
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import keras  # noqa: F401  (imports TensorFlow, its backend)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"digit-recognizer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version_callback, is_eager=True)
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logs.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )


def _metrics_table(title: str, metrics) -> Table:
    table = Table(title=title)
    for column in ("test accuracy", "macro F1", "loss", "ms/image", "parameters"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{metrics.accuracy:.2%}", f"{metrics.macro_f1:.4f}", f"{metrics.loss:.4f}",
        f"{metrics.ms_per_image:.3f}", f"{metrics.parameters:,}",
    )  # fmt: skip
    return table


@app.command()
def train(
    model: Annotated[str, typer.Option(help="Model name: mlp, cnn.")] = "cnn",
    epochs: Annotated[int, typer.Option(min=1, help="Upper bound; early stopping.")] = 20,
    batch_size: Annotated[
        int | None, typer.Option(min=1, help="Default: 32 for mlp, 128 otherwise.")
    ] = None,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="Adam learning rate.")] = 1e-3,
    val_split: Annotated[float, typer.Option(help="Validation fraction of train set.")] = 0.1,
    patience: Annotated[int, typer.Option(min=1, help="EarlyStopping patience.")] = 3,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    limit: Annotated[int | None, typer.Option(min=10, help="Use N train/test images.")] = None,
    dataset: DatasetOption = "mnist",
    data_dir: DataDirOption = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/MODEL).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the interrupted run in --out.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing run in --out.")] = False,
) -> None:
    """Train a model, then evaluate it on the test set. Ctrl-C keeps the best checkpoint."""
    _quiet_tensorflow()
    from digit_recognizer.evaluate import evaluate_run
    from digit_recognizer.train import TrainConfig
    from digit_recognizer.train import train as train_model

    out = out or Path("runs") / model
    if overwrite and not resume and (out / "config.json").is_file():
        shutil.rmtree(out)
    cfg = TrainConfig(
        model=model, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
        val_split=val_split, patience=patience, seed=seed, dataset=dataset,
        data_dir=str(data_dir) if data_dir else None, limit=limit,
    )  # fmt: skip
    run = train_model(cfg, out, resume=resume, verbose=1 if sys.stdout.isatty() else 2)
    if run.interrupted:
        console.print(f"Interrupted. Best model kept in {out}; continue with --resume.")
        raise typer.Exit(130)
    metrics = evaluate_run(out)
    console.print(_metrics_table(f"{run.config.model}: {run.epochs_run} epochs", metrics))
    console.print(f"Run written to [bold]{out}[/] (model.keras, model.h5, metrics, figures).")


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `digits train`.")],
) -> None:
    """Evaluate a run's best model on the test set; write metrics.json and figures."""
    _quiet_tensorflow()
    from digit_recognizer.evaluate import evaluate_run

    metrics = evaluate_run(run_dir)
    console.print(_metrics_table(str(run_dir), metrics))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Evaluated run folders.")],
    out: Annotated[Path | None, typer.Option(help="Default: parent of the first run.")] = None,
) -> None:
    """Compare runs: write report.md (the seed's table) and comparison.png."""
    from digit_recognizer.compare import compare as compare_runs

    rows, report = compare_runs(run_dirs, out or Path(run_dirs[0]).resolve().parent)
    table = Table(title="Model comparison")
    for column in ("run", "parameters", "test accuracy", "macro F1", "epochs", "train s", "ms/img"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r.name, f"{r.parameters:,}", f"{r.accuracy:.2%}", f"{r.macro_f1:.4f}",
            str(r.epochs), f"{r.train_seconds:.0f}", f"{r.ms_per_image:.3f}",
        )  # fmt: skip
    console.print(table)
    console.print(f"Report: [bold]{report}[/]")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1, no traceback."""
    try:
        app()
    except DigitsError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(1)
