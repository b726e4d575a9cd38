"""The training recipe behind `chainrule train`: model, evaluation, prediction, outputs, resume."""

import json
import math
import shutil
import warnings

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn, training
from chainrule.data.idx import write_idx
from chainrule.io import CheckpointError, UnsignedFileWarning
from chainrule.nn import functional as F
from chainrule.training import (
    DEFAULT_LR,
    Config,
    Standardize,
    TrainingError,
    build_model,
    check_inputs,
    evaluate,
    fit,
    load_data,
    loss_of,
    model_from_file,
    model_tensors,
    predict,
    run_options,
)
from file_edits import edit_json_field, rewrite_header


def quiet(*args, **kwargs):
    pass


def small(tmp_path, **options):
    """A run that takes a fraction of a second: one small hidden layer, few epochs."""
    settings = dict(hidden=(16,), epochs=2, out=str(tmp_path / "run"), progress=False)
    settings.update(options)
    return Config(**settings)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run shared by the tests that only read its outputs."""
    out = tmp_path_factory.mktemp("trained")
    config = Config(hidden=(16,), epochs=2, out=str(out), progress=False)
    return config, fit(config, log=quiet), out


def test_build_model_is_standardize_then_linear_activation_pairs():
    X = np.random.default_rng(0).random((50, 6), dtype=np.float32)
    model = build_model(6, (5, 4), 3, "tanh", X)
    kinds = [type(layer) for layer in model]
    assert kinds == [Standardize, nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert model.num_parameters() == 6 * 5 + 5 + 5 * 4 + 4 + 4 * 3 + 3
    standardized = model[0](cr.tensor(X)).data
    np.testing.assert_allclose(standardized, (X - X.mean(0)) / (X.std(0) + 0.1), rtol=1e-5)
    assert standardized.dtype == np.float32


def test_standardize_statistics_are_saved_with_the_weights():
    model = build_model(3, (4,), 2, "relu", np.arange(12, dtype=np.float32).reshape(4, 3))
    state = model.state_dict()
    assert "0.mean" in state and "0.scale" in state
    np.testing.assert_allclose(np.asarray(state["0.mean"].data), [4.5, 5.5, 6.5])


def test_learning_rate_defaults_per_optimizer_and_explicit_wins():
    assert Config(optimizer="sgd").learning_rate == DEFAULT_LR["sgd"]
    assert Config(optimizer="adam").learning_rate == DEFAULT_LR["adam"]
    assert Config(optimizer="adam", lr=0.1).learning_rate == 0.1


def test_momentum_defaults_per_optimizer_and_none_for_adam():
    assert Config(optimizer="sgd").momentum_value == 0.9
    assert Config(optimizer="rmsprop").momentum_value == 0.0
    assert Config(optimizer="rmsprop", momentum=0.5).momentum_value == 0.5
    assert Config(optimizer="adam").momentum_value is None


def test_evaluate_matches_the_loss_and_accuracy_on_the_whole_set_at_once():
    cr.manual_seed(1)
    X = np.random.default_rng(1).random((23, 5), dtype=np.float32)
    y = np.random.default_rng(2).integers(0, 3, 23)
    model = build_model(5, (7,), 3, "relu", X)
    model.train()
    loss, accuracy = evaluate(model, X, y, batch_size=4)  # several batches and a short one
    logits = model(cr.tensor(X))
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert accuracy == pytest.approx(np.mean(logits.data.argmax(1) == y))
    assert model.training  # evaluate puts the mode back


def test_mse_loss_sums_squared_errors_over_classes_and_averages_over_the_batch():
    logits = cr.tensor(np.array([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]], np.float32))
    labels = np.array([0, 2])
    q = cr.softmax(logits).data
    expected = np.sum((q - np.eye(3)[labels]) ** 2) / 2
    got = loss_of("mse", logits, labels, 3)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert got.dtype == np.float32


def test_predict_gives_argmax_classes_and_probabilities_that_sum_to_one():
    model = build_model(4, (6,), 5, "gelu")
    X = np.random.default_rng(3).random((7, 4))  # float64 in: the model still runs in float32
    classes, probs = predict(model, X)
    assert probs.shape == (7, 5) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    assert np.array_equal(classes, probs.argmax(axis=1))


def test_fit_writes_every_output_and_records_the_run(trained):
    config, metrics, out = trained
    assert {p.name for p in out.iterdir()} >= {
        "model.safetensors", "checkpoint.safetensors", "metrics.json", "curves.png"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"] and 0.5 < saved["test_accuracy"] <= 1
    assert [row["epoch"] for row in saved["history"]] == [1, 2]
    assert set(saved["history"][0]) == {"epoch", "train_loss", "train_accuracy", "val_loss",
                                        "val_accuracy", "seconds"}
    assert saved["config"]["hidden"] == [16] and saved["data"] == "digits"
    assert saved["parameters"] == 64 * 16 + 16 + 16 * 10 + 10
    assert saved["history"][1]["train_loss"] < saved["history"][0]["train_loss"]
    state = cr.load_checkpoint(out / "checkpoint.safetensors", restore_rng=False)
    assert state["epoch"] == 2 and state["extra"]["options"] == run_options(config)


def test_the_saved_model_rebuilds_with_its_architecture_and_float32_weights(trained):
    config, metrics, out = trained
    model, spec = model_from_file(out / "model.safetensors")
    assert spec == {"n_inputs": 64, "hidden": [16], "n_classes": 10, "activation": "relu",
                    "seed": 0, "inputs": {"range": [0.0, 1.0], "divided_by": 16.0,
                                          "description": "8x8 digits: pixel values 0-16 "
                                                         "divided by 16"}}
    assert all(p.data.dtype == np.float32 for p in model.parameters())
    X, y = cr.data.digits_splits(seed=config.seed).test
    loss, accuracy = evaluate(model, X, y)
    assert accuracy == metrics["test_accuracy"]
    assert loss == pytest.approx(metrics["test_loss"], rel=1e-6)


def test_model_from_file_says_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist .*chainrule train"):
        model_from_file(tmp_path / "none.safetensors")
    cr.save({"w": cr.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(cr.io.CheckpointError, match="no architecture in its metadata"):
        model_from_file(tmp_path / "plain.safetensors")


def test_stop_after_then_resume_continues_the_same_schedule(tmp_path):
    straight = fit(small(tmp_path, out=str(tmp_path / "a"), epochs=3), log=quiet)
    fit(small(tmp_path, out=str(tmp_path / "b"), epochs=3, stop_after=1), log=quiet)
    lines = []
    resumed = fit(small(tmp_path, out=str(tmp_path / "b"), epochs=3, resume=True),
                  log=lines.append)
    assert any("resumed from" in line and "after epoch 1" in line for line in lines)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2, 3]
    for key in ("train_loss", "val_loss", "val_accuracy"):
        assert [r[key] for r in resumed["history"]] == [r[key] for r in straight["history"]]
    assert resumed["test_loss"] == straight["test_loss"]


def test_resume_refuses_other_options_and_names_them(tmp_path):
    fit(small(tmp_path, stop_after=1), log=quiet)
    with pytest.raises(ValueError, match=r"--hidden 16 there, 8 now; --lr 0.002 there, 0.01"):
        fit(small(tmp_path, hidden=(8,), lr=0.01, resume=True), log=quiet)


def test_resume_names_a_changed_optimizer_and_data_plainly(tmp_path):
    fit(small(tmp_path, stop_after=1), log=quiet)
    write_idx_set(tmp_path)
    with pytest.raises(ValueError, match=r"--optimizer adam there, sgd now; --momentum none "
                                         r"there, 0.9 now; .*--data the digits there, /"):
        fit(small(tmp_path, optimizer="sgd", lr=0.002, data=str(tmp_path), resume=True),
            log=quiet)


def test_resume_without_a_checkpoint_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint"):
        fit(small(tmp_path, resume=True), log=quiet)


def write_idx_set(directory, n_train=60, n_test=20, n_classes=3):
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, n_classes, n).astype(np.uint8)
        images = (rng.random((n, 28, 28)) * 30 + labels[:, None, None] * 100).astype(np.uint8)
        write_idx(directory / f"{split}-images-idx3-ubyte", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte", labels)


def test_idx_data_is_split_into_train_and_validation(tmp_path):
    write_idx_set(tmp_path)
    data = load_data(Config(data=str(tmp_path)))
    assert data.n_inputs == 784 and data.n_classes == 3
    assert (len(data.train[0]), len(data.val[0]), len(data.test[0])) == (54, 6, 20)
    assert data.train[0].dtype == np.float32


def test_missing_data_directory_names_the_option(tmp_path):
    with pytest.raises(FileNotFoundError, match="--data: .* is not a directory"):
        load_data(Config(data=str(tmp_path / "nothing")))


@pytest.mark.parametrize("options", [
    dict(loss="mse", optimizer="sgd"),
    dict(loss="mse", optimizer="rmsprop"),
    dict(activation="sigmoid", optimizer="rmsprop"),
    dict(activation="leaky_relu", optimizer="adamw", weight_decay=0.01),
])
def test_every_loss_optimizer_and_activation_trains(tmp_path, options):
    metrics = fit(small(tmp_path, epochs=3, **options), log=quiet)
    history = metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert metrics["test_accuracy"] > 0.5  # ten classes: chance is 0.1


def test_progress_bar_goes_to_stderr_and_the_table_to_the_log(tmp_path, capsys):
    lines = []
    fit(small(tmp_path, epochs=1, progress=True), log=lines.append)
    captured = capsys.readouterr()
    assert "epoch 1/1" in captured.err and captured.out == ""
    assert any(line.split()[:1] == ["1"] for line in lines)  # the epoch-1 row of the table
    assert any(line.startswith("test loss") for line in lines)


# ----------------------------------------------------------------------------------------------
# Model files and checkpoints: signed, checked against their schema, never a traceback
# ----------------------------------------------------------------------------------------------
def test_model_tensors_are_those_of_the_built_model():
    model = build_model(7, (5, 4), 3, "tanh")
    assert model_tensors(7, [5, 4], 3) == {k: v.shape for k, v in model.state_dict().items()}


def test_an_edited_seed_is_refused_instead_of_scoring_another_split(trained, tmp_path):
    path = tmp_path / "model.safetensors"
    shutil.copy(trained[2] / "model.safetensors", path)
    edit_json_field(path, "architecture", lambda a: a.update(seed=5), keep_signature=True)
    with pytest.raises(CheckpointError, match="model.safetensors: the header .* does not match"):
        model_from_file(path)


def test_the_architecture_is_checked_against_the_tensors_before_anything_is_built(
        trained, tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    shutil.copy(trained[2] / "model.safetensors", path)
    edit_json_field(path, "architecture", lambda a: a.update(hidden=[200000, 200000]))
    monkeypatch.setattr(training, "build_model", None)  # it must not get that far
    with pytest.warns(UnsignedFileWarning, match="is not signed"), pytest.raises(
            CheckpointError, match=r"architecture \(64-200000-200000-10\) needs '1.weight' of "
                                   r"shape \(200000, 64\) \(float32\), but the file holds shape "
                                   r"\(16, 64\)"):
        model_from_file(path)


@pytest.mark.parametrize("change,message", [
    (lambda a: a.update(n_inputs="64"), "architecture field 'n_inputs' must be a positive "
                                        "integer, got '64'"),
    (lambda a: a.update(n_inputs=True), "'n_inputs' must be a positive integer, got True"),
    (lambda a: a.update(activation="os.system"), "architecture field 'activation' must be one "
                                                 "of gelu, leaky_relu, relu, sigmoid, tanh, got "
                                                 "'os.system'"),
    (lambda a: a.pop("hidden"), "architecture lacks the field 'hidden'"),
    (lambda a: a.update(hidden=16), "'hidden' must be a list of positive integers, got 16"),
    (lambda a: a.update(hidden=[16, 0]), "'hidden' must be a list of positive integers"),
    (lambda a: a.update(n_classes=1), "'n_classes' must be an integer >= 2"),
    (lambda a: a.update(seed=-1), "'seed' must be a non-negative integer, got -1"),
    (lambda a: a.update(depth=3), "architecture has an unknown field 'depth'"),
    (lambda a: a.update(n_classes=11), r"needs '3.weight' of shape \(11, 16\)"),
])
def test_a_model_file_field_of_the_wrong_type_or_value_is_named(trained, tmp_path, change,
                                                                message):
    path = tmp_path / "model.safetensors"
    shutil.copy(trained[2] / "model.safetensors", path)
    edit_json_field(path, "architecture", change)
    with pytest.warns(UnsignedFileWarning), pytest.raises(CheckpointError, match=message) as info:
        model_from_file(path)
    assert str(path) in str(info.value)


def test_broken_json_and_bad_inputs_metadata_name_the_file(trained, tmp_path):
    path = tmp_path / "model.safetensors"
    shutil.copy(trained[2] / "model.safetensors", path)
    rewrite_header(path, lambda h: (h["__metadata__"].update(architecture="{not json"),
                                    h["__metadata__"].pop("chainrule.signature")))
    with pytest.warns(UnsignedFileWarning), pytest.raises(
            CheckpointError, match=r"model.safetensors: the 'architecture' metadata is not valid "
                                   r"JSON"):
        model_from_file(path)
    shutil.copy(trained[2] / "model.safetensors", path)
    edit_json_field(path, "inputs", lambda i: i.update(range=[1, 0]))
    with pytest.warns(UnsignedFileWarning), pytest.raises(
            CheckpointError, match="inputs field 'range' must be"):
        model_from_file(path)


def test_a_model_file_of_chainrule_0_1_loads_with_a_warning(trained, tmp_path):
    from safetensors.numpy import save_file

    state = {k: v.data for k, v in cr.load(trained[2] / "model.safetensors").items()}
    spec = {"n_inputs": 64, "hidden": [16], "n_classes": 10, "activation": "relu", "seed": 0}
    path = tmp_path / "old.safetensors"
    save_file(state, str(path), metadata={"architecture": json.dumps(spec),
                                          "chainrule.sha256": cr.io._digest(state)})
    with pytest.warns(UnsignedFileWarning, match="old.safetensors is not signed"):
        model, loaded = model_from_file(path)
    assert loaded["inputs"] is None and loaded["hidden"] == [16]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run of 2 epochs stopped after the first: its --out directory."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    fit(Config(hidden=(16,), epochs=2, stop_after=1, out=str(out), progress=False), log=quiet)
    return out


def _history(i):
    return i["extra"]["history"]


@pytest.mark.parametrize("change,message", [
    (lambda i: i.update(epoch=-5), "'epoch' must be a non-negative integer or null, got -5"),
    (lambda i: i.update(epoch=10 ** 9), "'epoch' is 1000000000, but a run of --epochs 2 writes "
                                        "checkpoints after epochs 1..2"),
    (lambda i: i.update(epoch=0), "'epoch' is 0"),
    (lambda i: i.update(epoch=2), "'extra.history' must list one row for each of the 2"),
    (lambda i: i.update(epoch="two"), "'epoch' must be a non-negative integer or null"),
    (lambda i: i.update(extra=None), "'extra.options' is missing"),
    (lambda i: i["extra"].pop("options"), "'extra.options' is missing, so it cannot be checked"),
    (lambda i: i["extra"]["options"].pop("lr"), "'extra.options' lacks lr"),
    (lambda i: i["extra"]["options"].update(seed="0"), "'extra.options.seed' is '0', not a "
                                                       "value --seed takes"),
    (lambda i: i["extra"].update(history=5), "'extra.history' must list one row for each of the "
                                             "1 epochs done, got 5"),
    (lambda i: _history(i)[0].update(val_loss="low"), r"'extra.history\[0\].val_loss' must be a "
                                                      r"finite number"),
    (lambda i: _history(i)[0].update(epoch=3), r"'extra.history\[0\].epoch' must be 1"),
    (lambda i: i["extra"].update(more=1), "'extra.more' is not written by `chainrule train`"),
    (lambda i: i["optimizer"]["param_groups"][0].update(lr="fast"), "lr' is 'fast'"),
    (lambda i: i["optimizer"]["scalars"]["0"].update(step=[1]), "step' must be a finite number"),
    (lambda i: i["scheduler"]["state"].update(last_epoch=5), r"'scheduler.state' \(epoch 5 of 2"
                                                             r"\) does not agree with 'epoch' 1"),
    (lambda i: i.update(rng_state=[1, 2]), "'rng_state' is not a state"),
])
def test_resume_refuses_an_edited_checkpoint_naming_the_field(interrupted, tmp_path, change,
                                                              message):
    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    path = out / "checkpoint.safetensors"
    signed = tmp_path / "signed.safetensors"
    shutil.copy(path, signed)
    edit_json_field(signed, "chainrule.checkpoint", change, keep_signature=True)
    with pytest.raises(CheckpointError, match="does not match the signature"):
        cr.load_checkpoint(signed, restore_rng=False)
    edit_json_field(path, "chainrule.checkpoint", change)
    config = Config(hidden=(16,), epochs=2, out=str(out), progress=False, resume=True)
    with pytest.warns(UnsignedFileWarning), pytest.raises(CheckpointError, match=message) as info:
        fit(config, log=quiet)
    assert str(path) in str(info.value)


def test_an_unsigned_checkpoint_of_chainrule_0_1_still_resumes_with_a_warning(interrupted,
                                                                             tmp_path):
    out = tmp_path / "run"
    shutil.copytree(interrupted, out)
    rewrite_header(out / "checkpoint.safetensors",
                   lambda h: h["__metadata__"].pop("chainrule.signature"))
    with pytest.warns(UnsignedFileWarning, match="checkpoint.safetensors is not signed"):
        metrics = fit(Config(hidden=(16,), epochs=2, out=str(out), progress=False, resume=True),
                      log=quiet)
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]


def test_a_loss_that_is_not_finite_stops_training_and_keeps_the_last_good_checkpoint(
        tmp_path, monkeypatch):
    calls = [0]
    real = training.loss_of

    def poisoned(*args):  # the 9th step of epoch 2 (40 steps and 1 validation call an epoch)
        calls[0] += 1
        loss = real(*args)
        return loss * float("nan") if calls[0] == 50 else loss

    monkeypatch.setattr(training, "loss_of", poisoned)
    config = small(tmp_path, epochs=3)
    with pytest.raises(TrainingError, match=r"epoch 2, step 9 of 40: the loss is nan: training "
                                            r"diverged and was stopped \(.*checkpoint.safetensors "
                                            r"still holds the weights after epoch 1") as info:
        fit(config, log=quiet)
    assert "smaller --lr than 0.002" in str(info.value)
    state = cr.load_checkpoint(tmp_path / "run" / "checkpoint.safetensors", restore_rng=False)
    assert state["epoch"] == 1 and len(state["extra"]["history"]) == 1
    monkeypatch.setattr(training, "loss_of", real)
    resumed = fit(small(tmp_path, epochs=3, resume=True), log=quiet)
    assert len(resumed["history"]) == 3


def test_a_huge_learning_rate_is_stopped_in_the_first_epoch(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's overflow warnings
        with pytest.raises(TrainingError, match=r"epoch 1, step \d+ of 40: the loss is (nan|inf)"
                                                r".*no checkpoint of this run was written"):
            fit(small(tmp_path, optimizer="sgd", lr=1e6), log=quiet)


def test_table_rows_keep_their_columns_for_huge_values():
    header = (f"{'epoch':>5} {'train loss':>11} {'train acc':>10} {'val loss':>9} "
              f"{'val acc':>8} {'seconds':>8}")
    normal = {"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.9, "val_loss": 0.4,
              "val_accuracy": 0.91, "seconds": 0.1}
    huge = dict(normal, train_loss=3.2e30, val_loss=math.inf, train_accuracy=1.0,
                seconds=123456.0)
    for row in (normal, huge):
        assert len(training._row(row)) == len(header)  # every column right-aligned in its width


def test_stop_after_past_the_last_epoch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--stop-after 50 is after the last epoch "
                                         r"\(--epochs 3\)"):
        fit(small(tmp_path, epochs=3, stop_after=50), log=quiet)


def test_the_log_says_where_it_writes_and_that_it_overwrites(tmp_path):
    lines = []
    fit(small(tmp_path, epochs=1), log=lines.append)
    assert f"writing to {tmp_path / 'run'}" == lines[0]
    lines.clear()
    fit(small(tmp_path, epochs=1), log=lines.append)
    assert "(overwrites the previous run there" in lines[0]


@pytest.mark.parametrize("labels,message", [
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 255], r"range 0..255 but only 10 distinct values occur "
                                       r"\(0, 1, 2, 3, \.\.\., 8, 255 \(10 in all\)\).*missing: "
                                       r"9, 10, 11, 12, \.\.\., 253, 254 \(246 in all\)"),
    ([1, 2, 3], r"range 1..3 but only 3 distinct values.*missing: 0"),
    ([0, 2], r"range 0..2 but only 2 distinct values.*missing: 1"),
    ([4], "hold 1 distinct value"),
    (list(range(40)), "40 classes .* for only 60 training samples"),
])
def test_idx_labels_must_be_the_classes_0_to_k_minus_1(tmp_path, labels, message):
    write_idx_set(tmp_path)
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "train-labels-idx1-ubyte",
              np.resize(rng.permutation(np.array(labels, np.uint8)), 60).astype(np.uint8))
    with pytest.raises(ValueError, match=message):
        load_data(Config(data=str(tmp_path)))


def test_idx_test_labels_must_be_training_classes(tmp_path):
    write_idx_set(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.full(20, 7, np.uint8))
    with pytest.raises(ValueError, match=r"test labels .* include 7, which no training label "
                                         r"has \(classes 0..2\)"):
        load_data(Config(data=str(tmp_path)))


def test_check_inputs_refuses_nan_and_values_outside_the_training_range():
    spec = {"inputs": {"range": [0.0, 1.0], "divided_by": 16.0, "description": "digits / 16"}}
    X = np.random.default_rng(0).random((4, 3))
    assert check_inputs(X, spec).dtype == np.float32
    bad = X.copy()
    bad[2, 1] = np.nan
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"--input: sample 2 holds nan at input 1 \(and 1 more "
                                         r"samples\)"):
        check_inputs(bad, spec)
    with pytest.raises(ValueError, match=r"values range 0..14 .* trained on inputs in 0..1 "
                                         r"\(digits / 16\); they look like raw values: divide "
                                         r"them by 16 first"):
        check_inputs(np.round(X * 15), spec)
    with pytest.raises(ValueError, match=r"values range -3..*\(sample 1 has -3\)") as info:
        check_inputs(np.array([[0.5, 0.5, 0.5], [-3, 0, 0]]), spec)
    assert "raw values" not in str(info.value)
    check_inputs(np.array([[1.04, -0.04, 0.0]]), spec)  # 5% slack
    check_inputs(X * 100, {"inputs": None})  # files from before the range was recorded


@pytest.mark.parametrize("options", [dict(), dict(loss="mse", optimizer="sgd"),
                                     dict(report=True)])  # (the loss alone compiled)
def test_compile_trains_to_the_same_bits_as_the_eager_step(tmp_path, options):
    eager = fit(small(tmp_path, out=str(tmp_path / "eager"), **options), log=quiet)
    compiled = fit(small(tmp_path, out=str(tmp_path / "compiled"), compile=True, **options),
                   log=quiet)
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy"):
        assert [r[key] for r in compiled["history"]] == [r[key] for r in eager["history"]]
    weights = [cr.load(tmp_path / run / "model.safetensors") for run in ("eager", "compiled")]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        assert weights[0][name].numpy().tobytes() == weights[1][name].numpy().tobytes(), name
    # a resumed compiled run is the same run: --compile is not one of its options
    assert "compile" not in run_options(small(tmp_path, compile=True))
