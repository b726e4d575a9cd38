"""Shape rows of THE TABLE (see ``ops``): views that share memory, and so the version counter,
with their input (reshape, transpose, broadcast_to, basic slicing), the copies (gathers, scatters,
concatenate, stack), and the checks of ``axis`` arguments that every family uses.
"""

from __future__ import annotations

import builtins

import numpy as np

from chainrule import autograd
from chainrule.autograd import Primitive, ShapeError, unbroadcast
from chainrule.tensor import Tensor

P = Primitive


def _scatter(g, index, shape):
    """The adjoint of ``x[index]``: ``g`` placed into zeros of ``shape``, repeats summed."""
    out = np.zeros(shape, dtype=g.dtype)
    if _is_basic(index):
        out[index] = g
    else:
        np.add.at(out, index, g)
    return out


def _zero_at(g, index):
    out = np.array(g, copy=True)
    out[index] = 0
    return out


def _setitem(x, v, index):
    out = np.array(x, copy=True)
    out[index] = v
    return out


def _concat_grads(g, ans, n, axis, sizes):
    bounds = np.cumsum((0,) + tuple(sizes))
    lead = (slice(None),) * axis
    return tuple(g[lead + (slice(int(a), int(b)),)] for a, b in zip(bounds[:-1], bounds[1:]))


def _stack_grads(g, ans, n, axis):
    lead = (slice(None),) * axis
    return tuple(g[lead + (i,)] for i in range(n))

# --- shape (views: they share memory, and so the version counter, with their input) -------------
_reshape = P("reshape", lambda x, shape, in_shape: np.reshape(x, shape),
             [lambda g, ans, x, shape, in_shape: g.reshape(in_shape)],
             ["grad reshaped back"], view=True)
_transpose = P("transpose", lambda x, axes, inverse: np.transpose(x, axes),
               [lambda g, ans, x, axes, inverse: g.transpose(inverse)],
               ["grad transposed back"], view=True)
_broadcast_to = P("broadcast_to", lambda x, shape, in_shape: np.broadcast_to(x, shape),
                  [lambda g, ans, x, shape, in_shape: unbroadcast(g, in_shape)],
                  ["grad summed over the broadcast axes"], view=True)
_getitem = P("getitem", lambda x, index, shape: x[index],
             [lambda g, ans, x, index, shape: scatter(g, index=index, shape=shape)],
             ["grad placed at the indexed positions"], view=True)
_take = P("take", lambda x, index, shape: x[index],  # advanced indexing copies: not a view
          [lambda g, ans, x, index, shape: scatter(g, index=index, shape=shape)],
          ["grad summed into the indexed positions"])
scatter = P("scatter", _scatter, [lambda g, ans, src, index, shape: g[index]],
            ["grad[index]"])
setitem = P("setitem", _setitem,
            [lambda g, ans, x, v, index: zero_at(g, index=index),
             lambda g, ans, x, v, index: g[index]],
            ["grad with zeros at index", "grad[index]"], broadcasts=True)
zero_at = P("zero_at", _zero_at, [lambda g, ans, src, index: zero_at(g, index=index)],
            ["grad with zeros at index"])
_concatenate = P("concatenate", lambda *xs, axis, sizes: np.concatenate(xs, axis=axis),
                 vjp_all=_concat_grads, formulas=["grad split back into the pieces"],
                 promotes=())  # (): all the inputs promote together
_stack = P("stack", lambda *xs, axis: np.stack(xs, axis=axis),
           vjp_all=_stack_grads, formulas=["grad unstacked"], promotes=())


def _ndim(x):
    return x.ndim if isinstance(x, (Tensor, np.ndarray)) else np.ndim(x)


def _shape(x):
    """``np.shape(x)`` without NumPy's dispatch to ``Tensor.__array_function__`` (a Tensor's
    ``np.shape`` costs ~1.5 us, its ``.shape`` ~0.1 us: every shape function asks it)."""
    return x.shape if isinstance(x, (Tensor, np.ndarray)) else np.shape(x)


def _axes(axis, ndim, where):
    """``axis`` (None, int or tuple) as None or a sorted tuple of non-negative ints."""
    if axis is None:
        return None
    items = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in items:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"{where}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < builtins.max(ndim, 1):
            raise ValueError(f"{where}: axis {a} is out of range for a tensor with {ndim} "
                             f"dimension{'s' if ndim != 1 else ''}")
        out.append(int(a) % builtins.max(ndim, 1))
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def _one_axis(axis, ndim, where):
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"{where}: axis must be an int, got {axis!r}")
    return _axes(axis, ndim, where)[0]


