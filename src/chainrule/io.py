"""Saving and loading tensors and training checkpoints, in the safetensors format.

Files hold raw arrays and a JSON header: nothing is unpickled, so loading a file cannot run
code. Every write goes to a temporary file in the same directory, is flushed to disk, and then
atomically replaces the target, so a crash mid-save leaves the previous file intact. A SHA-256
of the tensors is stored in the header and checked on load, so a truncated, corrupted or
tampered file is reported as a `CheckpointError` naming the file (files written by other
tools, without the hash, still load).

``cr.save(model.state_dict(), "weights.safetensors")``; ``cr.load(path)`` -> dict of Tensors.
``cr.save_checkpoint(path, model=m, optimizer=opt, scheduler=s, epoch=e)`` and
``cr.load_checkpoint(path, model=m, optimizer=opt, scheduler=s)`` save and restore everything
needed to resume training exactly, random state included.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from chainrule.autograd import no_grad
from chainrule.random import get_rng_state, set_rng_state
from chainrule.tensor import Tensor

_HASH_KEY = "chainrule.sha256"
_CHECKPOINT_KEY = "chainrule.checkpoint"
_FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that cannot be loaded (truncated, foreign, corrupted or tampered with), or a
    checkpoint that does not fit the objects it is loaded into; the message names the file."""


# ----------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------
def save(state_dict: Mapping, path, metadata: dict | None = None) -> None:
    """Write ``state_dict`` (names -> Tensors or arrays) to ``path`` as safetensors, atomically.

    ``metadata`` is an optional dict of strings stored in the header (read it back with
    `load_metadata`); keys starting with ``chainrule.`` are reserved.
    """
    arrays = _arrays_for_saving(state_dict, "save")
    meta = _check_metadata(metadata)
    meta[_HASH_KEY] = _digest(arrays)
    _atomic_write(Path(path), _serialize(arrays, meta, path))


def load(path) -> dict[str, Tensor]:
    """The tensors in the safetensors file at ``path``, by name (verified against the stored
    SHA-256 when the file has one)."""
    arrays, _ = _read(Path(path))
    return {name: Tensor._wrap(array) for name, array in arrays.items()}


def load_metadata(path) -> dict[str, str]:
    """The string metadata stored in the header of the safetensors file at ``path``."""
    return dict(_read(Path(path))[1])


def _arrays_for_saving(state_dict, where) -> dict[str, np.ndarray]:
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{where}: expected a dict of name -> Tensor, got "
                        f"{type(state_dict).__name__}")
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"{where}: tensor names must be strings, got {name!r}")
        array = value.data if isinstance(value, Tensor) else value
        if isinstance(array, np.generic):  # a NumPy scalar is stored as a 0-d array
            array = np.asarray(array)
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{where}: {name!r} is a {type(value).__name__}, not a Tensor or "
                            f"ndarray")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{where}: {name!r} has dtype {array.dtype}, which safetensors "
                            f"cannot store")
        # (not np.ascontiguousarray: it turns a 0-d array into shape (1,))
        arrays[name] = array if array.flags.c_contiguous else array.copy(order="C")
    return arrays


def _check_metadata(metadata) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"save: metadata must be a dict of strings, got "
                        f"{type(metadata).__name__}")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"save: metadata must map strings to strings; {key!r}: "
                            f"{type(value).__name__} (json.dumps other values first)")
        if key.startswith("chainrule."):
            raise ValueError(f"save: metadata key {key!r} is reserved for chainrule")
    return dict(metadata)


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order (independent of layout)."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        array = arrays[name]
        little = array.astype(array.dtype.newbyteorder("<"), copy=False)
        h.update(f"{name}\0{little.dtype.str}\0{array.shape}\0".encode())
        h.update(little.data if little.flags.c_contiguous else little.tobytes())
    return h.hexdigest()


def _serialize(arrays, metadata, path) -> bytes:
    from safetensors.numpy import save as st_save

    try:
        return st_save(arrays, metadata=metadata)
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"save: cannot write {path} as safetensors: {exc}") from exc


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"save: the directory {directory} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)  # make the rename itself durable


