"""Anomaly mode: stop at the first operation that makes a NaN or an infinity, forward or backward.

    with cr.detect_anomaly():
        loss = model(x)          # raises AnomalyError at the first non-finite forward value
        loss.backward()          # raises at the first backward rule that returns NaN/Inf,
                                 # showing where in your code that operation was created

While it is on, every recorded node keeps, in ``node.trace``, the stack of the user's code that
created it (chainrule's own frames trimmed). Off, the engine only tests one flag per operation:
nothing else runs and nothing is stored.
"""

from __future__ import annotations

import functools
import os
import threading
import traceback

import numpy as np

import chainrule
from chainrule import autograd
from chainrule.inspect import graph
from chainrule.tensor import Tensor

__all__ = ["detect_anomaly", "AnomalyError"]

_PACKAGE_DIR = os.path.dirname(os.path.abspath(chainrule.__file__)) + os.sep
_MAX_FRAMES = 5


class AnomalyError(RuntimeError):
    """A NaN or an infinity appeared; the message names the operation, the pass and the place."""


def _user_stack():
    """The current stack without chainrule's own frames (the last few user frames)."""
    frames = [f for f in traceback.extract_stack()[:-1]
              if not os.path.abspath(f.filename).startswith(_PACKAGE_DIR)]
    return traceback.StackSummary.from_list(frames[-_MAX_FRAMES:])


def _where(trace) -> str:
    if not trace:
        return "  (no creation trace: the operation was recorded outside detect_anomaly)"
    return "".join(trace.format()).rstrip()


def _non_finite(values) -> str | None:
    """A description of the NaNs/Infs in ``values`` ("2 of 3 elements: nan, -inf"), or None."""
    arr = values.data if isinstance(values, Tensor) else values
    arr = np.asarray(arr)
    if arr.dtype.kind not in "fc":
        return None
    finite = np.isfinite(arr)
    if finite.all():
        return None
    bad = arr[~finite]
    kinds = sorted({str(v) for v in bad.ravel()[:1000].tolist()})
    first = np.unravel_index(int(np.argmin(finite.ravel())), arr.shape)
    return (f"{bad.size} of {arr.size} element{'s' if arr.size != 1 else ''} "
            f"({', '.join(kinds)}), first at index {tuple(int(i) for i in first)}")


def _check_forward(op, node, out, args):
    trace = _user_stack()
    if node is not None:
        node.trace = trace
    problem = _non_finite(out)
    if problem is None:
        return
    already = [i for i, a in enumerate(args) if _non_finite(a) is not None]
    note = (f" (input{'s' if len(already) > 1 else ''} {', '.join(map(str, already))} "
            f"already non-finite)") if already else ""
    raise AnomalyError(
        f"detect_anomaly: the forward of '{op.name}' produced a non-finite value: {problem}"
        f"{note}.\nThe operation was called at:\n{_where(trace)}")


def _check_backward(node, input_grads):
    names = graph.input_names(node)
    rules = graph.formulas(node)
    for i, g in enumerate(input_grads):
        if g is None:
            continue
        problem = _non_finite(g)
        if problem is None:
            continue
        raise AnomalyError(
            f"detect_anomaly: the backward of '{graph.op_name(node)}' ({node.name}) returned a "
            f"non-finite gradient for input {i} ({names[i]}; rule: {rules[i]}): {problem}.\n"
            f"The operation was created at:\n{_where(node.trace)}")


# NumPy's own warnings about the same NaN or infinity ("divide by zero encountered in log") are
# silenced in the operations that anomaly mode checks: its error names the operation and the
# line, and a warning pointing into chainrule's engine beside it says nothing more.
_QUIET = {"divide": "ignore", "over": "ignore", "invalid": "ignore"}


class detect_anomaly:
    """Context manager (and decorator) that raises `AnomalyError` at the first NaN/Inf.

    ``detect_anomaly(False)`` turns the checks off inside its block. Leaving the block restores
    whatever was in force before, so blocks nest. The mode belongs to the thread that enters the
    block (as in PyTorch): other threads run unchecked. Inside the block NumPy's floating-point
    warnings from chainrule's operations are silenced, since the error reports the problem;
    the user's own NumPy code still warns.
    """

    def __init__(self, enabled: bool = True):
        self.enabled = bool(enabled)
        self._previous = {}  # thread id -> the states to restore, innermost last

    def __enter__(self):
        a = autograd.anomaly
        self._previous.setdefault(threading.get_ident(), []).append(
            (a.enabled, a.on_forward, a.on_backward, a.errstate))
        if self.enabled:
            a.on_forward, a.on_backward = _check_forward, _check_backward
            a.errstate = _QUIET
        else:
            a.errstate = None
        a.enabled = self.enabled
        return self

    def __exit__(self, *exc):
        a = autograd.anomaly
        ident = threading.get_ident()
        stack = self._previous[ident]
        a.enabled, a.on_forward, a.on_backward, a.errstate = stack.pop()
        if not stack:
            del self._previous[ident]
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.enabled):
                return fn(*args, **kwargs)

        return wrapper
