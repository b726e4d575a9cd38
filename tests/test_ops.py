"""Every row of THE TABLE in ops/, checked three ways from one parametrized list of cases:
value and gradient against PyTorch (float64), gradient against central finite differences
(float64), and float32 kept float32 through the forward and the backward pass.

A case is one line: chainrule function, the same thing in torch, input shapes. The coverage test
at the bottom walks the graphs of all cases and fails when a differentiable row of the table is
reached by none, so a new primitive without a test fails the suite.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import chainrule as cr
import chainrule.nn.functional as crF
from chainrule import ops
from chainrule.autograd import Primitive
from helpers import (
    check_against_finite_differences,
    check_against_torch,
    graph_ops,
    random_inputs,
)


@dataclass
class Case:
    id: str
    fn: object  # chainrule: Tensors -> Tensor
    tfn: object  # torch: tensors -> tensor
    shapes: tuple
    domain: str = "any"  # "any", "pos" or "unit" (see helpers.random_inputs)
    fd: bool = True  # also compare with finite differences
    keeps_dtype: bool = True  # float32 in gives float32 out

    def __repr__(self):
        return self.id


def _t(a):
    return torch.from_numpy(np.asarray(a))


def _all_dims(x):
    return tuple(range(x.ndim))


# Fixed non-differentiable arguments used by the cases below.
COND = np.array([[True], [False], [True]])  # (3, 1), broadcasts against (1, 4)
MASK = np.array([[True, False, True, True], [False, False, True, False],
                 [True, True, False, False]])
REPEATED = np.array([0, 2, 0, 1, 0])
LABELS = np.array([1, 0, 3])
TARGET_PROBS = np.array([[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
POOL_X = np.random.default_rng(5).standard_normal((2, 2, 4, 4))
_POOL_T = torch.tensor(POOL_X, requires_grad=True)
_POOL_OUT, _POOL_IDX = F.max_pool2d(_POOL_T, 2, return_indices=True)
WIN_SHAPE = (1, 2, 5, 4)


def _setitem_slice(x, v):
    y = x * 1  # a non-leaf: writing into it is recorded
    y[1:3] = v
    return y


def _setitem_fancy(x, v):
    y = x * 1
    y[np.array([0, 2]), 1] = v
    return y


def _torch_setitem_slice(x, v):
    y = x * 1
    y[1:3] = v
    return y


def _torch_setitem_fancy(x, v):
    y = x * 1
    y[torch.tensor([0, 2]), 1] = v
    return y


def _torch_scatter(g):
    out = torch.zeros((4, 3), dtype=g.dtype)
    return out.index_put((torch.from_numpy(REPEATED),), g, accumulate=True)


def _torch_zero_at(x):
    y = x * 1
    y[1:3] = 0
    return y


def _torch_max_pool_scatter(gy):
    return torch.autograd.grad(_POOL_OUT, _POOL_T, gy, create_graph=True)[0]


def _torch_max_pool_gather(gx):
    flat = gx.flatten(-2).gather(-1, _POOL_IDX.flatten(-2))
    return flat.view(_POOL_OUT.shape)


IM_SHAPE = (2, 2, 5, 4)  # two images: the batch_last layout orders columns differently


def _batch_last(cols, n, last):
    """(C kh kw, N L) columns reordered (C kh kw, L N) when ``last``."""
    if not last:
        return cols
    return cols.reshape(cols.shape[0], n, -1).transpose(1, 2).reshape(cols.shape[0], -1)


def _torch_im2col(x, last=False):
    """chainrule's strided columns (kernel 2x2, stride (1, 2)), from torch's unfold."""
    cols = F.unfold(x, (2, 2), stride=(1, 2))  # (N, C kh kw, L)
    return _batch_last(cols.permute(1, 0, 2).reshape(cols.shape[1], -1), x.shape[0], last)


def _torch_im2col_flat(x, last=False, k=(3, 2), d=(1, 2), p=(1, 0, 2, 1)):
    """chainrule's stride-1 flat columns: each padded plane read as one row (as_strided)."""
    n, c, h, w = x.shape
    hp, wp = h + p[0] + p[1], w + p[2] + p[3]
    oh = hp - d[0] * (k[0] - 1)
    planes = F.pad(x, (p[2], p[3], p[0], p[1])).transpose(0, 1).reshape(c, n, hp * wp)
    buf = F.pad(planes, (0, d[1] * (k[1] - 1)))
    view = buf.as_strided((c, k[0], k[1], n, oh * wp),
                          (buf.stride(0), d[0] * wp, d[1], buf.stride(1), 1))
    return _batch_last(view.reshape(c * k[0] * k[1], n * oh * wp), n, last)


_WINDOWS = dict(kernel=(2, 2), stride=(1, 2), dilation=(1, 1), padding=(0, 0, 0, 0))
_IM2COL = dict(_WINDOWS, shape=IM_SHAPE)
_IM2COL_FLAT = dict(kernel=(3, 2), stride=(1, 1), dilation=(1, 2), padding=(1, 0, 2, 1),
                    shape=IM_SHAPE)


