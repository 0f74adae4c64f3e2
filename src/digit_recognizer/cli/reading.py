"""`digits` commands that read digits with the shipped (or a given) ONNX model: predict,
serve, evaluate-images. None of them imports TensorFlow."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from digit_recognizer.cli.app import app
from digit_recognizer.cli.feedback import DbOption, StoreOption
from digit_recognizer.cli.terminal import (
    console,
    new_table,
)
from digit_recognizer.errors import DigitsError
from digit_recognizer.feedback import RATE_LIMIT

ModelOption = Annotated[
    str | None, typer.Option("--model", help="ONNX file or run folder (default: shipped model).")
]


def _expand_inputs(paths: list[str]) -> list[Path]:
    """Files, folders (images inside, recursively) and globs the shell did not expand."""
    from digit_recognizer.images import IMAGE_SUFFIXES

    found: list[Path] = []
    for given in paths:
        matches = sorted(Path().glob(given)) if any(c in given for c in "*?[") else [Path(given)]
        for path in matches or [Path(given)]:
            if path.is_dir():
                found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            else:
                found.append(path)
    return found


def _save_view(view, folder: Path, source: Path, index: int | str | None = None) -> Path:
    """The view the model saw (28x28, or a number's 32x192 line), scaled 8x (nearest) so a
    person can look at it."""
    import numpy as np
    from PIL import Image

    from digit_recognizer.artifacts import write_atomic

    suffix = "" if index is None else f"_{index}"
    height, width = view.shape
    image = Image.fromarray(np.clip(view, 0, 255).astype("uint8")).resize(
        (8 * width, 8 * height), 0
    )
    return write_atomic(
        folder / f"{source.stem}{suffix}_{height}x{width}.png", lambda tmp: image.save(tmp, "PNG")
    )


def _format_prediction(path: Path, prediction, top_k: int) -> str:
    line = f"{path}\t{prediction.digit}\t{prediction.confidence:.4f}"
    if top_k > 1:
        ranked = sorted(enumerate(prediction.probabilities), key=lambda kv: -kv[1])[:top_k]
        line += "\t" + " ".join(f"{d}:{p:.4f}" for d, p in ranked)
    if prediction.unsure:  # the two most probable digits were close: say both
        line += f"\tunsure: {prediction.digit} or {prediction.runner_up}?"
    return line


def _print_number(path: Path, reading, json_lines: bool, show: Path | None) -> None:
    """One line per image: `path  number  confidence`, or /api/read's object plus path."""
    import json

    if show:  # the line the number model read, enlarged
        _save_view(reading.view, show, path, "line")
    if json_lines:
        print(json.dumps({"path": str(path), **reading.as_dict()}))
    else:
        print(_format_number(path, reading))


def _format_number(path: Path, reading) -> str:
    """`path  number  confidence`, and for each unsure digit its place and both readings."""
    line = f"{path}\t{reading.number}\t{reading.confidence:.4f}"
    doubts = [
        f"digit {place} is {d.digit} or {d.runner_up}?"
        for place, d in enumerate(reading.digits, 1)
        if d.unsure
    ]
    return line + ("\tunsure: " + ", ".join(doubts) if doubts else "")


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or globs.")],
    model: ModelOption = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    top_k: Annotated[int, typer.Option(min=1, max=10, help="Also list the top K digits.")] = 1,
    show: Annotated[
        Path | None, typer.Option(help="Write the 28x28 view the model saw into this folder.")
    ] = None,
    number: Annotated[
        bool,
        typer.Option(
            "--number", "--multi", help="Read a whole number (digits may touch), left to right."
        ),
    ] = False,
    preprocess: Annotated[
        bool, typer.Option(help="MNIST-style preprocessing (--no-preprocess to compare).")
    ] = True,
) -> None:
    """Read handwritten digits from images: prints `path  digit  confidence` per image
    (`path  number  confidence` with --number)."""
    import json

    from digit_recognizer.predict import Recognizer

    recognizer = Recognizer(model)
    failures = 0
    for path in _expand_inputs(paths):
        try:
            if number:
                reading = recognizer.read_number(path)
            else:
                prediction = recognizer.read(path, preprocessing=preprocess)
        except (DigitsError, OSError) as e:
            print(f"{path}: error: {' '.join(str(e).split())}", file=sys.stderr)
            failures += 1
            continue
        if number:
            _print_number(path, reading, json_lines, show)
            continue
        if show:
            _save_view(prediction.view, show, path)
        if json_lines:
            print(json.dumps({"path": str(path), **prediction.as_dict()}))
        else:
            print(_format_prediction(path, prediction, top_k))
    if failures:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port.")] = 8000,
    model: ModelOption = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes; one per core serves the most requests.")
    ] = 1,
    db: DbOption = None,
    store: StoreOption = None,
    feedback_rate: Annotated[
        int, typer.Option(min=1, help="Corrections one client may send per minute.")
    ] = RATE_LIMIT,
) -> None:
    """Serve the draw-a-digit page and the JSON API (docs at /docs). Without --model, the
    model store's current version answers, switched live by `digits promote` and
    `digits rollback`."""
    from digit_recognizer.feedback import open_store
    from digit_recognizer.model_store import open_model_store
    from digit_recognizer.predict import Recognizer
    from digit_recognizer.web.server import run_server

    models = open_model_store(store)
    # A bad --model, --store or --db fails here, in one line, before any worker starts.
    Recognizer(model or models.current_model())
    feedback = open_store(db)
    os.environ["DIGITS_DB"] = feedback.url
    os.environ["DIGITS_MODEL_STORE"] = str(models.root)
    os.environ["DIGITS_FEEDBACK_RATE"] = str(feedback_rate)
    if model:
        os.environ["DIGITS_MODEL"] = str(model)
    served = model or f"model store {models.root}, version {models.current()}"
    console().print(f"Model: {served}; corrections go to {feedback.display_url}")
    console().print(f"Serving on http://{host}:{port} with {workers} worker(s)  (Ctrl-C to stop)")
    run_server(host, port, workers)


