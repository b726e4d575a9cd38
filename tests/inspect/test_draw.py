"""The circuit drawing: values and gradients from the real run on every node and edge, heatmaps,
notes for what is missing, layers as boxes, DOT ids, highlight, caps on big graphs."""

import re
import shutil
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.inspect.record import FREED, NOT_RECORDED, record, trace
from helpers import compiled_step_loss

draw_module = sys.modules["chainrule.inspect.draw"]  # `chainrule.inspect.draw` is the function
VALUE, GRAD = draw_module.VALUE_COLOR, draw_module.GRAD_COLOR
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not "
                               "installed (scripts/install-system-deps.sh installs it)")


def seed003(recorded=True):
    """Seed 003 with every intermediate result kept in a variable and retaining its grad."""
    x1, x2, y = cr.tensor(1.0), cr.tensor(1.0), cr.tensor(2.0)
    w1, w2, w3, w4 = (cr.tensor(v, requires_grad=True) for v in (0.5, -0.3, 0.8, 0.1))
    with record() if recorded else _nothing():
        a = w1 * x1
        b = w2 * x2
        s = a + b
        z = cr.sigmoid(s)
        m = w3 * z
        u = m + w4
        f = cr.sigmoid(u)
        d = f - y
        L = d ** 2
    t = dict(x1=x1, x2=x2, y=y, w1=w1, w2=w2, w3=w3, w4=w4, a=a, b=b, s=s, z=z, m=m, u=u,
             f=f, d=d, L=L)
    for v in t.values():
        if v.grad_fn is not None:
            v.retain_grad()
    return L, t


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def node_line(source, dot_id):
    return next(line for line in source.splitlines() if line.startswith(f"  {dot_id} ["))


def edge_line(source, e):
    return next(line for line in source.splitlines()
                if f'id="e_{e.source}_{e.target}_{e.index}"' in line)


def colored(line, color):
    return re.findall(rf'<FONT COLOR="{color}"[^>]*>([^<]*)</FONT>', line)


def banner_text(source):
    """The notes above the graph, their lines joined again (the banner wraps at 100)."""
    line = next(line for line in source.splitlines() if line.startswith("  labelloc=t"))
    return re.sub(r'<BR ALIGN="LEFT"/>', " ", line)


def number(x):
    return f"{float(np.asarray(x)):.4g}"


# ----------------------------------------------------------------------------------------------
# Seed 003: the numbers on the picture are the engine's
# ----------------------------------------------------------------------------------------------
def test_every_edge_carries_the_engines_value_and_gradient():
    L, t = seed003()
    L.backward()
    drawing = cr.draw(L, names=t)
    tr = drawing.trace
    tensor_of = {tr[name].id: v for name, v in t.items()}
    assert len(tr.edges) == 16  # 7 operations with two inputs, the 2 sigmoids with one
    for e in tr.edges:
        line = edge_line(drawing.source, e)
        source = tensor_of.get(e.source)
        values, grads = colored(line, VALUE), colored(line, GRAD)
        if source is None:  # the exponent 2 of the power: a constant, no gradient
            assert tr[e.source].kind == "constant" and values == ["2"] and grads == []
            continue
        assert values == [number(source.data)], line  # what flowed forward
        if e.differentiable:  # what flowed back: each value here has a single use
            assert grads == [number(source.grad.data)], line
        else:
            assert grads == [] and "dashed" in line
    for w in ("w1", "w2", "w3", "w4"):  # the parameters' boxes: .grad after backward
        line = node_line(drawing.source, tr[w].id)
        assert colored(line, GRAD) == [f"grad {number(t[w].grad.data)}"]
        assert colored(line, VALUE) == [f"value {number(t[w].data)}"]


def test_seed003_shows_its_inputs_label_and_constant_as_nodes():
    from chainrule.inspect.examples import seed_003

    loss, names = seed_003()
    source = cr.draw(loss, names=names).source
    for name in ("x1", "x2", "y"):
        line = next(line for line in source.splitlines() if f"<B>{name} (input)</B>" in line)
        assert "shape=ellipse" in line and re.match(r"  input\d+ \[", line)
        assert colored(line, VALUE) == [f"value {number(names[name].data)}"]
    power = next(line for line in source.splitlines() if "<B>L</B> = power" in line)
    assert "shape=octagon" in power and "value 1.872" in power and "grad 1<" in power
    constant = next(line for line in source.splitlines() if line.startswith("  const"))
    assert "shape=plaintext" in constant and ">2<" in constant  # the exponent
    assert "<B>f</B> = sigmoid" in source and "<B>z</B> = sigmoid" in source
    assert "legend" in source and "value that flowed forward" in source


