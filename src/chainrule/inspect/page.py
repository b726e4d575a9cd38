"""One self-contained HTML page that steps through a real backward pass.

``write_page(loss, "backprop.html")`` runs the backward pass once more (nothing is written to any
``.grad``) and records, node by node in the order the engine visits them (reverse topological),
the upstream gradient, the local-derivative formula from the table, and the gradient that flows
to each input. The page shows the graph (inline SVG when Graphviz's ``dot`` is installed) and a
Next / Prev / End step-through; the last step lists every leaf's total gradient, the numbers
``backward()`` puts in ``.grad``. No network access is needed to open it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from chainrule import autograd
from chainrule.inspect.draw import draw, only_our_hooks
from chainrule.inspect.graph import formulas, input_names, op_name, walk
from chainrule.tensor import Tensor


def _show(a) -> str:
    a = np.asarray(a)
    if a.size <= 6:
        return np.array2string(a, precision=6, separator=", ", suppress_small=True)
    return f"shape {a.shape}, norm {np.linalg.norm(a):.6g}"


def _local(g, gi):
    """The local derivative, when it is a single number: gradient out / gradient in."""
    g, gi = np.asarray(g), np.asarray(gi)
    if g.size == 1 and gi.size == 1 and float(g) != 0:
        return f"{float(gi) / float(g):.6g}"
    return None


def record_backward(loss, names=None):
    """The steps of the backward pass of ``loss`` and each leaf's total gradient."""
    if not isinstance(loss, Tensor) or loss.grad_fn is None:
        raise ValueError("write_page: expected a tensor made by operations on tensors that "
                         "require grad")
    graph = walk(loss)
    if any(node.freed for node in graph.nodes):
        raise RuntimeError("write_page: the graph's saved values were freed by backward(); "
                           "call it before backward() or use backward(retain_graph=True)")
    labels = {id(t): name for name, t in (names or {}).items()}
    named = {id(t.grad_fn): name for name, t in (names or {}).items()
             if isinstance(t, Tensor) and t.grad_fn is not None}
    node_label, dot_id = {}, {}
    for i, node in enumerate(graph.nodes):
        node_label[node] = f"{op_name(node)} #{len(graph.nodes) - i}" + (
            f" ({named[id(node)]})" if id(node) in named else "")
        dot_id[node] = f"op{i}"  # the id `draw` gives the same node (both use walk's order)
    leaf_label = {id(leaf): labels.get(id(leaf)) or leaf.name or f"leaf {i}"
                  for i, leaf in enumerate(graph.leaves)}

    upstream, steps = {}, []

    def keeper(node):
        def keep(g):
            upstream[node] = np.array(g.data, copy=True)

        return keep

    def on_backward(node, grads):
        g = upstream.get(node)
        names_in = input_names(node)
        rules = formulas(node)
        flows = []
        for i, (parent, gi) in enumerate(zip(node.parents, grads)):
            if parent is None or gi is None:
                continue
            target = node_label[parent] if isinstance(parent, autograd.Node) else \
                leaf_label[id(parent)]
            flows.append({"input": names_in[i] if i < len(names_in) else str(i),
                          "to": target, "formula": rules[i] if i < len(rules) else "",
                          "local": _local(g, gi), "gradient": _show(gi)})
        steps.append({"node": node_label[node], "dot_id": dot_id[node], "upstream": _show(g),
                      "flows": flows})

    saved = (autograd.anomaly.enabled, autograd.anomaly.on_forward, autograd.anomaly.on_backward)
    autograd.anomaly.enabled = True
    autograd.anomaly.on_forward = lambda *args: None
    autograd.anomaly.on_backward = on_backward
    try:
        with only_our_hooks(graph, keeper):
            totals = autograd.backward([loss], [np.ones_like(loss.data)], retain_graph=True,
                                       inputs=list(graph.leaves))
    finally:
        (autograd.anomaly.enabled, autograd.anomaly.on_forward,
         autograd.anomaly.on_backward) = saved
    leaves = [{"name": leaf_label[id(leaf)], "gradient": _show(g.data),
               "values": np.asarray(g.data, np.float64).ravel().tolist()}
              for leaf, g in zip(graph.leaves, totals) if g is not None]
    return {"loss": _show(loss.data), "steps": steps, "leaves": leaves}


