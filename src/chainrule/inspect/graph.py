"""Walking a tensor's graph from its public structure: the shared helper of the inspection tools.

``g = walk(loss)`` collects every node behind ``loss`` with an explicit stack (no recursion, so a
chain of a million nodes is fine) and orders them in reverse topological order: each node comes
before all of the nodes that made its inputs, which is the order the backward pass visits them.

    g.nodes                  Nodes, output first (``g.nodes[0]`` is ``loss.grad_fn``)
    g.leaves                 the leaf Tensors that require grad, in the order they were reached
    g.parents(node)          ``[(input index, parent), ...]``: parent is a Node or a leaf Tensor
    g.consumers(x)           ``[(node, input index), ...]``: where x (Node or leaf) is used
    op_name(node)            "multiply", "tanh", or a Function's class name
    formulas(node)           one local-derivative string per input, as written in the table
    input_names(node)        "x", "y", ... (the VJP rules' own argument names)
    saved_values(node)       ``{"x": array, "out": array}``: what the node keeps for backward

A node is a ``chainrule.autograd.Node``; a leaf is a Tensor with ``grad_fn is None``. Nothing here
changes the graph or runs a backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chainrule.autograd import Node
from chainrule.tensor import Tensor

__all__ = ["Graph", "walk", "op_name", "formulas", "input_names", "saved_values", "describe"]


@dataclass
class Graph:
    """The nodes and leaves behind some root tensors (see the module docstring)."""

    roots: list
    nodes: list = field(default_factory=list)
    leaves: list = field(default_factory=list)
    _consumers: dict = field(default_factory=dict, repr=False)

    def parents(self, node: Node) -> list:
        """``(input index, parent)`` for each input of ``node`` that a gradient flows to."""
        return [(i, p) for i, p in enumerate(node.parents) if p is not None]

    def consumers(self, item) -> list:
        """``(node, input index)`` for each use of ``item`` (a Node or leaf Tensor) in the graph."""
        return list(self._consumers.get(item, ()))

    def __len__(self):
        return len(self.nodes)

    def __contains__(self, item):
        return item in self._consumers or (bool(self.nodes) and item is self.nodes[0])


def _root_nodes(roots):
    out = []
    for r in roots:
        if isinstance(r, Node):
            out.append(r)
        elif isinstance(r, Tensor):
            if r.grad_fn is not None:
                out.append(r.grad_fn)
        else:
            raise TypeError(f"walk: expected Tensors or Nodes, got {type(r).__name__}")
    return list(dict.fromkeys(out))


def walk(*roots) -> Graph:
    """The graph behind ``roots`` (Tensors or Nodes), nodes in reverse topological order.

    Uses Kahn's algorithm on consumer counts, found with an explicit stack, so deep graphs
    never hit Python's recursion limit.
    """
    graph = Graph(roots=list(roots))
    starts = _root_nodes(roots)
    seen_leaves = set()  # ids: Tensor == is elementwise, so never test leaves with `in` a list

    def add_leaf(t):
        if id(t) not in seen_leaves:
            seen_leaves.add(id(t))
            graph.leaves.append(t)
            graph._consumers.setdefault(t, [])

    for r in roots:  # a root that is itself a leaf is one of the leaves
        if isinstance(r, Tensor) and r.grad_fn is None and r.requires_grad:
            add_leaf(r)

    # Pass 1: count, for every node, how many uses it has inside the graph.
    uses = dict.fromkeys(starts, 0)
    stack = list(starts)
    while stack:
        node = stack.pop()
        for i, p in enumerate(node.parents):
            if p is None:
                continue
            if not isinstance(p, Node):
                add_leaf(p)
            graph._consumers.setdefault(p, []).append((node, i))
            if isinstance(p, Node):
                if p in uses:
                    uses[p] += 1
                else:
                    uses[p] = 1
                    stack.append(p)

    # Pass 2: a node is emitted once every consumer has been emitted.
    ready = [n for n in reversed(starts) if uses[n] == 0]
    while ready:
        node = ready.pop()
        graph.nodes.append(node)
        for p in reversed(node.parents):
            if isinstance(p, Node):
                uses[p] -= 1
                if uses[p] == 0:
                    ready.append(p)
    return graph


def op_name(node: Node) -> str:
    """The operation's name: the table row's name ("multiply") or a Function's class name."""
    return node.op.name


def formulas(node: Node) -> tuple:
    """The local-derivative rule of each input as written in the table ("grad * y")."""
    rules = tuple(getattr(node.op, "formulas", ()) or ())
    n = len(node.parents)
    if len(rules) == n:
        return rules
    if len(rules) == 1:  # one formula shared by every input (concatenate, stack, Function)
        return rules * n
    return rules[:n] + ("?",) * (n - len(rules))


def input_names(node: Node) -> tuple:
    """The names the VJP rules give the inputs ("x", "y"; "cond", "x", "y" for where).

    Falls back to ``x0, x1, ...`` for rows with a variable number of inputs and Functions.
    """
    n = len(node.parents)
    for rule in getattr(node.op, "vjps", ()) or ():
        if rule is None:
            continue
        code = rule.__code__
        names = code.co_varnames[2:code.co_argcount]
        if len(names) >= n:
            return tuple(names[:n])
    if n == 1:
        return ("x",)
    return tuple(f"x{i}" for i in range(n))


def saved_values(node: Node) -> dict:
    """What ``node`` keeps for its backward pass, by input name, plus ``"out"`` for the answer.

    Empty once a backward pass without ``retain_graph`` has freed the values.
    """
    out = {}
    if node.freed:
        return out
    names = input_names(node)
    for name, value in zip(names, node.saved or ()):
        if value is not None:
            out[name] = value.data if isinstance(value, Tensor) else np.asarray(value)
    if node.ans is not None and not getattr(node.op, "residual", False):
        out["out"] = node.ans
    return out


def describe(item) -> str:
    """A short label: ``"MultiplyBackward (multiply)"`` for a node, ``"leaf w (3,) float32"``."""
    if isinstance(item, Node):
        return f"{item.name} ({op_name(item)})"
    if isinstance(item, Tensor):
        label = f" {item.name}" if item.name else ""
        return f"leaf{label} {item.shape} {item.dtype}"
    return repr(item)
