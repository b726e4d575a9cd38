"""Drawing a forward and backward pass as a circuit: every value that flowed, every gradient.

``cr.draw(loss)`` returns a `Drawing`: ``.source`` is Graphviz DOT text, ``.save("g.svg")`` (or
``.png``, ``.dot``) renders it with the ``dot`` program, and Jupyter shows it inline. The picture
reads left to right, like the circuit diagrams of CS231n: the leaves on the left, the loss on the
right (a long chain of wide boxes, such as an MLP's layers, is drawn top to bottom instead, so
that it stays readable on a screen). Its legend (the box after the loss) says what this list
says:

* **parameters** (tensors that require grad): blue boxes;
* **inputs** (tensors that need no gradient: data, labels, targets): grey ellipses;
* **constants** (Python numbers, NumPy arrays): small grey text;
* **operations**: white rounded boxes, with the operation and the user's name for its result
  (``f = sigmoid``), or its number (``add #3``) when the code gave it no name;
* **the output** (the loss): a red octagon; with ``collapse=model``, **layers**: green 3-D boxes
  (``fc1 (Linear)``) listing their parameters' gradient norms.

Every node shows its forward value in dark green and its gradient in red (for an operation: the
value of its result and dL/d(result)). Every edge carries, in the same two colours, the value
that flowed forward along it (top) and the gradient that flowed back along it (bottom); a
dashed edge comes from an input or a constant and carries no gradient. Numbers are shown with 4
significant digits; a small tensor (at most 8 x 8) is drawn as a heatmap, blue negative, white
zero, red positive, scaled per tensor by its largest ``|v|`` (printed next to it); a large one
as its shape, dtype and a one-line summary.

Everything comes from one `chainrule.inspect.record.Trace`: the drawing reads it and never walks
the engine's graph, so it shows the same numbers as `explain` and the step-through page. What
the Trace lacks is said on the picture: a note at the top gives the reason (a graph built
without ``cr.inspect.record()``, values freed by ``backward()``) and each node lacking a number
says "value: not recorded" or "grad: not available". Build the graph inside ``with
cr.inspect.record():`` to see everything, before or after ``backward()``.

DOT ids: a node's DOT id is its TraceNode id (``op0`` is the output, ``op1``... the operations
in the backward pass's order, ``leaf3``, ``input12``, ``const13``, ``module0``), and each edge
has ``id="e_{source}_{target}_{index}"``, which Graphviz copies into the SVG, so a page can
highlight nodes and edges of the picture.

Big graphs: above ``max_nodes`` nodes the drawing is a single note giving the count (nothing is
laid out, so nothing hangs). Edges that span the whole graph make ``dot``'s layout about
quadratic, so a parameter or input used more than ``SPREAD_USES`` times (above
``SPREAD_LEAVES_ABOVE`` nodes: more than once) is drawn once per use, the extra copies named
``leaf0_2``, ``leaf0_3``..., and when an operation's result is read far away again and again
those edges start at a small stand-in "↪ name" (DOT id ``op3_to_op9_1``). Above
``SPREAD_LEAVES_ABOVE`` nodes the edges carry no numbers (the nodes still do); rendering stops
with a clear error after ``RENDER_TIMEOUT`` seconds.
"""

from __future__ import annotations

import contextlib
import html
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np

from chainrule.inspect.record import Trace, TraceNode, as_trace
from chainrule.tensor import Tensor

__all__ = ["draw", "Drawing", "MAX_NODES"]

MAX_NODES = 2000
SPREAD_LEAVES_ABOVE = 200  # nodes; above this each use of a shared leaf gets its own copy
SPREAD_USES = 4  # a leaf used more often than this gets a copy per use in any graph
HIDDEN_NODES = 1500  # more of dot's hidden nodes on long edges than this: stand-ins instead
RENDER_TIMEOUT = 90.0  # seconds given to `dot`
PNG_DPI = 110  # PNG resolution: the default 96 makes the small numbers hard to read
HEATMAP_MAX = 8  # tensors of at most 2 dimensions of at most this size are drawn as heatmaps
CELL = 11  # heatmap cell size, points
SHOW_NUMBERS = 4  # a tensor of at most this many numbers shows them all

