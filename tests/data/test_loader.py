"""Datasets, DataLoader and random_split."""

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule.data import DataLoader, Dataset, Subset, TensorDataset, random_split


def _data(n=10):
    X = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    y = np.arange(n, dtype=np.int64)
    return X, y


class Squares(Dataset):
    """A generic dataset: read one sample at a time."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full(2, i, np.float32), np.int64(i * i)


def test_tensor_dataset_items_and_errors():
    X, y = _data()
    ds = TensorDataset(X, cr.tensor(y))
    assert len(ds) == 10
    x3, y3 = ds[3]
    np.testing.assert_array_equal(x3, X[3])
    assert y3 == 3
    with pytest.raises(ValueError, match=r"same first dimension.*\(10, 3\).*\(9,\)"):
        TensorDataset(X, y[:9])
    with pytest.raises(ValueError, match="at least one"):
        TensorDataset()


@pytest.mark.parametrize("drop_last,sizes", [(False, [4, 4, 2]), (True, [4, 4])])
def test_batches_in_order(drop_last, sizes):
    X, y = _data()
    loader = DataLoader(TensorDataset(X, y), batch_size=4, drop_last=drop_last)
    batches = list(loader)
    assert len(loader) == len(batches) == len(sizes)
    assert [len(b[1]) for b in batches] == sizes
    for xb, yb in batches:
        assert isinstance(xb, cr.Tensor) and xb.dtype == np.float32 and yb.dtype == np.int64
        np.testing.assert_array_equal(xb.data, X[yb.data])
    np.testing.assert_array_equal(np.concatenate([b[1].data for b in batches]),
                                  np.arange(sum(sizes)))


def test_shuffle_is_a_new_permutation_each_epoch_and_repeatable_with_manual_seed():
    X, y = _data(50)
    loader = DataLoader(TensorDataset(X, y), batch_size=8, shuffle=True)

    def epoch():
        return np.concatenate([yb.data for _, yb in loader])

    cr.manual_seed(5)
    first, second = epoch(), epoch()
    assert sorted(first) == list(range(50))  # every sample exactly once
    assert not np.array_equal(first, np.arange(50))
    assert not np.array_equal(first, second)
    cr.manual_seed(5)
    np.testing.assert_array_equal(epoch(), first)
    np.testing.assert_array_equal(epoch(), second)


def test_explicit_seed_does_not_touch_library_generator():
    X, y = _data(30)
    state = cr.get_rng_state()
    a = DataLoader(TensorDataset(X, y), batch_size=30, shuffle=True, seed=7)
    b = DataLoader(TensorDataset(X, y), batch_size=30, shuffle=True, seed=7)
    a1, a2 = next(iter(a))[1].data, next(iter(a))[1].data
    assert not np.array_equal(a1, a2)
    np.testing.assert_array_equal(next(iter(b))[1].data, a1)
    b.epoch = 1  # resume at a given epoch
    np.testing.assert_array_equal(next(iter(b))[1].data, a2)
    assert cr.get_rng_state() == state


def test_generic_dataset_is_collated_with_stack():
    loader = DataLoader(Squares(5), batch_size=2)
    batches = list(loader)
    assert len(batches) == 3
    xb, yb = batches[1]
    np.testing.assert_array_equal(xb.data, [[2, 2], [3, 3]])
    np.testing.assert_array_equal(yb.data, [4, 9])
    assert xb.dtype == np.float32 and yb.dtype == np.int64


def test_ragged_samples_are_a_clear_error():
    class Ragged(Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return (np.zeros(i + 1),)

    with pytest.raises(ValueError, match="different shapes"):
        list(DataLoader(Ragged(), batch_size=2))


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(Squares(3), batch_size=0)


def test_same_batches_as_torch_without_shuffle():
    X, y = _data(11)
    ours = list(DataLoader(TensorDataset(X, y), batch_size=3))
    theirs = list(torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(X), torch.tensor(y)), batch_size=3))
    assert len(ours) == len(theirs)
    for (xb, yb), (txb, tyb) in zip(ours, theirs):
        np.testing.assert_array_equal(xb.data, txb.numpy())
        np.testing.assert_array_equal(yb.data, tyb.numpy())


@pytest.mark.parametrize("lengths,expected", [([3, 7], [3, 7]), ([0.3, 0.7], [3, 7]),
                                              ([0.25, 0.25, 0.5], [3, 2, 5])])
def test_random_split(lengths, expected):
    """Fractions are rounded down and the leftovers go one each to the first parts (as torch)."""
    X, y = _data()
    parts = random_split(TensorDataset(X, y), lengths, seed=1)
    assert [len(p) for p in parts] == expected
    seen = np.concatenate([p.indices for p in parts])
    assert sorted(seen) == list(range(10))
    again = random_split(TensorDataset(X, y), lengths, seed=1)
    for p, q in zip(parts, again):
        np.testing.assert_array_equal(p.indices, q.indices)
    # a Subset of a TensorDataset is still batched by slicing, in the subset's order
    xb, yb = next(iter(DataLoader(parts[-1], batch_size=100)))
    np.testing.assert_array_equal(yb.data, parts[-1].indices)
    np.testing.assert_array_equal(xb.data, X[parts[-1].indices])


@pytest.mark.parametrize("lengths", [[3, 3], [0.5, 0.6], [-1, 11]])
def test_random_split_bad_lengths(lengths):
    with pytest.raises(ValueError, match="random_split"):
        random_split(TensorDataset(*_data()), lengths)


def test_subset_of_generic_dataset_and_bad_indices():
    sub = Subset(Squares(6), [5, 1])
    assert len(sub) == 2 and sub[0][1] == 25
    with pytest.raises(IndexError, match="Subset"):
        Subset(Squares(3), [0, 3])
