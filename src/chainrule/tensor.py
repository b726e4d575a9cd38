"""The Tensor: an ndarray, its gradient, and the node that made it. Operators call into `ops`."""

from __future__ import annotations

import numbers

import numpy as np

from chainrule import autograd

_FLOATS = (np.float16, np.float32, np.float64)


def as_array(data, dtype=None) -> np.ndarray:
    """``data`` as an ndarray: Python floats and lists of them become float32, arrays keep their
    dtype, integers stay integers. Only numbers make tensors: strings, objects and ragged
    nested lists raise."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        arr = _asarray(data, np.dtype(dtype))
    elif isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, np.generic):
        arr = np.asarray(data)
    else:
        arr = _asarray(data, None)
        if arr.dtype == np.float64:  # came from Python floats: float32 is the library's default
            return arr.astype(np.float32)
    if arr.dtype.kind not in _NUMERIC_KINDS:
        raise TypeError(f"cr.tensor: cannot make a tensor of dtype {arr.dtype} "
                        f"({_KIND_NAMES.get(arr.dtype.kind, 'not a number')}) from "
                        f"{type(data).__name__} {data!r:.80}; a tensor holds numbers (bool, "
                        f"integer, floating or complex)")
    return arr


_NUMERIC_KINDS = "biufc"
_KIND_NAMES = {"U": "text", "S": "bytes", "O": "Python objects", "M": "dates", "m": "time spans",
               "V": "raw records"}


def _asarray(data, dtype):
    try:
        return np.asarray(data, dtype=dtype)
    except ValueError as exc:
        if "inhomogeneous" not in str(exc) and "sequence" not in str(exc):
            raise
        raise ValueError(f"cr.tensor: the nested lists have different lengths (ragged): "
                         f"{_ragged_detail(data)}; every row must have the same length "
                         f"(pad the short ones, or keep them as separate tensors)") from None


def _ragged_detail(data) -> str:
    """Where nested lists first disagree: "data[0] has 2 elements but data[1] has 1"."""
    def length(v):
        if isinstance(v, Tensor | np.ndarray):
            return len(v) if np.ndim(v) else None
        return len(v) if isinstance(v, list | tuple) else None

    def where(index):
        return "data" + "".join(f"[{i}]" for i in index)

    def count(n):
        return "a single number" if n is None else f"{n} element{'s' if n != 1 else ''}"

    level = [((), data)]
    while level:
        lengths = [(index, length(v)) for index, v in level]
        first_index, first = lengths[0]
        for index, n in lengths[1:]:
            if n != first:
                return f"{where(first_index)} has {count(first)} but {where(index)} has {count(n)}"
        if first is None:
            break
        level = [(index + (j,), v[j]) for index, v in level for j in range(length(v))]
    return "their lengths differ"


class Tensor:
    """An n-dimensional array that records the operations applied to it.

    ``data`` is the NumPy array; ``grad`` is filled by ``backward()`` for leaves that require grad;
    ``grad_fn`` is the node that produced the tensor (None for leaves).
    """

    __slots__ = ("data", "grad", "grad_fn", "_requires_grad", "_hooks", "_version", "name",
                 "__weakref__")
    # NumPy calls on Tensors (np.exp(t), np.sum(t), ndarray * Tensor) run chainrule's functions,
    # or fail naming the function: never a silent conversion (see chainrule.numpy_dispatch).
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _dispatch.array_ufunc(ufunc, method, *inputs, **kwargs)

    def __array_function__(self, func, types, args, kwargs):
        return _dispatch.array_function(func, types, args, kwargs)

    __array_priority__ = 1000

    def __init__(self, data, requires_grad=False, dtype=None):
        self.data = as_array(data, dtype)
        self.grad = None
        self.grad_fn = None
        self._requires_grad = False
        self._hooks = None
        self._version = [0]
        self.name = None
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, data):
        t = cls.__new__(cls)
        t.data = data if type(data) is np.ndarray else np.asarray(data)
        t.grad = None
        t.grad_fn = None
        t._requires_grad = False
        t._hooks = None
        t._version = [0]
        t.name = None
        return t

    @classmethod
    def _from_node(cls, data, node, version):
        t = cls._wrap(data)
        t.grad_fn = node
        t._requires_grad = True
        t._version = version
        return t

    # --- flags ---------------------------------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Mark a leaf as needing a gradient (in place); returns the tensor."""
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad_: cannot turn off requires_grad on a non-leaf tensor "
                               f"(made by {self.grad_fn.name}); use .detach()")
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(f"requires_grad_: only floating-point tensors can require grad, "
                            f"not {self.data.dtype} (convert with .astype(cr.float32))")
        self._requires_grad = bool(requires_grad)
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    # --- array facts ---------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        """The number of elements, NumPy's ``x.size`` (an int); called, PyTorch's ``x.size()``
        (the shape, a tuple) or ``x.size(d)`` (one axis's length): see `Size`."""
        return Size(self.data.size, self.data.shape)

    @property
    def T(self) -> Tensor:
        return _ops.transpose(self)

    def __len__(self):
        if self.data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def numpy(self) -> np.ndarray:
        """The underlying array (shared, not copied)."""
        autograd.untraceable("x.numpy() (the values leave the graph)")
        return self.data

    def item(self):
        """The single value of a one-element tensor as a Python number."""
        autograd.untraceable("x.item() (a value read out of the graph)")
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number, this "
                             f"one has shape {self.shape}")
        return self.data.item()

    def tolist(self):
        autograd.untraceable("x.tolist() (the values leave the graph)")
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        autograd.untraceable("np.asarray(x), np.array(x) or cr.tensor(x) on a tensor (the values "
                             "leave the graph; x.detach() or an operation keeps them in it)")
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        autograd.untraceable("an integer tensor used as an index or a count")
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only a one-element integer tensor can be used as an index")
        return int(self.data.item())

    def __bool__(self):
        autograd.untraceable("bool(x) or `if x:` (Python control flow on a value)")
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor with {self.data.size} elements is "
                             f"ambiguous; use .any() or .all()")
        return bool(self.data.item())

    def any(self) -> bool:
        autograd.untraceable("x.any() (Python control flow on a value)")
        return bool(self.data.any())

    def all(self) -> bool:
        autograd.untraceable("x.all() (Python control flow on a value)")
        return bool(self.data.all())

    def __repr__(self):
        body = np.array2string(self.data, separator=", ", precision=4, threshold=40,
                               prefix="tensor(")
        extras = [f"dtype={self.data.dtype}"]
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name}>")
        elif self._requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extras)})"

    __hash__ = object.__hash__  # == is elementwise, so hash by identity (as PyTorch does)

    # --- autograd ------------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph=False, create_graph=False):
        """Fill ``.grad`` of every leaf this tensor depends on with d(self)/d(leaf).

        ``gradient`` is the vector of the vector-Jacobian product; it may be omitted only for a
        one-element tensor. Gradients accumulate into ``.grad`` across calls until cleared; as in
        PyTorch, a later call adds into the existing ``.grad`` in place (outside
        ``create_graph``), so keep ``w.grad.clone()``, not ``w.grad``, to remember an old one.
        """
        if not self._requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no grad_fn; "
                               "did you create the inputs with requires_grad=True, or compute it "
                               "under cr.no_grad()?")
        seed = _seed_gradient(self, gradient, "backward")
        autograd.backward([self], [seed], retain_graph=retain_graph or create_graph,
                          create_graph=create_graph)

    def detach(self) -> Tensor:
        """The same data, cut off from the graph (shares memory and version counter)."""
        if autograd._tracer is not None:  # cr.compile: the alias reads this tensor's value
            autograd._tracer.aliased(self)
        t = Tensor._wrap(self.data)
        t._version = self._version
        return t

    def register_hook(self, hook):
        """Call ``hook(grad)`` with the gradient flowing into this tensor during backward.

        The hook may return a replacement gradient. Returns a handle whose ``remove()`` undoes it.
        """
        if not self._requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that does not "
                               "require grad")
        owner = self.grad_fn if self.grad_fn is not None else self
        if self.grad_fn is not None:
            if owner.hooks is None:
                owner.hooks = {}
            hooks = owner.hooks
        else:
            if self._hooks is None:
                self._hooks = {}
            hooks = self._hooks
        return _HookHandle(hooks, hook)

    def retain_grad(self) -> None:
        """Keep ``.grad`` for this non-leaf tensor too after backward."""
        if self.grad_fn is None:
            return
        import weakref

        ref = weakref.ref(self)

        def keep(grad):
            t = ref()
            if t is not None:
                t.grad = grad.detach() if t.grad is None else Tensor._wrap(t.grad.data + grad.data)

        self.register_hook(keep)

    def zero_(self) -> Tensor:
        return self._write(lambda d: d.fill(0), "zero_")

    def fill_(self, value) -> Tensor:
        return self._write(lambda d: d.fill(value), "fill_")

    def copy_(self, src) -> Tensor:
        src = src.data if isinstance(src, Tensor) else np.asarray(src)
        return self._write(lambda d: np.copyto(d, src, casting="same_kind"), "copy_")

    def _write(self, write, name):
        autograd.untraceable(f"{name} (an in-place write)")
        if autograd.is_grad_enabled() and self._requires_grad:
            raise RuntimeError(f"{name}: cannot write in place into a tensor that requires grad "
                               f"while recording; do it inside cr.no_grad()")
        write(self.data)
        self._version[0] += 1
        return self

    def _inplace(self, op, other, name):
        """``self op= other``: writes into self's array and keeps the graph right.

        As in PyTorch, the operation computes in the promoted dtype of ``self`` and ``other``
        and the result is cast back to self's dtype, which never changes; a result of a higher
        category (float into an integer tensor) raises.
        """
        autograd.untraceable(f"{name} (an in-place write: x += y, x[i] = v, ...)")
        promotes = getattr(op, "promotes", None) is not None
        if promotes:
            dtype = autograd.result_type(self, other)
            if dtype is not None and op.to_float and dtype.kind in "biu":
                dtype = autograd.DEFAULT_FLOAT
            if dtype is not None and not autograd.can_cast(dtype, self.data.dtype):
                raise TypeError(f"{name}: the result has dtype {dtype}, which cannot be written "
                                f"in place into this {self.data.dtype} tensor (in-place "
                                f"operations keep the tensor's dtype); use an out-of-place "
                                f"operation, or convert first with .astype({dtype})")
        records = autograd.is_grad_enabled() and (
            self._requires_grad or (isinstance(other, Tensor) and other._requires_grad))
        if not records:
            args = (self.data, other.data if isinstance(other, Tensor) else other)
            if promotes:
                args = autograd._promote(op, args)
            out = op(*args)
            np.copyto(self.data, out, casting="same_kind")
            self._version[0] += 1
            return self
        if self.grad_fn is None and self._requires_grad:
            raise RuntimeError(f"{name}: a leaf tensor that requires grad cannot be changed in "
                               f"place while recording; wrap the update in cr.no_grad()")
        before = Tensor._wrap(self.data)  # stands for self's old value in the graph
        before.grad_fn, before._requires_grad, before._version = (
            self.grad_fn, self._requires_grad, self._version)
        result = op(before, other)
        if result.data.dtype != self.data.dtype:  # computed in a wider dtype: cast back, recorded
            result = _ops.astype(result, self.data.dtype)
        saved = result.grad_fn.saved
        if saved is not None and any(s is before for s in saved):
            # The rule reads self's old value (x *= y with y requiring grad): keep a copy, since
            # the write below overwrites the array that `before` shares.
            kept = Tensor._wrap(before.data.copy())
            kept.grad_fn, kept._requires_grad = before.grad_fn, before._requires_grad
            result.grad_fn.saved = tuple(kept if s is before else s for s in saved)
            result.grad_fn.versions = tuple(0 if s is before else v for s, v in
                                            zip(saved, result.grad_fn.versions))
        np.copyto(self.data, result.data, casting="same_kind")
        self._version[0] += 1
        self.grad_fn = result.grad_fn
        self._requires_grad = True
        node = self.grad_fn
        if node.ans is not None and not node.op.residual:  # its saved answer is now our array
            node.ans, node.ans_version = self.data, (self._version, self._version[0])
        return self

    def __iadd__(self, other):
        return self._inplace(_ops.add, other, "add_")

    def __isub__(self, other):
        return self._inplace(_ops.subtract, other, "sub_")

    def __imul__(self, other):
        return self._inplace(_ops.multiply, other, "mul_")

    def __itruediv__(self, other):
        return self._inplace(_ops.divide, other, "div_")

    add_, sub_, mul_, div_ = __iadd__, __isub__, __imul__, __itruediv__

    def __setitem__(self, index, value):
        index = _ops.index_key(index)
        self._inplace(lambda x, v: _ops.setitem(x, v, index=index), value, "setitem")

    # --- operators (each is one primitive in ops/) ---------------------------------------------
    def __add__(self, other):
        return _apply(_ops.add, (self, other), _NO_PARAMS)

    def __radd__(self, other):
        return _apply(_ops.add, (other, self), _NO_PARAMS)

    def __sub__(self, other):
        return _apply(_ops.subtract, (self, other), _NO_PARAMS)

    def __rsub__(self, other):
        return _apply(_ops.subtract, (other, self), _NO_PARAMS)

    def __mul__(self, other):
        return _apply(_ops.multiply, (self, other), _NO_PARAMS)

    def __rmul__(self, other):
        return _apply(_ops.multiply, (other, self), _NO_PARAMS)

    def __truediv__(self, other):
        return _apply(_ops.divide, (self, other), _NO_PARAMS)

    def __rtruediv__(self, other):
        return _apply(_ops.divide, (other, self), _NO_PARAMS)

    def __pow__(self, other):
        return _apply(_ops.power, (self, other), _NO_PARAMS)

    def __rpow__(self, other):
        return _apply(_ops.power, (other, self), _NO_PARAMS)

    def __matmul__(self, other):
        return _apply(_ops.matmul, (self, other), _NO_PARAMS)

    def __rmatmul__(self, other):
        return _apply(_ops.matmul, (other, self), _NO_PARAMS)

    def __neg__(self):
        return _apply(_ops.negative, (self,), _NO_PARAMS)

    def __pos__(self):
        return self

    def __abs__(self):
        return _ops.abs(self)

    def __eq__(self, other):
        return _apply(_ops.equal, (self, other), _NO_PARAMS)

    def __ne__(self, other):
        return _apply(_ops.not_equal, (self, other), _NO_PARAMS)

    def __lt__(self, other):
        return _apply(_ops.less, (self, other), _NO_PARAMS)

    def __le__(self, other):
        return _apply(_ops.less_equal, (self, other), _NO_PARAMS)

    def __gt__(self, other):
        return _apply(_ops.greater, (self, other), _NO_PARAMS)

    def __ge__(self, other):
        return _apply(_ops.greater_equal, (self, other), _NO_PARAMS)

    def __and__(self, other):
        return _ops.logical_and(self, other)

    def __or__(self, other):
        return _ops.logical_or(self, other)

    def __rand__(self, other):  # ndarray & Tensor
        return _ops.logical_and(other, self)

    def __ror__(self, other):
        return _ops.logical_or(other, self)

    def __invert__(self):
        return _ops.logical_not(self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    # --- methods (NumPy names; PyTorch aliases where users expect them) ------------------------
    # PyTorch's dim=/keepdim= (and correction=/unbiased= for var, std) are accepted with the
    # meanings the ops functions document; they are plain keywords, so the usual call stays cheap.
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.sum(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.mean(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def max(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        """NumPy's maximum over ``axis``; with PyTorch's ``dim=``, ``(values, indices)``."""
        return _ops.max(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def min(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        """NumPy's minimum over ``axis``; with PyTorch's ``dim=``, ``(values, indices)``."""
        return _ops.min(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def var(self, axis=None, keepdims=False, ddof=None, *, dim=None, keepdim=None,
            correction=None, unbiased=None):
        """Variance: NumPy's ddof 0 by default, PyTorch's correction 1 when ``dim=`` is used."""
        return _ops.var(self, axis, keepdims, ddof, dim=dim, keepdim=keepdim,
                        correction=correction, unbiased=unbiased)

    def std(self, axis=None, keepdims=False, ddof=None, *, dim=None, keepdim=None,
            correction=None, unbiased=None):
        """Standard deviation, with the defaults of `var`."""
        return _ops.std(self, axis, keepdims, ddof, dim=dim, keepdim=keepdim,
                        correction=correction, unbiased=unbiased)

    def logsumexp(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.logsumexp(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def argmax(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.argmax(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def argmin(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        return _ops.argmin(self, axis, keepdims, dim=dim, keepdim=keepdim)

    def reshape(self, *shape):
        return _ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes, dim0=None, dim1=None):
        """NumPy's ``transpose()`` (reverse the axes) and ``transpose(axes)`` (a permutation);
        PyTorch's ``transpose(dim0, dim1)`` (swap two axes) where that is the only reading.

        Two ints on a tensor that is not 2-D can only be PyTorch's swap. On a 2-D tensor
        ``transpose(1, 0)`` is a swap in both readings, but ``transpose(0, 1)`` is NumPy's
        identity and PyTorch's swap, so it raises rather than guess (see README, "NumPy and
        PyTorch spellings")."""
        if dim0 is not None or dim1 is not None:
            if axes or dim0 is None or dim1 is None:
                raise TypeError("transpose: PyTorch's form takes exactly dim0= and dim1=")
            return _ops.swapaxes(self, dim0, dim1)
        if len(axes) == 2 and all(_is_int(a) for a in axes):
            ndim = self.data.ndim
            a, b = (int(axes[0]) % max(ndim, 1), int(axes[1]) % max(ndim, 1))
            if ndim == 2 and (a, b) == (0, 1):
                raise TypeError(
                    f"transpose{tuple(axes)} on a 2-D tensor is ambiguous: NumPy reads it as the "
                    f"identity permutation, PyTorch as swapping the two axes. Write x.T, "
                    f"x.swapaxes(0, 1) or x.permute(1, 0) to swap, or x.transpose((0, 1)) for "
                    f"NumPy's identity")
            if ndim != 2 or a == b or (a, b) == (1, 0):
                return _ops.swapaxes(self, axes[0], axes[1])
        if len(axes) == 1 and not _is_int(axes[0]):  # one tuple (or None), not one axis
            axes = axes[0]
        return _ops.transpose(self, None if isinstance(axes, tuple) and not axes else axes)

    def swapaxes(self, axis1, axis2):
        return _ops.swapaxes(self, axis1, axis2)

    def flatten(self, start_dim=0, end_dim=-1):
        return _ops.flatten(self, start_dim, end_dim)

    def squeeze(self, axis=None, *, dim=None):
        """Remove size-1 axes; with PyTorch's ``dim=``, axes of another size are left alone."""
        return _ops.squeeze(self, axis, dim=dim)

    def unsqueeze(self, axis=None, *, dim=None):
        return _ops.expand_dims(self, axis, dim=dim)

    expand_dims = unsqueeze

    def broadcast_to(self, shape):
        return _ops.broadcast_to(self, shape)

    def astype(self, dtype):
        return _ops.astype(self, dtype)

    def clone(self):
        return _ops.copy(self)

    copy = clone

    def exp(self):
        return _apply(_ops.exp, (self,), _NO_PARAMS)

    def log(self):
        return _ops.log(self)

    def sqrt(self):
        return _ops.sqrt(self)

    def abs(self):
        return _ops.abs(self)

    def sin(self):
        return _ops.sin(self)

    def cos(self):
        return _ops.cos(self)

    # --- elementwise functions of chainrule.elementwise, and the % operator ------------------
    def __mod__(self, other):
        return _apply(_ew.remainder, (self, other), _NO_PARAMS)

    def __rmod__(self, other):
        return _apply(_ew.remainder, (other, self), _NO_PARAMS)

    def __imod__(self, other):
        return self._inplace(_ew.remainder, other, "remainder_")

    def round(self, decimals=0):
        return _ew.round(self, decimals)

    def tan(self):
        return _ew.tan(self)

    def sinh(self):
        return _ew.sinh(self)

    def cosh(self):
        return _ew.cosh(self)

    def arcsin(self):
        return _ew.arcsin(self)

    def arccos(self):
        return _ew.arccos(self)

    def arctan(self):
        return _ew.arctan(self)

    def arcsinh(self):
        return _ew.arcsinh(self)

    def arccosh(self):
        return _ew.arccosh(self)

    def arctanh(self):
        return _ew.arctanh(self)

    def log2(self):
        return _ew.log2(self)

    def log10(self):
        return _ew.log10(self)

    def log1p(self):
        return _ew.log1p(self)

    def expm1(self):
        return _ew.expm1(self)

    def exp2(self):
        return _ew.exp2(self)

    def square(self):
        return _ew.square(self)

    def reciprocal(self):
        return _ew.reciprocal(self)

    def cbrt(self):
        return _ew.cbrt(self)

    def sinc(self):
        return _ew.sinc(self)

    def deg2rad(self):
        return _ew.deg2rad(self)

    def rad2deg(self):
        return _ew.rad2deg(self)

    def floor(self):
        return _ew.floor(self)

    def ceil(self):
        return _ew.ceil(self)

    def arctan2(self, other):
        return _ew.arctan2(self, other)

    def hypot(self, other):
        return _ew.hypot(self, other)

    def fmax(self, other):
        return _ew.fmax(self, other)

    def fmin(self, other):
        return _ew.fmin(self, other)

    def logaddexp(self, other):
        return _ew.logaddexp(self, other)

    def logaddexp2(self, other):
        return _ew.logaddexp2(self, other)

    def remainder(self, other):
        return _ew.remainder(self, other)

    def fmod(self, other):
        return _ew.fmod(self, other)

    # PyTorch's spellings of the inverse functions
    asin, acos, atan, asinh, acosh, atanh, atan2 = (
        arcsin, arccos, arctan, arcsinh, arccosh, arctanh, arctan2)

    def tanh(self):
        return _apply(_ops.tanh, (self,), _NO_PARAMS)

    def sigmoid(self):
        return _ops.sigmoid(self)

    def relu(self):
        return _ops.relu(self)

    def clip(self, min=None, max=None):
        return _ops.clip(self, min, max)

    def softmax(self, axis=None, *, dim=None):
        return _ops.softmax(self, axis, dim=dim)

    def log_softmax(self, axis=None, *, dim=None):
        return _ops.log_softmax(self, axis, dim=dim)

    # --- contractions (chainrule/contractions.py) --------------------------------------------
    # ndarray's reading for dot, trace and diagonal (PyTorch's dim1=/dim2= accepted too, same
    # meaning); PyTorch's for diag, tril, triu, outer, inner and kron, raising where PyTorch
    # refuses an input that NumPy's function would read differently (1-D tril, N-D outer).
    def dot(self, b, out=None):
        """``ndarray.dot``: NumPy's dot product for every ndim (``cr.dot``)."""
        return _con.dot(self, b, out)

    def trace(self, offset=0, axis1=0, axis2=1, dtype=None, out=None):
        """``ndarray.trace``: the sum along a diagonal (``cr.trace``)."""
        return _con.trace(self, offset, axis1, axis2, dtype, out)

    def diagonal(self, offset=0, axis1=None, axis2=None, *, dim1=None, dim2=None):
        """``ndarray.diagonal`` (PyTorch's ``dim1=``/``dim2=`` also accepted): the diagonal over
        two axes, moved to the last axis."""
        return _con._diagonal_method(self, offset, axis1, axis2, dim1, dim2)

    def diag(self, diagonal=0):
        """PyTorch's ``diag``: a vector becomes a matrix with it on the ``diagonal``-th diagonal,
        a matrix gives that diagonal (``np.diag``)."""
        return _con._diag_method(self, diagonal)

    def tril(self, diagonal=0):
        """PyTorch's ``tril`` (at least 2-D): the lower triangle of the last two axes."""
        return _con._triangle_method(self, diagonal, True)

    def triu(self, diagonal=0):
        """PyTorch's ``triu`` (at least 2-D): the upper triangle of the last two axes."""
        return _con._triangle_method(self, diagonal, False)

    def outer(self, vec2):
        """PyTorch's ``outer`` of two vectors (``cr.outer`` flattens N-D inputs as NumPy)."""
        return _con._outer_method(self, vec2)

    def inner(self, other):
        """PyTorch's (and NumPy's) ``inner``: the sum of products over the last axes."""
        return _con.inner(self, other)

    def kron(self, other):
        """PyTorch's (and NumPy's) ``kron``: the Kronecker product."""
        return _con.kron(self, other)


    # --- reductions (chainrule/reductions.py) ------------------------------------------------
    # ndarray's reading for prod, cumsum, cumprod and argsort (PyTorch's dim=/keepdim= accepted,
    # the same meaning); PyTorch's for nansum, nanmean and median (ndarray has no such method)
    # and for sort, whose bare call raises: ndarray sorts in place, torch returns a pair.
    def prod(self, axis=None, keepdims=False, *, dim=None, keepdim=None, dtype=None):
        """The product over ``axis`` (``cr.prod``); PyTorch's ``dim=``/``keepdim=`` accepted."""
        axis, keepdims = _red._torch_dims(axis, keepdims, dim, keepdim, "prod")
        return _red.prod(self, axis, dtype, keepdims=keepdims)

    def cumsum(self, axis=None, dtype=None, out=None, *, dim=None):
        """``ndarray.cumsum``: along ``axis`` (None flattens); PyTorch's ``dim=`` accepted."""
        axis, _ = _red._torch_dims(axis, False, dim, None, "cumsum")
        return _red.cumsum(self, axis, dtype, out)

    def cumprod(self, axis=None, dtype=None, out=None, *, dim=None):
        """``ndarray.cumprod``: along ``axis`` (None flattens); PyTorch's ``dim=`` accepted."""
        axis, _ = _red._torch_dims(axis, False, dim, None, "cumprod")
        return _red.cumprod(self, axis, dtype, out)

    def ptp(self, axis=None, out=None, keepdims=False):
        """Peak to peak, ``max - min`` over ``axis`` (``cr.ptp``)."""
        return _red.ptp(self, axis, out, keepdims)

    def nansum(self, axis=None, keepdims=False, *, dim=None, keepdim=None, dtype=None):
        """PyTorch's ``nansum(dim, keepdim)`` (``cr.nansum``): the sum with NaN as 0."""
        axis, keepdims = _red._torch_dims(axis, keepdims, dim, keepdim, "nansum")
        return _red.nansum(self, axis, dtype, keepdims=keepdims)

    def nanmean(self, axis=None, keepdims=False, *, dim=None, keepdim=None, dtype=None):
        """PyTorch's ``nanmean(dim, keepdim)`` (``cr.nanmean``): the mean of the non-NaN."""
        axis, keepdims = _red._torch_dims(axis, keepdims, dim, keepdim, "nanmean")
        return _red.nanmean(self, axis, dtype, keepdims=keepdims)

    def median(self, dim=None, keepdim=False):
        """PyTorch's ``median`` (ndarray has none): the LOWER median, unlike ``cr.median`` (NumPy's,
        the mean of the two middle values for an even count). ``x.median()`` is a 0-d tensor
        whose gradient ties share; ``x.median(dim)`` is ``(values, indices)``, the gradient going
        to the entry at the index (the lower middle of the stable order)."""
        return _red._median_method(self, dim, keepdim)

    def sort(self, *args, **kwargs):
        """PyTorch's ``sort(dim=-1, descending=False, stable=False)``: ``(values, indices)``; call
        it with ``dim=`` or ``descending=``. ``x.sort()`` and ``x.sort(axis)`` raise TypeError:
        ndarray sorts in place, torch returns a pair; ``cr.sort(x, axis)`` is the sorted copy."""
        return _red._sort_method(self, args, kwargs)

    def argsort(self, axis=-1, kind=None, order=None, *, dim=None, descending=None, stable=None):
        """``ndarray.argsort(axis, kind)``; PyTorch's ``dim=``/``descending=`` (or a bool second
        argument, torch's ``descending``) give torch's reading, ties in the stable order."""
        return _red._argsort_method(self, axis, kind, order, dim, descending, stable)

    # --- shape functions (chainrule/shapes.py) -----------------------------------------------
    # NumPy's reading where ndarray has the method (ravel, repeat, take); PyTorch's otherwise,
    # accepting NumPy's keywords too where both mean the same (flip's axis=, roll's axis=).
    def ravel(self, order="C"):
        """The tensor as one dimension (a view where NumPy's is), as ``ndarray.ravel``."""
        return _shp.ravel(self, order)

    def repeat(self, *args, **kwargs):
        """NumPy's ``ndarray.repeat(repeats, axis)``: each entry ``repeats`` times along the axis,
        which must be given (``x.repeat(2, axis=0)``, ``x.repeat(2, 0)``, ``axis=None``
        flattens). PyTorch's ``x.repeat(*sizes)`` tiles: that reading, and ``x.repeat(n)``,
        raise TypeError pointing to ``x.tile(sizes)`` and ``x.repeat_interleave(n, dim)``."""
        return _shp._repeat_method(self, args, kwargs)

    def repeat_interleave(self, repeats, dim=None, *, output_size=None):
        """PyTorch's ``repeat_interleave``: each entry ``repeats`` times along ``dim`` (the
        flattened tensor when None), NumPy's ``repeat``."""
        return _shp._repeat_interleave_method(self, repeats, dim, output_size)

    def take(self, indices, axis=None, mode="raise"):
        """The entries at ``indices`` along ``axis`` (of the flattened tensor when None), as
        ``ndarray.take`` (and PyTorch's ``take`` without an axis)."""
        return _shp.take(self, indices, axis, mode)

    def take_along_dim(self, indices, dim=None):
        """PyTorch's ``take_along_dim``: NumPy's ``take_along_axis``; ``dim=None`` flattens the
        tensor and the indices."""
        return _shp._take_along_dim_method(self, indices, dim)

    def tile(self, *reps, dims=None):
        """The tensor repeated ``reps[i]`` times along each axis (ints, or one tuple), as
        ``np.tile`` and PyTorch's ``tile`` (PyTorch's ``repeat(*sizes)``)."""
        return _shp._tile_method(self, reps, dims)

    def roll(self, shifts=None, dims=None, *, shift=None, axis=None):
        """Shift the entries cyclically, as PyTorch's ``roll(shifts, dims)`` and ``np.roll``
        (``dims=None``: the flattened tensor)."""
        return _shp._roll_method(self, shifts, dims, shift, axis)

    def flip(self, *axes, dims=None, axis=None):
        """Reverse the entries along the given axes (ints, one tuple, ``dims=`` or ``axis=``);
        with none, along every axis, as ``np.flip`` (PyTorch requires ``dims``). A view."""
        return _shp._flip_method(self, axes, dims, axis)

    def fliplr(self):
        """Reverse axis 1, as ``np.fliplr`` and PyTorch's ``fliplr``."""
        return _shp.fliplr(self)

    def flipud(self):
        """Reverse axis 0, as ``np.flipud`` and PyTorch's ``flipud``."""
        return _shp.flipud(self)

    def rot90(self, k=1, dims=(0, 1), *, axes=None):
        """Rotate by 90 degrees ``k`` times in the plane of ``dims`` (or ``axes=``), as PyTorch's
        ``rot90`` and ``np.rot90``."""
        return _shp.rot90(self, k, dims if axes is None else axes)

    def moveaxis(self, source, destination):
        """Move the axes ``source`` to ``destination``, as ``np.moveaxis`` (PyTorch's
        ``movedim``). A view."""
        return _shp.moveaxis(self, source, destination)

    movedim = moveaxis

    # --- PyTorch's spellings ------------------------------------------------------------------
    # The same operations under torch's names, for code and habits that come from PyTorch. Where
    # the two libraries give one spelling different meanings, the method raises rather than pick
    # one silently (see README, "NumPy and PyTorch spellings").
    def permute(self, *dims):
        """The axes in the order ``dims`` (ints, or one tuple): NumPy's ``transpose(axes)``."""
        return _ops.transpose(self, dims[0] if len(dims) == 1 and not _is_int(dims[0]) else dims)

    def view(self, *shape):
        """PyTorch's ``view(*shape)``: `reshape` (a view of the same memory when NumPy can make
        one). ``view(dtype)``, which reinterprets the bytes, is refused."""
        if len(shape) == 1 and not _is_int(shape[0]) and not isinstance(shape[0], tuple | list):
            raise TypeError(f"view({shape[0]!r}): reinterpreting the bytes as another dtype "
                            f"(NumPy's and PyTorch's view(dtype)) has no gradient and is not "
                            f"supported; convert the values with .astype(dtype) or .to(dtype), "
                            f"or reinterpret the array itself with .numpy().view(dtype)")
        return _ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def numel(self) -> int:
        """The number of elements (NumPy's ``x.size``)."""
        return self.data.size

    def dim(self) -> int:
        """The number of axes (NumPy's ``x.ndim``)."""
        return self.data.ndim

    def float(self) -> Tensor:
        """Cast to float32 (differentiable), as ``astype(cr.float32)``."""
        return _ops.astype(self, np.float32)

    def double(self) -> Tensor:
        """Cast to float64 (differentiable)."""
        return _ops.astype(self, np.float64)

    def half(self) -> Tensor:
        """Cast to float16 (differentiable)."""
        return _ops.astype(self, np.float16)

    def long(self) -> Tensor:
        """Cast to int64 (no gradient flows through an integer result)."""
        return _ops.astype(self, np.int64)

    def int(self) -> Tensor:
        """Cast to int32, as torch's ``int()`` (``int(x)``, the Python number, is unchanged)."""
        return _ops.astype(self, np.int32)

    @property
    def device(self) -> device:
        """Always ``cr.device("cpu")``: chainrule computes with NumPy on the CPU."""
        return _CPU

    def to(self, *args, dtype=None, device=None, copy=False):
        """PyTorch's ``to``: ``to(dtype)``, ``to("cpu")``, ``to(cr.device("cpu"))``,
        ``to(other_tensor)`` (its dtype), or a device and a dtype. Returns self when nothing
        changes (a copy with ``copy=True``); another device than the CPU raises."""
        target = _to_dtype(args, dtype, device, "Tensor.to")
        if target is None or target == self.data.dtype:
            return self.clone() if copy else self
        return _ops.astype(self, target)

    def swapdims(self, dim0, dim1):
        """PyTorch's name of `swapaxes`."""
        return _ops.swapaxes(self, dim0, dim1)

    def expand(self, *sizes):
        """PyTorch's ``expand``: `broadcast_to` the shape ``sizes``, where -1 keeps that axis's
        size (new leading axes need an explicit size)."""
        sizes = tuple(sizes[0]) if len(sizes) == 1 and not _is_int(sizes[0]) else sizes
        shape = self.data.shape
        lead = len(sizes) - len(shape)
        if lead < 0:
            raise ValueError(f"expand: {len(sizes)} sizes {sizes} for a tensor of shape {shape} "
                             f"(at least {len(shape)} are needed)")
        out = []
        for i, n in enumerate(sizes):
            if n == -1:
                if i < lead:
                    raise ValueError(f"expand: -1 is not allowed for the new leading axis {i} "
                                     f"in {sizes}")
                n = shape[i - lead]
            out.append(int(n))
        return _ops.broadcast_to(self, tuple(out))

    def clamp(self, min=None, max=None):
        """PyTorch's name of `clip`: limit the values to [min, max] (either may be None)."""
        return _ops.clip(self, min, max)


class Size(int):
    """``x.size``: the number of elements as NumPy's ``x.size`` (an int: ``x.size == 6``,
    arithmetic, ``range(x.size)``), and callable as PyTorch's ``x.size()`` (the shape as a
    tuple) and ``x.size(d)`` (the length of axis ``d``)."""

    def __new__(cls, n, shape):
        self = super().__new__(cls, n)
        self.shape = shape
        return self

    def __reduce__(self):  # copy and pickle rebuild it from both parts, not from the int alone
        return (Size, (int(self), self.shape))

    def __call__(self, dim=None):
        if dim is None:
            return self.shape
        if not _is_int(dim):
            raise TypeError(f"size(dim): dim must be an int, got {dim!r}")
        if not -len(self.shape) <= dim < len(self.shape):
            raise IndexError(f"size({dim}): axis out of range for shape {self.shape}")
        return self.shape[dim]


_DEVICE_TYPES = ("cuda", "mps", "xpu", "xla", "meta", "hip", "hpu", "ipu", "mtia", "vulkan",
                 "lazy", "privateuseone", "mkldnn", "opengl", "opencl", "ideep", "fpga", "ve",
                 "maia")


class device:
    """Where a tensor lives, as ``torch.device``. chainrule computes with NumPy on the CPU, so
    ``cr.device("cpu")`` (or ``"cpu:0"``) is the only one; any other device raises, saying so,
    instead of running somewhere the user did not ask for."""

    __slots__ = ("type", "index")

    def __init__(self, type="cpu", index=None):
        if isinstance(type, device):
            type, index = type.type, type.index if index is None else index
        if not isinstance(type, str):
            raise TypeError(f"cr.device: expected a string such as 'cpu', got "
                            f"{type.__class__.__name__} {type!r}")
        kind, colon, number = type.partition(":")
        if colon:
            if index is not None or not number.isdigit():
                raise RuntimeError(f"cr.device: invalid device string {type!r}")
            index = int(number)
        if kind != "cpu":
            known = kind in _DEVICE_TYPES
            raise RuntimeError(
                f"cr.device({type!r}): chainrule runs on the CPU only (it computes with NumPy), "
                + (f"there is no {kind} device; " if known else f"and {kind!r} is not a device "
                   f"type; ") + "use 'cpu' or leave the device out")
        if index is not None and (not _is_int(index) or index < 0):
            raise RuntimeError(f"cr.device: the index must be a non-negative int, got {index!r}")
        self.type = "cpu"
        self.index = None if index is None else int(index)

    def __eq__(self, other):
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __repr__(self):
        extra = "" if self.index is None else f", index={self.index}"
        return f"device(type='{self.type}'{extra})"

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"


_CPU = device("cpu")


def _to_dtype(args, dtype, where_to, where):
    """The dtype that ``.to(*args, dtype=, device=)`` asks for (None: keep), checking that any
    device it names is the CPU. Strings name a device ("cpu", "cuda:0") when they start with a
    device type, a dtype otherwise ("float32")."""
    found = [] if dtype is None else [dtype]
    for a in args + (() if where_to is None else (where_to,)):
        if isinstance(a, Tensor):
            found.append(a.data.dtype)
        elif isinstance(a, device):
            pass
        elif isinstance(a, str) and a.partition(":")[0] in ("cpu",) + _DEVICE_TYPES:
            device(a)  # raises for anything but the CPU
        else:
            try:
                if a is None:  # np.dtype(None) would quietly mean float64
                    raise TypeError
                found.append(np.dtype(a))
            except (TypeError, ValueError):
                raise TypeError(f"{where}: {a!r} is neither a dtype, a device nor a tensor "
                                f"(e.g. .to(cr.float32), .to('cpu'), .to(other))") from None
    if len(found) > 1 and len({np.dtype(d) for d in found}) > 1:
        raise TypeError(f"{where}: more than one dtype given ({', '.join(map(str, found))})")
    return np.dtype(found[0]) if found else None


class _HookHandle:
    _next_id = 0

    def __init__(self, hooks: dict, hook):
        _HookHandle._next_id += 1
        self.id = _HookHandle._next_id
        self.hooks = hooks
        hooks[self.id] = hook

    def remove(self):
        self.hooks.pop(self.id, None)


def _seed_gradient(t, gradient, where):
    if gradient is None:
        if t.data.size != 1:
            raise RuntimeError(f"{where}: the output has shape {t.shape}; a gradient can be "
                               f"implied only for a one-element output. Pass gradient= (same "
                               f"shape) or reduce it first, e.g. loss.sum().backward()")
        one = np.array(1, t.data.dtype)  # np.ones goes through Python: a µs more per backward
        return one if t.data.ndim == 0 else one.reshape(t.data.shape)
    g = gradient.data if isinstance(gradient, Tensor) else np.asarray(gradient, t.data.dtype)
    if g.shape != t.shape:
        raise RuntimeError(f"{where}: gradient has shape {g.shape} but the output has shape "
                           f"{t.shape}; they must match")
    return gradient if isinstance(gradient, Tensor) and gradient._requires_grad else g


def tensor(data, requires_grad=False, dtype=None) -> Tensor:
    """Make a Tensor. Python floats and lists become float32; NumPy arrays keep their float dtype
    (and are copied, as are tensors); integer data stays integer and cannot require grad."""
    if isinstance(data, (Tensor, np.ndarray)):
        data = np.array(data, copy=True)  # a new tensor never aliases the caller's array
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def from_numpy(array: np.ndarray, requires_grad=False) -> Tensor:
    """A tensor that shares memory with ``array`` (no copy)."""
    return Tensor(np.asarray(array), requires_grad=requires_grad)


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def is_scalar(x) -> bool:
    return isinstance(x, numbers.Number) and not isinstance(x, bool)


_NO_PARAMS = {}  # shared by every operator call: rules never modify their params
_apply = autograd.apply
autograd.Tensor = Tensor
from chainrule import contractions as _con  # noqa: E402, F401
from chainrule import elementwise as _ew  # noqa: E402  (so does elementwise)
from chainrule import numpy_dispatch as _dispatch  # noqa: E402
from chainrule import ops as _ops  # noqa: E402  (ops needs Tensor defined first)
from chainrule import reductions as _red  # noqa: E402, F401
from chainrule import shapes as _shp  # noqa: E402, F401
