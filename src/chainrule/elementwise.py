"""chainrule.elementwise: NumPy's remaining elementwise functions, differentiable to any order.

The rows below have the form of THE TABLE in ``ops/``: ``Primitive(name, forward, [rule per
input], [formulas])``, each rule ``rule(grad, ans, *inputs, **params)`` written only with
operators, methods shared by ``ndarray`` and ``Tensor`` and other rows (of this table or of
``ops``), so one rule serves the ordinary backward pass and ``create_graph=True``. Binary rows
broadcast (``broadcasts=True``) and promote their inputs' dtypes by PyTorch's rules; float32 stays
float32. On plain arrays every row is the NumPy function and returns an array.

Conventions where the derivative does not exist, each PyTorch's (and tested against it):

- ``sign``, ``floor``, ``ceil``, ``round``: gradient 0 everywhere (kinks included).
- ``fmax(x, y)``: the gradient goes to ``x`` where ``x >= y`` (ties included) or ``y`` is NaN, to
  ``y`` elsewhere; ``fmin`` likewise with ``x <= y``. (``ops.maximum`` splits ties in half.)
- ``remainder`` (NumPy's ``mod``, Python's ``%``: the sign of the divisor, as ``torch.remainder``):
  gradient 1 for ``x`` and ``-floor(x / y)`` for ``y``; ``fmod`` (the sign of the dividend, as
  ``torch.fmod``): 1 and ``-trunc(x / y)``.
- ``sinc`` at 0: gradient 0 (the limit). ``hypot`` at (0, 0): nan, as PyTorch.
"""

from __future__ import annotations

import math

import numpy as np

from chainrule import ops
from chainrule.autograd import Primitive

P = Primitive

__all__ = ["arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "cbrt",
           "ceil", "cosh", "deg2rad", "exp2", "expm1", "floor", "fmax", "fmin", "fmod", "hypot",
           "log10", "log1p", "log2", "logaddexp", "logaddexp2", "mod", "rad2deg", "reciprocal",
           "remainder", "round", "sign", "sinc", "sinh", "square", "tan"]

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_BOTH = (0, 1)


# ----------------------------------------------------------------------------------------------
# Forward helpers
# ----------------------------------------------------------------------------------------------
def _reciprocal(x):
    return np.true_divide(1, x)  # np.reciprocal of an integer array is integer (1 // x)


def _sinc_grad(g, ans, x):
    # d sinc/dx = (cos(pi x) - sinc(x)) / x, 0 at x = 0 (the limit); the divisor is kept nonzero
    # where the mask discards, so no inf or nan enters the graph.
    zero = x == 0
    return g * ops.where(zero, 0, (ops.cos(x * math.pi) - ans) / ops.where(zero, 1, x))


# ----------------------------------------------------------------------------------------------
# Non-differentiable rows used by the rules (masks, zeros, rounded quotients)
# ----------------------------------------------------------------------------------------------
_zeros_like = P("zeros_like", np.zeros_like, differentiable=False)
# 1 where x takes fmax's gradient: x >= y (x <= y for fmin), or y is NaN
_fmask = P("fmax_mask", lambda x, y, dtype, wins: (wins(x, y) | np.isnan(y)).astype(dtype),
           differentiable=False)
_floor_divide = P("floor_divide", np.floor_divide, differentiable=False, promotes=_BOTH)
_trunc_divide = P("trunc_divide", lambda x, y: np.trunc(np.true_divide(x, y)),
                  differentiable=False, promotes=_BOTH)


def _zero(g, ans, x, **params):
    return _zeros_like(g)


# ----------------------------------------------------------------------------------------------
# THE TABLE (elementwise)
# ----------------------------------------------------------------------------------------------
# --- trigonometric and hyperbolic ----------------------------------------------------------------
tan = P("tan", np.tan, [lambda g, ans, x: g * (1 + ans * ans)], ["grad * (1 + tan(x)^2)"],
        to_float=True)
sinh = P("sinh", np.sinh, [lambda g, ans, x: g * cosh(x)], ["grad * cosh(x)"], to_float=True)
cosh = P("cosh", np.cosh, [lambda g, ans, x: g * sinh(x)], ["grad * sinh(x)"], to_float=True)
arcsin = P("arcsin", np.arcsin, [lambda g, ans, x: g / ops.sqrt(1 - x * x)],
           ["grad / sqrt(1 - x^2)"], to_float=True)
arccos = P("arccos", np.arccos, [lambda g, ans, x: -g / ops.sqrt(1 - x * x)],
           ["-grad / sqrt(1 - x^2)"], to_float=True)
arctan = P("arctan", np.arctan, [lambda g, ans, x: g / (1 + x * x)], ["grad / (1 + x^2)"],
           to_float=True)
arcsinh = P("arcsinh", np.arcsinh, [lambda g, ans, x: g / ops.sqrt(x * x + 1)],
            ["grad / sqrt(x^2 + 1)"], to_float=True)
arccosh = P("arccosh", np.arccosh, [lambda g, ans, x: g / ops.sqrt(x * x - 1)],
            ["grad / sqrt(x^2 - 1)"], to_float=True)
arctanh = P("arctanh", np.arctanh, [lambda g, ans, x: g / (1 - x * x)], ["grad / (1 - x^2)"],
            to_float=True)