def _torch_col2im(g, flat=False, last=False):
    z = torch.zeros(IM_SHAPE, dtype=g.dtype, requires_grad=True)
    cols = (_torch_im2col_flat if flat else _torch_im2col)(z, last)
    return torch.autograd.grad(cols, z, g, create_graph=True)[0]


def _torch_conv_matmul_groups(w, c, b):
    return torch.cat([w[:2] @ c[:3], w[2:] @ c[3:]]) + b[:, None]


def _torch_window_spread(g):
    z = torch.zeros(WIN_SHAPE, dtype=g.dtype, requires_grad=True)
    return torch.autograd.grad(F.avg_pool2d(z, 2, (1, 2)) * 4, z, g, create_graph=True)[0]


_POOL = dict(kernel=(2, 2), stride=(2, 2), dilation=(1, 1), padding=(0, 0, 0, 0),
             shape=POOL_X.shape)


def _pool_indices(dtype):
    x = POOL_X.astype(dtype)
    idx = ops.pool_index_buffer(x, **{k: v for k, v in _POOL.items() if k != "shape"})
    ops.max_pool2d(x, idx, **_POOL)
    return idx


def _cr_pool_scatter(gy):
    return ops.max_pool_scatter(gy, _pool_indices(gy.dtype), **_POOL)


def _cr_pool_gather(gx):
    return ops.max_pool_gather(gx, _pool_indices(gx.dtype), **_POOL)