VALUE_COLOR = "#1b7837"  # dark green: forward values
GRAD_COLOR = "#c62828"  # red: gradients
MUTED = "#777777"
_NEGATIVE = (33, 102, 172)  # heatmap ends: blue for -max|v|, red for +max|v|
_POSITIVE = (178, 24, 43)
_STYLES = {
    "parameter": 'shape=box style="filled" fillcolor="#dbe9ff" color="#3b6fb6"',
    "input": 'shape=ellipse style="filled" fillcolor="#eeeeee" color="#888888"',
    "constant": 'shape=plaintext fontcolor="#666666" fontsize=10',
    "operation": 'shape=box style="rounded,filled" fillcolor="#ffffff" color="#444444"',
    "output": 'shape=octagon style="filled" fillcolor="#ffd6d6" color="#9e1b1b"',
    "module": 'shape=box3d style="filled" fillcolor="#e8f5e9" color="#2e7d32"',
}
_RED = ' color="red" penwidth=2.5'


# ----------------------------------------------------------------------------------------------
# Numbers
# ----------------------------------------------------------------------------------------------
def _num(v) -> str:
    """One number, 4 significant digits; integers as they are."""
    v = np.asarray(v).reshape(())
    if v.dtype.kind in "biu":
        return str(v.item())
    return f"{float(v):.4g}"


def _list(a) -> str:
    return "[" + ", ".join(_num(v) for v in np.asarray(a).ravel()) + "]"


def _numeric(a) -> bool:
    return np.asarray(a).dtype.kind in "biuf"


def _is_heatmap(a) -> bool:
    a = np.asarray(a)
    return (a.dtype.kind == "f" and 1 < a.size and a.ndim <= 2
            and all(d <= HEATMAP_MAX for d in a.shape))


def _summary_line(a, grad: bool) -> str:
    """One line for a large tensor: mean (norm for a gradient), min and max."""
    a = np.asarray(a)
    if not _numeric(a):
        return f"{a.size} values"
    f = a.astype(np.float64)
    first = f"norm {np.linalg.norm(f):.3g}" if grad else f"mean {f.mean():.3g}"
    return f"{first}  min {f.min():.3g}  max {f.max():.3g}"


def _edge_text(a, grad: bool) -> str:
    """What an edge label says of a tensor: a number, a few numbers, or shape and summary."""
    a = np.asarray(a)
    if a.size == 1:
        return _num(a)
    if a.size <= 3 and _numeric(a):
        return _list(a)
    if not _numeric(a):
        return f"{_shape_text(np.shape(a))} {a.dtype}"
    f = a.astype(np.float64)
    if grad:
        return f"norm {np.linalg.norm(f):.3g}"
    return f"{_shape_text(np.shape(a))} mean {f.mean():.3g}"


def _cell_color(t: float) -> str:
    """Diverging colour for ``t`` in [-1, 1]: blue, white at 0, red."""
    if not np.isfinite(t):
        return "#999999"
    t = max(-1.0, min(1.0, t))
    end = _POSITIVE if t > 0 else _NEGATIVE
    rgb = (round(255 + (c - 255) * abs(t)) for c in end)
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _heatmap(a) -> str:
    """A small tensor as a table of coloured cells (a vector is one row)."""
    a = np.asarray(a, dtype=np.float64)
    a = a.reshape(1, -1) if a.ndim < 2 else a
    finite = np.abs(a[np.isfinite(a)])
    scale = finite.max() if finite.size and finite.max() > 0 else 1.0
    rows = "".join(
        "<TR>" + "".join(f'<TD WIDTH="{CELL}" HEIGHT="{CELL}" FIXEDSIZE="TRUE" '
                         f'BGCOLOR="{_cell_color(v / scale)}"></TD>' for v in row) + "</TR>"
        for row in a)
    height, width = a.shape
    return (f'<TABLE BORDER="1" COLOR="#aaaaaa" CELLBORDER="0" CELLSPACING="0" '
            f'CELLPADDING="0" FIXEDSIZE="TRUE" WIDTH="{width * CELL + 2}" '
            f'HEIGHT="{height * CELL + 2}">{rows}</TABLE>')


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------
def _esc(text: str) -> str:
    """Text for an HTML-like label: ``<``, ``>`` and ``&`` escaped."""
    return html.escape(text, quote=False)


