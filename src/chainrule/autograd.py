"""The graph machinery: grad mode, recording a node, and the iterative reverse walk.

This module knows no operation by name. Each primitive is a `Primitive` (one row of the table in
`ops/`): a forward function and, per input, a vector-Jacobian product rule
``rule(grad, ans, *inputs, **params)``. Applying a primitive to Tensors runs the forward on plain
arrays and, when some input requires grad, records a `Node`. `backward` walks the nodes in reverse
topological order with an explicit worklist (no recursion), sums the gradients of every path, and
hands each leaf its total.
"""

from __future__ import annotations

import dis
import functools
import inspect
import threading

import numpy as np

Tensor = None  # bound by tensor.py, which imports this module first


# ----------------------------------------------------------------------------------------------
# Grad mode, one per thread (as in PyTorch: a new thread starts with recording on)
# ----------------------------------------------------------------------------------------------
# Which threads have recording off (one token each), and how many have anomaly mode on. While
# none has (nearly always), `apply` knows the mode without the per-thread lookup. A thread counts
# itself before it turns a mode off, so a thread that finds none is in the default mode itself.
# The tokens sit in a list because append and pop are atomic: no lock on the way into backward.
_switch_lock = threading.Lock()
_threads_without_grad = []
_threads_with_anomaly = 0
_set_thread_local = threading.local.__setattr__


class _GradMode(threading.local):
    enabled = True  # the class attribute is each new thread's starting value

    def __setattr__(self, name, value):
        if name == "enabled":
            value = bool(value)
            if value != self.enabled:
                _switch_grad_mode(value)
                return
        super().__setattr__(name, value)


def _switch_grad_mode(value: bool) -> None:
    """Turn this thread's recording to ``value``, which must differ from its mode now."""
    if value:
        _threads_without_grad.pop()
    else:
        _threads_without_grad.append(None)
    _set_thread_local(_mode, "enabled", value)


_mode = _GradMode()


def is_grad_enabled() -> bool:
    """True when operations on tensors that require grad are recorded (in this thread)."""
    return _mode.enabled


class set_grad_enabled:
    """Context manager (and decorator) that turns recording on or off inside its block.

    The mode belongs to the thread that enters the block: ``no_grad`` in one thread leaves every
    other thread recording. One instance may be entered by several threads at once; each thread
    gets back the mode it had.
    """

    def __init__(self, mode: bool = True):
        self.mode = bool(mode)
        self.previous = {}  # thread id -> the modes to restore, innermost last

    def __enter__(self):
        self.previous.setdefault(threading.get_ident(), []).append(_mode.enabled)
        _mode.enabled = self.mode
        return self

    def __exit__(self, *exc):
        ident = threading.get_ident()
        stack = self.previous[ident]
        _mode.enabled = stack.pop()
        if not stack:
            del self.previous[ident]
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)(*self._args()):
                return fn(*args, **kwargs)

        return wrapper

    def _args(self):
        return (self.mode,)


class no_grad(set_grad_enabled):
    """``with cr.no_grad():`` records nothing; tensors made inside do not require grad."""

    def __init__(self):
        super().__init__(False)

    def _args(self):
        return ()


class enable_grad(set_grad_enabled):
    """``with cr.enable_grad():`` records again, even inside ``no_grad``."""

    def __init__(self):
        super().__init__(True)

    def _args(self):
        return ()


# ----------------------------------------------------------------------------------------------
# Anomaly mode: a switch that the inspection tools turn on (`cr.detect_anomaly`), per thread
# ----------------------------------------------------------------------------------------------
class _AnomalyMode(threading.local):
    """The attributes are this thread's: a new thread starts with anomaly mode off."""

    enabled = False
    on_forward = None  # callable(op, node_or_None, out_array, args) run after every forward
    on_backward = None  # callable(node, input_grads) run after every VJP
    # keyword arguments of np.errstate for the forward and backward computations, or None:
    # detect_anomaly silences NumPy's warnings there, since its error reports the problem
    errstate = None

    def __setattr__(self, name, value):
        global _threads_with_anomaly
        if name == "enabled":
            value = bool(value)
            if value != self.enabled:
                with _switch_lock:
                    _threads_with_anomaly += 1 if value else -1
        super().__setattr__(name, value)


anomaly = _AnomalyMode()


