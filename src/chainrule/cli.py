"""The `chainrule` command: `train`, `evaluate`, `predict`, and `graph`, `explain` (from
`chainrule.cli_inspect`).

Usage errors (a bad option value) exit with 2 and say which option and why; failures while
running (a missing, damaged or edited file, training that diverged) exit with 1 and a one-line
message naming the file (and field), never a traceback (set CHAINRULE_TRACEBACK=1 to see one
for an unexpected error). Output cut short by a closed pipe (``chainrule train | head``) ends
the command quietly, with exit code 141 as a process ended by SIGPIPE.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from chainrule import cli_inspect


def _integer(name, minimum):
    """An argparse type: an integer >= minimum ("positive" for 1, "non-negative" for 0)."""
    kind = {0: "non-negative", 1: "positive"}.get(minimum, f">= {minimum}")

    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value}")
        return value

    parse.__name__ = name
    return parse


class UsageError(Exception):
    """A combination of options that cannot work: exit code 2, like argparse's own errors."""


def _positive_int(name):
    return _integer(name, 1)


def _hidden(text):
    try:
        sizes = tuple(int(part) for part in text.split(","))  # "128,,64" is refused
    except ValueError:
        sizes = ()
    if not sizes or any(n <= 0 for n in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}")
    return sizes


def _number(minimum, inclusive):
    """An argparse type: a finite float >= minimum (or > minimum)."""
    bound = f"{'>=' if inclusive else '>'} {minimum:g}"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not np.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text}")
        return value

    return parse


_non_negative_float = _number(0, inclusive=True)
_positive_float = _number(0, inclusive=False)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, unless its help already says it or there is none."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS:
            return text
        return super()._get_help_string(action)


def _add_train(sub):
    from chainrule.training import ACTIVATIONS, LOSSES, OPTIMIZERS

    p = sub.add_parser("train", help="train an MLP (default: the digits data set)",
                       description="Train an MLP and write weights, checkpoint, metrics and "
                                   "curves to --out (replacing a previous run there).")
    p.add_argument("--hidden", type=_hidden, default="256,128",
                   help="hidden layer sizes, comma-separated")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu",
                   help="activation after each hidden layer")
    p.add_argument("--loss", choices=LOSSES, default="cross_entropy", help="training loss")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam", help="optimizer")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 0.002 for adam/adamw, 0.05 for sgd, "
                        "0.001 for rmsprop)")
    p.add_argument("--momentum", type=_non_negative_float, default=None,
                   help="momentum for sgd (default 0.9) and rmsprop (default 0)")
    p.add_argument("--weight-decay", type=_non_negative_float, default=0.0,
                   help="weight decay (L2 penalty)")
    p.add_argument("--epochs", type=_positive_int("epochs"), default=30,
                   help="passes over the training data")
    p.add_argument("--batch-size", type=_positive_int("batch size"), default=32,
                   help="samples per step")
    p.add_argument("--seed", type=_integer("seed", 0), default=0,
                   help="seeds the initialisation, the shuffling and the data split")
    p.add_argument("--data", default=None,
                   help="directory of MNIST / Fashion-MNIST IDX files (plain or .gz)")
    p.add_argument("--out", default="runs/latest",
                   help="output directory, created if missing; a previous run there is "
                        "overwritten (and said so): give each run its own to keep them apart")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out")
    p.add_argument("--stop-after", type=_positive_int("stop after"), default=None,
                   metavar="EPOCH", help="stop after this epoch (at most --epochs), as if "
                                         "interrupted (--resume continues the same schedule)")
    p.add_argument("--threads", type=_positive_int("threads"), default=None,
                   help="BLAS threads (default: 1 for small models, where threads only cost)")
    p.add_argument("--distributed", action="store_true",
                   help="data parallel over MPI: run as `mpiexec -n 4 chainrule train "
                        "--distributed` (needs pip install chainrule[mpi])")
    from chainrule import distributed

    p.add_argument("--timeout", type=_positive_float, default=distributed.DEFAULT_TIMEOUT,
                   metavar="SECONDS", action=distributed.TimeoutOption,
                   help="with --distributed: abort the job, naming the rank, when a process has "
                        "waited this long for the others in a step (default: %(default)g)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report", action="store_true",
                   help="also write a memory report and the gradient-flow report")
    p.add_argument("--compile", action="store_true",
                   help="replay each training step with cr.compile: the same numbers, less "
                        "Python per step")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from chainrule.training import DEFAULT_MOMENTUM, Config, fit

    if args.momentum is not None and args.optimizer not in DEFAULT_MOMENTUM:
        raise UsageError(f"--momentum: only {' and '.join(sorted(DEFAULT_MOMENTUM))} take a "
                         f"momentum, not {args.optimizer} (its betas play that part)")
    if args.stop_after is not None and args.stop_after > args.epochs:
        raise UsageError(f"--stop-after {args.stop_after} is after the last epoch (--epochs "
                         f"{args.epochs}), so it would stop nothing; give a smaller one, or more "
                         f"--epochs")

    config = Config(hidden=args.hidden, activation=args.activation, loss=args.loss,
                    optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                    weight_decay=args.weight_decay, epochs=args.epochs,
                    batch_size=args.batch_size, seed=args.seed, data=args.data, out=args.out,
                    resume=args.resume, stop_after=args.stop_after, threads=args.threads,
                    distributed=args.distributed, compile=args.compile,
                    progress=not args.no_progress and sys.stderr.isatty(), report=args.report)
    fit(config)
    return 0


