"""report.html: one self-contained page with the warnings, plots, per-layer table and graph."""

import base64
import html
import re
import shutil

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.cli import main
from chainrule.data.idx import write_idx
from chainrule.inspect import report as report_module
from chainrule.inspect.flow import GradientFlow
from chainrule.inspect.report import layer_graph, write_report
from chainrule.nn import functional as F

PNG = b"\x89PNG\r\n\x1a\n"
SVG = ('<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" '
       '"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">\n'
       '<svg xmlns="http://www.w3.org/2000/svg"><text>fc1 (Linear)</text></svg>')


def _batch():
    rng = np.random.default_rng(0)
    return cr.tensor(rng.standard_normal((32, 8)).astype(np.float32)), rng.integers(0, 3, 32)


def _model(dead=False):
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                          nn.Linear(8, 3))
    if dead:
        with cr.no_grad():
            model[2].bias.data[...] = -100  # the second layer's ReLUs never fire
    return model


def _flow(model, steps=4):
    x, y = _batch()
    opt = cr.optim.SGD(model.parameters(), lr=0.05)
    flow = GradientFlow(model)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        flow.step()
    return flow


def _images(page):
    """The decoded bytes of every <img> of the page, checking that each is a data: URI."""
    sources = re.findall(r'src="([^"]*)"', page)
    assert all(s.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,"))
               for s in sources), [s[:40] for s in sources]
    return [base64.b64decode(s.split(",", 1)[1]) for s in sources]


def test_the_page_is_self_contained_and_shows_the_warnings(tmp_path):
    flow = _flow(_model(dead=True))
    (tmp_path / "curves.png").write_bytes(PNG + b"curves")
    path = write_report(tmp_path, flow, layer_graph_svg=SVG, memory_text="6 nodes <saved>",
                        facts={"data": "digits"}, title="run & report")
    assert path == tmp_path / "report.html"
    page = path.read_text()
    assert "http://" not in page and "https://" not in page and "href=" not in page
    images = _images(page)
    assert images[0] == PNG + b"curves"  # the training curves, then the two flow plots
    assert all(i.startswith(PNG) for i in images[1:3]) and len(images) == 4
    assert b"fc1 (Linear)" in images[3] and b"DOCTYPE" not in images[3]
    assert (tmp_path / "gradient-distributions.png").is_file()  # drawn for the page
    assert "Warnings (" in page and 'class="warnings"' in page
    for warning in flow.warnings():
        assert html.escape(warning) in page
    assert page.count('<tr class="flagged">') == 3  # fc1, fc2, fc3 weights: dead
    assert "<td class=\"name\">fc1.weight</td><td class=\"name\">0.weight</td>" in page
    assert "6 nodes &lt;saved&gt;" in page and "run &amp; report" in page
    assert "<dt>data</dt><dd>digits</dd>" in page


def test_a_healthy_run_says_no_warnings_and_why_pictures_are_missing(tmp_path):
    flow = _flow(_model())
    plots = [tmp_path / "norms.png", tmp_path / "distributions.png"]  # drawn already
    for plot in plots:
        plot.write_bytes(PNG + plot.name.encode())
    page = write_report(tmp_path, flow, layer_graph_note="No layer graph: dot is missing",
                        plots=plots).read_text()
    assert "No warnings: no vanishing, exploding or dead layers found." in page
    assert '<div class="warnings">' not in page and '<tr class="flagged">' not in page
    assert "No layer graph: dot is missing" in page
    assert "No training curves (curves.png not found)" in page
    assert _images(page) == [PNG + b"norms.png", PNG + b"distributions.png"]
    assert not (tmp_path / "gradient-norms.png").exists()  # not drawn again


def test_layer_graph_says_so_when_dot_is_missing(monkeypatch):
    model = _model()
    x, y = _batch()
    monkeypatch.setattr(report_module.shutil, "which", lambda name: None)
    svg, note = layer_graph(F.cross_entropy(model(x), y), model)
    assert svg is None and "Graphviz's dot program is not installed" in note


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_layer_graph_boxes_carry_the_display_names():
    model = _model()
    x, y = _batch()
    flow = GradientFlow(model)
    svg, note = layer_graph(F.cross_entropy(model(x), y), model, flow.display_names)
    assert note is None and svg.lstrip().startswith((b"<?xml", b"<svg", b"<!DOCTYPE"))
    text = svg.decode()
    assert all(f"fc{i} (Linear)" in text for i in (1, 2, 3))
    assert "0 (Linear)" not in text


def test_train_report_writes_report_html(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split, n in (("train", 80), ("t10k", 20)):  # a small data set: the test stays quick
        labels = rng.integers(0, 3, n).astype(np.uint8)
        images = (rng.random((n, 6, 6)) * 30 + labels[:, None, None] * 100).astype(np.uint8)
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path), "--out", str(out), "--epochs", "2",
                 "--hidden", "8", "--batch-size", "16", "--no-progress", "--report"]) == 0
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    images = _images(page)
    assert images[0] == (out / "curves.png").read_bytes()
    assert images[1] == (out / "gradient-norms.png").read_bytes()
    assert images[2] == (out / "gradient-distributions.png").read_bytes()
    assert "fc1.weight" in page and "fc2.weight" in page and "1.weight" in page
    assert "Memory of one training batch" in page and "backward peak" in page
    assert ("Layer graph" in page) and (len(images) == 4 or "dot program" in page)
    assert not (out / "gradient-bars.png").exists()
