"""The training recipe behind `chainrule train`: model, evaluation, prediction, outputs, resume."""

import json

import numpy as np
import pytest

import chainrule as cr
from chainrule import nn
from chainrule.data.idx import write_idx
from chainrule.nn import functional as F
from chainrule.training import (
    DEFAULT_LR,
    Config,
    Standardize,
    build_model,
    evaluate,
    fit,
    load_data,
    loss_of,
    model_from_file,
    predict,
    run_options,
)


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
                    "seed": 0}
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
