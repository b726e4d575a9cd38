"""chainrule.contractions: NumPy's products and contractions, differentiable to any order.

Four rows, in THE TABLE's form (``Primitive(name, forward, [rule per input], [formulas])``, each
rule written with rows and methods shared by ``ndarray`` and ``Tensor``, so one rule serves the
ordinary backward pass and ``create_graph=True``):

- ``einsum``, for one to 64 operands. Its subscripts are normalised first (ellipses expanded into
  letters of their own, the implicit output spelled out as NumPy orders it), so every rule sees
  explicit labels. The VJP for operand k is itself an ``einsum``: the output gradient contracted
  with the other operands onto the labels of operand k. A label that appears only in operand k
  (summed away) is absent from that result: the gradient is constant along it and is broadcast
  back. A label repeated within operand k (``'ii->i'``) means the gradient lives on a diagonal:
  it is written there by ``einsum_embed``. Labels of size 1 that broadcast against a larger size
  are summed back by the machinery (``broadcasts=True``). Large gradient contractions go through
  NumPy's path optimiser (BLAS); the forward uses the caller's ``optimize=``, as NumPy.
- ``einsum_embed``, the adjoint of a one-operand einsum that repeats or drops labels: zeros with
  the values written onto a (writeable) einsum diagonal view, optionally inside a window of a
  larger array (offset diagonals). Its own VJP is the einsum that reads that diagonal back.
- ``diagonal`` (NumPy's read-only view, so a view row) and ``trace``: NumPy's functions forward,
  ``einsum_embed`` backward. As one-operand einsums they cost several times more (measured).
- ``tensordot``: ``np.tensordot`` forward, tensordots backward. As a composite (transpose,
  reshape, matmul, reshape) it cost up to 4x ``np.tensordot`` on small operands (measured).

The rest are composites that cost no speed: ``dot`` is ``matmul`` (or ``tensordot`` for N-D by
M-D), ``inner`` is ``matmul`` or ``tensordot``, ``outer`` and ``kron`` are a broadcast
``multiply`` of reshapes, ``diag`` is ``diagonal`` or ``einsum_embed``, and ``tril``/``triu`` are
a ``where`` with NumPy's own mask.

On plain arrays every function is the NumPy function (same values, dtypes, views) and returns an
array; on Tensors it returns a Tensor and records. Tensors of mixed dtypes combine by PyTorch's
rules (float32 stays float32); integer Tensors give integer results without gradient.
"""

from __future__ import annotations

import math
import numbers
import string

import numpy as np

from chainrule import ops
from chainrule.autograd import Primitive, ShapeError
from chainrule.ops.elementwise import _BOTH
from chainrule.ops.shape import _shape
from chainrule.tensor import Tensor, as_array

P = Primitive

__all__ = ["diag", "diagonal", "dot", "einsum", "inner", "kron", "outer", "tensordot", "trace",
           "tril", "triu"]

_LETTERS = string.ascii_uppercase + string.ascii_lowercase  # NumPy's implicit order (ASCII)
_MAX_OPERANDS = 64
# Above this many multiply-adds a gradient einsum goes through NumPy's path optimiser, which
# hands pairs to BLAS: the C loops of optimize=False are ~9x slower at 200 x 200 (measured).
_BLAS_FROM = 1 << 15


def _ndim(x):
    return len(_shape(x))


def _shapes_text(operands):
    return ", ".join(str(tuple(_shape(op))) for op in operands)


def _any_tensor(items):
    for x in items:
        if isinstance(x, Tensor):
            return True
    return False


# ----------------------------------------------------------------------------------------------
# einsum subscripts: parsed once per (subscripts, ndims) into explicit labels
# ----------------------------------------------------------------------------------------------
_parsed: dict = {}


