"""chainrule.linalg, row by row, against torch.linalg and float64 finite differences.

Each case maps inputs to a list of outputs (flattened and joined into one vector, weighted by a
random w). Checked: values and first-order gradients against PyTorch (float64), gradients against
central differences, float32 in gives float32 out with float32 gradients all the way back to the
leaves, and second order (create_graph=True): a Hessian-vector product, differentiated with
respect to the inputs and to w (so each rule's own rule runs), against PyTorch and against finite
differences of the gradient. The meta-test at the bottom fails when a differentiable row of
chainrule.linalg is reached by no case (test_table.py and test_ops.py only scan ops/).

Eigen and singular vectors are defined up to sign: cases fix the sign (a constant factor) so that
chainrule's and PyTorch's factorisations agree. eigh and cholesky read one triangle; cases that
compare with finite differences symmetrise the input first, so every convention agrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

import chainrule as cr
import chainrule.linalg as la
from gradtools import (
    assert_close,
    central_difference,
    hvp_finite_differences,
    hvp_ours,
    hvp_torch,
    ops_in_graph,
    table_rows,
    to_torch,
)

L = cr.linalg
T = torch.linalg


@dataclass
class Case:
    id: str
    make: object  # rng -> list of float64 arrays
    ours: object  # chainrule tensors -> list of tensors
    theirs: object  # torch tensors -> list of tensors
    wrt: tuple = None
    fd: bool = True
    second: bool = True
    f32_tol: float = 2e-3

    def inputs(self):
        return [np.asarray(a, np.float64) for a in self.make(np.random.default_rng(11))]

    def diff(self, n):
        return tuple(range(n)) if self.wrt is None else self.wrt


# --- inputs: well conditioned, distinct eigen/singular values ------------------------------------
def GEN(*shape):  # noqa: N802 - general square, well away from singular
    return lambda r: [r.standard_normal(shape) + 3 * np.eye(shape[-1])]


def SPD(*shape):  # noqa: N802
    def make(r):
        b = r.standard_normal(shape)
        return [b @ np.swapaxes(b, -1, -2) + shape[-1] * np.eye(shape[-1])]
    return make


def SYM(*shape):  # noqa: N802 - symmetric, eigenvalues spread apart
    def make(r):
        q = np.linalg.qr(r.standard_normal(shape))[0]
        w = np.arange(shape[-1]) * 1.3 - 1.0 + 0.2 * r.standard_normal(shape[:-1])
        return [(q * w[..., None, :]) @ np.swapaxes(q, -1, -2)]
    return make


def RECT(*shape):  # noqa: N802
    return lambda r: [r.standard_normal(shape)]


def GB(sa, sb):  # noqa: N802 - solve: a general square, b anything
    return lambda r: [r.standard_normal(sa) + 3 * np.eye(sa[-1]), r.standard_normal(sb)]


def C(*values):  # noqa: N802
    return lambda r: [np.array(v, dtype=np.float64) for v in values]


# --- helpers that fix the signs and symmetrise, written once for both libraries --------------
def _sym(a):
    return (a + a.swapaxes(-1, -2)) * 0.5 if isinstance(a, cr.Tensor) else (a + a.mT) * 0.5


def _sign_cols(v):
    """The sign of each column's first entry, as a constant of shape (..., 1, k)."""
    if isinstance(v, cr.Tensor):
        return cr.sign(v[..., :1, :])
    return torch.sign(v[..., :1, :]).detach()


def _eigh_ours(a, uplo="L", sym=True):
    w, v = L.eigh(_sym(a) if sym else a, UPLO=uplo)
    return [w, v * _sign_cols(v)]


def _eigh_theirs(a, uplo="L", sym=True):
    w, v = T.eigh(_sym(a) if sym else a, UPLO=uplo)
    return [w, v * _sign_cols(v)]


def _svd_ours(a, full_matrices=False, hermitian=False):
    u, s, vh = L.svd(a, full_matrices=full_matrices, hermitian=hermitian)
    sg = _sign_cols(u)[..., :, :s.shape[-1]]
    return [u[..., :, :s.shape[-1]] * sg, s, vh[..., :s.shape[-1], :] * sg.swapaxes(-1, -2)]


def _svd_theirs(a, full_matrices=False):
    u, s, vh = T.svd(a, full_matrices=full_matrices)
    k = s.shape[-1]
    sg = _sign_cols(u)[..., :, :k]
    return [u[..., :, :k] * sg, s, vh[..., :k, :] * sg.mT]


def _diag_sign(r):
    k = min(r.shape[-2:])
    if isinstance(r, cr.Tensor):
        return cr.sign((r[..., :k, :k] * np.eye(k, dtype=r.dtype)).sum(axis=-1))
    return torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).detach()


def _qr_ours(a, mode="reduced"):
    q, r = L.qr(a, mode=mode)
    k = min(a.shape[-2:])
    d = _diag_sign(r)
    return [q[..., :, :k] * d[..., None, :], r[..., :k, :] * d[..., :, None], r[..., k:, :]]


