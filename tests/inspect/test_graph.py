import numpy as np

import chainrule as cr
from chainrule.inspect import graph as G


def _net():
    w = cr.tensor([0.5, -1.0], requires_grad=True)
    x = cr.tensor([2.0, 3.0])
    h = cr.tanh(w * x)
    loss = (h * h).sum()
    return w, loss


def test_nodes_come_before_their_parents():
    w, loss = _net()
    g = G.walk(loss)
    assert g.nodes[0] is loss.grad_fn
    assert [G.op_name(n) for n in g.nodes] == ["sum", "multiply", "tanh", "multiply"]
    position = {n: i for i, n in enumerate(g.nodes)}
    for n in g.nodes:
        for _, p in g.parents(n):
            if isinstance(p, cr.autograd.Node):
                assert position[p] > position[n]


def test_leaves_consumers_and_formulas():
    w, loss = _net()
    g = G.walk(loss)
    assert len(g.leaves) == 1 and g.leaves[0] is w
    (use,) = g.consumers(w)
    node, index = use
    assert G.op_name(node) == "multiply" and index == 0
    assert G.formulas(node) == ("grad * y", "grad * x")
    assert G.input_names(node) == ("x", "y")
    square = g.nodes[1]
    assert len(g.consumers(g.nodes[2])) == 2  # tanh's output is used twice by h * h
    assert set(G.saved_values(square)) == {"x", "y"}
    assert G.describe(square) == "MultiplyBackward (multiply)"


def test_saved_values_are_empty_after_backward():
    w, loss = _net()
    g = G.walk(loss)
    tanh_node = g.nodes[2]
    assert np.allclose(G.saved_values(tanh_node)["out"], np.tanh([1.0, -3.0]))
    loss.backward()
    assert G.saved_values(tanh_node) == {}


def test_deep_chain_has_no_recursion_limit():
    x = cr.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0
    g = G.walk(y)
    assert len(g) == 5000 and g.leaves[0] is x


def test_leaf_root_and_function_nodes():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    assert G.walk(x).nodes == [] and G.walk(x).leaves[0] is x

    class Twice(cr.Function):
        @staticmethod
        def forward(ctx, a):
            return a * 2

        @staticmethod
        def backward(ctx, grad):
            return grad * 2

    g = G.walk(Twice.apply(x))
    assert G.op_name(g.nodes[0]) == "Twice"
    assert G.formulas(g.nodes[0]) == ("custom backward",)
    assert G.input_names(g.nodes[0]) == ("x",)
