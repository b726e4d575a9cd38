"""cr.save / cr.load (safetensors, atomic, verified) and training checkpoints."""

import os
import pickle

import numpy as np
import pytest
from safetensors.numpy import save_file

import chainrule as cr
from chainrule import io, optim
from chainrule.data import DataLoader, TensorDataset, load_digits
from chainrule.io import CheckpointError


def _state():
    return {
        "w": cr.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True),
        "b64": np.linspace(0, 1, 4),
        "steps": np.array([1, 2, 3], np.int64),
        "mask": np.array([True, False]),
        "scalar": np.float32(2.5) * np.ones((), np.float32),
        "half": np.ones(3, np.float16),
    }


def test_round_trip_keeps_values_and_dtypes(tmp_path):
    path = tmp_path / "a.safetensors"
    state = _state()
    cr.save(state, path, metadata={"note": "hello"})
    back = cr.load(path)
    assert set(back) == set(state)
    for name, value in state.items():
        expected = value.data if isinstance(value, cr.Tensor) else value
        assert isinstance(back[name], cr.Tensor)
        assert back[name].dtype == expected.dtype and back[name].shape == expected.shape
        np.testing.assert_array_equal(back[name].data, expected)
    back["w"].data[0, 0] = 7  # loaded arrays are ordinary writable arrays
    assert io.load_metadata(path)["note"] == "hello"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_files_from_other_tools_load(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"x": np.arange(3, dtype=np.float32)}, str(path))
    np.testing.assert_array_equal(cr.load(path)["x"].data, [0, 1, 2])


