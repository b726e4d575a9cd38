"""cr.Function: user-defined operations with their own backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import chainrule as cr


class Cube(cr.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x


class ScaledProduct(cr.Function):
    """x * y * scale, recording which inputs needed a gradient."""

    seen_needs = []

    @staticmethod
    def forward(ctx, x, y, scale):
        ctx.save_for_backward(x, y)
        ctx.scale = scale
        ScaledProduct.seen_needs.append(ctx.needs_input_grad)
        return x * y * scale

    @staticmethod
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        gx = grad * y * ctx.scale if ctx.needs_input_grad[0] else None
        gy = grad * x * ctx.scale if ctx.needs_input_grad[1] else None
        return gx, gy, None


def test_custom_cube_gradient_matches_torch():
    a = np.array([0.5, -1.0, 2.0])
    x = cr.tensor(a, requires_grad=True)
    y = Cube.apply(x)
    assert y.grad_fn is not None and y.grad_fn.name == "CubeBackward"
    (y * cr.tensor([1.0, 2.0, 3.0], dtype=np.float64)).sum().backward()
    tx = torch.tensor(a, requires_grad=True)
    ((tx ** 3) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum().backward()
    np.testing.assert_allclose(y.data, a ** 3)
    np.testing.assert_allclose(x.grad.data, tx.grad.numpy())


def test_forward_runs_without_recording():
    seen = []

    class Spy(cr.Function):
        @staticmethod
        def forward(ctx, x):
            out = x * 2
            seen.append(out.requires_grad)
            return out

        @staticmethod
        def backward(ctx, grad):
            return grad * 2

    x = cr.tensor([1.0], requires_grad=True)
    Spy.apply(x).sum().backward()
    assert seen == [False]
    assert x.grad.item() == 2.0


def test_needs_input_grad_and_saved_tensors():
    ScaledProduct.seen_needs.clear()
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = cr.tensor([3.0, 4.0])
    ScaledProduct.apply(x, y, 0.5).sum().backward()
    assert ScaledProduct.seen_needs == [(True, False, False)]
    np.testing.assert_allclose(x.grad.data, [1.5, 2.0])
    assert y.grad is None


def test_wrong_number_of_gradients_is_a_clear_error():
    class Bad(cr.Function):
        @staticmethod
        def forward(ctx, x, y):
            return x + y

        @staticmethod
        def backward(ctx, grad):
            return grad

    x = cr.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="Bad.backward returned 1 gradients but forward took 2"):
        Bad.apply(x, x).sum().backward()


def test_wrong_gradient_shape_is_a_clear_error():
    class BadShape(cr.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 1

        @staticmethod
        def backward(ctx, grad):
            return grad.sum()

    x = cr.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match=r"BadShape.backward returned a gradient of shape \(\)"):
        BadShape.apply(x).sum().backward()


def test_function_works_under_create_graph():
    a = np.array([0.5, -1.5])
    x = cr.tensor(a, requires_grad=True)
    (g,) = cr.gradients(Cube.apply(x).sum(), x, create_graph=True)  # 3 x^2
    assert g.requires_grad
    (h,) = cr.gradients(g.sum(), x)  # 6 x
    np.testing.assert_allclose(g.data, 3 * a ** 2)
    np.testing.assert_allclose(h.data, 6 * a)


def test_function_in_hessian():
    h = cr.hessian(lambda x: Cube.apply(x).sum())(np.array([1.0, 2.0]))
    np.testing.assert_allclose(h.data, np.diag([6.0, 12.0]))


def test_saved_tensor_changed_in_place_is_detected():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    h = x * 1
    y = Cube.apply(h)
    h += 1
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


def test_function_saved_values_are_freed_after_backward():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = Cube.apply(x)
    loss = y.sum()
    loss.backward()
    assert y.grad_fn.freed
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        loss.backward()


def test_function_without_inputs_needing_grad_records_nothing():
    y = Cube.apply(cr.tensor([2.0]))
    assert y.grad_fn is None and not y.requires_grad
    with cr.no_grad():
        z = Cube.apply(cr.tensor([2.0], requires_grad=True))
    assert z.grad_fn is None
    np.testing.assert_allclose(y.data, [8.0])


def test_function_keeps_float32():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    y = Cube.apply(x)
    y.sum().backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32


def test_function_returning_a_plain_array_gradient():
    class Twice(cr.Function):
        @staticmethod
        def forward(ctx, x):
            return x.data * 2

        @staticmethod
        def backward(ctx, grad):
            return np.full(grad.shape, 2.0) * grad.data

    x = cr.tensor([1.0, 3.0], requires_grad=True)
    (Twice.apply(x) * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [4.0, 12.0])