def _font(text: str, color: str, size: int | None = None, italic=False) -> str:
    body = f"<I>{text}</I>" if italic else text
    size_attr = f' POINT-SIZE="{size}"' if size else ""
    return f'<FONT COLOR="{color}"{size_attr}>{body}</FONT>'


def _row(content: str, align="LEFT") -> str:
    return f'<TR><TD ALIGN="{align}" BALIGN="LEFT">{content}</TD></TR>'


def _table(rows) -> str:
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="0" CELLPADDING="1">'
            + "".join(rows) + "</TABLE>>")


def _array_rows(word: str, a, color: str, missing: str) -> list:
    """The rows of a node label showing one array (its value or its gradient)."""
    if a is None:
        return [_row(_font(f"{word}: {missing}", MUTED, 9, italic=True))]
    a = np.asarray(a)
    if a.size == 1:
        return [_row(_font(f"{word} {_num(a)}", color))]
    grad = word == "grad"
    if _is_heatmap(a):
        if a.size <= SHOW_NUMBERS:
            caption = _font(f"{word} {_list(a)}", color)
        else:
            finite = a[np.isfinite(a)]
            span = (f"min {finite.min():.3g}  max {finite.max():.3g}" if finite.size
                    else "no finite values")
            caption = _font(word, color) + "&nbsp;&nbsp;" + _font(span, MUTED, 9)
        return [_row(caption), _row(_heatmap(a))]
    if a.size <= SHOW_NUMBERS and _numeric(a):
        return [_row(_font(f"{word} {_list(a)}", color))]
    return [_row(_font(f"{word} {_esc(_summary_line(a, grad))}", color))]


def _title(n: TraceNode) -> str:
    name = _esc(n.name)
    if n.kind in ("parameter", "input"):
        return f"<B>{name} ({n.kind})</B>" if n.name != n.kind else f"<B>{name}</B>"
    if n.kind == "module":
        return f"<B>{name}</B>"
    op = _esc(n.op or "")
    if n.named:
        return f"<B>{name}</B> = {op}"
    return f"<B>{name}</B>"


def _node_label(n: TraceNode, show_values: bool, show_grads: bool) -> str:
    if n.kind == "constant":
        return _constant_label(n, show_values)
    rows = [_row(_title(n), "CENTER")]
    if n.shape:  # a scalar needs no shape line
        rows.append(_row(_font(f"{_shape_text(n.shape)} {n.dtype}", MUTED, 9), "CENTER"))
    if show_values:
        rows += _array_rows("value", n.value, VALUE_COLOR, "not recorded")
    if show_grads and n.kind != "input":
        rows += _array_rows("grad", n.grad, GRAD_COLOR, "not available")
    if n.kind == "module" and show_grads:
        for member, value, grad in n.members:
            short = member.rpartition(".")[2]
            norm = ("not available" if grad is None
                    else f"{np.linalg.norm(np.asarray(grad, np.float64)):.3g}")
            rows.append(_row(_font(f"{_esc(short)} {_shape_text(np.shape(value))}: "
                                   f"‖grad‖ {norm}", "#2e5e30", 9)))
    return _table(rows)


def _shape_text(shape) -> str:
    shape = tuple(shape)
    if not shape:
        return "scalar"
    return "×".join(str(d) for d in shape) if len(shape) > 1 else f"({shape[0]},)"


def _constant_label(n: TraceNode, show_values: bool) -> str:
    a = n.value
    if a is None or np.size(a) == 1 or not show_values:
        return _table([_row(_esc(n.name), "CENTER")])
    rows = [_row(_font(f"constant {_shape_text(np.shape(a))}", "#666666", 9), "CENTER")]
    a = np.asarray(a)
    if a.size <= 6 and _numeric(a):
        rows.append(_row(_font(_list(a), "#666666", 9), "CENTER"))
    elif _is_heatmap(a):
        rows.append(_row(_heatmap(a), "CENTER"))
    else:
        rows.append(_row(_font(_esc(_summary_line(a, False)), "#666666", 9), "CENTER"))
    return _table(rows)


