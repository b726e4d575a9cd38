"""How gradients flow through a network while it trains.

``flow = GradientFlow(model)``; after every ``optimizer.step()`` call ``flow.step()``. Per
parameter and step it records the gradient norm, mean |g|, max |g|, the fraction of exact zeros,
the fraction of units (rows of a weight matrix) whose whole gradient is zero (dead ReLUs), and
the update-to-weight ratio ||dW|| / ||W||. It also keeps a fixed random sample (at most
``sample_size`` values) of every parameter's gradient at a bounded number of steps spread over
training, for the distribution plot. ``flow.warnings()`` names vanishing, exploding and dead
layers; ``flow.save(out_dir)`` writes ``gradient-flow.json`` and two plots:

* ``gradient-norms.png``: per layer (weight matrix), the gradient norm and the update / weight
  ratio over training on log scales, smoothed (the raw values faint behind), with the flagged
  layers marked on the curves and the warnings written under them;
* ``gradient-distributions.png``: per layer, the distribution of |gradient| (log scale) at the
  first step, about 25% and 50% of the way, and the last step.

Parameters of a bare ``nn.Sequential`` are named by index ("1.weight"); the plots and warnings
show them as ``fc1.weight``, ``conv1.weight``, ``norm1.weight``... (`display_names`). Names the
user chose (``encoder.weight``) are kept.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np

from chainrule.inspect.record import display_names

VANISHING_RATIO = 1e-3  # first layer's gradient norm / last layer's, below which we warn
VANISHING_ABSOLUTE = 1e-7
EXPLODING = 1e3
DEAD_UNITS = 0.9  # fraction of a layer's units with an all-zero gradient
GROWTH = 1e2  # late gradient norms / early ones, above which the gradient is called exploding
HEALTHY_UPDATE_RATIO = 1e-3  # the customary ||dW|| / ||W|| per step
SAMPLE_SIZE = 2000  # gradient values kept per parameter and snapshot
MAX_SNAPSHOTS = 16  # snapshots kept besides the first and the latest step
DISTRIBUTION_AT = (0.0, 0.25, 0.5, 1.0)  # fractions of training shown in the distribution plot

_FLAG_COLOUR = "#c62828"


def smooth(values, span: float) -> np.ndarray:
    """Exponential moving average of ``values`` over about ``span`` steps, bias-corrected (the
    first outputs are averages of the values so far, not pulled towards 0). Non-finite values
    are skipped: they come out as NaN and do not disturb the average. ``span <= 1``: no
    smoothing."""
    values = np.asarray(values, dtype=float)
    out = np.full(values.shape, np.nan)
    beta = 1.0 - 2.0 / (max(float(span), 1.0) + 1.0)
    average, weight = 0.0, 0.0
    for i, v in enumerate(values):
        if not np.isfinite(v):
            continue
        average = beta * average + (1.0 - beta) * v
        weight = beta * weight + (1.0 - beta)
        out[i] = average / weight
    return out


def smoothing_span(steps: int) -> int:
    """The span `smooth` uses for a plot of ``steps`` steps: about 1/25 of training."""
    return max(1, round(steps / 25))


class GradientFlow:
    """Records gradient statistics of ``model.named_parameters()`` at every `step`.

    ``sample_size``: gradient values kept per parameter at each snapshot step (a fixed random
    subset of its entries). At most ``max_snapshots`` snapshots are kept, evenly spaced, plus the
    first and the latest step: the memory used does not grow with the number of steps.
    """

    def __init__(self, model, *, sample_size: int = SAMPLE_SIZE,
                 max_snapshots: int = MAX_SNAPSHOTS, seed: int = 0):
        self.params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("GradientFlow: the model has no parameters that require grad")
        if sample_size < 1 or max_snapshots < 2:
            raise ValueError("GradientFlow: sample_size must be >= 1 and max_snapshots >= 2")
        shown = display_names(model)
        self.display_names = {name: shown.get(name, name) for name, _ in self.params}
        self.shapes = {name: tuple(p.shape) for name, p in self.params}
        self.history = {name: [] for name, _ in self.params}
        self._before = {name: p.data.copy() for name, p in self.params}
        rng = np.random.default_rng(seed)
        self._positions = {name: (np.sort(rng.choice(p.data.size, sample_size, replace=False))
                                  if p.data.size > sample_size else None)
                           for name, p in self.params}
        self.max_snapshots = max_snapshots
        self._calls = 0  # step() calls
        self._every = 1  # kept snapshots are at multiples of this (and step 1)
        self._snapshots: dict[int, dict[str, np.ndarray]] = {}
        self._latest: tuple[int, dict[str, np.ndarray]] | None = None

    def step(self) -> None:
        """Read the gradients of the step just taken and the update it made."""
        self._calls += 1
        sample = {}
        for name, p in self.params:
            weight = p.data
            update_norm = float(np.linalg.norm(weight - self._before[name]))
            self._before[name] = weight.copy()
            if p.grad is None:
                continue
            g = p.grad.data
            absg = np.abs(g)
            rows = absg.reshape(absg.shape[0], -1).max(axis=1) if g.ndim >= 2 else absg
            self.history[name].append({
                "grad_norm": float(np.linalg.norm(g)),
                "mean_abs_grad": float(absg.mean()),
                "max_abs_grad": float(absg.max()),
                "zero_fraction": float((g == 0).mean()),
                "dead_unit_fraction": float((rows == 0).mean()) if g.ndim >= 2 else 0.0,
                "update_ratio": update_norm / (float(np.linalg.norm(weight)) + 1e-12),
            })
            flat = g.reshape(-1)
            where = self._positions[name]
            sample[name] = np.array(flat if where is None else flat[where], np.float32)
        self._keep(sample)

    def _keep(self, sample) -> None:
        """Keep this step's sample as the latest, and as a snapshot on the thinning schedule."""
        t = self._calls
        self._latest = (t, sample)
        if t != 1 and t % self._every:
            return
        self._snapshots[t] = sample
        while len(self._snapshots) - (1 in self._snapshots) > self.max_snapshots:
            self._every *= 2
            self._snapshots = {s: v for s, v in self._snapshots.items()
                               if s == 1 or s % self._every == 0}

    @property
    def steps(self) -> int:
        """How many steps recorded a gradient (for the parameter that got the most)."""
        return max((len(h) for h in self.history.values()), default=0)

    @property
    def stored_values(self) -> int:
        """How many sampled gradient values are held for the distribution plot (bounded by
        ``(max_snapshots + 2) * sample_size`` per parameter, whatever the number of steps)."""
        kept = list(self._snapshots.values())
        if self._latest is not None and self._latest[0] not in self._snapshots:
            kept.append(self._latest[1])
        return sum(a.size for sample in kept for a in sample.values())

    def _weights(self):
        """Names of the weight matrices (the layers), first to last."""
        return [name for name, p in self.params if p.ndim >= 2 and self.history[name]]

    def _layers(self):
        """What the plots show: the weight matrices, else every parameter with a gradient."""
        return self._weights() or [n for n in self.history if self.history[n]]

    def _show(self, name: str) -> str:
        shown = self.display_names.get(name, name)
        return shown if shown == name else f"{shown} ({name})"

    def summary(self, last: int = 10) -> dict:
        """Per parameter: each statistic averaged over the last ``last`` steps."""
        out = {}
        for name, records in self.history.items():
            recent = records[-last:]
            if recent:
                out[name] = {k: float(np.mean([r[k] for r in recent])) for k in recent[0]}
        return out

    def _findings(self) -> list[tuple[str, str, str]]:
        """(kind, parameter name, text) for each warning; kind is vanishing, exploding or dead."""
        found = []
        summary = self.summary()
        layers = self._weights()
        for name in layers:
            s, shown = summary[name], self._show(name)
            if s["dead_unit_fraction"] >= DEAD_UNITS:
                found.append(("dead", name,
                              f"dead layer: {shown}: {s['dead_unit_fraction']:.0%} of its units "
                              f"get no gradient at all (dead ReLUs?)"))
            elif s["grad_norm"] < VANISHING_ABSOLUTE:
                found.append(("vanishing", name, f"vanishing gradient: {shown} has gradient "
                                                 f"norm {s['grad_norm']:.2e}"))
            if s["grad_norm"] > EXPLODING or not np.isfinite(s["grad_norm"]):
                found.append(("exploding", name, f"exploding gradient: {shown} has gradient "
                                                 f"norm {s['grad_norm']:.2e}"))
            elif (growth := _growth(self.history[name])) is not None:
                found.append(("exploding", name,
                              f"exploding gradient: {shown}'s gradient norm grew {growth:.0f}x "
                              f"over {len(self.history[name])} steps"))
        if len(layers) >= 2:
            first, last = summary[layers[0]]["grad_norm"], summary[layers[-1]]["grad_norm"]
            if last > 0 and first / last < VANISHING_RATIO:
                found.append(("vanishing", layers[0],
                              f"vanishing gradient: the first layer, {self._show(layers[0])}, "
                              f"gets {first / last:.1e} of the gradient norm of the last, "
                              f"{self._show(layers[-1])}"))
        return found

    def warnings(self) -> list[str]:
        """Plain-language warnings about vanishing, exploding and dead layers."""
        return [text for _, _, text in self._findings()]

    def layer_flags(self) -> dict[str, list[str]]:
        """{parameter name: ["vanishing" / "exploding" / "dead", ...]} for the flagged layers."""
        flags: dict[str, list[str]] = {}
        for kind, name, _ in self._findings():
            if kind not in flags.setdefault(name, []):
                flags[name].append(kind)
        return flags

    def distribution_steps(self, at=DISTRIBUTION_AT) -> list[int]:
        """The kept steps nearest to each fraction of training in ``at`` (0: the first step,
        1: the last), without repeats."""
        if self._latest is None:
            return []
        last = self._latest[0]
        kept = sorted(set(self._snapshots) | {last})
        chosen = []
        for fraction in at:
            target = 1 + fraction * (last - 1)
            step = min(kept, key=lambda s: (abs(s - target), s))
            if step not in chosen:
                chosen.append(step)
        return chosen

    def distributions(self, at=DISTRIBUTION_AT) -> dict[int, dict[str, np.ndarray]]:
        """{step: {parameter name: sampled gradient values}} at `distribution_steps`."""
        out = {}
        for step in self.distribution_steps(at):
            if self._latest is not None and step == self._latest[0]:
                out[step] = self._latest[1]
            else:
                out[step] = self._snapshots[step]
        return out

    def to_dict(self) -> dict:
        """Everything recorded, as saved in gradient-flow.json (keyed by the real parameter
        names; ``display_names`` maps them to the names the plots show)."""
        distributions = []
        for step, sample in self.distributions().items():
            layers = {}
            for name, values in sample.items():
                nonzero = np.abs(values[(values != 0) & np.isfinite(values)])
                percentiles = ({str(q): float(v) for q, v in zip(
                    (5, 25, 50, 75, 95), np.percentile(np.log10(nonzero), (5, 25, 50, 75, 95)))}
                    if nonzero.size else {})
                layers[name] = {"samples": int(values.size),
                                "zero_fraction": float((values == 0).mean()),
                                "log10_abs_grad_percentiles": percentiles}
            distributions.append({"step": step, "layers": layers})
        return {"steps": self.steps, "display_names": self.display_names,
                "shapes": {k: list(v) for k, v in self.shapes.items()},
                "history": self.history, "summary": self.summary(),
                "warnings": self.warnings(), "flags": self.layer_flags(),
                "distributions": distributions}

    # ------------------------------------------------------------------------------------------
    # Plots
    # ------------------------------------------------------------------------------------------
    def _labels(self, layers, flags) -> list[str]:
        return [self.display_names[n] + (f"  \u26a0 {', '.join(flags[n])}" if n in flags else "")
                for n in layers]

    def _warning_lines(self, width: int, most: int = 10) -> list[str]:
        """The warnings wrapped to ``width`` characters, at most ``most`` of them."""
        warnings, lines = self.warnings(), []
        for text in warnings[:most]:
            lines += textwrap.wrap("\u26a0 " + text, width, subsequent_indent="    ")
        if len(warnings) > most:
            lines.append(f"... and {len(warnings) - most} more warnings (all of them are in "
                         f"gradient-flow.json)")
        return lines

    def norms_figure(self):
        """The matplotlib Figure of gradient-norms.png: per layer, the gradient norm (top) and
        the update / weight ratio (bottom) over training, log scales, smoothed with the raw
        values faint behind; flagged layers get a red halo on their curve, a red label naming
        the problem in the legend (and on the curve when there are few), and the warnings are
        written under the plots."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
        from matplotlib.transforms import blended_transform_factory

        layers, flags = self._layers(), self.layer_flags()
        colours = _colours(len(layers))
        labels = self._labels(layers, flags)
        n = self.steps
        span = smoothing_span(n)
        missing = {"grad_norm": [], "update_ratio": []}
        for name in layers:
            for key, names in missing.items():
                if not np.isfinite(_positive([r[key] for r in self.history[name]])).any():
                    names.append(self.display_names[name])
        lines = self._warning_lines(118) or ["no vanishing, exploding or dead layers found"]
        for key, what in (("grad_norm", "gradient norm"), ("update_ratio", "update ratio")):
            if missing[key]:
                lines += textwrap.wrap(
                    f"not drawn in the {what} panel (0 or not finite at every step): "
                    f"{', '.join(missing[key])}", 118, subsequent_indent="    ")
        footer = 0.3 + 0.19 * len(lines)
        fig = Figure(figsize=(11.5, 7.4 + footer), layout="constrained")
        FigureCanvasAgg(fig)
        grid = fig.add_gridspec(3, 1, height_ratios=[3.1, 3.1, footer])
        ax_g = fig.add_subplot(grid[0])
        ax_u = fig.add_subplot(grid[1], sharex=ax_g)
        panels = ((ax_g, "grad_norm"), (ax_u, "update_ratio"))
        for ax, key in panels:
            if len(missing[key]) == len(layers):  # nothing to scale the axis by
                ax.set(yscale="log", ylim=(1e-6, 1))
        handles = []
        for name, colour in zip(layers, colours):
            records = self.history[name]
            steps = np.arange(1, len(records) + 1)
            for ax, key in panels:
                raw = _positive([r[key] for r in records])
                trend = 10 ** smooth(np.log10(raw), span)
                if name in flags and key == "grad_norm":  # the halo marking a flagged layer
                    ax.plot(steps, trend, color=_FLAG_COLOUR, lw=7, alpha=0.22,
                            solid_capstyle="round")
                ax.plot(steps, raw, color=colour, alpha=0.22, lw=0.8)
                (line,) = ax.plot(steps, trend, color=colour, lw=2.2,
                                  marker="o" if n <= 10 else None, ms=4)
                if key == "grad_norm":
                    handles.append(line)
                    if name in flags and len(flags) <= 3:
                        marked = sum(t.get_text().startswith("\u26a0") for t in ax.texts)
                        _mark(ax, steps, trend, ", ".join(flags[name]), self.display_names[name],
                              marked)
        ax_g.set(yscale="log", ylabel="gradient norm  \u2016g\u2016")
        ax_g.set_title("gradient norm per layer", loc="left")
        if flags:
            ax_g.set_title(f"\u26a0 {len(flags)} flagged (red halo)", loc="right",
                           color=_FLAG_COLOUR, fontweight="bold", fontsize=10)
        ax_u.set(yscale="log", xlabel="training step",
                 ylabel="update / weight  \u2016\u0394W\u2016 / \u2016W\u2016")
        ax_u.set_title("update-to-weight ratio per layer (per step)", loc="left")
        ax_u.axhline(HEALTHY_UPDATE_RATIO, color="0.3", ls="--", lw=1.2)
        ax_u.text(0.005, HEALTHY_UPDATE_RATIO, " 1e-3: the customary healthy ratio",
                  transform=blended_transform_factory(ax_u.transAxes, ax_u.transData),
                  color="0.25", fontsize=9, va="bottom", ha="left")
        for ax, key in panels:
            ax.grid(alpha=0.3, which="major")
            if len(missing[key]) == len(layers):
                ax.text(0.5, 0.75, "no finite, non-zero values to plot" if layers else
                        "no steps recorded", ha="center", transform=ax.transAxes,
                        color=_FLAG_COLOUR)
        legend = fig.legend(handles, labels, loc="outside right upper", fontsize=9,
                            title="layer (weights)", title_fontsize=9, frameon=False,
                            ncols=1 + len(layers) // 30)
        for text, name in zip(legend.get_texts(), layers):
            if name in flags:
                text.set(color=_FLAG_COLOUR, fontweight="bold")
        ax_u.xaxis.set_major_locator(MaxNLocator(integer=True))
        fig.suptitle(f"Gradient flow over {n} step{'s' * (n != 1)} (thick: moving average "
                     f"over ~{span} step{'s' * (span != 1)}; "
                     f"faint: every step)", fontsize=12, x=0.01, ha="left")
        ax_w = fig.add_subplot(grid[2])
        ax_w.axis("off")
        ax_w.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=9.5,
                  transform=ax_w.transAxes, color=_FLAG_COLOUR if flags else "#2e7d32",
                  fontweight="bold" if flags else "normal", in_layout=False)
        return fig

    def distributions_figure(self, at=DISTRIBUTION_AT):
        """The matplotlib Figure of gradient-distributions.png: one panel per chosen step, in
        each a horizontal violin per layer of log10 |gradient| (the sampled values), the median
        (white dot), the middle half (black bar) and the share of exact zeros; flagged layers
        have red labels naming the problem."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        layers, flags = self._layers(), self.layer_flags()
        colours = _colours(len(layers))
        dists = self.distributions(at)
        count = max(1, len(dists))
        # A few layers: two panels a row, so that the figure is not too wide to read.
        columns = 2 if len(layers) <= 8 and count > 2 else count
        rows = -(-count // columns)
        width = 3.6 * columns + 2.4 if columns == 2 else 2.9 * columns + 2.6
        fig = Figure(figsize=(max(width, 7.5), rows * (0.55 * len(layers) + 1.3) + 0.6),
                     layout="constrained")
        FigureCanvasAgg(fig)
        grid = fig.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
        axes = list(grid.flat)
        for ax in axes[count:]:
            ax.set_visible(False)
        axes = axes[:count]
        logs = [np.log10(np.abs(v[(v != 0) & np.isfinite(v)])) for sample in dists.values()
                for v in sample.values()]
        logs = np.concatenate(logs) if logs else np.zeros(0)
        lo, hi = (np.floor(logs.min() - 0.2), np.ceil(logs.max() + 0.2)) if logs.size else (-8, 0)
        hi = max(hi, lo + 1)
        edges = np.linspace(lo, hi, 81)
        centres = (edges[:-1] + edges[1:]) / 2
        last = self._latest[0] if self._latest else 0
        ys = np.arange(len(layers))[::-1]  # the first layer on top
        for ax, (step, sample) in zip(axes, dists.items()):
            for name, colour, y in zip(layers, colours, ys):
                _violin(ax, sample.get(name), y, colour, edges, centres)
            where = "first step" if step == 1 else (
                "last step" if step == last else f"{step / max(last, 1):.0%} of training")
            ax.set_title(f"step {step}  ({where})", fontsize=10)
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(axis="y", length=0)
        if not dists:
            axes[0].text(0.5, 0.5, "no steps recorded", ha="center", transform=axes[0].transAxes)
        axes[0].set_yticks(ys, self._labels(layers, flags), fontsize=9)
        axes[0].set_ylim(-0.6, len(layers) - 0.4)
        for i, ax in enumerate(axes):
            if i % columns:
                ax.tick_params(axis="y", labelleft=False)
            else:
                for label, name in zip(ax.get_yticklabels(), layers):
                    if name in flags:
                        label.set(color=_FLAG_COLOUR, fontweight="bold")
            if i + columns >= count:  # the bottom panel of its column
                ax.set_xlabel("|gradient| (log scale)", fontsize=9)
                ax.tick_params(axis="x", labelbottom=True)
        axes[0].set_xlim(lo, hi + 0.22 * (hi - lo))  # room on the right for the share of zeros
        axes[0].xaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
        axes[0].xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"$10^{{{int(round(x))}}}$"))
        size = max((len(v) for sample in dists.values() for v in sample.values()), default=0)
        fig.suptitle(f"Distribution of |gradient| per layer during training\n(up to {size:,} "
                     f"sampled weights per layer; white dot: median, black bar: middle half)",
                     fontsize=11)
        return fig

    def plot(self, out_dir) -> list[Path]:
        """Write gradient-norms.png and gradient-distributions.png into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = []
        for figure, name in ((self.norms_figure, "gradient-norms.png"),
                             (self.distributions_figure, "gradient-distributions.png")):
            path = out_dir / name
            figure().savefig(path, dpi=110)
            paths.append(path)
        return paths

    def save(self, out_dir) -> Path:
        """Write gradient-flow.json and the two plots into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "gradient-flow.json"
        path.write_text(json.dumps(self.to_dict(), indent=1))
        self.plot(out_dir)
        return path


