"""How much memory a graph holds for its backward pass, and how much the backward pass takes.

``print(cr.inspect.memory(loss))`` lists, for every node behind ``loss``, the arrays it keeps for
its VJP (op, shapes, bytes), the total with arrays shared by several nodes counted once, and the
parameters and their gradients separately. ``cr.inspect.memory(loss, backward=True)`` also runs
``loss.backward()`` under `tracemalloc` and reports the peak allocated during it.
"""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass, field

import numpy as np

from chainrule.autograd import Node
from chainrule.tensor import Tensor


@dataclass(frozen=True)
class NodeMemory:
    """One node of the graph: its name, the shapes it saved and the bytes they take.

    ``nbytes`` leaves out arrays that belong to a parameter (a saved weight costs nothing extra);
    ``freed`` is True once a backward pass without ``retain_graph`` has released the values.
    """

    name: str
    shapes: tuple
    nbytes: int
    freed: bool


@dataclass
class MemoryReport:
    """What `memory` found. Byte counts are ints; ``str(report)`` is a readable table."""

    nodes: list = field(default_factory=list)
    saved_bytes: int = 0  # every saved array counted once, shared ones too
    saved_bytes_per_node: int = 0  # the plain sum over nodes (counts shared arrays repeatedly)
    saved_arrays: int = 0
    parameters: int = 0
    parameter_bytes: int = 0
    gradients: int = 0
    gradient_bytes: int = 0
    backward_peak_bytes: int | None = None

    @property
    def freed_nodes(self) -> int:
        return sum(n.freed for n in self.nodes)

    def to_string(self, max_nodes: int | None = 25) -> str:
        """The report as text, listing at most ``max_nodes`` nodes (the largest; None for all)."""
        lines = [f"{len(self.nodes)} nodes, {self.freed_nodes} of them freed by a backward pass"]
        shown = sorted(self.nodes, key=lambda n: -n.nbytes)
        if max_nodes is not None:
            shown = shown[:max_nodes]
        if shown:
            lines.append(f"  {'node':<24} {'saved shapes':<44} {'bytes':>10}")
        for node in shown:
            shapes = ", ".join(str(s) for s in node.shapes) or "-"
            if len(shapes) > 44:
                shapes = shapes[:41] + "..."
            size = "freed" if node.freed else format_bytes(node.nbytes)
            lines.append(f"  {node.name:<24} {shapes:<44} {size:>10}")
        hidden = len(self.nodes) - len(shown)
        if hidden:
            rest = self.saved_bytes_per_node - sum(n.nbytes for n in shown)
            lines.append(f"  ... {hidden} smaller nodes, {format_bytes(rest)}")
        lines.append(f"saved for backward: {format_bytes(self.saved_bytes)} in "
                     f"{self.saved_arrays} arrays (shared arrays counted once; "
                     f"{format_bytes(self.saved_bytes_per_node)} summed per node)")
        lines.append(f"parameters: {self.parameters} tensors, {format_bytes(self.parameter_bytes)}"
                     f"; gradients: {self.gradients} filled, {format_bytes(self.gradient_bytes)}")
        if self.backward_peak_bytes is not None:
            lines.append(f"backward peak: {format_bytes(self.backward_peak_bytes)} allocated "
                         f"above the level before backward (tracemalloc)")
        return "\n".join(lines)

    def __str__(self):
        return self.to_string()


def format_bytes(n: int) -> str:
    """``n`` bytes in B, KiB, MiB or GiB, three significant figures."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    return f"{value:.3g} GiB"


def memory(tensor, backward: bool = False, gradient=None) -> MemoryReport:
    """Account for the memory behind ``tensor``'s graph (see the module docstring).

    With ``backward=True`` the report is taken before the backward pass, which then runs
    (``tensor.backward(gradient)``, freeing the graph) under tracemalloc; ``backward_peak_bytes``
    and the gradient figures describe the state after it.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"memory: expected a Tensor, got {type(tensor).__name__}")
    nodes = _graph_nodes(tensor)
    leaves = _parameters(nodes, tensor)
    report = MemoryReport()
    _account_parameters(report, leaves)
    _account_saved(report, nodes, leaves)
    if backward:
        report.backward_peak_bytes = peak_backward(tensor, gradient)
        _account_parameters(report, leaves)
    return report


def peak_backward(loss, gradient=None, retain_graph: bool = False) -> int:
    """Run ``loss.backward(gradient, retain_graph)`` and return the peak bytes allocated during it.

    The figure is tracemalloc's peak minus the traced total just before backward, so it counts
    the gradients made and any temporaries, not the graph that already existed. If tracemalloc
    is already tracing, its peak is reset (and tracing continues); otherwise it is started and
    stopped here.
    """
    if not isinstance(loss, Tensor):
        raise TypeError(f"peak_backward: expected a Tensor, got {type(loss).__name__}")
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        loss.backward(gradient, retain_graph=retain_graph)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        if started_here:
            tracemalloc.stop()
    return peak - before


def _graph_nodes(tensor) -> list:
    """Every node behind ``tensor``, found with an explicit stack, in the order first reached."""
    root = tensor.grad_fn
    if not isinstance(root, Node):
        return []
    seen = {root: None}
    stack = [root]
    while stack:
        node = stack.pop()
        for parent in node.parents:
            if type(parent) is Node and parent not in seen:
                seen[parent] = None
                stack.append(parent)
    return list(seen)


def _parameters(nodes, tensor) -> list:
    """The leaves that require grad: reached directly, or used inside a checkpointed function."""
    found = {}
    if tensor.grad_fn is None and tensor.requires_grad:
        found[tensor] = None
    for node in nodes:
        for parent in node.parents:
            if isinstance(parent, Tensor):
                found[parent] = None
        fn = node.params["fn"] if node.name == "CheckpointBackward" else None
        parameters = getattr(fn, "parameters", None)
        if callable(parameters):  # a checkpoint: its function's weights are not in the graph
            for p in parameters():
                if isinstance(p, Tensor) and p.requires_grad:
                    found[p] = None
    return list(found)


def _owner(array: np.ndarray) -> np.ndarray:
    """The array that owns ``array``'s memory (a view keeps its whole base alive)."""
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _account_parameters(report, leaves):
    report.parameters = len(leaves)
    report.parameter_bytes = sum(p.data.nbytes for p in leaves)
    grads = [p.grad for p in leaves if p.grad is not None]
    report.gradients = len(grads)
    report.gradient_bytes = sum(g.data.nbytes for g in grads)


def _node_arrays(node) -> list:
    """The arrays a node keeps: its saved values, and a custom Function's saved tensors."""
    arrays = node.saved_arrays()
    ctx = node.params.get("ctx") if isinstance(node.params, dict) else None
    saved = getattr(ctx, "_saved", ())
    arrays += [t.data if isinstance(t, Tensor) else t for t in saved
               if isinstance(t, (Tensor, np.ndarray))]
    return arrays


def _account_saved(report, nodes, leaves):
    parameter_memory = {id(_owner(p.data)) for p in leaves}
    owners = {}
    for node in nodes:
        arrays = _node_arrays(node)
        own = [a for a in arrays if id(_owner(a)) not in parameter_memory]
        for a in own:
            owner = _owner(a)
            owners[id(owner)] = owner.nbytes
        nbytes = sum(a.nbytes for a in own)
        report.nodes.append(NodeMemory(node.name, tuple(a.shape for a in arrays), nbytes,
                                       node.freed))
        report.saved_bytes_per_node += nbytes
    report.saved_bytes = sum(owners.values())
    report.saved_arrays = len(owners)
