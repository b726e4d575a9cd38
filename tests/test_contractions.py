"""chainrule.contractions against PyTorch, NumPy and float64 finite differences.

Each case maps inputs to one output, weighted by a random w. Checked: values and first-order
gradients against PyTorch (float64), gradients against central differences, float32 in gives
float32 out with float32 gradients back to the leaves, and second order (create_graph=True)
against PyTorch and against finite differences of the gradient (gradtools). Then NumPy's
semantics on plain arrays, error messages, the Tensor methods and their clash rules, a property
test of random einsum subscripts, and a meta-test that every row of the module has a case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
import chainrule.contractions as con
from gradtools import (
    assert_close,
    case_ours,
    case_weights,
    central_difference,
    check_case_first_order,
    check_second_order,
    ops_in_graph,
    table_rows,
    to_torch,
)


@dataclass
class Case:
    id: str
    shapes: tuple
    ours: object  # chainrule tensors -> tensor
    theirs: object  # torch tensors -> tensor
    wrt: tuple = None
    second: bool = True

    def inputs(self):
        rng = np.random.default_rng(5)
        return [rng.standard_normal(s) for s in self.shapes]

    def diff(self, n):
        return tuple(range(n)) if self.wrt is None else self.wrt


def E(spec, *shapes, tag="", **kw):  # noqa: N802 - an einsum case, torch.einsum the reference
    return Case(f"einsum[{spec}]{tag}", shapes, lambda *xs: cr.einsum(spec, *xs),
                lambda *xs: torch.einsum(spec, *xs), **kw)


def _t_trace(x, offset=0, a1=0, a2=1):
    return torch.diagonal(x, offset, a1, a2).sum(-1)


def _t_dot(a, b):
    if a.ndim == 0 or b.ndim == 0:
        return a * b
    if b.ndim == 1:
        return a @ b
    return torch.tensordot(a, b, dims=([a.ndim - 1], [b.ndim - 2]))


def _t_inner(a, b):
    return a * b if a.ndim == 0 or b.ndim == 0 else torch.inner(a, b)


CASES = [
    # --- einsum ------------------------------------------------------------------------------
    E("ij,jk->ik", (3, 4), (4, 2)),
    E("ij,jk", (3, 4), (4, 2)),
    E("ij,kj", (3, 4), (2, 4)),
    E("ij->ji", (3, 4)),
    E("ij->", (3, 4)),
    E("ij->i", (3, 4)),
    E("i,i", (5,), (5,)),
    E("i,j->ij", (3,), (4,)),
    E("ii->i", (4, 4)),
    E("ii", (4, 4)),
    E("iij->j", (3, 3, 2)),
    E("iji->ij", (3, 2, 3)),
    E("i,jj->ij", (3,), (4, 4)),
    E("ijk,k->i", (2, 3, 4), (4,)),
    E("ij,jk,kl->il", (2, 3), (3, 4), (4, 2)),
    E("bij,bjk->bik", (2, 3, 4), (2, 4, 2)),
    E("...ij,...jk->...ik", (2, 1, 3, 4), (5, 4, 2)),
    E("...i,...i->...", (3, 4), (1, 4)),
    E("i...->...", (3, 2, 2)),
    E("ij,kj->ik", (3, 1), (2, 4), tag="-broadcast"),  # label j of size 1 broadcasts against 4
    E("ij,ij,ij->i", (2, 3), (2, 3), (2, 3)),
    E("ij,jk->ik", (3, 4), (4, 2), wrt=(1,), tag="-y-only"),
    Case("einsum[optimize]", ((2, 3), (3, 4), (4, 5)),
         lambda a, b, c: cr.einsum("ij,jk,kl->il", a, b, c, optimize=True),
         lambda a, b, c: torch.einsum("ij,jk,kl->il", a, b, c)),
    Case("einsum[sublists]", ((3, 4), (4, 2)), lambda a, b: cr.einsum(a, [0, 1], b, [1, 2], [0, 2]),
         lambda a, b: a @ b),
    # --- tensordot, dot, inner, outer, kron ---------------------------------------------------
    Case("tensordot[int2]", ((2, 3, 4), (3, 4, 5)), cr.tensordot,
         lambda a, b: torch.tensordot(a, b, 2)),
    Case("tensordot[int0]", ((2, 3), (4,)), lambda a, b: cr.tensordot(a, b, 0),
         lambda a, b: torch.tensordot(a, b, 0)),
    Case("tensordot[pairs]", ((3, 2, 4), (4, 5, 3)),
         lambda a, b: cr.tensordot(a, b, ([0, 2], [2, 0])),
         lambda a, b: torch.tensordot(a, b, ([0, 2], [2, 0]))),
    Case("tensordot[ints]", ((3, 4), (5, 3)), lambda a, b: cr.tensordot(a, b, (0, 1)),
         lambda a, b: torch.tensordot(a, b, ([0], [1]))),
    Case("dot[scalar]", ((), (3, 2)), cr.dot, _t_dot),
    Case("dot[1d1d]", ((4,), (4,)), cr.dot, _t_dot),
    Case("dot[2d2d]", ((3, 4), (4, 2)), cr.dot, _t_dot),
    Case("dot[1d2d]", ((3,), (3, 2)), cr.dot, _t_dot),
    Case("dot[nd1d]", ((2, 3, 4), (4,)), cr.dot, _t_dot),
    Case("dot[3d2d]", ((2, 3, 4), (4, 2)), cr.dot, _t_dot),
    Case("dot[ndmd]", ((2, 3), (4, 3, 2)), cr.dot, _t_dot),
    Case("dot[1d3d]", ((3,), (2, 3, 2)), cr.dot, _t_dot),
    Case("inner[1d]", ((4,), (4,)), cr.inner, _t_inner),
    Case("inner[nd]", ((2, 3, 4), (5, 4)), cr.inner, _t_inner),
    Case("inner[scalar]", ((3,), ()), cr.inner, _t_inner),
    Case("outer", ((3,), (4,)), cr.outer, torch.outer),
    Case("outer[flattens]", ((2, 2), (3, 1)), cr.outer,
         lambda a, b: torch.outer(a.flatten(), b.flatten())),
    Case("kron", ((2, 3), (3, 2)), cr.kron, torch.kron),
    Case("kron[ndims]", ((2,), (2, 3)), cr.kron, torch.kron),
    Case("kron[3d]", ((2, 1, 2), (1, 3, 2)), cr.kron, torch.kron),
    # --- trace, diag, diagonal, tril, triu ----------------------------------------------------
    Case("trace", ((4, 4),), cr.trace, torch.trace),
    Case("trace[offset]", ((3, 5),), lambda x: cr.trace(x, 2), lambda x: _t_trace(x, 2)),
    Case("trace[axes]", ((3, 2, 3),), lambda x: cr.trace(x, -1, 0, 2),
         lambda x: _t_trace(x, -1, 0, 2)),
    Case("diag[1d]", ((3,),), cr.diag, torch.diag),
    Case("diag[1d,k]", ((3,),), lambda v: cr.diag(v, 2), lambda v: torch.diag(v, 2)),
    Case("diag[1d,-k]", ((3,),), lambda v: cr.diag(v, -1), lambda v: torch.diag(v, -1)),
    Case("diag[2d]", ((3, 4),), cr.diag, torch.diag),
    Case("diag[2d,k]", ((3, 4),), lambda x: cr.diag(x, -1), lambda x: torch.diag(x, -1)),
    Case("diagonal", ((3, 4),), cr.diagonal, torch.diagonal),
    Case("diagonal[3d]", ((3, 4, 5),), lambda x: cr.diagonal(x, 1, 2, 0),
         lambda x: torch.diagonal(x, 1, 2, 0)),
    Case("diagonal[neg]", ((4, 3, 2),), lambda x: cr.diagonal(x, -2, 0, 1),
         lambda x: torch.diagonal(x, -2, 0, 1)),
    Case("tril", ((4, 3),), cr.tril, torch.tril),
    Case("tril[k,batch]", ((2, 3, 4),), lambda x: cr.tril(x, 1), lambda x: torch.tril(x, 1)),
    Case("tril[1d]", ((3,),), cr.tril, lambda x: torch.tril(x.expand(3, 3))),
    Case("triu", ((3, 4),), cr.triu, torch.triu),
    Case("triu[k]", ((4, 4),), lambda x: cr.triu(x, -1), lambda x: torch.triu(x, -1)),
    # --- Tensor methods ----------------------------------------------------------------------
    Case("method.dot", ((3, 4), (4,)), lambda a, b: a.dot(b), lambda a, b: a @ b),
    Case("method.trace", ((3, 3),), lambda x: x.trace(), torch.trace),
    Case("method.diagonal", ((3, 4, 2),), lambda x: x.diagonal(1, dim1=1, dim2=0),
         lambda x: x.diagonal(1, dim1=1, dim2=0)),
    Case("method.diag", ((3,),), lambda x: x.diag(1), lambda x: x.diag(1)),
    Case("method.tril", ((3, 3),), lambda x: x.tril(-1), lambda x: x.tril(-1)),
    Case("method.triu", ((3, 3),), lambda x: x.triu(1), lambda x: x.triu(1)),
    Case("method.outer", ((3,), (2,)), lambda a, b: a.outer(b), lambda a, b: a.outer(b)),
    Case("method.inner", ((2, 3), (3,)), lambda a, b: a.inner(b), lambda a, b: a.inner(b)),
    Case("method.kron", ((2, 2), (2,)), lambda a, b: a.kron(b), lambda a, b: a.kron(b)),
    # --- second order through the diagonal rows ------------------------------------------------
    Case("diag-of-square", ((3, 3),), lambda x: cr.diag(x * x), lambda x: torch.diag(x * x)),
    Case("embed-of-square", ((3,),), lambda v: cr.diag(v * v, 1) * cr.diag(v, 1),
         lambda v: torch.diag(v * v, 1) * torch.diag(v, 1)),
    Case("einsum[ii->i]-of-product", ((3, 3), (3, 3)),
         lambda a, b: cr.einsum("ii->i", a * b) * cr.einsum("ij->i", a),
         lambda a, b: torch.einsum("ii->i", a * b) * torch.einsum("ij->i", a)),
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
    assert_close(out32, out64, rtol=1e-4, atol=1e-4, what=case.id)
    for a, b in zip(g32, g64):
        assert a.dtype == np.float32
        assert_close(a, b, rtol=1e-4, atol=1e-4, what=case.id)


SECOND = [c for c in CASES if c.second]


@pytest.mark.parametrize("case", SECOND, ids=[c.id for c in SECOND])
def test_second_order_matches_torch_and_finite_differences(case):
    arrays = case.inputs()
    check_second_order(case.ours, case.theirs, arrays, case.diff(len(arrays)), what=case.id)


def test_second_order_of_a_float32_graph_stays_float32():
    x = cr.tensor(np.random.default_rng(0).standard_normal((3, 3)), dtype=np.float32,
                  requires_grad=True)
    y = (cr.einsum("ii->i", x * x) * cr.trace(x) * cr.diag(cr.diagonal(x), 1).sum()).sum()
    (g,) = cr.gradients(y, [x], create_graph=True)
    (h,) = cr.gradients((g * g).sum(), [x])
    assert g.dtype == np.float32 and h.dtype == np.float32


# --- coverage: every differentiable row of chainrule.contractions has a case ---------------------
def test_every_contractions_row_has_a_case():
    rows = table_rows(con)
    assert {"_einsum", "_embed", "_diagonal", "_trace", "_tensordot_row"} <= set(rows)
    exercised = set()
    for case in CASES:
        arrays = case.inputs()
        _, out = case_ours(case, arrays, case.diff(len(arrays)))
        ops_in_graph(out, exercised)
    missing = sorted(name for name, row in rows.items() if id(row) not in exercised)
    assert not missing, f"rows of chainrule.contractions without a test case: {missing}"


def test_every_row_has_a_formula_per_input():
    for name, row in table_rows(con).items():
        assert len(row.formulas) == len(row.vjps), name


def test_public_names_are_exported():
    for name in con.__all__:
        assert getattr(cr, name) is getattr(con, name), name
        assert getattr(con, name).__doc__, name


# --- NumPy's semantics on plain arrays ---------------------------------------------------------
R = np.random.default_rng(2)
A34, B45, V4, SQ = R.standard_normal((3, 4)), R.standard_normal((4, 5)), R.standard_normal(4), \
    R.standard_normal((4, 4))
NUMPY_CALLS = [
    ("einsum", ("ij,jk->ik", A34, B45), {}),
    ("einsum", ("ii->i", SQ), {}),
    ("einsum", ("...j,j", A34, V4), {"optimize": True}),
    ("tensordot", (A34, B45), {"axes": 1}),
    ("dot", (A34, V4), {}),
    ("inner", (A34, A34), {}),
    ("outer", (A34, V4), {}),
    ("kron", (A34, V4), {}),
    ("trace", (SQ,), {"offset": 1}),
    ("diag", (V4,), {"k": -1}),
    ("diag", (SQ,), {}),
    ("diagonal", (A34,), {"offset": 1}),
    ("tril", (A34,), {"k": -1}),
    ("triu", (V4,), {}),
    ("einsum", ("ij,jk", np.arange(6).reshape(2, 3), np.arange(6).reshape(3, 2)), {}),
    ("dot", (np.arange(3), np.arange(3)), {}),
    ("trace", (np.arange(9).reshape(3, 3),), {}),
    ("tril", (np.arange(9).reshape(3, 3),), {}),
]


@pytest.mark.parametrize("name,args,kwargs", NUMPY_CALLS,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(NUMPY_CALLS)])
def test_plain_arrays_give_numpys_result(name, args, kwargs):
    ours = getattr(cr, name)(*args, **kwargs)
    theirs = getattr(np, name)(*args, **kwargs)
    assert not isinstance(ours, cr.Tensor)
    assert type(ours) is type(theirs) and np.shape(ours) == np.shape(theirs)
    assert np.asarray(ours).dtype == np.asarray(theirs).dtype
    np.testing.assert_array_equal(ours, theirs)


def test_integer_tensors_give_integer_results_without_gradient():
    a = cr.tensor(np.arange(6).reshape(2, 3))
    b = cr.tensor(np.arange(6).reshape(3, 2))
    for out, expected in [(cr.einsum("ij,jk", a, b), np.einsum("ij,jk", a.data, b.data)),
                          (cr.dot(a, b), np.dot(a.data, b.data)),
                          (cr.trace(a), np.trace(a.data)), (cr.tril(a), np.tril(a.data)),
                          (cr.kron(a, b), np.kron(a.data, b.data))]:
        assert isinstance(out, cr.Tensor) and not out.requires_grad
        assert out.dtype.kind == "i"
        np.testing.assert_array_equal(out.data, expected)


def test_mixed_dtypes_promote_as_pytorch():
    x = cr.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    i = cr.tensor(np.ones((3,), np.int64))
    out = cr.einsum("ij,j->i", x, i)
    assert out.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32


def test_large_einsum_gradients_take_the_blas_path_and_match_torch():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((40, 50)), rng.standard_normal((50, 30))
    ta, tb = cr.tensor(a, requires_grad=True), cr.tensor(b, requires_grad=True)
    (cr.einsum("ij,jk->ik", ta, tb) ** 2).sum().backward()
    xa, xb = to_torch(a, True), to_torch(b, True)
    (torch.einsum("ij,jk->ik", xa, xb) ** 2).sum().backward()
    assert_close(ta.grad, xa.grad, rtol=1e-10)
    assert_close(tb.grad, xb.grad, rtol=1e-10)


def test_lists_and_arrays_mix_with_tensors():
    x = cr.tensor(np.ones(3, np.float32), requires_grad=True)
    assert cr.einsum("i,i", x, [1.0, 2.0, 3.0]).dtype == np.float32
    assert cr.outer(x, [1.0, 2.0]).shape == (3, 2)
    np.testing.assert_allclose(cr.dot(x, np.arange(3.0, dtype=np.float32)).data, 3.0)


def test_numpy_functions_on_tensors_dispatch_here():
    x = cr.tensor(np.random.default_rng(0).standard_normal((3, 3)), requires_grad=True)
    out = np.einsum("ij,jk->ik", x, x) + np.trace(x) + np.tril(x, -1) + np.dot(x, x)
    assert isinstance(out, cr.Tensor) and out.requires_grad
    out.sum().backward()
    assert x.grad.shape == (3, 3)


@pytest.mark.parametrize("spec,shapes", [
    ("bA,c", [(2, 3), (4,)]), ("Ba,aB", [(2, 3), (3, 2)]),
    ("...ij,...jk", [(2, 1, 3, 4), (5, 4, 2)]), ("i...,i...", [(3, 2), (3, 1)]),
    ("a...b,b...->...", [(2, 3, 4), (4, 3)]), ("i ,i", [(3,), (3,)]),
])
def test_einsum_spellings_match_numpy_on_tensors(spec, shapes):
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s) for s in shapes]
    out = cr.einsum(spec, *[cr.tensor(a, requires_grad=True) for a in arrays])
    expected = np.einsum(spec, *arrays)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)


def test_one_operand_einsum_result_does_not_alias_its_input():
    x = cr.tensor(np.ones((3, 3)), requires_grad=True)
    y = cr.einsum("ij->ji", x)
    assert not np.shares_memory(y.data, x.data)


def test_gradient_of_summed_away_labels_is_writeable_and_correct():
    x = cr.tensor(np.ones((2, 3)), requires_grad=True)
    cr.einsum("ij->", x).backward()
    assert x.grad.data.flags.writeable
    np.testing.assert_array_equal(x.grad.data, np.ones((2, 3)))


# --- errors --------------------------------------------------------------------------------------
T34 = cr.tensor(A34, requires_grad=True)
T45 = cr.tensor(B45)


@pytest.mark.parametrize("call,kind,words", [
    (lambda: cr.einsum("ij,jk->ik", T34, cr.tensor(A34)), ValueError,
     ["einsum", "'j'", "size 3", "4"]),
    (lambda: cr.einsum("ij,jk->ik", A34, A34), ValueError, ["einsum", "'j'", "(3, 4)"]),
    (lambda: cr.einsum("ij,jk->ik", T34), ValueError, ["einsum", "2 operand", "1"]),
    (lambda: cr.einsum("ijk->i", T34), ValueError, ["einsum", "'ijk'", "2 dimension"]),
    (lambda: cr.einsum("ij->k", T34), ValueError, ["einsum", "'k'"]),
    (lambda: cr.einsum("i1->i", T34), ValueError, ["einsum", "'1'"]),
    (lambda: cr.einsum("...i->i", cr.tensor(np.ones((2, 3, 4)))), ValueError,
     ["einsum", "'...'"]),
    (lambda: cr.einsum("ij", T34, out=np.zeros(3)), TypeError, ["einsum", "out="]),
    (lambda: cr.tensordot(T34, T45, 2), ValueError, ["tensordot", "(3, 4)", "(4, 5)"]),
    (lambda: cr.tensordot(T34, T45, ([0], [1])), ValueError, ["tensordot", "size 3"]),
    (lambda: cr.tensordot(T34, T45, ([0, 1], [0])), ValueError, ["tensordot", "length"]),
    (lambda: cr.tensordot(A34, A34, 1), ValueError, ["tensordot", "(3, 4)"]),
    (lambda: cr.dot(T34, T34), ValueError, ["dot", "(3, 4)", "not aligned"]),
    (lambda: cr.dot(A34, A34), ValueError, ["dot", "(3, 4)", "not aligned"]),
    (lambda: cr.inner(T34, T45), ValueError, ["inner", "(3, 4)", "(4, 5)"]),
    (lambda: cr.diag(cr.tensor(np.ones((2, 2, 2)))), ValueError, ["diag", "(2, 2, 2)"]),
    (lambda: cr.diagonal(T34, 0, 1, 1), ValueError, ["diagonal", "same"]),
    (lambda: cr.diagonal(cr.tensor(np.ones(3))), ValueError, ["diagonal", "2 dimensions"]),
    (lambda: cr.trace(T34, 0, 0, 5), np.exceptions.AxisError, ["trace", "axis 5"]),
    (lambda: cr.tril(T34, 1.5), TypeError, ["tril", "k"]),
    (lambda: T34.diagonal(axis1=0, dim1=1), TypeError, ["axis1", "dim1"]),
    (lambda: cr.tensor(V4).tril(), TypeError, ["tril", "cr.tril"]),
    (lambda: T34.outer(cr.tensor(V4)), TypeError, ["outer", "cr.outer", "(3, 4)"]),
])
def test_errors_name_the_function_and_shapes(call, kind, words):
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_methods_follow_ndarray_where_it_has_them():
    x = cr.tensor(np.arange(24.0).reshape(2, 3, 4))
    np.testing.assert_array_equal(x.diagonal(1, 0, 2).data, x.data.diagonal(1, 0, 2))
    np.testing.assert_array_equal(x.trace(0, 1, 2).data, x.data.trace(0, 1, 2))
    np.testing.assert_array_equal(x.dot(cr.tensor(np.ones((4, 2)))).data,
                                  x.data.dot(np.ones((4, 2))))
    tx = torch.tensor(x.data)
    np.testing.assert_array_equal(x.diagonal(dim1=2, dim2=1).data,
                                  tx.diagonal(dim1=2, dim2=1).numpy())


# --- property: random einsum subscripts against np.einsum and finite differences --------------
@st.composite
def _einsum_problems(draw):
    sizes = {c: draw(st.integers(1, 3)) for c in "abcd"}
    n_ops = draw(st.integers(1, 3))
    terms = [draw(st.lists(st.sampled_from("abcd"), min_size=0, max_size=3)) for _ in range(n_ops)]
    labels = sorted({c for t in terms for c in t})
    if draw(st.booleans()):
        out = draw(st.permutations(labels))[:draw(st.integers(0, len(labels)))]
        spec = ",".join("".join(t) for t in terms) + "->" + "".join(out)
    else:
        spec = ",".join("".join(t) for t in terms)
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal([sizes[c] for c in t]) for t in terms]
    return spec, arrays


@settings(max_examples=30, deadline=None)
@given(_einsum_problems())
def test_random_einsum_matches_numpy_and_finite_differences(problem):
    spec, arrays = problem
    expected = np.einsum(spec, *arrays)
    tensors = [cr.tensor(a, requires_grad=True) for a in arrays]
    out = cr.einsum(spec, *tensors)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    w = np.random.default_rng(0).standard_normal(out.shape)
    grads = cr.gradients((out * w).sum(), tensors)
    numeric = central_difference(lambda *xs: (np.einsum(spec, *xs) * w).sum(), arrays)
    for g, ng, a in zip(grads, numeric, arrays):
        assert g.shape == a.shape
        np.testing.assert_allclose(g.data, ng, rtol=1e-6, atol=1e-7, err_msg=spec)
