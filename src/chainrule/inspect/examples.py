"""The seeds' worked examples as graphs, for `chainrule graph` / `chainrule explain`.

Each function returns ``(loss, tensors)``: the output to draw or explain and the named tensors
that take part (leaves, inputs, labels and a few intermediates), so drawings and formulas use
the seeds' names. The graphs are built inside `chainrule.inspect.record`, so drawings show every
forward value, input and constant, before and after ``backward()``, as the seeds' write-ups do.
"""

from __future__ import annotations

import numpy as np

import chainrule as cr
from chainrule import ops
from chainrule.inspect.record import record


def seed_003():
    """Seed 003: f = A(w3 A(w1 x1 + w2 x2) + w4), x = (1, 1), label y = 2, squared error."""
    x1, x2, y = cr.tensor(1.0), cr.tensor(1.0), cr.tensor(2.0)
    x1.name, x2.name, y.name = "x1", "x2", "y"
    w1, w2, w3, w4 = (cr.tensor(v, requires_grad=True) for v in (0.5, -0.3, 0.8, 0.1))
    with record():
        z = cr.sigmoid(w1 * x1 + w2 * x2)
        f = cr.sigmoid(w3 * z + w4)
        loss = (f - y) ** 2
    return loss, {"w1": w1, "w2": w2, "w3": w3, "w4": w4, "x1": x1, "x2": x2, "y": y,
                  "z": z, "f": f, "L": loss}


def seed_004():
    """Seed 004: z = w o_prev + b, o = sigmoid(z), C = (o - t)^2 with target t = 0.9."""
    o_prev, t = cr.tensor(0.5), cr.tensor(0.9)
    o_prev.name, t.name = "o_prev", "t"
    w, b = cr.tensor(0.8, requires_grad=True), cr.tensor(-0.2, requires_grad=True)
    with record():
        z = w * o_prev + b
        o = cr.sigmoid(z)
        error = o - t
        C = error ** 2
    return C, {"w": w, "b": b, "o_prev": o_prev, "t": t, "z": z, "o": o, "(o - t)": error,
               "C": C}


def seed_002():
    """Seed 002: logits whose softmax is p = (0.8, 0.1, 0.1), label y = class 0: L = -ln 0.8."""
    z = cr.tensor(np.log(np.array([0.8, 0.1, 0.1])), requires_grad=True)
    with record():  # what cr.nn.functional.cross_entropy(z, 0) runs, from the engine's own ops
        loss = ops.cross_entropy_labels(ops.expand_dims(z, 0), np.array([0]), reduction="mean")
    return loss, {"z": z, "L": loss}


EXAMPLES = {"seed-003": seed_003, "seed-004": seed_004, "seed-002": seed_002}
DEFAULT_WRT = {"seed-003": "w1", "seed-004": "w", "seed-002": "z"}
