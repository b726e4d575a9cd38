"""`chainrule graph` and `chainrule explain`: the inspection tools from the command line, on
the seeds' examples or on a model saved by `chainrule train` with a sample input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def _add_source(p):
    from chainrule.inspect.examples import EXAMPLES

    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--example", choices=sorted(EXAMPLES),
                       help="one of the seeds' worked examples")
    group.add_argument("--model", help="model.safetensors written by `chainrule train`")
    p.add_argument("--input", help="with --model: a .npy file holding one sample")
    p.add_argument("--label", type=int, default=None,
                   help="with --model: the sample's class (default: the predicted class)")


def _source(args):
    """(output tensor, named tensors, default wrt) for the chosen example or model."""
    import chainrule as cr
    from chainrule.inspect.examples import DEFAULT_WRT, EXAMPLES

    if args.example:
        loss, names = EXAMPLES[args.example]()
        return loss, names, DEFAULT_WRT[args.example]
    if not args.input:
        raise ValueError("--model needs --input SAMPLE.npy (one sample)")
    from chainrule.training import model_from_file

    model, spec = model_from_file(args.model)
    try:
        x = np.load(args.input, allow_pickle=False).astype(np.float32).reshape(1, -1)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"--input: cannot read {args.input} as a .npy array: {exc}") from None
    if x.shape[1] != spec["n_inputs"]:
        raise ValueError(f"--input: the model takes {spec['n_inputs']} numbers, the file has "
                         f"{x.shape[1]}")
    sample = cr.tensor(x)
    sample.name = "input"
    with cr.inspect.trace():  # one sample: keeping every forward value costs little
        logits = model(sample)
        label = int(logits.data.argmax()) if args.label is None else args.label
        loss = cr.nn.functional.cross_entropy(logits, np.array([label]))
    names = dict(model.named_parameters())
    names["loss"] = loss
    first_weight = next(name for name, p in model.named_parameters() if p.ndim == 2)
    return loss, names, first_weight


def _graph(args) -> int:
    import chainrule as cr

    loss, names, _ = _source(args)
    out = Path(args.out)
    if out.suffix.lower() in (".svg", ".png") and shutil.which("dot") is None:
        out = out.with_suffix(".dot")
        print("Graphviz's dot is not installed: writing the DOT source instead")
    loss.backward(retain_graph=True)  # the leaves show their .grad; the graph stays drawable
    drawing = cr.draw(loss, names=names)
    if drawing.message:
        print(drawing.message)
    drawing.save(out)
    print(f"wrote {out} ({drawing.node_count} nodes)")
    return 0


def _explain(args) -> int:
    import chainrule as cr
    from chainrule.inspect.page import write_page

    loss, names, default_wrt = _source(args)
    wrt_name = args.wrt or default_wrt
    if wrt_name not in names:
        raise ValueError(f"--wrt: no tensor named {wrt_name!r}; choose from "
                         f"{', '.join(sorted(names))}")
    explanation = cr.explain(loss, names[wrt_name], names=names)
    print(explanation)
    if args.markdown:
        Path(args.markdown).write_text(explanation.to_markdown() + "\n")
        print(f"wrote {args.markdown}")
    if args.latex:
        Path(args.latex).write_text(explanation.to_latex() + "\n")
        print(f"wrote {args.latex}")
    if args.html:
        write_page(loss, args.html, names=names)
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
    p.add_argument("--wrt", default=None, help="the tensor to differentiate with respect to")
    p.add_argument("--markdown", default=None, help="also write the explanation as Markdown")
    p.add_argument("--latex", default=None, help="also write it as LaTeX")
    p.add_argument("--html", default=None,
                   help="also write a self-contained page that steps through the backward pass")
    p.set_defaults(func=_explain)
