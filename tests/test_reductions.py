"""chainrule.reductions against PyTorch, NumPy and float64 finite differences.

Each case maps inputs to one output, weighted by a random w. Checked: values and first-order
gradients against PyTorch (float64; a torch composite of NumPy's meaning where torch's own
function means something else), gradients against central differences, float32 in gives float32
out with float32 gradients, and second order (create_graph=True, a Hessian-vector product
differentiated with respect to the inputs and to w) against PyTorch and finite differences of
the gradient. Zeros (prod, cumprod), ties (sort, median, ptp) and NaNs (the nan functions) have
cases of their own. The meta-test fails when a differentiable row of chainrule.reductions is
reached by no case, in the forward graph or in the graph of a gradient.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import chainrule as cr
import chainrule.reductions as red
from gradtools import (
    assert_close,
    case_ours,
    case_weights,
    check_case_first_order,
    check_second_order,
    ops_in_graph,
    table_rows,
    to_torch,
)

NAN = math.nan


@dataclass
class Case:
    id: str
    make: object  # rng -> list of float64 arrays
    ours: object  # chainrule tensors -> tensor
    theirs: object  # torch tensors -> tensor
    wrt: tuple = None
    fd: bool = True
    second: bool = True
    torch_second: bool = True  # compare the second order with torch (else only fd)
    f32_tol: float = 2e-3

    def inputs(self):
        return [np.asarray(a, np.float64) for a in self.make(np.random.default_rng(5))]

    def diff(self, n):
        return tuple(range(n)) if self.wrt is None else self.wrt


def N(*shape):  # noqa: N802
    return lambda r: [r.standard_normal(shape)]


def C(*values):  # noqa: N802
    return lambda r: [np.array(v, dtype=np.float64) for v in values]


def W(s1, s2):  # noqa: N802 - data and positive weights
    return lambda r: [r.standard_normal(s1), r.uniform(0.5, 2.0, s2)]


# --- torch composites of NumPy's meaning ------------------------------------------------------
def _dims_last(t, dims):
    """``t`` with ``dims`` (None: all) moved last and merged into one axis."""
    dims = tuple(range(t.ndim)) if dims is None else tuple(d % t.ndim for d in dims)
    kept = [d for d in range(t.ndim) if d not in dims]
    moved = t.permute(kept + list(dims))
    return moved.reshape([t.shape[d] for d in kept] + [-1])


def t_prod(t, dims=None):
    return torch.prod(_dims_last(t, dims), -1)


def t_median(t, dim=None, keepdim=False):
    """NumPy's median: the mean of the two middle values of the stable order for an even n."""
    if dim is None or isinstance(dim, tuple):
        if keepdim:
            shape = [1 if dim is None or d in [x % t.ndim for x in dim] else n
                     for d, n in enumerate(t.shape)]
            return t_median(_dims_last(t, dim), -1).reshape(shape)
        return t_median(_dims_last(t, dim), -1)
    s = torch.sort(t, dim=dim, stable=True).values
    n = s.shape[dim]
    mid = s.narrow(dim, n // 2, 1) if n % 2 else s.narrow(dim, n // 2 - 1, 2).mean(
        dim, keepdim=True)
    return mid if keepdim else mid.squeeze(dim)


def t_flat(fn):
    return lambda t: fn(t.reshape(-1), 0)


def t_nan_to(t, value):
    return torch.where(torch.isnan(t), torch.full_like(t, value), t)


def t_average(t, w, dim):
    return (t * w).sum(dim) / w.sum(dim)


ZEROS = [[1.5, 0.0, 2.0, -0.5], [0.0, 0.7, 0.0, 1.2], [0.0, 0.0, 0.0, 0.3],
         [0.9, -1.1, 1.3, 0.8]]  # no zero, one, two, three in a row (and columns likewise)
TIES = [[1.0, 2.0, 2.0, 0.5, 2.0], [3.0, 3.0, 1.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.5, 0.5]]
TIES_EVEN = [[1.0, 2.0, 2.0, 0.5], [3.0, 3.0, 3.0, 1.0], [0.5, 0.5, 0.5, 0.5]]
WITH_NAN = [[1.5, NAN, 2.0, -0.5], [NAN, 0.7, NAN, 1.2], [0.3, -0.2, 1.1, 0.4]]

