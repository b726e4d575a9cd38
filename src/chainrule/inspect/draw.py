"""Drawing the computational graph behind a tensor, with forward values and gradients.

``cr.draw(loss)`` returns a `Drawing`: ``.source`` is Graphviz DOT text, ``.save("g.svg")`` (or
``.png``, ``.dot``) renders it with the ``dot`` program, and Jupyter shows it inline. Leaves that
are parameters are blue boxes, inputs grey ellipses, operations white rounded boxes, the output
a red octagon. Each node shows its operation, shape and dtype, its forward value (a few numbers,
or mean/min/max) and its gradient:

* leaves: their ``.grad`` after ``backward()``;
* operations: the gradient flowing into their output, computed by walking the graph once more
  without touching any ``.grad`` (so call ``draw`` before ``backward()``, or after
  ``backward(retain_graph=True)``; once the saved values are freed only leaf gradients show);
  their forward value when the node kept it for its own backward (``tanh``, ``exp``,
  ``sigmoid``...), otherwise the shape alone.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from pathlib import Path

import numpy as np

from chainrule import autograd
from chainrule.inspect.graph import input_names, op_name, walk
from chainrule.tensor import Tensor

MAX_NODES = 2000
_PARAM_STYLE = 'shape=box style="filled" fillcolor="#dbe9ff"'
_INPUT_STYLE = 'shape=ellipse style="filled" fillcolor="#eeeeee"'
_OP_STYLE = 'shape=box style="rounded,filled" fillcolor="#ffffff"'
_OUT_STYLE = 'shape=octagon style="filled" fillcolor="#ffd6d6"'


def _summary(a) -> str:
    a = np.asarray(a)
    if a.size <= 6:
        return np.array2string(a, precision=4, separator=", ", suppress_small=True)
    return f"mean {a.mean():.4g} min {a.min():.4g} max {a.max():.4g}"


def _meta(a) -> str:
    a = np.asarray(a)
    return f"{tuple(a.shape)} {a.dtype}"


def _label(lines) -> str:
    return "<" + "<br/>".join(html.escape(line) for line in lines) + ">"


def _intermediate_grads(tensor, graph):
    """The gradient flowing into every node's output, or {} when the graph was freed."""
    if any(node.freed for node in graph.nodes):
        return {}
    grads = {}

    def keeper(node):
        def keep(g):
            grads[node] = np.array(g.data, copy=True)

        return keep

    added = []
    for node in graph.nodes:
        if node.hooks is None:
            node.hooks = {}
        key = ("chainrule.draw", id(node))
        node.hooks[key] = keeper(node)
        added.append((node, key))
    try:
        target = graph.leaves[:1] or [tensor]
        seed = np.ones_like(tensor.data)
        autograd.backward([tensor], [seed], retain_graph=True, inputs=target)
    except RuntimeError:
        return {}
    finally:
        for node, key in added:
            node.hooks.pop(key, None)
    return grads


def _paths_from(graph, param):
    """Nodes (and the leaf) on some path from ``param`` to the output."""
    on_path = {id(param)}
    for node in reversed(graph.nodes):  # inputs before consumers
        if any(id(p) in on_path for p in node.parents if p is not None):
            on_path.add(id(node))
    return on_path


def _module_members(graph, collapse):
    """{id(leaf or node): box name} for collapsing modules into one box each.

    The heuristic: a module's box holds its parameters and every operation that reads one of
    them directly (the matmul and bias add of a Linear, the scale and shift of a norm layer).
    """
    modules = collapse if isinstance(collapse, (list, tuple)) else [collapse]
    owner = {}
    for module in modules:
        for name, p in module.named_parameters():
            prefix = name.rpartition(".")[0]
            sub = module
            for part in prefix.split(".") if prefix else []:
                sub = sub._modules[part]
            owner[id(p)] = f"{prefix or 'model'} ({type(sub).__name__})"
    members = {k: v for k, v in owner.items()}
    for node in graph.nodes:
        for p in node.parents:
            if p is not None and id(p) in owner:
                members[id(node)] = owner[id(p)]
                break
    return members


