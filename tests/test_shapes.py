"""chainrule.shapes, function by function, against PyTorch and float64 finite differences.

Each case maps inputs to one output (functions that return several arrays are joined into one),
weighted by a random w. Checked: values and gradients against PyTorch where it has the function
(NumPy's pad modes as F.pad's: edge = 'replicate', wrap = 'circular'; symmetric, select and the
large reflections PyTorch refuses by finite differences only), gradients against central
differences, float32 kept, and second order (create_graph=True) of ``sum(f(x)^2 * w)``, against
PyTorch and against finite differences of the gradient. Then NumPy's results on plain arrays,
views and copies, the Tensor methods (and the repeat clash), and the error messages. The meta-test
fails when a differentiable row of chainrule.shapes is reached by no case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from hypothesis import given, settings
from hypothesis import strategies as st

import chainrule as cr
import chainrule.shapes as shp
from gradtools import (
    assert_close,
    central_difference,
    check_second_order,
    ops_in_graph,
    table_rows,
    to_torch,
)


@dataclass
class Case:
    id: str
    make: object  # rng -> list of float64 arrays
    ours: object  # chainrule tensors -> tensor
    theirs: object = None  # torch tensors -> tensor, or None (finite differences only)

    def inputs(self):
        return [np.asarray(a, np.float64) for a in self.make(np.random.default_rng(5))]


def N(*shapes):  # noqa: N802 - one normal array per shape
    return lambda r: [r.standard_normal(s) for s in shapes]


def joined(pieces):
    """Several outputs as one: each flattened, scaled by its position, concatenated."""
    pieces = list(pieces)
    if isinstance(pieces[0], torch.Tensor):
        return torch.cat([p.reshape(-1) * (i + 1) for i, p in enumerate(pieces)])
    return cr.concatenate([cr.ravel(p) * (i + 1) for i, p in enumerate(pieces)])


def tpad(widths, mode="constant", value=0.0):
    """F.pad for NumPy's (before, after) pairs, the last axis first as F.pad reads them."""
    flat = [w for pair in reversed(widths) for w in pair]
    if mode == "constant":
        return lambda x: F.pad(x, flat, mode="constant", value=value)
    while flat and flat[-2:] == [0, 0]:  # F.pad's modes pad only the trailing axes
        flat = flat[:-2]
    return lambda x: F.pad(x, flat, mode=mode)


M1 = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]])
M2 = np.array([[True, True, False, False], [True, False, False, True], [False, True, True, False]])
T1, T2 = torch.tensor(M1), torch.tensor(M2)
IDX = np.array([[2, 0, 2], [1, 1, 3], [0, 3, 3]])
PAD_HW = ((0, 0), (2, 1), (1, 3))

