"""The chain rule, written out: every path from a tensor to the loss and what it contributes.

``print(cr.explain(loss, w))`` lists each path through the graph from ``w`` to ``loss``, the
local derivative of every operation on it (the table's own formula and, for one-element tensors,
its value: ``d tanh/d x = 1 - tanh(x)^2 = 0.42``), their product along the path, and the sum over
paths, which is d loss / d w.

Each path's contribution is computed honestly: a gradient of ones is pushed from the loss down that
one path alone, through the same VJP rules the engine runs, so the contributions add up to the
real gradient. That needs the values the graph saved: call `explain` before ``loss.backward()``
(or backward with ``retain_graph=True``). Tensor hooks are not run.

Name intermediate tensors to see the chain the way a textbook writes it:
``cr.explain(C, w, names={"z": z, "o": o})`` prints ``dC/dw = dz/dw · do/dz · dC/do`` with the
numbers. With more than ``max_paths`` paths, they are grouped by the last operation before ``wrt``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from chainrule import autograd
from chainrule.autograd import Node, Primitive, unbroadcast
from chainrule.inspect import graph as _graph
from chainrule.tensor import Tensor

__all__ = ["explain", "Explanation", "Path", "Step", "Group"]


@dataclass
class Step:
    """One operation on a path: d(output)/d(input) of ``op`` for input ``input_name``.

    ``local`` is the value of that derivative when input and output have one element (else
    None); ``grad`` the gradient of the loss with respect to the input along this path so far.
    """

    op: str
    node_name: str
    input_index: int
    input_name: str
    formula: str
    derivative: str
    local: float | None
    in_shape: tuple
    out_shape: tuple
    grad: np.ndarray
    in_label: str | None = None
    out_label: str | None = None
    symbolic: str = ""

    def text(self) -> str:
        head = f"d {self.op}/d {self.input_name} = {self.derivative}"
        if self.local is not None:
            return f"{head} = {_num(self.local)}"
        return (f"{head}  [{self.out_shape} -> {self.in_shape}; gradient so far has norm "
                f"{_num(float(np.linalg.norm(self.grad)))}]")


@dataclass
class Path:
    """The steps from ``wrt`` (first) to the loss (last) and the path's share of the gradient."""

    steps: list
    contribution: np.ndarray

    @property
    def scalar(self) -> bool:
        return all(s.local is not None for s in self.steps)

    def route(self, wrt_label, loss_label) -> str:
        return " -> ".join([wrt_label] + [s.op for s in self.steps]) + f" ({loss_label})"


@dataclass
class Group:
    """Paths that reach ``wrt`` through the same last operation, and their total."""

    op: str
    node_name: str
    input_name: str
    n_paths: int
    contribution: np.ndarray


@dataclass
class Explanation:
    """The chain-rule account of d loss / d wrt. ``str()``, `to_markdown` and `to_latex` render it.

    ``paths`` lists every path (empty when there were more than ``max_paths``; then ``groups``
    holds the totals per last operation). ``total`` is the sum of the contributions and equals
    the gradient the engine computes.
    """

    loss_label: str
    wrt_label: str
    n_paths: int
    total: np.ndarray
    paths: list = field(default_factory=list)
    groups: list | None = None

    # --- plain text ----------------------------------------------------------------------------
    def __str__(self):
        d = f"d{self.loss_label}/d{self.wrt_label}"
        lines = [f"{d}: {self.n_paths} path{'s' if self.n_paths != 1 else ''} from "
                 f"{self.wrt_label} to {self.loss_label}"]
        if self.groups is not None:
            lines.append(f"  too many paths to list; grouped by the last operation before "
                         f"{self.wrt_label}:")
            for g in self.groups:
                lines.append(f"  through {g.op} (input {g.input_name}), {g.n_paths} paths: "
                             f"{_value(g.contribution)}")
        for k, path in enumerate(self.paths, 1):
            lines.append(f"path {k}: {path.route(self.wrt_label, self.loss_label)}")
            lines += [f"  {s.text()}" for s in path.steps]
            for chain in _chains(path, self.loss_label, self.wrt_label):
                lines.append(f"  {chain}")
            lines.append(f"  contribution: {_product_text(path)}")
        summed = " + ".join(_value(p.contribution) for p in self.paths) if len(self.paths) > 1 \
            else None
        lines.append(f"{d} = {summed + ' = ' if summed else ''}{_value(self.total)}")
        return "\n".join(lines)

    def __repr__(self):
        return str(self)

    # --- Markdown ------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """The same account as Markdown: one table of local derivatives per path."""
        d = f"d{self.loss_label}/d{self.wrt_label}"
        out = [f"**{d}**: {self.n_paths} path{'s' if self.n_paths != 1 else ''}", ""]
        if self.groups is not None:
            out += ["| last operation | input | paths | contribution |", "|---|---|---:|---|"]
            out += [f"| {g.op} | {g.input_name} | {g.n_paths} | {_value(g.contribution)} |"
                    for g in self.groups]
            out.append("")
        for k, path in enumerate(self.paths, 1):
            out += [f"Path {k}: `{path.route(self.wrt_label, self.loss_label)}`", "",
                    "| operation | local derivative | value |", "|---|---|---|"]
            for s in path.steps:
                value = _num(s.local) if s.local is not None else \
                    f"{s.out_shape} → {s.in_shape}"
                out.append(f"| {s.op} | d {s.op}/d {s.input_name} = `{s.derivative}` | {value} |")
            for chain in _chains(path, self.loss_label, self.wrt_label):
                out += ["", f"`{chain}`"]
            out += ["", f"Contribution: {_product_text(path)}", ""]
        out.append(f"**{d} = {_value(self.total)}**")
        return "\n".join(out)

    # --- LaTeX ---------------------------------------------------------------------------------
    def to_latex(self) -> str:
        """An ``align*`` environment: per path the product of partial derivatives, then the sum."""
        loss, wrt = _tex_name(self.loss_label), _tex_name(self.wrt_label)
        rows = []
        for path in self.paths:
            factors = " ".join(rf"\frac{{\partial\, \mathrm{{{s.op}}}}}{{\partial {s.input_name}}}"
                               for s in path.steps)
            rows.append(rf"&{factors} = {_tex_value(path)}")
        if self.groups is not None:
            rows += [rf"&\text{{via {g.op} ({g.n_paths} paths)}}: {_tex_array(g.contribution)}"
                     for g in self.groups]
        body = r" \\ " + "\n".join(r" \\ ".join(rows).split("\n"))
        total = rf"\frac{{\partial {loss}}}{{\partial {wrt}}} &= {_tex_array(self.total)}"
        return "\\begin{align*}\n" + total + (body if rows else "") + "\n\\end{align*}"


