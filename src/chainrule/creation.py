"""Ways to make tensors: filled, ranged, random (random ones draw from `cr.manual_seed`'s
generator)."""

from __future__ import annotations

import numpy as np

from chainrule.random import generator
from chainrule.tensor import Tensor

_DEFAULT = np.float32


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def zeros(*shape, dtype=_DEFAULT, requires_grad=False) -> Tensor:
    return Tensor(np.zeros(_shape(shape), dtype), requires_grad=requires_grad)


def ones(*shape, dtype=_DEFAULT, requires_grad=False) -> Tensor:
    return Tensor(np.ones(_shape(shape), dtype), requires_grad=requires_grad)


def full(shape, value, dtype=_DEFAULT, requires_grad=False) -> Tensor:
    return Tensor(np.full(tuple(shape), value, dtype), requires_grad=requires_grad)


def zeros_like(t, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(np.zeros(np.shape(t), dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False) -> Tensor:
    return Tensor(np.ones(np.shape(t), dtype or t.dtype), requires_grad=requires_grad)


def arange(*args, dtype=None) -> Tensor:
    return Tensor(np.arange(*args, dtype=dtype))


def linspace(start, stop, num=50, dtype=_DEFAULT) -> Tensor:
    return Tensor(np.linspace(start, stop, num, dtype=dtype))


def eye(n, m=None, dtype=_DEFAULT) -> Tensor:
    return Tensor(np.eye(n, m, dtype=dtype))


def randn(*shape, dtype=_DEFAULT, requires_grad=False) -> Tensor:
    """Standard normal samples."""
    return Tensor(generator().standard_normal(_shape(shape), dtype=dtype),
                  requires_grad=requires_grad)


def rand(*shape, dtype=_DEFAULT, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1)."""
    return Tensor(generator().random(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def randint(low, high, shape) -> Tensor:
    """Integers in [low, high)."""
    return Tensor(generator().integers(low, high, size=tuple(shape)))
