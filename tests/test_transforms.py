"""cr.grad, value_and_grad, vjp, jacobian, hessian and gradients, against torch.autograd.

Forward mode (jvp, linearize, jacfwd), hvp and make_ggnvp are in test_forward_mode.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd.functional import hessian as torch_hessian
from torch.autograd.functional import jacobian as torch_jacobian

import chainrule as cr

RNG = np.random.default_rng(0)
A = RNG.standard_normal((3, 4))
V = RNG.standard_normal(4)


def _both(fn_cr, fn_torch):
    return fn_cr, fn_torch


SCALAR_FUNCTIONS = {
    "quadratic_form": _both(lambda x: (x @ cr.tensor(A.T @ A) @ x) * 0.5,
                            lambda x: (x @ torch.from_numpy(A.T @ A) @ x) * 0.5),
    "logsumexp_tanh": _both(lambda x: cr.logsumexp(cr.tanh(x) * 2),
                            lambda x: torch.logsumexp(torch.tanh(x) * 2, 0)),
    "rosenbrock": _both(lambda x: (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum(),
                        lambda x: (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()),
    "softmax_entropy": _both(lambda x: -(cr.softmax(x) * cr.log_softmax(x)).sum(),
                             lambda x: -(torch.softmax(x, 0) * torch.log_softmax(x, 0)).sum()),
    "gelu_sigmoid_mix": _both(lambda x: (cr.gelu(x) * cr.sigmoid(x)).sum()
                              + cr.softplus(x).mean(),
                              lambda x: (torch.nn.functional.gelu(x) * torch.sigmoid(x)).sum()
                              + torch.nn.functional.softplus(x).mean()),
}


@pytest.mark.parametrize("name", list(SCALAR_FUNCTIONS))
def test_grad_matches_torch(name):
    f, tf = SCALAR_FUNCTIONS[name]
    got = cr.grad(f)(V)
    tx = torch.tensor(V, requires_grad=True)
    (want,) = torch.autograd.grad(tf(tx), tx)
    assert isinstance(got, cr.Tensor) and got.shape == V.shape
    np.testing.assert_allclose(got.data, want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(SCALAR_FUNCTIONS))
def test_hessian_matches_torch(name):
    f, tf = SCALAR_FUNCTIONS[name]
    got = cr.hessian(f)(V)
    want = torch_hessian(tf, torch.from_numpy(V))
    assert got.shape == (4, 4)
    np.testing.assert_allclose(got.data, want.numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(got.data, got.data.T, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", list(SCALAR_FUNCTIONS))
def test_grad_of_grad_sum_matches_torch(name):
    f, tf = SCALAR_FUNCTIONS[name]
    got = cr.grad(lambda x: cr.grad(f)(x).sum())(V)
    tx = torch.tensor(V, requires_grad=True)
    (g,) = torch.autograd.grad(tf(tx), tx, create_graph=True)
    (want,) = torch.autograd.grad(g.sum(), tx)
    np.testing.assert_allclose(got.data, want.numpy(), rtol=1e-9, atol=1e-10)


VECTOR_FUNCTIONS = {
    "matvec_tanh": _both(lambda x: cr.tanh(cr.tensor(A) @ x), lambda x: torch.tanh(
        torch.from_numpy(A) @ x)),
    "softmax": _both(cr.softmax, lambda x: torch.softmax(x, 0)),
    "outer": _both(lambda x: cr.expand_dims(x, 1) * x, lambda x: x.unsqueeze(1) * x),
    "cumulative": _both(lambda x: cr.stack([x[:1].sum(), x[:3].sum(), (x * x).sum()]),
                        lambda x: torch.stack([x[:1].sum(), x[:3].sum(), (x * x).sum()])),
}


@pytest.mark.parametrize("name", list(VECTOR_FUNCTIONS))
def test_jacobian_matches_torch(name):
    f, tf = VECTOR_FUNCTIONS[name]
    got = cr.jacobian(f)(V)
    want = torch_jacobian(tf, torch.from_numpy(V))
    assert got.shape == tuple(want.shape)
    np.testing.assert_allclose(got.data, want.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(VECTOR_FUNCTIONS))
def test_vjp_is_v_times_jacobian(name):
    """Seed 001's view: a reverse pass computes v^T J without forming J."""
    f, _ = VECTOR_FUNCTIONS[name]
    out, vjp_fn = cr.vjp(f, V)
    v = RNG.standard_normal(out.shape)
    (got,) = vjp_fn(v)
    jac = cr.jacobian(f)(V).data.reshape(out.size, V.size)
    np.testing.assert_allclose(got.data, v.reshape(-1) @ jac, rtol=1e-10, atol=1e-12)
    (again,) = vjp_fn(v)  # the graph is kept: vjp_fn can be called again
    np.testing.assert_allclose(again.data, got.data)


def test_jacobian_of_multiple_argnums_matches_torch():
    w = RNG.standard_normal((2, 4))

    def f(x, m):
        return cr.tanh(m @ x)

    jx, jm = cr.jacobian(f, argnums=(0, 1))(V, w)
    tjx, tjm = torch_jacobian(lambda x, m: torch.tanh(m @ x), (torch.from_numpy(V),
                                                              torch.from_numpy(w)))
    assert jx.shape == (2, 4) and jm.shape == (2, 2, 4)
    np.testing.assert_allclose(jx.data, tjx.numpy(), rtol=1e-10)
    np.testing.assert_allclose(jm.data, tjm.numpy(), rtol=1e-10)