def _growth(records) -> float | None:
    """How many times the gradient norm grew from the first quarter of training to the last,
    when that is more than `GROWTH` (at least 4 steps), else None."""
    norms = [r["grad_norm"] for r in records]
    if len(norms) < 4:
        return None
    k = max(1, len(norms) // 4)
    early, late = float(np.mean(norms[:k])), float(np.mean(norms[-k:]))
    if early > 0 and np.isfinite(late) and late / early > GROWTH:
        return late / early
    return None


def _positive(values) -> np.ndarray:
    """The values as floats, with zeros and non-finite ones as NaN (gaps on a log axis)."""
    a = np.asarray(values, dtype=float)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def _colours(n: int) -> list:
    """Distinct colours for n layers, none of them red (red marks the warnings)."""
    import matplotlib

    if n <= 9:
        tab = matplotlib.colormaps["tab10"].colors
        return [tab[i] for i in (0, 1, 2, 4, 5, 6, 7, 8, 9)][:n]
    return [matplotlib.colormaps["viridis"](x) for x in np.linspace(0, 0.92, n)]


def _mark(ax, steps, trend, what, shown, row) -> None:
    """Write ``what`` (the problem) in red in the top right corner, row ``row`` of the labels
    there, with a line to the end of the flagged layer's curve (no label when the curve has no
    finite value: the "not drawn" note under the plots names it)."""
    finite = np.flatnonzero(np.isfinite(trend))
    if finite.size:
        i = finite[-1]
        ax.annotate(f"\u26a0 {shown}: {what}", xy=(steps[i], trend[i]),
                    xytext=(0.9, 0.95 - 0.1 * row), textcoords="axes fraction", ha="right",
                    va="top", fontsize=9,
                    color=_FLAG_COLOUR, fontweight="bold", in_layout=False,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": _FLAG_COLOUR,
                          "alpha": 0.9},
                    arrowprops={"arrowstyle": "-", "color": _FLAG_COLOUR, "lw": 1})


