import re

import numpy as np
import pytest

import chainrule as cr
from chainrule.inspect.examples import seed_003, seed_004
from chainrule.inspect.record import record


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _table_names_leak(text):
    """A table argument name (x, y) standing alone, as if it were one of the user's tensors."""
    return re.findall(r"(?<![\w.#])[xy](?![\w])", text)


def test_seed_003_in_the_users_names_with_numbers_equal_to_w1_grad():
    loss, t = seed_003()
    w1 = t["w1"]
    e = cr.explain(loss, w1)  # no names=: w1 is found through this frame's variable
    text = str(e)
    assert text.startswith("∂loss/∂w1: 1 path from w1 to loss")  # this frame's names
    for name in ("w1", "x1", "z", "f"):
        assert re.search(rf"(?<![\w.]){name}(?![\w])", text), name
    assert "d multiply/d x" not in text and "∂x" not in text and "(x)" not in text
    assert "∂(multiply #1)/∂w1 = x1 = 1" in text
    assert "∂z/∂(add #3) = z·(1 − z) = 0.2475" in text
    assert "∂loss/∂w1 = ∂z/∂w1 · ∂f/∂z · ∂loss/∂f" in text  # the chain over named tensors
    z = _sigmoid(0.5 - 0.3)
    f = _sigmoid(0.8 * z + 0.1)
    by_hand = [1, 1, z * (1 - z), 0.8, 1, f * (1 - f), 1, 2 * (f - 2)]
    (path,) = e.paths
    assert [s.local for s in path.steps] == pytest.approx(by_hand, rel=1e-5)
    assert w1.grad is None  # explain never writes .grad
    loss.backward()
    assert float(path.contribution) == pytest.approx(float(w1.grad.data), rel=1e-6)
    assert float(e.total) == pytest.approx(float(w1.grad.data), rel=1e-6)
    assert f"= {float(w1.grad.data):.4g}  (what backward() puts in w1.grad)" in text


def test_recorded_graph_explains_the_same_before_and_after_backward():
    loss, t = seed_004()
    before = {k: str(cr.explain(loss, t[k], names=t)) for k in ("w", "b")}
    loss.backward()  # frees the graph's saved values; the record keeps its own copies
    after = {k: str(cr.explain(loss, t[k], names=t)) for k in ("w", "b")}
    assert before == after
    text = after["w"]
    assert "∂C/∂w = ∂z/∂w · ∂o/∂z · ∂(o - t)/∂o · ∂C/∂(o - t)" in text
    assert "= o_prev · o·(1 − o) · 1 · 2·(o - t)" in text  # o_prev f'(z) 2(o - t), seed 004
    assert "note:" not in text and not _table_names_leak(text)
    assert f"∂C/∂w = {float(t['w'].grad.data):.4g}" in text
    assert f"∂C/∂b = {float(t['b'].grad.data):.4g}" in after["b"]


def test_without_a_record_it_works_before_backward_and_says_what_is_missing_after():
    w = cr.tensor(0.8, requires_grad=True)
    o_prev = cr.tensor(0.5)
    o = cr.sigmoid(w * o_prev)
    C = (o - 0.9) ** 2
    e = cr.explain(C, w)
    s = _sigmoid(0.4)
    assert float(e.total) == pytest.approx(0.5 * s * (1 - s) * 2 * (s - 0.9), rel=1e-5)
    assert e.message is None and w.grad is None
    C.backward()
    late = cr.explain(C, w)
    assert late.message and "backward() freed" in late.message
    assert "inspect.record" in str(late)
    assert late.total_from_grad and "read from w.grad" in str(late)
    assert float(w.grad.data) == pytest.approx(float(e.total), rel=1e-6)  # not touched


def test_paths_of_numbers_add_up_to_the_gradient():
    x = cr.tensor(0.7, requires_grad=True)
    with record():
        y = x * x + cr.sin(x)  # three paths: both inputs of the product, and sin
    e = cr.explain(y, x)
    assert e.n_paths == 3 and all(p.scalar for p in e.paths)
    contributions = sorted(float(p.contribution) for p in e.paths)
    assert contributions == pytest.approx(sorted([0.7, 0.7, np.cos(0.7)]), rel=1e-5)
    (g,) = cr.gradients(y, [x])
    assert sum(contributions) == pytest.approx(float(g.data), rel=1e-6)
    text = str(e)
    assert "(as its input 1)" in text and "(as its input 2)" in text
    assert f"= {float(e.total):.4g}  (the sum over the paths" in text