CASES = [
    # --- arithmetic, with broadcasting -----------------------------------------------------
    Case("add", lambda x, y: x + y, lambda x, y: x + y, ((3, 4), (3, 4))),
    Case("add_bcast_3x1_1x4", lambda x, y: x + y, lambda x, y: x + y, ((3, 1), (1, 4))),
    Case("add_scalar_tensor", lambda x, y: x + y, lambda x, y: x + y, ((), (2, 3))),
    Case("add_python_scalar", lambda x: 2.5 + x, lambda x: 2.5 + x, ((3,),)),
    Case("add_fn", lambda x, y: cr.add(x, y), torch.add, ((2, 3), (3,))),
    Case("subtract", lambda x, y: x - y, lambda x, y: x - y, ((3, 1), (1, 4))),
    Case("rsub_scalar", lambda x: 1.0 - x, lambda x: 1.0 - x, ((4,),)),
    Case("subtract_fn", lambda x, y: cr.subtract(x, y), torch.sub, ((4,), ())),
    Case("multiply", lambda x, y: x * y, lambda x, y: x * y, ((2, 3, 4), (4,))),
    Case("multiply_scalar_tensor", lambda x, y: x * y, lambda x, y: x * y, ((), (3, 2))),
    Case("multiply_fn", lambda x, y: cr.multiply(x, y), torch.mul, ((3, 1), (1, 4))),
    Case("divide", lambda x, y: x / y, lambda x, y: x / y, ((3, 4), (3, 1)), "pos"),
    Case("rdivide_scalar", lambda x: 2.0 / x, lambda x: 2.0 / x, ((5,),), "pos"),
    Case("divide_fn", lambda x, y: cr.divide(x, y), torch.div, ((2, 3), ()), "pos"),
    Case("pow_scalar_int", lambda x: x ** 3, lambda x: x ** 3, ((2, 3),)),
    Case("pow_scalar_float", lambda x: x ** 2.5, lambda x: x ** 2.5, ((4,),), "pos"),
    Case("pow_tensor_tensor", lambda x, y: x ** y, lambda x, y: x ** y, ((3, 4), (4,)), "pos"),
    Case("rpow_scalar", lambda x: 2.0 ** x, lambda x: 2.0 ** x, ((4,),)),
    Case("power_fn", lambda x, y: cr.power(x, y), torch.pow, ((2, 1), (1, 3)), "pos"),
    Case("negative", lambda x: -x, lambda x: -x, ((2, 3),)),
    Case("negative_fn", cr.negative, torch.neg, ((3,),)),
    Case("maximum", cr.maximum, torch.maximum, ((3, 4), (3, 4))),
    Case("maximum_bcast", cr.maximum, torch.maximum, ((3, 1), (1, 4))),
    Case("minimum", cr.minimum, torch.minimum, ((2, 3, 4), (4,))),
    Case("where", lambda x, y: cr.where(COND, x, y),
         lambda x, y: torch.where(_t(COND), x, y), ((1, 4), ())),
    Case("where_same_shape", lambda x, y: cr.where(MASK, x, y),
         lambda x, y: torch.where(_t(MASK), x, y), ((3, 4), (3, 4))),
    # --- matmul ------------------------------------------------------------------------------
    Case("matmul_1d_1d", lambda x, y: x @ y, lambda x, y: x @ y, ((4,), (4,))),
    Case("matmul_2d_1d", lambda x, y: x @ y, lambda x, y: x @ y, ((3, 4), (4,))),
    Case("matmul_1d_2d", lambda x, y: x @ y, lambda x, y: x @ y, ((4,), (4, 2))),
    Case("matmul_2d_2d", cr.matmul, torch.matmul, ((3, 4), (4, 2))),
    Case("matmul_batched", cr.matmul, torch.matmul, ((2, 3, 4), (2, 4, 5))),
    Case("matmul_bcast_batch", cr.matmul, torch.matmul, ((2, 1, 3, 4), (3, 4, 2))),
    Case("matmul_2d_batched", cr.matmul, torch.matmul, ((3, 4), (2, 4, 2))),
    Case("matmul_1d_batched", cr.matmul, torch.matmul, ((4,), (2, 4, 3))),
    Case("matmul_batched_1d", cr.matmul, torch.matmul, ((2, 3, 4), (4,))),
    Case("rmatmul_ndarray", lambda y: np.ones((2, 3)) @ y, lambda y: _t(np.ones((2, 3))) @ y,
         ((3, 2),), keeps_dtype=False),  # a float64 array promotes, as in NumPy
    # --- elementwise functions ---------------------------------------------------------------
    Case("exp", cr.exp, torch.exp, ((3, 4),)),
    Case("exp_method", lambda x: x.exp(), torch.exp, ((3,),)),
    Case("log", cr.log, torch.log, ((3, 4),), "pos"),
    Case("sqrt", cr.sqrt, torch.sqrt, ((3, 4),), "pos"),
    Case("abs", cr.abs, torch.abs, ((3, 4),)),
    Case("abs_builtin", lambda x: abs(x), torch.abs, ((5,),)),
    Case("sin", cr.sin, torch.sin, ((3, 4),)),
    Case("cos", cr.cos, torch.cos, ((3, 4),)),
    Case("tanh", cr.tanh, torch.tanh, ((3, 4),)),
    Case("sigmoid", cr.sigmoid, torch.sigmoid, ((3, 4),)),
    Case("relu", cr.relu, torch.relu, ((3, 4),)),
    Case("leaky_relu", lambda x: cr.leaky_relu(x, 0.1), lambda x: F.leaky_relu(x, 0.1),
         ((3, 4),)),
    Case("leaky_relu_default", cr.leaky_relu, F.leaky_relu, ((6,),)),
    Case("erf", cr.erf, torch.erf, ((3, 4),)),
    Case("gelu", cr.gelu, F.gelu, ((3, 4),)),
    Case("softplus", cr.softplus, F.softplus, ((3, 4),)),
    Case("clip", lambda x: cr.clip(x, -0.5, 0.7), lambda x: torch.clamp(x, -0.5, 0.7),
         ((3, 4),)),
    Case("clip_min_only", lambda x: cr.clip(x, min=0.1), lambda x: torch.clamp(x, min=0.1),
         ((5,),)),
    Case("clip_max_only", lambda x: x.clip(max=0.1), lambda x: torch.clamp(x, max=0.1),
         ((5,),)),
    Case("astype_float32", lambda x: cr.astype(x, cr.float32) * 1.5,
         lambda x: x.to(torch.float32) * 1.5, ((3,),), fd=False),
    Case("astype_float64", lambda x: x.astype(np.float64), lambda x: x.to(torch.float64),
         ((2, 3),), keeps_dtype=False),
    Case("copy", lambda x: x.clone() * 2, lambda x: x.clone() * 2, ((3,),)),
    # --- reductions ----------------------------------------------------------------------------
    Case("sum_all", cr.sum, torch.sum, ((3, 4),)),
    Case("sum_axis0", lambda x: x.sum(0), lambda x: x.sum(0), ((3, 4),)),
    Case("sum_axis_neg", lambda x: cr.sum(x, -1), lambda x: x.sum(-1), ((2, 3, 4),)),
    Case("sum_axis_tuple", lambda x: cr.sum(x, (0, 2)), lambda x: x.sum((0, 2)), ((2, 3, 4),)),
    Case("sum_keepdims", lambda x: x.sum(1, keepdims=True), lambda x: x.sum(1, keepdim=True),
         ((3, 4),)),
    Case("sum_none_keepdims", lambda x: cr.sum(x, None, True),
         lambda x: x.sum(_all_dims(x), keepdim=True), ((3, 4),)),
    Case("mean_all", cr.mean, torch.mean, ((3, 4),)),
    Case("mean_axis", lambda x: x.mean(1), lambda x: x.mean(1), ((3, 4),)),
    Case("mean_tuple_keepdims", lambda x: cr.mean(x, (1, 2), keepdims=True),
         lambda x: x.mean((1, 2), keepdim=True), ((2, 3, 4),)),
    Case("max_all", cr.max, lambda x: x.amax(_all_dims(x)), ((3, 4),)),
    Case("max_axis", lambda x: x.max(1), lambda x: x.amax(1), ((3, 4),)),
    Case("max_tuple_keepdims", lambda x: cr.max(x, (0, 2), True),
         lambda x: x.amax((0, 2), keepdim=True), ((2, 3, 4),)),
    Case("min_all", cr.min, lambda x: x.amin(_all_dims(x)), ((3, 4),)),
    Case("min_axis_keepdims", lambda x: x.min(0, keepdims=True),
         lambda x: x.amin(0, keepdim=True), ((3, 4),)),
    Case("var_all", cr.var, lambda x: torch.var(x, correction=0), ((3, 4),)),
    Case("var_axis_ddof1", lambda x: cr.var(x, 1, ddof=1),
         lambda x: torch.var(x, 1, correction=1), ((3, 4),)),
    Case("var_tuple_keepdims", lambda x: x.var((0, 2), keepdims=True),
         lambda x: torch.var(x, (0, 2), keepdim=True, correction=0), ((2, 3, 4),)),
    Case("std_axis", lambda x: cr.std(x, 0), lambda x: torch.std(x, 0, correction=0),
         ((3, 4),)),
    Case("logsumexp_all", cr.logsumexp, lambda x: torch.logsumexp(x, _all_dims(x)), ((3, 4),)),
    Case("logsumexp_axis", lambda x: cr.logsumexp(x, 1), lambda x: torch.logsumexp(x, 1),
         ((3, 4),)),
    Case("logsumexp_tuple_keepdims", lambda x: x.logsumexp((0, 1), keepdims=True),
         lambda x: torch.logsumexp(x, (0, 1), keepdim=True), ((2, 3, 4),)),
    Case("softmax", cr.softmax, lambda x: torch.softmax(x, -1), ((3, 4),)),
    Case("softmax_axis0", lambda x: cr.softmax(x, 0), lambda x: torch.softmax(x, 0),
         ((3, 4),)),
    Case("log_softmax", cr.log_softmax, lambda x: torch.log_softmax(x, -1), ((3, 4),)),
    Case("log_softmax_axis1", lambda x: x.log_softmax(1), lambda x: torch.log_softmax(x, 1),
         ((2, 3, 4),)),
    # --- shapes ----------------------------------------------------------------------------------
    Case("reshape", lambda x: cr.reshape(x, (4, 3)), lambda x: x.reshape(4, 3), ((3, 4),)),
    Case("reshape_minus1", lambda x: x.reshape(2, -1), lambda x: x.reshape(2, -1), ((3, 4),)),
    Case("transpose", cr.transpose, lambda x: x.permute(2, 1, 0), ((2, 3, 4),)),
    Case("transpose_axes", lambda x: cr.transpose(x, (1, 2, 0)), lambda x: x.permute(1, 2, 0),
         ((2, 3, 4),)),
    Case("T", lambda x: x.T, lambda x: x.T, ((3, 4),)),
    Case("swapaxes", lambda x: cr.swapaxes(x, 0, -1), lambda x: x.swapaxes(0, -1),
         ((2, 3, 4),)),
    Case("flatten", cr.flatten, torch.flatten, ((2, 3, 4),)),
    Case("flatten_range", lambda x: x.flatten(1, 2), lambda x: x.flatten(1, 2), ((2, 3, 4, 2),)),
    Case("squeeze", cr.squeeze, torch.squeeze, ((1, 3, 1, 2),)),
    Case("squeeze_axis", lambda x: cr.squeeze(x, 2), lambda x: x.squeeze(2), ((1, 3, 1, 2),)),
    Case("expand_dims", lambda x: cr.expand_dims(x, 1), lambda x: x.unsqueeze(1), ((3, 4),)),
    Case("unsqueeze_neg", lambda x: x.unsqueeze(-1), lambda x: x.unsqueeze(-1), ((3, 4),)),
    Case("broadcast_to", lambda x: cr.broadcast_to(x, (2, 3, 4)),
         lambda x: x.broadcast_to(2, 3, 4), ((3, 1),)),
    # --- indexing --------------------------------------------------------------------------------
    Case("getitem_int", lambda x: x[1], lambda x: x[1], ((3, 4),)),
    Case("getitem_slices", lambda x: x[1:, ::2], lambda x: x[1:, ::2], ((3, 4),)),
    Case("getitem_neg_newaxis", lambda x: x[-1, None, ..., 1:3],
         lambda x: x[-1, None, ..., 1:3], ((2, 3, 4),)),
    Case("getitem_repeated", lambda x: x[REPEATED], lambda x: x[_t(REPEATED)], ((4, 3),)),
    Case("getitem_list", lambda x: x[:, [1, 1, 0]], lambda x: x[:, [1, 1, 0]], ((3, 4),)),
    Case("getitem_pairs", lambda x: x[[0, 2, 0], [1, 3, 1]],
         lambda x: x[[0, 2, 0], [1, 3, 1]], ((3, 4),)),
    Case("getitem_mask", lambda x: x[MASK], lambda x: x[_t(MASK)], ((3, 4),)),
    Case("getitem_tensor_index", lambda x: x[cr.tensor(REPEATED)], lambda x: x[_t(REPEATED)],
         ((4, 2),)),
    Case("getitem_fn", lambda x: cr.getitem(x, (slice(None), 0)), lambda x: x[:, 0], ((3, 4),)),
    Case("setitem_slice", _setitem_slice, _torch_setitem_slice, ((4, 3), (3,))),
    Case("setitem_fancy", _setitem_fancy, _torch_setitem_fancy, ((3, 4), ())),
    Case("concatenate", lambda x, y: cr.concatenate([x, y]), lambda x, y: torch.cat([x, y]),
         ((2, 3), (4, 3))),
    Case("concatenate_axis1", lambda x, y, z: cr.concatenate([x, y, z], axis=1),
         lambda x, y, z: torch.cat([x, y, z], 1), ((2, 1), (2, 3), (2, 2))),
    Case("concatenate_with_array", lambda x: cr.concatenate([x, np.ones((1, 3))], axis=-2),
         lambda x: torch.cat([x, torch.ones(1, 3, dtype=torch.float64)], -2), ((2, 3),),
         keeps_dtype=False),
    Case("stack", lambda x, y: cr.stack([x, y]), lambda x, y: torch.stack([x, y]),
         ((2, 3), (2, 3))),
    Case("stack_axis_last", lambda x, y: cr.stack([x, y], axis=-1),
         lambda x, y: torch.stack([x, y], -1), ((2, 3), (2, 3))),
    Case("split_sections", lambda x: cr.split(x, 2)[1] * cr.split(x, 2)[0],
         lambda x: torch.chunk(x, 2)[1] * torch.chunk(x, 2)[0], ((4, 3),)),
    Case("split_points", lambda x: cr.split(x, [1, 3], axis=1)[2] * 3 + cr.split(x, [1, 3], 1)[0],
         lambda x: torch.tensor_split(x, [1, 3], 1)[2] * 3 + torch.tensor_split(x, [1, 3], 1)[0],
         ((2, 4),)),
    # --- rows reached through the backward pass of others (second derivatives) ---------------
    Case("scatter", lambda g: ops.scatter(g, index=REPEATED, shape=(4, 3)), _torch_scatter,
         ((5, 3),)),
    Case("zero_at", lambda x: ops.zero_at(x, index=(slice(1, 3),)), _torch_zero_at, ((4, 3),)),
    # --- fused rows for chainrule.nn ---------------------------------------------------------
    Case("linear", crF.linear, F.linear, ((3, 4), (2, 4), (2,))),
    Case("linear_batched", crF.linear, F.linear, ((2, 3, 4), (2, 4), (2,))),  # rows merged
    Case("linear_3d_no_bias", crF.linear, F.linear, ((2, 3, 4), (5, 4))),
    Case("cross_entropy_labels", lambda x: crF.cross_entropy(x, LABELS),
         lambda x: F.cross_entropy(x, _t(LABELS)), ((3, 4),)),
    Case("cross_entropy_labels_none", lambda x: crF.cross_entropy(x, LABELS, reduction="none"),
         lambda x: F.cross_entropy(x, _t(LABELS), reduction="none"), ((3, 4),)),
    Case("cross_entropy_probs", lambda x, p: crF.cross_entropy(x, p),
         lambda x, p: F.cross_entropy(x, p), ((3, 4), (3, 4)), "unit"),
    Case("cross_entropy_probs_sum", lambda x: crF.cross_entropy(x, TARGET_PROBS, "sum"),
         lambda x: F.cross_entropy(x, _t(TARGET_PROBS), reduction="sum"), ((3, 4),),
         keeps_dtype=False),
    Case("binary_cross_entropy", crF.binary_cross_entropy, F.binary_cross_entropy,
         ((3, 4), (3, 4)), "unit"),
    Case("clamped_log", ops.clamped_log, lambda x: torch.clamp(torch.log(x), min=-100),
         ((3, 4),), "pos"),
    Case("max_pool2d", lambda x: crF.max_pool2d(x, 2), lambda x: F.max_pool2d(x, 2),
         ((2, 2, 4, 4),)),
    Case("max_pool2d_overlapping", lambda x: crF.max_pool2d(x, 3, stride=1),
         lambda x: F.max_pool2d(x, 3, stride=1), ((1, 2, 5, 4),)),
    Case("max_pool2d_scatter", _cr_pool_scatter, _torch_max_pool_scatter, ((2, 2, 2, 2),)),
    Case("max_pool2d_gather", _cr_pool_gather, _torch_max_pool_gather, ((2, 2, 4, 4),)),
    Case("im2col", lambda x: ops.im2col(x, **_IM2COL, batch_last=False), _torch_im2col,
         (IM_SHAPE,)),
    Case("im2col_batch_last", lambda x: ops.im2col(x, **_IM2COL, batch_last=True),
         lambda x: _torch_im2col(x, True), (IM_SHAPE,)),
    Case("im2col_flat", lambda x: ops.im2col(x, **_IM2COL_FLAT, batch_last=False),
         _torch_im2col_flat, (IM_SHAPE,)),
    Case("im2col_flat_batch_last", lambda x: ops.im2col(x, **_IM2COL_FLAT, batch_last=True),
         lambda x: _torch_im2col_flat(x, True), (IM_SHAPE,)),
    Case("col2im", lambda g: ops.col2im(g, **_IM2COL, batch_last=False), _torch_col2im,
         ((8, 16),)),
    Case("col2im_batch_last", lambda g: ops.col2im(g, **_IM2COL, batch_last=True),
         lambda g: _torch_col2im(g, last=True), ((8, 16),)),
    Case("col2im_flat", lambda g: ops.col2im(g, **_IM2COL_FLAT, batch_last=False),
         lambda g: _torch_col2im(g, flat=True), ((12, 56),)),
    Case("col2im_flat_batch_last", lambda g: ops.col2im(g, **_IM2COL_FLAT, batch_last=True),
         lambda g: _torch_col2im(g, flat=True, last=True), ((12, 56),)),
    Case("conv_matmul_groups", lambda w, c, b: ops.conv_matmul(w, c, b, groups=2),
         _torch_conv_matmul_groups, ((4, 3), (6, 5), (4,))),
    Case("window_sum", lambda x: ops.window_sum(x, **_WINDOWS, shape=WIN_SHAPE),
         lambda x: F.avg_pool2d(x, 2, (1, 2)) * 4, (WIN_SHAPE,)),
    Case("window_spread", lambda g: ops.window_spread(g, **_WINDOWS, shape=WIN_SHAPE),
         _torch_window_spread,
         ((1, 2, 4, 2),)),
    Case("conv2d", lambda x, w, b: crF.conv2d(x, w, b, stride=2, padding=1),
         lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
         ((2, 2, 5, 4), (3, 2, 3, 3), (3,))),
    Case("pad2d", lambda x: ops.pad2d(x, pad=1, value=0.5),
         lambda x: F.pad(x, (1, 1, 1, 1), value=0.5), ((1, 2, 3, 2),)),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_value_and_gradient_match_torch(case):
    arrays = random_inputs(case.shapes, case.domain, seed=len(case.id))
    check_against_torch(case.fn, case.tfn, arrays)


FD_CASES = [c for c in CASES if c.fd]


@pytest.mark.parametrize("case", FD_CASES, ids=[c.id for c in FD_CASES])
def test_gradient_matches_finite_differences(case):
    arrays = random_inputs(case.shapes, case.domain, seed=len(case.id) + 7)
    check_against_finite_differences(case.fn, arrays)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_float32_stays_float32_forward_and_backward(case):
    arrays = random_inputs(case.shapes, case.domain, seed=3, dtype=np.float32)
    xs = [cr.tensor(a, requires_grad=True) for a in arrays]
    out = case.fn(*xs)
    if case.keeps_dtype:
        assert out.dtype == np.float32, f"{case.id}: forward gave {out.dtype}"
    (out * np.ones(out.shape, out.dtype)).sum().backward()
    for i, x in enumerate(xs):
        if x.grad is not None:
            assert x.grad.dtype == np.float32, f"{case.id}: grad {i} is {x.grad.dtype}"
            assert np.all(np.isfinite(x.grad.data))
    assert any(x.grad is not None for x in xs)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plain_arrays_give_plain_arrays(case):
    """Rows called on arrays compute like NumPy functions and return arrays, not Tensors."""
    if case.id.startswith(("setitem", "max_pool2d_", "conv2d", "cross_entropy", "linear",
                           "binary", "max_pool2d")):
        pytest.skip("not an array-in, array-out function")
    arrays = random_inputs(case.shapes, case.domain, seed=4)
    try:
        out = case.fn(*arrays)
    except (AttributeError, TypeError):  # methods such as x.clone() exist only on Tensors
        pytest.skip("uses a Tensor-only method")
    if isinstance(out, cr.Tensor):
        pytest.skip("an operator on a Python value made a Tensor")
    with cr.no_grad():
        expected = case.fn(*[cr.tensor(a) for a in arrays]).data
    assert isinstance(out, (np.ndarray, np.generic))
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def _rows_of_the_table():
    return {name: row for name, row in vars(ops).items()
            if isinstance(row, Primitive) and row.differentiable}


def test_every_differentiable_row_has_a_case():
    reached = set()
    for case in CASES:
        arrays = random_inputs(case.shapes, case.domain)
        out = case.fn(*[cr.tensor(a, requires_grad=True) for a in arrays])
        reached |= graph_ops(out)
    missing = sorted(name for name, row in _rows_of_the_table().items() if row not in reached)
    assert not missing, f"rows of ops/ with no test case in tests/test_ops.py: {missing}"


def test_table_is_what_the_coverage_check_sees():
    rows = _rows_of_the_table()
    for name in ("add", "matmul", "_sum", "_getitem", "setitem", "_concatenate", "linear"):
        assert name in rows
    assert "equal" not in rows  # comparisons are not differentiable rows


# ----------------------------------------------------------------------------------------------
# Kinks: the gradient chosen at non-differentiable points is PyTorch's
# ----------------------------------------------------------------------------------------------
KINKS = [
    ("relu_at_0", cr.relu, torch.relu, [np.array([-1.0, 0.0, 0.0, 2.0])]),
    ("abs_at_0", cr.abs, torch.abs, [np.array([-1.0, 0.0, 3.0])]),
    ("leaky_relu_at_0", lambda x: cr.leaky_relu(x, 0.2), lambda x: F.leaky_relu(x, 0.2),
     [np.array([-1.0, 0.0, 1.0])]),
    ("maximum_ties", cr.maximum, torch.maximum,
     [np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0])]),
    ("minimum_ties", cr.minimum, torch.minimum,
     [np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 3.0])]),
    ("maximum_tie_bcast", cr.maximum, torch.maximum, [np.array([[1.0], [2.0]]), np.array([1.0])]),
    ("clip_at_bounds", lambda x: cr.clip(x, -1.0, 1.0), lambda x: torch.clamp(x, -1.0, 1.0),
     [np.array([-2.0, -1.0, 0.0, 1.0, 2.0])]),
    ("max_all_ties", cr.max, lambda x: x.amax((0, 1)), [np.array([[1.0, 3.0], [3.0, 0.0]])]),
    ("max_axis_ties", lambda x: cr.max(x, 1), lambda x: x.amax(1),
     [np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])]),
    ("min_axis_ties", lambda x: cr.min(x, 0), lambda x: x.amin(0),
     [np.array([[1.0, 3.0], [1.0, 0.0]])]),
    ("relu_zeros", lambda x: cr.relu(x) * 2, lambda x: torch.relu(x) * 2,
     [np.zeros((2, 2))]),
    # regressions: these gave nan where PyTorch gives 0
    ("pow_base_0", lambda x, y: x ** y, lambda x, y: x ** y,
     [np.array([0.0, 0.0, 2.0, 0.0]), np.array([2.0, 0.0, 0.0, 0.5])]),
    ("pow_exponent_0", lambda x: x ** 0.0, lambda x: x ** 0.0, [np.array([0.0, 1.0])]),
    ("rpow_base_0", lambda x: 0.0 ** x, lambda x: 0.0 ** x, [np.array([1.0, 2.0])]),
    ("rpow_negative_base", lambda x: (-2.0) ** x, lambda x: (-2.0) ** x, [np.array([2.0])]),
    ("std_of_constant", lambda x: cr.std(x, 1), lambda x: torch.std(x, 1, correction=0),
     [np.array([[1.0, 1.0, 1.0], [1.0, 2.0, 4.0]])]),
    ("std_method_all_equal", lambda x: x.std(), lambda x: x.std(correction=0),
     [np.full((2, 2), 3.0)]),
]


