"""Forward mode and the remaining transforms (issue 12, section 2): jvp, linearize, jacfwd,
jacrev, hvp and make_ggnvp against torch.func / torch.autograd.functional and finite differences;
the VJP function differentiable in its cotangent; grad of a constant; complex numbers; x ** 0."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.func
from torch.autograd.functional import hessian as torch_hessian
from torch.autograd.functional import hvp as torch_hvp
from torch.autograd.functional import jacobian as torch_jacobian

import chainrule as cr

RNG = np.random.default_rng(12)
A = RNG.standard_normal((3, 4))
W = RNG.standard_normal((3, 4))
X4 = RNG.standard_normal(4)
V4 = RNG.standard_normal(4)


def _t(a):
    return torch.from_numpy(np.asarray(a))


def _np(t):
    return t.data if isinstance(t, cr.Tensor) else np.asarray(t)


# Functions of one or more arguments, with their torch twins and argument shapes. Several
# broadcast (the tangent of a broadcast argument is summed back by the transposed VJP).
CASES = {
    "matvec_tanh": (lambda x: cr.tanh(cr.tensor(A) @ x),
                    lambda x: torch.tanh(_t(A) @ x), [(4,)]),
    "softmax": (cr.softmax, lambda x: torch.softmax(x, 0), [(4,)]),
    "outer_broadcast": (lambda x, y: cr.sin(cr.expand_dims(x, 1) * y) + y * y,
                        lambda x, y: torch.sin(x.unsqueeze(1) * y) + y * y, [(3,), (4,)]),
    "affine_bias_broadcast": (lambda x, b: cr.tanh(x @ cr.tensor(W) + b) * cr.exp(b),
                              lambda x, b: torch.tanh(x @ _t(W) + b) * torch.exp(b),
                              [(2, 3), (4,)]),
    "scalar_times_matrix": (lambda s, m: cr.sigmoid(s * m).sum(axis=0) / (1 + s * s),
                            lambda s, m: torch.sigmoid(s * m).sum(0) / (1 + s * s), [(), (3, 2)]),
    "reductions": (lambda x: cr.stack([cr.logsumexp(x), (x ** 3).mean(), cr.max(x)]),
                   lambda x: torch.stack([torch.logsumexp(x, 0), (x ** 3).mean(), x.max()]),
                   [(5,)]),
}


def _args(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in shapes]


def _directional_difference(f, args, tangents, eps=1e-6):
    """(f(x + eps v) - f(x - eps v)) / (2 eps), in float64, without recording."""
    with cr.no_grad():
        plus = f(*[cr.tensor(a + eps * v) for a, v in zip(args, tangents)])
        minus = f(*[cr.tensor(a - eps * v) for a, v in zip(args, tangents)])
    return (_np(plus) - _np(minus)) / (2 * eps)


@pytest.mark.parametrize("name", list(CASES))
def test_jvp_matches_torch_func_jvp(name):
    f, tf, shapes = CASES[name]
    args, tangents = _args(shapes), _args(shapes, seed=1)
    out, tangent_out = cr.jvp(f, tuple(args), tuple(tangents))
    t_out, t_tangent = torch.func.jvp(tf, tuple(map(_t, args)), tuple(map(_t, tangents)))
    assert isinstance(tangent_out, cr.Tensor) and tangent_out.shape == tuple(t_tangent.shape)
    np.testing.assert_allclose(out.data, t_out.numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(tangent_out.data, t_tangent.numpy(), rtol=1e-10, atol=1e-12)
    assert out.grad_fn is None and tangent_out.grad_fn is None  # nothing left recorded


@pytest.mark.parametrize("name", list(CASES))
def test_jvp_matches_finite_differences(name):
    f, _, shapes = CASES[name]
    args, tangents = _args(shapes, seed=2), _args(shapes, seed=3)
    _, tangent_out = cr.jvp(f, tuple(args), tuple(tangents))
    np.testing.assert_allclose(tangent_out.data, _directional_difference(f, args, tangents),
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", list(CASES))
def test_jacfwd_matches_jacrev_and_torch(name):
    f, tf, shapes = CASES[name]
    args = _args(shapes, seed=4)
    nums = tuple(range(len(shapes)))
    fwd = cr.jacfwd(f, argnums=nums)(*args)
    rev = cr.jacrev(f, argnums=nums)(*args)
    want = torch_jacobian(tf, tuple(map(_t, args)))
    for a, b, w in zip(fwd, rev, want):
        assert a.shape == b.shape == tuple(w.shape)
        np.testing.assert_allclose(a.data, w.numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b.data, w.numpy(), rtol=1e-10, atol=1e-12)


def test_jvp_of_one_bare_primal_and_of_tuple_outputs():
    def f(x):
        return cr.sin(x) * 2, (x * x).sum()

    (y, s), (dy, ds) = cr.jvp(f, X4, V4)
    (ty, ts), (tdy, tds) = torch.func.jvp(lambda x: (torch.sin(x) * 2, (x * x).sum()),
                                          (_t(X4),), (_t(V4),))
    np.testing.assert_allclose(dy.data, tdy.numpy(), rtol=1e-12)
    np.testing.assert_allclose(ds.data, tds.numpy(), rtol=1e-12)
    np.testing.assert_allclose(s.data, ts.numpy(), rtol=1e-12)


def test_jvp_is_the_jacobian_times_the_tangent():
    f, _, _ = CASES["matvec_tanh"]
    _, jv = cr.jvp(f, X4, V4)
    np.testing.assert_allclose(jv.data, cr.jacrev(f)(X4).data @ V4, rtol=1e-12)


def test_jvp_keeps_float32_and_casts_tangents_to_the_primal_dtype():
    x = cr.tensor([0.5, 1.0])  # float32
    out, jv = cr.jvp(cr.exp, x, np.array([1.0, 2.0]))  # a float64 tangent
    assert out.dtype == jv.dtype == np.float32
    np.testing.assert_allclose(jv.data, np.exp([0.5, 1.0]) * [1, 2], rtol=1e-6)


def test_jvp_checks_tangents():
    with pytest.raises(ValueError, match=r"jvp: tangent 0 has shape \(3,\) but primal 0 has "
                                         r"shape \(4,\)"):
        cr.jvp(cr.sin, X4, np.ones(3))
    with pytest.raises(ValueError, match="jvp: 2 primals but 1 tangents"):
        cr.jvp(lambda x, y: x * y, (X4, X4), (V4,))


def test_jvp_of_a_function_that_ignores_an_input_is_zero():
    out, jv = cr.jvp(lambda x, y: cr.sin(y), (X4, X4), (V4, np.zeros(4)))
    np.testing.assert_array_equal(jv.data, np.zeros(4))
    _, jv = cr.jvp(lambda x: cr.tensor(3.0), X4, V4)
    np.testing.assert_array_equal(jv.data, 0.0)


def test_jvp_under_no_grad_still_works_and_records_nothing():
    with cr.no_grad():
        _, jv = cr.jvp(cr.tanh, X4, V4)
    np.testing.assert_allclose(jv.data, (1 - np.tanh(X4) ** 2) * V4, rtol=1e-12)
    assert jv.grad_fn is None


def test_linearize_reuses_the_graph_and_matches_jvp():
    calls = []

    def f(x, y):
        calls.append(1)
        return cr.tanh(cr.expand_dims(x, 1) * y).sum(axis=1) + x ** 3

    x, y = _args([(3,), (4,)], seed=5)
    out, f_jvp = cr.linearize(f, x, y)
    assert len(calls) == 1
    tf = lambda x, y: torch.tanh(x.unsqueeze(1) * y).sum(1) + x ** 3  # noqa: E731
    for seed in range(3):
        u, w = _args([(3,), (4,)], seed=10 + seed)
        got = f_jvp(u, w)
        _, want = torch.func.jvp(tf, (_t(x), _t(y)), (_t(u), _t(w)))
        np.testing.assert_allclose(got.data, want.numpy(), rtol=1e-10, atol=1e-12)
    assert len(calls) == 1  # f never ran again
    np.testing.assert_allclose(out.data, tf(_t(x), _t(y)).numpy(), rtol=1e-12)
    with pytest.raises(TypeError, match="linearize: f_jvp takes 2 tangents"):
        f_jvp(u)


def test_jacfwd_of_a_float32_scalar_function_and_empty_input():
    g = cr.jacfwd(lambda x: (x * x).sum())(cr.tensor([1.0, 2.0]))
    assert g.shape == (2,) and g.dtype == np.float32
    np.testing.assert_allclose(g.data, [2.0, 4.0])
    assert cr.jacfwd(lambda x: x * 2)(np.zeros(0)).shape == (0, 0)


def test_jacobian_is_jacrev():
    assert cr.jacobian is cr.jacrev


# --- second order --------------------------------------------------------------------------------
SCALAR = {
    "rosenbrock": (lambda x: (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum(),
                   lambda x: (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()),
    "logsumexp_tanh": (lambda x: cr.logsumexp(cr.tanh(x) * 2),
                       lambda x: torch.logsumexp(torch.tanh(x) * 2, 0)),
    "softmax_entropy": (lambda x: -(cr.softmax(x) * cr.log_softmax(x)).sum(),
                        lambda x: -(torch.softmax(x, 0) * torch.log_softmax(x, 0)).sum()),
    "mlp": (lambda x: (cr.tanh(cr.tensor(A) @ x) ** 2).sum() + cr.softplus(x).sum(),
            lambda x: (torch.tanh(_t(A) @ x) ** 2).sum()
            + torch.nn.functional.softplus(x).sum()),
}


@pytest.mark.parametrize("name", list(SCALAR))
def test_forward_over_reverse_hessian_matches_torch(name):
    f, tf = SCALAR[name]
    want = torch_hessian(tf, _t(X4)).numpy()
    for h in (cr.jacfwd(cr.jacrev(f))(X4), cr.jacrev(cr.jacfwd(f))(X4),
              cr.jacfwd(cr.jacfwd(f))(X4), cr.hessian(f)(X4)):
        assert h.shape == (4, 4)
        np.testing.assert_allclose(h.data, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
@pytest.mark.parametrize("name", list(SCALAR))
def test_hvp_matches_torch_and_finite_differences(name, mode):
    f, tf = SCALAR[name]
    value, hv = cr.hvp(f, X4, V4, mode=mode)
    t_value, t_hv = torch_hvp(tf, _t(X4), _t(V4))
    np.testing.assert_allclose(value.data, t_value.numpy(), rtol=1e-12)
    np.testing.assert_allclose(hv.data, t_hv.numpy(), rtol=1e-9, atol=1e-10)
    fd = _directional_difference(cr.grad(f), [X4], [V4])
    np.testing.assert_allclose(hv.data, fd, rtol=1e-5, atol=1e-6)
    assert hv.grad_fn is None and value.grad_fn is None


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_hvp_of_several_arguments_matches_torch(mode):
    def f(x, m):
        return (cr.tanh(m @ x) ** 2).sum() + (x * x * x).sum()

    def tf(x, m):
        return (torch.tanh(m @ x) ** 2).sum() + (x * x * x).sum()

    v, vm = RNG.standard_normal(4), RNG.standard_normal((3, 4))
    _, (hx, hm) = cr.hvp(f, (X4, A), (v, vm), mode=mode)
    _, (thx, thm) = torch_hvp(tf, (_t(X4), _t(A)), (_t(v), _t(vm)))
    np.testing.assert_allclose(hx.data, thx.numpy(), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(hm.data, thm.numpy(), rtol=1e-9, atol=1e-10)


def test_hvp_of_a_linear_function_is_zero_and_checks_its_arguments():
    _, hv = cr.hvp(lambda x: (x * 3).sum(), X4, V4)
    np.testing.assert_array_equal(hv.data, np.zeros(4))
    with pytest.raises(TypeError, match="hvp: f must return a one-element Tensor"):
        cr.hvp(cr.sin, X4, V4)
    with pytest.raises(ValueError, match="hvp: mode must be"):
        cr.hvp(lambda x: x.sum(), X4, V4, mode="sideways")


def _explicit_ggn(tf, tg, x, v):
    """J^T H_g J v with J and H_g formed by torch."""
    y = tf(_t(x))
    jac = torch_jacobian(tf, _t(x)).reshape(y.numel(), x.size)
    hess = torch_hessian(lambda z: tg(z.reshape(y.shape)), y.detach().reshape(-1))
    return (jac.T @ hess @ jac @ _t(v).reshape(-1)).reshape(x.shape).numpy()


def test_make_ggnvp_matches_the_explicit_product():
    params = RNG.standard_normal((4, 3))
    inputs = RNG.standard_normal((5, 4))
    labels = np.eye(3)[[0, 2, 1, 1, 0]]

    def f(w):
        return cr.tanh(cr.tensor(inputs) @ w)

    def g(y):
        return -(cr.log_softmax(y, axis=1) * labels).sum()

    def tf(w):
        return torch.tanh(_t(inputs) @ w)

    def tg(y):
        return -(torch.log_softmax(y, 1) * _t(labels)).sum()

    ggnvp = cr.make_ggnvp(f, g)(params)
    for seed in range(2):
        v = np.random.default_rng(seed).standard_normal(params.shape)
        np.testing.assert_allclose(ggnvp(v).data, _explicit_ggn(tf, tg, params, v),
                                   rtol=1e-9, atol=1e-11)


def test_make_ggnvp_default_loss_is_jtj_and_takes_f_argnum():
    def f(x, w):
        return cr.sin(w @ x)

    v = RNG.standard_normal(4)
    got = cr.make_ggnvp(f, f_argnum=0)(X4, A)(v)
    jac = cr.jacrev(f)(X4, A).data
    np.testing.assert_allclose(got.data, jac.T @ jac @ v, rtol=1e-10)


# --- the VJP function is differentiable in its cotangent -----------------------------------------
def test_derivative_of_the_vjp_function_with_respect_to_its_cotangent():
    """The issue's example: it came out [0, 0] instead of cos(x) * w."""
    x, w = np.array([0.3, 0.5]), np.array([1.0, 2.0])
    _, vjp_sin = cr.vjp(cr.sin, x)
    got = cr.grad(lambda u: (vjp_sin(u)[0] * w).sum())(np.zeros(2))
    np.testing.assert_allclose(got.data, np.cos(x) * w, rtol=1e-12)
    assert got.grad_fn is None  # not recorded: nothing outside is watching
    # the same with the VJP made inside the differentiated function
    got = cr.grad(lambda u: (cr.vjp(cr.sin, x)[1](u)[0] * w).sum())(np.zeros(2))
    np.testing.assert_allclose(got.data, np.cos(x) * w, rtol=1e-12)


