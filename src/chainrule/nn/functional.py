"""Layers as functions, and the losses (``from chainrule.nn import functional as F``)."""

from __future__ import annotations

import math

import numpy as np

from chainrule import autograd, ops, random
from chainrule.autograd import is_grad_enabled
from chainrule.ops import (  # noqa: F401  (activations are plain rows of the table)
    relu,
    sigmoid,
    softplus,
    tanh,
)
from chainrule.tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def linear(x, weight, bias=None):
    """x W^T + b (one fused row: its VJP is grad @ W, grad^T @ x, sum of grad)."""
    if isinstance(x, Tensor) and isinstance(weight, Tensor) and (
            bias is None or isinstance(bias, Tensor)):
        # Tensors of one dtype and matching features (every call of a working layer): nothing
        # to convert or report, so none of the checks below runs.
        xd, wd = x.data, weight.data
        if xd.dtype is wd.dtype and (bias is None or bias.data.dtype is wd.dtype) and (
                xd.ndim and wd.ndim == 2 and xd.shape[-1] == wd.shape[-1]):
            return ops.linear(x, weight, bias)
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: input has {x.shape[-1]} features (shape {x.shape}) but the "
                         f"weight expects {weight.shape[-1]} (shape {weight.shape})")
    x = _linear_input(x, weight, bias, "linear")
    return ops.linear(x, weight, bias)


def _linear_input(x, weight, bias, where):
    """``x`` in the weight's dtype. An integer or bool input is converted (as a number it is
    exact); a floating input of another dtype raises, as in PyTorch, rather than computing the
    layer in a mixed or silently widened dtype."""
    w_dtype = np.dtype(weight.dtype)
    if bias is not None and np.dtype(bias.dtype) != w_dtype:
        raise TypeError(f"{where}: the bias has dtype {bias.dtype} but the weight {w_dtype}; "
                        f"they must match")
    x_dtype = np.dtype(x.dtype)
    if x_dtype == w_dtype:
        return x
    if x_dtype.kind in "biu":
        return ops.astype(x, w_dtype)
    raise TypeError(f"{where}: the input has dtype {x_dtype} but the weight has dtype "
                    f"{w_dtype}; convert the input (x.astype(cr.{w_dtype})) or the parameters "
                    f"(.to(cr.{x_dtype}) on the module) so that they match")


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    return ops.leaky_relu(x, negative_slope)


def gelu(x, approximate="none"):
    """x Phi(x) (exact, with erf); ``approximate='tanh'``: 0.5 x (1 + tanh(sqrt(2/pi)
    (x + 0.044715 x^3)))."""
    _check_gelu_approximation(approximate)
    if approximate == "none":
        return ops.gelu(x)
    inner = (x + 0.044715 * x * x * x) * math.sqrt(2 / math.pi)
    return 0.5 * x * (1 + ops.tanh(inner))


