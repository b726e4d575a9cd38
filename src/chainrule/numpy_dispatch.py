"""NumPy's own functions on Tensors: ``np.exp(t)``, ``np.sum(t, axis=0)``, ``np.einsum(s, a, b)``.

A Tensor takes part in NumPy's two dispatch protocols (``__array_ufunc__`` for ufuncs such as
``np.exp`` and ``np.add``, ``__array_function__`` for the rest), so a NumPy call with a Tensor among
its arguments runs chainrule's function of the same name: it records, and gradients flow. Existing
NumPy code becomes differentiable by passing Tensors in.

Three outcomes, never a fourth:

- chainrule has the function: it runs, and the result is a Tensor. The call is checked against
  NumPy's own signature first, so an argument chainrule does not support (``out=``, ``dtype=``,
  ``where=``, a positional argument that would land on a different parameter) raises TypeError
  naming it, rather than being dropped or misread.
- the function's result carries no gradient by nature and chainrule has no function of that
  name (shapes, ``np.allclose``, ``np.nonzero``, ``np.count_nonzero``, ...): it runs on the
  values and returns what NumPy returns.
- anything else raises TypeError naming the function. It is never converted silently, which
  would cut the graph and drop the gradient without a word; ``np.f(t.numpy())`` says so in the
  code when that is what is meant.
"""

from __future__ import annotations

import inspect

import numpy as np

# NumPy's names that chainrule spells differently (ufuncs and functions alike).
_RENAMED = {
    "absolute": "abs", "fabs": "abs", "true_divide": "divide", "radians": "deg2rad",
    "degrees": "rad2deg", "amax": "max", "amin": "min", "concat": "concatenate",
    "permute_dims": "transpose", "pow": "power", "acos": "arccos",
    "asin": "arcsin", "atan": "arctan", "atan2": "arctan2", "acosh": "arccosh",
    "asinh": "arcsinh", "atanh": "arctanh",
}
# A reduction or scan of a binary ufunc, as chainrule's function (np.add.reduce is np.sum).
_REDUCE = {"add": "sum", "multiply": "prod", "maximum": "max", "minimum": "min"}
_ACCUMULATE = {"add": "cumsum", "multiply": "cumprod"}
# Functions whose result has no gradient: they run on the values.
_VALUE_ONLY = frozenset({
    "shape", "ndim", "size", "allclose", "isclose", "array_equal", "array_equiv", "nonzero",
    "flatnonzero", "argwhere", "count_nonzero", "argpartition", "searchsorted",
    "iscomplexobj", "isrealobj", "shares_memory", "may_share_memory", "result_type", "can_cast",
    "min_scalar_type", "array_repr", "array_str", "array2string", "unique", "bincount",
    "digitize", "histogram", "histogram_bin_edges", "isin", "in1d", "any", "all", "argmax",
    "argmin", "nanargmax", "nanargmin", "isnan", "isfinite", "isinf", "isneginf", "isposinf",
    "signbit", "iscomplex", "isreal", "save", "savez", "savez_compressed", "savetxt",
    "equal", "not_equal", "less", "less_equal", "greater", "greater_equal", "logical_and",
    "logical_or", "logical_not", "logical_xor", "floor_divide", "bitwise_and", "bitwise_or",
    "bitwise_xor", "invert", "left_shift", "right_shift", "gcd", "lcm",
})
# Of those, the ones that read only shapes and dtypes (which a trace is specialised on).
_SHAPE_ONLY = frozenset({"shape", "ndim", "size", "iscomplexobj", "isrealobj", "result_type",
                         "can_cast", "min_scalar_type", "shares_memory", "may_share_memory"})


def _on_values(name):
    """Called before a function runs on a tensor's values: a cr.compile trace cannot repeat it."""
    if name not in _SHAPE_ONLY:
        from chainrule import autograd

        autograd.untraceable(f"np.{name} on a tensor (it computes on the values, outside the "
                             f"graph)")