# ----------------------------------------------------------------------------------------------
# Number and expression formatting
# ----------------------------------------------------------------------------------------------
def _num(v: float) -> str:
    return f"{v:.4g}"


def _value(a) -> str:
    a = np.asarray(a)
    if a.size == 1:
        return _num(float(a.reshape(())))
    if a.size <= 6:  # small enough to read every value
        return "[" + ", ".join(_num(float(v)) for v in a.ravel()) + f"] (shape {a.shape})"
    return f"<{a.shape} array, norm {_num(float(np.linalg.norm(a)))}>"


def _tex_name(label: str) -> str:
    return label if len(label) == 1 else rf"\mathrm{{{label}}}"


def _tex_array(a) -> str:
    a = np.asarray(a)
    return _num(float(a.reshape(()))) if a.size == 1 else rf"\text{{{_value(a)}}}"


def _tex_value(path) -> str:
    return _tex_array(path.contribution)


def _product_text(path) -> str:
    if path.scalar:
        return " · ".join(_num(s.local) for s in path.steps) + f" = {_value(path.contribution)}"
    return _value(path.contribution)


def _derivative(formula: str) -> str:
    """The local derivative inside a VJP formula: "grad * (1 - tanh(x)^2)" -> "1 - tanh(x)^2"."""
    f = formula.strip()
    sign = ""
    if f.startswith("-grad"):
        sign, f = "-", f[1:]
    if f == "grad":
        return sign + "1"
    for lead, prefix in (("grad * ", ""), ("grad / ", "1 / ")):
        if f.startswith(lead):
            rest = f[len(lead):]
            if prefix == "" and rest.startswith("(") and rest.endswith(")") and \
                    _balanced(rest[1:-1]):
                rest = rest[1:-1]
            return sign + prefix + rest
    return sign + f


def _balanced(s: str) -> bool:
    depth = 0
    for ch in s:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0


# ----------------------------------------------------------------------------------------------
# Pushing a gradient along one edge
# ----------------------------------------------------------------------------------------------
def _vjp_one(node: Node, i: int, g):
    """d loss / d (input i of node), given ``g`` = d loss / d (node's output), by the table."""
    try:
        inputs, ans = autograd._unpack(node, False)
    except RuntimeError as exc:
        raise RuntimeError(
            f"explain: {exc} (call cr.explain before loss.backward(), or pass retain_graph=True "
            f"to backward)") from None
    op = node.op
    if type(op) is Primitive and op.vjp_all is None:
        gi = op.vjps[i](g, ans, *inputs, **node.params) if op.vjps[i] else None
    else:
        gi = op.vjp(node, g, inputs, ans)[i]
    if isinstance(gi, Tensor):
        gi = gi.data
    if gi is None:
        return None
    gi = np.asarray(gi)
    if node.shapes is not None and node.shapes[i] is not None and gi.shape != node.shapes[i]:
        gi = unbroadcast(gi, node.shapes[i])
    return gi


