"""Products and contractions of THE TABLE (see ``ops``). The decompositions and solvers are
``chainrule.linalg``.
"""

from __future__ import annotations

import numpy as np

from chainrule.autograd import Primitive, ShapeError
from chainrule.ops.elementwise import _BOTH
from chainrule.ops.shape import expand_dims

P = Primitive


def _matmul(x, y):
    if x.ndim == 0 or y.ndim == 0:
        raise ShapeError(f"both operands need at least one dimension, got shapes {x.shape} and "
                         f"{y.shape} (use * to scale)")
    inner_y = y.shape[-2] if y.ndim > 1 else y.shape[0]
    if x.shape[-1] != inner_y:
        raise ShapeError(f"shapes {x.shape} and {y.shape} are not aligned "
                         f"({x.shape[-1]} != {inner_y})")
    return np.matmul(x, y)


def _matmul_grad_x(g, ans, x, y):
    if y.ndim == 1:
        return expand_dims(g, -1) * y
    if x.ndim == 1:
        return (y @ expand_dims(g, -1))[..., 0]
    return g @ y.swapaxes(-1, -2)


def _matmul_grad_y(g, ans, x, y):
    if x.ndim == 1:
        return expand_dims(x, -1) * expand_dims(g, -2) if y.ndim > 1 else g * x
    if y.ndim == 1:
        return (x.swapaxes(-1, -2) @ expand_dims(g, -1))[..., 0]
    return x.swapaxes(-1, -2) @ g
matmul = P("matmul", _matmul, [_matmul_grad_x, _matmul_grad_y],
           ["grad @ y^T", "x^T @ grad"], broadcasts=True, promotes=_BOTH)
