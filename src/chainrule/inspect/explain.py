"""The chain rule, written out: every path from a tensor to the loss and what it contributes.

``print(cr.explain(loss, w1))`` lists each path through the graph from ``w1`` to ``loss``, the
local derivative of every operation on it in the user's own names, with its number when both
ends are single numbers (``∂(multiply #1)/∂w1 = x1 = 1``), the product along each path and the
sum over the paths, which is what ``backward()`` writes to ``w1.grad``. For tensors each step
shows the rule by which the gradient flows back (``∂L/∂h @ W``), its shape and its norm.

Everything is read from one `chainrule.inspect.record.Trace`, the record that the drawing and the
step-through page read too: ``explain`` runs no backward pass of the engine, never writes
``.grad`` (it reads it only where the graph's values are gone, and says so) and runs no hooks.
Names come from the caller's variables (``w1``, ``z``), from ``names=`` and from model
parameter paths; unnamed operations are called ``add #3``. The table's own argument names
(``x``, ``y``) never appear.

Before ``loss.backward()`` the graph's saved values are enough. After it, they are gone unless
the graph was built inside ``with cr.inspect.record():`` (then the text is the same before and
after) or backward ran with ``retain_graph=True``; otherwise the explanation says what is missing.
With more than ``max_paths`` paths, they are grouped by the first operation after ``wrt``.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

import numpy as np

from chainrule.inspect.record import Trace, caller_names, trace, wrapped
from chainrule.tensor import Tensor

__all__ = ["explain", "Explanation", "Path", "Step", "Group"]


@dataclass
class Step:
    """One edge of a path: ``source`` flows into the operation ``target`` (named as the user
    names them). ``formula`` is the local derivative ∂target/∂source in those names, or None
    where the rule is not a factor (a matrix product, a sum); ``rule`` is the gradient that
    flows back along the edge, written out. ``local`` is the derivative's number when source and
    target are single numbers; ``grad`` the gradient that flowed back along this edge (the total
    over every path through it)."""

    source: str
    target: str
    op: str | None
    formula: str | None
    rule: str
    local: float | None
    source_shape: tuple
    target_shape: tuple
    grad: np.ndarray | None
    named: bool = False  # target named by the user (or the loss): a link of the textbook chain
    input: int | None = None  # set when source is more than one input of target (x * x)
    ids: tuple = ()  # (source, target) node ids in the Trace

    @property
    def known(self) -> bool:
        return self.local is not None or self.formula is not None or bool(self.rule)

    @property
    def derivative(self) -> str:
        which = "" if self.input is None else f" (as its input {self.input + 1})"
        return f"∂{wrapped(self.target)}/∂{wrapped(self.source)}{which}"

    def text(self) -> str:
        if self.local is not None:
            return f"{self.derivative} = {_formula(self.formula, self.local)}"
        if self.formula is not None:
            same = self.source_shape == self.target_shape
            head = f"{self.derivative} = {self.formula}{' (elementwise)' if same else ''}"
        elif self.rule:
            head = f"{self.derivative}: the gradient flows back as {self.rule}"
        else:
            return f"{self.derivative}: unknown (its rule could not be replayed)"
        return f"{head}\n      {_shapes(self)}"


@dataclass
class Path:
    """The steps from ``wrt`` (first) to the loss (last) and, when every step is a single
    number, the path's share of the gradient: the product of the local derivatives. For tensors
    a path alone has no share to show (``contribution`` is None): see `Explanation.shares`."""

    steps: list
    contribution: np.ndarray | None = None

    @property
    def scalar(self) -> bool:
        return bool(self.steps) and all(s.local is not None for s in self.steps)

    def route(self, wrt_label, loss_label) -> str:
        names = [wrt_label] + [s.target + ("" if s.input is None else f" (input {s.input + 1})")
                               for s in self.steps]
        if self.steps:
            names[-1] = loss_label + names[-1][len(self.steps[-1].target):]
        return " → ".join(names)


@dataclass
class Group:
    """The gradient reaching ``wrt`` through one operation that reads it: ``through`` is that
    operation (``op`` its kind), ``contribution`` the gradient along that edge, the total of the
    ``n_paths`` paths that start with it."""

    op: str | None
    through: str
    n_paths: int
    contribution: np.ndarray | None


@dataclass
class Explanation:
    """The chain-rule account of d loss / d wrt. ``str()``, `to_markdown` and `to_latex` render it.

    ``paths`` lists every path (empty when there were more than ``max_paths``; then ``groups``
    holds the totals per first operation after ``wrt``). ``shares`` always holds those totals.
    ``total`` is the gradient of the loss with respect to ``wrt`` (None when it could not be
    computed: ``message`` says why), the same number ``backward()`` writes to ``wrt.grad``.
    ``trace`` is the `Trace` everything was read from.
    """

    loss_label: str
    wrt_label: str
    n_paths: int
    total: np.ndarray | None
    paths: list = field(default_factory=list)
    groups: list | None = None
    shares: list = field(default_factory=list)
    message: str | None = None
    wrt_shape: tuple = ()
    total_from_grad: bool = False
    wrt_kind: str = ""  # "parameter" for a leaf, "operation" for an intermediate result
    trace: Trace | None = field(default=None, repr=False)

    @property
    def scalar(self) -> bool:
        return bool(self.paths) and all(p.scalar for p in self.paths)

    @property
    def _d(self) -> str:
        return f"∂{wrapped(self.loss_label)}/∂{wrapped(self.wrt_label)}"

    def _headline(self) -> str:
        n = self.n_paths
        line = f"{self._d}: {n} path{'' if n == 1 else 's'} from {self.wrt_label} to " \
               f"{self.loss_label}"
        if self.wrt_shape != ():
            line += f"; {self.wrt_label} has shape {self.wrt_shape}"
        return line

    def _total_line(self) -> str:
        if self.total is None:
            return f"{self._d} is unknown (see the note above)"
        value = _value(self.total)
        if self.total_from_grad:
            return f"{self._d} = {value}  (read from {self.wrt_label}.grad as backward() left it)"
        if self.n_paths == 0:
            return f"{self._d} = {value}  ({self.wrt_label} does not reach {self.loss_label})"
        if self.scalar and len(self.paths) > 1:
            terms = " + ".join(_num(float(p.contribution)) for p in self.paths)
            value = f"{terms} = {value}  (the sum over the paths"
        elif self.scalar or len(self.shares) <= 1:
            value = f"{value}  ("
        else:
            value = f"the sum of those = {value}  ("
        if self.wrt_kind == "parameter":
            value += ("; " if value.endswith("paths") else "") + \
                f"what backward() puts in {self.wrt_label}.grad"
        return f"{self._d} = {value})".replace("  ()", "")

    @property
    def _show_shares(self) -> bool:
        """List the gradient per operation that reads wrt: when the paths are grouped, or are
        tensors (whose paths alone have no share to show) that reach wrt more than one way."""
        return self.groups is not None or (bool(self.paths) and not self.scalar
                                           and len(self.shares) > 1)

    def _values(self, path) -> str:
        """The forward values that the formulas of a path of single numbers read."""
        if not path.scalar or self.trace is None:
            return ""
        tr, ids = self.trace, {}
        for s in path.steps:
            ids.update(dict.fromkeys(e.source for e in tr.inputs_of(s.ids[1])))
            ids[s.ids[1]] = None
        formulas = [s.formula for s in path.steps if s.formula]
        shown = []
        for node_id in ids:
            n = tr[node_id]
            if n.kind == "constant" or n.value is None or np.size(n.value) != 1:
                continue
            token = re.compile(rf"(?<![\w.]){re.escape(n.name)}(?![\w])")
            if any(token.search(f) for f in formulas):
                shown.append(f"{n.name} = {_num(float(np.asarray(n.value).reshape(())))}")
        return ", ".join(shown)

    # --- plain text ----------------------------------------------------------------------------
    def __str__(self):
        lines = [self._headline()]
        if self.message:
            lines += textwrap.wrap(f"note: {self.message}", width=96, initial_indent="  ",
                                   subsequent_indent="    ")
        if self.groups is not None:
            lines.append(f"  too many paths to list; grouped by the operation that reads "
                         f"{self.wrt_label}:")
        for k, path in enumerate(self.paths, 1):
            lines.append(f"path {k}: {path.route(self.wrt_label, self.loss_label)}")
            if path.steps and not any(s.known for s in path.steps):
                lines.append("  its local derivatives are unknown (see the note above)")
                continue
            lines += [f"  {s.text()}" for s in path.steps]  # tensors: two lines each
            values = self._values(path)
            if values:
                lines.append(f"  where {values}")
            chain = _chain(path, self.loss_label, self.wrt_label)
            if chain:
                lines.append("  the chain over the named tensors:")
                lines += [f"    {c}" for c in chain]
            if path.scalar:
                product = " · ".join(_num(s.local) for s in path.steps)
                lines.append(f"  product along the path: {product} = "
                             f"{_num(float(path.contribution))}")
        show_shares = self._show_shares
        if show_shares:
            if self.groups is None:
                lines.append(f"the gradient reaching {self.wrt_label}, by the operation that "
                             f"reads it (each the total of the paths through it):")
            for g in self.shares:
                lines.append(f"  through {g.through}, {g.n_paths} path"
                             f"{'' if g.n_paths == 1 else 's'}: {_value(g.contribution)}")
        lines.append(self._total_line())
        return "\n".join(lines)

    def __repr__(self):
        return str(self)

    # --- Markdown ------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        """The same account as Markdown: one table of local derivatives per path."""
        out = [f"**{self._headline()}**", ""]
        if self.message:
            out += [f"> {self.message}", ""]
        for k, path in enumerate(self.paths, 1):
            out += [f"Path {k}: `{path.route(self.wrt_label, self.loss_label)}`", ""]
            if path.steps:
                out += ["| derivative | formula | value |", "|---|---|---|"]
            for s in path.steps:
                formula = f"`{s.formula}`" if s.formula is not None else \
                    (f"gradient flows as `{s.rule}`" if s.rule else "not replayed")
                value = _num(s.local) if s.local is not None else _shapes(s)
                out.append(_md_row(s.derivative, formula, value))
            chain = _chain(path, self.loss_label, self.wrt_label)
            if chain:
                out += ["", "```", *chain, "```"]
            if path.scalar:
                out += ["", f"Product: {' · '.join(_num(s.local) for s in path.steps)} = "
                            f"{_num(float(path.contribution))}"]
            out.append("")
        if self._show_shares:
            out += ["| through | paths | gradient |", "|---|---:|---|"]
            out += [_md_row(g.through, str(g.n_paths), _value(g.contribution))
                    for g in self.shares]
            out.append("")
        out.append(f"**{self._total_line()}**")
        return "\n".join(out)

    # --- LaTeX ---------------------------------------------------------------------------------
    def to_latex(self) -> str:
        """An ``align*`` environment: per path the product of partial derivatives, then the sum."""
        loss, wrt = _tex_name(self.loss_label), _tex_name(self.wrt_label)
        rows = []
        for path in self.paths:
            factors = " ".join(rf"\frac{{\partial {_tex_name(s.target)}}}"
                               rf"{{\partial {_tex_name(s.source)}}}" for s in path.steps)
            value = _num(float(path.contribution)) if path.scalar else ""
            rows.append(rf"&{factors}" + (f" = {value}" if value else ""))
        if self.groups is not None:
            rows += [rf"&\text{{through {_tex_text(g.through)} ({g.n_paths} paths)}}: "
                     rf"{_tex_array(g.contribution)}" for g in self.groups]
        body = "".join(r" \\" + "\n" + r for r in rows)
        total = rf"\frac{{\partial {loss}}}{{\partial {wrt}}} &= {_tex_array(self.total)}"
        return "\\begin{align*}\n" + total + body + "\n\\end{align*}"


# ----------------------------------------------------------------------------------------------
# Number and name formatting
# ----------------------------------------------------------------------------------------------
def _num(v: float) -> str:
    """Four significant digits: 0.2475, -2.736, 3.217e-05 (never a bare 0 for a nonzero number)."""
    return "0" if v == 0 else f"{v:.4g}"


def _norm(a) -> str:
    return _num(float(np.linalg.norm(np.asarray(a, np.float64))))


def _value(a) -> str:
    if a is None:
        return "unknown"
    a = np.asarray(a)
    if a.ndim == 0:
        return _num(float(a))
    if a.size <= 6:  # small enough to read every value
        return "[" + ", ".join(_num(float(v)) for v in a.ravel()) + f"] (shape {a.shape}, " \
               f"norm {_norm(a)})"
    big = float(np.abs(a).max()) if a.size and a.dtype.kind in "biuf" else 0.0
    return f"shape {a.shape}, norm {_norm(a)}, largest |entry| {_num(big)}"


def _shapes(step) -> str:
    where = f"{step.target_shape} → {step.source_shape}"
    if step.grad is None:
        return f"{where}; no gradient was computed"
    return f"{where}; gradient along this edge: norm {_norm(step.grad)}"


def _formula(formula, local) -> str:
    if formula is None or formula == _num(local):
        return _num(local)
    return f"{formula} = {_num(local)}"


def _tidy(text: str | None) -> str | None:
    """``2·((o - t))`` -> ``2·(o - t)``: a name already in parentheses, wrapped again."""
    if text is None:
        return None
    return re.sub(r"\(\(([^()]*)\)\)", r"(\1)", text)


def _md_row(*cells) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _tex_text(s: str) -> str:
    return re.sub(r"([#_%&$])", r"\\\1", s)


def _tex_name(label: str) -> str:
    if re.fullmatch(r"[A-Za-z]", label):
        return label
    m = re.fullmatch(r"([A-Za-z])(\d+)", label)
    if m:
        return f"{m.group(1)}_{{{m.group(2)}}}"
    return rf"\mathrm{{{_tex_text(label).replace(' ', '~')}}}"


def _tex_array(a) -> str:
    if a is None:
        return r"\text{unknown}"
    a = np.asarray(a)
    return _num(float(a.reshape(()))) if a.size == 1 and a.ndim == 0 else \
        rf"\text{{{_tex_text(_value(a))}}}"


# ----------------------------------------------------------------------------------------------
# The chain over named tensors
# ----------------------------------------------------------------------------------------------
def _chain(path, loss_label, wrt_label) -> list:
    """The textbook chain over the tensors the user named, for a path of single numbers:
    ∂C/∂w = ∂z/∂w · ∂o/∂z · ∂C/∂o = o_prev · o·(1 − o) · 2·(o − t) = ... ."""
    if not path.scalar:
        return []
    ends = [k for k, s in enumerate(path.steps[:-1]) if s.named] + [len(path.steps) - 1]
    if len(ends) < 2:
        return []
    segments, start, previous = [], 0, wrt_label
    for end in ends:
        steps = path.steps[start:end + 1]
        top = loss_label if end == len(path.steps) - 1 else steps[-1].target
        factors = [s.formula if s.formula is not None else _num(s.local) for s in steps]
        factors = [f for f in factors if f != "1"] or ["1"]
        text = factors[0] if len(factors) == 1 else "(" + " · ".join(factors) + ")"
        value = float(np.prod([s.local for s in steps]))
        segments.append((f"∂{wrapped(top)}/∂{wrapped(previous)}", text, value))
        previous, start = top, end + 1
    lhs = f"∂{wrapped(loss_label)}/∂{wrapped(wrt_label)}"
    pad = " " * len(lhs)
    return [f"{lhs} = " + " · ".join(s[0] for s in segments),
            f"{pad} = " + " · ".join(s[1] for s in segments),
            f"{pad} = " + " · ".join(_num(s[2]) for s in segments)
            + f" = {_num(float(path.contribution))}"]


# ----------------------------------------------------------------------------------------------
# Reading the Trace
# ----------------------------------------------------------------------------------------------
def _node_of(tr: Trace, loss: Tensor, wrt: Tensor):
    """The Trace node that stands for ``wrt``, or None when ``wrt`` does not reach ``loss``."""
    try:
        return tr.node_of(wrt)
    except KeyError:
        return None


def _path_counts(tr: Trace) -> dict:
    """For every node id, the number of paths from it to the output."""
    uses = {}
    for e in tr.edges:
        if e.differentiable:
            uses.setdefault(e.source, []).append(e.target)
    count = {tr.output: 1}
    # nodes come output first, each operation before the operations that made its inputs
    for n in tr.nodes:
        if n.id != tr.output:
            count[n.id] = sum(count.get(t, 0) for t in uses.get(n.id, ()))
    return count


def _labeller(tr: Trace, loss_label: str):
    def label(node_id):
        return loss_label if node_id == tr.output else tr[node_id].name
    return label


def _rule(text: str, target: str, loss_label: str) -> str:
    """A Trace rule as the explanation writes it: the loss called by its name (the Trace calls
    every loss L) and the upstream gradient's name in parentheses when it has spaces."""
    if not text:
        return text
    text = text.replace(f"∂L/∂{target}", f"∂L/∂{wrapped(target)}")
    if loss_label != "L":
        text = text.replace("∂L/∂", f"∂{wrapped(loss_label)}/∂")
    return _tidy(text)