CASES = [
    # --- prod ------------------------------------------------------------------------------------
    Case("prod-all", N(3, 4), cr.prod, torch.prod),
    Case("prod-axis", N(3, 4), lambda x: cr.prod(x, 1), lambda t: torch.prod(t, 1)),
    Case("prod-negative-axis-keepdims", N(3, 4), lambda x: cr.prod(x, -2, keepdims=True),
         lambda t: torch.prod(t, -2, keepdim=True)),
    Case("prod-tuple", N(2, 3, 4), lambda x: cr.prod(x, (0, 2)), lambda t: t_prod(t, (0, 2))),
    Case("prod-tuple-keepdims", N(2, 3, 4), lambda x: cr.prod(x, (2, 0), keepdims=True),
         lambda t: t_prod(t, (0, 2)).reshape(1, 3, 1)),
    Case("prod-zeros-rows", C(ZEROS), lambda x: cr.prod(x, 1), lambda t: torch.prod(t, 1)),
    Case("prod-zeros-columns", C(ZEROS), lambda x: cr.prod(x, 0), lambda t: torch.prod(t, 0)),
    Case("prod-zeros-all", C([[1.5, 0.0], [2.0, -0.5]]), cr.prod, torch.prod),
    Case("prod-two-zeros-all", C([[1.5, 0.0], [0.0, -0.5]]), cr.prod, torch.prod),
    Case("prod-zeros-tuple", C([ZEROS, ZEROS]), lambda x: cr.prod(x, (0, 2)),
         lambda t: t_prod(t, (0, 2))),
    # --- cumsum / cumprod ------------------------------------------------------------------------
    Case("cumsum-axis", N(3, 4), lambda x: cr.cumsum(x, 1), lambda t: torch.cumsum(t, 1)),
    Case("cumsum-axis0", N(3, 4), lambda x: cr.cumsum(x, 0), lambda t: torch.cumsum(t, 0)),
    Case("cumsum-negative", N(2, 3, 4), lambda x: cr.cumsum(x, -2),
         lambda t: torch.cumsum(t, -2)),
    Case("cumsum-flat", N(3, 4), cr.cumsum, t_flat(torch.cumsum)),
    Case("cumprod-axis", N(3, 4), lambda x: cr.cumprod(x, 1), lambda t: torch.cumprod(t, 1)),
    Case("cumprod-axis0", N(3, 4), lambda x: cr.cumprod(x, 0), lambda t: torch.cumprod(t, 0)),
    Case("cumprod-flat", N(3, 4), cr.cumprod, t_flat(torch.cumprod)),
    Case("cumprod-zeros-rows", C(ZEROS), lambda x: cr.cumprod(x, 1),
         lambda t: torch.cumprod(t, 1)),
    Case("cumprod-zeros-columns", C(ZEROS), lambda x: cr.cumprod(x, 0),
         lambda t: torch.cumprod(t, 0)),
    Case("cumprod-zeros-flat", C(ZEROS), cr.cumprod, t_flat(torch.cumprod)),
    # --- nan functions ---------------------------------------------------------------------------
    Case("nansum-all", C(WITH_NAN), cr.nansum, torch.nansum),
    Case("nansum-axis", C(WITH_NAN), lambda x: cr.nansum(x, 1), lambda t: torch.nansum(t, 1)),
    Case("nansum-keepdims", C(WITH_NAN), lambda x: cr.nansum(x, 0, keepdims=True),
         lambda t: torch.nansum(t, 0, keepdim=True)),
    Case("nansum-no-nan", N(3, 4), lambda x: cr.nansum(x, (0, 1)), torch.nansum),
    Case("nanmean-all", C(WITH_NAN), cr.nanmean, torch.nanmean),
    Case("nanmean-axis", C(WITH_NAN), lambda x: cr.nanmean(x, -1),
         lambda t: torch.nanmean(t, -1)),
    Case("nanmean-tuple-keepdims", C([WITH_NAN, WITH_NAN]),
         lambda x: cr.nanmean(x, (0, 2), keepdims=True),
         lambda t: torch.nanmean(t, (0, 2), keepdim=True)),
    Case("nanprod-axis", C(WITH_NAN), lambda x: cr.nanprod(x, 1),
         lambda t: torch.prod(t_nan_to(t, 1.0), 1)),
    Case("nancumsum-axis", C(WITH_NAN), lambda x: cr.nancumsum(x, 1),
         lambda t: torch.cumsum(t_nan_to(t, 0.0), 1)),
    Case("nancumsum-flat", C(WITH_NAN), cr.nancumsum,
         lambda t: torch.cumsum(t_nan_to(t, 0.0).reshape(-1), 0)),
    Case("nancumprod-axis", C(WITH_NAN), lambda x: cr.nancumprod(x, 0),
         lambda t: torch.cumprod(t_nan_to(t, 1.0), 0)),
    Case("nanmax-axis", C(WITH_NAN), lambda x: cr.nanmax(x, 1),
         lambda t: t_nan_to(t, -math.inf).amax(1)),
    Case("nanmin-all", C(WITH_NAN), cr.nanmin, lambda t: t_nan_to(t, math.inf).amin()),
    Case("nanmax-ties", C([[2.0, NAN, 2.0, 1.0], [NAN, 3.0, 3.0, 3.0]]),
         lambda x: cr.nanmax(x, 1), lambda t: t_nan_to(t, -math.inf).amax(1), fd=False),
    # --- average ---------------------------------------------------------------------------------
    Case("average-plain", N(3, 4), lambda x: cr.average(x, 1), lambda t: t.mean(1)),
    Case("average-same-shape", W((3, 4), (3, 4)), lambda x, w: cr.average(x, 1, w),
         lambda t, w: t_average(t, w, 1)),
    Case("average-all", W((3, 4), (3, 4)), lambda x, w: cr.average(x, weights=w),
         lambda t, w: (t * w).sum() / w.sum()),
    Case("average-1d-weights", W((3, 4), (3,)), lambda x, w: cr.average(x, 0, w),
         lambda t, w: t_average(t, w[:, None], 0)),
    Case("average-tuple-weights", W((2, 3, 4), (4, 2)), lambda x, w: cr.average(x, (2, 0), w),
         lambda t, w: t_average(t, w.T[:, None, :], (0, 2))),
    Case("average-keepdims", W((3, 4), (4,)),
         lambda x, w: cr.average(x, -1, w, keepdims=True),
         lambda t, w: (t * w).sum(-1, keepdim=True) / w.sum()),
    Case("average-returned", W((3, 4), (4,)),
         lambda x, w: cr.average(x, 1, w, returned=True)[0]
         * cr.average(x, 1, w, returned=True)[1],
         lambda t, w: (t * w).sum(1)),
    # --- median ----------------------------------------------------------------------------------
    Case("median-odd-axis", N(3, 5), lambda x: cr.median(x, 1),
         lambda t: torch.median(t, 1).values),
    Case("median-even-axis", N(3, 4), lambda x: cr.median(x, 1),
         lambda t: torch.quantile(t, 0.5, dim=1)),
    Case("median-all", N(3, 4), cr.median, lambda t: torch.quantile(t.reshape(-1), 0.5)),
    Case("median-axis0-keepdims", N(4, 3), lambda x: cr.median(x, 0, keepdims=True),
         lambda t: torch.quantile(t, 0.5, dim=0, keepdim=True)),
    Case("median-tuple", N(2, 3, 4), lambda x: cr.median(x, (0, -1)),
         lambda t: t_median(t, (0, 2))),
    Case("median-tuple-keepdims", N(2, 3, 3), lambda x: cr.median(x, (1, 2), keepdims=True),
         lambda t: t_median(t, (1, 2), keepdim=True)),
    Case("median-ties-odd", C(TIES), lambda x: cr.median(x, 1), lambda t: t_median(t, 1),
         fd=False),
    Case("median-ties-even", C(TIES_EVEN), lambda x: cr.median(x, -1),
         lambda t: t_median(t, -1), fd=False),
    Case("median-ties-all", C(TIES_EVEN), cr.median, t_median, fd=False),
    # --- sort ------------------------------------------------------------------------------------
    Case("sort-last", N(3, 4), cr.sort, lambda t: torch.sort(t, -1).values),
    Case("sort-axis0", N(3, 4), lambda x: cr.sort(x, 0), lambda t: torch.sort(t, 0).values),
    Case("sort-flat", N(3, 4), lambda x: cr.sort(x, None),
         lambda t: torch.sort(t.reshape(-1)).values),
    Case("sort-squared", N(3, 4), lambda x: cr.sort(x * x, 1) ** 2,
         lambda t: torch.sort(t * t, 1).values ** 2),
    Case("sort-ties", C(TIES), lambda x: cr.sort(x, 1),
         lambda t: torch.sort(t, dim=1, stable=True).values, fd=False),
    # --- ptp, amax, amin --------------------------------------------------------------------------
    Case("ptp-all", N(3, 4), cr.ptp, lambda t: t.amax() - t.amin()),
    Case("ptp-axis-keepdims", N(3, 4), lambda x: cr.ptp(x, 1, keepdims=True),
         lambda t: t.amax(1, keepdim=True) - t.amin(1, keepdim=True)),
    Case("ptp-tuple", N(2, 3, 4), lambda x: cr.ptp(x, (0, 2)),
         lambda t: t.amax((0, 2)) - t.amin((0, 2))),
    Case("ptp-ties", C(TIES), lambda x: cr.ptp(x, 1), lambda t: t.amax(1) - t.amin(1),
         fd=False),
    Case("amax", N(3, 4), lambda x: cr.amax(x, 0), lambda t: t.amax(0)),
    Case("amin-ties", C(TIES), lambda x: cr.amin(x, 1), lambda t: t.amin(1), fd=False),
    # --- var / std with ddof (ops' rows, the same checks) -----------------------------------------
    Case("var-ddof1", N(3, 4), lambda x: cr.var(x, 1, ddof=1),
         lambda t: torch.var(t, 1, correction=1)),
    Case("var-ddof1-all", N(3, 4), lambda x: cr.var(x, ddof=1),
         lambda t: torch.var(t, correction=1)),
    Case("var-ddof0-tuple", N(2, 3, 4), lambda x: cr.var(x, (0, 2), keepdims=True),
         lambda t: torch.var(t, (0, 2), correction=0, keepdim=True)),
    Case("std-ddof1", N(3, 4), lambda x: cr.std(x, 0, ddof=1),
         lambda t: torch.std(t, 0, correction=1)),
    Case("std-ddof2-all", N(3, 4), lambda x: cr.std(x, ddof=2),
         lambda t: torch.std(t, correction=2)),
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
    scale = max(1.0, float(np.abs(out64.data).max()))
    assert_close(out32, out64, rtol=tol, atol=tol * scale, what=case.id)
    for a, b in zip(g32, g64):
        if a is not None:
            assert a.dtype == np.float32
            assert_close(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b.data).max())),
                         what=case.id)


