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


# --- containers (pytrees): dicts, tuples, lists and namedtuples of tensors ----------------------
def _params():
    rng = np.random.default_rng(11)
    return {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2),
            "extra": (rng.standard_normal(2), [rng.standard_normal(())])}


def _tree_loss(p, x):
    h = cr.tanh(x @ p["w"] + p["b"]) * p["extra"][0]
    return (h * h).sum() + p["extra"][1][0] ** 2


def _tree_loss_torch(p, x):
    h = torch.tanh(x @ p["w"] + p["b"]) * p["extra"][0]
    return (h * h).sum() + p["extra"][1][0] ** 2


def _torch_tree(tree):
    return torch.utils._pytree.tree_map(lambda a: torch.tensor(np.asarray(a)), tree)


def _assert_same_tree(ours, theirs, rtol=1e-10):
    from chainrule import pytree

    leaves, treedef = pytree.flatten(ours)
    t_leaves, t_spec = torch.utils._pytree.tree_flatten(theirs)
    assert type(ours) is type(theirs) or isinstance(theirs, type(ours))
    assert len(leaves) == len(t_leaves)
    for a, b in zip(leaves, t_leaves):
        assert isinstance(a, cr.Tensor)
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a.data, b.detach().numpy(), rtol=rtol, atol=1e-12)


X_TREE = np.random.default_rng(12).standard_normal((4, 3))


def test_grad_of_a_dict_of_parameters_is_a_dict_of_the_same_shape_as_torch_func():
    p = _params()
    ours = cr.grad(_tree_loss)(p, X_TREE)
    assert list(ours) == ["w", "b", "extra"]
    assert isinstance(ours["extra"], tuple) and isinstance(ours["extra"][1], list)
    theirs = torch.func.grad(_tree_loss_torch)(_torch_tree(p), torch.tensor(X_TREE))
    _assert_same_tree(ours, theirs)


def test_value_and_grad_with_several_container_arguments():
    p = _params()
    value, (gp, gx) = cr.value_and_grad(lambda p, xs: _tree_loss(p, xs[0]) * xs[1],
                                        argnums=(0, 1))(p, [X_TREE, np.float64(2.0)])
    tp = _torch_tree(p)
    txs = [torch.tensor(X_TREE), torch.tensor(2.0, dtype=torch.float64)]
    t_value, (tgp, tgx) = torch.func.grad_and_value(
        lambda p, xs: _tree_loss_torch(p, xs[0]) * xs[1], argnums=(0, 1))(tp, txs)[::-1]
    np.testing.assert_allclose(value.data, t_value.numpy(), rtol=1e-12)
    _assert_same_tree(gp, tgp)
    assert isinstance(gx, list) and len(gx) == 2
    _assert_same_tree(gx, tgx)


def test_a_tuple_of_differently_shaped_arrays_and_a_list_of_equal_shapes_stay_apart():
    g = cr.grad(lambda p: (p[0] ** 2).sum() + p[1].sum())((np.ones(2), np.ones((3, 3))))
    assert isinstance(g, tuple) and g[0].shape == (2,) and g[1].shape == (3, 3)
    np.testing.assert_array_equal(g[0].data, [2.0, 2.0])
    g = cr.grad(lambda p: p[0] * 3.0 + p[1] ** 2)([np.float64(1.0), np.float64(2.0)])
    assert isinstance(g, list) and [float(v.data) for v in g] == [3.0, 4.0]
    assert g[0].dtype == np.float64


def test_a_namedtuple_and_none_keep_their_places():
    from collections import namedtuple

    Pair = namedtuple("Pair", "a b")
    g = cr.grad(lambda t: (t.a * t.b).sum())(Pair(np.array([1.0, 2.0]), np.array([3.0, 4.0])))
    assert isinstance(g, Pair)
    np.testing.assert_array_equal(g.a.data, [3.0, 4.0])
    g = cr.grad(lambda t: t[0].sum())((np.ones(2), None))
    assert g[1] is None


def test_an_unused_leaf_is_named_in_the_warning():
    with pytest.warns(UserWarning, match=r"argument 0\['b'\]"):
        g = cr.grad(lambda p: p["a"].sum())({"a": np.ones(2), "b": np.ones(3)})
    np.testing.assert_array_equal(g["b"].data, np.zeros(3))