CASES = [
    # --- views -----------------------------------------------------------------------------------
    Case("ravel", N((2, 3, 4)), cr.ravel, torch.ravel),
    Case("ravel-F", N((2, 3, 4)), lambda x: cr.ravel(x, "F"),
         lambda x: x.permute(2, 1, 0).reshape(-1)),
    Case("flip-all", N((2, 3, 4)), cr.flip, lambda x: torch.flip(x, (0, 1, 2))),
    Case("flip-negative-axis", N((2, 3, 4)), lambda x: cr.flip(x, -1),
         lambda x: torch.flip(x, (-1,))),
    Case("flip-tuple", N((2, 3, 4)), lambda x: cr.flip(x, (0, 2)), lambda x: torch.flip(x, (0, 2))),
    Case("fliplr", N((3, 4, 2)), cr.fliplr, torch.fliplr),
    Case("flipud", N((3, 4)), cr.flipud, torch.flipud),
    Case("rot90", N((3, 4)), cr.rot90, torch.rot90),
    Case("rot90-k2", N((3, 4, 2)), lambda x: cr.rot90(x, 2), lambda x: torch.rot90(x, 2)),
    Case("rot90-k3-axes", N((2, 3, 4)), lambda x: cr.rot90(x, 3, (1, 2)),
         lambda x: torch.rot90(x, 3, (1, 2))),
    Case("rot90-negative", N((2, 3, 4)), lambda x: cr.rot90(x, -1, (-1, 0)),
         lambda x: torch.rot90(x, -1, (-1, 0))),
    Case("rot90-k0", N((3, 4)), lambda x: cr.rot90(x, 4), lambda x: torch.rot90(x, 4)),
    Case("moveaxis", N((2, 3, 4)), lambda x: cr.moveaxis(x, 0, -1),
         lambda x: torch.movedim(x, 0, -1)),
    Case("moveaxis-several", N((2, 3, 4)), lambda x: cr.moveaxis(x, [0, 1], [2, 0]),
         lambda x: torch.movedim(x, (0, 1), (2, 0))),
    Case("atleast_1d-0d", N(()), cr.atleast_1d, torch.atleast_1d),
    Case("atleast_2d-1d", N((3,)), cr.atleast_2d, torch.atleast_2d),
    Case("atleast_3d-1d", N((3,)), cr.atleast_3d, torch.atleast_3d),
    Case("atleast_3d-2d-and-0d", N((2, 3), ()), lambda a, b: joined(cr.atleast_3d(a, b)),
         lambda a, b: joined(torch.atleast_3d(a, b))),
    # --- stacking and splitting --------------------------------------------------------------
    Case("hstack-1d", N((3,), (2,)), lambda a, b: cr.hstack([a, b]),
         lambda a, b: torch.hstack([a, b])),
    Case("hstack-2d", N((2, 3), (2, 1)), lambda a, b: cr.hstack((a, b)),
         lambda a, b: torch.hstack((a, b))),
    Case("vstack", N((3,), (2, 3)), lambda a, b: cr.vstack([a, b]),
         lambda a, b: torch.vstack([a, b])),
    Case("dstack", N((2, 3), (2, 3, 2)), lambda a, b: cr.dstack([a, b]),
         lambda a, b: torch.dstack([a, b])),
    Case("column_stack", N((3,), (3, 2)), lambda a, b: cr.column_stack([a, b]),
         lambda a, b: torch.column_stack([a, b])),
    Case("array_split-sections", N((7, 2)), lambda x: joined(cr.array_split(x, 3)),
         lambda x: joined(torch.tensor_split(x, 3))),
    Case("array_split-points", N((2, 7)), lambda x: joined(cr.array_split(x, [1, 5], axis=-1)),
         lambda x: joined(torch.tensor_split(x, [1, 5], dim=-1))),
    Case("hsplit", N((2, 6)), lambda x: joined(cr.hsplit(x, 3)),
         lambda x: joined(torch.hsplit(x, 3))),
    Case("vsplit", N((4, 3)), lambda x: joined(cr.vsplit(x, [1, 3])),
         lambda x: joined(torch.vsplit(x, [1, 3]))),
    Case("dsplit", N((2, 2, 4)), lambda x: joined(cr.dsplit(x, 2)),
         lambda x: joined(torch.dsplit(x, 2))),
    # --- repeat, tile, roll ----------------------------------------------------------------------
    Case("repeat-int", N((2, 3)), lambda x: cr.repeat(x, 2, axis=1),
         lambda x: torch.repeat_interleave(x, 2, dim=1)),
    Case("repeat-counts", N((3, 4)), lambda x: cr.repeat(x, [2, 0, 3], axis=0),
         lambda x: torch.repeat_interleave(x, torch.tensor([2, 0, 3]), dim=0)),
    Case("repeat-flat", N((2, 3)), lambda x: cr.repeat(x, 3),
         lambda x: torch.repeat_interleave(x, 3)),
    Case("repeat-negative-axis", N((2, 3)), lambda x: cr.repeat(x, np.array([1, 3, 2]), -1),
         lambda x: torch.repeat_interleave(x, torch.tensor([1, 3, 2]), dim=-1)),
    Case("repeat-many", N((2, 3)), lambda x: cr.repeat(x, 10, axis=0),
         lambda x: torch.repeat_interleave(x, 10, dim=0)),
    Case("repeat-zero", N((2, 3)), lambda x: cr.repeat(x, 0, axis=1),
         lambda x: torch.repeat_interleave(x, 0, dim=1)),
    Case("tile", N((2, 3)), lambda x: cr.tile(x, (2, 1, 3)), lambda x: torch.tile(x, (2, 1, 3))),
    Case("tile-int", N((2, 3)), lambda x: cr.tile(x, 2), lambda x: torch.tile(x, (2,))),
    Case("tile-short-reps", N((2, 3, 2)), lambda x: cr.tile(x, (3, 1)),
         lambda x: torch.tile(x, (3, 1))),
    Case("roll-flat", N((3, 4)), lambda x: cr.roll(x, 5), lambda x: torch.roll(x, 5)),
    Case("roll-axis", N((3, 4)), lambda x: cr.roll(x, -1, axis=-1),
         lambda x: torch.roll(x, -1, -1)),
    Case("roll-tuples", N((3, 4, 2)), lambda x: cr.roll(x, (1, -2), (0, 1)),
         lambda x: torch.roll(x, (1, -2), (0, 1))),
    Case("roll-same-axis-twice", N((5, 2)), lambda x: cr.roll(x, (1, 2), (0, 0)),
         lambda x: torch.roll(x, 3, 0)),
    # --- pad -------------------------------------------------------------------------------------
    Case("pad-constant", N((3, 4)), lambda x: cr.pad(x, ((1, 2), (0, 3)), constant_values=1.5),
         tpad(((1, 2), (0, 3)), value=1.5)),
    Case("pad-int", N((3, 4)), lambda x: cr.pad(x, 1), tpad(((1, 1), (1, 1)))),
    Case("pad-constant-per-axis", N((3, 4)),
         lambda x: cr.pad(x, ((1, 2), (2, 1)), constant_values=((1.0, 2.0), (3.0, 4.0)))),
    Case("pad-edge", N((2, 3, 4)), lambda x: cr.pad(x, PAD_HW, "edge"),
         tpad(PAD_HW, "replicate")),
    Case("pad-reflect", N((2, 3, 5)), lambda x: cr.pad(x, PAD_HW, "reflect"),
         tpad(PAD_HW, "reflect")),
    Case("pad-wrap", N((2, 3, 4)), lambda x: cr.pad(x, PAD_HW, "wrap"),
         tpad(PAD_HW, "circular")),
    Case("pad-symmetric", N((2, 3, 4)), lambda x: cr.pad(x, PAD_HW, "symmetric")),
    Case("pad-reflect-long", N((3,)), lambda x: cr.pad(x, (5, 7), "reflect")),
    Case("pad-symmetric-long", N((2, 3)), lambda x: cr.pad(x, ((3, 0), (4, 5)), "symmetric")),
    Case("pad-wrap-long", N((2,)), lambda x: cr.pad(x, (5, 3), "wrap")),
    Case("pad-reflect-size-1", N((1, 3)), lambda x: cr.pad(x, 2, "reflect")),
    Case("pad-edge-long", N((2, 3)), lambda x: cr.pad(x, ((4, 0), (5, 6)), "edge")),
    Case("pad-zero-widths", N((2, 3)), lambda x: cr.pad(x, ((0, 0), (2, 0)), "wrap"),
         tpad(((0, 0), (2, 0)), "circular")),
    # --- gathers and selections -------------------------------------------------------------------
    Case("take-flat", N((3, 4)), lambda x: cr.take(x, IDX + 5),
         lambda x: torch.take(x, torch.tensor(IDX + 5))),
    Case("take-axis-repeated", N((3, 4)), lambda x: cr.take(x, [2, 0, 2, -1], axis=1),
         lambda x: torch.index_select(x, 1, torch.tensor([2, 0, 2, 3]))),
    Case("take-2d-axis", N((3, 4, 2)), lambda x: cr.take(x, IDX, axis=1), lambda x: x[:, IDX]),
    Case("take-unique", N((3, 4)), lambda x: cr.take(x, [3, 0, 1], axis=-1),
         lambda x: x[:, [3, 0, 1]]),
    Case("take-int", N((3, 4)), lambda x: cr.take(x, 1, axis=0), lambda x: x[1]),
    Case("take-wrap", N((3, 4)), lambda x: cr.take(x, [5, -6], axis=1, mode="wrap"),
         lambda x: x[:, [1, 2]]),
    Case("take-clip", N((3, 4)), lambda x: cr.take(x, [7, -2], axis=0, mode="clip"),
         lambda x: x[[2, 0]]),
    Case("take_along_axis", N((3, 4)), lambda x: cr.take_along_axis(x, IDX, axis=1),
         lambda x: torch.take_along_dim(x, torch.tensor(IDX), 1)),
    Case("take_along_axis-broadcast", N((3, 4)),
         lambda x: cr.take_along_axis(x, np.array([[2, 0, 0, 1]]), axis=0),
         lambda x: torch.take_along_dim(x, torch.tensor([[2, 0, 0, 1]]), 0)),
    Case("take_along_axis-default-axis", N((3, 4)), lambda x: cr.take_along_axis(x, IDX),
         lambda x: torch.take_along_dim(x, torch.tensor(IDX), -1)),
    Case("take_along_axis-flat", N((3, 4)),
         lambda x: cr.take_along_axis(x, np.array([11, 0, 11, 4]), axis=None),
         lambda x: torch.take_along_dim(x, torch.tensor([11, 0, 11, 4]))),
    Case("select", N((3, 4), (3, 4)), lambda x, y: cr.select([M1, M2], [x, y], 0.5),
         lambda x, y: torch.where(T1, x, torch.where(T2, y, 0.5))),
    Case("select-default-tensor", N((3, 4), (4,), (3, 1)),
         lambda x, y, d: cr.select([M1, M2], [x, y], d),
         lambda x, y, d: torch.where(T1, x, torch.where(T2, y, d))),
]
IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS), "case ids must be unique"


