"""Checking the engine's gradients against central finite differences, in float64.

``cr.gradcheck(f, x, y)`` runs ``f`` on float64 copies of the inputs, differentiates it with the
engine, and compares with ``(f(x + eps) - f(x - eps)) / (2 eps)`` element by element. The report
says, for each input, the largest absolute and relative error and the element where the check is
worst, with both values side by side.

Which inputs are checked: every floating-point input (Python numbers, lists, arrays, Tensors)
except Tensors with ``requires_grad=False``, which are passed to ``f`` as float64 constants.
Integer inputs are passed unchanged. A call in which no input is checked raises ValueError (a
check that compared nothing must not pass).

What is compared: the full Jacobian when ``f``'s output has at most ``max_outputs`` elements (one
backward pass per output element); above that, ``n_vectors`` vector-Jacobian products ``v^T J``
with random Gaussian vectors ``v`` (a wrong rule survives that only on a measure-zero set of
vectors). A value passes where ``|analytic - numeric| <= atol + rtol * |numeric|``.
"""

from __future__ import annotations

import inspect as _pyinspect
from dataclasses import dataclass, field

import numpy as np

from chainrule import autograd
from chainrule.tensor import Tensor
from chainrule.transforms import gradients

__all__ = ["gradcheck", "GradcheckError", "GradcheckReport", "InputCheck"]


class GradcheckError(AssertionError):
    """The engine's gradient disagrees with finite differences; the message is the report."""


@dataclass
class InputCheck:
    """The comparison for one input of ``f``.

    ``worst_index`` is the element of this input with the largest absolute error;
    ``worst_output`` the output element of that Jacobian entry (None when vector-
    Jacobian products were compared). ``analytic`` and ``numeric`` are the two values there.
    """

    position: int
    name: str
    shape: tuple
    passed: bool
    max_abs_error: float
    max_rel_error: float
    worst_index: tuple
    worst_output: tuple | None
    analytic: float
    numeric: float

    def __str__(self):
        verdict = "ok" if self.passed else "FAILED"
        where = f"element {self.worst_index}"
        if self.worst_output is not None:
            where += f" (output element {self.worst_output})"
        return (f"input {self.position} ({self.name}, shape {self.shape}): {verdict}; "
                f"max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}; "
                f"worst at {where}: analytic {self.analytic:.8g} vs numeric {self.numeric:.8g}")


@dataclass
class GradcheckReport:
    """What `gradcheck` found: ``passed`` and one `InputCheck` per checked input."""

    passed: bool
    mode: str  # "jacobian" or "vjp"
    output_shape: tuple
    eps: float
    atol: float
    rtol: float
    inputs: list = field(default_factory=list)

    def __bool__(self):
        return self.passed

    def __str__(self):
        compared = ("full Jacobian" if self.mode == "jacobian"
                    else "random vector-Jacobian products")
        head = (f"gradcheck {'passed' if self.passed else 'FAILED'} ({compared} of an output of "
                f"shape {self.output_shape}; eps={self.eps:g}, atol={self.atol:g}, "
                f"rtol={self.rtol:g})")
        lines = [head] + [f"  {check}" for check in self.inputs]
        if not self.inputs:
            lines.append("  (no floating-point input to check)")
        return "\n".join(lines)

    def __repr__(self):
        return str(self)


def _parameter_names(f, n):
    try:
        params = list(_pyinspect.signature(f).parameters.values())
    except (TypeError, ValueError):
        return [f"arg{i}" for i in range(n)]
    names = []
    for i in range(n):
        if i < len(params) and params[i].kind in (params[i].POSITIONAL_ONLY,
                                                   params[i].POSITIONAL_OR_KEYWORD):
            names.append(params[i].name)
        elif params and params[-1].kind == params[-1].VAR_POSITIONAL:
            names.append(f"{params[-1].name}[{i - len(params) + 1}]")
        else:
            names.append(f"arg{i}")
    return names


def _prepare(inputs):
    """float64 copies of the inputs, and the positions of those to check."""
    values, checked = [], []
    for i, a in enumerate(inputs):
        if isinstance(a, Tensor):
            data = np.array(a.data, dtype=np.float64) if a.dtype.kind == "f" else a.data
            values.append(data)
            if a.requires_grad and a.dtype.kind == "f":
                checked.append(i)
            continue
        data = np.asarray(a)
        # Python numbers and lists count as real inputs even when written without a dot.
        if data.dtype.kind == "f" or (data.dtype.kind in "iu" and isinstance(a, (float, list,
                                                                                  tuple))):
            values.append(np.array(data, dtype=np.float64))
            checked.append(i)
        else:
            values.append(a)
    return values, checked


def _describe_input(a) -> str:
    if isinstance(a, Tensor):
        return f"Tensor {a.shape} {a.dtype}, requires_grad={a.requires_grad}"
    if isinstance(a, np.ndarray):
        return f"array {a.shape} {a.dtype}"
    return type(a).__name__


