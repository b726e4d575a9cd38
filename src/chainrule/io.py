"""Saving and loading tensors and training checkpoints, in the safetensors format.

Files hold raw arrays and a JSON header: nothing is unpickled, so loading a file cannot run
code. Every write goes to a temporary file in the same directory, is flushed to disk, and then
atomically replaces the target, so a crash mid-save leaves the previous file intact (a temporary
file left by a killed process is removed by the next save or load of the same file).

What a file's signature covers, and what it is worth
----------------------------------------------------
Every file chainrule writes carries ``chainrule.signature``: a SHA-256 over one canonical
serialisation (sorted keys, fixed separators) of every header metadata field (the model
architecture, the checkpoint's epoch, optimizer and scheduler settings, history, random state,
and the user's own metadata) together with each tensor's name, dtype and shape and the SHA-256 of
the tensor bytes (``chainrule.sha256``). Loading checks the metadata part before anything is
read from it and the tensor bytes before they are returned, so a truncated, corrupted or edited
file is a `CheckpointError` naming the file.

This is a checksum: it catches accidents and naive edits, not an attacker, who can recompute
it. For that, set ``CHAINRULE_SIGNING_KEY`` to a secret: files are then also signed with an
HMAC-SHA256 under that key (``chainrule.hmac``), and while the variable is set every load
requires a valid HMAC, refusing files signed without the key, with another key, or not at all.
Without the variable nothing changes, and keyed files still load (their checksum is checked).

Files without a signature (written by chainrule 0.1, whose checksum covered the tensors only, or
by other tools) still load: their tensors are checked against the 0.1 checksum when there is one,
and reading their metadata (`load_metadata`, `load_checkpoint`, `chainrule evaluate`) warns with
`UnsignedFileWarning`, because an edit to it cannot be detected; save the file again to sign it.
The metadata of every file kind is also checked against a schema (types and ranges) before use.

``cr.save(model.state_dict(), "weights.safetensors")``; ``cr.load(path)`` -> dict of Tensors.
``cr.save_checkpoint(path, model=m, optimizer=opt, scheduler=s, epoch=e)`` and
``cr.load_checkpoint(path, model=m, optimizer=opt, scheduler=s)`` save and restore everything
needed to resume training exactly, random state included. `load_header` reads the metadata and
the tensors' dtypes and shapes without reading (or allocating) the tensors.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np

from chainrule.autograd import no_grad
from chainrule.random import get_rng_state, set_rng_state
from chainrule.tensor import Tensor

_HASH_KEY = "chainrule.sha256"  # the tensor bytes (all chainrule 0.1 wrote)
_SIGNATURE_KEY = "chainrule.signature"  # metadata + tensor table + tensor hash
_HMAC_KEY = "chainrule.hmac"  # the same, keyed with CHAINRULE_SIGNING_KEY
_SIGNING_KEY_ENV = "CHAINRULE_SIGNING_KEY"
_SIGNATURE_TAG = b"chainrule signature 1\n"
_CHECKPOINT_KEY = "chainrule.checkpoint"
_FORMAT_VERSION = 1
_MAX_HEADER = 100_000_000  # as safetensors itself

# safetensors' dtype codes for the NumPy dtypes chainrule stores
_DTYPES = {"BOOL": np.dtype(bool), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
           "U16": np.dtype(np.uint16), "I16": np.dtype(np.int16), "U32": np.dtype(np.uint32),
           "I32": np.dtype(np.int32), "U64": np.dtype(np.uint64), "I64": np.dtype(np.int64),
           "F16": np.dtype(np.float16), "F32": np.dtype(np.float32),
           "F64": np.dtype(np.float64)}
_CODES = {dtype: code for code, dtype in _DTYPES.items()}


class CheckpointError(ValueError):
    """A file that cannot be loaded (truncated, foreign, corrupted or tampered with, or with
    metadata that breaks its schema), or a checkpoint that does not fit the objects it is loaded
    into; the message names the file (and the field)."""


class UnsignedFileWarning(UserWarning):
    """The metadata of a file without a chainrule signature was read: an edit to it cannot be
    detected (files from chainrule 0.1 or other tools). Save the file again to sign it."""


class Header(NamedTuple):
    """A safetensors file's header: ``metadata`` (str -> str), ``tensors`` (name -> (dtype
    code such as "F32", shape tuple)) and ``signed`` (True when a signature was verified)."""

    metadata: dict
    tensors: dict
    signed: bool


# ----------------------------------------------------------------------------------------------
# Tensors
# ----------------------------------------------------------------------------------------------
def save(state_dict: Mapping, path, metadata: dict | None = None) -> None:
    """Write ``state_dict`` (names -> Tensors or arrays) to ``path`` as safetensors, atomically.

    ``metadata`` is an optional dict of strings stored in the header (read it back with
    `load_metadata`); keys starting with ``chainrule.`` are reserved. The metadata is signed
    together with the tensors (see the module's docstring for what that protects against).
    """
    arrays = _arrays_for_saving(state_dict, "save")
    meta = _check_metadata(metadata)
    _sign(arrays, meta)
    _atomic_write(Path(path), _serialize(arrays, meta, path))


def load(path) -> dict[str, Tensor]:
    """The tensors in the safetensors file at ``path``, by name (verified against the stored
    signature and SHA-256 when the file has them)."""
    arrays, _ = _read(Path(path))
    return {name: Tensor._wrap(array) for name, array in arrays.items()}


def load_metadata(path) -> dict[str, str]:
    """The string metadata stored in the header of the safetensors file at ``path`` (verified
    against its signature; an unsigned file's metadata comes with an `UnsignedFileWarning`)."""
    return dict(load_header(path).metadata)


def load_header(path, *, warn_unsigned: bool = True) -> Header:
    """The metadata and the tensors' dtypes and shapes, read without the tensor data.

    The metadata is checked against the file's signature (a `CheckpointError` when it does not
    match); a file without one gives an `UnsignedFileWarning` when it holds metadata.
    """
    path = Path(path)
    _remove_stale_temporaries(path)
    if not path.is_file():
        raise FileNotFoundError(f"load: no such file: {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else 0
        if len(head) == 8 and 0 < length <= min(size - 8, _MAX_HEADER):
            head += f.read(length)
    header = _parse_header(head, size, path)
    if warn_unsigned:
        _warn_if_unsigned(path, header)
    return header


def dtype_of(code: str) -> np.dtype:
    """The NumPy dtype of a safetensors dtype code ("F32" -> float32), as in `Header`."""
    return _DTYPES[code]


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
        if array.dtype.kind not in "biuf" or array.dtype.newbyteorder("=") not in _CODES:
            raise TypeError(f"{where}: {name!r} has dtype {array.dtype}, which safetensors "
                            f"cannot store")
        if array.dtype.byteorder == ">":  # safetensors stores little-endian bytes
            array = array.astype(array.dtype.newbyteorder("<"))
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


def _canonical(metadata: Mapping[str, str], tensors: Mapping[str, tuple]) -> bytes:
    """The bytes a signature covers: every metadata field but the signatures themselves, and
    every tensor's name, dtype and shape, as JSON with sorted keys and fixed separators."""
    body = {"metadata": {k: v for k, v in metadata.items()
                         if k not in (_SIGNATURE_KEY, _HMAC_KEY)},
            "tensors": {name: [code, list(shape)] for name, (code, shape) in tensors.items()}}
    text = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return _SIGNATURE_TAG + text.encode("ascii")


def _signing_key() -> bytes | None:
    key = os.environ.get(_SIGNING_KEY_ENV, "")
    return key.encode() if key else None


def _sign(arrays: Mapping[str, np.ndarray], meta: dict) -> None:
    """Add the tensor hash, the signature and (with a signing key) the HMAC to ``meta``."""
    meta[_HASH_KEY] = _digest(arrays)
    table = {name: (_CODES[a.dtype.newbyteorder("=")], a.shape) for name, a in arrays.items()}
    canonical = _canonical(meta, table)
    meta[_SIGNATURE_KEY] = "sha256:" + hashlib.sha256(canonical).hexdigest()
    key = _signing_key()
    if key is not None:
        meta[_HMAC_KEY] = "hmac-sha256:" + hmac.new(key, canonical, "sha256").hexdigest()


def _verify_signature(path: Path, metadata: dict, tensors: dict) -> bool:
    """Check the signature (and the HMAC when a key is set); True when the file is signed."""
    key = _signing_key()
    signature = metadata.get(_SIGNATURE_KEY)
    if signature is None:
        if _HMAC_KEY in metadata:
            raise CheckpointError(f"{path}: the file has an HMAC but no {_SIGNATURE_KEY}; it "
                                  f"was modified")
        if key is not None:
            raise CheckpointError(f"{path}: {_SIGNING_KEY_ENV} is set, but the file is not "
                                  f"signed (written by chainrule 0.1 or another tool, or its "
                                  f"signature was removed): anyone could have written it. "
                                  f"Unset the variable to load it unverified")
        return False
    if _HASH_KEY not in metadata:
        raise CheckpointError(f"{path}: the file is signed but its {_HASH_KEY} is missing; it "
                              f"was modified")
    canonical = _canonical(metadata, tensors)
    expected = "sha256:" + hashlib.sha256(canonical).hexdigest()
    if not hmac.compare_digest(signature, expected):
        raise CheckpointError(f"{path}: the header (metadata, tensor names or shapes) does not "
                              f"match the signature stored when the file was saved; the file is "
                              f"corrupted or was modified")
    if key is not None:
        stored = metadata.get(_HMAC_KEY)
        if stored is None:
            raise CheckpointError(f"{path}: {_SIGNING_KEY_ENV} is set, but the file was saved "
                                  f"without a signing key, so anyone could have written it; "
                                  f"unset the variable to load it")
        mac = "hmac-sha256:" + hmac.new(key, canonical, "sha256").hexdigest()
        if not hmac.compare_digest(stored, mac):
            raise CheckpointError(f"{path}: the HMAC does not match {_SIGNING_KEY_ENV}: the "
                                  f"file was modified, or signed with another key")
    return True


def _warn_if_unsigned(path: Path, header: Header) -> None:
    if header.signed or not set(header.metadata) - {_HASH_KEY}:
        return
    origin = "chainrule 0.1" if _HASH_KEY in header.metadata else "another tool"
    warnings.warn(f"{path} is not signed (written by {origin}?): its metadata is not covered "
                  f"by a checksum, so an edit to it cannot be detected; save it again to sign "
                  f"it", UnsignedFileWarning, stacklevel=3)


def _serialize(arrays, metadata, path) -> bytes:
    from safetensors.numpy import save as st_save

    try:
        return _sorted_header(st_save(arrays, metadata=metadata))
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"save: cannot write {path} as safetensors: {exc}") from exc


def _sorted_header(data: bytes) -> bytes:
    """The same file with its JSON header written with sorted keys: safetensors writes the
    metadata in hash order, so two saves of the same state would differ byte for byte."""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])  # sort_keys below sorts __metadata__'s keys too
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the tensor data stays 8-byte aligned, as safetensors pads
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over.

    The temporary file is ``.NAME.PID-RANDOM.tmp``; stale ones (their process is gone) are
    removed first."""
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"save: the directory {directory} does not exist")
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp",
                               dir=directory)
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


_LEGACY_TEMPORARY = re.compile(r"[a-z0-9_]{8}")  # chainrule 0.1: mkstemp's random part only
_LEGACY_AGE = 600  # seconds: a 0.1 temporary file this old is not being written any more


def _remove_stale_temporaries(path: Path) -> None:
    """Remove ``.NAME.PID-RANDOM.tmp`` files beside ``path`` whose process no longer runs (a
    save killed mid-write), and chainrule 0.1's ``.NAME.RANDOM.tmp`` older than ten minutes."""
    directory = path.parent if str(path.parent) else Path(".")
    prefix = f".{path.name}."
    try:
        entries = [e for e in os.listdir(directory) if e.startswith(prefix) and
                   e.endswith(".tmp")]
    except OSError:
        return
    for entry in entries:
        middle = entry[len(prefix):-len(".tmp")]
        pid, dash, rest = middle.partition("-")
        candidate = directory / entry
        try:
            if dash and pid.isdigit() and _LEGACY_TEMPORARY.fullmatch(rest):
                if _process_alive(int(pid)):
                    continue
            elif not (_LEGACY_TEMPORARY.fullmatch(middle) and
                      time.time() - candidate.stat().st_mtime > _LEGACY_AGE):
                continue
            candidate.unlink()
        except OSError:
            pass  # gone already, or not ours to remove