def _edge_label(e, show_values: bool, show_grads: bool) -> str | None:
    parts = []
    if show_values:
        text = "value n/a" if e.value is None else _edge_text(e.value, False)
        parts.append(_font(_esc(text), VALUE_COLOR))
    if show_grads and e.differentiable:
        text = "grad n/a" if e.grad is None else _edge_text(e.grad, True)
        parts.append(_font(_esc(text), GRAD_COLOR))
    if not parts:
        return None
    return "<" + "<BR/>".join(parts) + ">"


def _legend(tr: Trace, heatmaps: bool, highlighted: bool, values: bool, grads: bool) -> str:
    def swatch(style_fill, text, border="#444444"):
        return (f'<TR><TD BGCOLOR="{style_fill}" COLOR="{border}" BORDER="1" WIDTH="14">'
                f'</TD><TD ALIGN="LEFT">{text}</TD></TR>')

    kinds = {n.kind for n in tr.nodes}
    rows = ['<TR><TD COLSPAN="2"><B>legend</B></TD></TR>']
    if "parameter" in kinds:
        rows.append(swatch("#dbe9ff", "parameter (blue box)", "#3b6fb6"))
    if "input" in kinds:
        rows.append(swatch("#eeeeee", "input: data, label, target (ellipse)", "#888888"))
    if "constant" in kinds:
        rows.append('<TR><TD>' + _font("2", "#666666") + '</TD><TD ALIGN="LEFT">'
                    'constant (grey text)</TD></TR>')
    if "operation" in kinds:
        rows.append(swatch("#ffffff", "operation (rounded box)"))
    if "module" in kinds:
        rows.append(swatch("#e8f5e9", "layer: its operations in one box", "#2e7d32"))
    rows.append(swatch("#ffd6d6", "output, the loss (octagon)", "#9e1b1b"))
    if values:
        rows.append('<TR><TD>' + _font("0.5", VALUE_COLOR) + '</TD><TD ALIGN="LEFT">'
                    + _font("value that flowed forward (top)", VALUE_COLOR) + '</TD></TR>')
    if grads:
        rows.append('<TR><TD>' + _font("-0.1", GRAD_COLOR) + '</TD><TD ALIGN="LEFT">'
                    + _font("gradient dL/d· that flowed back (below)", GRAD_COLOR)
                    + '</TD></TR>')
    if any(not e.differentiable for e in tr.edges):
        rows.append('<TR><TD>- - →</TD><TD ALIGN="LEFT">dashed: takes no gradient</TD></TR>')
    if heatmaps:
        cells = "".join(f'<TD WIDTH="{CELL}" HEIGHT="{CELL}" FIXEDSIZE="TRUE" '
                        f'BGCOLOR="{_cell_color(t)}"></TD>' for t in (-1, -0.5, 0, 0.5, 1))
        rows.append(f'<TR><TD><TABLE BORDER="1" COLOR="#aaaaaa" CELLBORDER="0" '
                    f'CELLSPACING="0" CELLPADDING="0"><TR>{cells}</TR></TABLE></TD>'
                    f'<TD ALIGN="LEFT">heatmap: − max|v| … 0 … + max|v|</TD></TR>')
    if highlighted:
        rows.append('<TR><TD>' + _font("<B>━</B>", "red") + '</TD><TD ALIGN="LEFT">'
                    'path of the highlighted tensor</TD></TR>')
    return ('<<TABLE BORDER="1" COLOR="#bbbbbb" CELLBORDER="0" CELLSPACING="2" '
            'CELLPADDING="1" BGCOLOR="#fafafa">' + "".join(rows) + "</TABLE>>")