def _write_all(f, data: bytes) -> None:
    f.write(data)


def _file_mode(path: Path) -> int:
    if path.exists():
        return path.stat().st_mode & 0o777
    return 0o644  # mkstemp creates 0o600; a saved model is usually shared like any file


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not possible on every platform: the data itself is already on disk
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"load: no such file: {path}")
    raw = path.read_bytes()
    header = _parse_header(raw, path)
    from safetensors.numpy import load as st_load

    try:
        arrays = st_load(raw)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None
    metadata = header.get("__metadata__") or {}
    expected = metadata.get(_HASH_KEY)
    if expected is not None and _digest(arrays) != expected:
        raise CheckpointError(f"{path}: the tensors do not match the SHA-256 stored when the "
                              f"file was saved; the file is corrupted or was modified")
    arrays = {k: v if v.flags.writeable else v.copy() for k, v in arrays.items()}
    return arrays, metadata


def _parse_header(raw: bytes, path: Path) -> dict:
    """Check the header and that the data section is exactly as long as the header says."""
    if len(raw) < 8:
        raise CheckpointError(f"{path}: only {len(raw)} bytes; not a safetensors file (or "
                              f"truncated)")
    size = int.from_bytes(raw[:8], "little")
    if size > len(raw) - 8:
        raise CheckpointError(f"{path}: not a safetensors file, or truncated: the header "
                              f"length field says {size} bytes but the file has {len(raw)}")
    try:
        header = json.loads(raw[8:8 + size])
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        ends = [int(entry["data_offsets"][1]) for name, entry in header.items()
                if name != "__metadata__"]
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file (bad header: {exc})") from None
    data_size = len(raw) - 8 - size
    if max(ends, default=0) != data_size:
        raise CheckpointError(f"{path}: the header describes {max(ends, default=0)} bytes of "
                              f"tensor data but the file holds {data_size}; it is truncated or "
                              f"corrupted")
    return header


# ----------------------------------------------------------------------------------------------
# Training checkpoints
# ----------------------------------------------------------------------------------------------
def save_checkpoint(path, *, model=None, optimizer=None, scheduler=None, epoch=None, rng=True,
                    extra=None) -> None:
    """Save everything needed to resume training into one safetensors file, atomically.

    Tensors: the model's ``state_dict()`` (or a dict of tensors) under ``model/<name>`` and the
    optimizer's per-parameter state arrays under ``optimizer/<index>/<name>``. Header metadata
    (JSON): the optimizer's hyper-parameters and step counts, the scheduler's state, ``epoch``,
    the library random state (``rng=True``) and ``extra``, any JSON-able dict.
    """
    arrays = {}
    info = {"format": _FORMAT_VERSION, "epoch": epoch, "extra": extra}
    if model is not None:
        for name, value in _model_state(model).items():
            arrays[f"model/{name}"] = value
        info["model"] = True
    if optimizer is not None:
        info["optimizer"] = _optimizer_info(optimizer, arrays)
    if scheduler is not None:
        info["scheduler"] = {"type": type(scheduler).__name__, "state": scheduler.state_dict()}
    if rng:
        info["rng_state"] = get_rng_state()
    try:
        text = json.dumps(info)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"save_checkpoint: epoch, extra and the scheduler state must be "
                        f"JSON-serializable: {exc}") from None
    arrays = _arrays_for_saving(arrays, "save_checkpoint")
    metadata = {_CHECKPOINT_KEY: text, _HASH_KEY: _digest(arrays)}
    _atomic_write(Path(path), _serialize(arrays, metadata, path))


