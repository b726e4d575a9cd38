"""Every script in examples/ runs and prints what its seed computes."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run(name):
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_every_example_is_tested():
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(CHECKS)


def _seed003(out):
    for w in ("w1", "w2", "w3", "w4"):
        grad, by_hand = re.search(rf"dL/d{w} = (\S+)\s+by hand (\S+)", out).groups()
        assert grad == by_hand
    new, old = map(float, re.search(r"loss = (\S+) \(was (\S+)\)", out).groups())
    assert new < old


def _seed004(out):
    by_hand = re.search(r"2\(o - t\) = [^=]+= (\S+)", out).group(1)
    assert re.search(r"w.grad = (\S+)", out).group(1) == by_hand
    assert "= o_prev · o·(1 − o) · 1 · 2·(o - t)" in out


def _seed002(out):
    assert "cross-entropy = 0.223" in out and "cross-entropy = 2.303" in out
    grads, q_minus_y = re.search(r"dL/dz = (\[.*?\]) = q - y = (\[.*?\])", out).groups()
    assert grads == q_minus_y
    assert "60,600 parameters" in out
    losses = [float(v) for v in re.findall(r"average loss over the batch (\S+)", out)]
    assert losses[-1] < losses[0]


def _seed000(out):
    assert "satisfactory after" in out


def _seed001(out):
    assert float(re.search(r"max \|J - .*\| = (\S+)", out).group(1)) < 1e-12
    by_pass = re.search(r"by the backward pass: (\[.*\])", out).group(1)
    assert by_pass == re.search(r"from the matrix:\s+(\[.*\])", out).group(1)


CHECKS = {"seed003_two_unit_sigmoid.py": _seed003, "seed004_single_neuron_chain.py": _seed004,
          "seed002_softmax_cross_entropy.py": _seed002, "seed000_training_loop.py": _seed000,
          "seed001_jacobian.py": _seed001}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_example(name):
    CHECKS[name](run(name))


def test_the_seeing_backprop_notebook_runs_top_to_bottom():
    """examples/seeing_backprop.ipynb, executed as a learner would (Jupyter kernel)."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    import shutil

    notebook = nbformat.read(EXAMPLES / "seeing_backprop.ipynb", as_version=4)
    nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code"
               for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "by hand" in text and "w.grad" in text and "test accuracy" in text
    shown = [o for o in outputs if o.output_type in ("display_data", "execute_result")]
    if shutil.which("dot"):  # the drawings show themselves as SVG, with numbers on them
        svgs = [o["data"]["image/svg+xml"] for o in shown if "image/svg+xml" in o["data"]]
        assert len(svgs) == 3 and all("<svg" in s for s in svgs)
        assert "w1" in svgs[0] and "x1" in svgs[0]
    assert any("image/png" in o["data"] for o in shown)  # the gradient-flow plots
