"""chainrule.reductions: NumPy's remaining reductions and scans, differentiable to any order.

The rows below have the form of THE TABLE in ``ops/``: ``Primitive(name, forward, [rule per
input], [formulas])``, each rule ``rule(grad, ans, *inputs, **params)`` written only with
operators, methods shared by ``ndarray`` and ``Tensor`` and other rows, so one rule serves the
ordinary backward pass and ``create_graph=True``. The functions take NumPy's arguments (``axis``
None, an int or a tuple where NumPy allows it, ``keepdims``); on plain arrays they return what the
NumPy function returns, on Tensors a Tensor. Float32 stays float32.

Zeros are exact to every order, since no rule divides by one: where the input holds a zero (or
the product under- or overflows), ``prod`` multiplies the exclusive cumulative products from
both ends (the product of the *other* entries), and ``cumprod``'s rule is a first-order linear
recurrence, ``h[i] = a[i] h[i-1] + b[i]`` (the row ``_scan``), whose own gradient is the same
recurrence run the other way. Elsewhere both take PyTorch's quotient ``ans / x``, one pass.

Conventions where the derivative does not exist:

- ``sort``: the gradient goes back through the *stable* order (as ``torch.sort(stable=True)``),
  so tied entries each keep their own gradient. ``median`` (NumPy's: the mean of the two middle
  values for an even count) sends the gradient to the entries at the middle positions of that
  stable order, half to each when there are two; a slice holding a NaN (median NaN) sends it to
  its first NaN.
- ``ptp``, ``amax``/``amin``, ``nanmax``/``nanmin``: ties share the gradient equally, as the
  ``max``/``min`` rows do.
- The ``nan`` functions give the NaN entries gradient 0.
"""

from __future__ import annotations

import builtins
import warnings
from collections import namedtuple

import numpy as np

from chainrule import ops
from chainrule.autograd import Primitive
from chainrule.ops.reductions import _restore_dims
from chainrule.ops.shape import _axes, _ndim, _one_axis
from chainrule.tensor import Tensor

P = Primitive

__all__ = ["amax", "amin", "argsort", "average", "cumprod", "cumsum", "median", "nancumprod",
           "nancumsum", "nanmax", "nanmean", "nanmin", "nanprod", "nansum", "prod", "ptp", "sort"]

SortResult = namedtuple("SortResult", ["values", "indices"])  # torch.return_types.sort
MedianResult = namedtuple("MedianResult", ["values", "indices"])  # torch.return_types.median


# ----------------------------------------------------------------------------------------------
# Helpers (arrays only, or arrays and Tensors alike where said)
# ----------------------------------------------------------------------------------------------
def _data(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _lead(axis):
    return (slice(None),) * axis


def _line_order(ndim, axes):
    """The permutation that moves ``axes`` (None: all) to the end, and how many axes stay."""
    axes = tuple(range(ndim)) if axes is None else axes
    kept = [i for i in range(ndim) if i not in axes]
    return kept + list(axes), len(kept)


def _as_lines(x, axes):
    """Arrays or Tensors: ``x`` with the reduced ``axes`` moved last and merged into one, and
    the function that undoes it (for a result of the same shape)."""
    perm, n_kept = _line_order(x.ndim, axes)
    moves = perm != list(range(x.ndim))
    moved = ops.transpose(x, tuple(perm)) if moves else x
    moved_shape = tuple(moved.shape)
    lines = ops.reshape(moved, moved_shape[:n_kept] + (int(np.prod(moved_shape[n_kept:])),))
    inverse = tuple(np.argsort(perm).tolist())

    def back(y):
        y = ops.reshape(y, moved_shape)
        return ops.transpose(y, inverse) if moves else y

    return lines, back


def _shift_forward(x, axis, by, fill):
    """``out[i] = x[i - by]`` along ``axis``, ``fill`` where ``i - by`` falls outside."""
    out = np.full(x.shape, fill, dtype=x.dtype)
    n = x.shape[axis]
    k = builtins.min(builtins.abs(by), n)
    lead = _lead(axis)
    if by >= 0:
        out[lead + (slice(k, None),)] = x[lead + (slice(None, n - k),)]
    else:
        out[lead + (slice(None, n - k),)] = x[lead + (slice(k, None),)]
    return out


def _scan_forward(a, b, axis, reverse):
    """``h[i] = a[i] h[i-1] + b[i]`` along ``axis`` (``h[i+1]`` when ``reverse``), h = 0 before
    the start. Composing the affine steps pairwise (Hillis-Steele) takes log2(n) whole-array
    passes instead of n Python steps, and only multiplies and adds: exact at zeros."""
    a, b = np.broadcast_arrays(a, b)
    if reverse:
        a, b = np.flip(a, axis), np.flip(b, axis)
    dtype = np.result_type(a, b)
    coef, out = a.astype(dtype, copy=True), b.astype(dtype, copy=True)
    n = out.shape[axis]
    lead = _lead(axis)
    d = 1
    while d < n:
        hi, lo = lead + (slice(d, None),), lead + (slice(None, n - d),)
        out[hi] = coef[hi] * out[lo] + out[hi]
        coef[hi] = coef[hi] * coef[lo]
        d *= 2
    return np.flip(out, axis).copy() if reverse else out


def _cumsum_forward(x, axis, reverse):
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis=axis), axis).copy()
    return np.cumsum(x, axis=axis)


