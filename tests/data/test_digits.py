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
