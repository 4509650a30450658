"""Fashion-MNIST: IDX file I/O, local discovery, fetching and loading.

Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST: a Novel Image
Dataset for Benchmarking Machine Learning Algorithms", arXiv:1708.07747) is a
drop-in replacement for MNIST: 70,000 greyscale 28x28 images of Zalando
articles in 10 classes, split into 60,000 training and 10,000 test samples and
distributed as four gzip-compressed IDX files.

The data directory is looked up, in order, at

1. the ``data_dir`` argument;
2. ``$NEUROEMU_FASHION_MNIST``;
3. ``$NEUROEMU_DATA/fashion-mnist``;
4. ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``);
5. ``$XDG_CACHE_HOME/neuroemu/fashion-mnist`` (default ``~/.cache/neuroemu/fashion-mnist``).

A directory qualifies when it holds all four files, each either gzipped
(``train-images-idx3-ubyte.gz``) or uncompressed (``train-images-idx3-ubyte``).
When nothing is found, :func:`fetch_fashion_mnist` installs the Debian package
(as root, where ``apt-get`` exists) or downloads the files into the cache.

A file whose IDX data has the published size is checked against the published
SHA-256 (:data:`PUBLISHED`) on first use; :func:`verify_fashion_mnist` checks
all four strictly (``neuroemu data fashion-mnist`` does).
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from neuroemu.errors import DataError
from neuroemu.io import atomic_write_json

__all__ = [
    "CLASS_NAMES",
    "DEBIAN_DIR",
    "DEFAULT_URLS",
    "EXPECTED_COUNTS",
    "PUBLISHED",
    "fetch_fashion_mnist",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
    "verify_fashion_mnist",
    "write_idx",
]

CLASS_NAMES: tuple[str, ...] = (
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
)

#: Samples per split in the published dataset.
EXPECTED_COUNTS: Mapping[str, int] = {"train": 60000, "test": 10000}

#: Size in bytes and SHA-256 of the *decompressed* IDX data of each published file (hashes of the
#: ``.gz`` files differ between sources: Debian re-gzips them without the embedded file name). Computed
#: from the Debian package ``dataset-fashion-mnist``; the sizes are those the dataset publishes.
PUBLISHED: Mapping[str, tuple[int, str]] = {
    "train-images-idx3-ubyte": (47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte": (60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte": (7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte": (10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

#: Mirror base URLs; each serves the four ``.gz`` files under their standard names.
DEFAULT_URLS: tuple[str, ...] = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)

#: Install location of the Debian package ``dataset-fashion-mnist``.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

APT_PACKAGE = "dataset-fashion-mnist"
IMAGE_SHAPE = (28, 28)

# Base file names (without ``.gz``) per split and kind.
_FILES: Mapping[str, Mapping[str, str]] = {
    "train": {"images": "train-images-idx3-ubyte", "labels": "train-labels-idx1-ubyte"},
    "test": {"images": "t10k-images-idx3-ubyte", "labels": "t10k-labels-idx1-ubyte"},
}
# Base file name -> (kind, split).
_ROLES: Mapping[str, tuple[str, str]] = {
    base: (kind, split) for split, files in _FILES.items() for kind, base in files.items()
}
_ALL_FILES = tuple(_ROLES)

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> element dtype (IDX payloads are big-endian).
_IDX_DTYPES: Mapping[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES: Mapping[np.dtype, int] = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


# --------------------------------------------------------------------------- IDX I/O


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (raw or gzip-compressed) into a native-endian array.

    Compression is detected from the gzip magic bytes, not the file name. The
    header (magic number, type code, dimensions) and the payload length are
    validated; any problem raises :class:`DataError` naming ``path``.
    """
    path = Path(path)
    return _parse_idx(_read_bytes(path), path)