def _cumprod_forward(x, axis, reverse):
    if reverse:
        return np.flip(np.cumprod(np.flip(x, axis), axis=axis), axis).copy()
    return np.cumprod(x, axis=axis)


def _stable_pick(lines, ks):
    """One-hot masks (one per position in ``ks``) of the entry at position k of the stable
    sorted order along the last axis, in O(n): the k-th value from a partition, and among the
    entries equal to it the (k - #smaller + 1)-th in the original order."""
    part = np.partition(lines, ks, axis=-1)
    out = []
    for k in ks:
        v = part[..., k:k + 1]
        eq = lines == v
        less = np.sum(lines < v, axis=-1, keepdims=True)
        out.append(eq & (np.cumsum(eq, axis=-1) == k - less + 1))
    return out


def _first_nan(lines):
    """For the lines along the last axis that hold a NaN: (which lines, one-hot of the first)."""
    if lines.dtype.kind not in "fc":
        return None, None
    nan = np.isnan(lines)
    bad = nan.any(axis=-1)
    if not bad.any():
        return None, None
    first = np.zeros(lines.shape, bool)
    np.put_along_axis(first, np.argmax(nan, axis=-1)[..., None], True, axis=-1)
    return bad, first


def _median_weights(x, axis, dtype):
    """Where ``np.median`` takes its value from: 1 at the middle entry of the stable order (1/2
    at each of the two middle entries for an even count; 1 at the first NaN of a NaN slice)."""
    perm, n_kept = _line_order(x.ndim, axis)
    moved = np.transpose(x, perm)
    lines = moved.reshape(moved.shape[:n_kept] + (-1,))
    n = lines.shape[-1]
    w = np.zeros(lines.shape, dtype)
    if n:
        half = n // 2
        if n % 2:
            (mid,) = _stable_pick(lines, [half])
            w[mid] = 1
        else:
            lo, hi = _stable_pick(lines, [half - 1, half])
            w[lo] += 0.5
            w[hi] += 0.5
        bad, first = _first_nan(lines)
        if bad is not None:
            w[bad] = first[bad].astype(dtype)
    return np.transpose(w.reshape(moved.shape), np.argsort(perm))


def _stable_argsort(x, axis):
    """``np.argsort(x, axis, kind="stable")``, three times faster where nothing ties: the
    default sort's order is then the only one."""
    order = np.argsort(x, axis=axis)
    s = np.take_along_axis(x, order, axis)
    n = x.shape[axis]
    lead = _lead(axis)
    tied = np.any(s[lead + (slice(1, None),)] == s[lead + (slice(None, n - 1),)])
    if tied or (x.dtype.kind in "fc" and np.isnan(s).any()):
        return np.argsort(x, axis=axis, kind="stable")
    return order


def _put_forward(g, index, axis):
    """The adjoint of a permutation gather: ``g`` written back to the positions in ``index``."""
    out = np.empty_like(g)
    np.put_along_axis(out, index, g, axis=axis)
    return out


# ----------------------------------------------------------------------------------------------
# Non-differentiable rows (masks and indices)
# ----------------------------------------------------------------------------------------------
_median_mask = P("median_mask", _median_weights, differentiable=False)
_argsort = P("argsort", lambda x, axis, kind: np.argsort(x, axis=axis, kind=kind),
             differentiable=False)