SECOND = [c for c in CASES if c.second]


@pytest.mark.parametrize("case", SECOND, ids=[c.id for c in SECOND])
def test_second_order_matches_torch_and_finite_differences(case):
    arrays = case.inputs()
    check_second_order(case.ours, case.theirs if case.torch_second else None, arrays,
                       case.diff(len(arrays)), what=case.id, fd=case.fd)


# --- coverage: every differentiable row of chainrule.reductions has a case ------------------------
def test_every_reduction_row_has_a_case():
    """Rows reached in the forward graph of a case, or in the graph of its gradient (the scan
    and shift rows appear only in cumprod's and prod's backward at zeros)."""
    rows = table_rows(red)
    assert len(rows) >= 8
    exercised = set()
    for case in CASES:
        arrays = case.inputs()
        wrt = case.diff(len(arrays))
        tensors, out = case_ours(case, arrays, wrt)
        ops_in_graph(out, exercised)
        grads = cr.gradients((out * case_weights(out.shape)).sum(), [tensors[i] for i in wrt],
                             create_graph=True)
        for g in grads:
            if g is not None:
                ops_in_graph(g, exercised)
    missing = sorted(name for name, row in rows.items() if id(row) not in exercised)
    assert not missing, f"rows of chainrule.reductions without a test case: {missing}"