def _run(case, arrays, dtype=np.float64):
    tensors = [cr.tensor(np.asarray(a, dtype), requires_grad=True) for a in arrays]
    return tensors, case.ours(*tensors)


def _weights(shape, dtype=np.float64):
    return np.random.default_rng(1).standard_normal(shape).astype(dtype)


def _grads(out, tensors, w):
    return [np.zeros(t.shape) if g is None else g.data
            for t, g in zip(tensors, cr.gradients((out * w).sum(), tensors))]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_and_gradient_match_torch_and_finite_differences(case):
    arrays = case.inputs()
    tensors, out = _run(case, arrays)
    assert isinstance(out, cr.Tensor) and out.dtype == np.float64
    w = _weights(out.shape)
    grads = _grads(out, tensors, w)
    for g, a in zip(grads, arrays):
        assert g.shape == a.shape and g.dtype == np.float64
    if case.theirs is not None:
        ts = [to_torch(a, requires_grad=True) for a in arrays]
        expected = case.theirs(*ts)
        assert_close(out, expected, what=f"{case.id}: value")
        tgrads = torch.autograd.grad((expected * to_torch(w)).sum(), ts, allow_unused=True)
        for i, (g, tg) in enumerate(zip(grads, tgrads)):
            assert_close(g, np.zeros(arrays[i].shape) if tg is None else tg,
                         what=f"{case.id}: gradient {i} vs torch")

    def f(*arrays):
        with cr.no_grad():
            return float((case.ours(*[cr.tensor(a) for a in arrays]).data * w).sum())

    for i, (g, ng) in enumerate(zip(grads, central_difference(f, arrays))):
        assert_close(g, ng, rtol=1e-6, atol=1e-7, what=f"{case.id}: gradient {i} vs fd")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_stays_float32(case):
    arrays = case.inputs()
    tensors, out = _run(case, arrays, np.float32)
    assert out.dtype == np.float32, f"{case.id}: output is {out.dtype}"
    seen = []
    for t in tensors:  # the gradient as it reaches the leaf, before any cast to the leaf's dtype
        t.register_hook(lambda g: seen.append(g.dtype))
    grads = cr.gradients((out * _weights(out.shape, np.float32)).sum(), tensors)
    assert seen and all(d == np.float32 for d in seen), f"{case.id}: gradients {seen}"
    _, out64 = _run(case, arrays)
    assert_close(out, out64, rtol=1e-6, atol=1e-6, what=case.id)
    assert all(g is None or g.dtype == np.float32 for g in grads)