def _check_gelu_approximation(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")


def softmax(x, dim=-1):
    """exp(x) / sum(exp(x)) along ``dim`` (PyTorch's ``F.softmax(x, dim)``)."""
    return ops.softmax(x, dim)


def log_softmax(x, dim=-1):
    """log(softmax(x)) along ``dim``, computed stably."""
    return ops.log_softmax(x, dim)


def dropout(x, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (train only).

    The mask is drawn from the library generator, so ``cr.manual_seed`` repeats it.
    """
    if not 0 <= p <= 1:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0:
        return x
    dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
    if p == 1:
        return x * np.zeros(x.shape, dtype)
    return x * Tensor._wrap(random.draw(_dropout_mask, x.shape, p, dtype))


def _dropout_mask(rng, shape, p, dtype):
    """1/(1-p) where an element is kept, else 0 (keep-probability draws in float32)."""
    return np.multiply(rng.random(shape, dtype=np.float32) >= p, 1 / (1 - p), dtype=dtype)


def one_hot(labels, num_classes=-1):
    """Integer labels -> rows of 0/1 (int64, as PyTorch); ``num_classes=-1``: max label + 1."""
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"one_hot: labels must be integers, got dtype {labels.dtype}")
    if num_classes in (None, -1):
        autograd.untraceable("one_hot without num_classes (its width would depend on the "
                             "labels' values)")
    n = int(labels.max()) + 1 if num_classes in (None, -1) and labels.size else num_classes
    n = 0 if n in (None, -1) else int(n)
    autograd.checked(_check_one_hot, labels, n)
    return Tensor._wrap(autograd.derived(ops._one_hot, labels, n, np.int64))


def _check_one_hot(labels, n):
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        bad = labels[(labels < 0) | (labels >= n)].flat[0]
        raise ValueError(f"one_hot: label {bad} is out of range for {n} classes "
                         f"(labels of shape {labels.shape})")


def _check_reduction(where, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{where}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(losses, reduction):
    if reduction == "mean":
        return losses.mean()
    return losses.sum() if reduction == "sum" else losses


def _labels(where, logits, target):
    """Validated integer class labels for a (N, C) input."""
    labels = target.data if isinstance(target, Tensor) else np.asarray(target)
    n, c = logits.shape[0], logits.shape[-1]
    if labels.dtype.kind not in "iu":
        raise TypeError(f"{where}: class labels must be integers, got dtype {labels.dtype} "
                        f"(shape {labels.shape}) for input of shape {logits.shape}; for class "
                        f"probabilities pass a float tensor of shape {logits.shape}")
    if labels.shape != (n,):
        raise ValueError(f"{where}: expected {n} labels (shape ({n},)) for input of shape "
                         f"{logits.shape}, got shape {labels.shape}")
    autograd.checked(_check_label_range, where, labels, c, logits.shape)
    return labels


_UNSIGNED = {np.dtype(t): np.dtype(u) for t, u in
             [(np.int8, np.uint8), (np.int16, np.uint16), (np.int32, np.uint32),
              (np.int64, np.uint64)]}


def _check_label_range(where, labels, c, shape):
    # Seen as unsigned, a negative label is huge: one reduction finds any label outside 0..c-1.
    unsigned = _UNSIGNED.get(labels.dtype)
    if labels.size and (labels.view(unsigned).max() >= c if unsigned is not None else
                        labels.min() < 0 or labels.max() >= c):
        position = int(np.flatnonzero((labels < 0) | (labels >= c))[0])
        raise ValueError(f"{where}: label {labels[position]} (at position {position} of target "
                         f"shape {labels.shape}) is out of range for {c} classes (input shape "
                         f"{shape}; valid labels 0..{c - 1})")


def cross_entropy(logits, target, reduction="mean"):
    """Softmax cross-entropy from logits, fused: its gradient is exactly (q - y) / N.

    ``target`` is integer class labels of shape (N,) or class probabilities of shape (N, C).
    """
    _check_reduction("cross_entropy", reduction)
    if logits.ndim == 1:  # one sample: a label, or a vector of probabilities
        t = np.asarray(target.data if isinstance(target, Tensor) else target)
        t = autograd.derived(np.reshape, t, (1,) + t.shape)  # a replay reshapes its own target
        out = cross_entropy(ops.expand_dims(logits, 0), t, reduction)
        return out[0] if reduction == "none" else out
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: expected logits of shape (N, C) or (C,), got "
                         f"{logits.shape}")
    t_dtype = (target.dtype if isinstance(target, (Tensor, np.ndarray))
               else np.asarray(target).dtype)
    if t_dtype.kind == "f" and np.ndim(target) == logits.ndim:
        probs = _target("cross_entropy", logits, target, "class probabilities")
        return ops.cross_entropy_probs(logits, probs, reduction=reduction)
    return ops.cross_entropy_labels(logits, _labels("cross_entropy", logits, target),
                                    reduction=reduction)


def nll_loss(log_probs, target, reduction="mean"):
    """Negative log-likelihood of integer labels (N,) given log-probabilities (N, C)."""
    _check_reduction("nll_loss", reduction)
    if log_probs.ndim != 2:
        raise ValueError(f"nll_loss: expected log-probabilities of shape (N, C), got "
                         f"{log_probs.shape}")
    labels = _labels("nll_loss", log_probs, target)
    picked = log_probs[np.arange(len(labels)), labels]
    return _reduce(-picked, reduction)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error (seed 004's C = (o - t)^2, averaged)."""
    _check_reduction("mse_loss", reduction)
    diff = input - _target("mse_loss", input, target)
    return _reduce(diff * diff, reduction)


def l1_loss(input, target, reduction="mean"):
    """Mean absolute error."""
    _check_reduction("l1_loss", reduction)
    return _reduce(ops.abs(input - _target("l1_loss", input, target)), reduction)


def binary_cross_entropy(probs, target, reduction="mean"):
    """-(y log p + (1 - y) log(1 - p)) on probabilities; logs clamped at -100 as PyTorch does.

    One fused row: its gradient is PyTorch's (p - y) / max(p (1 - p), 1e-12), finite at 0 and 1.
    """
    _check_reduction("binary_cross_entropy", reduction)
    target = _target("binary_cross_entropy", probs, target)
    p = _data(probs)
    if p.size and not (p.min() >= 0 and p.max() <= 1):
        raise ValueError(f"binary_cross_entropy: probabilities must lie in [0, 1], got values "
                         f"from {p.min()} to {p.max()} (use binary_cross_entropy_with_logits "
                         f"for raw scores)")
    return _reduce(ops.binary_cross_entropy(probs, target), reduction)


def binary_cross_entropy_with_logits(logits, target, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable expression: softplus(x) - x y.

    ``pos_weight`` scales the positive term: pos_weight * y * softplus(-x) + (1 - y) softplus(x).
    """
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    target = _target("binary_cross_entropy_with_logits", logits, target)
    if pos_weight is None:
        return _reduce(softplus(logits) - logits * target, reduction)
    pos_weight = _target("binary_cross_entropy_with_logits", logits, pos_weight, "pos_weight",
                         broadcast=True)
    losses = pos_weight * target * softplus(-logits) + (1 - target) * softplus(logits)
    return _reduce(losses, reduction)


def _target(where, input, target, what="target", broadcast=False):
    """``target`` checked against ``input``'s shape and given its floating dtype, so a float32
    model's loss stays float32 whatever precision the targets came in."""
    shape = target.shape if isinstance(target, Tensor) else np.shape(target)
    if broadcast:
        try:
            np.broadcast_shapes(shape, input.shape)
        except ValueError:
            raise ValueError(f"{where}: {what} of shape {shape} does not broadcast against "
                             f"input of shape {input.shape}") from None
    elif tuple(shape) != tuple(input.shape):
        raise ValueError(f"{where}: input shape {tuple(input.shape)} and {what} shape "
                         f"{tuple(shape)} differ")
    dtype = input.dtype if input.dtype.kind == "f" else None
    if isinstance(target, Tensor):
        if dtype is not None and target.dtype != dtype:
            return ops.astype(target, dtype)
        return target
    array = np.asarray(target)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{where}: {what} must be numeric, got dtype {array.dtype}")
    return array.astype(dtype) if dtype is not None and array.dtype != dtype else array


def _conv_padding(where, padding, kernel, stride, dilation):
    """(top, bottom, left, right) from an int, an (h, w) pair, 'valid' or 'same' (PyTorch's
    'same': stride 1 only, and the odd element of an even kernel's padding goes after)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"{where}: padding must be an int, a pair, 'valid' or 'same', got "
                             f"{padding!r}")
        if stride != (1, 1):
            raise ValueError(f"{where}: padding='same' is not supported for strided "
                             f"convolutions (stride {stride})")
        out = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            out += [total // 2, total - total // 2]
        return tuple(out)
    ph, pw = _pair(padding)
    if min(ph, pw) < 0:
        raise ValueError(f"{where}: padding must be non-negative, got {(ph, pw)}")
    return (ph, ph, pw, pw)


_heap_primed = False


def _prime_heap():
    """Let the C allocator keep freed blocks of up to ~31 MiB for reuse (done once).

    A convolution step allocates tens of MB of columns, activations and gradients and frees
    them again. glibc hands blocks above its mmap threshold (128 KiB at start) back to the
    system on free() and trims the top of its heap above twice that, so every step paid ~3000
    page faults (8 ms of a 24 ms step in benchmarks/bench_cnn.py). glibc raises both thresholds
    by itself once a block above the threshold is freed (after which up to ~62 MiB of freed
    memory may stay with the process); freeing one untouched 31 MiB block here makes that
    happen at once. malloc and free are called directly, so no page is touched and tracemalloc
    sees nothing. A threshold set explicitly (mallopt, MALLOC_MMAP_THRESHOLD_) turns glibc's
    adaptation off and is left alone; other C libraries just allocate and free.
    """
    global _heap_primed
    if _heap_primed:
        return
    _heap_primed = True
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
        libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
        libc.free(libc.malloc(31 << 20))
    except (OSError, AttributeError, TypeError):  # no C library to reach: nothing to tune
        pass


def _unbatched(where, x, dims):
    """Input of ``dims`` spatial axes with its batch axis: (x with one, whether it was added)."""
    if x.ndim == dims + 1:
        return ops.expand_dims(x, 0), True
    if x.ndim != dims + 2:
        names = "(N, C, L)" if dims == 1 else "(N, C, H, W)"
        raise ValueError(f"{where}: expected input {names} or {names.replace('N, ', '')}, got "
                         f"shape {x.shape}")
    return x, False


def _batch_last(n, ow):
    """Whether a convolution lays its output out batch innermost, (O, oh, ow, N) in memory: once
    the batch outgrows a row of the output, so that the strided passes of pooling (and of the
    next im2col) run over n contiguous elements rather than ow."""
    return n >= min(ow, 32)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation), PyTorch's ``F.conv2d``: input (N, C, H, W) or
    (C, H, W), weight (O, C / groups, kh, kw), bias (O,); ``stride``, ``padding`` and
    ``dilation`` an int or an (h, w) pair, ``padding`` also 'valid' or 'same'.

    One matrix product per convolution: the weight as (O, C kh kw) times the (C kh kw, N L)
    columns of the input (`ops.im2col`), one per group with ``groups``. The output is a
    channels-first view: (N, O, oh, ow) over (O, oh, ow, N) memory, or (O, N, oh, ow) memory
    for a batch smaller than the output's width.
    """
    if weight.ndim != 4:
        raise ValueError(f"conv2d: expected weight (O, C, kh, kw), got {weight.shape}")
    _prime_heap()
    x, added = _unbatched("conv2d", x, 2)
    groups = int(groups)
    out_ch, group_ch, kh, kw = weight.shape
    if groups <= 0 or out_ch % groups:
        raise ValueError(f"conv2d: groups must be positive and divide the {out_ch} output "
                         f"channels, got groups={groups}")
    if x.shape[1] != group_ch * groups:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels (shape {x.shape}) but the "
                         f"weight expects {group_ch * groups} (shape {weight.shape}"
                         f"{f', groups={groups}' if groups > 1 else ''})")
    stride, dilation = _pair(stride), _pair(dilation)
    if min(stride) <= 0 or min(dilation) <= 0:
        raise ValueError(f"conv2d: stride and dilation must be positive, got stride {stride} "
                         f"and dilation {dilation}")
    pads = _conv_padding("conv2d", padding, (kh, kw), stride, dilation)
    if bias is not None and tuple(bias.shape) != (out_ch,):
        raise ValueError(f"conv2d: bias of shape {bias.shape} for {out_ch} output channels")
    n, _, h, w = x.shape
    oh, ow, row = ops._conv_plan(x.shape, (kh, kw), stride, dilation, pads)
    if oh <= 0 or ow <= 0:
        spread = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
        dilated = f" (dilated: {spread[0]}x{spread[1]})" if dilation != (1, 1) else ""
        raise ValueError(f"conv2d: kernel {kh}x{kw}{dilated} is larger than the (padded) input "
                         f"{h + pads[0] + pads[1]}x{w + pads[2] + pads[3]}")
    batch_last = _batch_last(n, ow)
    cols = ops.im2col(x, kernel=(kh, kw), stride=stride, dilation=dilation, padding=pads,
                      shape=tuple(x.shape), batch_last=batch_last)
    out = ops.conv_matmul(ops.reshape(weight, (out_ch, group_ch * kh * kw)), cols, bias,
                          groups=groups)
    if batch_last:
        out = ops.reshape(out, (out_ch, oh, row, n))
        if row != ow:  # the flat layout's extra columns
            out = out[:, :, :ow]
        out = ops.transpose(out, (3, 0, 1, 2))
    else:
        out = ops.reshape(out, (out_ch, n, oh, row))
        if row != ow:
            out = out[:, :, :, :ow]
        out = ops.transpose(out, (1, 0, 2, 3))
    return out[0] if added else out


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution, PyTorch's ``F.conv1d``: input (N, C, L) or (C, L), weight
    (O, C / groups, k); the 2-D convolution of height 1."""
    if weight.ndim != 3:
        raise ValueError(f"conv1d: expected weight (O, C, k), got {weight.shape}")
    x, added = _unbatched("conv1d", x, 1)
    if isinstance(padding, str):
        pad = padding
    else:
        pad = (0, _single("conv1d", "padding", padding))
    out = conv2d(ops.expand_dims(x, 2), ops.expand_dims(weight, 2), bias,
                 (1, _single("conv1d", "stride", stride)), pad,
                 (1, _single("conv1d", "dilation", dilation)), groups)
    out = ops.squeeze(out, 2)
    return out[0] if added else out


def _single(where, name, v):
    if np.ndim(v) == 0:
        return int(v)
    if len(v) != 1:
        raise ValueError(f"{where}: {name} must be an int or a 1-tuple, got {v!r}")
    return int(v[0])


def _pool_geometry(where, x, kernel_size, stride, padding, dilation, ceil_mode):
    """kernel, stride, dilation and (top, bottom, left, right) padding of a pooling, with
    ``ceil_mode``'s extra rows and columns as padding after; checked as PyTorch does."""
    kernel = _pair(kernel_size)
    stride = _pair(stride if stride is not None and np.size(stride) else kernel_size)
    ph, pw = _pair(padding)
    dilation = _pair(dilation)
    if min(kernel + stride + dilation) <= 0 or min(ph, pw) < 0:
        raise ValueError(f"{where}: kernel size, stride and dilation must be positive and "
                         f"padding non-negative, got kernel {kernel}, stride {stride}, dilation "
                         f"{dilation}, padding {(ph, pw)}")
    spans = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
    if 2 * ph > spans[0] or 2 * pw > spans[1]:
        raise ValueError(f"{where}: padding {(ph, pw)} must be at most half the kernel "
                         f"size {spans}")
    pads = []
    for size, k, s, d, p in zip(x.shape[-2:], kernel, stride, dilation, (ph, pw)):
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            raise ValueError(f"{where}: kernel {kernel[0]}x{kernel[1]} is larger than the "
                             f"(padded) input {x.shape[-2] + 2 * ph}x{x.shape[-1] + 2 * pw}")
        extra = 0
        if ceil_mode:
            out = -(-(size + 2 * p - span) // s) + 1
            if (out - 1) * s >= size + p:  # the last window would start in the padding
                out -= 1
            extra = (out - 1) * s + span - (size + 2 * p)
        pads += [p, p + max(extra, 0)]
    return kernel, stride, dilation, tuple(pads)


def _recording(x):
    return isinstance(x, Tensor) and x.requires_grad and is_grad_enabled()


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Maximum over (kh, kw) windows of each channel of (N, C, H, W) or (C, H, W) input
    (PyTorch's ``F.max_pool2d``; stride defaults to the kernel size; padding counts as -inf).
    A tie sends its gradient to the first maximum, as PyTorch does.

    When a gradient is due, the forward pass keeps each window's argmax (a uint8 offset into the
    window; `cr.inspect.memory` counts it) and the backward pass routes through it.
    ``return_indices``: also PyTorch's int64 flat indices into each (H, W) plane.
    """
    x, added = _unbatched("max_pool2d", x, 2)
    kernel, stride, dilation, pads = _pool_geometry("max_pool2d", x, kernel_size, stride,
                                                    padding, dilation, ceil_mode)
    geometry = dict(kernel=kernel, stride=stride, dilation=dilation, padding=pads)
    idx = (ops.pool_index_buffer(x, **geometry) if return_indices or _recording(x) else None)
    out = ops.max_pool2d(x, idx, **geometry, shape=tuple(x.shape))
    if added:
        out = out[0]
    if not return_indices:
        return out
    indices = _flat_indices(idx, x.shape, **geometry)
    return out, Tensor(indices[0] if added else indices)


def _flat_indices(idx, shape, kernel, stride, dilation, padding):
    """Window offsets -> PyTorch's indices into the flattened (H, W) plane of the input."""
    oh, ow = idx.shape[-2:]
    i, j = np.divmod(idx.astype(np.int64), kernel[1])
    rows = np.arange(oh)[:, None] * stride[0] - padding[0] + i * dilation[0]
    cols = np.arange(ow) * stride[1] - padding[2] + j * dilation[1]
    return rows * shape[-1] + cols


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over (kh, kw) windows of each channel of (N, C, H, W) or (C, H, W) input
    (PyTorch's ``F.avg_pool2d``): zero padding, counted in the divisor when
    ``count_include_pad``; ``divisor_override`` replaces the divisor."""
    x, added = _unbatched("avg_pool2d", x, 2)
    kernel, stride, dilation, pads = _pool_geometry("avg_pool2d", x, kernel_size, stride,
                                                    padding, 1, ceil_mode)
    sums = ops.window_sum(x, kernel=kernel, stride=stride, dilation=dilation, padding=pads,
                          shape=tuple(x.shape))
    if divisor_override is not None:
        if int(divisor_override) <= 0:
            raise ValueError(f"avg_pool2d: divisor_override must be positive, got "
                             f"{divisor_override}")
        out = sums * (1.0 / int(divisor_override))
    else:
        counts = _window_counts(x.shape, kernel, stride, pads, count_include_pad)
        if np.all(counts == counts.flat[0]):
            out = sums * (1.0 / float(counts.flat[0]))
        else:
            dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
            out = sums / counts.astype(dtype)
    return out[0] if added else out


def _window_counts(shape, kernel, stride, pads, count_include_pad):
    """PyTorch's divisor per window: its extent within the input and its explicit padding
    (within the input alone without ``count_include_pad``), as an (oh, ow) array."""
    sizes = []
    for size, k, s, (before, after) in zip(shape[-2:], kernel, stride, (pads[:2], pads[2:])):
        start = np.arange((size + before + after - k) // s + 1) * s - before
        end = np.minimum(start + k, size + before)  # ceil_mode's extra rows do not count
        if not count_include_pad:
            start, end = np.maximum(start, 0), np.minimum(end, size)
        sizes.append(np.maximum(end - start, 1))
    return sizes[0][:, None] * sizes[1]


def adaptive_avg_pool2d(x, output_size):
    """Mean over PyTorch's adaptive bins (``F.adaptive_avg_pool2d``): output row i averages input
    rows floor(i H / oh) to ceil((i + 1) H / oh); None in ``output_size`` keeps that size."""
    x, added = _unbatched("adaptive_avg_pool2d", x, 2)
    h, w = x.shape[-2:]
    sizes = (output_size, output_size) if np.ndim(output_size) == 0 else tuple(output_size)
    if len(sizes) != 2:
        raise ValueError(f"adaptive_avg_pool2d: output_size must be an int or a pair, got "
                         f"{output_size!r}")
    oh, ow = (size if o is None else int(o) for o, size in zip(sizes, (h, w)))
    if oh <= 0 or ow <= 0:
        raise ValueError(f"adaptive_avg_pool2d: output size must be positive, got {(oh, ow)}")
    if h % oh == 0 and w % ow == 0:  # equal bins: an ordinary average pooling
        out = avg_pool2d(x, (h // oh, w // ow))
    else:
        dtype = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
        out = ops.matmul(ops.matmul(_bins(oh, h, dtype), x), _bins(ow, w, dtype).T)
    return out[0] if added else out


def _bins(n_out, n_in, dtype):
    """(n_out, n_in) matrix averaging each adaptive bin."""
    i = np.arange(n_out)
    start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
    inside = (np.arange(n_in) >= start[:, None]) & (np.arange(n_in) < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel of (N, C, ...) input: (N, C), (N, C, L), (N, C, H, W), ...
    (PyTorch's ``F.batch_norm``).

    ``training``: normalise with the batch mean and biased variance, and (when running tensors
    are given) move them towards the batch statistics, the variance unbiased. Otherwise
    normalise with ``running_mean`` and ``running_var``.
    """
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected input (N, C, ...), got {x.shape}")
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    if training:
        count = x.size // x.shape[1]
        if count < 2:
            raise ValueError(f"batch_norm: need more than 1 value per channel in training, got "
                             f"input of shape {x.shape}")
        mean = ops.mean(x, axis=axes, keepdims=True)
        var = ops.var(x, axis=axes, keepdims=True)
        if running_mean is not None:
            _move_towards(running_mean, mean, momentum)
        if running_var is not None:
            _move_towards(running_var, var, momentum, count / (count - 1))
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: running_mean and running_var are needed when not "
                             "training")
        mean = _data(running_mean).reshape(shape)
        var = _data(running_var).reshape(shape)
    x_hat = (x - mean) / ops.sqrt(var + eps)
    if weight is not None:
        x_hat = x_hat * ops.reshape(weight, shape)
    if bias is not None:
        x_hat = x_hat + ops.reshape(bias, shape)
    return x_hat


def _data(t):
    return t.data if isinstance(t, Tensor) else np.asarray(t)


def _move_towards(running, batch_stat, momentum, correction=1.0):
    """running <- (1 - momentum) running + momentum * correction * batch_stat, in place."""
    autograd.untraceable("batch_norm in training mode (it updates the running statistics in "
                         "place); call model.eval() first")
    data = running.data if isinstance(running, Tensor) else running
    data *= 1 - momentum
    data += (momentum * correction) * _data(batch_stat).reshape(-1).astype(data.dtype)
    if isinstance(running, Tensor):
        running._version[0] += 1


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last ``len(normalized_shape)`` axes of each sample."""
    normalized_shape = ((normalized_shape,) if isinstance(normalized_shape, int)
                        else tuple(normalized_shape))
    if not normalized_shape or tuple(x.shape[-len(normalized_shape):]) != normalized_shape:
        raise ValueError(f"layer_norm: input shape {x.shape} does not end with "
                         f"{normalized_shape}")
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = ops.mean(x, axis=axes, keepdims=True)
    var = ops.var(x, axis=axes, keepdims=True)
    out = (x - mean) / ops.sqrt(var + eps)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def embedding(indices, weight):
    """Rows of ``weight`` picked by integer ``indices`` (repeated rows accumulate gradient)."""
    idx = indices.data if isinstance(indices, Tensor) else np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    autograd.checked(_check_embedding_indices, idx, weight.shape[0])  # a replay checks its own
    return weight[idx]


def _check_embedding_indices(idx, n):
    bad = idx[(idx < 0) | (idx >= n)]
    if bad.size:
        raise IndexError(f"embedding: index {int(bad[0])} is out of range for {n} embeddings")
