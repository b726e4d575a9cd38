"""chainrule.shapes: NumPy's remaining shape functions, differentiable to any order.

Most functions here are composites of the shape rows in ``ops`` and keep NumPy's memory
semantics: what NumPy returns as a view (``ravel``, ``flip``, ``rot90``, ``moveaxis``,
``atleast_*``, the pieces of ``array_split``) is built from the view rows (reshape, transpose,
basic slicing), so it shares the input's version counter; what NumPy copies (``take``, ``pad``,
the ``*stack`` functions, ``select``) is built from gathers, concatenations and ``where``.

Three operations are rows of their own, in THE TABLE's form (``Primitive(name, forward, [rule],
[formula])``, each rule written with rows and methods shared by ``ndarray`` and ``Tensor``):

- ``repeat`` and its adjoint ``repeat_sum`` (sums each run of repeated elements back): the
  forward is ``np.repeat`` itself. ``broadcast_to`` + ``reshape`` would compute the same values
  for an int count, but the reshape of a broadcast is a view row, so the copy NumPy returns
  would share its input's version counter (an in-place change of the result would then be
  reported as a change of the input), and it can be a read-only view of the broadcast.
- ``tile``: the same reasoning; its rule is ``reshape`` + ``sum``.
- ``roll``: ``np.roll`` forward, and the adjoint is the same row rolled back. As a composite it
  would be two slices and a concatenation per axis, with a shift of 0 returning the input itself
  where NumPy returns a copy.

On plain arrays every function returns NumPy's result (an ndarray); on Tensors a Tensor.
Float32 stays float32.
"""

from __future__ import annotations

import builtins
import numbers

import numpy as np

from chainrule import ops
from chainrule.autograd import Primitive
from chainrule.tensor import Tensor

P = Primitive
AxisError = np.exceptions.AxisError

__all__ = ["array_split", "atleast_1d", "atleast_2d", "atleast_3d", "column_stack", "dsplit",
           "dstack", "flip", "fliplr", "flipud", "hsplit", "hstack", "moveaxis", "pad", "ravel",
           "repeat", "roll", "rot90", "select", "take", "take_along_axis", "tile", "vsplit",
           "vstack"]


# ----------------------------------------------------------------------------------------------
# Forward helpers of the rows
# ----------------------------------------------------------------------------------------------
def _repeat_sum_forward(g, repeats, axis, in_shape):
    """The adjoint of ``np.repeat``: each run of ``repeats[i]`` entries along ``axis`` summed."""
    if isinstance(repeats, int):
        shape = g.shape[:axis] + (in_shape[axis], repeats) + g.shape[axis + 1:]
        runs = g.reshape(shape)
        if not 0 < repeats <= 8:
            return runs.sum(axis=axis + 1)
        # a few strided adds beat NumPy's reduction over a short inner axis several times over
        out = np.array(runs[_slices(runs.ndim, axis + 1, 0)], copy=True)
        for j in range(1, repeats):
            out += runs[_slices(runs.ndim, axis + 1, j)]
        return out
    out = np.zeros(g.shape[:axis] + (in_shape[axis],) + g.shape[axis + 1:], dtype=g.dtype)
    # reduceat gives a single entry, not 0, for an empty run: only the runs that exist are summed
    kept = repeats > 0
    if kept.any():
        starts = (np.cumsum(repeats) - repeats)[kept]
        out[(slice(None),) * axis + (kept,)] = np.add.reduceat(g, starts, axis=axis)
    return out


def _tile_grad(g, ans, x, reps, in_shape):
    # tile's output, axis by axis, is (r_i copies of s_i): those copies are summed back
    paired = []
    for r, s in zip(reps, in_shape):
        paired += [r, s]
    return g.reshape(tuple(paired)).sum(axis=tuple(range(0, 2 * len(reps), 2)))


def _runs(index):
    """``index`` (a 1-D int array) as runs (start, step, length), each step in (1, -1, 0)."""
    runs = []
    i, n = 0, len(index)
    while i < n:
        step = int(index[i + 1] - index[i]) if i + 1 < n else 1
        if step not in (1, -1, 0):
            step = 1
        j = i + 1
        while j < n and index[j] - index[j - 1] == step:
            j += 1
        runs.append((int(index[i]), step, j - i))
        i = j
    return runs


def _slices(ndim, axis, s):
    return (slice(None),) * axis + (s,) + (slice(None),) * (ndim - axis - 1)


