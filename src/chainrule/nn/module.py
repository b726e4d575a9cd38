"""`Module` and `Parameter`: the containers that hold a network's weights (PyTorch conventions)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from chainrule.tensor import Tensor, as_array


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
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, tensor) -> None:
        """Register state that is saved in `state_dict` but not trained (e.g. running means)."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(as_array(tensor))
        self.__setattr__(name, tensor)
        self._buffers[name] = tensor

    def register_parameter(self, name: str, param) -> None:
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None, "
                            f"got {type(param).__name__}")
        self.__setattr__(name, param)
        if param is None:
            self._parameters[name] = None

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
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
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
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
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(self, prefix: str = ""):
        for mod_name, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), b

    def buffers(self):
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
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.data.fill(0)

    def requires_grad_(self, requires_grad: bool = True):
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def to(self, dtype):
        """Cast every parameter and floating buffer to ``dtype`` (in place); returns self."""
        dtype = np.dtype(dtype)
        for t in list(self.parameters()) + list(self.buffers()):
            if t.data.dtype.kind == "f":
                t.data = t.data.astype(dtype)
                t.grad = None
                t._version[0] += 1
        return self

    def float(self):
        return self.to(np.float32)

    def double(self):
        return self.to(np.float64)

    # --- state ---------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """Every parameter and buffer by dotted name (the tensors themselves, detached)."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = p.detach()
        for name, b in self.named_buffers():
            state[name] = b.detach()
        return state

    def load_state_dict(self, state_dict, strict: bool = True):
        """Copy values from ``state_dict`` into this module's parameters and buffers.

        With ``strict``, missing or unexpected keys are an error; a shape or dtype mismatch is
        always an error. All problems are reported together.
        """
        own = OrderedDict(list(self.named_parameters()) + list(self.named_buffers()))
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key]
            array = value.data if isinstance(value, Tensor) else np.asarray(value)
            if array.shape != target.shape:
                problems.append(f"{key}: shape {array.shape} in the state dict, "
                                f"{target.shape} in the model")
            elif array.dtype != target.dtype and not np.can_cast(array.dtype, target.dtype,
                                                                 "same_kind"):
                problems.append(f"{key}: dtype {array.dtype} in the state dict, "
                                f"{target.dtype} in the model")
        if strict:
            if missing:
                problems.append("missing keys: " + ", ".join(missing))
            if unexpected:
                problems.append("unexpected keys: " + ", ".join(unexpected))
        if problems:
            raise KeyError(f"load_state_dict into {type(self).__name__}: " + "; ".join(problems))
        for key, target in own.items():
            if key in state_dict:
                value = state_dict[key]
                np.copyto(target.data, value.data if isinstance(value, Tensor) else value,
                          casting="same_kind")
                target._version[0] += 1
        return missing, unexpected

    # --- display -------------------------------------------------------------------------------
    def extra_repr(self) -> str:
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