def _violin(ax, values, y, colour, edges, centres) -> None:
    """One horizontal violin of log10 |values| at height y, from a smoothed histogram."""
    if values is None or values.size == 0:
        ax.text(centres.mean(), y, "no gradient", ha="center", va="center", fontsize=8,
                color="0.4")
        return
    finite = values[np.isfinite(values)]
    nonzero = np.abs(finite[finite != 0])
    zeros = float((values == 0).mean())
    if nonzero.size == 0:
        ax.text(centres.mean(), y, "every gradient is 0" if zeros == 1 else "NaN / inf only",
                ha="center", va="center", fontsize=8.5, color=_FLAG_COLOUR, fontweight="bold")
        return
    logs = np.log10(nonzero)
    counts, _ = np.histogram(np.clip(logs, edges[0], edges[-1]), edges)
    density = np.convolve(counts, np.array([1, 4, 6, 4, 1]) / 16, mode="same")
    width = 0.42 * density / density.max()
    shown = width > 0.004
    ax.fill_between(centres, y - width, y + width, where=shown, color=colour, alpha=0.55,
                    lw=0.8, edgecolor=colour)
    q25, q50, q75 = np.percentile(logs, (25, 50, 75))
    ax.plot([q25, q75], [y, y], color="black", lw=3.5, solid_capstyle="butt")
    ax.plot([q50], [y], "o", color="white", mec="black", ms=4.5, mew=1)
    if zeros >= 0.005:
        ax.text(0.985, y, f"{zeros:.0%} zero", transform=_xaxes_ydata(ax), ha="right",
                va="center", fontsize=8, color="0.3")


def _xaxes_ydata(ax):
    from matplotlib.transforms import blended_transform_factory

    return blended_transform_factory(ax.transAxes, ax.transData)
