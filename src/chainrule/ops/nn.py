"""Fused rows for layers and losses (owner: ``chainrule.nn``): linear, cross-entropy
(dL/dz = q - y), im2col/col2im convolution, binary cross-entropy and pooling. Each is much
faster than its composition from the other families, and still a row: forward and VJP side by
side.
"""

from __future__ import annotations

import builtins

import numpy as np

from chainrule.autograd import Primitive
from chainrule.ops.elementwise import maximum, where
from chainrule.ops.reductions import (
    _log_softmax_forward,
    _logsumexp,
    _max_keepdims,
    _reduce,
    log_softmax,
    softmax,
)
from chainrule.ops.shape import expand_dims
from chainrule.tensor import Tensor

P = Primitive


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
            lambda g, ans, x, w, b: (g.T @ x if g.ndim == 2 else _rows(g).T @ _rows(x)),
            lambda g, ans, x, w, b: (g if g.ndim == 2 else _rows(g)).sum(axis=0)],
           ["grad @ w", "grad^T @ x", "sum of grad over the batch"])


def _one_hot(labels, n_classes, dtype):
    labels = np.asarray(labels)
    out = np.zeros((labels.size, n_classes), dtype=dtype)
    out[np.arange(labels.size), labels.reshape(-1)] = 1
    return out.reshape(labels.shape + (n_classes,))


def _reduce_loss(losses, reduction):
    if reduction == "mean":
        if losses.size and losses.dtype.itemsize >= 4:  # mean's own sum, without its Python
            return np.add.reduce(losses, axis=None) / losses.size
        return losses.mean()
    return losses.sum() if reduction == "sum" else losses


def _loss_grad_scale(g, reduction, n):
    """How the incoming gradient of a reduced loss reaches each sample's loss."""
    if reduction == "mean":
        return g / n
    return g if reduction == "sum" else expand_dims(g, -1)


def _cross_entropy_labels(x, labels, reduction):
    shifted = x - _max_keepdims(x, -1)
    e = np.exp(shifted)
    total = e.sum(axis=-1, keepdims=True)  # the method: np.sum adds a Python call
    picked = shifted[np.arange(len(shifted)), labels]
    loss = _reduce_loss(np.log(total[:, 0]) - picked, reduction)
    e /= total
    return loss, e  # the softmax is the residual: backward needs exactly it


def _cross_entropy_probs(x, probs, reduction):
    return _reduce_loss(-np.sum(probs * _log_softmax_forward(x, -1), axis=-1), reduction)


def _cross_entropy_labels_grad(g, q, x, labels, reduction):
    scale = _loss_grad_scale(g, reduction, x.shape[0])
    if type(q) is np.ndarray and isinstance(scale, np.ndarray | np.generic) and (
            scale.dtype == x.dtype):
        # A plain backward: the same numbers as the expression below, from the softmax the
        # forward kept (q, the residual), in one fresh array instead of five.
        q = q.copy()
        q[np.arange(len(q)), labels] -= 1
        q *= scale
        return q
    # recorded (create_graph): the softmax again, as a function of x
    return scale * (softmax(x, -1) - _one_hot(labels, x.shape[-1], x.dtype))


# seed 002: for softmax q and one-hot y, dL/dz = q - y; averaged over a batch of N, (q - y) / N.
cross_entropy_labels = P(
    "cross_entropy", _cross_entropy_labels,
    [_cross_entropy_labels_grad, None],
    ["grad * (softmax(x) - onehot(labels)) / N", "none"], residual=True)
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
logsumexp = _reduce(_logsumexp, "logsumexp")