def _qr_theirs(a, mode="reduced"):
    q, r = T.qr(a, mode="reduced")  # torch refuses the gradient of the others
    d = _diag_sign(r)
    m, n = a.shape[-2:]
    rest = torch.zeros(a.shape[:-2] + (m - r.shape[-2] if mode == "complete" else 0, n),
                       dtype=a.dtype)
    return [q * d[..., None, :], r * d[..., :, None], rest]


def _mnorm(ord, axis=(-2, -1), keepdims=False):
    return (lambda x: [L.norm(x, ord, axis, keepdims)],
            lambda x: [T.matrix_norm(x, ord if ord is not None else "fro", axis, keepdims)])


def _vnorm(ord, axis=None, keepdims=False):
    def theirs(x):
        if axis is None:
            out = T.vector_norm(x.reshape(-1), 2 if ord is None else ord)
            return [out.reshape((1,) * x.ndim) if keepdims else out]
        return [T.vector_norm(x, 2 if ord is None else ord, axis, keepdims)]
    return lambda x: [L.norm(x, ord, axis, keepdims)], theirs


def _case(id, make, pair, **kw):
    return Case(id, make, pair[0], pair[1], **kw)


INF = math.inf
CASES = [
    # --- inv, det, slogdet -------------------------------------------------------------------
    Case("inv", GEN(3, 3), lambda a: [L.inv(a)], lambda a: [T.inv(a)]),
    Case("inv-batched", GEN(2, 3, 3), lambda a: [L.inv(a)], lambda a: [T.inv(a)]),
    Case("det", GEN(3, 3), lambda a: [L.det(a)], lambda a: [T.det(a)]),
    Case("det-batched", GEN(2, 2, 3, 3), lambda a: [L.det(a)], lambda a: [T.det(a)]),
    Case("det-negative", C([[0.0, 2.0, 1.0], [1.0, 0.5, 0.0], [0.3, 1.0, 2.0]]),
         lambda a: [L.det(a)], lambda a: [T.det(a)]),
    Case("slogdet", C([[0.0, 2.0, 1.0], [1.0, 0.5, 0.0], [0.3, 1.0, 2.0]]),
         lambda a: list(L.slogdet(a)) + [L.slogdet(a)[0] * L.slogdet(a)[1]],
         lambda a: list(T.slogdet(a)) + [T.slogdet(a)[0] * T.slogdet(a)[1]]),
    Case("slogdet-batched", GEN(2, 3, 3), lambda a: [L.slogdet(a).logabsdet],
         lambda a: [T.slogdet(a).logabsdet]),
    # --- solve (NumPy 2 shapes for b) --------------------------------------------------------
    Case("solve-vector", GB((3, 3), (3,)), lambda a, b: [L.solve(a, b)],
         lambda a, b: [T.solve(a, b)]),
    Case("solve-matrix", GB((3, 3), (3, 2)), lambda a, b: [L.solve(a, b)],
         lambda a, b: [T.solve(a, b)]),
    Case("solve-batched", GB((2, 3, 3), (2, 3, 2)), lambda a, b: [L.solve(a, b)],
         lambda a, b: [T.solve(a, b)]),
    Case("solve-batched-a-vector-b", GB((2, 3, 3), (3,)), lambda a, b: [L.solve(a, b)],
         lambda a, b: [T.solve(a, b)]),
    Case("solve-broadcast-batch", GB((2, 1, 3, 3), (4, 3, 2)), lambda a, b: [L.solve(a, b)],
         lambda a, b: [T.solve(a, b)]),
    Case("solve-batched-b", GB((3, 3), (2, 3, 1)), lambda a, b: [L.solve(a, b)],
         lambda a, b: [T.solve(a, b)]),
    Case("solve-b-only", GB((3, 3), (3, 2)), lambda a, b: [L.solve(a, b)],
         lambda a, b: [T.solve(a, b)], wrt=(1,)),
    # --- cholesky ----------------------------------------------------------------------------
    Case("cholesky", SPD(3, 3), lambda a: [L.cholesky(_sym(a))],
         lambda a: [T.cholesky(_sym(a))]),
    Case("cholesky-batched", SPD(2, 4, 4), lambda a: [L.cholesky(_sym(a))],
         lambda a: [T.cholesky(_sym(a))]),
    Case("cholesky-upper", SPD(3, 3), lambda a: [L.cholesky(_sym(a), upper=True)],
         lambda a: [T.cholesky(_sym(a), upper=True)]),
    Case("cholesky-raw-symmetric-gradient", SPD(3, 3), lambda a: [L.cholesky(a)],
         lambda a: [T.cholesky(a)], fd=False),
    # --- eigh --------------------------------------------------------------------------------
    Case("eigh", SYM(4, 4), _eigh_ours, _eigh_theirs),
    Case("eigh-batched", SYM(2, 3, 3), _eigh_ours, _eigh_theirs),
    Case("eigh-values-only", SYM(3, 3), lambda a: [L.eigh(_sym(a))[0]],
         lambda a: [T.eigh(_sym(a))[0]]),
    Case("eigh-vectors-only", SYM(3, 3), lambda a: _eigh_ours(a)[1:],
         lambda a: _eigh_theirs(a)[1:]),
    Case("eigh-upper", SYM(3, 3), lambda a: _eigh_ours(a, "U"), lambda a: _eigh_theirs(a, "U")),
    Case("eigh-raw-lower", RECT(3, 3), lambda a: _eigh_ours(a, sym=False),
         lambda a: _eigh_theirs(a, sym=False), fd=False),
    # --- svd ---------------------------------------------------------------------------------
    Case("svd-tall", RECT(4, 3), _svd_ours, _svd_theirs),
    Case("svd-wide", RECT(3, 4), _svd_ours, _svd_theirs),
    Case("svd-square", RECT(3, 3), _svd_ours, _svd_theirs),
    Case("svd-batched", RECT(2, 4, 3), _svd_ours, _svd_theirs),
    Case("svd-full-square", RECT(3, 3), lambda a: _svd_ours(a, True),
         lambda a: _svd_theirs(a, True)),
    Case("svd-full-tall-determined-part", RECT(4, 3), lambda a: _svd_ours(a, True),
         lambda a: _svd_theirs(a, True)),
    Case("svd-full-wide-determined-part", RECT(2, 3, 4), lambda a: _svd_ours(a, True),
         lambda a: _svd_theirs(a, True)),
    Case("svd-hermitian", SPD(3, 3), lambda a: _svd_ours(_sym(a), hermitian=True),
         lambda a: _svd_theirs(_sym(a))),
    Case("svd-values", RECT(2, 4, 3), lambda a: [L.svd(a, compute_uv=False)],
         lambda a: [T.svdvals(a)]),
    Case("svd-values-through-uv", RECT(3, 4), lambda a: [L.svd(a, full_matrices=False)[1]],
         lambda a: [T.svd(a, full_matrices=False)[1]]),
    # --- qr ----------------------------------------------------------------------------------
    Case("qr-tall", RECT(4, 3), _qr_ours, _qr_theirs),
    Case("qr-wide", RECT(3, 5), _qr_ours, _qr_theirs),
    Case("qr-square", RECT(3, 3), _qr_ours, _qr_theirs),
    Case("qr-batched-tall", RECT(2, 4, 3), _qr_ours, _qr_theirs),
    Case("qr-batched-wide", RECT(2, 2, 4), _qr_ours, _qr_theirs),
    Case("qr-complete-wide", RECT(3, 4), lambda a: _qr_ours(a, "complete"),
         lambda a: _qr_theirs(a, "complete")),
    Case("qr-complete-tall-determined-part", RECT(4, 3), lambda a: _qr_ours(a, "complete"),
         lambda a: _qr_theirs(a, "complete")),
    Case("qr-mode-r", RECT(4, 3), lambda a: [L.qr(a, mode="r") * _diag_sign(L.qr(a, "r"))[
        ..., :, None]], lambda a: _qr_theirs(a)[1:2]),
    # --- pinv --------------------------------------------------------------------------------
    Case("pinv-tall", RECT(4, 3), lambda a: [L.pinv(a)], lambda a: [T.pinv(a)]),
    Case("pinv-wide", RECT(3, 4), lambda a: [L.pinv(a)], lambda a: [T.pinv(a)]),
    Case("pinv-square", GEN(3, 3), lambda a: [L.pinv(a)], lambda a: [T.pinv(a)]),
    Case("pinv-batched", RECT(2, 3, 5), lambda a: [L.pinv(a)], lambda a: [T.pinv(a)]),
    Case("pinv-hermitian", SPD(3, 3), lambda a: [L.pinv(_sym(a), hermitian=True)],
         lambda a: [T.pinv(_sym(a), hermitian=True)]),
    # --- norm: vectors -----------------------------------------------------------------------
    _case("norm-default-all", RECT(2, 3, 4), _vnorm(None)),
    _case("norm-default-all-keepdims", RECT(2, 3), _vnorm(None, keepdims=True)),
    _case("norm-vector-2", RECT(5), _vnorm(2, 0)),
    _case("norm-vector-1", RECT(5), _vnorm(1, 0)),
    _case("norm-vector-3", RECT(5), _vnorm(3, 0)),
    _case("norm-vector-1.5", RECT(5), _vnorm(1.5, 0)),
    _case("norm-vector-0.5", RECT(5), _vnorm(0.5, 0)),
    _case("norm-vector--1", RECT(5), _vnorm(-1, 0)),
    _case("norm-vector-inf", RECT(5), _vnorm(INF, 0)),
    _case("norm-vector--inf", RECT(5), _vnorm(-INF, 0)),
    _case("norm-vector-0", RECT(5), _vnorm(0, 0), second=False),
    _case("norm-vector-axis1", RECT(2, 3, 4), _vnorm(None, 1)),
    _case("norm-vector-axis-last-keepdims", RECT(2, 3, 4), _vnorm(3, -1, True)),
    _case("norm-vector-axis-tuple", RECT(3, 4), _vnorm(1, (0,))),
    # --- norm: matrices ----------------------------------------------------------------------
    _case("norm-fro", RECT(3, 4), _mnorm("fro")),
    _case("norm-matrix-default", RECT(3, 4), _mnorm(None)),
    _case("norm-nuc", RECT(3, 4), _mnorm("nuc")),
    _case("norm-2-tall", RECT(4, 3), _mnorm(2)),
    _case("norm-2-wide", RECT(3, 4), _mnorm(2)),
    _case("norm--2", RECT(4, 3), _mnorm(-2)),
    _case("norm-1", RECT(3, 4), _mnorm(1)),
    _case("norm--1", RECT(3, 4), _mnorm(-1)),
    _case("norm-inf", RECT(3, 4), _mnorm(INF)),
    _case("norm--inf", RECT(3, 4), _mnorm(-INF)),
    _case("norm-batched-keepdims", RECT(2, 3, 4), _mnorm("nuc", (1, 2), True)),
    _case("norm-axes-reversed", RECT(3, 2, 4), _mnorm(1, (2, 0))),
    _case("norm-axes-reversed-2", RECT(3, 2, 4), _mnorm(2, (2, 0), True)),
    _case("norm-axes-inf-keepdims", RECT(2, 3, 4), _mnorm(INF, (0, 2), True)),
    Case("norm-2d-ord-axis-none", RECT(3, 4), lambda x: [L.norm(x, 1)],
         lambda x: [T.matrix_norm(x, 1)]),
    # --- kinks: PyTorch's subgradients -------------------------------------------------------
    _case("norm-2-at-zero", C([0.0, 0.0, 0.0]), _vnorm(2, 0), fd=False, second=False),
    _case("norm-fro-at-zero", C(np.zeros((2, 2))), _mnorm("fro"), fd=False, second=False),
    _case("norm-1-with-zeros", C([0.0, 1.0, -2.0]), _vnorm(1, 0), fd=False),
    _case("norm-3-with-zeros", C([0.0, 1.0, -2.0]), _vnorm(3, 0), fd=False, second=False),
    _case("norm-0.5-with-zeros", C([0.0, 1.0, -2.0]), _vnorm(0.5, 0), fd=False, second=False),
    _case("norm-inf-ties", C([1.0, -2.0, 2.0]), _vnorm(INF, 0), fd=False),
    _case("norm-matrix-1-ties", C([[1.0, 2.0], [-2.0, 1.0]]), _mnorm(1), fd=False),
]