def _parse(subscripts, ndims):
    """``(inputs, output)``: one label string per operand and the output's, with ellipses
    expanded into letters of their own and the implicit output spelled out as NumPy does."""
    key = (subscripts, ndims)
    found = _parsed.get(key)
    if found is not None:
        return found
    text = subscripts.replace(" ", "")
    where = f"einsum('{subscripts}')"
    if "->" in text:
        left, output = text.split("->", 1)
        if "->" in output:
            raise ValueError(f"{where}: subscripts have more than one '->'")
    else:
        left, output = text, None
    terms = left.split(",")
    if len(terms) != len(ndims):
        raise ValueError(f"{where}: the subscripts name {len(terms)} operand(s) but "
                         f"{len(ndims)} were given")
    for term in terms + ([output] if output is not None else []):
        rest = term.replace("...", "", 1)
        bad = [c for c in rest if c not in _LETTERS]
        if bad:
            raise ValueError(f"{where}: invalid subscript {bad[0]!r} (letters a-z, A-Z and one "
                             f"'...' per operand)")
    used = set(left.replace(".", "")) | set((output or "").replace(".", ""))
    spare = [c for c in _LETTERS if c not in used]
    explicit = [len(t.replace("...", "")) for t in terms]
    n_ellipsis = 0
    for t, n, d in zip(terms, explicit, ndims):
        if "..." in t:
            if n > d:
                raise ValueError(f"{where}: operand has {d} dimension(s), fewer than the "
                                 f"{n} subscripts of '{t}'")
            n_ellipsis = max(n_ellipsis, d - n)
        elif n != d:
            raise ValueError(f"{where}: operand with subscripts '{t}' has {d} dimension(s), "
                             f"but '{t}' names {n}")
    if n_ellipsis > len(spare):
        raise ValueError(f"{where}: too many dimensions for the 52 einsum letters")
    ell = "".join(spare[:n_ellipsis])
    inputs = []
    for t, n, d in zip(terms, explicit, ndims):
        inputs.append(t.replace("...", ell[n_ellipsis - (d - n):] if d > n else "", 1)
                      if "..." in t else t)
    if output is None:
        counts = {}
        for t in inputs:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        output = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    else:
        if "..." in output:
            output = output.replace("...", ell, 1)
        elif any("..." in t and d > n for t, n, d in zip(terms, explicit, ndims)):
            raise ValueError(f"{where}: the operands have '...' dimensions but the output does "
                             f"not name '...' (NumPy does not sum them away)")
        everywhere = set("".join(inputs))
        for c in output:
            if c not in everywhere:
                raise ValueError(f"{where}: output subscript {c!r} appears in no operand")
        if len(set(output)) != len(output):
            raise ValueError(f"{where}: output subscripts repeat a letter")
    found = (tuple(inputs), output)
    _parsed[key] = found
    return found


def _label_sizes(inputs, shapes, subscripts):
    """Each label's size (1 broadcasts, as in NumPy); ValueError naming both sizes otherwise."""
    sizes = {}
    for k, (labels, shape) in enumerate(zip(inputs, shapes)):
        for c, n in zip(labels, shape):
            seen = sizes.get(c)
            if seen is None or seen == 1:
                sizes[c] = n
            elif n != seen and n != 1:
                what = f"label {c!r}" if c in subscripts else "a '...' dimension"
                raise ShapeError(f"einsum('{subscripts}'): {what} has size {n} in operand {k} "
                                 f"but {seen} before it (shapes {', '.join(map(str, shapes))})")
    return sizes


def _sublists(args):
    """NumPy's interleaved form ``einsum(a, [0, 1], b, [1, 2], [0, 2])`` as a subscripts string
    and the operands."""
    operands, terms = list(args[0::2]), []
    output = None
    if len(args) % 2:
        output = args[-1]
        operands = operands[:-1]
    for sub in list(args[1::2]) + ([output] if output is not None else []):
        term = ""
        for s in sub:
            if s is Ellipsis:
                term += "..."
            elif isinstance(s, numbers.Integral) and 0 <= s < 52:
                term += _LETTERS[s]
            else:
                raise ValueError(f"einsum: subscript {s!r} in the sublist form must be an int "
                                 f"in [0, 52) or Ellipsis")
        terms.append(term)
    text = ",".join(terms[:len(operands)])
    if output is not None:
        text += "->" + terms[-1]
    return text, operands


