"""chainrule.linalg: NumPy's linear algebra (``np.linalg``), differentiable to any order.

The rows below have the form of THE TABLE in ``ops/``: ``Primitive(name, forward, [rule per
input], [formulas])``, each rule ``rule(grad, ans, *inputs, **params)`` written only with
operators, methods shared by ``ndarray`` and ``Tensor`` and other rows (of this table or of
``ops``), so one rule serves the ordinary backward pass and ``create_graph=True``. Every function
batches over leading dimensions (``...``) as NumPy does, and float32 stays float32.

A row has one output. The decompositions (eigh, svd, qr, slogdet) compute all their results in one
call and return them packed side by side along a last axis; the public function slices the pieces
out (views) and the row's rule unpacks the gradient the same way, so only one factorisation runs.

Conventions, where the mathematics leaves a choice (each one tested against PyTorch):

- ``eigh`` and ``cholesky`` read one triangle of ``a`` (``UPLO``; the lower for cholesky) but, as
  ``torch.linalg``, return the symmetric gradient: the derivative along symmetric perturbations.
- Degenerate spectra: ``eigh`` with repeated eigenvalues, ``svd`` with repeated (or, for
  non-square input, zero) singular values. The gradient through the eigen/singular vectors of a
  repeated value does not exist; where the loss actually depends on them it comes out inf/nan, as
  in PyTorch. Where it does not (only ``w`` or ``S`` is used, or the cotangent of those vectors
  vanishes), those terms are 0 and the gradient is finite and correct; PyTorch gives nan there
  unless the vectors take no part in the graph at all.
- ``svd(full_matrices=True)`` and ``qr(mode='complete')`` of a non-square input return extra
  columns of U / Q (rows of Vh) that are any orthonormal basis of a complement: no derivative
  exists. Backward raises a clear ValueError when the loss depends on them, and otherwise gives the
  gradient of the well-defined part (which is what PyTorch computes for svd; PyTorch refuses qr
  'complete' of a tall matrix outright). ``qr(mode='r')`` is differentiable (PyTorch refuses it).
- ``det`` at a singular matrix: the gradient is the cofactor matrix (computed from an SVD, exact
  at rank n - 1); PyTorch 2.13 returns zeros there. Its second derivative needs an invertible
  matrix. ``slogdet``'s gradient flows through ``logabsdet`` only (``sign`` is piecewise constant)
  and needs an invertible matrix (LinAlgError otherwise; PyTorch gives inf).
- ``norm`` at points where it is not differentiable takes PyTorch's subgradients: the 2-norm (and
  Frobenius) of zero has gradient 0; ord=1 uses sign(x) (0 at 0); ord=inf/-inf share the gradient
  equally among the entries tied at the maximum/minimum of |x| (sign(x) each); ord=0 (a count) has
  gradient 0; the matrix norms 1, -1, inf, -inf, 2, -2 share it among ties the same way; 'nuc' at
  repeated singular values is finite (U V^T).
- ``pinv``'s gradient is PyTorch's formula, valid where the rank does not change.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.linalg import LinAlgError

from chainrule import ops
from chainrule.autograd import Primitive, ShapeError
from chainrule.tensor import Tensor, as_array

P = Primitive

__all__ = ["LinAlgError", "cholesky", "det", "eigh", "inv", "norm", "pinv", "qr", "slogdet",
           "solve", "svd"]


class EighResult(NamedTuple):
    eigenvalues: object
    eigenvectors: object


class SVDResult(NamedTuple):
    U: object
    S: object
    Vh: object


class QRResult(NamedTuple):
    Q: object
    R: object


class SlogdetResult(NamedTuple):
    sign: object
    logabsdet: object


# ----------------------------------------------------------------------------------------------
# Helpers shared by forwards and rules (arrays or Tensors alike)
# ----------------------------------------------------------------------------------------------
def _mT(x):  # noqa: N802 - the matrix transpose of the last two axes, as torch's x.mT
    return x.swapaxes(-1, -2)


def _data(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _eye(n, dtype):
    return np.eye(n, dtype=dtype)


def _pack(batch, *parts):
    """The results of one factorisation side by side along a last axis (one row output)."""
    return np.concatenate([np.reshape(p, batch + (-1,)) for p in parts], axis=-1)


def _unpack(packed, shapes):
    """The pieces of a packed output (or of its gradient), as views of shape batch + shape."""
    batch = tuple(packed.shape[:-1])
    out, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        out.append(packed[..., start:start + size].reshape(batch + tuple(shape)))
        start += size
    return out


def _quotient(num, den):
    """``num / den`` for a ``den`` that is exactly 0 at degenerate pairs (repeated eigenvalues or
    singular values, zero singular values). There the result is 0 where ``num`` is 0 too (the loss
    does not depend on that direction) and +-inf where it is not (no derivative exists)."""
    d = _data(den)
    zero = d == 0
    if not zero.any():
        return num / den
    out = num / (den + zero.astype(d.dtype)) * (~zero).astype(d.dtype)
    n = _data(num)
    bad = zero & (n != 0)
    if bad.any():
        out = out + np.where(bad, np.copysign(np.inf, n), 0).astype(d.dtype)
    return out


def _ratio0(num, den):
    """``num / den``, and 0 where ``den`` is 0 (PyTorch's masked_fill at a zero norm)."""
    zero = den == 0
    return num / ops.where(zero, 1, den) * (~_data(zero)).astype(_data(den).dtype)


def _right_solve_t(x, r):
    """``x @ inv(r)^T`` without forming the inverse."""
    return _mT(_solve(r, _mT(x)))


# ----------------------------------------------------------------------------------------------
# Forwards that need more than one NumPy call
# ----------------------------------------------------------------------------------------------
def _cofactor_forward(a):
    """The cofactor matrix det(a) inv(a)^T, exact at singular matrices too."""
    if a.shape[-1] == 0:
        return np.zeros_like(a)
    try:
        with np.errstate(all="ignore"):
            out = np.asarray(np.linalg.det(a))[..., None, None] * _mT(np.linalg.inv(a))
        if np.all(np.isfinite(out)):
            return out
    except LinAlgError:
        pass
    # a = U diag(s) Vh: cof(a) = det(U) det(Vh) U diag(prod of the other s) Vh, no division.
    u, s, vh = np.linalg.svd(a)
    ones = np.ones(s.shape[:-1] + (1,), s.dtype)
    before = np.cumprod(np.concatenate([ones, s[..., :-1]], axis=-1), axis=-1)
    after = np.cumprod(np.concatenate([ones, s[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    sign = np.linalg.det(u) * np.linalg.det(vh)
    return (sign[..., None, None] * (u * (before * after)[..., None, :]) @ vh).astype(a.dtype)


def _slogdet_forward(a):
    sign, logabsdet = np.linalg.slogdet(a)
    return np.stack([sign, logabsdet], axis=-1)


def _eigh_forward(a, UPLO, shapes):  # noqa: N803 - NumPy's name
    w, v = np.linalg.eigh(a, UPLO=UPLO)
    return _pack(a.shape[:-2], w, v)


def _svd_forward(a, full_matrices, hermitian, shapes):
    u, s, vh = np.linalg.svd(a, full_matrices=full_matrices, hermitian=hermitian)
    return _pack(a.shape[:-2], u, s, vh)


def _qr_forward(a, mode, shapes):
    q, r = np.linalg.qr(a, mode=mode)
    return _pack(a.shape[:-2], q, r)


def _pinv_forward(a, rcond, hermitian, rtol):
    kwargs = {} if rtol is None else {"rtol": rtol}
    if rcond is not None:
        kwargs["rcond"] = rcond
    return np.linalg.pinv(a, hermitian=hermitian, **kwargs)


def _vector_norm_forward(x, ord, axis, keepdims):
    if ord == 2:
        return np.sqrt(np.sum(x * x, axis=axis, keepdims=keepdims))
    if ord == 1:
        return np.sum(np.abs(x), axis=axis, keepdims=keepdims)
    if ord == 0:
        return np.sum(x != 0, axis=axis, keepdims=keepdims).astype(x.dtype)
    with np.errstate(divide="ignore"):  # |0| ** (negative ord) is inf: the norm is 0, as NumPy
        return np.sum(np.abs(x) ** ord, axis=axis, keepdims=keepdims) ** (1.0 / ord)


# ----------------------------------------------------------------------------------------------
# VJP rules that read better as named functions
# ----------------------------------------------------------------------------------------------
def _cofactor_grad(g, ans, a):
    # d cof(a) = cof(a) tr(inv(a) da) - det(a) inv(a)^T da^T inv(a)^T
    ait = _mT(_inv(a))
    return ((g * ans).sum(axis=(-2, -1), keepdims=True) * ait
            - _det(a)[..., None, None] * (ait @ _mT(g) @ ait))


def _cholesky_grad(g, ans, a, upper):
    # PyTorch's rule (Murray 2016, symmetrised): L^-T sym(Phi(L^T gL)) L^-1
    low, gl = (_mT(ans), _mT(g)) if upper else (ans, g)
    n = low.shape[-1]
    phi = (_mT(low) @ gl) * np.tril(np.ones((n, n), dtype=g.dtype))
    sym = (phi + _mT(phi * np.tril(np.ones((n, n), dtype=g.dtype), -1))) * 0.5
    low_inv = _inv(low)
    return _mT(low_inv) @ sym @ low_inv


def _eigh_grad(g, ans, a, UPLO, shapes):  # noqa: N803
    gw, gv = _unpack(g, shapes)
    w, v = _unpack(ans, shapes)
    eye = _eye(shapes[0][0], g.dtype)
    x = _mT(v) @ gv
    gap = w[..., None, :] - w[..., :, None] + eye  # w_j - w_i off the diagonal
    inner = _quotient((x - _mT(x)) * 0.5, gap) + gw[..., None, :] * eye
    return v @ inner @ _mT(v)


def _undetermined(where, piece, what, shape, fix):
    if np.any(_data(piece)):
        raise ValueError(
            f"{where}: the gradient through {what} is not defined for a non-square input of shape "
            f"{shape}: they are any orthonormal basis of a complement, not a function of the "
            f"input. Use {fix}.")


def _svd_grad(g, ans, a, full_matrices, hermitian, shapes):
    gu, gs, gvh = _unpack(g, shapes)
    u, s, vh = _unpack(ans, shapes)
    m, n, k = shapes[0][0], shapes[2][1], shapes[1][0]
    if full_matrices and m != n:  # keep the first k columns of U / rows of Vh
        shape = (m, n)
        if m > n:
            _undetermined("svd", gu[..., :, k:], f"the last {m - k} columns of U "
                          "(full_matrices=True)", shape,
                          f"full_matrices=False, or only U[..., :, :{k}]")
            gu, u = gu[..., :, :k], u[..., :, :k]
        else:
            _undetermined("svd", gvh[..., k:, :], f"the last {n - k} rows of Vh "
                          "(full_matrices=True)", shape,
                          f"full_matrices=False, or only Vh[..., :{k}, :]")
            gvh, vh = gvh[..., :k, :], vh[..., :k, :]
    eye = _eye(k, g.dtype)
    ugu = _mT(u) @ gu
    vgv = vh @ _mT(gvh)
    s2 = s * s
    gap = s2[..., None, :] - s2[..., :, None] + eye  # s_j^2 - s_i^2 off the diagonal
    inner = (_quotient((ugu - _mT(ugu)) * s[..., None, :] + s[..., :, None] * (vgv - _mT(vgv)),
                       gap) + gs[..., None, :] * eye)
    if m > n:  # + (I - U U^T) gU S^-1
        return (u @ inner + _quotient(gu - u @ ugu, s[..., None, :])) @ vh
    if m < n:  # + S^-1 gVh (I - V V^T)
        return u @ (inner @ vh + _quotient(gvh - _mT(vgv) @ vh, s[..., :, None]))
    return u @ inner @ vh


def _svdvals_grad(g, a, hermitian):
    u, _, vh = svd(a, full_matrices=False)
    return (u * g[..., None, :]) @ vh


def _qr_tall_grad(gq, gr, q, r):
    """m >= n: Q (gR + tril(skew(Q^T gQ) + skew(R gR^T)) R^-T) + (gQ - Q Q^T gQ) R^-T."""
    n = r.shape[-1]
    qgq = _mT(q) @ gq
    rgr = r @ _mT(gr)
    low = (qgq - _mT(qgq) + rgr - _mT(rgr)) * np.tril(np.ones((n, n), dtype=gq.dtype))
    return q @ (gr + _right_solve_t(low, r)) + _right_solve_t(gq - q @ qgq, r)


def _qr_grad(g, ans, a, mode, shapes):
    gq, gr = _unpack(g, shapes)
    q, r = _unpack(ans, shapes)
    m, n = shapes[0][0], shapes[1][1]
    if m > n and mode == "complete":  # keep the first n columns of Q (R's last rows are 0)
        _undetermined("qr", gq[..., :, n:], f"the last {m - n} columns of Q (mode='complete')",
                      (m, n), f"mode='reduced', or only Q[..., :, :{n}]")
        gq, q, gr, r = gq[..., :, :n], q[..., :, :n], gr[..., :n, :], r[..., :n, :]
    if m >= n:
        return _qr_tall_grad(gq, gr, q, r)
    # wide: a = (X | Y), r = (U | V), X = Q U square, Y = Q V
    gu, gv = gr[..., :, :m], gr[..., :, m:]
    gx = _qr_tall_grad(gq + (q @ r[..., :, m:]) @ _mT(gv), gu, q, r[..., :, :m])
    return ops.concatenate([gx, q @ gv], axis=-1)


def _pinv_grad(g, ans, a, rcond, hermitian, rtol):
    # PyTorch's pinv_backward: -P^T g P^T + (I - A P) g^T P P^T + P^T P g^T (I - P A)
    pt, gt = _mT(ans), _mT(g)
    k = gt @ ans @ pt
    h = pt @ ans @ gt
    return -(pt @ g @ pt) + (k - a @ (ans @ k)) + (h - (h @ ans) @ a)


def _expand(g, shape, axis, keepdims):
    """A reduction's result reshaped to broadcast against its input of ``shape``."""
    return g if keepdims else g.reshape(tuple(1 if i in axis else n for i, n in enumerate(shape)))


def _vector_norm_grad(g, ans, x, ord, axis, keepdims):
    g = _expand(g, x.shape, axis, keepdims)
    if ord == 0:  # a count: no gradient
        return ops.broadcast_to(g * 0, x.shape)
    if ord == 1:
        return g * ops.sign(x)
    nrm = _expand(ans, x.shape, axis, keepdims)
    if ord == 2:
        return g * _ratio0(x, nrm)
    # sign(x) |x|^(p-1), 0 where x = 0 (|x| replaced by 1 there, so no inf enters the graph)
    scaled = ops.sign(x) * ops.abs(ops.where(x == 0, 1, x)) ** (ord - 1)
    if ord < 1:
        return scaled * g * nrm ** (1 - ord)
    return scaled * _ratio0(g, nrm ** (ord - 1))


# ----------------------------------------------------------------------------------------------
# THE TABLE (linear algebra)
# ----------------------------------------------------------------------------------------------
_inv = P("inv", np.linalg.inv,
         [lambda g, ans, a: -(_mT(ans) @ g @ _mT(ans))],
         ["-inv(a)^T @ grad @ inv(a)^T"])
_det = P("det", np.linalg.det,
         [lambda g, ans, a: g[..., None, None] * _cofactor(a)],
         ["grad * cofactor(a)  (= grad det(a) inv(a)^T)"])
_cofactor = P("cofactor", _cofactor_forward, [_cofactor_grad],
              ["<grad, C> inv(a)^T - det(a) inv(a)^T grad^T inv(a)^T"])
_slogdet = P("slogdet", _slogdet_forward,
             [lambda g, ans, a: g[..., 1][..., None, None] * _mT(_inv(a))],
             ["grad_logabsdet * inv(a)^T  (none through sign)"])
_slogdet_sign = P("slogdet_sign", lambda packed: packed[..., 0], differentiable=False)
_solve = P("solve", np.linalg.solve,
           [lambda g, ans, a, b: -(_solve(_mT(a), g) @ _mT(ans)),
            lambda g, ans, a, b: _solve(_mT(a), g)],
           ["-solve(a^T, grad) @ x^T", "solve(a^T, grad)"], broadcasts=True)
_cholesky = P("cholesky", lambda a, upper: np.linalg.cholesky(a, upper=upper), [_cholesky_grad],
              ["L^-T sym(Phi(L^T grad)) L^-1  (Phi: lower triangle, half diagonal)"])
_eigh = P("eigh", _eigh_forward, [_eigh_grad],
          ["V (diag(grad_w) + skew(V^T grad_V) / (w_j - w_i)) V^T"])
_svd = P("svd", _svd_forward, [_svd_grad],
         ["U [(skew(U^T gU) S + S skew(V^T gV)) / (s_j^2 - s_i^2) + diag(gS)] V^T"
          " + (I - U U^T) gU S^-1 V^T + U S^-1 gV^T (I - V V^T)"])
_svdvals = P("svdvals", lambda a, hermitian: np.linalg.svd(a, compute_uv=False,
                                                           hermitian=hermitian),
             [lambda g, ans, a, hermitian: _svdvals_grad(g, a, hermitian)],
             ["U diag(grad) V^T"])
_qr = P("qr", _qr_forward, [_qr_grad],
        ["Q (gR + tril(skew(Q^T gQ) + skew(R gR^T)) R^-T) + (gQ - Q Q^T gQ) R^-T"])
_pinv = P("pinv", _pinv_forward, [_pinv_grad],
          ["-P^T grad P^T + (I - a P) grad^T P P^T + P^T P grad^T (I - P a)"])
_vector_norm = P("vector_norm", _vector_norm_forward, [_vector_norm_grad],
                 ["grad * sign(x) |x|^(p-1) / ||x||^(p-1)  (0 where ||x|| = 0)"])


# ----------------------------------------------------------------------------------------------
# Public functions: argument checks, then rows of the table
# ----------------------------------------------------------------------------------------------
def _input(x, where):
    if isinstance(x, Tensor):
        if x.dtype.kind == "c":
            raise TypeError(f"{where}: complex tensors are not supported (the gradient rules are "
                            f"for real matrices)")
        return x
    return x if isinstance(x, np.ndarray) else as_array(x)


def _square(a, where):
    shape = tuple(a.shape)
    if len(shape) < 2 or shape[-1] != shape[-2]:
        raise ShapeError(f"{where}: expected a square matrix or a stack of them, shape "
                         f"(..., n, n); got shape {shape}")
    return shape


def _matrix(a, where):
    shape = tuple(a.shape)
    if len(shape) < 2:
        raise ShapeError(f"{where}: expected a matrix or a stack of them, shape (..., m, n); got "
                         f"shape {shape}")
    return shape


def _call(row, *args, **params):
    """``row(*args, **params)``; a LinAlgError (singular, not positive definite) stays one and
    names the function and the input shapes."""
    try:
        return row(*args, **params)
    except LinAlgError as exc:  # plain arrays: straight from NumPy
        shapes = ", ".join(str(tuple(np.shape(a))) for a in args)
        raise LinAlgError(f"{row.name}: {exc} (input shapes {shapes})") from None
    except ValueError as exc:  # through the engine, which names the row and the inputs
        if isinstance(exc.__context__, LinAlgError):
            raise LinAlgError(str(exc)) from None
        raise


def inv(a):
    """The inverse of a square matrix (or of each in a stack)."""
    a = _input(a, "inv")
    _square(a, "inv")
    return _call(_inv, a)


def det(a):
    """The determinant. Its gradient is the cofactor matrix, also at singular matrices."""
    a = _input(a, "det")
    _square(a, "det")
    return _call(_det, a)


def slogdet(a):
    """(sign, logabsdet) of the determinant; the gradient flows through logabsdet."""
    a = _input(a, "slogdet")
    _square(a, "slogdet")
    packed = _call(_slogdet, a)
    return SlogdetResult(_slogdet_sign(packed), packed[..., 1])


def solve(a, b):
    """x with ``a @ x = b``. As NumPy 2: ``b`` is one vector when it is 1-D (x has shape
    (..., n)), else a stack of (n, k) matrices; the batch dimensions broadcast."""
    a, b = _input(a, "solve"), _input(b, "solve")
    sa, sb = _square(a, "solve"), tuple(b.shape)
    n = sa[-1]
    if len(sb) == 1:
        if sb[0] != n:
            raise ShapeError(f"solve: a of shape {sa} needs b of shape ({n},) or (..., {n}, k); "
                             f"got shape {sb}")
        return _call(_solve, a, ops.reshape(b, (n, 1)))[..., 0]
    if len(sb) < 2 or sb[-2] != n:
        raise ShapeError(f"solve: a of shape {sa} needs b of shape ({n},) or (..., {n}, k); got "
                         f"shape {sb}")
    try:
        np.broadcast_shapes(sa[:-2], sb[:-2])
    except ValueError:
        raise ShapeError(f"solve: the batch dimensions of a {sa} and b {sb} do not "
                         f"broadcast") from None
    return _call(_solve, a, b)


def cholesky(a, upper=False):
    """The Cholesky factor of a symmetric positive-definite matrix: lower L with a = L L^T (or
    upper U = L^T with ``upper=True``), read from that triangle of ``a``."""
    a = _input(a, "cholesky")
    _square(a, "cholesky")
    return _call(_cholesky, a, upper=bool(upper))


def eigh(a, UPLO="L"):  # noqa: N803 - NumPy's name
    """Eigenvalues (ascending) and eigenvectors (columns) of a symmetric matrix, read from its
    lower (``UPLO='L'``) or upper triangle. Returns (eigenvalues, eigenvectors)."""
    a = _input(a, "eigh")
    shape = _square(a, "eigh")
    if UPLO not in ("L", "U"):
        raise ValueError(f"eigh: UPLO must be 'L' or 'U', got {UPLO!r}")
    n = shape[-1]
    shapes = ((n,), (n, n))
    packed = _call(_eigh, a, UPLO=UPLO, shapes=shapes)
    return EighResult(*_unpack(packed, shapes))


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """a = U diag(S) Vh with S descending. Returns (U, S, Vh), or S alone when ``compute_uv`` is
    False. The gradient through U and Vh exists for ``full_matrices=False`` or a square input."""
    a = _input(a, "svd")
    shape = _matrix(a, "svd")
    if not compute_uv:
        return _call(_svdvals, a, hermitian=bool(hermitian))
    m, n = shape[-2:]
    k = min(m, n)
    shapes = (((m, m), (k,), (n, n)) if full_matrices else ((m, k), (k,), (k, n)))
    packed = _call(_svd, a, full_matrices=bool(full_matrices), hermitian=bool(hermitian),
                   shapes=shapes)
    return SVDResult(*_unpack(packed, shapes))


def qr(a, mode="reduced"):
    """a = Q R with orthonormal columns in Q and upper-triangular R. ``mode``: 'reduced'
    (Q (m, k), R (k, n), k = min(m, n)), 'complete' (Q (m, m), R (m, n)) or 'r' (R alone)."""
    a = _input(a, "qr")
    shape = _matrix(a, "qr")
    if mode not in ("reduced", "complete", "r"):
        raise ValueError(f"qr: mode must be 'reduced', 'complete' or 'r', got {mode!r} ('raw' "
                         f"returns LAPACK's reflectors, which have no gradient here)")
    if mode == "r" and not isinstance(a, Tensor):
        return np.linalg.qr(a, mode="r")
    m, n = shape[-2:]
    k = min(m, n)
    shapes = ((m, m), (m, n)) if mode == "complete" else ((m, k), (k, n))
    row_mode = "reduced" if mode == "r" else mode
    packed = _call(_qr, a, mode=row_mode, shapes=shapes)
    q, r = _unpack(packed, shapes)
    return r if mode == "r" else QRResult(q, r)


def pinv(a, rcond=None, hermitian=False, *, rtol=None):
    """The Moore-Penrose pseudo-inverse (NumPy's cut-off for small singular values)."""
    a = _input(a, "pinv")
    _matrix(a, "pinv")
    return _call(_pinv, a, rcond=rcond, hermitian=bool(hermitian), rtol=rtol)


_MATRIX_ORDS = (None, "fro", "nuc", 1, -1, 2, -2, math.inf, -math.inf)


def _norm_axes(axis, ndim):
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in items:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"norm: axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"norm: axis {a} is out of range for an input with {ndim} "
                             f"dimension{'s' if ndim != 1 else ''}")
        out.append(int(a) % ndim)
    if len(out) not in (1, 2):
        raise ValueError(f"norm: axis must name one axis (a vector norm) or two (a matrix "
                         f"norm), got {axis!r}")
    if len(set(out)) != len(out):
        raise ValueError(f"norm: repeated axis in {axis!r}")
    return tuple(out)


def _vector(x, ord, axis, keepdims):
    if isinstance(ord, str):
        raise ValueError(f"norm: invalid norm order {ord!r} for vectors (a number, inf or -inf)")
    ord = 2.0 if ord is None else float(ord)
    if ord == math.inf:
        return ops.max(ops.abs(x), axis=axis, keepdims=keepdims)
    if ord == -math.inf:
        return ops.min(ops.abs(x), axis=axis, keepdims=keepdims)
    return _vector_norm(x, ord=ord, axis=tuple(sorted(axis)), keepdims=keepdims)


def _matrix_norm(x, ord, axis, keepdims):
    if ord not in _MATRIX_ORDS:
        raise ValueError(f"norm: invalid norm order {ord!r} for matrices (one of 'fro', 'nuc', "
                         f"1, -1, 2, -2, inf, -inf)")
    row, col = axis
    if ord in (None, "fro"):
        return _vector_norm(x, ord=2.0, axis=tuple(sorted(axis)), keepdims=keepdims)
    if ord in (1, -1, math.inf, -math.inf):
        pick = ops.max if ord > 0 else ops.min
        summed, over = (row, col) if ord in (1, -1) else (col, row)
        out = pick(ops.sum(ops.abs(x), axis=summed, keepdims=True), axis=over, keepdims=True)
    else:  # 2, -2, 'nuc': from the singular values of the (row, col) matrices
        ndim = len(x.shape)
        rest = [i for i in range(ndim) if i not in axis]
        s = _call(_svdvals, ops.transpose(x, rest + [row, col]), hermitian=False)
        out = ops.sum(s, axis=-1) if ord == "nuc" else (ops.max if ord == 2 else ops.min)(
            s, axis=-1)
        out = ops.reshape(out, tuple(1 if i in axis else n for i, n in enumerate(x.shape)))
    if keepdims:
        return out
    return ops.reshape(out, tuple(n for i, n in enumerate(x.shape) if i not in axis))


def norm(x, ord=None, axis=None, keepdims=False):
    """NumPy's norm: vector norms over one axis (ord: None/2, 1, inf, -inf, 0, any number),
    matrix norms over two (None/'fro', 'nuc', 1, -1, 2, -2, inf, -inf). With ``axis=None`` the
    2-norm of all entries when ``ord`` is None, else the vector or matrix norm of a 1-D or 2-D
    input. Subgradients at kinks are PyTorch's (see the module docstring)."""
    x = _input(x, "norm")
    if x.dtype.kind not in "fc":
        x = ops.astype(x, np.float64)
    ndim = len(x.shape)
    if axis is None:
        if ord is None:
            return _vector_norm(x, ord=2.0, axis=tuple(range(ndim)), keepdims=bool(keepdims))
        if ndim not in (1, 2):
            raise ValueError(f"norm: ord={ord!r} with axis=None needs a 1-D or 2-D input, got "
                             f"shape {tuple(x.shape)}; pass axis")
        axis = tuple(range(ndim))
    axis = _norm_axes(axis, ndim)
    if len(axis) == 1:
        return _vector(x, ord, axis, bool(keepdims))
    return _matrix_norm(x, ord, axis, bool(keepdims))