# NumPy parameter names that chainrule's functions call otherwise.
_PARAM_ALIASES = {"a": "x", "a_min": "min", "a_max": "max", "arrays": "tensors",
                  "newshape": "shape", "x1": "x", "x2": "y", "m": "x", "ary": "x"}
_ARGUMENT_FREE_DEFAULTS = (None, False, np._NoValue, "K", "same_kind", True)

_SHAPE = np.shape
_found: dict = {}  # NumPy callable -> (chainrule function or None, how to call it)


def _namespace(module_name: str):
    import chainrule

    if module_name == "numpy":
        return chainrule
    if module_name == "ops":  # rows chainrule does not export at the top (logical_and, ...)
        return chainrule.ops
    if module_name == "numpy.linalg":
        return chainrule.linalg
    return None


def _chainrule_function(name: str, module_name: str = "numpy"):
    space = _namespace(module_name)
    name = _RENAMED.get(name, name)
    fn = getattr(space, name, None) if space is not None else None
    if fn is None and module_name == "numpy" and not name.startswith("_"):
        return _chainrule_function(name, "ops")
    if fn is None or isinstance(fn, type) or inspect.ismodule(fn) or not callable(fn):
        return None
    return fn


def _is_bool(x):
    return isinstance(x, (bool, np.bool_)) or getattr(x, "dtype", None) == np.bool_


def _values(obj):
    """``obj`` with every Tensor (also inside lists, tuples and dicts) replaced by its array."""
    from chainrule.tensor import Tensor

    if isinstance(obj, Tensor):
        return obj.data
    if isinstance(obj, (list, tuple)):
        return type(obj)(_values(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _values(v) for k, v in obj.items()}
    return obj


_signatures: dict = {}  # callable -> its parameters (inspect.signature is slow: once each)


def _parameters(fn):
    if fn not in _signatures:
        try:
            _signatures[fn] = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):  # a C function without a signature
            _signatures[fn] = None
    return _signatures[fn]


def _unsupported(where: str, what: str):
    return TypeError(f"{where}: {what} is not supported on chainrule Tensors; call chainrule's "
                     f"function (cr.{where.split('.')[-1].split('(')[0]}) or pass t.numpy() to "
                     f"compute without gradients")


def _translate(where, numpy_fn, ours, args, kwargs):
    """``args, kwargs`` of a NumPy call, renamed for chainrule's ``ours``; TypeError for any
    argument ``ours`` has no place for, so nothing is dropped or lands on another parameter."""
    theirs = _parameters(numpy_fn)
    mine = _parameters(ours)
    if mine is None:
        return args, kwargs
    mine_names = [p.name for p in mine]
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in mine)
    if theirs is not None:
        for i in range(min(len(args), len(theirs))):
            p = theirs[i]
            if p.kind is p.VAR_POSITIONAL:
                break
            q = mine[i] if i < len(mine) else None
            if q is None or (q.kind is not q.VAR_POSITIONAL and i > 0
                             and _PARAM_ALIASES.get(p.name, p.name) != q.name):
                raise _unsupported(where, f"argument {i + 1} ({p.name}={args[i]!r})")
            if q.kind is q.VAR_POSITIONAL:
                break
    out = {}
    for key, value in kwargs.items():
        name = _PARAM_ALIASES.get(key, key)
        if name in mine_names or takes_kwargs:
            out[name if name in mine_names else key] = value
        elif key in mine_names:
            out[key] = value
        elif value is None or value is np._NoValue:
            continue  # NumPy's own default, spelled out
        else:
            raise _unsupported(where, f"{key}={value!r}")
    return args, out


def _resolve(func, name, module_name):
    """(chainrule's function, or None) and whether the call may run on the values instead."""
    key = (name, module_name)
    if key not in _found:
        ours = _chainrule_function(name, module_name)
        _found[key] = (ours, ours is None and module_name == "numpy" and name in _VALUE_ONLY)
    return _found[key]


