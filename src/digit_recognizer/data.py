"""MNIST and Fashion-MNIST: find, download, validate and load the IDX (or Keras .npz) files.

Where the data comes from, first match wins:
  1. `data_dir` (the CLI's `--data-dir`),
  2. the `DIGITS_DATA_DIR` environment variable,
  3. the user cache, `~/.cache/digit-recognizer/<dataset>` (or `DIGITS_CACHE_DIR/<dataset>`),
  4. a system copy, e.g. Debian's `dataset-fashion-mnist` in `/usr/share/datasets/<dataset>`,
  5. a download of the original files into the cache, checked against their canonical sha256.

Files that a user points to are validated by format (magic number, dimensions, counts), not by
canonical checksum: re-compressed or rebuilt copies are valid data.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digit_recognizer.artifacts import sha256_file, write_atomic
from digit_recognizer.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SIZE = 28
TRAIN_COUNT, TEST_COUNT = 60_000, 10_000

# The four files of a dataset, keyed by their role.
FILE_NAMES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
NPZ_NAME = "mnist.npz"  # the file keras.datasets.mnist caches


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset is published and what its original files hash to."""

    name: str
    class_names: tuple[str, ...]
    mirrors: tuple[str, ...]
    sha256: dict[str, str]  # file name -> canonical sha256 of the downloaded .gz