def _pad_fold_forward(g, widths, mode):
    """The adjoint of ``np.pad`` in a copying mode: along each axis, every padded entry added
    back into the entry it copies (the runs of the copy map are slices, so no scatter)."""
    for a in range(g.ndim):
        before, after = widths[a]
        if before == after == 0:
            continue
        n = g.shape[a] - before - after
        out = np.array(g[_slices(g.ndim, a, slice(before, before + n))], copy=True)
        index = np.pad(np.arange(n), (before, after), mode=mode)
        for pos, part in ((0, index[:before]), (before + n, index[before + n:])):
            for start, step, length in _runs(part):
                src = g[_slices(g.ndim, a, slice(pos, pos + length))]
                if step == 1:
                    out[_slices(g.ndim, a, slice(start, start + length))] += src
                elif step == -1:
                    stop = start - length
                    out[_slices(g.ndim, a, slice(start, stop if stop >= 0 else None, -1))] += src
                else:
                    out[_slices(g.ndim, a, slice(start, start + 1))] += src.sum(
                        axis=a, keepdims=True)
                pos += length
        g = out
    return g


def _interior(g, ans, x, widths, values):
    return g[tuple(slice(before, n - after) for (before, after), n in zip(widths, g.shape))]


def _take_sum_forward(g, indices, axis, size):
    """The adjoint of ``np.take(x, indices, axis)`` (1-D non-negative indices): ``g`` summed
    into zeros of ``size`` along ``axis``. Repeated indices are grouped by a sort and summed
    with one ``reduceat``, which is many times faster than ``np.add.at``."""
    out = np.zeros(g.shape[:axis] + (size,) + g.shape[axis + 1:], dtype=g.dtype)
    if not len(indices):
        return out
    order = np.argsort(indices, kind="stable")
    ordered = indices[order]
    unique, starts = np.unique(ordered, return_index=True)
    if len(unique) == len(indices):
        out[_slices(g.ndim, axis, indices)] = g
    else:
        out[_slices(g.ndim, axis, unique)] = np.add.reduceat(np.take(g, order, axis=axis),
                                                             starts, axis=axis)
    return out


def _negated(shift):
    return tuple(-s for s in shift) if isinstance(shift, tuple) else -shift


# ----------------------------------------------------------------------------------------------
# THE TABLE (shape functions that are rows)
# ----------------------------------------------------------------------------------------------
_repeat = P("repeat", lambda x, repeats, axis, in_shape: np.repeat(x, repeats, axis=axis),
            [lambda g, ans, x, repeats, axis, in_shape:
             _repeat_sum(g, repeats=repeats, axis=axis, in_shape=in_shape)],
            ["grad summed over each run of repeated entries"])
_repeat_sum = P("repeat_sum", _repeat_sum_forward,
                [lambda g, ans, x, repeats, axis, in_shape:
                 _repeat(g, repeats=repeats, axis=axis, in_shape=in_shape)],
                ["grad repeated (np.repeat)"])
_tile = P("tile", lambda x, reps, in_shape: np.tile(x, reps), [_tile_grad],
          ["grad summed over the tiled copies"])
_pad = P("pad", lambda x, widths, mode: np.pad(x, widths, mode=mode),
         [lambda g, ans, x, widths, mode: _pad_fold(g, widths=widths, mode=mode)],
         ["grad of each padded copy added back into the entry it copies"])
_pad_fold = P("pad_fold", _pad_fold_forward,
              [lambda g, ans, x, widths, mode: _pad(g, widths=widths, mode=mode)],
              ["grad padded (np.pad)"])
_pad_constant = P("pad_constant",
                  lambda x, widths, values: np.pad(x, widths, constant_values=values),
                  [_interior], ["grad without the padding"])
_take = P("take", lambda x, indices, axis, size: np.take(x, indices, axis=axis),
          [lambda g, ans, x, indices, axis, size:
           _take_sum(g, indices=indices, axis=axis, size=size)],
          ["grad summed into the taken positions"])
_take_sum = P("take_sum", _take_sum_forward,
              [lambda g, ans, x, indices, axis, size:
               _take(g, indices=indices, axis=axis, size=size)],
              ["grad taken at the indices"])
_roll = P("roll", lambda x, shift, axis: np.roll(x, shift, axis=axis),
          [lambda g, ans, x, shift, axis: _roll(g, shift=_negated(shift), axis=axis)],
          ["grad rolled back"])


