"""Shared fixtures: MNIST (wherever the library finds it), tiny IDX files, a local HTTP server."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import shutil
import struct
import subprocess
import sys
import tempfile
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


@pytest.fixture(scope="session", autouse=True)
def private_user_data(tmp_path_factory):
    """Commands that default to the user's data directory (the feedback store) write into a
    temporary one, here and in the processes the tests start."""
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("user-data"))


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL server programs (initdb, pg_ctl), which are not on PATH."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server of our own: initdb in a temporary folder, listening on a Unix
    socket only, stopped and deleted after the session. Yields the socket's folder."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        if os.environ.get("DIGITS_REQUIRE_POSTGRES"):
            pytest.fail("PostgreSQL is required here (DIGITS_REQUIRE_POSTGRES is set)")
        pytest.skip("Debian's postgresql is not installed (.ci/run installs it)")
    root = Path(tempfile.mkdtemp(prefix="digits-postgres-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    as_owner: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the server runs as the postgres user
        as_owner = ["runuser", "-u", "postgres", "--"]
        for path in (root, sockets):
            shutil.chown(path, "postgres", "postgres")
    subprocess.run(
        [*as_owner, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "digits",
         "--no-sync"], check=True, capture_output=True,
    )  # fmt: skip
    options = f"-k {sockets} -c listen_addresses='' -c max_connections=100"
    subprocess.run(
        [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
         "-l", str(root / "server.log"), "-w", "start"], check=True, capture_output=True,
    )  # fmt: skip
    yield sockets
    subprocess.run(
        [*as_owner, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
        check=False, capture_output=True,
    )  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A new, empty database on the session's server; its URL."""
    import uuid

    import psycopg

    name = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=str(postgres_server), user="digits", dbname="postgres",
                         autocommit=True) as connection:  # fmt: skip
        connection.execute(f"CREATE DATABASE {name}")
    return f"postgresql://digits@/{name}?host={postgres_server}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """The feedback store's URL on each backend: an SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'feedback.sqlite'}"
    return request.getfixturevalue("postgres_url")