IDS = [c.id for c in CASES]
assert len(set(IDS)) == len(IDS), "case ids must be unique"


# --- harness -------------------------------------------------------------------------------------
def _joined_ours(outs):
    return cr.concatenate([cr.reshape(o, (-1,)) for o in outs])


def _joined_theirs(outs):
    return torch.cat([o.reshape(-1) for o in outs])


def _ours(case, arrays, wrt, dtype=np.float64):
    tensors = [cr.tensor(np.asarray(a, dtype), requires_grad=i in wrt)
               for i, a in enumerate(arrays)]
    return tensors, _joined_ours(case.ours(*tensors))


def _weights(n, dtype=np.float64):
    return np.random.default_rng(1).standard_normal(n).astype(dtype)


def _torch_grads(case, arrays, wrt, w):
    tensors = [to_torch(a, requires_grad=i in wrt) for i, a in enumerate(arrays)]
    out = _joined_theirs(case.theirs(*tensors))
    grads = torch.autograd.grad((out * to_torch(w)).sum(), [tensors[i] for i in wrt],
                                allow_unused=True)
    return out.detach().numpy(), [np.zeros(arrays[i].shape) if g is None else g.numpy()
                                  for i, g in zip(wrt, grads)]


def _scalar_fn(case, w):
    def f(*arrays):
        with cr.no_grad():
            out = _joined_ours(case.ours(*[cr.tensor(a) for a in arrays]))
        return float((out.data * w).sum())
    return f


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_value_and_gradient_match_torch_and_finite_differences(case):
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    tensors, out = _ours(case, arrays, wrt)
    assert out.dtype == np.float64
    w = _weights(out.shape[0])
    grads = cr.gradients((out * w).sum(), [tensors[i] for i in wrt])
    expected, tgrads = _torch_grads(case, arrays, wrt, w)
    assert_close(out, expected, what=f"{case.id}: value")
    for i, g, tg in zip(wrt, grads, tgrads):
        g = np.zeros(arrays[i].shape) if g is None else g.data
        assert g.shape == arrays[i].shape and g.dtype == np.float64
        assert_close(g, tg, rtol=1e-7, atol=1e-9, what=f"{case.id}: gradient {i} vs torch")
    if case.fd:
        numeric = central_difference(_scalar_fn(case, w), arrays, wrt)
        for i, g, ng in zip(wrt, grads, numeric):
            assert_close(g, ng, rtol=1e-5, atol=1e-6,
                         what=f"{case.id}: gradient {i} vs finite differences")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_float32_stays_float32(case):
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    t64, out64 = _ours(case, arrays, wrt)
    w = _weights(out64.shape[0])
    g64 = cr.gradients((out64 * w).sum(), [t64[i] for i in wrt])
    t32, out32 = _ours(case, arrays, wrt, np.float32)
    assert out32.dtype == np.float32, f"{case.id}: output is {out32.dtype}"
    seen = []
    for i in wrt:  # the gradient as it reaches the leaf, before any cast to the leaf's dtype
        t32[i].register_hook(lambda g: seen.append(g.dtype))
    g32 = cr.gradients((out32 * w.astype(np.float32)).sum(), [t32[i] for i in wrt])
    assert seen and all(d == np.float32 for d in seen), f"{case.id}: gradients {seen}"
    tol = case.f32_tol
    assert_close(out32, out64, rtol=tol, atol=tol, what=case.id)
    for a, b in zip(g32, g64):
        if a is not None:
            assert a.dtype == np.float32
            assert_close(a, b, rtol=tol, atol=tol * max(1.0, float(np.abs(b.data).max())),
                         what=case.id)