# ----------------------------------------------------------------------------------------------
# THE TABLE (reductions and scans)
# ----------------------------------------------------------------------------------------------
def _divisible(x, ans):
    """True when ``ans / x`` is the product of the others exactly: no zero in ``x`` and none
    lost to underflow or overflow in ``ans``. The quotient is then the gradient on a whole
    neighbourhood, so its own derivatives are right too (to every order)."""
    xd, ad = _data(x), _data(ans)
    return xd.dtype.kind == "f" and bool(np.all(xd != 0)) and bool(
        np.all(np.isfinite(ad) & (ad != 0)))


def _prod_grad(g, ans, x, axis, keepdims):
    if _divisible(x, ans):  # one pass instead of two cumulative products
        return _restore_dims(g * ans, x.shape, axis, keepdims) / x
    return _restore_dims(g, x.shape, axis, keepdims) * _others(x, axis)


def _cumprod_grad(g, ans, x, axis, reverse):
    if _divisible(x, ans):  # sum over i >= j of g_i y_i / x_j, as torch's cumprod_backward
        return _cumsum(g * ans, axis=axis, reverse=not reverse) / x
    # d y_i / d x_j = (product before j) * (product of j+1..i): the first factor is ans shifted
    # by one, the sum over i of g_i times the second is a reverse scan with coefficients x.
    by = -1 if reverse else 1
    before = _shift(ans, axis=axis, by=by, fill=1)
    return before * _scan(_shift(x, axis=axis, by=-by, fill=0), g, axis=axis, reverse=not reverse)


def _scan_grad_a(g, ans, a, b, axis, reverse):
    by = -1 if reverse else 1
    c = _scan(_shift(a, axis=axis, by=-by, fill=0), g, axis=axis, reverse=not reverse)
    return c * _shift(ans, axis=axis, by=by, fill=0)


def _scan_grad_b(g, ans, a, b, axis, reverse):
    by = -1 if reverse else 1
    return _scan(_shift(a, axis=axis, by=-by, fill=0), g, axis=axis, reverse=not reverse)


_shift = P("shift", _shift_forward,
           [lambda g, ans, x, axis, by, fill: _shift(g, axis=axis, by=-by, fill=0)],
           ["grad shifted back (0 at the far end)"])
_scan = P("scan", _scan_forward, [_scan_grad_a, _scan_grad_b],
          ["c * h shifted, c = scan the other way of grad", "scan the other way of grad"],
          promotes=(0, 1))
_cumsum = P("cumsum", _cumsum_forward,
            [lambda g, ans, x, axis, reverse: _cumsum(g, axis=axis, reverse=not reverse)],
            ["cumsum of grad from the other end"])
_cumprod = P("cumprod", _cumprod_forward, [_cumprod_grad],
             ["(product before j) * scan of grad from the other end"])
_prod = P("prod", lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims),
          [_prod_grad], ["grad * product of the other entries (exclusive cumprods)"])
_median = P("median", lambda x, axis, keepdims: np.median(x, axis=axis, keepdims=keepdims),
            [lambda g, ans, x, axis, keepdims:
             _restore_dims(g, x.shape, axis, keepdims) * _median_mask(x, axis=axis,
                                                                      dtype=g.dtype)],
            ["grad at the middle entry (half to each of two)"])
_take_perm = P("take_permutation", lambda x, index, axis: np.take_along_axis(x, index, axis),
               [lambda g, ans, x, index, axis: _put_perm(g, index=index, axis=axis)],
               ["grad put back at the indices"])
_put_perm = P("put_permutation", _put_forward,
              [lambda g, ans, x, index, axis: _take_perm(g, index=index, axis=axis)],
              ["grad taken at the indices"])


def _others(x, axis):
    """Arrays or Tensors: for each entry, the product of the other entries along ``axis`` (None
    or a tuple), as the exclusive cumulative products from the front and from the back."""
    if axis is not None and len(axis) == 1:
        a, back = axis[0], None
        lines = x
    else:
        lines, back = _as_lines(x, axis)
        a = lines.ndim - 1
    before = _shift(_cumprod(lines, axis=a, reverse=False), axis=a, by=1, fill=1)
    after = _shift(_cumprod(lines, axis=a, reverse=True), axis=a, by=-1, fill=1)
    out = before * after
    return out if back is None else back(out)


