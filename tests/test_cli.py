"""The `chainrule` command end to end: training, outputs, resume, evaluate, predict, errors."""

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.cli import main
from chainrule.data.idx import write_idx
from file_edits import edit_json_field


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


# ----------------------------------------------------------------------------------------------
# Files from users: refused in one line naming the file and field; options that made no sense
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """One tiny run (1 of 2 epochs, 8 hidden units): its --out directory."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--epochs", "2", "--stop-after", "1", "--hidden", "8", "--no-progress",
                 "--out", str(out)]) == 0
    return out


def _exit_code(argv):
    try:
        return main(argv)
    except SystemExit as exit_info:
        return exit_info.code


@pytest.mark.parametrize("change,signed,message", [
    (lambda a: a.update(seed=3), True, "does not match the signature"),
    (lambda a: a.update(n_inputs="64"), False, "architecture field 'n_inputs' must be a positive "
                                               "integer, got '64'"),
    (lambda a: a.update(activation="os.system"), False, "architecture field 'activation' must "
                                                        "be one of"),
    (lambda a: a.pop("hidden"), False, "architecture lacks the field 'hidden'"),
    (lambda a: a.update(hidden=[200000, 200000]), False, r"needs '1.weight' of shape "
                                                         r"\(200000, 64\)"),
])
@pytest.mark.parametrize("command", ["evaluate", "predict", "graph", "explain"])
def test_an_edited_model_file_exits_1_naming_file_and_field(small_run, tmp_path, capsys, change,
                                                            signed, message, command):
    path = tmp_path / "model.safetensors"
    path.write_bytes((small_run / "model.safetensors").read_bytes())
    edit_json_field(path, "architecture", change, keep_signature=signed)
    sample = tmp_path / "x.npy"
    np.save(sample, np.zeros(64, np.float32))
    argv = {"evaluate": ["evaluate", str(path)], "predict": ["predict", str(path)],
            "graph": ["graph", "--model", str(path), "--input", str(sample), "--out",
                      str(tmp_path / "g.dot")],
            "explain": ["explain", "--model", str(path), "--input", str(sample)]}[command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "warning:" not in line]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith(f"chainrule {command}: error: {path}: ")
    assert re.search(message, lines[0]), lines[0]
    assert signed or f"chainrule {command}: warning: {path} is not signed" in err


@pytest.mark.parametrize("change,message", [
    (lambda i: i.update(epoch=-5), "'epoch' must be a non-negative integer or null, got -5"),
    (lambda i: i.update(epoch=1000000000), "'epoch' is 1000000000, but a run of --epochs 2"),
    (lambda i: i.update(epoch="two"), "'epoch' must be a non-negative integer"),
    (lambda i: i.update(extra=None), "'extra.options' is missing"),
    (lambda i: i["extra"].pop("options"), "'extra.options' is missing"),
    (lambda i: i["extra"].update(history=5), "'extra.history' must list one row"),
    (lambda i: i["optimizer"]["param_groups"][0].update(lr="fast"), "lr' is 'fast'"),
    (lambda i: i["optimizer"]["scalars"]["0"].update(step=None), "step' must be a finite number"),
    (lambda i: i.update(rng_state={"state": 1}), "'rng_state' is not a state"),
])
def test_resume_from_an_edited_checkpoint_exits_1_naming_file_and_field(small_run, tmp_path,
                                                                       capsys, change, message):
    out = tmp_path / "run"
    shutil.copytree(small_run, out)
    path = out / "checkpoint.safetensors"
    edit_json_field(path, "chainrule.checkpoint", change)
    argv = ["train", "--epochs", "2", "--hidden", "8", "--no-progress", "--out", str(out),
            "--resume"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"chainrule train: error: {path}: checkpoint field " in err and "Traceback" not in err
    assert re.search(message, err), err


def test_predict_prints_the_indices_it_was_given(small_run, capsys):
    assert main(["predict", str(small_run / "model.safetensors"), "--index", "3", "4", "5"]) == 0
    out = capsys.readouterr().out
    assert [line.split(":")[0] for line in out.splitlines()] == ["sample 3", "sample 4",
                                                                 "sample 5"]


def test_predict_refuses_raw_digits_and_nan_naming_the_sample(small_run, tmp_path, capsys):
    X = cr.data.digits_splits(seed=0).test.X[:3]
    model = str(small_run / "model.safetensors")
    raw, nan, good = tmp_path / "raw.npy", tmp_path / "nan.npy", tmp_path / "good.npy"
    np.save(raw, X * 16)
    bad = X.copy()
    bad[1, 5] = np.nan
    np.save(nan, bad)
    np.save(good, X)
    assert main(["predict", model, "--input", str(raw)]) == 1
    err = capsys.readouterr().err
    assert "values range 0..16" in err and "trained on inputs in 0..1" in err
    assert "divide them by 16 first" in err
    assert main(["predict", model, "--input", str(nan)]) == 1
    assert "sample 1 holds nan at input 5" in capsys.readouterr().err
    assert main(["predict", model, "--input", str(good)]) == 0
    assert capsys.readouterr().out.count("sample") == 3


@pytest.mark.parametrize("argv,message", [
    (["train", "--hidden", "128,,64"], "--hidden: expected comma-separated positive integers, "
                                       "got '128,,64'"),
    (["train", "--hidden", "128,"], "--hidden: expected comma-separated positive integers"),
    (["train", "--stop-after", "50", "--epochs", "3"], "--stop-after 50 is after the last epoch "
                                                       "(--epochs 3)"),
])
def test_options_that_would_be_misread_or_ignored_exit_2(argv, message, capsys):
    assert _exit_code(argv) == 2
    assert message in capsys.readouterr().err


def test_version_and_defaults_in_help(capsys):
    assert _exit_code(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"chainrule {cr.__version__}"
    assert _exit_code(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("(default: 256,128)", "(default: 30)", "(default: 32)", "(default: relu)",
                  "(default: runs/latest)", "(default: adam)", "(default: 0)",
                  "a previous run there is overwritten"):
        assert shown in text, shown
    assert "(default: None)" not in text and "(default: False)" not in text
    assert _exit_code(["predict", "--help"]) == 0
    assert "divided by 16" in " ".join(capsys.readouterr().out.split())


def test_a_diverging_run_exits_1_naming_epoch_and_step(tmp_path, capsys):
    argv = ["train", "--lr", "1e6", "--optimizer", "sgd", "--epochs", "3", "--hidden", "8",
            "--no-progress", "--out", str(tmp_path)]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert re.search(r"chainrule train: error: epoch 1, step \d+ of 40: the loss is (nan|inf): "
                     r"training diverged", err) and "Traceback" not in err


def test_train_says_it_overwrites_and_creates_missing_folders(tmp_path, capsys):
    out = tmp_path / "a" / "b"
    argv = ["train", "--epochs", "1", "--hidden", "8", "--no-progress", "--out", str(out)]
    assert main(argv) == 0
    assert f"writing to {out}\n" in capsys.readouterr().out
    assert main(argv) == 0
    assert f"writing to {out} (overwrites the previous run there" in capsys.readouterr().out


def test_a_missing_output_folder_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["graph", "--example", "seed-004", "--out", "nodir/g.dot"]) == 1
    err = capsys.readouterr().err
    assert "chainrule graph: error: nodir/g.dot: the folder nodir does not exist" in err
    assert "Errno" not in err


def test_an_unexpected_error_is_one_line(monkeypatch, capsys):
    from chainrule import cli

    def broken(args):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(cli, "_evaluate", broken)
    assert main(["evaluate", "m.safetensors"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "TypeError: unsupported operand" in err
    monkeypatch.setenv("CHAINRULE_TRACEBACK", "1")
    with pytest.raises(TypeError):
        main(["evaluate", "m.safetensors"])


def test_evaluate_refuses_idx_labels_the_model_does_not_have(small_run, tmp_path, capsys):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((4, 8, 8), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([0, 1, 12, 2], np.uint8))
    assert main(["evaluate", str(small_run / "model.safetensors"), "--data", str(tmp_path)]) == 1
    assert "test labels in" in capsys.readouterr().err


def test_a_closed_pipe_ends_the_command_quietly(tmp_path):
    command = [sys.executable, "-m", "chainrule", "train", "--epochs", "1", "--hidden", "8",
               "--no-progress", "--out", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # as `| head` does once it has its lines
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141, err
    assert err.decode() == ""