def _process_alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # ours (another thread), or no cheap test
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


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


def _read(path: Path) -> tuple[dict[str, np.ndarray], Header]:
    _remove_stale_temporaries(path)
    if not path.is_file():
        raise FileNotFoundError(f"load: no such file: {path}")
    raw = path.read_bytes()
    header = _parse_header(raw, len(raw), path)
    from safetensors.numpy import load as st_load

    try:
        arrays = st_load(raw)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None
    expected = header.metadata.get(_HASH_KEY)
    if expected is not None and _digest(arrays) != expected:
        raise CheckpointError(f"{path}: the tensors do not match the SHA-256 stored when the "
                              f"file was saved; the file is corrupted or was modified")
    arrays = {k: v if v.flags.writeable else v.copy() for k, v in arrays.items()}
    return arrays, header


def _parse_header(raw: bytes, file_size: int, path: Path) -> Header:
    """Check the header (``raw`` holds at least its bytes), that every tensor's shape fits its
    byte range, and that the data section is exactly as long as the header says; then verify
    the signature of the metadata."""
    if file_size < 8:
        raise CheckpointError(f"{path}: only {file_size} bytes; not a safetensors file (or "
                              f"truncated)")
    size = int.from_bytes(raw[:8], "little")
    if size > file_size - 8 or size > _MAX_HEADER:
        raise CheckpointError(f"{path}: not a safetensors file, or truncated: the header "
                              f"length field says {size} bytes but the file has {file_size}")
    try:
        header = json.loads(raw[8:8 + size])
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        metadata = header.pop("__metadata__", None) or {}
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("__metadata__ is not a map of strings to strings")
        tensors, ends = {}, []
        for name, entry in header.items():
            tensors[name], end = _tensor_entry(name, entry)
            ends.append(end)
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file (bad header: {exc})") from None
    data_size = file_size - 8 - size
    if max(ends, default=0) != data_size:
        raise CheckpointError(f"{path}: the header describes {max(ends, default=0)} bytes of "
                              f"tensor data but the file holds {data_size}; it is truncated or "
                              f"corrupted")
    return Header(metadata, tensors, _verify_signature(path, metadata, tensors))