@pytest.mark.parametrize("name,fn,tfn,arrays", KINKS, ids=[k[0] for k in KINKS])
def test_kinks_match_torch(name, fn, tfn, arrays):
    check_against_torch(fn, tfn, arrays)


def test_std_of_constant_has_zero_gradient_under_create_graph():
    x = cr.tensor(np.ones(3), requires_grad=True)
    (g,) = cr.gradients(cr.std(x), x, create_graph=True)
    np.testing.assert_array_equal(g.data, [0.0, 0.0, 0.0])
    assert cr.std(np.array([1.0, 3.0])) == 1.0  # plain arrays still work


def test_maximum_tie_splits_the_gradient_in_half():
    x, y = cr.tensor([2.0], requires_grad=True), cr.tensor([2.0], requires_grad=True)
    cr.maximum(x, y).sum().backward()
    assert x.grad.data[0] == 0.5 and y.grad.data[0] == 0.5


def test_max_pool_tie_goes_to_the_first_maximum_like_torch():
    x = np.ones((1, 1, 2, 2))
    check_against_torch(lambda t: crF.max_pool2d(t, 2), lambda t: F.max_pool2d(t, 2), [x])


# ----------------------------------------------------------------------------------------------
# Non-differentiable operations
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("compare", [
    lambda x, y: x == y, lambda x, y: x != y, lambda x, y: x < y, lambda x, y: x <= y,
    lambda x, y: x > y, lambda x, y: x >= y, cr.equal, cr.greater, cr.less_equal,
])
def test_comparisons_give_bool_tensors_without_grad_fn(compare):
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = cr.tensor([2.0, 2.0, 2.0], requires_grad=True)
    out = compare(x, y)
    assert isinstance(out, cr.Tensor)
    assert out.dtype == np.bool_
    assert out.grad_fn is None and not out.requires_grad
    expected = compare(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0]))
    np.testing.assert_array_equal(out.data, expected)