def _call(f, values, checked, requires_grad):
    args = [Tensor(np.array(v), requires_grad=requires_grad) if i in checked
            else (Tensor(v) if isinstance(v, np.ndarray) and v.dtype == np.float64 else v)
            for i, v in enumerate(values)]
    out = f(*args)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: f must return a Tensor, got {type(out).__name__}")
    return args, out


def _analytic(f, values, checked, directions):
    """Rows ``d <direction, f> / d input`` for each direction, per checked input."""
    with autograd.enable_grad():
        args, out = _call(f, values, checked, requires_grad=True)
    leaves = [args[i] for i in checked]
    rows = [[] for _ in checked]
    for v in directions:
        v = v.reshape(out.shape)
        grads = (gradients(out, leaves, grad_outputs=v, retain_graph=True)
                 if out.requires_grad else [None] * len(leaves))
        for r, g, leaf in zip(rows, grads, leaves):
            r.append(np.zeros(leaf.shape) if g is None else np.asarray(g.data, np.float64))
    return [np.stack(r) if r else np.zeros((0,) + leaf.shape) for r, leaf in zip(rows, leaves)]


def _numeric(f, values, checked, directions, eps):
    """The same rows by central differences, one pair of evaluations per input element."""
    out_rows = []
    with autograd.no_grad():
        for i in checked:
            base = values[i]
            rows = np.zeros((len(directions),) + base.shape)
            for k in np.ndindex(base.shape):
                evaluated = []
                for step in (eps, -eps):
                    shifted = list(values)
                    shifted[i] = base.copy()
                    shifted[i][k] += step
                    _, out = _call(f, shifted, checked, requires_grad=False)
                    evaluated.append(np.asarray(out.data, np.float64).ravel())
                slope = (evaluated[0] - evaluated[1]) / (2 * eps)
                rows[(slice(None),) + k] = directions @ slope
            out_rows.append(rows)
    return out_rows


def _compare(position, name, analytic, numeric, atol, rtol, output_shape):
    """One `InputCheck`; ``output_shape`` is None when the rows are random projections."""
    diff = np.abs(analytic - numeric)
    allowed = atol + rtol * np.abs(numeric)
    rel = diff / np.maximum(np.abs(numeric), np.finfo(np.float64).tiny)
    bad = ~np.isfinite(analytic) | ~np.isfinite(numeric)
    ratio = np.where(bad, np.inf, diff / allowed)
    shape = analytic.shape[1:]
    if analytic.size == 0:
        return InputCheck(position, name, shape, True, 0.0, 0.0, (), None, 0.0, 0.0)
    # The worst element is the one with the largest absolute error (non-finite values first).
    worst = np.unravel_index(int(np.argmax(np.where(bad, np.inf, diff))), analytic.shape)
    return InputCheck(
        position=position, name=name, shape=shape,
        passed=bool(np.all(ratio <= 1)),
        max_abs_error=float(np.max(np.where(bad, np.inf, diff))),
        max_rel_error=float(np.max(np.where(bad, np.inf, rel))),
        worst_index=tuple(int(j) for j in worst[1:]),
        worst_output=None if output_shape is None else tuple(
            int(j) for j in np.unravel_index(int(worst[0]), output_shape)),
        analytic=float(analytic[worst]), numeric=float(numeric[worst]))


def gradcheck(f, *inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_on_failure=False,
              max_outputs=64, n_vectors=4, seed=0) -> GradcheckReport:
    """Compare the engine's gradients of ``f(*inputs)`` with central finite differences.

    Inputs are converted to float64 leaves (see the module docstring for which are checked).
    Returns a `GradcheckReport`; with ``raise_on_failure=True`` a failure raises
    `GradcheckError` whose message is the report.
    """
    if eps <= 0:
        raise ValueError(f"gradcheck: eps must be positive, got {eps}")
    values, checked = _prepare(inputs)
    if not checked:
        described = ", ".join(_describe_input(a) for a in inputs) or "none"
        raise ValueError(
            f"gradcheck: nothing was checked: none of the inputs is one whose gradient "
            f"gradcheck compares (inputs: {described}). Tensors with "
            f"requires_grad=False are passed as constants and integer arrays unchanged; make "
            f"the input to check a Tensor with requires_grad=True, or pass it as a float array, "
            f"list or number")
    names = _parameter_names(f, len(inputs))
    for i in checked:
        if isinstance(inputs[i], Tensor) and inputs[i].name:
            names[i] = inputs[i].name
    with autograd.no_grad():
        _, probe = _call(f, values, checked, requires_grad=False)
    m = probe.size
    if m <= max_outputs:
        mode, directions = "jacobian", np.eye(m)
    else:
        mode = "vjp"
        directions = np.random.default_rng(seed).standard_normal((n_vectors, m))
    analytic = _analytic(f, values, checked, directions)
    numeric = _numeric(f, values, checked, directions, eps)
    report = GradcheckReport(True, mode, probe.shape, eps, atol, rtol)
    for i, a, n in zip(checked, analytic, numeric):
        check = _compare(i, names[i], a, n, atol, rtol,
                         probe.shape if mode == "jacobian" else None)
        report.inputs.append(check)
        report.passed &= check.passed
    if raise_on_failure and not report.passed:
        raise GradcheckError(str(report))
    return report
