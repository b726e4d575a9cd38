"""One self-contained HTML page that opens the backward pass up: a glass box, step by step.

``write_page(loss, "backprop.html")`` (or a `Trace` instead of ``loss``) writes a single file that
needs no network: the graph as inline SVG (a plain list when Graphviz's ``dot`` is missing), the
`Trace` as JSON and a small script. Every number comes from the Trace (`chainrule.inspect.record`),
which replays the engine's own rules in the engine's order, so the page agrees with ``.grad``.

* Prev / Next (or the arrow keys, Home / End) walk the backward pass: the node being visited is
  outlined on the graph (CSS class ``current`` on its SVG element, whose id is the TraceNode's
  id), the edges its gradient flows back along are animated (class ``flowing``) and labelled
  with the number that flows, and a box next to the node repeats the step's arithmetic.
* The side panel spells the step out: the upstream gradient ∂L/∂node, for each input the local
  derivative as a formula in the user's names with the numbers put in, and upstream × local,
  the gradient that flows to the input. A value used several times (a fan-out) shows the sum of
  what flowed back from each use.
* Clicking a node shows its whole chain: every path to the loss as a product of local
  derivatives, summed over the paths, equal to the node's gradient.
* The last step is one step of gradient descent, ``w ← w − α ∂L/∂w`` for every parameter.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import numpy as np

from chainrule.inspect.record import Trace, as_trace

__all__ = ["write_page", "page_data"]

# ----------------------------------------------------------------------------------------------
# Numbers and names as text
# ----------------------------------------------------------------------------------------------
def _num(v) -> str:
    """A number with 4 significant digits and a real minus sign."""
    v = float(v)
    if v == 0:
        return "0"
    return f"{v:.4g}".replace("-", "−")


def _factor(v) -> str:
    """A number inside a product: negative ones in parentheses."""
    text = _num(v)
    return f"({text})" if text.startswith("−") else text


def _scalar(a):
    """The number in ``a`` when it holds exactly one, else None."""
    if a is None:
        return None
    a = np.asarray(a)
    if a.size != 1 or a.dtype.kind not in "biuf":
        return None
    return float(a.reshape(()))


def _tensor_text(a) -> str:
    """A number, up to 6 numbers in full, or shape · norm · range for more."""
    if a is None:
        return "unknown"
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        return f"{a.size} values"
    if a.size == 1:
        return _num(a.reshape(()))
    if a.size <= 6:
        return "[" + ", ".join(_num(v) for v in a.ravel()) + "]"
    f = np.asarray(a, np.float64)
    return (f"{_shape(a)} tensor · norm {_num(np.linalg.norm(f))} · range "
            f"{_num(f.min())} … {_num(f.max())}")


def _shape(a) -> str:
    shape = tuple(np.shape(a))
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _data(prefix: str, a) -> str:
    """Data attributes holding ``a`` at full precision, for scripts and tests."""
    if a is None:
        return ""
    a = np.asarray(a)
    if a.dtype.kind not in "biuf":
        return ""
    f = np.asarray(a, np.float64)
    attrs = [f'data-{prefix}-shape="{" ".join(map(str, a.shape))}"',
             f'data-{prefix}-norm="{float(np.linalg.norm(f))!r}"',
             f'data-{prefix}-sum="{float(f.sum())!r}"']
    if a.size == 1:
        attrs.insert(0, f'data-{prefix}="{float(f.reshape(()))!r}"')
    if a.size <= 64:
        attrs.append(f'data-{prefix}-values="{" ".join(repr(float(v)) for v in f.ravel())}"')
    return " " + " ".join(attrs)


def _simple(name: str) -> bool:
    return re.fullmatch(r"[\w.\[\]]+", name) is not None


def _sym(name: str) -> str:
    """A name as it sits in ∂L/∂name: names with spaces in parentheses."""
    return name if _simple(name) else f"({name})"


class _Names:
    """How the page writes derivatives: ∂L/∂x, with L the output's name when it has a short one."""

    def __init__(self, tr: Trace):
        out = tr.loss
        self.top = out.name if out.named and _simple(out.name) else "L"
        self.tr = tr

    def d(self, top, bottom) -> str:
        return f"∂{_sym(_short(top))}/∂{_sym(_short(bottom))}"

    def dl(self, name) -> str:
        return f"∂{self.top}/∂{_sym(_short(name))}"

    def rule(self, text: str) -> str:
        """A rule from the Trace (written with ∂L/∂) in the page's notation."""
        return text.replace("∂L/∂", f"∂{self.top}/∂") if text else text


def _short(node) -> str:
    """A node's name in formulas: a layer box "fc1 (Linear)" is "fc1"."""
    if isinstance(node, str):
        return node
    if node.kind == "module" and node.name.endswith(")") and " (" in node.name:
        return node.name.rpartition(" (")[0]
    return node.name


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def edge_id(e) -> str:
    """The DOT / SVG id of an edge: ``e_{source}_{target}_{index}``."""
    return f"e_{e.source}_{e.target}_{e.index}"


def _with_numbers(formula: str, tr: Trace, edge) -> str | None:
    """``formula`` with the values of the names it uses put in, or None when none is known."""
    if not formula:
        return None
    candidates = [tr[edge.target]] + [tr[i.source] for i in tr.inputs_of(edge.target)]
    known = {}
    for n in candidates:
        v = _scalar(n.value)
        if v is not None and n.name and n.kind != "constant":
            known[n.name] = v
    text, replaced = formula, False
    for name in sorted(known, key=len, reverse=True):
        number = _num(known[name])
        wrapped = f"({number})" if number.startswith("−") else number
        guard = r"(?<![\w.#\[])"
        pattern = guard + r"\(" + re.escape(name) + r"\)" + r"|" + guard + re.escape(name) + \
            r"(?![\w#\[])"
        text, count = re.subn(pattern, lambda _m, w=wrapped: w, text)
        replaced = replaced or count > 0
    if not replaced or text == formula:
        return None
    return text


# ----------------------------------------------------------------------------------------------
# What the page shows, built from the Trace
# ----------------------------------------------------------------------------------------------
def _grad_uses(tr: Trace, node_id: str) -> list:
    """The edges out of a node along which a gradient flowed back."""
    return [e for e in tr.uses_of(node_id) if e.differentiable and e.grad is not None]


def _link(node) -> str:
    return f'<a href="#" class="node-link" data-node="{_e(node.id)}">{_e(node.name)}</a>'


def _kind_word(node) -> str:
    return {"parameter": "parameter", "input": "input", "constant": "constant",
            "module": "layer", "output": "output"}.get(node.kind, node.op or "operation")


def _norm(a) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64)))