def reshape(x, shape):
    """``x`` with a new shape of the same size (one entry may be -1)."""
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    in_shape = _shape(x)
    size = int(np.prod(in_shape))
    known = int(np.prod([n for n in shape if n != -1]))
    if shape.count(-1) > 1 or (-1 not in shape and known != size) or (
            -1 in shape and (known == 0 or size % known)):
        raise ShapeError(f"reshape: cannot reshape a tensor of shape {in_shape} (size {size}) "
                         f"into shape {shape}")
    return _reshape(x, shape=shape, in_shape=in_shape)


def transpose(x, axes=None):
    """Permute the axes (reverse them when ``axes`` is None)."""
    ndim = _ndim(x)
    if axes is not None:
        axes = tuple(int(a) % builtins.max(ndim, 1) for a in axes)
        if sorted(axes) != list(range(ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of the {ndim} axes "
                             f"of shape {_shape(x)}")
        inverse = tuple(np.argsort(axes).tolist())
    else:
        inverse = None
    return _transpose(x, axes=axes, inverse=inverse)


def swapaxes(x, axis1, axis2):
    """Exchange two axes."""
    ndim = _ndim(x)
    order = list(range(ndim))
    a, b = _one_axis(axis1, ndim, "swapaxes"), _one_axis(axis2, ndim, "swapaxes")
    order[a], order[b] = order[b], order[a]
    return transpose(x, tuple(order))


def flatten(x, start_dim=0, end_dim=-1):
    """Merge axes ``start_dim``..``end_dim`` into one (all of them by default)."""
    shape = _shape(x)
    if not shape:
        return reshape(x, (1,))
    s, e = _one_axis(start_dim, len(shape), "flatten"), _one_axis(end_dim, len(shape), "flatten")
    return reshape(x, shape[:s] + (int(np.prod(shape[s:e + 1])),) + shape[e + 1:])


def _torch_axis(axis, dim, where):
    """``axis`` or PyTorch's ``dim`` (the same meaning), refusing both."""
    if axis is not None:
        raise TypeError(f"{where}: got both axis={axis!r} and dim={dim!r}; they are the same "
                        f"argument (NumPy's and PyTorch's name), pass one")
    return dim


def squeeze(x, axis=None, *, dim=None):
    """Remove axes of size 1 (all of them, or those in ``axis``; one of another size raises).

    With PyTorch's ``dim=``, PyTorch's meaning: the axes in ``dim`` that have size 1 are
    removed and the others are left alone (no error)."""
    shape = _shape(x)
    if dim is not None:
        _torch_axis(axis, dim, "squeeze")
        axes = _axes(dim, len(shape), "squeeze")
        return reshape(x, tuple(n for i, n in enumerate(shape) if i not in axes or n != 1))
    axes = _axes(axis, len(shape), "squeeze")
    if axes is None:
        axes = tuple(i for i, n in enumerate(shape) if n == 1)
    for a in axes:
        if shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} of shape {shape} has size {shape[a]}, not 1")
    return reshape(x, tuple(n for i, n in enumerate(shape) if i not in axes))


def expand_dims(x, axis=None, *, dim=None):
    """Insert an axis of size 1 at ``axis`` (PyTorch's ``dim=`` accepted)."""
    if dim is not None:
        axis = _torch_axis(axis, dim, "expand_dims")
    elif axis is None:
        raise TypeError("expand_dims: missing the axis (or dim) at which to insert the new axis")
    shape = _shape(x)
    a = _one_axis(axis, len(shape) + 1, "expand_dims")
    return reshape(x, shape[:a] + (1,) + shape[a:])


unsqueeze = expand_dims


def broadcast_to(x, shape):
    """``x`` broadcast to ``shape`` (gradients are summed back)."""
    shape = tuple(shape)
    in_shape = _shape(x)
    try:
        np.broadcast_shapes(in_shape, shape)
    except ValueError:
        raise ShapeError(f"broadcast_to: cannot broadcast shape {in_shape} to {shape}") from None
    if np.broadcast_shapes(in_shape, shape) != shape:
        raise ShapeError(f"broadcast_to: cannot broadcast shape {in_shape} to {shape}")
    return _broadcast_to(x, shape=shape, in_shape=in_shape)


