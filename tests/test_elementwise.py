"""chainrule.elementwise, row by row, against PyTorch and float64 finite differences.

Each case maps inputs to one output, weighted by a random w. Checked: values and first-order
gradients against PyTorch (float64), gradients against central differences, float32 in gives
float32 out with float32 gradients back to the leaves, and second order (create_graph=True): a
Hessian-vector product, differentiated with respect to the inputs and to w, against PyTorch and
against finite differences of the gradient. The meta-test at the bottom fails when a
differentiable row of chainrule.elementwise is reached by no case.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import chainrule as cr
import chainrule.elementwise as ew
from gradtools import (
    assert_close,
    case_ours,
    case_weights,
    central_difference,
    check_case_first_order,
    hvp_finite_differences,
    hvp_ours,
    hvp_torch,
    ops_in_graph,
    table_rows,
    to_torch,
)


@dataclass
class Case:
    id: str
    make: object  # rng -> list of float64 arrays
    ours: object  # chainrule tensors -> tensor
    theirs: object  # torch tensors -> tensor
    wrt: tuple = None
    fd: bool = True
    second: bool = True
    f32_tol: float = 2e-3

    def inputs(self):
        return [np.asarray(a, np.float64) for a in self.make(np.random.default_rng(5))]

    def diff(self, n):
        return tuple(range(n)) if self.wrt is None else self.wrt


def N(*shape, scale=1.0):  # noqa: N802
    return lambda r: [scale * r.standard_normal(shape)]


def U(lo, hi, *shape):  # noqa: N802
    return lambda r: [r.uniform(lo, hi, shape)]


def AWAY(*shape):  # noqa: N802 - |x| in [0.5, 2], both signs
    return lambda r: [r.choice([-1.0, 1.0], shape) * r.uniform(0.5, 2.0, shape)]


def NN(s1, s2, scale=1.0):  # noqa: N802
    return lambda r: [scale * r.standard_normal(s1), scale * r.standard_normal(s2)]


def DIV(s1, s2):  # noqa: N802 - x anything, y away from 0 with both signs
    return lambda r: [3 * r.standard_normal(s1),
                      r.choice([-1.0, 1.0], s2) * r.uniform(0.7, 2.0, s2)]


def C(*values):  # noqa: N802
    return lambda r: [np.array(v, dtype=np.float64) for v in values]


def _unary(name, theirs, make, **kw):
    return Case(name, make, getattr(cr, name) if hasattr(cr, name) else getattr(ew, name),
                theirs, **kw)


def _binary(name, theirs, make, **kw):
    return Case(name, make, getattr(ew, name), theirs, **kw)


NAN = math.nan
CASES = [
    # --- trigonometric and hyperbolic ---------------------------------------------------------
    _unary("tan", torch.tan, U(-1.2, 1.2, 3, 4)),
    _unary("sinh", torch.sinh, N(3, 4)),
    _unary("cosh", torch.cosh, N(3, 4)),
    _unary("arcsin", torch.asin, U(-0.9, 0.9, 3, 4)),
    _unary("arccos", torch.acos, U(-0.9, 0.9, 3, 4)),
    _unary("arctan", torch.atan, N(3, 4, scale=2)),
    _unary("arcsinh", torch.asinh, N(3, 4, scale=2)),
    _unary("arccosh", torch.acosh, U(1.2, 3.0, 3, 4)),
    _unary("arctanh", torch.atanh, U(-0.9, 0.9, 3, 4)),
    _binary("arctan2", torch.atan2, NN((3, 4), (3, 4))),
    Case("arctan2-broadcast", NN((3, 1), (4,)), ew.arctan2, torch.atan2),
    _binary("hypot", torch.hypot, NN((3, 4), (3, 4))),
    Case("hypot-broadcast", NN((2, 1, 3), (4, 1)), ew.hypot, torch.hypot),
    _unary("sinc", torch.sinc, N(3, 4)),
    Case("sinc-at-zero", C([0.0, 0.5, -1.5]), ew.sinc, torch.sinc, fd=False, second=False),
    _unary("deg2rad", torch.deg2rad, N(3, 4, scale=90)),
    _unary("rad2deg", torch.rad2deg, N(3, 4)),
    # --- exponentials and logarithms ----------------------------------------------------------
    _unary("log2", torch.log2, U(0.3, 4.0, 3, 4)),
    _unary("log10", torch.log10, U(0.3, 4.0, 3, 4)),
    _unary("log1p", torch.log1p, U(-0.6, 3.0, 3, 4)),
    _unary("expm1", torch.expm1, N(3, 4)),
    _unary("exp2", torch.exp2, N(3, 4)),
    _binary("logaddexp", torch.logaddexp, NN((3, 4), (3, 4), scale=2)),
    Case("logaddexp-broadcast", NN((3, 1), (1, 4), scale=2), ew.logaddexp, torch.logaddexp),
    _binary("logaddexp2", torch.logaddexp2, NN((3, 4), (3, 4), scale=2)),
    Case("logaddexp2-broadcast", NN((4,), (3, 1), scale=2), ew.logaddexp2, torch.logaddexp2),
    # --- powers --------------------------------------------------------------------------------
    _unary("square", torch.square, N(3, 4)),
    _unary("reciprocal", torch.reciprocal, AWAY(3, 4)),
    Case("cbrt", AWAY(3, 4), ew.cbrt, lambda x: torch.sign(x) * x.abs() ** (1 / 3)),
    # --- zero gradient -------------------------------------------------------------------------
    Case("sign", AWAY(3, 4), ew.sign, torch.sign),
    Case("sign-at-zero", C([0.0, -1.0, 2.0]), ew.sign, torch.sign, fd=False),
    _unary("floor", torch.floor, N(3, 4, scale=3)),
    _unary("ceil", torch.ceil, N(3, 4, scale=3)),
    Case("round", N(3, 4, scale=3), ew.round, torch.round),
    Case("round-halves", C([0.5, 1.5, 2.5, -0.5, -2.5, 2.0]), ew.round, torch.round, fd=False),
    Case("round-decimals", N(3, 4, scale=3), lambda x: ew.round(x, 1),
         lambda x: torch.round(x, decimals=1)),
    Case("floor-integers", C([1.0, -2.0, 0.0]), ew.floor, torch.floor, fd=False),
    # --- fmax / fmin -----------------------------------------------------------------------------
    _binary("fmax", torch.fmax, NN((3, 4), (3, 4))),
    Case("fmax-broadcast", NN((3, 1), (4,)), ew.fmax, torch.fmax),
    Case("fmax-ties-and-nan", C([1.0, 2.0, NAN, 3.0, NAN], [1.0, NAN, 4.0, 3.0, NAN]),
         ew.fmax, torch.fmax, fd=False),
    _binary("fmin", torch.fmin, NN((3, 4), (3, 4))),
    Case("fmin-broadcast", NN((2, 3, 1), (1, 4)), ew.fmin, torch.fmin),
    Case("fmin-ties-and-nan", C([1.0, 2.0, NAN, 3.0, NAN], [1.0, NAN, 4.0, 3.0, NAN]),
         ew.fmin, torch.fmin, fd=False),
    # --- remainders ----------------------------------------------------------------------------
    Case("remainder", DIV((3, 4), (3, 4)), ew.remainder, torch.remainder),
    Case("remainder-broadcast", DIV((3, 4), (4,)), ew.remainder, torch.remainder),
    Case("mod", DIV((3, 4), (3, 4)), ew.mod, torch.remainder),
    Case("remainder-scalar-divisor", N(3, 4, scale=3), lambda x: ew.remainder(x, 0.7),
         lambda x: torch.remainder(x, 0.7)),
    Case("fmod", DIV((3, 4), (3, 4)), ew.fmod, torch.fmod),
    Case("fmod-broadcast", DIV((2, 1, 4), (3, 1)), ew.fmod, torch.fmod),
    # --- with a constant second operand ---------------------------------------------------------
    Case("arctan2-y-only", NN((3, 4), (4,)), ew.arctan2, torch.atan2, wrt=(0,)),
    Case("hypot-y-only", NN((3, 4), (4,)), ew.hypot, torch.hypot, wrt=(1,)),
]

IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS), "case ids must be unique"


# --- checks (the harness is gradtools.case_*) ---------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_and_gradient_match_torch_and_finite_differences(case):
    check_case_first_order(case)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_stays_float32(case):
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    t64, out64 = case_ours(case, arrays, wrt)
    w = case_weights(out64.shape)
    g64 = cr.gradients((out64 * w).sum(), [t64[i] for i in wrt])
    t32, out32 = case_ours(case, arrays, wrt, np.float32)
    assert out32.dtype == np.float32, f"{case.id}: output is {out32.dtype}"
    seen = []
    for i in wrt:  # the gradient as it reaches the leaf, before any cast to the leaf's dtype
        t32[i].register_hook(lambda g: seen.append(g.dtype))
    g32 = cr.gradients((out32 * w.astype(np.float32)).sum(), [t32[i] for i in wrt])
    assert seen and all(d == np.float32 for d in seen), f"{case.id}: gradients {seen}"
    tol = case.f32_tol
    finite = np.isfinite(out64.data)
    scale = max(1.0, float(np.abs(out64.data[finite]).max())) if finite.any() else 1.0
    if not case.id.startswith(("floor", "ceil", "round", "sign", "remainder", "mod", "fmod")):
        assert_close(out32, out64, rtol=tol, atol=tol * scale, what=case.id)
    for a, b in zip(g32, g64):
        if a is not None:
            assert a.dtype == np.float32
            assert_close(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b.data).max())),
                         what=case.id)


SECOND = [c for c in CASES if c.second]


def _direction(arrays, wrt):
    rng = np.random.default_rng(3)
    return [rng.standard_normal(arrays[i].shape) for i in wrt]


@pytest.mark.parametrize("case", SECOND, ids=[c.id for c in SECOND])
def test_second_order_matches_torch(case):
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    _, out = case_ours(case, arrays, wrt)
    w = np.random.default_rng(4).standard_normal(out.shape)
    v = _direction(arrays, wrt)
    ours = hvp_ours(case.ours, arrays, wrt, w, v)
    theirs = hvp_torch(case.theirs, arrays, wrt, w, v)
    for i, a, b in zip(list(wrt) + ["w"], ours, theirs):
        assert_close(a, b, rtol=1e-6, atol=1e-8, what=f"{case.id}: second derivative, {i}")


SECOND_FD = [c for c in CASES if c.second and c.fd]


@pytest.mark.parametrize("case", SECOND_FD, ids=[c.id for c in SECOND_FD])
def test_second_order_matches_finite_differences_of_the_gradient(case):
    """H v from create_graph equals (grad(x + eps v) - grad(x - eps v)) / (2 eps)."""
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    _, out = case_ours(case, arrays, wrt)
    w = np.random.default_rng(4).standard_normal(out.shape)
    v = _direction(arrays, wrt)
    hv = hvp_ours(case.ours, arrays, wrt, w, v)[:-1]
    numeric = hvp_finite_differences(case.ours, arrays, wrt, w, v)
    for i, a, b in zip(wrt, hv, numeric):
        assert_close(a, b, rtol=1e-4, atol=1e-5, what=f"{case.id}: H v of input {i} vs fd")


# --- coverage: every differentiable row of chainrule.elementwise has a case ----------------------
def test_every_elementwise_row_has_a_case():
    rows = table_rows(ew)
    assert len(rows) >= 32
    exercised = set()
    for case in CASES:
        arrays = case.inputs()
        wrt = case.diff(len(arrays))
        _, out = case_ours(case, arrays, wrt)
        ops_in_graph(out, exercised)
    missing = sorted(name for name, row in rows.items() if id(row) not in exercised)
    assert not missing, f"rows of chainrule.elementwise without a test case: {missing}"


def test_every_row_has_a_formula_per_input():
    for name, row in table_rows(ew).items():
        assert len(row.formulas) == len(row.vjps), name


def test_public_names_are_exported():
    for name in ew.__all__:
        assert callable(getattr(ew, name)), name
        if name != "sign":  # cr.sign stays ops.sign, a row without gradient
            assert getattr(cr, name) is getattr(ew, name), name
    assert ew.mod is ew.remainder


# --- NumPy's semantics on plain arrays ---------------------------------------------------------
UNARY_NUMPY = ["tan", "sinh", "cosh", "arcsin", "arccos", "arctan", "arcsinh", "arctanh", "log2",
               "log10", "log1p", "expm1", "exp2", "square", "reciprocal", "cbrt", "sinc", "sign",
               "floor", "ceil", "round", "deg2rad", "rad2deg"]
BINARY_NUMPY = ["arctan2", "hypot", "fmax", "fmin", "logaddexp", "logaddexp2", "remainder",
                "mod", "fmod"]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_plain_arrays_give_numpy_results(dtype):
    r = np.random.default_rng(0)
    x = r.uniform(-0.9, 0.9, (3, 4)).astype(dtype)
    y = (r.uniform(0.5, 2.0, (4,)) * r.choice([-1, 1], 4)).astype(dtype)
    for name in UNARY_NUMPY:
        with np.errstate(invalid="ignore", divide="ignore"):  # logs of negatives: nan, as NumPy
            out, expected = getattr(ew, name)(x), getattr(np, name)(x)
        assert type(out) is np.ndarray and out.dtype == dtype, name
        np.testing.assert_array_equal(out, expected, err_msg=name)
    out = ew.arccosh(x + 2)
    assert type(out) is np.ndarray and out.dtype == dtype
    for name in BINARY_NUMPY:
        out = getattr(ew, name)(x, y)
        assert type(out) is np.ndarray and out.dtype == dtype and out.shape == (3, 4), name
        np.testing.assert_array_equal(out, getattr(np, name)(x, y), err_msg=name)
    np.testing.assert_array_equal(ew.round(x * 10, 1), np.round(x * 10, 1))


def test_float32_tensor_with_python_number_stays_float32():
    x = cr.tensor(np.array([0.3, -1.2, 2.5], np.float32), requires_grad=True)
    for f in (ew.arctan2, ew.hypot, ew.fmax, ew.fmin, ew.logaddexp, ew.logaddexp2, ew.remainder,
              ew.fmod):
        out = f(x, 0.7)
        assert out.dtype == np.float32, f.name
        (g,) = cr.gradients(out.sum(), [x])
        assert g.dtype == np.float32, f.name
        out = f(0.7, x)
        assert out.dtype == np.float32, f.name


def test_reciprocal_of_integers_is_float():
    np.testing.assert_array_equal(ew.reciprocal(np.array([2, 4])), [0.5, 0.25])


def test_zero_gradient_rows_give_zeros_even_for_a_nan_cotangent():
    x = cr.tensor([0.4, -1.6], requires_grad=True)
    for f in (ew.floor, ew.ceil, ew.round, ew.sign):
        (g,) = cr.gradients(f(x), [x], grad_outputs=[cr.tensor([np.nan, 1.0])])
        np.testing.assert_array_equal(g.data, [0.0, 0.0])


def test_remainder_of_a_number_by_a_tensor():
    """``7.5 % y`` (torch 2.13 has no derivative for remainder(Scalar, Tensor)): d/dy is
    -floor(7.5 / y), checked against finite differences."""
    y = np.array([-1.1, 0.8, 2.0, 3.1])
    t = cr.tensor(y, requires_grad=True)
    (g,) = cr.gradients(ew.remainder(7.5, t).sum(), [t])
    np.testing.assert_array_equal(g.data, -np.floor(7.5 / y))
    (numeric,) = central_difference(lambda a: float(np.remainder(7.5, a).sum()), [y])
    assert_close(g, numeric, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(ew.remainder(7.5, t).data, torch.remainder(7.5, to_torch(y)))


def test_integer_remainder_and_fmod_follow_torch():
    a, b = np.array([5, -5, 7, -7]), np.array([3, 3, -2, -2])
    for ours, theirs in ((ew.remainder, torch.remainder), (ew.fmod, torch.fmod)):
        out = ours(cr.tensor(a), cr.tensor(b))
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out.data, theirs(torch.tensor(a), torch.tensor(b)))


def test_tensor_methods_and_the_percent_operator_match_torch():
    import torch

    a = np.array([1.5, -2.5, 3.25])
    x, t = cr.tensor(a, requires_grad=True), torch.tensor(a, requires_grad=True)
    ours = (x % 2.0).sum() + (7.5 % x).sum() + x.tan().sum() + x.atan2(cr.tensor(a * 0 + 1)).sum()
    theirs = ((t % 2.0).sum() + torch.remainder(torch.tensor(7.5, dtype=t.dtype), t).sum()
              + t.tan().sum() + t.atan2(torch.ones_like(t)).sum())
    np.testing.assert_allclose(ours.item(), theirs.item(), rtol=1e-12)
    ours.backward()
    expected = (torch.autograd.grad(((t % 2.0).sum() + t.tan().sum()
                                     + t.atan2(torch.ones_like(t)).sum()), t)[0].numpy()
                - np.floor(7.5 / a))  # d(7.5 % x)/dx = -floor(7.5 / x): torch has no rule for it
    np.testing.assert_allclose(x.grad.data, expected, rtol=1e-12)
    z = cr.tensor(np.array([5.0, -5.0], np.float32))
    z %= 3.0
    assert z.dtype == np.float32 and z.data.tolist() == [2.0, 1.0]
    assert x.asin is not None and cr.tensor([0.5]).round().item() == 0.0


def test_clip_with_tensor_bounds_gives_each_bound_its_gradient_as_torch_clamp():
    x = np.array([[0.5, -1.0, 2.0], [0.2, 0.3, -0.4]])
    lo, hi = np.array(0.3), np.array([0.4, 1.0, 1.5])  # x[1, 1] ties with lo: x keeps it
    w = np.arange(6.0).reshape(2, 3)
    ours = [cr.tensor(a, requires_grad=True) for a in (x, lo, hi)]
    (cr.clip(*ours) * w).sum().backward()
    theirs = [torch.tensor(a, requires_grad=True) for a in (x, lo, hi)]
    (torch.clamp(*theirs) * torch.tensor(w)).sum().backward()
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a.grad.data, b.grad.numpy())
    assert cr.clip(cr.tensor(x), min=cr.tensor(lo)).tolist() == np.maximum(x, lo).tolist()
    # second order: d/dx of sum((dL/dx)^2 * x) with L = sum(clip(x, lo, hi)^3)
    def ours_second(a, b, c):
        g = cr.grad(lambda v: (cr.clip(v, b, c) ** 3).sum())(a)
        return (g * g * a).sum()

    got = cr.grad(ours_second)(*(cr.tensor(a) for a in (x, lo, hi)))
    tx = torch.tensor(x, requires_grad=True)
    (g,) = torch.autograd.grad((torch.clamp(tx, torch.tensor(lo), torch.tensor(hi)) ** 3).sum(),
                               tx, create_graph=True)
    (expected,) = torch.autograd.grad((g * g * tx).sum(), tx)
    np.testing.assert_allclose(got.data, expected.numpy(), rtol=1e-12)