def _step(tr, edge, label, loss_label) -> Step:
    source, target = tr[edge.source], tr[edge.target]
    same = [e for e in tr.inputs_of(edge.target) if e.source == edge.source]
    step = Step(source=label(edge.source), target=label(edge.target), op=target.op,
                formula=_tidy(edge.formula), rule=_rule(edge.vjp, target.name, loss_label),
                local=edge.local,
                source_shape=tuple(source.shape), target_shape=tuple(target.shape),
                grad=edge.grad, named=target.named or target.id == tr.output,
                input=edge.index if len(same) > 1 else None, ids=(edge.source, edge.target))
    return step


def explain(loss, wrt, names=None, max_paths=20) -> Explanation:
    """The chain-rule account of d loss / d wrt (see the module docstring).

    ``loss`` is a one-element Tensor; ``wrt`` a leaf that requires grad or an intermediate
    tensor of the graph. ``names`` (``{name: Tensor}``, or a list of tensors with ``.name`` set)
    overrides the names taken from the caller's variables. Above ``max_paths`` paths, they are
    grouped by the operation that reads ``wrt``.
    """
    if not isinstance(loss, Tensor) or loss.size != 1:
        raise ValueError(f"explain: loss must be a one-element Tensor, got "
                         f"{type(loss).__name__} of shape {np.shape(loss)}")
    if not isinstance(wrt, Tensor) or not wrt.requires_grad:
        raise ValueError("explain: wrt must be a Tensor that requires grad (a leaf created with "
                         "requires_grad=True, or a tensor computed from one)")
    tr = trace(loss, names=names)  # names from explain's caller: the first frame outside chainrule
    out = tr.loss
    loss_label = out.name if out.named else "L"
    if loss.grad_fn is None:  # the loss is a leaf: it is wrt or it does not depend on it
        loss_label = out.name if out.name != "tensor" else "L"
        n = 1 if loss is wrt else 0
        total = np.ones(wrt.shape, wrt.dtype) if n else np.zeros(wrt.shape, wrt.dtype)
        return Explanation(loss_label, loss_label if n else (wrt.name or "wrt"), n, total,
                           paths=[Path([], total)] if n else [], wrt_shape=wrt.shape, trace=tr)
    node = _node_of(tr, loss, wrt)
    if node is None:  # not in the graph, so not in the Trace: its name from the caller
        given = {id(t): k for k, t in names.items()} if isinstance(names, dict) else {}
        label = given.get(id(wrt)) or caller_names()[0].get(id(wrt)) or wrt.name or "wrt"
        return Explanation(loss_label, label, 0, np.zeros(wrt.shape, wrt.dtype),
                           wrt_shape=wrt.shape, trace=tr)
    label = _labeller(tr, loss_label)
    wrt_label = label(node.id)
    count = _path_counts(tr)
    n_paths = count.get(node.id, 0)
    message = tr.message
    total = None if node.grad is None else np.asarray(node.grad)
    from_grad = message is not None and node.kind == "parameter" and total is not None
    uses = [e for e in tr.uses_of(node.id) if e.differentiable and count.get(e.target, 0)]
    targets = [e.target for e in uses]
    shares = [Group(op=tr[e.target].op, n_paths=count[e.target], contribution=e.grad,
                    through=label(e.target) + ("" if targets.count(e.target) == 1
                                               else f" (as its input {e.index + 1})"))
              for e in uses]
    paths, groups = [], None
    if node.id == tr.output:
        paths = [Path([], np.ones(wrt.shape, wrt.dtype))]
        total = np.ones(wrt.shape, wrt.dtype)
    elif n_paths <= max_paths:
        for edges in tr.paths(node.id, limit=max_paths):
            steps = [_step(tr, e, label, loss_label) for e in edges]
            path = Path(steps)
            if path.scalar:
                path.contribution = np.asarray(np.prod([s.local for s in steps]), wrt.dtype)
            paths.append(path)
    else:
        groups = shares
    return Explanation(loss_label, wrt_label, n_paths, total, paths=paths, groups=groups,
                       shares=shares, message=message, wrt_shape=wrt.shape,
                       total_from_grad=from_grad, wrt_kind=node.kind, trace=tr)