# ----------------------------------------------------------------------------------------------
# Argument checks
# ----------------------------------------------------------------------------------------------
def _arr(x):
    """A Tensor as it is; anything else as NumPy reads it (lists, numbers)."""
    return x if isinstance(x, (Tensor, np.ndarray)) else np.asarray(x)


def _values(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


def _is_int(n) -> bool:
    return isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_))


def _axis(axis, ndim, where, shape):
    """One axis as a non-negative int, with an error that names the function and the shape."""
    if not _is_int(axis):
        raise TypeError(f"{where}: an axis must be an int, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise AxisError(f"{where}: axis {axis} is out of bounds for an array of shape {shape} "
                        f"({ndim} dimension{'s' if ndim != 1 else ''})")
    return int(axis) % ndim


def _axis_tuple(axis, ndim, where, shape, unique=True):
    items = tuple(axis) if isinstance(axis, (tuple, list)) else (axis,)
    out = tuple(_axis(a, ndim, where, shape) for a in items)
    if unique and len(set(out)) != len(out):
        raise ValueError(f"{where}: repeated axis in {axis!r} (shape {shape})")
    return out


def _int_array(values, where, what):
    a = _values(values)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{where}: {what} must be integers, got dtype {a.dtype}")
    return a.astype(np.intp, copy=False)


def _basic_index(ndim, axis_slices):
    index = [slice(None)] * ndim
    for a, s in axis_slices.items():
        index[a] = s
    return tuple(index)


# ----------------------------------------------------------------------------------------------
# Views: ravel, flips, rotations, moved axes, at-least-n-d
# ----------------------------------------------------------------------------------------------
def ravel(x, order="C"):
    """``x`` as one dimension, in C order (``order='F'``: column-major). A view where NumPy's
    is; the gradient is reshaped back."""
    x = _arr(x)
    if order == "F":
        x = ops.transpose(x)
    elif order != "C":
        raise ValueError(f"ravel: order={order!r} is not supported: 'C' or 'F' (the layout of "
                         f"a Tensor's memory is not part of its meaning)")
    return ops.reshape(x, (int(np.prod(x.shape, dtype=np.int64)),))


def flip(x, axis=None):
    """Reverse the order of the entries along ``axis`` (all axes when None), as ``np.flip``:
    a view; the gradient is flipped back."""
    x = _arr(x)
    ndim = x.ndim
    axes = range(ndim) if axis is None else _axis_tuple(axis, ndim, "flip", x.shape)
    return ops.getitem(x, _basic_index(ndim, {a: slice(None, None, -1) for a in axes}))


def fliplr(x):
    """Reverse the columns (axis 1) of an array of at least 2 dimensions, as ``np.fliplr``."""
    x = _arr(x)
    if x.ndim < 2:
        raise ValueError(f"fliplr: the input must have at least 2 dimensions, got shape "
                         f"{x.shape}")
    return flip(x, 1)


def flipud(x):
    """Reverse the rows (axis 0) of an array of at least 1 dimension, as ``np.flipud``."""
    x = _arr(x)
    if x.ndim < 1:
        raise ValueError("flipud: the input must have at least 1 dimension, got shape ()")
    return flip(x, 0)


def rot90(x, k=1, axes=(0, 1)):
    """Rotate by 90 degrees ``k`` times in the plane of ``axes``, from the first axis towards
    the second, as ``np.rot90`` (a view)."""
    x = _arr(x)
    shape, ndim = x.shape, x.ndim
    axes = tuple(axes)
    if len(axes) != 2:
        raise ValueError(f"rot90: axes must name exactly 2 axes, got {axes!r}")
    if not _is_int(k):
        raise TypeError(f"rot90: k must be an int, got {k!r}")
    a, b = _axis_tuple(axes, ndim, "rot90", shape, unique=False)
    if a == b:
        raise ValueError(f"rot90: the axes must differ, got {axes!r} for shape {shape}")
    k = int(k) % 4
    if k == 0:
        return ops.getitem(x, (slice(None),))
    if k == 2:
        return flip(flip(x, a), b)
    order = list(range(ndim))
    order[a], order[b] = order[b], order[a]
    if k == 1:
        return ops.transpose(flip(x, b), tuple(order))
    return flip(ops.transpose(x, tuple(order)), b)