def test_double_vjp_by_hand_is_the_jvp():
    f, tf, _ = CASES["matvec_tanh"]
    _, vjp_fn = cr.vjp(f, X4)
    u0 = np.zeros(3)
    # vjp of (u -> vjp_fn(u)) applied to V4 is J V4
    _, vjp_of_vjp = cr.vjp(lambda u: vjp_fn(u)[0], u0)
    (jv,) = vjp_of_vjp(V4)
    _, want = torch.func.jvp(tf, (_t(X4),), (_t(V4),))
    np.testing.assert_allclose(jv.data, want.numpy(), rtol=1e-10)


def test_vjp_function_differentiable_in_primal_and_cotangent_together():
    # d/dx <vjp_fn(u), w> with u and x both watched: matches torch's double backward
    u, w = RNG.standard_normal(3), RNG.standard_normal(4)

    def inner(x, u):
        _, fn = cr.vjp(lambda z: cr.tanh(cr.tensor(A) @ z) ** 2, x)
        return (fn(u)[0] * w).sum()

    gx, gu = cr.grad(inner, argnums=(0, 1))(X4, u)
    tx, tu = torch.tensor(X4, requires_grad=True), torch.tensor(u, requires_grad=True)
    (g,) = torch.autograd.grad(torch.tanh(_t(A) @ tx) ** 2, tx, grad_outputs=tu,
                               create_graph=True)
    tgx, tgu = torch.autograd.grad((g * _t(w)).sum(), (tx, tu))
    np.testing.assert_allclose(gx.data, tgx.numpy(), rtol=1e-10)
    np.testing.assert_allclose(gu.data, tgu.numpy(), rtol=1e-10)


