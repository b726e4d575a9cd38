"""One record of a forward and backward pass, read by every view (drawing, explanation, page).

``trace(loss)`` turns the graph behind ``loss`` into a `Trace`: plain data with every node's
forward value and gradient, every edge's forward value and the gradient that flowed back along
it, the local derivative of each edge as a formula in the user's names (with its number when it
is a single one), and the order the backward pass visits the nodes. The drawing, `explain` and
the step-through page only read a Trace, so the numbers in every picture agree by construction.

What the engine's graph keeps is not everything: a node holds its forward result only when its
own rule needs it (``tanh`` does, ``add`` does not), inputs that need no gradient only when the
rule reads them, and a plain ``backward()`` frees even that. To see every value, every input and
every constant, whether a view is built before or after ``backward()``, record the forward pass::

    with cr.inspect.record() as rec:
        loss = model(x, y)          # every node keeps a copy of its value and of its inputs
    loss.backward()
    cr.draw(loss)                   # or rec.trace(): the same numbers before or after backward

Recording costs memory only inside the block; ordinary training keeps nothing more.

Gradients in a Trace come from its own reverse pass over the recorded values, with the very
rules of the table the engine runs, in the engine's visiting order: nothing is written to any
``.grad``, no user hook runs, and the result equals what ``backward()`` puts in ``.grad``.

Names: a tensor shows the name given in ``names=``, else the name of a variable that holds it in
the user's code (the frame that opened `record`, or that called the view), else a model's
parameter path (``layers.0.weight``), else ``tensor.name``; unnamed operations are called by
their operation and number (``add #2``). The table's argument names (``x``, ``y``) never appear.
"""

from __future__ import annotations

import itertools
import re
import sys
import weakref
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from chainrule import autograd
from chainrule.autograd import Node, Primitive, unbroadcast
from chainrule.inspect.graph import formulas, input_names, op_name, walk
from chainrule.tensor import Tensor

__all__ = ["record", "trace", "Trace", "TraceNode", "TraceEdge", "caller_names", "summary",
           "local_derivative", "NOT_RECORDED"]

NOT_RECORDED = ("not kept by the graph: build it inside `with cr.inspect.record():` to see "
                "every value")
FREED = ("backward() freed the values this graph saved, so the gradients of intermediate "
         "results are unknown: look before backward(), use backward(retain_graph=True), or build "
         "the graph inside `with cr.inspect.record():`")

_PACKAGE_DIR = __file__.rsplit("/inspect/", 1)[0]


def _freed(node) -> str:
    """Why ``node``'s saved values are gone: a backward pass, or a compiled training step."""
    trace = getattr(node.op, "trace", None)
    if getattr(trace, "stepped", False):
        return (f"{node.op.name} is a whole training step: its backward ran inside the call and "
                f"freed what it saved (the parameters show the gradients it left in .grad); call "
                f"its .fn, the step uncompiled, inside `with cr.inspect.record():` to see every "
                f"value")
    return FREED


# ----------------------------------------------------------------------------------------------
# Recording
# ----------------------------------------------------------------------------------------------
@dataclass
class _Recorded:
    """What `record` keeps for one node: its forward value and every argument's value."""

    value: np.ndarray
    args: list  # per position: (Tensor or None, array or Python value)
    seq: int  # when it was recorded: operations are numbered in the order the user wrote them
    residual: np.ndarray | None = None  # what the rules read instead of the value, if anything


_recorded: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Node -> _Recorded
# Tensors by id, for naming intermediate results from the caller's variables: a variable names
# the node its tensor carries. Weak, so nothing is kept alive.
_live_tensors: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_sequence = itertools.count()
_live_objects: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # leaves and inputs


def _ignore(*args):
    return None


