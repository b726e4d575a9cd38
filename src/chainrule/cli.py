"""The `chainrule` command: `train`, `evaluate`, `predict`, and `graph`, `explain` (from
`chainrule.cli_inspect`).

Usage errors (a bad option value) exit with 2 and say which option and why; failures while
running (a missing or damaged file) exit with 1 and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

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
        sizes = tuple(int(part) for part in text.split(",") if part.strip() != "")
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


def _add_train(sub):
    from chainrule.training import ACTIVATIONS, LOSSES, OPTIMIZERS

    p = sub.add_parser("train", help="train an MLP (default: the digits data set)",
                       description="Train an MLP and write weights, checkpoint, metrics and "
                                   "curves to --out.")
    p.add_argument("--hidden", type=_hidden, default=(256, 128),
                   help="hidden layer sizes (default: 256,128)")
    p.add_argument("--activation", choices=sorted(ACTIVATIONS), default="relu")
    p.add_argument("--loss", choices=LOSSES, default="cross_entropy")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 0.002 for adam/adamw, 0.05 for sgd, "
                        "0.001 for rmsprop)")
    p.add_argument("--momentum", type=_non_negative_float, default=None,
                   help="momentum for sgd (default 0.9) and rmsprop (default 0)")
    p.add_argument("--weight-decay", type=_non_negative_float, default=0.0)
    p.add_argument("--epochs", type=_positive_int("epochs"), default=30)
    p.add_argument("--batch-size", type=_positive_int("batch size"), default=32)
    p.add_argument("--seed", type=_integer("seed", 0), default=0,
                   help="seeds the initialisation, the shuffling and the data split")
    p.add_argument("--data", default=None,
                   help="directory of MNIST / Fashion-MNIST IDX files (plain or .gz)")
    p.add_argument("--out", default="runs/latest", help="output directory")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --out")
    p.add_argument("--stop-after", type=_positive_int("stop after"), default=None,
                   metavar="EPOCH", help="stop after this epoch, as if interrupted (--resume "
                                         "continues the same schedule)")
    p.add_argument("--threads", type=_positive_int("threads"), default=None,
                   help="BLAS threads (default: 1 for small models, where threads only cost)")
    p.add_argument("--distributed", action="store_true",
                   help="data parallel over MPI: run as `mpiexec -n 4 chainrule train "
                        "--distributed` (needs pip install chainrule[mpi])")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--report", action="store_true",
                   help="also write a memory report and the gradient-flow report")
    p.set_defaults(func=_train)


def _train(args) -> int:
    from chainrule.training import DEFAULT_MOMENTUM, Config, fit

    if args.momentum is not None and args.optimizer not in DEFAULT_MOMENTUM:
        raise UsageError(f"--momentum: only {' and '.join(sorted(DEFAULT_MOMENTUM))} take a "
                         f"momentum, not {args.optimizer} (its betas play that part)")

    config = Config(hidden=args.hidden, activation=args.activation, loss=args.loss,
                    optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                    weight_decay=args.weight_decay, epochs=args.epochs,
                    batch_size=args.batch_size, seed=args.seed, data=args.data, out=args.out,
                    resume=args.resume, stop_after=args.stop_after, threads=args.threads,
                    distributed=args.distributed,
                    progress=not args.no_progress and sys.stderr.isatty(), report=args.report)
    fit(config)
    return 0


def _test_arrays(args, spec):
    import chainrule as cr

    if args.data:
        return cr.data.load_idx_dir(args.data, "test")
    if spec["n_inputs"] != 64:
        raise ValueError(f"the model takes {spec['n_inputs']} inputs: give its --data directory")
    return tuple(cr.data.digits_splits(seed=spec.get("seed", 0)).test)


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
    group.add_argument("--input", default=None, help="a .npy file of shape (N, inputs)")
    p.add_argument("--data", default=None, help="IDX directory (default: the digits)")
    p.set_defaults(func=_predict)


def _predict(args) -> int:
    from chainrule.training import model_from_file, predict

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
        print(f"sample {i}: class {c}  p = {p[c]:.3f}{truth}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chainrule", description="Backpropagation you can see, trust and train with.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    cli_inspect.register(sub)  # graph, explain
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"chainrule {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chainrule: interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        print(f"chainrule {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
