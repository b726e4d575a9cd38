"""Convolutions (`functional.conv2d`, `conv1d`, `nn.Conv2d`, `nn.Conv1d`) against PyTorch.

The fast path has two memory layouts (batch innermost or not, chosen by `functional._batch_last`)
and two column layouts (flat at stride 1, strided otherwise): every case runs in both memory
layouts, checking the value, the gradients of input, weight and bias against PyTorch (float64),
and a Hessian-vector product (create_graph=True) against PyTorch's.
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


@pytest.fixture(params=[False, True], ids=["channels-first", "batch-last"])
def layout(request, monkeypatch):
    monkeypatch.setattr(F, "_batch_last", lambda n, ow: request.param)
    return request.param


CONV2D = [  # id, input shape, weight shape, bias?, keyword arguments
    ("plain", (2, 3, 6, 5), (4, 3, 3, 3), True, {}),
    ("pad", (3, 2, 5, 5), (3, 2, 3, 3), True, dict(padding=1)),
    ("stride-pad", (2, 2, 7, 6), (4, 2, 3, 2), True, dict(stride=2, padding=1)),
    ("rect-stride-pad", (2, 1, 5, 6), (2, 1, 3, 3), False, dict(stride=(1, 2), padding=(2, 1))),
    ("dilation", (2, 2, 7, 7), (3, 2, 3, 2), True, dict(dilation=(2, 3), padding=2)),
    ("stride-dilation", (1, 2, 9, 8), (2, 2, 2, 3), True, dict(stride=(2, 3), dilation=2)),
    ("groups", (2, 6, 5, 4), (4, 3, 3, 1), True, dict(groups=2, padding=(1, 0))),
    ("depthwise", (3, 4, 5, 5), (8, 1, 3, 3), True, dict(groups=4, padding=1, stride=2)),
    ("same-even", (2, 2, 5, 6), (3, 2, 4, 2), True, dict(padding="same")),
    ("same-dilated", (2, 2, 6, 6), (2, 2, 3, 3), False, dict(padding="same", dilation=2)),
    ("valid", (2, 2, 4, 4), (1, 2, 2, 2), True, dict(padding="valid")),
    ("1x1", (4, 3, 3, 3), (5, 3, 1, 1), True, {}),
    ("kernel-is-input", (2, 2, 3, 4), (3, 2, 3, 4), True, {}),
    ("unbatched", (2, 5, 4), (3, 2, 2, 2), True, dict(padding=1)),
]


def _inputs(xs, ws, bias, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(xs), rng.standard_normal(ws)]
    if bias:
        arrays.append(rng.standard_normal(ws[0]))
    return arrays


def _grads(fn, arrays, w, lib):
    if lib == "torch":
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        out = fn(*ts)
        (out * torch.from_numpy(w)).sum().backward()
        return out.detach().numpy(), [t.grad.numpy() for t in ts]
    ts = [cr.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    (out * cr.tensor(w)).sum().backward()
    return out.data, [t.grad.data for t in ts]


def _hvp(fn, arrays, w, v, lib):
    """d/d(inputs) <v, d<fn(inputs), w>/d(inputs)>: runs every backward rule's own rule."""
    if lib == "torch":
        ts = [torch.tensor(a, requires_grad=True) for a in arrays]
        gs = torch.autograd.grad((fn(*ts) * torch.from_numpy(w)).sum(), ts, create_graph=True)
        total = sum((g * torch.from_numpy(vi)).sum() for g, vi in zip(gs, v))
        hs = torch.autograd.grad(total, ts, allow_unused=True)
        return [np.zeros(a.shape) if h is None else h.numpy() for h, a in zip(hs, arrays)]
    ts = [cr.tensor(a, requires_grad=True) for a in arrays]
    gs = cr.gradients((fn(*ts) * cr.tensor(w)).sum(), ts, create_graph=True)
    total = cr.tensor(0.0)
    for g, vi in zip(gs, v):
        total = total + (g * cr.tensor(vi)).sum()
    hs = cr.gradients(total, ts)
    return [np.zeros(a.shape) if h is None else h.data for h, a in zip(hs, arrays)]


