"""Gradient checkpointing: trade compute for memory by recomputing activations in backward.

``y = cr.checkpoint(fn, x)`` runs ``fn(x)`` without recording its intermediates and records a
single node that keeps only the inputs. When the backward pass reaches that node it re-runs
``fn`` with recording on, on detached copies of the inputs, and back-propagates the incoming
gradient through the recomputed graph. Parameters ``fn`` uses are leaves of that inner graph, so
their ``.grad`` fills during the inner backward; the inputs' gradients go back to the outer walk.

The recomputation draws the same random numbers as the first run (the library generator is
rewound to where it stood before the forward, then put back), and `is_recomputing` tells layers
with side effects, such as batch norm's running statistics, not to apply them a second time.

``cr.nn.checkpoint_sequential(seq, segments, x)`` does this for the layers of a Sequential.

Limitations: ``create_graph=True`` through a checkpoint is refused, and gradients of parameters
used inside ``fn`` always go to their ``.grad`` (``cr.gradients(..., inputs)`` does not see them);
a leaf hook on such a parameter runs once per checkpoint that uses it, with that part of the
gradient.
"""

from __future__ import annotations

from chainrule import autograd
from chainrule.autograd import Node
from chainrule.random import get_rng_state, set_rng_state
from chainrule.tensor import Tensor

_recompute_depth = [0]


def is_recomputing() -> bool:
    """True while a checkpoint re-runs its function during backward.

    Layers whose forward has side effects (batch norm's running statistics) check it so that the
    recomputation does not apply them twice.
    """
    return _recompute_depth[0] > 0


class _CheckpointRow:
    """Lets the reverse walk treat a checkpoint node like a row of the table of primitives."""

    name = "checkpoint"
    node_name = "CheckpointBackward"
    formulas = ("recompute fn, then backward through it",)
    broadcasts = False
    view = False
    differentiable = True

    def vjp(self, node, grad, inputs, ans):
        if autograd.is_grad_enabled():  # the outer walk records only with create_graph=True
            raise RuntimeError(
                "checkpoint: create_graph=True (higher-order gradients) is not supported through "
                "a checkpointed function; call the function without cr.checkpoint instead")
        params = node.params
        copies = _detached_copies(inputs, node.parents, params["tensor_args"])
        out = _recompute(params["fn"], copies, params["kwargs"], params["rng_state"])
        if not isinstance(out, Tensor) or not out.requires_grad:
            return (None,) * len(node.parents)
        # Parameters reached here get their .grad now; the outer walk never sees them (the first
        # run recorded nothing), so nothing is counted twice.
        autograd.backward([out], [grad])
        return tuple(c.grad.data if p is not None and c.grad is not None else None
                     for c, p in zip(copies, node.parents))


_ROW = _CheckpointRow()


def _detached_copies(arrays, parents, tensor_args):
    """Fresh leaves over the saved input arrays: the recomputed graph stops at them."""
    copies = []
    for value, parent, was_tensor in zip(arrays, parents, tensor_args):
        if not was_tensor:
            copies.append(value)
            continue
        copy = Tensor._wrap(value)
        if parent is not None:
            copy._requires_grad = True
        copies.append(copy)
    return copies


def _recompute(fn, args, kwargs, rng_state):
    """Re-run ``fn`` recording, with the random generator rewound to the first run's state."""
    resume_state = get_rng_state() if rng_state is not None else None
    if rng_state is not None:
        set_rng_state(rng_state)
    _recompute_depth[0] += 1
    try:
        with autograd.enable_grad():
            return fn(*args, **kwargs)
    finally:
        _recompute_depth[0] -= 1
        if resume_state is not None:
            set_rng_state(resume_state)  # the rest of training draws as if nothing was re-run


def _has_trainable_parameters(fn) -> bool:
    parameters = getattr(fn, "parameters", None)
    if not callable(parameters):
        return False
    return any(isinstance(p, Tensor) and p.requires_grad for p in parameters())