def test_every_row_has_a_formula_per_input():
    for name, row in table_rows(red).items():
        assert len(row.formulas) == len(row.vjps), name


def test_public_names_are_exported():
    for name in red.__all__:
        assert callable(getattr(red, name)), name
        assert getattr(cr, name) is getattr(red, name), name
    assert cr.amax is cr.max and cr.amin is cr.min


# --- the rows behind the rules, directly ----------------------------------------------------------
def _scan_loop(a, b, reverse):
    h, out = torch.zeros_like(b[:, 0]), []
    order = range(b.shape[1] - 1, -1, -1) if reverse else range(b.shape[1])
    for i in order:
        h = a[:, i] * h + b[:, i]
        out.append(h)
    return torch.stack(out[::-1] if reverse else out, 1)


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_row_to_second_order(reverse):
    r = np.random.default_rng(2)
    a, b = r.standard_normal((3, 6)), r.standard_normal((3, 6))
    a[0, 2] = a[1, 4] = 0.0
    ours = lambda a, b: red._scan(a, b, axis=1, reverse=reverse)  # noqa: E731
    theirs = lambda a, b: _scan_loop(a, b, reverse)  # noqa: E731
    assert_close(ours(a, b), theirs(to_torch(a), to_torch(b)), what="scan value")
    check_second_order(ours, theirs, [a, b], (0, 1), what=f"scan reverse={reverse}")