_SCRIPT = """
const data = JSON.parse(document.getElementById('steps').textContent);
let at = 0;
const view = document.getElementById('view');
const counter = document.getElementById('counter');
function esc(s) { const d = document.createElement('div'); d.textContent = s; return d.innerHTML; }
function mark(id) {
  // the SVG that dot writes names each node by a <title> holding its DOT id
  document.querySelectorAll('#graph g.node').forEach(g => {
    const title = g.querySelector('title');
    g.classList.toggle('current', title !== null && title.textContent === id);
  });
}
function show() {
  const total = data.steps.length + 1;
  counter.textContent = 'step ' + (at + 1) + ' of ' + total;
  mark(at < data.steps.length ? data.steps[at].dot_id : null);
  if (at < data.steps.length) {
    const s = data.steps[at];
    let rows = s.flows.map(f => '<tr><td>' + esc(f.input) + ' &rarr; ' + esc(f.to) +
      '</td><td><code>' + esc(f.formula) + '</code></td><td>' + esc(f.local ?? '') +
      '</td><td>' + esc(f.gradient) + '</td></tr>').join('');
    view.innerHTML = '<h2>' + esc(s.node) + '</h2><p>upstream gradient: <b>' +
      esc(s.upstream) + '</b></p><table><tr><th>input</th><th>local derivative</th>' +
      '<th>value</th><th>upstream &times; local = gradient to input</th></tr>' + rows +
      '</table>';
  } else {
    view.innerHTML = '<h2>done: the gradient of every leaf</h2><table id="leaf-grads">' +
      '<tr><th>leaf</th><th>gradient (sum over every path)</th></tr>' +
      data.leaves.map(l => '<tr data-name="' + esc(l.name) + '" data-values="' +
        l.values.join(' ') + '"><td>' + esc(l.name) + '</td><td>' + esc(l.gradient) +
        '</td></tr>').join('') + '</table>';
  }
}
document.getElementById('next').onclick = () => {
  at = Math.min(at + 1, data.steps.length); show(); };
document.getElementById('prev').onclick = () => { at = Math.max(at - 1, 0); show(); };
document.getElementById('end').onclick = () => { at = data.steps.length; show(); };
show();
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
#graph svg { max-width: 100%; height: auto; }
#graph g.node.current polygon, #graph g.node.current path, #graph g.node.current ellipse {
  stroke: #d00; stroke-width: 3; }
table { border-collapse: collapse; margin-top: .5em; }
td, th { border: 1px solid #ccc; padding: .3em .6em; text-align: left; }
button { font-size: 1em; margin-right: .5em; }
"""


def write_page(loss, path, names=None, title="backpropagation, step by step") -> Path:
    """Write the step-through page for ``loss`` to ``path``; returns the path."""
    data = record_backward(loss, names)
    try:
        svg = draw(loss, names=names).render("svg").decode()
        svg = svg[svg.find("<svg"):]
    except RuntimeError:
        svg = "<p>(install Graphviz's <code>dot</code> to see the graph drawn here)</p>"
    payload = json.dumps(data).replace("</", "<\\/")
    page = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f"<p>output: {html.escape(data['loss'])}. The backward pass visits the nodes in "
            f"reverse topological order; at each, the upstream gradient times the local "
            f"derivative flows to each input, and a value used by several nodes sums what "
            f"flows back from each.</p>\n<div id='graph'>{svg}</div>\n"
            f"<p><button id='prev'>Prev</button><button id='next'>Next</button>"
            f"<button id='end'>End</button> <span id='counter'></span></p>\n"
            f"<div id='view'></div>\n<script type='application/json' id='steps'>{payload}"
            f"</script>\n<script>{_SCRIPT}</script>\n</body></html>\n")
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
