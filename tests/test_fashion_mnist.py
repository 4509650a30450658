"""Tests for the Fashion-MNIST loader, on tiny synthetic IDX files (no network)."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from neuroemu.data import fashion_mnist as fm
from neuroemu.errors import DataError

N_TRAIN, N_TEST = 5, 3
SMALL_COUNTS = {"train": N_TRAIN, "test": N_TEST}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def make_dataset(directory: Path, *, gz: bool = True, n_labels_train: int = N_TRAIN) -> Path:
    """Write a tiny Fashion-MNIST lookalike (5 train / 3 test samples) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        n_labels = n_labels_train if split == "train" else n
        labels = (np.arange(n_labels) % 10).astype(np.uint8)
        fm.write_idx(directory / f"{fm._FILES[split]['images']}{suffix}", images)
        fm.write_idx(directory / f"{fm._FILES[split]['labels']}{suffix}", labels)
    return directory


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No env vars, an empty user cache and no Debian installation."""
    for var in ("NEUROEMU_FASHION_MNIST", "NEUROEMU_DATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian" / "fashion-mnist")
    monkeypatch.setattr(fm, "_apt_available", lambda: False)
    return tmp_path


# --------------------------------------------------------------------------- IDX I/O


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, name, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = fm.write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = fm.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_idx_header_layout(tmp_path):
    path = fm.write_idx(tmp_path / "labels", np.array([1, 2, 3], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3])


def test_gzip_detected_by_magic_not_suffix(tmp_path):
    fm.write_idx(tmp_path / "x.gz", np.arange(6, dtype=np.uint8).reshape(2, 3))
    renamed = (tmp_path / "x.gz").rename(tmp_path / "x-idx2-ubyte")
    np.testing.assert_array_equal(fm.read_idx(renamed), np.arange(6).reshape(2, 3))


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(DataError, match="int64"):
        fm.write_idx(tmp_path / "x", np.arange(3, dtype=np.int64))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00", "at least 4 bytes"),
        (b"\x12\x34\x08\x01" + b"\x00" * 8, "bad IDX magic"),
        (b"\x00\x00\x42\x01\x00\x00\x00\x01\x00", "bad IDX magic"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "truncated: 2 bytes, expected 5"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "trailing bytes"),
    ],
)
def test_read_idx_rejects_corrupt_files(tmp_path, content, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        fm.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_rejects_truncated_gzip(tmp_path):
    path = fm.write_idx(tmp_path / "t.gz", np.zeros((10, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataError, match="truncated or corrupt gzip") as info:
        fm.read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read") as info:
        fm.read_idx(tmp_path / "absent")
    assert "absent" in str(info.value)


# --------------------------------------------------------------------------- discovery


@pytest.mark.parametrize("gz", [True, False])
def test_find_explicit_dir(isolated, gz):
    directory = make_dataset(isolated / "fm", gz=gz)
    assert fm.find_fashion_mnist(directory) == directory
    assert fm.find_fashion_mnist(str(directory)) == directory


def test_find_accepts_mixed_compression(isolated):
    directory = make_dataset(isolated / "fm")
    gz = directory / "t10k-images-idx3-ubyte.gz"
    (directory / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    assert fm.find_fashion_mnist(directory) == directory


def test_find_explicit_incomplete_dir_lists_missing(isolated):
    directory = make_dataset(isolated / "fm")
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    (directory / "train-images-idx3-ubyte.gz").unlink()
    make_dataset(isolated / "cache" / "neuroemu" / "fashion-mnist")  # must not be used as fallback
    with pytest.raises(DataError) as info:
        fm.find_fashion_mnist(directory)
    message = str(info.value)
    assert str(directory) in message
    assert "t10k-labels-idx1-ubyte" in message and "train-images-idx3-ubyte" in message
    assert "train-labels" not in message


def test_find_explicit_missing_dir(isolated):
    with pytest.raises(DataError, match="not a directory"):
        fm.find_fashion_mnist(isolated / "nowhere")


def test_find_nothing(isolated):
    assert fm.find_fashion_mnist() is None


def test_find_env_var(isolated, monkeypatch):
    directory = make_dataset(isolated / "env")
    monkeypatch.setenv("NEUROEMU_FASHION_MNIST", str(directory))
    assert fm.find_fashion_mnist() == directory


def test_find_env_var_incomplete_is_an_error(isolated, monkeypatch):
    monkeypatch.setenv("NEUROEMU_FASHION_MNIST", str(isolated))
    with pytest.raises(DataError, match="NEUROEMU_FASHION_MNIST"):
        fm.find_fashion_mnist()


def test_find_data_root_env_var(isolated, monkeypatch):
    directory = make_dataset(isolated / "root" / "fashion-mnist")
    monkeypatch.setenv("NEUROEMU_DATA", str(isolated / "root"))
    assert fm.find_fashion_mnist() == directory


def test_find_order(isolated, monkeypatch):
    debian = make_dataset(fm.DEBIAN_DIR)
    cache = make_dataset(isolated / "cache" / "neuroemu" / "fashion-mnist")
    assert fm.find_fashion_mnist() == debian
    monkeypatch.setattr(fm, "DEBIAN_DIR", isolated / "absent")
    assert fm.find_fashion_mnist() == cache
    root = make_dataset(isolated / "root" / "fashion-mnist")
    monkeypatch.setenv("NEUROEMU_DATA", str(isolated / "root"))
    assert fm.find_fashion_mnist() == root
    monkeypatch.setenv("NEUROEMU_DATA", str(isolated / "empty-root"))  # incomplete: skipped
    assert fm.find_fashion_mnist() == cache


# --------------------------------------------------------------------------- fetching


def test_fetch_from_file_url(isolated):
    mirror = make_dataset(isolated / "mirror")
    dest = isolated / "dest"
    got = fm.fetch_fashion_mnist(dest, urls=[mirror.as_uri()], allow_apt=False, expected_counts=SMALL_COUNTS)
    assert got == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in fm._ALL_FILES)
    for name in fm._ALL_FILES:
        assert (dest / f"{name}.gz").read_bytes() == (mirror / f"{name}.gz").read_bytes()


def test_fetch_defaults_to_user_cache(isolated):
    mirror = make_dataset(isolated / "mirror")
    got = fm.fetch_fashion_mnist(urls=[mirror.as_uri() + "/"], allow_apt=False, expected_counts=SMALL_COUNTS)
    assert got == isolated / "cache" / "neuroemu" / "fashion-mnist"
    assert fm.find_fashion_mnist() == got


def test_fetch_falls_back_to_next_mirror(isolated):
    bad = make_dataset(isolated / "bad")
    (bad / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    (bad / "train-labels-idx1-ubyte.gz").unlink()
    good = make_dataset(isolated / "good")
    dest = fm.fetch_fashion_mnist(
        isolated / "dest", urls=[bad.as_uri(), good.as_uri()], allow_apt=False, expected_counts=SMALL_COUNTS
    )
    for name in fm._ALL_FILES:
        assert (dest / f"{name}.gz").read_bytes() == (good / f"{name}.gz").read_bytes()
    assert not list(dest.glob("*.part"))


def test_fetch_checks_counts_and_explains_options(isolated):
    mirror = make_dataset(isolated / "mirror")
    dest = isolated / "dest"
    with pytest.raises(DataError) as info:
        fm.fetch_fashion_mnist(dest, urls=[mirror.as_uri()], allow_apt=False)  # expects 60000/10000
    message = str(info.value)
    assert "expected 60000" in message and "expected 10000" in message
    assert "NEUROEMU_FASHION_MNIST" in message and "apt-get install dataset-fashion-mnist" in message
    assert not list(dest.iterdir())  # nothing half-written left behind


def test_fetch_keeps_valid_files(isolated):
    dest = make_dataset(isolated / "dest")
    before = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    assert fm.fetch_fashion_mnist(dest, urls=[], allow_apt=False, expected_counts=SMALL_COUNTS) == dest
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == before


def test_fetch_over_loopback_http(isolated):
    mirror = make_dataset(isolated / "mirror")
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        dest = fm.fetch_fashion_mnist(isolated / "dest", urls=[url], allow_apt=False, expected_counts=SMALL_COUNTS)
    finally:
        server.shutdown()
        server.server_close()
    X, y = fm.load_fashion_mnist("test", data_dir=dest)
    assert X.shape == (N_TEST, 784) and y.shape == (N_TEST,)


def test_fetch_apt_retries_after_update(isolated, monkeypatch, capsys):
    commands = []

    def fake_run(cmd):
        commands.append(list(cmd))
        installs = sum(c[1] == "install" for c in commands)
        if cmd[1] == "install" and installs == 2:
            make_dataset(fm.DEBIAN_DIR)
            return True
        return cmd[1] == "update"

    monkeypatch.setattr(fm, "_apt_available", lambda: True)
    monkeypatch.setattr(fm, "_run_command", fake_run)
    assert fm.fetch_fashion_mnist(urls=[]) == fm.DEBIAN_DIR
    install = ["apt-get", "install", "-y", "dataset-fashion-mnist"]
    assert commands == [install, ["apt-get", "update"], install]


def test_fetch_apt_failure_falls_back_to_download(isolated, monkeypatch, capsys):
    monkeypatch.setattr(fm, "_apt_available", lambda: True)
    monkeypatch.setattr(fm, "_run_command", lambda cmd: False)
    mirror = make_dataset(isolated / "mirror")
    got = fm.fetch_fashion_mnist(urls=[mirror.as_uri()], expected_counts=SMALL_COUNTS)
    assert got == isolated / "cache" / "neuroemu" / "fashion-mnist"
    assert "downloading instead" in capsys.readouterr().err


def test_fetch_skips_apt_when_not_allowed(isolated, monkeypatch):
    monkeypatch.setattr(fm, "_apt_available", lambda: True)
    monkeypatch.setattr(fm, "_run_command", lambda cmd: pytest.fail("apt must not run"))
    mirror = make_dataset(isolated / "mirror")
    fm.fetch_fashion_mnist(urls=[mirror.as_uri()], allow_apt=False, expected_counts=SMALL_COUNTS)


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("gz", [True, False])
def test_load_normalises_and_shapes(isolated, gz):
    directory = make_dataset(isolated / "fm", gz=gz)
    X, y = fm.load_fashion_mnist("train", data_dir=directory)
    assert X.shape == (N_TRAIN, 784) and X.dtype == np.float32
    assert X.min() == 0.0 and X.max() == 1.0
    assert y.dtype == np.int64 and y.tolist() == [0, 1, 2, 3, 4]
    raw = fm.read_idx(directory / ("train-images-idx3-ubyte" + (".gz" if gz else "")))
    np.testing.assert_allclose(X, raw.reshape(N_TRAIN, -1) / 255.0, rtol=1e-6)

    X, y = fm.load_fashion_mnist("test", data_dir=directory, flatten=False, limit=2, dtype=np.float64)
    assert X.shape == (2, 28, 28) and X.dtype == np.float64 and y.shape == (2,)

    X, _ = fm.load_fashion_mnist("test", data_dir=directory, normalize=False, dtype=np.uint8)
    assert X.dtype == np.uint8 and X.max() > 1


def test_load_uses_env_var(isolated, monkeypatch):
    monkeypatch.setenv("NEUROEMU_FASHION_MNIST", str(make_dataset(isolated / "env")))
    X, y = fm.load_fashion_mnist("test", download=False)
    assert X.shape == (N_TEST, 784) and len(y) == N_TEST


def test_load_bad_split(isolated):
    with pytest.raises(DataError, match="'validation'.*'train', 'test'"):
        fm.load_fashion_mnist("validation", data_dir=make_dataset(isolated / "fm"))


@pytest.mark.parametrize("kwargs", [{"limit": -1}, {"limit": 1.5}, {"dtype": np.int32}])
def test_load_bad_arguments(isolated, kwargs):
    with pytest.raises(DataError):
        fm.load_fashion_mnist("test", data_dir=make_dataset(isolated / "fm"), **kwargs)


def test_load_count_mismatch(isolated):
    directory = make_dataset(isolated / "fm", n_labels_train=N_TRAIN - 1)
    with pytest.raises(DataError, match="5 images.*4 labels"):
        fm.load_fashion_mnist("train", data_dir=directory)


def test_load_not_found_without_download(isolated):
    with pytest.raises(DataError, match="not found.*NEUROEMU_FASHION_MNIST.*apt-get install dataset-fashion-mnist"):
        fm.load_fashion_mnist("test", download=False)


def test_load_downloads_when_missing(isolated, monkeypatch):
    mirror = make_dataset(isolated / "mirror")
    real_fetch = fm.fetch_fashion_mnist
    monkeypatch.setattr(
        fm,
        "fetch_fashion_mnist",
        lambda: real_fetch(urls=[mirror.as_uri()], allow_apt=False, expected_counts=SMALL_COUNTS),
    )
    X, y = fm.load_fashion_mnist("train")
    assert X.shape == (N_TRAIN, 784) and len(y) == N_TRAIN
    assert fm.find_fashion_mnist() == isolated / "cache" / "neuroemu" / "fashion-mnist"


def test_load_rejects_wrong_image_shape(isolated):
    directory = make_dataset(isolated / "fm")
    fm.write_idx(directory / "t10k-images-idx3-ubyte.gz", np.zeros((N_TEST, 14, 14), dtype=np.uint8))
    with pytest.raises(DataError, match=r"t10k-images.*expected shape \(n, 28, 28\)"):
        fm.load_fashion_mnist("test", data_dir=directory)


def test_class_names():
    assert len(fm.CLASS_NAMES) == 10 and fm.CLASS_NAMES[0] == "T-shirt/top" and fm.CLASS_NAMES[9] == "Ankle boot"


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_test_split():
    X, y = fm.load_fashion_mnist("test", data_dir=DEBIAN_DIR, download=False)
    assert X.shape == (10000, 784) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert set(np.unique(y).tolist()) == set(range(10))


def test_write_idx_gz_is_reproducible(tmp_path):
    """No timestamp in the gzip header: mirrors written a second apart hold the same bytes."""
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    fm.write_idx(tmp_path / "a.idx.gz", a)
    first = (tmp_path / "a.idx.gz").read_bytes()
    assert first[4:8] == b"\0\0\0\0"  # the gzip header's MTIME field
    np.testing.assert_array_equal(fm.read_idx(tmp_path / "a.idx.gz"), a)
    fm.write_idx(tmp_path / "a.idx.gz", a)
    assert (tmp_path / "a.idx.gz").read_bytes() == first


# --------------------------------------------------------------------------- verification


def test_a_file_of_the_published_size_must_have_the_published_hash(isolated):
    directory = make_dataset(isolated / "fm")
    rng = np.random.default_rng(1)
    fm.write_idx(directory / "t10k-images-idx3-ubyte.gz", np.zeros((10000, 28, 28), dtype=np.uint8))
    fm.write_idx(directory / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 10000).astype(np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: SHA-256 of the IDX data is .* expected "
                                        r"5b4141f0afbad91e.*corrupt or not Fashion-MNIST"):
        fm.load_fashion_mnist("test", data_dir=directory)
    X, y = fm.load_fashion_mnist("test", data_dir=directory, verify=False)  # another dataset of the same format
    assert X.shape == (10000, 784) and y.shape == (10000,)
    assert fm.load_fashion_mnist("train", data_dir=directory)[0].shape == (N_TRAIN, 784)  # small files: no hash


def test_verify_names_a_file_that_is_not_the_published_one(isolated):
    directory = make_dataset(isolated / "fm")
    with pytest.raises(DataError, match=r"fm/train-images-idx3-ubyte.gz: 3936 bytes of IDX data; expected 47040016"):
        fm.verify_fashion_mnist(directory)


needs_debian = pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="Debian package dataset-fashion-mnist not installed")


def copy_of_debian(directory: Path) -> Path:
    """The test split copied (it is small), the train split linked."""
    directory.mkdir()
    for name in fm._ALL_FILES:
        src = DEBIAN_DIR / f"{name}.gz"
        if name.startswith("t10k"):
            (directory / src.name).write_bytes(src.read_bytes())
        else:
            (directory / src.name).symlink_to(src)
    return directory


@needs_debian
def test_verify_the_debian_files_and_name_a_corrupt_one(isolated):
    directory = copy_of_debian(isolated / "fm")
    assert fm.verify_fashion_mnist(directory) == directory
    labels = directory / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid label file, but not the published one
    labels.unlink()
    (directory / "t10k-labels-idx1-ubyte").write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"fm/t10k-labels-idx1-ubyte: SHA-256 of the IDX data .* expected 0402a96d"):
        fm.verify_fashion_mnist(directory)
    with pytest.raises(DataError, match=r"fm/t10k-labels-idx1-ubyte: SHA-256"):
        fm.load_fashion_mnist("test", data_dir=directory)


@needs_debian
def test_the_hash_is_checked_once_per_file_version(isolated, monkeypatch):
    directory = copy_of_debian(isolated / "fm")
    fm.load_fashion_mnist("test", data_dir=directory)
    assert (isolated / "cache" / "neuroemu" / "fashion-mnist-verified.json").is_file()
    checked = []
    monkeypatch.setattr(fm, "_check_published", lambda name, *args, **kwargs: checked.append(name))
    fm.load_fashion_mnist("test", data_dir=directory)
    assert checked == []  # remembered by path, size and mtime
    os.utime(directory / "t10k-labels-idx1-ubyte.gz", ns=(0, 0))
    fm.load_fashion_mnist("test", data_dir=directory)
    assert checked == ["t10k-labels-idx1-ubyte"]