@app.command("evaluate-images")
def evaluate_images(
    folder: Annotated[Path, typer.Argument(help="Labelled images (7_name.png or 7/name.png).")],
    model: ModelOption = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Report as JSON, confusion matrix beside it as PNG (default: runs/)."),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(help="A second model (ONNX file) to read the same images: which differ."),
    ] = None,
) -> None:
    """Accuracy and per-digit recall on a folder of labelled images, with and without
    preprocessing; writes the report and a confusion matrix picture. With --against, also
    the images only one of the two models reads right and McNemar's p-value."""
    from digit_recognizer.artifacts import write_json
    from digit_recognizer.image_folder import confusion_picture, disagreement_picture
    from digit_recognizer.image_folder import evaluate_images as score
    from digit_recognizer.predict import resolve_model

    if not folder.is_dir():
        raise DigitsError(f"{folder} is not a folder")
    if against:
        resolve_model(against)  # a wrong path fails before the first model reads anything
    with_pre, without = score(folder, model, True), score(folder, model, False)
    reports = {"with_preprocessing": with_pre, "without_preprocessing": without}
    columns = ("preprocessing", "accuracy", "correct", "no digit found", "unsure: right / wrong")
    table = new_table(f"{folder}: {with_pre['images']} images", columns)
    for report in (with_pre, without):
        table.add_row(
            "on" if report["preprocessing"] else "off", f"{report['accuracy']:.2%}",
            str(report["correct"]), str(report["no_digit"]),
            f"{report['unsure']['right']} / {report['unsure']['wrong']}",
        )  # fmt: skip
    console().print(table)
    recall = new_table("recall per digit", ("digit", "recall", "read right"))
    recall.caption = "preprocessing on"
    matrix = with_pre["confusion_matrix"]
    for digit, value in with_pre["recall"].items():
        row = matrix[int(digit)]  # ten rows wide would not fit a terminal
        recall.add_row(digit, f"{value:.1%}", f"{row[int(digit)]} of {sum(row)}")
    console().print(recall)
    other = score(folder, against, True) if against else None
    if other:
        reports["against"] = _print_paired(with_pre, other)
    out = out or Path("runs") / "evaluate-images" / f"{folder.resolve().name}.json"
    write_json(out, reports)
    picture = confusion_picture(with_pre, out.with_suffix(".png"))
    console().print(f"Report: [bold]{out}[/], confusion matrix: [bold]{picture}[/]")
    if other:
        differ = disagreement_picture(with_pre, other, out.with_name(f"{out.stem}-against.png"))
        console().print(f"The images only one model reads right: [bold]{differ}[/]")


def _print_paired(report: dict, other: dict) -> dict:
    """Print where the two models differ (preprocessing on); return the comparison."""
    from digit_recognizer.paired import paired_comparison

    compared = paired_comparison(report, other)
    title = f"against {other['model']}: {other['accuracy']:.2%} ({other['correct']} right)"
    table = new_table(title, ("digits", "only this model right", "only --against right", "p"))
    rows = {"all": compared} | {
        digit: split
        for digit, split in compared["per_digit"].items()
        if split["only_a"] + split["only_b"]
    }
    for name, split in rows.items():
        table.add_row(name, str(split["only_a"]), str(split["only_b"]), f"{split['p_value']:.3g}")
    console().print(table)
    console().print("p: McNemar's exact test; a large p means the models may differ by chance.")
    return compared


@app.command("evaluate-numbers")
def evaluate_numbers(
    folder: Annotated[
        Path, typer.Argument(help="Labelled numbers (2025_subset-anything.png), e.g. data/numbers.")
    ] = Path("data/numbers"),
    model: ModelOption = None,
    reader: Annotated[
        str,
        typer.Option(
            help="number (the shipped reader), sequence (without the digit model) or row "
            "(one connected blob per digit, as --multi read before)."
        ),
    ] = "number",
    out: Annotated[Path | None, typer.Option(help="Report as JSON (default: runs/).")] = None,
) -> None:
    """Whole-number and per-digit accuracy of the number reader on a folder of labelled
    numbers, per subset (separated, touching, ...)."""
    from digit_recognizer.artifacts import write_json
    from digit_recognizer.image_folder import NUMBER_READERS
    from digit_recognizer.image_folder import evaluate_numbers as score

    if not folder.is_dir():
        raise DigitsError(f"{folder} is not a folder")
    if reader not in NUMBER_READERS:
        raise DigitsError(f"--reader must be one of {', '.join(NUMBER_READERS)}, got {reader!r}")
    report = score(folder, model, reader)
    table = new_table(
        f"{folder}: reader {reader}, median {report['median_ms']:.1f} ms per image",
        ("subset", "numbers", "whole numbers right", "digits right", "unsure (of the misread)"),
    )
    for name, tally in report["subsets"].items():
        wrong = tally["wrong_called_unsure"]
        table.add_row(
            name,
            str(tally["numbers"]),
            f"{tally['accuracy']:.2%}",
            f"{tally['digit_accuracy']:.2%}",
            "-"  # one blob per digit never says it is unsure
            if reader == "row"
            else f"{tally['unsure_share']:.1%} ({'-' if wrong is None else f'{wrong:.0%}'})",
        )
    console().print(table)
    out = out or Path("runs") / "evaluate-numbers" / f"{folder.resolve().name}-{reader}.json"
    write_json(out, report)
    console().print(f"Report: [bold]{out}[/]")
