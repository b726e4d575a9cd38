"""THE TABLE: every primitive's forward and vector-Jacobian product, side by side.

A row is ``Primitive(name, forward, [rule for input 0, rule for input 1, ...], [formulas])``.
A rule is ``rule(grad, ans, *inputs, **params)``: ``grad`` is dL/d(ans), ``ans`` the forward
result, and it returns dL/d(input). Rules use only operators, methods shared by ``ndarray`` and
``Tensor``, and other rows of this table, so one rule serves the ordinary backward pass (arrays)
and ``create_graph=True`` (Tensors, recorded). Rows marked ``broadcasts=True`` return gradients
in the broadcast shape; the machinery sums them back to each input's shape. The formula strings
are what the explainer and the graph drawing show as "the local derivative".

Below the table are the public functions (``cr.sum``, ``cr.reshape``, ...): they check and
normalise arguments, then call a row. On plain arrays every row computes with NumPy and returns
an array, like a NumPy function; on Tensors it returns a Tensor and records the operation.
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from chainrule.autograd import Primitive, ShapeError, _cast, unbroadcast
from chainrule.tensor import Tensor

P = Primitive


# ----------------------------------------------------------------------------------------------
# Forward helpers that need more than one NumPy call
# ----------------------------------------------------------------------------------------------
def _sigmoid(x):
    e = np.exp(-np.abs(x))  # exp of a non-positive number never overflows
    s = 1 / (1 + e)
    return np.where(x >= 0, s, e * s)


def _erf(x):
    if x.dtype == np.float64 or x.dtype.kind != "f":
        return _erf64(np.asarray(x, np.float64))
    # Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, the resolution of float32 itself.
    a = np.abs(x)
    t = 1 / (1 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                          + t * 1.061405429))))
    return np.sign(x) * (1 - poly * np.exp(-a * a))


_erf64 = np.frompyfunc(math.erf, 1, 1)


def _erf_forward(x):
    out = _erf(x)
    return out.astype(x.dtype if x.dtype.kind == "f" else np.float64)


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


def _matmul(x, y):
    if x.ndim == 0 or y.ndim == 0:
        raise ShapeError(f"both operands need at least one dimension, got shapes {x.shape} and "
                         f"{y.shape} (use * to scale)")
    inner_y = y.shape[-2] if y.ndim > 1 else y.shape[0]
    if x.shape[-1] != inner_y:
        raise ShapeError(f"shapes {x.shape} and {y.shape} are not aligned "
                         f"({x.shape[-1]} != {inner_y})")
    return np.matmul(x, y)


def _scatter(g, index, shape):
    """The adjoint of ``x[index]``: ``g`` placed into zeros of ``shape``, repeats summed."""
    out = np.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        out[index] = g
    else:
        np.add.at(out, index, g)
    return out


def _zero_at(g, index):
    out = np.array(g, copy=True)
    out[index] = 0
    return out


def _setitem(x, v, index):
    out = np.array(x, copy=True)
    out[index] = v
    return out


def _restore_dims(g, shape, axis, keepdims):
    """``g`` of a reduction, reshaped to broadcast against the input it was reduced from."""
    if keepdims or g.ndim == len(shape):
        return g
    axes = range(len(shape)) if axis is None else axis
    return g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))


def _count(shape, axis):
    return int(np.prod([shape[i] for i in (range(len(shape)) if axis is None else axis)]))


# ----------------------------------------------------------------------------------------------
# VJP helpers that read better as named functions than as lambdas
# ----------------------------------------------------------------------------------------------
def _matmul_grad_x(g, ans, x, y):
    if y.ndim == 1:
        return expand_dims(g, -1) * y
    if x.ndim == 1:
        return (y @ expand_dims(g, -1))[..., 0]
    return g @ y.swapaxes(-1, -2)


def _matmul_grad_y(g, ans, x, y):
    if x.ndim == 1:
        return expand_dims(x, -1) * expand_dims(g, -2) if y.ndim > 1 else g * x
    if y.ndim == 1:
        return (x.swapaxes(-1, -2) @ expand_dims(g, -1))[..., 0]
    return x.swapaxes(-1, -2) @ g


def _power_grad_x(g, ans, x, y):
    # x^0 is constant: its gradient is 0 even at x = 0, where y x^(y-1) would be 0 * inf (nan).
    if isinstance(y, (int, float)):
        return g * 0 if y == 0 else g * y * x ** (y - 1)
    # The exponent is kept finite where y == 0 too, so that the second derivative (through
    # x ** (y - 1)) is 0 there, not nan, as with a Python 0.0 exponent.
    with np.errstate(divide="ignore", invalid="ignore"):  # only where the mask discards
        return where(y == 0, 0, g * y * x ** where(y == 0, 1, y - 1))


def _power_grad_y(g, ans, x, y):
    # At x = 0 with y >= 0, x^y ln(x) tends to 0 (PyTorch's value), not 0 * -inf.
    if isinstance(x, (int, float)):
        if x == 0:
            return g * 0
        return g * ans * (math.log(x) if x > 0 else math.nan)  # a Python float keeps float32
    with np.errstate(divide="ignore", invalid="ignore"):
        return where(logical_and(x == 0, y >= 0), 0, g * ans * log(x))


def _max_grad(g, ans, x, axis, keepdims, shape):
    # Ties share the gradient equally (as torch.amax and numpy's max semantics suggest).
    mask = equal_mask(x, _restore_dims(ans, shape, axis, keepdims), dtype=g.dtype)
    return _restore_dims(g, shape, axis, keepdims) * mask / mask.sum(axis=axis, keepdims=True)


def _concat_grads(g, ans, n, axis, sizes):
    bounds = np.cumsum((0,) + tuple(sizes))
    lead = (slice(None),) * axis
    return tuple(g[lead + (slice(int(a), int(b)),)] for a, b in zip(bounds[:-1], bounds[1:]))


def _stack_grads(g, ans, n, axis):
    lead = (slice(None),) * axis
    return tuple(g[lead + (i,)] for i in range(n))


# ----------------------------------------------------------------------------------------------
# Non-differentiable rows (comparisons, masks, argmax)
# ----------------------------------------------------------------------------------------------
def _no_grad(name, fn, promotes=None):
    return P(name, fn, differentiable=False, promotes=promotes)


# Comparisons compare in the promoted dtype, as PyTorch does (float32 with a float64 number).
equal = _no_grad("equal", np.equal, (0, 1))
not_equal = _no_grad("not_equal", np.not_equal, (0, 1))
less = _no_grad("less", np.less, (0, 1))
less_equal = _no_grad("less_equal", np.less_equal, (0, 1))
greater = _no_grad("greater", np.greater, (0, 1))
greater_equal = _no_grad("greater_equal", np.greater_equal, (0, 1))
logical_and = _no_grad("logical_and", np.logical_and)
logical_or = _no_grad("logical_or", np.logical_or)
logical_not = _no_grad("logical_not", np.logical_not)
sign = _no_grad("sign", np.sign)
isnan = _no_grad("isnan", np.isnan)
isfinite = _no_grad("isfinite", np.isfinite)
_argmax = _no_grad("argmax", lambda x, axis, keepdims: np.argmax(x, axis=axis, keepdims=keepdims))
_argmin = _no_grad("argmin", lambda x, axis, keepdims: np.argmin(x, axis=axis, keepdims=keepdims))
equal_mask = _no_grad("equal_mask", lambda x, y, dtype: (x == y).astype(dtype))
# 1 where x wins, 1/2 at a tie, 0 where it loses (maximum/minimum); where x or y is NaN, the
# NaN result takes the gradient from both inputs (1 each), as in PyTorch.
share_mask = _no_grad(
    "share_mask", lambda x, y, dtype, loses: (1 - loses(x, y) - 0.5 * (x == y)).astype(dtype))
# 1 where lo <= x <= hi: clip passes the gradient at the bounds themselves, as PyTorch does.
inside_mask = _no_grad(
    "inside_mask", lambda x, lo, hi, dtype: (
        (True if lo is None else x >= lo) & (True if hi is None else x <= hi)).astype(dtype))


# ----------------------------------------------------------------------------------------------
# THE TABLE
# ----------------------------------------------------------------------------------------------
# --- arithmetic (broadcasting; the inputs' dtypes promote by PyTorch's rules, see result_type) ---
_BOTH = (0, 1)
add = P("add", np.add,
        [lambda g, ans, x, y: g,                                    # d(x + y)/dx = 1
         lambda g, ans, x, y: g],
        ["grad", "grad"], broadcasts=True, promotes=_BOTH)
subtract = P("subtract", np.subtract,
             [lambda g, ans, x, y: g,
              lambda g, ans, x, y: -g],
             ["grad", "-grad"], broadcasts=True, promotes=_BOTH)
multiply = P("multiply", np.multiply,
             [lambda g, ans, x, y: g * y,                           # d(x y)/dx = y
              lambda g, ans, x, y: g * x],
             ["grad * y", "grad * x"], broadcasts=True, promotes=_BOTH)
divide = P("divide", np.true_divide,
           [lambda g, ans, x, y: g / y,
            lambda g, ans, x, y: -g * ans / y],                    # d(x/y)/dy = -x/y^2
           ["grad / y", "-grad * x / y^2"], broadcasts=True, promotes=_BOTH, to_float=True)
power = P("power", np.power, [_power_grad_x, _power_grad_y],
          ["grad * y * x^(y-1)", "grad * x^y * ln(x)"], broadcasts=True, promotes=_BOTH)
negative = P("negative", np.negative, [lambda g, ans, x: -g], ["-grad"])
maximum = P("maximum", np.maximum,
            [lambda g, ans, x, y: g * share_mask(x, y, dtype=g.dtype, loses=np.less),
             lambda g, ans, x, y: g * share_mask(y, x, dtype=g.dtype, loses=np.less)],
            ["grad * [x >= y] (1/2 at ties, 1 at nan)", "grad * [y >= x] (1/2 at ties, 1 at nan)"],
            broadcasts=True, promotes=_BOTH)
minimum = P("minimum", np.minimum,
            [lambda g, ans, x, y: g * share_mask(x, y, dtype=g.dtype, loses=np.greater),
             lambda g, ans, x, y: g * share_mask(y, x, dtype=g.dtype, loses=np.greater)],
            ["grad * [x <= y] (1/2 at ties, 1 at nan)", "grad * [y <= x] (1/2 at ties, 1 at nan)"],
            broadcasts=True, promotes=_BOTH)
where = P("where", np.where,
          [None,
           lambda g, ans, cond, x, y: where(cond, g, 0),
           lambda g, ans, cond, x, y: where(cond, 0, g)],
          ["none", "grad * [cond]", "grad * [not cond]"], broadcasts=True, promotes=(1, 2))
matmul = P("matmul", _matmul, [_matmul_grad_x, _matmul_grad_y],
           ["grad @ y^T", "x^T @ grad"], broadcasts=True, promotes=_BOTH)

# --- elementwise functions ----------------------------------------------------------------------
exp = P("exp", np.exp, [lambda g, ans, x: g * ans], ["grad * exp(x)"])
log = P("log", np.log, [lambda g, ans, x: g / x], ["grad / x"])
sqrt = P("sqrt", np.sqrt, [lambda g, ans, x: g / (2 * ans)], ["grad / (2 sqrt(x))"])
abs = P("abs", np.abs, [lambda g, ans, x: g * sign(x)], ["grad * sign(x)  (0 at x = 0)"])
sin = P("sin", np.sin, [lambda g, ans, x: g * cos(x)], ["grad * cos(x)"])
cos = P("cos", np.cos, [lambda g, ans, x: -g * sin(x)], ["-grad * sin(x)"])
tanh = P("tanh", np.tanh, [lambda g, ans, x: g * (1 - ans * ans)], ["grad * (1 - tanh(x)^2)"])
sigmoid = P("sigmoid", _sigmoid, [lambda g, ans, x: g * ans * (1 - ans)],
            ["grad * s(x) (1 - s(x))"])
# relu passes no gradient at exactly 0 (as PyTorch); a maximum(x, 0) rule would pass half.
relu = P("relu", lambda x: np.maximum(x, 0), [lambda g, ans, x: g * (ans > 0)],
         ["grad * [x > 0]"])
_leaky_relu = P("leaky_relu", lambda x, slope: np.where(x > 0, x, x * slope),
               [lambda g, ans, x, slope: where(x > 0, g, g * slope)],
               ["grad * (1 if x > 0 else slope)"])
erf = P("erf", _erf_forward, [lambda g, ans, x: g * (2 / math.sqrt(math.pi)) * exp(-x * x)],
        ["grad * 2/sqrt(pi) exp(-x^2)"])
gelu = P("gelu", lambda x: 0.5 * x * (1 + _erf_forward(x * (1 / math.sqrt(2)))),
         [lambda g, ans, x: g * (0.5 * (1 + erf(x * (1 / math.sqrt(2))))
                                 + x * exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi)))],
         ["grad * (Phi(x) + x phi(x))"])
softplus = P("softplus", lambda x: np.logaddexp(0, x), [lambda g, ans, x: g * sigmoid(x)],
             ["grad * sigmoid(x)"])
_clip = P("clip", lambda x, lo, hi: np.clip(x, lo, hi),
         [lambda g, ans, x, lo, hi: g * inside_mask(x, lo=lo, hi=hi, dtype=g.dtype)],
         ["grad * [lo <= x <= hi]"])
astype_ = _cast  # the row autograd also uses for the casts of type promotion
copy = P("copy", lambda x: np.array(x, copy=True), [lambda g, ans, x: g], ["grad"])

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

# --- shape (views: they share memory, and so the version counter, with their input) -------------
_reshape = P("reshape", lambda x, shape, in_shape: np.reshape(x, shape),
             [lambda g, ans, x, shape, in_shape: g.reshape(in_shape)],
             ["grad reshaped back"], view=True)
_transpose = P("transpose", lambda x, axes, inverse: np.transpose(x, axes),
               [lambda g, ans, x, axes, inverse: g.transpose(inverse)],
               ["grad transposed back"], view=True)
_broadcast_to = P("broadcast_to", lambda x, shape, in_shape: np.broadcast_to(x, shape),
                  [lambda g, ans, x, shape, in_shape: unbroadcast(g, in_shape)],
                  ["grad summed over the broadcast axes"], view=True)
_getitem = P("getitem", lambda x, index, shape: x[index],
             [lambda g, ans, x, index, shape: scatter(g, index=index, shape=shape)],
             ["grad placed at the indexed positions"], view=True)
_take = P("take", lambda x, index, shape: x[index],  # advanced indexing copies: not a view
          [lambda g, ans, x, index, shape: scatter(g, index=index, shape=shape)],
          ["grad summed into the indexed positions"])
scatter = P("scatter", _scatter, [lambda g, ans, src, index, shape: g[index]],
            ["grad[index]"])
setitem = P("setitem", _setitem,
            [lambda g, ans, x, v, index: zero_at(g, index=index),
             lambda g, ans, x, v, index: g[index]],
            ["grad with zeros at index", "grad[index]"], broadcasts=True)
zero_at = P("zero_at", _zero_at, [lambda g, ans, src, index: zero_at(g, index=index)],
            ["grad with zeros at index"])
_concatenate = P("concatenate", lambda *xs, axis, sizes: np.concatenate(xs, axis=axis),
                 vjp_all=_concat_grads, formulas=["grad split back into the pieces"],
                 promotes=())  # (): all the inputs promote together
_stack = P("stack", lambda *xs, axis: np.stack(xs, axis=axis),
           vjp_all=_stack_grads, formulas=["grad unstacked"], promotes=())

# --- fused rows for layers and losses (much faster than their compositions) ---------------------
def _rows(a):
    """``a`` with all leading axes merged: (..., n) -> (m, n)."""
    return a.reshape(-1, a.shape[-1])


def _linear(x, w, b):
    out = x @ w.T
    if b is not None:
        out += b
    return out


linear = P("linear", _linear,
           [lambda g, ans, x, w, b: g @ w,                          # y = x W^T + b
            lambda g, ans, x, w, b: _rows(g).T @ _rows(x),
            lambda g, ans, x, w, b: _rows(g).sum(axis=0)],
           ["grad @ w", "grad^T @ x", "sum of grad over the batch"])


def _one_hot(labels, n_classes, dtype):
    labels = np.asarray(labels)
    out = np.zeros((labels.size, n_classes), dtype=dtype)
    out[np.arange(labels.size), labels.reshape(-1)] = 1
    return out.reshape(labels.shape + (n_classes,))


def _reduce_loss(losses, reduction):
    if reduction == "mean":
        return losses.mean()
    return losses.sum() if reduction == "sum" else losses


def _loss_grad_scale(g, reduction, n):
    """How the incoming gradient of a reduced loss reaches each sample's loss."""
    if reduction == "mean":
        return g / n
    return g if reduction == "sum" else expand_dims(g, -1)


