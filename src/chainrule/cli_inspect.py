"""`chainrule graph` and `chainrule explain`: the inspection tools from the command line, on the
seeds' worked examples or on one sample through a model saved by `chainrule train`.

This is the command line's side: it loads models (`chainrule.training`) and builds losses
(`chainrule.nn`), then hands the graph to `chainrule.inspect`, which builds on the engine only.
`chainrule.cli` registers the two sub-commands with `register`.
"""

from __future__ import annotations

import shutil
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class _Source:
    """What the two commands show: the loss, the named tensors, the default ``--wrt`` and the
    lines that say what was computed (which label, which class)."""

    loss: object
    names: dict
    default_wrt: str
    notes: list = field(default_factory=list)


def _add_source(p):
    from chainrule.inspect.examples import EXAMPLES

    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--example", choices=sorted(EXAMPLES),
                       help="one of the seeds' worked examples")
    group.add_argument("--model", help="model.safetensors written by `chainrule train`")
    p.add_argument("--input", help="with --model: a .npy file holding one sample")
    p.add_argument("--label", type=int, default=None,
                   help="with --model: the sample's true class, the target of the loss "
                        "(default: the class the model predicts)")


def _source(args) -> _Source:
    from chainrule.inspect.examples import DEFAULT_WRT, EXAMPLES

    if args.example:
        if args.input or args.label is not None:
            raise ValueError("--input and --label go with --model, not --example")
        loss, names = EXAMPLES[args.example]()
        return _Source(loss, names, DEFAULT_WRT[args.example])
    return _model_source(args)


def _load_sample(path, n_inputs):
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"--input: cannot read {path} as a .npy array: {exc}") from None
    if x.size != n_inputs or x.dtype.kind not in "biuf":
        raise ValueError(f"--input: the model takes one sample of {n_inputs} numbers; {path} "
                         f"holds {x.dtype} values of shape {x.shape}")
    return x.astype(np.float32).reshape(1, n_inputs)


def _parameter_names(model) -> dict:
    """``{"fc1.weight": parameter, ...}``: a Sequential's indices replaced by layer names."""
    from chainrule.inspect.record import layer_names

    readable = layer_names(model)
    names = {}
    for path, p in model.named_parameters():
        prefix, _, leaf = path.rpartition(".")
        names[f"{readable.get(prefix, prefix)}.{leaf}" if prefix else path] = p
    return names


def _forward(model, sample):
    """The model's output with each layer's result named: z1 = fc1(input), h1 = relu(z1), ...,
    logits. Called inside `record`, which takes the names from the caller's ``names`` dict."""
    from chainrule.inspect.record import layer_names

    readable = layer_names(model)
    layers = list(model._modules.items())
    names, h, k = {}, sample, 0
    for i, (key, layer) in enumerate(layers):
        h = layer(h)
        if i == len(layers) - 1:
            names["logits"] = h
        elif key in readable:  # a layer with parameters: fc1 -> z1
            k += 1
            names[f"z{k}"] = h
        elif k and h.requires_grad:  # an activation after it: h1
            names[f"h{k}"] = h
        elif not h.requires_grad:  # what the first layer reads (standardized sample)
            names["input"] = h
    return h, names


def _model_source(args) -> _Source:
    import chainrule as cr
    from chainrule.inspect.record import record
    from chainrule.training import check_inputs, model_from_file

    if not args.input:
        raise ValueError("--model needs --input SAMPLE.npy (one sample)")
    model, spec = model_from_file(args.model)
    n_classes = spec["n_classes"]
    if args.label is not None and not 0 <= args.label < n_classes:
        raise ValueError(f"--label: {args.label} is not a class of this model (0..{n_classes - 1})")
    sample = cr.tensor(check_inputs(_load_sample(args.input, spec["n_inputs"]), spec,
                                    f"--input {args.input}"))
    with record():  # one sample: keeping every forward value costs little
        logits, names = _forward(model, sample)
        probs = _softmax(logits.data[0])
        predicted = int(probs.argmax())
        label = predicted if args.label is None else args.label
        loss = cr.nn.functional.cross_entropy(logits, np.array([label]))
    names.update(_parameter_names(model))
    names["loss"] = loss
    notes = [_target_note(args.label, predicted, probs)]
    # d loss / d logits = q - y: when the model is sure of the target it is tiny, and so is every
    # gradient behind it. Say so rather than let the small norms look like a bug.
    one_hot = np.eye(n_classes)[label]
    size = float(np.linalg.norm(probs - one_hot))
    if not np.any(probs.astype(np.float32) - one_hot.astype(np.float32)):
        notes.append(f"q - y is exactly 0 in float32 (p = {_prob(probs[label])}): every "
                     f"gradient below is 0; give --label another class to see one")
    elif size < 1e-3:
        notes.append(f"the model is sure of class {label}, so dloss/dlogits = q - y is tiny "
                     f"(norm {size:.3g}) and so is every gradient below")
    first_weight = next(name for name, p in names.items() if name.endswith("weight")
                        and getattr(p, "ndim", 0) == 2)
    return _Source(loss, names, first_weight, notes)


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def _prob(p: float) -> str:
    """A probability with the digits that matter: 0.97, 6.54e-09, 0.999998 (not "1")."""
    p = float(p)
    if p >= 0.995 and p < 1:
        digits = min(int(np.ceil(-np.log10(1 - p))) + 1, 12)
        return f"{p:.{digits}f}"
    return f"{p:.3g}"


