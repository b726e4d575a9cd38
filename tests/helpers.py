"""Shared test utilities: float64 central finite differences and comparison against PyTorch.

Test files import it as ``from helpers import ...`` (conftest puts this folder on sys.path).
"""

from __future__ import annotations

import numpy as np
import torch

import chainrule as cr
from chainrule.autograd import Node


def random_inputs(shapes, domain="any", seed=0, dtype=np.float64):
    """One array per shape, drawn from a domain where every tested function is smooth.

    ``domain``: "any" (normal), "pos" (in [0.5, 2], for log/sqrt/power bases) or "unit"
    (in [0.05, 0.95], for probabilities).
    """
    rng = np.random.default_rng(seed)
    out = []
    for shape in shapes:
        if domain == "pos":
            a = rng.uniform(0.5, 2.0, size=shape)
        elif domain == "unit":
            a = rng.uniform(0.05, 0.95, size=shape)
        else:
            a = rng.standard_normal(size=shape)
        out.append(np.asarray(a, dtype=dtype))
    return out


def weights_like(out_shape, seed=1, dtype=np.float64):
    """Random cotangent weights: the loss ``sum(out * w)`` makes every output element matter."""
    return np.asarray(np.random.default_rng(seed).standard_normal(size=out_shape), dtype=dtype)


def weighted_loss(out, w):
    """``sum(out * w)`` for a chainrule Tensor or a torch tensor."""
    if isinstance(out, torch.Tensor):
        return (out * torch.from_numpy(np.asarray(w))).sum()
    return (out * w).sum()


def chainrule_value_and_grads(fn, arrays, w=None):
    """Run ``fn`` on Tensors made from ``arrays``; returns (output array, [grad arrays]).

    The gradient is that of ``sum(fn(...) * w)`` (``w`` defaults to random weights).
    """
    xs = [cr.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*xs)
    if w is None:
        w = weights_like(out.shape)
    weighted_loss(out, w).backward()
    grads = [np.zeros_like(a) if x.grad is None else x.grad.data for a, x in zip(arrays, xs)]
    return out.data, grads


def torch_value_and_grads(fn, arrays, w):
    """The same as `chainrule_value_and_grads`, computed by PyTorch."""
    xs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*xs)
    weighted_loss(out, w).backward()
    grads = [np.zeros_like(a) if x.grad is None else x.grad.numpy() for a, x in zip(arrays, xs)]
    return out.detach().numpy(), grads


def numerical_grads(fn, arrays, w, eps=1e-6):
    """Central finite differences of ``sum(fn(*arrays) * w)`` with respect to every array.

    ``fn`` is called on Tensors without recording; everything is float64.
    """
    arrays = [np.array(a, dtype=np.float64, copy=True) for a in arrays]

    def loss():
        with cr.no_grad():
            out = fn(*[cr.tensor(a) for a in arrays])
        return float(np.sum(np.asarray(out.data, np.float64) * w))

    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + eps
            up = loss()
            flat[i] = keep - eps
            down = loss()
            flat[i] = keep
            gflat[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def check_against_finite_differences(fn, arrays, rtol=1e-5, atol=1e-6):
    """Assert chainrule's gradient of ``sum(fn(...) * w)`` equals central differences."""
    out, _ = chainrule_value_and_grads(fn, arrays)
    w = weights_like(np.shape(out))
    _, grads = chainrule_value_and_grads(fn, arrays, w)
    expected = numerical_grads(fn, arrays, w)
    for i, (g, e) in enumerate(zip(grads, expected)):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i} vs finite differences")


def check_against_torch(fn, torch_fn, arrays, rtol=1e-7, atol=1e-9):
    """Assert value and gradient of ``sum(fn(...) * w)`` equal PyTorch's (float64)."""
    out, _ = chainrule_value_and_grads(fn, arrays)
    w = weights_like(np.shape(out))
    out, grads = chainrule_value_and_grads(fn, arrays, w)
    t_out, t_grads = torch_value_and_grads(torch_fn, arrays, w)
    assert out.shape == t_out.shape, f"shape {out.shape} != torch {t_out.shape}"
    np.testing.assert_allclose(out, t_out, rtol=rtol, atol=atol, err_msg="value vs torch")
    for i, (g, e) in enumerate(zip(grads, t_grads)):
        assert g.shape == e.shape, f"gradient {i} shape {g.shape} != torch {e.shape}"
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol,
                                   err_msg=f"gradient of input {i} vs torch")


def graph_ops(t):
    """The set of operations (table rows, Function rows) in the graph that produced ``t``."""
    seen, ops_, stack = set(), set(), [t.grad_fn]
    while stack:
        node = stack.pop()
        if type(node) is not Node or id(node) in seen:
            continue
        seen.add(id(node))
        ops_.add(node.op)
        stack.extend(node.parents)
    return ops_


def compiled_step_loss():
    """The loss a compiled training step (one Linear, SGD) returns after a trace and two
    replays, with its model: what the drawing and the page show for a spent compiled graph."""
    model = cr.nn.Sequential(cr.nn.Linear(4, 3))
    opt = cr.optim.SGD(model.parameters(), lr=0.1)

    @cr.compile
    def step(x, y):
        opt.zero_grad()
        loss = cr.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):  # a trace, the checked replay, a replay
        loss = step(np.ones((2, 4), np.float32), np.array([0, 1]))
    return loss, model