def test_value_and_grad_and_argnums():
    def f(x, y):
        return (x * y * y).sum()

    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    value, (gx, gy) = cr.value_and_grad(f, argnums=(0, 1))(x, y)
    assert value.item() == pytest.approx(1 * 9 + 2 * 16)
    assert not value.requires_grad
    np.testing.assert_allclose(gx.data, y * y)
    np.testing.assert_allclose(gy.data, 2 * x * y)
    np.testing.assert_allclose(cr.grad(f, argnums=1)(x, y).data, 2 * x * y)
    np.testing.assert_allclose(cr.grad(f, argnums=-1)(x, y).data, 2 * x * y)


def test_grad_keeps_float32_and_does_not_touch_grad():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    g = cr.grad(lambda t: (t * t).sum())(x)
    assert g.dtype == np.float32
    assert x.grad is None
    np.testing.assert_allclose(g.data, [2.0, 4.0])


def test_grad_of_function_that_ignores_its_input_is_zero():
    with pytest.warns(UserWarning, match="does not depend on argument 0"):
        g = cr.grad(lambda x: cr.tensor(3.0))(np.array([1.0, 2.0]))
    np.testing.assert_array_equal(g.data, [0.0, 0.0])


def test_grad_requires_a_scalar_output():
    with pytest.raises(TypeError, match="grad: f must return a one-element Tensor.*\\(2,\\)"):
        cr.grad(lambda x: x * 2)(np.array([1.0, 2.0]))


def test_grad_refuses_integer_arguments():
    with pytest.raises(TypeError, match="grad: argument 0 has dtype int64"):
        cr.grad(lambda x: x.sum())(np.array([1, 2]))


def test_bad_argnums_is_a_clear_error():
    with pytest.raises(ValueError, match="argnums 3"):
        cr.grad(lambda x: x.sum(), argnums=3)(np.ones(2))


def test_gradients_like_torch_autograd_grad():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    unused = cr.tensor([5.0], requires_grad=True)
    y = (x ** 2).sum()
    gx, gu = cr.gradients(y, [x, unused])
    np.testing.assert_array_equal(gx.data, [2.0, 4.0])
    assert gu is None
    assert x.grad is None


def test_gradients_with_grad_outputs_and_create_graph():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x ** 3
    (g,) = cr.gradients(y, x, grad_outputs=cr.tensor([1.0, 1.0]), create_graph=True)
    assert g.requires_grad
    (h,) = cr.gradients(g.sum(), x)
    np.testing.assert_allclose(h.data, 6 * x.data)


def test_gradients_rejects_inputs_without_grad():
    with pytest.raises(RuntimeError, match="gradients: input 0"):
        cr.gradients(cr.tensor([1.0], requires_grad=True).sum(), [cr.tensor([1.0])])


def test_gradients_through_an_intermediate_input():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    y = (h * h).sum()
    (gh,) = cr.gradients(y, [h])
    np.testing.assert_allclose(gh.data, 2 * h.data)


def test_transforms_nest_with_closures_over_outer_variables():
    # d/dy [ d/dx (x^2 y^3) at x=2 ] = d/dy [4 y^3] = 12 y^2
    def inner(y):
        return cr.grad(lambda x: (x * x * y ** 3).sum())(np.array([2.0])).sum()

    np.testing.assert_allclose(cr.grad(inner)(np.array([1.5])).data, [12 * 1.5 ** 2])


def test_vjp_and_jacobian_inside_grad_see_closed_over_variables():
    # Regression: an inner transform whose f closed over an outer variable returned a gradient
    # cut off from it, so the outer derivative came out as zero.
    def via_vjp(y):
        _, fn = cr.vjp(lambda x: x * y * y, np.array([2.0]))
        return fn(np.array([1.0]))[0].sum()  # d/dx (x y^2) = y^2

    def via_jacobian(y):
        return cr.jacobian(lambda x: x * y * y)(np.array([2.0])).sum()

    for f in (via_vjp, via_jacobian):
        np.testing.assert_allclose(cr.grad(f)(np.array([3.0])).data, [6.0])


def test_grad_through_closed_over_parameter_matches_torch():
    w_np = RNG.standard_normal(4)
    w, tw = cr.tensor(w_np, requires_grad=True), torch.tensor(w_np, requires_grad=True)
    g = cr.grad(lambda x: cr.tanh((x * w).sum()))(V)
    assert g.requires_grad  # still connected to w
    (g * g).sum().backward()
    tx = torch.tensor(V, requires_grad=True)
    (tg,) = torch.autograd.grad(torch.tanh((tx * tw).sum()), tx, create_graph=True)
    (tg * tg).sum().backward()
    np.testing.assert_allclose(w.grad.data, tw.grad.numpy(), rtol=1e-10)


def test_plain_grad_result_is_not_recorded():
    g = cr.grad(lambda x: (x * x).sum())(V)
    assert g.grad_fn is None and not g.requires_grad