# --- nesting with closures -----------------------------------------------------------------------
def test_grad_of_a_jvp_through_a_closed_over_variable_matches_torch():
    def outer(y):
        _, jv = cr.jvp(lambda x: cr.sin(x * y) * y, X4, V4)
        return (jv * jv).sum()

    def touter(y):
        _, jv = torch.func.jvp(lambda x: torch.sin(x * y) * y, (_t(X4),), (_t(V4),))
        return (jv * jv).sum()

    y = RNG.standard_normal(4)
    ty = torch.tensor(y, requires_grad=True)
    (want,) = torch.autograd.grad(touter(ty), ty)
    np.testing.assert_allclose(cr.grad(outer)(y).data, want.numpy(), rtol=1e-10)


def test_grad_with_respect_to_the_tangent_of_a_jvp():
    # jvp is linear in its tangent: d/dv <J v, c> = J^T c
    c = RNG.standard_normal(3)
    f, _, _ = CASES["matvec_tanh"]
    got = cr.grad(lambda v: (cr.jvp(f, X4, v)[1] * c).sum())(V4)
    np.testing.assert_allclose(got.data, cr.jacrev(f)(X4).data.T @ c, rtol=1e-12)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_grad_of_an_hvp_through_a_closed_over_variable_matches_torch(mode):
    c = RNG.standard_normal(4)

    def outer(y):
        _, hv = cr.hvp(lambda x: (cr.sin(x * y) * y).sum(), X4, V4, mode=mode)
        return (hv * c).sum()

    ty = torch.tensor(RNG.standard_normal(4), requires_grad=True)
    _, thv = torch_hvp(lambda x: (torch.sin(x * ty) * ty).sum(), _t(X4), _t(V4),
                       create_graph=True)
    (want,) = torch.autograd.grad((thv * _t(c)).sum(), ty)
    np.testing.assert_allclose(cr.grad(outer)(ty.detach().numpy()).data, want.numpy(),
                               rtol=1e-10)