def test_an_empty_container_or_integer_leaf_is_refused_with_its_path():
    with pytest.raises(TypeError, match="argument 0 holds no values"):
        cr.grad(lambda p: cr.tensor(1.0))({})
    with pytest.raises(TypeError, match=r"argument 0\['n'\] has dtype int64"):
        cr.grad(lambda p: p["x"].sum())({"x": np.ones(2), "n": np.array([1, 2])})


def test_vjp_with_a_dict_output_and_its_cotangent():
    p = _params()
    out, vjp_fn = cr.vjp(lambda p: {"h": cr.tanh(X_TREE @ p["w"]), "s": p["b"].sum()}, p)
    assert set(out) == {"h", "s"}
    u = {"h": np.random.default_rng(2).standard_normal((4, 2)), "s": np.float64(0.5)}
    (g,) = vjp_fn(u)
    tp = _torch_tree(p)
    _, t_vjp = torch.func.vjp(lambda p: {"h": torch.tanh(torch.tensor(X_TREE) @ p["w"]),
                                         "s": p["b"].sum()}, tp)
    (tg,) = t_vjp(_torch_tree(u))
    _assert_same_tree({k: g[k] for k in ("w", "b")}, {k: tg[k] for k in ("w", "b")})
    with pytest.raises(ValueError, match="cotangent must have the structure"):
        vjp_fn([u["h"], u["s"]])


def test_jvp_linearize_and_hvp_take_containers_as_torch_func_does():
    p = _params()
    rng = np.random.default_rng(3)
    v = {"w": rng.standard_normal((3, 2)), "b": rng.standard_normal(2),
         "extra": (rng.standard_normal(2), [rng.standard_normal(())])}

    def f(p):
        return {"loss": _tree_loss(p, X_TREE), "w2": p["w"] * 2.0}

    def tf(p):
        return {"loss": _tree_loss_torch(p, torch.tensor(X_TREE)), "w2": p["w"] * 2.0}

    out, jv = cr.jvp(f, (p,), (v,))
    t_out, t_jv = torch.func.jvp(tf, (_torch_tree(p),), (_torch_tree(v),))
    _assert_same_tree(out, t_out)
    _assert_same_tree(jv, t_jv, rtol=1e-9)
    _, f_jvp = cr.linearize(f, p)
    _assert_same_tree(f_jvp(v), t_jv, rtol=1e-9)
    with pytest.raises(ValueError, match="tangent 0 must have the structure"):
        cr.jvp(f, (p,), ({"w": v["w"]},))
    _, hv = cr.hvp(lambda p: _tree_loss(p, X_TREE), (p,), (v,))
    t_hv = torch.func.jvp(torch.func.grad(lambda p: _tree_loss_torch(p, torch.tensor(X_TREE))),
                          (_torch_tree(p),), (_torch_tree(v),))[1]
    _assert_same_tree(hv[0], t_hv, rtol=1e-8)


@pytest.mark.parametrize("jac, tjac", [(cr.jacrev, torch.func.jacrev),
                                       (cr.jacfwd, torch.func.jacfwd)], ids=["jacrev", "jacfwd"])
def test_jacobians_of_containers_are_arranged_as_in_torch_func(jac, tjac):
    p = {"w": np.random.default_rng(4).standard_normal((3, 2)), "b": np.ones(2)}
    ours = jac(lambda p: (cr.tanh(X_TREE @ p["w"] + p["b"]), p["b"] * 3.0))(p)
    theirs = tjac(lambda p: (torch.tanh(torch.tensor(X_TREE) @ p["w"] + p["b"]),
                             p["b"] * 3.0))(_torch_tree(p))
    assert isinstance(ours, tuple) and set(ours[0]) == {"w", "b"}
    assert ours[0]["w"].shape == (4, 2, 3, 2)
    for o, t in zip(ours, theirs):
        _assert_same_tree(o, t)


def test_second_order_through_a_dict():
    def f(p):
        return (p["a"] ** 3).sum() * p["c"]

    p = {"a": np.array([1.0, 2.0]), "c": np.float64(2.0)}
    g2 = cr.grad(lambda p: cr.grad(f)(p)["a"].sum())(p)
    np.testing.assert_allclose(g2["a"].data, 6 * p["a"] * 2.0)
    np.testing.assert_allclose(g2["c"].data, (3 * p["a"] ** 2).sum())