def _flow_card(tr: Trace, names: _Names, node, e, step_of) -> tuple[str, str, str]:
    """(panel card, overlay line, edge label) for the gradient flowing along edge ``e``."""
    src = tr[e.source]
    up, loc, grad = _scalar(node.grad), e.local, _scalar(e.grad)
    d_local = names.d(node, src)
    head = (f'<h4>to {_link(src)} <span class="kind">({_e(_kind_word(src))}, input '
            f'{e.index})</span></h4>')
    rows = []
    if up is not None and loc is not None and grad is not None:
        formula = names.rule(e.formula or "")
        parts = [d_local]
        if formula and formula != _num(loc):
            parts.append(_e(formula))
            numbers = _with_numbers(formula, tr, e)
            if numbers is not None and numbers != _num(loc):
                parts.append(_e(numbers))
        parts.append(f"<b>{_num(loc)}</b>")
        rows.append(f'<div class="local" data-local="{loc!r}"><span class="what">local '
                    f'derivative</span> {" = ".join(parts)}</div>')
        rows.append(f'<div class="product"{_data("grad", e.grad)} data-upstream="{up!r}" '
                    f'data-local="{loc!r}"><span class="what">flows back</span> '
                    f'{names.dl(src)} = {names.dl(node)} × {d_local} = '
                    f'{_num(up)} × {_factor(loc)} = <b>{_num(grad)}</b></div>')
        line = f"→ {_short(src)}: {_num(up)} × {_factor(loc)} = {_num(grad)}"
        label = f"{names.dl(src)} = {_num(grad)}"
    else:
        rule = names.rule(e.vjp) or "(rule unknown)"
        if e.formula:
            each = (' <span class="kind">(element by element)</span>'
                    if np.size(node.grad) > 1 else "")
            rows.append(f'<div class="local"><span class="what">local derivative</span> '
                        f'{d_local} = {_e(names.rule(e.formula))}{each}</div>')
        rows.append(f'<div class="product"{_data("grad", e.grad)}><span class="what">rule'
                    f'</span> {names.dl(src)} = {_e(rule)}</div>'
                    f'<div class="product"><span class="what">flows back</span> '
                    f'<b>{_e(_tensor_text(e.grad))}</b></div>')
        line = f"→ {_short(src)}: {_shape(e.grad)}, norm {_num(_norm(e.grad))}"
        label = f"{_shape(e.grad)} norm {_num(_norm(e.grad))}"
    uses = _grad_uses(tr, src.id)
    if src.kind == "parameter":
        if len(uses) == 1:
            rows.append(f'<div class="leaf-note">{_e(src.name)} is a parameter: this is its '
                        f'whole gradient, what <code>{_e(src.name)}.grad</code> holds after '
                        f'<code>backward()</code>.</div>')
        else:
            k = 1 + sorted(uses, key=lambda u: (step_of[u.target], u.index)).index(e)
            rows.append(f'<div class="leaf-note">{_e(src.name)} is used {len(uses)} times: '
                        f'this is contribution {k} of {len(uses)}; '
                        f'<code>{_e(src.name)}.grad</code> is their sum.</div>')
    elif len(uses) > 1:
        rows.append(f'<div class="leaf-note">{_e(src.name)} is used {len(uses)} times: its '
                    f'gradient is the sum of what flows back from each use.</div>')
    card = (f'<div class="flow" data-edge="{_e(edge_id(e))}" data-source="{_e(src.id)}">'
            f'{head}{"".join(rows)}</div>')
    return card, line, label


def _fanout(tr: Trace, names: _Names, node) -> str:
    uses = _grad_uses(tr, node.id)
    if len(uses) < 2:
        return ""
    parts = [_scalar(u.grad) for u in uses]
    items = "".join(f'<li data-edge="{_e(edge_id(u))}"{_data("part", u.grad)}>from '
                    f'{_link(tr[u.target])} (its input {u.index}): '
                    f'<b>{_e(_tensor_text(u.grad))}</b></li>' for u in uses)
    if all(p is not None for p in parts) and _scalar(node.grad) is not None:
        sum_text = (f'{names.dl(node)} = ' + " + ".join(_factor(p) for p in parts) +
                    f' = <b>{_num(_scalar(node.grad))}</b>')
    else:
        sum_text = (f'{names.dl(node)} = the sum of these {len(uses)} = '
                    f'<b>{_e(_tensor_text(node.grad))}</b>')
    return (f'<div class="fanout"{_data("total", node.grad)}><p><b>{_e(node.name)} is used '
            f'{len(uses)} times</b> (a fan-out): the gradients that flowed back from each use '
            f'add up.</p><ul>{items}</ul><p class="sum">{sum_text}</p></div>')


def _quiet(src) -> str:
    """A line for an input that takes no gradient."""
    if src.kind == "constant":
        text = f"the constant {_e(_tensor_text(src.value))}"
    else:
        text = f"{_link(src)} = {_e(_tensor_text(src.value))}"
    why = ("an input: it requires no gradient" if src.kind == "input" else
           "a number in the code" if src.kind == "constant" else "no gradient flows to it")
    return f'<li>{text} <span class="kind">({why})</span></li>'


def _unknown(src) -> str:
    """A line for an input whose share of the gradient the graph can no longer tell."""
    held = "" if src.grad is None else f"; its .grad is {_e(_tensor_text(src.grad))}"
    return (f'<li>{_link(src)} = {_e(_tensor_text(src.value))} <span class="kind">(the '
            f'gradient along this edge is not known{held})</span></li>')


def _step(tr: Trace, names: _Names, k: int, node, step_of) -> dict:
    total = len(tr.steps) + 1
    value = ("" if node.value is None else
             f'<p class="value"{_data("value", node.value)}><span class="what">forward value'
             f'</span> {_e(_short(node))} = '
             f'<b>{_e(_tensor_text(node.value))}</b></p>')
    if node.id == tr.output:
        upstream = (f'<p class="upstream"{_data("grad", node.grad)}><span class="what">start'
                    f'</span> {names.dl(node)} = <b>1</b> <span class="kind">(the output with '
                    f'respect to itself: the backward pass starts here)</span></p>')
    elif node.grad is None:
        upstream = (f'<p class="upstream missing">{names.dl(node)} is unknown: '
                    f'{_e(node.missing or "")}</p>')
    else:
        upstream = (f'<p class="upstream"{_data("grad", node.grad)}><span class="what">'
                    f'upstream</span> {names.dl(node)} = '
                    f'<b>{_e(_tensor_text(node.grad))}</b> <span class="kind">(what flowed '
                    f'back to {_e(_short(node))})</span></p>')
    missing = "" if node.missing is None or node.grad is None else \
        f'<p class="note">{_e(node.missing)}</p>'
    cards, lines, labels, flowing, quiet, unknown = [], [], {}, [], [], []
    for e in tr.inputs_of(node.id):
        if e.differentiable and e.grad is None and (tr.message or node.grad is None):
            unknown.append(_unknown(tr[e.source]))  # freed or not reached: not "no gradient"
            continue
        if not e.differentiable or e.grad is None:
            quiet.append(_quiet(tr[e.source]))
            continue
        card, line, label = _flow_card(tr, names, node, e, step_of)
        cards.append(card)
        lines.append(line)
        labels[edge_id(e)] = label
        flowing.append(edge_id(e))
    if node.kind == "module" and node.members:
        cards.append('<div class="flow members"><h4>inside the layer</h4><p>Its own rules '
                     'turn the upstream gradient into the gradients of its parameters:</p>'
                     '<ul>' + "".join(
                         f'<li data-member="{_e(m)}"{_data("grad", g)}>{names.dl(m)} = '
                         f'<b>{_e(_tensor_text(g))}</b></li>' for m, _, g in node.members) +
                     '</ul></div>')
    quiet_html = ('<div class="quiet"><p>No gradient goes to:</p><ul>' + "".join(quiet) +
                  "</ul></div>") if quiet else ""
    if unknown:
        quiet_html += ('<div class="quiet unknown"><p>Not known here (see the note above):</p>'
                       '<ul>' + "".join(unknown) + "</ul></div>")
    if not cards and not quiet and not unknown:
        cards.append('<p>No input of this node takes a gradient.</p>')
    op = f' <span class="kind">{_e(node.op)}</span>' if node.op and node.op != node.name else ""
    panel = (f'<h2>Step {k + 1} of {total}: {_e(node.name)}{op}</h2>{value}{upstream}{missing}'
             f'{_fanout(tr, names, node)}{"".join(cards)}{quiet_html}')
    if node.id == tr.output:
        head = f"{names.dl(node)} = 1"
    elif _scalar(node.grad) is not None:
        head = f"{names.dl(node)} = {_num(_scalar(node.grad))}"
    elif node.grad is not None:
        head = f"{names.dl(node)}: {_shape(node.grad)}, norm {_num(_norm(node.grad))}"
    else:
        head = f"{names.dl(node)} unknown"
    uses = _grad_uses(tr, node.id)
    if len(uses) > 1 and all(_scalar(u.grad) is not None for u in uses) and \
            _scalar(node.grad) is not None:
        head = (f"{names.dl(node)} = " + " + ".join(_factor(_scalar(u.grad)) for u in uses) +
                f" = {_num(_scalar(node.grad))}")
    overlay = (f'<div class="ov-head">step {k + 1}: {_e(node.name)}</div>'
               f'<div class="ov-up">{_e(head)}</div>' +
               "".join(f'<div class="ov-line">{_e(line)}</div>' for line in lines))
    return {"node": node.id, "panel": panel, "overlay": overlay, "flowing": flowing,
            "labels": labels, "summing": [edge_id(u) for u in uses] if len(uses) > 1 else []}