def test_jvp_through_a_model_parameter_is_recorded_and_backpropagates():
    w_np = RNG.standard_normal(4)
    w, tw = cr.tensor(w_np, requires_grad=True), torch.tensor(w_np, requires_grad=True)
    _, jv = cr.jvp(lambda x: cr.tanh(x * w), X4, V4)
    assert jv.requires_grad
    (jv * jv).sum().backward()
    _, tjv = torch.func.jvp(lambda x: torch.tanh(x * tw), (_t(X4),), (_t(V4),))
    (tjv * tjv).sum().backward()
    np.testing.assert_allclose(w.grad.data, tw.grad.numpy(), rtol=1e-10)


def test_make_ggnvp_inside_grad_matches_finite_differences():
    inputs, v, c = RNG.standard_normal((5, 3)), RNG.standard_normal(3), RNG.standard_normal(3)
    params = RNG.standard_normal(3)

    def h(s):  # <ggnvp_s(v), c> for f_s(w) = tanh(s * inputs @ w), g = logsumexp
        f = lambda w: cr.tanh(s * (cr.tensor(inputs) @ w))  # noqa: E731
        return (cr.make_ggnvp(f, cr.logsumexp)(params)(v) * c).sum()

    s0, eps = np.array(0.7), 1e-6
    fd = (h(cr.tensor(s0 + eps)).item() - h(cr.tensor(s0 - eps)).item()) / (2 * eps)
    np.testing.assert_allclose(cr.grad(h)(s0).item(), fd, rtol=1e-6)


