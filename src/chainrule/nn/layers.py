"""Layers, built only from the public API of the engine and `nn.functional`."""

from __future__ import annotations

import math

import numpy as np

from chainrule import ops
from chainrule.nn import functional as F
from chainrule.nn import init
from chainrule.nn.module import Module, Parameter
from chainrule.tensor import Tensor

_DEFAULT_DTYPE = np.float32


def _empty(*shape, dtype=_DEFAULT_DTYPE):
    return Parameter(np.zeros(shape, dtype=dtype))


class Identity(Module):
    """Returns its input unchanged (a placeholder layer)."""

    def forward(self, x):
        return x


class Linear(Module):
    """y = x W^T + b, with PyTorch's default initialisation (Kaiming uniform, a = sqrt(5))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype=_DEFAULT_DTYPE):
        super().__init__()
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"Linear: sizes must be positive, got in_features={in_features}, "
                             f"out_features={out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = _empty(out_features, in_features, dtype=dtype)
        self.register_parameter("bias", _empty(out_features, dtype=dtype) if bias else None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        if isinstance(x, Tensor) and x.data.dtype is self.weight.data.dtype:
            return F.linear(x, self.weight, self.bias)  # the check below would pass
        dtype = getattr(x, "dtype", None)
        if dtype is not None and dtype != self.weight.dtype and np.dtype(dtype).kind in "fc":
            raise TypeError(f"{self!r}: the input has dtype {dtype} but the layer's weight has "
                            f"dtype {self.weight.dtype}; convert the input "
                            f"(x.astype(cr.{self.weight.dtype})) or the layer "
                            f"(layer.to(cr.{dtype}))")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Sequential(Module):
    """Modules applied one after another."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {i} is a {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def append(self, module):
        """Add ``module`` at the end; returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: item {len(self)} is a {type(module).__name__}, "
                            f"not a Module")
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        items = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*items[i])
        return items[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleList(Module):
    """A list of sub-modules, registered (so their parameters are found) but not called."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def append(self, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: item {len(self)} is a {type(module).__name__}, "
                            f"not a Module")
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i):
        items = list(self._modules.values())
        return ModuleList(items[i]) if isinstance(i, slice) else items[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class _Activation(Module):
    fn = None

    def forward(self, x):
        return type(self).fn(x)


class ReLU(_Activation):
    """max(x, 0); no gradient at exactly 0, as PyTorch."""

    fn = staticmethod(ops.relu)


class Sigmoid(_Activation):
    """1 / (1 + exp(-x)), computed without overflow."""

    fn = staticmethod(ops.sigmoid)


class Tanh(_Activation):
    """Hyperbolic tangent."""

    fn = staticmethod(ops.tanh)


class GELU(Module):
    """x Phi(x) with the exact normal CDF, or its tanh approximation (``approximate='tanh'``)."""

    def __init__(self, approximate="none"):
        super().__init__()
        F._check_gelu_approximation(approximate)
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class LeakyReLU(Module):
    """x where x > 0, else negative_slope * x."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return ops.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Softmax(Module):
    """exp(x) / sum(exp(x)) along ``dim``."""

    def __init__(self, dim=-1):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return ops.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class Dropout(Module):
    """Zero elements with probability p in training (scaled by 1/(1-p)); identity in eval."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Flatten(Module):
    """Merge axes ``start_dim``..``end_dim`` (by default all but the batch axis)."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return ops.flatten(x, self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class _BatchNorm(Module):
    """Batch normalisation over the channels of (N, C, ...) input, with running statistics for
    eval (`BatchNorm1d`, `BatchNorm2d`).

    In training the batch mean and biased variance normalise; the running variance is updated
    with the unbiased one (as PyTorch). ``momentum=None`` keeps a cumulative average instead.
    """

    _ndims = ()  # the input ranks accepted
    _shapes = ""  # how the error message names them

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, dtype=_DEFAULT_DTYPE):
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be positive, got "
                             f"{num_features}")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.register_parameter("weight", Parameter(np.ones(num_features, dtype)) if affine
                                else None)
        self.register_parameter("bias", Parameter(np.zeros(num_features, dtype)) if affine
                                else None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x):
        if x.ndim not in self._ndims or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected input "
                             f"{self._shapes.format(C=self.num_features)}, got shape {x.shape}")
        from chainrule.checkpoint import is_recomputing

        use_batch_stats = self.training or self.running_mean is None
        momentum = self.momentum
        # A checkpointed segment runs forward twice; the statistics must move only once.
        update = self.training and self.running_mean is not None and not is_recomputing()
        if update:
            self.num_batches_tracked.data[...] += 1
            self.num_batches_tracked._version[0] += 1
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / int(self.num_batches_tracked.data)
        return F.batch_norm(x, self.running_mean if update or not use_batch_stats else None,
                            self.running_var if update or not use_batch_stats else None,
                            self.weight, self.bias, use_batch_stats, momentum or 0.0, self.eps)

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L): per channel C (see `_BatchNorm`)."""

    _ndims = (2, 3)
    _shapes = "(N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W): per channel C, over N, H and W (see `_BatchNorm`)."""

    _ndims = (4,)
    _shapes = "(N, {C}, H, W)"


class LayerNorm(Module):
    """Normalise each sample over its last ``len(normalized_shape)`` axes, then scale and shift."""

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 dtype=_DEFAULT_DTYPE):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(
            normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.elementwise_affine = elementwise_affine
        self.register_parameter("weight", Parameter(np.ones(shape, dtype))
                                if elementwise_affine else None)
        self.register_parameter("bias", Parameter(np.zeros(shape, dtype))
                                if elementwise_affine and bias else None)

    def forward(self, x):
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class _ConvNd(Module):
    """The parameters and checks shared by `Conv1d` and `Conv2d` (PyTorch's arguments).

    Weights start as PyTorch's: Kaiming uniform with a = sqrt(5), bias uniform in
    +-1/sqrt(fan_in), fan_in = C / groups * kernel elements.
    """

    _dims = 2
    _function = None

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, padding_mode="zeros", dtype=_DEFAULT_DTYPE):
        super().__init__()
        name = type(self).__name__
        kernel = _tuple(kernel_size, self._dims)
        if min((in_channels, out_channels) + kernel) <= 0:
            raise ValueError(f"{name}: channels and kernel size must be positive, got "
                             f"in_channels={in_channels}, out_channels={out_channels}, "
                             f"kernel_size={kernel_size}")
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: only padding_mode='zeros' is supported, got "
                             f"{padding_mode!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = kernel, _tuple(stride, self._dims)
        self.padding = padding if isinstance(padding, str) else _tuple(padding, self._dims)
        self.dilation, self.padding_mode = _tuple(dilation, self._dims), padding_mode
        self.weight = _empty(out_channels, in_channels // groups, *kernel, dtype=dtype)
        self.register_parameter("bias", _empty(out_channels, dtype=dtype) if bias else None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_channels // self.groups * math.prod(self.kernel_size)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        dtype = getattr(x, "dtype", None)
        if dtype is not None and dtype != self.weight.dtype:
            if np.dtype(dtype).kind in "fc":  # PyTorch refuses too
                raise TypeError(f"{self!r}: the input has dtype {dtype} but the layer's weight "
                                f"has dtype {self.weight.dtype}; convert the input "
                                f"(x.astype(cr.{self.weight.dtype})) or the layer "
                                f"(layer.to(cr.{dtype}))")
            x = ops.astype(x, self.weight.dtype)  # integers and booleans convert exactly
        return type(self)._function(x, self.weight, self.bias, self.stride, self.padding,
                                    self.dilation, self.groups)

    def extra_repr(self):
        ones = (1,) * self._dims
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0,) * self._dims:
            text += f", padding={self.padding}"
        if self.dilation != ones:
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text if self.bias is not None else text + ", bias=False"


def _tuple(v, n):
    return (int(v),) * n if np.ndim(v) == 0 else tuple(int(i) for i in v)


class Conv2d(_ConvNd):
    """2-D convolution (N, C, H, W) -> (N, O, H', W'): one matrix product per convolution
    (`functional.conv2d`). ``kernel_size``, ``stride``, ``padding`` and ``dilation`` are an int
    or an (h, w) pair; ``padding`` may also be 'valid' or 'same'."""

    _dims = 2
    _function = staticmethod(F.conv2d)


class Conv1d(_ConvNd):
    """1-D convolution (N, C, L) -> (N, O, L') (`functional.conv1d`)."""

    _dims = 1
    _function = staticmethod(F.conv1d)


class MaxPool2d(Module):
    """Maximum over windows of (N, C, H, W) input; ``stride`` defaults to ``kernel_size``
    (PyTorch's arguments, `functional.max_pool2d`)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
                 ceil_mode=False):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode, self.return_indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Mean over windows of (N, C, H, W) input (PyTorch's arguments, `functional.avg_pool2d`)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False,
                 count_include_pad=True, divisor_override=None):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Mean over PyTorch's adaptive bins, to a fixed ``output_size`` whatever the input's
    (`functional.adaptive_avg_pool2d`)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Embedding(Module):
    """A table of ``num_embeddings`` vectors looked up by integer index (init: N(0, 1)).

    Indices that repeat in a batch add up their gradients in the table's row.
    """

    def __init__(self, num_embeddings, embedding_dim, dtype=_DEFAULT_DTYPE):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = _empty(num_embeddings, embedding_dim, dtype=dtype)
        init.normal_(self.weight)

    def forward(self, indices):
        return F.embedding(indices, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class _Loss(Module):
    """A loss function as a module; ``reduction`` is 'mean', 'sum' or 'none'."""

    fn = None

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = reduction

    def forward(self, input, target):
        return type(self).fn(input, target, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean squared error (`functional.mse_loss`)."""

    fn = staticmethod(F.mse_loss)


class L1Loss(_Loss):
    """Mean absolute error (`functional.l1_loss`)."""

    fn = staticmethod(F.l1_loss)


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits, labels or probabilities (`functional.cross_entropy`)."""

    fn = staticmethod(F.cross_entropy)


class NLLLoss(_Loss):
    """Negative log-likelihood of labels given log-probabilities (`functional.nll_loss`)."""

    fn = staticmethod(F.nll_loss)


class BCELoss(_Loss):
    """Binary cross-entropy on probabilities (`functional.binary_cross_entropy`)."""

    fn = staticmethod(F.binary_cross_entropy)


class BCEWithLogitsLoss(_Loss):
    """Sigmoid + binary cross-entropy, stable (`functional.binary_cross_entropy_with_logits`)."""

    fn = staticmethod(F.binary_cross_entropy_with_logits)