# ----------------------------------------------------------------------------------------------
# Primitives: one row of the table
# ----------------------------------------------------------------------------------------------
def _reads(rule, n_leading: int = 2) -> tuple[bool, frozenset]:
    """Which of ``ans`` and the inputs a VJP rule reads, found from its bytecode.

    Knowing it lets a node keep only the values its rules will use, so memory is returned as soon
    as the forward pass no longer needs it (an ``add`` node keeps nothing, a ``tanh`` node only its
    answer).
    """
    code = rule.__code__
    if code.co_flags & inspect.CO_VARARGS:  # *inputs: assume it reads all of them
        return True, frozenset(range(64))
    names = code.co_varnames[: code.co_argcount]
    used = set(code.co_cellvars)
    for ins in dis.get_instructions(code):
        if ins.opname.startswith("LOAD_"):
            val = ins.argval
            used.update(val if isinstance(val, tuple) else (val,))
    reads_ans = len(names) > 1 and names[1] in used
    inputs = frozenset(i for i, name in enumerate(names[n_leading:]) if name in used)
    return reads_ans, inputs


class Primitive:
    """A differentiable operation: ``forward`` on arrays and one VJP rule per input.

    ``vjps[i](grad, ans, *inputs, **params)`` returns the gradient for input ``i``. Rules use
    only operators and methods shared by ``numpy.ndarray`` and ``Tensor`` (or other primitives),
    so the same rule runs on arrays in an ordinary backward pass and on Tensors, recorded, when
    ``create_graph=True``. ``vjp_all`` replaces ``vjps`` for operations with a variable number of
    inputs (concatenate, stack): ``vjp_all(grad, ans, n_inputs, **params)`` returns all of them.

    ``promotes`` lists the inputs whose dtypes combine by PyTorch's promotion rules (see
    `result_type`) before the forward runs (``()``: all of them); ``to_float`` makes an integer
    or bool result the default float dtype, float32 (true division).

    With ``residual=True`` the forward returns ``(output, residual)``: something it computed on
    the way that the rules need (cross-entropy's softmax), so backward need not compute it again.
    The rules then receive the residual where they would receive ``ans``.
    """

    __slots__ = ("name", "forward", "vjps", "vjp_all", "formulas", "broadcasts", "view",
                 "differentiable", "node_name", "promotes", "to_float", "numbers_kept",
                 "residual", "_rule_reads", "_plans")

    def __init__(self, name, forward, vjps=(), formulas=(), *, vjp_all=None, broadcasts=False,
                 view=False, differentiable=True, promotes=None, to_float=False, residual=False):
        self.name = name
        self.residual = residual
        # () stands for every input (concatenate, stack)
        self.promotes = tuple(promotes) if promotes is not None else None
        self.to_float = to_float
        self.numbers_kept = _NUMBERS_KEPT_TO_FLOAT if to_float else _NUMBERS_KEPT
        self.forward = forward
        self.vjps = tuple(vjps)
        self.vjp_all = vjp_all
        self.formulas = tuple(formulas)
        self.broadcasts = broadcasts
        self.view = view
        self.differentiable = differentiable
        self.node_name = _camel(name) + "Backward"
        self._rule_reads = None  # read from the rules' bytecode on first use: it costs at import
        self._plans = {}

    def __repr__(self):
        return f"<primitive {self.name}>"

    def __call__(self, *args, **params):
        for a in args:
            if isinstance(a, Tensor):
                return apply(self, args, params)
        out = self.forward(*args, **params)
        return out[0] if self.residual else out

    def save_plan(self, needs: tuple) -> tuple:
        """For the inputs that need a gradient: (keep ans?, keep input i? for each i)."""
        plan = self._plans.get(needs)
        if plan is None:
            if self._rule_reads is None:
                self._rule_reads = [_reads(rule) if rule else (False, frozenset())
                                    for rule in self.vjps]
            keep_ans, keep = False, set()
            for i, needed in enumerate(needs):
                if needed and self.vjps:
                    reads_ans, reads = self._rule_reads[i]
                    keep_ans |= reads_ans
                    keep |= reads
            kept = tuple(i in keep for i in range(len(needs)))
            plan = (keep_ans, kept if True in kept else None)  # None: the node saves nothing
            self._plans[needs] = plan
        return plan

    def vjp(self, node, grad, inputs, ans):
        """The gradient of each input of ``node`` (None where no gradient is needed)."""
        params = node.params
        if self.vjp_all is not None:
            return self.vjp_all(grad, ans, len(node.parents), **params)
        return tuple(rule(grad, ans, *inputs, **params) if parent is not None and rule else None
                     for rule, parent in zip(self.vjps, node.parents))


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


# ----------------------------------------------------------------------------------------------
# Nodes and recording
# ----------------------------------------------------------------------------------------------
_FREED = object()


class ShapeError(ValueError):
    """Inputs whose shapes an operation cannot take; the message names both."""