class _Labels:
    """Names of tensors, by node (intermediates) or identity (leaves), for the chain lines."""

    def __init__(self, names, loss, wrt):
        self.by_node, self.by_leaf = {}, {}
        items = names.items() if isinstance(names, dict) else (
            (t.name, t) for t in (names or ()))
        for label, t in items:
            if not isinstance(t, Tensor):
                raise TypeError(f"explain: names must map labels to Tensors, got "
                                f"{type(t).__name__} for {label!r}")
            if t.grad_fn is not None:
                self.by_node[t.grad_fn] = label
            else:
                self.by_leaf[id(t)] = label
        self.loss = self.of_tensor(loss) or "L"
        self.wrt = self.of_tensor(wrt) or "x"

    def of_tensor(self, t):
        if t.grad_fn is not None:
            return self.by_node.get(t.grad_fn) or t.name
        return self.by_leaf.get(id(t)) or t.name

    def of_input(self, node, j):
        """A label for input j of node: a named tensor, a leaf's name or a scalar constant."""
        p = node.parents[j]
        if isinstance(p, Node):
            return self.by_node.get(p)
        if isinstance(p, Tensor):
            return self.of_tensor(p)
        saved = node.saved if isinstance(node.saved, tuple) else ()
        value = saved[j] if j < len(saved) else None
        if isinstance(value, Tensor):
            return self.of_tensor(value) if value.grad_fn is None else self.by_node.get(
                value.grad_fn)
        if value is not None and np.ndim(value) == 0:
            return _num(float(value))
        return None


def _substitute(expression, names, labels):
    for name, label in zip(names, labels):
        if label is not None:
            expression = re.sub(rf"\b{re.escape(name)}\b", label, expression)
    # x^(2-1) -> x^1 -> x: exponents of constant powers, evaluated.
    expression = re.sub(r"\^\((-?\d+(?:\.\d+)?)-1\)",
                        lambda m: "^" + _num(float(m.group(1)) - 1), expression)
    return re.sub(r"\^1\b(?!\.)", "", expression)


def _step(node, i, g_out, g_in, labels):
    op, names = _graph.op_name(node), _graph.input_names(node)
    formula = _graph.formulas(node)[i]
    derivative = _derivative(formula)
    local = None
    if np.size(g_out) == 1 and np.size(g_in) == 1:
        ones = np.ones(np.shape(g_out), dtype=np.asarray(g_out).dtype)
        unit = _vjp_one(node, i, ones)
        local = 0.0 if unit is None else float(np.asarray(unit).reshape(()))
    symbolic = _substitute(derivative, names,
                           [labels.of_input(node, j) for j in range(len(names))])
    parent = node.parents[i]
    in_label = labels.by_node.get(parent) if isinstance(parent, Node) else None
    return Step(op=op, node_name=node.name, input_index=i, input_name=names[i], formula=formula,
                derivative=derivative, local=local, in_shape=tuple(np.shape(g_in)),
                out_shape=tuple(np.shape(g_out)), grad=g_in, in_label=in_label,
                out_label=labels.by_node.get(node), symbolic=symbolic)


# ----------------------------------------------------------------------------------------------
# Counting and listing the paths
# ----------------------------------------------------------------------------------------------
def _count_paths(g, target):
    """For each node, the number of paths from it down to ``target`` (iteratively)."""
    count = {}
    for node in reversed(g.nodes):  # parents before consumers
        if node is target:
            count[node] = 0
            continue
        count[node] = sum(1 if p is target else count.get(p, 0)
                          for p in node.parents if isinstance(p, (Node, Tensor)))
    return count


def _edges_to_target(node, target, count):
    return [i for i, p in enumerate(node.parents)
            if p is not None and (p is target or (isinstance(p, Node) and count.get(p, 0) > 0))]


def _list_paths(root, target, count):
    """Every path as a list of (node, input index) edges, loss first, found with a stack."""
    paths, stack = [], [(root, [])]
    while stack:
        node, edges = stack.pop()
        for i in reversed(_edges_to_target(node, target, count)):
            here = edges + [(node, i)]
            p = node.parents[i]
            if p is target:
                paths.append(here)
            else:
                stack.append((p, here))
    return paths


def _follow(edges, seed, labels):
    """Push ``seed`` down one path alone; the steps in the order wrt -> loss."""
    g, steps = seed, []
    for node, i in edges:
        g_in = _vjp_one(node, i, g)
        if g_in is None:
            g_in = np.zeros(node.shapes[i] if node.shapes else np.shape(g))
        steps.append(_step(node, i, g, g_in, labels))
        g = g_in
    return Path(steps=steps[::-1], contribution=g)


