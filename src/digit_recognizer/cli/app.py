"""The Typer application every `digits` command registers on, and its global options."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

import digit_recognizer
from digit_recognizer.cli.terminal import RichLogHandler, console

app = typer.Typer(
    help=(
        "Handwritten digit recognition: read digits from images or a drawing page; "
        "train, evaluate, compare and benchmark models on MNIST."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


# Rich is imported on first use: `digits predict` prints plain lines, and importing Rich's


def _version_callback(value: bool) -> None:
    if value:
        console().print(f"digit-recognizer {digit_recognizer.__version__}")
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
        handlers=[RichLogHandler()],
    )
    if not verbose:  # the ONNX converter narrates every export at INFO
        logging.getLogger("tf2onnx").setLevel(logging.WARNING)
