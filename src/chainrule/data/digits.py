"""The 8x8 handwritten digits bundled with scikit-learn: real data, no download."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Split(NamedTuple):
    """Inputs and labels of one part of a dataset."""

    X: np.ndarray
    y: np.ndarray


class DigitsSplits(NamedTuple):
    """The train, validation and test parts of the digits."""

    train: Split
    val: Split
    test: Split


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: ``X`` float32 (1797, 64) in [0, 1] (pixel intensity / 16), ``y`` int64
    labels 0-9. Read from scikit-learn's bundled copy, so no network is needed."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    X = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    return X, y


def digits_splits(seed: int = 0, val_fraction: float = 0.1,
                  test_fraction: float = 0.2) -> DigitsSplits:
    """The digits shuffled with ``seed`` and cut into train / val / test parts.

    The same seed always gives the same split (it does not touch the library generator).
    ``splits.train.X``, ``splits.val.y`` and so on; each part unpacks as ``X, y``.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ValueError(f"digits_splits: {name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"digits_splits: val_fraction + test_fraction = "
                         f"{val_fraction + test_fraction} leaves no training data")
    X, y = load_digits()
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = int(round(len(X) * test_fraction))
    n_val = int(round(len(X) * val_fraction))
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return DigitsSplits(Split(X[train], y[train]), Split(X[val], y[val]),
                        Split(X[test], y[test]))
