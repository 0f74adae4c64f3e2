"""Data loading: IDX and npz parsing, validation errors, source order, download path."""

from __future__ import annotations

import gzip
import hashlib
import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import idx_bytes, write_idx_set

from digit_recognizer import data
from digit_recognizer.errors import DataError

MNIST_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_mnist_loads_with_original_counts(mnist_path):
    ds = data.load_dataset("mnist", mnist_path)
    assert ds.x_train.shape == (60_000, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.x_test.shape == (10_000, 28, 28)
    assert np.bincount(ds.y_train).tolist() == MNIST_CLASS_COUNTS
    # The recorded checksums are those of the files read, whichever copy they are.
    for name in data.FILE_NAMES.values():
        assert ds.checksums[name] == hashlib.sha256((mnist_path / name).read_bytes()).hexdigest()


def test_parse_idx_round_trip():
    array = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    assert np.array_equal(data.parse_idx(idx_bytes(array)), array)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "trailing bytes"),
        (lambda b: b"\x12\x34" + b[2:], "not an unsigned-byte IDX"),
        (lambda b: b[:2], "too short"),
        (lambda b: b[:10], "truncated header"),
    ],
)
def test_parse_idx_rejects_bad_files(mutate, message):
    good = idx_bytes(np.zeros((3, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match=message):
        data.parse_idx(mutate(good), name="x.idx")


def test_reads_gzipped_and_plain_dirs_alike(tmp_path):
    gz = data.read_dataset_dir(
        write_idx_set(tmp_path / "gz", 20, 10), data.DATASETS["mnist"], False
    )
    plain = data.read_dataset_dir(
        write_idx_set(tmp_path / "plain", 20, 10, compress=False), data.DATASETS["mnist"], False
    )
    assert np.array_equal(gz.x_train, plain.x_train) and np.array_equal(gz.y_test, plain.y_test)


def test_truncated_gzip_names_the_file(tmp_path):
    folder = write_idx_set(tmp_path, 20, 10)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz: corrupt or truncated gzip"):
        data.read_dataset_dir(folder, data.DATASETS["mnist"], full_size=False)


def test_mismatched_counts_and_missing_files(tmp_path):
    folder = write_idx_set(tmp_path, 20, 10)
    labels = np.zeros(19, dtype=np.uint8)
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(DataError, match="20 images but 19 labels"):
        data.read_dataset_dir(folder, data.DATASETS["mnist"], full_size=False)
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-images"):
        data.read_dataset_dir(folder, data.DATASETS["mnist"], full_size=False)


def test_wrong_size_for_a_known_dataset(tmp_path):
    folder = write_idx_set(tmp_path, 20, 10)
    with pytest.raises(DataError, match="20 images, expected 60000"):
        data.read_dataset_dir(folder, data.DATASETS["mnist"])


def test_reads_keras_npz_and_rejects_a_corrupt_one(tmp_path, small_mnist):
    npz = tmp_path / "mnist.npz"
    np.savez(
        npz, x_train=small_mnist.x_train, y_train=small_mnist.y_train,
        x_test=small_mnist.x_test, y_test=small_mnist.y_test,
    )  # fmt: skip
    ds = data.read_dataset_dir(tmp_path, data.DATASETS["mnist"], full_size=False)
    assert np.array_equal(ds.x_test, small_mnist.x_test)
    npz.write_bytes(npz.read_bytes()[:1000])
    with pytest.raises(DataError, match=r"mnist.npz: not a readable .npz"):
        data.read_dataset_dir(tmp_path, data.DATASETS["mnist"], full_size=False)


def test_source_order_data_dir_then_env_then_cache(tmp_path, monkeypatch, mnist_path):
    monkeypatch.setenv("DIGITS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path / "env"))
    (tmp_path / "env" / "mnist").mkdir(parents=True)
    assert data.locate("mnist", tmp_path) == tmp_path
    assert data.locate("mnist") == tmp_path / "env" / "mnist"  # per-dataset sub-folder
    monkeypatch.delenv("DIGITS_DATA_DIR")
    shutil.copytree(mnist_path, tmp_path / "cache" / "mnist")
    assert data.locate("mnist", download=False) == tmp_path / "cache" / "mnist"


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_dataset("mnist", tmp_path / "nope")
    with pytest.raises(DataError, match="unknown dataset"):
        data.load_dataset("kmnist", tmp_path)


def test_download_verifies_checksum(tmp_path, http_server, mnist_path):
    """A file that matches its checksum is kept; one altered by a single byte is refused and
    leaves nothing behind in the cache."""
    served, cache = tmp_path / "mirror", tmp_path / "cache"
    served.mkdir()
    cache.mkdir()
    name = "t10k-labels-idx1-ubyte.gz"
    genuine = (mnist_path / name).read_bytes()
    expected = hashlib.sha256(genuine).hexdigest()
    (served / name).write_bytes(genuine)
    corrupt = bytearray(genuine)
    corrupt[len(corrupt) // 2] ^= 0xFF
    (served / "corrupt.gz").write_bytes(bytes(corrupt))
    url = http_server(served)
    got = data.download_file(url + name, cache / name, expected, progress=False)
    assert got.read_bytes() == genuine
    with pytest.raises(DataError, match="sha256 mismatch"):
        data.download_file(url + "corrupt.gz", cache / "other.gz", expected, progress=False)
    assert sorted(p.name for p in cache.iterdir()) == [name]


def test_download_tries_the_next_mirror(tmp_path, http_server, mnist_path):
    empty, good = http_server(tmp_path / "missing"), http_server(mnist_path)
    spec = replace(
        data.DATASETS["mnist"],
        sha256={n: hashlib.sha256((mnist_path / n).read_bytes()).hexdigest()
                for n in data.FILE_NAMES.values()},
    )  # fmt: skip
    dest = data.download_dataset(spec, tmp_path / "cache", mirrors=(empty, good), progress=False)
    ds = data.read_dataset_dir(dest, spec)
    assert len(ds.x_train) == 60_000


def test_load_dataset_downloads_into_cache(tmp_path, http_server, mnist_path, monkeypatch):
    """The whole chain: no data dir, empty cache -> download from DIGITS_MIRRORS -> load."""
    spec = replace(
        data.DATASETS["mnist"],
        sha256={n: hashlib.sha256((mnist_path / n).read_bytes()).hexdigest()
                for n in data.FILE_NAMES.values()},
    )  # fmt: skip
    monkeypatch.setitem(data.DATASETS, "mnist", spec)
    monkeypatch.delenv("DIGITS_DATA_DIR", raising=False)
    monkeypatch.setenv("DIGITS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DIGITS_MIRRORS", http_server(mnist_path))
    monkeypatch.setattr(data, "SYSTEM_DATA_ROOT", tmp_path / "no-system-copy")
    ds = data.load_dataset("mnist", limit=100)
    assert len(ds.x_train) == 100 and (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").is_file()


def test_fashion_mnist_from_a_dataset_subfolder(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "fashion-mnist", 60_000, 10_000)
    monkeypatch.setenv("DIGITS_DATA_DIR", str(tmp_path))
    ds = data.load_dataset("fashion-mnist", limit=50)
    assert ds.class_names[9] == "Ankle boot" and len(ds.x_train) == 50


@pytest.mark.skipif(
    not (data.SYSTEM_DATA_ROOT / "fashion-mnist").is_dir(),
    reason="Debian package dataset-fashion-mnist not installed (.ci/run installs it)",
)
def test_fashion_mnist_debian_copy(monkeypatch, tmp_path):
    monkeypatch.delenv("DIGITS_DATA_DIR", raising=False)
    monkeypatch.setenv("DIGITS_CACHE_DIR", str(tmp_path))
    ds = data.load_dataset("fashion-mnist")
    assert ds.x_train.shape == (60_000, 28, 28) and np.bincount(ds.y_test).tolist() == [1000] * 10


def test_validation_split_is_seeded_and_disjoint(small_mnist):
    x = np.arange(500)
    a = data.split_validation(x, x, 0.1, seed=3)
    b = data.split_validation(x, x, 0.1, seed=3)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert len(a[2]) == 50 and not set(a[0]) & set(a[2])
    with pytest.raises(DataError):
        data.split_validation(x, x, 1.5, seed=3)