def _missing(where):
    return TypeError(f"{where} has no differentiable version in chainrule, so it cannot take a "
                     f"Tensor (converting would silently drop the gradient). Call "
                     f"{where}(t.numpy()) to compute without gradients, or write it with "
                     f"chainrule's functions (or cr.Function)")


def array_function(func, types, args, kwargs):
    """``Tensor.__array_function__``: see the module docstring."""
    from chainrule.tensor import Tensor

    if func is _SHAPE and len(args) == 1 and type(args[0]) is Tensor:  # the hot one
        return args[0].data.shape
    if not all(issubclass(t, (Tensor, np.ndarray)) for t in types):
        return NotImplemented
    name, module_name = func.__name__, getattr(func, "__module__", "") or ""
    ours, on_values = _resolve(func, name, module_name)
    if on_values or (name == "where" and len(args) + len(kwargs) == 1):  # np.where(c): nonzero
        _on_values(name)
        return func(*_values(args), **_values(kwargs))
    where = f"{module_name.replace('numpy', 'np')}.{name}"
    if ours is None:
        raise _missing(where)
    args, kwargs = _translate(where, func, ours, args, kwargs)
    return ours(*args, **kwargs)


_LOGICAL = {"bitwise_and": "logical_and", "bitwise_or": "logical_or", "bitwise_xor": "not_equal",
            "invert": "logical_not"}
_plain_calls: dict = {}  # ufunc -> chainrule's function, for calls without keywords
_UFUNC_KWARGS_OK = {"casting": "same_kind", "order": "K", "subok": True}


def array_ufunc(ufunc, method, *inputs, **kwargs):
    """``Tensor.__array_ufunc__``: ``np.exp(t)``, ``np.add(a, t)``, ``np.add.reduce(t)``, ..."""
    if method == "__call__" and not kwargs:
        ours = _plain_calls.get(ufunc)
        if ours is not None:
            return ours(*inputs)
    name = ufunc.__name__
    where = f"np.{name}" if method == "__call__" else f"np.{name}.{method}"
    if kwargs.get("out") is not None:
        raise _unsupported(where, "out= (writing into an array)")
    for key, value in kwargs.items():
        if key != "out" and not (key in _UFUNC_KWARGS_OK and value == _UFUNC_KWARGS_OK[key]):
            if key in ("axis", "keepdims") and method in ("reduce", "accumulate"):
                continue
            raise _unsupported(where, f"{key}={value!r}")
    kwargs.pop("out", None)
    for key in _UFUNC_KWARGS_OK:
        kwargs.pop(key, None)
    if method == "__call__":
        if name in _LOGICAL and all(_is_bool(i) for i in inputs):
            name = _LOGICAL[name]  # ``a | t`` on booleans is logical, and stays a Tensor
        ours, on_values = _resolve(ufunc, name, "numpy")
        if on_values:
            _on_values(name)
            return ufunc(*_values(inputs))
        if name == "positive":
            return inputs[0]
        if ours is None:
            raise _missing(where)
        if name == ufunc.__name__:  # not a boolean-only reading such as ``|`` as logical_or
            _plain_calls[ufunc] = ours
        return ours(*inputs)
    if method in ("reduce", "accumulate"):
        table = _REDUCE if method == "reduce" else _ACCUMULATE
        ours = _chainrule_function(table[name]) if name in table else None
        if ours is None:
            raise _unsupported(where, "this reduction")
        axis = kwargs.pop("axis", 0)  # a ufunc's reduce and accumulate default to axis 0
        return ours(inputs[0], axis=axis, **kwargs)
    if method == "outer" and len(inputs) == 2:
        import chainrule

        ours = _chainrule_function(name)
        if ours is None:
            raise _unsupported(where, "this ufunc")
        a, b = inputs
        return ours(chainrule.reshape(a, np.shape(a) + (1,) * np.ndim(b)), b)
    raise _unsupported(where, f"the ufunc method {method!r}")
