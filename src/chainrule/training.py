"""The training recipe behind `chainrule train`: data, model, loop, metrics, outputs, resume.

Seed 000's loop, made a tool: start from random weights, feed a batch forward, average the loss
over it, backpropagate, update every weight, repeat; measure on held-out data after each epoch.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import chainrule as cr
from chainrule import nn, threads
from chainrule.nn import functional as F

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
               "leaky_relu": nn.LeakyReLU}
OPTIMIZERS = {"sgd": cr.optim.SGD, "adam": cr.optim.Adam, "adamw": cr.optim.AdamW,
              "rmsprop": cr.optim.RMSprop}
DEFAULT_LR = {"sgd": 0.05, "adam": 2e-3, "adamw": 2e-3, "rmsprop": 1e-3}
# RMSprop's step is already scaled per weight; momentum 0.9 on top makes it ten times larger,
# which diverges with the mse loss (45% on the digits instead of 98%).
DEFAULT_MOMENTUM = {"sgd": 0.9, "rmsprop": 0.0}
LOSSES = ("cross_entropy", "mse")


@dataclass
class Config:
    """Everything that defines a run (written into metrics.json and the checkpoint)."""

    hidden: tuple = (256, 128)
    activation: str = "relu"
    loss: str = "cross_entropy"
    optimizer: str = "adam"
    lr: float | None = None
    momentum: float | None = None  # None: DEFAULT_MOMENTUM; only sgd and rmsprop take one
    weight_decay: float = 0.0
    epochs: int = 30
    batch_size: int = 32
    seed: int = 0
    data: str | None = None
    out: str = "runs/latest"
    resume: bool = False
    progress: bool = True
    report: bool = False
    stop_after: int | None = None
    threads: int | None = None  # BLAS threads; None: see threads.threads_for_model
    distributed: bool = False  # data parallel over MPI (run under mpiexec)
    compile: bool = False  # replay each training step with cr.compile (the same results)
    extra: dict = field(default_factory=dict)

    @property
    def learning_rate(self) -> float:
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    @property
    def momentum_value(self) -> float | None:
        """The momentum the optimizer gets, None for those that take none (adam, adamw)."""
        if self.optimizer not in DEFAULT_MOMENTUM:
            return None
        return DEFAULT_MOMENTUM[self.optimizer] if self.momentum is None else self.momentum


class TrainingError(RuntimeError):
    """Training cannot go on (a loss that is not finite); the message names the epoch and step
    and says which checkpoint still holds good weights."""


class Data:
    """Train, validation and test arrays, how many inputs and classes they have, and how the
    inputs were scaled (``inputs``: the range the scaled values can take, what the raw values
    were divided by, and a description; stored with the model, so `predict` can check what it
    is given)."""

    def __init__(self, train, val, test, name, input_range=(0.0, 1.0), divided_by=None,
                 description=""):
        self.train, self.val, self.test, self.name = train, val, test, name
        self.n_inputs = train[0].shape[1]
        self.n_classes = int(max(train[1].max(), test[1].max())) + 1
        self.inputs = {"range": [float(v) for v in input_range], "divided_by": divided_by,
                       "description": description}


def load_data(config: Config) -> Data:
    """The digits (default, shipped in the package) or an MNIST-style IDX directory."""
    if config.data is None:
        splits = cr.data.digits_splits(seed=config.seed)
        return Data(tuple(splits.train), tuple(splits.val), tuple(splits.test), "digits",
                    divided_by=16.0, description="8x8 digits: pixel values 0-16 divided by 16")
    directory = Path(config.data)
    if not directory.is_dir():
        raise FileNotFoundError(f"--data: {directory} is not a directory")
    X, y = cr.data.load_idx_dir(directory, "train")
    X_test, y_test = cr.data.load_idx_dir(directory, "test")
    check_labels(y, y_test, directory)
    n_val = max(1, len(X) // 10)
    order = np.random.default_rng(config.seed).permutation(len(X))
    val, train = order[:n_val], order[n_val:]
    return Data((X[train], y[train]), (X[val], y[val]), (X_test, y_test), str(directory),
                divided_by=255.0, description="IDX pixel bytes 0-255 divided by 255")


def check_labels(y_train, y_test, where) -> int:
    """The number of classes K, after checking that the training labels are exactly 0..K-1
    (every class present, at least two, at least two samples a class on average) and that the
    test labels are among them. Raises ValueError saying what was found."""
    values = np.unique(y_train)
    if values.size < 2:
        raise ValueError(f"--data: the training labels in {where} hold {values.size} distinct "
                         f"value(s) ({_few(values)}); a classifier needs at least two classes")
    low, high = int(values[0]), int(values[-1])
    if low != 0 or values.size != high + 1:
        missing = sorted(set(range(max(high, 0) + 1)) - {int(v) for v in values})
        raise ValueError(f"--data: the training labels in {where} range {low}..{high} but only "
                         f"{values.size} distinct values occur ({_few(values)}); labels must be "
                         f"the class numbers 0..K-1, each with training samples (missing: "
                         f"{_few(missing)}). Renumber the labels")
    if 2 * values.size > len(y_train):
        raise ValueError(f"--data: {values.size} classes (labels 0..{high}) for only "
                         f"{len(y_train)} training samples in {where}: fewer than two a class")
    extra = np.setdiff1d(np.unique(y_test), values)
    if extra.size:
        raise ValueError(f"--data: the test labels in {where} include {_few(extra)}, which no "
                         f"training label has (classes 0..{high})")
    return high + 1


def _few(values, n=6) -> str:
    """``0, 1, 2, 3, ..., 8, 255 (10 in all)``: a few values, the first and the last."""
    values = [str(int(v)) for v in values]
    if len(values) <= n:
        return ", ".join(values)
    return ", ".join(values[:n - 2] + ["..."] + values[-2:]) + f" ({len(values)} in all)"


class Standardize(nn.Module):
    """(x - mean) / scale with the training set's statistics, kept as buffers so the saved
    model takes raw inputs. Centred, unit-scale inputs make the MLP train faster and better."""

    def __init__(self, mean, scale):
        super().__init__()
        self.register_buffer("mean", np.asarray(mean, np.float32))
        self.register_buffer("scale", np.asarray(scale, np.float32))

    def forward(self, x):
        return (x - self.mean) / self.scale


def build_model(n_inputs: int, hidden, n_classes: int, activation: str, X_train=None
                ) -> nn.Sequential:
    """Standardize, then an MLP: Linear, activation, ..., Linear to the class logits."""
    if X_train is None:
        mean, scale = np.zeros(n_inputs), np.ones(n_inputs)
    else:  # + 0.1: pixels that barely vary (digit borders) are not blown up into noise
        mean, scale = X_train.mean(axis=0), X_train.std(axis=0) + 0.1
    layers, width = [Standardize(mean, scale)], n_inputs
    for size in hidden:
        layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
        width = size
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def architecture(model_config: dict) -> str:
    return json.dumps(model_config)


def model_from_file(path) -> tuple[nn.Sequential, dict]:
    """Rebuild the network saved by `chainrule train` (its shape is in the file's metadata).

    The header is read first, without the tensors: its signature is checked, the metadata is
    checked against the model file schema (`check_model_metadata`) and the architecture
    against the stored tensors' shapes, so nothing is allocated for a network the file does not
    hold. Returns the model (in eval mode) and the architecture, with ``"inputs"`` (the range
    the scaled training inputs can take, or None for files from before it was recorded).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist (train one with "
                                f"`chainrule train --out DIR`)")
    spec = check_model_metadata(path, cr.io.load_header(path))
    model = build_model(spec["n_inputs"], spec["hidden"], spec["n_classes"], spec["activation"])
    try:
        model.load_state_dict(cr.load(path))
    except (KeyError, ValueError, TypeError) as exc:
        if isinstance(exc, cr.io.CheckpointError):
            raise
        raise cr.io.CheckpointError(f"{path}: the weights do not fit the architecture: "
                                    f"{exc}") from None
    model.eval()
    return model, spec


_ARCHITECTURE = ("n_inputs", "hidden", "n_classes", "activation", "seed")


def check_model_metadata(path, header) -> dict:
    """The model file schema: the ``architecture`` (and optional ``inputs``) metadata of a file
    `chainrule train` wrote, checked field by field and against the tensors in ``header`` (a
    `chainrule.io.Header`). Raises `chainrule.io.CheckpointError` naming the file and field.

    ``architecture``: JSON ``{"n_inputs": int >= 1, "hidden": [int >= 1, ...], "n_classes":
    int >= 2, "activation": one of ACTIVATIONS, "seed": int >= 0}`` (``seed`` may be missing in
    old files: 0). ``inputs``: JSON ``{"range": [low, high], "divided_by": number > 0 or null,
    "description": str}``. The tensors must be exactly those of that network, in float32.
    """
    error = cr.io.CheckpointError
    meta = header.metadata
    if "architecture" not in meta:
        raise error(f"{path}: no architecture in its metadata; was it written by `chainrule "
                    f"train`?")
    spec = _json_object(path, meta, "architecture")
    missing = [k for k in _ARCHITECTURE if k not in spec and k != "seed"]
    unknown = sorted(set(spec) - set(_ARCHITECTURE))
    if missing or unknown:
        raise error(f"{path}: architecture " + (f"lacks the field {missing[0]!r}" if missing
                                                else f"has an unknown field {unknown[0]!r}"))
    spec.setdefault("seed", 0)

    def field(name, ok, expected):
        if not ok:
            raise error(f"{path}: architecture field {name!r} must be {expected}, got "
                        f"{spec[name]!r}")

    field("n_inputs", _is_int(spec["n_inputs"]) and spec["n_inputs"] >= 1, "a positive integer")
    field("hidden", isinstance(spec["hidden"], list) and all(
        _is_int(n) and n >= 1 for n in spec["hidden"]), "a list of positive integers")
    field("n_classes", _is_int(spec["n_classes"]) and spec["n_classes"] >= 2,
          "an integer >= 2")
    field("activation", isinstance(spec["activation"], str)
          and spec["activation"] in ACTIVATIONS, f"one of {', '.join(sorted(ACTIVATIONS))}")
    field("seed", _is_int(spec["seed"]) and spec["seed"] >= 0, "a non-negative integer")
    spec["inputs"] = _check_inputs_field(path, meta) if "inputs" in meta else None
    expected = model_tensors(spec["n_inputs"], spec["hidden"], spec["n_classes"])
    found = {name: shape for name, (code, shape) in header.tensors.items()}
    for name, shape in expected.items():
        if name not in found:
            raise error(f"{path}: the architecture ({_shape_text(spec)}) needs a tensor "
                        f"{name!r} of shape {shape}, which the file does not hold")
        if found[name] != shape or header.tensors[name][0] != "F32":
            dtype = cr.io.dtype_of(header.tensors[name][0])
            raise error(f"{path}: the architecture ({_shape_text(spec)}) needs {name!r} of "
                        f"shape {shape} (float32), but the file holds shape {found[name]} "
                        f"({dtype})")
    extra = sorted(set(found) - set(expected))
    if extra:
        raise error(f"{path}: the file holds tensors the architecture ({_shape_text(spec)}) "
                    f"does not use: {', '.join(extra[:5])}")
    return spec


def model_tensors(n_inputs, hidden, n_classes) -> dict[str, tuple]:
    """The names and shapes of the state of `build_model`'s network, computed, not built."""
    tensors = {"0.mean": (n_inputs,), "0.scale": (n_inputs,)}
    width = n_inputs
    for i, size in enumerate(list(hidden) + [n_classes]):
        tensors[f"{2 * i + 1}.weight"] = (size, width)
        tensors[f"{2 * i + 1}.bias"] = (size,)
        width = size
    return tensors


def _shape_text(spec) -> str:
    return "-".join(map(str, [spec["n_inputs"], *spec["hidden"], spec["n_classes"]]))


def _json_object(path, meta, key) -> dict:
    try:
        value = json.loads(meta[key])
    except ValueError as exc:
        raise cr.io.CheckpointError(f"{path}: the {key!r} metadata is not valid JSON ({exc})"
                                    ) from None
    if not isinstance(value, dict):
        raise cr.io.CheckpointError(f"{path}: the {key!r} metadata must be a JSON object, got "
                                    f"{value!r}")
    return value


def _check_inputs_field(path, meta) -> dict:
    inputs = _json_object(path, meta, "inputs")
    bad = cr.io.CheckpointError
    if set(inputs) != {"range", "divided_by", "description"}:
        raise bad(f"{path}: the 'inputs' metadata must have the fields range, divided_by and "
                  f"description, got {sorted(inputs)}")
    low_high = inputs["range"]
    if not (isinstance(low_high, list) and len(low_high) == 2 and all(
            _is_number(v) for v in low_high) and low_high[0] <= low_high[1]):
        raise bad(f"{path}: inputs field 'range' must be [low, high] with low <= high, got "
                  f"{low_high!r}")
    divided_by = inputs["divided_by"]
    if divided_by is not None and not (_is_number(divided_by) and divided_by > 0):
        raise bad(f"{path}: inputs field 'divided_by' must be a positive number or null, got "
                  f"{divided_by!r}")
    if not isinstance(inputs["description"], str):
        raise bad(f"{path}: inputs field 'description' must be a string, got "
                  f"{inputs['description']!r}")
    return inputs


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def check_inputs(X, spec, where="--input") -> np.ndarray:
    """``X`` as float32 rows for the model described by ``spec`` (from `model_from_file`),
    after checking it: numbers, no NaN or infinity, and values in the range the scaled
    training inputs can take (with 5% slack), when the model file records it. Raises ValueError
    naming the sample; for inputs that look unscaled it says what to divide by."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{where}: expected numbers, got {X.dtype} values")
    X = X.astype(np.float32).reshape(len(X), -1) if X.ndim else X.astype(np.float32)
    finite = np.isfinite(X)
    if not finite.all():
        rows = np.flatnonzero(~finite.all(axis=1))
        column = int(np.flatnonzero(~finite[rows[0]])[0])
        more = f" (and {len(rows) - 1} more samples)" if len(rows) > 1 else ""
        raise ValueError(f"{where}: sample {rows[0]} holds {X[rows[0], column]} at input "
                         f"{column}{more}; the model needs finite numbers")
    inputs = spec.get("inputs")
    if not inputs or not X.size:
        return X
    low, high = inputs["range"]
    slack = 0.05 * (high - low) if high > low else 0.05 * max(abs(high), 1.0)
    outside = (X < low - slack) | (X > high + slack)
    if outside.any():
        row = int(np.flatnonzero(outside.any(axis=1))[0])
        hint, divided_by = "", inputs.get("divided_by")
        if divided_by and X.max() > high + slack and X.max() <= (high + slack) * divided_by:
            hint = f"; they look like raw values: divide them by {divided_by:g} first"
        raise ValueError(f"{where}: values range {X.min():g}..{X.max():g} (sample {row} has "
                         f"{X[row][outside[row]][0]:g}), but the model was trained on inputs in "
                         f"{low:g}..{high:g} ({inputs['description']}){hint}")
    return X


def loss_of(config_loss: str, logits, labels, n_classes):
    """The batch loss: cross-entropy of the logits, or the squared error between the softmax
    probabilities and the one-hot labels, summed over the classes and averaged over the batch
    (seed 000's loss). Summing over the classes keeps the gradient as large as one output's
    error; a mean over them too would divide it by the number of classes and stall SGD."""
    if config_loss == "mse":
        target = F.one_hot(labels, n_classes).astype(logits.dtype)
        return F.mse_loss(cr.softmax(logits), target, reduction="sum") / len(labels)
    return F.cross_entropy(logits, labels)


def evaluate(model, X, y, loss_name="cross_entropy", batch_size=1024):
    """(mean loss, accuracy) of ``model`` on arrays X, y, without recording a graph."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, 0
    n_classes = None
    with cr.no_grad():
        for start in range(0, len(X), batch_size):
            xb, yb = cr.tensor(X[start:start + batch_size]), y[start:start + batch_size]
            logits = model(xb)
            n_classes = logits.shape[1]
            total += loss_of(loss_name, logits, yb, n_classes).item() * len(yb)
            correct += int((logits.data.argmax(axis=1) == yb).sum())
    model.train(was_training)
    return total / len(X), correct / len(X)


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr,
                dynamic_ncols=True)


def fit(config: Config, log=print) -> dict:
    """Train as ``config`` says, write the outputs, and return the metrics."""
    if config.distributed:
        from chainrule import distributed as dist

        dist.init()
        if not dist.is_main():
            log = _silent  # only rank 0 prints and writes files
        with dist.abort_on_error():
            return _fit_with_threads(config, log)
    return _fit_with_threads(config, log)


def _silent(*args, **kwargs):
    pass


def _fit_with_threads(config, log):
    data = load_data(config)
    cr.manual_seed(config.seed)
    model = build_model(data.n_inputs, config.hidden, data.n_classes, config.activation,
                        data.train[0])
    # the one thread policy: chainrule.threads (1 thread for small models unless --threads)
    with threads.num_threads(threads.threads_for_model(model.num_parameters(),
                                                       config.batch_size, config.threads)):
        return _fit(config, data, model, log)


def _fit(config: Config, data: Data, model, log) -> dict:
    if config.stop_after is not None and config.stop_after > config.epochs:
        raise ValueError(f"--stop-after {config.stop_after} is after the last epoch (--epochs "
                         f"{config.epochs}), so it would stop nothing; give a smaller one, or "
                         f"more --epochs")
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out: {out} exists and is not a directory")
    previous = [name for name in _OUTPUTS if (out / name).exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"--out: cannot create the folder {out}: {exc.strerror or exc}") from None
    if previous and not config.resume:
        log(f"writing to {out} (overwrites the previous run there; give --out DIR to keep runs "
            f"apart)")
    else:
        log(f"writing to {out}")
    checkpoint_path = out / "checkpoint.safetensors"
    options = {"lr": config.learning_rate, "weight_decay": config.weight_decay}
    if config.optimizer in ("sgd", "rmsprop"):
        options["momentum"] = config.momentum_value
    optimizer = OPTIMIZERS[config.optimizer](model.parameters(), **options)
    scheduler = cr.optim.CosineAnnealingLR(optimizer, T_max=config.epochs)
    n_batches = -(-len(data.train[0]) // config.batch_size)
    dist = _distributed(config)
    main = dist is None or dist.is_main()
    if dist is not None:
        dist.broadcast_parameters(model)
        if config.batch_size < dist.world_size():
            log(f"warning: --batch-size {config.batch_size} is smaller than the number of "
                f"processes ({dist.world_size()}): some of them take no samples in a step")
    history, start_epoch = [], 0
    if config.resume:
        start_epoch, history = _resume(checkpoint_path, config, model, optimizer, scheduler)
        log(f"resumed from {checkpoint_path} after epoch {start_epoch}")
    flow = _gradient_flow(model, log) if config.report else None

    log(f"data: {data.name} ({len(data.train[0])} train, {len(data.val[0])} validation, "
        f"{len(data.test[0])} test); model: {data.n_inputs}-"
        f"{'-'.join(map(str, config.hidden))}-{data.n_classes} {config.activation}, "
        f"{model.num_parameters():,} parameters; {config.optimizer} lr {config.learning_rate}")
    log(f"{'epoch':>5} {'train loss':>11} {'train acc':>10} {'val loss':>9} {'val acc':>8} "
        f"{'seconds':>8}")
    for row in history:
        log(_row(row))

    def batch_loss(xb, labels):
        logits = model(xb)
        return loss_of(config.loss, logits, labels, data.n_classes), logits.detach()

    def train_step(xb, labels):
        optimizer.zero_grad()
        loss, logits = batch_loss(xb, labels)
        loss.backward()
        optimizer.step()
        return loss, logits

    whole_step = None
    if config.compile:  # bit-identical to the eager step, so not one of the run's options
        if dist is None and flow is None:  # nothing runs between backward and the update
            whole_step = cr.compile(train_step)
        else:
            batch_loss = cr.compile(batch_loss)
    started = time.perf_counter()
    last = config.epochs if config.stop_after is None else min(config.epochs, config.stop_after)
    if last < start_epoch:
        log(f"--stop-after {last}: the checkpoint is already after epoch {start_epoch}; "
            f"nothing to train")
    for epoch in range(start_epoch, last):
        t0 = time.perf_counter()
        model.train()
        total, correct, seen = 0.0, 0, 0
        step = 0
        batches = _epoch_batches(data.train, epoch, config, dist)
        for xb, yb in _progress(batches, n_batches, f"epoch {epoch + 1}/{config.epochs}",
                                config.progress and main):
            step += 1
            n = len(yb)
            if whole_step is not None:  # the update is made before the loss is checked
                loss, logits = whole_step(xb, yb.data)
                _check_finite(loss.item(), f"epoch {epoch + 1}, step {step} of {n_batches}: "
                              f"the loss", epoch, checkpoint_path, config)
                total += loss.item() * n
                correct += int((logits.data.argmax(axis=1) == yb.data).sum())
                seen += n
                continue
            optimizer.zero_grad()
            if n:  # a rank's part of a short last batch may be empty
                loss, logits = batch_loss(xb, yb.data)
                _check_finite(loss.item(), f"epoch {epoch + 1}, step {step} of {n_batches}: "
                              f"the loss", epoch, checkpoint_path, config)
                loss.backward()
            if dist is not None:  # every rank takes the same step: the global batch's mean
                dist.allreduce_gradients(model, weight=n)
            optimizer.step()
            if flow is not None:
                flow.step()
            if n:
                total += loss.item() * n
                correct += int((logits.data.argmax(axis=1) == yb.data).sum())
            seen += n
        scheduler.step()
        if dist is not None:
            total, correct, seen = (dist.allreduce_sum(v) for v in (total, correct, seen))
        val_loss, val_acc = evaluate(model, *data.val, config.loss)
        _check_finite(val_loss, f"epoch {epoch + 1}: the validation loss after its last step",
                      epoch, checkpoint_path, config)
        row = {"epoch": epoch + 1, "train_loss": total / seen, "train_accuracy": correct / seen,
               "val_loss": val_loss, "val_accuracy": val_acc,
               "seconds": time.perf_counter() - t0}
        history.append(row)
        log(_row(row))
        if main:
            cr.save_checkpoint(checkpoint_path, model=model, optimizer=optimizer,
                               scheduler=scheduler, epoch=epoch + 1,
                               extra={"history": history, "options": run_options(config)})
    train_seconds = time.perf_counter() - started
    test_loss, test_acc = evaluate(model, *data.test, config.loss)
    log(f"test loss {test_loss:.4f}, test accuracy {test_acc:.2%} "
        f"({train_seconds:.1f} s training)")

    if not main:
        return {"test_loss": test_loss, "test_accuracy": test_acc, "history": history}
    # The seed chose the digits' train/test split: `evaluate` and `predict` need it to find
    # this model's own test samples rather than ones it trained on.
    spec = {"n_inputs": data.n_inputs, "hidden": list(config.hidden),
            "n_classes": data.n_classes, "activation": config.activation, "seed": config.seed}
    cr.save(model.state_dict(), out / "model.safetensors",
            metadata={"architecture": architecture(spec), "inputs": json.dumps(data.inputs)})
    metrics = {"config": {k: v for k, v in asdict(config).items() if k != "extra"},
               "data": data.name, "parameters": model.num_parameters(), "history": history,
               "test_loss": test_loss, "test_accuracy": test_acc,
               "train_seconds": train_seconds}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    _plot_curves(history, out / "curves.png")
    if flow is not None:
        _write_report(flow, model, data, config, out, log)
    log(f"wrote {out}/model.safetensors, checkpoint.safetensors, metrics.json, curves.png")
    return metrics


_OUTPUTS = ("model.safetensors", "checkpoint.safetensors", "metrics.json")


def _check_finite(value, what, epoch, checkpoint_path, config) -> None:
    """Stop training on a loss that is not finite: say where, and what is left to resume from
    (the checkpoint of the last epoch whose losses were all finite)."""
    if math.isfinite(value):
        return
    if epoch > 0:
        kept = (f"{checkpoint_path} still holds the weights after epoch {epoch}, the last "
                f"finite one")
    else:
        kept = "no checkpoint of this run was written"
    raise TrainingError(f"{what} is {value}: training diverged and was stopped ({kept}). Try "
                        f"a smaller --lr than {config.learning_rate:g}")


def _resume(path, config, model, optimizer, scheduler) -> tuple[int, list]:
    """Restore a checkpoint written by an interrupted run of the same options, after checking
    it against the training checkpoint schema: (epochs done, their history rows)."""
    if not path.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint at {path}")
    state = cr.load_checkpoint(path, restore_rng=False)  # the file's own schema, and signature
    extra = state["extra"]
    if not isinstance(extra, dict) or "options" not in extra:
        raise cr.io.CheckpointError(f"{path}: checkpoint field 'extra.options' is missing, so "
                                    f"it cannot be checked that the run had the same options; "
                                    f"it was not written by `chainrule train`, or was edited. "
                                    f"Train afresh")
    _check_same_run(path, extra["options"], run_options(config))
    epoch, history = check_training_checkpoint(path, state, config)
    cr.load_checkpoint(path, model=model, optimizer=optimizer, scheduler=scheduler)
    if scheduler.last_epoch != epoch or scheduler.T_max != config.epochs:
        raise cr.io.CheckpointError(
            f"{path}: checkpoint field 'scheduler.state' (epoch {scheduler.last_epoch} of "
            f"{scheduler.T_max}) does not agree with 'epoch' {epoch} of --epochs "
            f"{config.epochs}")
    return epoch, history


_HISTORY = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds"}


def check_training_checkpoint(path, state, config) -> tuple[int, list]:
    """The training checkpoint schema, on top of `chainrule.io.check_checkpoint_info`: what
    `chainrule train` keeps in ``epoch`` and ``extra``. ``epoch`` is 1..--epochs;
    ``extra`` is exactly ``{"history": [...], "options": {...}}`` (options: `run_options`);
    history has one row per epoch done, numbered 1, 2, ..., with finite, non-negative losses,
    accuracies in [0, 1] and seconds. Returns (epoch, history); raises CheckpointError."""
    def bad(field, problem):
        return cr.io.CheckpointError(f"{path}: checkpoint field {field!r} {problem}")

    epoch, extra = state["epoch"], state["extra"]
    if not _is_int(epoch) or not 1 <= epoch <= config.epochs:
        raise bad("epoch", f"is {epoch!r}, but a run of --epochs {config.epochs} writes "
                           f"checkpoints after epochs 1..{config.epochs}")
    unknown = sorted(set(extra) - {"history", "options"})
    if unknown:
        raise bad(f"extra.{unknown[0]}", "is not written by `chainrule train`")
    history = extra.get("history")
    if not isinstance(history, list) or len(history) != epoch:
        shown = len(history) if isinstance(history, list) else repr(history)
        raise bad("extra.history", f"must list one row for each of the {epoch} epochs done, "
                                   f"got {shown}")
    for i, row in enumerate(history):
        field = f"extra.history[{i}]"
        if not isinstance(row, dict) or set(row) != _HISTORY:
            raise bad(field, f"must have the fields {', '.join(sorted(_HISTORY))}")
        if row["epoch"] != i + 1 or not _is_int(row["epoch"]):
            raise bad(f"{field}.epoch", f"must be {i + 1}, got {row['epoch']!r}")
        for key in sorted(_HISTORY - {"epoch"}):
            value = row[key]
            top = 1 if "accuracy" in key else math.inf
            if not _is_number(value) or not 0 <= value <= top:
                raise bad(f"{field}.{key}", f"must be a finite number in [0, {top:g}], got "
                                            f"{value!r}")
    return epoch, history


def run_options(config: Config) -> dict:
    """The options that decide the final weights: a resumed run must use the same ones.
    (Not the number of processes: a distributed run takes the same global steps.)"""
    data = None if config.data is None else str(Path(config.data).resolve())
    return {"hidden": list(config.hidden), "activation": config.activation, "loss": config.loss,
            "optimizer": config.optimizer, "lr": config.learning_rate,
            "momentum": config.momentum_value, "weight_decay": config.weight_decay,
            "epochs": config.epochs, "batch_size": config.batch_size, "seed": config.seed,
            "data": data}


def _check_same_run(path, saved, now: dict) -> None:
    """Refuse to resume with options that differ from the checkpoint's: the result would be
    neither run, and no error would say so. The record must hold every option, nothing else,
    each of the kind it takes (checkpoint field ``extra.options``)."""
    if not isinstance(saved, dict):
        raise cr.io.CheckpointError(f"{path}: checkpoint field 'extra.options' must be an "
                                    f"object, got {saved!r}")
    missing, unknown = sorted(set(now) - set(saved)), sorted(set(saved) - set(now))
    if missing or unknown:
        raise cr.io.CheckpointError(
            f"{path}: checkpoint field 'extra.options' " + (
                f"lacks {', '.join(missing)}" if missing else f"has unknown {', '.join(unknown)}")
            + ", so it cannot be checked that the run had the same options. Train afresh")
    for key, value in saved.items():
        if not _option_value_ok(key, value):
            raise cr.io.CheckpointError(f"{path}: checkpoint field 'extra.options.{key}' is "
                                        f"{value!r}, not a value {_option(key)} takes")
    changed = [key for key in now if saved[key] != now[key]]
    if not changed:
        return
    differences = "; ".join(
        f"{_option(key)} {_shown(key, saved[key])} there, {_shown(key, now[key])} now"
        for key in changed)
    raise ValueError(f"--resume: {path} was written with other options ({differences}). "
                     f"Resume with the same options, or train afresh with another --out.")


def _option_value_ok(key, value) -> bool:
    if key == "hidden":
        return isinstance(value, list) and all(_is_int(n) and n >= 1 for n in value)
    if key in ("activation", "loss", "optimizer"):
        return isinstance(value, str)
    if key == "data":
        return value is None or isinstance(value, str)
    if key in ("epochs", "batch_size"):
        return _is_int(value) and value >= 1
    if key == "seed":
        return _is_int(value) and value >= 0
    if key == "momentum" and value is None:
        return True
    return _is_number(value) and value >= 0  # lr, momentum, weight_decay


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _shown(key: str, value) -> str:
    if value is None:
        return "the digits" if key == "data" else "none"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _distributed(config):
    if not config.distributed:
        return None
    from chainrule import distributed

    return distributed


def _epoch_batches(train, epoch, config, dist=None):
    """This process's batches of ``epoch``: the epoch's permutation, seeded by (seed, epoch)
    alone, cut into global batches of batch_size consecutive indices (the last one shorter),
    each split rank by rank into world-size near-equal parts. The global batches are the same
    for any number of processes, one included, and for a resumed run; with the gradients
    averaged weighted by the parts' sizes, so are the steps."""
    X, y = train
    order = np.random.default_rng((config.seed, epoch)).permutation(len(X))
    n, r = (1, 0) if dist is None else (dist.world_size(), dist.rank())
    for start in range(0, len(order), config.batch_size):
        rows = np.array_split(order[start:start + config.batch_size], n)[r]
        yield cr.Tensor(X[rows]), cr.Tensor(y[rows])


def _row(r) -> str:
    return (f"{r['epoch']:>5} {_fixed(r['train_loss'], 11, '.4f')} "
            f"{_fixed(r['train_accuracy'], 10, '.2%')} {_fixed(r['val_loss'], 9, '.4f')} "
            f"{_fixed(r['val_accuracy'], 8, '.2%')} {_fixed(r['seconds'], 8, '.2f')}")


def _fixed(value, width, spec) -> str:
    """``value`` in ``spec``, or in scientific notation when that is wider than the column (a
    huge loss must not push the table out of line)."""
    text = f"{value:>{width}{spec}}"
    return text if len(text) <= width else f"{value:>{width}.2e}"


def _plot_curves(history, path):
    if not history:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [r["train_loss"] for r in history], label="train")
    ax_loss.plot(epochs, [r["val_loss"] for r in history], label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log", title="loss")
    ax_acc.plot(epochs, [r["train_accuracy"] for r in history], label="train")
    ax_acc.plot(epochs, [r["val_accuracy"] for r in history], label="validation")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _gradient_flow(model, log):
    """The gradient-flow recorder when `chainrule.inspect.flow` is available."""
    try:
        from chainrule.inspect.flow import GradientFlow
    except ImportError:
        log("--report: the gradient-flow recorder is not available in this version; writing "
            "the memory report only")
        return _NoFlow()
    return GradientFlow(model)


class _NoFlow:
    def step(self):
        pass


def _write_report(flow, model, data, config, out, log):
    """Memory accounting of one training batch, and the gradient-flow report if recorded:
    gradient-flow.json, its two plots and report.html (everything on one page)."""
    xb, yb = cr.tensor(data.train[0][:config.batch_size]), data.train[1][:config.batch_size]
    loss = loss_of(config.loss, model(xb), yb, data.n_classes)
    report = cr.inspect.memory(loss, backward=True)
    (out / "memory.txt").write_text(str(report) + "\n")
    model.zero_grad()
    log(f"wrote {out}/memory.txt")
    if not hasattr(flow, "save"):
        return
    import contextlib

    from chainrule.inspect.report import layer_graph, write_report

    flow.save(out)
    for warning in flow.warnings():
        log(f"warning: {warning}")
    log(f"wrote {out}/gradient-flow.json, gradient-norms.png, gradient-distributions.png")
    recording = getattr(cr.inspect, "record", None)  # keeps the values the drawing shows
    with recording() if recording is not None else contextlib.nullcontext():
        loss = loss_of(config.loss, model(xb), yb, data.n_classes)
    svg, note = layer_graph(loss, model, flow.display_names)
    model.zero_grad()
    metrics_path = out / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    facts = {"data": data.name,
             "model": f"{data.n_inputs}-{'-'.join(map(str, config.hidden))}-{data.n_classes} "
                      f"{config.activation}, {model.num_parameters():,} parameters",
             "training": f"{config.optimizer}, lr {config.learning_rate:g}, batch "
                         f"{config.batch_size}, {len(metrics.get('history', []))} epochs, "
                         f"{flow.steps} steps, loss {config.loss}"}
    if "test_accuracy" in metrics:
        facts["test"] = (f"accuracy {metrics['test_accuracy']:.2%}, "
                         f"loss {metrics['test_loss']:.4f}")
    path = write_report(out, flow, layer_graph_svg=svg, layer_graph_note=note,
                        memory_text=str(report), facts=facts, title=f"Training report: {out}",
                        plots=[out / "gradient-norms.png", out / "gradient-distributions.png"])
    log(f"wrote {path}")


def predict(model, X) -> tuple[np.ndarray, np.ndarray]:
    """(predicted classes, class probabilities) for the rows of X."""
    with cr.no_grad():
        probs = cr.softmax(model(cr.tensor(np.asarray(X, np.float32)))).data
    return probs.argmax(axis=1), probs