def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    cr.save({"w": np.ones(1000, np.float32)}, path)
    before = path.read_bytes()

    def crash_midway(f, data):
        f.write(data[: len(data) // 2])
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(io, "_write_all", crash_midway)
    with pytest.raises(OSError, match="simulated"):
        cr.save({"w": np.zeros(1000, np.float32)}, path)
    assert path.read_bytes() == before
    np.testing.assert_array_equal(cr.load(path)["w"].data, np.ones(1000))
    assert os.listdir(tmp_path) == ["model.safetensors"]  # the temporary file is cleaned up


def test_a_failed_rename_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    cr.save({"w": np.ones(3, np.float32)}, path)

    def fail(*args):
        raise OSError("rename failed (simulated)")

    monkeypatch.setattr(io.os, "replace", fail)
    with pytest.raises(OSError, match="simulated"):
        cr.save({"w": np.zeros(3, np.float32)}, path)
    monkeypatch.undo()
    np.testing.assert_array_equal(cr.load(path)["w"].data, np.ones(3))
    assert os.listdir(tmp_path) == ["model.safetensors"]


def _good_file(tmp_path):
    path = tmp_path / "good.safetensors"
    cr.save({"w": np.arange(100, dtype=np.float32), "b": np.ones(3)}, path)
    return path


@pytest.mark.parametrize("damage", ["truncate", "truncate_header", "empty", "text", "pickle",
                                    "flip_data_byte", "flip_hash", "append"])
def test_damaged_or_foreign_files_are_a_clear_error(tmp_path, damage):
    path = _good_file(tmp_path)
    raw = path.read_bytes()
    if damage == "truncate":
        raw = raw[:-10]
    elif damage == "truncate_header":
        raw = raw[:20]
    elif damage == "empty":
        raw = b""
    elif damage == "text":
        raw = b"this is a text file, not a checkpoint\n" * 3
    elif damage == "pickle":
        raw = pickle.dumps({"w": np.arange(3)})
    elif damage == "flip_data_byte":
        raw = raw[:-5] + bytes([raw[-5] ^ 0xFF]) + raw[-4:]
    elif damage == "flip_hash":
        i = raw.index(b"chainrule.sha256") + len('chainrule.sha256":"') + 3
        raw = raw[:i] + (b"0" if raw[i:i + 1] != b"0" else b"1") + raw[i + 1:]
    elif damage == "append":
        raw = raw + b"\0" * 8
    path.write_bytes(raw)
    with pytest.raises(CheckpointError, match="good.safetensors"):
        cr.load(path)
    assert issubclass(CheckpointError, ValueError)


def test_missing_file_and_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.safetensors"):
        cr.load(tmp_path / "nothing.safetensors")
    with pytest.raises(TypeError, match="'x'.*str"):
        cr.save({"x": "text"}, tmp_path / "a.safetensors")
    with pytest.raises(TypeError, match="metadata"):
        cr.save({"x": np.ones(2)}, tmp_path / "a.safetensors", metadata={"epoch": 3})
    with pytest.raises(ValueError, match="reserved"):
        cr.save({"x": np.ones(2)}, tmp_path / "a.safetensors",
                metadata={"chainrule.sha256": "0"})
    with pytest.raises(FileNotFoundError, match="directory"):
        cr.save({"x": np.ones(2)}, tmp_path / "no" / "a.safetensors")
    with pytest.raises(CheckpointError, match="not a chainrule training checkpoint"):
        cr.load_checkpoint(_good_file(tmp_path))


# ----------------------------------------------------------------------------------------------
# Resuming training exactly
# ----------------------------------------------------------------------------------------------
def _setup():
    """A fresh 'process': model, optimizer, scheduler and loader built from the library RNG."""
    X, y = load_digits()
    X, y = X[:240], y[:240]
    params = {"w1": cr.randn(64, 16) * 0.1, "b1": cr.zeros(16), "w2": cr.randn(16, 10) * 0.1,
              "b2": cr.zeros(10)}
    for p in params.values():
        p.requires_grad_(True)
    opt = optim.Adam(params.values(), lr=0.01, weight_decay=1e-4)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    loader = DataLoader(TensorDataset(X, np.eye(10, dtype=np.float32)[y]), batch_size=32,
                        shuffle=True)
    return params, opt, sched, loader


def _train_epoch(params, opt, sched, loader):
    for xb, yb in loader:
        h = cr.tanh(xb @ params["w1"] + params["b1"])
        keep = cr.rand(*h.shape) > 0.2  # dropout: randomness from the library generator
        h = h * keep.astype(cr.float32) / 0.8
        logits = h @ params["w2"] + params["b2"]
        loss = -(cr.log_softmax(logits, axis=1) * yb).sum(axis=1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    sched.step()


def test_resume_from_checkpoint_is_bit_identical(tmp_path):
    epochs, stop_at = 4, 2
    cr.manual_seed(0)
    params, opt, sched, loader = _setup()
    for _ in range(epochs):
        _train_epoch(params, opt, sched, loader)
    uninterrupted = {k: v.data.copy() for k, v in params.items()}

    cr.manual_seed(0)
    params, opt, sched, loader = _setup()
    for _ in range(stop_at):
        _train_epoch(params, opt, sched, loader)
    path = tmp_path / "ckpt.safetensors"
    cr.save_checkpoint(path, model=params, optimizer=opt, scheduler=sched, epoch=stop_at,
                       extra={"best_loss": 0.25, "note": "mid-run"})

    cr.manual_seed(12345)  # a new process: other weights, other random state
    params, opt, sched, loader = _setup()
    info = cr.load_checkpoint(path, model=params, optimizer=opt, scheduler=sched)
    assert info == {"epoch": stop_at, "extra": {"best_loss": 0.25, "note": "mid-run"}}
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)
    for _ in range(info["epoch"], epochs):
        _train_epoch(params, opt, sched, loader)
    for name, value in uninterrupted.items():
        assert params[name].dtype == np.float32
        assert np.array_equal(params[name].data, value), name


def test_without_rng_restore_the_run_differs(tmp_path):
    cr.manual_seed(0)
    params, opt, sched, loader = _setup()
    _train_epoch(params, opt, sched, loader)
    path = tmp_path / "ckpt.safetensors"
    cr.save_checkpoint(path, model=params, optimizer=opt, scheduler=sched, epoch=1)
    results = []
    for restore in (True, False):
        cr.manual_seed(99)
        params, opt, sched, loader = _setup()
        cr.load_checkpoint(path, model=params, optimizer=opt, scheduler=sched,
                           restore_rng=restore)
        _train_epoch(params, opt, sched, loader)
        results.append(params["w1"].data.copy())
    assert not np.array_equal(*results)


class _TinyModel:
    """The interface chainrule.nn modules offer: state_dict() and load_state_dict()."""

    def __init__(self):
        self.w = cr.randn(3, 2, requires_grad=True)

    def state_dict(self):
        return {"w": self.w}

    def load_state_dict(self, state):
        if set(state) != {"w"}:
            raise KeyError(f"unexpected keys {sorted(state)}")
        with cr.no_grad():
            self.w.data[...] = state["w"].data


def test_checkpoint_with_a_module_like_model_and_rmsprop(tmp_path):
    model = _TinyModel()
    opt = optim.RMSprop([model.w], lr=0.1, momentum=0.9, centered=True)
    (model.w * model.w).sum().backward()
    opt.step()
    path = tmp_path / "m.safetensors"
    cr.save_checkpoint(path, model=model, optimizer=opt, rng=False)
    other = _TinyModel()
    opt2 = optim.RMSprop([other.w], lr=0.5)
    info = cr.load_checkpoint(path, model=other, optimizer=opt2)
    assert info == {"epoch": None, "extra": None}
    np.testing.assert_array_equal(other.w.data, model.w.data)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"] == b["param_groups"]
    assert a["state"][0]["step"] == b["state"][0]["step"] == 1
    for key in ("square_avg", "grad_avg", "momentum_buffer"):
        assert np.array_equal(a["state"][0][key], b["state"][0][key])
        assert b["state"][0][key].dtype == np.float32


def test_checkpoint_that_does_not_fit_is_a_clear_error(tmp_path):
    w = cr.randn(3, requires_grad=True)
    opt = optim.SGD([w], lr=0.1, momentum=0.9)
    (w * w).sum().backward()
    opt.step()
    path = tmp_path / "c.safetensors"
    cr.save_checkpoint(path, model={"w": w}, optimizer=opt)
    with pytest.raises(CheckpointError, match="Adam"):
        cr.load_checkpoint(path, optimizer=optim.Adam([cr.randn(3, requires_grad=True)]))
    with pytest.raises(CheckpointError, match="shape"):
        cr.load_checkpoint(path, model={"w": cr.randn(4)})
    with pytest.raises(CheckpointError, match="missing"):
        cr.load_checkpoint(path, model={"w": cr.randn(3), "v": cr.randn(3)})
    with pytest.raises(CheckpointError, match="scheduler"):
        cr.load_checkpoint(path, scheduler=optim.StepLR(opt, step_size=1))
    with pytest.raises(TypeError, match="JSON"):
        cr.save_checkpoint(path, model={"w": w}, extra={"f": object()})
    assert cr.load_checkpoint(path, model={"w": w})["epoch"] is None  # the old file survived
