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
    assert "grad 1>" in source  # d loss / d loss, from the extra walk
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
    # w4 -> add -> sigmoid -> subtract -> power: exactly four edges on the path
    assert sum("->" in line for line in red) == 4
    assert sum("->" not in line for line in red) == 5  # w4 and the four operations


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
    assert collapsed.count(" label=<") < full.count(" label=<")  # fewer nodes
    assert "<relu<br/>" in collapsed  # the activation between the layers stays visible


def test_trace_shows_every_forward_value_input_and_constant():
    from chainrule.inspect.examples import seed_003

    loss, names = seed_003()  # built inside cr.inspect.trace()
    source = cr.draw(loss, names=names).source
    # multiply keeps no forward result of its own: the values come from the trace
    assert "<multiply<br/>() float32<br/>value 0.5<br/>" in source
    assert "<multiply<br/>() float32<br/>value -0.3<br/>" in source
    assert "x1 (input)" in source and "x2 (input)" in source
    assert "ellipse" in source.split("x1 (input)")[0].splitlines()[-1]
    assert "y = 2<br/>" in source  # the label y = 2 of seed 003, a constant of the subtraction
    assert "sigmoid = f" in source and "power = L" in source


def test_trace_restores_the_anomaly_hook_and_chains_to_detect_anomaly():
    from chainrule import autograd

    before = (autograd.anomaly.enabled, autograd.anomaly.on_forward)
    x = cr.tensor([-1.0], requires_grad=True)
    with cr.detect_anomaly(), cr.inspect.trace(), np.errstate(invalid="ignore"):
        with pytest.raises(cr.inspect.AnomalyError, match="log"):
            cr.log(x)
        y = cr.exp(x) * 3.0
    assert (autograd.anomaly.enabled, autograd.anomaly.on_forward) == before
    assert "y = 3<br/>" in cr.draw(y.sum()).source  # the constant factor, remembered by trace


def test_inputs_without_grad_are_drawn_from_what_the_graph_saved():
    x = cr.tensor([1.0, 2.0])
    x.name = "pixels"
    w = cr.tensor([0.5, 0.5], requires_grad=True)
    source = cr.draw((w * x).sum()).source  # no trace: multiply saved x for w's rule
    line = next(line for line in source.splitlines() if "pixels (input)" in line)
    assert "shape=ellipse" in line and "#eeeeee" in line
    assert "style=dashed" in source


def test_shared_leaves_of_big_graphs_are_drawn_once_per_use():
    w = cr.tensor(1.0, requires_grad=True)
    w.name = "w"
    h = w
    for _ in range(150):
        h = h * w + 0.5
    drawing = cr.draw(h)
    assert drawing.message is None
    assert drawing.source.count("w (parameter)") == 151  # one copy per use
    small = cr.draw(w * w + w)
    assert small.source.count("w (parameter)") == 1


def test_capped_drawing_renders_its_message_quickly(tmp_path):
    x = cr.tensor(1.0, requires_grad=True)
    h = x
    for _ in range(300):
        h = cr.tanh(h)
    drawing = cr.draw(h, max_nodes=100)
    assert drawing.node_count == 301
    assert "more than max_nodes=100" in drawing.message
    assert drawing.save(tmp_path / "g.dot").read_text().count("->") == 0


def test_bad_arguments_name_the_operation():
    with pytest.raises(TypeError, match="draw: expected a Tensor, got list"):
        cr.draw([1.0])
    w = cr.tensor(1.0, requires_grad=True)
    with pytest.raises(TypeError, match="draw: collapse expects nn.Module"):
        cr.draw(w * 2.0, collapse="model")
    with pytest.raises(ValueError, match=r"cannot save as '\.jpeg'"):
        cr.draw(w * 2.0).save("graph.jpeg")


def test_drawing_runs_no_user_hook_and_leaves_retained_grads_alone():
    loss, w = seed003()
    calls = []
    w["w1"].register_hook(lambda g: calls.append("leaf"))
    hidden = w["w3"] * 2.0
    hidden.retain_grad()
    hidden.register_hook(lambda g: calls.append("node"))
    total = loss + hidden
    cr.draw(total, names=w)
    assert calls == [] and hidden.grad is None
    total.backward(retain_graph=True)
    assert sorted(calls) == ["leaf", "node"] and hidden.grad.item() == 1.0
    cr.draw(total, names=w)
    assert len(calls) == 2 and hidden.grad.item() == 1.0  # hooks given back, not re-run