class Node:
    """The record of one operation in the graph (a tensor's ``grad_fn``).

    ``parents[i]`` is where the gradient of input ``i`` goes: the input's own node, the input
    itself when it is a leaf that requires grad, or None. ``saved`` holds the inputs the VJP rules
    read (None elsewhere) and ``ans`` the forward result when they read it.
    """

    __slots__ = ("op", "parents", "saved", "versions", "ans", "ans_version", "params", "shapes",
                 "hooks", "trace", "__weakref__")

    def __init__(self, op, parents, saved, versions, ans, ans_version, params, shapes):
        self.op = op
        self.parents = parents
        self.saved = saved
        self.versions = versions
        self.ans = ans
        self.ans_version = ans_version
        self.params = params
        self.shapes = shapes
        self.hooks = None
        self.trace = None

    @property
    def name(self) -> str:
        return self.op.node_name

    @property
    def freed(self) -> bool:
        return self.saved is _FREED

    def saved_arrays(self):
        """The arrays this node keeps for its backward pass (for memory accounting)."""
        if self.saved is _FREED:
            return []
        saved = self.saved or ()  # None: the node saved no input
        out = [s.data for s in saved if isinstance(s, Tensor)]
        out += [s for s in saved if isinstance(s, np.ndarray)]
        if self.ans is not None:
            out.append(self.ans)
        return out

    def __repr__(self):
        return f"<{self.name}>"


def apply(op: Primitive, args: tuple, params: dict):
    """Run ``op`` forward on the arrays inside ``args`` and record a node when a gradient is due."""
    # Unary and binary operations are nearly all of them: spelling them out (no comprehension
    # frames) is what keeps the per-operation overhead below PyTorch's on small tensors.
    if len(args) == 2:
        x, y = args
        tx, ty = isinstance(x, Tensor), isinstance(y, Tensor)
        if tx and ty:
            ax, ay = x.data, y.data
            arrays = (ax, ay)
            # Tensors of one dtype (nearly every call) need no promotion.
            d = ax.dtype
            if (d is not ay.dtype or op.to_float and d.kind in "biu") and (
                    op.promotes is not None):
                x, y = args = _promote(op, args)
                tx, ty = isinstance(x, Tensor), isinstance(y, Tensor)
                arrays = (x.data if tx else x, y.data if ty else y)
        else:
            if op.promotes is not None:
                # A tensor with a Python number of no higher category (x * 2.0 on a float
                # tensor) keeps the tensor's dtype in NumPy as in PyTorch: nothing to cast.
                if not (x.data.dtype.kind in op.numbers_kept.get(type(y), "") if tx else
                        ty and y.data.dtype.kind in op.numbers_kept.get(type(x), "")):
                    x, y = args = _promote(op, args)
                    tx, ty = isinstance(x, Tensor), isinstance(y, Tensor)
            arrays = (x.data if tx else _constant(x), y.data if ty else _constant(y))
        needs = (tx and x._requires_grad, ty and y._requires_grad)
    elif len(args) == 1 and isinstance(args[0], Tensor):
        arrays = (args[0].data,)
        # exp of an integer tensor is float32, as in PyTorch (NumPy would give float64).
        if op.to_float and arrays[0].dtype.kind in "biu":
            arrays = (derived(np.ndarray.astype, arrays[0], DEFAULT_FLOAT),)
        needs = (args[0]._requires_grad,)
    else:
        if op.promotes is not None:
            args = _promote(op, args)
        arrays = [a.data if isinstance(a, Tensor) else _constant(a) for a in args]
        needs = tuple([isinstance(a, Tensor) and a._requires_grad for a in args])
    checking = _threads_with_anomaly and anomaly.enabled
    try:
        if checking and anomaly.errstate is not None:
            with np.errstate(**anomaly.errstate):
                out = op.forward(*arrays, **params)
        else:
            out = op.forward(*arrays, **params)
    except ShapeError as exc:
        raise ShapeError(f"{op.name}: {exc}") from None
    except (ValueError, IndexError, TypeError) as exc:
        raise _op_error(op, arrays, exc) from None
    residual = None
    if op.residual:
        out, residual = out
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    result = Tensor.__new__(Tensor)
    result.data = out
    result.grad = None
    result.grad_fn = None
    result._requires_grad = False
    result._hooks = None
    result.name = None
    # A view shares its input's version counter, so writing through either is seen by both.
    result._version = args[0]._version if op.view and isinstance(args[0], Tensor) else [0]
    if True in needs and (not _threads_without_grad or _mode.enabled) and op.differentiable:
        result.grad_fn = _record(op, args, arrays, params, out, needs, result._version,
                                 residual)
        result._requires_grad = True
    if checking:
        anomaly.on_forward(op, result.grad_fn, out, args)
    if _tracer is not None:
        _tracer.record(op, args, arrays, params, result, residual)
    return result