def test_argmax_argmin_are_not_differentiable_and_match_torch():
    a = np.random.default_rng(0).standard_normal((3, 4))
    x = cr.tensor(a, requires_grad=True)
    for got, want in [(x.argmax(), torch.from_numpy(a).argmax()),
                      (cr.argmax(x, 1), torch.from_numpy(a).argmax(1)),
                      (cr.argmin(x, 0), torch.from_numpy(a).argmin(0)),
                      (x.argmax(-1, keepdims=True), torch.from_numpy(a).argmax(-1, True))]:
        assert got.grad_fn is None and not got.requires_grad
        assert got.dtype.kind == "i"
        np.testing.assert_array_equal(got.data, want.numpy())


def test_sign_isnan_logical_ops_have_no_gradient():
    x = cr.tensor([-1.0, 0.0, np.nan], requires_grad=True)
    for out in (cr.sign(x), cr.isnan(x), cr.isfinite(x), (x > 0) & (x < 1), ~(x > 0),
                (x > 0) | (x < 1)):
        assert out.grad_fn is None and not out.requires_grad
    np.testing.assert_array_equal(cr.isnan(x).data, [False, False, True])


def test_logical_ops_with_array_or_bool_on_the_left():
    x = cr.tensor([1.0, -1.0, 2.0])
    for out, want in ((np.array([True, True, False]) & (x > 0), [True, False, False]),
                      (True & (x > 0), [True, False, True]),
                      (np.array([False, True, False]) | (x > 1), [False, True, True])):
        assert isinstance(out, cr.Tensor) and out.dtype == np.bool_
        np.testing.assert_array_equal(out.data, want)


