"""Layers as functions, and the losses (``from chainrule.nn import functional as F``)."""

from __future__ import annotations

import numpy as np

from chainrule import ops
from chainrule.ops import (  # noqa: F401  (activations are plain rows of the table)
    gelu,
    log_softmax,
    relu,
    sigmoid,
    softmax,
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
    return ops.leaky_relu(x, negative_slope)


def dropout(x, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (train only)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    keep = generator().random(x.shape) >= p
    return x * (keep * (1.0 / (1.0 - p))).astype(x.dtype)


def one_hot(labels, num_classes=None):
    """Integer labels -> rows of 0/1 (int64, as PyTorch)."""
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    n = int(labels.max()) + 1 if num_classes is None else num_classes
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
                        f"(for class probabilities pass a float tensor of shape {logits.shape})")
    if labels.shape != (n,):
        raise ValueError(f"{where}: expected {n} labels (shape ({n},)) for input of shape "
                         f"{logits.shape}, got shape {labels.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= c):
        bad = labels[(labels < 0) | (labels >= c)][0]
        raise ValueError(f"{where}: label {bad} is out of range for {c} classes "
                         f"(valid: 0..{c - 1})")
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
        raise ValueError(f"cross_entropy: expected logits of shape (N, C), got {logits.shape}")
    t_dtype = (target.dtype if isinstance(target, (Tensor, np.ndarray))
               else np.asarray(target).dtype)
    if t_dtype.kind == "f" and np.ndim(target) == logits.ndim:
        if tuple(np.shape(target)) != logits.shape:
            raise ValueError(f"cross_entropy: class probabilities must have the logits' shape "
                             f"{logits.shape}, got {np.shape(target)}")
        return ops.cross_entropy_probs(logits, target, reduction=reduction)
    return ops.cross_entropy_labels(logits, _labels("cross_entropy", logits, target),
                                    reduction=reduction)


def nll_loss(log_probs, target, reduction="mean"):
    """Negative log-likelihood of integer labels given log-probabilities (N, C)."""
    _check_reduction("nll_loss", reduction)
    labels = _labels("nll_loss", log_probs, target)
    picked = log_probs[np.arange(len(labels)), labels]
    return _reduce(-picked, reduction)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error (seed 004's C = (o - t)^2, averaged)."""
    _check_reduction("mse_loss", reduction)
    _same_shape("mse_loss", input, target)
    diff = input - target
    return _reduce(diff * diff, reduction)


def l1_loss(input, target, reduction="mean"):
    _check_reduction("l1_loss", reduction)
    _same_shape("l1_loss", input, target)
    return _reduce(ops.abs(input - target), reduction)


def binary_cross_entropy(probs, target, reduction="mean"):
    """-(y log p + (1 - y) log(1 - p)); the logs are clamped at -100 as PyTorch does."""
    _check_reduction("binary_cross_entropy", reduction)
    _same_shape("binary_cross_entropy", probs, target)
    p = probs.data if isinstance(probs, Tensor) else np.asarray(probs)
    if p.size and (p.min() < 0 or p.max() > 1):
        raise ValueError(f"binary_cross_entropy: probabilities must lie in [0, 1], got values "
                         f"from {p.min()} to {p.max()} (use binary_cross_entropy_with_logits "
                         f"for raw scores)")
    log_p = ops.clip(ops.log(probs), -100, None)
    log_q = ops.clip(ops.log(1 - probs), -100, None)
    return _reduce(-(target * log_p + (1 - target) * log_q), reduction)


def binary_cross_entropy_with_logits(logits, target, reduction="mean"):
    """Sigmoid + binary cross-entropy in one stable expression: softplus(x) - x y."""
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    _same_shape("binary_cross_entropy_with_logits", logits, target)
    return _reduce(softplus(logits) - logits * target, reduction)


def _same_shape(where, a, b):
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{where}: input shape {np.shape(a)} and target shape {np.shape(b)} "
                         f"differ")


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """2-D convolution (cross-correlation) by im2col + one matrix product."""
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d: expected input (N, C, H, W) and weight (O, C, kh, kw), got "
                         f"{x.shape} and {weight.shape}")
    if x.shape[1] != weight.shape[1]:
        raise ValueError(f"conv2d: input has {x.shape[1]} channels (shape {x.shape}) but the "
                         f"weight expects {weight.shape[1]} (shape {weight.shape})")
    sh, sw = _pair(stride)
    out_ch, _, kh, kw = weight.shape
    if padding:
        x = ops.pad2d(x, pad=int(padding), value=0)
    if x.shape[2] < kh or x.shape[3] < kw:
        raise ValueError(f"conv2d: kernel {kh}x{kw} is larger than the (padded) input "
                         f"{x.shape[2]}x{x.shape[3]}")
    n, c, h, w = x.shape
    cols = ops.windows(x, kh=kh, kw=kw, sh=sh, sw=sw, shape=x.shape)  # (N, C, oh, ow, kh, kw)
    oh, ow = cols.shape[2], cols.shape[3]
    cols = ops.reshape(ops.transpose(cols, (0, 2, 3, 1, 4, 5)), (n * oh * ow, c * kh * kw))
    out = ops.linear(cols, ops.reshape(weight, (out_ch, c * kh * kw)), bias)
    return ops.transpose(ops.reshape(out, (n, oh, ow, out_ch)), (0, 3, 1, 2))


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Maximum over (kh, kw) windows of each channel."""
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(stride if stride is not None else kernel_size)
    if x.ndim != 4:
        raise ValueError(f"max_pool2d: expected input (N, C, H, W), got {x.shape}")
    if padding:
        x = ops.pad2d(x, pad=int(padding), value=-np.inf)
    cols = ops.windows(x, kh=kh, kw=kw, sh=sh, sw=sw, shape=x.shape)
    return ops.max(cols, axis=(4, 5))


def _pair(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=True,
               momentum=0.1, eps=1e-5, update_running=True):
    """Normalise over the batch (and length) axes per channel; (N, C) or (N, C, L)."""
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
        if update_running and running_mean is not None:
            m = momentum
            running_mean.data *= 1 - m
            running_mean.data += m * mean.data.reshape(-1)
            running_var.data *= 1 - m
            running_var.data += m * var.data.reshape(-1) * (count / (count - 1))
            running_mean._version[0] += 1
            running_var._version[0] += 1
    else:
        mean = running_mean.data.reshape(shape)
        var = running_var.data.reshape(shape)
    x_hat = (x - mean) / ops.sqrt(var + eps)
    if weight is not None:
        x_hat = x_hat * ops.reshape(weight, shape) + ops.reshape(bias, shape)
    return x_hat


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Normalise over the last ``len(normalized_shape)`` axes of each sample."""
    normalized_shape = tuple(normalized_shape)
    if tuple(x.shape[-len(normalized_shape):]) != normalized_shape:
        raise ValueError(f"layer_norm: input shape {x.shape} does not end with "
                         f"{normalized_shape}")
    axes = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mean = ops.mean(x, axis=axes, keepdims=True)
    var = ops.var(x, axis=axes, keepdims=True)
    out = (x - mean) / ops.sqrt(var + eps)
    if weight is not None:
        out = out * weight + bias
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