def _tensor_entry(name, entry) -> tuple[tuple[str, tuple], int]:
    """((dtype code, shape), end offset) of one tensor of the header, checked."""
    if not isinstance(entry, dict):
        raise ValueError(f"tensor {name!r} is described by a {type(entry).__name__}")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if code not in _DTYPES:
        raise ValueError(f"tensor {name!r} has dtype {code!r}, which chainrule does not read")
    if not isinstance(shape, list) or not all(_is_int(n) and n >= 0 for n in shape):
        raise ValueError(f"tensor {name!r} has shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_int(n) for n in offsets)
            and 0 <= offsets[0] <= offsets[1]):
        raise ValueError(f"tensor {name!r} has data_offsets {offsets!r}")
    if offsets[1] - offsets[0] != math.prod(shape) * _DTYPES[code].itemsize:
        raise ValueError(f"tensor {name!r} of shape {shape} ({code}) does not fit its "
                         f"{offsets[1] - offsets[0]} bytes")
    return (code, tuple(shape)), offsets[1]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# ----------------------------------------------------------------------------------------------
# Training checkpoints
# ----------------------------------------------------------------------------------------------
def save_checkpoint(path, *, model=None, optimizer=None, scheduler=None, epoch=None, rng=True,
                    extra=None) -> None:
    """Save everything needed to resume training into one safetensors file, atomically.

    Tensors: the model's ``state_dict()`` (or a dict of tensors) under ``model/<name>`` and the
    optimizer's per-parameter state arrays under ``optimizer/<index>/<name>``. Header metadata
    (JSON): the optimizer's hyper-parameters and step counts, the scheduler's state, ``epoch``
    (a non-negative integer or None), the library random state (``rng=True``) and ``extra``,
    None or any JSON-able dict. All of it is signed with the tensors.
    """
    if epoch is not None and (not _is_int(epoch) or epoch < 0):
        raise TypeError(f"save_checkpoint: epoch must be a non-negative integer or None, got "
                        f"{epoch!r}")
    if extra is not None and not isinstance(extra, Mapping):
        raise TypeError(f"save_checkpoint: extra must be a dict or None, got "
                        f"{type(extra).__name__}")
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
        text = json.dumps(info, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"save_checkpoint: epoch, extra and the scheduler state must be "
                        f"JSON-serializable (and finite): {exc}") from None
    arrays = _arrays_for_saving(arrays, "save_checkpoint")
    metadata = {_CHECKPOINT_KEY: text}
    _sign(arrays, metadata)
    _atomic_write(Path(path), _serialize(arrays, metadata, path))


