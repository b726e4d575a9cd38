"""The 8x8 handwritten digits, shipped inside chainrule: real data, no download.

``digits.npz`` beside this file holds the 1797 images of the UCI "Optical Recognition of
Handwritten Digits" test set (E. Alpaydin, C. Kaynak, 1998; the copy scikit-learn bundles) as
uint8 pixel counts 0..16 and uint8 labels, 45 KB compressed; DIGITS.md gives its source and
licence (CC BY 4.0). Reading it takes milliseconds and needs only NumPy (no pickle).
"""

from __future__ import annotations

from pathlib import Path
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


DATA_FILE = Path(__file__).with_name("digits.npz")


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 1797 digits: ``X`` float32 (1797, 64) in [0, 1] (pixel count / 16), ``y`` int64
    labels 0-9, from the copy shipped in the package (no network, no scikit-learn)."""
    with np.load(DATA_FILE, allow_pickle=False) as f:
        pixels, labels = f["pixels"], f["labels"]
    X = (pixels / np.float32(16.0)).astype(np.float32)
    return X, labels.astype(np.int64)


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