# ----------------------------------------------------------------------------------------------
# The rows
# ----------------------------------------------------------------------------------------------
_texts: dict = {}


def _einsum_forward(*operands, inputs, output, shapes, optimize):
    # spelled out with explicit labels, so the forward and the rules read the same subscripts
    text = _texts.get((inputs, output))
    if text is None:
        text = _texts[inputs, output] = ",".join(inputs) + "->" + output
    try:
        out = np.einsum(text, *operands, optimize=optimize)
    except ValueError as exc:
        _label_sizes(inputs, [np.shape(o) for o in operands], text)
        raise ShapeError(f"'{text}' on shapes {_shapes_text(operands)}: {exc}") from None
    if len(operands) == 1 and isinstance(out, np.ndarray) and np.may_share_memory(
            out, operands[0]):
        # a one-operand einsum can return a view ('ii->i', 'ij->ji'); chainrule's result must
        # not alias an input the graph may have saved
        out = out.copy()
    return out


def _einsum_call(terms, operands, output, optimize=None):
    """The einsum row on explicit labels (the rules' entry point: arrays or Tensors)."""
    shapes = tuple(tuple(_shape(o)) for o in operands)
    if optimize is None:
        sizes = {}
        for labels, shape in zip(terms, shapes):
            for c, n in zip(labels, shape):
                sizes[c] = max(sizes.get(c, 1), n)
        cost = math.prod(sizes.values())
        optimize = "greedy" if len(operands) > 1 and cost >= _BLAS_FROM else False
    return _einsum(*operands, inputs=tuple(terms), output=output, shapes=shapes,
                   optimize=optimize)


def _distinct(labels):
    return "".join(dict.fromkeys(labels))


def _einsum_rule(k):
    def rule(g, ans, *operands, inputs, output, shapes, optimize):
        mine = inputs[k]
        terms = [output] + [t for j, t in enumerate(inputs) if j != k]
        others = [g] + [o for j, o in enumerate(operands) if j != k]
        reached = set("".join(terms))
        kept = "".join(c for c in _distinct(mine) if c in reached)
        part = _einsum_call(terms, others, kept)
        sizes = dict(zip(kept, _shape(part)))
        # a label can come back smaller than operand k has it (size 1 where operand k's size
        # broadcast against it): the gradient is then constant along it too
        full = tuple(max(sizes.get(c, 1), n) for c, n in zip(mine, shapes[k]))
        if kept == mine:
            return part if tuple(_shape(part)) == full else ops.broadcast_to(part, full)
        if _distinct(mine) == mine:  # no repeated label: broadcast along the summed-away ones
            shape = tuple(sizes[c] if c in kept else 1 for c in mine)
            return ops.broadcast_to(_reshape(part, shape), full)
        return _embed(part, full=mine, kept=kept, shape=full, window=None)
    return rule


def _embed_forward(part, full, kept, shape, window):
    out = np.zeros(shape, dtype=part.dtype)
    target = out[window] if window is not None else out
    distinct = _distinct(full)
    view = np.einsum(f"{full}->{distinct}", target)  # writeable: the diagonal of `target`
    order = [kept.index(c) for c in distinct if c in kept]
    if order != sorted(order):
        part = part.transpose(order)
    view[...] = part.reshape([part.shape[order.index(kept.index(c))] if c in kept else 1
                              for c in distinct])
    return out


def _embed_grad(g, ans, part, full, kept, shape, window):
    if window is not None:
        g = ops.getitem(g, window)
    return _einsum_call([full], [g], kept)


