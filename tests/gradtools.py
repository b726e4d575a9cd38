"""Shared helpers for gradient tests: float64 central differences and PyTorch comparison."""

from __future__ import annotations

import numpy as np
import torch

import chainrule as cr


def central_difference(f, arrays, wrt=None, eps=1e-6):
    """Gradients of the scalar ``f(*arrays)`` (plain float64 arrays in, a float out) by central
    differences, one per index in ``wrt`` (all inputs by default)."""
    arrays = [np.array(a, dtype=np.float64, copy=True) for a in arrays]
    wrt = range(len(arrays)) if wrt is None else wrt
    grads = []
    for i in wrt:
        a = arrays[i]
        g = np.zeros_like(a)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for k in range(flat.size):
            old = flat[k]
            flat[k] = old + eps
            hi = float(f(*arrays))
            flat[k] = old - eps
            lo = float(f(*arrays))
            flat[k] = old
            gflat[k] = (hi - lo) / (2 * eps)
        grads.append(g)
    return grads


def to_torch(a, requires_grad=False):
    return torch.tensor(np.asarray(a), requires_grad=requires_grad)


def to_numpy(t):
    if isinstance(t, torch.Tensor):
        return t.detach().numpy()
    if isinstance(t, cr.Tensor):
        return t.data
    return np.asarray(t)


def weighted_sum_cr(out, weights):
    return (out * cr.tensor(weights)).sum()


def cr_value_and_grads(fn, arrays, wrt, dtype=np.float64, weights=None, seed=1):
    """``fn`` on chainrule tensors; returns (output, weights, grads of sum(out * weights))."""
    tensors = [cr.tensor(np.asarray(a, dtype=dtype), requires_grad=i in wrt)
               for i, a in enumerate(arrays)]
    out = fn(*tensors)
    if weights is None:
        weights = np.random.default_rng(seed).standard_normal(out.shape)
    (out * cr.tensor(np.asarray(weights, dtype=out.dtype))).sum().backward()
    return out, weights, [tensors[i].grad for i in wrt]


def torch_value_and_grads(fn, arrays, wrt, weights):
    tensors = [to_torch(np.asarray(a, np.float64), requires_grad=i in wrt)
               for i, a in enumerate(arrays)]
    out = fn(*tensors)
    (out * to_torch(weights)).sum().backward()
    return out.detach().numpy(), [tensors[i].grad for i in wrt]


def assert_close(actual, expected, rtol=1e-7, atol=1e-9, what=""):
    np.testing.assert_allclose(to_numpy(actual), to_numpy(expected), rtol=rtol, atol=atol,
                               err_msg=what)


def table_rows(module) -> dict:
    """``{name: row}`` for the differentiable rows (Primitives) defined in a table module."""
    from chainrule.autograd import Primitive

    return {name: row for name, row in vars(module).items()
            if isinstance(row, Primitive) and row.differentiable}


def ops_in_graph(t, found: set) -> None:
    """Add to ``found`` the id of every row used in the graph behind tensor ``t``."""
    from chainrule.autograd import Node
    from chainrule.tensor import Tensor

    stack = [t.grad_fn] if isinstance(t, Tensor) and t.grad_fn is not None else []
    seen = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        found.add(id(node.op))
        stack.extend(p for p in node.parents if type(p) is Node)