def _matches_torch_first_and_second_order(conv, torch_conv, case):
    """Value, gradients and a Hessian-vector product of ``conv`` equal torch's; returns
    ``ours`` for further checks."""
    _, xs, ws, bias, kwargs = case
    arrays = _inputs(xs, ws, bias)

    def ours(*a):
        return conv(*a, **kwargs) if bias else conv(a[0], a[1], **kwargs)

    def theirs(*a):
        return torch_conv(*a, **kwargs) if bias else torch_conv(a[0], a[1], **kwargs)

    rng = np.random.default_rng(1)
    w = rng.standard_normal(theirs(*[torch.tensor(a) for a in arrays]).shape)
    out, grads = _grads(ours, arrays, w, "cr")
    t_out, t_grads = _grads(theirs, arrays, w, "torch")
    np.testing.assert_allclose(out, t_out, rtol=1e-10, atol=1e-12)
    for g, tg in zip(grads, t_grads):
        np.testing.assert_allclose(g, tg, rtol=1e-10, atol=1e-12)
    v = [rng.standard_normal(a.shape) for a in arrays]
    for h, th in zip(_hvp(ours, arrays, w, v, "cr"), _hvp(theirs, arrays, w, v, "torch")):
        np.testing.assert_allclose(h, th, rtol=1e-10, atol=1e-12)
    return ours


@pytest.mark.parametrize("case", CONV2D, ids=[c[0] for c in CONV2D])
def test_conv2d_matches_torch_first_and_second_order(case, layout):
    _matches_torch_first_and_second_order(F.conv2d, TF.conv2d, case)


@pytest.mark.parametrize("case", [CONV2D[2], CONV2D[4], CONV2D[6]], ids=lambda c: c[0])
def test_conv2d_gradient_matches_finite_differences(case, layout):
    _, xs, ws, bias, kwargs = case
    check_against_finite_differences(lambda *a: F.conv2d(*a, **kwargs),
                                     _inputs(xs, ws, bias, seed=2))


CONV1D = [
    ("plain", (2, 3, 9), (4, 3, 3), True, {}),
    ("stride-pad", (2, 2, 8), (3, 2, 4), True, dict(stride=3, padding=2)),
    ("dilation-groups", (3, 4, 10), (6, 2, 3), False, dict(dilation=2, groups=2)),
    ("same", (2, 2, 7), (2, 2, 4), True, dict(padding="same")),
    ("tuple-args", (1, 2, 6), (2, 2, 2), True, dict(stride=(2,), padding=(1,), dilation=(1,))),
    ("unbatched", (2, 6), (3, 2, 3), True, dict(padding=1)),
]


@pytest.mark.parametrize("case", CONV1D, ids=[c[0] for c in CONV1D])
def test_conv1d_matches_torch_first_and_second_order(case, layout):
    ours = _matches_torch_first_and_second_order(F.conv1d, TF.conv1d, case)
    _, xs, ws, bias, _ = case
    check_against_finite_differences(ours, _inputs(xs, ws, bias, seed=2))


def test_the_output_layout_follows_the_batch_size():
    """A large batch comes out batch innermost, (O, oh, ow, N) in memory; a small one
    channels-first, (O, N, oh, ow); both are (N, O, oh, ow) views (of rows of the padded width
    8 at stride 1), equal to PyTorch's."""
    w = np.random.default_rng(0).standard_normal((4, 2, 3, 3)).astype(np.float32)
    for n, strides in ((40, (4, 6 * 8 * 40 * 4, 8 * 40 * 4, 40 * 4)),
                       (2, (6 * 8 * 4, 2 * 6 * 8 * 4, 8 * 4, 4))):
        x = np.random.default_rng(1).standard_normal((n, 2, 6, 6)).astype(np.float32)
        out = F.conv2d(cr.tensor(x), cr.tensor(w), padding=1)
        assert out.shape == (n, 4, 6, 6) and out.data.strides == strides
        expected = TF.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
        np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-5)