def moveaxis(x, source, destination):
    """Move the axes ``source`` to the positions ``destination`` (ints or sequences), the other
    axes keeping their order, as ``np.moveaxis`` (a view)."""
    x = _arr(x)
    shape, ndim = x.shape, x.ndim
    src = _axis_tuple(source, ndim, "moveaxis", shape)
    dst = _axis_tuple(destination, ndim, "moveaxis", shape)
    if len(src) != len(dst):
        raise ValueError(f"moveaxis: source {source!r} and destination {destination!r} must "
                         f"name the same number of axes")
    order = [n for n in range(ndim) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return ops.transpose(x, tuple(order))


def _at_least(arys, ndim, where):
    out = []
    for a in arys:
        a = _arr(a)
        shape = a.shape
        if a.ndim >= ndim:
            out.append(a)
            continue
        if ndim == 3 and a.ndim == 2:
            new = shape + (1,)
        elif ndim == 3 and a.ndim == 1:
            new = (1,) + shape + (1,)
        else:
            new = (1,) * (ndim - a.ndim) + shape
        out.append(ops.reshape(a, new))
    return out


def _one_or_tuple(out):
    return out[0] if len(out) == 1 else tuple(out)


def atleast_1d(*arys):
    """Each input with at least 1 dimension (a 0-d one becomes shape (1,)); one result for one
    input, a tuple for several, as ``np.atleast_1d``."""
    return _one_or_tuple(_at_least(arys, 1, "atleast_1d"))


def atleast_2d(*arys):
    """Each input with at least 2 dimensions: shape (n,) becomes (1, n), as ``np.atleast_2d``."""
    return _one_or_tuple(_at_least(arys, 2, "atleast_2d"))


def atleast_3d(*arys):
    """Each input with at least 3 dimensions: (n,) becomes (1, n, 1) and (m, n) becomes
    (m, n, 1), as ``np.atleast_3d``."""
    return _one_or_tuple(_at_least(arys, 3, "atleast_3d"))


# ----------------------------------------------------------------------------------------------
# Stacking and splitting
# ----------------------------------------------------------------------------------------------
def _sequence(tup, where):
    if not isinstance(tup, (list, tuple)):
        raise TypeError(f"{where}: the arrays to stack must be passed as a sequence (a list or "
                        f"tuple), got {type(tup).__name__}")
    if not tup:
        raise ValueError(f"{where}: needs at least one array to stack")
    return list(tup)


def _joined(arrays, axis, where, dtype=None, casting="same_kind"):
    if dtype is not None:
        dtype = np.dtype(dtype)
        for a in arrays:
            if not np.can_cast(a.dtype, dtype, casting):
                raise TypeError(f"{where}: cannot cast {a.dtype} to {dtype} with "
                                f"casting={casting!r}")
        arrays = [ops.astype(a, dtype) for a in arrays]
    shapes = [a.shape for a in arrays]
    ndim = len(shapes[0])
    for s in shapes:
        if len(s) != ndim or s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:]:
            raise ValueError(f"{where}: the shapes {shapes} must agree on every axis but axis "
                             f"{axis}")
    return ops.concatenate(arrays, axis=axis)


def hstack(tup, *, dtype=None, casting="same_kind"):
    """Join along axis 1 (axis 0 for 1-D inputs), as ``np.hstack``."""
    arrays = _at_least(_sequence(tup, "hstack"), 1, "hstack")
    return _joined(arrays, 0 if arrays[0].ndim == 1 else 1, "hstack", dtype, casting)


def vstack(tup, *, dtype=None, casting="same_kind"):
    """Join along axis 0, 1-D inputs first made rows (1, n), as ``np.vstack``."""
    return _joined(_at_least(_sequence(tup, "vstack"), 2, "vstack"), 0, "vstack", dtype,
                   casting)


def dstack(tup):
    """Join along axis 2, inputs first made at least 3-D (see `atleast_3d`), as ``np.dstack``."""
    return _joined(_at_least(_sequence(tup, "dstack"), 3, "dstack"), 2, "dstack")


def column_stack(tup):
    """Join 1-D inputs as columns (and 2-D ones as they are) along axis 1, as
    ``np.column_stack``."""
    columns = []
    for a in _sequence(tup, "column_stack"):
        a = _arr(a)
        columns.append(ops.reshape(a, (a.size, 1)) if a.ndim < 2 else a)
    return _joined(columns, 1, "column_stack")