# ----------------------------------------------------------------------------------------------
# Tracing, for `cr.compile` (chainrule.replay): while a trace runs, every operation reports
# itself here, and so does any computation on arrays outside the operations that a replay must
# repeat (a dtype conversion, a check of the labels) or cannot repeat (a random draw).
# ----------------------------------------------------------------------------------------------
_tracer = None  # the active trace, or None (nearly always): one global read per operation
# Bumped by whatever changes what a traced call computes without the trace seeing it (a module's
# attributes, train/eval): a replay then rechecks what its trace noted, and otherwise does not.
trace_epoch = [0]


def derived(fn, array, *args):
    """``fn(array, *args)``: an array computed from another outside an operation, which a
    replay repeats."""
    out = fn(array, *args)
    if _tracer is not None:
        _tracer.derive(fn, array, args, out)
    return out


def drawn(fn, *args):
    """``fn(*args)``: a random draw (from the library generator) that a replay draws again, with
    fresh numbers in the order the eager calls would take them."""
    out = fn(*args)
    if _tracer is not None:
        _tracer.draw(fn, args, out)
    return out


def checked(check, *args):
    """Run ``check(*args)``, a validation that raises on bad input; a replay runs it again on
    its own inputs, so a bad label fails as loudly in a compiled step as in an eager one."""
    check(*args)
    if _tracer is not None:
        _tracer.check(check, args)


def effect(what: str, fn, *args) -> None:
    """Note that ``fn(*args)`` is about to run: training outside the graph (an optimizer's step,
    clearing the gradients). A compiled training step being traced keeps it, to call it again
    at the same point of every replay; the caller then does the work itself."""
    if _tracer is not None:
        _tracer.effect(what, fn, args)


def untraceable(what: str) -> None:
    """Raise when a trace is running: ``what`` (a random draw, an in-place write, ...) happens
    outside the operations and cannot be replayed."""
    if _tracer is not None:
        _tracer.refuse(what)


# ----------------------------------------------------------------------------------------------
# Type promotion: PyTorch's rules (torch.result_type), on NumPy dtypes
# ----------------------------------------------------------------------------------------------
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}  # bool < integer < floating < complex
DEFAULT_FLOAT = np.dtype(np.float32)
# A Python number (or NumPy scalar) stands for this dtype of its category: bool, int64,
# the default float dtype float32, complex64.
_WRAPPED = (np.dtype(np.bool_), np.dtype(np.int64), DEFAULT_FLOAT, np.dtype(np.complex64))
_PYTHON_CATEGORY = {bool: 0, int: 1, float: 2, complex: 3}


