"""One self-contained HTML page about a training run: ``report.html``.

``write_report(out_dir, flow)`` puts together, in one file that needs neither the network nor
any other file to open: the warnings of a `GradientFlow` (vanishing, exploding and dead layers),
the training curves (``curves.png`` in ``out_dir``, as `chainrule train` writes it), the
gradient-flow plots, a table of per-layer numbers, the model's layer graph (an SVG, see
`layer_graph`) and the memory accounting text. Images are embedded as base64 ``data:`` URIs.
"""

from __future__ import annotations

import base64
import html
import re
import shutil
from pathlib import Path

FLOW_PLOTS = (
    ("gradient-norms.png", "Gradient norms and update ratios over training",
     "Per layer (weight matrix): the gradient norm and the update-to-weight ratio at every "
     "step, on log scales. Thick lines are a moving average, faint lines the raw values. An "
     "update ratio far below the dashed 1e-3 line means the layer barely learns; far above, "
     "it changes too fast. Flagged layers have a red halo and a red label."),
    ("gradient-distributions.png", "Distribution of |gradient| per layer",
     "At the first step, about a quarter and half-way through, and at the last step: how large "
     "the gradients of each layer's weights are (a fixed random sample of its weights, log "
     "scale). Layers whose distribution sits many decades left of the others get almost no "
     "gradient."),
)
_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 0 auto; max-width: 1180px; padding: 24px 32px 48px; color: #1d1d1f;
       line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.note { color: #555; margin-top: 0.2em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; }
dl.facts dt { color: #555; }
dl.facts dd { margin: 0; font-weight: 600; }
.warnings { border-left: 6px solid #c62828; background: #fdecea; padding: 10px 16px;
            border-radius: 4px; }
.warnings ul { list-style: none; padding-left: 4px; margin: 4px 0; }
.warnings li { margin: 4px 0; color: #8e1b1b; }
.ok { border-left: 6px solid #2e7d32; background: #e8f5e9; padding: 10px 16px;
      border-radius: 4px; color: #1b5e20; }
img.plot { max-width: 100%; height: auto; border: 1px solid #eee; }
.graph { overflow-x: auto; border: 1px solid #eee; padding: 8px; }
.graph img { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e5e5e5; text-align: right; }
th { background: #f5f5f7; position: sticky; top: 0; }
td.name, th.name { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
tr.flagged td { background: #fdecea; color: #8e1b1b; font-weight: 600; }
pre { background: #f5f5f7; padding: 12px; overflow-x: auto; font-size: 0.85em; }
.missing { color: #8a6d00; background: #fff8e1; padding: 8px 12px; border-radius: 4px; }
"""


def write_report(out_dir, flow=None, *, curves=None, layer_graph_svg=None,
                 layer_graph_note=None, memory_text=None, facts=None, plots=None,
                 title="Training report", path=None) -> Path:
    """Write one self-contained ``report.html`` into ``out_dir`` and return its path.

    ``flow``: a `GradientFlow`; its warnings, plots and per-layer table are shown.
    ``plots``: the paths of its two plots when already drawn (by ``flow.save(out_dir)``); by
    default they are drawn now, into ``out_dir``. ``curves``: the training-curves image
    (default: ``out_dir/curves.png`` when it exists). ``layer_graph_svg``: the model's graph as
    SVG text or bytes (see `layer_graph`); without it, ``layer_graph_note`` says why.
    ``memory_text``: shown as it is. ``facts``: {label: value} shown under the title.
    ``path``: where to write (default ``out_dir/report.html``). Every image is embedded as a
    ``data:`` URI: the page needs no other file and no network.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = Path(path) if path is not None else out_dir / "report.html"
    parts = [f"<h1>{_e(title)}</h1>"]
    if facts:
        parts.append('<dl class="facts">' + "".join(
            f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts.items()) + "</dl>")
    if flow is not None:
        parts.append(_warnings_section(flow))
    curves = Path(curves) if curves is not None else out_dir / "curves.png"
    parts.append("<h2>Training curves</h2>")
    if curves.is_file():
        parts.append(_image(curves, "training and validation loss and accuracy per epoch"))
    else:
        parts.append(f'<p class="missing">No training curves ({_e(curves.name)} not found).</p>')
    if flow is not None:
        plots = flow.plot(out_dir) if plots is None else [Path(p) for p in plots]
        for (_, heading, note), plot in zip(FLOW_PLOTS, plots):
            parts.append(f"<h2>{_e(heading)}</h2><p class=\"note\">{_e(note)}</p>")
            parts.append(_image(plot, heading))
        parts.append(_table_section(flow))
    parts.append("<h2>Layer graph</h2>")
    if layer_graph_svg:
        svg = layer_graph_svg.encode() if isinstance(layer_graph_svg, str) else layer_graph_svg
        parts.append('<p class="note">The operations of one training batch, each layer (its '
                     'weights and the operations that read them) collapsed into one box.</p>')
        parts.append(f'<div class="graph"><img alt="layer graph" '
                     f'src="{_data_uri(svg, "image/svg+xml")}"></div>')
    else:
        parts.append(f'<p class="missing">{_e(layer_graph_note or "No layer graph was drawn.")}'
                     f'</p>')
    if memory_text:
        parts.append("<h2>Memory of one training batch</h2>")
        parts.append(f"<pre>{_e(memory_text)}</pre>")
    page = (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            + "\n".join(parts) + "\n</body>\n</html>\n")
    path.write_text(page, encoding="utf-8")
    return path


def layer_graph(loss, model, display_names=None) -> tuple[bytes | None, str | None]:
    """(SVG bytes, None) of ``cr.draw(loss, collapse=model)``, each layer one box, or
    (None, why not) when Graphviz's ``dot`` is missing or fails.

    The boxes carry the layers' readable names (``fc1 (Linear)``, as
    `GradientFlow.display_names`); ``display_names`` is accepted for compatibility.
    """
    from chainrule.inspect.draw import draw

    if shutil.which("dot") is None:
        return None, ("No layer graph: Graphviz's dot program is not installed on the machine "
                      "that wrote this report (Debian: apt-get install graphviz).")
    try:
        drawing = draw(loss, collapse=model, show_values=False,
                       show_grads=False, title="layers of the model")
        if drawing.message:
            return None, f"No layer graph: {drawing.message}"
        return drawing.render("svg"), None
    except (RuntimeError, OSError) as error:
        return None, f"No layer graph: {error}"


def _warnings_section(flow) -> str:
    warnings = flow.warnings()
    if not warnings:
        return ('<h2>Warnings</h2><p class="ok">No warnings: no vanishing, exploding or dead '
                'layers found.</p>')
    items = "".join(f"<li>&#9888; {_e(w)}</li>" for w in warnings)
    return (f'<h2>Warnings ({len(warnings)})</h2><div class="warnings"><ul>{items}</ul>'
            f"</div>")


def _table_section(flow) -> str:
    summary, flags = flow.summary(), flow.layer_flags()
    head = ("<tr><th class=\"name\">layer</th><th class=\"name\">parameter</th><th>shape</th>"
            "<th>gradient norm</th><th>mean |g|</th><th>max |g|</th><th>zeros</th>"
            "<th>dead units</th><th>update / weight</th><th class=\"name\">flag</th></tr>")
    rows = []
    for name, s in summary.items():
        shape = "&times;".join(str(d) for d in flow.shapes.get(name, ())) or "scalar"
        flag = ", ".join(flags.get(name, []))
        row_class = ' class="flagged"' if flag else ""
        rows.append(
            f"<tr{row_class}>"
            f"<td class=\"name\">{_e(flow.display_names.get(name, name))}</td>"
            f"<td class=\"name\">{_e(name)}</td><td>{shape}</td>"
            f"<td>{s['grad_norm']:.3g}</td><td>{s['mean_abs_grad']:.3g}</td>"
            f"<td>{s['max_abs_grad']:.3g}</td><td>{s['zero_fraction']:.1%}</td>"
            f"<td>{s['dead_unit_fraction']:.1%}</td><td>{s['update_ratio']:.2e}</td>"
            f"<td class=\"name\">{'&#9888; ' + _e(flag) if flag else ''}</td></tr>")
    return (f"<h2>Per-layer numbers</h2><p class=\"note\">Each statistic averaged over the last "
            f"10 of {flow.steps} steps.</p><table>{head}{''.join(rows)}</table>")


def _image(path: Path, alt: str) -> str:
    mime = "image/svg+xml" if path.suffix.lower() == ".svg" else "image/png"
    return f'<img class="plot" alt="{_e(alt)}" src="{_data_uri(path.read_bytes(), mime)}">'


def _data_uri(data: bytes, mime: str) -> str:
    if mime == "image/svg+xml":  # the prolog names the SVG DTD's web address: not needed
        data = re.sub(rb"<\?xml[^>]*>|<!DOCTYPE[^>]*>", b"", data)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _e(value) -> str:
    return html.escape(str(value))