def _joined_fns(case):
    return (lambda *t: _joined_ours(case.ours(*t)), lambda *t: _joined_theirs(case.theirs(*t)))


SECOND = [c for c in CASES if c.second]


def _direction(case, arrays, wrt):
    rng = np.random.default_rng(3)
    v = [rng.standard_normal(arrays[i].shape) for i in wrt]
    if case.id.startswith(("cholesky", "eigh")):  # stay among the matrices it reads
        v = [(x + np.swapaxes(x, -1, -2)) / 2 for x in v]
    return v


@pytest.mark.parametrize("case", SECOND, ids=[c.id for c in SECOND])
def test_second_order_matches_torch(case):
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    _, out = _ours(case, arrays, wrt)
    w = np.random.default_rng(4).standard_normal(out.shape[0])
    v = _direction(case, arrays, wrt)
    ours_fn, theirs_fn = _joined_fns(case)
    ours = hvp_ours(ours_fn, arrays, wrt, w, v)
    theirs = hvp_torch(theirs_fn, arrays, wrt, w, v)
    for i, a, b in zip(list(wrt) + ["w"], ours, theirs):
        assert_close(a, b, rtol=1e-6, atol=1e-8, what=f"{case.id}: second derivative, {i}")


SECOND_FD = [c for c in CASES if c.second and c.fd]