def _promote_types(a, b):
    """PyTorch's ``promote_types``: across categories the higher category's dtype wins (int64
    with float16 is float16); within one category the wider dtype (as NumPy)."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    ca, cb = _CATEGORY[a.kind], _CATEGORY[b.kind]
    if ca != cb and ca + cb != 5:  # float with complex: complex wide enough for both, as NumPy
        return a if ca > cb else b
    return np.promote_types(a, b)


def _combine(higher, lower):
    """The dtype of a higher-priority group of operands given a lower-priority one: the lower
    group counts only where its category is higher (PyTorch's ``combine_categories``)."""
    if higher is None:
        return lower
    if lower is None or _CATEGORY[higher.kind] >= _CATEGORY[lower.kind]:
        return higher
    if lower.kind == "c" and higher.kind == "f":  # float64 tensor with a complex: complex128
        return np.promote_types(higher, np.complex64)
    return lower


def result_type(*operands):
    """The dtype of an operation on ``operands`` by PyTorch's rules (``torch.result_type``).

    Operands are Tensors, NumPy arrays (both "dimensioned" when they have at least one axis,
    otherwise "zero-dimensional"), and Python numbers or NumPy scalars ("wrapped numbers").
    The result is the category (bool < integer < floating < complex) of the highest operand;
    its dtype comes from the dimensioned operands when one of them reaches that category, else
    from the zero-dimensional ones, else from the numbers (int64, float32, complex64). So a
    float32 tensor stays float32 with a float64 0-d tensor, a NumPy float64 scalar, a Python
    float or an int64 tensor, while two dimensioned float tensors promote to the wider one.
    None when an operand is not numeric (NumPy then decides, and usually raises).
    """
    dim = zero = wrapped = None
    for a in operands:
        if isinstance(a, Tensor):
            a = a.data
        if isinstance(a, np.ndarray):
            d = a.dtype
            if d.kind not in _CATEGORY:
                return None
            if a.ndim:
                dim = _promote_types(dim, d)
            else:
                zero = _promote_types(zero, d)
            continue
        category = _PYTHON_CATEGORY.get(type(a))
        if category is None:
            if isinstance(a, np.generic) and a.dtype.kind in _CATEGORY:
                category = _CATEGORY[a.dtype.kind]
            elif isinstance(a, bool | int | float | complex):  # subclasses
                category = 0 if isinstance(a, bool) else 1 if isinstance(a, int) else (
                    2 if isinstance(a, float) else 3)
            elif a is None:
                continue
            else:
                return None
        wrapped = _promote_types(wrapped, _WRAPPED[category])
    return _combine(dim, _combine(zero, wrapped))


# The tensor dtype kinds that a Python number of each type leaves unchanged (for true division,
# an integer tensor always becomes float).
_NUMBERS_KEPT = {float: "fc", int: "fciu", bool: "fciub", complex: "c"}
_NUMBERS_KEPT_TO_FLOAT = {float: "fc", int: "fc", bool: "fc", complex: "c"}


def can_cast(source, target) -> bool:
    """Whether an in-place result of dtype ``source`` may be written into a ``target`` tensor:
    never into a lower category (float into integer, integer into bool), as in PyTorch."""
    return _CATEGORY.get(source.kind, 9) <= _CATEGORY.get(target.kind, -1)


def _promote(op, args):
    """``args`` with the inputs listed in ``op.promotes`` brought to their common dtype.

    A Tensor that must change dtype goes through a recorded ``astype``, so its gradient comes
    back in its own dtype; arrays are cast; NumPy scalars become Python numbers, which NumPy
    then treats as PyTorch treats them (they take the tensor's dtype).
    """
    positions = op.promotes or range(len(args))
    if _one_dtype(op, args, positions):
        return args
    out = list(args)
    for i in positions:
        if i < len(args) and isinstance(args[i], list | tuple):
            out[i] = _constant(args[i])  # a list is an array (float32 for Python floats)
    dtype = result_type(*[out[i] for i in positions if i < len(args)])
    if dtype is None:
        return args
    if op.to_float and dtype.kind in "biu":
        dtype = DEFAULT_FLOAT
    arrays = False
    for i in positions:
        if i >= len(args):
            continue
        a = out[i]
        if isinstance(a, Tensor):
            arrays = True
            if a.data.dtype != dtype:
                out[i] = (apply(_cast, (a,), {"dtype": dtype, "in_dtype": a.data.dtype})
                          if op.differentiable else
                          Tensor._wrap(derived(np.ndarray.astype, a.data, dtype)))
        elif isinstance(a, np.ndarray):
            arrays = True
            if a.dtype != dtype:
                out[i] = derived(np.ndarray.astype, a, dtype)
        elif isinstance(a, np.generic):
            out[i] = a.item()
    if not arrays:  # only numbers take part (cr.where(mask, 1.0, 0.0)): they carry the dtype
        for i in positions:
            if i < len(args) and not isinstance(out[i], Tensor) and out[i] is not None:
                out[i] = np.asarray(out[i], dtype)
    return tuple(out)


def _one_dtype(op, args, positions) -> bool:
    """True when nothing needs casting: the tensors share one dtype and every Python number
    is of no higher category (cr.where(mask, x, 0.0) on a float tensor)."""
    dtype = None
    numbers = []
    for i in positions:
        if i >= len(args):
            continue
        a = args[i]
        if isinstance(a, Tensor):
            d = a.data.dtype
            if dtype is None:
                dtype = d
            elif d is not dtype:
                return False
        elif type(a) in _NUMBERS_KEPT:
            numbers.append(type(a))
        else:
            return False
    if dtype is None or op.to_float and dtype.kind in "biu":
        return False
    kept = op.numbers_kept
    for number_type in numbers:
        if dtype.kind not in kept[number_type]:
            return False
    return True


_cast = Primitive("astype", lambda x, dtype, in_dtype: x.astype(dtype),
                  [lambda g, ans, x, dtype, in_dtype: g.astype(in_dtype)], ["grad (cast back)"])


def _version_of(value):
    return value._version[0] if isinstance(value, Tensor) else 0


def _record(op, args, arrays, params, out, needs, out_version, residual=None):
    keep_ans, keep = op._plans.get(needs) or op.save_plan(needs)
    if len(args) == 2:
        x, y = args
        nx, ny = needs
        parents = ((x.grad_fn or x) if nx else None, (y.grad_fn or y) if ny else None)
        if keep:
            kx, ky = keep
            saved = (x if kx else None, y if ky else None)
            versions = (x._version[0] if kx and isinstance(x, Tensor) else 0,
                        y._version[0] if ky and isinstance(y, Tensor) else 0)
        else:
            saved = versions = None
        shapes = (arrays[0].shape if nx else None, arrays[1].shape if ny else None
                  ) if op.broadcasts else None
    elif len(args) == 1:  # its one input needs a gradient, or there would be no node
        x = args[0]
        parents = (x.grad_fn or x,)
        if keep:
            saved, versions = (x,), (x._version[0] if isinstance(x, Tensor) else 0,)
        else:
            saved = versions = None
        shapes = (arrays[0].shape,) if op.broadcasts else None
    else:
        parents = tuple([(a.grad_fn or a) if n else None for a, n in zip(args, needs)])
        if keep:
            saved = tuple([a if k else None for a, k in zip(args, keep)])
            versions = tuple([_version_of(a) if k else 0 for a, k in zip(args, keep)])
        else:
            saved = versions = None
        shapes = tuple([x.shape if n else None for x, n in zip(arrays, needs)]
                       ) if op.broadcasts else None
    if keep_ans:
        if residual is not None:  # the rules read it instead of the output: nothing else writes it
            return Node(op, parents, saved, versions, residual, ([0], 0), params, shapes)
        return Node(op, parents, saved, versions, out, (out_version, out_version[0]), params,
                    shapes)
    return Node(op, parents, saved, versions, None, None, params, shapes)


def _constant(value):
    if isinstance(value, (np.ndarray, float, int, bool, np.generic)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        from chainrule.tensor import as_array

        return as_array(value)
    return value


def _op_error(op, arrays, exc):
    described = ", ".join(
        f"{np.shape(a)} {getattr(a, 'dtype', type(a).__name__)}" for a in arrays)
    kind = IndexError if isinstance(exc, IndexError) and not isinstance(exc, ValueError) else (
        TypeError if isinstance(exc, TypeError) else ValueError)
    return kind(f"{op.name}: {exc} (inputs: {described})")


# ----------------------------------------------------------------------------------------------
# The reverse walk
# ----------------------------------------------------------------------------------------------
def _topological_counts(roots):
    """How many consumers inside the graph each node has, found with an explicit stack."""
    deps = {}
    stack = [r for r in roots if r is not None]
    for r in stack:
        deps.setdefault(r, 0)
    while stack:
        node = stack.pop()
        for p in node.parents:
            if type(p) is Node:
                if p in deps:
                    deps[p] += 1
                else:
                    deps[p] = 1
                    stack.append(p)
    return deps


def _unpack(node, create_graph):
    """The inputs and answer a node saved, checked for freeing and in-place changes."""
    saved = node.saved
    if saved is _FREED:
        why = getattr(node.op, "freed_message", None)  # a compiled training step says its own
        if why:
            raise RuntimeError(f"{node.name}: {why}")
        raise RuntimeError(
            f"{node.name}: trying to backward through the graph a second time, but the values it "
            f"saved were freed after the first backward(). Pass retain_graph=True to the first "
            f"backward() (or to cr.grad/vjp) if you need to walk the graph again.")
    ans = node.ans
    if ans is not None:
        cell, version = node.ans_version
        if cell[0] != version:
            raise RuntimeError(
                f"{node.name}: its output (shape {ans.shape}) was modified in place after it was "
                f"saved for the backward pass (version {version} -> {cell[0]}); its gradient "
                f"would be wrong. Use an out-of-place operation or clone the output.")
        if create_graph:
            ans = Tensor._from_node(ans, node, cell)
    if saved is None:
        return _NONES[len(node.parents)], ans
    versions = node.versions
    for i, s in enumerate(saved):
        if s is not None and isinstance(s, Tensor) and s._version[0] != versions[i]:
            raise _modified(node, i, s)
    if create_graph:
        return saved, ans
    return tuple([s.data if isinstance(s, Tensor) else s for s in saved]), ans


def _modified(node, i, s):
    return RuntimeError(
        f"{node.name}: input {i} (shape {s.shape}, {s.dtype}) was modified in place after it "
        f"was saved for the backward pass (version {node.versions[i]} -> {s._version[0]}); its "
        f"gradient would be wrong. Use an out-of-place operation (x = x + y instead of x += y) "
        f"or clone the tensor first.")


_NONES = [(None,) * n for n in range(64)]


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, to get back ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _as_tensor_grad(g):
    return g if isinstance(g, Tensor) else Tensor._wrap(g)


def _run_hooks(hooks, g, create_graph, owner):
    for hook in list(hooks.values()):
        result = hook(_as_tensor_grad(g))
        if result is not None:
            shape = np.shape(result.data if isinstance(result, Tensor) else result)
            if shape != g.shape:
                name = getattr(hook, "__qualname__", None) or repr(hook)
                raise RuntimeError(
                    f"hook '{name}' registered on {_describe_owner(owner)} returned a gradient "
                    f"of shape {shape}, but the gradient it was given has shape {g.shape}; a "
                    f"hook must return None or a gradient of the same shape")
            g = result if create_graph else (result.data if isinstance(result, Tensor)
                                             else np.asarray(result))
    return g


def _describe_owner(owner):
    if type(owner) is Node:
        return f"the tensor made by {owner.name}"
    name = f"'{owner.name}' " if getattr(owner, "name", None) else ""
    return f"the leaf tensor {name}(shape {owner.shape}, {owner.dtype})"


def backward(roots, seeds, retain_graph=False, create_graph=False, inputs=None):
    """Propagate ``seeds`` (one gradient per root tensor) back through the graph.

    Without ``inputs``, every leaf that requires grad gets its total added to ``.grad``. With
    ``inputs`` (a list of tensors), nothing is written to ``.grad`` and the gradients with respect
    to those tensors are returned instead (None where an input is not reached).
    """
    create_graph = bool(create_graph)
    tracer = _tracer
    if tracer is not None and not (create_graph and inputs is not None) and (
            tracer.take_backward(roots, seeds, retain_graph, create_graph, inputs)):
        # A compiled training step (cr.compile) noted this backward, to replay it; it runs now
        # as in any eager call, its rules unrecorded. (cr.grad nested in a recording function
        # stays a recorded computation: the branch above is not taken for it.)
        try:
            return backward(roots, seeds, retain_graph, create_graph, inputs)
        finally:
            tracer.resume()
    previous = _mode.enabled  # switched by hand: a set_grad_enabled block costs a few µs more
    if previous is not create_graph:
        _switch_grad_mode(create_graph)
    try:
        checking = _threads_with_anomaly and anomaly.enabled
        if checking and anomaly.errstate is not None:
            with np.errstate(**anomaly.errstate):
                return _walk(roots, seeds, retain_graph, create_graph, inputs, True)
        return _walk(roots, seeds, retain_graph, create_graph, inputs, checking)
    finally:
        if previous is not create_graph:
            _switch_grad_mode(previous)


def _walk(roots, seeds, retain_graph, create_graph, inputs, checking):
    leaf_grads = {}
    pending = {}
    root_nodes = []
    for root, seed in zip(roots, seeds):
        seed = _as_tensor_grad(seed) if create_graph else (
            seed.data if isinstance(seed, Tensor) else seed)
        if root.grad_fn is None:  # a leaf that is its own root
            _accumulate_leaf(leaf_grads, root, seed)
            continue
        node = root.grad_fn
        pending[node] = pending[node] + seed if node in pending else seed
        root_nodes.append(node)

    capture = {}
    if inputs is not None:
        for i, t in enumerate(inputs):
            capture[t.grad_fn if t.grad_fn is not None else t] = i
    captured = [None] * (len(inputs) if inputs is not None else 0)

    if len(root_nodes) == 1 and Node not in map(type, root_nodes[0].parents):
        deps, ready = {}, root_nodes  # one node whose parents are leaves (a compiled call)
    else:
        deps = _topological_counts(dict.fromkeys(root_nodes))
        ready = [n for n in dict.fromkeys(root_nodes) if deps[n] == 0]
    while ready:
        node = ready.pop()
        g = pending.pop(node, None)
        parents = node.parents
        if g is not None:
            if node.hooks:
                g = _run_hooks(node.hooks, g, create_graph, node)
            if capture and node in capture:
                captured[capture[node]] = g
            # What the node saved, checked: nearly every node keeps no input or two, and is
            # unpacked here without a call (a call and its tuple cost more than the rest).
            saved = node.saved
            ans = node.ans
            if create_graph or saved is _FREED or saved is not None and len(saved) != 2:
                inputs_, ans = _unpack(node, create_graph)
            elif ans is not None and node.ans_version[0][0] != node.ans_version[1]:
                _unpack(node, create_graph)  # raises, naming the node and the versions
            elif saved is None:
                inputs_ = _NONES[len(parents)]
            else:
                s0, s1 = saved
                versions = node.versions
                if isinstance(s0, Tensor):
                    if s0._version[0] != versions[0]:
                        raise _modified(node, 0, s0)
                    s0 = s0.data
                if isinstance(s1, Tensor):
                    if s1._version[0] != versions[1]:
                        raise _modified(node, 1, s1)
                    s1 = s1.data
                inputs_ = (s0, s1)
            op = node.op
            try:
                if type(op) is Primitive and op.vjp_all is None:
                    params = node.params
                    vjps = op.vjps
                    # One and two inputs spelled out: a comprehension's frame costs more.
                    if len(parents) == 2 and len(vjps) >= 2:
                        p0, p1 = parents
                        r0, r1 = vjps[0], vjps[1]
                        if params:
                            grads = (r0(g, ans, *inputs_, **params) if p0 is not None and r0
                                     else None,
                                     r1(g, ans, *inputs_, **params) if p1 is not None and r1
                                     else None)
                        else:  # a plain call: no argument tuple or keyword dict to build
                            x0, x1 = inputs_
                            grads = (r0(g, ans, x0, x1) if p0 is not None and r0 else None,
                                     r1(g, ans, x0, x1) if p1 is not None and r1 else None)
                    elif len(parents) == 1 and vjps:
                        r0 = vjps[0]
                        grads = ((r0(g, ans, *inputs_, **params) if params else
                                  r0(g, ans, inputs_[0])) if r0 else None,)
                    else:
                        grads = []
                        for rule, p in zip(vjps, parents):
                            grads.append(rule(g, ans, *inputs_, **params)
                                         if p is not None and rule else None)
                else:
                    grads = op.vjp(node, g, inputs_, ans)
            except Exception as exc:  # name the rule that failed, keep the original cause
                raise type(exc)(f"{node.name}: the backward rule failed: {exc}") from exc
            if checking:
                anomaly.on_backward(node, grads)
            shapes = node.shapes
            for i, p in enumerate(parents):
                if p is None:
                    continue
                gi = grads[i]
                if type(p) is Node:
                    if gi is not None:
                        if shapes is not None and gi.shape != shapes[i]:
                            gi = unbroadcast(gi, shapes[i])
                        pending[p] = pending[p] + gi if p in pending else gi
                    left = deps[p] - 1
                    deps[p] = left
                    if left == 0:
                        ready.append(p)
                elif gi is not None:
                    if shapes is not None and gi.shape != shapes[i]:
                        gi = unbroadcast(gi, shapes[i])
                    leaf_grads[p] = leaf_grads[p] + gi if p in leaf_grads else gi
            if not retain_graph and (node.ans is not None or node.saved is not None):
                # Drop what the node saved (its VJP has run): memory goes back at once, and a
                # second walk through it raises.
                node.saved = _FREED
                node.ans = None
        else:
            for p in parents:
                if type(p) is Node:
                    left = deps[p] - 1
                    deps[p] = left
                    if left == 0:
                        ready.append(p)

    if inputs is not None:
        for leaf, g in leaf_grads.items():
            if leaf in capture:
                if leaf._hooks:
                    g = _run_hooks(leaf._hooks, g, create_graph, leaf)
                captured[capture[leaf]] = _match_dtype(g, leaf)
        return [None if g is None else _as_tensor_grad(g) for g in captured]

    fill_grads(leaf_grads, seeds, create_graph)
    return None


def fill_grads(leaf_grads, seeds, create_graph=False):
    """Add each leaf's gradient (``leaf_grads``: leaf -> array) into its ``.grad``, after its
    hooks, in its dtype; never sharing memory with a seed or another leaf's gradient."""
    fresh = None  # ids of arrays a leaf must not take as its own .grad (made when first needed)
    for leaf, g in leaf_grads.items():
        if leaf._hooks:
            g = _run_hooks(leaf._hooks, g, create_graph, leaf)
        data = leaf.data
        if g.shape != data.shape or g.dtype is not data.dtype and g.dtype != data.dtype or (
                type(g) is not np.ndarray):
            g = _match_dtype(g, leaf)
        old = leaf.grad
        if old is not None and not create_graph and old.grad_fn is None:
            held = old.data
            # In place, as PyTorch's AccumulateGrad does outside create_graph: a gradient kept
            # from an earlier backward (g = w.grad) sees the sum, as it would in PyTorch.
            if held.base is None and held.dtype is g.dtype:
                try:
                    held += g
                except ValueError:  # read-only, or not the leaf's shape: a .grad set by hand
                    leaf.grad = Tensor._wrap(held + g)
                else:
                    old._version[0] += 1
            else:
                leaf.grad = Tensor._wrap(held + g)
            continue
        if not create_graph:
            if fresh is None:
                fresh = {id(s) for s in seeds}
            if g.base is not None or id(g) in fresh or not g.flags.writeable:
                g = g.copy()  # never let two leaves, or a leaf and a caller's array, share memory
            fresh.add(id(g))
        if old is None:
            leaf.grad = _as_tensor_grad(g) if create_graph else Tensor._wrap(g)
        else:
            leaf.grad = old + g


def _accumulate_leaf(leaf_grads, leaf, g):
    leaf_grads[leaf] = leaf_grads[leaf] + g if leaf in leaf_grads else g


def _match_dtype(g, leaf):
    if g.shape != leaf.data.shape:
        g = unbroadcast(g, leaf.data.shape)
    if g.dtype != leaf.data.dtype:
        g = g.astype(leaf.data.dtype)
    if type(g) is not np.ndarray and not isinstance(g, Tensor):
        g = np.asarray(g)
    return g