def _squared(fn):
    return lambda *xs: fn(*xs) ** 2  # a linear map has no Hessian of its own


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_second_order(case):
    arrays = case.inputs()
    theirs = None if case.theirs is None else _squared(case.theirs)
    check_second_order(_squared(case.ours), theirs, arrays, range(len(arrays)), what=case.id)


def test_every_row_is_reached_also_in_the_gradient_graph():
    """Every differentiable row of chainrule.shapes appears in some case's graph, or in the
    graph of its create_graph gradient (repeat_sum, the adjoint of repeat)."""
    rows = table_rows(shp)
    assert set(rows) == {"_repeat", "_repeat_sum", "_tile", "_roll", "_pad", "_pad_fold",
                         "_pad_constant", "_take", "_take_sum"}
    found = set()
    for case in CASES:
        tensors, out = _run(case, case.inputs())
        ops_in_graph(out, found)
        w = cr.tensor(_weights(out.shape), requires_grad=True)  # so the gradient has a graph
        for g in cr.gradients((out * w).sum(), tensors, create_graph=True):
            ops_in_graph(g, found)
    missing = sorted(name for name, row in rows.items() if id(row) not in found)
    assert not missing, f"rows of chainrule.shapes without a test case: {missing}"


def test_every_row_has_a_formula_per_input():
    for name, row in table_rows(shp).items():
        assert len(row.formulas) == len(row.vjps) == 1, name


def test_third_order_of_repeat():
    """repeat and repeat_sum are each other's adjoints, to any order: d^3/dx^3 of
    sum(repeat(x)^3 * w) is 6 * (repeat_sum of w)."""
    x = cr.tensor([0.5, -1.0, 2.0], requires_grad=True)
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    (g,) = cr.gradients((cr.repeat(x, [2, 1, 3]) ** 3 * w).sum(), [x], create_graph=True)
    (h,) = cr.gradients(g.sum(), [x], create_graph=True)
    (t,) = cr.gradients(h.sum(), [x])
    np.testing.assert_allclose(t.data, 6 * np.array([3.0, 3.0, 15.0]))


def test_public_names_are_exported():
    for name in shp.__all__:
        assert getattr(cr, name) is getattr(shp, name), name
        assert getattr(shp, name).__doc__, name


# --- NumPy's results on plain arrays ---------------------------------------------------------
X = np.arange(24.0).reshape(2, 3, 4)
IX = np.arange(12).reshape(3, 4)
PLAIN = [
    ("pad", (IX, 2, "reflect"), {}), ("pad", (IX, 1), {"constant_values": 2.7}),
    ("tile", (IX, (2, 1, 2)), {}), ("repeat", (IX, [2, 1, 0], 0), {}), ("take", (IX, [[1]]), {}),
    ("roll", (IX.astype(np.float32), -2, 1), {}), ("pad", (X.astype(np.float32), 2, "wrap"), {}),
    ("ravel", (X,), {}), ("ravel", (X,), {"order": "F"}), ("repeat", (X, 2), {}),
    ("repeat", (X, [1, 0, 2], 1), {}), ("tile", (X, (2, 1)), {}), ("tile", (X[0, 0], 3), {}),
    ("roll", (X, 3), {}), ("roll", (X, (1, 2), (2, 0)), {}), ("flip", (X,), {}),
    ("flip", (X, (0, -1)), {}), ("fliplr", (X,), {}), ("flipud", (X,), {}),
    ("rot90", (X,), {}), ("rot90", (X, 3, (2, 1)), {}), ("moveaxis", (X, -1, 0), {}),
    ("pad", (X, 1), {}), ("pad", (X, ((0, 1), (2, 0), (1, 1))), {"constant_values": 7}),
    ("pad", (X, ((1, 2), (2, 3), (1, 1))), {"constant_values": ((1, 2), (3, 4), (5, 6))}),
    ("pad", (X, (3, 5), "edge"), {}), ("pad", (X, 6, "reflect"), {}),
    ("pad", (X, 7, "symmetric"), {}), ("pad", (X, ((9, 1),), "wrap"), {}),
    ("pad", (X[0, 0], 0, "wrap"), {}),
    ("hstack", ([X, X],), {}), ("hstack", ([X, X],), {"dtype": np.float32}),
    ("vstack", ([IX, X[0]],), {"dtype": np.float64, "casting": "safe"}),
    ("vstack", ([X[0, 0], X[1, 1]],), {}),
    ("dstack", ([X[0], X[1]],), {}), ("column_stack", ([X[0, 0], X[0].T],), {}),
    ("take", (X, [[3, 20], [1, 1]]), {}), ("take", (X, [0, -1], 1), {}),
    ("take", (X, [5, -9], 2), {"mode": "wrap"}), ("take", (X, [5, -9], 2), {"mode": "clip"}),
    ("take_along_axis", (X, np.argsort(-X, axis=1), 1), {}),
    ("take_along_axis", (X, np.array([23, 0, 4]), None), {}),
]


