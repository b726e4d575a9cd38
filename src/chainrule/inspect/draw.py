"""Drawing the computational graph behind a tensor, with forward values and gradients.

``cr.draw(loss)`` returns a `Drawing`: ``.source`` is Graphviz DOT text, ``.save("g.svg")`` (or
``.png``, ``.dot``) renders it with the ``dot`` program, and Jupyter shows it inline. At a glance:

* parameters (leaves that require grad, ``nn.Parameter`` or not): blue boxes;
* inputs (tensors that require no grad): grey ellipses;
* operations: white rounded boxes; the output (the loss): a red octagon;
* with ``collapse=model``: one green 3-D box per layer.

Each node shows its operation, shape and dtype, its forward value (up to 6 numbers, otherwise
mean/min/max) and its gradient:

* leaves: their ``.grad`` (after ``backward()``);
* operations: the gradient flowing into their output, found by walking the graph once more with
  hooks on the nodes and without touching any ``.grad``. So call ``draw`` before ``backward()``,
  or after ``backward(retain_graph=True)``; once the saved values are freed only leaf gradients
  show.

What the graph keeps is not everything: a node holds its forward result only when its own rule
needs it (``tanh``, ``exp``, ``sigmoid`` do, ``add`` and ``multiply`` do not), and an input that
requires no grad only when the rule reads it. To see every forward value, every input and every
constant, build the graph inside ``with cr.inspect.trace():`` -- it remembers, per node, a copy of
the forward result and the arguments that need no gradient, for as long as the node lives.

Big graphs: above ``max_nodes`` nodes the drawing is a single note giving the count (nothing is
laid out, so nothing hangs). Above 200 nodes, a leaf used by several operations is drawn once per
use, because edges that span the whole graph make ``dot``'s layout quadratic; rendering stops with
a clear error after ``RENDER_TIMEOUT`` seconds.
"""

from __future__ import annotations

import contextlib
import html
import shutil
import subprocess
import weakref
from pathlib import Path

import numpy as np

from chainrule import autograd
from chainrule.inspect.graph import input_names, op_name, walk
from chainrule.tensor import Tensor

__all__ = ["draw", "Drawing", "trace", "MAX_NODES"]

MAX_NODES = 2000
SPREAD_LEAVES_ABOVE = 200  # nodes; above this each use of a shared leaf gets its own copy
RENDER_TIMEOUT = 90.0  # seconds given to `dot`
_PARAM_STYLE = 'shape=box style="filled" fillcolor="#dbe9ff"'
_INPUT_STYLE = 'shape=ellipse style="filled" fillcolor="#eeeeee"'
_OP_STYLE = 'shape=box style="rounded,filled" fillcolor="#ffffff"'
_OUT_STYLE = 'shape=octagon style="filled" fillcolor="#ffd6d6"'
_MODULE_STYLE = 'shape=box3d style="filled" fillcolor="#e8f5e9"'
_RED = ' color="red" penwidth=2'


# ----------------------------------------------------------------------------------------------
# trace(): remembering what the graph itself does not keep
# ----------------------------------------------------------------------------------------------
_traced = weakref.WeakKeyDictionary()  # Node -> (forward result, [(input index, value)])


def _ignore(*args):
    return None


class trace:
    """``with cr.inspect.trace():`` remember each recorded operation's forward value and inputs.

    Inside the block, every node created keeps (outside the node, in a weak table that forgets
    it with the node) a copy of its forward result and the arguments that need no gradient:
    input tensors and constants. `draw` and the step-through page then show them. It rides on
    the engine's anomaly hook and chains to `cr.detect_anomaly` when both are on.
    """

    def __enter__(self):
        mode = autograd.anomaly
        self._previous = (mode.enabled, mode.on_forward, mode.on_backward)
        was_on, forward_before, _ = self._previous

        def remember(op, node, out, args):
            if node is not None:
                _traced[node] = (np.array(out, copy=True), _non_grad_args(args))
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
        return False


def _non_grad_args(args):
    """``[(index, value)]`` for the arguments that take no gradient: inputs and constants."""
    out = []
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            if not a.requires_grad:
                out.append((i, a))
        elif a is not None:
            out.append((i, a))
    return out


def traced_value(node):
    """The forward result of ``node``: kept by the node itself or by `trace`; else None."""
    if node.ans is not None:
        return node.ans
    record = _traced.get(node)
    return None if record is None else record[0]


