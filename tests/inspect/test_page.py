"""The step-through page: its numbers are the engine's, and it works in a real browser.

Every browser test opens the page in headless Chromium, steps it with the keyboard and the
buttons, and reads what it shows from the DOM (classes on the SVG elements, data attributes on
the panels), comparing with ``.grad`` after a real ``backward()``.
"""

import json
import re
import shutil
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.inspect import page as page_module
from chainrule.inspect.examples import seed_003, seed_004
from chainrule.inspect.page import edge_id, write_page
from chainrule.inspect.record import layer_names, record, trace
from helpers import compiled_step_loss

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LR = 0.1


def fan_out():
    """h = tanh(w x) used three times: L = h·h + 3h, so dL/dh = h + h + 3."""
    w, x = cr.tensor(0.7, requires_grad=True), cr.tensor(2.0)
    x.name = "x"
    with record():
        h = cr.tanh(w * x)
        L = h * h + 3.0 * h
    return L, {"w": w, "x": x, "h": h, "L": L}


def digits_model():
    """A small digits MLP (64 -> 16 -> 10) with random weights and one sample."""
    from chainrule.training import build_model

    cr.random.manual_seed(0)
    model = build_model(64, [16], 10, "relu")
    sample = cr.tensor(np.random.default_rng(1).random((1, 64)).astype(np.float32))
    sample.name = "input"
    with record():
        logits = model(sample)
        loss = cr.nn.functional.cross_entropy(logits, np.array([3]))
    readable = layer_names(model)
    params = {f"{readable[path.rpartition('.')[0]]}.{path.rpartition('.')[2]}": p
              for path, p in model.named_parameters()}
    return model, loss, params


# ----------------------------------------------------------------------------------------------
# Without a browser
# ----------------------------------------------------------------------------------------------
def _payload(html_text):
    found = re.search(r"<script type='application/json' id='trace-data'>(.*?)</script>",
                      html_text, re.S)
    return json.loads(found.group(1).replace("<\\/", "</"))


def test_the_page_is_one_file_with_the_trace_and_a_list_without_dot(tmp_path, monkeypatch):
    loss, names = seed_003()
    monkeypatch.setattr(page_module.shutil, "which", lambda name: None)
    text = write_page(loss, tmp_path / "p.html", names=names).read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing to fetch
    assert "<link" not in text and "<svg" not in text and 'id="graph-note"' in text
    tr = trace(loss, names=names)
    data = _payload(text)
    assert [n["id"] for n in data["trace"]["nodes"]] == [n.id for n in tr.nodes]
    for n in tr.nodes:  # the list view names its items by the Trace's ids, as the SVG does
        assert f'<li id="{n.id}" class="node">' in text
    for e in tr.edges:
        assert f'<li id="{edge_id(e)}" class="edge">' in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_a_draw_that_takes_no_trace_gives_way_to_the_pages_own_drawing(tmp_path, monkeypatch):
    def tensors_only(x, **kwargs):
        raise TypeError("draw: expected a Tensor")

    monkeypatch.setattr(sys.modules["chainrule.inspect.draw"], "draw", tensors_only)
    loss, names = seed_004()
    text = write_page(loss, tmp_path / "p.html", names=names).read_text()
    tr = trace(loss, names=names)
    assert "<svg" in text
    for n in tr.nodes:
        assert f'<g id="{n.id}" class="node">' in text
    for e in tr.edges:
        assert f'<g id="{edge_id(e)}" class="edge">' in text


def test_a_trace_the_message_and_the_call_of_the_command_line(tmp_path):
    loss, names = seed_004()
    tr = trace(loss, names=names)
    assert write_page(tr, tmp_path / "t.html", lr=0.5).read_text().count("α = 0.5") >= 1
    with pytest.raises(TypeError, match="pass them to trace"):
        write_page(tr, tmp_path / "t.html", names=names)
    with pytest.raises(TypeError, match="Tensor or a Trace"):
        write_page(3.0, tmp_path / "t.html")
    w = cr.tensor(0.5, requires_grad=True)  # not recorded: backward() frees what the page needs
    out = cr.sigmoid(w * 2.0)
    out.backward()
    text = write_page(out, tmp_path / "m.html", names={"w": w}).read_text()
    assert 'id="message"' in text and "freed" in text


def test_a_freed_graph_says_its_edges_are_unknown_not_gradient_free(tmp_path):
    loss, model = compiled_step_loss()
    text = write_page(loss, tmp_path / "step.html").read_text()
    assert "whole training step" in text and "Not known here" in text
    assert "no gradient flows to it" not in text  # the weight has one: the graph cannot tell it
    if shutil.which("dot"):  # said once, in the header: not again on the picture
        assert "<svg" in text and "⚠" not in text[text.find("<svg"):]


# ----------------------------------------------------------------------------------------------
# In a real browser
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (scripts/install-system-deps.sh installs it)")
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        yield b
        b.close()