_einsum = P("einsum", _einsum_forward, [_einsum_rule(k) for k in range(_MAX_OPERANDS)],
            [f"einsum(grad, other operands -> labels of operand {k}), broadcast or put on the "
             f"diagonal where operand {k} sums or repeats a label" for k in range(_MAX_OPERANDS)],
            broadcasts=True, promotes=())
# Rule k reads every operand but its own, and never the answer: keep only those (the bytecode
# reader assumes a *operands rule reads everything).
_einsum._rule_reads = [(False, frozenset(range(_MAX_OPERANDS)) - {k})
                       for k in range(_MAX_OPERANDS)]
_embed = P("einsum_embed", _embed_forward, [_embed_grad],
           ["einsum(grad -> the diagonal it was written on)"], broadcasts=True)


def _onto_diagonal(g, ans, x, offset, axis1, axis2, full, kept, shape, window):
    return _embed(g, full=full, kept=kept, shape=shape, window=window)


# Rows of their own (not one-operand einsums): NumPy's diagonal and trace cost a microsecond or
# two, the einsum path several (measured); their VJP writes onto the diagonal of zeros.
# diagonal is NumPy's read-only view, so it shares its input's version counter.
_diagonal = P("diagonal", lambda x, offset, axis1, axis2, **labels: np.diagonal(
                  x, offset, axis1, axis2),
              [_onto_diagonal], ["grad on the diagonal of zeros"], view=True)
_trace = P("trace", lambda x, offset, axis1, axis2, **labels: np.trace(x, offset, axis1, axis2),
           [_onto_diagonal], ["grad on the diagonal of zeros (broadcast over it)"])


# ----------------------------------------------------------------------------------------------
# Public functions
# ----------------------------------------------------------------------------------------------
def einsum(*operands, out=None, optimize=False, **kwargs):
    """Einstein summation, as ``np.einsum``: ``einsum('ij,jk->ik', a, b)``.

    Explicit (``->``) and implicit outputs, repeated subscripts within an operand (``'ii->i'``,
    ``'ii'``), ellipses (``'...ij,...jk->...ik'``), one to many operands, NumPy's interleaved
    sublist form and ``optimize=`` are accepted. Differentiable to any order for Tensors.
    """
    if not operands:
        raise TypeError("einsum: no subscripts and operands given")
    if isinstance(operands[0], str):
        subscripts, arrays = operands[0], list(operands[1:])
    else:
        subscripts, arrays = _sublists(operands)
    if not arrays:
        raise ValueError(f"einsum('{subscripts}'): no operands given")
    if len(arrays) > _MAX_OPERANDS:
        raise ValueError(f"einsum: at most {_MAX_OPERANDS} operands, got {len(arrays)}")
    if not _any_tensor(arrays):
        try:
            return np.einsum(subscripts, *arrays, out=out, optimize=optimize, **kwargs)
        except ValueError as exc:  # say which subscripts and shapes, then NumPy's words
            inputs, _ = _parse(subscripts, tuple(_ndim(a) for a in arrays))
            _label_sizes(inputs, [_shape(a) for a in arrays], subscripts)
            raise ValueError(f"einsum('{subscripts}') on shapes {_shapes_text(arrays)}: "
                             f"{exc}") from None
    if out is not None:
        raise TypeError("einsum: out= is not supported on Tensors (the result is a new Tensor)")
    for key, value in kwargs.items():
        if not (key in ("order", "casting") and value in ("K", "safe")) and value is not None:
            raise TypeError(f"einsum: {key}={value!r} is not supported on Tensors")
    arrays = [a if isinstance(a, Tensor) else as_array(a) for a in arrays]  # lists: float32
    shapes = tuple([a.shape for a in arrays])
    inputs, output = _parse(subscripts, tuple([len(s) for s in shapes]))
    try:  # sizes are checked by the forward; a mismatch is then told in the caller's subscripts
        return _einsum(*arrays, inputs=inputs, output=output, shapes=shapes, optimize=optimize)
    except ShapeError:
        _label_sizes(inputs, shapes, subscripts)
        raise


