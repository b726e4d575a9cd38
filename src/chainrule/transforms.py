"""Functional transforms in the style of JAX and HIPS autograd: `grad`, `value_and_grad`, `vjp`,
`jacobian`, `hessian`, and `gradients` (PyTorch's ``torch.autograd.grad``).

They take functions of Tensors, accept Tensors or arrays as arguments, return Tensors, and never
touch any ``.grad``. They nest: ``grad(lambda x: grad(f)(x).sum())`` is a second derivative,
because an inner transform records its own backward pass whenever an outer one is watching.
"""

from __future__ import annotations

import functools

import numpy as np

from chainrule import autograd, ops
from chainrule.tensor import Tensor, _seed_gradient, as_array


def gradients(outputs, inputs, grad_outputs=None, retain_graph=False, create_graph=False):
    """d(outputs)/d(inputs) as a list of Tensors (None for an input the outputs do not reach).

    ``outputs`` and ``inputs`` are Tensors or sequences of them; ``grad_outputs`` are the vectors
    of the vector-Jacobian product (implied ones for one-element outputs).
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None or isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = [grad_outputs] * len(outputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor) or not t.requires_grad:
            raise RuntimeError(f"gradients: input {i} is not a tensor that requires grad")
    roots, seeds = [], []
    for out, g in zip(outputs, grad_outputs):
        if isinstance(out, Tensor) and out.requires_grad:
            roots.append(out)
            seeds.append(_seed_gradient(out, g, "gradients"))
    if not roots:
        return [None] * len(inputs)
    return autograd.backward(roots, seeds, retain_graph=retain_graph or create_graph,
                             create_graph=create_graph, inputs=inputs)


def _argnums(argnums, n_args, where):
    many = isinstance(argnums, (tuple, list))
    nums = tuple(argnums) if many else (argnums,)
    for i in nums:
        if not isinstance(i, int) or not -n_args <= i < n_args:
            raise ValueError(f"{where}: argnums {argnums!r} does not fit a call with {n_args} "
                             f"positional arguments")
    return tuple(i % n_args for i in nums), many


def _watch(args, nums, where):
    """Copies of the arguments at ``nums`` that the graph can differentiate with respect to.

    An argument that already requires grad (an outer transform is watching it) is passed through
    an identity node, so the inner gradient stays connected to the outer graph.
    """
    args = list(args)
    nested = False
    for i in nums:
        a = args[i]
        if isinstance(a, Tensor) and a.requires_grad and autograd.is_grad_enabled():
            args[i] = ops.reshape(a, a.shape)
            nested = True
        else:
            data = as_array(a)
            if data.dtype.kind not in "fc":
                raise TypeError(f"{where}: argument {i} has dtype {data.dtype}; only "
                                f"floating-point arguments can be differentiated")
            args[i] = Tensor(data, requires_grad=True)
    return args, nested


def _depends_on_outer(out, watched) -> bool:
    """True when ``out`` also depends on a tensor that requires grad other than ``watched``.

    ``f`` may close over such a tensor (an outer transform's variable, a model parameter): the
    gradient must then be recorded, or d(grad)/d(that tensor) would silently come out as zero.
    """
    if not autograd.is_grad_enabled() or not isinstance(out, Tensor) or out.grad_fn is None:
        return False
    own = {id(t) for t in watched}
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        for p in node.parents:
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            if isinstance(p, Tensor):
                if id(p) not in own:
                    return True
            else:
                stack.append(p)
    return False


def _zeros_for(t):
    return Tensor._wrap(np.zeros_like(t.data))


def value_and_grad(f, argnums=0):
    """A function returning ``(f(*args), d f / d args[argnums])``; ``f`` must return a scalar."""

    @functools.wraps(f)
    def value_and_grad_f(*args, **kwargs):
        nums, many = _argnums(argnums, len(args), "value_and_grad")
        watched, nested = _watch(args, nums, "grad")
        with autograd.enable_grad():
            out = f(*watched, **kwargs)
        if not isinstance(out, Tensor) or out.size != 1:
            raise TypeError(f"grad: f must return a one-element Tensor, got "
                            f"{type(out).__name__} of shape {np.shape(out)}")
        targets = [watched[i] for i in nums]
        nested = nested or _depends_on_outer(out, targets)
        grads = gradients(out, targets, create_graph=nested) if out.requires_grad else [None] * len(
            targets)
        grads = [_zeros_for(t) if g is None else g for g, t in zip(grads, targets)]
        value = out if nested else out.detach()
        return value, (tuple(grads) if many else grads[0])

    return value_and_grad_f


def grad(f, argnums=0):
    """The gradient of a scalar function: ``grad(f)(x)`` is df/dx, with the shape of x."""

    @functools.wraps(f)
    def grad_f(*args, **kwargs):
        return value_and_grad(f, argnums)(*args, **kwargs)[1]

    return grad_f


def vjp(f, *primals):
    """``(f(*primals), vjp_fn)`` where ``vjp_fn(v)`` returns v^T J for each primal, as a tuple.

    ``vjp_fn`` may be called many times (the graph is kept).
    """
    watched, nested = _watch(primals, range(len(primals)), "vjp")
    with autograd.enable_grad():
        out = f(*watched)
    if not isinstance(out, Tensor):
        raise TypeError(f"vjp: f must return a Tensor, got {type(out).__name__}")
    nested = nested or _depends_on_outer(out, watched)

    def vjp_fn(v):
        if not out.requires_grad:
            return tuple(_zeros_for(t) for t in watched)
        v = v if isinstance(v, Tensor) or v is None else as_array(v, out.dtype)
        grads = gradients(out, watched, grad_outputs=[v], retain_graph=True,
                          create_graph=nested)
        return tuple(_zeros_for(t) if g is None else g for g, t in zip(grads, watched))

    return (out if nested else out.detach()), vjp_fn


def jacobian(f, argnums=0):
    """The Jacobian: ``jacobian(f)(x)`` has shape ``f(x).shape + x.shape``."""

    @functools.wraps(f)
    def jacobian_f(*args):
        nums, many = _argnums(argnums, len(args), "jacobian")
        watched, nested = _watch(args, nums, "jacobian")
        with autograd.enable_grad():
            out = f(*watched)
        if not isinstance(out, Tensor):
            raise TypeError(f"jacobian: f must return a Tensor, got {type(out).__name__}")
        targets = [watched[i] for i in nums]
        nested = nested or _depends_on_outer(out, targets)
        rows = [[] for _ in targets]
        for k in range(out.size):
            onehot = np.zeros(out.size, dtype=out.dtype)
            onehot[k] = 1
            grads = (gradients(out, targets, grad_outputs=onehot.reshape(out.shape),
                               retain_graph=True, create_graph=nested)
                     if out.requires_grad else [None] * len(targets))
            for r, g, t in zip(rows, grads, targets):
                r.append(_zeros_for(t) if g is None else g)
        jacs = []
        for r, t in zip(rows, targets):
            stacked = ops.stack(r) if r else Tensor._wrap(np.zeros((0,) + t.shape, t.dtype))
            jacs.append(ops.reshape(stacked, out.shape + t.shape))
        return tuple(jacs) if many else jacs[0]

    return jacobian_f


def hessian(f, argnums=0):
    """The matrix of second derivatives of a scalar function: ``jacobian(grad(f))``."""
    return jacobian(grad(f, argnums), argnums)