def test_cumprod_and_prod_third_order_at_zeros():
    """d3/dx3 of sum(w * prod) with zeros, through create_graph twice, against torch."""
    x = np.array([[0.0, 1.3, -0.7, 0.0, 2.0], [0.5, 0.0, 1.1, 0.9, -1.2]])
    w = np.array([0.3, -1.4])
    for ours, theirs in ((lambda t: cr.prod(t, 1), lambda t: torch.prod(t, 1)),
                         (lambda t: cr.cumprod(t, 1)[:, -1], lambda t: torch.cumprod(t, 1)[:, -1])):
        t, tt = cr.tensor(x, requires_grad=True), to_torch(x, requires_grad=True)
        (g,) = cr.gradients((ours(t) * w).sum(), [t], create_graph=True)
        (gg,) = cr.gradients((g * g).sum(), [t], create_graph=True)
        (ggg,) = cr.gradients((gg * g).sum(), [t])
        (h,) = torch.autograd.grad((theirs(tt) * to_torch(w)).sum(), [tt], create_graph=True)
        (hh,) = torch.autograd.grad((h * h).sum(), [tt], create_graph=True)
        (hhh,) = torch.autograd.grad((hh * h).sum(), [tt])
        assert_close(gg, hh, rtol=1e-9, atol=1e-12)
        assert_close(ggg, hhh, rtol=1e-9, atol=1e-12)


def test_prod_gradient_at_zeros_is_the_product_of_the_others():
    x = np.array(ZEROS)
    t = cr.tensor(x, requires_grad=True)
    cr.prod(t, 1).sum().backward()
    expected = np.array([[np.prod(np.delete(row, j)) for j in range(4)] for row in x])
    np.testing.assert_allclose(t.grad.data, expected, rtol=1e-15, atol=0)
    assert np.count_nonzero(t.grad.data[1:3]) == 0 and t.grad.data[0, 1] == -1.5


def test_prod_without_zeros_underflowing_still_exact():
    """A product that underflows to 0 without a zero entry takes the exact (no division)
    path: each gradient is the product of the others, not 0 / x."""
    x = np.array([1e-200, 1e-200, 1e150, 2.0])
    t = cr.tensor(x, requires_grad=True)
    cr.prod(t).backward()
    expected = [np.prod(np.delete(x, j)) for j in range(4)]
    np.testing.assert_allclose(t.grad.data, expected, rtol=1e-12)


# --- ties: the stable order decides, exactly as a stable argsort ----------------------------------
def test_median_weights_follow_the_stable_order():
    r = np.random.default_rng(7)
    for n in (1, 2, 5, 6, 9):
        x = r.integers(0, 3, (40, n)).astype(float)  # many ties
        w = red._median_weights(x, (1,), np.float64)
        order = np.argsort(x, axis=1, kind="stable")
        expected = np.zeros_like(x)
        ks = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
        for k in ks:
            np.put_along_axis(expected, order[:, k:k + 1], 1.0 / len(ks), axis=1)
        np.testing.assert_array_equal(w, expected, err_msg=f"n={n}")
        idx = red._lower_median_index(x, 1)
        np.testing.assert_array_equal(idx, order[:, (n - 1) // 2:(n - 1) // 2 + 1])


def test_stable_argsort_fast_path_agrees_with_numpy_stable():
    r = np.random.default_rng(8)
    for x in (r.standard_normal((5, 7)), r.integers(0, 3, (5, 7)).astype(float),
              np.array([[NAN, 1.0, NAN, 0.0, 1.0]])):
        for axis in (0, 1):
            np.testing.assert_array_equal(red._stable_argsort(x, axis),
                                          np.argsort(x, axis=axis, kind="stable"))


def test_median_of_a_nan_slice_is_nan_and_sends_the_gradient_to_the_nan():
    x = cr.tensor(np.array([[1.0, NAN, 3.0], [1.0, 2.0, 3.0]]), requires_grad=True)
    out = cr.median(x, 1)
    assert np.isnan(out.data[0]) and out.data[1] == 2.0
    out.sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[0, 1, 0], [0, 1, 0]])