def load_checkpoint(path, *, model=None, optimizer=None, scheduler=None,
                    restore_rng=True) -> dict:
    """Restore what `save_checkpoint` wrote into the given objects (in place).

    Returns ``{"epoch": ..., "extra": ...}``. Raises `CheckpointError`, naming the file and the
    field, when the file is damaged or its signature does not match, when its metadata breaks
    the checkpoint schema (`check_checkpoint_info`), when it lacks a part that was asked for, or
    when shapes, types or settings do not fit the objects. Everything is checked before the
    first object is changed, except the model's tensors, which its own ``load_state_dict``
    checks all together before writing any.
    """
    path = Path(path)
    if model is not None or optimizer is not None:  # one read: the header and tensors agree
        arrays, header = _read(path)
        _warn_if_unsigned(path, header)
    else:
        arrays, header = {}, load_header(path)
    if _CHECKPOINT_KEY not in header.metadata:
        raise CheckpointError(f"{path}: not a chainrule training checkpoint (no "
                              f"{_CHECKPOINT_KEY!r} metadata); use cr.load for plain tensors")
    try:
        info = json.loads(header.metadata[_CHECKPOINT_KEY])
    except ValueError as exc:
        raise CheckpointError(f"{path}: the checkpoint metadata is not valid JSON: {exc}") from None
    check_checkpoint_info(path, info, header.tensors)
    try:
        if optimizer is not None:
            optimizer_state = _optimizer_state(path, optimizer, header.tensors, info)
        if scheduler is not None:
            _check_scheduler(path, scheduler, info)
        if restore_rng and info.get("rng_state") is not None:
            _check_rng_state(path, info["rng_state"])
        if model is not None:
            _restore_model(path, model, _with_prefix(arrays, "model/"), info)
        if optimizer is not None:
            _restore_optimizer(path, optimizer, arrays, optimizer_state)
        if scheduler is not None:
            scheduler.load_state_dict(info["scheduler"]["state"])
        if restore_rng and info.get("rng_state") is not None:
            set_rng_state(info["rng_state"])
    except (TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        # the schema should have caught it: still say which file, never a bare traceback
        raise CheckpointError(f"{path}: the checkpoint does not fit ({type(exc).__name__}: "
                              f"{exc})") from exc
    return {"epoch": info.get("epoch"), "extra": info.get("extra")}


# ----------------------------------------------------------------------------------------------
# The checkpoint schema
# ----------------------------------------------------------------------------------------------
_INFO_FIELDS = {"format", "epoch", "extra", "model", "optimizer", "scheduler", "rng_state"}


def check_checkpoint_info(path, info, tensors: Mapping | None = None) -> None:
    """Check the metadata of a training checkpoint against its schema, before any of it is used.

    ``info`` is the decoded ``chainrule.checkpoint`` JSON: ``format`` 1; ``epoch`` a
    non-negative integer or null; ``extra`` an object or null; ``model`` true when present;
    ``optimizer`` ``{"type": str, "param_groups": [{"params": [int, ...], option: value}],
    "scalars": {"<index>": {name: finite number}}}`` (``step`` a non-negative integer);
    ``scheduler`` ``{"type": str, "state": {name: value}}``; ``rng_state`` a PCG64 state or
    null. ``tensors`` (the header's name -> (dtype, shape)) are checked to be ``model/...`` or
    ``optimizer/<index>/<name>``. Raises `CheckpointError` naming the file and the field.
    """
    def bad(field, problem):
        return CheckpointError(f"{path}: checkpoint field {field!r} {problem}")

    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: the checkpoint metadata is a {type(info).__name__}, "
                              f"not a JSON object")
    unknown = sorted(set(info) - _INFO_FIELDS)
    if unknown:
        raise bad(unknown[0], "is not a checkpoint field (written by a newer version, or edited)")
    if info.get("format") != _FORMAT_VERSION or not _is_int(info.get("format")):
        raise bad("format", f"must be {_FORMAT_VERSION}, got {info.get('format')!r}")
    epoch = info.get("epoch")
    if epoch is not None and (not _is_int(epoch) or epoch < 0):
        raise bad("epoch", f"must be a non-negative integer or null, got {epoch!r}")
    if info.get("extra") is not None and not isinstance(info["extra"], dict):
        raise bad("extra", f"must be a JSON object or null, got {info['extra']!r}")
    if "model" in info and info["model"] is not True:
        raise bad("model", f"must be true when present, got {info['model']!r}")
    if "optimizer" in info:
        _check_optimizer_info(info["optimizer"], bad)
    if "scheduler" in info:
        saved = info["scheduler"]
        if not isinstance(saved, dict) or set(saved) != {"type", "state"}:
            raise bad("scheduler", "must be an object with 'type' and 'state'")
        if not isinstance(saved["type"], str):
            raise bad("scheduler.type", f"must be a string, got {saved['type']!r}")
        if not isinstance(saved["state"], dict):
            raise bad("scheduler.state", f"must be an object, got {saved['state']!r}")
        for key, value in saved["state"].items():
            if not _plain(value):
                raise bad(f"scheduler.state.{key}", f"must be a number, string, boolean or "
                                                    f"list of them, got {value!r}")
    if info.get("rng_state") is not None:
        _check_rng_state(path, info["rng_state"])
    for name in tensors or ():
        if name.startswith("model/"):
            if "model" not in info:
                raise CheckpointError(f"{path}: tensor {name!r}, but the checkpoint metadata "
                                      f"holds no model")
            continue
        parts = name.split("/")
        if not (len(parts) == 3 and parts[0] == "optimizer" and parts[1].isdigit()
                and parts[2] and "optimizer" in info):
            raise CheckpointError(f"{path}: tensor {name!r} is neither model/NAME nor "
                                  f"optimizer/INDEX/NAME of a saved optimizer")


