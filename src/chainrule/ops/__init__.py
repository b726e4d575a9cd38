"""THE TABLE: every primitive's forward and vector-Jacobian product, side by side.

A row is ``Primitive(name, forward, [rule for input 0, rule for input 1, ...], [formulas])``.
A rule is ``rule(grad, ans, *inputs, **params)``: ``grad`` is dL/d(ans), ``ans`` the forward
result, and it returns dL/d(input). Rules use only operators, methods shared by ``ndarray`` and
``Tensor``, and other rows of this table, so one rule serves the ordinary backward pass (arrays)
and ``create_graph=True`` (Tensors, recorded). Rows marked ``broadcasts=True`` return gradients
in the broadcast shape; the machinery sums them back to each input's shape. The formula strings
are what the explainer and the graph drawing show as "the local derivative".

Beside the rows are the public functions (``cr.sum``, ``cr.reshape``, ...): they check and
normalise arguments, then call a row. On plain arrays every row computes with NumPy and returns
an array, like a NumPy function; on Tensors it returns a Tensor and records the operation.

The table is split by family, each file still a table: ``elementwise`` (arithmetic, functions,
comparisons), ``shape``, ``reductions``, ``linalg`` (products) and ``nn`` (fused rows for layers
and losses). Every row and function is also reachable here, as ``ops.<name>``.
"""

from types import ModuleType

from chainrule.ops import elementwise, linalg, nn, reductions, shape

for _family in (elementwise, shape, reductions, linalg, nn):
    globals().update({name: value for name, value in vars(_family).items()
                      if not name.startswith("__") and not isinstance(value, ModuleType)})
del _family
