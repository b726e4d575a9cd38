"""The step-through page: recorded steps match the engine, and it works in a real browser."""

import shutil

import numpy as np
import pytest

from chainrule.inspect.examples import seed_003, seed_004
from chainrule.inspect.page import record_backward, write_page

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_steps_follow_the_backward_pass_and_end_at_the_leaf_gradients():
    loss, names = seed_004()
    data = record_backward(loss, names)
    assert [s["node"].split(" #")[0] for s in data["steps"]] == [
        "power", "subtract", "sigmoid", "add", "multiply"]
    assert data["steps"][0]["upstream"] == "1."
    loss.backward()
    leaves = {leaf["name"]: leaf["values"][0] for leaf in data["leaves"]}
    assert leaves["w"] == pytest.approx(names["w"].grad.item(), rel=1e-6)
    assert leaves["b"] == pytest.approx(names["b"].grad.item(), rel=1e-6)
    sigmoid = data["steps"][2]["flows"][0]
    o = names["o"].item()
    assert float(sigmoid["local"]) == pytest.approx(o * (1 - o), rel=1e-5)


def test_recording_touches_no_grad_and_needs_the_graph():
    loss, names = seed_003()
    record_backward(loss, names)
    assert all(names[w].grad is None for w in ("w1", "w2", "w3", "w4"))
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        record_backward(loss, names)


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed "
                    "(scripts/install-system-deps.sh installs it)")
def test_page_in_a_headless_browser(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    loss, names = seed_003()
    path = write_page(loss, tmp_path / "page.html", names=names)
    loss.backward()
    errors = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(path.resolve().as_uri())
        assert "step 1 of" in page.inner_text("#counter")
        assert "power" in page.inner_text("#view")
        if shutil.which("dot"):  # the node of the current step is marked in the drawing
            assert page.text_content("#graph g.node.current title") == "op0"
        page.click("#next")
        assert "subtract" in page.inner_text("#view")
        if shutil.which("dot"):
            assert page.text_content("#graph g.node.current title") == "op1"
        page.click("#prev")
        assert "power" in page.inner_text("#view")
        page.click("#end")
        rows = page.query_selector_all("#leaf-grads tr[data-name]")
        shown = {r.get_attribute("data-name"): float(r.get_attribute("data-values"))
                 for r in rows}
        assert page.query_selector("#graph svg") is not None or shutil.which("dot") is None
        browser.close()
    assert errors == []
    assert set(shown) == {"w1", "w2", "w3", "w4"}
    for name, value in shown.items():
        np.testing.assert_allclose(value, names[name].grad.item(), rtol=1e-6)


def test_recording_runs_no_user_hook():
    loss, names = seed_004()
    names["o"].retain_grad()
    calls = []
    names["w"].register_hook(lambda g: calls.append(g))
    record_backward(loss, names)
    assert calls == [] and names["o"].grad is None
    loss.backward()
    assert len(calls) == 1 and names["o"].grad is not None