# ----------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------
def _no(fname, **given):
    for key, value in given.items():
        if value is not None and value is not np._NoValue:
            raise TypeError(f"{fname}: {key}= is not supported (chainrule returns a new "
                            f"{'tensor' if key == 'out' else 'result'}; got {key}={value!r})")


def _keep(keepdims, where):
    if keepdims is np._NoValue:
        return False
    if not isinstance(keepdims, (bool, np.bool_, int, np.integer)):
        raise TypeError(f"{where}: keepdims must be a bool, got {keepdims!r} (dtype goes by "
                        f"keyword: dtype=...)")
    return bool(keepdims)


def _cast(x, dtype):
    return x if dtype is None else ops.astype(x, dtype)


def _is_float(x):
    return _data(x).dtype.kind in "fc"


def _flat_axis(x, axis, where):
    """``x`` and the one axis a scan runs along: NumPy's ``axis=None`` flattens."""
    if axis is None:
        return ops.reshape(x, (-1,)), 0
    if _ndim(x) == 0:
        raise ValueError(f"{where}: axis {axis!r} is out of range for a 0-d input (shape ()); "
                         f"use axis=None")
    return x, _one_axis(axis, _ndim(x), where)


# ----------------------------------------------------------------------------------------------
# Public functions (NumPy's signatures)
# ----------------------------------------------------------------------------------------------
def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    """The product over ``axis`` (None: all; int or tuple), as ``np.prod``. The gradient is the
    product of the other entries, exact with any number of zeros, to any order."""
    _no("prod", out=out, initial=initial, where=where)
    x = _cast(a, dtype)
    return _prod(x, axis=_axes(axis, _ndim(x), "prod"), keepdims=_keep(keepdims, "prod"))


def cumsum(a, axis=None, dtype=None, out=None):
    """Cumulative sum along ``axis`` (None: of the flattened input), as ``np.cumsum``."""
    _no("cumsum", out=out)
    x, ax = _flat_axis(_cast(a, dtype), axis, "cumsum")
    return _cumsum(x, axis=ax, reverse=False)


def cumprod(a, axis=None, dtype=None, out=None):
    """Cumulative product along ``axis`` (None: of the flattened input), as ``np.cumprod``;
    gradients exact at zeros, to any order."""
    _no("cumprod", out=out)
    x, ax = _flat_axis(_cast(a, dtype), axis, "cumprod")
    return _cumprod(x, axis=ax, reverse=False)


def _without_nan(a, fill):
    if not _is_float(a):
        return a
    nan = np.isnan(_data(a))
    return ops.where(nan, fill, a) if nan.any() else a  # most calls meet no NaN: no copy


def _plain(*args):
    """True when no argument is a Tensor: the NumPy function itself gives NumPy's result."""
    return not builtins.any(isinstance(a, Tensor) for a in args)


def nansum(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    """The sum treating NaN as 0, as ``np.nansum``; NaN entries get gradient 0."""
    _no("nansum", out=out, initial=initial, where=where)
    axes, keep = _axes(axis, _ndim(a), "nansum"), _keep(keepdims, "nansum")
    if _plain(a):
        return np.nansum(a, axes, dtype, keepdims=keep)
    return ops.sum(_without_nan(_cast(a, dtype), 0), axes, keep)


def nanprod(a, axis=None, dtype=None, out=None, keepdims=False, initial=None, where=None):
    """The product treating NaN as 1, as ``np.nanprod``; NaN entries get gradient 0."""
    _no("nanprod", out=out, initial=initial, where=where)
    axes, keep = _axes(axis, _ndim(a), "nanprod"), _keep(keepdims, "nanprod")
    if _plain(a):
        return np.nanprod(a, axes, dtype, keepdims=keep)
    return _prod(_without_nan(_cast(a, dtype), 1), axis=axes, keepdims=keep)


def nancumsum(a, axis=None, dtype=None, out=None):
    """Cumulative sum treating NaN as 0, as ``np.nancumsum``."""
    _no("nancumsum", out=out)
    if _plain(a):
        _flat_axis(a, axis, "nancumsum")
        return np.nancumsum(a, axis, dtype)
    return cumsum(_without_nan(_cast(a, dtype), 0), axis)


def nancumprod(a, axis=None, dtype=None, out=None):
    """Cumulative product treating NaN as 1, as ``np.nancumprod``."""
    _no("nancumprod", out=out)
    if _plain(a):
        _flat_axis(a, axis, "nancumprod")
        return np.nancumprod(a, axis, dtype)
    return cumprod(_without_nan(_cast(a, dtype), 1), axis)


def nanmean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=None):
    """The mean of the entries that are not NaN, as ``np.nanmean`` (NaN for an all-NaN slice,
    with NumPy's warning); NaN entries get gradient 0, the others grad / count."""
    _no("nanmean", out=out, where=where)
    axes, keep = _axes(axis, _ndim(a), "nanmean"), _keep(keepdims, "nanmean")
    if _plain(a):
        return np.nanmean(a, axes, dtype, keepdims=keep)
    x = _cast(a, dtype)
    if not _is_float(x):
        return ops.mean(x, axes, keep)
    nan = np.isnan(_data(x))
    if not nan.any():
        return ops.mean(x, axes, keep)
    count = np.sum(~nan, axis=axes, keepdims=keep).astype(_data(x).dtype)
    empty = count == 0
    mean = ops.sum(ops.where(nan, 0, x), axes, keep) / np.where(empty, 1, count)
    if np.any(empty):  # NaN, as NumPy, without a 0 / 0 in the backward pass
        warnings.warn("Mean of empty slice", RuntimeWarning, stacklevel=2)
        mean = ops.where(empty, np.nan, mean)
    return mean


