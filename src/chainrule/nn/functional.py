"""Layers as functions, and the losses (``from chainrule.nn import functional as F``)."""

from __future__ import annotations

import math

import numpy as np

from chainrule import ops
from chainrule.ops import (  # noqa: F401  (activations are plain rows of the table)
    relu,
    sigmoid,
    softplus,
    tanh,
)
from chainrule.random import generator
from chainrule.tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def linear(x, weight, bias=None):
    """x W^T + b (one fused row: its VJP is grad @ W, grad^T @ x, sum of grad)."""
    if x.shape[-1] != weight.shape[-1]:
        raise ValueError(f"linear: input has {x.shape[-1]} features (shape {x.shape}) but the "
                         f"weight expects {weight.shape[-1]} (shape {weight.shape})")
    return ops.linear(x, weight, bias)


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
    keep = generator().random(x.shape, dtype=np.float32) >= p
    return x * np.multiply(keep, 1 / (1 - p), dtype=dtype)


def one_hot(labels, num_classes=-1):
    """Integer labels -> rows of 0/1 (int64, as PyTorch); ``num_classes=-1``: max label + 1."""
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"one_hot: labels must be integers, got dtype {labels.dtype}")
    n = int(labels.max()) + 1 if num_classes in (None, -1) and labels.size else num_classes
    n = 0 if n in (None, -1) else int(n)
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        bad = labels[(labels < 0) | (labels >= n)].flat[0]
        raise ValueError(f"one_hot: label {bad} is out of range for {n} classes "
                         f"(labels of shape {labels.shape})")
    return Tensor(ops._one_hot(labels, n, np.int64))


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
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        position = int(np.flatnonzero((labels < 0) | (labels >= c))[0])
        raise ValueError(f"{where}: label {labels[position]} (at position {position} of target "
                         f"shape {labels.shape}) is out of range for {c} classes (input shape "
                         f"{logits.shape}; valid labels 0..{c - 1})")
    return labels


def cross_entropy(logits, target, reduction="mean"):
    """Softmax cross-entropy from logits, fused: its gradient is exactly (q - y) / N.

    ``target`` is integer class labels of shape (N,) or class probabilities of shape (N, C).
    """
    _check_reduction("cross_entropy", reduction)
    if logits.ndim == 1:  # one sample: a label, or a vector of probabilities
        t = np.asarray(target.data if isinstance(target, Tensor) else target)
        out = cross_entropy(ops.expand_dims(logits, 0), t.reshape((1,) + t.shape), reduction)
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


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation) by im2col + one matrix product."""
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d: expected input (N, C, H, W) and weight (O, C, kh, kw), got "
                         f"{x.shape} and {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels (shape {x.shape}) but the "
                         f"weight expects {weight.shape[1]} (shape {weight.shape})")
    sh, sw = _pair(stride)
    ph, pw = _pair(padding)
    out_ch, _, kh, kw = weight.shape
    if min(sh, sw) <= 0 or min(ph, pw) < 0:
        raise ValueError(f"conv2d: stride must be positive and padding non-negative, got stride "
                         f"{(sh, sw)} and padding {(ph, pw)}")
    if ph or pw:
        x = _pad(x, ph, pw, 0)
    if x.shape[2] < kh or x.shape[3] < kw:
        raise ValueError(f"conv2d: kernel {kh}x{kw} is larger than the (padded) input "
                         f"{x.shape[2]}x{x.shape[3]}")
    n, c, h, w = x.shape
    cols = ops.windows(x, kh=kh, kw=kw, sh=sh, sw=sw, shape=x.shape)  # (N, C, oh, ow, kh, kw)
    oh, ow = cols.shape[2], cols.shape[3]
    # (N, C kh kw, oh ow): one product per sample then writes the output in (N, O, ...) order
    # already, so the layers after it read contiguous memory (a transposed result slowed
    # pooling by 4x).
    cols = ops.reshape(ops.transpose(cols, (0, 1, 4, 5, 2, 3)), (n, c * kh * kw, oh * ow))
    out = ops.matmul(ops.reshape(weight, (out_ch, c * kh * kw)), cols)
    if bias is not None:
        out = out + ops.reshape(bias, (out_ch, 1))
    return ops.reshape(out, (n, out_ch, oh, ow))


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Maximum over (kh, kw) windows of each channel of (N, C, H, W) input (stride defaults to
    the kernel size). A tie sends its gradient to the first maximum, as PyTorch does."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None else kernel_size)
    ph, pw = _pair(padding)
    if x.ndim != 4:
        raise ValueError(f"max_pool2d: expected input (N, C, H, W), got {x.shape}")
    if min(kh, kw, sh, sw) <= 0 or min(ph, pw) < 0:
        raise ValueError(f"max_pool2d: kernel size and stride must be positive and padding "
                         f"non-negative, got kernel {(kh, kw)}, stride {(sh, sw)}, padding "
                         f"{(ph, pw)}")
    if 2 * ph > kh or 2 * pw > kw:
        raise ValueError(f"max_pool2d: padding {(ph, pw)} must be at most half the kernel "
                         f"size {(kh, kw)}")
    if ph or pw:
        x = _pad(x, ph, pw, -np.inf)
    if x.shape[2] < kh or x.shape[3] < kw:
        raise ValueError(f"max_pool2d: kernel {kh}x{kw} is larger than the (padded) input "
                         f"{x.shape[2]}x{x.shape[3]}")
    return ops.max_pool2d(x, kh=kh, kw=kw, sh=sh, sw=sw)


def _pad(x, ph, pw, value):
    """``x`` with ``ph`` rows and ``pw`` columns of ``value`` added on both sides."""
    if ph == pw:
        return ops.pad2d(x, pad=ph, value=value)
    n, c, h, w = x.shape
    if ph:
        rows = np.full((n, c, ph, w), value, dtype=x.dtype)
        x = ops.concatenate([rows, x, rows], axis=2)
    if pw:
        cols = np.full((n, c, h + 2 * ph, pw), value, dtype=x.dtype)
        x = ops.concatenate([cols, x, cols], axis=3)
    return x


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise each channel of (N, C) or (N, C, L) input (PyTorch's ``F.batch_norm``).

    ``training``: normalise with the batch mean and biased variance, and (when running tensors
    are given) move them towards the batch statistics, the variance unbiased. Otherwise
    normalise with ``running_mean`` and ``running_var``.
    """
    if x.ndim not in (2, 3):
        raise ValueError(f"batch_norm: expected input (N, C) or (N, C, L), got {x.shape}")
    axes = (0,) if x.ndim == 2 else (0, 2)
    shape = (1, x.shape[1]) + ((1,) if x.ndim == 3 else ())
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
    bad = idx[(idx < 0) | (idx >= weight.shape[0])]
    if bad.size:
        raise IndexError(f"embedding: index {int(bad[0])} is out of range for "
                         f"{weight.shape[0]} embeddings")
    return weight[idx]