def test_nan_entries_get_zero_gradient_and_all_nan_slices_give_nan():
    x = cr.tensor(np.array([[NAN, NAN], [1.0, NAN]]), requires_grad=True)
    with pytest.warns(RuntimeWarning):
        m = cr.nanmean(x, 1)
    with pytest.warns(RuntimeWarning):
        mx = cr.nanmax(x, 1)
    assert np.isnan(m.data[0]) and m.data[1] == 1.0
    assert np.isnan(mx.data[0]) and mx.data[1] == 1.0
    (g,) = cr.gradients(cr.nansum(x) + (m * cr.tensor([0.0, 1.0])).sum()
                        + (mx * cr.tensor([0.0, 1.0])).sum(), [x])
    np.testing.assert_array_equal(g.data, [[0.0, 0.0], [3.0, 0.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cr.nanmean(np.array([[NAN, 1.0]]), 1), [1.0])


# --- NumPy's results on plain arrays --------------------------------------------------------------
_X = np.random.default_rng(0).standard_normal((3, 4, 5))
_XN = _X.copy()
_XN[0, 1, 2] = _XN[2, 0, 0] = NAN
PLAIN = [
    ("prod", (_X,), {}), ("prod", (_X, 1), {}), ("prod", (_X, (0, 2)), {"keepdims": True}),
    ("prod", (np.arange(1, 7).reshape(2, 3),), {"axis": 0}),
    ("cumsum", (_X,), {}), ("cumsum", (_X, -1), {}), ("cumprod", (_X, 1), {}),
    ("cumsum", (np.arange(6),), {}), ("cumprod", (_X,), {"dtype": np.float32}),
    ("nansum", (_XN,), {}), ("nansum", (_XN, 1), {"keepdims": True}),
    ("nanmean", (_XN, (0, 2)), {}), ("nanprod", (_XN, 2), {}), ("nancumsum", (_XN,), {}),
    ("nancumprod", (_XN, 1), {}), ("nanmax", (_XN, 0), {}), ("nanmin", (_XN,), {}),
    ("average", (_X,), {}), ("average", (_X, 1, _X[0, :, 0]), {"returned": True}),
    ("average", (_X, (2, 0), np.abs(_X[:, 0, :].T)), {}),
    ("average", (np.arange(6).reshape(2, 3), 1, [1, 2, 3]), {}),
    ("median", (_X,), {}), ("median", (_X, 1), {}), ("median", (_X, (0, 2)), {"keepdims": True}),
    ("median", (_X[:, :, :4], -1), {}),
    ("sort", (_X,), {}), ("sort", (_X, 0), {}), ("sort", (_X, None), {}),
    ("argsort", (_X,), {}), ("argsort", (_X, 1), {"kind": "stable"}),
    ("argsort", (_X, None), {}), ("ptp", (_X,), {}), ("ptp", (_X, 1), {"keepdims": True}),
    ("amax", (_X, 1), {}), ("amin", (_X,), {}),
]


@pytest.mark.parametrize("name, args, kwargs", PLAIN,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(PLAIN)])
def test_plain_arrays_give_numpy_results(name, args, kwargs):
    out = getattr(cr, name)(*args, **kwargs)
    expected = getattr(np, name)(*args, **kwargs)
    if isinstance(expected, tuple):
        for a, b in zip(out, expected):
            np.testing.assert_allclose(a, b, rtol=1e-12)
        return
    assert not isinstance(out, cr.Tensor), name
    assert np.shape(out) == np.shape(expected) and np.asarray(out).dtype == expected.dtype
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-15)


def test_float32_arrays_keep_float32():
    x = _X.astype(np.float32)
    for name in ("prod", "cumsum", "cumprod", "nansum", "nanmean", "median", "sort", "ptp",
                 "average", "nanmax"):
        assert np.asarray(getattr(cr, name)(x)).dtype == np.float32, name
        t = cr.tensor(x)
        assert getattr(cr, name)(t).dtype == np.float32, name


def test_tensors_in_give_tensors_out():
    t = cr.tensor(_X)
    for name in red.__all__:
        assert isinstance(getattr(cr, name)(t), cr.Tensor), name
    idx = cr.argsort(cr.tensor(_X, requires_grad=True), 1)
    assert isinstance(idx, cr.Tensor) and idx.dtype == np.int64 and not idx.requires_grad
    np.testing.assert_array_equal(idx.data, np.argsort(_X, 1))


