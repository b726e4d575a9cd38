"""THE TABLE, tested row by row: every differentiable Primitive in `chainrule.ops` has a case here.

Each case checks, in float64, the value and the gradient of sum(out * w) (w random) against
PyTorch and the gradient against central finite differences; then float32 in gives float32 out
and float32 gradients; then (create_graph=True) a Hessian-vector product against PyTorch.
`test_every_row_has_a_case` fails when a row is added to the table without a case below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import chainrule as cr
import chainrule.ops as ops
from chainrule.nn import functional as F
from gradtools import (
    assert_close,
    central_difference,
    cr_value_and_grads,
    hvp_ours,
    hvp_torch,
    ops_in_graph,
    table_rows,
    to_torch,
    torch_value_and_grads,
)


@dataclass
class Case:
    id: str
    make: object  # rng -> list of float arrays (the inputs)
    ours: object  # chainrule tensors -> tensor
    theirs: object  # torch tensors -> tensor
    wrt: tuple = None  # inputs that require grad (all by default)
    fd: bool = True  # finite differences are meaningful (no kink at the inputs)
    fd_eps: float = 1e-6
    second: bool = True  # compare a Hessian-vector product with PyTorch
    rows: tuple = field(default=())  # extra rows it exercises (documentation only)

    def inputs(self):
        return [np.asarray(a, np.float64) for a in self.make(np.random.default_rng(7))]

    def diff(self, n):
        return tuple(range(n)) if self.wrt is None else self.wrt


def N(*shape):  # noqa: N802 - a short name keeps the table one line per case
    return lambda r: [r.standard_normal(shape)]


def NN(s1, s2):  # noqa: N802
    return lambda r: [r.standard_normal(s1), r.standard_normal(s2)]


def POS(*shape):  # noqa: N802
    return lambda r: [np.abs(r.standard_normal(shape)) + 0.5]


def C(*values):  # noqa: N802
    return lambda r: [np.array(v, dtype=np.float64) for v in values]


COND = np.array([[True, False, True, False]] * 3)
LABELS = np.array([0, 3, 1, 2, 3])
MASK = np.array([[True, False, True, True], [False, False, True, False], [True] * 4])


def _split_ours(x):
    a, b, c = cr.split(x, [1, 3], axis=1)
    return cr.concatenate([a * 1.0, b * 2.0, c * 3.0], axis=1)


def _split_theirs(x):
    a, b, c = torch.tensor_split(x, [1, 3], dim=1)
    return torch.cat([a * 1.0, b * 2.0, c * 3.0], dim=1)


def _split3_ours(x):
    return cr.stack([p * (i + 1.0) for i, p in enumerate(cr.split(x, 2, axis=0))], axis=1)


def _split3_theirs(x):
    return torch.stack([p * (i + 1.0) for i, p in enumerate(torch.tensor_split(x, 2, dim=0))],
                       dim=1)


def _setitem_ours(x, v):
    y = x * 1.0
    y[1] = v * 2.0
    return y


def _setitem_theirs(x, v):
    y = x * 1.0
    y[1] = v * 2.0
    return y


def _setitem_fancy_ours(x, v):
    y = x * 1.0
    y[[0, 2], 1:3] = cr.exp(v)
    return y


def _setitem_fancy_theirs(x, v):
    y = x * 1.0
    y[[0, 2], 1:3] = torch.exp(v)
    return y


def _red(name, axis, keepdims):
    def ours(x):
        return getattr(cr, name)(x, axis=axis, keepdims=keepdims)

    def theirs(x):
        fn = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax, "min": torch.amin,
              "logsumexp": torch.logsumexp}[name]
        if axis is None:
            out = fn(x.reshape(-1), 0)
            return out.reshape((1,) * x.ndim) if keepdims else out
        return fn(x, dim=axis, keepdim=keepdims)

    return ours, theirs


def _reductions():
    out = []
    for name in ("sum", "mean", "max", "min", "logsumexp"):
        for axis, keepdims in ((None, False), (None, True), (1, False), (-1, True),
                               ((0, 2), False), ((0, 2), True)):
            ours, theirs = _red(name, axis, keepdims)
            out.append(Case(f"{name}-axis{axis}-keep{keepdims}", N(2, 3, 4), ours, theirs))
    return out


def _torch_var(x, axis, ddof, keepdims=False):
    if axis is None:
        return torch.var(x.reshape(-1), correction=ddof)
    return torch.var(x, dim=axis, correction=ddof, keepdim=keepdims)


CASES = [
    # --- arithmetic, with broadcasting -------------------------------------------------------
    Case("add-(3,1)+(1,4)", NN((3, 1), (1, 4)), lambda a, b: a + b, lambda a, b: a + b),
    Case("add-scalar-tensor", NN((), (3,)), lambda a, b: a + b, lambda a, b: a + b),
    Case("add-python-float", N(3), lambda a: 2.5 + a, lambda a: 2.5 + a),
    Case("sub-(2,3,4)-(4,)", NN((2, 3, 4), (4,)), lambda a, b: a - b, lambda a, b: a - b),
    Case("rsub-float", N(3), lambda a: 1.0 - a, lambda a: 1.0 - a),
    Case("mul-(2,3,4)*(4,)", NN((2, 3, 4), (4,)), lambda a, b: a * b, lambda a, b: a * b),
    Case("mul-(3,1)*(1,4)", NN((3, 1), (1, 4)), lambda a, b: a * b, lambda a, b: a * b),
    Case("mul-scalar-tensor", NN((), (2, 3)), lambda a, b: a * b, lambda a, b: a * b),
    Case("mul-self", N(3), lambda a: a * a, lambda a: a * a),
    Case("div-(3,1)/(1,4)", lambda r: [r.standard_normal((3, 1)),
                                       np.abs(r.standard_normal((1, 4))) + 0.5],
         lambda a, b: a / b, lambda a, b: a / b),
    Case("div-(2,3,4)/scalar", lambda r: [r.standard_normal((2, 3, 4)), np.array(1.7)],
         lambda a, b: a / b, lambda a, b: a / b),
    Case("rdiv-float", POS(3), lambda a: 2.0 / a, lambda a: 2.0 / a),
    Case("power-both", lambda r: [np.abs(r.standard_normal((3, 4))) + 0.5,
                                  r.standard_normal((4,))],
         lambda a, b: a ** b, lambda a, b: a ** b),
    Case("power-int-exponent", N(3, 2), lambda a: a ** 3, lambda a: a ** 3),
    Case("rpow", N(4), lambda a: 2.0 ** a, lambda a: 2.0 ** a),
    Case("negative", N(3, 2), lambda a: -a, lambda a: -a),
    Case("maximum-bcast", NN((3, 4), (4,)), cr.maximum, torch.maximum),
    Case("maximum-ties", C([1.0, 2.0, 3.0, -1.0], [1.0, 0.0, 3.0, -1.0]), cr.maximum,
         torch.maximum, fd=False),
    Case("minimum-bcast", NN((3, 1), (1, 4)), cr.minimum, torch.minimum),
    Case("minimum-ties", C([1.0, 2.0, 3.0], [1.0, 0.0, 3.0]), cr.minimum, torch.minimum,
         fd=False),
    Case("where-bcast", NN((3, 4), (4,)), lambda a, b: cr.where(COND, a, b),
         lambda a, b: torch.where(torch.tensor(COND), a, b)),
    Case("where-scalar-branch", N(3, 4), lambda a: cr.where(COND, a, 0.0),
         lambda a: torch.where(torch.tensor(COND), a, 0.0)),
    # --- matmul ------------------------------------------------------------------------------
    Case("matmul-1d-1d", NN((4,), (4,)), cr.matmul, torch.matmul),
    Case("matmul-2d-1d", NN((3, 4), (4,)), cr.matmul, torch.matmul),
    Case("matmul-1d-2d", NN((4,), (4, 3)), cr.matmul, torch.matmul),
    Case("matmul-2d-2d", NN((3, 4), (4, 2)), lambda a, b: a @ b, lambda a, b: a @ b),
    Case("matmul-batched", NN((2, 3, 4), (2, 4, 5)), cr.matmul, torch.matmul),
    Case("matmul-broadcast-batch", NN((2, 1, 3, 4), (3, 4, 2)), cr.matmul, torch.matmul),
    Case("matmul-batched-1d", NN((2, 3, 4), (4,)), cr.matmul, torch.matmul),
    Case("matmul-1d-batched", NN((4,), (2, 4, 3)), cr.matmul, torch.matmul),
    Case("matmul-x-no-grad", NN((3, 4), (4, 2)), cr.matmul, torch.matmul, wrt=(1,)),
    # --- elementwise -------------------------------------------------------------------------
    Case("exp", N(3, 4), cr.exp, torch.exp),
    Case("log", POS(3, 4), cr.log, torch.log),
    Case("sqrt", POS(3, 4), cr.sqrt, torch.sqrt),
    Case("abs", N(3, 4), cr.abs, torch.abs),
    Case("abs-at-zero", C([0.0, -1.0, 2.0, 0.0]), cr.abs, torch.abs, fd=False),
    Case("sin", N(3, 4), cr.sin, torch.sin),
    Case("cos", N(3, 4), cr.cos, torch.cos),
    Case("tanh", N(3, 4), cr.tanh, torch.tanh),
    Case("sigmoid", lambda r: [np.concatenate([r.standard_normal(6), [-40.0, 40.0]])],
         cr.sigmoid, torch.sigmoid),
    Case("relu", N(3, 4), cr.relu, torch.relu),
    Case("relu-at-zero", C([0.0, -1.0, 2.0, 0.0]), cr.relu, torch.relu, fd=False),
    Case("leaky_relu", N(3, 4), lambda a: cr.leaky_relu(a, 0.2),
         lambda a: TF.leaky_relu(a, 0.2)),
    Case("leaky_relu-at-zero", C([0.0, -1.0, 2.0]), lambda a: cr.leaky_relu(a, 0.1),
         lambda a: TF.leaky_relu(a, 0.1), fd=False),
    Case("erf", N(3, 4), cr.erf, torch.erf),
    Case("gelu", N(3, 4), cr.gelu, TF.gelu),
    Case("softplus", lambda r: [np.concatenate([r.standard_normal(6), [-30.0, 30.0]])],
         cr.softplus, TF.softplus),
    Case("clip", N(3, 4), lambda a: cr.clip(a, -0.5, 0.5), lambda a: torch.clamp(a, -0.5, 0.5)),
    Case("clip-at-bounds", C([-1.0, -0.5, 0.0, 0.5, 1.0]), lambda a: cr.clip(a, -0.5, 0.5),
         lambda a: torch.clamp(a, -0.5, 0.5), fd=False),
    Case("clip-min-only", N(5), lambda a: cr.clip(a, min=0.1), lambda a: torch.clamp(a, min=0.1)),
    Case("astype-roundtrip", N(3), lambda a: cr.astype(cr.astype(a, np.float32), a.dtype) * a,
         lambda a: a.to(torch.float32).to(a.dtype) * a, fd_eps=1e-3),
    Case("clone", N(3, 2), lambda a: a.clone() * a, lambda a: a.clone() * a),
    # --- reductions --------------------------------------------------------------------------
    *_reductions(),
    Case("max-ties", C([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), lambda a: cr.max(a, axis=1),
         lambda a: torch.amax(a, dim=1), fd=False),
    Case("max-ties-all", C([[1.0, 3.0], [3.0, 0.0]]), cr.max, torch.amax, fd=False),
    Case("min-ties", C([[1.0, 1.0, 3.0]]), lambda a: cr.min(a, axis=-1, keepdims=True),
         lambda a: torch.amin(a, dim=-1, keepdim=True), fd=False),
    Case("var-all", N(3, 4), cr.var, lambda a: _torch_var(a, None, 0)),
    Case("var-axis-ddof1", N(3, 4), lambda a: cr.var(a, axis=0, ddof=1),
         lambda a: _torch_var(a, 0, 1)),
    Case("var-tuple-keepdims", N(2, 3, 4), lambda a: cr.var(a, axis=(0, 2), keepdims=True),
         lambda a: _torch_var(a, (0, 2), 0, True)),
    Case("std-axis", N(3, 4), lambda a: cr.std(a, axis=1), lambda a: torch.std(a, dim=1,
                                                                             correction=0)),
    Case("softmax-last", N(3, 4), cr.softmax, lambda a: torch.softmax(a, -1)),
    Case("softmax-axis0", N(3, 4), lambda a: cr.softmax(a, axis=0), lambda a: torch.softmax(a, 0)),
    Case("log_softmax-last", N(3, 4), cr.log_softmax, lambda a: torch.log_softmax(a, -1)),
    Case("log_softmax-axis0", N(2, 3, 4), lambda a: cr.log_softmax(a, axis=0),
         lambda a: torch.log_softmax(a, 0)),
    # --- shape -------------------------------------------------------------------------------
    Case("reshape", N(2, 3, 4), lambda a: cr.reshape(a, (4, -1)) * 2, lambda a: a.reshape(4, -1)
         * 2),
    Case("transpose-axes", N(2, 3, 4), lambda a: cr.transpose(a, (2, 0, 1)),
         lambda a: a.permute(2, 0, 1)),
    Case("transpose-default", N(3, 4), lambda a: a.T, lambda a: a.T),
    Case("swapaxes", N(2, 3, 4), lambda a: cr.swapaxes(a, 0, 2), lambda a: a.transpose(0, 2)),
    Case("flatten", N(2, 3, 4), lambda a: cr.flatten(a, 1), lambda a: torch.flatten(a, 1)),
    Case("squeeze-unsqueeze", N(3, 1, 4), lambda a: cr.expand_dims(cr.squeeze(a), 0),
         lambda a: a.squeeze().unsqueeze(0)),
    Case("broadcast_to", N(3, 1), lambda a: cr.broadcast_to(a, (2, 3, 4)),
         lambda a: torch.broadcast_to(a, (2, 3, 4))),
    # --- indexing ----------------------------------------------------------------------------
    Case("getitem-slices", N(4, 5), lambda a: a[1:, ::2], lambda a: a[1:, ::2]),
    Case("getitem-int-ellipsis", N(2, 3, 4), lambda a: a[1, ..., None, 2],
         lambda a: a[1, ..., None, 2]),
    Case("getitem-negative-step", N(5), lambda a: a[::-2], lambda a: a.flip(0)[::2]),
    Case("take-repeated", N(4, 3), lambda a: a[[0, 2, 0, 0]], lambda a: a[[0, 2, 0, 0]]),
    Case("take-2d-repeated", N(3, 4), lambda a: a[[0, 1, 1, 1], [2, 0, 0, 0]],
         lambda a: a[[0, 1, 1, 1], [2, 0, 0, 0]]),
    Case("take-bool-mask", N(3, 4), lambda a: a[MASK], lambda a: a[torch.tensor(MASK)]),
    Case("take-mixed", N(3, 4), lambda a: a[1:, [3, 3, 0]], lambda a: a[1:, [3, 3, 0]]),
    Case("setitem-non-leaf", NN((3, 4), (4,)), _setitem_ours, _setitem_theirs),
    Case("setitem-fancy", NN((3, 4), (2, 2)), _setitem_fancy_ours, _setitem_fancy_theirs),
    Case("concatenate-axis0", NN((2, 3), (1, 3)), lambda a, b: cr.concatenate([a, b, a]),
         lambda a, b: torch.cat([a, b, a])),
    Case("concatenate-axis1", NN((2, 3), (2, 1)), lambda a, b: cr.concatenate([a, b], axis=1),
         lambda a, b: torch.cat([a, b], 1)),
    Case("stack-axis0", NN((2, 3), (2, 3)), lambda a, b: cr.stack([a, b]),
         lambda a, b: torch.stack([a, b])),
    Case("stack-axis-last", NN((2, 3), (2, 3)), lambda a, b: cr.stack([a, b, a], axis=-1),
         lambda a, b: torch.stack([a, b, a], -1)),
    Case("split-points", N(2, 5), _split_ours, _split_theirs),
    Case("split-sections", N(4, 3), _split3_ours, _split3_theirs),
    # --- fused rows (nn) ---------------------------------------------------------------------
    Case("linear", lambda r: [r.standard_normal((5, 3)), r.standard_normal((4, 3)),
                              r.standard_normal(4)], F.linear, TF.linear),
    Case("linear-3d-no-bias", NN((2, 5, 3), (4, 3)), F.linear, TF.linear),
    Case("cross_entropy-labels-mean", N(5, 4), lambda a: F.cross_entropy(a, LABELS),
         lambda a: TF.cross_entropy(a, torch.tensor(LABELS))),
    Case("cross_entropy-labels-none", N(5, 4), lambda a: F.cross_entropy(a, LABELS, "none"),
         lambda a: TF.cross_entropy(a, torch.tensor(LABELS), reduction="none")),
    Case("cross_entropy-probs", lambda r: [r.standard_normal((5, 4)),
                                           r.dirichlet(np.ones(4), 5)],
         lambda a, p: F.cross_entropy(a, p, "sum"),
         lambda a, p: TF.cross_entropy(a, p, reduction="sum")),
    Case("binary_cross_entropy", lambda r: [r.uniform(0.05, 0.95, (3, 4)),
                                            r.uniform(0, 1, (3, 4))],
         lambda p, y: F.binary_cross_entropy(p, y, "none"),
         lambda p, y: TF.binary_cross_entropy(p, y, reduction="none")),
    Case("conv2d-pad-stride", lambda r: [r.standard_normal((2, 2, 5, 5)),
                                         r.standard_normal((3, 2, 3, 3)), r.standard_normal(3)],
         lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
         lambda x, w, b: TF.conv2d(x, w, b, stride=2, padding=1)),
    Case("conv2d-plain", NN((1, 1, 4, 4), (2, 1, 2, 2)), F.conv2d, TF.conv2d),
    Case("max_pool2d", N(2, 2, 4, 4), lambda x: F.max_pool2d(x, 2),
         lambda x: TF.max_pool2d(x, 2)),
    Case("max_pool2d-pad-overlap", N(1, 2, 5, 5), lambda x: F.max_pool2d(x, 3, 2, 1),
         lambda x: TF.max_pool2d(x, 3, 2, 1)),
    Case("max_pool2d-ties", C([[[[1.0, 1.0], [0.0, 1.0]]]]), lambda x: F.max_pool2d(x, 2),
         lambda x: TF.max_pool2d(x, 2), fd=False, second=False),
    Case("max_pool2d-dilation-ceil", N(2, 1, 7, 6),
         lambda x: F.max_pool2d(x, (2, 3), (2, 1), (1, 1), dilation=(2, 1), ceil_mode=True),
         lambda x: TF.max_pool2d(x, (2, 3), (2, 1), (1, 1), dilation=(2, 1), ceil_mode=True)),
    Case("conv2d-dilation-groups", lambda r: [r.standard_normal((2, 4, 6, 5)),
                                              r.standard_normal((6, 2, 2, 3)),
                                              r.standard_normal(6)],
         lambda x, w, b: F.conv2d(x, w, b, padding=(1, 2), dilation=(2, 1), groups=2),
         lambda x, w, b: TF.conv2d(x, w, b, padding=(1, 2), dilation=(2, 1), groups=2)),
    Case("conv2d-same-even-kernel", NN((1, 2, 5, 4), (3, 2, 2, 4)),
         lambda x, w: F.conv2d(x, w, padding="same"),
         lambda x, w: TF.conv2d(x, w, padding="same")),
    Case("conv2d-stride-dilation-unbatched", NN((2, 7, 6), (2, 2, 3, 2)),
         lambda x, w: F.conv2d(x, w, stride=(2, 3), dilation=2, padding=1),
         lambda x, w: TF.conv2d(x, w, stride=(2, 3), dilation=2, padding=1)),
    Case("conv1d", lambda r: [r.standard_normal((2, 3, 9)), r.standard_normal((4, 3, 3)),
                              r.standard_normal(4)],
         lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1),
         lambda x, w, b: TF.conv1d(x, w, b, stride=2, padding=1)),
    Case("conv1d-dilation-groups-same", NN((2, 4, 7), (2, 2, 3)),
         lambda x, w: F.conv1d(x, w, padding="same", dilation=2, groups=2),
         lambda x, w: TF.conv1d(x, w, padding="same", dilation=2, groups=2)),
    Case("avg_pool2d", N(2, 3, 4, 6), lambda x: F.avg_pool2d(x, 2),
         lambda x: TF.avg_pool2d(x, 2)),
    Case("avg_pool2d-pad-overlap-exclude", N(1, 2, 5, 6),
         lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
         lambda x: TF.avg_pool2d(x, 3, 2, 1, count_include_pad=False)),
    Case("avg_pool2d-ceil-divisor", N(1, 2, 5, 7),
         lambda x: F.avg_pool2d(x, (2, 3), (2, 2), (1, 0), ceil_mode=True),
         lambda x: TF.avg_pool2d(x, (2, 3), (2, 2), (1, 0), ceil_mode=True)),
    Case("avg_pool2d-divisor-override", N(3, 4, 4), lambda x: F.avg_pool2d(
        x, 2, 1, divisor_override=3), lambda x: TF.avg_pool2d(x, 2, 1, divisor_override=3)),
    Case("adaptive_avg_pool2d", N(2, 3, 7, 5), lambda x: F.adaptive_avg_pool2d(x, (3, 2)),
         lambda x: TF.adaptive_avg_pool2d(x, (3, 2))),
    Case("adaptive_avg_pool2d-global", N(2, 3, 4, 6), lambda x: F.adaptive_avg_pool2d(x, 1),
         lambda x: TF.adaptive_avg_pool2d(x, 1)),
    Case("batch_norm-2d", lambda r: [r.standard_normal((3, 2, 4, 3)), r.standard_normal(2),
                                     r.standard_normal(2)],
         lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
         lambda x, w, b: TF.batch_norm(x, None, None, w, b, training=True)),
    Case("pad2d", N(1, 2, 3, 2), lambda x: ops.pad2d(x, pad=1, value=0.5),
         lambda x: TF.pad(x, (1, 1, 1, 1), value=0.5)),
]

# Internal helper rows have no public entry point of their own: they run inside another row's
# backward rule, and their own VJPs run only under create_graph=True. Each is mapped to the case
# whose Hessian-vector product (test_second_order_matches_torch) records and differentiates it;
# test_every_row_has_a_case also finds them in that graph.
EXEMPT = {
    "scatter": "take-repeated",  # the adjoint of getitem / take
    "zero_at": "setitem-non-leaf",  # setitem's gradient for the overwritten input
    "col2im": "conv2d-pad-stride",  # the adjoint of im2col
    "max_pool_scatter": "max_pool2d",  # max_pool2d's backward
    "max_pool_gather": "max_pool2d",  # max_pool_scatter's backward (third order, see below)
    "clamped_log": "binary_cross_entropy",  # binary_cross_entropy's gradient for the target
    "window_spread": "avg_pool2d",  # window_sum's backward (average pooling)
}

IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS), "case ids must be unique"


def _cr_fn(case):
    return case.ours


def _scalar_fn(case, weights):
    def f(*arrays):
        with cr.no_grad():
            return float((case.ours(*[cr.tensor(a) for a in arrays]).data * weights).sum())

    return f


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_and_gradient_match_torch_and_finite_differences(case):
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    out, w, grads = cr_value_and_grads(case.ours, arrays, wrt)
    assert out.dtype == np.float64
    expected, tgrads = torch_value_and_grads(case.theirs, arrays, wrt, w)
    assert out.shape == expected.shape
    assert_close(out, expected, what=f"{case.id}: value")
    for i, g, tg in zip(wrt, grads, tgrads):
        assert g is not None and g.shape == arrays[i].shape and g.dtype == np.float64
        assert_close(g, tg, what=f"{case.id}: gradient of input {i} vs torch")
    if case.fd:
        numeric = central_difference(_scalar_fn(case, w), arrays, wrt, eps=case.fd_eps)
        for i, g, ng in zip(wrt, grads, numeric):
            assert_close(g, ng, rtol=1e-5, atol=1e-6,
                         what=f"{case.id}: gradient of input {i} vs finite differences")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_in_float32_out(case):
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    out64, w, grads64 = cr_value_and_grads(case.ours, arrays, wrt)
    out, _, grads = cr_value_and_grads(case.ours, arrays, wrt, dtype=np.float32, weights=w)
    assert out.dtype == np.float32, f"{case.id}: output is {out.dtype}"
    assert_close(out, out64, rtol=1e-4, atol=1e-4, what=case.id)
    for g, g64 in zip(grads, grads64):
        assert g.dtype == np.float32, f"{case.id}: gradient is {g.dtype}"
        assert_close(g, g64, rtol=1e-3, atol=1e-4, what=case.id)


@pytest.mark.parametrize("case", [c for c in CASES if c.second],
                         ids=[c.id for c in CASES if c.second])
def test_second_order_matches_torch(case):
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    rng = np.random.default_rng(3)
    out = case.ours(*[cr.tensor(a) for a in arrays])
    w = rng.standard_normal(out.shape)
    v = [rng.standard_normal(arrays[i].shape) for i in wrt]
    ours = hvp_ours(case.ours, arrays, wrt, w, v)
    theirs = hvp_torch(case.theirs, arrays, wrt, w, v)
    assert len(ours) == len(theirs) == len(wrt) + 1
    for i, a, b in zip(list(wrt) + ["w"], ours, theirs):
        assert_close(a, b, rtol=1e-6, atol=1e-8, what=f"{case.id}: second derivative, {i}")


def test_every_row_has_a_case():
    rows = table_rows(ops)
    assert len(rows) >= 40
    exercised = set()
    for case in CASES:
        arrays = case.inputs()
        wrt = case.diff(len(arrays))
        tensors = [cr.tensor(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
        out = case.ours(*tensors)
        ops_in_graph(out, exercised)
        if case.second:
            loss = (out * cr.tensor(np.ones(out.shape), requires_grad=True)).sum()
            for g in cr.gradients(loss, [tensors[i] for i in wrt], create_graph=True):
                ops_in_graph(g, exercised)
    ops_in_graph(_max_pool_third_order_ours()[1], exercised)
    missing = sorted(name for name, row in rows.items()
                     if id(row) not in exercised and name not in EXEMPT)
    assert not missing, f"rows of the table without a test case: {missing}"
    # every exemption names a real row, and a case that really records it
    for name, case_id in EXEMPT.items():
        assert name in rows, f"exempt row {name} is not in the table"
        assert case_id in IDS, f"exempt row {name} maps to unknown case {case_id}"
        assert id(rows[name]) in exercised, f"{name} is never recorded, not even by {case_id}"


def _max_pool_third_order_ours():
    """x -> g = d<maxpool(x), w>/dx (scatter) -> h = d<g, v>/dw (gather) -> d<h, u>/dv."""
    rng = np.random.default_rng(5)
    x, w, v, u = (rng.standard_normal(s) for s in ((1, 2, 4, 4), (1, 2, 2, 2), (1, 2, 4, 4),
                                                   (1, 2, 2, 2)))
    xt, wt, vt = (cr.tensor(a, requires_grad=True) for a in (x, w, v))
    (g,) = cr.gradients((F.max_pool2d(xt, 2) * wt).sum(), [xt], create_graph=True)
    (h,) = cr.gradients((g * vt).sum(), [wt], create_graph=True)
    (dv,) = cr.gradients((h * cr.tensor(u)).sum(), [vt])
    return (x, w, v, u), h, dv


def test_max_pool2d_third_order_matches_torch():
    (x, w, v, u), h, dv = _max_pool_third_order_ours()
    xt, wt, vt = (to_torch(a, requires_grad=True) for a in (x, w, v))
    (g,) = torch.autograd.grad((TF.max_pool2d(xt, 2) * wt).sum(), [xt], create_graph=True)
    (th,) = torch.autograd.grad((g * vt).sum(), [wt], create_graph=True)
    (tdv,) = torch.autograd.grad((th * to_torch(u)).sum(), [vt])
    assert_close(h, th)
    assert_close(dv, tdv)
    assert np.count_nonzero(dv.data) == 8  # one maximum per window receives u