def _check_optimizer_info(saved, bad) -> None:
    if not isinstance(saved, dict) or set(saved) != {"type", "param_groups", "scalars"}:
        raise bad("optimizer", "must be an object with 'type', 'param_groups' and 'scalars'")
    if not isinstance(saved["type"], str):
        raise bad("optimizer.type", f"must be a string, got {saved['type']!r}")
    groups = saved["param_groups"]
    if not isinstance(groups, list) or not groups:
        raise bad("optimizer.param_groups", "must be a non-empty list")
    seen = set()
    for i, group in enumerate(groups):
        field = f"optimizer.param_groups[{i}]"
        if not isinstance(group, dict) or not isinstance(group.get("params"), list):
            raise bad(field, "must be an object with a 'params' list")
        for index in group["params"]:
            if not _is_int(index) or index < 0 or index in seen:
                raise bad(f"{field}.params", f"must list distinct parameter indices, got "
                                             f"{index!r}")
            seen.add(index)
        for key, value in group.items():
            if key != "params" and not _plain(value):
                raise bad(f"{field}.{key}", f"must be a finite number, boolean, string or list "
                                            f"of them, got {value!r}")
    scalars = saved["scalars"]
    if not isinstance(scalars, dict):
        raise bad("optimizer.scalars", f"must be an object, got {scalars!r}")
    for index, entries in scalars.items():
        if not index.isdigit() or int(index) not in seen:
            raise bad(f"optimizer.scalars.{index}", "is not the index of a saved parameter")
        if not isinstance(entries, dict):
            raise bad(f"optimizer.scalars.{index}", f"must be an object, got {entries!r}")
        for key, value in entries.items():
            field = f"optimizer.scalars.{index}.{key}"
            if not _number(value):
                raise bad(field, f"must be a finite number, got {value!r}")
            if key == "step" and (not _is_int(value) or value < 0):
                raise bad(field, f"must be a non-negative integer, got {value!r}")