@pytest.mark.parametrize("case", SECOND_FD, ids=[c.id for c in SECOND_FD])
def test_second_order_matches_finite_differences_of_the_gradient(case):
    """H v from create_graph equals (grad(x + eps v) - grad(x - eps v)) / (2 eps)."""
    arrays = case.inputs()
    wrt = case.diff(len(arrays))
    _, out = _ours(case, arrays, wrt)
    w = np.random.default_rng(4).standard_normal(out.shape[0])
    v = _direction(case, arrays, wrt)
    ours_fn = _joined_fns(case)[0]
    hv = hvp_ours(ours_fn, arrays, wrt, w, v)[:-1]
    numeric = hvp_finite_differences(ours_fn, arrays, wrt, w, v)
    for i, a, b in zip(wrt, hv, numeric):
        assert_close(a, b, rtol=1e-4, atol=1e-5, what=f"{case.id}: H v of input {i} vs fd")


# --- coverage: every differentiable row of chainrule.linalg has a case -------------------------
def test_every_linalg_row_has_a_case():
    rows = table_rows(la)
    assert {"_inv", "_det", "_cofactor", "_slogdet", "_solve", "_cholesky", "_eigh", "_svd",
            "_svdvals", "_qr", "_pinv", "_vector_norm"} <= set(rows)
    exercised = set()
    for case in CASES:
        arrays = case.inputs()
        wrt = case.diff(len(arrays))
        tensors, out = _ours(case, arrays, wrt)
        ops_in_graph(out, exercised)
        if case.second:  # the rows that run only inside another row's rule
            loss = (out * cr.tensor(np.ones(out.shape), requires_grad=True)).sum()
            for g in cr.gradients(loss, [tensors[i] for i in wrt], create_graph=True):
                ops_in_graph(g, exercised)
    missing = sorted(name for name, row in rows.items() if id(row) not in exercised)
    assert not missing, f"rows of chainrule.linalg without a test case: {missing}"


def test_every_row_has_a_formula_per_input():
    for name, row in table_rows(la).items():
        assert len(row.formulas) == len(row.vjps), name


