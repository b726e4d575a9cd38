"""Reductions of THE TABLE (see ``ops``): sum, mean, max, min, var/std, logsumexp, softmax,
argmax/argmin, each over ``axis`` (None, an int or a tuple) with ``keepdims``.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd import Primitive
from chainrule.ops.elementwise import _no_grad, equal_mask, exp, sqrt, where
from chainrule.ops.shape import _axes, _ndim, _one_axis, broadcast_to

P = Primitive


def _max_keepdims(x, axis):
    """``np.max(x, axis, keepdims=True)``. NumPy reduces a short last axis row by row, slowly
    (13 us for 128 x 10); on a transposed copy the same maximum takes a quarter of that."""
    if x.ndim == 2 and axis in (1, -1) and x.shape[1] <= 64 and x.dtype.kind == "f":
        return np.ascontiguousarray(x.T).max(axis=0)[:, None]
    return np.max(x, axis=axis, keepdims=True)


def _logsumexp(x, axis, keepdims, shape):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # all -inf (or an inf) along the axis: no shift
    out = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _softmax_forward(x, axis):
    e = np.exp(x - _max_keepdims(x, axis))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax_forward(x, axis):
    shifted = x - _max_keepdims(x, axis)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _restore_dims(g, shape, axis, keepdims):
    """``g`` of a reduction, reshaped to broadcast against the input it was reduced from."""
    if keepdims or g.ndim == len(shape):
        return g
    axes = range(len(shape)) if axis is None else axis
    return g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))


def _count(shape, axis):
    return int(np.prod([shape[i] for i in (range(len(shape)) if axis is None else axis)]))


def _max_grad(g, ans, x, axis, keepdims, shape):
    # Ties share the gradient equally (as torch.amax and numpy's max semantics suggest).
    mask = equal_mask(x, _restore_dims(ans, shape, axis, keepdims), dtype=g.dtype)
    return _restore_dims(g, shape, axis, keepdims) * mask / mask.sum(axis=axis, keepdims=True)
_argmax = _no_grad("argmax", lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims))
_argmin = _no_grad("argmin", lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims))

# --- reductions ---------------------------------------------------------------------------------
_sum = P("sum", lambda x, axis, keepdims, shape: np.sum(x, axis=axis, keepdims=keepdims),
         [lambda g, ans, x, axis, keepdims, shape:
          broadcast_to(_restore_dims(g, shape, axis, keepdims), shape)],
         ["grad broadcast back to x's shape"])
_mean = P("mean", lambda x, axis, keepdims, shape: np.mean(x, axis=axis, keepdims=keepdims),
          [lambda g, ans, x, axis, keepdims, shape:
           broadcast_to(_restore_dims(g, shape, axis, keepdims) / _count(shape, axis), shape)],
          ["grad / n, broadcast back"])
_max = P("max", lambda x, axis, keepdims, shape: np.max(x, axis=axis, keepdims=keepdims),
         [_max_grad], ["grad at the maximum (shared among ties)"])
_min = P("min", lambda x, axis, keepdims, shape: np.min(x, axis=axis, keepdims=keepdims),
         [_max_grad], ["grad at the minimum (shared among ties)"])
_var = P("var", lambda x, axis, keepdims, shape, ddof: np.var(x, axis=axis, keepdims=keepdims,
                                                              ddof=ddof),
         [lambda g, ans, x, axis, keepdims, shape, ddof:
          _restore_dims(g, shape, axis, keepdims) * (2 / (_count(shape, axis) - ddof))
          * (x - x.mean(axis=axis, keepdims=True))],
         ["grad * 2 (x - mean) / (n - ddof)"])
_logsumexp = P("logsumexp", _logsumexp,
               [lambda g, ans, x, axis, keepdims, shape:
                _restore_dims(g, shape, axis, keepdims)
                * exp(x - _restore_dims(ans, shape, axis, keepdims))],
               ["grad * softmax(x)"])
_softmax = P("softmax", _softmax_forward,
             [lambda g, ans, x, axis: ans * (g - (g * ans).sum(axis=axis, keepdims=True))],
             ["s * (grad - sum(grad * s))"])  # d softmax: g*s - s*sum(g*s)
_log_softmax = P("log_softmax", _log_softmax_forward,
                 [lambda g, ans, x, axis: g - exp(ans) * g.sum(axis=axis, keepdims=True)],
                 ["grad - softmax(x) * sum(grad)"])


def _reduce(row, name):
    def reduce(x, axis=None, keepdims=False):
        shape = np.shape(x)
        return row(x, axis=_axes(axis, len(shape), name), keepdims=bool(keepdims), shape=shape)

    reduce.__name__ = reduce.__qualname__ = name
    reduce.__doc__ = (f"``{name}`` over ``axis`` (None: all; int or tuple), keeping reduced axes "
                      f"as size 1 when ``keepdims``.")
    return reduce


sum = _reduce(_sum, "sum")
mean = _reduce(_mean, "mean")
max = _reduce(_max, "max")
min = _reduce(_min, "min")


def var(x, axis=None, keepdims=False, ddof=0):
    """Variance over ``axis`` with ``ddof`` delta degrees of freedom (NumPy's default 0)."""
    shape = np.shape(x)
    axis = _axes(axis, len(shape), "var")
    if _count(shape, axis) - ddof <= 0:
        raise ValueError(f"var: ddof={ddof} leaves no degrees of freedom for shape {shape}")
    return _var(x, axis=axis, keepdims=bool(keepdims), shape=shape, ddof=ddof)


def std(x, axis=None, keepdims=False, ddof=0):
    """Standard deviation: ``sqrt(var(x))``, with gradient 0 where it is 0 (as PyTorch) rather
    than the nan of sqrt's infinite slope times var's zero one."""
    v = var(x, axis, keepdims, ddof)
    positive = v > 0
    return where(positive, sqrt(where(positive, v, 1)), 0)


def argmax(x, axis=None, keepdims=False):
    """Index of the maximum (no gradient)."""
    return _argmax(x, axis=None if axis is None else _one_axis(axis, _ndim(x), "argmax"),
                   keepdims=keepdims)


def argmin(x, axis=None, keepdims=False):
    """Index of the minimum (no gradient)."""
    return _argmin(x, axis=None if axis is None else _one_axis(axis, _ndim(x), "argmin"),
                   keepdims=keepdims)


def softmax(x, axis=-1):
    """exp(x) / sum(exp(x)) along ``axis``, computed without overflow."""
    return _softmax(x, axis=_one_axis(axis, _ndim(x), "softmax"))


def log_softmax(x, axis=-1):
    """log(softmax(x)) along ``axis``, computed stably."""
    return _log_softmax(x, axis=_one_axis(axis, _ndim(x), "log_softmax"))
