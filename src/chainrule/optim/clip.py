"""Gradient clipping by total norm."""

from __future__ import annotations

import math

import numpy as np

from chainrule import autograd
from chainrule.tensor import Tensor


def clip_grad_norm_(parameters, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale the gradients of ``parameters`` in place so their joint norm is at most ``max_norm``.

    The joint norm is the ``norm_type``-norm of all gradients taken as one vector (``inf``: the
    largest absolute entry). Returns that norm, measured before clipping, as a 0-d tensor.
    Parameters without a gradient are ignored. Same as ``torch.nn.utils.clip_grad_norm_``.
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    parameters = list(parameters)  # a generator (model.parameters()) would be spent
    autograd.effect("clip_grad_norm_", clip_grad_norm_, parameters, max_norm, norm_type,
                    error_if_nonfinite)  # a compiled training step clips again at each replay
    grads = [p.grad for p in parameters if p.grad is not None]
    norm_type = float(norm_type)
    if math.isnan(norm_type) or norm_type <= 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be a positive number or inf, got "
                         f"{norm_type}")
    max_norm = float(max_norm)
    if not grads:
        return Tensor(np.zeros((), np.float32))
    dtype = np.result_type(*[g.data.dtype for g in grads])
    norms = np.array([_vector_norm(g.data, norm_type) for g in grads], dtype)
    total = _vector_norm(norms, norm_type)
    if error_if_nonfinite and not np.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total {norm_type}-norm of the gradients is "
                           f"{total}; pass error_if_nonfinite=False to clip anyway")
    # torch always scales (by at most 1), so clipped and unclipped steps round the same way
    real = np.dtype(dtype).type
    coef = min(real(max_norm) / (total + real(1e-6)), real(1.0))
    for g in grads:
        g.data *= g.data.dtype.type(coef)
        g._version[0] += 1
    return Tensor(np.asarray(total, dtype))


def _vector_norm(x: np.ndarray, p: float):
    a = np.abs(x)
    if a.size == 0:
        return x.dtype.type(0)
    if p == math.inf:
        return a.max()
    if p == 2.0:
        return np.sqrt(np.dot(a.ravel(), a.ravel()))
    if p == 1.0:
        return a.sum()
    return np.sum(a**p) ** (1.0 / p)