def draw(tensor, *, show_values=True, show_grads=True, highlight=None, names=None,
         collapse=None, max_nodes=MAX_NODES, title=None) -> Drawing:
    """The graph that produced ``tensor`` as a `Drawing` (see the module docstring).

    ``highlight``: a leaf tensor; the paths from it to the output are drawn in red.
    ``names``: {label: tensor} to name leaves (parameters of a Module are named automatically
    when you pass ``names=dict(model.named_parameters())``).
    ``collapse``: an ``nn.Module`` (or a list of them): each submodule that owns parameters
    becomes one box holding its parameters and the operations that read them.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"draw: expected a Tensor, got {type(tensor).__name__}")
    graph = walk(tensor)
    count = len(graph.nodes) + len(graph.leaves)
    if count > max_nodes:
        text = (f"graph of {len(graph.nodes):,} operations and {len(graph.leaves):,} leaves: "
                f"more than max_nodes={max_nodes:,}; drawing skipped (pass a larger max_nodes, "
                f"or draw a smaller piece)")
        return Drawing(f'digraph chainrule {{\n  note [shape=note label="{text}"];\n}}\n',
                       count, text)
    labels = {id(t): name for name, t in (names or {}).items()}
    grads = _intermediate_grads(tensor, graph) if show_grads else {}
    on_path = _paths_from(graph, highlight) if highlight is not None else set()

    ids = {}
    lines = ["digraph chainrule {", '  rankdir=LR; node [fontname="Helvetica" fontsize=10];']
    members = _module_members(graph, collapse) if collapse is not None else {}
    boxes = {}
    for box in dict.fromkeys(members.values()):
        boxes[box] = f"module{len(boxes)}"
        lines.append(f'  {boxes[box]} [shape=box3d style="filled" fillcolor="#e8f5e9" '
                     f"label={_label([box])}];")
    for i, leaf in enumerate(graph.leaves):
        ids[id(leaf)] = f"leaf{i}"
        if id(leaf) in members:
            ids[id(leaf)] = boxes[members[id(leaf)]]
            continue
        name = labels.get(id(leaf)) or leaf.name or f"leaf {i}"
        kind = "parameter" if leaf.requires_grad else "input"
        text = [f"{name} ({kind})", _meta(leaf.data)]
        if show_values:
            text.append(f"value {_summary(leaf.data)}")
        if show_grads and leaf.grad is not None:
            text.append(f"grad {_summary(leaf.grad.data)}")
        style = _PARAM_STYLE if leaf.requires_grad else _INPUT_STYLE
        pen = ' color="red" penwidth=2' if id(leaf) in on_path else ""
        lines.append(f"  {ids[id(leaf)]} [{style}{pen} label={_label(text)}];")
    for i, node in enumerate(graph.nodes):
        ids[id(node)] = f"op{i}"
        if id(node) in members:
            ids[id(node)] = boxes[members[id(node)]]
            continue
        text = [op_name(node)]
        if node.ans is not None:
            text.append(_meta(node.ans))
            if show_values:
                text.append(f"value {_summary(node.ans)}")
        if node in grads:
            if node.ans is None:
                text.append(_meta(grads[node]))
            text.append(f"grad {_summary(grads[node])}")
        style = _OUT_STYLE if i == 0 else _OP_STYLE
        pen = ' color="red" penwidth=2' if id(node) in on_path else ""
        lines.append(f"  {ids[id(node)]} [{style}{pen} label={_label(text)}];")
    for node in graph.nodes:
        names_in = input_names(node)
        for i, parent in graph.parents(node):
            if ids[id(parent)] == ids[id(node)]:
                continue  # inside one collapsed module
            edge = f'label="{names_in[i] if i < len(names_in) else i}" fontsize=8'
            if id(parent) in on_path and id(node) in on_path:
                edge += ' color="red" penwidth=2'
            lines.append(f"  {ids[id(parent)]} -> {ids[id(node)]} [{edge}];")
    if title:
        lines.append(f'  labelloc=t; label="{html.escape(title)}";')
    lines.append("}")
    return Drawing("\n".join(dict.fromkeys(lines)) + "\n", count)


class Drawing:
    """A graph drawing: DOT source, rendered on demand by Graphviz's ``dot`` program."""

    def __init__(self, source: str, node_count: int, message: str | None = None):
        self.source = source
        self.node_count = node_count
        self.message = message

    def __str__(self):
        return self.source

    def render(self, fmt: str = "svg") -> bytes:
        """The drawing as ``svg`` or ``png`` bytes (needs the ``dot`` program)."""
        if fmt == "dot":
            return self.source.encode()
        dot = shutil.which("dot")
        if dot is None:
            raise RuntimeError("draw: Graphviz's `dot` program is not installed (Debian: "
                               "apt-get install graphviz; or save the .dot source instead)")
        result = subprocess.run([dot, f"-T{fmt}"], input=self.source.encode(),
                                capture_output=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"draw: dot failed: {result.stderr.decode(errors='replace')}")
        return result.stdout

    def save(self, path) -> Path:
        """Write SVG, PNG or DOT, chosen by the file's suffix."""
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        if fmt not in ("svg", "png", "dot", "gv"):
            raise ValueError(f"draw: cannot save as {path.suffix!r}; use .svg, .png or .dot")
        path.write_bytes(self.render("dot" if fmt == "gv" else fmt))
        return path

    def _repr_svg_(self):
        return self.render("svg").decode()