def _read_bytes(path: Path) -> bytes:
    """The IDX data of ``path``, decompressed when it is gzipped."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read IDX file ({exc.strerror or exc})") from exc
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(f"{path}: truncated or corrupt gzip data ({exc})") from exc
    return data


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    if len(data) < 4:
        raise DataError(f"{path}: file has {len(data)} bytes; expected an IDX header of at least 4 bytes")
    zero, code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{data[:4].hex()}; expected 0x0000TTNN with type code TT "
            f"in {{{', '.join(f'{c:02x}' for c in _IDX_DTYPES)}}} and NN >= 1 dimensions"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header; expected {ndim} dimension sizes ({header} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"{path}: IDX payload {problem}: {actual} bytes, expected {expected} for shape {shape} of {dtype.name}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # native byte order, writable copy


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file; gzip-compress when ``path`` ends with ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64. Returns the path.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        supported = ", ".join(sorted(dt.name for dt in _IDX_CODES))
        raise DataError(f"{path}: cannot write dtype {array.dtype} as IDX; expected one of {supported}")
    if not 1 <= array.ndim <= 255 or any(d >= 2**32 for d in array.shape):
        raise DataError(f"{path}: cannot write shape {array.shape} as IDX; expected 1-255 dimensions below 2**32")
    payload = (
        bytes([0, 0, code, array.ndim])
        + np.asarray(array.shape, dtype=">u4").tobytes()
        + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    )
    if path.name.endswith(".gz"):
        payload = gzip.compress(payload, mtime=0)  # no timestamp: the same array, the same bytes
    try:
        path.write_bytes(payload)
    except OSError as exc:
        raise DataError(f"{path}: cannot write IDX file ({exc.strerror or exc})") from exc
    return path


# --------------------------------------------------------------------------- discovery


def _cache_dir() -> Path:
    """The per-user download directory, honouring ``XDG_CACHE_HOME``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "neuroemu" / "fashion-mnist"


def _locate(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Map each base file name to the file present in ``directory`` (uncompressed
    preferred over ``.gz``); also return the names that are missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for name in _ALL_FILES:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            missing.append(name)
    return found, missing


def _is_complete(directory: Path) -> bool:
    return not _locate(directory)[1]


def _require_complete(directory: Path, origin: str) -> Path:
    """Return ``directory`` if it holds all four files, else raise listing what is missing."""
    if not directory.is_dir():
        raise DataError(f"{directory} ({origin}): not a directory; expected a directory with the Fashion-MNIST files")
    _, missing = _locate(directory)
    if missing:
        raise DataError(
            f"{directory} ({origin}): missing Fashion-MNIST files: "
            + ", ".join(f"{name}[.gz]" for name in missing)
        )
    return directory


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "")
    return Path(value).expanduser() if value else None


