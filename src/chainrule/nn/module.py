"""`Module` and `Parameter`: the containers that hold a network's weights (PyTorch conventions)."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from chainrule import autograd
from chainrule.tensor import Tensor, _to_dtype, as_array

_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _array(value) -> np.ndarray:
    return value.data if isinstance(value, Tensor) else np.asarray(value)


def _mismatch(key, value, target):
    """Why ``value`` cannot be loaded into ``target`` (None when it can)."""
    array = _array(value)
    if array.shape != target.shape:
        return f"{key}: shape {array.shape} in the state dict, {target.shape} in the model"
    both_float = array.dtype.kind == "f" and target.dtype.kind == "f"
    if array.dtype != target.dtype and not both_float:
        return f"{key}: dtype {array.dtype} in the state dict, {target.dtype} in the model"
    return None


class Parameter(Tensor):
    """A leaf tensor that a Module registers as one of its weights (requires grad by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else as_array(data),
                         requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class of layers and models.

    Assigning a `Parameter`, a `Module` or (through `register_buffer`) a state tensor to an
    attribute registers it, so `parameters()`, `state_dict()`, `train()`/`eval()` and
    `zero_grad()` see it. Subclasses implement `forward`; calling the module calls `forward`.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before "
                                 f"assigning attributes")
        params, buffers, modules = self._parameters, self._buffers, self._modules
        if isinstance(value, Parameter):
            buffers.pop(name, None)
            modules.pop(name, None)
            params[name] = value
        elif isinstance(value, Module):
            params.pop(name, None)
            buffers.pop(name, None)
            modules[name] = value
        elif name in params:
            # As PyTorch: a registered weight is replaced only by a Parameter (or None), so a
            # stray tensor cannot silently drop out of parameters() and the optimiser.
            if value is not None:
                raise TypeError(f"{type(self).__name__}: cannot assign a "
                                f"{type(value).__name__} to parameter {name!r} (a Parameter or "
                                f"None is expected; wrap it: nn.Parameter(value))")
            params[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}: cannot assign a "
                                f"{type(value).__name__} to buffer {name!r} (a Tensor or None "
                                f"is expected)")
            buffers[name] = value  # stays a buffer, so state_dict() still saves it
        else:
            modules.pop(name, None)
        object.__setattr__(self, name, value)
        self._changed()

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        object.__delattr__(self, name)
        self._changed()

    def _changed(self):
        # cr.compile replays read this module's tensors and Python attributes as they were when
        # traced: any assignment makes the next call trace again (see `_trace_key`).
        self.__dict__["_revision"] = self.__dict__.get("_revision", 0) + 1
        autograd.trace_epoch[0] += 1

    def _trace_key(self):
        """What a `cr.compile` trace through this module depends on besides its tensors' shapes:
        the train/eval mode and every assignment to its attributes since."""
        return self.training, self.__dict__.get("_revision", 0)

    def register_buffer(self, name: str, tensor) -> None:
        """Register state that is saved in `state_dict` but not trained (e.g. running means)."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(as_array(tensor))
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers[name] = tensor
        object.__setattr__(self, name, tensor)
        self._changed()

    def register_parameter(self, name: str, param) -> None:
        """Register ``param`` (a Parameter, or None for an absent optional weight) as ``name``."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, "
                            f"got {type(param).__name__}")
        self._buffers.pop(name, None)
        self._modules.pop(name, None)
        self._parameters[name] = param
        object.__setattr__(self, name, param)
        self._changed()

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        if autograd._tracer is not None:  # cr.compile: a replay must see the same train/eval mode
            autograd._tracer.note_module(self)
        return self.forward(*args, **kwargs)

    # --- traversal -----------------------------------------------------------------------------
    def named_modules(self, prefix: str = ""):
        """(name, module) for this module and every descendant, depth first, each once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{k}" if name else k, m) for k, m in module._modules.items()
                        if m is not None]
            stack.extend(reversed(children))

    def modules(self):
        """This module and every descendant, each once."""
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        """(name, module) for the direct sub-modules."""
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        """The direct sub-modules."""
        for _, m in self.named_children():
            yield m

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        """(dotted name, Parameter) for every parameter, each shared parameter once."""
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_name, module in modules:
            for name, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse: bool = True):
        """Every Parameter (of the sub-modules too unless ``recurse=False``), each once."""
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = ""):
        """(dotted name, Tensor) for every registered buffer."""
        for mod_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self):
        """Every registered buffer (running statistics and other untrained state)."""
        for _, b in self.named_buffers():
            yield b

    def num_parameters(self, trainable_only: bool = False) -> int:
        """How many numbers the parameters hold (seed 002's count of weights and biases)."""
        return int(sum(p.size for p in self.parameters()
                       if p.requires_grad or not trainable_only))

    def apply(self, fn):
        """Call ``fn(module)`` on every submodule and on self (children first); returns self."""
        for m in reversed(list(self.modules())):
            fn(m)
        return self

    # --- modes and gradients --------------------------------------------------------------------
    def train(self, mode: bool = True):
        """Set training mode (``mode=False``: evaluation) here and in every sub-module."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        autograd.trace_epoch[0] += 1
        return self

    def eval(self):
        """Evaluation mode: Dropout passes through, BatchNorm uses its running statistics."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient (to None, or to zeros with ``set_to_none=False``)."""
        if type(self).zero_grad is Module.zero_grad:  # a compiled step calls it again
            autograd.effect("zero_grad", self.zero_grad, set_to_none)
        else:
            autograd.untraceable(f"{type(self).__name__}.zero_grad (overridden: a replay cannot "
                                 f"tell what it does)")
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data.fill(0)

    def requires_grad_(self, requires_grad: bool = True):
        """Turn gradient tracking of every parameter on or off (freezing); returns self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def to(self, *args, dtype=None, device=None):
        """PyTorch's ``Module.to``: ``to(dtype)`` casts every floating parameter and buffer to
        ``dtype`` in place; ``to("cpu")`` / ``to(cr.device("cpu"))`` change nothing (chainrule
        runs on the CPU) and any other device raises; ``to(tensor)`` takes the tensor's dtype,
        and a device and a dtype may come together. Returns self."""
        dtype = _to_dtype(args, dtype, device, f"{type(self).__name__}.to")
        if dtype is None:
            return self
        if dtype.kind not in "fc":
            # As torch: casting the weights to an integer type would silently truncate them.
            raise TypeError(f"{type(self).__name__}.to: only floating-point dtypes are accepted, "
                            f"got {dtype}")
        for t in list(self.parameters()) + list(self.buffers()):
            if t.data.dtype.kind == "f":
                t.data = t.data.astype(dtype)
                t.grad = None
                t._version[0] += 1
        return self

    def float(self):
        """Cast to float32 (see `to`)."""
        return self.to(np.float32)

    def double(self):
        """Cast to float64 (see `to`)."""
        return self.to(np.float64)

    # --- state ---------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Every parameter and buffer by dotted name, module by module as PyTorch orders them.

        The values are detached tensors sharing memory with the module's own (copy them to
        keep a snapshot that later training does not change).
        """
        state = OrderedDict()
        for mod_name, module in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for table in (module._parameters, module._buffers):
                for name, t in table.items():
                    if t is not None and prefix + name not in state:
                        state[prefix + name] = t.detach()
        return state

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values from ``state_dict`` into this module's parameters and buffers, in place.

        With ``strict``, missing or unexpected keys are an error. A shape mismatch is always an
        error, and so is a dtype of another kind (a float value for an integer buffer, or the
        reverse); floating values are cast to the model's precision, as PyTorch does. All problems
        are reported together, before anything is written. Returns ``(missing_keys,
        unexpected_keys)``.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        for key, target in own.items():
            if key in state_dict:
                problem = _mismatch(key, state_dict[key], target)
                if problem:
                    problems.append(problem)
        if strict:
            if missing:
                problems.append("missing keys: " + ", ".join(missing))
            if unexpected:
                problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise RuntimeError(f"load_state_dict into {type(self).__name__}: "
                               + "; ".join(problems))
        autograd.untraceable("load_state_dict (it writes the parameters in place)")
        for key, target in own.items():
            if key in state_dict:
                np.copyto(target.data, _array(state_dict[key]), casting="unsafe")
                target._version[0] += 1  # graphs that saved the old values are now stale
        return _IncompatibleKeys(missing, unexpected)

    # --- display -------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The settings shown inside the parentheses of this module's repr."""
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        children = list(self.named_children())
        if not children:
            return lines[0] + ")"
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"
