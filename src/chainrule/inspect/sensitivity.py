"""How the loss reacts to each element of a parameter, read off its gradient (seed 002's table).

After ``loss.backward()``, ``print(cr.inspect.sensitivity(layer.bias))`` lists, per element: its
gradient dL/db_i; the direction of the next gradient-descent step (``b <- b - lr * grad``: a
positive gradient means "decrease", a negative one "increase"); the relative size of that step,
``|g_i| / max |g|``; and whether the element barely affects the loss at all (``|g_i|`` below
``negligible`` times the largest, or exactly zero).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chainrule.tensor import Tensor

__all__ = ["sensitivity", "Sensitivity"]


@dataclass
class Sensitivity:
    """The table `sensitivity` builds: ``rows`` (a list of dicts), text and Markdown renderings.

    Each row has ``index`` (a tuple), ``label`` ("b[0]"), ``grad``, ``direction`` ("decrease",
    "increase" or "none" for a zero gradient), ``relative`` (|g| / max|g|, in [0, 1]) and
    ``negligible`` (bool).
    """

    name: str
    shape: tuple
    rows: list
    negligible: float
    max_abs_grad: float

    def row(self, index) -> dict:
        """The row of element ``index`` (an int for 1-d parameters, or a tuple)."""
        index = (index,) if isinstance(index, (int, np.integer)) else tuple(index)
        for r in self.rows:
            if r["index"] == index:
                return r
        raise KeyError(f"sensitivity: element {index} of {self.name} (shape {self.shape}) is not "
                       f"in this table (top_k may have left it out)")

    def _cells(self):
        for r in self.rows:
            yield (r["label"], f"{r['grad']:+.4g}", r["direction"], f"{r['relative']:.2f}",
                   "barely affects the loss" if r["negligible"] else "")

    def __str__(self):
        head = ("element", "gradient", "next step", "relative size", "")
        cells = [head] + list(self._cells())
        widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
        lines = [f"sensitivity of the loss to {self.name} (shape {self.shape}; largest |grad| "
                 f"{self.max_abs_grad:.4g})"]
        for c in cells:
            lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())
        return "\n".join(lines)

    def __repr__(self):
        return str(self)

    def to_markdown(self) -> str:
        """A Markdown table with the same columns as the text."""
        lines = ["| element | dL/d element | next step | relative size | note |",
                 "|---|---:|---|---:|---|"]
        lines += ["| " + " | ".join(c) + " |" for c in self._cells()]
        return "\n".join(lines)


def sensitivity(param, top_k=None, negligible=0.01, name=None) -> Sensitivity:
    """Seed 002's table for ``param`` (a Tensor after backward, with ``.grad`` set).

    ``top_k`` keeps only the k elements with the largest |gradient| (largest first); otherwise
    every element in order. An element is ``negligible`` when ``|g| <= negligible * max|g|``.
    """
    if not isinstance(param, Tensor):
        raise TypeError(f"sensitivity: expected a Tensor parameter, got {type(param).__name__}")
    if param.grad is None:
        raise ValueError(f"sensitivity: {name or param.name or 'the parameter'} (shape "
                         f"{param.shape}) has no gradient; call loss.backward() first")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"sensitivity: top_k must be a positive int or None, got {top_k!r}")
    name = name or param.name or "param"
    g = np.asarray(param.grad.data, dtype=np.float64)
    biggest = float(np.max(np.abs(g))) if g.size else 0.0
    if top_k is None:
        order = range(g.size)
    else:  # stable sort, so equal magnitudes keep their element order
        order = np.argsort(-np.abs(g.ravel()), kind="stable")[:top_k]
    rows = []
    for flat in order:
        index = tuple(int(i) for i in np.unravel_index(int(flat), g.shape))
        value = float(g.ravel()[flat])
        relative = abs(value) / biggest if biggest > 0 else 0.0
        rows.append({
            "index": index,
            "label": f"{name}[{', '.join(map(str, index))}]",
            "grad": value,
            # gradient descent steps against the gradient
            "direction": "decrease" if value > 0 else ("increase" if value < 0 else "none"),
            "relative": relative,
            "negligible": value == 0 or relative <= negligible,
        })
    return Sensitivity(name, tuple(g.shape), rows, negligible, biggest)