class record:
    """``with cr.inspect.record() as rec:`` every node built inside keeps its values for views.

    Each node made in the block keeps, outside the node (in a table that forgets it with the
    node), a copy of its forward result and of every argument: parameters, inputs, targets,
    labels and Python numbers. On leaving the block the names of the tensors and modules in the
    caller's variables are remembered too. ``rec.trace()`` is the `Trace` of the last operation
    recorded (``rec.trace(loss)`` for another one).
    """

    def __init__(self):
        self.names: dict = {}  # id(Tensor) -> the caller's name for it
        self.modules: list = []
        self.last = None  # the last node recorded

    def __enter__(self):
        mode = autograd.anomaly
        self._previous = (mode.enabled, mode.on_forward, mode.on_backward)
        was_on, forward_before, _ = self._previous

        def remember(op, node, out, args):
            if node is not None:
                residual = node.ans if getattr(op, "residual", False) else None
                _recorded[node] = _Recorded(np.array(out, copy=True), [_arg(a) for a in args],
                                            next(_sequence),
                                            None if residual is None else residual.copy())
                self.last = node
            if was_on:
                forward_before(op, node, out, args)

        mode.on_forward = remember
        if not was_on:
            mode.on_backward = _ignore
        mode.enabled = True
        return self

    def __exit__(self, *exc):
        mode = autograd.anomaly
        mode.enabled, mode.on_forward, mode.on_backward = self._previous
        frame = sys._getframe(1)
        self.names, self.modules = _names_in(frame.f_locals)
        for tensor_id, name in self.names.items():  # views built later, elsewhere, find them
            tensor = _live_tensors.get(tensor_id)
            if tensor is not None:
                _remember_name(tensor, name)
        for held_in, module in self.modules:
            for pid, path in _parameter_paths([module], [held_in]).items():
                p = _live_tensors.get(pid)
                if p is not None:
                    _remember_name(p, path, weak_default=True)
        return False

    def trace(self, output=None, *, names=None, collapse=None) -> Trace:
        """The `Trace` of ``output`` (default: the last operation recorded in the block)."""
        root = output if output is not None else self.last
        if root is None:
            raise ValueError("record.trace: nothing that requires grad was computed inside the "
                             "block")
        return trace(root, names=names, collapse=collapse, _found=(self.names, self.modules))


def _arg(a):
    if isinstance(a, Tensor):
        return (a, np.array(a.data, copy=True))
    if isinstance(a, np.ndarray):
        return (None, np.array(a, copy=True))
    return (None, a)


_remembered: dict = {}  # id(Tensor) -> (weak reference to it, name, only a default?)


def _remember_name(tensor, name, weak_default=False):
    key = id(tensor)
    old = _remembered.get(key)
    if old is not None and old[0]() is tensor and weak_default and not old[2]:
        return  # a variable's name beats a parameter path

    def forget(_, key=key):
        entry = _remembered.get(key)
        if entry is not None and entry[0]() is None:
            del _remembered[key]

    _remembered[key] = (weakref.ref(tensor, forget), name, weak_default)


def remembered_names() -> dict:
    """``{id(tensor): name}`` that `record` blocks saw in their callers' variables."""
    return {k: name for k, (ref, name, _) in list(_remembered.items()) if ref() is not None}


def is_recorded(node) -> bool:
    return node in _recorded


# ----------------------------------------------------------------------------------------------
# Names from the user's code
# ----------------------------------------------------------------------------------------------
def _names_in(variables: dict) -> tuple[dict, list]:
    """``({id(tensor): variable name}, [(variable name, module)])`` for a frame's variables."""
    found, modules = {}, []
    for name, value in variables.items():
        if name.startswith("_"):
            continue
        if isinstance(value, Tensor):
            found.setdefault(id(value), name)
            _live_tensors[id(value)] = value
        elif hasattr(value, "named_parameters") and callable(value.named_parameters):
            modules.append((name, value))
        elif isinstance(value, (list, tuple)) and 0 < len(value) <= 64:
            for k, item in enumerate(value):
                if isinstance(item, Tensor):
                    found.setdefault(id(item), f"{name}[{k}]")
                    _live_tensors[id(item)] = item
        elif isinstance(value, dict) and 0 < len(value) <= 64:
            for key, item in value.items():
                if isinstance(item, Tensor) and isinstance(key, str):
                    found.setdefault(id(item), key)
                    _live_tensors[id(item)] = item
    return found, modules