class _Indexed:
    """A Trace with its edges indexed by node: ``Trace.uses_of`` scans every edge, which a page
    asking once per node and per path cannot afford on a big graph."""

    def __init__(self, tr: Trace):
        self.tr = tr
        self._uses, self._inputs = {}, {}
        for e in tr.edges:
            self._uses.setdefault(e.source, []).append(e)
            self._inputs.setdefault(e.target, []).append(e)
        for edges in self._inputs.values():
            edges.sort(key=lambda e: e.index)
        self.steps = tr.steps

    def __getattr__(self, name):
        return getattr(self.tr, name)

    def __getitem__(self, key):
        return self.tr[key]

    def uses_of(self, node_id) -> list:
        return self._uses.get(node_id, [])

    def inputs_of(self, node_id) -> list:
        return self._inputs.get(node_id, [])

    def paths(self, node_id, limit=20) -> list:
        """The paths of `Trace.paths`, in its order, found without copying partial paths."""
        out, stack = [], [(node_id, None)]
        while stack and len(out) < limit:
            at, tail = stack.pop()
            if at == self.tr.output:
                path = []
                while tail is not None:
                    tail, e = tail
                    path.append(e)
                out.append(path[::-1])
                continue
            for e in reversed(self.uses_of(at)):
                if e.differentiable:
                    stack.append((e.target, (tail, e)))
        return out


_PATHS_SHOWN = 20  # paths listed in a node's chain
_FACTORS_SHOWN = 400  # local derivatives listed in one node's chain, over all its paths
_FACTORS_PER_PATH = 24  # a longer path shows its first and last factors
_ALL_CHAINS_UP_TO = 200  # nodes; a bigger graph lists the chains of its parameters only


def _chain_paths(g, node_id) -> tuple[list, bool]:
    """(paths to list, whether there are more)."""
    paths = g.paths(node_id, limit=_PATHS_SHOWN + 1)
    more = len(paths) > _PATHS_SHOWN
    paths, shown, factors = paths[:_PATHS_SHOWN], [], 0
    for p in paths:
        if shown and factors + len(p) > _FACTORS_SHOWN:
            return shown, True
        shown.append(p)
        factors += len(p)
    return shown, more


def _cut(items: list, gap):
    """``items``, or its first and last few with ``gap`` between when it is long."""
    if len(items) <= _FACTORS_PER_PATH:
        return items
    half = _FACTORS_PER_PATH // 2
    return items[:half] + [gap] + items[-half:]


def _chain(tr, names: _Names, node, paths, more) -> str:
    """The panel for a clicked node: every path to the loss as a product of local derivatives."""
    title = f'<h2>The chain from {_e(node.name)} to the output</h2>'
    if node.id == tr.output:
        return title + f'<p>{names.dl(node)} = 1: this is the output itself.</p>'
    if node.kind in ("input", "constant"):
        return title + (f'<p>{_e(node.name)} = {_e(_tensor_text(node.value))} is '
                        f'{"an input" if node.kind == "input" else "a constant"}: it requires '
                        f'no gradient, so the backward pass sends none to it.</p>')
    if not paths:
        return title + '<p>No path of differentiable operations leads from it to the output.</p>'
    blocks, products, all_scalar = [], [], True
    for k, path in enumerate(paths):
        symbols = " · ".join(_cut([names.d(tr[e.target], tr[e.source]) for e in path], "…"))
        which = f"path {k + 1}: " if len(paths) > 1 else ""
        long = f" <span class='kind'>({len(path)} factors)</span>" if \
            len(path) > _FACTORS_PER_PATH else ""
        if all(e.local is not None for e in path):
            product = float(np.prod([e.local for e in path]))
            products.append(product)
            shown = _cut(path, None)
            factors = " × ".join("…" if e is None else
                                 f'<span class="factor" data-edge="{_e(edge_id(e))}" '
                                 f'data-local="{e.local!r}">{_factor(e.local)}</span>'
                                 for e in shown)
            cells = [("…", "", "") if e is None else
                     (names.d(tr[e.target], tr[e.source]),
                      _e(names.rule(e.formula)) if e.formula else "", _num(e.local))
                     for e in shown]
            table = ('<div class="factors"><table>' + "".join(
                f'<tr>{"".join(f"<{tag}>{c[row]}</{tag}>" for c in cells)}</tr>'
                for row, tag in ((0, "th"), (1, "td"), (2, "td"))) + '</table></div>')
            blocks.append(f'<div class="path" data-product="{product!r}"><p class="symbols">'
                          f'{which}{names.dl(node)} = {symbols}{long}</p>{table}'
                          f'<p class="numbers">= {factors} = <b>{_num(product)}</b></p></div>')
            continue
        all_scalar = False
        steps = "".join("<li>…</li>" if e is None else
                        f'<li>at {_link(tr[e.target])}: {names.dl(tr[e.source])} = '
                        f'{_e(names.rule(e.vjp) or "")}<br><span class="kind">= '
                        f'{_e(_tensor_text(e.grad))}</span></li>'
                        for e in _cut(path[::-1], None))
        blocks.append(f'<div class="path tensor"><p class="symbols">{which}{names.dl(node)} = '
                      f'{symbols}{long}</p><p>With tensors each factor is a Jacobian matrix; '
                      f'the backward pass never builds one but applies each rule to the '
                      f'gradient, from the output back:</p><ol>{steps}</ol></div>')
    grad_name = (f"<code>{_e(node.name)}.grad</code>" if node.kind == "parameter"
                 else f"the gradient at {_e(_short(node))}")
    if more:
        note = (f'<p class="note">Only the first {len(paths)} paths are listed; the gradient '
                f'sums the paths not listed too.</p>')
    else:
        note = ""
    if all_scalar and _scalar(node.grad) is not None and not more:
        total = ""
        if len(products) > 1:
            total = (f'<p class="total">Sum over the {len(products)} paths: {names.dl(node)} = '
                     + " + ".join(_factor(p) for p in products) +
                     f' = <b>{_num(sum(products))}</b></p>')
        total += (f'<p class="result"{_data("grad", node.grad)}>= <b>{_num(_scalar(node.grad))}'
                  f'</b> = {grad_name} ✓</p>')
    else:
        total = (f'<p class="result"{_data("grad", node.grad)}>{names.dl(node)} = '
                 f'<b>{_e(_tensor_text(node.grad))}</b> = {grad_name}'
                 f'{" (the sum over all the paths)" if len(paths) > 1 or more else ""}</p>')
    members = ""
    if node.kind == "module" and node.members:
        members = ('<div class="members"><p>The layer\'s parameters take their gradients from '
                   f'{names.dl(node)} by the rules of its own operations:</p><ul>' +
                   "".join(f'<li data-member="{_e(m)}"{_data("grad", g)}>{names.dl(m)} = '
                           f'<b>{_e(_tensor_text(g))}</b> = <code>{_e(m)}.grad</code></li>'
                           for m, _, g in node.members) + '</ul></div>')
    return title + "".join(blocks) + note + total + members


