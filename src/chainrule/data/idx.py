"""The IDX file format of MNIST and Fashion-MNIST, read with full validation.

An IDX file is: two zero bytes, a type code, the number of dimensions ``d``, then ``d``
big-endian uint32 sizes, then the values, big-endian, row-major. Files may be gzip-compressed
(``.gz``). Put the four standard files of MNIST (or Fashion-MNIST) in a directory and call
`load_idx_dir`; nothing is downloaded.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np


class IdxError(ValueError):
    """A file that is not a valid IDX file; the message names the file and the problem."""


_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path) -> np.ndarray:
    """The array stored in the IDX file at ``path`` (plain or ``.gz``), in native byte order.

    Raises FileNotFoundError for a missing file and `IdxError` (a ValueError) for a wrong magic
    number, an unknown type code, or a file shorter or longer than its header says.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise IdxError(f"{path}: only {len(raw)} bytes; an IDX file starts with a 4-byte magic "
                       f"number")
    zero0, zero1, code, ndim = raw[:4]
    if zero0 != 0 or zero1 != 0 or code not in _TYPES:
        raise IdxError(f"{path}: not an IDX file (magic number {raw[:4].hex()}; expected 0000 "
                       f"followed by a type code in {[hex(c) for c in _TYPES]} and the number "
                       f"of dimensions)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxError(f"{path}: truncated header: {ndim} dimensions need {header} bytes, the "
                       f"file has {len(raw)}")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = _TYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "has trailing bytes"
        raise IdxError(f"{path}: {problem}: the header promises shape {shape} of {dtype.name} "
                       f"({expected} bytes in all) but the file has {len(raw)} bytes")
    data = np.frombuffer(raw, dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # a native, writable copy


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise FileNotFoundError(f"read_idx: no such file: {path}")
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise IdxError(f"{path}: cannot decompress the gzip file ({exc}); it is truncated or "
                       f"not gzip") from None


def load_idx_dir(directory, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """The images and labels of one split of an MNIST-style directory.

    Finds ``train-images-idx3-ubyte`` / ``train-labels-idx1-ubyte`` (``split='train'``) or the
    ``t10k-`` pair (``split='test'``), with or without ``.gz``. Returns ``X`` float32 of shape
    (N, rows * cols) scaled to [0, 1] and ``y`` int64 of shape (N,).
    """
    if split not in _NAMES:
        raise ValueError(f"load_idx_dir: split must be 'train' or 'test', got {split!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"load_idx_dir: no such directory: {directory}")
    images_path, labels_path = (_find(directory, name) for name in _NAMES[split])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise IdxError(f"{images_path}: expected uint8 images of shape (N, rows, cols), got "
                       f"{images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise IdxError(f"{labels_path}: expected labels of shape (N,), got {labels.shape}")
    if len(images) != len(labels):
        raise IdxError(f"{directory}: {len(images)} images in {images_path.name} but "
                       f"{len(labels)} labels in {labels_path.name}")
    X = images.reshape(len(images), -1).astype(np.float32)
    X /= np.float32(255)
    return X, labels.astype(np.int64)


def _find(directory: Path, name: str) -> Path:
    for candidate in (name, name + ".gz"):
        if (directory / candidate).is_file():
            return directory / candidate
    present = sorted(os.listdir(directory))[:10]
    raise FileNotFoundError(f"load_idx_dir: {directory} has neither {name} nor {name}.gz "
                            f"(it holds {present})")


def write_idx(path, array) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in _TYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"write_idx: IDX cannot store dtype {array.dtype}; use one of "
                         f"{[str(d.newbyteorder('=')) for d in _TYPES.values()]}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    body = header + array.astype(_TYPES[code]).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(body)
    else:
        path.write_bytes(body)