@pytest.mark.parametrize("name,args,kwargs", PLAIN, ids=[p[0] for p in PLAIN])
def test_plain_arrays_give_numpy_results(name, args, kwargs):
    out = getattr(cr, name)(*args, **kwargs)
    expected = getattr(np, name)(*args, **kwargs)
    assert type(out) is np.ndarray and out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)


def test_plain_several_outputs_and_select_give_numpy_results():
    a = np.arange(12.0).reshape(3, 4)
    for ours, theirs in ((cr.atleast_1d(1.0, a), np.atleast_1d(1.0, a)),
                         (cr.atleast_2d(np.float32(2)), np.atleast_2d(np.float32(2))),
                         (cr.atleast_3d(a[0]), np.atleast_3d(a[0])),
                         (cr.array_split(a, 3, axis=1), np.array_split(a, 3, axis=1)),
                         (cr.array_split(a, [1, 9, 2]), np.array_split(a, [1, 9, 2])),
                         (cr.hsplit(a, [3]), np.hsplit(a, [3])),
                         (cr.vsplit(a, 3), np.vsplit(a, 3)),
                         (cr.dsplit(a[None], 2), np.dsplit(a[None], 2))):
        ours = ours if isinstance(ours, list | tuple) else [ours]
        theirs = theirs if isinstance(theirs, list | tuple) else [theirs]
        assert len(ours) == len(theirs)
        for o, t in zip(ours, theirs):
            assert type(o) is np.ndarray and o.dtype == t.dtype
            np.testing.assert_array_equal(o, t)
    assert isinstance(cr.atleast_1d(a, a), tuple) and cr.atleast_1d() == ()
    choices = [a, -a, a.astype(np.float32)]
    conds = [a > 8, a < 3, a == 5]
    out = cr.select(conds, choices, default=-1)
    np.testing.assert_array_equal(out, np.select(conds, choices, default=-1))
    assert type(out) is np.ndarray and out.dtype == np.float64
    f32 = cr.select([a > 3], [a.astype(np.float32)])
    assert f32.dtype == np.float32 == np.select([a > 3], [a.astype(np.float32)]).dtype
    assert cr.hstack([[1, 2], [3]]).tolist() == [1, 2, 3]
    assert cr.flip([1, 2, 3]).tolist() == [3, 2, 1]


def test_views_and_copies_follow_numpy():
    a = np.arange(12.0).reshape(3, 4)
    for view in (cr.ravel(a), cr.flip(a), cr.rot90(a), cr.moveaxis(a, 0, 1), cr.atleast_3d(a),
                 cr.array_split(a, 2)[1], cr.fliplr(a), cr.rot90(a, 4)):
        assert np.shares_memory(view, a)
    for copy in (cr.tile(a, (1, 1)), cr.tile(a[:1], (2, 1)), cr.repeat(a, 1, 0), cr.roll(a, 0),
                 cr.pad(a, 0), cr.pad(a, 0, "edge"), cr.take(a, [1]), cr.hstack([a])):
        assert not np.shares_memory(copy, a) and copy.flags.writeable
    x = cr.tensor(a, requires_grad=True)
    y = x * 1
    t = cr.tile(y, (2, 1))
    t += 1  # a copy: changing it in place leaves y (saved by y * y below) as it was
    loss = (y * y).sum() + t.sum()
    loss.backward()
    np.testing.assert_allclose(x.grad.data, 2 * a + 2)
    v = cr.flip(y)
    assert v._version is y._version  # a view: they share the version counter