def _node_inputs(node):
    """``[(index, value)]``: the inputs of ``node`` that take no gradient and are still known."""
    record = _traced.get(node)
    if record is not None:
        return record[1]
    if node.freed or not node.saved:
        return []
    return [(i, s) for i, s in enumerate(node.saved)
            if isinstance(s, Tensor) and not s.requires_grad and node.parents[i] is None]


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------
_FORMAT = {"float_kind": lambda v: f"{v:.4g}"}  # 4 digits, no padding to align columns


def _summary(a) -> str:
    a = np.asarray(a)
    if a.size <= 6:
        return np.array2string(a, separator=", ", formatter=_FORMAT)
    if a.dtype.kind not in "biuf":
        return f"{a.size} values"
    return f"mean {a.mean():.4g} min {a.min():.4g} max {a.max():.4g}"


def _meta(a) -> str:
    a = np.asarray(a)
    return f"{tuple(a.shape)} {a.dtype}"


def _label(lines) -> str:
    return "<" + "<br/>".join(html.escape(line) for line in lines) + ">"


# ----------------------------------------------------------------------------------------------
# Gradients of intermediate nodes, paths, modules
# ----------------------------------------------------------------------------------------------
def _intermediate_grads(tensor, graph):
    """The gradient flowing into every node's output, or {} when the graph was freed.

    Hooks on the nodes catch the gradients of one more backward pass, which returns its result
    instead of writing ``.grad`` (``inputs=`` a leaf): the user's gradients stay untouched.
    """
    if not graph.nodes or not graph.leaves or any(node.freed for node in graph.nodes):
        return {}
    grads = {}

    def keeper(node):
        def keep(g):
            grads[node] = np.array(g.data, copy=True)

        return keep

    try:
        with only_our_hooks(graph, keeper):
            autograd.backward([tensor], [np.ones_like(tensor.data)], retain_graph=True,
                              inputs=graph.leaves[:1])
    except RuntimeError:  # a saved value changed in place: draw what is known
        return {}
    return grads


@contextlib.contextmanager
def only_our_hooks(graph, hook_for):
    """During an extra backward pass, run ``hook_for(node)`` on every node and no user hook.

    The user's hooks (``retain_grad``, logging, gradient edits) must not run a second time for
    a drawing: they are put aside, leaf hooks included, and given back afterwards.
    """
    node_hooks = [(node, node.hooks) for node in graph.nodes]
    leaf_hooks = [(leaf, leaf._hooks) for leaf in graph.leaves]
    try:
        for node in graph.nodes:
            node.hooks = {"chainrule.inspect": hook_for(node)}
        for leaf in graph.leaves:
            leaf._hooks = None
        yield
    finally:
        for node, hooks in node_hooks:
            node.hooks = hooks
        for leaf, hooks in leaf_hooks:
            leaf._hooks = hooks


def _paths_from(graph, param):
    """ids of the nodes (and the leaf) on some path from ``param`` to the output."""
    on_path = {id(param)}
    for node in reversed(graph.nodes):  # inputs before consumers
        if any(id(p) in on_path for p in node.parents if p is not None):
            on_path.add(id(node))
    return on_path


def _module_members(graph, collapse):
    """{id(leaf or node): box name} for collapsing modules into one box each.

    The heuristic: a module's box holds its parameters and every operation that reads one of
    them directly (the matmul and bias add of a Linear, the scale and shift of a norm layer).
    Operations between layers (activations, the loss) stay visible.
    """
    modules = collapse if isinstance(collapse, (list, tuple)) else [collapse]
    owner = {}
    for module in modules:
        if not hasattr(module, "named_parameters"):
            raise TypeError(f"draw: collapse expects nn.Module objects, got "
                            f"{type(module).__name__}")
        for name, p in module.named_parameters():
            prefix = name.rpartition(".")[0]
            sub = module
            for part in prefix.split(".") if prefix else []:
                sub = sub._modules[part]
            owner[id(p)] = f"{prefix or type(module).__name__.lower()} ({type(sub).__name__})"
    members = dict(owner)
    for node in graph.nodes:
        for p in node.parents:
            if p is not None and id(p) in owner:
                members[id(node)] = owner[id(p)]
                break
    return members