def _cross_entropy_labels(x, labels, reduction):
    shifted = x - _max_keepdims(x, -1)
    log_norm = np.log(np.sum(np.exp(shifted), axis=-1))
    picked = shifted[np.arange(len(shifted)), labels]
    return _reduce_loss(log_norm - picked, reduction)


def _cross_entropy_probs(x, probs, reduction):
    return _reduce_loss(-np.sum(probs * _log_softmax_forward(x, -1), axis=-1), reduction)


# seed 002: for softmax q and one-hot y, dL/dz = q - y; averaged over a batch of N, (q - y) / N.
cross_entropy_labels = P(
    "cross_entropy", _cross_entropy_labels,
    [lambda g, ans, x, labels, reduction: _loss_grad_scale(g, reduction, x.shape[0])
     * (softmax(x, -1) - _one_hot(labels, x.shape[-1], x.dtype)),
     None],
    ["grad * (softmax(x) - onehot(labels)) / N", "none"])
cross_entropy_probs = P(
    "cross_entropy", _cross_entropy_probs,
    [lambda g, ans, x, p, reduction: _loss_grad_scale(g, reduction, x.shape[0])
     * (softmax(x, -1) * p.sum(axis=-1, keepdims=True) - p),
     lambda g, ans, x, p, reduction: -_loss_grad_scale(g, reduction, x.shape[0])
     * log_softmax(x, -1)],
    ["grad * (softmax(x) sum(p) - p) / N", "-grad * log_softmax(x) / N"])