@pytest.fixture
def open_page(browser):
    opened = []

    def opener(path):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.errors = []
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.goto(path.resolve().as_uri())
        page.wait_for_selector("body[data-ready='1']")
        opened.append(page)
        return page

    yield opener
    for page in opened:
        assert page.errors == []
        page.close()


STATE = """() => {
  const num = (el, key) => el && el.dataset[key] !== undefined ? parseFloat(el.dataset[key])
                                                                : null;
  const view = document.getElementById('view');
  const fan = view.querySelector('.fanout');
  return {
    current: Array.from(document.querySelectorAll('#graph .current')).map(e => e.id),
    flowing: Array.from(document.querySelectorAll('#graph .flowing')).map(e => e.id).sort(),
    node: view.dataset.node,
    upstream: num(view.querySelector('.upstream'), 'grad'),
    value: num(view.querySelector('.value'), 'value'),
    flows: Array.from(view.querySelectorAll('.flow[data-edge]')).map(f => {
      const p = f.querySelector('.product');
      return {source: f.dataset.source, grad: num(p, 'grad'), upstream: num(p, 'upstream'),
              local: num(p, 'local'), norm: num(p, 'gradNorm')};
    }),
    fanout: fan ? {total: num(fan, 'total'), parts: Array.from(fan.querySelectorAll('li'))
                   .map(li => num(li, 'part'))} : null,
    members: Object.fromEntries(Array.from(view.querySelectorAll('[data-member]'))
                                .map(li => [li.dataset.member, num(li, 'gradNorm')])),
    overlay: document.getElementById('overlay').hidden ? '' :
             document.getElementById('overlay').innerText,
  };
}"""

UPDATES = """() => Array.from(document.querySelectorAll('#updates tr[data-name]')).map(r => ({
  name: r.dataset.name, grad: parseFloat(r.dataset.grad ?? r.dataset.gradNorm),
  gradSum: parseFloat(r.dataset.gradSum), newSum: parseFloat(r.dataset.newSum),
  value: parseFloat(r.dataset.value), new: parseFloat(r.dataset.new)}))"""

CHAIN = """() => ({
  node: document.getElementById('chain').dataset.node,
  paths: Array.from(document.querySelectorAll('#chain .path')).map(p =>
    Array.from(p.querySelectorAll('.factor')).map(f => parseFloat(f.dataset.local))),
  result: parseFloat(document.querySelector('#chain .result').dataset.gradNorm),
  members: Object.fromEntries(Array.from(document.querySelectorAll('#chain [data-member]'))
                              .map(li => [li.dataset.member, parseFloat(li.dataset.gradNorm)])),
  text: document.getElementById('chain').innerText})"""


def _flowing(tr, node_id):
    return sorted(edge_id(e) for e in tr.inputs_of(node_id)
                  if e.differentiable and e.grad is not None)


@pytest.mark.parametrize("example", [seed_003, seed_004, fan_out])
def test_stepping_shows_the_engines_numbers(example, tmp_path, open_page):
    loss, names = example()
    for t in names.values():
        if t.grad_fn is not None and t is not loss:
            t.retain_grad()
    loss.backward()  # recorded graphs keep every value: the page is the same after backward
    tr = trace(loss, names=names)
    page = open_page(write_page(loss, tmp_path / "p.html", names=names, lr=LR))
    by_name = {name: t for name, t in names.items()}
    for step in tr.steps:
        s = page.evaluate(STATE)
        assert s["current"] == [step.id] and s["node"] == step.id  # exactly one, the step's
        assert s["flowing"] == _flowing(tr, step.id)
        assert step.name in s["overlay"]  # the step's numbers sit on the graph too
        tensor = by_name.get(step.name)
        expected = 1.0 if step.id == tr.output else tensor.grad.item() if tensor else None
        if expected is not None:
            assert s["upstream"] == pytest.approx(expected, rel=1e-5)
        if tensor is not None:
            assert s["value"] == pytest.approx(tensor.item(), rel=1e-6)
        for f in s["flows"]:
            assert f["grad"] == pytest.approx(f["upstream"] * f["local"], rel=1e-5, abs=1e-9)
            source = by_name.get(tr[f["source"]].name)
            if source is not None and source.grad_fn is None and len(tr.uses_of(f["source"])) == 1:
                assert f["grad"] == pytest.approx(source.grad.item(), rel=1e-5)
        if len([e for e in tr.uses_of(step.id) if e.differentiable]) > 1:  # a fan-out
            assert s["fanout"]["total"] == pytest.approx(sum(s["fanout"]["parts"]), rel=1e-6)
            assert s["fanout"]["total"] == pytest.approx(tensor.grad.item(), rel=1e-5)
        page.keyboard.press("ArrowRight")

    assert page.evaluate(STATE)["current"] == []  # the last step: the update
    rows = {r["name"]: r for r in page.evaluate(UPDATES)}
    params = {n.name for n in tr.parameters}
    assert set(rows) == params
    for name in params:
        p = by_name[name]
        assert rows[name]["grad"] == pytest.approx(p.grad.item(), rel=1e-5)
        assert rows[name]["new"] == pytest.approx(p.item() - LR * p.grad.item(), rel=1e-5)
    assert f"α = {LR:g}" in page.inner_text("#view")

    page.keyboard.press("ArrowLeft")
    assert page.evaluate(STATE)["current"] == [tr.steps[-1].id]
    page.keyboard.press("Home")
    assert page.evaluate(STATE)["current"] == [tr.output]
    page.click("#next")
    assert page.evaluate(STATE)["current"] == [tr.steps[1].id]

    for p in tr.parameters:  # each parameter's chain: the product of its local derivatives
        page.click(f'#graph [id="{p.id}"]')
        chain = page.evaluate(CHAIN)
        assert chain["node"] == p.id and len(chain["paths"]) == len(tr.paths(p.id))
        total = sum(float(np.prod(factors)) for factors in chain["paths"])
        assert total == pytest.approx(by_name[p.name].grad.item(), rel=1e-5)
        assert f"{p.name}.grad" in chain["text"]
    page.keyboard.press("End")
    page.keyboard.press("Escape")
    assert page.is_hidden("#chain")


