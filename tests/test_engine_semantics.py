"""The engine's contract: accumulation, graph freeing, higher order, in-place checks, hooks,
grad mode, error messages, deep graphs, saved values and custom Functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import chainrule as cr
from gradtools import assert_close, to_torch


def t64(a, requires_grad=True):
    return cr.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def test_grad_accumulates_across_backward_calls():
    x = t64([1.0, 2.0])
    (x * x).sum().backward()
    (3 * x).sum().backward()
    assert_close(x.grad, [2 + 3, 4 + 3])


def test_a_second_backward_adds_into_the_gradient_in_place_as_pytorch_does():
    x, tx = t64([1.0, 2.0]), torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    (x * x).sum().backward()
    (tx * tx).sum().backward()
    kept, tkept = x.grad, tx.grad
    version = kept._version[0]
    (3 * x).sum().backward()
    (3 * tx).sum().backward()
    assert x.grad is kept and tx.grad is tkept
    assert_close(kept, tkept.numpy())  # the kept gradient sees the sum, in both libraries
    assert kept._version[0] == version + 1  # an in-place write, seen by graphs that read it


def test_a_gradient_set_to_a_read_only_or_view_array_is_replaced_not_written():
    base = np.zeros(4)
    for held in (np.zeros(2), base[::2]):
        if held.base is None:
            held.flags.writeable = False
        x = t64([1.0, 2.0])
        x.grad = cr.Tensor._wrap(held)
        (x * x).sum().backward()
        assert_close(x.grad, [2.0, 4.0])
        assert not held.any() and not base.any()


def test_backward_on_non_scalar_needs_a_gradient():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="gradient"):
        (x * 2).backward()
    (x * 2).backward(gradient=np.array([1.0, 10.0]))
    assert_close(x.grad, [2.0, 20.0])


def test_second_backward_needs_retain_graph():
    x = t64([1.0, 2.0])
    y = cr.tanh(x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()
    x2 = t64([1.0, 2.0])
    y2 = cr.tanh(x2).sum()
    y2.backward(retain_graph=True)
    tanh_node = y2.grad_fn.parents[0]
    assert tanh_node.name == "TanhBackward" and not tanh_node.freed
    y2.backward()
    assert_close(x2.grad, 2 * (1 - np.tanh([1.0, 2.0]) ** 2))
    assert tanh_node.freed


def test_nodes_are_freed_after_backward():
    x = t64([0.5, 1.5])
    h = cr.exp(x)
    y = (h * x).sum()
    y.backward()
    assert h.grad_fn.freed and y.grad_fn.parents[0].freed


def test_second_derivative_by_nested_grad():
    f = lambda x: (x ** 3).sum()  # noqa: E731
    x = t64([1.0, -2.0, 0.5])
    d2 = cr.grad(lambda x: cr.grad(f)(x).sum())(x)
    assert_close(d2, 6 * x.data)


def test_create_graph_then_differentiate_grad():
    x = t64([1.0, 2.0])
    (cr.sin(x) * x).sum().backward(create_graph=True)
    g = x.grad  # cos(x) x + sin(x)
    assert g.requires_grad
    (d,) = cr.gradients(g.sum(), [x])
    assert_close(d, -np.sin(x.data) * x.data + 2 * np.cos(x.data))


def _f_cr(x):
    return (cr.tanh(x) * x[::-1]).sum() + (x ** 2).sum() * x[0]


def _f_torch(x):
    return (torch.tanh(x) * x.flip(0)).sum() + (x ** 2).sum() * x[0]


def test_hessian_and_jacobian_match_torch():
    a = np.array([0.3, -1.2, 0.7])
    assert_close(cr.hessian(_f_cr)(t64(a, False)),
                 torch.autograd.functional.hessian(_f_torch, to_torch(a)))
    jf_cr = lambda x: cr.softmax(x) * cr.sin(x)  # noqa: E731
    jf_t = lambda x: torch.softmax(x, -1) * torch.sin(x)  # noqa: E731
    assert_close(cr.jacobian(jf_cr)(t64(a, False)),
                 torch.autograd.functional.jacobian(jf_t, to_torch(a)))


def test_in_place_after_saving_is_detected():
    x = t64([1.0, 2.0])
    h = x * 2
    y = h * h  # saves h
    h += 1
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


def test_safe_in_place_on_non_leaf_gives_right_gradient():
    x = t64([1.0, 2.0])
    h = x * 3
    h += 1
    h *= x  # (3x + 1) x
    h.sum().backward()
    assert_close(x.grad, 6 * x.data + 1)


def test_in_place_multiply_by_grad_tensor_matches_torch():
    # regression: h *= x saved h's old value, then overwrote it, and backward raised
    a = np.array([1.0, 2.0])
    x = t64(a)
    h = x * 3 + 1
    h *= x
    h /= x + 2
    h.sum().backward(create_graph=True)
    xt = to_torch(a, requires_grad=True)
    ht = xt * 3 + 1
    ht *= xt
    ht /= xt + 2
    (gt,) = torch.autograd.grad(ht.sum(), xt, create_graph=True)
    assert_close(h, ht)
    assert_close(x.grad, gt)
    (d2,) = cr.gradients(x.grad.sum(), [x])
    assert_close(d2, torch.autograd.grad(gt.sum(), xt)[0])


def test_leaf_cannot_be_modified_in_place_while_recording():
    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match="leaf"):
        x += 1
    with cr.no_grad():
        x += 1
    assert_close(x, [2.0, 3.0])


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError):
        cr.tensor([1, 2, 3], requires_grad=True)


def test_no_grad_and_enable_grad():
    x = t64([1.0])
    with cr.no_grad():
        y = x * 2
        assert not cr.is_grad_enabled()
        with cr.enable_grad():
            z = x * 2
    assert cr.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None

    @cr.no_grad()
    def f(t):
        return t * 2

    assert not f(x).requires_grad


def test_hooks_leaf_and_non_leaf_and_remove():
    x = t64([1.0, 2.0])
    seen = []
    handle = x.register_hook(lambda g: seen.append(g.data.copy()))
    h = x * 3
    h.register_hook(lambda g: g * 10)  # replaces the gradient flowing into h
    h.sum().backward()
    assert_close(x.grad, [30.0, 30.0])
    assert_close(seen[0], [30.0, 30.0])
    handle.remove()
    x.grad = None
    (x * 1).sum().backward()
    assert len(seen) == 1
    assert_close(x.grad, [1.0, 1.0])


def test_retain_grad_and_detach():
    x = t64([1.0, 2.0])
    h = x * x
    h.retain_grad()
    d = h.detach()
    assert not d.requires_grad and d.grad_fn is None
    (h * d).sum().backward()  # d is a constant
    assert_close(h.grad, d.data)
    assert_close(x.grad, 2 * x.data * d.data)


def test_repr_asarray_and_ndarray_times_tensor():
    x = t64([1.0, 2.0])
    assert "requires_grad=True" in repr(x)
    assert "grad_fn=<MultiplyBackward>" in repr(x * 2)
    a = np.asarray(x)
    assert isinstance(a, np.ndarray) and a.dtype == np.float64
    assert_close(a, [1.0, 2.0])
    y = np.array([3.0, 4.0]) * x
    assert isinstance(y, cr.Tensor) and y.requires_grad
    y.sum().backward()
    assert_close(x.grad, [3.0, 4.0])


def test_error_messages_name_the_op_and_shapes():
    a = t64(np.ones((2, 3)))
    with pytest.raises(ValueError) as e:
        a @ a
    assert str(e.value) == "matmul: shapes (2, 3) and (2, 3) are not aligned (3 != 2)"
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4,\)"):
        cr.reshape(a, (4,))
    with pytest.raises(ValueError, match=r"add.*\(2, ?3\).*\(3, ?2\)"):
        a + t64(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"broadcast_to.*\(2, 3\).*\(4, 3\)"):
        cr.broadcast_to(a, (4, 3))
    with pytest.raises(ValueError, match="sum: axis 2 is out of range"):
        cr.sum(a, axis=2)
    with pytest.raises(ValueError, match=r"concatenate.*\(2, 3\).*\(3, 3\)"):
        cr.concatenate([a, t64(np.ones((3, 3)))], axis=1)


def test_a_million_additions_do_not_recurse():
    x = t64(1.0)
    y = x
    for _ in range(1_000_000):
        y = y + x
    y.backward()
    assert float(y.data) == 1_000_001.0
    assert float(x.grad.data) == 1_000_001.0


def test_only_needed_values_are_saved():
    x = t64(np.ones((2, 3)), requires_grad=False)
    w = t64(np.ones((3, 2)))
    node = (x @ w).grad_fn
    assert node.parents[0] is None and node.parents[1] is w
    assert node.saved[0] is x  # dW = x^T g needs x
    # The matmul rule for W reads W.ndim, so W is kept too (it is a leaf, so this costs nothing).
    assert node.saved[1] is w
    add_node = (x + w.T).grad_fn
    assert add_node.saved is None and add_node.ans is None  # add needs nothing
    c = t64(np.full((3, 2), 2.0), requires_grad=False)
    mul_node = (w * c).grad_fn
    assert mul_node.saved[0] is None and mul_node.saved[1] is c  # d(w c)/dw reads c only
    tanh_node = cr.tanh(w).grad_fn
    assert tanh_node.saved is None and tanh_node.ans is not None  # tanh keeps only its answer


class Cube(cr.Function):
    needs = None

    @staticmethod
    def forward(ctx, x, k):
        Cube.needs = ctx.needs_input_grad
        ctx.save_for_backward(x)
        return x * x * x * k

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x * 2.0, None


class BadCube(cr.Function):
    @staticmethod
    def forward(ctx, x):
        return x * x * x

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


def test_custom_function():
    x = t64([1.0, -2.0])
    y = Cube.apply(x, 2.0)
    assert Cube.needs == (True, False)
    assert_close(y, 2 * x.data ** 3)
    y.sum().backward(create_graph=True)
    assert_close(x.grad, 6 * x.data ** 2)
    (d2,) = cr.gradients(x.grad.sum(), [x])
    assert_close(d2, 12 * x.data)
    with pytest.raises(RuntimeError, match="returned 2 gradients"):
        BadCube.apply(t64([1.0])).sum().backward()


def test_manual_seed_reproduces_randn():
    cr.manual_seed(123)
    a = cr.randn(3, 4)
    cr.manual_seed(123)
    b = cr.randn(3, 4)
    c = cr.randn(3, 4)
    assert_close(a, b, rtol=0, atol=0)
    assert not np.array_equal(b.data, c.data)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("name", ["maximum", "minimum"])
@pytest.mark.parametrize("x,y", [(NAN, 1.0), (1.0, NAN), (NAN, NAN), (1.0, 1.0), (2.0, 1.0),
                                 (1.0, 2.0), (INF, INF), (NAN, INF), (-INF, NAN)])
def test_maximum_and_minimum_gradients_at_nan_and_ties_match_torch(name, x, y):
    """A NaN input makes a NaN result that passes the gradient to both inputs (1 each), as in
    PyTorch; a tie still shares it half and half."""
    cx, cy = t64([x]), t64([y])
    tx, ty = to_torch(np.array([x]), True), to_torch(np.array([y]), True)
    out = getattr(cr, name)(cx, cy)
    want = getattr(torch, name)(tx, ty)
    np.testing.assert_array_equal(out.data, want.detach().numpy())
    out.backward(np.array([3.0]))
    want.backward(torch.tensor([3.0], dtype=torch.float64))
    np.testing.assert_array_equal(cx.grad.data, tx.grad.numpy())
    np.testing.assert_array_equal(cy.grad.data, ty.grad.numpy())


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_and_minimum_nan_gradients_broadcast_like_torch(name):
    x = np.array([[NAN, 1.0, 2.0], [3.0, NAN, 0.5]])
    y = np.array([1.0, 1.0, NAN])
    cx, cy = t64(x), t64(y)
    tx, ty = to_torch(x, True), to_torch(y, True)
    getattr(cr, name)(cx, cy).sum().backward()
    getattr(torch, name)(tx, ty).sum().backward()
    np.testing.assert_array_equal(cx.grad.data, tx.grad.numpy())
    np.testing.assert_array_equal(cy.grad.data, ty.grad.numpy())


def test_a_hook_returning_the_wrong_shape_is_named_with_both_shapes():
    x = t64([1.0, 2.0])

    def widen(grad):
        return cr.tensor([1.0, 2.0, 3.0])

    x.register_hook(widen)
    with pytest.raises(RuntimeError, match=r"hook 'test_a_hook_returning_the_wrong_shape_is_"
                                           r"named_with_both_shapes.<locals>.widen' registered on "
                                           r"the leaf tensor \(shape \(2,\), float64\) returned a "
                                           r"gradient of shape \(3,\), but the gradient it was "
                                           r"given has shape \(2,\)"):
        (x * 2).sum().backward()

    y = t64([1.0, 2.0]) * 3
    y.register_hook(lambda g: np.ones(5))
    with pytest.raises(RuntimeError, match=r"hook '.*<lambda>' registered on the tensor made by "
                                           r"MultiplyBackward returned a gradient of shape \(5,\)"
                                           r".* has shape \(2,\)"):
        y.sum().backward()

    named = t64([1.0, 2.0])
    named.name = "w"
    named.register_hook(lambda g: g.sum())
    with pytest.raises(RuntimeError, match=r"the leaf tensor 'w' \(shape \(2,\), float64\) "
                                           r"returned a gradient of shape \(\)"):
        cr.gradients((named * named).sum(), [named])