def _pieces(x, bounds, axis):
    return [ops.getitem(x, _basic_index(x.ndim, {axis: slice(lo, hi)}))
            for lo, hi in zip(bounds[:-1], bounds[1:])]


def _split_bounds(indices_or_sections, n, where, equal, shape, axis):
    if _is_int(indices_or_sections):
        k = int(indices_or_sections)
        if k <= 0:
            raise ValueError(f"{where}: the number of sections must be larger than 0, got {k}")
        each, extra = divmod(n, k)
        if equal and extra:
            raise ValueError(f"{where}: axis {axis} of size {n} (shape {shape}) does not split "
                             f"into {k} equal sections")
        sizes = [each + 1] * extra + [each] * (k - extra)
        return [0] + np.cumsum(sizes).tolist()
    points = [int(p) for p in np.asarray(indices_or_sections).reshape(-1)]
    return [0] + points + [n]


def array_split(x, indices_or_sections, axis=0):
    """Split along ``axis`` into views: a number of sections (the first ones one longer when
    they cannot be equal) or a list of split points, as ``np.array_split``."""
    x = _arr(x)
    a = _axis(axis, x.ndim, "array_split", x.shape)
    return _pieces(x, _split_bounds(indices_or_sections, x.shape[a], "array_split", False,
                                    x.shape, a), a)


def _split_equal(x, indices_or_sections, axis, where):
    bounds = _split_bounds(indices_or_sections, x.shape[axis], where, True, x.shape, axis)
    return _pieces(x, bounds, axis)


def hsplit(x, indices_or_sections):
    """Split along axis 1 (axis 0 for 1-D input) into equal sections or at split points, as
    ``np.hsplit``."""
    x = _arr(x)
    if x.ndim == 0:
        raise ValueError("hsplit: the input must have at least 1 dimension, got shape ()")
    return _split_equal(x, indices_or_sections, 1 if x.ndim > 1 else 0, "hsplit")


def vsplit(x, indices_or_sections):
    """Split along axis 0 of an array of at least 2 dimensions, as ``np.vsplit``."""
    x = _arr(x)
    if x.ndim < 2:
        raise ValueError(f"vsplit: the input must have at least 2 dimensions, got shape "
                         f"{x.shape}")
    return _split_equal(x, indices_or_sections, 0, "vsplit")


def dsplit(x, indices_or_sections):
    """Split along axis 2 of an array of at least 3 dimensions, as ``np.dsplit``."""
    x = _arr(x)
    if x.ndim < 3:
        raise ValueError(f"dsplit: the input must have at least 3 dimensions, got shape "
                         f"{x.shape}")
    return _split_equal(x, indices_or_sections, 2, "dsplit")


# ----------------------------------------------------------------------------------------------
# Copies: repeat, tile, roll, pad
# ----------------------------------------------------------------------------------------------
def repeat(x, repeats, axis=None):
    """Repeat each entry ``repeats`` times along ``axis`` (an int, or one count per entry; the
    flattened array when ``axis`` is None), as ``np.repeat``. The gradient sums each run."""
    x = _arr(x)
    if axis is None:
        x, a = ravel(x), 0
    else:
        a = _axis(axis, x.ndim, "repeat", x.shape)
    counts = _int_array(repeats, "repeat", "repeats")
    n = x.shape[a]
    if counts.ndim > 1 or (counts.size != 1 and counts.size != n):
        raise ValueError(f"repeat: repeats of shape {counts.shape} do not match axis {a} of "
                         f"size {n} (shape {x.shape}): one count, or one per entry")
    if (counts < 0).any():
        raise ValueError(f"repeat: repeats must not be negative, got {counts.tolist()}")
    counts = int(counts.reshape(-1)[0]) if counts.size == 1 else counts.reshape(-1)
    return _repeat(x, repeats=counts, axis=a, in_shape=x.shape)


def tile(x, reps):
    """``x`` repeated ``reps[i]`` times along each axis ``i``, as ``np.tile`` (the shorter of
    ``x.shape`` and ``reps`` is padded with leading 1s). The gradient sums the copies."""
    x = _arr(x)
    reps = tuple(reps) if isinstance(reps, (tuple, list, np.ndarray)) else (reps,)
    if not builtins.all(_is_int(r) for r in reps):
        raise TypeError(f"tile: reps must be ints, got {reps!r}")
    if builtins.any(r < 0 for r in reps):
        raise ValueError(f"tile: reps must not be negative, got {reps!r}")
    if x.ndim < len(reps):
        x = ops.reshape(x, (1,) * (len(reps) - x.ndim) + x.shape)
    reps = (1,) * (x.ndim - len(reps)) + tuple(int(r) for r in reps)
    return _tile(x, reps=reps, in_shape=x.shape)