def _banner(title: str | None, notes: list) -> str | None:
    """The graph's label at the top: the title and what could not be shown."""
    rows = []
    if title:
        rows.append(f'<TR><TD><FONT POINT-SIZE="14"><B>{_esc(title)}</B></FONT></TD></TR>')
    for note in notes:  # wrapped: one long line would make the picture far wider than the graph
        text = '<BR ALIGN="LEFT"/>'.join(_esc(line) for line in textwrap.wrap(f"⚠ {note}", 100))
        rows.append(f'<TR><TD BGCOLOR="#fff4c2" BORDER="1" COLOR="#c9a400" ALIGN="LEFT">'
                    f'{text}<BR ALIGN="LEFT"/></TD></TR>')
    if not rows:
        return None
    return ('<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="4" CELLPADDING="4">'
            + "".join(rows) + "</TABLE>>")


def _notes(tr: Trace) -> list:
    """What is not shown and why: the Trace's message, then each distinct missing reason."""
    notes = [tr.message] if tr.message else []
    for n in tr.nodes:
        if n.missing and n.missing not in notes:
            notes.append(n.missing)
    return notes


# ----------------------------------------------------------------------------------------------
# Highlight: the paths from a tensor to the output
# ----------------------------------------------------------------------------------------------
def _highlight_id(tr: Trace, highlight, names, collapse) -> str:
    """The id of the node ``highlight`` stands for (a Tensor, a TraceNode, an id or a name)."""
    if isinstance(highlight, TraceNode):
        return highlight.id
    if isinstance(highlight, str):
        try:
            return tr[highlight].id
        except KeyError as exc:
            raise ValueError(f"draw: highlight: {exc.args[0]}") from None
    if not isinstance(highlight, Tensor):
        raise TypeError(f"draw: highlight expects a Tensor, got {type(highlight).__name__}")
    with contextlib.suppress(KeyError):  # a parameter inside a collapsed layer: its box
        return tr.node_of(highlight).id
    raise ValueError("draw: highlight: this tensor is not a node of the drawing (give it a "
                     "name with names= or pass the node's id)")


def _on_paths(tr: Trace, start: str) -> tuple[set, set]:
    """(node ids, edges) on some path from ``start`` to the output: the union of every path
    `Trace.paths` would list, found in one forward and one backward sweep over the edges."""
    reach, stack = {start}, [start]
    while stack:
        at = stack.pop()
        for e in tr.uses_of(at):
            if e.differentiable and e.target not in reach:
                reach.add(e.target)
                stack.append(e.target)
    if tr.output not in reach:
        return set(), set()
    back, stack = {tr.output}, [tr.output]
    while stack:
        at = stack.pop()
        for e in tr.inputs_of(at):
            if e.differentiable and e.source in reach and e.source not in back:
                back.add(e.source)
                stack.append(e.source)
    edges = {id(e) for e in tr.edges if e.differentiable and e.source in back and e.target in back}
    return back, edges


def _long_edges(tr: Trace, depth: dict, big: bool, edge_labels: bool):
    """(parameters and inputs drawn once per use, edges drawn from a stand-in or None).

    ``dot`` lays out an edge spanning k columns as k hidden nodes and its layout grows about
    quadratically with them: a leaf used all over the graph is drawn once per use, and when
    operations' results are used far away too (a value reused at every step of a loop) those
    long edges start at a small stand-in ("↪ name") next to the operation that reads it.
    """
    uses = {}
    for e in tr.edges:
        uses[e.source] = uses.get(e.source, 0) + 1
    spread = {n.id for n in tr.nodes if n.kind in ("parameter", "input")
              and uses.get(n.id, 0) > (1 if big else SPREAD_USES)}

    def span(e):
        return depth.get(e.source, 0) - depth.get(e.target, 0) - 1

    hidden = sum(max(span(e), 0) for e in tr.edges if e.source not in spread)
    if hidden * (2 if edge_labels else 1) <= HIDDEN_NODES:
        return spread, None
    return spread, {id(e) for e in tr.edges
                    if e.source not in spread and span(e) > 2 and uses[e.source] > 1}


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _modules(collapse) -> list:
    if collapse is None:
        return []
    modules = list(collapse) if isinstance(collapse, (list, tuple)) else [collapse]
    for m in modules:
        if not hasattr(m, "named_parameters"):
            raise TypeError(f"draw: collapse expects nn.Module objects, got {type(m).__name__}")
    return modules