def _number(value) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _plain(value, depth=0) -> bool:
    """A JSON value an optimizer or scheduler setting can take: finite number, bool, string,
    null (``inf`` too: ReduceLROnPlateau's initial best), or a flat list of them."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int | float):
        return not math.isnan(value)
    if isinstance(value, list) and depth == 0:
        return all(_plain(v, 1) for v in value)
    return False


def _check_rng_state(path, state) -> None:
    expected = get_rng_state()
    inner = state.get("state") if isinstance(state, dict) else None
    ok = (isinstance(state, dict) and set(state) == set(expected)
          and state.get("bit_generator") == expected["bit_generator"]
          and isinstance(inner, dict) and set(inner) == set(expected["state"])
          and all(_is_int(v) and 0 <= v < 2 ** 128 for v in inner.values())
          and state.get("has_uint32") in (0, 1) and _is_int(state.get("has_uint32"))
          and _is_int(state.get("uinteger")) and 0 <= state["uinteger"] < 2 ** 32)
    if not ok:
        raise CheckpointError(f"{path}: checkpoint field 'rng_state' is not a state of "
                              f"chainrule's random generator (a {expected['bit_generator']} "
                              f"state: bit_generator, state.state and state.inc below 2**128, "
                              f"has_uint32 0 or 1, uinteger below 2**32)")


# ----------------------------------------------------------------------------------------------
# Restoring
# ----------------------------------------------------------------------------------------------
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


def _optimizer_state(path, optimizer, tensors, info) -> dict:
    """The saved optimizer settings, checked against this optimizer's own (same option names,
    values of the same kinds, accepted by its own checks) before anything is changed."""
    saved = info.get("optimizer")
    if saved is None:
        raise CheckpointError(f"{path}: the checkpoint holds no optimizer state")
    name = type(optimizer).__name__
    if saved["type"] != name:
        raise CheckpointError(f"{path}: the checkpoint holds {saved['type']} state, but the "
                              f"optimizer is a {name}")
    groups = saved["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise CheckpointError(f"{path}: the checkpoint has {len(groups)} parameter groups, the "
                              f"optimizer {len(optimizer.param_groups)}")
    merged = {}  # id(parameter) -> its group's options as they will be after the load
    for i, (group, own) in enumerate(zip(groups, optimizer.param_groups)):
        field = f"optimizer.param_groups[{i}]"
        keys, own_keys = set(group) - {"params"}, set(own) - {"params"}
        missing = sorted(own_keys - keys - {"initial_lr"})
        unknown = sorted(keys - own_keys - {"initial_lr"})
        if missing or unknown:
            raise CheckpointError(f"{path}: checkpoint field {field!r}: {name} options "
                                  f"missing {missing}, unknown {unknown}")
        for key in sorted(keys & own_keys):
            if not _same_kind(group[key], own[key]):
                raise CheckpointError(f"{path}: checkpoint field '{field}.{key}' is "
                                      f"{group[key]!r}; {name} takes a value like "
                                      f"{own[key]!r}")
        candidate = {**{k: v for k, v in own.items() if k != "params"},
                     **{k: v for k, v in group.items() if k != "params"}}
        try:
            optimizer._check_options(candidate)
        except (ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: checkpoint field {field!r}: {exc}") from None
        merged.update((id(p), candidate) for p in own["params"])
    state = {}
    for index, entries in saved["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    for tensor in tensors:
        if tensor.startswith("optimizer/"):
            _, index, key = tensor.split("/", 2)
            state.setdefault(int(index), {})[key] = None  # the array, read later
    params = [p for g in optimizer.param_groups for p in g["params"]]
    position = {i: p for g, own in zip(groups, optimizer.param_groups)
                for i, p in zip(g["params"], own["params"])}
    for index, entries in state.items():
        p = position.get(index)
        if p is None:
            raise CheckpointError(f"{path}: checkpoint field 'optimizer.scalars': state for "
                                  f"parameter {index}, which no group lists ({len(params)} "
                                  f"parameters)")
        expected = optimizer._init_state(merged[id(p)], p)
        lacking = sorted(set(expected) - set(entries))
        if lacking:
            raise CheckpointError(f"{path}: the {name} state of parameter {index} lacks "
                                  f"{lacking}")
    return {"state": state, "param_groups": groups}


def _same_kind(value, like) -> bool:
    if isinstance(like, bool) or like is None:
        return type(value) is type(like)
    if isinstance(like, int | float):
        return _number(value)
    if isinstance(like, str):
        return isinstance(value, str)
    if isinstance(like, list | tuple):
        return (isinstance(value, list) and len(value) == len(like)
                and all(_same_kind(v, w) for v, w in zip(value, like)))
    return False


def _restore_optimizer(path, optimizer, arrays, checked):
    state = {index: dict(entries) for index, entries in checked["state"].items()}
    for name, value in _with_prefix(arrays, "optimizer/").items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": checked["param_groups"]})
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: the optimizer state does not fit the optimizer: "
                              f"{exc}") from exc


_CHOICES = {"mode": ("min", "max"), "threshold_mode": ("rel", "abs")}
_AT_LEAST_ONE = ("T_max", "step_size")


def _check_scheduler(path, scheduler, info):
    """The saved scheduler state, checked against this scheduler's: the same fields, values of
    the same kinds, integers and learning rates not negative, counts of epochs at least 1."""
    saved = info.get("scheduler")
    if saved is None:
        raise CheckpointError(f"{path}: the checkpoint holds no scheduler state")
    name = type(scheduler).__name__
    if saved["type"] != name:
        raise CheckpointError(f"{path}: the checkpoint holds {saved['type']} state, but the "
                              f"scheduler is a {name}")
    own, state = scheduler.state_dict(), saved["state"]
    missing, unknown = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unknown:
        raise CheckpointError(f"{path}: checkpoint field 'scheduler.state': {name} fields "
                              f"missing {missing}, unknown {unknown}")
    for key, value in state.items():
        field, like = f"scheduler.state.{key}", own[key]
        ok = _same_kind(value, like) or (key == "best" and isinstance(value, float))
        if ok and _is_int(like):
            ok = _is_int(value) and value >= (1 if key in _AT_LEAST_ONE else 0)
        if ok and key in _CHOICES:
            ok = value in _CHOICES[key]
        if ok and ("lr" in key or key == "eta_min"):
            ok = all(v >= 0 for v in (value if isinstance(value, list) else [value]))
        if not ok:
            raise CheckpointError(f"{path}: checkpoint field {field!r} is {value!r}; {name} "
                                  f"takes a value like {like!r}")