def test_seed_003_formulas_in_the_users_names_with_numbers(tmp_path, open_page):
    loss, names = seed_003()
    page = open_page(write_page(loss, tmp_path / "p.html", names=names))
    tr = trace(loss, names=names)
    w1_step = next(k for k, n in enumerate(tr.steps)
                   if any(tr[e.source].name == "w1" for e in tr.inputs_of(n.id)))
    for _ in range(w1_step):  # the operation w1 · x1
        page.keyboard.press("ArrowRight")
    text = page.inner_text("#view")
    assert "∂L/∂w1" in text and "/∂w1 = x1 = 1" in text
    z_step = next(k for k, n in enumerate(tr.steps) if n.name == "z")
    page.keyboard.press("Home")
    for _ in range(z_step):
        page.keyboard.press("ArrowRight")
    z = names["z"].item()
    s = page.evaluate(STATE)
    assert s["current"] == [tr["z"].id]
    assert s["flows"][0]["local"] == pytest.approx(z * (1 - z), rel=1e-5)
    assert "z·(1 − z)" in page.inner_text("#view")


def test_the_digits_model_layer_by_layer(tmp_path, open_page):
    model, loss, params = digits_model()
    tr = trace(loss, collapse=model)
    page = open_page(write_page(loss, tmp_path / "p.html", collapse=model, lr=LR))
    loss.backward()
    modules = [n for n in tr.nodes if n.kind == "module"]
    assert modules and all(page.query_selector(f'#graph [id="{m.id}"]') for m in modules)
    for step in tr.steps:
        s = page.evaluate(STATE)
        assert s["current"] == [step.id]
        assert s["flowing"] == _flowing(tr, step.id)
        for name, norm in s["members"].items():  # a layer's step: its parameters' gradients
            assert norm == pytest.approx(np.linalg.norm(params[name].grad.data), rel=1e-5)
        for f in s["flows"]:
            edge = next(e for e in tr.inputs_of(step.id) if e.source == f["source"])
            assert f["norm"] == pytest.approx(np.linalg.norm(edge.grad), rel=1e-6)
        page.keyboard.press("ArrowRight")
    rows = {r["name"]: r for r in page.evaluate(UPDATES)}
    assert set(rows) == set(params)
    for name, p in params.items():
        g = p.grad.data.astype(np.float64)
        assert rows[name]["grad"] == pytest.approx(np.linalg.norm(g), rel=1e-5)
        assert rows[name]["gradSum"] == pytest.approx(g.sum(), rel=1e-4, abs=1e-6)
        assert rows[name]["newSum"] == pytest.approx((p.data - LR * g).sum(), rel=1e-4,
                                                     abs=1e-5)
    first = next(m for m in modules if any(n.startswith("fc1.") for n, _, _ in m.members))
    page.click(f'#graph [id="{first.id}"]')
    chain = page.evaluate(CHAIN)
    assert set(chain["members"]) == {"fc1.weight", "fc1.bias"}
    for name, norm in chain["members"].items():
        assert norm == pytest.approx(np.linalg.norm(params[name].grad.data), rel=1e-5)
    # readable: the drawing is never scaled below 13 px labels, the panels use 13 px or more
    sizes = page.evaluate("""() => Array.from(document.querySelectorAll(
        '#view *, #chain *, #overlay *')).map(e => parseFloat(getComputedStyle(e).fontSize))""")
    assert min(sizes) >= 13


def test_the_list_view_steps_too(tmp_path, open_page, monkeypatch):
    loss, names = seed_004()
    monkeypatch.setattr(page_module.shutil, "which", lambda name: None)
    page = open_page(write_page(loss, tmp_path / "p.html", names=names))
    tr = trace(loss, names=names)
    page.keyboard.press("ArrowRight")
    s = page.evaluate(STATE)
    assert s["current"] == [tr.steps[1].id] and s["flowing"] == _flowing(tr, tr.steps[1].id)