def roll(x, shift, axis=None):
    """Shift the entries cyclically by ``shift`` along ``axis`` (ints, or tuples paired
    element by element; the flattened array when ``axis`` is None), as ``np.roll``."""
    x = _arr(x)
    shifts = shift if isinstance(shift, (tuple, list)) else (shift,)
    if not builtins.all(_is_int(s) for s in shifts):
        raise TypeError(f"roll: shift must be an int or a tuple of ints, got {shift!r}")
    if axis is None:
        if len(shifts) != 1:
            raise ValueError(f"roll: with axis=None, shift must be one int, got {shift!r}")
        return _roll(x, shift=int(shifts[0]), axis=None)
    axes = _axis_tuple(axis, x.ndim, "roll", x.shape, unique=False)
    if isinstance(shift, (tuple, list)) or isinstance(axis, (tuple, list)):
        try:
            pairs = np.broadcast(np.array(shifts), np.array(axes))
        except ValueError:
            raise ValueError(f"roll: shift {shift!r} and axis {axis!r} must have the same "
                             f"length (or one of them be a single int)") from None
        pairs = [(int(s), int(a)) for s, a in pairs]
        return _roll(x, shift=tuple(s for s, _ in pairs), axis=tuple(a for _, a in pairs))
    return _roll(x, shift=int(shift), axis=axes[0])


_PAD_MODES = ("constant", "edge", "reflect", "symmetric", "wrap")


def _pad_pairs(value, ndim, where, what, integer):
    a = np.asarray(value)
    if integer and a.dtype.kind not in "iu":
        raise TypeError(f"{where}: {what} must be integers, got {value!r}")
    try:
        return np.broadcast_to(a, (ndim, 2)).tolist()
    except ValueError:
        raise ValueError(f"{where}: {what} {value!r} cannot be read as (before, after) pairs "
                         f"for the {ndim} axes of the input: use an int, (before, after), or "
                         f"one pair per axis") from None


def pad(x, pad_width, mode="constant", **kwargs):
    """``x`` padded by ``pad_width`` (an int, (before, after), or one pair per axis), as
    ``np.pad``. Modes: 'constant' (``constant_values``, 0 by default), 'edge', 'reflect',
    'symmetric' and 'wrap'. The padded entries are copies of (or, for 'constant', independent
    of) the input, so each entry's gradient is the sum over its copies."""
    x = _arr(x)
    if mode not in _PAD_MODES:
        raise ValueError(f"pad: mode {mode!r} is not supported; supported: "
                         f"{', '.join(_PAD_MODES)}")
    allowed = {"constant": {"constant_values"}, "reflect": {"reflect_type"},
               "symmetric": {"reflect_type"}}.get(mode, set())
    unknown = set(kwargs) - allowed
    if unknown:
        raise ValueError(f"pad: unsupported keyword argument(s) {sorted(unknown)} for mode "
                         f"{mode!r}")
    if kwargs.get("reflect_type", "even") != "even":
        raise ValueError(f"pad: reflect_type={kwargs['reflect_type']!r} is not supported "
                         f"(only 'even')")
    ndim, shape = x.ndim, x.shape
    widths = _pad_pairs(pad_width, ndim, "pad", "pad_width", integer=True)
    if builtins.any(w < 0 for pair in widths for w in pair):
        raise ValueError(f"pad: pad_width must not be negative, got {pad_width!r}")
    widths = tuple(tuple(int(w) for w in pair) for pair in widths)
    if mode == "constant":
        values = kwargs.get("constant_values", 0)
        if isinstance(values, Tensor):
            raise TypeError("pad: constant_values must be numbers; pad with 0 and add a "
                            "Tensor for a constant that needs a gradient")
        values = tuple(tuple(v) for v in _pad_pairs(values, ndim, "pad", "constant_values",
                                                    integer=False))
        return _pad_constant(x, widths=widths, values=values)
    for a, (before, after) in enumerate(widths):
        if (before or after) and shape[a] == 0:
            raise ValueError(f"pad: cannot pad axis {a} of size 0 (shape {shape}) in mode "
                             f"{mode!r}: there is nothing to copy")
    return _pad(x, widths=widths, mode=mode)


