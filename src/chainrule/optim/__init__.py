"""Optimizers, learning-rate schedules and gradient clipping.

``opt = cr.optim.Adam(model.parameters(), lr=1e-3)``; each iteration: ``opt.zero_grad()``,
``loss.backward()``, ``opt.step()``. Updates run in place on the parameters' arrays and follow
PyTorch's formulas, so trajectories match ``torch.optim`` step for step.
"""

from chainrule.optim import lr_scheduler  # noqa: F401
from chainrule.optim.adam import Adam, AdamW  # noqa: F401
from chainrule.optim.clip import clip_grad_norm_  # noqa: F401
from chainrule.optim.lr_scheduler import (  # noqa: F401
    CosineAnnealingLR,
    LRScheduler,
    ReduceLROnPlateau,
    StepLR,
)
from chainrule.optim.optimizer import Optimizer  # noqa: F401
from chainrule.optim.rmsprop import RMSprop  # noqa: F401
from chainrule.optim.sgd import SGD  # noqa: F401

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "StepLR", "CosineAnnealingLR",
           "ReduceLROnPlateau", "LRScheduler", "clip_grad_norm_", "lr_scheduler"]