def _grouped(g, root, target, count, seed):
    """Totals per last edge into ``target``: one restricted reverse pass over the graph."""
    reach_from_root = {root: 1}
    pending = {root: seed}
    groups = {}
    for node in g.nodes:
        g_out = pending.pop(node, None)
        if g_out is None:
            continue
        for i in _edges_to_target(node, target, count):
            p = node.parents[i]
            g_in = _vjp_one(node, i, g_out)
            if p is target:
                key = (node, i)
                groups[key] = (g_in, reach_from_root[node])
            elif g_in is not None:
                pending[p] = pending[p] + g_in if p in pending else g_in
                reach_from_root[p] = reach_from_root.get(p, 0) + reach_from_root[node]
    out = []
    for (node, i), (contribution, n) in groups.items():
        names = _graph.input_names(node)
        out.append(Group(op=_graph.op_name(node), node_name=node.name, input_name=names[i],
                         n_paths=n, contribution=contribution))
    return out


def _chains(path, loss_label, wrt_label):
    """The textbook chain over named tensors: dC/dw = dz/dw · do/dz · dC/do = ... (scalars)."""
    boundaries = [i for i, s in enumerate(path.steps) if s.out_label is not None]
    if not boundaries or not path.scalar:
        return []
    segments, start, previous = [], 0, wrt_label
    for end in boundaries + [len(path.steps) - 1]:
        if end < start:
            continue
        steps = path.steps[start:end + 1]
        top = steps[-1].out_label or loss_label
        value = float(np.prod([s.local for s in steps]))
        factors = [s.symbolic for s in steps if s.symbolic not in ("1", "")]
        segments.append((f"d{top}/d{previous}", " · ".join(factors) or "1", value))
        previous, start = top, end + 1
    if segments[-1][0].split("/")[0] != f"d{loss_label}":
        return []
    lhs = f"d{loss_label}/d{wrt_label}"
    return [f"{lhs} = " + " · ".join(s[0] for s in segments),
            " " * len(lhs) + " = " + " · ".join(s[1] for s in segments),
            " " * len(lhs) + " = " + " · ".join(_num(s[2]) for s in segments)
            + f" = {_value(path.contribution)}"]


def explain(loss, wrt, names=None, max_paths=20) -> Explanation:
    """The chain-rule account of d loss / d wrt (see the module docstring).

    ``loss`` is a one-element Tensor; ``wrt`` a leaf that requires grad or an intermediate
    tensor of the graph. ``names`` maps labels to tensors (or lists tensors with ``.name`` set),
    used to print the chain over named tensors. Above ``max_paths`` paths, they are grouped.
    """
    if not isinstance(loss, Tensor) or loss.size != 1:
        raise ValueError(f"explain: loss must be a one-element Tensor, got "
                         f"{type(loss).__name__} of shape {np.shape(loss)}")
    if not isinstance(wrt, Tensor) or not wrt.requires_grad:
        raise ValueError("explain: wrt must be a Tensor that requires grad (a leaf created with "
                         "requires_grad=True, or a tensor computed from one)")
    labels = _Labels(names, loss, wrt)
    target = wrt.grad_fn if wrt.grad_fn is not None else wrt
    zero = np.zeros(wrt.shape, dtype=wrt.dtype)
    if loss.grad_fn is None:
        n = 1 if loss is wrt else 0
        total = np.ones(wrt.shape, wrt.dtype) if n else zero
        return Explanation(labels.loss, labels.wrt, n, total)
    root = loss.grad_fn
    seed = np.ones(loss.shape, dtype=loss.dtype)
    with autograd.no_grad():
        g = _graph.walk(loss)
        count = _count_paths(g, target)
        n_paths = 1 if root is target else count.get(root, 0)
        if root is target:
            return Explanation(labels.loss, labels.wrt, 1, seed.reshape(wrt.shape))
        if n_paths == 0:
            return Explanation(labels.loss, labels.wrt, 0, zero)
        if n_paths <= max_paths:
            paths = [_follow(edges, seed, labels) for edges in _list_paths(root, target, count)]
            total = sum(_finish(p.contribution, wrt) for p in paths)
            for p in paths:
                p.contribution = _finish(p.contribution, wrt)
            return Explanation(labels.loss, labels.wrt, n_paths, total, paths=paths)
        groups = _grouped(g, root, target, count, seed)
        for grp in groups:
            grp.contribution = _finish(grp.contribution, wrt)
        total = sum(grp.contribution for grp in groups)
        return Explanation(labels.loss, labels.wrt, n_paths, total, groups=groups)


def _finish(g, wrt):
    """A contribution in wrt's shape and dtype (what the engine does for a leaf's .grad)."""
    if g is None:
        return np.zeros(wrt.shape, wrt.dtype)
    g = np.asarray(g)
    if g.shape != wrt.shape:
        g = unbroadcast(g, wrt.shape)
    return g.astype(wrt.dtype, copy=False)