def test_copying_rows_save_nothing_for_the_backward_pass():
    x = cr.tensor(np.ones((3, 4)), requires_grad=True)
    for out in (cr.repeat(x, 2, 0), cr.repeat(x, [1, 2, 0], 0), cr.tile(x, 2), cr.roll(x, 1),
                cr.pad(x, 1), cr.pad(x, 2, "reflect"), cr.take(x, [1, 1], 1)):
        node = out.grad_fn
        assert node.ans is None and all(s is None for s in node.saved or ()), node.name


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3).flatmap(lambda shape: st.tuples(
    st.just(tuple(shape)), st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)),
                                    min_size=len(shape), max_size=len(shape)),
    st.sampled_from(["constant", "edge", "reflect", "symmetric", "wrap"]))))
def test_pad_matches_numpy_and_its_gradient_is_the_adjoint(args):
    shape, widths, mode = args
    r = np.random.default_rng(len(shape))
    a = r.standard_normal(shape)
    x = cr.tensor(a, requires_grad=True)
    out = cr.pad(x, widths, mode)
    np.testing.assert_array_equal(out.data, np.pad(a, widths, mode))
    w = r.standard_normal(out.shape)
    (g,) = cr.gradients((out * w).sum(), [x])
    # <pad(e_i), w> for every unit vector e_i: the gradient, entry by entry
    expected = np.array([(np.pad(e.reshape(shape), widths, mode) * w).sum()
                         for e in np.eye(a.size)]).reshape(shape)
    if mode == "constant":
        expected -= (np.pad(np.zeros(shape), widths, mode) * w).sum()
    np.testing.assert_allclose(g.data, expected, rtol=1e-12, atol=1e-12)


# --- Tensor methods ------------------------------------------------------------------------
def test_tensor_methods_match_torch():
    a = np.random.default_rng(0).standard_normal((2, 3, 4))
    x, t = cr.tensor(a), torch.tensor(a)
    idx = np.array([[[0, 2, 1, 1]]])
    pairs = [
        (x.ravel(), t.ravel()), (x.tile(2, 1), t.tile(2, 1)), (x.tile((2,)), t.tile((2,))),
        (x.tile(dims=(1, 2)), t.tile(dims=(1, 2))), (x.roll(1), t.roll(1)),
        (x.roll(2, 1), t.roll(2, 1)), (x.roll((1, 2), (0, 2)), t.roll((1, 2), (0, 2))),
        (x.roll(shifts=-1, dims=2), t.roll(shifts=-1, dims=2)),
        (x.roll(shift=1, axis=0), t.roll(1, 0)),
        (x.flip(), t.flip((0, 1, 2))), (x.flip(0), t.flip(0)), (x.flip(0, 2), t.flip(0, 2)),
        (x.flip((1,)), t.flip((1,))), (x.flip(dims=[2]), t.flip(dims=[2])),
        (x.flip(axis=-1), t.flip(-1)), (x.flip(dims=[]), t.flip(dims=[])),
        (x.fliplr(), t.fliplr()), (x.flipud(), t.flipud()),
        (x.rot90(), t.rot90()), (x.rot90(3, [1, 2]), t.rot90(3, [1, 2])),
        (x.rot90(1, axes=(2, 0)), t.rot90(1, (2, 0))),
        (x.moveaxis(0, 2), t.moveaxis(0, 2)),
        (x.movedim((0, 1), (1, 2)), t.movedim((0, 1), (1, 2))),
        (x.repeat_interleave(2), t.repeat_interleave(2)),
        (x.repeat_interleave(2, dim=1), t.repeat_interleave(2, dim=1)),
        (x.repeat_interleave(cr.tensor([1, 0, 2]), 1),
         t.repeat_interleave(torch.tensor([1, 0, 2]), 1)),
        (x.take([0, 23, 5]), t.take(torch.tensor([0, 23, 5]))),
        (x.take_along_dim(idx, 2), t.take_along_dim(torch.tensor(idx), 2)),
        (x.take_along_dim(np.array([3, 3, 0])), t.take_along_dim(torch.tensor([3, 3, 0]))),
        (x.repeat(2, axis=1), t.repeat_interleave(2, dim=1)),
        (x.repeat(2, 0), t.repeat_interleave(2, dim=0)),
        (x.repeat([1, 2, 0], axis=1), t.repeat_interleave(torch.tensor([1, 2, 0]), dim=1)),
        (x.repeat(repeats=2, axis=None), t.repeat_interleave(2)),
    ]
    for i, (ours, theirs) in enumerate(pairs):
        assert isinstance(ours, cr.Tensor), i
        np.testing.assert_array_equal(ours.data, theirs.numpy(), err_msg=str(i))
    np.testing.assert_array_equal(x.take([1, 2], axis=1).data, a.take([1, 2], axis=1))


def test_tensor_method_gradients():
    x = cr.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    (x.tile(2, 2) * 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.full((2, 3), 4.0))
    x.grad = None
    x.repeat([1, 2, 3], axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[1.0, 2.0, 3.0]] * 2)


