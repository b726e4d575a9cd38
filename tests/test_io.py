"""cr.save / cr.load (safetensors, atomic, verified) and training checkpoints."""

import json
import os
import pickle
import re
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
from safetensors.numpy import save_file

import chainrule as cr
from chainrule import io, optim
from chainrule.data import DataLoader, TensorDataset, load_digits
from chainrule.io import CheckpointError
from file_edits import rewrite_header


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


# ----------------------------------------------------------------------------------------------
# Signatures: the metadata is covered too
# ----------------------------------------------------------------------------------------------
def unsign(path):
    rewrite_header(path, lambda h: h["__metadata__"].pop("chainrule.signature"))


def test_editing_the_metadata_breaks_the_signature(tmp_path):
    path = tmp_path / "m.safetensors"
    cr.save({"w": np.ones((2, 3), np.float32)}, path, metadata={"note": "hello"})
    assert io.load_header(path).signed
    rewrite_header(path, lambda h: h["__metadata__"].update(note="edited"))
    for read in (cr.load, io.load_metadata, io.load_header):
        with pytest.raises(CheckpointError, match=r"m.safetensors: the header .* does not match "
                                                  r"the signature"):
            read(path)


def test_the_signature_covers_tensor_shapes_and_a_removed_tensor_hash(tmp_path):
    path = tmp_path / "m.safetensors"
    cr.save({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, path)
    rewrite_header(path, lambda h: h["w"].update(shape=[3, 2]))  # same bytes, other shape
    with pytest.raises(CheckpointError, match="does not match the signature"):
        io.load_header(path)
    cr.save({"w": np.ones(3, np.float32)}, path)
    rewrite_header(path, lambda h: h["__metadata__"].pop("chainrule.sha256"))
    with pytest.raises(CheckpointError, match="chainrule.sha256 is missing"):
        cr.load(path)


def test_load_header_gives_shapes_without_reading_the_tensors(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    cr.save({"w": np.ones((4, 5), np.float32), "n": np.arange(3)}, path, metadata={"a": "b"})
    monkeypatch.setattr(io, "_read", None)  # the tensors are not read
    header = io.load_header(path)
    assert header.tensors == {"w": ("F32", (4, 5)), "n": ("I64", (3,))}
    assert header.metadata["a"] == "b" and header.signed
    assert io.dtype_of("F32") == np.float32


def test_a_header_whose_shapes_do_not_fit_the_bytes_is_refused(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": np.ones(4, np.float32)}, str(path))
    rewrite_header(path, lambda h: h["w"].update(shape=[200000, 200000]))
    with pytest.raises(CheckpointError, match=r"m.safetensors: .*shape \[200000, 200000\].* "
                                              r"does not fit its 16 bytes"):
        io.load_header(path)


def _legacy_file(path, metadata):
    """A file as chainrule 0.1 wrote it: the SHA-256 of the tensors only."""
    arrays = {"w": np.arange(4, dtype=np.float32)}
    save_file(arrays, str(path), metadata={**metadata, "chainrule.sha256": io._digest(arrays)})


def test_files_of_chainrule_0_1_load_and_reading_their_metadata_warns(tmp_path):
    path = tmp_path / "old.safetensors"
    _legacy_file(path, {"note": "old"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(cr.load(path)["w"].data, [0, 1, 2, 3])  # no warning
    with pytest.warns(io.UnsignedFileWarning, match="old.safetensors is not signed"):
        assert io.load_metadata(path)["note"] == "old"
    raw = path.read_bytes()
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))  # its tensors are still checked
    with pytest.raises(CheckpointError, match="SHA-256"):
        cr.load(path)


def test_a_signing_key_adds_an_hmac_that_every_load_then_requires(tmp_path, monkeypatch):
    keyed, plain = tmp_path / "keyed.safetensors", tmp_path / "plain.safetensors"
    cr.save({"w": np.ones(3)}, plain, metadata={"a": "1"})
    monkeypatch.setenv("CHAINRULE_SIGNING_KEY", "secret")
    cr.save({"w": np.ones(3)}, keyed, metadata={"a": "1"})
    assert io.load_header(keyed).metadata["chainrule.hmac"].startswith("hmac-sha256:")
    assert io.load_metadata(keyed)["a"] == "1"
    with pytest.raises(CheckpointError, match="saved without a signing key"):
        cr.load(plain)
    legacy = tmp_path / "legacy.safetensors"
    _legacy_file(legacy, {})
    with pytest.raises(CheckpointError, match="is not signed"):
        cr.load(legacy)
    # an attacker who edits the metadata and recomputes the plain checksum is caught
    raw_meta = io.load_header(keyed).metadata
    forged = dict(raw_meta, a="2")
    tensors = io.load_header(keyed).tensors
    forged["chainrule.signature"] = "sha256:" + __import__("hashlib").sha256(
        io._canonical(forged, tensors)).hexdigest()
    rewrite_header(keyed, lambda h: h.update(__metadata__=forged))
    with pytest.raises(CheckpointError, match="HMAC does not match"):
        cr.load(keyed)
    monkeypatch.setenv("CHAINRULE_SIGNING_KEY", "another")
    cr.save({"w": np.ones(3)}, keyed)
    monkeypatch.setenv("CHAINRULE_SIGNING_KEY", "secret")
    with pytest.raises(CheckpointError, match="signed with another key"):
        cr.load(keyed)
    monkeypatch.delenv("CHAINRULE_SIGNING_KEY")
    np.testing.assert_array_equal(cr.load(keyed)["w"].data, np.ones(3))  # keyless: checksum


def test_a_temporary_file_left_by_a_killed_save_is_removed_by_the_next(tmp_path):
    path = tmp_path / "a.safetensors"
    cr.save({"w": np.zeros(10)}, path)
    code = textwrap.dedent(f"""
        import os, numpy as np, chainrule as cr
        from chainrule import io
        def killed(f, data):
            f.write(data[:100])
            f.flush()
            os.kill(os.getpid(), 9)
        io._write_all = killed
        cr.save({{"w": np.ones(10)}}, {str(path)!r})
    """)
    result = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert result.returncode == -9
    left = [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    assert len(left) == 1 and left[0].startswith(".a.safetensors.")
    np.testing.assert_array_equal(cr.load(path)["w"].data, np.zeros(10))  # intact, and ...
    assert os.listdir(tmp_path) == ["a.safetensors"]  # ... the load cleaned up
    # chainrule 0.1's temporaries (no process id) go once they are ten minutes old
    old, fresh = tmp_path / ".a.safetensors.abcd1234.tmp", tmp_path / ".a.safetensors.zz_99xyz.tmp"
    for p in (old, fresh):
        p.write_bytes(b"partial")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    mine = tmp_path / f".a.safetensors.{os.getpid()}-abcdefgh.tmp"  # a live writer's
    mine.write_bytes(b"partial")
    other = tmp_path / ".b.safetensors.1-abcdefgh.tmp"  # another file's: not ours to touch
    other.write_bytes(b"x")
    cr.save({"w": np.ones(10)}, path)
    assert sorted(os.listdir(tmp_path)) == sorted(["a.safetensors", fresh.name, mine.name,
                                                   other.name])


# ----------------------------------------------------------------------------------------------
# The checkpoint schema: every field checked before use
# ----------------------------------------------------------------------------------------------
def _edit_checkpoint(path, change, keep_signature=False):
    def edit(header):
        meta = header["__metadata__"]
        info = json.loads(meta["chainrule.checkpoint"])
        change(info)
        meta["chainrule.checkpoint"] = json.dumps(info)
        if not keep_signature:
            meta.pop("chainrule.signature")
    rewrite_header(path, edit)


def _group(info):
    return info["optimizer"]["param_groups"][0]


BAD_CHECKPOINTS = [
    (lambda i: i.update(epoch=-5), "'epoch' must be a non-negative integer or null, got -5"),
    (lambda i: i.update(epoch="two"), "'epoch' must be a non-negative integer or null, got 'two'"),
    (lambda i: i.update(epoch=1e9), "'epoch' must be a non-negative integer or null, got "
                                    "1000000000.0"),
    (lambda i: i.update(extra=5), "'extra' must be a JSON object or null, got 5"),
    (lambda i: i.update(format=2), "'format' must be 1"),
    (lambda i: i.update(evil=1), "'evil' is not a checkpoint field"),
    (lambda i: i.update(model="yes"), "'model' must be true"),
    (lambda i: _group(i).update(lr="fast"), r"'optimizer.param_groups\[0\].lr' is 'fast'; Adam "
                                            r"takes a value like 0.01"),
    (lambda i: _group(i).update(lr=-1.0), r"param_groups\[0\]': Adam: invalid lr -1.0"),
    (lambda i: _group(i).update(betas=[0.9]), r"betas' is \[0.9\]"),
    (lambda i: _group(i).update(betas=[0.9, 2.0]), "beta2"),
    (lambda i: _group(i).pop("eps"), r"Adam options missing \['eps'\]"),
    (lambda i: _group(i).update(params=[0, 0, 1, 2]), "distinct parameter indices"),
    (lambda i: i["optimizer"]["scalars"]["0"].update(step="x"), "step' must be a finite number"),
    (lambda i: i["optimizer"]["scalars"]["0"].update(step=-3), "step' must be a non-negative"),
    (lambda i: i["optimizer"]["scalars"]["0"].update(step=2.5), "step' must be a non-negative"),
    (lambda i: i["optimizer"]["scalars"].update({"99": {"step": 1}}), "'optimizer.scalars.99' is "
                                                                     "not the index"),
    (lambda i: i["optimizer"]["scalars"]["0"].pop("step"), r"parameter 0 lacks \['step'\]"),
    (lambda i: i["optimizer"].update(type="SGD"), "holds SGD state"),
    (lambda i: i["scheduler"]["state"].update(step_size="x"), "'scheduler.state.step_size' is "
                                                              "'x'; StepLR takes a value like 2"),
    (lambda i: i["scheduler"]["state"].update(step_size=0), "step_size' is 0"),
    (lambda i: i["scheduler"]["state"].update(base_lrs=[-1.0]), "base_lrs' is"),
    (lambda i: i["scheduler"]["state"].update(evil=1), r"StepLR fields missing \[\], unknown "
                                                       r"\['evil'\]"),
    (lambda i: i["scheduler"].update(state=[]), "'scheduler.state' must be an object"),
    (lambda i: i.update(rng_state={"bit_generator": "MT19937"}), "'rng_state' is not a state of "
                                                                 "chainrule's random generator"),
    (lambda i: i["rng_state"]["state"].update(state=-1), "'rng_state' is not a state"),
]


@pytest.mark.parametrize("change,message", BAD_CHECKPOINTS)
def test_a_checkpoint_field_of_the_wrong_type_or_range_is_named_before_anything_changes(
        tmp_path, change, message):
    cr.manual_seed(0)
    params, opt, sched, loader = _setup()
    _train_epoch(params, opt, sched, loader)
    path = tmp_path / "ckpt.safetensors"
    cr.save_checkpoint(path, model=params, optimizer=opt, scheduler=sched, epoch=1,
                       extra={"note": "x"})
    signed = tmp_path / "signed.safetensors"
    signed.write_bytes(path.read_bytes())
    _edit_checkpoint(signed, change, keep_signature=True)
    with pytest.raises(CheckpointError, match="does not match the signature"):
        cr.load_checkpoint(signed)
    _edit_checkpoint(path, change)
    cr.manual_seed(5)
    params, opt, sched, _ = _setup()
    before = {k: v.data.copy() for k, v in params.items()}
    state_before, rng_before = sched.state_dict(), cr.random.get_rng_state()
    with pytest.warns(io.UnsignedFileWarning):
        with pytest.raises(CheckpointError, match="ckpt.safetensors: ") as info:
            cr.load_checkpoint(path, model=params, optimizer=opt, scheduler=sched)
    assert re.search(message, str(info.value)), str(info.value)
    assert all(np.array_equal(before[k], params[k].data) for k in params)
    assert sched.state_dict() == state_before and cr.random.get_rng_state() == rng_before
    assert opt.state == {}


def test_a_tensor_name_outside_the_schema_is_refused(tmp_path):
    path = tmp_path / "c.safetensors"
    w = cr.randn(3, requires_grad=True)
    opt = optim.Adam([w])
    (w * w).sum().backward()
    opt.step()
    cr.save_checkpoint(path, model={"w": w}, optimizer=opt)
    rewrite_header(path, lambda h: (
        h.update({"optimizer/x/exp_avg": h.pop("optimizer/0/exp_avg")}),
        h["__metadata__"].pop("chainrule.signature")))
    with pytest.warns(io.UnsignedFileWarning), pytest.raises(
            CheckpointError, match="'optimizer/x/exp_avg' is neither model/NAME nor optimizer"):
        cr.load_checkpoint(path)


def test_save_checkpoint_refuses_what_the_schema_would_refuse(tmp_path):
    with pytest.raises(TypeError, match="epoch must be a non-negative integer"):
        cr.save_checkpoint(tmp_path / "c.safetensors", epoch="two")
    with pytest.raises(TypeError, match="extra must be a dict"):
        cr.save_checkpoint(tmp_path / "c.safetensors", extra=[1, 2])
    with pytest.raises(TypeError, match="finite"):
        cr.save_checkpoint(tmp_path / "c.safetensors", extra={"loss": float("nan")})


def test_the_same_state_saves_to_the_same_bytes(tmp_path):
    """safetensors writes header metadata in hash order; chainrule sorts it, so a file's bytes
    (and any checksum of it) depend only on what was saved."""
    from safetensors.numpy import load_file

    state = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3)}
    meta = {f"key{i}": str(i) for i in range(20)}
    files = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for f in files:
        cr.save(state, f, metadata=dict(reversed(list(meta.items()))) if f.stem == "b" else meta)
    assert files[0].read_bytes() == files[1].read_bytes()
    data = files[0].read_bytes()
    assert (8 + int.from_bytes(data[:8], "little")) % 8 == 0  # the tensor data stays aligned
    loaded = load_file(files[0])  # safetensors itself reads it
    np.testing.assert_array_equal(loaded["w"], state["w"])
    assert cr.io.load_metadata(files[0])["key7"] == "7"
