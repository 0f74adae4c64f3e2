"""What the commands print: Rich console and tables created on first use, a lazy Rich log
handler, and TensorFlow imported without its start-up chatter."""

from __future__ import annotations

import functools
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


# console, table and logging modules cost its cold start about 50 ms.
@functools.cache
def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr)


def new_table(title: str, columns: tuple[str, ...]) -> Table:
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    return table


class RichLogHandler(logging.Handler):
    """Rich's log handler, created when the first record arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.rich: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.rich is None:
            from rich.logging import RichHandler

            self.rich = RichHandler(console=console(stderr=True), show_path=False)
        self.rich.emit(record)


DataDirOption = Annotated[
    Path | None,
    typer.Option(help="Folder with the IDX files or mnist.npz (default: DIGITS_DATA_DIR, cache)."),
]


def quiet_tensorflow() -> None:
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


def metrics_table(title: str, metrics) -> Table:
    table = new_table(title, ("test accuracy", "macro F1", "loss", "ms/image", "parameters"))
    table.add_row(
        f"{metrics.accuracy:.2%}", f"{metrics.macro_f1:.4f}", f"{metrics.loss:.4f}",
        f"{metrics.ms_per_image:.3f}", f"{metrics.parameters:,}",
    )  # fmt: skip
    return table
