"""Stochastic gradient descent with optional momentum, dampening, Nesterov and weight decay."""

from __future__ import annotations

import numpy as np

from chainrule.optim.optimizer import Optimizer, check_number


class SGD(Optimizer):
    """``p -= lr * d`` where ``d`` is the gradient (plus ``weight_decay * p``), or with
    ``momentum`` the running buffer ``b = momentum * b + (1 - dampening) * d`` (Nesterov:
    ``d + momentum * b``). Same update as ``torch.optim.SGD``.
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=bool(nesterov))
        super().__init__(params, defaults)

    def _check_options(self, group):
        for option in ("lr", "momentum", "dampening", "weight_decay"):
            check_number("SGD", option, group[option])
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"SGD: nesterov=True needs momentum > 0 and dampening = 0, got "
                             f"momentum={group['momentum']}, dampening={group['dampening']}")

    def _update(self, group, p, grad, state):
        lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
        d = grad
        if wd != 0:
            d = self._buffer(p, 0)
            np.multiply(p.data, wd, out=d)
            np.add(grad, d, out=d)
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:  # the first step starts the buffer at the gradient itself
                buf = state["momentum_buffer"] = d.copy()
            else:
                buf *= momentum
                scaled = self._buffer(p, 1)
                np.multiply(d, 1 - group["dampening"], out=scaled)
                buf += scaled
            if group["nesterov"]:
                if d is grad:
                    d = self._buffer(p, 0)
                    np.copyto(d, grad)
                scaled = self._buffer(p, 1)
                np.multiply(buf, momentum, out=scaled)
                d += scaled
            else:
                d = buf
        step = self._buffer(p, 1)
        np.multiply(d, -lr, out=step)
        p.data += step