# ----------------------------------------------------------------------------------------------
# Left to right, or top to bottom for long chains of wide boxes
# ----------------------------------------------------------------------------------------------
_FIT = (1600.0, 1000.0)  # points: the page or screen the picture should be readable on


def _label_size(label: str) -> tuple[float, float]:
    """A rough size (points) of an HTML label: its longest line of text and its rows."""
    width, height = 0.0, 0.0
    for w, h in re.findall(r'FIXEDSIZE="TRUE" WIDTH="(\d+)" HEIGHT="(\d+)"', label):
        width, height = max(width, float(w)), height + float(h)
    for row in re.split(r"<TR>|<BR/>", label):
        text = html.unescape(re.sub(r"<[^>]*>", "", row))
        if text.strip():
            width = max(width, 6.2 * len(text))
            height += 14.0
    return width + 16.0, height + 10.0


def _depths(tr: Trace) -> dict:
    """Each node's longest distance (in edges) to the output: about the column ``dot`` puts it
    in, counted from the output."""
    depth = {tr.output: 0}
    into = {}
    for e in tr.edges:
        into.setdefault(e.target, []).append(e.source)
    for n in tr.nodes:  # consumers come before the nodes they read
        for source in into.get(n.id, ()):
            depth[source] = max(depth.get(source, 0), depth.get(n.id, 0) + 1)
    return depth


def _direction(tr: Trace, labels: dict, depth: dict, edge_labels: bool) -> str:
    """"LR" (a circuit read left to right) unless the picture would be far too wide to read
    at the size of a screen while top to bottom would fit: then "TB"."""
    ranks = {}
    for n in tr.nodes:
        ranks.setdefault(depth.get(n.id, 0), []).append(_label_size(labels[n.id]))
    gap = 29.0 + (100.0 if edge_labels else 0.0)
    lr_w = sum(max(w for w, _ in r) for r in ranks.values()) + gap * len(ranks)
    lr_h = max(sum(h for _, h in r) + 18.0 * len(r) for r in ranks.values())
    tb_w = max(sum(w for w, _ in r) + 18.0 * len(r) for r in ranks.values()) + 200.0
    tb_h = sum(max(h for _, h in r) for r in ranks.values()) + (29.0 + 30.0) * len(ranks)

    def fit(w, h):
        return min(_FIT[0] / w, _FIT[1] / h)

    return "TB" if fit(lr_w, lr_h) < 0.6 * fit(tb_w, tb_h) else "LR"


# ----------------------------------------------------------------------------------------------
# The drawing
# ----------------------------------------------------------------------------------------------
def _capped(tr: Trace, max_nodes: int) -> Drawing:
    count = len(tr.nodes)
    ops = sum(n.kind in ("operation", "output", "module") for n in tr.nodes)
    params = sum(n.kind == "parameter" for n in tr.nodes)
    rest = count - ops - params
    text = (f"graph of {ops:,} operations, {params:,} parameters and {rest:,} inputs and "
            f"constants ({count:,} nodes): more than max_nodes={max_nodes:,}; drawing skipped "
            f"(pass a larger max_nodes, collapse=model, or draw a smaller piece)")
    return Drawing(f'digraph chainrule {{\n  note [shape=note label="{text}"];\n}}\n', count,
                   text, tr)