# --- convolution: im2col, one matrix product, col2im (owner: nn) --------------------------------
# The columns of an (N, C, H, W) input are one (C kh kw, N L) matrix: the (O, C, kh, kw) weight
# is already its left factor, so a convolution is one product (not one per sample), giving
# (O, N L), whose transpose is the (N, O, oh, ow) output, channels-first in memory (the ReLU and
# pooling after it keep the layout). With ``batch_last`` the columns are ordered (L, N) instead:
# memory (O, oh, ow, N), where pooling's strided passes run over N contiguous elements rather
# than ow. At stride 1 each padded plane is read as one flat row: output position r and kernel
# offset (i, j) read position r + i dh Wp + j dw, so a row of the columns is whole planes of
# contiguous memory (oh Wp N of it with batch_last), copied and added in one piece. The kw - 1
# extra columns per output row that this computes are dropped (a view) after the product.
def _conv_size(size, k, stride, dilation, before, after):
    return (size + before + after - dilation * (k - 1) - 1) // stride + 1


def _conv_plan(shape, kernel, stride, dilation, padding):
    """(oh, ow, row) for an (N, C, H, W) input: the output size and the length of one output row
    in the columns (the padded width Wp with the flat layout of stride 1, else ow)."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = kernel, stride, dilation, padding
    oh = _conv_size(shape[-2], kh, sh, dh, pt, pb)
    ow = _conv_size(shape[-1], kw, sw, dw, pl, pr)
    return oh, ow, (shape[-1] + pl + pr if sh == sw == 1 else ow)


def _planes(x, padding, extra, batch_last):
    """A zeroed buffer with the padded (N, C, H, W) planes of ``x`` in it, each read as a row of
    Hp Wp + extra positions: (C, positions, N) when ``batch_last``, else (C, N, positions)."""
    n, c, h, w = x.shape
    pt, pb, pl, pr = padding
    hp, wp = h + pt + pb, w + pl + pr
    if batch_last:
        buf = np.zeros((c, hp * wp + extra, n), x.dtype)
        buf[:, :hp * wp].reshape(c, hp, wp, n)[:, pt:pt + h, pl:pl + w] = x.transpose(1, 2, 3, 0)
    else:
        buf = np.zeros((c, n, hp * wp + extra), x.dtype)
        buf[:, :, :hp * wp].reshape(c, n, hp, wp)[:, :, pt:pt + h, pl:pl + w] = x.transpose(
            1, 0, 2, 3)
    return buf


def _columns(buf, shape, kernel, stride, dilation, padding, batch_last):
    """The (C, kh, kw, column axes...) view of a `_planes` buffer: the element each column reads
    at each kernel offset (im2col copies it out, col2im adds into it)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    n = shape[0]
    oh, ow, _ = _conv_plan(shape, kernel, stride, dilation, padding)
    wp = shape[3] + padding[2] + padding[3]
    item = buf.itemsize
    pos = buf.strides[1] if batch_last else item  # one position to the next
    img = item if batch_last else buf.strides[1]  # one image to the next
    if sh == sw == 1:  # flat: an output row runs on over the padding into the next row
        cols = ((oh * wp * n,), (item,)) if batch_last else ((n, oh * wp), (img, item))
    elif batch_last:
        cols = ((oh, ow, n), (sh * wp * pos, sw * pos, item))
    else:
        cols = ((n, oh, ow), (img, sh * wp * pos, sw * pos))
    return np.lib.stride_tricks.as_strided(
        buf, (buf.shape[0], kh, kw) + cols[0], (buf.strides[0], dh * wp * pos, dw * pos) + cols[1])


