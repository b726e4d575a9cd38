"""Ways to make tensors: filled, ranged, random (random ones draw from `cr.manual_seed`'s
generator)."""

from __future__ import annotations

import numpy as np

from chainrule import autograd
from chainrule.random import draw, generator
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
    return _sampled(_standard_normal, requires_grad, _shape(shape), dtype)


def rand(*shape, dtype=_DEFAULT, requires_grad=False) -> Tensor:
    """Uniform samples in [0, 1)."""
    return _sampled(_uniform, requires_grad, _shape(shape), dtype)


def randint(low, high, shape) -> Tensor:
    """Integers in [low, high)."""
    return _sampled(_integers, False, low, high, tuple(shape))


def _sampled(fn, requires_grad, *args):
    """A tensor of samples; inside `cr.compile`, a replay draws new ones (a new leaf that
    requires grad cannot be replayed: it is refused there)."""
    if requires_grad:
        autograd.untraceable("a random tensor that requires grad (a new leaf at every call)")
        return Tensor(fn(generator(), *args), requires_grad=True)
    return Tensor._wrap(draw(fn, *args))


def _standard_normal(rng, shape, dtype):
    return rng.standard_normal(shape, dtype=dtype)


def _uniform(rng, shape, dtype):
    return rng.random(shape, dtype=dtype)


def _integers(rng, low, high, shape):
    return rng.integers(low, high, size=shape)