def load_checkpoint(path, *, model=None, optimizer=None, scheduler=None,
                    restore_rng=True) -> dict:
    """Restore what `save_checkpoint` wrote into the given objects (in place).

    Returns ``{"epoch": ..., "extra": ...}``. Raises `CheckpointError` when the file is damaged
    or lacks a part that was asked for, or when shapes or types do not fit.
    """
    path = Path(path)
    arrays, metadata = _read(path)
    if _CHECKPOINT_KEY not in metadata:
        raise CheckpointError(f"{path}: not a chainrule training checkpoint (no "
                              f"{_CHECKPOINT_KEY!r} metadata); use cr.load for plain tensors")
    try:
        info = json.loads(metadata[_CHECKPOINT_KEY])
    except ValueError as exc:
        raise CheckpointError(f"{path}: the checkpoint metadata is not valid JSON: {exc}") from None
    if model is not None:
        _restore_model(path, model, _with_prefix(arrays, "model/"), info)
    if optimizer is not None:
        _restore_optimizer(path, optimizer, arrays, info)
    if scheduler is not None:
        _restore_scheduler(path, scheduler, info)
    if restore_rng and info.get("rng_state") is not None:
        set_rng_state(info["rng_state"])
    return {"epoch": info.get("epoch"), "extra": info.get("extra")}


def _model_state(model) -> Mapping:
    if hasattr(model, "state_dict"):
        return model.state_dict()
    if isinstance(model, Mapping):
        return model
    raise TypeError(f"save_checkpoint: model must have state_dict() or be a dict of tensors, "
                    f"got {type(model).__name__}")


def _optimizer_info(optimizer, arrays) -> dict:
    state = optimizer.state_dict()
    scalars = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, np.ndarray) and value.ndim > 0:
                arrays[f"optimizer/{index}/{key}"] = value
            else:
                value = value.item() if isinstance(value, np.generic | np.ndarray) else value
                scalars.setdefault(str(index), {})[key] = value
    return {"type": type(optimizer).__name__, "param_groups": state["param_groups"],
            "scalars": scalars}


def _with_prefix(arrays, prefix) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def _restore_model(path, model, saved, info):
    if not info.get("model"):
        raise CheckpointError(f"{path}: the checkpoint holds no model state")
    if hasattr(model, "load_state_dict"):
        try:
            model.load_state_dict({k: Tensor._wrap(v) for k, v in saved.items()})
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise CheckpointError(f"{path}: the model state does not fit the model: "
                                  f"{exc}") from exc
        return
    if not isinstance(model, Mapping):
        raise TypeError(f"load_checkpoint: model must have load_state_dict() or be a dict of "
                        f"tensors, got {type(model).__name__}")
    missing, unexpected = sorted(set(model) - set(saved)), sorted(set(saved) - set(model))
    if missing or unexpected:
        raise CheckpointError(f"{path}: model tensors missing from the checkpoint: {missing}; "
                              f"in the checkpoint but not the model: {unexpected}")
    for name, target in model.items():  # check everything before changing anything
        value = saved[name]
        if value.shape != target.shape or value.dtype != target.dtype:
            raise CheckpointError(f"{path}: model tensor {name!r} has shape {value.shape} "
                                  f"({value.dtype}) in the checkpoint but {target.shape} "
                                  f"({target.dtype}) in the model")
    for name, target in model.items():
        value = saved[name]
        with no_grad():
            np.copyto(target.data, value)
            target._version[0] += 1  # graphs recorded before the load are now stale


def _restore_optimizer(path, optimizer, arrays, info):
    saved = info.get("optimizer")
    if saved is None:
        raise CheckpointError(f"{path}: the checkpoint holds no optimizer state")
    if saved["type"] != type(optimizer).__name__:
        raise CheckpointError(f"{path}: the checkpoint holds {saved['type']} state, but the "
                              f"optimizer is a {type(optimizer).__name__}")
    state = {}
    for index, entries in saved["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    for name, value in _with_prefix(arrays, "optimizer/").items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: the optimizer state does not fit the optimizer: "
                              f"{exc}") from exc


def _restore_scheduler(path, scheduler, info):
    saved = info.get("scheduler")
    if saved is None:
        raise CheckpointError(f"{path}: the checkpoint holds no scheduler state")
    if saved["type"] != type(scheduler).__name__:
        raise CheckpointError(f"{path}: the checkpoint holds {saved['type']} state, but the "
                              f"scheduler is a {type(scheduler).__name__}")
    scheduler.load_state_dict(saved["state"])
