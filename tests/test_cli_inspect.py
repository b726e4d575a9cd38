"""`chainrule graph` and `chainrule explain` on the seeds' examples and on a saved model."""

import ast
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.training import architecture, build_model


def test_graph_of_seed_003(tmp_path, capsys):
    out = tmp_path / ("g.svg" if shutil.which("dot") else "g.dot")
    assert main(["graph", "--example", "seed-003", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    assert "sigmoid" in text and "w4" in text


@pytest.mark.parametrize("example,expected", [
    ("seed-002", "-0.2"),  # q - y for p = (0.8, 0.1, 0.1), class 0
    ("seed-004", "-0.08667"),  # dC/dw of seed 004
    ("seed-003", "x1"),
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


def test_explain_seed_004_prints_the_seed_chain_and_writes_files(tmp_path, capsys):
    md, tex, page = tmp_path / "e.md", tmp_path / "e.tex", tmp_path / "p.html"
    assert main(["explain", "--example", "seed-004", "--markdown", str(md), "--latex", str(tex),
                 "--html", str(page)]) == 0
    out = capsys.readouterr().out
    assert "∂C/∂w = ∂z/∂w · ∂o/∂z" in out and "o_prev · o·(1 − o)" in out
    assert "∂C/∂w = -0.08667" in out
    assert "d multiply/d x" not in out
    assert "∂C/∂w" in md.read_text() and "\\begin{align*}" in tex.read_text()
    assert "<!DOCTYPE html>" in page.read_text()


def _saved_model(path, sample_path=None, margin=None):
    """A small untrained MLP saved as `chainrule train` writes it. With ``margin``, its last
    layer is scaled so that the two largest logits of the sample are ``margin`` apart."""
    spec = {"n_inputs": 64, "hidden": [8], "n_classes": 10, "activation": "relu", "seed": 0}
    model = build_model(64, [8], 10, "relu")
    if margin is not None:
        last = model[len(model) - 1]
        last.bias.data[...] = 0
        top2 = np.sort(_logits(model, sample_path))[-2:]
        last.weight.data[...] *= margin / (top2[1] - top2[0])
    cr.save(model.state_dict(), path, metadata={"architecture": architecture(spec)})
    return model


def _logits(model, sample_path):
    with cr.no_grad():
        x = cr.tensor(np.load(sample_path).astype(np.float32).reshape(1, -1))
        return model(x).data[0].astype(np.float64)


@pytest.fixture
def sample(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).random(64))
    return path


def _predicted(model, sample_path):
    logits = _logits(model, sample_path)
    p = np.exp(logits - logits.max())
    return int(p.argmax()), p / p.sum()


def _flat(text):
    """The output with its line wrapping undone."""
    return " ".join(text.split())


def test_explain_a_saved_model_says_which_class_and_prints_nonzero_norms(tmp_path, sample,
                                                                         capsys):
    path = tmp_path / "model.safetensors"
    model = _saved_model(path)
    assert main(["explain", "--model", str(path), "--input", str(sample)]) == 0
    out = _flat(capsys.readouterr().out)
    k, p = _predicted(model, sample)
    assert f"no --label: using the predicted class {k} (p = {p[k]:.3g})" in out
    assert "∂loss/∂fc1.weight: 1 path from fc1.weight to loss" in out  # fc1, not "1.weight"
    assert "fc1.weight → z1 → h1 → logits → loss" in out
    norms = re.findall(r"norm (\S+?)[,)\s]", out)
    assert len(norms) >= 4 and all(float(n) > 0 for n in norms)
    assert not re.search(r"norm 0(?![.\d])", out)


def test_explain_a_saved_model_with_its_label(tmp_path, sample, capsys):
    path = tmp_path / "model.safetensors"
    model = _saved_model(path)
    k, p = _predicted(model, sample)
    label = (k + 1) % 10
    assert main(["explain", "--model", str(path), "--input", str(sample), "--label", str(label),
                 "--wrt", "fc2.bias"]) == 0
    out = _flat(capsys.readouterr().out)
    assert f"--label {label}: the model gives it p = {p[label]:.3g}" in out
    assert "so it is wrong" in out and f"loss = -ln p = {-np.log(p[label]):.4g}" in out
    assert "∂loss/∂fc2.bias: 1 path from fc2.bias to loss" in out


def test_a_sure_model_says_why_its_gradients_are_tiny(tmp_path, sample, capsys):
    path = tmp_path / "model.safetensors"
    model = _saved_model(path, sample, margin=16.0)  # p of the predicted class: 1 - 1e-7
    k, p = _predicted(model, sample)
    assert main(["explain", "--model", str(path), "--input", str(sample)]) == 0
    out = _flat(capsys.readouterr().out)
    assert f"using the predicted class {k} (p = 0.9999" in out  # not "p = 1"
    assert f"the model is sure of class {k}, so dloss/dlogits = q - y is tiny (norm " in out
    norms = [float(n) for n in re.findall(r"norm (\S+?)[,)\s]", out)]
    assert norms and all(0 < n < 1e-4 for n in norms)  # tiny, and shown as numbers, not 0


def test_a_saturated_model_says_its_gradients_are_exactly_zero(tmp_path, sample, capsys):
    path = tmp_path / "model.safetensors"
    _saved_model(path, sample, margin=200.0)  # e^-200 is 0 in float32: q - y is exactly 0
    assert main(["explain", "--model", str(path), "--input", str(sample)]) == 0
    out = _flat(capsys.readouterr().out)
    assert "q - y is exactly 0 in float32" in out and "give --label another class" in out


def test_graph_of_a_saved_model(tmp_path, sample, capsys):
    path = tmp_path / "model.safetensors"
    _saved_model(path)
    out = tmp_path / "g.dot"
    assert main(["graph", "--model", str(path), "--input", str(sample), "--out", str(out)]) == 0
    assert "no --label: using the predicted class" in capsys.readouterr().out
    text = out.read_text()
    assert "fc1.weight" in text and "1.weight" not in text.replace("fc1.weight", "")


@pytest.mark.parametrize("argv,message", [
    (["explain", "--example", "seed-004", "--wrt", "nope"], "--wrt: no tensor named 'nope'"),
    (["explain", "--example", "seed-004", "--wrt", "o_prev"], "--wrt: o_prev takes no gradient"),
    (["explain", "--example", "seed-004", "--label", "1"], "--label go with --model"),
])
def test_explain_errors(argv, message, capsys):
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_model_errors(tmp_path, sample, capsys):
    path = tmp_path / "model.safetensors"
    _saved_model(path)
    assert main(["explain", "--model", str(path), "--input", str(sample), "--label", "10"]) == 1
    assert "--label: 10 is not a class of this model (0..9)" in capsys.readouterr().err
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(5))
    assert main(["explain", "--model", str(path), "--input", str(bad)]) == 1
    assert "takes one sample of 64 numbers" in capsys.readouterr().err
    assert json.loads(cr.io.load_metadata(path)["architecture"])["n_inputs"] == 64


FORBIDDEN = ("chainrule.training", "chainrule.cli", "chainrule.cli_inspect", "chainrule.nn")


def _uses_outside_the_engine(path):
    """``(line, what)`` for each import of (or attribute reach into) a forbidden module."""
    tree = ast.parse(path.read_text())
    package_aliases = {"chainrule"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == "chainrule":
                    package_aliases.add(a.asname or a.name)
                if a.name.startswith(FORBIDDEN):
                    found.append((node.lineno, f"import {a.name}"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            bad = [m for m in modules if m == "chainrule.nn" or m.startswith(FORBIDDEN)]
            if bad:
                found.append((node.lineno, f"from {node.module} import "
                                           f"{', '.join(a.name for a in node.names)}"))
    for node in ast.walk(tree):  # cr.nn.functional..., chainrule.training...
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in package_aliases \
                and f"chainrule.{node.attr}" in FORBIDDEN:
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


def test_inspect_builds_on_the_engine_only():
    """chainrule.inspect may use the engine (tensor, autograd, ops); models, training and the
    command line build on it, never the other way round."""
    package = Path(cr.inspect.__file__).parent
    assert not (package / "commands.py").exists()  # graph/explain live in chainrule.cli_inspect
    offenders = {f"{p.name}:{line} {what}" for p in sorted(package.glob("*.py"))
                 for line, what in _uses_outside_the_engine(p)}
    assert not offenders, sorted(offenders)


def test_model_input_is_checked_as_predict_checks_it(tmp_path, capsys):
    path = tmp_path / "model.safetensors"
    model = build_model(64, [8], 10, "relu")
    spec = {"n_inputs": 64, "hidden": [8], "n_classes": 10, "activation": "relu", "seed": 0}
    inputs = {"range": [0.0, 1.0], "divided_by": 16.0, "description": "digits / 16"}
    cr.save(model.state_dict(), path, metadata={"architecture": architecture(spec),
                                                "inputs": json.dumps(inputs)})
    nan, raw = tmp_path / "nan.npy", tmp_path / "raw.npy"
    np.save(nan, np.full(64, np.nan))
    np.save(raw, np.full(64, 12.0))
    for command in ("explain", "graph"):
        extra = ["--out", str(tmp_path / "g.dot")] if command == "graph" else []
        assert main([command, "--model", str(path), "--input", str(nan)] + extra) == 1
        assert f"--input {nan}: sample 0 holds nan" in capsys.readouterr().err
        assert main([command, "--model", str(path), "--input", str(raw)] + extra) == 1
        assert "divide them by 16 first" in capsys.readouterr().err


def test_an_edited_model_file_is_named_not_a_traceback(tmp_path, sample, capsys):
    path = tmp_path / "model.safetensors"
    _saved_model(path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    text = raw[8:8 + n].replace(b'\\"relu\\"', b'\\"tanh\\"')  # the JSON inside the header
    path.write_bytes(raw[:8] + text + raw[8 + n:])
    assert main(["explain", "--model", str(path), "--input", str(sample)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: the header" in err and "does not match the signature" in err
    assert "Traceback" not in err