def _updates(tr: Trace, names: _Names, lr: float) -> str:
    rows = []
    params = [(p.name, p.value, p.grad, p.id) for p in tr.parameters]
    for n in tr.nodes:
        if n.kind == "module":
            params += [(m, v, g, n.id) for m, v, g in n.members]
    for name, value, grad, node_id in params:
        if value is None or grad is None:
            rows.append(f'<tr data-name="{_e(name)}"><td>{_e(name)}</td><td colspan="2">'
                        f'no gradient reaches it</td></tr>')
            continue
        new = np.asarray(value) - lr * np.asarray(grad)
        g, v, w = _scalar(grad), _scalar(value), _scalar(new)
        if g is not None:
            update = f'{_e(name)} ← {_num(v)} − {_num(lr)} × {_factor(g)} = <b>{_num(w)}</b>'
        elif np.size(grad) <= 6:
            update = (f'{_e(name)} ← {_e(_tensor_text(value))} − {_num(lr)} × '
                      f'{_e(_tensor_text(grad))}<br>= <b>{_e(_tensor_text(new))}</b>')
        else:
            at = np.unravel_index(int(np.argmax(np.abs(grad))), np.shape(grad))
            where = f"{name}[{', '.join(map(str, at))}]"
            update = (f'{_e(name)} ← {_e(name)} − {_num(lr)} × {names.dl(name)}, number by '
                      f'number; the largest gradient, at <code>{_e(where)}</code>:<br>'
                      f'{_num(np.asarray(value)[at])} − {_num(lr)} × '
                      f'{_factor(np.asarray(grad)[at])} = <b>{_num(new[at])}</b><br>'
                      f'<span class="kind">whole step: norm {_num(lr * _norm(grad))}; after it '
                      f'{_e(_tensor_text(new))}</span>')
        rows.append(f'<tr data-name="{_e(name)}" data-node="{_e(node_id)}"{_data("grad", grad)}'
                    f'{_data("value", value)}{_data("new", new)}><td><a href="#" '
                    f'class="node-link" data-node="{_e(node_id)}">{_e(name)}</a></td>'
                    f'<td>{names.dl(name)} = <b>{_e(_tensor_text(grad))}</b></td>'
                    f'<td>{update}</td></tr>')
    total = len(tr.steps) + 1
    return (f'<h2>Step {total} of {total}: done. One step of gradient descent</h2>'
            f'<p>Every gradient is known: these are the numbers <code>backward()</code> puts in '
            f'each parameter\'s <code>.grad</code>. Gradient descent moves each parameter a '
            f'little against its gradient, with learning rate <b>α = {_num(lr)}</b>:</p>'
            f'<p class="rule">w ← w − α · {names.dl("w")}</p>'
            f'<table id="updates" data-lr="{lr!r}"><tr><th>parameter</th><th>gradient</th>'
            f'<th>update</th></tr>{"".join(rows)}</table>')


def page_data(tr: Trace, lr: float = 0.1) -> dict:
    """What the page shows: one entry per step (panel, overlay, flowing edges), the chains of
    the nodes, the final update panel, and the Trace itself as JSON."""
    g = _Indexed(tr)
    names = _Names(tr)
    steps = g.steps
    step_of = {n.id: k for k, n in enumerate(steps)}
    done = {}  # node id -> the step after which its gradient is complete
    for n in tr.nodes:
        if n.id in step_of:
            done[n.id] = step_of[n.id]
        elif n.kind == "parameter":
            uses = [step_of[u.target] for u in _grad_uses(g, n.id) if u.target in step_of]
            if uses:
                done[n.id] = max(uses)
    chains, on_paths = {}, {}
    every = len(tr.nodes) <= _ALL_CHAINS_UP_TO
    for n in tr.nodes:
        if every or n.kind in ("parameter", "module", "output"):
            paths, more = _chain_paths(g, n.id)
            chains[n.id] = _chain(g, names, n, paths, more)
            on_paths[n.id] = sorted({edge_id(e) for p in paths for e in p})
        else:
            chains[n.id] = (f'<h2>{_e(n.name)}</h2><p>This graph has {len(tr.nodes):,} nodes: '
                            f'chains are listed for its parameters only.</p>')
    data = tr.to_dict()
    for e, d in zip(tr.edges, data["edges"]):
        d["id"] = edge_id(e)
    return {
        "output": tr.output,
        "top": names.top,
        "steps": [_step(g, names, k, n, step_of) for k, n in enumerate(steps)],
        "chains": chains,
        "paths": on_paths,
        "done": done,
        "final": _updates(g, names, lr),
        "lr": lr,
        "trace": data,
    }


# ----------------------------------------------------------------------------------------------
# The graph: SVG from `draw`, or from the Trace itself, or a list
# ----------------------------------------------------------------------------------------------
_STYLES = {"parameter": 'shape=box style="filled" fillcolor="#dbe9ff"',
           "input": 'shape=ellipse style="filled" fillcolor="#eeeeee"',
           "constant": 'shape=ellipse style="filled,dashed" fillcolor="#f6f6f6"',
           "operation": 'shape=box style="rounded,filled" fillcolor="#ffffff"',
           "output": 'shape=octagon style="filled" fillcolor="#ffd6d6"',
           "module": 'shape=box3d style="filled" fillcolor="#e8f5e9"'}