def concatenate(tensors, axis=None, *, dim=None):
    """Join tensors along an existing axis (default 0; PyTorch's ``dim=`` accepted)."""
    if dim is not None:
        axis = _torch_axis(axis, dim, "concatenate")
    elif axis is None:
        axis = 0
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate: needs at least one tensor")
    ndim = _ndim(tensors[0])
    a = _one_axis(axis, ndim, "concatenate")
    shapes = [_shape(t) for t in tensors]
    for s in shapes:
        if len(s) != ndim or s[:a] + s[a + 1:] != shapes[0][:a] + shapes[0][a + 1:]:
            raise ShapeError(f"concatenate: shapes {shapes} differ outside axis {a}")
    return _concatenate(*tensors, axis=a, sizes=tuple(s[a] for s in shapes))


def cat(tensors, dim=0):
    """PyTorch's name of `concatenate`: join tensors along the existing axis ``dim``."""
    return concatenate(tensors, dim=dim)


concat = cat


def stack(tensors, axis=None, *, dim=None):
    """Join tensors of one shape along a new axis (default 0; PyTorch's ``dim=`` accepted)."""
    if dim is not None:
        axis = _torch_axis(axis, dim, "stack")
    elif axis is None:
        axis = 0
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: needs at least one tensor")
    shapes = [_shape(t) for t in tensors]
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(f"stack: all tensors need the same shape, got {shapes}")
    return _stack(*tensors, axis=_one_axis(axis, len(shapes[0]) + 1, "stack"))


def split(x, indices_or_sections, axis=None, *, dim=None):
    """Split into pieces along ``axis`` (default 0): a number of equal sections or a list of
    split points, as NumPy.

    With PyTorch's ``dim=``, PyTorch's meaning of the second argument (``torch.split``): an int
    is the size of each piece (the last may be smaller), a list the sizes of the pieces."""
    if dim is not None:
        axis = _torch_axis(axis, dim, "split")
    shape = _shape(x)
    a = _one_axis(0 if axis is None else axis, len(shape), "split")
    n = shape[a]
    if dim is not None:
        points = _torch_split_points(indices_or_sections, n, a)
    elif isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        if k <= 0 or n % k:
            raise ValueError(f"split: axis {a} of size {n} does not split into {k} equal sections")
        points = list(range(0, n, n // k))[1:]
    else:
        points = [int(p) for p in indices_or_sections]
    bounds = [0] + points + [n]
    lead = (slice(None),) * a
    return [getitem(x, lead + (slice(lo, hi),)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def _torch_split_points(size_or_sizes, n, a):
    """The split points of ``torch.split(x, size_or_sizes, dim=a)`` along an axis of size n."""
    if isinstance(size_or_sizes, (int, np.integer)):
        k = int(size_or_sizes)
        if k <= 0:
            raise ValueError(f"split: the piece size must be positive, got {k}")
        return list(range(k, n, k))
    sizes = [int(k) for k in size_or_sizes]
    if builtins.sum(sizes) != n or builtins.any(k < 0 for k in sizes):
        raise ValueError(f"split: the sizes {sizes} must be non-negative and add up to {n}, the "
                         f"size of axis {a}")
    return np.cumsum(sizes[:-1]).tolist()


def _is_basic(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return builtins.all(isinstance(i, (int, np.integer, slice, type(None), type(Ellipsis)))
                        and not isinstance(i, bool) for i in items)


def index_key(index):
    """An index with Tensors and lists turned into arrays (NumPy's indexing rules apply)."""
    if isinstance(index, tuple):
        return tuple(index_key(i) for i in index)
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, list):
        return np.asarray(index)
    return index


def getitem(x, index):
    """``x[index]``: basic slicing gives a view; integer or boolean arrays gather (repeated
    indices accumulate their gradients)."""
    index = index_key(index)
    if _is_basic(index):
        return _getitem(x, index=index, shape=_shape(x))
    if autograd._tracer is not None and _has_mask(index):
        autograd.untraceable("indexing with a boolean mask (the result's shape depends on the "
                             "mask's values)")
    return _take(x, index=index, shape=_shape(x))


def _has_mask(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, np.ndarray) and i.dtype == bool for i in items)
