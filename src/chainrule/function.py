"""User-defined operations: subclass `Function` with `forward(ctx, ...)` and `backward(ctx, grad)`.

As in PyTorch::

    class Cube(cr.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 3 * x * x

    y = Cube.apply(x)

``forward`` runs without recording; ``backward`` returns one gradient per input of ``forward``
(None for inputs that need none).
"""

from __future__ import annotations

import numpy as np

from chainrule import autograd
from chainrule.autograd import Node
from chainrule.tensor import Tensor


class FunctionCtx:
    """What ``forward`` leaves for ``backward``: saved tensors and any attributes it sets."""

    def __init__(self, needs_input_grad):
        self.needs_input_grad = needs_input_grad
        self._saved = ()
        self._versions = ()

    def save_for_backward(self, *tensors):
        self._saved = tensors
        self._versions = tuple(t._version[0] if isinstance(t, Tensor) else 0 for t in tensors)

    @property
    def saved_tensors(self):
        for i, (t, v) in enumerate(zip(self._saved, self._versions)):
            if isinstance(t, Tensor) and t._version[0] != v:
                raise RuntimeError(f"saved tensor {i} (shape {t.shape}) was modified in place "
                                   f"after save_for_backward (version {v} -> {t._version[0]})")
        return self._saved


class _FunctionRow:
    """Lets the graph machinery call a Function's backward like a row of the table."""

    def __init__(self, cls):
        self.cls = cls
        self.name = cls.__name__
        self.node_name = cls.__name__ + "Backward"
        self.formulas = ("custom backward",)
        self.broadcasts = False
        self.view = False

    def vjp(self, node, grad, inputs, ans):
        ctx = node.params["ctx"]
        raw = not autograd.is_grad_enabled()  # the walk records only under create_graph
        # The node holds what save_for_backward kept, so the walk frees it like any saved value.
        ctx._saved, ctx._versions = node.saved or (), node.versions or ()
        try:
            grad = grad if isinstance(grad, Tensor) else Tensor._wrap(grad)
            result = self.cls.backward(ctx, grad)
        finally:
            ctx._saved = ctx._versions = ()
        if not isinstance(result, tuple):
            result = (result,)
        if len(result) != len(node.parents):
            raise RuntimeError(f"{self.name}.backward returned {len(result)} gradients but "
                               f"forward took {len(node.parents)} inputs")
        out = []
        for i, (g, shape) in enumerate(zip(result, node.params["shapes"])):
            if g is not None and node.parents[i] is not None:
                if np.shape(g) != shape:
                    raise RuntimeError(f"{self.name}.backward returned a gradient of shape "
                                       f"{np.shape(g)} for input {i} of shape {shape}")
                if raw:
                    g = g.data if isinstance(g, Tensor) else np.asarray(g)
                elif not isinstance(g, Tensor):
                    g = Tensor._wrap(np.asarray(g))
            out.append(g)
        return tuple(out)


class Function:
    """Base class of user-defined differentiable operations (see the module docstring)."""

    _row = None

    @staticmethod
    def forward(ctx, *args):
        raise NotImplementedError("Function subclasses implement forward(ctx, *inputs)")

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError("Function subclasses implement backward(ctx, grad)")

    @classmethod
    def apply(cls, *args):
        autograd.untraceable(f"the custom Function {cls.__name__} (its backward is Python code "
                             f"the trace cannot see)")
        if cls.__dict__.get("_row") is None:
            cls._row = _FunctionRow(cls)
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        ctx = FunctionCtx(needs)
        with autograd.no_grad():
            out = cls.forward(ctx, *args)
        data = out.data if isinstance(out, Tensor) else np.asarray(out)
        result = Tensor._wrap(data)
        if autograd.is_grad_enabled() and any(needs):
            parents = tuple((a.grad_fn or a) if n else None for a, n in zip(args, needs))
            params = {"ctx": ctx, "shapes": tuple(np.shape(a) for a in args)}
            node = Node(cls._row, parents, ctx._saved or None, ctx._versions or None, None, None,
                        params, None)
            ctx._saved = ctx._versions = ()
            result.grad_fn = node
            result._requires_grad = True
        if autograd.anomaly.enabled:  # cr.detect_anomaly checks custom operations too
            autograd.anomaly.on_forward(cls._row, result.grad_fn, data, args)
        return result