# ----------------------------------------------------------------------------------------------
# Gathers and selections
# ----------------------------------------------------------------------------------------------
def _checked_indices(idx, n, where, axis, shape):
    if idx.size and n == 0:
        raise IndexError(f"{where}: cannot take from axis {axis} of size 0 (shape {shape})")
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx[(idx < -n) | (idx >= n)].reshape(-1)[0]
        raise IndexError(f"{where}: index {int(bad)} is out of bounds for axis {axis} with "
                         f"size {n} (shape {shape})")


def take(x, indices, axis=None, mode="raise"):
    """The entries at ``indices`` along ``axis`` (of the flattened array when None), as
    ``np.take``: the result has shape ``x.shape[:axis] + indices.shape + x.shape[axis+1:]``;
    a repeated index accumulates its gradients. ``mode``: 'raise', 'wrap' or 'clip'."""
    x = _arr(x)
    if axis is None:
        x, a = ravel(x), 0
    else:
        a = _axis(axis, x.ndim, "take", x.shape)
    idx = _int_array(indices, "take", "indices")
    n = x.shape[a]
    if mode == "raise":
        _checked_indices(idx, n, "take", a, x.shape)
        idx = np.where(idx < 0, idx + n, idx)
    elif mode in ("wrap", "clip"):
        if idx.size and n == 0:
            raise IndexError(f"take: cannot take from axis {a} of size 0 (shape {x.shape})")
        idx = idx % builtins.max(n, 1) if mode == "wrap" else np.clip(idx, 0, n - 1)
    else:
        raise ValueError(f"take: mode must be 'raise', 'wrap' or 'clip', got {mode!r}")
    out = _take(x, indices=idx.reshape(-1), axis=a, size=n)
    if idx.ndim == 1:
        return out
    return ops.reshape(out, x.shape[:a] + idx.shape + x.shape[a + 1:])


def take_along_axis(arr, indices, axis=-1):
    """``arr`` gathered along ``axis`` at ``indices`` (same number of dimensions, the others
    broadcast), as ``np.take_along_axis``; ``axis=None`` uses the flattened array and 1-D
    indices. A repeated index accumulates its gradients."""
    x = _arr(arr)
    idx = _int_array(indices, "take_along_axis", "indices")
    if axis is None:
        if idx.ndim != 1:
            raise ValueError(f"take_along_axis: with axis=None the indices must be 1-D, got "
                             f"shape {idx.shape}")
        x, a = ravel(x), 0
    else:
        a = _axis(axis, x.ndim, "take_along_axis", x.shape)
    if idx.ndim != x.ndim:
        raise ValueError(f"take_along_axis: indices of shape {idx.shape} need as many dimensions "
                         f"as the array, of shape {x.shape}")
    rest = [d for d in range(x.ndim) if d != a]
    try:
        np.broadcast_shapes(tuple(x.shape[d] for d in rest), tuple(idx.shape[d] for d in rest))
    except ValueError:
        raise ValueError(f"take_along_axis: indices of shape {idx.shape} do not broadcast with "
                         f"the array of shape {x.shape} outside axis {a}") from None
    _checked_indices(idx, x.shape[a], "take_along_axis", a, x.shape)
    index = tuple(idx if d == a else
                  np.arange(x.shape[d]).reshape((1,) * d + (-1,) + (1,) * (x.ndim - d - 1))
                  for d in range(x.ndim))
    return ops.getitem(x, index)


def select(condlist, choicelist, default=0):
    """For each position, the entry of the first choice whose condition holds there, else
    ``default``, as ``np.select``; the gradient goes to the chosen choice (or default)."""
    condlist, choicelist = list(condlist), list(choicelist)
    if len(condlist) != len(choicelist):
        raise ValueError(f"select: condlist has {len(condlist)} entries and choicelist "
                         f"{len(choicelist)}; they must have the same length")
    if not condlist:
        raise ValueError("select: needs at least one condition")
    conds = []
    for i, c in enumerate(condlist):
        c = _arr(c)
        if c.dtype != np.bool_:
            raise TypeError(f"select: condition {i} must be boolean, got dtype {c.dtype}")
        conds.append(c)
    choices = [c if isinstance(c, (Tensor, numbers.Number)) else _arr(c) for c in choicelist]
    try:
        np.broadcast_shapes(*[np.shape(c) for c in conds + choices + [default]])
    except ValueError:
        raise ValueError(f"select: the shapes of the conditions "
                         f"{[np.shape(c) for c in conds]}, choices "
                         f"{[np.shape(c) for c in choices]} and default {np.shape(default)} "
                         f"do not broadcast together") from None
    out = default
    for cond, choice in zip(reversed(conds), reversed(choices)):
        out = ops.where(cond, choice, out)
    if not isinstance(out, Tensor):
        out = np.asarray(out)
    return out


