"""Learning-rate schedules: change each parameter group's ``lr`` as training goes on.

Call ``scheduler.step()`` once per epoch, after ``optimizer.step()`` (`ReduceLROnPlateau`:
``scheduler.step(validation_loss)``). The sequences of learning rates are those of
``torch.optim.lr_scheduler`` (same recursive formulas, so the same floating-point values).
"""

from __future__ import annotations

import math

from chainrule import autograd
from chainrule.optim.optimizer import Optimizer, check_number


class LRScheduler:
    """Base class: ``get_lr()`` gives the next lr of every group from the current state."""

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{type(self).__name__}: expected an Optimizer, got "
                            f"{type(optimizer).__name__}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
        self.step()  # epoch 0: as torch, constructing the scheduler applies the first lr

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group after the latest ``step()``."""
        return list(self._last_lr)

    def step(self) -> None:
        """Advance one epoch and set every group's lr."""
        if type(self).step is LRScheduler.step:  # a compiled training step calls it again
            autograd.effect("a learning-rate scheduler step", self.step)
        else:
            autograd.untraceable(f"{type(self).__name__}.step (overridden: a replay cannot tell "
                                 f"what it does)")
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        """Everything but the optimizer, as plain (JSON-able) values."""
        return {k: (list(v) if isinstance(v, (list, tuple)) else v)
                for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state saved by `state_dict`."""
        unknown = set(state_dict) - set(self.__dict__)
        if unknown:
            raise ValueError(f"{type(self).__name__}.load_state_dict: unknown keys "
                             f"{sorted(unknown)}; was it saved by another kind of scheduler?")
        self.__dict__.update({k: v for k, v in state_dict.items() if k != "optimizer"})


class StepLR(LRScheduler):
    """Multiply every group's lr by ``gamma`` every ``step_size`` epochs."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive integer, got {step_size!r}")
        check_number("StepLR", "gamma", gamma)
        self.step_size = step_size
        self.gamma = gamma
        super().__init__(optimizer)

    def get_lr(self):
        groups = self.optimizer.param_groups
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [group["lr"] for group in groups]
        return [group["lr"] * self.gamma for group in groups]


class CosineAnnealingLR(LRScheduler):
    """Follow half a cosine from the initial lr down to ``eta_min`` over ``T_max`` epochs (and
    back up over the next ``T_max``, as torch does when stepped past the end)."""

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0):
        if isinstance(T_max, bool) or not isinstance(T_max, int) or T_max < 1:
            raise ValueError(f"CosineAnnealingLR: T_max must be a positive integer, got "
                             f"{T_max!r}")
        check_number("CosineAnnealingLR", "eta_min", eta_min)
        self.T_max = T_max
        self.eta_min = eta_min
        super().__init__(optimizer)

    def get_lr(self):
        groups = self.optimizer.param_groups
        epoch, t_max, eta_min = self.last_epoch, self.T_max, self.eta_min
        if epoch == 0:
            return [group["lr"] for group in groups]
        if (epoch - 1 - t_max) % (2 * t_max) == 0:  # the bottom of the cosine: turn back up
            return [group["lr"] + (base - eta_min) * (1 - math.cos(math.pi / t_max)) / 2
                    for base, group in zip(self.base_lrs, groups)]
        ratio = (1 + math.cos(math.pi * epoch / t_max)) / (
            1 + math.cos(math.pi * (epoch - 1) / t_max))
        return [ratio * (group["lr"] - eta_min) + eta_min for group in groups]


class ReduceLROnPlateau:
    """Multiply the lr by ``factor`` when a metric has stopped improving for ``patience``
    epochs. ``mode='min'`` watches a loss, ``'max'`` an accuracy; an improvement must beat the
    best value by ``threshold`` (relative, or absolute with ``threshold_mode='abs'``). After a
    reduction, ``cooldown`` epochs pass before counting again; no lr goes below ``min_lr``.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1,
                 patience: int = 10, threshold: float = 1e-4, threshold_mode: str = "rel",
                 cooldown: int = 0, min_lr=0.0, eps: float = 1e-8):
        name = "ReduceLROnPlateau"
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{name}: expected an Optimizer, got {type(optimizer).__name__}")
        if mode not in ("min", "max"):
            raise ValueError(f"{name}: mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{name}: threshold_mode must be 'rel' or 'abs', got "
                             f"{threshold_mode!r}")
        check_number(name, "factor", factor, high=1.0, high_open=True)
        check_number(name, "patience", patience)
        check_number(name, "threshold", threshold)
        check_number(name, "cooldown", cooldown)
        n_groups = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != n_groups:
                raise ValueError(f"{name}: {len(min_lr)} min_lr values for {n_groups} "
                                 f"parameter groups")
            min_lrs = list(min_lr)
        else:
            min_lrs = [min_lr] * n_groups
        for value in min_lrs:
            check_number(name, "min_lr", value)
        self.optimizer = optimizer
        self.mode, self.factor, self.patience = mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.min_lrs, self.eps = cooldown, min_lrs, eps
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rate of each group after the latest ``step()``."""
        return list(self._last_lr)

    def step(self, metrics) -> None:
        """Record this epoch's value of the watched metric, and reduce the lr if it is time."""
        autograd.untraceable("ReduceLROnPlateau.step (it reads the value of a metric)")
        current = float(metrics.item() if hasattr(metrics, "item") else metrics)
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:  # bad epochs right after a reduction do not count
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def _reduce_lr(self):
        for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
            old = group["lr"]
            new = max(old * self.factor, min_lr)
            if old - new > self.eps:  # changes smaller than eps are not worth making
                group["lr"] = new

    def _is_better(self, value: float) -> bool:
        best, threshold = self.best, self.threshold
        if self.mode == "min":
            bar = best * (1 - threshold) if self.threshold_mode == "rel" else best - threshold
            return value < bar
        bar = best * (threshold + 1) if self.threshold_mode == "rel" else best + threshold
        return value > bar

    def state_dict(self) -> dict:
        """Everything but the optimizer, as plain values (``inf`` best is kept as a float)."""
        return {k: (list(v) if isinstance(v, (list, tuple)) else v)
                for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state saved by `state_dict`."""
        unknown = set(state_dict) - set(self.__dict__)
        if unknown:
            raise ValueError(f"ReduceLROnPlateau.load_state_dict: unknown keys {sorted(unknown)}")
        self.__dict__.update(state_dict)