@pytest.mark.parametrize("call", [
    lambda x: x.repeat(2), lambda x: x.repeat(2, 3, 1), lambda x: x.repeat((2, 3)),
    lambda x: x.repeat([2, 1]), lambda x: x.repeat(2, dim=0), lambda x: x.repeat(),
    lambda x: x.repeat(2, 1, axis=0),
], ids=["one-int", "three-ints", "tuple", "list", "dim", "nothing", "axis-twice"])
def test_tensor_repeat_refuses_the_ambiguous_readings(call):
    x = cr.tensor(np.ones((2, 3)))
    with pytest.raises(TypeError, match=r"cr\.repeat\(x, n, axis\).*repeat_interleave"
                                        r".*x\.tile\(sizes\)"):
        call(x)


def test_numpy_functions_on_tensors_dispatch_here():
    x = cr.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    out = np.flip(x, axis=1)
    assert isinstance(out, cr.Tensor) and out.requires_grad
    np.testing.assert_array_equal(np.pad(x, 1, mode="edge").data, np.pad(x.data, 1, "edge"))
    np.testing.assert_array_equal(np.roll(x, 1, axis=0).data, np.roll(x.data, 1, axis=0))


# --- errors -------------------------------------------------------------------------------------
A = np.zeros((2, 3))
ERRORS = [
    (lambda: cr.flip(A, 2), ValueError, r"flip: axis 2 is out of bounds .* shape \(2, 3\)"),
    (lambda: cr.flip(A, (0, 0)), ValueError, r"flip: repeated axis"),
    (lambda: cr.flip(A, 0.5), TypeError, r"flip: an axis must be an int"),
    (lambda: cr.fliplr(A[0]), ValueError, r"fliplr: .*at least 2 .*\(3,\)"),
    (lambda: cr.flipud(A[0, 0]), ValueError, r"flipud: .*at least 1"),
    (lambda: cr.rot90(A, axes=(0,)), ValueError, r"rot90: axes must name exactly 2"),
    (lambda: cr.rot90(A, axes=(1, -1)), ValueError, r"rot90: the axes must differ"),
    (lambda: cr.rot90(A, axes=(0, 2)), ValueError, r"rot90: axis 2 is out of bounds"),
    (lambda: cr.moveaxis(A, (0, 1), 0), ValueError, r"moveaxis: source .* same number"),
    (lambda: cr.moveaxis(A, 0, 5), ValueError, r"moveaxis: axis 5"),
    (lambda: cr.ravel(A, "K"), ValueError, r"ravel: order='K'"),
    (lambda: cr.repeat(A, [1, 2], axis=1), ValueError,
     r"repeat: repeats of shape \(2,\) do not match axis 1 of size 3 \(shape \(2, 3\)\)"),
    (lambda: cr.repeat(A, -1, axis=0), ValueError, r"repeat: repeats must not be negative"),
    (lambda: cr.repeat(A, 1.5, axis=0), TypeError, r"repeat: repeats must be integers"),
    (lambda: cr.repeat(A, 2, axis=2), ValueError, r"repeat: axis 2 is out of bounds"),
    (lambda: cr.tile(A, (2, -1)), ValueError, r"tile: reps must not be negative"),
    (lambda: cr.tile(A, 1.5), TypeError, r"tile: reps must be ints"),
    (lambda: cr.roll(A, (1, 2), (0, 1, 0)), ValueError, r"roll: shift .* same length"),
    (lambda: cr.roll(A, (1, 2)), ValueError, r"roll: with axis=None"),
    (lambda: cr.roll(A, 1.0), TypeError, r"roll: shift must be an int"),
    (lambda: cr.roll(A, 1, 3), ValueError, r"roll: axis 3 is out of bounds"),
    (lambda: cr.pad(A, 1, "mean"), ValueError, r"pad: mode 'mean' is not supported"),
    (lambda: cr.pad(A, ((1, 2), (3, 4), (5, 6))), ValueError,
     r"pad: pad_width .* cannot be read as \(before, after\) pairs for the 2 axes"),
    (lambda: cr.pad(A, -1), ValueError, r"pad: pad_width must not be negative"),
    (lambda: cr.pad(A, 1.5), TypeError, r"pad: pad_width must be integers"),
    (lambda: cr.pad(A, 1, "edge", constant_values=3), ValueError,
     r"pad: unsupported keyword .*constant_values.* 'edge'"),
    (lambda: cr.pad(A, 1, "reflect", reflect_type="odd"), ValueError,
     r"pad: reflect_type='odd'"),
    (lambda: cr.pad(np.zeros((0, 3)), 1, "wrap"), ValueError, r"pad: cannot pad axis 0 of size 0"),
    (lambda: cr.hstack(A), TypeError, r"hstack: .*sequence"),
    (lambda: cr.vstack([]), ValueError, r"vstack: needs at least one"),
    (lambda: cr.hstack([A], dtype=np.int32), TypeError,
     r"hstack: cannot cast float64 to int32 with casting='same_kind'"),
    (lambda: cr.vstack([A, np.zeros((2, 4))]), ValueError,
     r"vstack: the shapes \[\(2, 3\), \(2, 4\)\] must agree on every axis but axis 0"),
    (lambda: cr.array_split(A, 0), ValueError, r"array_split: the number of sections"),
    (lambda: cr.hsplit(A, 2), ValueError,
     r"hsplit: axis 1 of size 3 \(shape \(2, 3\)\) does not split into 2 equal sections"),
    (lambda: cr.vsplit(A[0], 1), ValueError, r"vsplit: .*at least 2"),
    (lambda: cr.dsplit(A, 1), ValueError, r"dsplit: .*at least 3 .*\(2, 3\)"),
    (lambda: cr.hsplit(A[0, 0], 1), ValueError, r"hsplit: .*at least 1"),
    (lambda: cr.take(A, [6]), IndexError, r"take: index 6 is out of bounds for axis 0 with size 6"),
    (lambda: cr.take(A, [0, -4], axis=1), IndexError, r"take: index -4 .* axis 1 with size 3"),
    (lambda: cr.take(A, [0.5]), TypeError, r"take: indices must be integers, got dtype float64"),
    (lambda: cr.take(A, [0], mode="nearest"), ValueError, r"take: mode must be"),
    (lambda: cr.take(np.zeros(0), [0], mode="wrap"), IndexError, r"take: cannot take from"),
    (lambda: cr.take_along_axis(A, np.zeros(3, int), 1), ValueError,
     r"take_along_axis: indices of shape \(3,\) need as many dimensions .* \(2, 3\)"),
    (lambda: cr.take_along_axis(A, np.zeros((3, 1), int), 1), ValueError,
     r"take_along_axis: .* do not broadcast"),
    (lambda: cr.take_along_axis(A, np.full((2, 1), 3), 1), IndexError,
     r"take_along_axis: index 3 is out of bounds for axis 1 with size 3"),
    (lambda: cr.take_along_axis(A, np.zeros((2, 1), int), None), ValueError,
     r"take_along_axis: with axis=None the indices must be 1-D"),
    (lambda: cr.select([A > 0], [A, A]), ValueError, r"select: condlist has 1 entries"),
    (lambda: cr.select([], []), ValueError, r"select: needs at least one condition"),
    (lambda: cr.select([A], [A]), TypeError, r"select: condition 0 must be boolean"),
    (lambda: cr.select([A > 0], [np.zeros(4)]), ValueError, r"select: the shapes .* broadcast"),
    (lambda: cr.tensor(A).tile(2, dims=(1,)), TypeError, r"Tensor\.tile: .* not both"),
    (lambda: cr.tensor(A).roll(1, shift=1), TypeError, r"Tensor\.roll: give one of"),
    (lambda: cr.tensor(A).flip(0, dims=1), TypeError, r"Tensor\.flip: give one of"),
    (lambda: cr.tensor(A).repeat_interleave(2, 0, output_size=3), ValueError,
     r"repeat_interleave: output_size=3"),
]


