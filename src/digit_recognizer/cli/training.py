"""`digits` commands that train and judge models: train, evaluate, compare, report, ensemble,
robustness, export, bench. Each parses its options, calls one library function and prints
the result."""

from __future__ import annotations

import dataclasses
import inspect
import shutil
import sys
import typing
from pathlib import Path
from typing import Annotated

import typer

from digit_recognizer.cli.app import app
from digit_recognizer.cli.terminal import (
    DataDirOption,
    console,
    metrics_table,
    new_table,
    quiet_tensorflow,
)
from digit_recognizer.errors import DigitsError


def _config_options(config_class) -> list[inspect.Parameter]:
    """One keyword option per field of `config_class` marked for the CLI, typed and explained
    as the field is; every default is None, so that the recipe's value applies unless the
    option is given. A new TrainConfig field appears here without another edit."""
    types = typing.get_type_hints(config_class)
    options = []
    for setting in dataclasses.fields(config_class):
        if not setting.metadata.get("cli"):
            continue
        kind = next(t for t in typing.get_args(types[setting.name]) or [types[setting.name]])
        flag = setting.name.replace("_", "-")
        declarations = [f"--{flag}/--no-{flag}"] if kind is bool else [f"--{flag}"]
        option = typer.Option(*declarations, help=setting.metadata["help"], show_default=False)
        options.append(
            inspect.Parameter(
                setting.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[kind | None, option],
            )
        )
    return options


def train(
    recipe: str = "baseline",
    out: Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    **settings,
) -> None:
    """Train a model, then evaluate it on the test set. Ctrl-C keeps the best checkpoint."""
    quiet_tensorflow()
    from digit_recognizer.config import recipe_config
    from digit_recognizer.evaluate import evaluate_run
    from digit_recognizer.train import train as train_model

    cfg = recipe_config(recipe, **settings)
    out = out or Path("runs") / cfg.model
    if overwrite and not resume and (out / "config.json").is_file():
        shutil.rmtree(out)
    run = train_model(cfg, out, resume=resume, verbose=1 if sys.stdout.isatty() else 2)
    if run.interrupted:
        console().print(f"Interrupted. Best model kept in {out}; continue with --resume.")
        raise typer.Exit(130)
    metrics = evaluate_run(out)
    console().print(metrics_table(f"{run.config.model}: {run.epochs_run} epochs", metrics))
    console().print(f"Run written to [bold]{out}[/] (model.keras, model.h5, metrics, figures).")


def _train_signature() -> inspect.Signature:
    """`train`'s own options, then one per TrainConfig setting (see _config_options)."""
    from digit_recognizer.config import RECIPES, TrainConfig

    keyword = inspect.Parameter.KEYWORD_ONLY
    own = [
        ("recipe", str, "baseline", typer.Option(help=f"Preset: {', '.join(RECIPES)}.")),
        ("out", Path | None, None, typer.Option(help="Run folder (default runs/MODEL).")),
        (
            "resume",
            bool,
            False,
            typer.Option("--resume", help="Continue the interrupted run in --out."),
        ),
        (
            "overwrite",
            bool,
            False,
            typer.Option("--overwrite", help="Replace an existing run in --out."),
        ),
    ]
    parameters = [
        inspect.Parameter(name, keyword, default=default, annotation=Annotated[kind, option])
        for name, kind, default, option in own
    ]
    return inspect.Signature(parameters + _config_options(TrainConfig))


train.__signature__ = _train_signature()
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
app.command()(train)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `digits train`.")],
) -> None:
    """Evaluate a run's best model on the test set; write metrics.json and figures."""
    quiet_tensorflow()
    from digit_recognizer.evaluate import evaluate_run

    metrics = evaluate_run(run_dir)
    console().print(metrics_table(str(run_dir), metrics))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Evaluated run folders.")],
    out: Annotated[Path | None, typer.Option(help="Default: parent of the first run.")] = None,
) -> None:
    """Compare runs: write report.md (the seed's table) and comparison.png."""
    from digit_recognizer.compare import compare as compare_runs
    from digit_recognizer.compare import paired_with_best

    rows, report = compare_runs(run_dirs, out or Path(run_dirs[0]).resolve().parent)
    columns = ("run", "parameters", "test accuracy", "macro F1", "epochs", "train s", "ms/img")
    table = new_table("Model comparison", columns)
    for r in rows:
        table.add_row(
            r.name, f"{r.parameters:,}", f"{r.accuracy:.2%}", f"{r.macro_f1:.4f}",
            str(r.epochs), f"{r.train_seconds:.0f}", f"{r.ms_per_image:.3f}",
        )  # fmt: skip
    console().print(table)
    for pair in paired_with_best(run_dirs):
        console().print(
            f"{pair['run']} against {pair['best']}: {pair['only_best']} test images only "
            f"{pair['best']} reads right, {pair['only_run']} only {pair['run']}; "
            f"McNemar's p = {pair['p_value']:.2g}"
        )
    console().print(f"Report: [bold]{report}[/]")