def test_float32_stays_float32_and_plain_arrays_give_arrays():
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((33, 2, 5, 5), (3, 2, 3, 3),
                                                                    (3,)))
    xt, wt, bt = (cr.tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(xt, wt, bt, padding=1)
    assert out.dtype == np.float32
    out.sum().backward()
    assert {t.grad.dtype for t in (xt, wt, bt)} == {np.dtype(np.float32)}
    plain = F.conv2d(x, w, b, padding=1)
    assert isinstance(plain, np.ndarray) and plain.dtype == np.float32
    np.testing.assert_array_equal(plain, out.data)


def test_the_graph_saves_the_columns_and_counts_them():
    """The product's node keeps the (C kh kw, N L) columns (for the weight gradient) and the
    weight; nothing else of the convolution is kept, and the memory report counts them."""
    x = cr.tensor(np.ones((2, 3, 4, 4), np.float32))
    conv = nn.Conv2d(3, 5, 3, padding=1)
    report = memory(conv(x).sum())
    saved = {n.name: n for n in report.nodes if n.nbytes}
    assert set(saved) == {"ConvMatmulBackward"}
    cols = 3 * 9 * 2 * 4 * (4 + 2)  # stride 1: rows of the padded width
    assert saved["ConvMatmulBackward"].nbytes == cols * 4
    assert report.saved_bytes == cols * 4


def test_a_cnn_step_is_bit_identical_between_runs():
    def run():
        cr.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(6 * 4, 3))
        opt = cr.optim.SGD(model.parameters(), lr=0.1)
        x = np.random.default_rng(0).standard_normal((40, 1, 8, 8)).astype(np.float32)
        y = np.arange(40) % 3
        for _ in range(3):
            opt.zero_grad()
            loss = F.cross_entropy(model(cr.tensor(x)), y)
            loss.backward()
            opt.step()
        return [p.data.copy() for p in model.parameters()] + [loss.data]

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_cnn_layers_match_torch_on_a_batch_large_enough_for_batch_last():
    cr.manual_seed(0)
    ours = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 3, 3, padding=1, stride=2), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)).double()
    t = torch.nn
    theirs = t.Sequential(t.Conv2d(2, 4, 3, padding=1), t.ReLU(), t.MaxPool2d(2),
                          t.Conv2d(4, 3, 3, padding=1, stride=2), t.ReLU(),
                          t.AdaptiveAvgPool2d(1), t.Flatten(), t.Linear(3, 2)).double()
    with torch.no_grad():
        for p, tp in zip(ours.parameters(), theirs.parameters()):
            tp.copy_(torch.from_numpy(p.data))
    x = np.random.default_rng(0).standard_normal((48, 2, 12, 10))
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, tout = ours(xc), theirs(xt)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_allclose(xc.grad.data, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    for p, tp in zip(ours.parameters(), theirs.parameters()):
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls,tcls,args,kwargs,shape", [
    (nn.Conv2d, torch.nn.Conv2d, (4, 6, (3, 2)), dict(stride=2, padding=1, dilation=(1, 2),
                                                      groups=2), (3, 4, 7, 8)),
    (nn.Conv2d, torch.nn.Conv2d, (2, 3, 3), dict(padding="same", bias=False), (2, 2, 5, 5)),
    (nn.Conv1d, torch.nn.Conv1d, (3, 4, 3), dict(stride=2, padding=1), (2, 3, 9)),
    (nn.Conv1d, torch.nn.Conv1d, (4, 4, 5), dict(groups=4, padding="same", dilation=2),
     (2, 4, 11)),
])
def test_conv_layers_match_torch(cls, tcls, args, kwargs, shape):
    ours, theirs = cls(*args, **kwargs), tcls(*args, **kwargs)
    assert ours.weight.shape == tuple(theirs.weight.shape)
    with torch.no_grad():
        for p, tp in zip(ours.parameters(), theirs.parameters()):
            tp.copy_(torch.from_numpy(p.data))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    xc, xt = cr.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out, tout = ours(xc), theirs(xt)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=2e-5, atol=2e-5)
    (out * out).sum().backward()
    (tout * tout).sum().backward()
    np.testing.assert_allclose(xc.grad.data, xt.grad.numpy(), rtol=1e-4, atol=1e-4)
    for p, tp in zip(ours.parameters(), theirs.parameters()):
        assert p.grad.dtype == np.float32
        np.testing.assert_allclose(p.grad.data, tp.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_conv_layer_init_bounds_and_repr_follow_pytorch():
    cr.manual_seed(0)
    conv = nn.Conv2d(8, 64, 3, groups=2)
    bound = 1 / np.sqrt(4 * 9)  # fan_in = in_channels / groups * kernel
    for p in (conv.weight, conv.bias):
        assert 0.9 * bound < np.abs(p.data).max() <= bound
    assert conv.weight.shape == (64, 4, 3, 3)
    assert repr(conv) == "Conv2d(8, 64, kernel_size=(3, 3), stride=(1, 1), groups=2)"
    assert repr(nn.Conv1d(2, 3, 5, padding=2, dilation=2, bias=False)) == (
        "Conv1d(2, 3, kernel_size=(5,), stride=(1,), padding=(2,), dilation=(2,), bias=False)")
    assert nn.Conv1d(2, 3, 5).weight.shape == (3, 2, 5)


def test_conv_layer_converts_integers_and_refuses_another_float_dtype():
    conv = nn.Conv2d(1, 2, 2)
    assert conv(cr.tensor(np.ones((1, 1, 3, 3), np.int64))).dtype == np.float32
    with pytest.raises(TypeError, match="input has dtype float64 but the layer's weight has "
                                        "dtype float32"):
        conv(cr.tensor(np.ones((1, 1, 3, 3))))


def test_conv_errors_name_the_problem():
    x = cr.zeros(1, 4, 5, 5)
    with pytest.raises(ValueError, match="conv2d: input has 4 channels .* expects 6"):
        F.conv2d(x, cr.zeros(2, 3, 3, 3), groups=2)
    with pytest.raises(ValueError, match="groups must be positive and divide the 3 output"):
        F.conv2d(x, cr.zeros(3, 2, 3, 3), groups=2)
    with pytest.raises(ValueError, match=r"kernel 3x3 \(dilated: 7x7\) is larger than the "
                                         r"\(padded\) input 5x5"):
        F.conv2d(x, cr.zeros(1, 4, 3, 3), dilation=3)
    with pytest.raises(ValueError, match="padding='same' is not supported for strided"):
        F.conv2d(x, cr.zeros(1, 4, 3, 3), stride=2, padding="same")
    with pytest.raises(ValueError, match="padding must be an int, a pair, 'valid' or 'same'"):
        F.conv2d(x, cr.zeros(1, 4, 3, 3), padding="full")
    with pytest.raises(ValueError, match="stride and dilation must be positive"):
        F.conv2d(x, cr.zeros(1, 4, 3, 3), stride=0)
    with pytest.raises(ValueError, match=r"bias of shape \(2,\) for 1 output channels"):
        F.conv2d(x, cr.zeros(1, 4, 3, 3), cr.zeros(2))
    with pytest.raises(ValueError, match=r"expected input \(N, C, H, W\) or \(C, H, W\)"):
        F.conv2d(cr.zeros(5, 5), cr.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match=r"conv1d: expected weight \(O, C, k\)"):
        F.conv1d(cr.zeros(1, 2, 5), cr.zeros(1, 2, 3, 3))
    with pytest.raises(ValueError, match="groups=2 must divide in_channels=3"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="only padding_mode='zeros'"):
        nn.Conv2d(3, 4, 3, padding_mode="reflect")
