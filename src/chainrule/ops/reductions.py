"""Reductions of THE TABLE (see ``ops``): sum, mean, max, min, var/std, logsumexp, softmax,
argmax/argmin, each over ``axis`` (None, an int or a tuple) with ``keepdims``.

PyTorch's ``dim=``/``keepdim=`` are accepted too. Where torch gives the call another meaning,
the PyTorch keyword gets PyTorch's: ``max``/``min`` with ``dim=`` return ``(values, indices)``
and ``var``/``std`` with ``dim=`` default to ``correction=1`` (README, "NumPy and PyTorch
spellings").
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from chainrule.autograd import Primitive
from chainrule.ops.elementwise import _no_grad, equal_mask, exp, sqrt, where
from chainrule.ops.shape import _axes, _ndim, _one_axis, _shape, broadcast_to, getitem, squeeze
from chainrule.tensor import Tensor

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


def _torch_axis(axis, dim, where):
    """``axis`` or PyTorch's ``dim`` (the same meaning), refusing both."""
    if axis is not None:
        raise TypeError(f"{where}: got both axis={axis!r} and dim={dim!r}; they are the same "
                        f"argument (NumPy's and PyTorch's name), pass one")
    return dim


def _torch_keepdims(keepdims, keepdim, where):
    """``keepdims`` or PyTorch's ``keepdim``, refusing both."""
    if keepdims:
        raise TypeError(f"{where}: got both keepdims and keepdim; they are the same argument "
                        f"(NumPy's and PyTorch's name), pass one")
    return bool(keepdim)