# ----------------------------------------------------------------------------------------------
# Writing the DOT source
# ----------------------------------------------------------------------------------------------
class _DotWriter:
    """Collects DOT lines; knows the DOT id of every node, leaf and input."""

    def __init__(self, spread):
        self.lines = ["digraph chainrule {",
                      '  rankdir=LR; node [fontname="Helvetica" fontsize=10];']
        self.ids = {}  # id(object) -> DOT id
        self.definitions = {}  # DOT id -> attributes, for drawing a leaf once per use
        self.spread = spread
        self.uses = {}

    def node(self, key, dot_id, attributes):
        self.ids[key] = dot_id
        self.definitions[dot_id] = attributes
        if not self.spread or not dot_id.startswith(("leaf", "input")):
            self.lines.append(f"  {dot_id} [{attributes}];")

    def edge(self, source_key, target_key, attributes):
        source, target = self.ids[source_key], self.ids[target_key]
        if source == target:
            return  # both inside one collapsed module
        if self.spread and source.startswith(("leaf", "input")):
            k = self.uses[source] = self.uses.get(source, 0) + 1
            copy = f"{source}_{k}"
            self.lines.append(f"  {copy} [{self.definitions[source]}];")
            source = copy
        self.lines.append(f"  {source} -> {target} [{attributes}];")

    def source(self) -> str:
        return "\n".join(dict.fromkeys(self.lines)) + "\n}\n"


def _leaf_lines(leaf, name, show_values, show_grads):
    kind = "parameter" if leaf.requires_grad else "input"
    text = [f"{name} ({kind})", _meta(leaf.data)]
    if show_values:
        text.append(f"value {_summary(leaf.data)}")
    if show_grads and leaf.grad is not None:
        text.append(f"grad {_summary(leaf.grad.data)}")
    return text


def _op_lines(node, name, grad, show_values, show_grads):
    text = [op_name(node) + (f" = {name}" if name else "")]
    value = traced_value(node)
    if value is not None:
        text.append(_meta(value))
        if show_values:
            text.append(f"value {_summary(value)}")
    elif grad is not None:
        text.append(_meta(grad))
    if show_values:
        arg_names = input_names(node)
        for i, constant in _node_inputs(node):
            if not isinstance(constant, Tensor):
                label = arg_names[i] if i < len(arg_names) else f"x{i}"
                text.append(f"{label} = {_summary(constant)}")
    if show_grads and grad is not None:
        text.append(f"grad {_summary(grad)}")
    return text


def _capped(graph, count, max_nodes):
    text = (f"graph of {len(graph.nodes):,} operations and {len(graph.leaves):,} leaves "
            f"({count:,} nodes): more than max_nodes={max_nodes:,}; drawing skipped (pass a "
            f"larger max_nodes, collapse=model, or draw a smaller piece)")
    return Drawing(f'digraph chainrule {{\n  note [shape=note label="{text}"];\n}}\n', count,
                   text)