def test_where_with_tensor_condition_routes_gradient():
    x = cr.tensor([-1.0, 2.0, -3.0], requires_grad=True)
    out = cr.where(x > 0, x * 2, x * 0 + 1)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 2.0, 0.0])


# ----------------------------------------------------------------------------------------------
# Bad inputs: clear errors that name the operation and the shapes
# ----------------------------------------------------------------------------------------------
def test_matmul_error_message_is_exact():
    a, b = cr.ones(2, 3), cr.ones(2, 3)
    with pytest.raises(ValueError) as info:
        a @ b
    assert str(info.value) == "matmul: shapes (2, 3) and (2, 3) are not aligned (3 != 2)"


def test_matmul_error_for_scalars_names_the_op():
    with pytest.raises(ValueError, match=r"matmul: .*shapes \(\) and \(3,\)"):
        cr.matmul(cr.tensor(2.0), cr.ones(3))


def test_matmul_batch_mismatch_names_shapes():
    with pytest.raises(ValueError, match=r"matmul: .*\(2, 3, 4\).*\(3, 4, 5\)"):
        cr.matmul(cr.ones(2, 3, 4), cr.ones(3, 4, 5))


@pytest.mark.parametrize("bad,pattern", [
    (lambda: cr.reshape(cr.ones(2, 3), (4, 2)), r"reshape: .*\(2, 3\).*\(4, 2\)"),
    (lambda: cr.ones(2, 3).reshape(-1, -1), r"reshape: .*\(2, 3\)"),
    (lambda: cr.ones(2, 3).reshape(4, -1), r"reshape: .*\(2, 3\)"),
    (lambda: cr.ones(2, 3) + cr.ones(4), r"add: .*\(2, 3\).*\(4,\)"),
    (lambda: cr.ones(2, 3) * cr.ones(3, 2), r"multiply: .*\(2, 3\).*\(3, 2\)"),
    (lambda: cr.broadcast_to(cr.ones(3), (2, 4)), r"broadcast_to: .*\(3,\).*\(2, 4\)"),
    (lambda: cr.broadcast_to(cr.ones(2, 3), (3,)), r"broadcast_to: .*\(2, 3\).*\(3,\)"),
    (lambda: cr.sum(cr.ones(2, 3), 2), r"sum: axis 2 is out of range .* 2 dimensions"),
    (lambda: cr.ones(2, 3).mean(-3), r"mean: axis -3 is out of range"),
    (lambda: cr.softmax(cr.ones(3), 1), r"softmax: axis 1 is out of range"),
    (lambda: cr.sum(cr.ones(2, 3), (0, 0)), r"sum: repeated axis"),
    (lambda: cr.concatenate([cr.ones(2, 3), cr.ones(2, 4)]),
     r"concatenate: shapes \[\(2, 3\), \(2, 4\)\] differ outside axis 0"),
    (lambda: cr.concatenate([cr.ones(2, 3), cr.ones(3)]), r"concatenate: shapes"),
    (lambda: cr.stack([cr.ones(2), cr.ones(3)]), r"stack: .*\(2,\).*\(3,\)"),
    (lambda: cr.squeeze(cr.ones(2, 1), 0), r"squeeze: axis 0 of shape \(2, 1\) has size 2"),
    (lambda: cr.split(cr.ones(5), 2), r"split: axis 0 of size 5"),
    (lambda: cr.transpose(cr.ones(2, 3), (0, 0)), r"transpose: .*\(2, 3\)"),
    (lambda: cr.var(cr.ones(1), ddof=1), r"var: ddof=1"),
    (lambda: cr.clip(cr.ones(2)), r"clip: give at least one"),
    (lambda: cr.where(np.ones((2,), bool), cr.ones(3), cr.ones(4)), r"where: "),
])
def test_bad_shapes_raise_clear_value_errors(bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        bad()


def test_index_out_of_range_names_getitem():
    with pytest.raises(IndexError, match=r"getitem: .*\(3,\)"):
        cr.ones(3)[5]
    with pytest.raises(IndexError, match=r"take: .*\(3,\)"):
        cr.ones(3)[[0, 7]]


def test_axis_must_be_an_int():
    with pytest.raises(TypeError, match=r"sum: axis must be an int"):
        cr.sum(cr.ones(2), 0.5)