def _reduce(row, name):
    # dim/keepdim are explicit keywords defaulting to None (no **kwargs): the common call pays
    # two `is None` tests, nothing more.
    def reduce(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
        if dim is not None:
            axis = _torch_axis(axis, dim, name)
        if keepdim is not None:
            keepdims = _torch_keepdims(keepdims, keepdim, name)
        shape = _shape(x)
        return row(x, axis=_axes(axis, len(shape), name), keepdims=bool(keepdims), shape=shape)

    reduce.__name__ = reduce.__qualname__ = name
    reduce.__doc__ = (f"``{name}`` over ``axis`` (None: all; int or tuple), keeping reduced axes "
                      f"as size 1 when ``keepdims``. PyTorch's ``dim=`` and ``keepdim=`` are "
                      f"accepted with the same meaning.")
    return reduce


sum = _reduce(_sum, "sum")
mean = _reduce(_mean, "mean")
_max_values = _reduce(_max, "max")
_min_values = _reduce(_min, "min")

# What torch.max(x, dim) and torch.min(x, dim) return: a namedtuple, as torch.return_types.max.
MaxMin = namedtuple("MaxMin", ["values", "indices"])


def _values_and_indices(x, dim, keepdims, find, where):
    """PyTorch's ``max``/``min`` along ``dim``: ``(values, indices)``. The values are gathered
    at the indices, so the gradient goes to that one element, as in torch (NumPy's reading
    ``max(x, axis)`` shares it among ties)."""
    shape = _shape(x)
    d = _one_axis(dim, len(shape), where)
    wrap = Tensor._wrap if isinstance(x, Tensor) else np.asarray
    if not shape:  # a 0-d tensor: torch allows dim 0 or -1 and returns the value and index 0
        return MaxMin(x, wrap(np.zeros((), np.int64)))
    idx = find(x.data if isinstance(x, Tensor) else np.asarray(x), axis=d, keepdims=True)
    grids = list(np.ogrid[tuple(slice(n) for n in idx.shape)])
    grids[d] = idx
    values = getitem(x, tuple(grids))
    if not keepdims:
        values = squeeze(values, d)
        idx = np.squeeze(idx, axis=d)
    return MaxMin(values, wrap(idx))


def max(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The maximum over ``axis`` (None: all; int or tuple), keeping reduced axes as size 1 when
    ``keepdims`` (NumPy's ``max``; ties share the gradient).

    With PyTorch's ``dim=`` (an int), PyTorch's meaning: the namedtuple ``(values, indices)``,
    the gradient going to the element at the index (the first maximum)."""
    if dim is None:
        if keepdim is not None:
            keepdims = _torch_keepdims(keepdims, keepdim, "max")
        return _max_values(x, axis, keepdims)
    _torch_axis(axis, dim, "max")
    keep = _torch_keepdims(keepdims, keepdim, "max") if keepdim is not None else bool(keepdims)
    return _values_and_indices(x, dim, keep, np.argmax, "max")


def min(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The minimum over ``axis``; with PyTorch's ``dim=``, ``(values, indices)`` (see ``max``)."""
    if dim is None:
        if keepdim is not None:
            keepdims = _torch_keepdims(keepdims, keepdim, "min")
        return _min_values(x, axis, keepdims)
    _torch_axis(axis, dim, "min")
    keep = _torch_keepdims(keepdims, keepdim, "min") if keepdim is not None else bool(keepdims)
    return _values_and_indices(x, dim, keep, np.argmin, "min")


def _ddof(ddof, correction, unbiased, torch_default, where):
    """The delta degrees of freedom from NumPy's ``ddof`` or PyTorch's ``correction`` (the same
    number) or ``unbiased`` (True: 1, False: 0), at most one of them. None of them: PyTorch's
    default 1 when the call used PyTorch's ``dim=`` (``torch_default``), NumPy's 0 otherwise."""
    given = [(k, v) for k, v in (("ddof", ddof), ("correction", correction),
                                 ("unbiased", unbiased)) if v is not None]
    if len(given) > 1:
        raise TypeError(f"{where}: got {' and '.join(k for k, _ in given)}; they say the same "
                        f"thing (NumPy's ddof, PyTorch's correction or unbiased), pass one")
    if not given:
        return 1 if torch_default else 0
    key, value = given[0]
    if key == "unbiased":
        return 1 if value else 0
    return value


def var(x, axis=None, keepdims=False, ddof=None, *, dim=None, keepdim=None, correction=None,
        unbiased=None):
    """Variance over ``axis`` with ``ddof`` delta degrees of freedom (NumPy's default 0).

    PyTorch's spellings are accepted: ``correction=`` (= ddof), ``unbiased=`` (True: ddof 1),
    ``dim=``, ``keepdim=``. A call with ``dim=`` and none of ddof/correction/unbiased uses
    PyTorch's default, ``correction=1`` (unbiased), since that is what the same call means in
    torch; ``axis=`` or no axis keeps NumPy's 0."""
    torch_style = dim is not None
    if torch_style:
        axis = _torch_axis(axis, dim, "var")
    if keepdim is not None:
        keepdims = _torch_keepdims(keepdims, keepdim, "var")
    if ddof is None or correction is not None or unbiased is not None or torch_style:
        ddof = _ddof(ddof, correction, unbiased, torch_style, "var")
    shape = _shape(x)
    axis = _axes(axis, len(shape), "var")
    if _count(shape, axis) - ddof <= 0:
        raise ValueError(f"var: ddof={ddof} leaves no degrees of freedom for shape {shape}")
    return _var(x, axis=axis, keepdims=bool(keepdims), shape=shape, ddof=ddof)


def std(x, axis=None, keepdims=False, ddof=None, *, dim=None, keepdim=None, correction=None,
        unbiased=None):
    """Standard deviation: ``sqrt(var(x))``, with gradient 0 where it is 0 (as PyTorch) rather
    than the nan of sqrt's infinite slope times var's zero one. Arguments as ``var`` (with
    ``dim=``, PyTorch's default correction 1)."""
    v = var(x, axis, keepdims, ddof, dim=dim, keepdim=keepdim, correction=correction,
            unbiased=unbiased)
    positive = v > 0
    return where(positive, sqrt(where(positive, v, 1)), 0)


def argmax(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Index of the maximum (no gradient); ``dim=``/``keepdim=`` are accepted as PyTorch's."""
    if dim is not None:
        axis = _torch_axis(axis, dim, "argmax")
    if keepdim is not None:
        keepdims = _torch_keepdims(keepdims, keepdim, "argmax")
    return _argmax(x, axis=None if axis is None else _one_axis(axis, _ndim(x), "argmax"),
                   keepdims=bool(keepdims))


def argmin(x, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Index of the minimum (no gradient); ``dim=``/``keepdim=`` are accepted as PyTorch's."""
    if dim is not None:
        axis = _torch_axis(axis, dim, "argmin")
    if keepdim is not None:
        keepdims = _torch_keepdims(keepdims, keepdim, "argmin")
    return _argmin(x, axis=None if axis is None else _one_axis(axis, _ndim(x), "argmin"),
                   keepdims=bool(keepdims))


def softmax(x, axis=None, *, dim=None):
    """exp(x) / sum(exp(x)) along ``axis`` (default -1; PyTorch's ``dim=`` accepted), computed
    without overflow."""
    if dim is not None:
        axis = _torch_axis(axis, dim, "softmax")
    return _softmax(x, axis=_one_axis(-1 if axis is None else axis, _ndim(x), "softmax"))


def log_softmax(x, axis=None, *, dim=None):
    """log(softmax(x)) along ``axis`` (default -1; PyTorch's ``dim=`` accepted), computed
    stably."""
    if dim is not None:
        axis = _torch_axis(axis, dim, "log_softmax")
    return _log_softmax(x, axis=_one_axis(-1 if axis is None else axis, _ndim(x),
                                          "log_softmax"))