def test_average_returned_matches_numpy_for_tensors():
    w = np.abs(_X[0, :, 0])
    for kwargs in ({}, {"weights": w}):
        avg, scale = cr.average(cr.tensor(_X), 1, returned=True, **kwargs)
        expected = np.average(_X, 1, returned=True, **kwargs)
        assert isinstance(scale, cr.Tensor) and scale.shape == expected[1].shape
        np.testing.assert_allclose(avg.data, expected[0], rtol=1e-12)
        np.testing.assert_allclose(scale.data, expected[1], rtol=1e-12)


def test_numpy_functions_on_tensors_dispatch_here_and_record():
    t = cr.tensor(_X, requires_grad=True)
    outs = [np.prod(t, axis=1), np.cumsum(t, 0), np.cumprod(t), np.median(t, axis=(0, 1)),
            np.sort(t), np.nansum(t), np.nanmean(t, 2), np.average(t, 0), np.ptp(t),
            np.multiply.reduce(t), np.add.accumulate(t, axis=1)]
    for out in outs:
        assert isinstance(out, cr.Tensor) and out.requires_grad
    np.testing.assert_allclose(outs[0].data, np.prod(_X, axis=1), rtol=1e-12)
    np.testing.assert_allclose(outs[3].data, np.median(_X, axis=(0, 1)), rtol=1e-12)


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, error, match", [
    (lambda x: cr.prod(x, 2), ValueError, "prod: axis 2 is out of range"),
    (lambda x: cr.prod(x, (0, 0)), ValueError, "prod: repeated axis"),
    (lambda x: cr.cumsum(x, 1.5), TypeError, "cumsum: axis must be an int"),
    (lambda x: cr.cumprod(x, (0, 1)), TypeError, "cumprod: axis must be an int"),
    (lambda x: cr.median(x, -3), ValueError, "median: axis -3 is out of range"),
    (lambda x: cr.sort(x, 5), ValueError, "sort: axis 5 is out of range"),
    (lambda x: cr.argsort(x, order="f"), TypeError, "argsort: order="),
    (lambda x: cr.ptp(x, out=np.empty(3)), TypeError, "ptp: out="),
    (lambda x: cr.nansum(x, 0, None, None, np.float32), TypeError, "nansum: keepdims"),
    (lambda x: cr.average(x, weights=np.ones(3)), TypeError, r"average: axis must be given"),
    (lambda x: cr.average(x, 1, np.ones(3)), ValueError,
     r"average: weights of shape \(3,\) do not match a of shape \(3, 4\)"),
    (lambda x: cr.average(x, 1, np.zeros(4)), ZeroDivisionError, "average: weights sum to zero"),
    (lambda x: cr.cumsum(x[0, 0], 0), ValueError, "cumsum: axis 0 is out of range for a 0-d"),
    (lambda x: cr.sort(x, stable=True, kind="heapsort"), ValueError, "sort: give kind="),
])
def test_errors_name_the_function(call, error, match):
    with pytest.raises(error, match=match):
        call(cr.tensor(np.ones((3, 4))))


# --- Tensor methods: ndarray's readings, PyTorch's with PyTorch's keywords ------------------------
def _pair(x):
    return cr.tensor(x, requires_grad=True), to_torch(x, requires_grad=True)