def _target_note(label, predicted, probs) -> str:
    """Which class the loss compares with, and why."""
    if label is None:
        return (f"no --label: using the predicted class {predicted} (p = "
                f"{_prob(probs[predicted])}) as the target, so the gradients show how training "
                f"would make the model surer of it; give --label with the sample's true class "
                f"to see how training would correct a wrong or unsure answer")
    verdict = "right" if label == predicted else "wrong"
    return (f"--label {label}: the model gives it p = {_prob(probs[label])} and predicts class "
            f"{predicted} (p = {_prob(probs[predicted])}), so it is {verdict}; loss = -ln p = "
            f"{-np.log(max(probs[label], 1e-300)):.4g}")


def _print_notes(source: _Source) -> None:
    for line in source.notes:
        print(textwrap.fill(line, width=100, subsequent_indent="  "))


def _graph(args) -> int:
    import chainrule as cr

    source = _source(args)
    _print_notes(source)
    out = Path(args.out)
    if out.suffix.lower() in (".svg", ".png") and shutil.which("dot") is None:
        out = out.with_suffix(".dot")
        print("Graphviz's dot is not installed: writing the DOT source instead")
    drawing = cr.draw(source.loss, names=source.names)  # values and gradients from the record
    if drawing.message:
        print(drawing.message)
    drawing.save(out)
    print(f"wrote {out} ({drawing.node_count} nodes)")
    return 0


def _wrt(source: _Source, wanted):
    name = wanted or source.default_wrt
    choices = sorted(k for k, t in source.names.items() if getattr(t, "requires_grad", False))
    if name not in source.names:
        raise ValueError(f"--wrt: no tensor named {name!r}; choose from {', '.join(choices)}")
    if name not in choices:
        raise ValueError(f"--wrt: {name} takes no gradient (an input or a constant); choose "
                         f"from {', '.join(choices)}")
    return source.names[name]


def _explain(args) -> int:
    import chainrule as cr
    from chainrule.inspect.page import write_page

    source = _source(args)
    wrt = _wrt(source, args.wrt)
    _print_notes(source)
    explanation = cr.explain(source.loss, wrt, names=source.names)
    print(explanation)
    if args.markdown:
        Path(args.markdown).write_text(explanation.to_markdown() + "\n")
        print(f"wrote {args.markdown}")
    if args.latex:
        Path(args.latex).write_text(explanation.to_latex() + "\n")
        print(f"wrote {args.latex}")
    if args.html:
        write_page(source.loss, args.html, names=source.names)
        print(f"wrote {args.html}")
    return 0


def register(subparsers) -> None:
    """Add the `graph` and `explain` sub-commands to the `chainrule` command's parser."""
    p = subparsers.add_parser("graph", help="draw the computational graph with values and "
                                            "gradients")
    _add_source(p)
    p.add_argument("--out", default="graph.svg", help="output file: .svg, .png or .dot")
    p.set_defaults(func=_graph)

    p = subparsers.add_parser("explain", help="explain a gradient as a chain of local "
                                              "derivatives")
    _add_source(p)
    p.add_argument("--wrt", default=None,
                   help="the tensor to differentiate with respect to (default: w1 / w / z for "
                        "the examples, the first layer's weight for a model)")
    p.add_argument("--markdown", default=None, help="also write the explanation as Markdown")
    p.add_argument("--latex", default=None, help="also write it as LaTeX")
    p.add_argument("--html", default=None,
                   help="also write a self-contained page that steps through the backward pass")
    p.set_defaults(func=_explain)