def draw(tensor, *, show_values=True, show_grads=True, collapse=None, highlight=None,
         max_nodes=MAX_NODES, names=None, title=None) -> Drawing:
    """The graph that produced ``tensor`` as a `Drawing` (see the module docstring).

    ``show_values`` / ``show_grads``: put forward values / gradients in the labels.
    ``collapse``: an ``nn.Module`` (or a list of them): each submodule that owns parameters
    becomes one box holding its parameters and the operations that read them.
    ``highlight``: a leaf tensor; the paths from it to the output are drawn in red.
    ``max_nodes``: above this many nodes, return a note with the count instead of a layout.
    ``names``: {label: tensor} naming leaves and intermediate results
    (``names=dict(model.named_parameters())`` names a model's weights).
    ``title``: a caption on top.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"draw: expected a Tensor, got {type(tensor).__name__}")
    if highlight is not None and not isinstance(highlight, Tensor):
        raise TypeError(f"draw: highlight expects a Tensor, got {type(highlight).__name__}")
    graph = walk(tensor)
    inputs = {node: [(i, v) for i, v in _node_inputs(node) if isinstance(v, Tensor)]
              for node in graph.nodes}
    n_inputs = len({id(v) for found in inputs.values() for _, v in found})
    count = len(graph.nodes) + len(graph.leaves) + n_inputs
    if not graph.nodes and not graph.leaves:
        count = 1
    if count > max_nodes:
        return _capped(graph, count, max_nodes)

    labels = {id(t): name for name, t in (names or {}).items() if isinstance(t, Tensor)}
    node_names = {id(t.grad_fn): name for name, t in (names or {}).items()
                  if isinstance(t, Tensor) and t.grad_fn is not None}
    grads = _intermediate_grads(tensor, graph) if show_grads else {}
    on_path = _paths_from(graph, highlight) if highlight is not None else set()
    members = _module_members(graph, collapse) if collapse is not None else {}

    out = _DotWriter(spread=count > SPREAD_LEAVES_ABOVE)
    boxes = {}
    for box in dict.fromkeys(members.values()):
        boxes[box] = f"module{len(boxes)}"
        out.lines.append(f"  {boxes[box]} [{_MODULE_STYLE} label={_label([box])}];")
    if not graph.nodes and not graph.leaves:  # a tensor with no graph at all
        graph.leaves.append(tensor)
    for i, leaf in enumerate(graph.leaves):
        if id(leaf) in members:
            out.ids[id(leaf)] = boxes[members[id(leaf)]]
            continue
        name = labels.get(id(leaf)) or leaf.name or f"leaf {i}"
        pen = _RED if id(leaf) in on_path else ""
        style = _PARAM_STYLE if leaf.requires_grad else _INPUT_STYLE
        text = _leaf_lines(leaf, name, show_values, show_grads)
        out.node(id(leaf), f"leaf{i}", f"{style}{pen} label={_label(text)}")
    for found in inputs.values():
        for _, value in found:
            if id(value) not in out.ids:
                name = labels.get(id(value)) or value.name or "input"
                text = _leaf_lines(value, name, show_values, False)
                out.node(id(value), f"input{len(out.ids)}", f"{_INPUT_STYLE} label={_label(text)}")
    for i, node in enumerate(graph.nodes):
        if id(node) in members:
            out.ids[id(node)] = boxes[members[id(node)]]
            continue
        text = _op_lines(node, node_names.get(id(node)), grads.get(node), show_values,
                         show_grads)
        style = _OUT_STYLE if i == 0 else _OP_STYLE
        pen = _RED if id(node) in on_path else ""
        out.node(id(node), f"op{i}", f"{style}{pen} label={_label(text)}")
    for node in graph.nodes:
        arg_names = input_names(node)
        for i, parent in graph.parents(node):
            edge = f'label="{arg_names[i] if i < len(arg_names) else i}" fontsize=8'
            if id(parent) in on_path and id(node) in on_path:
                edge += _RED
            out.edge(id(parent), id(node), edge)
        for i, value in inputs[node]:
            out.edge(id(value), id(node), f'label="{arg_names[i] if i < len(arg_names) else i}"'
                                          f' fontsize=8 style=dashed')
    if title:
        out.lines.append(f'  labelloc=t; label="{html.escape(title)}";')
    return Drawing(out.source(), count)


class Drawing:
    """A graph drawing: ``.source`` (DOT text), rendered on demand by Graphviz's ``dot``.

    ``node_count`` is the number of nodes of the graph; ``message`` says why the drawing was
    skipped (too many nodes), else None.
    """

    def __init__(self, source: str, node_count: int, message: str | None = None):
        self.source = source
        self.node_count = node_count
        self.message = message

    def __str__(self):
        return self.source

    def render(self, fmt: str = "svg", timeout: float = RENDER_TIMEOUT) -> bytes:
        """The drawing as ``svg``, ``png`` or ``dot`` bytes (svg and png need ``dot``)."""
        if fmt == "dot":
            return self.source.encode()
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError("draw: Graphviz's `dot` program is not installed (Debian: "
                               "apt-get install graphviz, or scripts/install-system-deps.sh; "
                               "or save the .dot source instead)")
        try:
            result = subprocess.run([dot, f"-T{fmt}"], input=self.source.encode(),
                                    capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"draw: dot did not lay out the graph ({self.node_count:,} nodes) within "
                f"{timeout:g} s; draw with collapse=model or a smaller max_nodes, or save the "
                f".dot source") from None
        if result.returncode != 0:
            raise RuntimeError(f"draw: dot failed: {result.stderr.decode(errors='replace')}")
        return result.stdout

    def save(self, path) -> Path:
        """Write SVG, PNG or DOT (``.dot``/``.gv``), chosen by the file's suffix."""
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in ("svg", "png", "dot", "gv"):
            raise ValueError(f"draw: cannot save as {path.suffix!r} ({path}); use .svg, .png "
                             f"or .dot")
        path.write_bytes(self.render("dot" if fmt == "gv" else fmt))
        return path

    def _repr_svg_(self):
        """Jupyter's inline SVG; None (the text repr is shown) when ``dot`` is missing."""
        if shutil.which("dot") is None:
            return None
        return self.render("svg").decode()
