"""Atomic file writes, checksums, the library versions recorded with every run, and the
user's data folder (the feedback database and the model store live there by default)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

RECORDED_LIBRARIES = (
    "digit-recognizer",
    "numpy",
    "tensorflow-cpu",
    "keras",
    "scikit-learn",
    "matplotlib",
    "pillow",
    "onnxruntime",
    "uvicorn",  # with httptools, the HTTP stack `digits bench` times
    "httptools",
)


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, then rename it over `path`.

    A crash or Ctrl-C in the middle leaves the previous file intact, never half a file.
    The temporary name keeps the suffix because Keras and Matplotlib pick the format by it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def user_data_dir() -> Path:
    """`$XDG_DATA_HOME/digit-recognizer`, else `~/.local/share/digit-recognizer`."""
    root = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(root) / "digit-recognizer"


def write_bytes(path: Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path, text: str) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def card_path(onnx_path: Path) -> Path:
    """model.onnx -> model_card.json beside it."""
    return Path(onnx_path).with_name(Path(onnx_path).stem + "_card.json")


def ship_model(onnx: Path, card: dict, asset: Path) -> None:
    """A trained ONNX file copied into the package as `asset`, its card beside it
    (`card_path`), each written atomically."""
    write_bytes(asset, onnx.read_bytes())
    write_json(card_path(asset), card)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Save a Matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))
    plt.close(fig)
    return path


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that decide a run's numbers."""
    from importlib import metadata  # ~20 ms to import: kept off `digits predict`'s start

    versions = {"python": platform.python_version()}
    for name in RECORDED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