def _tensordot_axes(a_shape, b_shape, axes):
    where = f"tensordot (shapes {tuple(a_shape)} and {tuple(b_shape)}, axes={axes!r})"
    if isinstance(axes, numbers.Integral):
        n = int(axes)
        if n < 0 or n > len(a_shape) or n > len(b_shape):
            raise ValueError(f"{where}: axes must be between 0 and the smaller ndim")
        xa, xb = list(range(len(a_shape) - n, len(a_shape))), list(range(n))
    else:
        try:
            xa, xb = axes
        except (TypeError, ValueError):
            raise TypeError(f"{where}: axes must be an int or a pair of sequences") from None
        xa = [xa] if isinstance(xa, numbers.Integral) else list(xa)
        xb = [xb] if isinstance(xb, numbers.Integral) else list(xb)
        if len(xa) != len(xb):
            raise ValueError(f"{where}: the two axis lists differ in length")
        xa = [_axis(i, len(a_shape), where) for i in xa]
        xb = [_axis(i, len(b_shape), where) for i in xb]
    for i, j in zip(xa, xb):
        if a_shape[i] != b_shape[j]:
            raise ShapeError(f"{where}: axis {i} of a has size {a_shape[i]} but axis {j} of b "
                             f"has size {b_shape[j]}")
    if len(set(xa)) != len(xa) or len(set(xb)) != len(xb):
        raise ValueError(f"{where}: an axis is repeated")
    return xa, xb


def _axis(i, ndim, where):
    if not isinstance(i, numbers.Integral) or isinstance(i, bool):
        raise TypeError(f"{where}: axis {i!r} is not an int")
    if not -ndim <= i < ndim:
        raise np.exceptions.AxisError(f"{where}: axis {i} is out of range for {ndim} dimensions")
    return int(i) % ndim


def _tensordot(a, b, xa, xb):
    return _tensordot_row(a, b, axes=(tuple(xa), tuple(xb)))


def _reshape(x, shape):
    """The reshape row itself, its checks skipped (the shape is known to fit)."""
    in_shape = tuple(_shape(x))
    return x if in_shape == shape else ops._reshape(x, shape=shape, in_shape=in_shape)


def _inverse(perm):
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return tuple(out)


def _tensordot_grad_a(g, ans, a, b, axes):
    xa, xb = axes
    nb = _ndim(b)
    free_b = [j for j in range(nb) if j not in xb]
    nfa = _ndim(g) - len(free_b)
    ga = _tensordot(g, b, list(range(nfa, _ndim(g))), free_b)
    # ga's axes: a's free axes, then a's summed axes in the order of b's (sorted) summed axes
    na = nfa + len(xa)
    free_a = [i for i in range(na) if i not in xa]
    came = free_a + [xa[xb.index(j)] for j in sorted(xb)]
    return ga if came == list(range(na)) else ga.transpose(_inverse(came))


def _tensordot_grad_b(g, ans, a, b, axes):
    xa, xb = axes
    na = _ndim(a)
    free_a = [i for i in range(na) if i not in xa]
    gb = _tensordot(a, g, free_a, list(range(len(free_a))))
    # gb's axes: b's summed axes in the order of a's (sorted) summed axes, then b's free axes
    nb = _ndim(g) - len(free_a) + len(xb)
    free_b = [j for j in range(nb) if j not in xb]
    came = [xb[xa.index(i)] for i in sorted(xa)] + free_b
    return gb if came == list(range(nb)) else gb.transpose(_inverse(came))


# A row of its own: as a composite (transpose + reshape + matmul + reshape) it cost up to 4x
# np.tensordot on small operands (measured); its VJPs are tensordots again.
_tensordot_row = P("tensordot", lambda a, b, axes: np.tensordot(a, b, axes),
                   [_tensordot_grad_a, _tensordot_grad_b],
                   ["tensordot(grad, b over b's free axes), axes put back in a's order",
                    "tensordot(a, grad over a's free axes), axes put back in b's order"],
                   promotes=_BOTH)


