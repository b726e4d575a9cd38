"""The bundled digits."""

import numpy as np
import pytest

from chainrule.data import digits_splits, load_digits


def test_load_digits():
    X, y = load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10))


def test_the_shipped_file_is_the_uci_digits():
    import hashlib

    from chainrule.data.digits import DATA_FILE

    with np.load(DATA_FILE, allow_pickle=False) as f:
        pixels, labels = f["pixels"], f["labels"]
    assert pixels.dtype == np.uint8 and pixels.max() == 16 and labels.max() == 9
    digest = hashlib.sha256(pixels.tobytes() + labels.tobytes()).hexdigest()
    assert digest == "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"
    assert (DATA_FILE.parent / "DIGITS.md").is_file()  # its source and licence


def test_same_images_as_scikit_learns_copy_when_it_is_installed():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = load_digits()
    bunch = datasets.load_digits()
    np.testing.assert_array_equal(X * 16, bunch.data.astype(np.float32))
    np.testing.assert_array_equal(y, bunch.target)


def test_loading_needs_no_scikit_learn():
    import subprocess
    import sys

    code = ("import sys; sys.modules['sklearn'] = None; import chainrule as cr; "
            "X, y = cr.data.load_digits(); print(X.shape, 'sklearn' in sys.modules and "
            "sys.modules['sklearn'] is not None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1797, 64) False"


def test_digits_splits_deterministic_and_disjoint():
    a, b, c = digits_splits(seed=3), digits_splits(seed=3), digits_splits(seed=4)
    assert len(a.train.X) + len(a.val.X) + len(a.test.X) == 1797
    assert len(a.test.X) == round(1797 * 0.2) and len(a.val.X) == round(1797 * 0.1)
    for part_a, part_b in zip(a, b):
        np.testing.assert_array_equal(part_a.X, part_b.X)
        np.testing.assert_array_equal(part_a.y, part_b.y)
    assert not np.array_equal(a.train.y, c.train.y)
    X, y = a.train  # each part unpacks as (X, y)
    assert X.dtype == np.float32 and y.dtype == np.int64
    total = np.concatenate([a.train.y, a.val.y, a.test.y])
    np.testing.assert_array_equal(np.bincount(total), np.bincount(load_digits()[1]))


def test_bad_fractions():
    with pytest.raises(ValueError, match="no training data"):
        digits_splits(val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match="test_fraction"):
        digits_splits(test_fraction=1.5)