def caller_names() -> tuple[dict, list]:
    """The tensors and modules held by variables of the first frame outside chainrule."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return {}, []
    return _names_in(frame.f_locals)


def _parameter_paths(modules, variables=None) -> dict:
    """``{id(parameter): readable path}`` ("fc1.weight" for a Sequential's "1.weight"; a lone
    layer held in a variable ``layer`` names its own parameters "layer.weight")."""
    paths = {}
    for k, module in enumerate(modules):
        shown = display_names(module)
        owner = variables[k] if variables is not None else None
        for path, p in module.named_parameters():
            name = shown.get(path, path)
            if owner and "." not in path:
                name = f"{owner}.{name}"
            paths.setdefault(id(p), name)
    return paths


# ----------------------------------------------------------------------------------------------
# The Trace
# ----------------------------------------------------------------------------------------------
@dataclass(eq=False)
class TraceNode:
    """A box of the picture: a parameter, an input, a constant, an operation or the output.

    ``kind`` is "parameter", "input", "constant", "operation", "output" or "module" (a layer
    collapsed into one box). ``value`` is the forward value and ``grad`` dL/d(value) (None when
    unknown: ``missing`` says why). ``order`` is the step of the backward pass that visits an
    operation (0 for the output), None for leaves.
    """

    id: str
    kind: str
    name: str
    op: str | None = None
    value: np.ndarray | None = None
    grad: np.ndarray | None = None
    shape: tuple = ()
    dtype: str = ""
    named: bool = False  # named by the user (not an automatic "add #2")
    order: int | None = None
    missing: str | None = None
    members: list = field(default_factory=list)  # a module's parameters: [(name, value, grad)]
    tensor: object = field(default=None, repr=False)  # the leaf Tensor, for parameters


@dataclass(eq=False)
class TraceEdge:
    """An input of an operation: ``source`` flows into ``target`` as its input ``index``.

    ``value`` is what flowed forward (the source's value), ``grad`` what flowed back along this
    edge (None for constants and inputs, which take no gradient). ``formula`` is the local
    derivative d target / d source in the user's names ("x1", "σ(z)·(1 − σ(z))") when the
    table's rule is a product with the upstream gradient, and ``vjp`` is the rule as the
    gradient that flows ("∂L/∂h @ W") otherwise. ``local`` is the local derivative's number
    when source and target are single numbers.
    """

    source: str
    target: str
    index: int
    value: np.ndarray | None = None
    grad: np.ndarray | None = None
    formula: str | None = None
    vjp: str = ""
    local: float | None = None
    differentiable: bool = True


@dataclass
class Trace:
    """Nodes (output first, then in the order the backward pass visits them, then the leaves),
    edges, and what could not be shown (``message``). See the module docstring."""

    nodes: list
    edges: list
    output: str
    message: str | None = None

    def __post_init__(self):
        self._by_id = {n.id: n for n in self.nodes}
        self._index = {}  # id(Node or leaf Tensor) -> (weak reference, TraceNode id)

    def node_of(self, tensor) -> TraceNode:
        """The node that shows ``tensor``: the operation that made it, or the leaf itself."""
        key = tensor.grad_fn if isinstance(tensor, Tensor) and tensor.grad_fn is not None \
            else tensor
        entry = self._index.get(id(key))
        if entry is None or entry[0]() is not key:
            raise KeyError(f"trace: this tensor (shape {getattr(tensor, 'shape', '?')}) is not "
                           f"part of the traced graph")
        return self._by_id[entry[1]]

    def __getitem__(self, key) -> TraceNode:
        """A node by id or by name."""
        if key in self._by_id:
            return self._by_id[key]
        for n in self.nodes:
            if n.name == key:
                return n
        raise KeyError(f"trace: no node named {key!r} (names: "
                       f"{', '.join(n.name for n in self.nodes)})")

    @property
    def loss(self) -> TraceNode:
        return self._by_id[self.output]

    def _edge_index(self):
        if getattr(self, "_into", None) is None or self._indexed != len(self.edges):
            self._into, self._out_of = {}, {}
            for e in self.edges:
                self._into.setdefault(e.target, []).append(e)
                self._out_of.setdefault(e.source, []).append(e)
            for found in self._into.values():
                found.sort(key=lambda e: e.index)
            self._indexed = len(self.edges)
        return self._into, self._out_of

    def inputs_of(self, node_id) -> list:
        """Edges into an operation, by input position."""
        return list(self._edge_index()[0].get(node_id, ()))

    def uses_of(self, node_id) -> list:
        """Edges out of a node: the operations that read it (more than one: a fan-out)."""
        return list(self._edge_index()[1].get(node_id, ()))

    @property
    def steps(self) -> list:
        """The operations in the order the backward pass visits them (the output first)."""
        ops = [n for n in self.nodes if n.order is not None]
        return sorted(ops, key=lambda n: n.order)

    @property
    def parameters(self) -> list:
        return [n for n in self.nodes if n.kind == "parameter"]

    def paths(self, node_id, limit=20) -> list:
        """Up to ``limit`` paths from ``node_id`` to the output, each a list of edges."""
        out, stack = [], [(node_id, [])]
        while stack and len(out) < limit:
            at, path = stack.pop()
            if at == self.output:
                out.append(path)
                continue
            for e in reversed(self.uses_of(at)):
                if e.differentiable:
                    stack.append((e.target, path + [e]))
        return out

    def updates(self, lr: float) -> list:
        """``(parameter, value, grad, value - lr * grad)`` for each parameter with a gradient."""
        return [(p, p.value, p.grad, p.value - lr * p.grad) for p in self.parameters
                if p.value is not None and p.grad is not None]

    def to_dict(self, full_size: int = 64) -> dict:
        """The Trace as JSON-ready data; arrays of up to ``full_size`` numbers in full."""
        def arr(a):
            if a is None:
                return None
            a = np.asarray(a)
            d = {"shape": list(a.shape), "summary": summary(a)}
            if a.size <= full_size and a.dtype.kind in "biuf":
                d["values"] = np.asarray(a, np.float64).ravel().tolist()
            return d

        return {
            "output": self.output, "message": self.message,
            "nodes": [{"id": n.id, "kind": n.kind, "name": n.name, "op": n.op,
                       "shape": list(n.shape), "dtype": n.dtype, "order": n.order,
                       "missing": n.missing, "value": arr(n.value), "grad": arr(n.grad),
                       "members": [{"name": m, "value": arr(v), "grad": arr(g)}
                                   for m, v, g in n.members]}
                      for n in self.nodes],
            "edges": [{"source": e.source, "target": e.target, "index": e.index,
                       "value": arr(e.value), "grad": arr(e.grad), "formula": e.formula,
                       "vjp": e.vjp, "local": e.local, "differentiable": e.differentiable}
                      for e in self.edges],
        }


# ----------------------------------------------------------------------------------------------
# Building it
# ----------------------------------------------------------------------------------------------
def as_trace(view: str, x, names=None, collapse=None) -> Trace:
    """``x`` itself when it is a Trace, else ``trace(x, ...)`` with the names of the caller of
    the view (``view`` names it in errors)."""
    if isinstance(x, Trace):
        if names is not None or collapse is not None:
            raise TypeError(f"{view}: names= and collapse= apply when tracing a tensor; pass "
                             f"them to trace(loss, names=..., collapse=...) instead")
        return x
    if isinstance(x, Tensor):
        return trace(x, names=names, collapse=collapse, _found=caller_names())
    raise TypeError(f"{view}: expected a Tensor or a Trace, got {type(x).__name__}")


def trace(output, *, names=None, collapse=None, _found=None) -> Trace:
    """The `Trace` of ``output`` (a Tensor that came out of recorded operations).

    ``names``: ``{name: Tensor}`` (or a list of named tensors) overriding the automatic names.
    ``collapse``: an ``nn.Module`` (or a list) whose layers become one box each.
    """
    if isinstance(output, Node):  # rec.trace() of the last node: its tensor is gone
        output = Tensor._from_node(_recorded[output].value, output, [0])
    if isinstance(output, Tensor):
        root = output.grad_fn
    else:
        raise TypeError(f"trace: expected a Tensor, got {type(output).__name__}")
    if _found is None:
        _found = caller_names()
    frame_names, modules = _found
    labels = _labels(names, frame_names, modules, collapse)
    if root is None:  # a leaf or a constant: one box, no graph
        kind = "parameter" if output.requires_grad else "input"
        node = TraceNode("leaf0", kind, labels.get(id(output)) or output.name or "tensor",
                         value=output.data, shape=output.shape, dtype=str(output.dtype),
                         grad=None if output.grad is None else output.grad.data,
                         tensor=output)
        return Trace([node], [], "leaf0", "no operation made this tensor: nothing to trace")
    built = _Builder(labels).build(root, output)
    if collapse is not None:
        built = _collapse(built, collapse, labels)
    return built


def _labels(names, frame_names, modules, collapse) -> dict:
    labels = remembered_names()
    labels.update(frame_names)
    collapse_list = [] if collapse is None else (
        list(collapse) if isinstance(collapse, (list, tuple)) else [collapse])
    for k, v in _parameter_paths([m for _, m in modules] + collapse_list,
                                 [n for n, _ in modules] + [None] * len(collapse_list)).items():
        labels.setdefault(k, v)
    if names is not None:
        items = names.items() if isinstance(names, dict) else ((t.name, t) for t in names)
        for name, t in items:
            if not isinstance(t, Tensor):
                raise TypeError(f"trace: names must map names to Tensors, got "
                                f"{type(t).__name__} for {name!r}")
            labels[id(t)] = name
            _live_tensors[id(t)] = t  # an intermediate result names the node it carries
    return labels


class _Builder:
    def __init__(self, labels):
        self.labels = labels
        self.nodes, self.edges = [], []
        self.ids = {}  # Node, or id(Tensor) -> TraceNode

    def build(self, root, output) -> Trace:
        graph = walk(root)
        graph.nodes = _engine_order(root)
        named_ops = {root: self.labels[id(output)]} if id(output) in self.labels else {}
        self._named_tensors_by_node(named_ops)
        records = {node: _recorded.get(node) for node in graph.nodes}
        number = _forward_numbers(graph.nodes, records)
        for i, node in enumerate(graph.nodes):
            rec = records[node]
            value = rec.value if rec is not None else (
                None if getattr(node.op, "residual", False) else node.ans)
            name = named_ops.get(node)
            tn = TraceNode(f"op{i}", "output" if i == 0 else "operation",
                           name or f"{op_name(node)} #{number[node]}", op=op_name(node),
                           value=value, named=name is not None, order=i)
            if value is not None:
                tn.shape, tn.dtype = tuple(np.shape(value)), str(np.asarray(value).dtype)
            else:
                tn.missing = NOT_RECORDED
            self.ids[node] = tn
            self.nodes.append(tn)
        for i, leaf in enumerate(graph.leaves):
            self._leaf(leaf, f"leaf{i}")
        for node in graph.nodes:
            self._edges(node, records[node])
        message = self._backward(graph, records, output)
        index = {}
        for key, tn in self.ids.items():
            obj = key if isinstance(key, Node) else _live_objects.get(key)
            if obj is not None:
                index[id(obj)] = (weakref.ref(obj), tn.id)
        for tn in self.nodes:  # shapes of operations whose value is unknown, from their grad
            if tn.value is None and tn.grad is not None:
                tn.shape, tn.dtype = tuple(np.shape(tn.grad)), str(np.asarray(tn.grad).dtype)
        built = Trace(self.nodes, self.edges, "op0", message)
        built._index = index
        return built

    def _named_tensors_by_node(self, named_ops):
        # the caller's variables name intermediate results through the node they carry
        for tensor_id, name in list(self.labels.items()):
            t = _live_tensors.get(tensor_id)
            if t is not None and t.grad_fn is not None:
                named_ops.setdefault(t.grad_fn, name)

    def _leaf(self, leaf, dot_id):
        name = self.labels.get(id(leaf)) or leaf.name
        tn = TraceNode(dot_id, "parameter", name or dot_id.replace("leaf", "parameter "),
                       value=leaf.data, shape=leaf.shape, dtype=str(leaf.dtype),
                       named=name is not None, tensor=leaf)
        self.ids[id(leaf)] = tn
        _live_objects[id(leaf)] = leaf
        self.nodes.append(tn)

    def _constant(self, tensor, value):
        """A box for an argument that takes no gradient: an input tensor or a constant."""
        key = id(tensor) if tensor is not None else None
        if key is not None and key in self.ids:
            return self.ids[key]
        k = len(self.nodes)
        if tensor is not None:
            name = self.labels.get(key) or tensor.name
            tn = TraceNode(f"input{k}", "input", name or "input", named=name is not None)
        else:
            tn = TraceNode(f"const{k}", "constant", _constant_name(value))
        array = np.asarray(value)
        tn.value, tn.shape, tn.dtype = array, array.shape, str(array.dtype)
        if key is not None:
            self.ids[key] = tn
            _live_objects[key] = tensor
        self.nodes.append(tn)
        return tn

    def _edges(self, node, rec):
        target = self.ids[node]
        for i, parent in enumerate(node.parents):
            if parent is not None:
                source = self.ids[parent] if isinstance(parent, Node) else self.ids[id(parent)]
                value = rec.args[i][1] if rec is not None else source.value
                self.edges.append(TraceEdge(source.id, target.id, i, value=value))
                continue
            known = _argument(node, rec, i)
            if known is None:
                continue
            tensor, value = known
            if value is None:
                continue
            source = self._constant(tensor, value)
            self.edges.append(TraceEdge(source.id, target.id, i, value=source.value,
                                        differentiable=False))

    def _backward(self, graph, records, output) -> str | None:
        """dL/d(every node) by the table's rules on the recorded (or saved) values."""
        root = graph.nodes[0]
        if self.ids[root].value is None:  # the output's own value is always known
            tn = self.ids[root]
            tn.value, tn.missing = output.data, None
            tn.shape, tn.dtype = output.shape, str(output.dtype)
        grads = {root: np.ones_like(output.data)}
        message = None
        self.by_id = {tn.id: tn for tn in self.nodes}
        edges_by_target = {}
        for e in self.edges:
            edges_by_target.setdefault(e.target, {})[e.index] = e
        for node in graph.nodes:
            g = grads.get(node)
            tn = self.ids[node]
            if g is None:
                continue
            tn.grad = g
            values = self._values(node, records[node])
            if values is None:
                message = _freed(node)
                continue
            inputs, ans = values
            try:
                contributions = _vjps(node, g, inputs, ans)
            except Exception as exc:  # a Function whose backward needs state already freed
                message = f"{tn.name}: its backward rule could not be replayed ({exc})"
                continue
            mine = edges_by_target.get(tn.id, {})
            for i, parent in enumerate(node.parents):
                gi = contributions[i]
                if parent is None or gi is None:
                    continue
                gi = np.asarray(gi.data if isinstance(gi, Tensor) else gi)
                shape = (parent.data.shape if not isinstance(parent, Node)
                         else node.shapes[i] if node.shapes is not None else gi.shape)
                if gi.shape != shape:
                    gi = unbroadcast(gi, shape)
                if not isinstance(parent, Node) and gi.dtype != parent.data.dtype:
                    gi = gi.astype(parent.data.dtype)
                edge = mine.get(i)
                if edge is not None:
                    edge.grad = gi
                    edge.formula, edge.vjp = _formula_texts(node, i,
                                                            self._input_label(node, mine), tn.name,
                                                            self.ids[root].name)
                    edge.local = local_derivative(node, i, g, gi, inputs, ans)
                if isinstance(parent, Node):
                    grads[parent] = grads[parent] + gi if parent in grads else gi
                else:
                    leaf = self.ids[id(parent)]
                    leaf.grad = leaf.grad + gi if leaf.grad is not None else gi
        if message is not None:  # fall back on what backward() wrote, for the leaves
            for tn in self.nodes:
                if tn.kind == "parameter" and tn.grad is None and tn.tensor.grad is not None:
                    tn.grad = tn.tensor.grad.data
        for tn in self.nodes:
            if tn.grad is None and tn.kind in ("operation", "output", "parameter"):
                tn.missing = tn.missing or (message or "no gradient reaches it")
        return message

    def _values(self, node, rec):
        """(inputs, ans) as the rules read them, or None when they are gone."""
        if rec is not None:
            return tuple(v for _, v in rec.args), (
                rec.value if rec.residual is None else rec.residual)
        if node.freed:
            return None
        try:
            return autograd._unpack(node, False)
        except RuntimeError:
            return None

    def _input_label(self, node, mine):
        """The user's names of the inputs of ``node``, by position (None where unknown)."""
        labels = [None] * len(node.parents)
        by_id = self.by_id
        for i, e in mine.items():
            if i < len(labels):
                labels[i] = by_id[e.source].name
        return labels


def _engine_order(root) -> list:
    """The nodes in the order `autograd.backward` visits them: the same counts of consumers,
    the same stack of ready nodes, the same order of pushing the inputs."""
    deps = autograd._topological_counts([root])
    order, ready = [], [root]
    while ready:
        node = ready.pop()
        order.append(node)
        for p in node.parents:
            if type(p) is Node:
                deps[p] -= 1
                if deps[p] == 0:
                    ready.append(p)
    return order


def _forward_numbers(nodes, records) -> dict:
    """1, 2, ... in the order the operations ran (recorded), else in reverse visiting order."""
    if all(records[n] is not None for n in nodes):
        ranked = sorted(nodes, key=lambda n: records[n].seq)
    else:
        ranked = list(reversed(nodes))
    return {n: k + 1 for k, n in enumerate(ranked)}


def _argument(node, rec, i):
    """``(tensor or None, value)`` for input ``i`` of ``node`` that takes no gradient."""
    if rec is not None:
        return rec.args[i] if i < len(rec.args) else None
    saved = node.saved
    if saved is None or node.freed or i >= len(saved) or saved[i] is None:
        return None
    s = saved[i]
    return (s, s.data) if isinstance(s, Tensor) else (None, s)


def _vjps(node, g, inputs, ans):
    op = node.op
    if type(op) is Primitive and op.vjp_all is None:
        return [rule(g, ans, *inputs, **node.params) if p is not None and rule else None
                for rule, p in zip(op.vjps, node.parents)]
    return op.vjp(node, g, inputs, ans)


def _constant_name(value) -> str:
    """A constant is named by its value: "2", "[0, 1]"; a large one by its shape."""
    a = np.asarray(value)
    if a.dtype.kind in "biuf" and a.size <= 6:
        return summary(a)
    return f"constant {a.shape}"


# ----------------------------------------------------------------------------------------------
# Formulas in the user's names, and numbers
# ----------------------------------------------------------------------------------------------
def _number(v: float) -> str:
    return f"{v:.4g}"


def summary(a) -> str:
    """Up to 6 numbers in full; more as shape and mean/min/max."""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        return f"{a.size} values"
    if a.size == 1:
        return _number(float(a.reshape(())))
    if a.size <= 6:
        return "[" + ", ".join(_number(float(v)) for v in a.ravel()) + "]"
    return f"{a.shape} mean {a.mean():.3g} min {a.min():.3g} max {a.max():.3g}"


def local_derivative(node, i, g, gi, inputs, ans) -> float | None:
    """d out / d input ``i`` as a number, when output and input are single numbers."""
    if np.size(g) != 1 or np.size(gi) != 1:
        return None
    ones = np.ones(np.shape(g), dtype=np.asarray(g).dtype)
    unit = _vjps(node, ones, inputs, ans)[i]
    if unit is None:
        return 0.0
    unit = unit.data if isinstance(unit, Tensor) else unit
    return float(np.asarray(unit).sum())


_SYMBOLS = [("s(x) (1 - s(x))", "σ(x)·(1 − σ(x))"), (" (1 - ", "·(1 - "), ("sigmoid(x)", "σ(x)"),
            ("^T", "ᵀ"), (" * ", "·"), (" - ", " − ")]


def _derivative(formula: str) -> str | None:
    """The local derivative inside a VJP formula ("grad * y" -> "y"), or None when the rule is
    not a product with the upstream gradient (matmul, softmax, reductions)."""
    f = formula.strip()
    sign = ""
    if f.startswith("-grad"):
        sign, f = "-", f[1:]
    if f == "grad":
        return sign + "1"
    if f.startswith("grad * "):
        rest = f[len("grad * "):]
        if rest.startswith("(") and rest.endswith(")") and _balanced(rest[1:-1]):
            rest = rest[1:-1]
        return sign + rest
    if f.startswith("grad / "):
        return sign + "1 / " + f[len("grad / "):]
    return None


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


def wrapped(label: str) -> str:
    """A name as it goes into a formula: in parentheses unless it is one word or already is
    (``w1``, ``fc1.weight``, ``(add #3)``, ``(o - t)``)."""
    if re.fullmatch(r"[\w.\[\]']+", label):
        return label
    if label.startswith("(") and label.endswith(")") and _balanced(label[1:-1]):
        return label
    return f"({label})"


def _substitute(expression: str, arg_names, labels, out_label, loss_label="L") -> str:
    """The table's argument names replaced by the user's names; prettier operators."""
    upstream = "\x00"  # the upstream gradient, put back last (so "grad^T" becomes "(∂L/∂h)ᵀ")
    expression = re.sub(r"\bgrad\b", upstream, expression)
    for plain, pretty in _SYMBOLS:
        expression = expression.replace(plain, pretty)
    for name, label in zip(arg_names, labels):
        if label is not None:
            expression = re.sub(rf"(?<![\w.]){re.escape(name)}(?![\w])", wrapped(label),
                                expression)
            inner = wrapped(label)
            expression = expression.replace(f"({inner})", inner) if inner.startswith("(") \
                else expression
    if out_label == loss_label:  # at the output the upstream gradient is dL/dL = 1
        expression = re.sub("^\x00·", "", expression).replace("\x00", "1")
    symbol = f"∂{wrapped(loss_label)}/∂{wrapped(out_label)}"
    expression = expression.replace(upstream + "ᵀ", f"({symbol})ᵀ").replace(upstream, symbol)
    expression = re.sub(r"\^\((-?\d+(?:\.\d+)?)-1\)",
                        lambda m: "^" + _number(float(m.group(1)) - 1), expression)
    return re.sub(r"\^1\b(?!\.)", "", expression)


# The rule of these operations reads their own result: "s(x)" of a sigmoid is its output.
_OWN_RESULT = {"sigmoid": "s(x)", "tanh": "tanh(x)", "exp": "exp(x)", "sqrt": "sqrt(x)",
               "softmax": "softmax(x)"}


def _formula_texts(node, i, labels, out_label, loss_label="L") -> tuple[str | None, str]:
    """(local derivative, gradient rule) of input ``i``, both in the user's names."""
    rule = formulas(node)[i]
    own = _OWN_RESULT.get(op_name(node))
    if own is not None and " #" not in out_label:
        rule = rule.replace(own, out_label if re.fullmatch(r"[\w.]+", out_label)
                            else f"({out_label})")
    names = input_names(node)
    derivative = _derivative(rule)
    local = None if derivative is None else _substitute(derivative, names, labels, out_label,
                                                        loss_label)
    return local, _substitute(rule, names, labels, out_label, loss_label)


# ----------------------------------------------------------------------------------------------
# Layers as boxes
# ----------------------------------------------------------------------------------------------
# Class-name prefixes and the short names their Sequential-indexed parameters get.
_KINDS = (("Linear", "fc"), ("Conv", "conv"), ("BatchNorm", "norm"), ("LayerNorm", "norm"),
          ("GroupNorm", "norm"), ("InstanceNorm", "norm"))


def display_names(model) -> dict[str, str]:
    """{parameter name: readable name} for ``model.named_parameters()``.

    A parameter whose module path is made of Sequential / ModuleList indices only ("1.weight",
    "0.2.bias") is shown by the kind of its module and a counter: Linear -> ``fc1``, ``fc2``...;
    Conv* -> ``conv1``...; BatchNorm*, LayerNorm, GroupNorm -> ``norm1``...; any other module
    by its lowercase class name (``embedding1``). Every other name is kept as it is.
    """
    names = [name for name, _ in model.named_parameters()]
    shown = {name: name for name in names}
    if not hasattr(model, "named_modules"):
        return shown
    counters, prefix = Counter(), {}
    for path, module in model.named_modules():
        owns = any(p is not None for p in getattr(module, "_parameters", {}).values())
        if not path or not owns or not all(part.isdigit() for part in path.split(".")):
            continue
        short = _kind(module)
        counters[short] += 1
        prefix[path] = f"{short}{counters[short]}"
    taken = set(names)
    for name in names:
        path, _, leaf = name.rpartition(".")
        if path in prefix:
            candidate = f"{prefix[path]}.{leaf}"
            if candidate not in taken:  # never shadow a real name
                shown[name] = candidate
                taken.add(candidate)
    return shown


def _kind(module) -> str:
    cls = type(module).__name__
    for start, short in _KINDS:
        if cls.startswith(start):
            return short
    return cls.lower()




def layer_names(model) -> dict:
    """``{module path: readable layer name}`` for the layers that own parameters ("1" -> "fc1"),
    as `display_names` shows their parameters."""
    return {name.rpartition(".")[0]: shown.rpartition(".")[0]
            for name, shown in display_names(model).items()}


def _submodule(model, prefix):
    sub = model
    for part in prefix.split(".") if prefix else []:
        sub = sub._modules[part]
    return sub


def _collapse(tr: Trace, collapse, labels) -> Trace:
    """The same Trace with each layer of ``collapse`` (its parameters and the operations that
    read them directly: a Linear's matmul and bias add) merged into one box."""
    modules = list(collapse) if isinstance(collapse, (list, tuple)) else [collapse]
    owner = {}  # id(parameter) -> (group key, display name, parameter's own name)
    for module in modules:
        if not hasattr(module, "named_parameters"):
            raise TypeError(f"trace: collapse expects nn.Module objects, got "
                            f"{type(module).__name__}")
        readable = layer_names(module)
        for path, p in module.named_parameters():
            prefix, _, leaf_name = path.rpartition(".")
            kind = type(_submodule(module, prefix)).__name__
            name = readable.get(prefix) or type(module).__name__.lower()
            owner[id(p)] = ((id(module), prefix), f"{name} ({kind})", f"{name}.{leaf_name}")
    group = {}  # TraceNode id -> group key
    display = {}
    params = {}
    for n in tr.nodes:
        if n.kind == "parameter" and n.tensor is not None and id(n.tensor) in owner:
            key, shown, pname = owner[id(n.tensor)]
            group[n.id] = key
            display[key] = shown
            params.setdefault(key, []).append((pname, n.value, n.grad))
    for e in tr.edges:  # an operation reading a layer's parameter belongs to the layer
        if e.source in group and tr[e.target].kind in ("operation", "output"):
            group.setdefault(e.target, group[e.source])
    if not group:
        return tr
    boxes = {}
    for key in dict.fromkeys(group[n.id] for n in tr.nodes if n.id in group):
        inside = [tr[i] for i, k in group.items() if k == key]
        ops = sorted((n for n in inside if n.order is not None), key=lambda n: n.order)
        out = ops[0] if ops else None
        box = TraceNode(f"module{len(boxes)}", "module", display[key],
                        op=display[key].rpartition(" (")[2].rstrip(")"), named=True,
                        value=None if out is None else out.value,
                        grad=None if out is None else out.grad,
                        shape=() if out is None else out.shape,
                        dtype="" if out is None else out.dtype,
                        order=None if out is None else out.order,
                        missing=None if out is None else out.missing,
                        members=params.get(key, []))
        boxes[key] = box
    rename = {i: boxes[k].id for i, k in group.items()}
    nodes = []
    for n in tr.nodes:
        if n.id in group:
            box = boxes[group[n.id]]
            if box not in nodes:
                nodes.append(box)
        else:
            nodes.append(n)
    # Formulas name what is inside a box by the box: "[(linear #3) > 0]" -> "[fc2 > 0]"
    short = {}
    for i, k in group.items():
        if tr[i].kind in ("operation", "output"):
            short[tr[i].name] = boxes[k].name.rpartition(" (")[0] or boxes[k].name

    def renamed(text):
        for old, new in short.items():
            text = re.sub(rf"(?<![\w])\({re.escape(old)}\)", new, text).replace(old, new)
        return text

    edges = []
    for e in tr.edges:
        s, t = rename.get(e.source, e.source), rename.get(e.target, e.target)
        if s == t:
            continue
        edges.append(TraceEdge(s, t, e.index, e.value, e.grad,
                               None if e.formula is None else renamed(e.formula),
                               renamed(e.vjp), e.local, e.differentiable))
    output = rename.get(tr.output, tr.output)
    collapsed = Trace(nodes, edges, output, tr.message)
    collapsed._index = {k: (ref, rename.get(i, i)) for k, (ref, i) in tr._index.items()}
    return collapsed