def _tensor_pair(a, b):
    """Both operands as Tensors or arrays (lists become arrays), for the composites."""
    return (a if isinstance(a, Tensor) else as_array(a),
            b if isinstance(b, Tensor) else as_array(b))


def tensordot(a, b, axes=2):
    """Sum of products over the given axes, as ``np.tensordot``: ``axes`` an int N (the last N
    axes of ``a`` with the first N of ``b``) or a pair of axis sequences."""
    if not _any_tensor((a, b)):
        _tensordot_axes(np.shape(a), np.shape(b), axes)
        return np.tensordot(a, b, axes)
    a, b = _tensor_pair(a, b)
    xa, xb = _tensordot_axes(_shape(a), _shape(b), axes)
    return _tensordot(a, b, xa, xb)


def _aligned(where, a, b, ia, ib):
    sa, sb = _shape(a), _shape(b)
    if sa[ia] != sb[ib]:
        raise ShapeError(f"{where}: shapes {tuple(sa)} and {tuple(sb)} are not aligned: "
                         f"{sa[ia]} (dim {ia % len(sa)}) != {sb[ib]} (dim {ib % len(sb)})")


def dot(a, b, out=None):
    """The dot product with NumPy's meaning for every ndim, as ``np.dot``: a product when either
    is a scalar, the inner product of vectors, the matrix product of matrices, and for N-D the
    sum over the last axis of ``a`` and the second-to-last of ``b``."""
    if not _any_tensor((a, b)):
        if np.ndim(a) and np.ndim(b):
            _aligned("dot", a, b, -1, -2 if np.ndim(b) > 1 else 0)
        return np.dot(a, b, out) if out is not None else np.dot(a, b)
    if out is not None:
        raise TypeError("dot: out= is not supported on Tensors (the result is a new Tensor)")
    a, b = _tensor_pair(a, b)
    if _ndim(a) == 0 or _ndim(b) == 0:
        return ops.multiply(a, b)
    _aligned("dot", a, b, -1, -2 if _ndim(b) > 1 else 0)
    if _ndim(b) <= 2 or _ndim(a) == 1:  # here matmul's batching agrees with dot
        return ops.matmul(a, b)
    return _tensordot(a, b, [_ndim(a) - 1], [_ndim(b) - 2])


def inner(a, b):
    """The sum of products over the last axes, as ``np.inner`` (a product for scalars)."""
    if not _any_tensor((a, b)):
        if np.ndim(a) and np.ndim(b):
            _aligned("inner", a, b, -1, -1)
        return np.inner(a, b)
    a, b = _tensor_pair(a, b)
    if _ndim(a) == 0 or _ndim(b) == 0:
        return ops.multiply(a, b)
    _aligned("inner", a, b, -1, -1)
    if _ndim(a) == 1 and _ndim(b) == 1:
        return ops.matmul(a, b)
    return _tensordot(a, b, [_ndim(a) - 1], [_ndim(b) - 1])


def outer(a, b, out=None):
    """The outer product of the flattened inputs, as ``np.outer``: shape (a.size, b.size)."""
    if not _any_tensor((a, b)):
        return np.outer(a, b, out) if out is not None else np.outer(a, b)
    if out is not None:
        raise TypeError("outer: out= is not supported on Tensors (the result is a new Tensor)")
    a, b = _tensor_pair(a, b)
    return ops.multiply(_reshape(a, (math.prod(_shape(a)), 1)),
                        _reshape(b, (1, math.prod(_shape(b)))))