# --- NumPy's semantics on plain arrays ---------------------------------------------------------
def test_plain_arrays_give_numpy_results():
    r = np.random.default_rng(0)
    a, s, m = r.standard_normal((2, 3, 3)) + 3 * np.eye(3), SPD(3, 3)(r)[0], r.standard_normal(
        (4, 3))
    for ours, theirs in [(L.inv(a), np.linalg.inv(a)), (L.det(a), np.linalg.det(a)),
                         (L.cholesky(s), np.linalg.cholesky(s)),
                         (L.cholesky(s, upper=True), np.linalg.cholesky(s, upper=True)),
                         (L.pinv(m), np.linalg.pinv(m)),
                         (L.solve(a, np.ones(3)), np.linalg.solve(a, np.ones(3))),
                         (L.qr(m, mode="r"), np.linalg.qr(m, mode="r")),
                         (L.svd(m, compute_uv=False), np.linalg.svd(m, compute_uv=False))]:
        assert isinstance(ours, (np.ndarray, np.generic)) and not isinstance(ours, cr.Tensor)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    for ours, theirs in [(L.slogdet(a), np.linalg.slogdet(a)), (L.eigh(s), np.linalg.eigh(s)),
                         (L.eigh(s, "U"), np.linalg.eigh(s, "U")),
                         (L.svd(m), np.linalg.svd(m)), (L.svd(m, False), np.linalg.svd(m, False)),
                         (L.qr(m), np.linalg.qr(m)), (L.qr(m, "complete"),
                                                      np.linalg.qr(m, "complete"))]:
        assert type(ours).__name__ == type(theirs).__name__ and ours._fields == theirs._fields
        for x, y in zip(ours, theirs):
            assert x.shape == y.shape
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


NORM_ARGS = [(None, None, False), (None, None, True), (2, 0, False), (1, 1, True),
             (INF, -1, False), (-INF, 0, True), (0, 1, False), (3.5, -1, False), (-1.5, 0, True),
             ("fro", (0, 1), False), ("nuc", (1, 2), True), (2, (2, 1), False),
             (-2, (0, 2), True), (1, (1, 0), False), (-1, (0, 1), True), (INF, (2, 0), True),
             (-INF, (1, 2), False), (None, (0, 2), False)]


@pytest.mark.parametrize("ord,axis,keepdims", NORM_ARGS)
def test_norm_values_are_numpys(ord, axis, keepdims):
    x = np.random.default_rng(2).standard_normal((2, 3, 4))
    x[0, 0, 0] = 0.0
    with np.errstate(divide="ignore"):  # NumPy's own |0| ** negative ord
        expected = np.linalg.norm(x, ord, axis, keepdims)
    out = L.norm(cr.tensor(x), ord, axis, keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)
    np.testing.assert_allclose(L.norm(x, ord, axis, keepdims), expected, rtol=1e-12)


@pytest.mark.parametrize("ord", [None, "fro", "nuc", 1, -1, 2, -2, INF, -INF, 0, 3])
def test_norm_of_2d_and_1d_with_axis_none_is_numpys(ord):
    x = np.random.default_rng(2).standard_normal((3, 4))
    if ord in (0, 3):
        with pytest.raises(ValueError, match="matrices"):
            L.norm(x, ord)
    else:
        np.testing.assert_allclose(L.norm(cr.tensor(x), ord).data, np.linalg.norm(x, ord))
    if not isinstance(ord, str):
        np.testing.assert_allclose(L.norm(x[0], ord), np.linalg.norm(x[0], ord))


def test_pinv_cutoffs_are_numpys():
    m = np.diag([1.0, 1e-4, 1e-9])
    for kwargs in ({}, {"rcond": 1e-3}, {"rtol": 1e-6}):
        np.testing.assert_allclose(L.pinv(cr.tensor(m), **kwargs).data, np.linalg.pinv(m, **kwargs))


def test_hessian_of_logdet_matches_torch():
    a = GEN(3, 3)(np.random.default_rng(0))[0]
    ours = cr.hessian(lambda x: L.slogdet(x)[1])(a)
    theirs = torch.autograd.functional.hessian(lambda t: T.slogdet(t)[1], to_torch(a))
    assert_close(ours, theirs)
    # d^2 log|det a| / da_ij da_kl = -inv(a)_li inv(a)_jk
    b = np.linalg.inv(a)
    assert_close(ours, -np.einsum("li,jk->ijkl", b, b))


def test_norm_of_integers_is_float():
    assert L.norm(np.array([3, 4])) == 5.0


# --- degenerate spectra --------------------------------------------------------------------------
def _both(fn_ours, fn_theirs, a):
    x = cr.tensor(a, requires_grad=True)
    fn_ours(x).backward()
    t = to_torch(a, requires_grad=True)
    fn_theirs(t).backward()
    return x.grad.data, t.grad.numpy()


def test_eigh_repeated_eigenvalues_values_only_is_finite_like_torch():
    ours, theirs = _both(lambda x: (L.eigh(x)[0] * np.arange(1.0, 4.0)).sum(),
                         lambda t: (T.eigh(t)[0] * torch.arange(1.0, 4.0)).sum(), np.eye(3))
    assert np.all(np.isfinite(ours))
    assert_close(ours, theirs)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_eigh_repeated_eigenvalues_vectors_give_nan_like_torch():
    c = np.arange(9.0).reshape(3, 3)
    ours, theirs = _both(lambda x: (L.eigh(x)[1] * c).sum(),
                         lambda t: (T.eigh(t)[1] * to_torch(c)).sum(), np.diag([1.0, 1.0, 2.0]))
    assert not np.all(np.isfinite(ours))
    assert not np.all(np.isfinite(theirs))