def find_fashion_mnist(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Return the first directory holding all four Fashion-MNIST files, or None.

    ``data_dir`` and ``$NEUROEMU_FASHION_MNIST`` name one directory explicitly:
    if it is incomplete, :class:`DataError` lists the missing files instead of
    falling back to the other locations. ``$NEUROEMU_DATA/fashion-mnist``, the
    Debian package directory and the user cache are used only when complete.
    """
    if data_dir is not None:
        return _require_complete(Path(data_dir).expanduser(), "data_dir argument")
    explicit = _env_path("NEUROEMU_FASHION_MNIST")
    if explicit is not None:
        return _require_complete(explicit, "$NEUROEMU_FASHION_MNIST")
    data_root = _env_path("NEUROEMU_DATA")
    candidates = [data_root / "fashion-mnist"] if data_root is not None else []
    candidates += [DEBIAN_DIR, _cache_dir()]
    for directory in candidates:
        if _is_complete(directory):
            return directory
    return None


def _instructions() -> str:
    return (
        "To provide Fashion-MNIST, either set NEUROEMU_FASHION_MNIST to a directory holding "
        f"{', '.join(f'{name}.gz' for name in _ALL_FILES)} (gzipped or not); "
        f"or run 'apt-get install {APT_PACKAGE}' (installs into {DEBIAN_DIR}); "
        f"or download those four files from {DEFAULT_URLS[0]} into {_cache_dir()}."
    )


# --------------------------------------------------------------------------- validation


def _validate(array: np.ndarray, path: Path, kind: str, count: int | None = None) -> None:
    """Check that ``array`` read from ``path`` is a uint8 image stack or label vector."""
    tail = IMAGE_SHAPE if kind == "images" else ()
    if array.dtype != np.uint8 or array.ndim != 1 + len(tail) or array.shape[1:] != tail:
        expected = ", ".join(("n",) + tuple(map(str, tail))) + ("," if not tail else "")
        raise DataError(
            f"{path}: Fashion-MNIST {kind} have shape {array.shape} and dtype {array.dtype}; "
            f"expected shape ({expected}) of uint8"
        )
    if count is not None and array.shape[0] != count:
        raise DataError(f"{path}: holds {array.shape[0]} {kind}; expected {count}")
    if kind == "labels" and array.size and array.max() >= len(CLASS_NAMES):
        raise DataError(f"{path}: label {int(array.max())} out of range; expected 0..{len(CLASS_NAMES) - 1}")


def _check_published(name: str, path: Path, data: bytes, *, strict: bool) -> None:
    """Compare the IDX data of ``path`` with the published file ``name`` (see :data:`PUBLISHED`). Data
    of the published size must have its SHA-256; with ``strict``, any other size is an error too."""
    size, digest = PUBLISHED[name]
    if len(data) != size:
        if strict:
            raise DataError(f"{path}: {len(data)} bytes of IDX data; expected {size}, the size of the published "
                            f"{name} (the file is corrupt or not Fashion-MNIST)")
        return
    got = hashlib.sha256(data).hexdigest()
    if got != digest:
        raise DataError(f"{path}: SHA-256 of the IDX data is {got[:16]}..., expected {digest[:16]}... (the published "
                        f"{name}); the file is corrupt or not Fashion-MNIST")


def _stamp_file() -> Path:
    """Where files already hashed are remembered (path -> size and mtime), in the user cache."""
    return _cache_dir().parent / "fashion-mnist-verified.json"


def _stamp_key(path: Path) -> tuple[str, list[int]]:
    st = path.stat()
    return str(path.resolve()), [st.st_size, st.st_mtime_ns]


def _stamps() -> dict[str, list[int]]:
    try:
        stamps = json.loads(_stamp_file().read_text())
        return stamps if isinstance(stamps, dict) else {}
    except (OSError, ValueError):
        return {}


def _is_verified(path: Path) -> bool:
    key, value = _stamp_key(path)
    return _stamps().get(key) == value


def _remember_verified(path: Path) -> None:
    """Record that ``path`` (as it is now) matches its published hash; forget files that are gone."""
    key, value = _stamp_key(path)
    stamps = {k: v for k, v in _stamps().items() if os.path.exists(k)}
    stamps[key] = value
    try:
        atomic_write_json(_stamp_file(), stamps)
    except OSError:
        pass  # no writable cache: the hash is checked again next time


def _load_file(name: str, path: Path, count: int | None = None, *, verify: bool = True) -> np.ndarray:
    """Read one of the four files, check it against :data:`PUBLISHED` (once per file version, when it
    has the published size) and validate its shape, dtype, labels and ``count``."""
    data = _read_bytes(path)
    if verify and len(data) == PUBLISHED[name][0] and not _is_verified(path):
        _check_published(name, path, data, strict=False)
        _remember_verified(path)
    array = _parse_idx(data, path)
    _validate(array, path, _ROLES[name][0], count)
    return array


def verify_fashion_mnist(directory: str | os.PathLike) -> Path:
    """Check that ``directory`` holds the four published Fashion-MNIST files (raw or gzipped): the
    size and SHA-256 of each file's IDX data. Raises :class:`DataError` naming the first file that is
    missing, unreadable or differs; returns the directory."""
    directory = _require_complete(Path(directory).expanduser(), "verify_fashion_mnist")
    found, _ = _locate(directory)
    for name in _ALL_FILES:
        _check_published(name, found[name], _read_bytes(found[name]), strict=True)
        _remember_verified(found[name])
    return directory


# --------------------------------------------------------------------------- fetching


def _apt_available() -> bool:
    """True when running as root on a system with ``apt-get``."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None


def _run_command(cmd: Sequence[str]) -> bool:
    """Run ``cmd`` with its output on stderr; return whether it succeeded."""
    print(f"neuroemu: running {' '.join(cmd)}", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        return subprocess.run(list(cmd), stdout=2, stderr=2, env=env, check=False).returncode == 0
    except OSError as exc:
        print(f"neuroemu: {cmd[0]} failed to start: {exc}", file=sys.stderr)
        return False


def _apt_install() -> bool:
    """Install the Debian package (running ``apt-get update`` once on failure).

    Returns True when :data:`DEBIAN_DIR` is complete afterwards.
    """
    install = ["apt-get", "install", "-y", APT_PACKAGE]
    if not _run_command(install):
        _run_command(["apt-get", "update"])
        _run_command(install)
    complete = _is_complete(DEBIAN_DIR)
    if not complete:
        print(f"neuroemu: {APT_PACKAGE} did not provide {DEBIAN_DIR}; downloading instead", file=sys.stderr)
    return complete


def _download_one(name: str, target: Path, urls: Sequence[str], timeout: float, count: int) -> list[str]:
    """Fetch ``name.gz`` from the first mirror that serves a valid file.

    Writes atomically into ``target``; returns the per-mirror errors (empty on success).
    """
    errors: list[str] = []
    for base in urls:
        url = (base if base.endswith("/") else base + "/") + f"{name}.gz"
        tmp: Path | None = None
        try:
            print(f"neuroemu: downloading {url}", file=sys.stderr, flush=True)
            fd, tmp_name = tempfile.mkstemp(dir=target, prefix=f".{name}.", suffix=".part")
            tmp = Path(tmp_name)
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
                shutil.copyfileobj(response, out)
            _load_file(name, tmp, count)
            os.replace(tmp, target / f"{name}.gz")
            return []
        except (OSError, ValueError, http.client.HTTPException, DataError) as exc:
            errors.append(f"{url}: {exc}")
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    return errors


def fetch_fashion_mnist(
    dest: str | os.PathLike | None = None,
    *,
    urls: Sequence[str] | None = None,
    timeout: float = 10.0,
    allow_apt: bool = True,
    expected_counts: Mapping[str, int] | None = None,
) -> Path:
    """Make the four Fashion-MNIST files available locally and return their directory.

    With ``dest=None``: an existing Debian installation is returned as is;
    otherwise, if ``allow_apt`` and running as root with ``apt-get``, the
    package ``dataset-fashion-mnist`` is installed. If that is not possible or
    fails, the ``.gz`` files are downloaded from the mirror base ``urls``
    (default :data:`DEFAULT_URLS`; ``file://`` works too) into ``dest`` or the
    user cache. Files already present there and valid are kept. Each download
    is written to a temporary file, checked (IDX header, published SHA-256 and
    ``expected_counts``, default :data:`EXPECTED_COUNTS`), then moved into place.
    Raises :class:`DataError` explaining the alternatives when all mirrors fail.
    """
    counts = {**EXPECTED_COUNTS, **(expected_counts or {})}
    if dest is None:
        if _is_complete(DEBIAN_DIR):
            return DEBIAN_DIR
        target = _cache_dir()
        if allow_apt and not _is_complete(target) and _apt_available() and _apt_install():
            return DEBIAN_DIR
    else:
        target = Path(dest).expanduser()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{target}: cannot create download directory ({exc.strerror or exc}). {_instructions()}"
        ) from exc

    found, _ = _locate(target)
    failures: list[str] = []
    for name in _ALL_FILES:
        split = _ROLES[name][1]
        if name in found:
            try:
                _load_file(name, found[name], counts[split])
                continue
            except DataError as exc:
                print(f"neuroemu: replacing invalid file: {exc}", file=sys.stderr)
        failures += _download_one(name, target, tuple(urls or DEFAULT_URLS), timeout, counts[split])
    if failures:
        raise DataError(
            f"could not download Fashion-MNIST into {target}: " + "; ".join(failures) + f". {_instructions()}"
        )
    return target


# --------------------------------------------------------------------------- loading


def load_fashion_mnist(
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    dtype: npt.DTypeLike = np.float32,
    flatten: bool = True,
    normalize: bool = True,
    limit: int | None = None,
    verify: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of Fashion-MNIST.

    Returns ``(X, y)``: ``X`` of ``dtype`` with shape ``(n, 784)`` (or
    ``(n, 28, 28)`` with ``flatten=False``), scaled to [0, 1] when
    ``normalize``; ``y`` int64 class indices into :data:`CLASS_NAMES`.
    ``limit`` keeps the first ``limit`` samples. The data directory is found
    by :func:`find_fashion_mnist`; if none is found it is fetched with
    :func:`fetch_fashion_mnist` when ``download`` is true.

    Every file is checked for a valid IDX header and length. A file whose data has the published
    size must also have the published SHA-256 (:data:`PUBLISHED`); it is hashed once and remembered
    by path, size and modification time. ``verify=False`` skips the hash, e.g. to read another
    dataset in the same format (MNIST has the same file names and sizes). Smaller files, such as
    subsets written with :func:`write_idx`, are not hashed.
    """
    if split not in _FILES:
        raise DataError(f"unknown Fashion-MNIST split {split!r}; expected one of {', '.join(map(repr, _FILES))}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0):
        raise DataError(f"limit={limit!r}; expected a non-negative integer or None")
    dtype = np.dtype(dtype)
    if normalize and not np.issubdtype(dtype, np.floating):
        raise DataError(f"normalize=True needs a floating dtype; got {dtype}")

    directory = find_fashion_mnist(data_dir)
    if directory is None:
        if not download:
            raise DataError(f"Fashion-MNIST not found (download=False). {_instructions()}")
        directory = fetch_fashion_mnist()

    found, _ = _locate(directory)
    image_name, label_name = _FILES[split]["images"], _FILES[split]["labels"]
    image_path, label_path = found[image_name], found[label_name]
    images = _load_file(image_name, image_path, verify=verify)
    labels = _load_file(label_name, label_path, verify=verify)
    if len(images) != len(labels):
        raise DataError(
            f"{image_path} holds {len(images)} images but {label_path} holds {len(labels)} labels; "
            "expected equal counts"
        )

    images, labels = images[:limit], labels[:limit]
    X = images.reshape(len(images), -1) if flatten else images
    X = X.astype(dtype)
    if normalize:
        X /= 255.0
    return X, labels.astype(np.int64)
