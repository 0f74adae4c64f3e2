"""Shared fixtures: MNIST (wherever the library finds it), tiny IDX files, a local HTTP server."""

from __future__ import annotations

import functools
import gzip
import http.server
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"  # screenshots and other files worth looking at


def run_digits(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the `digits` command in a fresh process, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "digit_recognizer", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def mnist_dir() -> Path:
    """The folder of MNIST's four gzipped IDX files, found as `digits` finds it:
    DIGITS_DATA_DIR, the user cache, a system copy, else a download into the cache."""
    from digit_recognizer.data import locate
    from digit_recognizer.errors import DataError

    try:
        path = locate("mnist")
    except DataError as e:
        pytest.fail(
            "the tests need MNIST: set DIGITS_DATA_DIR to a folder holding "
            f"{', '.join(MNIST_FILES)}, or let them download it into the cache ({e})"
        )
    missing = [name for name in MNIST_FILES if not (path / name).is_file()]
    if missing:
        pytest.fail(f"MNIST in {path} lacks {', '.join(missing)}; set DIGITS_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    return mnist_dir()


@pytest.fixture(scope="session")
def small_mnist(mnist_path):
    """The first 500 training and 500 test images: enough to train a model for one epoch."""
    from digit_recognizer.data import load_dataset

    return load_dataset("mnist", mnist_path, limit=500)


def drawn_large(digit: np.ndarray, size: int) -> np.ndarray:
    """A MNIST digit scaled to fill a size x size canvas: dark ink, strokes ~size/10 wide."""
    from PIL import Image

    big = Image.fromarray(digit).resize((size, size), Image.Resampling.BILINEAR)
    return 255.0 - np.asarray(big, np.float32)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: magic 0x0000080N, N big-endian dimensions, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(directory: Path, n_train: int, n_test: int, compress: bool = True) -> Path:
    """Write the four IDX files of a synthetic dataset (random images, labels 0-9)."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for name, array in arrays.items():
        data = idx_bytes(array)
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return directory


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def http_server():
    """Start a static file server on 127.0.0.1 for a folder; yields `serve(folder) -> url`."""
    servers = []

    def serve(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()
