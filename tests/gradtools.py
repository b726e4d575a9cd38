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


# --- second order: Hessian-vector products of sum(f(inputs) * w) --------------------------------
def hvp_ours(fn, arrays, wrt, w, v):
    """Second derivatives of ``sum(fn(*inputs) * w)`` through chainrule's ``create_graph``: the
    gradient of ``sum_i <d/dx_i, v_i>`` with respect to each input in ``wrt`` and to ``w``
    (float64 arrays, zeros where nothing flows)."""
    tensors = [cr.tensor(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    wt = cr.tensor(w, requires_grad=True)
    loss = (fn(*tensors) * wt).sum()
    targets = [tensors[i] for i in wrt]
    grads = cr.gradients(loss, targets, create_graph=True)
    total = cr.tensor(0.0, dtype=np.float64)
    for g, vi in zip(grads, v):
        if g is not None:
            total = total + (g * vi).sum()
    hv = cr.gradients(total, targets + [wt]) if total.requires_grad else [None] * (len(wrt) + 1)
    return [np.zeros(t.shape) if h is None else h.data for h, t in zip(hv, targets + [wt])]


def hvp_torch(fn, arrays, wrt, w, v):
    """The same second derivatives as ``hvp_ours``, from PyTorch (``fn`` on torch tensors)."""
    tensors = [to_torch(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    wt = to_torch(w, requires_grad=True)
    loss = (fn(*tensors) * wt).sum()
    targets = [tensors[i] for i in wrt]
    grads = torch.autograd.grad(loss, targets, create_graph=True, allow_unused=True)
    total = sum((g * to_torch(vi)).sum() for g, vi in zip(grads, v) if g is not None)
    if not isinstance(total, torch.Tensor) or not total.requires_grad:
        return [np.zeros(t.shape) for t in targets + [wt]]
    hv = torch.autograd.grad(total, targets + [wt], allow_unused=True)
    return [np.zeros(t.shape) if h is None else h.numpy(force=True)
            for h, t in zip(hv, targets + [wt])]


def hvp_finite_differences(fn, arrays, wrt, w, v, eps=1e-5):
    """``H v`` for the inputs in ``wrt`` as central differences of chainrule's first-order
    gradient: (grad(x + eps v) - grad(x - eps v)) / (2 eps)."""
    def grad_at(step):
        moved = [a + step * v[wrt.index(i)] if i in wrt else a for i, a in enumerate(arrays)]
        tensors = [cr.tensor(a, requires_grad=i in wrt) for i, a in enumerate(moved)]
        grads = cr.gradients((fn(*tensors) * cr.tensor(w)).sum(), [tensors[i] for i in wrt])
        return [np.zeros(moved[i].shape) if g is None else np.broadcast_to(g.data, moved[i].shape)
                for g, i in zip(grads, wrt)]

    return [(a - b) / (2 * eps) for a, b in zip(grad_at(eps), grad_at(-eps))]


def check_second_order(ours, theirs, arrays, wrt, v=None, what="", fd=True, seed=4):
    """Second order of ``sum(ours(*x) * w)`` for a random ``w`` and direction ``v``: chainrule
    against PyTorch (``theirs``) for the inputs and ``w``, and (``fd``) against finite
    differences of the gradient."""
    wrt = tuple(wrt)
    with cr.no_grad():
        out = ours(*[cr.tensor(a) for a in arrays])
    w = np.random.default_rng(seed).standard_normal(out.shape)
    if v is None:
        rng = np.random.default_rng(3)
        v = [rng.standard_normal(arrays[i].shape) for i in wrt]
    mine = hvp_ours(ours, arrays, wrt, w, v)
    if theirs is not None:
        for i, a, b in zip(list(wrt) + ["w"], mine, hvp_torch(theirs, arrays, wrt, w, v)):
            assert_close(a, b, rtol=1e-6, atol=1e-8, what=f"{what}: second derivative, {i}")
    if fd:
        numeric = hvp_finite_differences(ours, arrays, wrt, w, v)
        for i, a, b in zip(wrt, mine, numeric):
            assert_close(a, b, rtol=1e-4, atol=1e-5, what=f"{what}: H v of input {i} vs fd")


# --- the case harness of the table-module tests (elementwise, contractions, reductions) --------
# A case has ``ours`` (chainrule tensors -> tensor) and ``theirs`` (torch tensors -> tensor).
def case_ours(case, arrays, wrt, dtype=np.float64):
    """``(tensors, case.ours(*tensors))``, the inputs in ``wrt`` requiring grad."""
    tensors = [cr.tensor(np.asarray(a, dtype), requires_grad=i in wrt)
               for i, a in enumerate(arrays)]
    return tensors, case.ours(*tensors)


def case_weights(shape, dtype=np.float64):
    """The fixed random weights ``w`` of the scalar ``sum(out * w)`` the cases differentiate."""
    return np.random.default_rng(1).standard_normal(shape).astype(dtype)


def case_torch_grads(case, arrays, wrt, w):
    """PyTorch's ``(value, [d sum(out * w) / d input for input in wrt])`` as arrays."""
    tensors = [to_torch(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    out = case.theirs(*tensors)
    grads = torch.autograd.grad((out * to_torch(w)).sum(), [tensors[i] for i in wrt],
                                allow_unused=True)
    return out.detach().numpy(), [np.zeros(arrays[i].shape) if g is None else g.numpy()
                                  for i, g in zip(wrt, grads)]


def case_scalar_fn(case, w):
    """``sum(case.ours(*arrays) * w)`` as a function of plain arrays, for finite differences."""
    def f(*arrays):
        with cr.no_grad():
            out = case.ours(*[cr.tensor(a) for a in arrays])
        return float((out.data * w).sum())
    return f


def grad_or_zeros(g, shape):
    return np.zeros(shape) if g is None else g.data


def check_case_first_order(case):
    """Value and first-order gradients of ``sum(case.ours(*x) * w)`` in float64: a Tensor of
    PyTorch's shape and value, gradients of the inputs' shapes against PyTorch and (unless
    ``case.fd`` is False) against central differences."""
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    tensors, out = case_ours(case, arrays, wrt)
    assert isinstance(out, cr.Tensor) and out.dtype == np.float64
    w = case_weights(out.shape)
    grads = cr.gradients((out * w).sum(), [tensors[i] for i in wrt])
    expected, tgrads = case_torch_grads(case, arrays, wrt, w)
    assert out.shape == expected.shape, f"{case.id}: shape {out.shape} vs {expected.shape}"
    assert_close(out, expected, what=f"{case.id}: value")
    for i, g, tg in zip(wrt, grads, tgrads):
        g = grad_or_zeros(g, arrays[i].shape)
        assert g.shape == arrays[i].shape and g.dtype == np.float64
        assert_close(g, tg, rtol=1e-7, atol=1e-9, what=f"{case.id}: gradient {i} vs torch")
    if getattr(case, "fd", True):
        numeric = central_difference(case_scalar_fn(case, w), arrays, wrt)
        for i, g, ng in zip(wrt, grads, numeric):
            assert_close(grad_or_zeros(g, arrays[i].shape), ng, rtol=1e-5, atol=1e-6,
                         what=f"{case.id}: gradient {i} vs finite differences")