def _test_arrays(args, spec):
    import chainrule as cr

    if not args.data:
        if spec["n_inputs"] != 64:
            raise ValueError(f"the model takes {spec['n_inputs']} inputs: give its --data "
                             f"directory")
        return tuple(cr.data.digits_splits(seed=spec["seed"]).test)
    X, y = cr.data.load_idx_dir(args.data, "test")
    if X.shape[1] != spec["n_inputs"]:
        raise ValueError(f"--data: the test images in {args.data} have {X.shape[1]} pixels, but "
                         f"the model takes {spec['n_inputs']} inputs")
    outside = y[(y < 0) | (y >= spec["n_classes"])]
    if outside.size:
        raise ValueError(f"--data: the test labels in {args.data} include {int(outside[0])}, "
                         f"but the model has classes 0..{spec['n_classes'] - 1}")
    return X, y


def _add_evaluate(sub):
    p = sub.add_parser("evaluate", help="test loss and accuracy of a saved model")
    p.add_argument("model", help="model.safetensors written by `chainrule train`")
    p.add_argument("--data", default=None, help="IDX directory (default: the digits test split)")
    p.set_defaults(func=_evaluate)


def _evaluate(args) -> int:
    from chainrule.training import evaluate, model_from_file

    model, spec = model_from_file(args.model)
    X, y = _test_arrays(args, spec)
    loss, accuracy = evaluate(model, X, y)
    print(f"{len(X)} test samples: loss {loss:.4f}, accuracy {accuracy:.2%}")
    return 0


def _add_predict(sub):
    p = sub.add_parser("predict", help="predicted classes for samples")
    p.add_argument("model", help="model.safetensors written by `chainrule train`")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--index", type=int, nargs="+", default=None,
                       help="rows of the test split to predict (default: the first 5)")
    group.add_argument("--input", default=None,
                       help="a .npy file of shape (N, inputs), scaled as the training data was: "
                            "for the digits, pixel values 0-16 divided by 16 (so 0..1); for IDX "
                            "data, bytes 0-255 divided by 255. Values outside the training "
                            "range, NaN or infinity are refused")
    p.add_argument("--data", default=None, help="IDX directory (default: the digits)")
    p.set_defaults(func=_predict)


def _predict(args) -> int:
    from chainrule.training import check_inputs, model_from_file, predict

    model, spec = model_from_file(args.model)
    labels = None
    if args.input:
        try:
            X = np.load(args.input, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise ValueError(f"--input: cannot read {args.input} as a .npy array: {exc}") from None
        X = X.reshape(1, -1) if X.ndim == 1 else X
        if X.ndim != 2 or X.shape[1] != spec["n_inputs"]:
            raise ValueError(f"--input: expected shape (N, {spec['n_inputs']}), got {X.shape}")
        X = check_inputs(X, spec, f"--input {args.input}")
        index = list(range(len(X)))
    else:
        X_all, y_all = _test_arrays(args, spec)
        index = args.index if args.index is not None else list(range(5))
        bad = [i for i in index if not 0 <= i < len(X_all)]
        if bad:
            raise ValueError(f"--index: {bad[0]} is outside the test split (0..{len(X_all) - 1})")
        X, labels = X_all[index], y_all[index]
    classes, probs = predict(model, X)
    for i, (c, p) in enumerate(zip(classes, probs)):
        truth = "" if labels is None else f"  (label {labels[i]})"
        print(f"sample {index[i]}: class {c}  p = {p[c]:.3f}{truth}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from chainrule import __version__

    parser = argparse.ArgumentParser(
        prog="chainrule", description="Backpropagation you can see, trust and train with.",
        formatter_class=_HelpFormatter)
    parser.add_argument("--version", action="version", version=f"chainrule {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    cli_inspect.register(sub)  # graph, explain
    for command in sub.choices.values():
        command.formatter_class = _HelpFormatter
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    name = f"chainrule {args.command}"
    with warnings.catch_warnings():
        warnings.simplefilter("always", _unsigned_warning())
        warnings.showwarning = lambda message, *rest, **kw: print(
            f"{name}: warning: {message}", file=sys.stderr)
        return _run(args, name)


def _unsigned_warning():
    from chainrule.io import UnsignedFileWarning

    return UnsignedFileWarning


def _run(args, name) -> int:
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except UsageError as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chainrule: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `chainrule train | head`: the reader has all it wanted
        _discard_stdout()
        return 141
    except OSError as exc:
        print(f"{name}: error: {_os_message(exc)}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, RuntimeError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug, or a file problem no check foresaw: still one line
        if os.environ.get("CHAINRULE_TRACEBACK"):
            raise
        print(f"{name}: error: {type(exc).__name__}: {exc} (unexpected; set "
              f"CHAINRULE_TRACEBACK=1 to see where it happened)", file=sys.stderr)
        return 1


def _os_message(exc: OSError) -> str:
    """An OSError in words, naming the file, and the folder when that is what is missing."""
    if exc.filename is None:
        return str(exc)
    path = Path(os.fsdecode(exc.filename))
    if exc.errno == errno.ENOENT and str(path.parent) not in ("", ".") \
            and not path.parent.is_dir():
        return f"{path}: the folder {path.parent} does not exist"
    return f"{path}: {exc.strerror or exc}"


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


if __name__ == "__main__":
    sys.exit(main())