def checkpoint(fn, *args, preserve_rng_state: bool = True, **kwargs):
    """``fn(*args, **kwargs)``, keeping only ``args`` for backward and recomputing the rest.

    ``fn`` must return a single Tensor. Its gradients (to the tensor arguments and to any
    parameters it uses) equal those of the plain call. With ``preserve_rng_state`` (the default)
    the recomputation sees the same random draws, so dropout masks match.

    When no argument requires grad and ``fn`` has no ``parameters()`` method that shows trainable
    parameters, nothing would tell the graph that ``fn`` depends on parameters it closes over;
    the call then runs plainly (recorded, without saving memory) so gradients stay correct.
    """
    autograd.untraceable("cr.checkpoint (its backward reruns Python code)")
    if not callable(fn):
        raise TypeError(f"checkpoint: fn must be callable, got {type(fn).__name__}")
    needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
    if not autograd.is_grad_enabled():
        return fn(*args, **kwargs)
    if not any(needs) and not _has_trainable_parameters(fn):
        return fn(*args, **kwargs)
    rng_state = get_rng_state() if preserve_rng_state else None
    with autograd.no_grad():
        out = fn(*args, **kwargs)
    if not isinstance(out, Tensor):
        raise TypeError(f"checkpoint: fn must return a single Tensor, got {type(out).__name__}")
    return _record(fn, args, kwargs, needs, rng_state, out)


def _record(fn, args, kwargs, needs, rng_state, out):
    """The output tensor, made by a node that saves the arguments (and nothing else)."""
    parents = tuple((a.grad_fn or a) if n else None for a, n in zip(args, needs))
    # The arguments sit in ``saved`` so the walk checks them for in-place changes and frees
    # them after this node's backward, exactly as it does for any primitive.
    saved = tuple(args)
    versions = tuple(a._version[0] if isinstance(a, Tensor) else 0 for a in args)
    params = {"fn": fn, "kwargs": kwargs, "rng_state": rng_state,
              "tensor_args": tuple(isinstance(a, Tensor) for a in args)}
    result = Tensor._wrap(out.data)
    result.grad_fn = Node(_ROW, parents, saved, versions, None, None, params, None)
    result._requires_grad = True
    return result


def checkpoint_sequential(seq, segments: int, x, preserve_rng_state: bool = True):
    """Run the layers of ``seq`` on ``x`` in ``segments`` checkpointed chunks.

    Only each chunk's input is kept for backward; a chunk's activations are recomputed when the
    backward pass reaches it. The last chunk runs plainly, because backward would recompute it
    straight away. ``seq`` is an ``nn.Sequential`` (or any sequence of callables).
    """
    layers = _layers_of(seq)
    if isinstance(segments, bool) or not isinstance(segments, int) or not (
            1 <= segments <= len(layers)):
        raise ValueError(f"checkpoint_sequential: segments must be an integer from 1 to the "
                         f"number of layers ({len(layers)}), got {segments!r}")
    chunks = _split(layers, segments)
    for chunk in chunks[:-1]:
        x = checkpoint(_Segment(chunk), x, preserve_rng_state=preserve_rng_state)
    return _Segment(chunks[-1])(x)


def _layers_of(seq):
    children = getattr(seq, "children", None)
    try:
        layers = list(children()) if callable(children) else list(seq)
    except TypeError:
        raise TypeError(f"checkpoint_sequential: expected an nn.Sequential or a sequence of "
                        f"layers, got {type(seq).__name__}") from None
    if not layers:
        raise ValueError("checkpoint_sequential: the sequence has no layers")
    for i, layer in enumerate(layers):
        if not callable(layer):
            raise TypeError(f"checkpoint_sequential: layer {i} ({type(layer).__name__}) is not "
                            f"callable")
    return layers


def _split(layers, segments):
    """``segments`` consecutive chunks whose sizes differ by at most one."""
    size, extra = divmod(len(layers), segments)
    chunks, start = [], 0
    for i in range(segments):
        stop = start + size + (1 if i < extra else 0)
        chunks.append(layers[start:stop])
        start = stop
    return chunks


class _Segment:
    """A run of layers called one after another; exposes their parameters to `checkpoint`."""

    def __init__(self, layers):
        self.layers = layers

    def __call__(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self):
        for layer in self.layers:
            parameters = getattr(layer, "parameters", None)
            if callable(parameters):
                yield from parameters()


# ``cr.checkpoint`` is the function, so the flag is reachable from it as well.
checkpoint.is_recomputing = is_recomputing
