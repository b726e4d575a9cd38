"""RMSprop (Hinton's lecture notes), optionally centered and with momentum."""

from __future__ import annotations

import numpy as np

from chainrule.optim.adam import _lerp
from chainrule.optim.optimizer import Optimizer, check_number


class RMSprop(Optimizer):
    """Divide the gradient by the root of a running average of its square (``square_avg``,
    decay ``alpha``). ``centered=True`` subtracts the squared running mean of the gradient
    first (an estimate of its variance); ``momentum`` keeps a buffer of the scaled steps. Same
    update as ``torch.optim.RMSprop``.
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=bool(centered))
        super().__init__(params, defaults)

    def _check_options(self, group):
        for option in ("lr", "eps", "weight_decay", "momentum"):
            check_number("RMSprop", option, group[option])
        check_number("RMSprop", "alpha", group["alpha"], high=1.0)

    def _init_state(self, group, p):
        state = {"step": 0, "square_avg": np.zeros_like(p.data)}
        if group["momentum"] > 0:
            state["momentum_buffer"] = np.zeros_like(p.data)
        if group["centered"]:
            state["grad_avg"] = np.zeros_like(p.data)
        return state

    def _update(self, group, p, grad, state):
        lr, alpha, eps, wd = group["lr"], group["alpha"], group["eps"], group["weight_decay"]
        state["step"] += 1
        work = self._buffer(p, 0)
        if wd != 0:
            np.multiply(p.data, wd, out=work)
            grad = np.add(grad, work, out=self._buffer(p, 1))
        square_avg = state["square_avg"]
        square_avg *= alpha
        np.multiply(grad, 1 - alpha, out=work)
        work *= grad
        square_avg += work

        avg = self._buffer(p, 2)
        if group["centered"]:
            grad_avg = state["grad_avg"]
            _lerp(grad_avg, grad, 1 - alpha, work)
            np.multiply(grad_avg, grad_avg, out=avg)
            np.subtract(square_avg, avg, out=avg)
            np.sqrt(avg, out=avg)
        else:
            np.sqrt(square_avg, out=avg)
        avg += eps

        if group["momentum"] > 0:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            np.divide(grad, avg, out=work)
            buf += work
            np.multiply(buf, -lr, out=work)
        else:
            np.multiply(grad, -lr, out=work)
            work /= avg
        p.data += work
