"""Random expression graphs, built identically in chainrule and PyTorch (float64): fan-out,
broadcasting, unary and binary operations and reductions; the value and every leaf gradient
must agree."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr

SHAPES = [(3, 4), (4,), (3, 1), (1, 4), ()]

UNARY = {
    "tanh": (cr.tanh, torch.tanh),
    "sin": (cr.sin, torch.sin),
    "sigmoid": (cr.sigmoid, torch.sigmoid),
    "square": (lambda a: a * a, lambda a: a * a),
    "neg": (lambda a: -a, lambda a: -a),
    "softplus": (cr.softplus, torch.nn.functional.softplus),
    "exp_tanh": (lambda a: cr.exp(cr.tanh(a)), lambda a: torch.exp(torch.tanh(a))),
    "sqrt1p": (lambda a: cr.sqrt(1 + a * a), lambda a: torch.sqrt(1 + a * a)),
}
BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / (1 + b * b), lambda a, b: a / (1 + b * b)),
    "maximum": (cr.maximum, torch.maximum),
}


def _reduce(kind, axis):
    def ours(a):
        if a.ndim == 0:
            return a * 1.0
        ax = axis % a.ndim
        return getattr(cr, kind)(a, axis=ax, keepdims=True)

    def theirs(a):
        if a.ndim == 0:
            return a * 1.0
        ax = axis % a.ndim
        fn = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax}[kind]
        return fn(a, dim=ax, keepdim=True)

    return ours, theirs


step = st.one_of(
    st.tuples(st.just("unary"), st.sampled_from(sorted(UNARY)), st.integers(0, 100)),
    st.tuples(st.just("binary"), st.sampled_from(sorted(BINARY)), st.integers(0, 100),
              st.integers(0, 100)),
    st.tuples(st.just("reduce"), st.sampled_from(["sum", "mean", "max"]), st.integers(0, 100),
              st.integers(0, 1)),
)


@settings(max_examples=60, deadline=None)
@given(leaf_shapes=st.lists(st.sampled_from(SHAPES), min_size=1, max_size=4),
       steps=st.lists(step, min_size=1, max_size=12), seed=st.integers(0, 2 ** 16))
def test_random_graph_matches_torch(leaf_shapes, steps, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s) for s in leaf_shapes]
    ours = [cr.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    vals_o, vals_t = list(ours), list(theirs)
    for st_ in steps:
        kind, name = st_[0], st_[1]
        i = st_[2] % len(vals_o)  # any earlier value: values fan out to several consumers
        if kind == "unary":
            fo, ft = UNARY[name]
            vals_o.append(fo(vals_o[i]))
            vals_t.append(ft(vals_t[i]))
        elif kind == "binary":
            j = st_[3] % len(vals_o)
            fo, ft = BINARY[name]
            vals_o.append(fo(vals_o[i], vals_o[j]))
            vals_t.append(ft(vals_t[i], vals_t[j]))
        else:
            fo, ft = _reduce(name, st_[3])
            vals_o.append(fo(vals_o[i]))
            vals_t.append(ft(vals_t[i]))
    # every value reaches the loss, each with its own random weights
    loss_o, loss_t = 0.0, 0.0
    for vo, vt in zip(vals_o, vals_t):
        w = rng.standard_normal(tuple(vo.shape))
        loss_o = loss_o + (vo * cr.tensor(w)).sum()
        loss_t = loss_t + (vt * torch.tensor(w)).sum()
    np.testing.assert_allclose(loss_o.data, loss_t.detach().numpy(), rtol=1e-10, atol=1e-10)
    for vo, vt in zip(vals_o, vals_t):
        assert tuple(vo.shape) == tuple(vt.shape)
        np.testing.assert_allclose(vo.data, vt.detach().numpy(), rtol=1e-10, atol=1e-12)
    loss_o.backward()
    loss_t.backward()
    for a, (o, t) in enumerate(zip(ours, theirs)):
        assert o.grad is not None and o.grad.shape == t.shape
        np.testing.assert_allclose(o.grad.data, t.grad.numpy(), rtol=1e-8, atol=1e-10,
                                   err_msg=f"leaf {a}")