def test_eigh_vector_of_a_simple_eigenvalue_is_finite_where_torch_gives_nan():
    """The eigenvector of the simple eigenvalue 2 of diag(1, 1, 2) is differentiable: only the
    pairs (i, 2) enter its gradient. chainrule gives the finite derivative; PyTorch's 0/0 for the
    repeated pair makes it nan."""
    a = np.diag([1.0, 1.0, 2.0])
    c = np.array([0.3, -1.0, 2.0])

    def f(x):
        v = L.eigh(_sym(x))[1][:, 2]
        return (v * v * c).sum()

    x = cr.tensor(a, requires_grad=True)
    f(x).backward()
    assert np.all(np.isfinite(x.grad.data))
    numeric = central_difference(lambda m: f(cr.tensor(m)).item(), [a])[0]
    assert_close(x.grad, numeric, rtol=1e-5, atol=1e-6)
    t = to_torch(a, requires_grad=True)
    v = T.eigh(t)[1][:, 2]
    (v * v * to_torch(c)).sum().backward()
    assert not np.all(np.isfinite(t.grad.numpy()))


def test_svd_repeated_singular_values_values_only_is_finite_like_torch():
    a = np.diag([2.0, 2.0, 1.0])
    ours, theirs = _both(lambda x: (L.svd(x)[1] * np.array([1.0, 2.0, 3.0])).sum(),
                         lambda t: (T.svdvals(t) * torch.tensor([1.0, 2.0, 3.0])).sum(), a)
    assert np.all(np.isfinite(ours))
    assert_close(ours, theirs)
    ours, _ = _both(lambda x: L.norm(x, "nuc"), lambda t: T.matrix_norm(t, "nuc"), a)
    assert_close(ours, np.eye(3))


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_svd_repeated_singular_values_vectors_give_nan_like_torch():
    a = np.diag([2.0, 2.0, 1.0])
    c = np.arange(9.0).reshape(3, 3)
    ours, theirs = _both(lambda x: (L.svd(x)[0] * c).sum(),
                         lambda t: (T.svd(t)[0] * to_torch(c)).sum(), a)
    assert not np.all(np.isfinite(ours))
    assert not np.all(np.isfinite(theirs))


def test_svd_of_rank_deficient_tall_matrix_values_only_is_finite():
    a = np.array([[1.0, 2.0], [2.0, 4.0], [0.0, 0.0]])  # rank 1: one singular value is 0
    ours, theirs = _both(lambda x: L.svd(x, full_matrices=False)[1].sum(),
                         lambda t: T.svdvals(t).sum(), a)
    assert np.all(np.isfinite(ours))
    assert_close(ours, theirs)


