import numpy as np
import pytest

import chainrule as cr


def _single_neuron():
    """Seed 004: z = w o_prev + b, o = sigmoid(z), C = (o - t)^2."""
    w = cr.tensor(0.8, requires_grad=True)
    b = cr.tensor(0.1, requires_grad=True)
    w.name, b.name = "w", "b"
    o_prev = cr.tensor(0.5)
    o_prev.name = "o_prev"
    t = cr.tensor(1.0)
    z = w * o_prev + b
    o = cr.sigmoid(z)
    C = (o - t) ** 2
    return w, b, o_prev, t, z, o, C


def test_seed_004_single_neuron_chain_equals_w_grad():
    w, b, o_prev, t, z, o, C = _single_neuron()
    e = cr.explain(C, w, names={"z": z, "o": o, "C": C})
    text = str(e)
    assert e.n_paths == 1 and len(e.paths) == 1
    assert "dC/dw = dz/dw · do/dz · dC/do" in text
    assert "o_prev · s(z) (1 - s(z)) · 2 * x" in text  # o^{L-1} f'(z) 2(o - t), x = o - t
    s = 1 / (1 + np.exp(-(0.8 * 0.5 + 0.1)))
    dz_dw, do_dz, dC_do = 0.5, s * (1 - s), 2 * (s - 1)
    locals_ = [step.local for step in e.paths[0].steps]
    assert locals_ == pytest.approx([dz_dw, 1.0, do_dz, 1.0, dC_do], rel=1e-5)
    assert f"{dz_dw:.4g} · {do_dz:.4g} · {dC_do:.4g}" in text
    assert "d sigmoid/d x = s(x) (1 - s(x)) = 0.235" in text
    C.backward()
    assert float(e.total) == pytest.approx(float(w.grad.data), rel=1e-6)
    assert float(e.total) == pytest.approx(dz_dw * do_dz * dC_do, rel=1e-5)


def test_bias_path_and_renderings():
    w, b, o_prev, t, z, o, C = _single_neuron()
    e = cr.explain(C, b, names={"z": z, "o": o, "C": C})
    assert [s.op for s in e.paths[0].steps] == ["add", "sigmoid", "subtract", "power"]
    assert "dC/db = dz/db · do/dz · dC/do" in str(e)
    md, tex = e.to_markdown(), e.to_latex()
    assert "| sigmoid | d sigmoid/d x = `s(x) (1 - s(x))` | 0.235 |" in md
    assert tex.startswith("\\begin{align*}") and "\\frac{\\partial C}{\\partial b}" in tex
    assert "\\mathrm{sigmoid}" in tex
    (gb,) = cr.gradients(C, [b])
    assert float(e.total) == pytest.approx(float(gb.data), rel=1e-6)


def test_sum_of_paths_equals_gradient_for_tensors():
    x = cr.tensor([0.3, -1.2, 2.0], requires_grad=True)
    h = cr.tanh(x)
    loss = (h * h + h * x + cr.exp(x) / 3.0).sum()
    e = cr.explain(loss, x)
    assert e.n_paths == 5 and len(e.paths) == 5
    contributions = [p.contribution for p in e.paths]
    (expected,) = cr.gradients(loss, [x], retain_graph=True)
    np.testing.assert_allclose(np.sum(contributions, axis=0), expected.data, rtol=1e-6)
    np.testing.assert_allclose(e.total, expected.data, rtol=1e-6)
    assert all(p.contribution.shape == (3,) and not p.scalar for p in e.paths)
    assert "d tanh/d x = 1 - tanh(x)^2" in str(e) and "5 paths" in str(e)


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
    assert e_h.n_paths == 1


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


def test_errors_and_unreached():
    x = cr.tensor([1.0, 2.0], requires_grad=True)
    other = cr.tensor([1.0], requires_grad=True)
    loss = (x * x).sum()
    e = cr.explain(loss, other)
    assert e.n_paths == 0 and np.all(e.total == 0)
    with pytest.raises(ValueError, match="one-element"):
        cr.explain(x * 2, x)
    loss.backward()
    with pytest.raises(RuntimeError, match="explain: .*before loss.backward"):
        cr.explain(loss, x)