def _nan_extreme(a, axis, keepdims, reduce, fill, where):
    x = a
    axes, keep = _axes(axis, _ndim(x), where), _keep(keepdims, where)
    if _plain(x):
        return getattr(np, where)(x, axes, keepdims=keep)
    nan = np.isnan(_data(x)) if _is_float(x) else None
    if nan is None or not nan.any():
        return reduce(x, axes, keep)
    m = reduce(ops.where(nan, fill, x), axes, keep)
    empty = np.all(nan, axis=axes, keepdims=keep)
    if np.any(empty):
        warnings.warn("All-NaN slice encountered", RuntimeWarning, stacklevel=3)
        m = ops.where(empty, np.nan, m)
    return m


def nanmax(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    """The maximum ignoring NaN, as ``np.nanmax`` (NaN for an all-NaN slice, with NumPy's
    warning); ties share the gradient, NaN entries get 0."""
    _no("nanmax", out=out, initial=initial, where=where)
    return _nan_extreme(a, axis, keepdims, ops.max, -np.inf, "nanmax")


def nanmin(a, axis=None, out=None, keepdims=False, initial=None, where=None):
    """The minimum ignoring NaN, as ``np.nanmin`` (see `nanmax`)."""
    _no("nanmin", out=out, initial=initial, where=where)
    return _nan_extreme(a, axis, keepdims, ops.min, np.inf, "nanmin")


amax = ops.max  # NumPy's other name (np.amax is np.max)
amin = ops.min


def ptp(a, axis=None, out=None, keepdims=False):
    """Peak to peak, ``max - min`` over ``axis``, as ``np.ptp``; ties share the gradient as in
    ``max`` and ``min``."""
    _no("ptp", out=out)
    keep = _keep(keepdims, "ptp")
    axes = _axes(axis, _ndim(a), "ptp")
    if _plain(a):
        return np.ptp(a, axes, keepdims=keep)
    return ops.max(a, axes, keep) - ops.min(a, axes, keep)


def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    """The weighted mean over ``axis``, as ``np.average``: ``sum(a * w) / sum(w)``; the
    weights (same shape as ``a``, or the shape of ``a`` along ``axis``) get gradients too.
    ``returned=True`` also gives the sum of the weights (the count without weights)."""
    shape = np.shape(a)
    axes = _axes(axis, len(shape), "average")
    keep = _keep(keepdims, "average")
    if _plain(a, weights) and weights is None:
        return np.average(a, axes, None, returned, keepdims=keep)
    if weights is None:
        avg = ops.mean(a, axes, keep)
        if not returned:
            return avg
        count = np.prod(shape) / builtins.max(np.size(_data(avg)), 1)
        return avg, Tensor._wrap(np.full(np.shape(avg), count, _data(avg).dtype))
    # NumPy reads the weights' axes in the order given (axis=(2, 0): shape (n2, n0))
    given = tuple(int(i) % builtins.max(len(shape), 1)
                  for i in (axis if isinstance(axis, (tuple, list)) else (axis,))
                  ) if axes is not None else None
    w = weights
    wshape = np.shape(w)
    if wshape != shape:
        if axes is None:
            raise TypeError(f"average: axis must be given when the shapes of a {shape} and "
                            f"weights {wshape} differ")
        need = tuple(shape[i] for i in given)
        if wshape != need:
            raise ValueError(f"average: weights of shape {wshape} do not match a of shape "
                             f"{shape} along axis {axis!r} (need {need})")
    if _plain(a, weights):
        return np.average(a, given, weights, returned, keepdims=keep)
    if wshape != shape:
        if len(given) > 1:
            w = ops.transpose(w, tuple(np.argsort(given).tolist()))
        w = ops.reshape(w, tuple(s if i in axes else 1 for i, s in enumerate(shape)))
    scale = ops.sum(w, axes, keep)
    if np.any(_data(scale) == 0):
        raise ZeroDivisionError("average: weights sum to zero, can't be normalized")
    avg = ops.sum(a * w, axes, keep) / scale
    if returned:
        if np.shape(scale) != np.shape(avg):
            scale = ops.broadcast_to(scale, np.shape(avg))
        if not isinstance(scale, Tensor):  # constant weights beside a tensor
            scale = Tensor._wrap(np.array(scale))
        return avg, scale
    return avg


def median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    """NumPy's median over ``axis`` (None: all; int or tuple): the mean of the two middle values
    for an even count. The gradient goes to the middle entries of the stable sorted order (half
    to each of two). ``Tensor.median`` is PyTorch's instead (the lower median)."""
    _no("median", out=out)
    return _median(a, axis=_axes(axis, _ndim(a), "median"), keepdims=_keep(keepdims, "median"))


def _sort_axis(a, axis, where):
    if axis is None:
        return ops.reshape(a, (-1,)), 0
    if _ndim(a) == 0:
        raise ValueError(f"{where}: axis {axis!r} is out of range for a 0-d input (shape ()); "
                         f"use axis=None")
    return a, _one_axis(axis, _ndim(a), where)


def _kind(kind, stable, where):
    if stable is not None and kind is not None:
        raise ValueError(f"{where}: give kind= or stable=, not both")
    return "stable" if stable else kind


def sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """A sorted copy along ``axis`` (default -1; None: of the flattened input), as ``np.sort``.
    The gradient is scattered back through the stable order: tied entries keep their own."""
    _no("sort", order=order)
    kind = _kind(kind, stable, "sort")
    x, ax = _sort_axis(a, axis, "sort")
    if not isinstance(x, Tensor):
        return np.sort(np.asarray(x), axis=ax, kind=kind)
    if not x.requires_grad:
        return Tensor._wrap(np.sort(x.data, axis=ax, kind=kind))
    return _take_perm(x, index=_stable_argsort(x.data, ax), axis=ax)


def argsort(a, axis=-1, kind=None, order=None, *, stable=None):
    """The indices that sort ``a`` along ``axis`` (default -1; None: flattened), as
    ``np.argsort``; an integer tensor for a tensor, without gradient."""
    _no("argsort", order=order)
    kind = _kind(kind, stable, "argsort")
    x, ax = _sort_axis(a, axis, "argsort")
    return _argsort(x, axis=ax, kind=kind)


# ----------------------------------------------------------------------------------------------
# Tensor methods with PyTorch's readings (tensor.py calls these)
# ----------------------------------------------------------------------------------------------
def _stable_order(x, axis, descending):
    """Indices of the stable sort along ``axis``; descending keeps ties in their first order and
    puts NaN first, as ``torch.sort(descending=True, stable=True)``."""
    if not descending:
        return _stable_argsort(x, axis)
    n = x.shape[axis]
    flipped = _stable_argsort(np.flip(x, axis), axis)
    return np.flip(n - 1 - flipped, axis)


def _torch_sort(x, dim, descending, stable):
    """``torch.sort(x, dim, descending)``: ``(values, indices)``, the values differentiable."""
    if not isinstance(x, Tensor):
        x = Tensor._wrap(np.asarray(x))
    if x.ndim == 0:
        _one_axis(dim, 0, "sort")
        return SortResult(x, Tensor._wrap(np.zeros((), np.int64)))
    d = _one_axis(dim, x.ndim, "sort")
    index = _stable_order(x.data, d, descending)
    return SortResult(_take_perm(x, index=index, axis=d), Tensor._wrap(index.astype(np.int64)))


def _sort_method(x, args, kwargs):
    dim = kwargs.pop("dim", None)
    descending = kwargs.pop("descending", None)
    stable = kwargs.pop("stable", None)
    if args or kwargs or (dim is None and descending is None):
        given = ", ".join([repr(v) for v in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
                          + ([f"stable={stable!r}"] if stable is not None else []))
        raise TypeError(
            f"Tensor.sort({given}) is ambiguous: ndarray.sort sorts in place and returns None, "
            f"torch's sort returns (values, indices). Write cr.sort(x, axis) for NumPy's sorted "
            f"copy, or x.sort(dim=...) (or descending=...) for PyTorch's (values, indices)")
    return _torch_sort(x, -1 if dim is None else dim, bool(descending), stable)


def _argsort_method(x, axis, kind, order, dim, descending, stable):
    if isinstance(kind, (bool, np.bool_)):  # torch's argsort(dim, descending): told apart
        descending, kind = (bool(kind) if descending is None else descending), None
    if dim is not None or descending is not None:
        if axis != -1 and dim is not None:
            raise TypeError(f"argsort: got both axis={axis!r} and dim={dim!r}; they are the "
                            f"same argument (NumPy's and PyTorch's name), pass one")
        _no("argsort", kind=kind, order=order)
        d = _one_axis(axis if dim is None else dim, x.ndim, "argsort") if x.ndim else None
        if d is None:
            return Tensor._wrap(np.zeros((), np.int64))
        return Tensor._wrap(_stable_order(x.data, d, bool(descending)).astype(np.int64))
    return argsort(x, axis, kind, order, stable=stable)


def _lower_median_index(x, axis):
    """The position of torch's median along ``axis`` (keepdims): the lower middle entry of the
    stable order, or the first NaN of a slice that holds one."""
    lines = np.moveaxis(x, axis, -1)
    (mid,) = _stable_pick(lines, [(lines.shape[-1] - 1) // 2])
    bad, first = _first_nan(lines)
    if bad is not None:
        mid[bad] = first[bad]
    return np.moveaxis(np.argmax(mid, axis=-1)[..., None], -1, axis)


def _median_method(x, dim, keepdim):
    """PyTorch's ``median``: the lower median; with ``dim``, ``(values, indices)``."""
    if dim is None:
        if keepdim:
            raise TypeError("Tensor.median: keepdim needs dim (as torch)")
        flat = ops.reshape(x, (-1,))
        if flat.shape[0] == 0:
            raise ValueError("Tensor.median: the tensor is empty")
        data = flat.data
        if data.dtype.kind in "fc" and np.isnan(data).any():
            return ops.getitem(flat, int(np.argmax(np.isnan(data))))
        value = np.sort(data)[(data.shape[0] - 1) // 2]
        if data.dtype.kind not in "fc":
            return Tensor._wrap(np.asarray(value))
        # every entry equal to the median shares the gradient, as torch's median() does
        return ops.max(ops.where(ops.equal(flat, value), flat, -np.inf))
    if x.ndim == 0:
        _one_axis(dim, 0, "median")
        return MedianResult(x, Tensor._wrap(np.zeros((), np.int64)))
    d = _one_axis(dim, x.ndim, "median")
    if x.shape[d] == 0:
        raise ValueError(f"Tensor.median: dim {d} of shape {x.shape} is empty")
    idx = _lower_median_index(x.data, d)
    grids = list(np.ogrid[tuple(slice(n) for n in idx.shape)])
    grids[d] = idx
    values = ops.getitem(x, tuple(grids))
    if not keepdim:
        values = ops.squeeze(values, d)
        idx = np.squeeze(idx, axis=d)
    return MedianResult(values, Tensor._wrap(idx.astype(np.int64)))


def _torch_dims(axis, keepdims, dim, keepdim, where):
    if dim is not None:
        if axis is not None:
            raise TypeError(f"{where}: got both axis={axis!r} and dim={dim!r}; they are the "
                            f"same argument (NumPy's and PyTorch's name), pass one")
        axis = dim
    if keepdim is not None:
        if keepdims:
            raise TypeError(f"{where}: got both keepdims and keepdim; they are the same "
                            f"argument (NumPy's and PyTorch's name), pass one")
        keepdims = keepdim
    return axis, keepdims