def test_tensors_show_shapes_norms_and_rules_and_add_up():
    x = cr.tensor([0.3, -1.2, 2.0], requires_grad=True)
    h = cr.tanh(x)
    loss = (h * h + h * x + cr.exp(x) / 3.0).sum()
    e = cr.explain(loss, x)
    (expected,) = cr.gradients(loss, [x], retain_graph=True)
    text = str(e)
    assert e.n_paths == 5 and len(e.paths) == 5
    assert all(p.contribution is None and not p.scalar for p in e.paths)
    assert "x has shape (3,)" in text and "∂h/∂x = 1 − h^2 (elementwise)" in text
    # sum's rule; at the output the upstream gradient is dloss/dloss = 1
    assert "the gradient flows back as 1 broadcast back to (add #7)'s shape" in text
    assert "(3,) → (3,); gradient along this edge: norm " in text
    np.testing.assert_allclose(e.total, expected.data, rtol=1e-6)
    np.testing.assert_allclose(sum(g.contribution for g in e.shares), expected.data, rtol=1e-6)
    assert sum(g.n_paths for g in e.shares) == 5
    norm = np.linalg.norm(expected.data)
    assert f"norm {norm:.4g}" in text.splitlines()[-1]
    md, tex = e.to_markdown(), e.to_latex()
    assert "| ∂h/∂x | `1 − h^2` |" in md and "| through | paths | gradient |" in md
    assert tex.startswith("\\begin{align*}") and "\\frac{\\partial \\mathrm{loss}}" in tex


def test_tiny_gradients_keep_their_digits():
    x = cr.tensor([1e-9, -2e-9, 3e-9, 4e-9, 5e-9, 6e-9, 7e-9], requires_grad=True)
    e = cr.explain((x * x).sum(), x)
    norm = float(np.linalg.norm(2 * x.data.astype(np.float64)))
    assert f"norm {norm:.4g}" in str(e) and "norm 0" not in str(e)


def test_intermediate_wrt_and_broadcasting():
    x = cr.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    bias = cr.tensor([0.5, -0.5], requires_grad=True)
    h = cr.sigmoid(x * bias + bias)  # bias reaches h twice, broadcast over rows
    loss = (h * 2.0).mean()
    e_bias = cr.explain(loss, bias)
    e_h = cr.explain(loss, h)
    g_bias, g_h = cr.gradients(loss, [bias, h], retain_graph=True)
    assert e_bias.n_paths == 2 and e_bias.total.shape == (2,)
    np.testing.assert_allclose(e_bias.total, g_bias.data, rtol=1e-6)
    np.testing.assert_allclose(e_h.total, g_h.data, rtol=1e-6)
    assert e_h.n_paths == 1 and e_h.wrt_label == "h"
    assert str(e_h).startswith("∂loss/∂h: 1 path from h to loss; h has shape (2, 2)")


def test_many_paths_are_grouped():
    x = cr.tensor(0.5, requires_grad=True)
    y = x
    for _ in range(6):  # each level triples the paths (y, y and sin(y)): 3^6
        y = y * y + cr.sin(y)
    e = cr.explain(y, x)
    assert e.n_paths == 3 ** 6 and e.paths == [] and e.groups
    assert sum(g.n_paths for g in e.groups) == e.n_paths
    assert "too many paths" in str(e) and "grouped" in str(e)
    (expected,) = cr.gradients(y, [x], retain_graph=True)
    assert float(e.total) == pytest.approx(float(expected.data), rel=1e-5)
    assert sum(float(g.contribution) for g in e.groups) == pytest.approx(float(e.total), rel=1e-5)


def test_no_hooks_run_and_errors_and_unreached():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    other = cr.tensor([1.0], requires_grad=True)
    calls = []
    x.register_hook(lambda g: calls.append(g))
    loss = (x * x).sum()
    e = cr.explain(loss, x)
    assert calls == [] and x.grad is None
    np.testing.assert_allclose(e.total, [2.0, 4.0])
    e = cr.explain(loss, other)
    assert e.n_paths == 0 and np.all(e.total == 0)
    assert "does not reach loss" in str(e)
    with pytest.raises(ValueError, match="one-element"):
        cr.explain(x * 2, x)
    with pytest.raises(ValueError, match="requires grad"):
        cr.explain(loss, cr.tensor([1.0, 2.0]))
