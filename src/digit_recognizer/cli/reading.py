"""`digits` commands that read digits with the shipped (or a given) ONNX model: predict,
serve, evaluate-images. None of them imports TensorFlow."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from digit_recognizer.cli.app import app
from digit_recognizer.cli.terminal import (
    console,
    new_table,
)
from digit_recognizer.errors import DigitsError

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


def _save_view(view, folder: Path, source: Path, index: int | None = None) -> Path:
    """The 28x28 view the model saw, scaled 8x (nearest) so a person can look at it."""
    import numpy as np
    from PIL import Image

    from digit_recognizer.artifacts import write_atomic

    suffix = "" if index is None else f"_{index}"
    image = Image.fromarray(np.clip(view, 0, 255).astype("uint8")).resize((224, 224), 0)
    return write_atomic(
        folder / f"{source.stem}{suffix}_28x28.png", lambda tmp: image.save(tmp, "PNG")
    )


def _format_prediction(path: Path, prediction, top_k: int) -> str:
    line = f"{path}\t{prediction.digit}\t{prediction.confidence:.4f}"
    if top_k > 1:
        ranked = sorted(enumerate(prediction.probabilities), key=lambda kv: -kv[1])[:top_k]
        line += "\t" + " ".join(f"{d}:{p:.4f}" for d, p in ranked)
    if prediction.unsure:  # the two most probable digits were close: say both
        line += f"\tunsure: {prediction.digit} or {prediction.runner_up}?"
    return line


@app.command()
def predict(
    paths: Annotated[list[str], typer.Argument(help="Image files, folders or globs.")],
    model: ModelOption = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    top_k: Annotated[int, typer.Option(min=1, max=10, help="Also list the top K digits.")] = 1,
    show: Annotated[
        Path | None, typer.Option(help="Write the 28x28 view the model saw into this folder.")
    ] = None,
    multi: Annotated[bool, typer.Option(help="Read a row of digits, left to right.")] = False,
    preprocess: Annotated[
        bool, typer.Option(help="MNIST-style preprocessing (--no-preprocess to compare).")
    ] = True,
) -> None:
    """Read handwritten digits from images: prints `path  digit  confidence` per image."""
    import json

    from digit_recognizer.predict import Recognizer

    recognizer = Recognizer(model)
    failures = 0
    for path in _expand_inputs(paths):
        try:
            if multi:
                predictions = recognizer.read_row(path)
            else:
                predictions = [recognizer.read(path, preprocessing=preprocess)]
        except (DigitsError, OSError) as e:
            print(f"{path}: error: {' '.join(str(e).split())}", file=sys.stderr)
            failures += 1
            continue
        if show:
            for k, prediction in enumerate(predictions):
                _save_view(prediction.view, show, path, k if multi else None)
        if json_lines:
            record = {"path": str(path), **predictions[0].as_dict()}
            if multi:
                record = {
                    "path": str(path),
                    "digits": "".join(str(p.digit) for p in predictions),
                    "items": [p.as_dict() for p in predictions],
                }
            print(json.dumps(record))
        elif multi:
            confidence = min(p.confidence for p in predictions)
            print(f"{path}\t{''.join(str(p.digit) for p in predictions)}\t{confidence:.4f}")
        else:
            print(_format_prediction(path, predictions[0], top_k))
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
) -> None:
    """Serve the draw-a-digit page and the JSON API (docs at /docs)."""
    from digit_recognizer.predict import Recognizer
    from digit_recognizer.web.server import run_server

    Recognizer(model)  # a bad --model fails here, in one line, before any worker starts
    if model:
        os.environ["DIGITS_MODEL"] = str(model)
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
) -> None:
    """Accuracy and per-digit recall on a folder of labelled images, with and without
    preprocessing; writes the report and a confusion matrix picture."""
    from digit_recognizer.artifacts import write_json
    from digit_recognizer.image_folder import confusion_picture
    from digit_recognizer.image_folder import evaluate_images as score

    if not folder.is_dir():
        raise DigitsError(f"{folder} is not a folder")
    with_pre, without = score(folder, model, True), score(folder, model, False)
    columns = ("preprocessing", "accuracy", "correct", "no digit found")
    table = new_table(f"{folder}: {with_pre['images']} images", columns)
    for report in (with_pre, without):
        table.add_row(
            "on" if report["preprocessing"] else "off", f"{report['accuracy']:.2%}",
            str(report["correct"]), str(report["no_digit"]),
        )  # fmt: skip
    console().print(table)
    recall = new_table("recall per digit (preprocessing on)", tuple(with_pre["recall"]))
    recall.add_row(*(f"{value:.1%}" for value in with_pre["recall"].values()))
    console().print(recall)
    out = out or Path("runs") / "evaluate-images" / f"{folder.resolve().name}.json"
    write_json(out, {"with_preprocessing": with_pre, "without_preprocessing": without})
    picture = confusion_picture(with_pre, out.with_suffix(".png"))
    console().print(f"Report: [bold]{out}[/], confusion matrix: [bold]{picture}[/]")
