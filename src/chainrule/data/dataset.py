"""Datasets: indexable collections of samples, and ways to split them."""

from __future__ import annotations

import math
import numbers

import numpy as np

from chainrule.random import generator
from chainrule.tensor import Tensor


class Dataset:
    """A collection of samples: subclasses define ``__len__`` and ``__getitem__(i)``, which
    returns one sample (an array, or a tuple of arrays such as ``(x, y)``)."""

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class TensorDataset(Dataset):
    """Samples are the rows of one or more arrays that share their first dimension.

    ``TensorDataset(X, y)[i]`` is ``(X[i], y[i])``. Arrays and Tensors are accepted; they are
    kept as arrays (Tensors are not copied) so a `DataLoader` can slice whole batches at once.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: needs at least one array")
        self.arrays = tuple(_as_array(a, i) for i, a in enumerate(arrays))
        lengths = [len(a) for a in self.arrays]
        if len(set(lengths)) != 1:
            shapes = ", ".join(str(a.shape) for a in self.arrays)
            raise ValueError(f"TensorDataset: all arrays must have the same first dimension, got "
                             f"shapes {shapes}")

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1:
            raise ValueError(f"Subset: indices must be one-dimensional, got shape "
                             f"{self.indices.shape}")
        n = len(dataset)
        if self.indices.size and (self.indices.min() < -n or self.indices.max() >= n):
            raise IndexError(f"Subset: indices must lie in [0, {n}) for a dataset of {n} samples, "
                             f"got values from {self.indices.min()} to {self.indices.max()}")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[int(self.indices[index])]


def random_split(dataset, lengths, seed=None) -> list[Subset]:
    """Split ``dataset`` into non-overlapping random `Subset`\\ s of the given ``lengths``.

    ``lengths`` are counts summing to ``len(dataset)``, or fractions summing to 1 (the samples
    left over by rounding go to the first subsets, one each, as torch does). ``seed=None`` draws
    the permutation from the library generator (`cr.manual_seed` makes it repeatable).
    """
    n = len(dataset)
    counts = _counts(lengths, n)
    rng = generator() if seed is None else np.random.default_rng(seed)
    order = rng.permutation(n)
    bounds = np.cumsum([0] + counts)
    return [Subset(dataset, order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _counts(lengths, n) -> list[int]:
    lengths = list(lengths)
    if not lengths or not all(isinstance(x, numbers.Real) and x >= 0 for x in lengths):
        raise ValueError(f"random_split: lengths must be non-negative numbers, got {lengths}")
    if all(isinstance(x, numbers.Integral) for x in lengths):
        if sum(lengths) != n:
            raise ValueError(f"random_split: lengths {lengths} sum to {sum(lengths)}, but the "
                             f"dataset has {n} samples")
        return [int(x) for x in lengths]
    if not math.isclose(sum(lengths), 1.0, abs_tol=1e-6):
        raise ValueError(f"random_split: fractions {lengths} sum to {sum(lengths)}, not 1")
    counts = [int(math.floor(n * f)) for f in lengths]
    for i in range(n - sum(counts)):
        counts[i % len(counts)] += 1
    return counts


def _as_array(a, i) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.data
    array = np.asarray(a)
    if array.ndim == 0:
        raise ValueError(f"TensorDataset: array {i} is a scalar; every array needs a first "
                         f"dimension indexing the samples")
    if array.dtype == np.float64 and not isinstance(a, np.ndarray):
        array = array.astype(np.float32)  # Python floats: float32, as everywhere in chainrule
    return array
