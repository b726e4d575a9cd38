"""Adam and AdamW (Kingma & Ba; Loshchilov & Hutter), with the AMSGrad variant."""

from __future__ import annotations

import numpy as np

from chainrule.optim.optimizer import Optimizer, check_number


class Adam(Optimizer):
    """Adam: running averages of the gradient (``exp_avg``) and its square (``exp_avg_sq``),
    bias-corrected, give each weight its own step size. ``weight_decay`` adds
    ``weight_decay * p`` to the gradient (L2); `AdamW` decays the weights directly instead.
    ``amsgrad=True`` divides by the running maximum of ``exp_avg_sq``. Same update as
    ``torch.optim.Adam``.
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                        amsgrad=bool(amsgrad))
        super().__init__(params, defaults)

    def _check_options(self, group):
        name = type(self).__name__
        check_number(name, "lr", group["lr"])
        check_number(name, "eps", group["eps"])
        check_number(name, "weight_decay", group["weight_decay"])
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{name}: invalid betas {betas!r}; expected a pair (beta1, beta2)")
        group["betas"] = tuple(betas)
        for i, beta in enumerate(betas):
            check_number(name, f"beta{i + 1} (betas[{i}])", beta, high=1.0, high_open=True)

    def _init_state(self, group, p):
        state = {"step": 0, "exp_avg": np.zeros_like(p.data), "exp_avg_sq": np.zeros_like(p.data)}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = np.zeros_like(p.data)
        return state

    def _update(self, group, p, grad, state):
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        state["step"] += 1
        step = state["step"]
        work = self._buffer(p, 0)
        if wd != 0:
            if self._decoupled:
                p.data *= 1 - lr * wd
            else:
                np.multiply(p.data, wd, out=work)
                grad = np.add(grad, work, out=self._buffer(p, 1))
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        _lerp(exp_avg, grad, 1 - beta1, work)
        exp_avg_sq *= beta2
        np.multiply(grad, 1 - beta2, out=work)
        work *= grad
        exp_avg_sq += work

        bias_correction1 = 1 - beta1**step
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        second = exp_avg_sq
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            second = state["max_exp_avg_sq"]
        denom = work  # grad is no longer needed, so its scratch space can hold the denominator
        np.sqrt(second, out=denom)
        denom /= bias_correction2_sqrt
        denom += eps
        update = self._buffer(p, 1)
        np.multiply(exp_avg, -lr / bias_correction1, out=update)
        update /= denom
        p.data += update


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam step.
    Same update as ``torch.optim.AdamW``."""

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


def _lerp(start, end, weight, work):
    """``start += weight * (end - start)`` in place, rounded the way torch's ``lerp_`` rounds."""
    np.subtract(end, start, out=work)
    if weight < 0.5:
        work *= weight
        start += work
    else:  # measured from the far end, which is more accurate for large weights
        work *= 1 - weight
        np.subtract(end, work, out=start)