arctan2 = P("arctan2", np.arctan2,
            [lambda g, ans, y, x: g * x / (x * x + y * y),         # d atan2(y, x)/dy
             lambda g, ans, y, x: -g * y / (x * x + y * y)],
            ["grad * x / (x^2 + y^2)", "-grad * y / (x^2 + y^2)"], broadcasts=True,
            promotes=_BOTH)
hypot = P("hypot", np.hypot,
          [lambda g, ans, x, y: g * x / ans,
           lambda g, ans, x, y: g * y / ans],
          ["grad * x / hypot(x, y)", "grad * y / hypot(x, y)"], broadcasts=True, promotes=_BOTH)
sinc = P("sinc", np.sinc, [_sinc_grad], ["grad * (cos(pi x) - sinc(x)) / x  (0 at x = 0)"],
         to_float=True)
deg2rad = P("deg2rad", np.deg2rad, [lambda g, ans, x: g * (math.pi / 180)],
            ["grad * pi / 180"], to_float=True)
rad2deg = P("rad2deg", np.rad2deg, [lambda g, ans, x: g * (180 / math.pi)],
            ["grad * 180 / pi"], to_float=True)

# --- exponentials and logarithms -----------------------------------------------------------------
log2 = P("log2", np.log2, [lambda g, ans, x: g / (x * _LN2)], ["grad / (x ln 2)"], to_float=True)
log10 = P("log10", np.log10, [lambda g, ans, x: g / (x * _LN10)], ["grad / (x ln 10)"],
          to_float=True)
log1p = P("log1p", np.log1p, [lambda g, ans, x: g / (1 + x)], ["grad / (1 + x)"], to_float=True)
expm1 = P("expm1", np.expm1, [lambda g, ans, x: g * (ans + 1)], ["grad * exp(x)"], to_float=True)
exp2 = P("exp2", np.exp2, [lambda g, ans, x: g * ans * _LN2], ["grad * 2^x ln 2"], to_float=True)
logaddexp = P("logaddexp", np.logaddexp,
              [lambda g, ans, x, y: g * ops.exp(x - ans),
               lambda g, ans, x, y: g * ops.exp(y - ans)],
              ["grad * exp(x - logaddexp(x, y))", "grad * exp(y - logaddexp(x, y))"],
              broadcasts=True, promotes=_BOTH)
logaddexp2 = P("logaddexp2", np.logaddexp2,
               [lambda g, ans, x, y: g * exp2(x - ans),
                lambda g, ans, x, y: g * exp2(y - ans)],
               ["grad * 2^(x - logaddexp2(x, y))", "grad * 2^(y - logaddexp2(x, y))"],
               broadcasts=True, promotes=_BOTH)

# --- powers ------------------------------------------------------------------------------------
square = P("square", np.square, [lambda g, ans, x: g * 2 * x], ["grad * 2 x"])
reciprocal = P("reciprocal", _reciprocal, [lambda g, ans, x: -g * ans * ans], ["-grad / x^2"])
cbrt = P("cbrt", np.cbrt, [lambda g, ans, x: g / (3 * ans * ans)], ["grad / (3 cbrt(x)^2)"],
         to_float=True)

# --- piecewise: zero gradient, selections, remainders ------------------------------------------
sign = P("sign", np.sign, [_zero], ["0"])
floor = P("floor", np.floor, [_zero], ["0"])
ceil = P("ceil", np.ceil, [_zero], ["0"])
_round = P("round", lambda x, decimals: np.round(x, decimals), [_zero], ["0"])
fmax = P("fmax", np.fmax,
         [lambda g, ans, x, y: g * _fmask(x, y, dtype=g.dtype, wins=np.greater_equal),
          lambda g, ans, x, y: g * (1 - _fmask(x, y, dtype=g.dtype, wins=np.greater_equal))],
         ["grad * [x >= y or y is nan]", "grad * [x < y or (x is nan, y is not)]"],
         broadcasts=True, promotes=_BOTH)
fmin = P("fmin", np.fmin,
         [lambda g, ans, x, y: g * _fmask(x, y, dtype=g.dtype, wins=np.less_equal),
          lambda g, ans, x, y: g * (1 - _fmask(x, y, dtype=g.dtype, wins=np.less_equal))],
         ["grad * [x <= y or y is nan]", "grad * [x > y or (x is nan, y is not)]"],
         broadcasts=True, promotes=_BOTH)
remainder = P("remainder", np.remainder,
              [lambda g, ans, x, y: g,
               lambda g, ans, x, y: -g * _floor_divide(x, y)],
              ["grad", "-grad * floor(x / y)"], broadcasts=True, promotes=_BOTH)
mod = remainder  # NumPy's name (and Python's %)
fmod = P("fmod", np.fmod,
         [lambda g, ans, x, y: g,
          lambda g, ans, x, y: -g * _trunc_divide(x, y)],
         ["grad", "-grad * trunc(x / y)"], broadcasts=True, promotes=_BOTH)


# ----------------------------------------------------------------------------------------------
# Public functions that need more than a row
# ----------------------------------------------------------------------------------------------
def round(x, decimals=0):  # noqa: A001 - NumPy's (and PyTorch's) name
    """``x`` rounded to ``decimals`` places, halves to even (as NumPy and PyTorch); gradient 0."""
    return _round(x, decimals=int(decimals))
