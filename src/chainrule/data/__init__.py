"""Datasets, batching, and real data that needs no download.

``loader = cr.data.DataLoader(cr.data.TensorDataset(X, y), batch_size=64, shuffle=True)``;
``for xb, yb in loader: ...``. `load_digits` and `digits_splits` give the bundled
8x8 digits; `read_idx` and `load_idx_dir` read MNIST-style IDX files you already have.
"""

from chainrule.data.dataset import Dataset, Subset, TensorDataset, random_split  # noqa: F401
from chainrule.data.digits import DigitsSplits, Split, digits_splits, load_digits  # noqa: F401
from chainrule.data.idx import IdxError, load_idx_dir, read_idx, write_idx  # noqa: F401
from chainrule.data.loader import DataLoader  # noqa: F401

__all__ = ["Dataset", "TensorDataset", "Subset", "random_split", "DataLoader", "load_digits",
           "digits_splits", "DigitsSplits", "Split", "read_idx", "load_idx_dir", "write_idx",
           "IdxError"]
