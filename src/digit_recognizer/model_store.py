"""The model store: numbered versions of the digit model and a pointer to the one served.

store/
  versions/1/model.onnx, model_card.json     each promoted version, never changed again
  current.json        {"history": [0, 1, ...], "versions": [0, 1, ...]}: the history's last
                      version serves; "versions" names every one the store holds

Version 0 is the model shipped in the package. The pointer file is the store's only mutable
state and is replaced atomically (write beside, rename over), so a reader sees the old
pointer or the new, and a process killed mid-promotion leaves the store as it was: a
version folder it had not yet named in the pointer is ignored, and overwritten next time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from digit_recognizer.artifacts import read_json, sha256_file, user_data_dir, write_json
from digit_recognizer.errors import DigitsError
from digit_recognizer.predict import DEFAULT_MODEL, Recognizer, card_path, model_version

SHIPPED = 0
log = logging.getLogger(__name__)


def default_root() -> Path:
    """DIGITS_MODEL_STORE, else `models` in the user's data directory."""
    if root := os.environ.get("DIGITS_MODEL_STORE"):
        return Path(root)
    return user_data_dir() / "models"


@dataclass(frozen=True)
class ModelStore:
    root: Path

    @property
    def pointer(self) -> Path:
        return self.root / "current.json"

    def _read(self) -> dict[str, list[int]]:
        if not self.pointer.is_file():
            return {"history": [SHIPPED], "versions": [SHIPPED]}
        try:
            pointer = read_json(self.pointer)
            return {key: [int(v) for v in pointer[key]] for key in ("history", "versions")}
        except (ValueError, KeyError, TypeError):
            raise DigitsError(f"{self.pointer} is not a model store pointer") from None

    def history(self) -> list[int]:
        """The versions served, oldest first, less those rolled back; the last is current."""
        return self._read()["history"]

    def current(self) -> int:
        return self.history()[-1]

    def versions(self) -> list[int]:
        """Every version the store holds, rolled back or not (numbers are never reused)."""
        return self._read()["versions"]

    def model_path(self, version: int) -> Path:
        if version == SHIPPED:
            return DEFAULT_MODEL
        path = self.root / "versions" / str(version) / "model.onnx"
        if not path.is_file():
            raise DigitsError(f"model store {self.root} has no version {version}")
        return path

    def current_model(self) -> Path:
        return self.model_path(self.current())

    def add(self, onnx_path: Path, card: dict) -> int:
        """Copy a model and its card in as the next version and make it current; returns the
        new version number. The pointer's rename is the one step that commits it."""
        pointer = self._read()
        version = max(pointer["versions"]) + 1
        versions = self.root / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=versions, prefix=".new-"))
        shutil.copyfile(onnx_path, staging / "model.onnx")
        card = {**card, "store_version": version, "sha256": sha256_file(staging / "model.onnx")}
        write_json(card_path(staging / "model.onnx"), card)
        final = versions / str(version)
        if final.exists():  # left by a promotion killed before its pointer was written
            shutil.rmtree(final)
        os.replace(staging, final)
        write_json(
            self.pointer,
            {
                "history": [*pointer["history"], version],
                "versions": [*pointer["versions"], version],
            },
        )
        return version

    def rollback(self) -> int:
        """Serve the version before the current one again; returns it."""
        pointer = self._read()
        history = pointer["history"]
        if len(history) < 2:
            raise DigitsError(f"nothing to roll back to: version {history[-1]} is the first")
        write_json(self.pointer, {**pointer, "history": history[:-1]})
        return history[-2]


def open_model_store(root: str | Path | None = None) -> ModelStore:
    """The store at `root` (None: DIGITS_MODEL_STORE or the default folder)."""
    return ModelStore(Path(root) if root else default_root())


class LiveModel:
    """The recognizer that answers now, for a server: a fixed model, or the model store's
    current version, switched without a restart when the store's pointer changes.

    The pointer is looked at (one stat) at most every CHECK_S seconds. A new version is
    loaded beside the old one and swapped in by one assignment: a request holds the
    recognizer it started with, so none in flight fails or mixes two versions."""

    CHECK_S = 0.5

    def __init__(self, model: str | Path | None = None, root: str | Path | None = None):
        self.store = None if model else open_model_store(root)
        path = model if self.store is None else self.store.current_model()
        self._recognizer = self._open(path)
        self._version = None if self.store is None else self.store.current()
        self._hashes: dict[Path, str] = {}
        self._known = self._store_versions()
        self._stamp = self._pointer_stamp()
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    @staticmethod
    def _open(path) -> Recognizer:
        recognizer = Recognizer(path)
        recognizer.number_reader  # opened now, not by the first number read  # noqa: B018
        return recognizer

    def _pointer_stamp(self):
        if self.store is None:
            return None
        try:
            stat = os.stat(self.store.pointer)
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    @property
    def store_version(self) -> int | None:
        return self._version

    def recognizer(self) -> Recognizer:
        if self.store is None or time.monotonic() - self._checked < self.CHECK_S:
            return self._recognizer
        with self._lock:
            self._checked = time.monotonic()
            stamp = self._pointer_stamp()
            if stamp != self._stamp:
                self._switch()
                self._known = self._store_versions()
                self._stamp = stamp
        return self._recognizer

    def _switch(self) -> None:
        try:
            version = self.store.current()
            if version != self._version:
                fresh = self._open(self.store.model_path(version))
                self._recognizer, self._version = fresh, version
                log.info("serving model version %s (%s)", version, fresh.version)
        except DigitsError as e:  # a broken pointer or file: keep answering with what we have
            log.warning("model store: %s; still serving version %s", e, self._version)

    def _store_versions(self) -> set[str]:
        """The content versions of every model in the store, rolled back or not; read again
        only when the pointer changes, each file hashed once."""
        if self.store is None:
            return set()
        try:
            versions = self.store.versions()
        except DigitsError:  # a broken pointer: the answering model's version only
            return set()
        known = set()
        for version in versions:
            with contextlib.suppress(DigitsError):  # a version folder gone missing
                path = self.store.model_path(version)
                if path not in self._hashes:
                    self._hashes[path] = model_version(path)
                known.add(self._hashes[path])
        return known

    def known_versions(self) -> set[str]:
        """The model versions (content hashes) a correction may name: the one answering and
        every version in the store (re-read when the pointer changed)."""
        answering = self.recognizer()  # also the periodic look at the pointer
        return self._known | {answering.version}
