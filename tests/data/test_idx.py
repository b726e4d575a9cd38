"""IDX files: written here, small, plain and gzip, valid and corrupt."""

import gzip

import numpy as np
import pytest

from chainrule.data import IdxError, load_idx_dir, read_idx, write_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4) * 10
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_big_endian_on_disk(tmp_path):
    path = tmp_path / "x"
    write_idx(path, np.array([1, 258], np.int16))
    assert path.read_bytes() == bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0, 1, 1, 2])


def _mnist_dir(tmp_path, n_images=5, n_labels=5, gz=False, prefix="train"):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_images, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, n_labels).astype(np.uint8)
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split,prefix", [("train", "train"), ("test", "t10k")])
def test_load_idx_dir(tmp_path, gz, split, prefix):
    images, labels = _mnist_dir(tmp_path, gz=gz, prefix=prefix)
    X, y = load_idx_dir(tmp_path, split)
    assert X.shape == (5, 784) and X.dtype == np.float32
    assert y.dtype == np.int64
    np.testing.assert_allclose(X * 255, images.reshape(5, -1), atol=1e-4)
    np.testing.assert_array_equal(y, labels)
    assert 0.0 <= X.min() and X.max() <= 1.0


def test_count_mismatch(tmp_path):
    _mnist_dir(tmp_path, n_images=5, n_labels=4)
    with pytest.raises(IdxError, match="5 images .* but 4 labels"):
        load_idx_dir(tmp_path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_idx(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_idx_dir(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such directory"):
        load_idx_dir(tmp_path / "missing")
    with pytest.raises(ValueError, match="split"):
        load_idx_dir(tmp_path, split="val")


def _corrupt(tmp_path, name, content: bytes):
    path = tmp_path / name
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("content,message", [
    (b"", "only 0 bytes"),
    (b"hello, world", "not an IDX file"),
    (bytes([0, 0, 0x07, 1, 0, 0, 0, 2, 1, 2]), "not an IDX file"),  # unknown type code
    (bytes([0, 0, 0x08, 2, 0, 0, 0, 2]), "truncated header"),
    (bytes([0, 0, 0x08, 1, 0, 0, 0, 4, 1, 2]), "truncated"),
    (bytes([0, 0, 0x08, 1, 0, 0, 0, 1, 1, 2]), "trailing bytes"),
    (bytes([0, 0, 0x0C, 1, 0, 0, 0, 1, 1, 2, 3]), "truncated"),  # int32 needs 4 bytes
])
def test_corrupt_files(tmp_path, content, message):
    path = _corrupt(tmp_path, "bad-idx", content)
    with pytest.raises(IdxError, match=message) as info:
        read_idx(path)
    assert "bad-idx" in str(info.value)


def test_truncated_gzip(tmp_path):
    path = tmp_path / "x.gz"
    write_idx(path, np.arange(1000, dtype=np.int32))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(IdxError, match="x.gz.*decompress"):
        read_idx(path)
    path.write_bytes(b"not gzip at all")
    with pytest.raises(IdxError, match="decompress"):
        read_idx(path)


def test_gzip_with_wrong_payload_size(tmp_path):
    path = tmp_path / "y.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(IdxError, match="y.gz: truncated"):
        read_idx(path)


def test_write_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "z", np.zeros(3, np.int64))