# ----------------------------------------------------------------------------------------------
# Tensor methods whose NumPy and PyTorch readings differ (see tensor.py)
# ----------------------------------------------------------------------------------------------
_REPEAT_HINT = ("say which is meant: cr.repeat(x, n, axis) or x.repeat(n, axis=k) (NumPy: each "
                "entry n times along axis k; axis=None flattens), x.repeat_interleave(n, dim) "
                "(the same, PyTorch's name), or x.tile(sizes) (PyTorch's x.repeat(sizes): the "
                "whole tensor tiled)")


def _repeat_method(x, args, kwargs):
    """``Tensor.repeat``: NumPy's ``ndarray.repeat(repeats, axis)`` when the axis is given (a
    keyword or the second positional argument); a call that reads as PyTorch's tiling, or that
    NumPy and PyTorch read differently (one count, no axis), raises TypeError."""
    unknown = set(kwargs) - {"repeats", "axis"}
    if unknown:
        raise TypeError(f"Tensor.repeat: unexpected keyword argument(s) {sorted(unknown)}; "
                        + _REPEAT_HINT)
    args = list(args)
    if "repeats" in kwargs:
        args.insert(0, kwargs.pop("repeats"))
    if len(args) > 2 or (len(args) == 2 and "axis" in kwargs):
        raise TypeError(f"Tensor.repeat{tuple(args)!r}: several sizes read as PyTorch's "
                        f"x.repeat(*sizes), which tiles; NumPy's ndarray.repeat takes "
                        f"(repeats, axis). " + _REPEAT_HINT)
    if not args:
        raise TypeError("Tensor.repeat: missing repeats; " + _REPEAT_HINT)
    if len(args) == 1 and "axis" not in kwargs:
        raise TypeError(f"Tensor.repeat({args[0]!r}) without an axis means different things in "
                        f"NumPy (each entry repeated, flattened) and PyTorch (the tensor tiled); "
                        + _REPEAT_HINT)
    axis = args[1] if len(args) == 2 else kwargs["axis"]
    return repeat(x, args[0], axis)


def _repeat_interleave_method(x, repeats, dim=None, output_size=None):
    out = repeat(x, repeats, dim)
    if output_size is not None and out.shape[0 if dim is None else dim] != output_size:
        raise ValueError(f"repeat_interleave: output_size={output_size} but the repeats give "
                         f"{out.shape[0 if dim is None else dim]} entries")
    return out


def _tile_method(x, reps, dims):
    if dims is not None:
        if reps:
            raise TypeError("Tensor.tile: give the sizes positionally or as dims=, not both")
        reps = (dims,)
    if len(reps) == 1 and not _is_int(reps[0]):
        reps = tuple(reps[0])
    return tile(x, reps)


def _one_of(where, **spellings):
    given = {k: v for k, v in spellings.items() if v is not None}
    if len(given) > 1:
        raise TypeError(f"{where}: give one of {' or '.join(k + '=' for k in given)}, "
                        f"not several (they mean the same)")
    return next(iter(given.values()), None)


def _roll_method(x, shifts, dims, shift, axis):
    return roll(x, _one_of("Tensor.roll", shifts=shifts, shift=shift),
                _one_of("Tensor.roll", dims=dims, axis=axis))


def _flip_method(x, positional, dims, axis):
    if positional:
        positional = (positional[0] if len(positional) == 1 and not _is_int(positional[0])
                      else positional)
    else:
        positional = None
    chosen = _one_of("Tensor.flip", axes=positional, dims=dims, axis=axis)
    return flip(x, None if chosen is None else tuple(chosen) if isinstance(
        chosen, (tuple, list)) else chosen)


def _take_along_dim_method(x, indices, dim):
    if dim is None:  # PyTorch's reading: both the tensor and the indices flattened
        return take_along_axis(ravel(x), ravel(_int_array(indices, "take_along_dim",
                                                            "indices")), 0)
    return take_along_axis(x, indices, dim)