def _slack(kernel, stride, dilation):
    """Positions past the last plane that the flat layout's last (dropped) columns read."""
    return dilation[1] * (kernel[1] - 1) if stride == (1, 1) else 0


def _im2col(x, kernel, stride, dilation, padding, shape, batch_last):
    buf = _planes(x, padding, _slack(kernel, stride, dilation), batch_last)
    view = _columns(buf, x.shape, kernel, stride, dilation, padding, batch_last)
    return view.reshape(view.shape[0] * kernel[0] * kernel[1], -1)  # the one copy


def _col2im(g, kernel, stride, dilation, padding, shape, batch_last):
    """The adjoint of `_im2col`: each column's gradient added back where it was read, kh * kw
    additions of whole blocks into one buffer."""
    n, c, h, w = shape
    (kh, kw), (pt, pb, pl, pr) = kernel, padding
    hp, wp = h + pt + pb, w + pl + pr
    extra = _slack(kernel, stride, dilation)
    buf = np.zeros((c, hp * wp + extra, n) if batch_last else (c, n, hp * wp + extra), g.dtype)
    view = _columns(buf, shape, kernel, stride, dilation, padding, batch_last)
    cols = g.reshape(view.shape)
    for i in range(kh):
        for j in range(kw):
            view[:, i, j] += cols[:, i, j]
    # copied out of the padded buffer: the pooling or ReLU backward after it reads it whole
    if batch_last:
        inside = buf[:, :hp * wp].reshape(c, hp, wp, n)[:, pt:pt + h, pl:pl + w]
        return np.ascontiguousarray(inside).transpose(3, 0, 1, 2)
    inside = buf[:, :, :hp * wp].reshape(c, n, hp, wp)[:, :, pt:pt + h, pl:pl + w]
    return np.ascontiguousarray(inside).transpose(1, 0, 2, 3)


