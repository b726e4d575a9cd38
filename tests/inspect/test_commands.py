"""`chainrule graph` and `chainrule explain` on the seeds' examples and on a saved model."""

import shutil

import numpy as np
import pytest

from chainrule.cli import main


def test_graph_of_seed_003(tmp_path, capsys):
    out = tmp_path / ("g.svg" if shutil.which("dot") else "g.dot")
    assert main(["graph", "--example", "seed-003", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    assert "sigmoid" in text and "w4" in text


@pytest.mark.parametrize("example,expected", [
    ("seed-002", "grad [-0.2, 0.1, 0.1]"),  # q - y for p = (0.8, 0.1, 0.1), class 0
    ("seed-004", "grad -0.08667"),  # dC/dw of seed 004
    ("seed-003", "x1 (input)"),
])
def test_graph_writes_dot_with_the_gradients(tmp_path, capsys, example, expected):
    out = tmp_path / "g.dot"
    assert main(["graph", "--example", example, "--out", str(out)]) == 0
    assert expected in out.read_text()
    assert f"wrote {out}" in capsys.readouterr().out


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_graph_writes_png(tmp_path):
    out = tmp_path / "g.png"
    assert main(["graph", "--example", "seed-004", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_explain_seed_004_prints_the_seed_formula_and_writes_files(tmp_path, capsys):
    md, page = tmp_path / "e.md", tmp_path / "p.html"
    assert main(["explain", "--example", "seed-004", "--markdown", str(md),
                 "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "o_prev · s(z) (1 - s(z)) · 1 · 2 * (o - t)" in out
    assert "dC/dw = -0.0866" in out
    assert md.read_text().strip() and "<!DOCTYPE html>" in page.read_text()


def test_explain_a_saved_model(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--out", str(run), "--epochs", "1", "--hidden", "8",
                 "--no-progress"]) == 0
    sample = tmp_path / "x.npy"
    np.save(sample, np.random.default_rng(0).random(64))
    assert main(["explain", "--model", str(run / "model.safetensors"), "--input",
                 str(sample)]) == 0
    assert "dloss/d1.weight" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["explain", "--example", "seed-004", "--wrt", "nope"], "--wrt: no tensor named 'nope'"),
])
def test_explain_errors(argv, message, capsys):
    assert main(argv) == 1
    assert message in capsys.readouterr().err
