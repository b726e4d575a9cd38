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
        return self.data.size

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
        return self.data

    def item(self):
        """The single value of a one-element tensor as a Python number."""
        if self.data.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number, this "
                             f"one has shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and np.dtype(dtype) != self.data.dtype:
            return self.data.astype(dtype)
        return self.data.copy() if copy else self.data

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError("only a one-element integer tensor can be used as an index")
        return int(self.data.item())

    def __bool__(self):
        if self.data.size != 1:
            raise ValueError(f"the truth value of a tensor with {self.data.size} elements is "
                             f"ambiguous; use .any() or .all()")
        return bool(self.data.item())

    def any(self) -> bool:
        return bool(self.data.any())

    def all(self) -> bool:
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
        one-element tensor. Gradients accumulate into ``.grad`` across calls until cleared.
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
        if node.ans is not None:  # its saved answer is now our array, under our counter
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
    def sum(self, axis=None, keepdims=False):
        return _ops.sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return _ops.mean(self, axis, keepdims)

    def max(self, axis=None, keepdims=False):
        return _ops.max(self, axis, keepdims)

    def min(self, axis=None, keepdims=False):
        return _ops.min(self, axis, keepdims)

    def var(self, axis=None, keepdims=False, ddof=0):
        return _ops.var(self, axis, keepdims, ddof)

    def std(self, axis=None, keepdims=False, ddof=0):
        return _ops.std(self, axis, keepdims, ddof)

    def logsumexp(self, axis=None, keepdims=False):
        return _ops.logsumexp(self, axis, keepdims)

    def argmax(self, axis=None, keepdims=False):
        return _ops.argmax(self, axis, keepdims)

    def argmin(self, axis=None, keepdims=False):
        return _ops.argmin(self, axis, keepdims)

    def reshape(self, *shape):
        return _ops.reshape(self, shape[0] if len(shape) == 1 else shape)

    def transpose(self, *axes):
        return _ops.transpose(self, axes[0] if len(axes) == 1 else (axes or None))

    def swapaxes(self, axis1, axis2):
        return _ops.swapaxes(self, axis1, axis2)

    def flatten(self, start_dim=0, end_dim=-1):
        return _ops.flatten(self, start_dim, end_dim)

    def squeeze(self, axis=None):
        return _ops.squeeze(self, axis)

    def unsqueeze(self, axis):
        return _ops.expand_dims(self, axis)

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

    def softmax(self, axis=-1):
        return _ops.softmax(self, axis)

    def log_softmax(self, axis=-1):
        return _ops.log_softmax(self, axis)

    # --- contractions (chainrule/contractions.py) --------------------------------------------

    # --- reductions (chainrule/reductions.py) ------------------------------------------------

    # --- shape functions (chainrule/shapes.py) -----------------------------------------------

    # --- PyTorch's spellings ------------------------------------------------------------------


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
        return np.ones_like(t.data)
    g = gradient.data if isinstance(gradient, Tensor) else np.asarray(gradient, t.data.dtype)
    if g.shape != t.shape:
        raise RuntimeError(f"{where}: gradient has shape {g.shape} but the output has shape "
                           f"{t.shape}; they must match")
    return gradient if isinstance(gradient, Tensor) and gradient._requires_grad else g


def tensor(data, requires_grad=False, dtype=None) -> Tensor:
    """Make a Tensor. Python floats and lists become float32; NumPy arrays keep their float dtype
    (and are shared, not copied); integer data stays integer and cannot require grad."""
    if isinstance(data, (Tensor, np.ndarray)):
        data = np.array(data, copy=True)  # a new tensor never aliases the caller's array
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def from_numpy(array: np.ndarray, requires_grad=False) -> Tensor:
    """A tensor that shares memory with ``array`` (no copy)."""
    return Tensor(np.asarray(array), requires_grad=requires_grad)


def is_tensor(x) -> bool:
    return isinstance(x, Tensor)


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