def _conv_matmul(w, cols, b, groups):
    if groups == 1:
        out = w @ cols
    else:
        o, k = w.shape
        out = (w.reshape(groups, o // groups, k) @ cols.reshape(groups, k, -1)).reshape(o, -1)
    if b is not None:
        if np.result_type(out, b) == out.dtype:
            out += b[:, None]
        else:
            out = out + b[:, None]
    return out


def _conv_grad_w(g, ans, w, cols, b, groups):
    if groups == 1:
        return g @ cols.swapaxes(-1, -2)
    o, k = g.shape[0], cols.shape[0] // groups
    return (g.reshape(groups, o // groups, -1)
            @ cols.reshape(groups, k, -1).swapaxes(-1, -2)).reshape(o, k)


def _conv_grad_cols(g, ans, w, cols, b, groups):
    if groups == 1:
        return w.swapaxes(-1, -2) @ g
    o, k = w.shape
    return (w.reshape(groups, o // groups, k).swapaxes(-1, -2)
            @ g.reshape(groups, o // groups, -1)).reshape(groups * k, -1)


im2col = P("im2col", _im2col,
           [lambda g, ans, x, kernel, stride, dilation, padding, shape, batch_last: col2im(
               g, kernel=kernel, stride=stride, dilation=dilation, padding=padding, shape=shape,
               batch_last=batch_last)],
           ["grad of each window added back where it was read (col2im)"])
col2im = P("col2im", _col2im,
           [lambda g, ans, cols, kernel, stride, dilation, padding, shape, batch_last: im2col(
               g, kernel=kernel, stride=stride, dilation=dilation, padding=padding, shape=shape,
               batch_last=batch_last)],
           ["the windows of grad (im2col)"])
# (O, C kh kw) @ (C kh kw, N L) + b: one GEMM each way (per group with ``groups``).
conv_matmul = P("conv_matmul", _conv_matmul,
                [_conv_grad_w, _conv_grad_cols, lambda g, ans, w, cols, b, groups: g.sum(axis=-1)],
                ["grad @ cols^T", "w^T @ grad", "grad summed over the columns"])


def _pad_spatial(x, pad, value):
    return np.pad(x, ((0, 0),) * (x.ndim - 2) + ((pad, pad), (pad, pad)), constant_values=value)


pad2d = P("pad2d", _pad_spatial,
          [lambda g, ans, x, pad, value: g[..., pad:g.shape[-2] - pad, pad:g.shape[-1] - pad]],
          ["grad without the border"])


# --- chainrule.nn: fused rows for binary cross-entropy and max pooling (owner: nn) --------------
def _clamped_log(x):
    """log(x) clamped below at -100, as PyTorch's binary cross-entropy does (log 0 is -100)."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log(x), -100)


def _bce_forward(p, y):
    return -(y * _clamped_log(p) + (1 - y) * _clamped_log(1 - p))


clamped_log = P("clamped_log", _clamped_log,
                [lambda g, ans, x: where(ans > -100, g, 0) / maximum(x, np.finfo(x.dtype).tiny)],
                ["grad / x where log(x) > -100, else 0"])
# PyTorch's rule: (p - y) / max(p (1 - p), 1e-12), finite even where p is exactly 0 or 1.
binary_cross_entropy = P(
    "binary_cross_entropy", _bce_forward,
    [lambda g, ans, p, y: g * (p - y) / maximum(p * (1 - p), 1e-12),
     lambda g, ans, p, y: g * (clamped_log(1 - p) - clamped_log(p))],
    ["grad * (p - y) / max(p (1 - p), 1e-12)", "grad * (log(1 - p) - log(p))"])


# Pooling over (kh, kw) windows of the last two axes. Parameters as for im2col: kernel, stride,
# dilation, padding (top, bottom, left, right) and the input's shape. Every pass is one
# whole-array operation per kernel offset (kh * kw of them), never a loop over windows.
def _window_offsets(kernel, dilation):
    """(offset number, row, column) of each element of a window, in row-major order."""
    (kh, kw), (dh, dw) = kernel, dilation
    return [(i * kw + j, i * dh, j * dw) for i in range(kh) for j in range(kw)]


def _pool_size(shape, kernel, stride, dilation, padding):
    return _conv_plan(shape, kernel, stride, dilation, padding)[:2]


def _at_offset(xp, di, dj, stride, out_hw):
    """The elements at one kernel offset of every window: an (..., oh, ow) strided view."""
    (sh, sw), (oh, ow) = stride, out_hw
    return xp[..., di:di + sh * (oh - 1) + 1:sh, dj:dj + sw * (ow - 1) + 1:sw]


def _like(shape, dtype, ref):
    """An uninitialised array of ``shape`` whose axes lie in memory in the order of ``ref``'s, so
    a channels-first convolution output stays channels-first through pooling and back."""
    order = sorted(range(ref.ndim), key=lambda a: -builtins.abs(ref.strides[a]))
    return np.empty([shape[a] for a in order], dtype).transpose(np.argsort(order))


def _pool_padded(x, padding, fill):
    pt, pb, pl, pr = padding
    if not (pt or pb or pl or pr):
        return x
    h, w = x.shape[-2:]
    xp = _like(x.shape[:-2] + (h + pt + pb, w + pl + pr), x.dtype, x)
    xp.fill(fill)
    xp[..., pt:pt + h, pl:pl + w] = x
    return xp


def _pool_index_dtype(kernel):
    return np.dtype(np.uint8 if kernel[0] * kernel[1] <= 256 else np.int32)


def pool_index_buffer(x, kernel, stride, dilation, padding):
    """The (..., oh, ow) array `max_pool2d` writes each window's argmax into (its row-major
    offset in the window: uint8 for windows of up to 256 elements), laid out in memory as ``x``."""
    out_hw = _pool_size(x.shape, kernel, stride, dilation, padding)
    ref = _at_offset(x.data if isinstance(x, Tensor) else x, 0, 0, stride, (1, 1))
    return _like(x.shape[:-2] + out_hw, _pool_index_dtype(kernel), ref)


def _max_pool_forward(x, idx, kernel, stride, dilation, padding, shape):
    """Window maxima; with ``idx`` (see `pool_index_buffer`), also each window's first maximum,
    written into it: the backward pass then routes the gradient without looking at x again."""
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = _pool_padded(x, padding, lowest)
    out_hw = _pool_size(x.shape, kernel, stride, dilation, padding)
    offsets = _window_offsets(kernel, dilation)
    first = _at_offset(xp, 0, 0, stride, out_hw)
    out = _like(first.shape, x.dtype, first)
    np.copyto(out, first)
    if idx is None:
        for _, di, dj in offsets[1:]:
            np.maximum(out, _at_offset(xp, di, dj, stride, out_hw), out=out)
        return out
    idx.fill(0)
    wins, marks = _like(out.shape, bool, out), _like(out.shape, idx.dtype, out)
    for k, di, dj in offsets[1:]:
        at = _at_offset(xp, di, dj, stride, out_hw)
        np.greater(at, out, out=wins)  # strictly: a tie keeps the first maximum, as PyTorch
        np.maximum(out, at, out=out)
        np.multiply(wins, idx.dtype.type(k), out=marks)
        np.maximum(idx, marks, out=idx)  # offsets only grow: the latest winner is the maximum
    if x.dtype.kind == "f" and np.isnan(out).any():  # rare: a NaN wins its window (as PyTorch)
        for k, di, dj in offsets:
            np.putmask(idx, np.isnan(_at_offset(xp, di, dj, stride, out_hw)), k)
    return out


def _scatter_windows(g, weights, kernel, stride, dilation, padding, shape, layout=None):
    """(N, C, oh, ow) -> (N, C, H, W): ``g * weights(k)`` added at offset k of every window
    (``weights(k)`` a mask or None for 1); assigned instead where the windows do not overlap.
    The result is laid out in memory as ``layout`` (default: as ``g``)."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pb, pl, pr) = kernel, stride, dilation, padding
    h, w = shape[-2:]
    out_hw = g.shape[-2:]
    padded = tuple(shape[:-2]) + (h + pt + pb, w + pl + pr)
    disjoint = dh == dw == 1 and sh >= kh and sw >= kw
    tiles = disjoint and sh == kh and sw == kw and out_hw == (padded[-2] // kh, padded[-1] // kw) \
        and padded[-2] % kh == 0 and padded[-1] % kw == 0
    out = _like(padded, g.dtype, g if layout is None else layout)
    if not tiles:
        out.fill(0)
    for k, di, dj in _window_offsets(kernel, dilation):
        at = _at_offset(out, di, dj, stride, out_hw)
        weight = weights(k)
        if disjoint:
            if weight is None:
                np.copyto(at, g)
            else:
                np.multiply(g, weight, out=at)
        else:
            at += g if weight is None else g * weight
    return out[..., pt:pt + h, pl:pl + w]


def _dense_like(a, ref):
    """``a``, or a copy of it, contiguous in memory in the axis order of ``ref``."""
    out = _like(a.shape, a.dtype, ref)
    if out.strides == a.strides:
        return a
    np.copyto(out, a)
    return out


def _max_pool_scatter(g, idx, kernel, stride, dilation, padding, shape):
    g = _dense_like(g, idx)  # one layout for the passes below (a flattened layer's g is not)
    hit = _like(idx.shape, bool, idx)
    # laid out as idx, i.e. as the forward's input, which is how the layer before it (a ReLU)
    # holds its values: its backward then multiplies arrays of one layout
    return _scatter_windows(g, lambda k: np.equal(idx, k, out=hit), kernel, stride, dilation,
                            padding, shape, idx)


def _max_pool_gather(gx, idx, kernel, stride, dilation, padding, shape):
    """The adjoint of `_max_pool_scatter`: each window takes gx at its maximum."""
    gp = _pool_padded(gx, padding, 0)
    out_hw = idx.shape[-2:]
    out = np.zeros(idx.shape, gx.dtype)
    hit = np.empty(idx.shape, bool)
    for k, di, dj in _window_offsets(kernel, dilation):
        np.copyto(out, _at_offset(gp, di, dj, stride, out_hw), where=np.equal(idx, k, out=hit))
    return out


def _window_sum(x, kernel, stride, dilation, padding, shape):
    xp = _pool_padded(x, padding, 0)
    out_hw = _pool_size(x.shape, kernel, stride, dilation, padding)
    out = None
    for _, di, dj in _window_offsets(kernel, dilation):
        at = _at_offset(xp, di, dj, stride, out_hw)
        if out is None:
            out = _like(at.shape, x.dtype, at)
            np.copyto(out, at)
        else:
            np.add(out, at, out=out)
    return out


max_pool2d = P("max_pool2d", _max_pool_forward,
               [lambda g, ans, x, idx, kernel, stride, dilation, padding, shape: max_pool_scatter(
                   g, idx, kernel=kernel, stride=stride, dilation=dilation, padding=padding,
                   shape=shape), None],
               ["grad routed to each window's (first) maximum", "none"])
# The two adjoint halves of max pooling's backward pass, so create_graph=True works through it.
max_pool_scatter = P("max_pool2d_scatter", _max_pool_scatter,
                     [lambda g, ans, gy, idx, kernel, stride, dilation, padding, shape:
                      max_pool_gather(g, idx, kernel=kernel, stride=stride, dilation=dilation,
                                      padding=padding, shape=shape), None],
                     ["grad gathered from each window's maximum", "none"])
max_pool_gather = P("max_pool2d_gather", _max_pool_gather,
                    [lambda g, ans, gx, idx, kernel, stride, dilation, padding, shape:
                     max_pool_scatter(g, idx, kernel=kernel, stride=stride, dilation=dilation,
                                      padding=padding, shape=shape), None],
                    ["grad routed to each window's maximum", "none"])
# Sums over windows (average pooling divides them) and their adjoint, spreading each window's
# gradient over its elements.
window_sum = P("window_sum", _window_sum,
               [lambda g, ans, x, kernel, stride, dilation, padding, shape: window_spread(
                   g, kernel=kernel, stride=stride, dilation=dilation, padding=padding,
                   shape=shape)],
               ["grad added to every element of its window"])
window_spread = P("window_spread",
                  lambda g, kernel, stride, dilation, padding, shape: _scatter_windows(
                      g, lambda k: None, kernel, stride, dilation, padding, shape),
                  [lambda g, ans, gy, kernel, stride, dilation, padding, shape: window_sum(
                      g, kernel=kernel, stride=stride, dilation=dilation, padding=padding,
                      shape=shape)],
                  ["grad summed over each window"])


# ----------------------------------------------------------------------------------------------
# Public functions: argument checks, then one row of the table
# ----------------------------------------------------------------------------------------------
def _ndim(x):
    return x.ndim if isinstance(x, (Tensor, np.ndarray)) else np.ndim(x)


def _axes(axis, ndim, where):
    """``axis`` (None, int or tuple) as None or a sorted tuple of non-negative ints."""
    if axis is None:
        return None
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in items:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"{where}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"{where}: axis {a} is out of range for a tensor with {ndim} "
                             f"dimension{'s' if ndim != 1 else ''}")
        out.append(int(a) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def _one_axis(axis, ndim, where):
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{where}: axis must be an int, got {axis!r}")
    return _axes(axis, ndim, where)[0]


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
logsumexp = _reduce(_logsumexp, "logsumexp")


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


def reshape(x, shape):
    """``x`` with a new shape of the same size (one entry may be -1)."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    in_shape = np.shape(x)
    size = int(np.prod(in_shape))
    known = int(np.prod([n for n in shape if n != -1]))
    if shape.count(-1) > 1 or (-1 not in shape and known != size) or (
            -1 in shape and (known == 0 or size % known)):
        raise ShapeError(f"reshape: cannot reshape a tensor of shape {in_shape} (size {size}) "
                         f"into shape {shape}")
    return _reshape(x, shape=shape, in_shape=in_shape)


def transpose(x, axes=None):
    """Permute the axes (reverse them when ``axes`` is None)."""
    ndim = _ndim(x)
    if axes is not None:
        axes = tuple(int(a) % builtins.max(ndim, 1) for a in axes)
        if sorted(axes) != list(range(ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the {ndim} axes "
                             f"of shape {np.shape(x)}")
        inverse = tuple(np.argsort(axes).tolist())
    else:
        inverse = None
    return _transpose(x, axes=axes, inverse=inverse)


def swapaxes(x, axis1, axis2):
    """Exchange two axes."""
    ndim = _ndim(x)
    order = list(range(ndim))
    a, b = _one_axis(axis1, ndim, "swapaxes"), _one_axis(axis2, ndim, "swapaxes")
    order[a], order[b] = order[b], order[a]
    return transpose(x, tuple(order))


def flatten(x, start_dim=0, end_dim=-1):
    """Merge axes ``start_dim``..``end_dim`` into one (all of them by default)."""
    shape = np.shape(x)
    if not shape:
        return reshape(x, (1,))
    s, e = _one_axis(start_dim, len(shape), "flatten"), _one_axis(end_dim, len(shape), "flatten")
    return reshape(x, shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:])


def squeeze(x, axis=None):
    """Remove axes of size 1 (all of them, or those in ``axis``)."""
    shape = np.shape(x)
    axes = _axes(axis, len(shape), "squeeze")
    if axes is None:
        axes = tuple(i for i, n in enumerate(shape) if n == 1)
    for a in axes:
        if shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} of shape {shape} has size {shape[a]}, not 1")
    return reshape(x, tuple(n for i, n in enumerate(shape) if i not in axes))


def expand_dims(x, axis):
    """Insert an axis of size 1 at ``axis``."""
    shape = np.shape(x)
    a = _one_axis(axis, len(shape) + 1, "expand_dims")
    return reshape(x, shape[:a] + (1,) + shape[a:])


unsqueeze = expand_dims


def broadcast_to(x, shape):
    """``x`` broadcast to ``shape`` (gradients are summed back)."""
    shape = tuple(shape)
    in_shape = np.shape(x)
    try:
        np.broadcast_shapes(in_shape, shape)
    except ValueError:
        raise ShapeError(f"broadcast_to: cannot broadcast shape {in_shape} to {shape}") from None
    if np.broadcast_shapes(in_shape, shape) != shape:
        raise ShapeError(f"broadcast_to: cannot broadcast shape {in_shape} to {shape}")
    return _broadcast_to(x, shape=shape, in_shape=in_shape)


def astype(x, dtype):
    """``x`` cast to ``dtype`` (the gradient is cast back)."""
    return astype_(x, dtype=np.dtype(dtype), in_dtype=np.dtype(x.dtype))


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    return _leaky_relu(x, slope=float(negative_slope))


def clip(x, min=None, max=None):
    """Limit values to [min, max]; the gradient passes where min <= x <= max."""
    if min is None and max is None:
        raise ValueError("clip: give at least one of min and max")
    return _clip(x, lo=min, hi=max)


def concatenate(tensors, axis=0):
    """Join tensors along an existing axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    ndim = _ndim(tensors[0])
    a = _one_axis(axis, ndim, "concatenate")
    shapes = [np.shape(t) for t in tensors]
    for s in shapes:
        if len(s) != ndim or s[:a] + s[a + 1:] != shapes[0][:a] + shapes[0][a + 1:]:
            raise ShapeError(f"concatenate: shapes {shapes} differ outside axis {a}")
    return _concatenate(*tensors, axis=a, sizes=tuple(s[a] for s in shapes))


def stack(tensors, axis=0):
    """Join tensors of one shape along a new axis."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    shapes = [np.shape(t) for t in tensors]
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(f"stack: all tensors need the same shape, got {shapes}")
    return _stack(*tensors, axis=_one_axis(axis, len(shapes[0]) + 1, "stack"))


def split(x, indices_or_sections, axis=0):
    """Split into pieces along ``axis``: a number of equal sections or a list of split points."""
    shape = np.shape(x)
    a = _one_axis(axis, len(shape), "split")
    n = shape[a]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ValueError(f"split: axis {a} of size {n} does not split into {k} equal sections")
        points = list(range(0, n, n // k))[1:]
    else:
        points = [int(p) for p in indices_or_sections]
    bounds = [0] + points + [n]
    lead = (slice(None),) * a
    return [getitem(x, lead + (slice(lo, hi),)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return builtins.all(isinstance(i, (int, np.integer, slice, type(None), type(Ellipsis)))
                        and not isinstance(i, bool) for i in items)


def index_key(index):
    """An index with Tensors and lists turned into arrays (NumPy's indexing rules apply)."""
    if isinstance(index, tuple):
        return tuple(index_key(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return np.asarray(index)
    return index


def getitem(x, index):
    """``x[index]``: basic slicing gives a view; integer or boolean arrays gather (repeated
    indices accumulate their gradients)."""
    index = index_key(index)
    row = _getitem if _is_basic(index) else _take
    return row(x, index=index, shape=np.shape(x))