def test_drawing_before_and_after_backward_is_the_same():
    from chainrule.inspect.examples import seed_003, seed_004

    for seed in (seed_003, seed_004):
        loss, names = seed()
        before = cr.draw(loss, names=names).source
        assert all(v.grad is None for v in names.values())  # drawing writes no .grad
        loss.backward()
        assert cr.draw(loss, names=names).source == before


def test_draw_reads_a_trace_and_runs_no_user_hook():
    L, t = seed003()
    calls = []
    t["w1"].register_hook(lambda g: calls.append("leaf"))
    t["z"].register_hook(lambda g: calls.append("node"))
    tr = trace(L, names=t)
    assert cr.draw(tr).source == cr.draw(L, names=t).source
    assert calls == [] and t["z"].grad is None and t["w1"].grad is None
    with pytest.raises(TypeError, match="pass them to trace"):
        cr.draw(tr, names=t)


# ----------------------------------------------------------------------------------------------
# Tensors: heatmaps and summaries
# ----------------------------------------------------------------------------------------------
def _rgb(color):
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def test_small_tensors_are_heatmaps_of_value_and_gradient():
    rng = np.random.default_rng(0)
    x = cr.tensor(rng.standard_normal((2, 3)).astype(np.float32))
    W = cr.tensor(rng.standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    with record():
        loss = cr.tanh(x @ W).sum()
    loss.backward()
    drawing = cr.draw(loss, names={"W": W, "x": x})
    line = node_line(drawing.source, drawing.trace["W"].id)
    cells = re.findall(r'BGCOLOR="(#[0-9a-f]{6})"', line)
    assert len(cells) == 24  # 3 x 4 value cells, then 3 x 4 gradient cells
    for color, v in zip(cells, np.concatenate([W.data.ravel(), W.grad.data.ravel()])):
        r, _, b = _rgb(color)
        assert (r > b) if v > 0 else (b > r)  # red positive, blue negative
    big = np.argmax(np.abs(W.data))  # the largest |v| gets the full colour
    assert cells[big] in ("#2166ac", "#b2182b")
    assert f"min {W.data.min():.3g}  max {W.data.max():.3g}" in line
    assert "3×4 float32" in line
    assert len(re.findall("BGCOLOR=", node_line(drawing.source, drawing.trace["x"].id))) == 6


def test_large_tensors_show_shape_dtype_and_a_summary():
    W = cr.tensor(np.arange(600.0).reshape(20, 30) / 100, requires_grad=True)
    with record():
        loss = cr.tanh(W).sum()
    drawing = cr.draw(loss, names={"W": W})
    line = node_line(drawing.source, drawing.trace["W"].id)
    assert "20×30 float64" in line and "BGCOLOR" not in line
    assert colored(line, VALUE) == ["value mean 3  min 0  max 5.99"]
    g = 1 - np.tanh(W.data) ** 2
    assert colored(line, GRAD) == [f"grad norm {np.linalg.norm(g):.3g}  min {g.min():.3g}  "
                                   f"max {g.max():.3g}"]
    edge = edge_line(drawing.source, drawing.trace.uses_of(drawing.trace["W"].id)[0])
    assert colored(edge, VALUE) == ["20×30 mean 3"]


# ----------------------------------------------------------------------------------------------
# What is missing is said on the picture
# ----------------------------------------------------------------------------------------------
def test_missing_values_are_noted_when_backward_freed_an_unrecorded_graph():
    L, t = seed003(recorded=False)
    before = cr.draw(L).source
    assert NOT_RECORDED in before and FREED not in before  # add keeps no value of its own
    assert "value: not recorded" in node_line(before, "op3")
    L.backward()
    source = cr.draw(L).source
    banner = banner_text(source)
    assert FREED.split(":")[0] in banner and "⚠" in banner
    tr = cr.draw(L).trace
    op = node_line(source, tr["u"].id)  # an add: its value was never kept, its grad is gone
    assert "value: not recorded" in op and "grad: not available" in op
    w1 = node_line(source, tr["w1"].id)
    assert f"grad {number(t['w1'].grad.data)}" in w1  # the leaves still show their .grad


def test_a_compiled_training_step_draws_as_one_node_with_the_gradients_it_left():
    loss, model = compiled_step_loss()
    drawing = cr.draw(loss)
    banner = banner_text(drawing.source)
    assert '<BR ALIGN="LEFT"/>' in drawing.source  # the long note is wrapped
    assert "step) is a whole training step" in banner and "call its .fn" in banner
    assert "retain_graph" not in banner  # not an option inside a compiled step
    bias = model[0].bias
    shown = drawing.trace.node_of(bias)
    np.testing.assert_array_equal(shown.grad, bias.grad.data)
    first = f"{float(bias.grad.data[0]):.4g}"
    assert f"grad [{first}, " in node_line(drawing.source, shown.id)


def test_inputs_without_grad_come_from_what_the_graph_saved():
    w = cr.tensor([0.5, 0.5], requires_grad=True)
    pixels = cr.tensor([1.0, 2.0])
    source = cr.draw((w * pixels).sum()).source  # no record: multiply saved x for w's rule
    line = next(line for line in source.splitlines() if "pixels (input)" in line)
    assert "shape=ellipse" in line and "#eeeeee" in line and "value [1, 2]" in line
    assert "style=dashed" in source


# ----------------------------------------------------------------------------------------------
# Layers, ids, highlight
# ----------------------------------------------------------------------------------------------
def test_collapse_gives_one_box_per_linear_layer():
    model = cr.nn.Sequential(cr.nn.Linear(4, 8), cr.nn.ReLU(), cr.nn.Linear(8, 3))
    with record():
        loss = cr.nn.functional.cross_entropy(model(cr.randn(5, 4)), np.array([0, 1, 2, 0, 1]))
    loss.backward()
    full = cr.draw(loss, names=dict(model.named_parameters()))
    collapsed = cr.draw(loss, collapse=model)
    modules = [n for n in collapsed.trace.nodes if n.kind == "module"]
    assert sorted(n.name for n in modules) == ["fc1 (Linear)", "fc2 (Linear)"]
    assert not collapsed.trace.parameters and "shape=box3d" in node_line(collapsed.source,
                                                                          modules[0].id)
    fc1 = node_line(collapsed.source, collapsed.trace["fc1 (Linear)"].id)
    norm = np.linalg.norm(model[0].weight.grad.data)
    assert f"weight 8×4: ‖grad‖ {norm:.3g}" in fc1 and "bias (8,): ‖grad‖" in fc1
    assert "5×8 float32" in fc1  # the layer's output
    assert "<B>relu #" in collapsed.source  # the activation between the layers stays visible
    assert collapsed.source.count(" -> ") < full.source.count(" -> ")
    assert collapsed.node_count < full.node_count
    marked = cr.draw(loss, collapse=model, highlight=model[2].weight).source  # fc2's box
    assert 'color="red"' in node_line(marked, collapsed.trace["fc2 (Linear)"].id)
    assert 'color="red"' not in node_line(marked, collapsed.trace["fc1 (Linear)"].id)


def test_dot_ids_are_the_trace_ids_and_edges_have_ids():
    from chainrule.inspect.examples import seed_002

    for loss, names in (seed003(), seed_002()):
        drawing = cr.draw(loss, names=names)
        tr = drawing.trace
        declared = re.findall(r'^  (\w+) \[id="(\w+)"', drawing.source, re.M)
        assert all(a == b for a, b in declared)
        assert {a for a, _ in declared} == {n.id for n in tr.nodes}
        edges = re.findall(r'^  (\w+) -> (\w+) \[id="(e_\w+)"', drawing.source, re.M)
        assert [i for _, _, i in edges] == [f"e_{e.source}_{e.target}_{e.index}"
                                            for e in tr.edges]
        assert all(i == f"e_{s}_{t}_{i.rsplit('_', 1)[1]}" for s, t, i in edges)


def test_highlight_marks_only_the_paths_from_the_parameter():
    L, t = seed003()
    drawing = cr.draw(L, names=t, highlight=t["w4"])
    red = [line for line in drawing.source.splitlines() if 'color="red"' in line]
    assert {line.split()[0] for line in red if "->" not in line} == {
        drawing.trace[n].id for n in ("w4", "u", "f", "d", "L")}
    # w4 -> add -> sigmoid -> subtract -> power: exactly four edges on the path
    assert [line.split()[:3] for line in red if "->" in line] == [
        [drawing.trace[a].id, "->", drawing.trace[b].id]
        for a, b in (("d", "L"), ("f", "d"), ("u", "f"), ("w4", "u"))]
    assert cr.draw(L, names=t, highlight="z").source.count('color="red"') == 11
    with pytest.raises(ValueError, match="not a node"):
        cr.draw(L, names=t, highlight=cr.tensor(1.0))


def test_long_chains_of_wide_layers_are_drawn_top_to_bottom():
    model = cr.nn.Sequential(*[layer for _ in range(4)
                               for layer in (cr.nn.Linear(32, 32), cr.nn.ReLU())])
    with record():
        loss = cr.nn.functional.cross_entropy(model(cr.randn(1, 32)), np.array([0]))
    assert "rankdir=TB" in cr.draw(loss, collapse=model).source
    assert "rankdir=LR" in cr.draw(seed003()[0]).source  # a circuit of small boxes: LR


def test_values_and_gradients_can_be_left_out():
    L, t = seed003()
    source = cr.draw(L, names=t, show_values=False, show_grads=False).source
    assert f'COLOR="{VALUE}">value' not in source and f'COLOR="{GRAD}">grad' not in source
    assert " label=<<FONT" not in source  # edges without numbers
    only_values = cr.draw(L, names=t, show_grads=False).source
    assert "value 0.6318" in only_values and "grad -" not in only_values


# ----------------------------------------------------------------------------------------------
# Big graphs, rendering, errors
# ----------------------------------------------------------------------------------------------
def test_large_graph_is_capped_with_a_message():
    x = cr.tensor(1.0, requires_grad=True)
    h = x
    for _ in range(1200):
        h = cr.tanh(h)
    drawing = cr.draw(h, max_nodes=1000)
    assert drawing.message and "1,200 operations" in drawing.message
    assert drawing.node_count == 1201 and "note" in drawing.source
    assert drawing.source.count("->") == 0


def test_shared_leaves_of_big_graphs_are_drawn_once_per_use():
    w = cr.tensor(1.0, requires_grad=True)
    w.name = "w"
    h = w
    for _ in range(150):
        h = h * w + 0.5
    drawing = cr.draw(h)
    assert drawing.message is None
    assert drawing.source.count("w (parameter)") == 151  # one copy per use
    assert "leaf0_151 [" in drawing.source and " label=<<FONT" not in drawing.source
    small = cr.draw(w * w + w)
    assert small.source.count("w (parameter)") == 1


def test_values_reused_all_over_a_graph_start_from_stand_ins():
    w = cr.tensor(1.0, requires_grad=True)
    s = w * 0.5
    h = s
    for _ in range(60):
        h = h * s + 0.5  # s is read at every step: 60 edges spanning the whole graph
    source = cr.draw(h).source
    assert source.count("↪") >= 50 and "nslimit" in source


@needs_dot
def test_renders_svg_and_png_with_the_ids(tmp_path):
    L, t = seed003()
    drawing = cr.draw(L, names=t)
    svg = drawing.save(tmp_path / "g.svg").read_text()
    assert svg.lstrip().startswith(("<?xml", "<svg"))
    assert "<title>op0</title>" in svg and 'id="op0"' in svg
    e = drawing.trace.edges[0]
    assert f'id="e_{e.source}_{e.target}_{e.index}"' in svg
    assert drawing.save(tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in drawing._repr_svg_()
    with pytest.raises(ValueError, match="use .svg, .png or .dot"):
        drawing.save(tmp_path / "g.jpg")


@needs_dot
def test_heatmaps_and_collapsed_layers_render():
    model = cr.nn.Sequential(cr.nn.Linear(3, 4), cr.nn.Tanh(), cr.nn.Linear(4, 2))
    with record():
        loss = cr.nn.functional.cross_entropy(model(cr.randn(2, 3)), np.array([0, 1]))
    loss.backward()
    for drawing in (cr.draw(loss), cr.draw(loss, collapse=model, title="layers")):
        assert b"<svg" in drawing.render("svg")


def test_capped_drawing_saves_its_message_as_dot(tmp_path):
    x = cr.tensor(1.0, requires_grad=True)
    h = x
    for _ in range(300):
        h = cr.tanh(h)
    drawing = cr.draw(h, max_nodes=100)
    assert drawing.node_count == 301
    assert "more than max_nodes=100" in drawing.message
    assert drawing.save(tmp_path / "g.dot").read_text().count("->") == 0


def test_bad_arguments_name_the_operation():
    with pytest.raises(TypeError, match="draw: expected a Tensor or a Trace, got list"):
        cr.draw([1.0])
    w = cr.tensor(1.0, requires_grad=True)
    with pytest.raises(TypeError, match="draw: collapse expects nn.Module"):
        cr.draw(w * 2.0, collapse="model")
    with pytest.raises(TypeError, match="draw: highlight expects a Tensor"):
        cr.draw(w * 2.0, highlight=3)
    with pytest.raises(ValueError, match=r"cannot save as '\.jpeg'"):
        cr.draw(w * 2.0).save("graph.jpeg")
