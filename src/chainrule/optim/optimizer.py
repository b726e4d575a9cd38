"""The `Optimizer` base class: parameter groups, per-parameter state, zero_grad, state dicts.

Subclasses implement ``_update(group, p, grad, state)`` for one parameter; the base class walks
the groups, skips parameters without a gradient, creates state lazily (in the parameter's dtype)
and bumps each parameter's version counter after it is written, so a graph recorded before the
step refuses to back-propagate through the stale values.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Iterable

import numpy as np

from chainrule import autograd
from chainrule.tensor import Tensor


class Optimizer:
    """Base class of all optimizers.

    ``params`` is an iterable of leaf tensors, or a list of dicts each holding ``"params"`` and
    any option that overrides ``defaults`` for that group (as in PyTorch). As in PyTorch, a
    frozen parameter (``requires_grad=False``, e.g. after ``model.requires_grad_(False)``) is
    accepted: backward gives it no gradient, so `step` skips it (its state untouched) until it
    is unfrozen and has a gradient again.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[Tensor, dict] = {}
        self._scratch: dict[tuple, np.ndarray] = {}
        self._views: dict[tuple, np.ndarray] = {}  # (parameter, slot) -> its view of _scratch
        groups = _as_list(params, type(self).__name__)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            opts = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {opts}")
        return "\n".join(lines + [")"])

    # --- groups ----------------------------------------------------------------------------------
    def add_param_group(self, group: dict) -> None:
        """Add a group of parameters (a dict with ``"params"`` and optional options)."""
        name = type(self).__name__
        if not isinstance(group, dict):
            raise TypeError(f"{name}.add_param_group: expected a dict with 'params', got "
                            f"{type(group).__name__}")
        if "params" not in group:
            raise ValueError(f"{name}.add_param_group: the group dict has no 'params' key")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else _as_list(params, name)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            _check_param(name, i, p)
            if id(p) in seen:
                raise ValueError(f"{name}: parameter {i} (shape {p.shape}) appears in more than "
                                 f"one parameter group (or twice in one)")
            seen.add(id(p))
        unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
        if unknown:
            raise ValueError(f"{name}.add_param_group: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(self.defaults)}")
        full = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        self._check_options(full)
        full["params"] = params
        self.param_groups.append(full)

    def _check_options(self, group: dict) -> None:
        """Raise ValueError naming the optimizer and option for an invalid hyper-parameter."""

    # --- the step --------------------------------------------------------------------------------
    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient (to None, or to zeros in place)."""
        if type(self).zero_grad is Optimizer.zero_grad:  # a compiled step calls it again
            autograd.effect("zero_grad", self.zero_grad, set_to_none)
        else:
            autograd.untraceable(f"{type(self).__name__}.zero_grad (overridden: a replay cannot "
                                 f"tell what it does)")
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.data.fill(0)
                    p.grad._version[0] += 1

    def step(self, closure=None):
        """Update every parameter that has a gradient; returns ``closure()`` if one is given.

        A parameter without one (frozen, or not reached by backward) is skipped, as in PyTorch:
        it keeps its value and its optimizer state (momentum, step count) does not advance."""
        if closure is not None:
            autograd.untraceable("an optimizer step with a closure (it evaluates the loss again)")
        elif type(self).step is Optimizer.step:  # a compiled step calls it again
            autograd.effect("an optimizer step", self.step)
        else:
            autograd.untraceable(f"{type(self).__name__}.step (overridden: a replay cannot tell "
                                 f"what it does)")
        loss = None
        if closure is not None:
            with autograd.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad, data = p.grad.data, p.data
                if grad.shape != data.shape:
                    raise ValueError(f"{type(self).__name__}.step: a gradient of shape "
                                     f"{grad.shape} for a parameter of shape {data.shape}")
                if grad.dtype != data.dtype:  # never let a gradient upcast the parameter
                    grad = grad.astype(data.dtype)
                state = self.state.get(p)
                if state is None:
                    state = self.state[p] = self._init_state(group, p)
                self._update(group, p, grad, state)
                p._version[0] += 1
        return loss

    def _init_state(self, group: dict, p: Tensor) -> dict:
        return {}

    def _update(self, group: dict, p: Tensor, grad: np.ndarray, state: dict) -> None:
        raise NotImplementedError

    def _buffer(self, p: Tensor, slot: int = 0) -> np.ndarray:
        """A scratch array shaped like ``p``, shared by all parameters of the same dtype.

        Intermediate results go here with ``out=`` so a step allocates nothing per parameter;
        one flat buffer per (dtype, slot) grows to the largest parameter and is reused.
        """
        data = p.data
        view = self._views.get((p, slot))  # the last view made for p, reused while it fits
        if view is not None and view.shape == data.shape and view.dtype == data.dtype:
            return view
        key = (data.dtype, slot)
        flat = self._scratch.get(key)
        if flat is None or flat.size < data.size:
            flat = self._scratch[key] = np.empty(data.size, data.dtype)
            self._views.clear()  # views of the old, smaller buffer must not be used again
        view = self._views[p, slot] = flat[: data.size].reshape(data.shape)
        return view

    # --- saving and restoring --------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {name: array or number}}, "param_groups": [...]}``.

        Parameters are numbered in the order of the groups; each group lists its indices under
        ``"params"``. Arrays are copies, so later steps do not change a saved state dict.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            ids = []
            for p in group["params"]:
                index[id(p)] = len(index)
                ids.append(index[id(p)])
            groups.append({**{k: copy.deepcopy(v) for k, v in group.items() if k != "params"},
                           "params": ids})
        state = {}
        for p, entries in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: v.copy() if isinstance(v, np.ndarray) else v
                                       for k, v in entries.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyper-parameters and per-parameter state saved by `state_dict`.

        The parameters are matched by position, so the optimizer must have been built over
        parameters of the same shapes, in the same order and grouping.
        """
        name = type(self).__name__
        try:
            saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        except (KeyError, TypeError):
            raise ValueError(f"{name}.load_state_dict: expected a dict with 'state' and "
                             f"'param_groups' keys") from None
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state dict has {len(saved_groups)} "
                             f"parameter groups, this optimizer has {len(self.param_groups)}")
        params = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: group {i} holds "
                                 f"{len(saved['params'])} parameters in the state dict but "
                                 f"{len(group['params'])} here")
            params.update(zip(saved["params"], group["params"]))
        new_state = {}
        for key, entries in saved_state.items():
            p = params.get(int(key))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter {key}, which no "
                                 f"group lists")
            new_state[p] = {k: _restore_entry(name, key, k, v, p) for k, v in entries.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    # JSON (a checkpoint's metadata) turns tuples such as betas into lists
                    keep_tuple = isinstance(group.get(k), tuple) and isinstance(v, list)
                    group[k] = tuple(v) if keep_tuple else copy.deepcopy(v)
        self.state = new_state


def _restore_entry(name, index, key, value, p):
    if isinstance(value, Tensor):
        value = value.data
    if isinstance(value, np.ndarray) and value.ndim > 0:
        if value.shape != p.data.shape:
            raise ValueError(f"{name}.load_state_dict: state {key!r} of parameter {index} has "
                             f"shape {value.shape}, but the parameter has shape {p.data.shape}")
        return np.array(value, dtype=p.data.dtype, copy=True)
    if isinstance(value, np.ndarray):  # a 0-d array: a step count saved by another tool
        return value.item()
    return value


def _as_list(params, name) -> list:
    if isinstance(params, Tensor):
        raise TypeError(f"{name}: params should be an iterable of tensors (e.g. "
                        f"model.parameters() or [w, b]), got a single Tensor; wrap it in a list")
    if isinstance(params, dict):
        raise TypeError(f"{name}: params should be an iterable of tensors or a list of dicts, "
                        f"got a dict; pass [group] or list(params.values())")
    if not isinstance(params, Iterable):
        raise TypeError(f"{name}: params should be an iterable of tensors, got "
                        f"{type(params).__name__}")
    return list(params)


def _check_param(name, i, p):
    if not isinstance(p, Tensor):
        raise TypeError(f"{name}: parameter {i} is a {type(p).__name__}, not a Tensor")
    if not p.is_leaf:
        raise ValueError(f"{name}: parameter {i} (shape {p.shape}) is not a leaf tensor (it was "
                         f"made by {p.grad_fn.name}); optimizers can only update leaves")
    if p.data.dtype.kind != "f":
        raise TypeError(f"{name}: parameter {i} has dtype {p.data.dtype}; only floating-point "
                        f"parameters can be optimized")


def check_number(opt: str, option: str, value, *, low=0.0, high=math.inf,
                 high_open=False) -> None:
    """Raise ValueError unless ``low <= value <= high`` (``< high`` with ``high_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ValueError(f"{opt}: invalid {option} {value!r}; expected a real number")
    too_high = value >= high if high_open else value > high
    if value < low or too_high:
        bound = f"< {high}" if high_open else (f"<= {high}" if high != math.inf else "")
        raise ValueError(f"{opt}: invalid {option} {value!r}; it must be >= {low} {bound}".strip())