@pytest.mark.parametrize("call,kind,message", ERRORS, ids=[e[2][:32] for e in ERRORS])
def test_errors_name_the_function_and_the_shapes(call, kind, message):
    with pytest.raises(kind, match=message):
        call()


def test_errors_on_tensors_are_the_same():
    x = cr.tensor(A, requires_grad=True)
    with pytest.raises(ValueError, match=r"pad: mode 'maximum' is not supported"):
        cr.pad(x, 1, "maximum")
    with pytest.raises(IndexError, match=r"take: index 9"):
        cr.take(x, 9)


def test_forward_mode_through_the_rows():
    """jvp transposes the recorded VJP, so the rows' rules serve forward mode too: each of these
    maps is linear, so its jvp is the map applied to the tangent."""
    a, v = np.random.default_rng(0).standard_normal((2, 2, 3, 2))
    for f in (lambda x: cr.repeat(x, [2, 0, 1], axis=1), lambda x: cr.tile(x, (2, 1)),
              lambda x: cr.roll(x, 1, 1), lambda x: cr.pad(x, 2, "symmetric"),
              lambda x: cr.pad(x, 1, constant_values=0.0), lambda x: cr.take(x, [2, 2, 0], 1)):
        _, tangent = cr.jvp(f, (cr.tensor(a),), (cr.tensor(v),))
        np.testing.assert_allclose(tangent.data, f(v), rtol=1e-12)


def test_numpy_calls_with_tensor_arguments():
    x = cr.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    cases = [(np.take, (x, [0, 2], 1)), (np.take_along_axis, (x, np.zeros((3, 1), int), 1)),
             (np.tile, (x, 2)), (np.rot90, (x, 1, (1, 0))), (np.moveaxis, (x, 0, 1)),
             (np.array_split, (x, 2, 1)), (np.hstack, ([x, x],)), (np.repeat, (x, 2, 0))]
    for fn, args in cases:
        out = fn(*args)
        expected = fn(*[a.data if isinstance(a, cr.Tensor) else
                        [b.data for b in a] if isinstance(a, list) and
                        isinstance(a[0], cr.Tensor) else a for a in args])
        outs = out if isinstance(out, list) else [out]
        expected = expected if isinstance(expected, list) else [expected]
        for o, e in zip(outs, expected):
            assert isinstance(o, cr.Tensor) and o.requires_grad, fn.__name__
            np.testing.assert_array_equal(o.data, e)