def draw(x, *, names=None, collapse=None, highlight=None, show_values=True, show_grads=True,
         max_nodes=MAX_NODES, title=None, notes=True) -> Drawing:
    """The forward and backward pass behind ``x`` drawn as a circuit (see the module docstring).

    ``x``: a Tensor (its `Trace` is built here, naming tensors after the caller's variables) or
    a `Trace` already built (then ``names`` and ``collapse`` must be given to `trace` instead).
    ``names``: ``{name: tensor}`` naming leaves and intermediate results
    (``names=dict(model.named_parameters())`` names a model's weights).
    ``collapse``: an ``nn.Module`` (or a list of them): each layer that owns parameters becomes
    one box, with its output's value and gradient and its parameters' gradient norms.
    ``highlight``: a tensor (or a node's id or name); the paths from it to the output are
    outlined in red.
    ``show_values`` / ``show_grads``: put forward values / gradients on nodes and edges.
    ``max_nodes``: above this many nodes, return a note with the count instead of a layout.
    ``title``: a caption on top.
    ``notes``: say on top what could not be shown and why (False for a page that says it itself).
    """
    modules = _modules(collapse)
    tr = as_trace("draw", x, names, modules or None)
    if len(tr.nodes) > max_nodes:
        return _capped(tr, max_nodes)
    on_nodes, on_edges = set(), set()
    if highlight is not None:
        on_nodes, on_edges = _on_paths(tr, _highlight_id(tr, highlight, names, collapse))

    big = len(tr.nodes) > SPREAD_LEAVES_ABOVE
    edge_labels = not big and (show_values or show_grads)
    labels = {n.id: _node_label(n, show_values, show_grads) for n in tr.nodes}
    depth = _depths(tr)
    direction = "LR" if big else _direction(tr, labels, depth, edge_labels)
    spread, stubbed = _long_edges(tr, depth, big, edge_labels)
    lines = ["digraph chainrule {",
             f'  graph [rankdir={direction} nodesep=0.35 ranksep=0.4 fontname="Helvetica" '
             f'bgcolor="white"{" nslimit=2" if stubbed is not None else ""}];',
             '  node [fontname="Helvetica" fontsize=11 margin="0.1,0.05"];',
             '  edge [fontname="Helvetica" fontsize=10 arrowsize=0.7 color="#555555"];']
    banner = _banner(title, _notes(tr) if notes else [])
    if banner:
        lines.append(f"  labelloc=t; labeljust=c; label={banner};")
    definitions = {}
    for n in tr.nodes:
        pen = _RED if n.id in on_nodes else ""
        definitions[n.id] = f"{_STYLES[n.kind]}{pen} label={labels[n.id]}"
        lines.append(f'  {n.id} [id="{n.id}" {definitions[n.id]}];')
    heatmaps = any("BGCOLOR=" in label for label in labels.values())
    copies = {}
    for e in tr.edges:
        source = e.source
        if source in spread:
            k = copies[source] = copies.get(source, 0) + 1
            if k > 1:  # one copy per further use
                source = f"{e.source}_{k}"
                lines.append(f'  {source} [id="{source}" {definitions[e.source]}];')
        elif stubbed is not None and id(e) in stubbed:  # a stand-in next to the consumer
            source = f"{e.source}_to_{e.target}_{e.index}"
            lines.append(f'  {source} [id="{source}" shape=plaintext fontsize=9 '
                         f'fontcolor="{MUTED}" label="↪ {_dot_escape(tr[e.source].name)}"];')
        attributes = [f'id="e_{e.source}_{e.target}_{e.index}"']
        label = _edge_label(e, show_values, show_grads) if edge_labels else None
        if label is not None:
            attributes.append(f"label={label}")
        if not e.differentiable:
            attributes.append('style=dashed color="#999999"')
        if id(e) in on_edges:
            attributes.append(_RED.strip())
        lines.append(f"  {source} -> {e.target} [{' '.join(attributes)}];")
    if not big:
        lines.append(f"  legend [shape=plain fontsize=10 label="
                     f"{_legend(tr, heatmaps, bool(on_nodes), show_values, show_grads)}];")
        lines.append("  { rank=sink; legend; }")
    return Drawing("\n".join(lines) + "\n}\n", len(tr.nodes), None, tr)


class Drawing:
    """A graph drawing: ``.source`` (DOT text), rendered on demand by Graphviz's ``dot``.

    ``node_count`` is the number of nodes of the graph; ``message`` says why the drawing was
    skipped (too many nodes), else None; ``trace`` is the `Trace` it shows (None when made from
    DOT text alone).
    """

    def __init__(self, source: str, node_count: int, message: str | None = None,
                 trace: Trace | None = None):
        self.source = source
        self.node_count = node_count
        self.message = message
        self.trace = trace

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
        args = [dot, f"-T{fmt}"] + ([f"-Gdpi={PNG_DPI}"] if fmt == "png" else [])
        try:
            result = subprocess.run(args, input=self.source.encode(), capture_output=True,
                                    timeout=timeout)
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