DATASETS = {
    "mnist": DatasetSpec(
        name="mnist",
        class_names=tuple(str(d) for d in range(10)),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
}
SYSTEM_DATA_ROOT = Path("/usr/share/datasets")


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 (N, 28, 28), labels as uint8 (N,), plus where they came from."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    source: str
    checksums: dict[str, str] = field(default_factory=dict)  # file name -> sha256


# --- Parsing ---------------------------------------------------------------------------


def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated gzip ({e})") from None


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Parse an unsigned-byte IDX array (magic 0x0000080N, N = number of dimensions)."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or not 1 <= ndim <= 3:
        raise DataError(f"{name}: not an unsigned-byte IDX file (magic {data[:4].hex()})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: truncated header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(f"{name}: {what}: {len(data)} bytes, header {dims} needs {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: Path) -> np.ndarray:
    return parse_idx(_read_maybe_gzip(path), name=str(path))


def _check_split(images: np.ndarray, labels: np.ndarray, where: str, count: int | None) -> None:
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{where}: images have shape {images.shape}, expected (N, 28, 28)")
    if labels.ndim != 1:
        raise DataError(f"{where}: labels have shape {labels.shape}, expected (N,)")
    if len(images) != len(labels):
        raise DataError(f"{where}: {len(images)} images but {len(labels)} labels")
    if count is not None and len(images) != count:
        raise DataError(f"{where}: {len(images)} images, expected {count}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{where}: label {int(labels.max())} out of range 0-9")


def _find_file(directory: Path, gz_name: str) -> Path | None:
    for candidate in (directory / gz_name, directory / gz_name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def read_idx_dir(directory: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read the four IDX files (gzipped or not) of a directory; returns arrays and sha256s."""
    arrays, checksums = {}, {}
    for role, gz_name in FILE_NAMES.items():
        path = _find_file(directory, gz_name)
        if path is None:
            raise DataError(f"{directory}: missing {gz_name} (or its uncompressed form)")
        arrays[role] = read_idx(path)
        checksums[path.name] = sha256_file(path)
    return arrays, checksums


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read Keras's mnist.npz (keys x_train, y_train, x_test, y_test)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = {"x_train", "y_train", "x_test", "y_test"}
            if missing := keys - set(npz.files):
                raise DataError(f"{path}: missing arrays {sorted(missing)}")
            arrays = {k: np.asarray(npz[k]) for k in keys}
    except DataError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError, EOFError, ...
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    return {
        "train_images": arrays["x_train"].astype(np.uint8),
        "train_labels": arrays["y_train"].astype(np.uint8),
        "test_images": arrays["x_test"].astype(np.uint8),
        "test_labels": arrays["y_test"].astype(np.uint8),
    }


def read_dataset_dir(directory: Path, spec: DatasetSpec, full_size: bool = True) -> Dataset:
    """Load a directory holding the IDX files or a Keras .npz; validate format and counts."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"data directory {directory} does not exist")
    npz = directory / NPZ_NAME
    if _find_file(directory, FILE_NAMES["train_images"]) is None and npz.is_file():
        arrays, checksums = read_npz(npz), {npz.name: sha256_file(npz)}
    else:
        arrays, checksums = read_idx_dir(directory)
    train_n, test_n = (TRAIN_COUNT, TEST_COUNT) if full_size else (None, None)
    _check_split(arrays["train_images"], arrays["train_labels"], f"{directory} (train)", train_n)
    _check_split(arrays["test_images"], arrays["test_labels"], f"{directory} (test)", test_n)
    return Dataset(
        name=spec.name,
        x_train=arrays["train_images"],
        y_train=arrays["train_labels"],
        x_test=arrays["test_images"],
        y_test=arrays["test_labels"],
        class_names=spec.class_names,
        source=str(directory.resolve()),
        checksums=checksums,
    )


# --- Download --------------------------------------------------------------------------


def download_file(url: str, dest: Path, sha256: str, progress: bool = True) -> Path:
    """Stream `url` to `dest` atomically, with a progress bar; raise if the sha256 differs."""
    import hashlib

    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    digest = hashlib.sha256()

    def fetch(tmp: Path) -> None:
        with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
            with Progress(*columns, disable=not progress, transient=True) as bar:
                task = bar.add_task(dest.name, total=total)
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.advance(task, len(chunk))
        if digest.hexdigest() != sha256:
            raise DataError(
                f"{url}: sha256 mismatch (expected {sha256[:16]}…, got {digest.hexdigest()[:16]}…)"
            )

    return write_atomic(dest, fetch)


def download_dataset(
    spec: DatasetSpec, dest: Path, mirrors: tuple[str, ...] | None = None, progress: bool = True
) -> Path:
    """Download the dataset's four files into `dest`, trying each mirror in turn."""
    mirrors = mirrors or spec.mirrors
    for name, sha256 in spec.sha256.items():
        if (dest / name).is_file() and sha256_file(dest / name) == sha256:
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                log.info("downloading %s", url)
                download_file(url, dest / name, sha256, progress=progress)
                break
            except (urllib.error.URLError, OSError, DataError) as e:
                errors.append(str(e) if isinstance(e, DataError) else f"{url}: {e}")
        else:
            raise DataError(f"could not download {name}: " + "; ".join(errors))
    return dest


# --- Resolution ------------------------------------------------------------------------


def get_spec(dataset: str) -> DatasetSpec:
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[dataset]


def cache_dir(dataset: str) -> Path:
    root = os.environ.get("DIGITS_CACHE_DIR") or Path.home() / ".cache" / "digit-recognizer"
    return Path(root) / dataset


def _has_data(directory: Path) -> bool:
    return (directory / NPZ_NAME).is_file() or all(
        _find_file(directory, name) for name in FILE_NAMES.values()
    )


def _env_dir(dataset: str) -> Path | None:
    """DIGITS_DATA_DIR holds the files itself, or one sub-folder per dataset."""
    env = os.environ.get("DIGITS_DATA_DIR")
    if not env:
        return None
    root = Path(env)
    return root / dataset if (root / dataset).is_dir() else root


def locate(dataset: str, data_dir: Path | None = None, download: bool = True) -> Path:
    """The directory to read `dataset` from, downloading it into the cache if needed."""
    spec = get_spec(dataset)
    for explicit in (data_dir, _env_dir(dataset)):
        if explicit is not None:
            if not Path(explicit).is_dir():
                raise DataError(f"data directory {explicit} does not exist")
            return Path(explicit)
    for candidate in (cache_dir(dataset), SYSTEM_DATA_ROOT / dataset):
        if _has_data(candidate):
            return candidate
    if not download:
        raise DataError(f"{dataset} not found; pass --data-dir or set DIGITS_DATA_DIR")
    mirrors = os.environ.get("DIGITS_MIRRORS")
    return download_dataset(
        spec, cache_dir(dataset), tuple(mirrors.split(",")) if mirrors else None
    )


def load_dataset(
    dataset: str = "mnist", data_dir: Path | None = None, limit: int | None = None
) -> Dataset:
    """Load a dataset; `limit` keeps the first N training and N test images (smoke runs)."""
    spec = get_spec(dataset)
    data = read_dataset_dir(locate(dataset, data_dir), spec)
    if limit is None:
        return data
    if limit < 10:
        raise DataError(f"--limit must be at least 10, got {limit}")
    return Dataset(
        name=data.name,
        x_train=data.x_train[:limit],
        y_train=data.y_train[:limit],
        x_test=data.x_test[:limit],
        y_test=data.y_test[:limit],
        class_names=data.class_names,
        source=data.source,
        checksums=data.checksums,
    )


def split_validation(
    x: np.ndarray, y: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Carve a seeded random validation split from the training set: (x_tr, y_tr, x_val, y_val)."""
    if not 0.0 < fraction < 1.0:
        raise DataError(f"--val-split must be between 0 and 1, got {fraction}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, round(len(x) * fraction))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]
