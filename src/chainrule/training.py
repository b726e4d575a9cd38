"""The training recipe behind `chainrule train`: data, model, loop, metrics, outputs, resume.

Seed 000's loop, made a tool: start from random weights, feed a batch forward, average the loss
over it, backpropagate, update every weight, repeat; measure on held-out data after each epoch.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import chainrule as cr
from chainrule import nn
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
    threads: int | None = None  # BLAS threads; None: 1 for small models (see _blas_threads)
    distributed: bool = False  # data parallel over MPI (run under mpiexec)
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


class Data:
    """Train, validation and test arrays, and how many inputs and classes they have."""

    def __init__(self, train, val, test, name):
        self.train, self.val, self.test, self.name = train, val, test, name
        self.n_inputs = train[0].shape[1]
        self.n_classes = int(max(train[1].max(), test[1].max())) + 1


def load_data(config: Config) -> Data:
    """The digits (default, shipped with scikit-learn) or an MNIST-style IDX directory."""
    if config.data is None:
        splits = cr.data.digits_splits(seed=config.seed)
        return Data(tuple(splits.train), tuple(splits.val), tuple(splits.test), "digits")
    directory = Path(config.data)
    if not directory.is_dir():
        raise FileNotFoundError(f"--data: {directory} is not a directory")
    X, y = cr.data.load_idx_dir(directory, "train")
    X_test, y_test = cr.data.load_idx_dir(directory, "test")
    n_val = max(1, len(X) // 10)
    order = np.random.default_rng(config.seed).permutation(len(X))
    val, train = order[:n_val], order[n_val:]
    return Data((X[train], y[train]), (X[val], y[val]), (X_test, y_test), str(directory))


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
    """Rebuild the network saved by `chainrule train` (its shape is in the file's metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist (train one with "
                                f"`chainrule train --out DIR`)")
    meta = cr.io.load_metadata(path)
    if "architecture" not in meta:
        raise cr.io.CheckpointError(f"{path}: no architecture in its metadata; was it written "
                                    f"by `chainrule train`?")
    spec = json.loads(meta["architecture"])
    model = build_model(spec["n_inputs"], spec["hidden"], spec["n_classes"], spec["activation"])
    model.load_state_dict(cr.load(path))
    model.eval()
    return model, spec


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


def _blas_threads(config: Config, n_parameters: int):
    """How many BLAS threads the loop runs with. A small network's matrix products take
    microseconds; splitting them over threads costs more than it saves, and on a busy machine
    a waiting BLAS thread spins on a core another process needs: the default digits run took
    8 s instead of 1.1 s that way. Large models keep the library default."""
    if config.threads is not None:
        return config.threads
    return 1 if n_parameters * config.batch_size < 50_000_000 else None


def fit(config: Config, log=print) -> dict:
    """Train as ``config`` says, write the outputs, and return the metrics."""
    from threadpoolctl import threadpool_limits

    if config.distributed:
        from chainrule import distributed as dist

        dist.init()
        if not dist.is_main():
            log = _silent  # only rank 0 prints and writes files
        with dist.abort_on_error():
            return _fit_with_threads(config, log, threadpool_limits)
    return _fit_with_threads(config, log, threadpool_limits)


def _silent(*args, **kwargs):
    pass


def _fit_with_threads(config, log, threadpool_limits):
    data = load_data(config)
    cr.manual_seed(config.seed)
    model = build_model(data.n_inputs, config.hidden, data.n_classes, config.activation,
                        data.train[0])
    with threadpool_limits(limits=_blas_threads(config, model.num_parameters()),
                           user_api="blas"):
        return _fit(config, data, model, log)


