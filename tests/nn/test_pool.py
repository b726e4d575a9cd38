"""Pooling (`functional.max_pool2d`, `avg_pool2d`, `adaptive_avg_pool2d` and their layers) and
`BatchNorm2d` against PyTorch.

Max pooling keeps each window's argmax from the forward pass (uint8 offsets, counted by the
memory report) and routes the gradient with it. Every case runs on inputs of three memory
layouts (contiguous, channels-first and batch-innermost, as convolutions produce them).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import chainrule as cr
from chainrule import nn
from chainrule.inspect import memory
from chainrule.nn import functional as F
from helpers import check_against_finite_differences

LAYOUTS = {"contiguous": (0, 1, 2, 3), "channels-first": (1, 0, 2, 3),
           "batch-last": (1, 2, 3, 0)}


def _laid_out(x, layout):
    """``x`` (N, C, H, W) as a view over memory ordered as ``LAYOUTS[layout]``."""
    order = LAYOUTS[layout]
    if x.ndim != 4:
        return x
    return np.ascontiguousarray(x.transpose(order)).transpose(np.argsort(order))


def _check(ours, theirs, x, layout, second=True, rtol=1e-10):
    """Value, gradient and (``second``) a Hessian-vector product of sum(out * w) vs torch."""
    xl = _laid_out(x, layout)
    xt = torch.tensor(x, requires_grad=True)
    tout = theirs(xt)
    rng = np.random.default_rng(1)
    w = rng.standard_normal(tout.shape)
    xc = cr.tensor(xl, requires_grad=True)
    out = ours(xc)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=rtol, atol=1e-12)
    (g,) = cr.gradients((out * cr.tensor(w)).sum(), [xc], create_graph=second)
    (tg,) = torch.autograd.grad((tout * torch.from_numpy(w)).sum(), [xt], create_graph=second)
    np.testing.assert_allclose(g.data, tg.detach().numpy(), rtol=rtol, atol=1e-12)
    if second:  # d/dx <g, v> is zero for these piecewise-linear maps; d/dw is not: check both
        wc, wt = cr.tensor(w, requires_grad=True), torch.tensor(w, requires_grad=True)
        v = rng.standard_normal(x.shape)
        (g,) = cr.gradients((ours(xc) * wc).sum(), [xc], create_graph=True)
        (tg,) = torch.autograd.grad((theirs(xt) * wt).sum(), [xt], create_graph=True)
        (h,) = cr.gradients((g * cr.tensor(v)).sum(), [wc])
        (th,) = torch.autograd.grad((tg * torch.from_numpy(v)).sum(), [wt])
        np.testing.assert_allclose(h.data, th.numpy(), rtol=rtol, atol=1e-12)


MAX_POOL = [  # id, shape, args, kwargs
    ("2x2", (3, 4, 6, 8), (2,), {}),
    ("odd-size", (2, 3, 7, 5), (2,), {}),
    ("3x3-stride2-pad1", (2, 2, 7, 7), (3, 2, 1), {}),
    ("overlap", (2, 2, 5, 6), ((2, 3),), dict(stride=1)),
    ("stride-bigger-than-kernel", (1, 2, 9, 9), (2, 3), {}),
    ("dilation", (2, 2, 8, 7), (2,), dict(stride=1, dilation=(2, 3))),
    ("ceil-mode", (2, 2, 7, 6), (3, 2), dict(ceil_mode=True)),
    ("ceil-mode-pad", (1, 3, 6, 9), ((2, 3), (2, 2), (1, 1)), dict(ceil_mode=True)),
    ("unbatched", (3, 6, 6), (2,), {}),
]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", MAX_POOL, ids=[c[0] for c in MAX_POOL])
def test_max_pool2d_matches_torch(case, layout):
    _, shape, args, kwargs = case
    x = np.random.default_rng(0).standard_normal(shape)
    _check(lambda t: F.max_pool2d(t, *args, **kwargs),
           lambda t: TF.max_pool2d(t, *args, **kwargs), x, layout)


@pytest.mark.parametrize("case", MAX_POOL[:7], ids=[c[0] for c in MAX_POOL[:7]])
def test_max_pool2d_indices_are_torchs(case):
    _, shape, args, kwargs = case
    x = np.random.default_rng(0).standard_normal(shape)
    out, idx = F.max_pool2d(cr.tensor(x), *args, **kwargs, return_indices=True)
    tout, tidx = TF.max_pool2d(torch.tensor(x), *args, **kwargs, return_indices=True)
    np.testing.assert_array_equal(out.data, tout.numpy())
    np.testing.assert_array_equal(idx.data, tidx.numpy())
    assert idx.dtype == np.int64
    layer = nn.MaxPool2d(*args, **kwargs, return_indices=True)
    np.testing.assert_array_equal(layer(cr.tensor(x))[1].data, tidx.numpy())


def test_max_pool2d_ties_go_to_the_first_maximum_in_every_layout():
    x = np.zeros((3, 2, 4, 4))  # relu-like: windows full of equal zeros
    x[:, :, 2:, 2:] = [[1, 3], [3, 2]]
    x[1, 1] = 5.0
    for layout in LAYOUTS:
        _check(lambda t: F.max_pool2d(t, 2), lambda t: TF.max_pool2d(t, 2), x, layout,
               second=False)
        _check(lambda t: F.max_pool2d(t, 3, 1, 1), lambda t: TF.max_pool2d(t, 3, 1, 1), x,
               layout, second=False)


def test_max_pool2d_sends_the_gradient_to_a_nan_as_torch():
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 6))
    x[0, 0, 1, 0] = x[0, 0, 3, 3] = x[0, 0, 2, 2] = x[1, 0, 0, 5] = np.nan  # two in one window
    for layout in LAYOUTS:
        xc = cr.tensor(_laid_out(x, layout), requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        out, tout = F.max_pool2d(xc, 2), TF.max_pool2d(xt, 2)
        np.testing.assert_array_equal(out.data, tout.detach().numpy())
        out.sum().backward()
        tout.sum().backward()
        np.testing.assert_array_equal(xc.grad.data, xt.grad.numpy())


def test_max_pool2d_gradient_matches_finite_differences():
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 5))
    check_against_finite_differences(lambda t: F.max_pool2d(t, 3, 2, 1), [x])
    check_against_finite_differences(lambda t: F.max_pool2d(t, 2, 1, dilation=2), [x])


def test_max_pool2d_saves_only_its_uint8_indices_and_the_report_counts_them():
    x = cr.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 6)).astype(np.float32),
                  requires_grad=True)
    out = F.max_pool2d(x, 2)
    report = memory(out.sum())
    (node,) = [n for n in report.nodes if n.name == "MaxPool2dBackward"]
    assert node.shapes == ((2, 3, 4, 3),) and node.nbytes == 2 * 3 * 4 * 3  # one byte each
    assert report.saved_bytes == node.nbytes  # neither x nor the output is kept
    (node_obj,) = [n for n in _nodes(out) if n.op.name == "max_pool2d"]
    assert [a.dtype for a in node_obj.saved_arrays()] == [np.uint8]


def _nodes(t):
    stack, seen = [t.grad_fn], []
    while stack:
        node = stack.pop()
        if node is not None and hasattr(node, "op") and node not in seen:
            seen.append(node)
            stack.extend(p for p in node.parents if hasattr(p, "op"))
    return seen


def test_max_pool2d_without_a_gradient_keeps_nothing_and_matches():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    with cr.no_grad():
        a = F.max_pool2d(cr.tensor(x, requires_grad=True), 3, 2, 1)
    b = F.max_pool2d(cr.tensor(x), 3, 2, 1)
    c = F.max_pool2d(x, 3, 2, 1)  # a plain array in, a plain array out
    assert a.grad_fn is None and b.grad_fn is None and isinstance(c, np.ndarray)
    expected = TF.max_pool2d(torch.from_numpy(x), 3, 2, 1).numpy()
    for out in (a.data, b.data, c):
        np.testing.assert_array_equal(out, expected)
        assert out.dtype == np.float32


def test_max_pool2d_on_integers_pads_with_the_lowest_integer():
    x = np.arange(-20, 16).reshape(1, 1, 6, 6)
    out = F.max_pool2d(x, 3, 2, 1)
    np.testing.assert_array_equal(out, TF.max_pool2d(torch.tensor(x).double(), 3, 2, 1).numpy())
    assert out.dtype == x.dtype


AVG_POOL = [
    ("2x2", (3, 4, 6, 8), (2,), {}),
    ("odd-size", (2, 3, 7, 5), (2,), {}),
    ("3x3-stride2-pad1", (2, 2, 7, 7), (3, 2, 1), {}),
    ("exclude-pad", (2, 2, 7, 6), (3, 2, 1), dict(count_include_pad=False)),
    ("overlap", (2, 2, 5, 6), ((2, 3),), dict(stride=1)),
    ("stride-bigger-than-kernel", (1, 2, 9, 9), (2, 3), {}),
    ("ceil-mode", (2, 2, 7, 6), (3, 2), dict(ceil_mode=True)),
    ("ceil-mode-pad-exclude", (1, 3, 6, 9), ((2, 3), (2, 2), (1, 1)),
     dict(ceil_mode=True, count_include_pad=False)),
    ("ceil-mode-pad-include", (1, 3, 6, 9), ((2, 3), (2, 2), (1, 1)), dict(ceil_mode=True)),
    ("divisor-override", (2, 2, 6, 6), (3, 1, 1), dict(divisor_override=5)),
    ("unbatched", (3, 6, 6), (2,), {}),
]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", AVG_POOL, ids=[c[0] for c in AVG_POOL])
def test_avg_pool2d_matches_torch(case, layout):
    _, shape, args, kwargs = case
    x = np.random.default_rng(0).standard_normal(shape)
    _check(lambda t: F.avg_pool2d(t, *args, **kwargs),
           lambda t: TF.avg_pool2d(t, *args, **kwargs), x, layout)


def test_avg_pool2d_gradient_matches_finite_differences_and_keeps_float32():
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 5))
    check_against_finite_differences(
        lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False), [x])
    xc = cr.tensor(x.astype(np.float32), requires_grad=True)
    out = F.avg_pool2d(xc, 3, 2, 1, count_include_pad=False)
    out.sum().backward()
    assert out.dtype == xc.grad.dtype == np.float32
    assert memory(F.avg_pool2d(xc, 2).sum()).saved_bytes == 0  # a linear map keeps nothing


ADAPTIVE = [
    ("equal-bins", (2, 3, 6, 8), (3, 4)),
    ("uneven", (2, 3, 7, 5), (3, 2)),
    ("global", (2, 3, 5, 7), 1),
    ("larger-than-input", (1, 2, 3, 4), (5, 6)),
    ("keep-one-size", (2, 2, 5, 6), (None, 4)),
    ("unbatched", (3, 7, 7), 3),
]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("case", ADAPTIVE, ids=[c[0] for c in ADAPTIVE])
def test_adaptive_avg_pool2d_matches_torch(case, layout):
    _, shape, size = case
    x = np.random.default_rng(0).standard_normal(shape)
    _check(lambda t: F.adaptive_avg_pool2d(t, size), lambda t: TF.adaptive_avg_pool2d(t, size),
           x, layout, rtol=1e-9)


def test_adaptive_avg_pool2d_finite_differences_and_float32():
    x = np.random.default_rng(3).standard_normal((2, 2, 5, 7))
    check_against_finite_differences(lambda t: F.adaptive_avg_pool2d(t, (2, 3)), [x])
    out = F.adaptive_avg_pool2d(cr.tensor(x.astype(np.float32)), (2, 3))
    assert out.dtype == np.float32


@pytest.mark.parametrize("ours,theirs,shape", [
    (nn.MaxPool2d(3, 2, 1, ceil_mode=True), torch.nn.MaxPool2d(3, 2, 1, ceil_mode=True),
     (2, 3, 7, 7)),
    (nn.MaxPool2d(2, dilation=2), torch.nn.MaxPool2d(2, dilation=2), (2, 3, 7, 7)),
    (nn.AvgPool2d(3, 2, 1, count_include_pad=False),
     torch.nn.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 7)),
    (nn.AvgPool2d(2), torch.nn.AvgPool2d(2), (2, 3, 6, 6)),
    (nn.AdaptiveAvgPool2d((2, 3)), torch.nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 7, 7)),
], ids=["maxpool", "maxpool-dilation", "avgpool", "avgpool-2", "adaptive"])
def test_pool_layers_match_torch(ours, theirs, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, tout = ours(xc), theirs(xt)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-6, atol=1e-6)
    (out * out).sum().backward()
    (tout * tout).sum().backward()
    np.testing.assert_allclose(xc.grad.data, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert out.dtype == xc.grad.dtype == np.float32
    assert type(ours).__name__ in repr(ours)


def test_pool_errors_name_the_problem():
    x = cr.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match=r"max_pool2d: padding \(2, 2\) must be at most half"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="avg_pool2d: kernel 5x5 is larger than the"):
        F.avg_pool2d(x, 5)
    with pytest.raises(ValueError, match="kernel size, stride and dilation must be positive"):
        F.max_pool2d(x, 0)
    with pytest.raises(ValueError, match=r"expected input \(N, C, H, W\) or \(C, H, W\)"):
        F.max_pool2d(cr.zeros(4, 4), 2)
    with pytest.raises(ValueError, match="divisor_override must be positive"):
        F.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(ValueError, match="adaptive_avg_pool2d: output size must be positive"):
        F.adaptive_avg_pool2d(x, 0)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_batch_norm2d_trains_and_evaluates_like_torch(layout):
    ours, theirs = nn.BatchNorm2d(3, momentum=0.3).double(), torch.nn.BatchNorm2d(
        3, momentum=0.3).double()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for p, tp in zip(ours.parameters(), theirs.parameters()):
            p.data[...] = rng.standard_normal(p.shape)
            tp.copy_(torch.from_numpy(p.data))
    for _ in range(2):
        x = rng.standard_normal((4, 3, 5, 6)) * 2 + 1
        _check(ours, theirs, x, layout, second=False, rtol=1e-9)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        np.testing.assert_allclose(getattr(ours, name).data, getattr(theirs, name).numpy(),
                                   rtol=1e-10, err_msg=name)
    ours.eval()
    theirs.eval()
    _check(ours, theirs, rng.standard_normal((2, 3, 4, 4)), layout, rtol=1e-9)
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected input \(N, 3, H, W\)"):
        ours(cr.zeros(2, 3, 4))


def test_batch_norm2d_second_order_and_finite_differences():
    x = np.random.default_rng(0).standard_normal((3, 2, 3, 4))
    w, b = np.array([1.5, -0.5]), np.array([0.1, 0.2])
    check_against_finite_differences(
        lambda t, wt, bt: F.batch_norm(t, None, None, wt, bt, training=True), [x, w, b])
    xt = cr.tensor(x, requires_grad=True)
    (g,) = cr.gradients((F.batch_norm(xt, None, None, cr.tensor(w), cr.tensor(b),
                                      training=True) ** 3).sum(), [xt], create_graph=True)
    (h,) = cr.gradients((g * g).sum(), [xt])
    tx = torch.tensor(x, requires_grad=True)
    (tg,) = torch.autograd.grad((TF.batch_norm(tx, None, None, torch.tensor(w), torch.tensor(b),
                                               training=True) ** 3).sum(), [tx],
                                create_graph=True)
    (th,) = torch.autograd.grad((tg * tg).sum(), [tx])
    np.testing.assert_allclose(h.data, th.numpy(), rtol=1e-8, atol=1e-10)