# --- grad of a function that does not depend on its input --------------------------------------
@pytest.mark.parametrize("const", [lambda x: 3.0, lambda x: np.float64(3.0),
                                   lambda x: np.array([3.0]), lambda x: cr.tensor(3.0)],
                         ids=["python_float", "numpy_scalar", "numpy_array", "tensor"])
def test_grad_of_a_constant_is_zeros_with_a_warning(const):
    for x in (np.array([1.0, 2.0]), cr.tensor([[1.0, 2.0]])):
        with pytest.warns(UserWarning, match="grad: the output of f does not depend on argument 0"):
            g = cr.grad(const)(x)
        assert g.shape == x.shape and g.dtype == x.dtype
        np.testing.assert_array_equal(g.data, np.zeros(x.shape))


def test_grad_warns_for_the_unused_argument_only():
    w = cr.tensor([2.0], requires_grad=True)  # the output does depend on this parameter
    with pytest.warns(UserWarning, match="does not depend on argument 1;"):
        gx, gy = cr.grad(lambda x, y: (x * w).sum(), argnums=(0, 1))(np.ones(2), np.ones(3))
    np.testing.assert_allclose(gx.data, [2.0, 2.0])
    np.testing.assert_array_equal(gy.data, np.zeros(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cr.grad(lambda x: (x * x).sum())(np.ones(2))  # no warning when it does depend


def test_grad_of_a_complex_output_raises():
    # It returned 1.0 with only a ComplexWarning.
    with pytest.raises(TypeError, match="grad: f returned a complex value"):
        cr.grad(lambda x: x * (1 + 0.2j))(1.0)
    with pytest.raises(TypeError, match="complex"):
        cr.grad(lambda z: (z * z).sum())(np.array([1 + 1j, 2.0]))
    with pytest.raises(TypeError, match="hvp: f returned a complex value"):
        cr.hvp(lambda z: (z * z).sum(), np.array([1 + 1j]), np.array([1.0 + 0j]))


# --- x ** 0 ---------------------------------------------------------------------------------------
def test_second_derivative_of_x_to_a_python_zero_at_zero_is_zero():
    # (the first derivative, 0, is a constant: the outer grad says so)
    with pytest.warns(UserWarning, match="does not depend on argument 0"):
        d2 = cr.grad(cr.grad(lambda x: x ** 0.0))(np.array(0.0))
    assert d2.item() == 0.0


@pytest.mark.parametrize("y", [np.array(0.0), np.array([0.0, 0.0])], ids=["0d", "1d"])
def test_second_derivative_of_x_to_an_array_zero_at_zero_is_zero(y):
    # d/dx x^0 = 0 everywhere, so every higher derivative is 0 too; with the exponent as an array
    # the rule's where(y == 0, 0, g y x^(y-1)) is differentiated through its discarded branch,
    # 0 * (0 * inf) = nan.
    def power(x):
        return (x ** y).sum()

    x = np.zeros(np.shape(y))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d2 = cr.grad(lambda x: cr.grad(power)(x).sum())(x)
        d3 = cr.grad(lambda x: cr.grad(lambda x: cr.grad(power)(x).sum())(x).sum())(x)
    np.testing.assert_array_equal(d2.data, np.zeros(np.shape(y)))
    np.testing.assert_array_equal(d3.data, np.zeros(np.shape(y)))


def test_derivatives_of_x_to_array_powers_elsewhere_match_torch():
    # Guards the power rule around the fix: the other exponents keep their values.
    y = np.array([1.0, 2.0, 3.0, 0.5])
    x = np.array([0.7, 1.3, -0.4, 2.0])
    d2 = cr.grad(lambda x: cr.grad(lambda x: (x ** y).sum())(x).sum())(x)
    tx = torch.tensor(x, requires_grad=True)
    (g,) = torch.autograd.grad((tx ** _t(y)).sum(), tx, create_graph=True)
    (want,) = torch.autograd.grad(g.sum(), tx)
    np.testing.assert_allclose(d2.data[:3], want.numpy()[:3], rtol=1e-12)
    np.testing.assert_allclose(d2.data[3], want.numpy()[3], rtol=1e-12)


# --- complex numbers (PyTorch's conjugate Wirtinger convention) ----------------------------------
Z = np.array([1.0 + 2.0j, -0.5 + 0.3j, 0.2 - 1.1j])
C = 0.7 - 1.1j


def _torch_complex_grad(tf, z):
    tz = torch.tensor(z, requires_grad=True)
    (g,) = torch.autograd.grad(tf(tz), tz)
    return g.numpy()


COMPLEX_WORKING = {
    "abs_squared": (lambda z: (cr.abs(z) ** 2).sum(), lambda z: (z.abs() ** 2).sum()),
    "abs": (lambda z: cr.abs(z).sum(), lambda z: z.abs().sum()),
    "abs_of_sum": (lambda z: cr.abs(z.sum()), lambda z: z.sum().abs()),
    "abs_of_real_affine": (lambda z: (cr.abs(z * 3.0 - z[::-1] + 1.0) ** 2).mean(),
                           lambda z: ((z * 3.0 - z.flip(0) + 1.0).abs() ** 2).mean()),
}

COMPLEX_MISSING = {
    "times_complex_constant": (lambda z: (cr.abs(z * C) ** 2).sum(),
                               lambda z: ((z * C).abs() ** 2).sum()),
    "square": (lambda z: cr.abs(z * z).sum(), lambda z: (z * z).abs().sum()),
    "sin": (lambda z: cr.abs(cr.sin(z)).sum(), lambda z: torch.sin(z).abs().sum()),
    "exp": (lambda z: cr.abs(cr.exp(z)).sum(), lambda z: torch.exp(z).abs().sum()),
    "matmul": (lambda z: cr.abs(z @ z), lambda z: (z @ z).abs()),
}


@pytest.mark.parametrize("name", list(COMPLEX_WORKING))
def test_complex_gradient_follows_torch_where_rows_have_real_derivatives(name):
    f, tf = COMPLEX_WORKING[name]
    got = cr.grad(f)(Z)
    assert got.dtype == np.complex128
    np.testing.assert_allclose(got.data, _torch_complex_grad(tf, Z), rtol=1e-12, atol=1e-14)


def test_complex_gradient_of_abs_squared_is_two_z():
    np.testing.assert_allclose(cr.grad(lambda z: (cr.abs(z) ** 2).sum())(Z).data, 2 * Z)


@pytest.mark.xfail(strict=True, reason="ops: holomorphic rows return g f'(z); PyTorch's "
                                       "convention needs g conj(f'(z))")
@pytest.mark.parametrize("name", list(COMPLEX_MISSING))
def test_complex_gradient_through_holomorphic_rows(name):
    f, tf = COMPLEX_MISSING[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = cr.grad(f)(Z)
    np.testing.assert_allclose(got.data, _torch_complex_grad(tf, Z), rtol=1e-10, atol=1e-12)


@pytest.mark.xfail(strict=True, reason="ops: multiply's rule returns g y, not g conj(y)")
def test_real_input_through_a_complex_intermediate():
    x = np.array([0.3, -1.2])
    got = cr.grad(lambda x: (cr.abs(x * C) ** 2).sum())(x)
    want = _torch_complex_grad(lambda x: ((x * C).abs() ** 2).sum(), x)
    np.testing.assert_allclose(got.data, want, rtol=1e-12)