def test_methods_match_torch_values_and_gradients():
    x = np.random.default_rng(3).standard_normal((3, 5))
    x[1, 2] = NAN
    y = np.random.default_rng(4).standard_normal((3, 5))
    calls = [
        (lambda t: t.prod(1), lambda t: t.prod(1), y),
        (lambda t: t.prod(dim=0, keepdim=True), lambda t: t.prod(dim=0, keepdim=True), y),
        (lambda t: t.cumsum(1), lambda t: t.cumsum(1), y),
        (lambda t: t.cumsum(dim=0), lambda t: t.cumsum(dim=0), y),
        (lambda t: t.cumprod(dim=1), lambda t: t.cumprod(dim=1), y),
        (lambda t: t.cumprod(), lambda t: t.reshape(-1).cumprod(0), y),  # ndarray's: flattens
        (lambda t: t.nansum(1), lambda t: t.nansum(1), x),
        (lambda t: t.nansum(dim=0, keepdim=True), lambda t: t.nansum(dim=0, keepdim=True), x),
        (lambda t: t.nanmean(), lambda t: t.nanmean(), x),
        (lambda t: t.nanmean(dim=1), lambda t: t.nanmean(dim=1), x),
        (lambda t: t.median(), lambda t: t.median(), y),
        (lambda t: t.median(1).values, lambda t: t.median(1).values, y),
        (lambda t: t.median(dim=0, keepdim=True)[0],
         lambda t: t.median(dim=0, keepdim=True)[0], y),
        (lambda t: t.sort(dim=1).values, lambda t: t.sort(dim=1).values, y),
        (lambda t: t.sort(dim=0, descending=True)[0],
         lambda t: t.sort(dim=0, descending=True)[0], y),
        (lambda t: t.sort(descending=False).values, lambda t: t.sort().values, y),
        (lambda t: t.ptp(1), lambda t: t.amax(1) - t.amin(1), y),
    ]
    for i, (ours, theirs, data) in enumerate(calls):
        a, b = _pair(data)
        out, expected = ours(a), theirs(b)
        assert_close(out, expected, what=f"call {i}: value")
        w = case_weights(expected.shape)
        out.backward(cr.tensor(w)) if out.ndim else (out * w).backward()
        (expected * to_torch(w)).sum().backward()
        assert_close(a.grad, b.grad, what=f"call {i}: gradient")


def test_method_indices_match_torch():
    y = np.random.default_rng(5).standard_normal((4, 5))
    a, b = cr.tensor(y), torch.tensor(y)
    for ours, theirs in ((a.sort(dim=1), b.sort(dim=1)), (a.sort(dim=0, descending=True),
                                                           b.sort(dim=0, descending=True)),
                         (a.median(dim=1), b.median(dim=1)), (a.median(0), b.median(0))):
        np.testing.assert_array_equal(ours.indices.data, theirs.indices.numpy())
        assert ours.indices.dtype == np.int64
    np.testing.assert_array_equal(a.argsort(dim=0, descending=True).data,
                                  b.argsort(dim=0, descending=True).numpy())
    np.testing.assert_array_equal(a.argsort(1, True).data, b.argsort(1, True).numpy())
    np.testing.assert_array_equal(a.argsort().data, np.argsort(y))
    np.testing.assert_array_equal(a.argsort(axis=None).data, np.argsort(y, axis=None))


def test_method_ties_follow_torch_stable_order():
    x = np.array(TIES)
    a, b = cr.tensor(x), torch.tensor(x)
    for desc in (False, True):
        ours, theirs = a.sort(dim=1, descending=desc), b.sort(dim=1, descending=desc,
                                                              stable=True)
        np.testing.assert_array_equal(ours.indices.data, theirs.indices.numpy())
    t = cr.tensor(x, requires_grad=True)
    tt = torch.tensor(x, requires_grad=True)
    t.median().backward()  # every entry equal to the median shares, as torch's median()
    tt.median().backward()
    np.testing.assert_allclose(t.grad.data, tt.grad.numpy())


def test_ambiguous_sort_calls_raise_with_both_spellings():
    x = cr.tensor(np.ones((2, 3)))
    for call in (lambda: x.sort(), lambda: x.sort(0), lambda: x.sort(axis=0),
                 lambda: x.sort(stable=True)):
        with pytest.raises(TypeError, match=r"cr\.sort\(x, axis\).*x\.sort\(dim=\.\.\.\)"):
            call()


def test_median_method_is_torch_lower_median_and_function_is_numpy():
    x = np.array([[4.0, 1.0, 3.0, 2.0]])
    t = cr.tensor(x)
    assert t.median().item() == 2.0 == torch.tensor(x).median().item()
    assert cr.median(t).item() == 2.5 == np.median(x)
    assert "lower" in cr.Tensor.median.__doc__.lower()


def test_keyword_clashes_raise():
    t = cr.tensor(np.ones((2, 3)))
    with pytest.raises(TypeError, match="prod: got both axis"):
        t.prod(0, dim=1)
    with pytest.raises(TypeError, match="nansum: got both keepdims and keepdim"):
        t.nansum(0, True, keepdim=True)
    with pytest.raises(TypeError, match="argsort: got both axis"):
        t.argsort(0, dim=1)
    with pytest.raises(TypeError, match="prod: keepdims must be a bool"):
        t.prod(0, np.float64)  # ndarray.prod's second argument is dtype