def kron(a, b):
    """The Kronecker product, as ``np.kron`` (the shorter shape is padded with leading 1s)."""
    if not _any_tensor((a, b)):
        return np.kron(a, b)
    a, b = _tensor_pair(a, b)
    sa, sb = tuple(_shape(a)), tuple(_shape(b))
    nd = max(len(sa), len(sb))
    sa, sb = (1,) * (nd - len(sa)) + sa, (1,) * (nd - len(sb)) + sb
    # interleaved axes (a0, b0, a1, b1, ...): one broadcast multiply, then merge each pair
    ia = tuple(x for n in sa for x in (n, 1))
    ib = tuple(x for n in sb for x in (1, n))
    product = ops.multiply(_reshape(a, ia), _reshape(b, ib))
    return _reshape(product, tuple(m * n for m, n in zip(sa, sb)))


_diagonal_plans: dict = {}


def _diagonal_parts(x, offset, axis1, axis2, where):
    """(the window of the diagonal's square, the labels of ``x`` with the diagonal's repeated,
    the labels of the other axes, the diagonal's label, axis1, axis2)."""
    key = (tuple(_shape(x)), offset, axis1, axis2, type(offset), type(axis1), type(axis2))
    try:
        plan = _diagonal_plans.get(key)
    except TypeError:  # an unhashable argument: checked (and refused) below
        plan = key = None
    if plan is None:
        plan = _diagonal_plan(x, offset, axis1, axis2, where)
        if key is not None and len(_diagonal_plans) < 4096:
            _diagonal_plans[key] = plan
    return plan


def _diagonal_plan(x, offset, axis1, axis2, where):
    nd = _ndim(x)
    if nd < 2:
        raise ValueError(f"{where}: needs at least 2 dimensions, got shape {tuple(_shape(x))}")
    if not isinstance(offset, numbers.Integral) or isinstance(offset, bool):
        raise TypeError(f"{where}: offset must be an int, got {offset!r}")
    a1, a2 = _axis(axis1, nd, where), _axis(axis2, nd, where)
    if a1 == a2:
        raise ValueError(f"{where}: axis1 and axis2 cannot be the same (both {a1})")
    shape = _shape(x)
    r0, c0 = max(0, -int(offset)), max(0, int(offset))
    m = max(0, min(shape[a1] - r0, shape[a2] - c0))
    window = None
    if (r0, c0, m) != (0, 0, shape[a1]) or m != shape[a2]:
        index = [slice(None)] * nd
        index[a1], index[a2] = slice(r0, r0 + m), slice(c0, c0 + m)
        window = tuple(index)
    labels = list(_LETTERS[:nd])
    labels[a2] = labels[a1]
    rest = "".join(c for i, c in enumerate(labels) if i not in (a1, a2))
    return window, "".join(labels), rest, labels[a1], a1, a2


def diagonal(a, offset=0, axis1=0, axis2=1):
    """The diagonal of ``a`` over ``axis1`` and ``axis2`` (moved to the last axis), as
    ``np.diagonal``; ``offset`` above (>0) or below (<0) the main diagonal."""
    if not isinstance(a, Tensor):
        _diagonal_parts(np.asarray(a), offset, axis1, axis2, "diagonal")
        return np.diagonal(a, offset, axis1, axis2)
    window, labels, rest, d, a1, a2 = _diagonal_parts(a, offset, axis1, axis2, "diagonal")
    return _diagonal(a, offset=int(offset), axis1=a1, axis2=a2, full=labels, kept=rest + d,
                     shape=a.shape, window=window)


def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    """The sum along a diagonal, as ``np.trace`` (over ``axis1`` and ``axis2``, ``offset``)."""
    if not isinstance(a, Tensor):
        _diagonal_parts(np.asarray(a), offset, axis1, axis2, "trace")
        return np.trace(a, offset, axis1, axis2, dtype, out)
    if out is not None:
        raise TypeError("trace: out= is not supported on Tensors (the result is a new Tensor)")
    if dtype is not None:
        a = ops.astype(a, dtype)
    window, labels, rest, _, a1, a2 = _diagonal_parts(a, offset, axis1, axis2, "trace")
    return _trace(a, offset=int(offset), axis1=a1, axis2=a2, full=labels, kept=rest,
                  shape=a.shape, window=window)


