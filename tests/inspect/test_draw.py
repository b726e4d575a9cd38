"""Graph drawings: every operation, values and gradients from the real run, highlight, caps."""

import shutil

import numpy as np
import pytest

import chainrule as cr


def seed003():
    x1, x2 = cr.tensor(1.0), cr.tensor(1.0)
    w = {n: cr.tensor(v, requires_grad=True)
         for n, v in zip(("w1", "w2", "w3", "w4"), (0.5, -0.3, 0.8, 0.1))}
    z = cr.sigmoid(w["w1"] * x1 + w["w2"] * x2)
    f = cr.sigmoid(w["w3"] * z + w["w4"])
    return (f - 2.0) ** 2, w


def test_seed003_drawing_has_every_operation_and_the_gradients():
    loss, w = seed003()
    loss.backward(retain_graph=True)
    source = cr.draw(loss, names=w).source
    for op in ("power", "subtract", "sigmoid", "add", "multiply"):
        assert f"<{op}<br/>" in source
    assert source.count("<sigmoid<br/>") == 2 and source.count("<multiply<br/>") == 3
    for name, t in w.items():
        assert f"{name} (parameter)" in source
        assert f"grad {t.grad.item():.4f}".rstrip("0") in source
    # the gradient flowing into the output of the last sigmoid: dL/df = 2 (f - 2)
    f_value = float(source.split("<sigmoid<br/>() float32<br/>value ")[1].split("<")[0])
    assert f"grad {2 * (f_value - 2):.3f}"[:9] in source


def test_draw_does_not_touch_grad_and_works_before_backward():
    loss, w = seed003()
    source = cr.draw(loss, names=w).source
    assert all(t.grad is None for t in w.values())
    assert "grad 1." in source  # d loss / d loss, from the extra walk
    loss.backward()
    assert w["w1"].grad is not None


def test_highlight_marks_only_the_paths_from_the_parameter():
    loss, w = seed003()
    source = cr.draw(loss, names=w, highlight=w["w4"]).source
    red = [line for line in source.splitlines() if 'color="red"' in line]
    assert any("w4 (parameter)" in line for line in red)
    assert not any("w1 (parameter)" in line for line in red)
    assert not any(line.strip().startswith("leaf") and "->" in line and "w1" in line
                   for line in red)


def test_large_graph_is_capped_with_a_message():
    x = cr.tensor(1.0, requires_grad=True)
    h = x
    for _ in range(5000):
        h = h * 1.0001
    drawing = cr.draw(h, max_nodes=2000)
    assert drawing.message and "5,000 operations" in drawing.message
    assert "note" in drawing.source


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed "
                    "(scripts/install-system-deps.sh installs it)")
def test_renders_svg_and_png(tmp_path):
    loss, w = seed003()
    drawing = cr.draw(loss, names=w)
    assert drawing.save(tmp_path / "g.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    assert drawing.save(tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in drawing._repr_svg_()
    with pytest.raises(ValueError, match="use .svg, .png or .dot"):
        drawing.save(tmp_path / "g.jpg")


def test_values_of_large_tensors_are_summarised():
    W = cr.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    source = cr.draw(cr.tanh(W).sum()).source
    assert "mean 5.5 min 0 max 11" in source


def test_collapse_puts_each_layer_in_one_box():
    model = cr.nn.Sequential(cr.nn.Linear(4, 8), cr.nn.ReLU(), cr.nn.Linear(8, 3))
    loss = cr.nn.functional.cross_entropy(model(cr.randn(5, 4)), np.array([0, 1, 2, 0, 1]))
    full = cr.draw(loss, names=dict(model.named_parameters())).source
    collapsed = cr.draw(loss, collapse=model).source
    assert "0 (Linear)" in collapsed and "2 (Linear)" in collapsed
    assert "weight" not in collapsed and "0.weight" in full
    assert collapsed.count("->") < full.count("->")
    assert "<relu<br/>" in collapsed  # the activation between the layers stays visible
