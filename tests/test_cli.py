"""The `chainrule` command end to end: training, outputs, resume, evaluate, predict, errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.data.idx import write_idx


def test_default_recipe_reaches_97_percent(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.97
    assert f"test accuracy {metrics['test_accuracy']:.2%}" in out
    assert "epoch  train loss" in out and len(metrics["history"]) == 30
    for name in ("model.safetensors", "checkpoint.safetensors", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["evaluate", str(tmp_path / "model.safetensors")]) == 0
    assert f"accuracy {metrics['test_accuracy']:.2%}" in capsys.readouterr().out
    assert main(["predict", str(tmp_path / "model.safetensors"), "--index", "0", "3"]) == 0
    assert capsys.readouterr().out.count("sample") == 2


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    straight, resumed = tmp_path / "a", tmp_path / "b"
    common = ["train", "--epochs", "4", "--no-progress", "--hidden", "32", "--optimizer", "sgd"]
    assert main(common + ["--out", str(straight)]) == 0
    assert main(common + ["--out", str(resumed), "--stop-after", "2"]) == 0
    cr.manual_seed(123)  # a different random state: the checkpoint must restore the right one
    assert main(common + ["--out", str(resumed), "--resume"]) == 0
    a, b = cr.load(straight / "model.safetensors"), cr.load(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].data, b[k].data) for k in a)


def test_evaluate_uses_the_test_split_of_the_seed_the_model_was_trained_with(tmp_path, capsys):
    args = ["--epochs", "1", "--hidden", "8", "--no-progress", "--seed", "3"]
    assert main(["train", "--out", str(tmp_path)] + args) == 0
    accuracy = json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"]
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "model.safetensors")]) == 0
    assert f"accuracy {accuracy:.2%}" in capsys.readouterr().out


def test_trains_on_idx_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("t10k", 40)):
        labels = rng.integers(0, 3, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 30 + labels[:, None, None] * 100).astype(np.uint8)
        write_idx(tmp_path / f"{split}-images-idx3-ubyte", images)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte", labels)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path), "--out", str(out), "--epochs", "30",
                 "--hidden", "16", "--no-progress", "--report"]) == 0
    text = capsys.readouterr().out
    assert "model: 784-16-3" in text
    assert json.loads((out / "metrics.json").read_text())["test_accuracy"] > 0.9
    assert "bytes" in (out / "memory.txt").read_text()
    assert json.loads((out / "gradient-flow.json").read_text())["steps"] > 0
    assert main(["evaluate", str(out / "model.safetensors"), "--data", str(tmp_path)]) == 0


@pytest.mark.parametrize("argv,message", [
    (["train", "--hidden", "12,x"], "--hidden: expected comma-separated positive integers"),
    (["train", "--lr", "-1"], "--lr: expected a finite number > 0"),
    (["train", "--epochs", "0"], "--epochs: expected a positive integer"),
    (["train", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs'"),
    (["train", "--seed", "-3"], "--seed: expected a non-negative integer, got -3"),
    (["train", "--momentum", "0.5"], "--momentum: only rmsprop and sgd take a momentum, not adam"),
])
def test_bad_options_exit_2_and_say_why(argv, message, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_info:  # argparse's own errors exit from inside parse_args
        code = exit_info.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("argv,message", [
    (["evaluate", "missing.safetensors"], "model file missing.safetensors does not exist"),
    (["train", "--data", "no-such-dir", "--no-progress"], "is not a directory"),
    (["train", "--out", "a-file", "--no-progress"], "--out: a-file exists and is not a directory"),
    (["predict", "missing.safetensors"], "model file missing.safetensors does not exist"),
])
def test_runtime_failures_exit_1_without_traceback(argv, message, capsys, tmp_path,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("not a directory")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_resume_with_other_options_exits_1_and_names_them(tmp_path, capsys):
    common = ["train", "--epochs", "2", "--no-progress", "--out", str(tmp_path)]
    assert main(common + ["--hidden", "8", "--stop-after", "1"]) == 0
    capsys.readouterr()
    assert main(common + ["--hidden", "16", "--resume"]) == 1
    err = capsys.readouterr().err
    assert "--resume:" in err and "--hidden 8 there, 16 now" in err and "Traceback" not in err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert all(name in out for name in ("train", "evaluate", "predict"))


def test_python_dash_m_runs_the_command():
    result = subprocess.run([sys.executable, "-m", "chainrule", "train", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "--hidden" in result.stdout
