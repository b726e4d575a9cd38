import numpy as np
import pytest

import chainrule as cr
from chainrule.inspect.gradcheck import GradcheckError


class Cube(cr.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x


class WrongCube(Cube):
    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 2 * x  # wrong: d x^3 / dx is 3 x^2


def test_passes_on_correct_ops():
    x = np.array([[0.3, -1.2, 0.7], [1.5, 0.1, -0.4]])
    w = np.array([0.5, -0.25, 2.0])
    report = cr.gradcheck(lambda a, b: cr.tanh(a * b).sum(axis=1) + cr.sigmoid(a @ b), x, w)
    assert report.passed and bool(report)
    assert report.mode == "jacobian" and len(report.inputs) == 2
    assert all(c.max_abs_error < 1e-6 for c in report.inputs)
    assert "passed" in str(report) and "input 0 (a" in str(report)


def test_inputs_become_float64_and_custom_function_passes():
    x = cr.tensor([0.5, -1.0, 2.0], requires_grad=True)  # float32 in, float64 inside
    seen = []

    def f(t):
        seen.append(t.dtype)
        return Cube.apply(t)

    assert cr.gradcheck(f, x).passed
    assert set(seen) == {np.dtype(np.float64)}
    assert x.dtype == np.float32 and x.grad is None


def test_catches_wrong_backward_and_names_input_and_element():
    x = np.array([0.5, -1.0, 2.0, 1.5])
    report = cr.gradcheck(lambda x: WrongCube.apply(x), x)
    assert not report.passed
    (check,) = report.inputs
    # |3x^2 - 2x| is largest at x = 2.0: analytic 4 (2x) against numeric 12 (3x^2).
    assert check.worst_index == (2,) and check.worst_output == (2,)
    assert check.analytic == pytest.approx(4.0) and check.numeric == pytest.approx(12.0, rel=1e-6)
    text = str(report)
    assert "FAILED" in text and "input 0 (x" in text and "element (2,)" in text
    with pytest.raises(GradcheckError, match=r"input 0 \(x.*element \(2,\)"):
        cr.gradcheck(lambda x: WrongCube.apply(x), x, raise_on_failure=True)


def test_large_outputs_use_random_vector_jacobian_products():
    x = np.linspace(-1, 1, 100)
    assert cr.gradcheck(cr.tanh, x).mode == "vjp"
    assert cr.gradcheck(cr.tanh, x).passed
    report = cr.gradcheck(lambda x: WrongCube.apply(x), x)
    assert report.mode == "vjp" and not report.passed
    assert report.inputs[0].worst_output is None


def test_constants_are_not_checked():
    target = cr.tensor([1.0, 2.0])  # no requires_grad: a float64 constant, not checked
    report = cr.gradcheck(lambda p, t: ((p - t) ** 2).sum(), [0.5, 0.5], target)
    assert report.passed and [c.position for c in report.inputs] == [0]


def test_rejects_non_tensor_output():
    with pytest.raises(TypeError, match="gradcheck: f must return a Tensor"):
        cr.gradcheck(lambda x: 1.0, [1.0])


@pytest.mark.parametrize("inputs", [
    (cr.tensor([1.0, 2.0]),),  # the reported case: a float tensor without requires_grad
    (cr.tensor([1.0, 2.0]), np.array([1, 2])),  # and an integer array, passed unchanged
    (),
])
def test_a_check_that_checked_nothing_does_not_pass(inputs):
    with pytest.raises(ValueError, match=r"gradcheck: nothing was checked.*requires_grad=True"):
        cr.gradcheck(lambda *a: cr.tensor(1.0) if not a else (a[0] * a[0]).sum(), *inputs)