def diag(v, k=0):
    """As ``np.diag``: a 1-D ``v`` becomes a 2-D array with ``v`` on its ``k``-th diagonal; of a
    2-D ``v``, its ``k``-th diagonal."""
    nd = _ndim(v)
    if nd not in (1, 2):
        raise ValueError(f"diag: input must be 1-D or 2-D, got shape {tuple(_shape(v))}")
    if not isinstance(k, numbers.Integral) or isinstance(k, bool):
        raise TypeError(f"diag: k must be an int, got {k!r}")
    if not isinstance(v, Tensor):
        return np.diag(v, k)
    if nd == 2:
        return diagonal(v, k)
    n = _shape(v)[0]
    size = n + abs(int(k))
    r0, c0 = max(0, -int(k)), max(0, int(k))
    return _embed(v, full="aa", kept="a", shape=(size, size),
                  window=(slice(r0, r0 + n), slice(c0, c0 + n)))


def _triangle(m, k, where, lower):
    if not isinstance(k, numbers.Integral) or isinstance(k, bool):
        raise TypeError(f"{where}: k must be an int, got {k!r}")
    if not isinstance(m, Tensor):
        return np.tril(m, k) if lower else np.triu(m, k)
    shape = _shape(m)
    if len(shape) == 0:
        raise ValueError(f"{where}: needs at least 1 dimension, got a scalar")
    # NumPy's own mask, so 1-D input and every k behave exactly as np.tril / np.triu
    mask = np.tri(*shape[-2:], k=int(k) if lower else int(k) - 1, dtype=bool)
    return ops.where(mask, m, 0) if lower else ops.where(mask, 0, m)


def tril(m, k=0):
    """The lower triangle (on and below the ``k``-th diagonal) of the last two axes, as
    ``np.tril``; the rest set to 0."""
    return _triangle(m, k, "tril", True)


def triu(m, k=0):
    """The upper triangle (on and above the ``k``-th diagonal) of the last two axes, as
    ``np.triu``; the rest set to 0."""
    return _triangle(m, k, "triu", False)


# ----------------------------------------------------------------------------------------------
# Tensor methods (bound in tensor.py): ndarray's reading where ndarray has the method
# ----------------------------------------------------------------------------------------------
def _diagonal_method(x, offset, axis1, axis2, dim1, dim2):
    for numpy_name, torch_name, value, other in (("axis1", "dim1", axis1, dim1),
                                                 ("axis2", "dim2", axis2, dim2)):
        if value is not None and other is not None:
            raise TypeError(f"diagonal: give {numpy_name}= (NumPy) or {torch_name}= (PyTorch), "
                            f"not both")
    a1 = axis1 if axis1 is not None else (dim1 if dim1 is not None else 0)
    a2 = axis2 if axis2 is not None else (dim2 if dim2 is not None else 1)
    return diagonal(x, offset, a1, a2)


def _triangle_method(x, diagonal, lower):
    name = "tril" if lower else "triu"
    if x.ndim < 2:
        # PyTorch refuses a 1-D input; NumPy's np.tril broadcasts it to a matrix: ask
        raise TypeError(f"x.{name}(): PyTorch's {name} needs at least 2 dimensions, got shape "
                        f"{x.shape}; cr.{name}(x) gives NumPy's reading (a 1-D input is "
                        f"broadcast to a square matrix)")
    return _triangle(x, diagonal, name, lower)


def _outer_method(x, other):
    if x.ndim != 1 or _ndim(other) != 1:
        # torch.outer takes vectors only; np.outer flattens: the two readings part here
        raise TypeError(f"x.outer(y): PyTorch's outer takes 1-D tensors, got shapes {x.shape} "
                        f"and {tuple(_shape(other))}; cr.outer(x, y) flattens them as NumPy "
                        f"does")
    return outer(x, other)


def _diag_method(x, diagonal):
    return diag(x, diagonal)
