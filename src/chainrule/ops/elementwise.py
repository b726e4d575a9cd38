"""Arithmetic, elementwise functions, comparisons and masks: rows of THE TABLE (see ``ops``).

Binary rows broadcast (``broadcasts=True``) and promote their inputs' dtypes by PyTorch's rules
(see ``autograd.result_type``); float32 stays float32.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule.autograd import Primitive, _cast
from chainrule.tensor import Tensor

P = Primitive


def _sigmoid(x):
    e = np.exp(-np.abs(x))  # exp of a non-positive number never overflows
    s = 1 / (1 + e)
    return np.where(x >= 0, s, e * s)


def _erf(x):
    if x.dtype == np.float64 or x.dtype.kind != "f":
        return _erf64(np.asarray(x, np.float64))
    # Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, the resolution of float32 itself.
    a = np.abs(x)
    t = 1 / (1 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027
                                                                          + t * 1.061405429))))
    return np.sign(x) * (1 - poly * np.exp(-a * a))


_erf64 = np.frompyfunc(math.erf, 1, 1)


def _erf_forward(x):
    out = _erf(x)
    return out.astype(x.dtype if x.dtype.kind == "f" else np.float64)


def _power_grad_x(g, ans, x, y):
    # x^0 is constant: its gradient is 0 even at x = 0, where y x^(y-1) would be 0 * inf (nan).
    if isinstance(y, (int, float)):
        return g * 0 if y == 0 else g * y * x ** (y - 1)
    # The exponent is kept finite where y == 0 too, so that the second derivative (through
    # x ** (y - 1)) is 0 there, not nan, as with a Python 0.0 exponent.
    with np.errstate(divide="ignore", invalid="ignore"):  # only where the mask discards
        return where(y == 0, 0, g * y * x ** where(y == 0, 1, y - 1))


def _power_grad_y(g, ans, x, y):
    # At x = 0 with y >= 0, x^y ln(x) tends to 0 (PyTorch's value), not 0 * -inf.
    if isinstance(x, (int, float)):
        if x == 0:
            return g * 0
        return g * ans * (math.log(x) if x > 0 else math.nan)  # a Python float keeps float32
    with np.errstate(divide="ignore", invalid="ignore"):
        return where(logical_and(x == 0, y >= 0), 0, g * ans * log(x))


def _no_grad(name, fn, promotes=None):
    return P(name, fn, differentiable=False, promotes=promotes)


# Comparisons compare in the promoted dtype, as PyTorch does (float32 with a float64 number).
equal = _no_grad("equal", np.equal, (0, 1))
not_equal = _no_grad("not_equal", np.not_equal, (0, 1))
less = _no_grad("less", np.less, (0, 1))
less_equal = _no_grad("less_equal", np.less_equal, (0, 1))
greater = _no_grad("greater", np.greater, (0, 1))
greater_equal = _no_grad("greater_equal", np.greater_equal, (0, 1))
logical_and = _no_grad("logical_and", np.logical_and)
logical_or = _no_grad("logical_or", np.logical_or)
logical_not = _no_grad("logical_not", np.logical_not)
sign = _no_grad("sign", np.sign)
isnan = _no_grad("isnan", np.isnan)
isfinite = _no_grad("isfinite", np.isfinite)
equal_mask = _no_grad("equal_mask", lambda x, y, dtype: (x == y).astype(dtype))
# 1 where x wins, 1/2 at a tie, 0 where it loses (maximum/minimum); where x or y is NaN, the
# NaN result takes the gradient from both inputs (1 each), as in PyTorch.
share_mask = _no_grad(
    "share_mask", lambda x, y, dtype, loses: (1 - loses(x, y) - 0.5 * (x == y)).astype(dtype))
# 1 where lo <= x <= hi: clip passes the gradient at the bounds themselves, as PyTorch does.
inside_mask = _no_grad(
    "inside_mask", lambda x, lo, hi, dtype: (
        (True if lo is None else x >= lo) & (True if hi is None else x <= hi)).astype(dtype))


# --- arithmetic (broadcasting; the inputs' dtypes promote by PyTorch's rules, see result_type) ---
_BOTH = (0, 1)
add = P("add", np.add,
        [lambda g, ans, x, y: g,                                    # d(x + y)/dx = 1
         lambda g, ans, x, y: g],
        ["grad", "grad"], broadcasts=True, promotes=_BOTH)
subtract = P("subtract", np.subtract,
             [lambda g, ans, x, y: g,
              lambda g, ans, x, y: -g],
             ["grad", "-grad"], broadcasts=True, promotes=_BOTH)
multiply = P("multiply", np.multiply,
             [lambda g, ans, x, y: g * y,                           # d(x y)/dx = y
              lambda g, ans, x, y: g * x],
             ["grad * y", "grad * x"], broadcasts=True, promotes=_BOTH)
divide = P("divide", np.true_divide,
           [lambda g, ans, x, y: g / y,
            lambda g, ans, x, y: -g * ans / y],                    # d(x/y)/dy = -x/y^2
           ["grad / y", "-grad * x / y^2"], broadcasts=True, promotes=_BOTH, to_float=True)
power = P("power", np.power, [_power_grad_x, _power_grad_y],
          ["grad * y * x^(y-1)", "grad * x^y * ln(x)"], broadcasts=True, promotes=_BOTH)
negative = P("negative", np.negative, [lambda g, ans, x: -g], ["-grad"])
maximum = P("maximum", np.maximum,
            [lambda g, ans, x, y: g * share_mask(x, y, dtype=g.dtype, loses=np.less),
             lambda g, ans, x, y: g * share_mask(y, x, dtype=g.dtype, loses=np.less)],
            ["grad * [x >= y] (1/2 at ties, 1 at nan)", "grad * [y >= x] (1/2 at ties, 1 at nan)"],
            broadcasts=True, promotes=_BOTH)
minimum = P("minimum", np.minimum,
            [lambda g, ans, x, y: g * share_mask(x, y, dtype=g.dtype, loses=np.greater),
             lambda g, ans, x, y: g * share_mask(y, x, dtype=g.dtype, loses=np.greater)],
            ["grad * [x <= y] (1/2 at ties, 1 at nan)", "grad * [y <= x] (1/2 at ties, 1 at nan)"],
            broadcasts=True, promotes=_BOTH)
where = P("where", np.where,
          [None,
           lambda g, ans, cond, x, y: where(cond, g, 0),
           lambda g, ans, cond, x, y: where(cond, 0, g)],
          ["none", "grad * [cond]", "grad * [not cond]"], broadcasts=True, promotes=(1, 2))

# --- elementwise functions ----------------------------------------------------------------------
exp = P("exp", np.exp, [lambda g, ans, x: g * ans], ["grad * exp(x)"], to_float=True)
log = P("log", np.log, [lambda g, ans, x: g / x], ["grad / x"], to_float=True)
sqrt = P("sqrt", np.sqrt, [lambda g, ans, x: g / (2 * ans)], ["grad / (2 sqrt(x))"], to_float=True)
abs = P("abs", np.abs, [lambda g, ans, x: g * sign(x)], ["grad * sign(x)  (0 at x = 0)"])
sin = P("sin", np.sin, [lambda g, ans, x: g * cos(x)], ["grad * cos(x)"], to_float=True)
cos = P("cos", np.cos, [lambda g, ans, x: -g * sin(x)], ["-grad * sin(x)"], to_float=True)
tanh = P("tanh", np.tanh, [lambda g, ans, x: g * (1 - ans * ans)], ["grad * (1 - tanh(x)^2)"],
         to_float=True)
sigmoid = P("sigmoid", _sigmoid, [lambda g, ans, x: g * ans * (1 - ans)],
            ["grad * s(x) (1 - s(x))"], to_float=True)
# relu passes no gradient at exactly 0 (as PyTorch); a maximum(x, 0) rule would pass half.
relu = P("relu", lambda x: np.maximum(x, 0), [lambda g, ans, x: g * (ans > 0)],
         ["grad * [x > 0]"])
_leaky_relu = P("leaky_relu", lambda x, slope: np.where(x > 0, x, x * slope),
               [lambda g, ans, x, slope: where(x > 0, g, g * slope)],
               ["grad * (1 if x > 0 else slope)"])
erf = P("erf", _erf_forward, [lambda g, ans, x: g * (2 / math.sqrt(math.pi)) * exp(-x * x)],
        ["grad * 2/sqrt(pi) exp(-x^2)"], to_float=True)
gelu = P("gelu", lambda x: 0.5 * x * (1 + _erf_forward(x * (1 / math.sqrt(2)))),
         [lambda g, ans, x: g * (0.5 * (1 + erf(x * (1 / math.sqrt(2))))
                                 + x * exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi)))],
         ["grad * (Phi(x) + x phi(x))"], to_float=True)
softplus = P("softplus", lambda x: np.logaddexp(0, x), [lambda g, ans, x: g * sigmoid(x)],
             ["grad * sigmoid(x)"], to_float=True)
_clip = P("clip", lambda x, lo, hi: np.clip(x, lo, hi),
         [lambda g, ans, x, lo, hi: g * inside_mask(x, lo=lo, hi=hi, dtype=g.dtype)],
         ["grad * [lo <= x <= hi]"])
astype_ = _cast  # the row autograd also uses for the casts of type promotion
copy = P("copy", lambda x: np.array(x, copy=True), [lambda g, ans, x: g], ["grad"])


def astype(x, dtype):
    """``x`` cast to ``dtype`` (the gradient is cast back)."""
    return astype_(x, dtype=np.dtype(dtype), in_dtype=np.dtype(x.dtype))


def leaky_relu(x, negative_slope=0.01):
    """x where x > 0, else negative_slope * x."""
    return _leaky_relu(x, slope=float(negative_slope))


def clip(x, min=None, max=None):
    """Limit values to [min, max]; the gradient passes where min <= x <= max."""
    if min is None and max is None:
        raise ValueError("clip: give at least one of min and max")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        # Tensor bounds are inputs, as torch.clamp's: each takes the gradient where it binds
        # (x keeps it at a tie), and a trace records them instead of baking them in.
        out = x
        if min is not None:
            out = where(less(out, min), min, out)
        if max is not None:
            out = where(greater(out, max), max, out)
        return out
    return _clip(x, lo=min, hi=max)