def _dot(tr: Trace) -> str:
    """DOT for the Trace with the ids the page looks for (node ids, ``e_{s}_{t}_{i}``)."""
    lines = ["digraph backprop {",
             '  rankdir=LR; nodesep=0.35; ranksep=0.9; bgcolor="transparent";',
             '  node [fontname="Helvetica" fontsize=15 margin="0.12,0.06"];',
             '  edge [fontname="Helvetica" fontsize=12 color="#555555"];']
    for n in tr.nodes:
        text = [f"<b>{html.escape(n.name)}</b>"]
        kind = n.op if n.kind in ("operation", "output", "module") else n.kind
        if kind and kind != n.name:
            text.append(html.escape(kind + (f" {_shape(n.value)}" if n.shape else "")))
        elif n.shape:
            text.append(_shape(n.value))
        if n.value is not None and n.kind != "constant":
            text.append("= " + html.escape(_tensor_text(n.value)))
        label = "<" + "<br/>".join(text) + ">"
        lines.append(f'  "{n.id}" [id="{n.id}" {_STYLES.get(n.kind, _STYLES["operation"])} '
                     f'label={label}];')
    for e in tr.edges:
        style = "" if e.differentiable else " style=dashed"
        lines.append(f'  "{e.source}" -> "{e.target}" [id="{edge_id(e)}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def _render_svg(dot_source: str) -> str:
    from chainrule.inspect.draw import Drawing

    svg = Drawing(dot_source, 0).render("svg").decode()
    return svg[svg.find("<svg"):]


def _graph_svg(tr: Trace) -> tuple[str | None, str | None]:
    """(inline SVG, note): `draw`'s picture of the Trace when it draws Traces with the Trace's
    ids, else the page's own; no SVG without Graphviz's ``dot``."""
    if shutil.which("dot") is None:
        return None, ("Graphviz's dot is not installed, so the graph is listed instead of "
                      "drawn (Debian: apt-get install graphviz).")
    from chainrule.inspect.draw import draw

    try:
        drawing = draw(tr, notes=False)  # the page's header says them, above the picture
        if getattr(drawing, "message", None):
            return None, drawing.message
        svg = drawing.render("svg").decode()
        svg = svg[svg.find("<svg"):]
        if f'id="{tr.output}"' in svg or f"<title>{tr.output}</title>" in svg:
            return svg, None
    except (TypeError, ValueError):  # a `draw` that takes only Tensors
        pass
    except RuntimeError as exc:  # dot failed or timed out
        return None, str(exc)
    try:
        return _render_svg(_dot(tr)), None
    except RuntimeError as exc:
        return None, str(exc)


def _graph_list(tr: Trace) -> str:
    names = {n.id: n.name for n in tr.nodes}
    nodes = "".join(f'<li id="{_e(n.id)}" class="node"><b>{_e(n.name)}</b> '
                    f'<span class="kind">{_e(n.op or n.kind)}'
                    f'{" " + _shape(n.value) if n.shape else ""}</span> = '
                    f'{_e(_tensor_text(n.value))}</li>' for n in tr.nodes)
    edges = "".join(f'<li id="{_e(edge_id(e))}" class="edge">{_e(names[e.source])} → '
                    f'{_e(names[e.target])} <span class="kind">(input {e.index})</span></li>'
                    for e in tr.edges)
    return (f'<div class="list-view"><h3>nodes</h3><ul>{nodes}</ul><h3>edges (forward '
            f'direction)</h3><ul>{edges}</ul></div>')


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------
_STYLE = """
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1d1d1f;
  font-size: 16px; line-height: 1.45; background: #fafafa; }
header { padding: .6em 1.2em .3em; }
h1 { font-size: 1.4em; margin: 0 0 .15em; }
header p { margin: .15em 0; max-width: 80em; }
.note { background: #fff4d6; border: 1px solid #e6c35c; padding: .4em .7em; border-radius: 6px;
  max-width: 80em; }
#main { display: grid; grid-template-columns: minmax(0, 1fr); gap: .8em; padding: 0 1.2em 1.2em; }
#panels { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: .8em;
  align-items: start; }
#panels.single { grid-template-columns: minmax(0, 52em); }
@media (max-width: 1100px) { #panels { grid-template-columns: minmax(0, 1fr); } }
@media (min-width: 1800px) {
  #main { grid-template-columns: minmax(0, 1fr) 36em; align-items: start; }
  #panels, #panels.single { grid-template-columns: minmax(0, 1fr); }
}
#graph-box { background: #fff; border: 1px solid #ddd; border-radius: 8px; }
#toolbar { display: flex; gap: .4em; align-items: center; padding: .4em .6em;
  border-bottom: 1px solid #eee; font-size: 15px; flex-wrap: wrap; }
#toolbar .sep { width: 1px; align-self: stretch; background: #ddd; margin: 0 .4em; }
.legend { font-size: 14px; color: #444; }
.legend span { display: inline-block; margin-right: .8em; white-space: nowrap; }
.sw { display: inline-block; width: 1.1em; height: .8em; border-radius: 2px; vertical-align: -1px;
  margin-right: .25em; border: 1px solid #999; }
#graph { position: relative; overflow: auto; max-height: 62vh; min-height: 8em;
  padding: 1.2em .5em 5em; }
#graph svg { display: block; overflow: visible; }
#graph g.node, .list-view li.node { cursor: pointer; }
#graph g.node.pending { opacity: .45; }
#graph g.node.visited .outline { stroke: #2e7d32; stroke-width: 2.5; }
#graph g.node.receiving .outline { stroke: #e65100; stroke-width: 3; }
#graph g.node.current .outline { stroke: #e65100; stroke-width: 5; }
#graph g.node.current { filter: drop-shadow(0 0 5px #ff9800); opacity: 1; }
#graph g.node.selected .outline { stroke: #6a1b9a; stroke-width: 4; }
#graph g.node .tick { display: none; fill: #2e7d32; font: bold 15px system-ui, sans-serif; }
#graph g.node.visited .tick { display: inline; }
#graph g.edge.flowing > path { stroke: #e65100; stroke-width: 3.5; stroke-dasharray: 9 5;
  animation: flow 0.9s linear infinite; }
#graph g.edge.flowing > polygon { stroke: #e65100; fill: #e65100; }
#graph g.edge.flowing text { font-weight: bold; }
#graph g.edge.summing > path { stroke: #1565c0; stroke-width: 3.5; }
#graph g.edge.summing > polygon { stroke: #1565c0; fill: #1565c0; }
#graph g.edge.chain > path { stroke: #6a1b9a; stroke-width: 3.5; }
#graph g.edge.chain > polygon { stroke: #6a1b9a; fill: #6a1b9a; }
@keyframes flow { to { stroke-dashoffset: 28; } }
.flow-label rect { fill: #fff3e0; stroke: #e65100; stroke-width: 1; }
.flow-label text { fill: #bf360c; font: bold 13px system-ui, sans-serif; }
.list-view { font-size: 15px; }
.list-view li { width: fit-content; padding: 0 .4em; margin: .1em 0; }
.list-view li.pending { opacity: .5; }
.list-view li.current { outline: 3px solid #e65100; }
.list-view li.flowing { background: #fff3e0; }
.list-view li.visited::after { content: " ✓"; color: #2e7d32; }
.list-view .flow-label { color: #bf360c; font-weight: bold; margin-left: .5em; }
#overlay { position: absolute; z-index: 5; background: rgba(255, 255, 255, .97);
  border: 2px solid #e65100; border-radius: 8px; padding: .3em .6em; font-size: 14px;
  box-shadow: 0 2px 8px rgba(0, 0, 0, .2); pointer-events: none; white-space: nowrap; }
#overlay .ov-head { font-weight: bold; color: #bf360c; }
#overlay .ov-up { font-weight: bold; }
button { font-size: 15px; padding: .25em .75em; border-radius: 6px; border: 1px solid #aaa;
  background: #fff; cursor: pointer; }
button:hover:not(:disabled) { background: #f0f0f0; }
button:disabled { color: #aaa; cursor: default; }
#counter { font-weight: bold; margin-left: .3em; min-width: 7em; }
.panel { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: .6em 1em;
  font-size: 15px; }
.panel h2 { font-size: 1.15em; margin: .2em 0 .5em; }
.panel h4 { margin: .2em 0; font-size: 1em; }
.what { display: inline-block; min-width: 8.5em; color: #666; font-size: 14px; }
.kind { color: #666; font-size: 14px; font-weight: normal; }
.flow { border-left: 4px solid #e65100; padding: .3em .7em; margin: .6em 0; background: #fffaf5; }
.flow.members { border-left-color: #2e7d32; background: #f5fbf5; }
.local, .product, .value { margin: .15em 0; }
.leaf-note { color: #1b5e20; font-size: 14px; margin-top: .2em; }
.fanout { border-left: 4px solid #1565c0; background: #f3f8ff; padding: .3em .7em; margin: .6em 0; }
.fanout ul, .quiet ul, .members ul, .path ol { margin: .2em 0; padding-left: 1.4em; }
.fanout p { margin: .2em 0; }
.quiet { color: #444; }
.quiet p { margin: .3em 0 0; }
.path { border-left: 4px solid #6a1b9a; padding: .2em .7em; margin: .6em 0; background: #faf5fc; }
.path p { margin: .15em 0; }
.path li { margin: .2em 0; }
.factors { overflow-x: auto; margin: .3em 0; }
.factors table { width: auto; margin: 0; }
.factors th, .factors td { text-align: center; white-space: nowrap; font-size: 14px;
  background: #fff; }
.factors th { font-weight: normal; color: #444; background: #f6f0f9; }
.result { font-size: 1.05em; }
.upstream { background: #f4f4f4; padding: .3em .5em; border-radius: 4px; margin: .3em 0; }
table { border-collapse: collapse; margin-top: .5em; width: 100%; }
td, th { border: 1px solid #ddd; padding: .35em .5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.rule { font-size: 1.1em; text-align: center; }
a.node-link { color: #0b57d0; text-decoration: none; border-bottom: 1px dotted #0b57d0; }
code { font-size: 14px; }
#chain[hidden] { display: none; }
#chain { border-color: #6a1b9a; }
"""

_SCRIPT = r"""
(function () {
  'use strict';
  const P = JSON.parse(document.getElementById('trace-data').textContent);
  const graph = document.getElementById('graph');
  const view = document.getElementById('view');
  const chainBox = document.getElementById('chain');
  const panels = document.getElementById('panels');
  const counter = document.getElementById('counter');
  const overlay = document.getElementById('overlay');
  const N = P.steps.length;
  const nodes = P.trace.nodes;
  const edgesById = {};
  P.trace.edges.forEach(e => { edgesById[e.id] = e; });
  const SVGNS = 'http://www.w3.org/2000/svg';
  const svg = graph.querySelector('svg');
  let at = 0, selected = null, zoom = 1;

  function byId(id) { return graph.querySelector('[id="' + CSS.escape(id) + '"]'); }
  // Graphviz names each node and edge by a <title>: use it where an element lacks our id
  function titled(kind) {
    const out = {};
    graph.querySelectorAll('g.' + kind).forEach(g => {
      const t = g.querySelector('title');
      if (t) (out[t.textContent] = out[t.textContent] || []).push(g);
    });
    return out;
  }
  const nodeTitles = titled('node'), edgeTitles = titled('edge');
  const nodeEl = {}, copies = {}, edgeEl = {};
  // a big drawing repeats a parameter once per use: leaf0, leaf0_2, leaf0_3, ...
  graph.querySelectorAll('g.node[id*="_"]').forEach(g => {
    const m = /^(.*)_\d+$/.exec(g.id);
    if (m) (copies[m[1]] = copies[m[1]] || []).push(g);
  });
  function each(id, f) { if (nodeEl[id]) [nodeEl[id]].concat(copies[id] || []).forEach(f); }
  nodes.forEach(n => {
    let el = byId(n.id);
    if (!el && nodeTitles[n.id]) { el = nodeTitles[n.id][0]; el.id = n.id; }
    if (!el) return;
    nodeEl[n.id] = el;
    [el].concat(copies[n.id] || []).forEach(x => setUp(x, n));
  });
  function setUp(el, n) {
    el.dataset.node = n.id;
    el.classList.add('kind-' + n.kind);
    el.addEventListener('click', ev => { ev.preventDefault(); showChain(n.id); });
    // the node's own shape: the shapes before its first text (later ones are table cells)
    for (const child of el.children) {
      const tag = child.tagName.toLowerCase();
      if (tag === 'title') continue;
      if (!['polygon', 'ellipse', 'path', 'polyline'].includes(tag)) break;
      child.classList.add('outline');
    }
    if (el.tagName.toLowerCase() === 'g' && el.getBBox) {  // a tick above the top-right corner
      const b = el.getBBox();
      const t = document.createElementNS(SVGNS, 'text');
      t.setAttribute('class', 'tick');
      t.setAttribute('x', b.x + b.width);
      t.setAttribute('y', b.y - 2);
      t.setAttribute('text-anchor', 'end');
      t.textContent = '\u2713';
      el.appendChild(t);
    }
  }
  P.trace.edges.forEach(e => {
    let el = byId(e.id);
    const key = e.source + '->' + e.target;
    if (!el && edgeTitles[key] && edgeTitles[key].length) {
      el = edgeTitles[key].shift(); el.id = e.id;
    }
    if (el) edgeEl[e.id] = el;
  });

  function clearLabels() { graph.querySelectorAll('.flow-label').forEach(x => x.remove()); }
  // the number flowing back along an edge, unless the drawing already writes it there
  function label(edgeId, text) {
    const el = edgeEl[edgeId];
    if (!el || !text) return;
    const path = el.querySelector('path');
    if (!path || !path.getTotalLength) {
      const s = document.createElement('span');
      s.className = 'flow-label'; s.textContent = text; el.appendChild(s);
      return;
    }
    if (el.querySelector('text')) return;
    const p = path.getPointAtLength(path.getTotalLength() / 2);
    const g = document.createElementNS(SVGNS, 'g');
    g.setAttribute('class', 'flow-label');
    const r = document.createElementNS(SVGNS, 'rect');
    const t = document.createElementNS(SVGNS, 'text');
    t.setAttribute('x', p.x); t.setAttribute('y', p.y - 6);
    t.setAttribute('text-anchor', 'middle');
    t.textContent = text;
    g.appendChild(r); g.appendChild(t); el.appendChild(g);
    const b = t.getBBox();
    r.setAttribute('x', b.x - 3); r.setAttribute('y', b.y - 1);
    r.setAttribute('width', b.width + 6); r.setAttribute('height', b.height + 2);
    r.setAttribute('rx', 3);
  }

  function boxOf(el, g) {
    const r = el.getBoundingClientRect();
    const x = r.left - g.left + graph.scrollLeft, y = r.top - g.top + graph.scrollTop;
    return {x: x, y: y, w: r.width, h: r.height};
  }
  function overlap(a, b) {
    const w = Math.min(a.x + a.w, b.x + b.w) - Math.max(a.x, b.x);
    const h = Math.min(a.y + a.h, b.y + b.h) - Math.max(a.y, b.y);
    return w > 0 && h > 0 ? w * h : 0;
  }
  // scroll the graph (not the page) so that a node is in view
  function reveal(el) {
    const n = boxOf(el, graph.getBoundingClientRect());
    const cx = n.x + n.w / 2, cy = n.y + n.h / 2;
    if (cx < graph.scrollLeft + 60 || cx > graph.scrollLeft + graph.clientWidth - 60)
      graph.scrollLeft = cx - graph.clientWidth / 2;
    if (cy < graph.scrollTop + 40 || cy > graph.scrollTop + graph.clientHeight - 40)
      graph.scrollTop = cy - graph.clientHeight / 2;
  }
  // the step's box next to the current node, where it hides the fewest other nodes
  function place(id) {
    const el = nodeEl[id];
    if (!el) { overlay.hidden = true; return; }
    overlay.hidden = false;
    const g = graph.getBoundingClientRect();
    reveal(el);
    const n = boxOf(el, g);
    const w = overlay.offsetWidth, h = overlay.offsetHeight;
    const vis = {x: graph.scrollLeft, y: graph.scrollTop, w: graph.clientWidth,
                 h: graph.clientHeight};
    const step = P.steps[at];
    const targets = new Set(step ? step.flowing.map(e => edgesById[e].source) : []);
    const flowingEdges = new Set(step ? step.flowing : []);
    const others = Array.from(graph.querySelectorAll('g.node, li.node'))
      .filter(x => x !== el)
      .map(x => [boxOf(x, g), targets.has(x.dataset.node) ? 3 : 1])
      .concat(Array.from(graph.querySelectorAll('g.edge text')).map(t =>
        [boxOf(t, g), flowingEdges.has(t.parentNode.id) ? 4 : 1]));
    const xs = [n.x + n.w + 14, n.x + n.w / 2 - w / 2, n.x - w - 14, n.x + n.w / 2 - w - 60,
                n.x + n.w / 2 + 60];
    const ys = [n.y + n.h / 2 - h / 2, n.y - h - 12, n.y + n.h + 12, n.y - h - 70,
                n.y + n.h + 70];
    let best = null, bestScore = Infinity;
    xs.forEach(x0 => ys.forEach(y0 => {
      const box = {x: Math.max(vis.x, Math.min(x0, vis.x + vis.w - w)),
                   y: Math.max(0, y0), w: w, h: h};
      const dx = Math.max(0, box.x - (n.x + n.w), n.x - (box.x + w));
      const dy = Math.max(0, box.y - (n.y + n.h), n.y - (box.y + h));
      let score = Math.hypot(dx, dy) * 8 + (w * h - overlap(box, vis)) * 4 +
                  overlap(box, n) * 10;
      others.forEach(([o, weight]) => { score += overlap(box, o) * weight; });
      if (score < bestScore) { bestScore = score; best = box; }
    }));
    overlay.style.left = best.x + 'px';
    overlay.style.top = best.y + 'px';
  }

  function show() {
    const step = at < N ? P.steps[at] : null;
    const current = step ? step.node : null;
    counter.textContent = 'step ' + (at + 1) + ' of ' + (N + 1);
    document.getElementById('prev').disabled = at === 0;
    document.getElementById('home').disabled = at === 0;
    document.getElementById('next').disabled = at === N;
    document.getElementById('end').disabled = at === N;
    graph.querySelectorAll('.current').forEach(x => x.classList.remove('current'));
    nodes.forEach(n => {
      const el = nodeEl[n.id];
      if (!el) return;
      const done = P.done[n.id];
      const isCurrent = n.id === current;
      el.classList.toggle('current', isCurrent);
      each(n.id, x => {
        x.classList.toggle('visited', done !== undefined && done < at && !isCurrent);
        x.classList.toggle('pending', done !== undefined && done >= at && !isCurrent);
        x.classList.remove('receiving');
      });
    });
    Object.values(edgeEl).forEach(el => el.classList.remove('flowing', 'summing'));
    clearLabels();
    if (step) {
      step.flowing.forEach(id => {
        if (edgeEl[id]) edgeEl[id].classList.add('flowing');
        each(edgesById[id].source, x => {
          x.classList.add('receiving'); x.classList.remove('pending');
        });
        label(id, step.labels[id]);
      });
      step.summing.forEach(id => { if (edgeEl[id]) edgeEl[id].classList.add('summing'); });
      view.innerHTML = step.panel;
      view.dataset.node = current;
      overlay.innerHTML = step.overlay;
      place(current);
    } else {
      view.innerHTML = P.final;
      view.dataset.node = '';
      overlay.hidden = true;
    }
    view.dataset.step = String(at);
    bindLinks(view);
  }

  function bindLinks(root) {
    root.querySelectorAll('a.node-link').forEach(a => a.addEventListener('click', ev => {
      ev.preventDefault(); showChain(a.dataset.node);
      if (nodeEl[a.dataset.node]) reveal(nodeEl[a.dataset.node]);
    }));
  }
  function unmark() {
    if (selected) each(selected, x => x.classList.remove('selected'));
    Object.values(edgeEl).forEach(el => el.classList.remove('chain'));
  }
  function showChain(id) {
    unmark();
    selected = id;
    each(id, x => x.classList.add('selected'));
    (P.paths[id] || []).forEach(e => { if (edgeEl[e]) edgeEl[e].classList.add('chain'); });
    chainBox.innerHTML = '<button id="close-chain" style="float:right" title="Escape">close' +
      '</button>' + (P.chains[id] || '<p>nothing known about this node</p>');
    chainBox.dataset.node = id;
    chainBox.hidden = false;
    panels.classList.remove('single');
    document.getElementById('close-chain').onclick = hideChain;
    bindLinks(chainBox);
  }
  function hideChain() {
    unmark();
    selected = null; chainBox.hidden = true; chainBox.dataset.node = '';
    panels.classList.add('single');
  }

  // zoom: the drawing's own size times `zoom`; "fit" fills the width, but never so small that
  // the labels of the nodes drop under 13 px (then the graph scrolls)
  let natW = 0, natH = 0, fontPt = 14;
  if (svg) {
    const vb = svg.viewBox && svg.viewBox.baseVal;
    natW = vb && vb.width ? vb.width * 4 / 3 : svg.getBBox().width;
    natH = vb && vb.height ? vb.height * 4 / 3 : svg.getBBox().height;
    const sizes = Array.from(svg.querySelectorAll('g.node text'))
      .map(t => parseFloat(t.getAttribute('font-size'))).filter(x => x > 0).sort((a, b) => a - b);
    if (sizes.length) fontPt = sizes[Math.floor(sizes.length / 2)];
  } else {
    document.getElementById('zoom').hidden = true;
  }
  function setZoom(z) {
    if (!svg) return;
    zoom = Math.min(4, Math.max(0.2, z));
    svg.setAttribute('width', natW * zoom); svg.setAttribute('height', natH * zoom);
    svg.style.width = (natW * zoom) + 'px'; svg.style.height = (natH * zoom) + 'px';
    document.getElementById('zoom-level').textContent = Math.round(zoom * 100) + '%';
    if (at < N) place(P.steps[at].node);
  }
  function fit() {
    if (!svg) return;
    const readable = 13 / (fontPt * 4 / 3);
    const wide = (graph.clientWidth - 24) / natW;
    const tall = (0.62 * window.innerHeight - 24) / natH;
    setZoom(Math.max(readable, Math.min(1.5, wide, tall)));
  }
  document.getElementById('zoom-in').onclick = () => setZoom(zoom * 1.25);
  document.getElementById('zoom-out').onclick = () => setZoom(zoom / 1.25);
  document.getElementById('zoom-fit').onclick = fit;

  function go(k) { at = Math.max(0, Math.min(N, k)); show(); }
  document.getElementById('next').onclick = () => go(at + 1);
  document.getElementById('prev').onclick = () => go(at - 1);
  document.getElementById('home').onclick = () => go(0);
  document.getElementById('end').onclick = () => go(N);
  document.addEventListener('keydown', ev => {
    if (ev.altKey || ev.ctrlKey || ev.metaKey) return;
    const keys = {ArrowRight: () => go(at + 1), ArrowLeft: () => go(at - 1),
                  Home: () => go(0), End: () => go(N), Escape: hideChain,
                  '+': () => setZoom(zoom * 1.25), '=': () => setZoom(zoom * 1.25),
                  '-': () => setZoom(zoom / 1.25), '0': fit};
    if (keys[ev.key]) { ev.preventDefault(); keys[ev.key](); }
  });
  bindLinks(document.getElementById('intro'));
  window.addEventListener('resize', () => { if (at < N) place(P.steps[at].node); });
  fit();
  show();
  document.body.dataset.ready = '1';
})();
"""


def _finite(obj):
    """``obj`` with NaN and infinities as strings: JSON has no such numbers."""
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _intro(tr: Trace, names: _Names, lr: float) -> str:
    out = tr.loss
    params = [_link(p) for p in tr.parameters]
    for n in tr.nodes:
        if n.kind == "module":
            params += [f'<a href="#" class="node-link" data-node="{_e(n.id)}">{_e(m)}</a>'
                       for m, _, _ in n.members]
    if len(params) > 12:
        params = params[:12] + [f"and {len(params) - 12} more"]
    called = "" if names.top == out.name else f" (written {names.top} below)"
    return (
        f'<p>The forward pass computed <b>{_e(out.name)}{called} = '
        f'{_e(_tensor_text(out.value))}</b> from {", ".join(params) or "no parameter"}. '
        f'Now the backward pass visits the operations from the output back, in the engine\'s '
        f'order: at each one the gradient that arrived (<i>upstream</i>) times each input\'s '
        f'<i>local derivative</i> flows back to that input. The last step applies gradient '
        f'descent with α = {_num(lr)}.</p>'
        f'<p class="kind">Keys: → next, ← previous, Home / End first / last, + / − / 0 zoom. '
        f'Click any node (or name) for its whole chain to the output.</p>')


def write_page(loss_or_trace, path, *, names=None, collapse=None, lr=0.1, title=None) -> Path:
    """Write the step-through page of a backward pass to ``path``; returns the path.

    ``loss_or_trace``: the output Tensor (its graph is traced; see `chainrule.inspect.record`
    for seeing every value) or a `Trace`. ``names``: ``{name: Tensor}`` for the page's labels;
    ``collapse``: a model whose layers become one box each; ``lr``: the learning rate of the
    gradient-descent step on the last page; ``title``: the page's heading.
    """
    tr = as_trace("write_page", loss_or_trace, names, collapse)
    title = title or f"Backpropagation through {tr.loss.name}, step by step"
    data = page_data(tr, lr)
    svg, note = _graph_svg(tr)
    graph = svg if svg is not None else _graph_list(tr)
    notes = "".join(f'<p class="note" id="{i}">{_e(text)}</p>'
                    for i, text in (("message", tr.message), ("graph-note", note)) if text)
    missing = sorted({n.missing for n in tr.nodes if n.missing} - {tr.message})
    if missing:
        notes += ('<p class="note" id="missing">Some numbers are not shown: ' +
                  "; ".join(_e(m) for m in missing) + "</p>")
    legend = ('<span class="legend"><span><i class="sw" style="border:3px solid #e65100"></i>'
              'current step</span><span><i class="sw" style="background:#e65100"></i>gradient '
              'flowing back</span><span><i class="sw" style="background:#1565c0"></i>gradients '
              'adding up</span><span><i class="sw" style="border:2px solid #2e7d32"></i>✓ '
              'gradient known</span><span><i class="sw" style="opacity:.45"></i>not reached '
              'yet</span><span><i class="sw" style="border:3px solid #6a1b9a"></i>chain shown'
              '</span></span>')
    payload = json.dumps(_finite(data)).replace("</", "<\\/").replace("<!--", "<\\!--")
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>\n"
        f"<header><h1>{_e(title)}</h1><div id='intro'>{_intro(tr, _Names(tr), lr)}</div>"
        f"{notes}</header>\n<div id='main'>\n<section id='graph-box'><div id='toolbar'>"
        "<button id='home' title='first step (Home)'>« First</button>"
        "<button id='prev' title='previous step (←)'>← Prev</button>"
        "<button id='next' title='next step (→)'>Next →</button>"
        "<button id='end' title='last step (End)'>Last »</button>"
        "<span id='counter'></span><span class='sep'></span>"
        "<span id='zoom'><button id='zoom-out' title='zoom out (−)'>−</button> "
        "<span id='zoom-level'></span> <button id='zoom-in' title='zoom in (+)'>+</button> "
        "<button id='zoom-fit' title='fit the width (0)'>fit</button></span>"
        f"<span class='sep'></span>{legend}</div>\n"
        f"<div id='graph'>{graph}<div id='overlay' hidden></div></div></section>\n"
        "<section id='panels' class='single'><div id='view' class='panel'></div>"
        "<div id='chain' class='panel' hidden></div></section>\n</div>\n"
        f"<script type='application/json' id='trace-data'>{payload}</script>\n"
        f"<script>{_SCRIPT}</script>\n</body></html>\n")
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
