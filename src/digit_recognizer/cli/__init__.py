"""The `digits` command: a thin layer over the library. Each command parses its options,
calls one library function and renders the result; `main` turns user errors into one line
on stderr and a non-zero exit code."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import NoReturn

from digit_recognizer.cli import feedback, reading, training  # noqa: F401  (register the commands)
from digit_recognizer.cli.app import app
from digit_recognizer.errors import DigitsError

__all__ = ["app", "main"]


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 1, no traceback."""
    try:
        app()
    except DigitsError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        _exit_now(1)
    except SystemExit as e:  # how Typer ends every command, successful or not
        _exit_now(e.code)


def _exit_now(code: int | str | None) -> NoReturn:
    """End the process without Python's teardown. Tearing down NumPy, Pillow and ONNX Runtime
    took a cold `digits predict` 0.11-0.12 s after its answer was printed (alternated 10 times:
    median 0.52 s with it, 0.43 s without). Every file we write is closed by then; what is
    left to do is flushing, and logging's handlers."""
    if isinstance(code, str):  # sys.exit("message") prints it and exits with 1
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    with contextlib.suppress(OSError):  # a closed pipe (`digits predict ... | head -1`)
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code or 0)
