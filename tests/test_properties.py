"""Hypothesis properties of the engine, compared with PyTorch in float64.

tests/test_random_graphs.py covers first-order gradients of elementwise graphs. Here: graphs that
also reshape, transpose, slice, concatenate and multiply matrices, with second derivatives
(create_graph); float32 kept through random graphs; broadcasting between random shapes; and
every reduction over random axes with and without keepdims.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import chainrule as cr

# Each step maps a (3, 4) value (or two) to a (3, 4) value, so any step can follow any other
# and every value can feed several later ones (fan-out).
UNARY = {
    "tanh": (cr.tanh, torch.tanh),
    "sin": (cr.sin, torch.sin),
    "softplus": (cr.softplus, torch.nn.functional.softplus),
    "gelu": (cr.gelu, torch.nn.functional.gelu),
    "transpose_back": (lambda a: a.T.reshape(3, 4), lambda a: a.T.reshape(3, 4)),
    "flip_rows": (lambda a: a[::-1], lambda a: a.flip(0)),
    "gather_cols": (lambda a: a[:, [1, 1, 0, 3]], lambda a: a[:, [1, 1, 0, 3]]),
    "softmax": (lambda a: cr.softmax(a, -1), lambda a: torch.softmax(a, -1)),
    "centre": (lambda a: a - a.mean(0, keepdims=True), lambda a: a - a.mean(0, keepdim=True)),
    "normalise": (lambda a: a / cr.sqrt(a.var(1, keepdims=True) + 1),
                  lambda a: a / torch.sqrt(a.var(1, keepdim=True, correction=0) + 1)),
    "row_lse": (lambda a: a - cr.logsumexp(a, 1, keepdims=True),
                lambda a: a - torch.logsumexp(a, 1, keepdim=True)),
    "square_mat": (lambda a: (a @ a.T) @ a * 0.1, lambda a: (a @ a.T) @ a * 0.1),
    "halves": (lambda a: cr.concatenate(cr.split(a, 2, axis=1)[::-1], axis=1),
               lambda a: torch.cat(torch.chunk(a, 2, 1)[::-1], 1)),
}
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / (1 + b * b), lambda a, b: a / (1 + b * b)),
    "row_bcast": (lambda a, b: a * b[:1], lambda a, b: a * b[:1]),
    "col_bcast": (lambda a, b: a + b[:, 2:3], lambda a, b: a + b[:, 2:3]),
    "matmul": (lambda a, b: a @ b.T @ a * 0.2, lambda a, b: a @ b.T @ a * 0.2),
    "stack_sum": (lambda a, b: cr.stack([a, b], -1).sum(-1), lambda a, b: torch.stack(
        [a, b], -1).sum(-1)),
    "where": (lambda a, b: cr.where(a > b, a, b * 0.5), lambda a, b: torch.where(a > b, a,
                                                                                 b * 0.5)),
}
STEP = st.tuples(st.sampled_from(sorted(UNARY) + sorted(BINARY)), st.integers(0, 50),
                 st.integers(0, 50))


def _build(steps, leaves, library):
    """Apply ``steps`` to ``leaves``; returns every value made (leaves included)."""
    values = list(leaves)
    for name, i, j in steps:
        a, b = values[i % len(values)], values[j % len(values)]
        if name in UNARY:
            fn = UNARY[name][0 if library is cr else 1]
            values.append(fn(a))
        else:
            fn = BINARY[name][0 if library is cr else 1]
            values.append(fn(a, b))
    return values


def _loss(values, weights, library):
    wrap = cr.tensor if library is cr else torch.from_numpy
    total = 0.0
    for v, w in zip(values, weights):
        total = total + (v * wrap(w)).sum()
    return total


@settings(max_examples=30, deadline=None)
@given(n_leaves=st.integers(1, 3), steps=st.lists(STEP, min_size=1, max_size=8),
       seed=st.integers(0, 2 ** 16))
def test_random_graph_first_and_second_order_match_torch(n_leaves, steps, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal((3, 4)) for _ in range(n_leaves)]
    ours = [cr.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    values_o, values_t = _build(steps, ours, cr), _build(steps, theirs, torch)
    weights = [rng.standard_normal((3, 4)) for _ in values_o]
    loss_o, loss_t = _loss(values_o, weights, cr), _loss(values_t, weights, torch)
    np.testing.assert_allclose(loss_o.data, loss_t.detach().numpy(), rtol=1e-9, atol=1e-9)

    grads_o = cr.gradients(loss_o, ours, create_graph=True)
    grads_t = torch.autograd.grad(loss_t, theirs, create_graph=True)
    for k, (g, t) in enumerate(zip(grads_o, grads_t)):
        np.testing.assert_allclose(g.data, t.detach().numpy(), rtol=1e-8, atol=1e-9,
                                   err_msg=f"first-order gradient of leaf {k}")

    # a Hessian-vector product: d/dx <grad, v>
    vs = [rng.standard_normal((3, 4)) for _ in arrays]
    hvp_o = cr.gradients(_loss(grads_o, vs, cr), ours)
    second_t = _loss(grads_t, vs, torch)
    hvp_t = (torch.autograd.grad(second_t, theirs, allow_unused=True)
             if second_t.requires_grad else [None] * len(theirs))  # the loss was linear
    for k, (h, t) in enumerate(zip(hvp_o, hvp_t)):
        h = np.zeros((3, 4)) if h is None else h.data
        t = np.zeros((3, 4)) if t is None else t.numpy()
        np.testing.assert_allclose(h, t, rtol=1e-7, atol=1e-8,
                                   err_msg=f"Hessian-vector product of leaf {k}")


@settings(max_examples=20, deadline=None)
@given(steps=st.lists(STEP, min_size=1, max_size=8), seed=st.integers(0, 2 ** 16))
def test_random_graph_keeps_float32(steps, seed):
    rng = np.random.default_rng(seed)
    leaves = [cr.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
              for _ in range(2)]
    values = _build(steps, leaves, cr)
    assert all(v.dtype == np.float32 for v in values)
    loss = sum((v.sum() for v in values), cr.tensor(0.0))
    assert loss.dtype == np.float32
    loss.backward()
    for leaf in leaves:
        assert leaf.grad is not None and leaf.grad.dtype == np.float32


@settings(max_examples=40, deadline=None)
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                 max_side=3),
       op=st.sampled_from(["add", "sub", "mul", "div", "maximum"]),
       seed=st.integers(0, 2 ** 16))
def test_broadcasting_gradients_sum_back_to_each_shape(shapes, op, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(s) for s in shapes.input_shapes)
    b = np.abs(b) + 0.5 if op == "div" else b
    fns = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
           "div": lambda x, y: x / y}
    ours = [cr.tensor(a, requires_grad=True), cr.tensor(b, requires_grad=True)]
    theirs = [torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)]
    out_o = cr.maximum(*ours) if op == "maximum" else fns[op](*ours)
    out_t = torch.maximum(*theirs) if op == "maximum" else fns[op](*theirs)
    assert out_o.shape == tuple(out_t.shape) == shapes.result_shape
    w = rng.standard_normal(shapes.result_shape)
    (out_o * w).sum().backward()
    (out_t * torch.from_numpy(w)).sum().backward()
    for o, t in zip(ours, theirs):
        assert o.grad.shape == o.shape
        np.testing.assert_allclose(o.grad.data, t.grad.numpy(), rtol=1e-10, atol=1e-12)


REDUCTIONS = {
    "sum": (cr.sum, lambda t, d, k: t.sum(d, keepdim=k)),
    "mean": (cr.mean, lambda t, d, k: t.mean(d, keepdim=k)),
    "max": (cr.max, lambda t, d, k: t.amax(d, keepdim=k)),
    "min": (cr.min, lambda t, d, k: t.amin(d, keepdim=k)),
    "var": (cr.var, lambda t, d, k: t.var(d, keepdim=k, correction=0)),
    "logsumexp": (cr.logsumexp, lambda t, d, k: torch.logsumexp(t, d, keepdim=k)),
}


@st.composite
def _shape_and_axes(draw):
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4))
    axes = draw(st.lists(st.integers(0, len(shape) - 1), min_size=1, max_size=len(shape),
                         unique=True))
    negative = draw(st.booleans())
    return shape, tuple(a - len(shape) if negative else a for a in axes)


@settings(max_examples=60, deadline=None)
@given(shape_axes=_shape_and_axes(), name=st.sampled_from(sorted(REDUCTIONS)),
       keepdims=st.booleans(), as_int=st.booleans(), seed=st.integers(0, 2 ** 16))
def test_reductions_over_random_axes_match_torch(shape_axes, name, keepdims, as_int, seed):
    shape, axes = shape_axes
    if as_int:
        axes = axes[0]
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    ours, theirs = REDUCTIONS[name]
    x, tx = cr.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    out = ours(x, axes, keepdims)
    tout = theirs(tx, axes, keepdims)
    assert out.shape == tuple(tout.shape)
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = rng.standard_normal(out.shape)
    (out * w).sum().backward()
    (tout * torch.from_numpy(w)).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-9, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 16), scale=st.floats(-3, 3))
def test_vjp_is_linear_in_the_cotangent(seed, scale):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, 4))
    _, vjp_fn = cr.vjp(lambda t: cr.tanh(t @ t.T) * 2, x)
    u, v = rng.standard_normal((3, 3)), rng.standard_normal((3, 3))
    (combined,) = vjp_fn(u + scale * v)
    (gu,) = vjp_fn(u)
    (gv,) = vjp_fn(v)
    np.testing.assert_allclose(combined.data, gu.data + scale * gv.data, rtol=1e-9, atol=1e-9)
