"""DataLoader: batches of a dataset as tuples of Tensors, optionally shuffled."""

from __future__ import annotations

import numbers

import numpy as np

from chainrule.data.dataset import Subset, TensorDataset
from chainrule.random import generator
from chainrule.tensor import Tensor, as_array


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size`` samples.

    Each batch is a tuple of Tensors, one per field of a sample (``(x, y)`` for a
    `TensorDataset` of two arrays). With ``shuffle=True`` each epoch (each ``iter()``) visits
    the samples in a new random order: drawn from the library generator when ``seed`` is None
    (so `cr.manual_seed` and checkpointed RNG states make it repeatable), or for epoch ``e``
    from ``np.random.default_rng((seed, e))`` when a seed is given (``loader.epoch`` counts the
    epochs started and may be set to resume). ``drop_last=True`` drops a final short batch.

    A `TensorDataset` (or a `Subset` of one) is sliced a whole batch at a time; any other
    dataset is read sample by sample and the samples are stacked with ``np.stack``.
    """

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False,
                 drop_last: bool = False, seed=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or \
                batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got "
                             f"{batch_size!r}")
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(f"DataLoader: the dataset must define __len__ and __getitem__, got "
                            f"{type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        order = self._order()
        self.epoch += 1
        arrays, base = _sliceable(self.dataset)
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, len(order)), self.batch_size):
            batch = order[start:start + self.batch_size]
            if arrays is not None:
                rows = batch if base is None else base[batch]
                yield tuple(Tensor._wrap(a[rows]) for a in arrays)
            else:
                yield _collate([self.dataset[int(i)] for i in batch])

    def _order(self) -> np.ndarray:
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        rng = generator() if self.seed is None else np.random.default_rng((self.seed, self.epoch))
        return rng.permutation(n)


def _sliceable(dataset):
    """(arrays, base indices) when whole batches can be sliced out of arrays, else (None, None)."""
    if isinstance(dataset, TensorDataset):
        return dataset.arrays, None
    if isinstance(dataset, Subset):
        arrays, base = _sliceable(dataset.dataset)
        if arrays is not None:
            return arrays, dataset.indices if base is None else base[dataset.indices]
    return None, None


def _collate(samples):
    first = samples[0]
    if isinstance(first, tuple | list):
        sizes = {len(s) for s in samples}
        if len(sizes) != 1:
            raise ValueError(f"DataLoader: samples have different numbers of fields {sizes}")
        return tuple(_stack([s[k] for s in samples], k) for k in range(len(first)))
    return (_stack(samples, 0),)


def _stack(values, field):
    arrays = [as_array(v) for v in values]  # Python floats become float32, arrays keep dtype
    try:
        return Tensor._wrap(np.stack(arrays))
    except ValueError:
        shapes = sorted({a.shape for a in arrays})
        raise ValueError(f"DataLoader: cannot stack field {field} of a batch: the samples have "
                         f"different shapes {shapes}") from None