@app.command()
def export(
    source: Annotated[Path, typer.Argument(help="A run folder or a .keras file.")],
    out: Annotated[Path | None, typer.Option(help="Default: model.onnx beside it.")] = None,
    format: Annotated[str, typer.Option("--format", help="Export format: onnx.")] = "onnx",
    handwriting: Annotated[
        Path | None, typer.Option(help="Record accuracy on these labelled images in the card.")
    ] = None,
) -> None:
    """Export a trained model to ONNX (checked against Keras) with its model card."""
    if format != "onnx":
        raise DigitsError(f"unsupported format {format!r}; only onnx")
    quiet_tensorflow()
    from digit_recognizer.export import export_onnx

    path, card = export_onnx(source, out, handwriting)
    calibration = card.get("calibration", {})
    folded = (
        f"; temperature {calibration['temperature']:.3g} in its last layer"
        if calibration.get("in_model")
        else ""
    )
    difference = card["onnx_max_abs_diff_vs_keras"]
    console().print(f"Wrote {path} (max |ONNX - Keras| = {difference:.1e}{folded})")


@app.command()
def report(
    runs_root: Annotated[Path, typer.Argument(help="Folder holding run folders.")] = Path("runs"),
    robustness_file: Annotated[
        Path, typer.Option("--robustness", help="robustness.json to take corrupted accuracy from.")
    ] = Path("runs/robustness/robustness.json"),
    out: Annotated[Path | None, typer.Option(help="Default: RUNS_ROOT/leaderboard.md.")] = None,
) -> None:
    """One markdown leaderboard of every evaluated run (seeds grouped: mean ± std)."""
    from digit_recognizer.artifacts import write_text
    from digit_recognizer.compare import leaderboard

    text = "# Leaderboard\n\n" + leaderboard(runs_root, robustness_file)
    path = write_text(out or runs_root / "leaderboard.md", text)
    print(text)  # verbatim: Rich would re-wrap the table
    console().print(f"Leaderboard: [bold]{path}[/]")


@app.command()
def ensemble(
    run_dirs: Annotated[list[Path], typer.Argument(help="Trained run folders.")],
    out: Annotated[Path, typer.Option(help="Run folder for the ensemble.")] = Path("runs/ensemble"),
    merge: Annotated[
        bool,
        typer.Option(
            help="One wider network averaging the members' logits, which `digits finetune` "
            "can read back (members of one architecture); default: their probabilities."
        ),
    ] = False,
) -> None:
    """Average several runs into one model, then evaluate it."""
    quiet_tensorflow()
    from digit_recognizer.ensemble import build_ensemble
    from digit_recognizer.evaluate import evaluate_run

    build_ensemble(run_dirs, out, merge=merge)
    metrics = evaluate_run(out)
    console().print(metrics_table(f"ensemble of {len(run_dirs)}", metrics))
    console().print(
        f"Ensemble written to [bold]{out}[/]; `digits export {out}` makes one ONNX graph."
    )


@app.command("robustness")
def robustness_command(
    models: Annotated[
        list[str], typer.Argument(help="Run folders or .onnx files ('default': shipped).")
    ],
    limit: Annotated[int | None, typer.Option(min=10, help="First N test images.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random corruptions.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for the report.")] = Path("runs/robustness"),
    data_dir: DataDirOption = None,
) -> None:
    """Test accuracy under 12 corruptions at 3 severities, models side by side."""
    quiet_tensorflow()
    from digit_recognizer.data import load_dataset
    from digit_recognizer.robustness import predictor, preprocess_batch, robustness, write_report

    data = load_dataset("mnist", data_dir, limit=limit)
    results = {}
    for model in models:
        name = Path(model).name if model != "default" else "shipped"
        with console().status(f"corrupting and scoring: {name}"):
            results[name] = robustness(
                predictor(model), data.x_test, data.y_test, seed, preprocess_batch
            )
    report = write_report(results, out)
    print(report.read_text())  # verbatim: Rich would re-wrap the table
    console().print(f"Report: [bold]{report}[/], robustness.json, robustness.png")


@app.command()
def bench(
    quick: Annotated[bool, typer.Option(help="Reduced sizes, about 2 minutes.")] = False,
    out: Annotated[
        Path, typer.Option(help="Folder for results.json, results.md and history.jsonl.")
    ] = Path("benchmarks/results"),
    shipped_run: Annotated[
        Path, typer.Option(help="Run folder of the shipped model (`make ship-model`), if kept.")
    ] = Path("runs/robust"),
    data_dir: DataDirOption = None,
) -> None:
    """Measure training, inference, cold starts and the server; write JSON and markdown."""
    quiet_tensorflow()
    from digit_recognizer.bench import BenchConfig, run_benchmarks

    cfg = BenchConfig(
        out=out, quick=quick, shipped_run=shipped_run,
        data_dir=str(data_dir) if data_dir else None,
    )  # fmt: skip
    with console().status("benchmarking") as status:
        run_benchmarks(cfg, progress=lambda message: status.update(f"benchmarking: {message}"))
    print((out / "results.md").read_text())  # verbatim: Rich would re-wrap the tables
    console().print(f"Results: [bold]{out / 'results.json'}[/], results.md, history.jsonl")
