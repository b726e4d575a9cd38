"""The graph machinery: accumulation, freeing, retain_graph, create_graph, the version counter,
grad mode, hooks, deep graphs, and that only the needed VJP rules run."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest
import torch

import chainrule as cr
from chainrule import ops


def _pair(values, dtype=np.float64):
    """The same leaf in chainrule and in torch."""
    a = np.asarray(values, dtype=dtype)
    return cr.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)


# ----------------------------------------------------------------------------------------------
# Accumulation and seeds
# ----------------------------------------------------------------------------------------------
def test_grad_accumulates_across_backward_calls():
    x, tx = _pair([1.0, 2.0, 3.0])
    for _ in range(3):
        (x * x).sum().backward()
        (tx * tx).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy())
    np.testing.assert_allclose(x.grad.data, 3 * 2 * np.array([1.0, 2.0, 3.0]))


def test_grad_can_be_cleared_between_calls():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    x.grad = None
    (x * 5).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [5.0, 5.0])


def test_fan_out_sums_all_paths():
    x, tx = _pair([0.5, -1.5])
    for a, lib in ((x, cr), (tx, torch)):
        y = a * 2
        (y * y + lib.sin(y) + y).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy())


def test_backward_on_non_scalar_without_gradient_is_a_clear_error():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"backward: .*shape \(2,\).*gradient"):
        (x * 2).backward()


def test_backward_with_explicit_gradient_is_a_vjp():
    x, tx = _pair([[1.0, 2.0], [3.0, 4.0]])
    v = np.array([[1.0, -1.0], [0.5, 2.0]])
    (x * x).backward(v)
    (tx * tx).backward(torch.from_numpy(v))
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy())


def test_backward_gradient_of_wrong_shape_is_a_clear_error():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"gradient has shape \(3,\).*\(2,\)"):
        (x * 2).backward(np.ones(3))


def test_backward_on_tensor_without_grad_is_a_clear_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        cr.tensor([1.0]).sum().backward()


def test_backward_on_a_leaf_gives_ones():
    x = cr.tensor(3.0, requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0


def test_inputs_that_do_not_require_grad_get_no_grad():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    c = cr.tensor([3.0, 4.0])
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad.data, [3.0, 4.0])


def test_leaf_grads_do_not_share_memory():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = cr.tensor([1.0, 2.0], requires_grad=True)
    (x + y).sum().backward()
    x.grad.data[0] = 100.0
    assert y.grad.data[0] == 1.0


# ----------------------------------------------------------------------------------------------
# Freeing saved values, retain_graph
# ----------------------------------------------------------------------------------------------
def test_second_backward_through_freed_graph_is_a_clear_error():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.data.copy()
    y.backward()
    np.testing.assert_allclose(x.grad.data, 2 * first)


def test_walk_frees_saved_values_unless_retained():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x.tanh()  # saves its answer
    m = h * x  # saves both inputs
    loss = m.sum()
    assert not h.grad_fn.freed and not m.grad_fn.freed
    assert m.grad_fn.saved_arrays()
    loss.backward()
    assert h.grad_fn.freed and m.grad_fn.freed
    assert m.grad_fn.saved_arrays() == []

    y = cr.tensor([1.0, 2.0], requires_grad=True)
    n = y.tanh() * y
    n.sum().backward(retain_graph=True)
    assert not n.grad_fn.freed and not n.grad_fn.parents[0].freed


def test_nodes_that_save_nothing_stay_reusable():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = (x + 1).sum()
    y.backward()
    y.backward()  # add and sum keep no values: nothing was freed, PyTorch allows this too
    np.testing.assert_array_equal(x.grad.data, [2.0, 2.0])


def test_add_node_saves_nothing_and_tanh_only_its_answer():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    assert (x + x).grad_fn.saved is None
    node = x.tanh().grad_fn
    assert node.ans is not None and node.saved is None


# ----------------------------------------------------------------------------------------------
# Only the needed rules run, only the needed values are kept
# ----------------------------------------------------------------------------------------------
def test_rule_for_input_without_grad_does_not_run(monkeypatch):
    calls = {"x": 0, "w": 0}
    rule_x, rule_w = ops.matmul.vjps

    def counting(name, rule):
        def wrapped(*args, **kwargs):
            calls[name] += 1
            return rule(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(ops.matmul, "vjps", (counting("x", rule_x), counting("w", rule_w)))
    x = cr.tensor(np.ones((2, 3)))
    w = cr.tensor(np.ones((3, 4)), requires_grad=True)
    out = x @ w
    assert out.grad_fn.parents[0] is None and out.grad_fn.saved[0] is x
    out.sum().backward()
    assert calls == {"x": 0, "w": 1}
    np.testing.assert_array_equal(w.grad.data, np.full((3, 4), 2.0))


def test_multiply_by_constant_keeps_only_the_constant():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    c = cr.tensor([3.0, 4.0])
    node = (x * c).grad_fn
    assert node.saved[0] is None and node.saved[1] is c
    assert node.parents[1] is None


# ----------------------------------------------------------------------------------------------
# Higher order
# ----------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")
def test_create_graph_then_differentiate_grad_again():
    x, tx = _pair([0.3, -1.2, 2.0])
    for a, lib in ((x, cr), (tx, torch)):
        y = (a ** 3 + lib.sin(a) * a).sum()
        y.backward(create_graph=True)
        first = a.grad
        assert first.requires_grad
        a.grad = None
        (first * first).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy(), rtol=1e-12)


def test_second_derivative_by_nested_grad_matches_torch():
    a = np.array([0.1, 0.7, -0.4])

    def f(x):
        return (cr.tanh(x) * x.exp()).sum()

    got = cr.grad(lambda x: cr.grad(f)(x).sum())(a)
    tx = torch.tensor(a, requires_grad=True)
    (g,) = torch.autograd.grad((torch.tanh(tx) * tx.exp()).sum(), tx, create_graph=True)
    (want,) = torch.autograd.grad(g.sum(), tx)
    np.testing.assert_allclose(got.data, want.numpy(), rtol=1e-12)


def test_third_derivative_of_a_power():
    d3 = cr.grad(lambda x: cr.grad(lambda y: cr.grad(lambda z: (z ** 4).sum())(y).sum())(x).sum())
    np.testing.assert_allclose(d3(np.array([2.0])).data, [24.0 * 2.0])


# ----------------------------------------------------------------------------------------------
# In place and the version counter
# ----------------------------------------------------------------------------------------------
def test_in_place_change_of_a_saved_input_is_detected():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    a = x * 2
    b = (a * a).sum()  # saves a
    a += 1
    with pytest.raises(RuntimeError, match=r"MultiplyBackward: input 0 .*modified in place"):
        b.backward()


def test_setitem_into_a_saved_output_is_detected_like_torch():
    x, tx = _pair([1.0, 2.0])
    for a in (x, tx):
        y = a.exp()
        loss = y.sum() * 1
        y[0] = 0.0
        with pytest.raises(RuntimeError, match="modified by an inplace|modified in place"):
            (loss + y.sum()).backward()


def test_in_place_change_of_a_saved_output_is_detected():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    e = x.exp()  # saves its answer
    loss = e.sum()
    with cr.no_grad():
        e.data[...] = 0
        e._version[0] += 1
    with pytest.raises(RuntimeError, match=r"ExpBackward: its output .*modified in place"):
        loss.backward()


def test_writing_through_a_view_bumps_the_shared_version():
    x = cr.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a = x * 1
    b = (a * a).sum()
    view = a[1:]
    view *= 2  # writes into a's memory
    with pytest.raises(RuntimeError, match="modified in place"):
        b.backward()


def test_safe_in_place_on_non_leaf_gives_right_gradient():
    x, tx = _pair([1.0, -2.0, 0.5])
    for a in (x, tx):
        y = a * 2
        y += 1
        y *= a
        y -= 3
        y /= 2
        (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy())


def test_setitem_on_non_leaf_gives_right_gradient():
    x, tx = _pair([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    v, tv = _pair([10.0, 20.0])
    for a, b in ((x, v), (tx, tv)):
        y = a.sin()  # saves its input, not its output: writing into y is safe
        y[:, 1] = b * b
        (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy())
    np.testing.assert_allclose(v.grad.data, tv.grad.numpy())


def test_leaf_requiring_grad_cannot_change_in_place_while_recording():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        x += 1
    with pytest.raises(RuntimeError, match="leaf tensor that requires grad"):
        x[0] = 5.0
    with pytest.raises(RuntimeError, match="zero_"):
        x.zero_()
    np.testing.assert_array_equal(x.data, [1.0, 2.0])


def test_leaf_update_under_no_grad_bumps_the_version():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    with cr.no_grad():
        x -= 0.5
    assert x._version[0] == 1
    assert x.grad_fn is None and x.requires_grad
    np.testing.assert_array_equal(x.data, [0.5, 1.5])
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


# ----------------------------------------------------------------------------------------------
# Grad mode
# ----------------------------------------------------------------------------------------------
def test_no_grad_makes_tensors_that_do_not_require_grad():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with cr.no_grad():
        y = x * 2 + x.exp()
        assert not cr.is_grad_enabled()
    assert cr.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None


def test_enable_grad_inside_no_grad_records():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with cr.no_grad():
        with cr.enable_grad():
            y = (x * x).sum()
        z = x * 3
    assert y.requires_grad and not z.requires_grad
    y.backward()
    np.testing.assert_array_equal(x.grad.data, [2.0, 4.0])


def test_grad_mode_decorators_and_set_grad_enabled():
    x = cr.tensor([1.0], requires_grad=True)

    @cr.no_grad()
    def frozen(t):
        return t * 2

    @cr.enable_grad()
    def recorded(t):
        return t * 2

    assert not frozen(x).requires_grad
    with cr.no_grad():
        assert recorded(x).requires_grad
    with cr.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert cr.is_grad_enabled()


def test_grad_mode_restored_after_exception():
    with pytest.raises(ValueError):
        with cr.no_grad():
            raise ValueError("boom")
    assert cr.is_grad_enabled()


# ----------------------------------------------------------------------------------------------
# Hooks and retain_grad
# ----------------------------------------------------------------------------------------------
def test_hook_on_leaf_sees_and_replaces_gradient():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    seen = []

    def double(g):
        seen.append(g.data.copy())
        return g * 2

    handle = x.register_hook(double)
    (x * 3).sum().backward()
    np.testing.assert_array_equal(seen[0], [3.0, 3.0])
    np.testing.assert_array_equal(x.grad.data, [6.0, 6.0])
    handle.remove()
    x.grad = None
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [3.0, 3.0])
    assert len(seen) == 1


def test_hook_on_non_leaf_changes_what_flows_upstream():
    x, tx = _pair([1.0, 2.0])
    for a in (x, tx):
        y = a * a
        y.register_hook(lambda g: g * 10)
        (y * 3).sum().backward()
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy())
    np.testing.assert_allclose(x.grad.data, [60.0, 120.0])


def test_hook_returning_none_keeps_gradient():
    x = cr.tensor([1.0], requires_grad=True)
    x.register_hook(lambda g: None)
    (x * 4).sum().backward()
    assert x.grad.item() == 4.0


def test_hook_on_tensor_without_grad_is_an_error():
    with pytest.raises(RuntimeError, match="register_hook"):
        cr.tensor([1.0]).register_hook(lambda g: g)


def test_retain_grad_keeps_non_leaf_grad():
    x, tx = _pair([1.0, 2.0])
    ys = []
    for a in (x, tx):
        y = a * a
        y.retain_grad()
        ys.append(y)
        (y.sin()).sum().backward()
    np.testing.assert_allclose(ys[0].grad.data, ys[1].grad.numpy())
    assert ys[0].grad.grad_fn is None


def test_non_leaf_grad_is_none_without_retain_grad():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y.sum().backward()
    assert y.grad is None


# ----------------------------------------------------------------------------------------------
# Deep graphs
# ----------------------------------------------------------------------------------------------
def test_deep_chain_through_grad_and_retain_graph_runs_without_recursion():
    # (tests/test_engine_semantics.py walks a chain of a million additions with backward();
    # this one goes through the transforms' path, which captures inputs, and walks it twice.)
    def deep(x):
        y = x
        for _ in range(60_000):
            y = -y + 0.0
        return y.sum()

    limit = sys.getrecursionlimit()
    np.testing.assert_array_equal(cr.grad(deep)(np.array([1.5])).data, [1.0])
    x = cr.tensor(1.5, requires_grad=True)
    y = deep(x)
    y.backward(retain_graph=True)
    y.backward()
    assert sys.getrecursionlimit() == limit
    assert x.grad.item() == 2.0
    del y
    gc.collect()


def test_long_chain_with_saved_values_frees_as_it_goes():
    x = cr.tensor([0.5], requires_grad=True)
    y = x
    nodes = []
    for _ in range(2000):
        y = (y * 0.999).tanh()
        nodes.append(y.grad_fn)
    y.sum().backward()
    assert all(n.freed for n in nodes)
    assert np.isfinite(x.grad.item()) and x.grad.item() > 0


# ----------------------------------------------------------------------------------------------
# dtypes
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_])
def test_integer_tensors_cannot_require_grad(dtype):
    with pytest.raises(TypeError, match="floating-point"):
        cr.tensor(np.array([1, 2], dtype=dtype), requires_grad=True)
    t = cr.tensor(np.array([1, 0], dtype=dtype))
    with pytest.raises(TypeError, match="floating-point"):
        t.requires_grad_()


def test_integer_python_list_stays_integer():
    t = cr.tensor([1, 2])
    assert t.dtype.kind == "i"
    with pytest.raises(TypeError):
        cr.tensor([1, 2], requires_grad=True)


def test_float32_chain_with_python_scalars_stays_float32():
    x = cr.tensor([0.5, 1.5], requires_grad=True)
    assert x.dtype == np.float32
    y = ((x * 2.0 + 1.0) / 3.0 - 0.5) ** 2.0
    z = cr.where(x > 1.0, y, 0.0).sum() + cr.clip(x, 0.0, 1.0).mean() + cr.maximum(x, 1.0).sum()
    assert z.dtype == np.float32
    z.backward()
    assert x.grad.dtype == np.float32


def test_float32_create_graph_stays_float32():
    x = cr.tensor([0.5, 1.5], requires_grad=True)
    (x.sigmoid() * x).sum().backward(create_graph=True)
    g = x.grad
    assert g.dtype == np.float32
    x.grad = None
    g.sum().backward()
    assert x.grad.dtype == np.float32


def test_error_inside_a_backward_rule_names_the_node(monkeypatch):
    def broken(g, ans, x):
        raise ValueError("boom")

    monkeypatch.setattr(ops.exp, "vjps", (broken,))
    x = cr.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="ExpBackward: the backward rule failed: boom"):
        x.exp().sum().backward()