# --- the cases where no derivative exists ------------------------------------------------------
def test_svd_full_matrices_of_non_square_raises_when_the_extra_columns_matter():
    x = cr.tensor(np.random.default_rng(0).standard_normal((4, 3)), requires_grad=True)
    u, s, vh = L.svd(x)  # full_matrices=True: u is 4 x 4
    assert u.shape == (4, 4)
    with pytest.raises(ValueError, match=r"svd: the gradient through the last 1 columns of U"):
        u.sum().backward()
    y = cr.tensor(np.random.default_rng(0).standard_normal((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match=r"full_matrices=True.*shape \(2, 3\)"):
        L.svd(y)[2].sum().backward()


def test_qr_complete_of_tall_matrix_raises_when_the_extra_columns_matter():
    x = cr.tensor(np.random.default_rng(0).standard_normal((4, 2)), requires_grad=True)
    q, r = L.qr(x, mode="complete")
    assert q.shape == (4, 4) and r.shape == (4, 2)
    with pytest.raises(ValueError, match=r"qr: the gradient through the last 2 columns of Q"):
        q.sum().backward()


def test_det_of_singular_matrix_has_the_cofactor_gradient():
    """PyTorch 2.13 returns 0 here; the derivative is the cofactor matrix (finite differences)."""
    a = np.array([[1.0, 2.0, 0.5], [2.0, 4.0, 1.0], [0.3, -1.0, 2.0]])  # rank 2
    x = cr.tensor(a, requires_grad=True)
    L.det(x).backward()
    numeric = central_difference(lambda m: float(np.linalg.det(m)), [a])[0]
    assert_close(x.grad, numeric, rtol=1e-6, atol=1e-8)
    assert np.abs(x.grad.data).max() > 1


def test_det_of_exactly_singular_matrix_float32():
    x = cr.tensor(np.array([[1.0, 2.0], [2.0, 4.0]], np.float32), requires_grad=True)
    L.det(x).backward()
    assert x.grad.dtype == np.float32
    assert_close(x.grad, np.array([[4.0, -2.0], [-2.0, 1.0]]), rtol=1e-5, atol=1e-5)


def test_slogdet_of_singular_matrix_raises_in_backward():
    x = cr.tensor(np.array([[1.0, 2.0], [2.0, 4.0]]), requires_grad=True)
    sign, logabsdet = L.slogdet(x)
    assert sign.item() == 0 and logabsdet.item() == -np.inf
    assert sign.grad_fn is None
    with pytest.raises(np.linalg.LinAlgError, match="SlogdetBackward"):
        logabsdet.backward()


# --- errors name the function and the shapes ---------------------------------------------------
@pytest.mark.parametrize("fn,args,pattern", [
    (L.inv, [np.ones((3, 4))], r"inv: expected a square matrix .* got shape \(3, 4\)"),
    (L.det, [np.ones(3)], r"det: expected a square matrix .* got shape \(3,\)"),
    (L.slogdet, [np.ones((2, 3))], r"slogdet: .*\(2, 3\)"),
    (L.cholesky, [np.ones((2, 3))], r"cholesky: .*\(2, 3\)"),
    (L.eigh, [np.ones((2, 3))], r"eigh: .*\(2, 3\)"),
    (L.svd, [np.ones(3)], r"svd: expected a matrix .* got shape \(3,\)"),
    (L.qr, [np.ones(3)], r"qr: expected a matrix"),
    (L.pinv, [np.ones(3)], r"pinv: expected a matrix"),
    (L.solve, [np.eye(3), np.ones(4)], r"solve: a of shape \(3, 3\) needs b of shape \(3,\) or "
                                       r"\(\.\.\., 3, k\); got shape \(4,\)"),
    (L.solve, [np.eye(3), np.ones((2, 3))], r"solve: .* got shape \(2, 3\)"),
    (L.solve, [np.ones((2, 3, 3)), np.ones((4, 3, 1))],
     r"solve: the batch dimensions of a \(2, 3, 3\) and b \(4, 3, 1\) do not broadcast"),
])
def test_shape_errors_name_the_function_and_shapes(fn, args, pattern):
    for wrap in (lambda a: a, lambda a: cr.tensor(a, requires_grad=True)):
        with pytest.raises(ValueError, match=pattern):
            fn(*[wrap(a) for a in args])


@pytest.mark.parametrize("tensor", [False, True])
def test_linalg_errors_stay_linalg_errors_and_name_the_function(tensor):
    wrap = (lambda a: cr.tensor(a, requires_grad=True)) if tensor else (lambda a: a)
    with pytest.raises(np.linalg.LinAlgError, match=r"cholesky: .*positive definite.*\(2, 2\)"):
        L.cholesky(wrap(np.array([[1.0, 2.0], [2.0, 1.0]])))
    with pytest.raises(np.linalg.LinAlgError, match=r"inv: .*[Ss]ingular"):
        L.inv(wrap(np.zeros((2, 2))))
    with pytest.raises(np.linalg.LinAlgError, match=r"solve: .*[Ss]ingular"):
        L.solve(wrap(np.zeros((2, 2))), wrap(np.ones(2)))
    assert L.LinAlgError is np.linalg.LinAlgError


def test_argument_errors():
    x = cr.tensor(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="eigh: UPLO must be 'L' or 'U'"):
        L.eigh(np.eye(2), UPLO="X")
    with pytest.raises(ValueError, match="qr: mode must be .*'raw'"):
        L.qr(np.eye(2), mode="raw")
    with pytest.raises(ValueError, match="norm: invalid norm order 'fro' for vectors"):
        L.norm(x, "fro", axis=1)
    with pytest.raises(ValueError, match="norm: invalid norm order 3 for matrices"):
        L.norm(x, 3, axis=(1, 2))
    with pytest.raises(ValueError, match=r"norm: ord=2 with axis=None needs a 1-D or 2-D input"):
        L.norm(x, 2)
    with pytest.raises(ValueError, match="norm: axis 3 is out of range"):
        L.norm(x, axis=3)
    with pytest.raises(ValueError, match="norm: repeated axis"):
        L.norm(x, axis=(1, -2))
    with pytest.raises(ValueError, match="norm: axis must name one axis"):
        L.norm(x, axis=(0, 1, 2))
    with pytest.raises(TypeError, match="norm: axis must be an int"):
        L.norm(x, axis=1.0)
    with pytest.raises(TypeError, match="inv: complex tensors are not supported"):
        L.inv(cr.tensor(np.eye(2) * (1 + 1j)))


def test_gradient_of_eigh_is_symmetric_like_torch():
    a = RECT(3, 3)(np.random.default_rng(5))[0]  # not symmetric: eigh reads its lower triangle
    ours, theirs = _both(lambda x: (_eigh_ours(x, sym=False)[1] * np.arange(9.0).reshape(3, 3))
                         .sum(), lambda t: (_eigh_theirs(t, sym=False)[1]
                                            * torch.arange(9.0).reshape(3, 3)).sum(), a)
    assert_close(ours, ours.T, rtol=1e-12, atol=1e-12)
    assert_close(ours, theirs)


def test_public_api():
    assert cr.linalg is la
    for name in ("inv", "det", "slogdet", "solve", "cholesky", "eigh", "svd", "norm", "qr",
                 "pinv"):
        assert callable(getattr(cr.linalg, name)) and name in la.__all__