def _fit(config: Config, data: Data, model, log) -> dict:
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out: {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.safetensors"
    options = {"lr": config.learning_rate, "weight_decay": config.weight_decay}
    if config.optimizer in ("sgd", "rmsprop"):
        options["momentum"] = config.momentum_value
    optimizer = OPTIMIZERS[config.optimizer](model.parameters(), **options)
    scheduler = cr.optim.CosineAnnealingLR(optimizer, T_max=config.epochs)
    loader = cr.data.DataLoader(cr.data.TensorDataset(*data.train), batch_size=config.batch_size,
                                shuffle=True)
    dist = _distributed(config)
    main = dist is None or dist.is_main()
    if dist is not None:
        dist.broadcast_parameters(model)
        if config.batch_size % dist.world_size():  # the global batch would silently change
            local = max(1, config.batch_size // dist.world_size())
            log(f"warning: --batch-size {config.batch_size} is not a multiple of "
                f"{dist.world_size()} processes; each takes {local} samples a step, a global "
                f"batch of {local * dist.world_size()}")
    history, start_epoch = [], 0
    if config.resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
        saved = cr.load_checkpoint(checkpoint_path, restore_rng=False)["extra"] or {}
        _check_same_run(checkpoint_path, saved.get("options"), run_options(config))
        state = cr.load_checkpoint(checkpoint_path, model=model, optimizer=optimizer,
                                   scheduler=scheduler)
        start_epoch, history = state["epoch"], state["extra"]["history"]
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
    started = time.perf_counter()
    last = config.epochs if config.stop_after is None else min(config.epochs, config.stop_after)
    for epoch in range(start_epoch, last):
        t0 = time.perf_counter()
        model.train()
        total, correct, seen = 0.0, 0, 0
        batches = loader if dist is None else _shard_batches(dist, data.train, epoch, config)
        for xb, yb in _progress(batches, len(loader), f"epoch {epoch + 1}/{config.epochs}",
                                config.progress and main):
            optimizer.zero_grad()
            logits = model(xb)
            loss = loss_of(config.loss, logits, yb.data, data.n_classes)
            loss.backward()
            if dist is not None:
                dist.allreduce_gradients(model)  # every rank takes the same, averaged step
            optimizer.step()
            if flow is not None:
                flow.step()
            n = len(yb)
            total += loss.item() * n
            correct += int((logits.data.argmax(axis=1) == yb.data).sum())
            seen += n
        scheduler.step()
        if dist is not None:
            total, correct, seen = (dist.allreduce_sum(v) for v in (total, correct, seen))
        val_loss, val_acc = evaluate(model, *data.val, config.loss)
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
            metadata={"architecture": architecture(spec)})
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


def run_options(config: Config) -> dict:
    """The options that decide the final weights: a resumed run must use the same ones.
    (Not the number of processes: a distributed run takes the same global steps.)"""
    data = None if config.data is None else str(Path(config.data).resolve())
    return {"hidden": list(config.hidden), "activation": config.activation, "loss": config.loss,
            "optimizer": config.optimizer, "lr": config.learning_rate,
            "momentum": config.momentum_value, "weight_decay": config.weight_decay,
            "epochs": config.epochs, "batch_size": config.batch_size, "seed": config.seed,
            "data": data}


def _check_same_run(path, saved: dict | None, now: dict) -> None:
    """Refuse to resume with options that differ from the checkpoint's: the result would be
    neither run, and no error would say so."""
    if not saved:  # a checkpoint from before options were recorded
        return
    changed = [key for key in now if key in saved and saved[key] != now[key]]
    if not changed:
        return
    differences = "; ".join(
        f"{_option(key)} {_shown(key, saved[key])} there, {_shown(key, now[key])} now"
        for key in changed)
    raise ValueError(f"--resume: {path} was written with other options ({differences}). "
                     f"Resume with the same options, or train afresh with another --out.")


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


def _shard_batches(dist, train, epoch, config):
    """This rank's batches: its shard of the epoch, in pieces of batch_size / world size, so
    that the ranks together take steps over the global batch size."""
    X, y = train
    idx = dist.shard(len(X), epoch, config.seed)
    local = max(1, config.batch_size // dist.world_size())
    for start in range(0, len(idx), local):
        rows = idx[start:start + local]
        yield cr.Tensor(X[rows]), cr.Tensor(y[rows])


def _row(r) -> str:
    return (f"{r['epoch']:>5} {r['train_loss']:>11.4f} {r['train_accuracy']:>10.2%} "
            f"{r['val_loss']:>9.4f} {r['val_accuracy']:>8.2%} {r['seconds']:>8.2f}")


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
